//! Signing a request with `SDK-HMAC-SHA256`, current form, for Sluice's own CLI client and
//! load generator. It mirrors `huaweicloudsdkcore`'s signer: every header whose name has no
//! `_` is signed, names sorted, so `verify_signature` accepts what this produces.

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use http::HeaderMap;

use super::canonical::{
    canonical_query, canonical_request, canonical_uri, sha256_hex, string_to_sign, CanonicalParts,
    QueryForm, ALGORITHM,
};
use super::dates::sdk_date_format;
use super::signature::hmac_sha256;

/// Adds `X-Sdk-Date` (from `now_unix_s`) and `Authorization` to `headers`.
///
/// `headers` must already hold `Host` (with the port when the URL has one) and every other
/// header to send, each with one value; `raw_path` and `raw_query` are sent exactly as given.
/// A present `X-Sdk-Content-Sha256` (e.g. `UNSIGNED-PAYLOAD`) replaces the body's hash.
/// Panics when `Host` is missing or a header has two values: both are caller bugs.
#[allow(clippy::too_many_arguments)] // The signature of the brief: one call, no builder.
pub fn sign_request(
    ak: &str,
    sk: &str,
    method: &str,
    raw_path: &str,
    raw_query: Option<&str>,
    headers: &mut HeaderMap,
    body: &[u8],
    now_unix_s: i64,
) {
    assert!(
        headers.contains_key(HOST),
        "sign_request needs a Host header"
    );
    let sdk_date = sdk_date_format(now_unix_s);
    headers.insert(
        HeaderName::from_static("x-sdk-date"),
        HeaderValue::from_str(&sdk_date).expect("a formatted date is a valid header value"),
    );
    headers.remove(AUTHORIZATION);
    let mut names: Vec<&HeaderName> = headers
        .keys()
        .filter(|name| !name.as_str().contains('_'))
        .collect();
    names.sort_by(|left, right| left.as_str().cmp(right.as_str()));
    let mut signed = Vec::with_capacity(names.len());
    for name in names {
        let mut values = headers.get_all(name).iter();
        let value = values.next().expect("a listed header has a value");
        assert!(
            values.next().is_none(),
            "sign_request: header {name} has two values"
        );
        signed.push((name.as_str(), value.as_bytes()));
    }
    let signed_headers = signed
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let payload_sha256 = match headers.get("x-sdk-content-sha256") {
        Some(value) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
        None => sha256_hex(body),
    };
    let canonical = canonical_request(&CanonicalParts {
        method,
        uri: &canonical_uri(raw_path),
        query: &canonical_query(raw_query, QueryForm::Current),
        headers: &signed,
        signed_headers: &signed_headers,
        payload_sha256: &payload_sha256,
    });
    let to_sign = string_to_sign(&sdk_date, None, &canonical);
    let signature = hex::encode(hmac_sha256(sk.as_bytes(), to_sign.as_bytes()));
    let authorization =
        format!("{ALGORITHM} Access={ak}, SignedHeaders={signed_headers}, Signature={signature}");
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&authorization).expect("the access key is a valid header value"),
    );
}
