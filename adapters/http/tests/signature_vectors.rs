//! Verifies `verify_signature` against requests signed by the real client libraries
//! (docs/dms-api.md §7: a verifier is proven against requests the real libraries signed).
//!
//! Method: `tests/py/sign_vectors.py`, run with the pinned venv's Python named by
//! `SLUICE_PYTHON` (`cargo xtask test` creates it; see xtask/src/python.rs), signs varied
//! requests with `huaweicloudsdkcore`, `apigateway-sdk-python` and the legacy
//! `huaweicloud-sdk-python` signer and prints them as JSON. Every vector must verify, and
//! changing its body, a signed header, path, query, date or secret must make it fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use serde_json::Value;
use sluice_http::auth::{verify_signature, AuthError, SignedRequest, SKEW_S_DEFAULT};

/// One signed request as the script prints it.
#[derive(Clone)]
struct Vector {
    signer: String,
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
    ak: String,
    sk: String,
    now_unix_s: i64,
}

fn python() -> PathBuf {
    match std::env::var_os("SLUICE_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => panic!(
            "SLUICE_PYTHON is not set. Run this test via `cargo xtask test`, which creates the \
             pinned Python venv (target/py-venv, xtask/src/python.rs) and sets SLUICE_PYTHON; \
             by hand: SLUICE_PYTHON=target/py-venv/bin/python cargo test -p sluice-http \
             --test signature_vectors -- --ignored"
        ),
    }
}

/// The side directory holding the legacy SDK: `SLUICE_PY_LEGACY`, else `<venv>/legacy`.
fn legacy_dir(python: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_PY_LEGACY") {
        return PathBuf::from(dir);
    }
    let venv = python
        .parent()
        .and_then(Path::parent)
        .expect("python lives in <venv>/bin");
    venv.join("legacy")
}

fn vectors() -> Vec<Vector> {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/sign_vectors.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(legacy_dir(&python))
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    assert!(
        output.status.success(),
        "sign_vectors.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("the script prints JSON");
    json.as_array()
        .expect("a JSON list")
        .iter()
        .map(vector_parse)
        .collect()
}

fn vector_parse(json: &Value) -> Vector {
    let text = |key: &str| {
        json[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {json}"))
            .to_string()
    };
    let mut headers = HeaderMap::new();
    for pair in json["headers"].as_array().expect("headers") {
        let name = HeaderName::from_bytes(pair[0].as_str().unwrap().as_bytes()).unwrap();
        let value = HeaderValue::from_bytes(pair[1].as_str().unwrap().as_bytes()).unwrap();
        headers.append(name, value);
    }
    Vector {
        signer: text("signer"),
        method: text("method"),
        path: text("path"),
        query: json["query"].as_str().map(str::to_string),
        headers,
        body: STANDARD.decode(text("body_b64")).unwrap(),
        ak: text("ak"),
        sk: text("sk"),
        now_unix_s: json["now_unix_s"].as_i64().unwrap(),
    }
}

/// Verifies `vector` with `secret` as the only known SK.
fn verify(vector: &Vector, secret: &str) -> Result<String, AuthError> {
    verify_signature(
        &SignedRequest {
            method: &vector.method,
            raw_path: &vector.path,
            raw_query: vector.query.as_deref(),
            headers: &vector.headers,
            body: &vector.body,
        },
        |ak| (ak == vector.ak).then(|| secret.to_string()),
        vector.now_unix_s,
        SKEW_S_DEFAULT,
    )
}

/// Checks that `vector` verifies as-is and fails once each signed part is changed.
fn check(vector: &Vector) {
    let name = format!(
        "{} {} {} {:?}",
        vector.signer, vector.method, vector.path, vector.query
    );
    assert_eq!(verify(vector, &vector.sk), Ok(vector.ak.clone()), "{name}");
    let mismatch = Err(AuthError::SignatureMismatch);
    assert_eq!(
        verify(vector, &format!("{}x", vector.sk)),
        mismatch,
        "{name}: secret"
    );

    let mut other = vector.clone();
    other.body.push(b'x');
    let unsigned_body = vector
        .headers
        .get("x-sdk-content-sha256")
        .is_some_and(|v| v == "UNSIGNED-PAYLOAD");
    if unsigned_body && !vector.body.is_empty() {
        assert_eq!(
            verify(&other, &vector.sk),
            Ok(vector.ak.clone()),
            "{name}: unsigned body"
        );
    } else {
        assert_eq!(verify(&other, &vector.sk), mismatch, "{name}: body");
    }
    let mut other = vector.clone();
    other.path.push('x');
    assert_eq!(verify(&other, &vector.sk), mismatch, "{name}: path");
    let mut other = vector.clone();
    other.query = Some(match &vector.query {
        Some(query) => format!("{query}&tampered=1"),
        None => "tampered=1".to_string(),
    });
    assert_eq!(verify(&other, &vector.sk), mismatch, "{name}: query");
    let mut other = vector.clone();
    other
        .headers
        .insert("host", HeaderValue::from_static("tampered.example:1"));
    assert_eq!(verify(&other, &vector.sk), mismatch, "{name}: host");
    let mut other = vector.clone();
    let date = vector.headers["x-sdk-date"]
        .to_str()
        .unwrap()
        .replace("24Z", "25Z");
    other
        .headers
        .insert("x-sdk-date", HeaderValue::from_str(&date).unwrap());
    assert_eq!(verify(&other, &vector.sk), mismatch, "{name}: date");
    for signed in ["content-type", "user-agent", "x-project-id"] {
        if vector.headers.contains_key(signed)
            && signed_headers(vector).contains(&signed.to_string())
        {
            let mut other = vector.clone();
            other
                .headers
                .insert(signed, HeaderValue::from_static("tampered"));
            assert_eq!(verify(&other, &vector.sk), mismatch, "{name}: {signed}");
        }
    }
    let mut other = vector.clone();
    other
        .headers
        .insert("x-unsigned-extra", HeaderValue::from_static("not covered"));
    assert_eq!(
        verify(&other, &vector.sk),
        Ok(vector.ak.clone()),
        "{name}: unsigned header"
    );
}

fn signed_headers(vector: &Vector) -> Vec<String> {
    let authorization = vector.headers["authorization"].to_str().unwrap();
    let list = authorization
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    list.split(';').map(str::to_string).collect()
}

#[test]
#[ignore = "needs the pinned Python SDK venv: `cargo xtask test` runs it"]
fn real_client_signatures_verify_and_tampering_fails() {
    let vectors = vectors();
    let count = |prefix: &str| {
        vectors
            .iter()
            .filter(|v| v.signer.starts_with(prefix))
            .count()
    };
    assert_eq!(count("huaweicloudsdkcore"), 12);
    assert_eq!(count("apigateway-sdk-python"), 5);
    assert_eq!(count("huaweicloud-sdk-python (legacy)"), 4);
    for vector in &vectors {
        check(vector);
    }
}
