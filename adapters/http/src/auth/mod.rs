//! Authentication for the HTTP adapters: AK/SK request signatures (`SDK-HMAC-SHA256`, current
//! and legacy forms), self-contained `X-Auth-Token` tokens, the Keystone v3 token request and
//! response bodies, and password hashes. See `docs/auth.md` and docs/dms-api.md §7.
//!
//! Everything here is pure: no clock reads (times are unix seconds passed in), no I/O, no
//! runtime, no global RNG (salts come from the caller). It authenticates only; checking that a
//! credential's project owns the path's project is the caller's job.
//!
//! Reading order: `limits`, `dates`, `error`, `canonical`, `authorization`, `signature`,
//! `sign`, `token`, `keystone`, `password`.

pub mod authorization;
pub mod canonical;
pub mod dates;
pub mod error;
pub mod keystone;
pub mod limits;
pub mod sign;
pub mod signature;
pub mod token;

pub use error::AuthError;
pub use keystone::{
    keystone_request_parse, keystone_response_body, KeystoneError, KeystoneRequest,
    KeystoneResponse, NameOrId,
};
pub use limits::{SKEW_S_DEFAULT, SKEW_S_MAX};
pub use sign::sign_request;
pub use signature::{
    verify_signature, verify_signed_request, SignedRequest, Verified, UNSIGNED_PAYLOAD,
};
pub use sluice_node::password::{hash_password, verify_password};
pub use token::{issue_token, key_fingerprint, verify_token, TokenClaims, TokenError};
