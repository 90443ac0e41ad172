//! AWS Signature Version 4 verification, the header form (`Authorization:
//! AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/sqs/aws4_request, SignedHeaders=...,
//! Signature=...` with `X-Amz-Date`), as the AWS SDKs sign SQS requests.
//!
//! The verifier rebuilds the canonical request from the request as received:
//!
//! ```text
//! METHOD \n CANONICAL_URI \n CANONICAL_QUERY \n CANONICAL_HEADERS \n SIGNED_HEADERS \n PAYLOAD_SHA256
//! ```
//!
//! (each signed header as `name:value\n`, lower-case names in the order given, values
//! trimmed with inner runs of spaces collapsed), hashes it into the string to sign
//! `AWS4-HMAC-SHA256 \n X-Amz-Date \n SCOPE \n hex(sha256(canonical request))`, derives
//! the signing key `HMAC(HMAC(HMAC(HMAC("AWS4" + SK, date), region), service),
//! "aws4_request")` and compares signatures in constant time. The region is whatever the
//! client signed for (it is part of the signature); the service must be `sqs`.

use http::request::Parts;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use subtle::ConstantTimeEq;

use crate::auth::canonical::{canonical_query, sha256_hex, QueryForm};
use crate::auth::dates::sdk_date_parse;
use crate::auth::signature::hmac_sha256;

use super::errors::SqsError;

/// The algorithm token.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The only service a signature may name here.
const SERVICE: &str = "sqs";
/// Signed headers one request may list, at most.
const SIGNED_HEADERS_MAX: usize = 32;
/// Bytes of an `Authorization` header, at most.
const AUTHORIZATION_BYTES_MAX: usize = 2048;

/// RFC 3986 unreserved characters and `/` stay; everything else is `%XX`.
const PATH_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The parts of an `Authorization` header.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: [u8; 32],
}

fn parse_authorization(text: &str) -> Result<Authorization<'_>, SqsError> {
    let incomplete = |what: &str| SqsError::incomplete_signature(what);
    if text.len() > AUTHORIZATION_BYTES_MAX {
        return Err(incomplete("the Authorization header is too long"));
    }
    let rest = text
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| incomplete("the Authorization header is not AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for field in rest.split(',') {
        let (name, value) = field
            .trim()
            .split_once('=')
            .ok_or_else(|| incomplete("an Authorization field without '='"))?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return Err(incomplete("an unknown Authorization field")),
        }
    }
    let credential = credential.ok_or_else(|| incomplete("no Credential"))?;
    let mut scope = credential.split('/');
    let (Some(access_key), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(incomplete(
            "the Credential is not AK/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    let signed_headers: Vec<&str> = signed
        .ok_or_else(|| incomplete("no SignedHeaders"))?
        .split(';')
        .collect();
    if signed_headers.len() > SIGNED_HEADERS_MAX
        || signed_headers
            .iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(incomplete("SignedHeaders are not lower-case names"));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(
        signature.ok_or_else(|| incomplete("no Signature"))?,
        &mut bytes,
    )
    .map_err(|_| incomplete("the Signature is not 64 hex digits"))?;
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature: bytes,
    })
}

/// The canonical URI: the path decoded and encoded again, `/` kept.
fn canonical_uri(raw_path: &str) -> String {
    let path = percent_decode_str(raw_path).decode_utf8_lossy();
    let uri = utf8_percent_encode(&path, PATH_KEEP).to_string();
    if uri.is_empty() {
        "/".to_string()
    } else {
        uri
    }
}

/// A header value as it is signed: trimmed, inner runs of spaces collapsed to one.
fn canonical_value(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The signing key of `secret` for a scope.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let key = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let key = hmac_sha256(&key, region.as_bytes());
    let key = hmac_sha256(&key, service.as_bytes());
    hmac_sha256(&key, b"aws4_request")
}

/// The signature of a canonical request (the signer's and the verifier's one rule).
pub fn signature(
    secret: &str,
    amz_date: &str,
    scope: (&str, &str, &str),
    canonical_request: &str,
) -> [u8; 32] {
    let (date, region, service) = scope;
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    hmac_sha256(
        &signing_key(secret, date, region, service),
        to_sign.as_bytes(),
    )
}

/// The canonical request of `parts` and `body` over `signed_headers`; `None` when a
/// signed header is missing or repeated.
pub fn canonical_request(parts: &Parts, body: &[u8], signed_headers: &[&str]) -> Option<String> {
    let mut canonical = format!(
        "{}\n{}\n{}\n",
        parts.method.as_str(),
        canonical_uri(parts.uri.path()),
        canonical_query(parts.uri.query(), QueryForm::Current)
    );
    for name in signed_headers {
        let mut values = parts.headers.get_all(*name).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&canonical_value(value.as_bytes()));
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers.join(";"));
    canonical.push('\n');
    let payload = parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 64)
        .map_or_else(|| sha256_hex(body), str::to_string);
    canonical.push_str(&payload);
    Some(canonical)
}

/// Verifies the request's signature; answers the access key that signed it.
/// `secret_for_ak` maps an AK to its SK; `|X-Amz-Date - now|` must be within
/// `skew_s_max`.
pub fn verify(
    parts: &Parts,
    body: &[u8],
    secret_for_ak: impl Fn(&str) -> Option<String>,
    now_unix_s: i64,
    skew_s_max: i64,
) -> Result<String, SqsError> {
    let Some(header) = parts.headers.get("authorization") else {
        return Err(SqsError::missing_authentication());
    };
    let text = header
        .to_str()
        .map_err(|_| SqsError::incomplete_signature("the Authorization header is not text"))?;
    let authorization = parse_authorization(text)?;
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SqsError::incomplete_signature("no X-Amz-Date header"))?;
    let signed_at = sdk_date_parse(amz_date.as_bytes())
        .ok_or_else(|| SqsError::incomplete_signature("X-Amz-Date is not YYYYMMDDTHHMMSSZ"))?;
    if !amz_date.starts_with(authorization.date) || authorization.date.len() != 8 {
        return Err(SqsError::signature_mismatch(
            "the Credential's date is not X-Amz-Date's",
        ));
    }
    if authorization.service != SERVICE {
        return Err(SqsError::signature_mismatch(
            "the Credential names another service than sqs",
        ));
    }
    if signed_at.abs_diff(now_unix_s) > skew_s_max.unsigned_abs() {
        return Err(SqsError::request_expired(amz_date));
    }
    if !authorization.signed_headers.contains(&"host") {
        return Err(SqsError::incomplete_signature(
            "the Host header is not signed",
        ));
    }
    let Some(secret) = secret_for_ak(authorization.access_key) else {
        return Err(SqsError::invalid_client_token());
    };
    let canonical = canonical_request(parts, body, &authorization.signed_headers)
        .ok_or_else(|| SqsError::incomplete_signature("a signed header is missing or repeated"))?;
    let expected = signature(
        &secret,
        amz_date,
        (
            authorization.date,
            authorization.region,
            authorization.service,
        ),
        &canonical,
    );
    if bool::from(expected.ct_eq(&authorization.signature)) {
        Ok(authorization.access_key.to_string())
    } else {
        Err(SqsError::signature_mismatch(
            "The request signature we calculated does not match the signature you provided.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published SigV4 example (the `get-vanilla` case of the test suite): its
    /// canonical request hashes and signs to the documented signature.
    #[test]
    fn the_published_example_signs_to_its_documented_signature() {
        let parts = http::Request::get("/")
            .header("host", "example.amazonaws.com")
            .header("x-amz-date", "20150830T123600Z")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let canonical = canonical_request(&parts, b"", &["host", "x-amz-date"]).unwrap();
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let signed = signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830T123600Z",
            ("20150830", "us-east-1", "service"),
            &canonical,
        );
        assert_eq!(
            hex::encode(signed),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn malformed_authorizations_are_refused_not_panicked_on() {
        for text in [
            "",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=a/b/c/sqs",
            "AWS4-HMAC-SHA256 Credential=a/20250101/r/sqs/aws4_request, SignedHeaders=Host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/20250101/r/sqs/aws4_request, SignedHeaders=host, Signature=zz",
            "Bearer x",
        ] {
            assert!(parse_authorization(text).is_err(), "{text:?}");
        }
    }
}
