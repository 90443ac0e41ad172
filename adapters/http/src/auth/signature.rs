//! Verifying an `SDK-HMAC-SHA256` request, current form (docs/dms-api.md §7.2) and legacy
//! credential-scope form (§7.3), in one entry point: `verify_signature`.
//!
//! Pure: the time and the secret lookup are parameters. Every input is bounded before it is
//! hashed, and the signature comparison runs in constant time. The verifier authenticates; it
//! does not authorise (the caller checks that the AK's project owns the path's project).

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::authorization::{authorization_parse, Authorization, Credential};
use super::canonical::{
    canonical_query, canonical_request, canonical_uri, query_pair_count, sha256_hex,
    string_to_sign, CanonicalParts, QueryForm, EMPTY_PAYLOAD_SHA256,
};
use super::dates::sdk_date_parse;
use super::error::AuthError;
use super::limits::{
    BODY_BYTES_MAX, HEADER_BYTES_MAX, METHOD_BYTES_MAX, PATH_BYTES_MAX, QUERY_BYTES_MAX,
    QUERY_PAIRS_MAX,
};

/// The `X-Sdk-Content-Sha256` value that exempts the body from the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// A request as received, before any decoding: what the signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as received, still percent-encoded.
    pub raw_path: &'a str,
    /// The query as received (after `?`), still percent-encoded.
    pub raw_query: Option<&'a str>,
    /// Must include `Host` (for HTTP/2, the caller copies `:authority` into it).
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// What a verified request proved: who signed it, the signature itself (unique per signed
/// request, the key of the replay cache) and the request's `X-Sdk-Date`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub access_key: String,
    pub signature: [u8; 32],
    pub sdk_date_unix_s: i64,
}

/// The key an unknown AK's request is checked with, so that it costs the same HMACs as a
/// known one and answers at the same time. No request can match it: the result is
/// discarded.
const UNKNOWN_AK_SECRET: &str = "sluice: the access key is unknown";

/// Verifies the signature of `request` and returns its access key.
///
/// `secret_for_ak` maps an AK to its SK; `skew_s_max` bounds `|X-Sdk-Date - now|` (use
/// `limits::SKEW_S_DEFAULT`). Checks run cheapest first, so a malformed request never reaches
/// the secret lookup.
pub fn verify_signature(
    request: &SignedRequest<'_>,
    secret_for_ak: impl Fn(&str) -> Option<String>,
    now_unix_s: i64,
    skew_s_max: i64,
) -> Result<String, AuthError> {
    verify_signed_request(request, secret_for_ak, now_unix_s, skew_s_max)
        .map(|verified| verified.access_key)
}

/// [`verify_signature`], returning the signature and the date as well.
pub fn verify_signed_request(
    request: &SignedRequest<'_>,
    secret_for_ak: impl Fn(&str) -> Option<String>,
    now_unix_s: i64,
    skew_s_max: i64,
) -> Result<Verified, AuthError> {
    assert!(skew_s_max >= 0, "negative skew window {skew_s_max}");
    let authorization_text = match single_header(request.headers, "authorization")? {
        Some(value) => std::str::from_utf8(value)
            .map_err(|_| AuthError::Malformed("the Authorization header is not text"))?,
        None => return Err(AuthError::Missing),
    };
    let authorization = authorization_parse(authorization_text)?;
    request_bounds_check(request)?;
    let (sdk_date, sdk_date_unix_s) = sdk_date_check(request.headers, &authorization.credential)?;
    let skew_s = sdk_date_unix_s.saturating_sub(now_unix_s);
    if skew_s.unsigned_abs() > skew_s_max.unsigned_abs() {
        return Err(AuthError::Skew { skew_s });
    }
    let mut headers = Vec::with_capacity(authorization.signed_headers.len());
    for &name in &authorization.signed_headers {
        match single_header(request.headers, name)? {
            Some(value) => headers.push((name, value)),
            None => {
                return Err(AuthError::SignedHeaderAbsent {
                    name: name.to_string(),
                })
            }
        }
    }
    let access_key = authorization.credential.access_key();
    let secret_key = secret_for_ak(access_key);
    let known = secret_key.is_some();
    let secret_key = secret_key.unwrap_or_else(|| UNKNOWN_AK_SECRET.to_string());
    let matched = match &authorization.credential {
        Credential::Access { .. } => {
            let payload_hashes = payload_hashes(request)?;
            let mut matched = Choice::from(0);
            for payload_sha256 in payload_hashes.iter().flatten() {
                let canonical = canonical_bytes(request, &authorization, &headers, payload_sha256);
                let expected = hmac_sha256(
                    secret_key.as_bytes(),
                    string_to_sign(sdk_date, None, &canonical).as_bytes(),
                );
                matched |= expected.ct_eq(&authorization.signature);
            }
            matched
        }
        Credential::Scope {
            date,
            region,
            service,
            ..
        } => {
            let payload_sha256 = sha256_hex(request.body);
            let canonical = canonical_bytes(request, &authorization, &headers, &payload_sha256);
            let scope = format!("{date}/{region}/{service}/sdk_request");
            let signing_key = legacy_signing_key(&secret_key, date, region, service);
            let to_sign = string_to_sign(sdk_date, Some(&scope), &canonical);
            hmac_sha256(&signing_key, to_sign.as_bytes()).ct_eq(&authorization.signature)
        }
    };
    if !known {
        return Err(AuthError::UnknownAccessKey);
    }
    if !bool::from(matched) {
        return Err(AuthError::SignatureMismatch);
    }
    Ok(Verified {
        access_key: access_key.to_string(),
        signature: authorization.signature,
        sdk_date_unix_s,
    })
}

/// The one value of header `name`; two or more values, or an oversized one, are malformed.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a [u8]>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed(
            "a signed or authentication header appears twice",
        ));
    }
    if value.len() > HEADER_BYTES_MAX {
        return Err(AuthError::Malformed("a signed header is longer than 8 KiB"));
    }
    Ok(Some(value.as_bytes()))
}

fn request_bounds_check(request: &SignedRequest<'_>) -> Result<(), AuthError> {
    if request.method.is_empty() || request.method.len() > METHOD_BYTES_MAX {
        return Err(AuthError::Malformed(
            "the method is empty or longer than 32 bytes",
        ));
    }
    if request.raw_path.len() > PATH_BYTES_MAX {
        return Err(AuthError::Malformed("the path is longer than 8 KiB"));
    }
    if let Some(raw_query) = request.raw_query {
        if raw_query.len() > QUERY_BYTES_MAX {
            return Err(AuthError::Malformed("the query is longer than 16 KiB"));
        }
        if query_pair_count(raw_query) > QUERY_PAIRS_MAX {
            return Err(AuthError::Malformed(
                "the query has more than 256 parameters",
            ));
        }
    }
    if request.body.len() > BODY_BYTES_MAX {
        return Err(AuthError::Malformed("the body is larger than 32 MiB"));
    }
    Ok(())
}

/// Reads `X-Sdk-Date`; the legacy form also needs its day to be the credential scope's.
fn sdk_date_check<'a>(
    headers: &'a HeaderMap,
    credential: &Credential<'_>,
) -> Result<(&'a str, i64), AuthError> {
    let Some(value) = single_header(headers, "x-sdk-date")? else {
        return Err(AuthError::MissingDate);
    };
    let unix_s = sdk_date_parse(value).ok_or(AuthError::BadDate)?;
    let text = std::str::from_utf8(value).expect("a parsed date is ASCII");
    if let Credential::Scope { date, .. } = credential {
        if text[..8] != **date {
            return Err(AuthError::BadDate);
        }
    }
    Ok((text, unix_s))
}

/// The payload hashes the current form may have signed. `X-Sdk-Content-Sha256` replaces the
/// body's hash, but `huaweicloudsdkcore` signs the empty-body hash whenever the body is empty,
/// even with that header set, so an empty body accepts both.
fn payload_hashes(request: &SignedRequest<'_>) -> Result<[Option<String>; 2], AuthError> {
    let Some(value) = single_header(request.headers, "x-sdk-content-sha256")? else {
        return Ok([Some(sha256_hex(request.body)), None]);
    };
    let value = std::str::from_utf8(value)
        .map_err(|_| AuthError::Malformed("X-Sdk-Content-Sha256 is not text"))?;
    if value != UNSIGNED_PAYLOAD {
        let is_hex = value.len() == 64
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_hex {
            return Err(AuthError::Malformed(
                "X-Sdk-Content-Sha256 is neither UNSIGNED-PAYLOAD nor a lower-case hex SHA-256",
            ));
        }
        if value != sha256_hex(request.body) {
            return Err(AuthError::BodyHashMismatch);
        }
    }
    let empty = request
        .body
        .is_empty()
        .then(|| EMPTY_PAYLOAD_SHA256.to_string());
    Ok([Some(value.to_string()), empty])
}

fn canonical_bytes(
    request: &SignedRequest<'_>,
    authorization: &Authorization<'_>,
    headers: &[(&str, &[u8])],
    payload_sha256: &str,
) -> Vec<u8> {
    let form = match authorization.credential {
        Credential::Access { .. } => QueryForm::Current,
        Credential::Scope { .. } => QueryForm::Legacy,
    };
    canonical_request(&CanonicalParts {
        method: request.method,
        uri: &canonical_uri(request.raw_path),
        query: &canonical_query(request.raw_query, form),
        headers,
        signed_headers: authorization.signed_headers_text,
        payload_sha256,
    })
}

/// kDate = HMAC("SDK"+SK, YYYYMMDD), kRegion, kService, then kSign = HMAC(kService, "sdk_request").
fn legacy_signing_key(secret_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let date_key = hmac_sha256(format!("SDK{secret_key}").as_bytes(), date.as_bytes());
    let region_key = hmac_sha256(&date_key, region.as_bytes());
    let service_key = hmac_sha256(&region_key, service.as_bytes());
    hmac_sha256(&service_key, b"sdk_request")
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::auth::sign::sign_request;

    const AK: &str = "SELFTESTAK0000000001";
    const SK: &str = "selftest-secret-key-0000000000000000000001";
    const NOW: i64 = 1_795_631_904;

    /// One request: the fields of `SignedRequest`, owned, so a test can tamper with any.
    #[derive(Clone)]
    struct Owned {
        method: String,
        path: String,
        query: Option<String>,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    fn signed(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Owned {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:43175"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "x-project-id",
            HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
        );
        sign_request(AK, SK, method, path, query, &mut headers, body, NOW);
        Owned {
            method: method.into(),
            path: path.into(),
            query: query.map(str::to_string),
            headers,
            body: body.to_vec(),
        }
    }

    /// Verifies `request` at `now_unix_s` against the one known key pair.
    fn check(request: &Owned, now_unix_s: i64, expected: Result<&str, AuthError>) {
        let result = verify_signature(
            &SignedRequest {
                method: &request.method,
                raw_path: &request.path,
                raw_query: request.query.as_deref(),
                headers: &request.headers,
                body: &request.body,
            },
            |ak| (ak == AK).then(|| SK.to_string()),
            now_unix_s,
            crate::auth::limits::SKEW_S_DEFAULT,
        );
        assert_eq!(result.as_deref().map_err(Clone::clone), expected);
    }

    fn set(request: &Owned, name: &'static str, value: &str) -> Owned {
        let mut request = request.clone();
        request
            .headers
            .insert(name, HeaderValue::from_str(value).unwrap());
        request
    }

    #[test]
    fn signed_requests_verify() {
        // Goal: sign_request and verify_signature agree on varied requests.
        check(&signed("GET", "/v1.0/p/queues", None, b""), NOW, Ok(AK));
        check(
            &signed("post", "/v1.0/p/q%20x/~a", Some("b=2&a=1&a=0&c"), b"{}"),
            NOW,
            Ok(AK),
        );
        check(
            &signed("DELETE", "/", Some("k=%E4%B8%AD+x"), b""),
            NOW,
            Ok(AK),
        );
        let request = signed("GET", "/v2/p/queues", None, b"");
        check(&request, NOW + SKEW_S, Ok(AK));
        check(&request, NOW - SKEW_S, Ok(AK));
    }

    const SKEW_S: i64 = crate::auth::limits::SKEW_S_DEFAULT;

    #[test]
    fn tampering_is_detected() {
        // Goal: every part the signature covers is bound to it. Method: change one part.
        let request = signed(
            "POST",
            "/v1.0/p/queues/q/messages",
            Some("a=1"),
            b"{\"m\":1}",
        );
        let mut other = request.clone();
        other.body = b"{\"m\":2}".to_vec();
        check(&other, NOW, Err(AuthError::SignatureMismatch));
        let mut other = request.clone();
        other.path = "/v1.0/p/queues/r/messages".into();
        check(&other, NOW, Err(AuthError::SignatureMismatch));
        let mut other = request.clone();
        other.query = Some("a=2".into());
        check(&other, NOW, Err(AuthError::SignatureMismatch));
        let mut other = request.clone();
        other.method = "PUT".into();
        check(&other, NOW, Err(AuthError::SignatureMismatch));
        check(
            &set(&request, "x-project-id", "other"),
            NOW,
            Err(AuthError::SignatureMismatch),
        );
        check(
            &set(&request, "host", "127.0.0.1:1"),
            NOW,
            Err(AuthError::SignatureMismatch),
        );
        check(
            &set(&request, "x-sdk-date", "20261125T183825Z"),
            NOW,
            Err(AuthError::SignatureMismatch),
        );
        let auth = request.headers["authorization"]
            .to_str()
            .unwrap()
            .replace(AK, "OTHER");
        check(
            &set(&request, "authorization", &auth),
            NOW,
            Err(AuthError::UnknownAccessKey),
        );
    }

    #[test]
    fn time_and_headers_are_checked() {
        let request = signed("GET", "/v1.0/p/queues", None, b"");
        check(
            &request,
            NOW + SKEW_S + 1,
            Err(AuthError::Skew {
                skew_s: -SKEW_S - 1,
            }),
        );
        check(
            &request,
            NOW - SKEW_S - 1,
            Err(AuthError::Skew { skew_s: SKEW_S + 1 }),
        );
        check(
            &set(&request, "x-sdk-date", "2026-11-25"),
            NOW,
            Err(AuthError::BadDate),
        );
        let mut other = request.clone();
        other.headers.remove("x-sdk-date");
        check(&other, NOW, Err(AuthError::MissingDate));
        let mut other = request.clone();
        other.headers.remove("x-project-id");
        let absent = AuthError::SignedHeaderAbsent {
            name: "x-project-id".into(),
        };
        check(&other, NOW, Err(absent));
        let mut other = request.clone();
        other
            .headers
            .append("host", HeaderValue::from_static("evil"));
        let twice = AuthError::Malformed("a signed or authentication header appears twice");
        check(&other, NOW, Err(twice));
        let mut other = request.clone();
        other.headers.remove("authorization");
        check(&other, NOW, Err(AuthError::Missing));
        let long = "x".repeat(crate::auth::limits::HEADER_BYTES_MAX + 1);
        let too_long = AuthError::Malformed("a signed header is longer than 8 KiB");
        check(&set(&request, "x-project-id", &long), NOW, Err(too_long));
        let mut other = request.clone();
        other.path = format!("/{}", "a".repeat(crate::auth::limits::PATH_BYTES_MAX));
        check(
            &other,
            NOW,
            Err(AuthError::Malformed("the path is longer than 8 KiB")),
        );
    }

    #[test]
    fn legacy_form_verifies_a_vector_of_the_real_signer() {
        // Goal: the credential-scope form works without Python. Method: a request signed by
        // huaweicloud-sdk-python 1.0.28's AkSksignature (from tests/py/sign_vectors.py), with
        // repeated keys kept in request order and `+` read as a space.
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:43175"));
        headers.insert("x-sdk-date", HeaderValue::from_static("20261125T183824Z"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "authorization",
            HeaderValue::from_static(
                "SDK-HMAC-SHA256 Credential=SELFTESTAK0000000001/20261125/eu-de/dms/sdk_request, \
                 SignedHeaders=host;x-sdk-date, \
                 Signature=24191e18301273736e86d381ea7216ef0b934bda7653a04e257e7a6dcf64ba6a",
            ),
        );
        let request = Owned {
            method: "GET".into(),
            path: "/v1.0/0123456789abcdef0123456789abcdef/queues/q/groups".into(),
            query: Some("include_deadletter=true&tag=b&tag=a&name=a+b%2Bc".into()),
            headers,
            body: Vec::new(),
        };
        check(&request, NOW, Ok(AK));
        let mut other = request.clone();
        other.query = Some("include_deadletter=true&tag=a&tag=b&name=a+b%2Bc".into());
        check(&other, NOW, Err(AuthError::SignatureMismatch));
        let scope = request.headers["authorization"]
            .to_str()
            .unwrap()
            .replace("/20261125/", "/20261124/");
        check(
            &set(&request, "authorization", &scope),
            NOW,
            Err(AuthError::BadDate),
        );
    }

    #[test]
    fn content_sha256_header_is_honoured() {
        // Goal: UNSIGNED-PAYLOAD exempts the body; a hash must be the body's; and an empty body
        // also accepts the empty hash, which huaweicloudsdkcore signs in that case.
        let body = b"binary \x00 payload";
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("h"));
        headers.insert(
            "x-sdk-content-sha256",
            HeaderValue::from_static(UNSIGNED_PAYLOAD),
        );
        sign_request(AK, SK, "PUT", "/o", None, &mut headers, body, NOW);
        let request = Owned {
            method: "PUT".into(),
            path: "/o".into(),
            query: None,
            headers,
            body: body.to_vec(),
        };
        check(&request, NOW, Ok(AK));
        let mut other = request.clone();
        other.body = b"another body".to_vec();
        check(&other, NOW, Ok(AK));
        let wrong = "0".repeat(64);
        check(
            &set(&request, "x-sdk-content-sha256", &wrong),
            NOW,
            Err(AuthError::BodyHashMismatch),
        );
        let bad = AuthError::Malformed(
            "X-Sdk-Content-Sha256 is neither UNSIGNED-PAYLOAD nor a lower-case hex SHA-256",
        );
        check(
            &set(&request, "x-sdk-content-sha256", "nope"),
            NOW,
            Err(bad),
        );
    }
}
