//! The SQS query protocol (docs/sqs.md, "Protocols"): `Action=<Operation>` with the
//! operation's members flattened into form parameters (a `POST` body of
//! `application/x-www-form-urlencoded`, or the URL's query string of a `GET`), answered
//! in XML. It is a translation only: the parameters become the JSON input the operations
//! already take, `super::dispatch_input` serves them as for the JSON protocol, and the
//! JSON answer is written out as SQS's XML.
//!
//! Flattened forms (`N` and `M` count from 1; gaps are allowed, every index is bounded):
//!
//! | query parameter | JSON member |
//! | --- | --- |
//! | `Attribute.N.Name` / `.Value` | `Attributes` map |
//! | `AttributeName.N`, `MessageAttributeName.N`, `MessageSystemAttributeName.N`, `TagKey.N` | the lists `AttributeNames`, ... |
//! | `MessageAttribute.N.Name` / `.Value.DataType` / `.Value.StringValue` / `.Value.BinaryValue` | `MessageAttributes` map (likewise `MessageSystemAttribute`) |
//! | `Tag.N.Key` / `.Value` | `tags` map |
//! | `SendMessageBatchRequestEntry.N.<member>` (and the delete and visibility forms) | `Entries` list |

use std::collections::BTreeMap;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::{Map, Value};
use sluice_node::Node;

use super::errors::SqsError;
use crate::service::ServiceConfig;

/// The XML namespace of every answer.
pub const XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";
/// The content type of the form bodies that carry the query protocol.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// The content type of the answers.
pub const XML_CONTENT_TYPE: &str = "text/xml";
/// Parameters of one request, at most (ten batch entries of ten attributes each fit).
pub const PARAMETERS_MAX: usize = 1_000;
/// The highest index of a batch entry (SQS's ten entries a batch).
pub const ENTRY_INDEX_MAX: usize = 10;
/// The highest index of a list member or map entry (`Attribute.N`, `AttributeName.N`, ...).
pub const MEMBER_INDEX_MAX: usize = 100;

/// Scalar members a request may give at the top level.
const TOP_SCALARS: &[&str] = &[
    "QueueName",
    "QueueUrl",
    "QueueNamePrefix",
    "QueueOwnerAWSAccountId",
    "NextToken",
    "MaxResults",
    "MessageBody",
    "DelaySeconds",
    "MessageGroupId",
    "MessageDeduplicationId",
    "MaxNumberOfMessages",
    "VisibilityTimeout",
    "WaitTimeSeconds",
    "ReceiveRequestAttemptId",
    "ReceiptHandle",
    "SourceArn",
    "DestinationArn",
    "MaxNumberOfMessagesPerSecond",
    "TaskHandle",
];
/// Scalar members a batch entry may give.
const ENTRY_SCALARS: &[&str] = &[
    "Id",
    "MessageBody",
    "DelaySeconds",
    "MessageGroupId",
    "MessageDeduplicationId",
    "ReceiptHandle",
    "VisibilityTimeout",
];
/// Flattened lists: the parameter's prefix and the JSON member.
const LISTS: &[(&str, &str)] = &[
    ("AttributeName", "AttributeNames"),
    ("MessageAttributeName", "MessageAttributeNames"),
    ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
    ("TagKey", "TagKeys"),
];
/// Flattened maps of text values: the prefix, the JSON member, the key's and the value's
/// field names.
const PAIR_MAPS: &[(&str, &str, &str, &str)] = &[
    ("Attribute", "Attributes", "Name", "Value"),
    ("Tag", "tags", "Key", "Value"),
];
/// Flattened maps of typed attribute values: the prefix and the JSON member.
const VALUE_MAPS: &[(&str, &str)] = &[
    ("MessageAttribute", "MessageAttributes"),
    ("MessageSystemAttribute", "MessageSystemAttributes"),
];
/// The fields of a typed attribute value.
const VALUE_FIELDS: &[&str] = &["DataType", "StringValue", "BinaryValue"];
/// Batch entries: the prefix (their JSON member is `Entries`).
const ENTRY_LISTS: &[&str] = &[
    "SendMessageBatchRequestEntry",
    "DeleteMessageBatchRequestEntry",
    "ChangeMessageVisibilityBatchRequestEntry",
];
/// Parameters that are no operation's member besides `Action` (a presigned URL's
/// `X-Amz-*` are skipped too).
const PROTOCOL_PARAMETERS: &[&str] = &["Version"];
/// Operations whose answer has no result element, only the response metadata.
const NO_RESULT: &[&str] = &[
    "DeleteQueue",
    "SetQueueAttributes",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "PurgeQueue",
    "TagQueue",
    "UntagQueue",
];

/// Whether `parts` is a query-protocol SQS request, judged from its head alone (the
/// server refuses some requests before reading their body): a form `POST` or a `GET`
/// with `Action` in its query string, on `/` or a queue URL's path, never on a path of
/// another API of the server.
pub fn is_query(parts: &Parts) -> bool {
    if !queue_path(parts.uri.path()) {
        return false;
    }
    if parts.method == Method::POST {
        let form = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE));
        return form || query_has_action(parts);
    }
    parts.method == Method::GET && query_has_action(parts)
}

/// Whether `path` can be an SQS endpoint's: `/`, or `/{project}/{name}` outside the
/// server's own prefixes (DMS, Keystone, admin, health and metrics).
fn queue_path(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/');
    let (Some(project), Some(name), None) = (segments.next(), segments.next(), segments.next())
    else {
        return false;
    };
    const SERVER_PREFIXES: &[&str] = &["v1.0", "v2", "v3", "admin", "healthz", "readyz", "metrics"];
    !project.is_empty() && !name.is_empty() && !SERVER_PREFIXES.contains(&project)
}

fn query_has_action(parts: &Parts) -> bool {
    parts.uri.query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "Action")
    })
}

/// One request in the JSON form: the operation and its input.
#[derive(Debug, PartialEq)]
pub struct Translated {
    pub action: String,
    pub input: Map<String, Value>,
}

/// The parameters of a request: its URL's query string, then its form body.
fn parameters(parts: &Parts, body: &[u8]) -> Result<Vec<(String, String)>, SqsError> {
    let query = parts.uri.query().unwrap_or("").as_bytes();
    let mut all = Vec::new();
    for source in [query, body] {
        for (name, value) in form_urlencoded::parse(source) {
            if all.len() == PARAMETERS_MAX {
                return Err(SqsError::invalid_parameter(format!(
                    "A request carries at most {PARAMETERS_MAX} parameters."
                )));
            }
            all.push((name.into_owned(), value.into_owned()));
        }
    }
    Ok(all)
}

/// Translates a query-protocol request into the operation's name and JSON input. A
/// request without `QueueUrl` to a queue URL's path names that queue.
pub fn translate(parts: &Parts, body: &[u8], endpoint: &str) -> Result<Translated, SqsError> {
    let parameters = parameters(parts, body)?;
    let mut action = None;
    let mut members = Vec::with_capacity(parameters.len());
    for (name, value) in &parameters {
        match name.as_str() {
            "Action" if action.is_some() => return Err(given_twice("Action")),
            "Action" => action = Some(value.clone()),
            other if PROTOCOL_PARAMETERS.contains(&other) || other.starts_with("X-Amz-") => {}
            other => members.push((other, value.as_str())),
        }
    }
    let action = action.ok_or_else(|| SqsError::missing_parameter("Action"))?;
    let mut input = flatten(&members, Level::Top)?;
    // `Tag.N` is CreateQueue's `tags` and TagQueue's `Tags` (both serialise as `Tag`).
    if action == "TagQueue" {
        if let Some(tags) = input.remove("tags") {
            input.insert("Tags".into(), tags);
        }
    }
    let path = parts.uri.path();
    if path != "/" && !input.contains_key("QueueUrl") {
        let url = format!("{}{path}", endpoint.trim_end_matches('/'));
        input.insert("QueueUrl".into(), Value::String(url));
    }
    Ok(Translated { action, input })
}

/// Where a group of parameters stands: the request's top level or a batch entry.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Top,
    Entry,
}

fn given_twice(name: &str) -> SqsError {
    SqsError::invalid_parameter(format!("The parameter {name} is given more than once."))
}

fn unknown(name: &str) -> SqsError {
    SqsError::invalid_parameter(format!(
        "The parameter {name} is not valid for this action."
    ))
}

/// The index of `N` in `Prefix.N...`: decimal, from 1 to `max`, no leading zero.
fn index(text: &str, name: &str, max: usize) -> Result<usize, SqsError> {
    let parsed = text
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n) && !text.starts_with('0') && !text.starts_with('+'));
    parsed.ok_or_else(|| {
        SqsError::invalid_parameter(format!(
            "The parameter {name} has an invalid index: it must be a number from 1 to {max}."
        ))
    })
}

/// The indexed groups of `Prefix.N.rest` parameters: for each N, its `(rest, value)`.
type Groups<'a> = BTreeMap<usize, Vec<(&'a str, &'a str)>>;

/// Builds the JSON members of `members` (`(name, value)` pairs) at `level`.
fn flatten(members: &[(&str, &str)], level: Level) -> Result<Map<String, Value>, SqsError> {
    let scalars = match level {
        Level::Top => TOP_SCALARS,
        Level::Entry => ENTRY_SCALARS,
    };
    let mut input = Map::new();
    // Indexed parameters by prefix, then by index.
    let mut grouped: BTreeMap<&str, Groups<'_>> = BTreeMap::new();
    for &(name, value) in members {
        let Some((prefix, rest)) = name.split_once('.') else {
            if !scalars.contains(&name) {
                return Err(unknown(name));
            }
            if input.contains_key(name) {
                return Err(given_twice(name));
            }
            input.insert(name.to_string(), Value::String(value.to_string()));
            continue;
        };
        let max = if ENTRY_LISTS.contains(&prefix) {
            if level != Level::Top {
                return Err(unknown(name));
            }
            ENTRY_INDEX_MAX
        } else {
            MEMBER_INDEX_MAX
        };
        let (number, field) = rest.split_once('.').unwrap_or((rest, ""));
        let at = index(number, name, max)?;
        grouped
            .entry(prefix)
            .or_default()
            .entry(at)
            .or_default()
            .push((field, value));
    }
    for (prefix, groups) in grouped {
        let (member, value) = if let Some(&(_, member)) = LISTS.iter().find(|l| l.0 == prefix) {
            (member, list(prefix, groups)?)
        } else if let Some(&(_, member, key, value)) = PAIR_MAPS.iter().find(|m| m.0 == prefix) {
            (member, pair_map(prefix, groups, key, value)?)
        } else if let Some(&(_, member)) = VALUE_MAPS.iter().find(|m| m.0 == prefix) {
            (member, value_map(prefix, groups)?)
        } else if level == Level::Top && ENTRY_LISTS.contains(&prefix) {
            ("Entries", entries(groups)?)
        } else {
            return Err(unknown(&format!("{prefix}.*")));
        };
        if input.contains_key(member) {
            return Err(given_twice(member));
        }
        input.insert(member.to_string(), value);
    }
    Ok(input)
}

/// The one value of a group's `field`, if given; a field given twice is an error.
fn field<'a>(
    group: &[(&str, &'a str)],
    wanted: &str,
    name: impl Fn() -> String,
) -> Result<Option<&'a str>, SqsError> {
    let mut found = group.iter().filter(|(f, _)| *f == wanted).map(|(_, v)| *v);
    let first = found.next();
    if found.next().is_some() {
        return Err(given_twice(&name()));
    }
    Ok(first)
}

/// Checks that a group has no field outside `known`.
fn only(group: &[(&str, &str)], known: &[&str], prefix: &str, at: usize) -> Result<(), SqsError> {
    match group.iter().find(|(f, _)| !known.contains(f)) {
        Some(("", _)) => Err(unknown(&format!("{prefix}.{at}"))),
        Some((f, _)) => Err(unknown(&format!("{prefix}.{at}.{f}"))),
        None => Ok(()),
    }
}

fn list(prefix: &str, groups: Groups<'_>) -> Result<Value, SqsError> {
    let mut items = Vec::with_capacity(groups.len());
    for (at, group) in groups {
        only(&group, &[""], prefix, at)?;
        let item = field(&group, "", || format!("{prefix}.{at}"))?.unwrap_or_default();
        items.push(Value::String(item.to_string()));
    }
    Ok(Value::Array(items))
}

fn pair_map(prefix: &str, groups: Groups<'_>, key: &str, value: &str) -> Result<Value, SqsError> {
    let mut map = Map::new();
    for (at, group) in groups {
        only(&group, &[key, value], prefix, at)?;
        let name = |f: &str| format!("{prefix}.{at}.{f}");
        let k = field(&group, key, || name(key))?
            .ok_or_else(|| SqsError::missing_parameter(&name(key)))?;
        let v = field(&group, value, || name(value))?
            .ok_or_else(|| SqsError::missing_parameter(&name(value)))?;
        if map
            .insert(k.to_string(), Value::String(v.to_string()))
            .is_some()
        {
            return Err(given_twice(k));
        }
    }
    Ok(Value::Object(map))
}

fn value_map(prefix: &str, groups: Groups<'_>) -> Result<Value, SqsError> {
    let mut map = Map::new();
    for (at, group) in groups {
        let name = |f: &str| format!("{prefix}.{at}.{f}");
        let mut value = Map::new();
        let mut key = None;
        for &(f, v) in &group {
            let slot = if f == "Name" {
                &mut key
            } else {
                match f
                    .strip_prefix("Value.")
                    .filter(|f| VALUE_FIELDS.contains(f))
                {
                    Some(member) if value.contains_key(member) => {
                        return Err(given_twice(&name(f)))
                    }
                    Some(member) => {
                        value.insert(member.to_string(), Value::String(v.to_string()));
                        continue;
                    }
                    None => return Err(unknown(&name(f))),
                }
            };
            if slot.replace(v).is_some() {
                return Err(given_twice(&name(f)));
            }
        }
        let key = key.ok_or_else(|| SqsError::missing_parameter(&name("Name")))?;
        if map.insert(key.to_string(), Value::Object(value)).is_some() {
            return Err(given_twice(key));
        }
    }
    Ok(Value::Object(map))
}

fn entries(groups: Groups<'_>) -> Result<Value, SqsError> {
    let mut items = Vec::with_capacity(groups.len());
    for (_, group) in groups {
        items.push(Value::Object(flatten(&group, Level::Entry)?));
    }
    Ok(Value::Array(items))
}

/// Serves one query-protocol request: the signature check, then
/// [`handle_authenticated`].
pub async fn handle<N: Node>(
    node: &N,
    config: &ServiceConfig,
    parts: &Parts,
    body: &[u8],
) -> Response<Bytes> {
    match super::authenticate(node, config, parts, body).await {
        Ok(tenant) => handle_authenticated(node, config, &tenant, parts, body).await,
        Err(error) => error_response(&error, &crate::service::request_id(node)),
    }
}

/// Serves an authenticated query-protocol request for the tenant whose project id is
/// `tenant`: translated, dispatched as a JSON request, answered in XML. The fuzz target
/// calls it directly, to reach past the signature check.
pub async fn handle_authenticated<N: Node>(
    node: &N,
    config: &ServiceConfig,
    tenant: &str,
    parts: &Parts,
    body: &[u8],
) -> Response<Bytes> {
    let id = crate::service::request_id(node);
    let outcome = match translate(parts, body, &config.endpoint) {
        Ok(request) => super::dispatch_input(node, config, tenant, &request.action, &request.input)
            .await
            .map(|answer| (request.action, answer)),
        Err(error) => Err(error),
    };
    match outcome {
        Ok((action, answer)) => {
            let text = answer_xml(&action, &answer, id.to_str().unwrap_or_default());
            with_headers(Response::new(Bytes::from(text)), StatusCode::OK, &id)
        }
        Err(error) => error_response(&error, &id),
    }
}

/// `response` with `status`, the XML content type and the request id's headers (none for
/// an empty id: a refusal the server made before the service named the request).
fn with_headers(
    mut response: Response<Bytes>,
    status: StatusCode,
    id: &HeaderValue,
) -> Response<Bytes> {
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(XML_CONTENT_TYPE),
    );
    if !id.is_empty() {
        headers.insert(super::REQUEST_ID_HEADER, id.clone());
        headers.insert("x-request-id", id.clone());
    }
    response
}

/// The answer carrying `error` in the query protocol's form (the status, the XML error
/// document, and the `x-amzn-query-error` header the JSON form carries too).
pub fn error_response(error: &SqsError, id: &HeaderValue) -> Response<Bytes> {
    let json_form = error.response();
    let mut response = Response::new(Bytes::from(error_xml(error, id.to_str().unwrap_or(""))));
    if let Some(code) = json_form.headers().get("x-amzn-query-error") {
        response
            .headers_mut()
            .insert("x-amzn-query-error", code.clone());
    }
    with_headers(response, error.status, id)
}

/// The XML error document of `error`.
pub fn error_xml(error: &SqsError, request_id: &str) -> String {
    let mut out = Xml::default();
    out.raw(&format!("<ErrorResponse xmlns=\"{XMLNS}\"><Error>"));
    out.text("Type", if error.sender { "Sender" } else { "Receiver" });
    out.text("Code", error.code);
    out.text("Message", &error.message);
    out.raw("<Detail/></Error>");
    out.text("RequestId", request_id);
    out.raw("</ErrorResponse>");
    out.0
}

/// The XML document of `action`'s JSON `answer`.
pub fn answer_xml(action: &str, answer: &Map<String, Value>, request_id: &str) -> String {
    let mut out = Xml::default();
    out.raw(&format!("<{action}Response xmlns=\"{XMLNS}\">"));
    if !(answer.is_empty() && NO_RESULT.contains(&action)) {
        out.raw(&format!("<{action}Result>"));
        out.members(action, answer);
        out.raw(&format!("</{action}Result>"));
    }
    out.raw("<ResponseMetadata>");
    out.text("RequestId", request_id);
    out.raw(&format!("</ResponseMetadata></{action}Response>"));
    out.0
}

/// An XML text being written. Element names are this module's and the operations'
/// member names (never a client's text, [`element_name`]); every text is escaped.
#[derive(Default)]
struct Xml(String);

impl Xml {
    fn raw(&mut self, text: &str) {
        self.0.push_str(text);
    }

    /// `<name>text</name>`, the text escaped.
    fn text(&mut self, name: &str, text: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
        escape_into(&mut self.0, text);
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
    }

    /// The members of a JSON object, with SQS's element names for its maps and lists.
    fn members(&mut self, action: &str, object: &Map<String, Value>) {
        for (name, value) in object {
            match (name.as_str(), value) {
                ("Attributes", Value::Object(map)) => self.map("Attribute", "Name", "Value", map),
                ("MessageAttributes" | "MessageSystemAttributes", Value::Object(map)) => {
                    self.map("MessageAttribute", "Name", "Value", map)
                }
                ("Tags" | "tags", Value::Object(map)) => self.map("Tag", "Key", "Value", map),
                ("QueueUrls" | "queueUrls", value) => self.value(action, "QueueUrl", value),
                ("Results", value) => self.value(action, &format!("{action}ResultEntry"), value),
                ("Messages", value) => self.value(action, "Message", value),
                ("Successful", value) => self.value(action, &format!("{action}ResultEntry"), value),
                ("Failed", value) => self.value(action, "BatchResultErrorEntry", value),
                (name, value) if element_name(name) => self.value(action, name, value),
                // A member no answer of SQS has (a client's own key stored with its
                // message attributes): no element name comes from a client's text.
                _ => {}
            }
        }
    }

    /// A flattened map: one `<element><key/><value/></element>` per entry.
    fn map(&mut self, element: &str, key: &str, value: &str, map: &Map<String, Value>) {
        for (name, item) in map {
            self.raw(&format!("<{element}>"));
            self.text(key, name);
            self.value("", value, item);
            self.raw(&format!("</{element}>"));
        }
    }

    /// `value` as the element `name`: a scalar as text, an object by its members, a list
    /// flattened (one element per item), a null as nothing.
    fn value(&mut self, action: &str, name: &str, value: &Value) {
        match value {
            Value::Null => {}
            Value::String(text) => self.text(name, text),
            Value::Bool(flag) => self.text(name, if *flag { "true" } else { "false" }),
            Value::Number(number) => self.text(name, &number.to_string()),
            Value::Object(object) => {
                self.raw(&format!("<{name}>"));
                self.members(action, object);
                self.raw(&format!("</{name}>"));
            }
            Value::Array(items) => {
                for item in items {
                    self.value(action, name, item);
                }
            }
        }
    }
}

/// Whether `name` is a member name of SQS's shapes, safe as an element name: ASCII
/// letters and digits, a letter first.
fn element_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Appends `text` escaped as XML character data: the five markup characters as entity
/// references, carriage return as `&#xD;` (a parser would read it as a line feed), and
/// the characters XML 1.0 cannot carry at all (other controls, non-characters) as
/// U+FFFD.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\t' | '\n' => out.push(c),
            c if xml_char(c) => out.push(c),
            _ => out.push(char::REPLACEMENT_CHARACTER),
        }
    }
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
