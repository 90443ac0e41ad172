//! AWS Signature Version 4 verification in its two forms: the header form
//! (`Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/sqs/aws4_request,
//! SignedHeaders=..., Signature=...` with `X-Amz-Date`), as the AWS SDKs sign SQS
//! requests, and the presigned form (the same fields as `X-Amz-Algorithm`,
//! `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders` and
//! `X-Amz-Signature` query parameters, the query less `X-Amz-Signature` being signed).
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

use crate::auth::canonical::{canonical_query, query_pair_count, sha256_hex, QueryForm};
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
/// Query parameters a presigned request may carry, at most.
const QUERY_PAIRS_MAX: usize = 512;
/// The longest a presigned signature holds: 7 days, as AWS allows.
const PRESIGNED_EXPIRES_S_MAX: i64 = 7 * 24 * 3600;
/// The query parameters of the presigned form, in the order `parse_presigned` keeps them.
const PRESIGNED_FIELDS: [&str; 6] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
];
/// The index of `X-Amz-Signature` in `PRESIGNED_FIELDS`: the one field not signed.
const SIGNATURE_FIELD: usize = 5;

/// RFC 3986 unreserved characters and `/` stay; everything else is `%XX`.
const PATH_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// What a request's signature names, in either form: the access key, the scope, the
/// signed headers, the signature, the signing time and (presigned) how long it holds.
struct Signed {
    access_key: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: [u8; 32],
    amz_date: String,
    /// Seconds the signature holds after `amz_date` (`X-Amz-Expires`); `None` in the
    /// header form, which holds within the clock-skew bound.
    expires_s: Option<i64>,
}

/// The scope of a credential `AK/DATE/REGION/SERVICE/aws4_request`: AK, date, region,
/// service.
fn parse_credential(credential: &str) -> Result<[String; 4], SqsError> {
    let mut scope = credential.split('/');
    let (Some(access_key), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(SqsError::incomplete_signature(
            "the Credential is not AK/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    Ok([access_key, date, region, service].map(str::to_string))
}

/// Signed header names, `;`-separated lower-case names.
fn parse_signed_headers(text: &str) -> Result<Vec<String>, SqsError> {
    let names: Vec<String> = text.split(';').map(str::to_string).collect();
    if names.len() > SIGNED_HEADERS_MAX
        || names
            .iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(SqsError::incomplete_signature(
            "SignedHeaders are not lower-case names",
        ));
    }
    Ok(names)
}

/// A signature: 64 hex digits.
fn parse_signature(text: &str) -> Result<[u8; 32], SqsError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|_| SqsError::incomplete_signature("the Signature is not 64 hex digits"))?;
    Ok(bytes)
}

/// The header form: the `Authorization` header's fields and `X-Amz-Date`.
fn parse_authorization(text: &str, amz_date: Option<&str>) -> Result<Signed, SqsError> {
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
    let [access_key, date, region, service] =
        parse_credential(credential.ok_or_else(|| incomplete("no Credential"))?)?;
    let signed_headers =
        parse_signed_headers(signed.ok_or_else(|| incomplete("no SignedHeaders"))?)?;
    let signature = parse_signature(signature.ok_or_else(|| incomplete("no Signature"))?)?;
    let amz_date = amz_date.ok_or_else(|| incomplete("no X-Amz-Date header"))?;
    Ok(Signed {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature,
        amz_date: amz_date.to_string(),
        expires_s: None,
    })
}

/// The presigned form: the signature's fields in the query string (`X-Amz-Algorithm`,
/// `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`,
/// `X-Amz-Signature`); `None` when the query carries no `X-Amz-Signature`. Answers the
/// fields and the raw query without the signature, which is what was signed.
fn parse_presigned(raw_query: &str) -> Result<Option<(Signed, String)>, SqsError> {
    let incomplete = |what: &str| SqsError::incomplete_signature(what);
    if query_pair_count(raw_query) > QUERY_PAIRS_MAX {
        return Err(incomplete("the query string has too many parameters"));
    }
    let mut fields: [Option<String>; 6] = Default::default();
    let mut signed_query = Vec::new();
    for piece in raw_query.split('&').filter(|piece| !piece.is_empty()) {
        let (raw_name, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
        let name = percent_decode_str(raw_name).decode_utf8_lossy();
        let Some(index) = PRESIGNED_FIELDS.iter().position(|field| *field == name) else {
            signed_query.push(piece);
            continue;
        };
        if index != SIGNATURE_FIELD {
            signed_query.push(piece);
        }
        let value = percent_decode_str(raw_value)
            .decode_utf8_lossy()
            .into_owned();
        if fields[index].replace(value).is_some() {
            return Err(incomplete("a signature parameter is repeated"));
        }
    }
    let [algorithm, credential, amz_date, expires, signed, signature] = fields;
    let Some(signature) = signature else {
        return Ok(None);
    };
    if algorithm.as_deref() != Some(ALGORITHM) {
        return Err(incomplete("X-Amz-Algorithm is not AWS4-HMAC-SHA256"));
    }
    let [access_key, date, region, service] =
        parse_credential(&credential.ok_or_else(|| incomplete("no X-Amz-Credential"))?)?;
    let expires_s = expires
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|seconds| (1..=PRESIGNED_EXPIRES_S_MAX).contains(seconds))
        .ok_or_else(|| incomplete("X-Amz-Expires is not a number of seconds from 1 to 604800"))?;
    let signed = Signed {
        access_key,
        date,
        region,
        service,
        signed_headers: parse_signed_headers(
            &signed.ok_or_else(|| incomplete("no X-Amz-SignedHeaders"))?,
        )?,
        signature: parse_signature(&signature)?,
        amz_date: amz_date.ok_or_else(|| incomplete("no X-Amz-Date"))?,
        expires_s: Some(expires_s),
    };
    Ok(Some((signed, signed_query.join("&"))))
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

/// The canonical request of `parts` and `body` over `signed_headers`, with `raw_query`
/// as the query that was signed (the request's, less `X-Amz-Signature` when presigned);
/// `None` when a signed header is missing or repeated.
pub fn canonical_request(
    parts: &Parts,
    raw_query: Option<&str>,
    body: &[u8],
    signed_headers: &[impl AsRef<str>],
) -> Option<String> {
    let mut canonical = format!(
        "{}\n{}\n{}\n",
        parts.method.as_str(),
        canonical_uri(parts.uri.path()),
        canonical_query(raw_query, QueryForm::Current)
    );
    for name in signed_headers {
        let name = name.as_ref();
        let mut values = parts.headers.get_all(name).iter();
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
    let names: Vec<&str> = signed_headers.iter().map(AsRef::as_ref).collect();
    canonical.push_str(&names.join(";"));
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

/// Verifies the request's signature, in the header form (`Authorization`) or the
/// presigned form (`X-Amz-Signature` in the query); answers the access key that signed
/// it. `secret_for_ak` maps an AK to its SK. A header-form signature holds while
/// `|X-Amz-Date - now|` is within `skew_s_max`; a presigned one from `skew_s_max` before
/// `X-Amz-Date` until `X-Amz-Expires` seconds after it.
pub fn verify(
    parts: &Parts,
    body: &[u8],
    secret_for_ak: impl Fn(&str) -> Option<String>,
    now_unix_s: i64,
    skew_s_max: i64,
) -> Result<String, SqsError> {
    let (signed, signed_query) = if let Some(header) = parts.headers.get("authorization") {
        let text = header
            .to_str()
            .map_err(|_| SqsError::incomplete_signature("the Authorization header is not text"))?;
        let amz_date = parts
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok());
        (
            parse_authorization(text, amz_date)?,
            parts.uri.query().map(str::to_string),
        )
    } else {
        match parse_presigned(parts.uri.query().unwrap_or_default())? {
            Some((signed, query)) => (signed, Some(query)),
            None => return Err(SqsError::missing_authentication()),
        }
    };
    let amz_date = signed.amz_date.as_str();
    let signed_at = sdk_date_parse(amz_date.as_bytes())
        .ok_or_else(|| SqsError::incomplete_signature("X-Amz-Date is not YYYYMMDDTHHMMSSZ"))?;
    if !amz_date.starts_with(&signed.date) || signed.date.len() != 8 {
        return Err(SqsError::signature_mismatch(
            "the Credential's date is not X-Amz-Date's",
        ));
    }
    if signed.service != SERVICE {
        return Err(SqsError::signature_mismatch(
            "the Credential names another service than sqs",
        ));
    }
    let skew = skew_s_max.unsigned_abs();
    let in_time = match signed.expires_s {
        None => signed_at.abs_diff(now_unix_s) <= skew,
        Some(expires_s) => {
            now_unix_s >= signed_at.saturating_sub_unsigned(skew)
                && now_unix_s <= signed_at.saturating_add(expires_s)
        }
    };
    if !in_time {
        return Err(SqsError::request_expired(amz_date));
    }
    if !signed.signed_headers.iter().any(|name| name == "host") {
        return Err(SqsError::incomplete_signature(
            "the Host header is not signed",
        ));
    }
    let Some(secret) = secret_for_ak(&signed.access_key) else {
        return Err(SqsError::invalid_client_token());
    };
    let canonical = canonical_request(parts, signed_query.as_deref(), body, &signed.signed_headers)
        .ok_or_else(|| SqsError::incomplete_signature("a signed header is missing or repeated"))?;
    let expected = signature(
        &secret,
        amz_date,
        (&signed.date, &signed.region, &signed.service),
        &canonical,
    );
    if bool::from(expected.ct_eq(&signed.signature)) {
        Ok(signed.access_key)
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
        let canonical = canonical_request(&parts, None, b"", &["host", "x-amz-date"]).unwrap();
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
            assert!(
                parse_authorization(text, Some("20250101T000000Z")).is_err(),
                "{text:?}"
            );
        }
    }

    /// Signs `query` (operation parameters) in the presigned form at `amz_date`, valid
    /// `expires` seconds, and answers the request as sent.
    fn presigned(query: &str, amz_date: &str, expires: u32, secret: &str) -> Parts {
        let date = &amz_date[..8];
        let unsigned = format!(
            "{query}&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AK%2F{date}%2Fregion-1%2Fsqs%2Faws4_request\
             &X-Amz-Date={amz_date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
        );
        let request = |query: &str| {
            http::Request::get(format!("/123/orders?{query}"))
                .header("host", "127.0.0.1:8080")
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let canonical =
            canonical_request(&request(&unsigned), Some(&unsigned), b"", &["host"]).unwrap();
        let signed = signature(secret, amz_date, (date, "region-1", "sqs"), &canonical);
        request(&format!(
            "{unsigned}&X-Amz-Signature={}",
            hex::encode(signed)
        ))
    }

    fn check(parts: &Parts, now: i64) -> Result<String, &'static str> {
        let secret = |ak: &str| (ak == "AK").then(|| "SK".to_string());
        verify(parts, b"", secret, now, 300).map_err(|error| error.name)
    }

    /// 2026-12-07T12:00:00Z.
    const NOON: i64 = 1_796_644_800;

    #[test]
    fn a_presigned_request_holds_from_the_skew_before_its_date_to_its_expiry() {
        let parts = presigned(
            "Action=ListQueues&Version=2012-11-05",
            "20261207T120000Z",
            60,
            "SK",
        );
        assert_eq!(check(&parts, NOON), Ok("AK".to_string()));
        assert_eq!(check(&parts, NOON + 60), Ok("AK".to_string()));
        assert_eq!(check(&parts, NOON - 300), Ok("AK".to_string()));
        assert_eq!(check(&parts, NOON + 61), Err("RequestExpired"));
        assert_eq!(check(&parts, NOON - 301), Err("RequestExpired"));
    }

    #[test]
    fn a_presigned_request_changed_or_signed_with_another_secret_is_refused() {
        let parts = presigned(
            "Action=ListQueues&Version=2012-11-05",
            "20261207T120000Z",
            60,
            "SK",
        );
        let query = parts
            .uri
            .query()
            .unwrap()
            .replace("ListQueues", "DeleteQueue");
        let changed = http::Request::get(format!("/123/orders?{query}"))
            .header("host", "127.0.0.1:8080")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(check(&changed, NOON), Err("SignatureDoesNotMatch"));
        let other = presigned("Action=ListQueues", "20261207T120000Z", 60, "other");
        assert_eq!(check(&other, NOON), Err("SignatureDoesNotMatch"));
    }

    #[test]
    fn malformed_presigned_queries_are_refused_not_panicked_on() {
        let signature = format!("X-Amz-Signature={}", "0".repeat(64));
        let credential = "X-Amz-Credential=AK%2F20261207%2Fr%2Fsqs%2Faws4_request";
        let base = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&{credential}&X-Amz-Date=20261207T120000Z\
             &X-Amz-SignedHeaders=host"
        );
        for (query, name) in [
            (String::new(), "MissingAuthenticationToken"),
            ("Action=ListQueues".to_string(), "MissingAuthenticationToken"),
            (format!("{base}&X-Amz-Expires=60&{signature}&{signature}"), "IncompleteSignature"),
            (format!("{base}&X-Amz-Expires=0&{signature}"), "IncompleteSignature"),
            (format!("{base}&X-Amz-Expires=604801&{signature}"), "IncompleteSignature"),
            (format!("{base}&X-Amz-Expires=x&{signature}"), "IncompleteSignature"),
            (format!("{base}&X-Amz-Expires=60&X-Amz-Signature=zz"), "IncompleteSignature"),
            (
                format!("{credential}&X-Amz-Date=20261207T120000Z&X-Amz-SignedHeaders=host&X-Amz-Expires=60&{signature}"),
                "IncompleteSignature",
            ),
            ("a&".repeat(QUERY_PAIRS_MAX + 1), "IncompleteSignature"),
        ] {
            let parts = http::Request::get(format!("/?{query}"))
                .header("host", "h")
                .body(())
                .unwrap()
                .into_parts()
                .0;
            assert_eq!(check(&parts, NOON), Err(name), "{query:?}");
        }
    }
}
