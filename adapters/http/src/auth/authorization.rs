//! Parsing the `Authorization` header of `SDK-HMAC-SHA256` in its two forms (docs/dms-api.md §7.2,
//! §7.3) into borrowed parts, checking every bound before anything else reads them.
//!
//! It decides nothing about the signature itself; `signature.rs` does that.

use super::canonical::ALGORITHM;
use super::error::AuthError;
use super::limits::{
    ACCESS_KEY_BYTES_MAX, HEADER_BYTES_MAX, HEADER_NAME_BYTES_MAX, SCOPE_PART_BYTES_MAX,
    SIGNED_HEADERS_COUNT_MAX,
};

/// How the access key and the signing key are given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Access=<AK>`: the key is the SK itself.
    Access { access_key: &'a str },
    /// `Credential=<AK>/<YYYYMMDD>/<region>/<service>/sdk_request`: the key is derived.
    Scope {
        access_key: &'a str,
        date: &'a str,
        region: &'a str,
        service: &'a str,
    },
}

impl Credential<'_> {
    pub fn access_key(&self) -> &str {
        match self {
            Credential::Access { access_key } => access_key,
            Credential::Scope { access_key, .. } => access_key,
        }
    }
}

/// A parsed `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub credential: Credential<'a>,
    /// The `SignedHeaders` text exactly as sent; it is part of the canonical request.
    pub signed_headers_text: &'a str,
    /// The names in `SignedHeaders`, in the order sent, each valid and distinct.
    pub signed_headers: Vec<&'a str>,
    pub signature: [u8; 32],
}

/// Parses `SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...` or the legacy form
/// with `Credential=`. Parameters may come in any order, each exactly once.
pub fn authorization_parse(text: &str) -> Result<Authorization<'_>, AuthError> {
    if text.len() > HEADER_BYTES_MAX {
        return Err(AuthError::Malformed(
            "the Authorization header is longer than 8 KiB",
        ));
    }
    let (algorithm, parameters) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(AuthError::UnsupportedAlgorithm);
    }
    let mut access = None;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for parameter in parameters.split(',') {
        let parameter = parameter.trim_matches(' ');
        let Some((key, value)) = parameter.split_once('=') else {
            return Err(AuthError::Malformed(
                "an Authorization parameter has no '='",
            ));
        };
        let slot = match key {
            "Access" => &mut access,
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => {
                return Err(AuthError::Malformed(
                    "the Authorization header has an unknown parameter",
                ))
            }
        };
        if slot.replace(value).is_some() {
            return Err(AuthError::Malformed(
                "an Authorization parameter appears twice",
            ));
        }
    }
    let credential = match (access, credential) {
        (Some(access_key), None) => Credential::Access {
            access_key: access_key_check(access_key)?,
        },
        (None, Some(scope)) => credential_scope_parse(scope)?,
        (None, None) => {
            return Err(AuthError::Malformed(
                "the Authorization header has no Access",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(AuthError::Malformed(
                "the Authorization header has Access and Credential",
            ))
        }
    };
    let Some(signed_headers_text) = signed_headers else {
        return Err(AuthError::Malformed(
            "the Authorization header has no SignedHeaders",
        ));
    };
    let Some(signature) = signature else {
        return Err(AuthError::Malformed(
            "the Authorization header has no Signature",
        ));
    };
    Ok(Authorization {
        credential,
        signed_headers_text,
        signed_headers: signed_headers_parse(signed_headers_text)?,
        signature: signature_parse(signature)?,
    })
}

fn access_key_check(access_key: &str) -> Result<&str, AuthError> {
    if access_key.is_empty() {
        return Err(AuthError::Malformed("the access key is empty"));
    }
    if access_key.len() > ACCESS_KEY_BYTES_MAX {
        return Err(AuthError::Malformed(
            "the access key is longer than 128 bytes",
        ));
    }
    Ok(access_key)
}

/// `<AK>/<YYYYMMDD>/<region>/<service>/sdk_request`.
fn credential_scope_parse(scope: &str) -> Result<Credential<'_>, AuthError> {
    let mut parts = scope.split('/');
    let (Some(access_key), Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(AuthError::Malformed(
            "the Credential scope does not have five parts",
        ));
    };
    if terminator != "sdk_request" {
        return Err(AuthError::Malformed(
            "the Credential scope does not end in sdk_request",
        ));
    }
    if date.len() != 8 || !date.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(AuthError::BadDate);
    }
    if region.len() > SCOPE_PART_BYTES_MAX || service.len() > SCOPE_PART_BYTES_MAX {
        return Err(AuthError::Malformed(
            "a Credential region or service is longer than 64 bytes",
        ));
    }
    Ok(Credential::Scope {
        access_key: access_key_check(access_key)?,
        date,
        region,
        service,
    })
}

/// A header name as clients list it: lower-case RFC 9110 token characters.
fn header_name_is_valid(name: &str) -> bool {
    let is_token = |byte: u8| {
        byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&byte)
    };
    !name.is_empty() && name.len() <= HEADER_NAME_BYTES_MAX && name.bytes().all(is_token)
}

fn signed_headers_parse(text: &str) -> Result<Vec<&str>, AuthError> {
    let mut names = Vec::new();
    for name in text.split(';') {
        if names.len() == SIGNED_HEADERS_COUNT_MAX {
            return Err(AuthError::Malformed(
                "SignedHeaders lists more than 64 headers",
            ));
        }
        if !header_name_is_valid(name) {
            return Err(AuthError::Malformed(
                "SignedHeaders has an invalid header name",
            ));
        }
        if names.contains(&name) {
            return Err(AuthError::Malformed("SignedHeaders lists a header twice"));
        }
        names.push(name);
    }
    for required in ["host", "x-sdk-date"] {
        if !names.contains(&required) {
            return Err(AuthError::UnsignedRequiredHeader { name: required });
        }
    }
    Ok(names)
}

fn signature_parse(text: &str) -> Result<[u8; 32], AuthError> {
    let mut signature = [0u8; 32];
    if text.len() != 64 || hex::decode_to_slice(text, &mut signature).is_err() {
        return Err(AuthError::Malformed("the Signature is not 64 hex digits"));
    }
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNATURE: &str = "a7ca19a7ca19a7ca19a7ca19a7ca19a7ca19a7ca19a7ca19a7ca19a7ca19a7ca";

    /// Parses `text` and compares the outcome, with the signature left out, to `expected`.
    fn check(text: &str, expected: Result<(Credential<'_>, &[&str]), AuthError>) {
        let parsed = authorization_parse(text)
            .map(|authorization| (authorization.credential, authorization.signed_headers));
        let expected = expected.map(|(credential, names)| (credential, names.to_vec()));
        assert_eq!(parsed, expected, "{text:?}");
    }

    #[test]
    fn both_forms_parse() {
        check(
            &format!(
                "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, Signature={SIGNATURE}"
            ),
            Ok((
                Credential::Access { access_key: "AK1" },
                &["host", "x-sdk-date"],
            )),
        );
        check(
            &format!(
                "SDK-HMAC-SHA256 Signature={SIGNATURE},SignedHeaders=content-type;host;x-sdk-date,Access=A"
            ),
            Ok((Credential::Access { access_key: "A" }, &["content-type", "host", "x-sdk-date"])),
        );
        check(
            &format!(
                "SDK-HMAC-SHA256 Credential=AK/20261125/eu-de/dms/sdk_request, \
                 SignedHeaders=host;x-sdk-date, Signature={SIGNATURE}"
            ),
            Ok((
                Credential::Scope {
                    access_key: "AK",
                    date: "20261125",
                    region: "eu-de",
                    service: "dms",
                },
                &["host", "x-sdk-date"],
            )),
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let sig = SIGNATURE;
        let malformed = |what| Err(AuthError::Malformed(what));
        check(
            "SDK-HMAC-SM3 Access=A",
            Err(AuthError::UnsupportedAlgorithm),
        );
        check(
            "V11-HMAC-SHA256 Credential=A/x",
            Err(AuthError::UnsupportedAlgorithm),
        );
        check("", Err(AuthError::UnsupportedAlgorithm));
        check(
            "SDK-HMAC-SHA256",
            malformed("an Authorization parameter has no '='"),
        );
        check(
            &format!("SDK-HMAC-SHA256 Access=A, Access=B, SignedHeaders=host;x-sdk-date, Signature={sig}"),
            malformed("an Authorization parameter appears twice"),
        );
        check(
            &format!("SDK-HMAC-SHA256 Access=, SignedHeaders=host;x-sdk-date, Signature={sig}"),
            malformed("the access key is empty"),
        );
        check(
            &format!("SDK-HMAC-SHA256 Access=A, SignedHeaders=host, Signature={sig}"),
            Err(AuthError::UnsignedRequiredHeader { name: "x-sdk-date" }),
        );
        check(
            &format!("SDK-HMAC-SHA256 Access=A, SignedHeaders=Host;x-sdk-date, Signature={sig}"),
            malformed("SignedHeaders has an invalid header name"),
        );
        check(
            &format!("SDK-HMAC-SHA256 Access=A, SignedHeaders=host;;x-sdk-date, Signature={sig}"),
            malformed("SignedHeaders has an invalid header name"),
        );
        check(
            &format!(
                "SDK-HMAC-SHA256 Access=A, SignedHeaders=host;host;x-sdk-date, Signature={sig}"
            ),
            malformed("SignedHeaders lists a header twice"),
        );
        check(
            "SDK-HMAC-SHA256 Access=A, SignedHeaders=host;x-sdk-date, Signature=abc",
            malformed("the Signature is not 64 hex digits"),
        );
        check(
            &format!("SDK-HMAC-SHA256 Credential=A/2026/r/s/sdk_request, SignedHeaders=host;x-sdk-date, Signature={sig}"),
            Err(AuthError::BadDate),
        );
        check(
            &format!("SDK-HMAC-SHA256 Credential=A/20261125/r/s/x, SignedHeaders=host;x-sdk-date, Signature={sig}"),
            malformed("the Credential scope does not end in sdk_request"),
        );
        check(
            &format!("SDK-HMAC-SHA256 SignedHeaders=host;x-sdk-date, Signature={sig}"),
            malformed("the Authorization header has no Access"),
        );
    }

    #[test]
    fn bounds_are_enforced() {
        let names: Vec<String> = (0..65).map(|index| format!("x-h{index}")).collect();
        let text = format!(
            "SDK-HMAC-SHA256 Access=A, SignedHeaders={}, Signature={SIGNATURE}",
            names.join(";")
        );
        check(
            &text,
            Err(AuthError::Malformed(
                "SignedHeaders lists more than 64 headers",
            )),
        );
        let long = format!("SDK-HMAC-SHA256 Access={}", "a".repeat(HEADER_BYTES_MAX));
        check(
            &long,
            Err(AuthError::Malformed(
                "the Authorization header is longer than 8 KiB",
            )),
        );
        let long_key = format!(
            "SDK-HMAC-SHA256 Access={}, SignedHeaders=host;x-sdk-date, Signature={SIGNATURE}",
            "a".repeat(ACCESS_KEY_BYTES_MAX + 1)
        );
        check(
            &long_key,
            Err(AuthError::Malformed(
                "the access key is longer than 128 bytes",
            )),
        );
    }
}
