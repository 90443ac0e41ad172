//! The nesting bound on every JSON text the server accepts: request bodies of the DMS API,
//! of the Keystone token request and of the admin API, message bodies included.
//!
//! serde_json bounds the recursion of typed parsing (128 levels), but the DMS adapter
//! reads bodies as `RawValue` to keep message bodies byte for byte, and skipping a value
//! into a `RawValue` has no depth bound: a body of 100,000 nested arrays was stored and
//! handed back to clients whose parsers recurse. So every body is scanned once before it
//! is parsed: one pass, a depth counter and the string state, no recursion and no
//! allocation. The scan does not validate JSON (the parser does); it only counts the
//! brackets outside strings, so it refuses a deep text whether or not it is well-formed.
//!
//! What lies outside: the size of a body (each endpoint's byte limit, checked first) and
//! the meaning of its fields.

use bytes::Bytes;
use http::Response;

use crate::dms::errors::{DmsError, INVALID_PARAMETER};

/// The deepest nesting of arrays and objects a JSON body may have, counting the body's
/// own outer object (documented in docs/dms-adapter.md, "Limits"). A DMS send request
/// takes three levels itself (`{"messages": [{"body": ...`), so a message body may nest
/// 61 levels.
pub const JSON_DEPTH_MAX: u32 = 64;

/// A text nested deeper than allowed: the byte at which the limit was passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooDeep {
    pub byte_offset: usize,
}

/// Whether `text` nests arrays and objects at most `depth_max` deep (brackets inside
/// strings do not count; stray closing brackets are left to the parser).
pub fn check(text: &[u8], depth_max: u32) -> Result<(), TooDeep> {
    let mut depth: u32 = 0;
    let mut at = 0;
    // Each pass moves `at` forward; bounded by the text's length, which each endpoint's
    // byte limit bounds. Message bodies are mostly string content, which memchr skips
    // to its next quote or backslash instead of looking at every byte.
    while at < text.len() {
        match text[at] {
            b'"' => at = string_end(text, at + 1),
            b'[' | b'{' => {
                depth += 1;
                if depth > depth_max {
                    return Err(TooDeep { byte_offset: at });
                }
                at += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            _ => at += 1,
        }
    }
    Ok(())
}

/// The position just past the quote that closes the string whose content starts at
/// `at` (the text's length when it is not closed).
fn string_end(text: &[u8], mut at: usize) -> usize {
    // Each pass moves past one backslash escape or ends; bounded by the text's length.
    while let Some(found) = memchr::memchr2(b'"', b'\\', &text[at..]) {
        let position = at + found;
        if text[position] == b'"' {
            return position + 1;
        }
        // A backslash: it and the byte it escapes.
        at = position + 2;
        if at >= text.len() {
            return text.len();
        }
    }
    text.len()
}

/// The §5 error for a body nested deeper than [`JSON_DEPTH_MAX`]: 400 with the
/// invalid-parameter code.
pub fn error(too_deep: TooDeep) -> DmsError {
    DmsError::bad(
        INVALID_PARAMETER,
        format!(
            "The request body is JSON nested deeper than {JSON_DEPTH_MAX} levels (at byte \
             {}); at most {JSON_DEPTH_MAX} are allowed.",
            too_deep.byte_offset
        ),
    )
}

/// For the service's own endpoints (Keystone, admin): the error response when `body` is
/// nested deeper than [`JSON_DEPTH_MAX`], else `None`. DMS paths are left alone: their
/// handler ([`crate::dms::handle`]) checks the body itself after routing, and scanning
/// it twice would cost a second pass over up to a MiB.
pub fn refusal(path: &str, body: &[u8]) -> Option<Response<Bytes>> {
    if crate::dms::is_dms_path(path) {
        return None;
    }
    check(body, JSON_DEPTH_MAX)
        .err()
        .map(|too_deep| crate::dms::error_response(&error(too_deep)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth verdict on `text` with a limit of 3: `Ok` or the offset.
    fn check3(text: &str) -> Result<(), usize> {
        check(text.as_bytes(), 3).map_err(|too_deep| too_deep.byte_offset)
    }

    #[test]
    fn counts_brackets_outside_strings_only() {
        // Goal: the limit's edge, both bracket kinds, strings and escapes, malformed text.
        assert_eq!(check3(r#"{"a": [[1]]}"#), Ok(()));
        assert_eq!(check3(r#"{"a": [[[1]]]}"#), Err(8));
        assert_eq!(check3(r#"[{"a": {"b": {}}}]"#), Err(13));
        assert_eq!(check3(r#"[[["[[[[", "\"[[[[\\", "]"]]]"#), Ok(()));
        assert_eq!(check3(r#"["\\" , [[[1]]]]"#), Err(10));
        assert_eq!(check3("]]]]][[["), Ok(()));
        assert_eq!(check3("[[[["), Err(3));
        assert_eq!(check3("\"[[[[[[[["), Ok(()));
        assert_eq!(check3(""), Ok(()));
        let deep = "[".repeat(100_000);
        assert_eq!(
            check(deep.as_bytes(), JSON_DEPTH_MAX),
            Err(TooDeep { byte_offset: 64 })
        );
        // A backslash as the last byte of an unclosed string.
        assert_eq!(check3("[\"ab\\"), Ok(()));
        assert_eq!(check3("\"\\\"[[[[\""), Ok(()));
    }

    /// The rule stated plainly: one byte at a time, a string's content skipped.
    fn check_bytewise(text: &[u8], depth_max: u32) -> Result<(), usize> {
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        for (offset, byte) in text.iter().enumerate() {
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > depth_max {
                        return Err(offset);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn skipping_strings_agrees_with_the_bytewise_rule(
            text in proptest::collection::vec(
                proptest::sample::select(b"[]{}\"\\a, ".to_vec()),
                0..200,
            ),
        ) {
            let fast = check(&text, 3).map_err(|too_deep| too_deep.byte_offset);
            proptest::prop_assert_eq!(fast, check_bytewise(&text, 3));
        }
    }
}
