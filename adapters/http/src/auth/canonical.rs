//! The canonical request of `SDK-HMAC-SHA256`: the byte string both the signer and the verifier
//! hash, built from the request as received (docs/dms-api.md §7.2 step 3 and §7.3).
//!
//! Everything here mirrors what the real signers do in Python, byte for byte:
//! `urllib.parse.unquote` (invalid UTF-8 becomes U+FFFD, invalid `%` escapes stay literal) and
//! `quote(s, safe='~')` (only `A-Z a-z 0-9 - _ . ~` stay unescaped, hex is upper case). This
//! module performs no limit checks: the verifier bounds its inputs before calling it, and the
//! signer signs what its caller built.

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// RFC 3986 unreserved characters stay; everything else is `%XX`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Hex SHA-256 of the empty string: the payload hash of a request without a body.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The algorithm token and the first line of the string to sign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// Which signer's query rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryForm {
    /// Current form: the client sends the canonical query itself, so `+` is a literal plus;
    /// pairs sort by key, then by value.
    Current,
    /// Legacy form: the client sends `requests`' form encoding, so `+` is a space; a stable sort
    /// by key only, so repeated keys keep their order in the request.
    Legacy,
}

/// Python's `unquote`: percent-decode, then decode UTF-8 replacing invalid sequences.
fn unquote(text: &str) -> String {
    percent_decode(text.as_bytes())
        .decode_utf8_lossy()
        .into_owned()
}

/// Python's `unquote_plus`: `+` is a space, then as `unquote`.
fn unquote_plus(text: &str) -> String {
    unquote(&text.replace('+', " "))
}

/// Python's `quote(text, safe='~')`.
fn quote(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// Canonical URI: decode the path, split on `/`, encode each segment, join, and end with `/`.
/// The legacy form (`pathname2url` of the decoded path) yields the same string.
pub fn canonical_uri(raw_path: &str) -> String {
    let path = unquote(raw_path);
    let mut uri = String::with_capacity(path.len() + 1);
    for (segment_index, segment) in path.split('/').enumerate() {
        if segment_index > 0 {
            uri.push('/');
        }
        uri.push_str(&quote(segment));
    }
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Canonical query: decode each `key=value` (a bare key has an empty value), order the pairs,
/// re-encode both halves and join with `&`. Empty pieces (`a=1&&b=2`) carry no pair.
pub fn canonical_query(raw_query: Option<&str>, form: QueryForm) -> String {
    let Some(raw_query) = raw_query else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            match form {
                QueryForm::Current => (unquote(key), unquote(value)),
                QueryForm::Legacy => (unquote_plus(key), unquote_plus(value)),
            }
        })
        .collect();
    match form {
        QueryForm::Current => pairs.sort(),
        QueryForm::Legacy => pairs.sort_by(|left, right| left.0.cmp(&right.0)),
    }
    let mut query = String::with_capacity(raw_query.len());
    for (pair_index, (key, value)) in pairs.iter().enumerate() {
        if pair_index > 0 {
            query.push('&');
        }
        query.push_str(&quote(key));
        query.push('=');
        query.push_str(&quote(value));
    }
    query
}

/// Number of pairs `canonical_query` would see, for the verifier's bound.
pub fn query_pair_count(raw_query: &str) -> usize {
    raw_query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .count()
}

/// Header values are trimmed of surrounding spaces and tabs, as Python's `strip()` does for
/// the characters a header may carry.
pub fn header_value_trim(value: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = value
        .iter()
        .position(|byte| !is_space(byte))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|byte| !is_space(byte))
        .map_or(start, |index| index + 1);
    &value[start..end]
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The parts of a canonical request that come from the request.
pub struct CanonicalParts<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub query: &'a str,
    /// Signed header names (lower case, in `SignedHeaders` order) with their trimmed values.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// `SignedHeaders` exactly as it will appear in (or appeared in) `Authorization`.
    pub signed_headers: &'a str,
    pub payload_sha256: &'a str,
}

/// The six lines of the canonical request joined by `\n`; the header block ends in `\n`, so a
/// blank line follows it.
pub fn canonical_request(parts: &CanonicalParts<'_>) -> Vec<u8> {
    let mut request = Vec::with_capacity(256 + parts.uri.len() + parts.query.len());
    request.extend(parts.method.bytes().map(|byte| byte.to_ascii_uppercase()));
    request.push(b'\n');
    request.extend_from_slice(parts.uri.as_bytes());
    request.push(b'\n');
    request.extend_from_slice(parts.query.as_bytes());
    request.push(b'\n');
    for (name, value) in parts.headers {
        request.extend_from_slice(name.as_bytes());
        request.push(b':');
        request.extend_from_slice(header_value_trim(value));
        request.push(b'\n');
    }
    request.push(b'\n');
    request.extend_from_slice(parts.signed_headers.as_bytes());
    request.push(b'\n');
    request.extend_from_slice(parts.payload_sha256.as_bytes());
    request
}

/// `SDK-HMAC-SHA256\n<date>\n[<scope>\n]<hex SHA-256 of the canonical request>`.
pub fn string_to_sign(sdk_date: &str, scope: Option<&str>, canonical_request: &[u8]) -> String {
    let mut text = format!("{ALGORITHM}\n{sdk_date}\n");
    if let Some(scope) = scope {
        text.push_str(scope);
        text.push('\n');
    }
    text.push_str(&sha256_hex(canonical_request));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the canonical URI and the current-form query of one request.
    fn check(raw_path: &str, raw_query: Option<&str>, uri: &str, query: &str) {
        assert_eq!(canonical_uri(raw_path), uri, "path {raw_path:?}");
        assert_eq!(canonical_query(raw_query, QueryForm::Current), query);
    }

    #[test]
    fn paths_gain_a_trailing_slash_and_are_reencoded() {
        // Goal: the examples of docs/dms-api.md §7.2 and Python's quote/unquote corner cases.
        check("/v1.0/p/queues", None, "/v1.0/p/queues/", "");
        check("/v1.0/p/queues/", None, "/v1.0/p/queues/", "");
        check("/", None, "/", "");
        check("", None, "/", "");
        check("/a%20b/c d/~x*", None, "/a%20b/c%20d/~x%2A/", "");
        check("/a%2Fb", None, "/a/b/", "");
        check("/%e4%b8%ad/%zz", None, "/%E4%B8%AD/%25zz/", "");
        check("/%ff", None, "/%EF%BF%BD/", "");
        check("/a:b+c@d", None, "/a%3Ab%2Bc%40d/", "");
    }

    #[test]
    fn queries_are_sorted_and_reencoded() {
        check("/", Some(""), "/", "");
        check("/", Some("b=2&a=1"), "/", "a=1&b=2");
        check("/", Some("a=2&a=1&a"), "/", "a=&a=1&a=2");
        check("/", Some("x=a+b&y=a%20b&z=%7e"), "/", "x=a%2Bb&y=a%20b&z=~");
        check("/", Some("k=%E4%B8%AD&&=v"), "/", "=v&k=%E4%B8%AD");
        check("/", Some("a=b=c"), "/", "a=b%3Dc");
    }

    #[test]
    fn legacy_form_keeps_repeated_keys_in_request_order_and_reads_plus_as_space() {
        let query = canonical_query(Some("b=1&a=z&a=y&c=x+y%2B"), QueryForm::Legacy);
        assert_eq!(query, "a=z&a=y&b=1&c=x%20y%2B");
        assert_eq!(query_pair_count("a=1&&b"), 2);
    }

    #[test]
    fn canonical_request_has_six_lines_and_a_blank_line() {
        let headers: [(&str, &[u8]); 2] = [("host", b" h:1 "), ("x-sdk-date", b"20261125T183824Z")];
        let request = canonical_request(&CanonicalParts {
            method: "get",
            uri: "/a/",
            query: "",
            headers: &headers,
            signed_headers: "host;x-sdk-date",
            payload_sha256: EMPTY_PAYLOAD_SHA256,
        });
        let expected = format!(
            "GET\n/a/\n\nhost:h:1\nx-sdk-date:20261125T183824Z\n\nhost;x-sdk-date\n{}",
            EMPTY_PAYLOAD_SHA256
        );
        assert_eq!(String::from_utf8(request).unwrap(), expected);
        assert_eq!(sha256_hex(b""), EMPTY_PAYLOAD_SHA256);
        assert_eq!(header_value_trim(b"  \t "), b"");
    }
}
