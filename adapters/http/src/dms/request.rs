//! Reading a request: the content type, the JSON body as an object of raw fields (so a
//! message body is kept byte for byte), typed field access with precise errors, and the
//! query string. Unknown fields and parameters are ignored, as clients expect.

use std::collections::BTreeMap;

use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::errors::{DmsError, INVALID_JSON, REQUEST_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE};

/// A JSON object whose values are kept as raw JSON text.
pub type Object = BTreeMap<String, Box<RawValue>>;

/// Query parameters a request may carry before the rest are ignored.
const QUERY_PAIRS_MAX: usize = 64;

/// Checks the body's size and, when there is a body, that it is declared as JSON.
pub fn check_body(parts: &Parts, body: &[u8], bytes_max: u64) -> Result<(), DmsError> {
    let bytes = u64::try_from(body.len()).expect("usize fits u64");
    if bytes > bytes_max {
        return Err(DmsError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            REQUEST_TOO_LARGE,
            format!("The request body has {bytes} bytes; at most {bytes_max} are allowed."),
        ));
    }
    if body.is_empty() {
        return Ok(());
    }
    let declared = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let media_type = declared.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(DmsError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UNSUPPORTED_MEDIA_TYPE,
            "The request body must be JSON with Content-Type: application/json.",
        ));
    }
    Ok(())
}

/// The body as a JSON object.
pub fn object(body: &[u8]) -> Result<Object, DmsError> {
    if body.is_empty() {
        return Err(DmsError::bad(
            INVALID_JSON,
            "The request body is empty; a JSON object is required.",
        ));
    }
    let value: Box<RawValue> = serde_json::from_slice(body).map_err(|error| {
        DmsError::bad(
            INVALID_JSON,
            format!("The request body is not valid JSON: {error}."),
        )
    })?;
    raw_object(&value)
        .ok_or_else(|| DmsError::bad(INVALID_JSON, "The request body must be a JSON object."))
}

/// A raw value as an object, if it is one.
pub fn raw_object(value: &RawValue) -> Option<Object> {
    if !value.get().trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(value.get()).ok()
}

/// A raw value as an array of raw values, if it is one.
pub fn raw_array(value: &RawValue) -> Option<Vec<Box<RawValue>>> {
    if !value.get().trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str(value.get()).ok()
}

/// A field of `object` as `T`; absent and `null` are `None`. `what` completes the
/// sentence "The field NAME must be ...".
pub fn field<T: DeserializeOwned>(
    object: &Object,
    name: &str,
    what: &str,
) -> Result<Option<T>, DmsError> {
    let Some(raw) = object.get(name) else {
        return Ok(None);
    };
    if raw.get().trim() == "null" {
        return Ok(None);
    }
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(|_| DmsError::parameter(format!("The field {name} must be {what}.")))
}

/// Decoded query parameters, in order (repeated keys kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let decode = |text: &str| {
            let spaced = text.replace('+', " ");
            percent_encoding::percent_decode_str(&spaced)
                .decode_utf8_lossy()
                .into_owned()
        };
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .take(QUERY_PAIRS_MAX)
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(key), decode(value))
            })
            .collect();
        Query { pairs }
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn boolean(&self, key: &str, default: bool) -> Result<bool, DmsError> {
        match self.get(key) {
            None => Ok(default),
            Some(value) if value.eq_ignore_ascii_case("true") => Ok(true),
            Some(value) if value.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(DmsError::parameter(format!(
                "The parameter {key} must be true or false."
            ))),
        }
    }

    /// An integer parameter within `min..=max`; out of range or not an integer answers
    /// `code` with a message naming the range.
    pub fn integer(
        &self,
        key: &str,
        default: u64,
        (min, max): (u64, u64),
        code: &'static str,
    ) -> Result<u64, DmsError> {
        let Some(text) = self.get(key) else {
            return Ok(default);
        };
        match text.trim().parse::<u64>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(DmsError::bad(
                code,
                format!("The parameter {key} must be an integer from {min} to {max}."),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dms::errors::INVALID_PARAMETER;

    #[test]
    fn query_decodes_repeats_and_ranges() {
        // Goal: percent and plus decoding, repeated keys, bool and integer rules.
        let query = Query::parse(Some("tag=a%2Db&tag=c+d&max_msgs=5&flag=TRUE&bare&x=y=z"));
        assert_eq!(query.all("tag"), ["a-b", "c d"]);
        assert_eq!(query.get("bare"), Some(""));
        assert_eq!(query.get("x"), Some("y=z"));
        assert_eq!(query.boolean("flag", false), Ok(true));
        assert_eq!(query.boolean("missing", true), Ok(true));
        assert!(query.boolean("bare", false).is_err());
        assert_eq!(query.integer("max_msgs", 10, (1, 10), "c"), Ok(5));
        assert_eq!(query.integer("none", 10, (1, 10), "c"), Ok(10));
        let error = query
            .integer("max_msgs", 10, (6, 10), INVALID_PARAMETER)
            .unwrap_err();
        assert_eq!(
            error.message,
            "The parameter max_msgs must be an integer from 6 to 10."
        );
    }

    #[test]
    fn bodies_are_objects_with_typed_fields() {
        // Goal: malformed JSON, non-objects and wrong field types are precise errors.
        assert_eq!(object(b"").unwrap_err().code, INVALID_JSON);
        assert_eq!(object(b"{").unwrap_err().code, INVALID_JSON);
        assert_eq!(
            object(b"[1]").unwrap_err().message,
            "The request body must be a JSON object."
        );
        let body = object(br#"{"n": 3, "s": "x", "z": null}"#).unwrap();
        assert_eq!(field::<u64>(&body, "n", "an integer"), Ok(Some(3)));
        assert_eq!(field::<u64>(&body, "z", "an integer"), Ok(None));
        assert_eq!(field::<u64>(&body, "absent", "an integer"), Ok(None));
        let error = field::<u64>(&body, "s", "an integer").unwrap_err();
        assert_eq!(error.message, "The field s must be an integer.");
    }
}
