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
    let mut in_string = false;
    let mut escaped = false;
    // Bounded by the text's length, which each endpoint's byte limit bounds.
    for (byte_offset, byte) in text.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if *byte == b'\\' {
                escaped = true;
            } else if *byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > depth_max {
                    return Err(TooDeep { byte_offset });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
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
    }
}
