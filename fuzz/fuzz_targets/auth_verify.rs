//! Arbitrary bytes, split on NUL into method, path, query, headers (`name:value` lines), body,
//! `Authorization` and `X-Auth-Token`, into `verify_signature` and `verify_token`: neither may
//! panic. Then the same request is signed with `sign_request` and must verify, unless a limit
//! refuses it: a signature mismatch there means the signer and verifier canonicalise
//! differently.

#![no_main]

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use sluice_http::auth::{
    issue_token, sign_request, verify_signature, verify_token, AuthError, SignedRequest,
    SKEW_S_DEFAULT,
};

const NOW: i64 = 1_795_631_904;
const AK: &str = "FUZZAK";
const SK: &str = "fuzz-secret";
const TOKEN_KEY: [u8; 32] = [9; 32];

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|byte| *byte == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let method = next();
    let path = next();
    let query_text = next();
    let header_text = next();
    let body = next().into_bytes();
    let authorization = next();
    let token = next();
    // A query that starts with '!' stands for "no query at all".
    let query = (!query_text.starts_with('!')).then_some(query_text.as_str());
    let mut headers = HeaderMap::new();
    for line in header_text.split('\n') {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }

    let mut received = headers.clone();
    if let Ok(value) = HeaderValue::from_str(&authorization) {
        received.insert("authorization", value);
    }
    let request = SignedRequest {
        method: &method,
        raw_path: &path,
        raw_query: query,
        headers: &received,
        body: &body,
    };
    let result = verify_signature(&request, |_| Some(SK.to_string()), NOW, SKEW_S_DEFAULT);
    if let Err(error) = &result {
        assert!(!error.message().is_empty());
    }

    if let Ok(claims) = verify_token(&TOKEN_KEY, &token, NOW) {
        assert_eq!(
            issue_token(&TOKEN_KEY, &claims),
            token,
            "one encoding per token"
        );
    }

    if !headers.contains_key("host") {
        headers.insert("host", HeaderValue::from_static("fuzz.example:1"));
    }
    sign_request(AK, SK, &method, &path, query, &mut headers, &body, NOW);
    let request = SignedRequest {
        method: &method,
        raw_path: &path,
        raw_query: query,
        headers: &headers,
        body: &body,
    };
    match verify_signature(&request, |ak| (ak == AK).then(|| SK.to_string()), NOW, 0) {
        Ok(ak) => assert_eq!(ak, AK),
        Err(AuthError::Malformed(_) | AuthError::BodyHashMismatch) => {}
        Err(error) => panic!("a request signed by sign_request fails: {error:?}"),
    }
});
