//! Self-contained `X-Auth-Token` tokens: the claims travel inside the token, authenticated by
//! an HMAC-SHA256 tag, so any node verifies a token with the shared key and no server storage.
//!
//! Wire form: `base64url_nopad(payload || tag)` where `payload` is
//! `version (2) | issued_unix_s (i64 BE) | expires_unix_s (i64 BE) | key_fingerprint (16) |
//! project_id length (u8) | project_id | user_name length (u8) | user_name` and
//! `tag = HMAC-SHA256(key, TAG_LABEL || payload)`. Tokens are signed, not encrypted: the
//! claims are not secret. The key fingerprint binds a token to the tenant's credentials when
//! it was issued ([`key_fingerprint`]); the caller compares it with the tenant's current one,
//! so a token dies with its tenant or its keys (see docs/auth.md).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::limits::{NAME_BYTES_MAX, TOKEN_CHARS_MAX};
use super::signature::hmac_sha256;

/// The first payload byte; a new layout takes a new number (1: without the fingerprint).
const TOKEN_VERSION: u8 = 2;
/// Domain separation, so a tag over other data under the same key never verifies as a token.
const TAG_LABEL: &[u8] = b"sluice-x-auth-token-v2\0";
/// Domain separation of key fingerprints from tags.
const FINGERPRINT_LABEL: &[u8] = b"sluice-token-key-fingerprint-v1\0";
const TAG_BYTES: usize = 32;
pub const FINGERPRINT_BYTES: usize = 16;
/// Version, two times, the fingerprint, two length bytes.
const HEADER_BYTES: usize = 1 + 8 + 8 + FINGERPRINT_BYTES + 2;

/// What a token asserts: who, for which project, under which credentials, and when it
/// stops being valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub project_id: String,
    pub user_name: String,
    pub issued_unix_s: i64,
    pub expires_unix_s: i64,
    /// [`key_fingerprint`] of the tenant's credentials at issue.
    pub key_fingerprint: [u8; FINGERPRINT_BYTES],
}

/// A fingerprint of a tenant's credentials: its AK, its SK and its password hash (absent:
/// empty), each length-prefixed, under the token key. Any change of them changes it. It is
/// keyed, so the fingerprint in a token (which is not encrypted) says nothing about the SK
/// or the password to anyone without the token key.
pub fn key_fingerprint(
    token_key: &[u8; 32],
    access_key: &str,
    secret_key: &str,
    password_hash: Option<&str>,
) -> [u8; FINGERPRINT_BYTES] {
    let mut message = FINGERPRINT_LABEL.to_vec();
    for part in [access_key, secret_key, password_hash.unwrap_or("")] {
        let length = u32::try_from(part.len()).expect("credentials are short");
        message.extend_from_slice(&length.to_be_bytes());
        message.extend_from_slice(part.as_bytes());
    }
    let tag = hmac_sha256(token_key, &message);
    tag[..FINGERPRINT_BYTES]
        .try_into()
        .expect("a tag is longer than a fingerprint")
}

/// Why `verify_token` refused a token (401: 10240101 for the first two, 10240102 for Expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of this server: wrong length, alphabet, version or layout.
    Malformed,
    /// The tag does not match: forged, altered, or issued under another key.
    BadSignature,
    /// `now >= expires_unix_s`.
    Expired,
}

impl TokenError {
    /// A sentence for the 401 body.
    pub fn message(&self) -> String {
        match self {
            TokenError::Malformed => "The X-Auth-Token is not a valid token.",
            TokenError::BadSignature => "The X-Auth-Token was not issued by this service.",
            TokenError::Expired => "The X-Auth-Token has expired.",
        }
        .to_string()
    }
}

/// Issues a token for `claims`. Panics when a name is longer than 255 bytes or the token would
/// expire before it is issued: callers validate names (the Keystone parser does).
pub fn issue_token(key: &[u8; 32], claims: &TokenClaims) -> String {
    assert!(
        claims.project_id.len() <= NAME_BYTES_MAX,
        "project id longer than 255 bytes"
    );
    assert!(
        claims.user_name.len() <= NAME_BYTES_MAX,
        "user name longer than 255 bytes"
    );
    assert!(
        claims.expires_unix_s > claims.issued_unix_s,
        "token expires before it is issued"
    );
    let mut bytes = Vec::with_capacity(HEADER_BYTES + 2 * NAME_BYTES_MAX + TAG_BYTES);
    bytes.push(TOKEN_VERSION);
    bytes.extend_from_slice(&claims.issued_unix_s.to_be_bytes());
    bytes.extend_from_slice(&claims.expires_unix_s.to_be_bytes());
    bytes.extend_from_slice(&claims.key_fingerprint);
    for name in [&claims.project_id, &claims.user_name] {
        bytes.push(u8::try_from(name.len()).expect("length checked above"));
        bytes.extend_from_slice(name.as_bytes());
    }
    let tag = token_tag(key, &bytes);
    bytes.extend_from_slice(&tag);
    let token = URL_SAFE_NO_PAD.encode(&bytes);
    assert!(
        token.len() <= TOKEN_CHARS_MAX,
        "issued token exceeds its own bound"
    );
    token
}

/// Verifies `token` and returns its claims. The tag is checked, in constant time, before any
/// claim is read.
pub fn verify_token(
    key: &[u8; 32],
    token: &str,
    now_unix_s: i64,
) -> Result<TokenClaims, TokenError> {
    if token.len() > TOKEN_CHARS_MAX {
        return Err(TokenError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| TokenError::Malformed)?;
    if bytes.len() < HEADER_BYTES + TAG_BYTES || bytes[0] != TOKEN_VERSION {
        return Err(TokenError::Malformed);
    }
    let (payload, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
    if !bool::from(token_tag(key, payload).ct_eq(tag)) {
        return Err(TokenError::BadSignature);
    }
    let claims = token_payload_parse(payload).ok_or(TokenError::Malformed)?;
    if now_unix_s >= claims.expires_unix_s {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

fn token_tag(key: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    let mut message = Vec::with_capacity(TAG_LABEL.len() + payload.len());
    message.extend_from_slice(TAG_LABEL);
    message.extend_from_slice(payload);
    hmac_sha256(key, &message)
}

/// Reads the fields after the version byte; the payload must be consumed exactly.
fn token_payload_parse(payload: &[u8]) -> Option<TokenClaims> {
    let issued_unix_s = i64::from_be_bytes(payload.get(1..9)?.try_into().ok()?);
    let expires_unix_s = i64::from_be_bytes(payload.get(9..17)?.try_into().ok()?);
    let key_fingerprint = payload.get(17..17 + FINGERPRINT_BYTES)?.try_into().ok()?;
    let mut rest = payload.get(17 + FINGERPRINT_BYTES..)?;
    let mut names = [String::new(), String::new()];
    for name in &mut names {
        let (&length, tail) = rest.split_first()?;
        let text = tail.get(..usize::from(length))?;
        *name = String::from_utf8(text.to_vec()).ok()?;
        rest = &tail[usize::from(length)..];
    }
    if !rest.is_empty() {
        return None;
    }
    let [project_id, user_name] = names;
    Some(TokenClaims {
        project_id,
        user_name,
        issued_unix_s,
        expires_unix_s,
        key_fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn claims() -> TokenClaims {
        TokenClaims {
            project_id: "0123456789abcdef0123456789abcdef".into(),
            user_name: "alice".into(),
            issued_unix_s: 1_795_631_904,
            expires_unix_s: 1_795_631_904 + 86_400,
            key_fingerprint: key_fingerprint(&KEY, "AK", "SK", None),
        }
    }

    /// Verifies `token` at `now_unix_s` under `KEY` and compares with `expected`.
    fn check(token: &str, now_unix_s: i64, expected: Result<TokenClaims, TokenError>) {
        assert_eq!(verify_token(&KEY, token, now_unix_s), expected, "{token:?}");
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let token = issue_token(&KEY, &claims());
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        check(&token, claims().issued_unix_s, Ok(claims()));
        check(&token, claims().expires_unix_s - 1, Ok(claims()));
        check(&token, claims().expires_unix_s, Err(TokenError::Expired));
    }

    #[test]
    fn longest_names_fit_the_bound() {
        let mut long = claims();
        long.project_id = "p".repeat(NAME_BYTES_MAX);
        long.user_name = "é".repeat(NAME_BYTES_MAX / 2);
        let token = issue_token(&KEY, &long);
        check(&token, 0, Ok(long));
    }

    #[test]
    fn altered_tokens_fail() {
        // Goal: every single-character change is caught. Method: flip each position.
        let token = issue_token(&KEY, &claims());
        for index in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            let result = verify_token(&KEY, &altered, 0);
            assert!(
                matches!(
                    result,
                    Err(TokenError::BadSignature | TokenError::Malformed)
                ),
                "position {index}: {result:?}"
            );
        }
        let other = issue_token(&[8; 32], &claims());
        check(&other, 0, Err(TokenError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed() {
        for token in [
            "",
            "!!!!",
            "AAAA",
            "gAAAAA==",
            &"A".repeat(TOKEN_CHARS_MAX + 1),
        ] {
            check(token, 0, Err(TokenError::Malformed));
        }
        let mut payload = vec![TOKEN_VERSION];
        payload.extend_from_slice(&[0; 16 + FINGERPRINT_BYTES]);
        payload.extend_from_slice(&[5, b'a']);
        let tag = token_tag(&KEY, &payload);
        payload.extend_from_slice(&tag);
        check(
            &URL_SAFE_NO_PAD.encode(&payload),
            0,
            Err(TokenError::Malformed),
        );
        assert!(TokenError::Expired.message().contains("expired"));
    }

    #[test]
    fn fingerprints_change_with_any_credential() {
        // Goal: a token binds the AK, the SK and the password hash it was issued under.
        let base = key_fingerprint(&KEY, "AK", "SK", Some("$argon2id$a"));
        for other in [
            key_fingerprint(&KEY, "AK2", "SK", Some("$argon2id$a")),
            key_fingerprint(&KEY, "AK", "SK2", Some("$argon2id$a")),
            key_fingerprint(&KEY, "AK", "SK", Some("$argon2id$b")),
            key_fingerprint(&KEY, "AK", "SK", None),
            key_fingerprint(&KEY, "AKS", "K", Some("$argon2id$a")),
            key_fingerprint(&[8; 32], "AK", "SK", Some("$argon2id$a")),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(base, key_fingerprint(&KEY, "AK", "SK", Some("$argon2id$a")));
    }

    #[test]
    fn a_token_of_the_first_layout_is_malformed() {
        // Goal: tokens issued before fingerprints (version 1) are refused, not misread.
        let mut payload = vec![1u8];
        payload.extend_from_slice(&[0; 16]);
        payload.extend_from_slice(&[1, b'p', 1, b'u']);
        payload.extend_from_slice(&[0; TAG_BYTES]);
        check(
            &URL_SAFE_NO_PAD.encode(&payload),
            0,
            Err(TokenError::Malformed),
        );
    }
}
