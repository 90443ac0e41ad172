//! Named limits for everything the authentication code reads from the network (docs/style.md §4).
//!
//! Each bound is checked before the input is used, so an attacker cannot make a verifier hash,
//! sort or allocate more than these sizes allow. The values are generous for real clients: the
//! largest request the v3 SDK signs lists nine headers and a query of a few pairs.

/// Largest accepted value of `Authorization` or of any signed header.
pub const HEADER_BYTES_MAX: usize = 8 * 1024;
/// Most names a `SignedHeaders=` list may carry.
pub const SIGNED_HEADERS_COUNT_MAX: usize = 64;
/// Longest header name inside `SignedHeaders=`.
pub const HEADER_NAME_BYTES_MAX: usize = 256;
/// Longest raw (percent-encoded) request path.
pub const PATH_BYTES_MAX: usize = 8 * 1024;
/// Longest raw query string.
pub const QUERY_BYTES_MAX: usize = 16 * 1024;
/// Most `key=value` pairs in a query string.
pub const QUERY_PAIRS_MAX: usize = 256;
/// Longest HTTP method name.
pub const METHOD_BYTES_MAX: usize = 32;
/// Longest access key (AK). Real AKs are 20 characters.
pub const ACCESS_KEY_BYTES_MAX: usize = 128;
/// Longest region or service name in a legacy credential scope.
pub const SCOPE_PART_BYTES_MAX: usize = 64;
/// Largest body the verifier hashes; the HTTP layer enforces its own, smaller, request limit.
pub const BODY_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Default clock-skew window between `X-Sdk-Date` and the server's clock: 5 minutes either
/// way. It is also how long a captured signed request stays usable (docs/auth.md, "Replay"),
/// so it is a third of APIG's 15 minutes; NTP keeps real clocks far closer.
pub const SKEW_S_DEFAULT: i64 = 5 * 60;
/// Widest skew window a server may be configured with (APIG's).
pub const SKEW_S_MAX: i64 = 15 * 60;

/// Longest `X-Auth-Token` accepted; issued tokens are far shorter (see `token.rs`).
pub const TOKEN_CHARS_MAX: usize = 1024;
/// Longest project id, project name, user id, user name or domain in a token or Keystone body.
pub const NAME_BYTES_MAX: usize = 255;
/// Longest password accepted in a Keystone body (the node layer's limit).
pub use sluice_node::password::PASSWORD_BYTES_MAX;
/// Largest `POST /v3/auth/tokens` body.
pub const KEYSTONE_BODY_BYTES_MAX: usize = 16 * 1024;
/// Longest PHC string `verify_password` parses.
pub use sluice_node::password::PHC_BYTES_MAX;

const _: () = assert!(TOKEN_CHARS_MAX > 4 * (1 + 8 + 8 + 16 + 2 + 2 * NAME_BYTES_MAX + 32) / 3 + 4);
const _: () = assert!(SKEW_S_DEFAULT <= 5 * 60);
const _: () = assert!(SKEW_S_DEFAULT <= SKEW_S_MAX);
const _: () = assert!(HEADER_NAME_BYTES_MAX * SIGNED_HEADERS_COUNT_MAX <= HEADER_BYTES_MAX * 2);
