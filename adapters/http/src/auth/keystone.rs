//! The Keystone v3 `POST /v3/auth/tokens` bodies: parsing a password-method, project-scoped
//! request into `KeystoneRequest`, and building the 201 response body with a service catalog
//! that points the `dms` (v1.0) and `dmsv2` (v2) service types at this server.
//!
//! Pure functions over bytes and strings: checking the password and issuing the token (which
//! goes in `X-Subject-Token`) are the caller's. Only what Sluice supports is accepted; anything
//! else is refused with a `KeystoneError` naming the field.

use serde_json::{json, Map, Value};

use super::dates::keystone_time_format;
use super::limits::{KEYSTONE_BODY_BYTES_MAX, NAME_BYTES_MAX, PASSWORD_BYTES_MAX};

/// An entity named either way Keystone allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameOrId {
    Name(String),
    Id(String),
}

/// A parsed password-method, project-scoped token request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeystoneRequest {
    pub user: NameOrId,
    /// `auth.identity.password.user.domain`, when given.
    pub user_domain: Option<NameOrId>,
    pub password: String,
    pub project: NameOrId,
    /// `auth.scope.project.domain`, when given.
    pub project_domain: Option<NameOrId>,
}

/// Why a token request body was refused (Keystone answers 400 for all of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeystoneError {
    /// The body is larger than `KEYSTONE_BODY_BYTES_MAX`.
    BodyTooLarge,
    /// The body is not JSON.
    NotJson,
    /// A required field is absent; the text is its path.
    Missing(&'static str),
    /// A field has the wrong JSON type; the text is its path.
    WrongType(&'static str),
    /// A field is empty or longer than its limit; the text is its path.
    BadLength(&'static str),
    /// `auth.identity.methods` is not exactly `["password"]`.
    UnsupportedMethod,
    /// The scope is not a project (domain, system, trust, or unscoped).
    UnsupportedScope,
}

impl KeystoneError {
    /// A sentence for the 400 body.
    pub fn message(&self) -> String {
        match self {
            KeystoneError::BodyTooLarge => "The request body is larger than 16 KiB.".to_string(),
            KeystoneError::NotJson => "The request body is not valid JSON.".to_string(),
            KeystoneError::Missing(path) => format!("The field {path} is required."),
            KeystoneError::WrongType(path) => format!("The field {path} has the wrong type."),
            KeystoneError::BadLength(path) => {
                format!("The field {path} is empty or too long.")
            }
            KeystoneError::UnsupportedMethod => {
                "Only the password authentication method is supported \
                 (auth.identity.methods must be [\"password\"])."
                    .to_string()
            }
            KeystoneError::UnsupportedScope => {
                "Only project-scoped tokens are supported (auth.scope.project).".to_string()
            }
        }
    }
}

fn object<'a>(
    value: Option<&'a Value>,
    path: &'static str,
) -> Result<&'a Map<String, Value>, KeystoneError> {
    match value {
        None | Some(Value::Null) => Err(KeystoneError::Missing(path)),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(KeystoneError::WrongType(path)),
    }
}

fn text(value: &Value, path: &'static str, bytes_max: usize) -> Result<String, KeystoneError> {
    let Value::String(text) = value else {
        return Err(KeystoneError::WrongType(path));
    };
    if text.is_empty() || text.len() > bytes_max {
        return Err(KeystoneError::BadLength(path));
    }
    Ok(text.clone())
}

/// `{"id": ..}` or `{"name": ..}`; `id` wins when both are given, as in Keystone.
fn name_or_id(
    map: &Map<String, Value>,
    id_path: &'static str,
    name_path: &'static str,
) -> Result<NameOrId, KeystoneError> {
    if let Some(id) = map.get("id") {
        return Ok(NameOrId::Id(text(id, id_path, NAME_BYTES_MAX)?));
    }
    match map.get("name") {
        Some(name) => Ok(NameOrId::Name(text(name, name_path, NAME_BYTES_MAX)?)),
        None => Err(KeystoneError::Missing(name_path)),
    }
}

fn domain(
    map: &Map<String, Value>,
    path: &'static str,
    id_path: &'static str,
    name_path: &'static str,
) -> Result<Option<NameOrId>, KeystoneError> {
    match map.get("domain") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => name_or_id(object(Some(value), path)?, id_path, name_path).map(Some),
    }
}

/// Parses the body of `POST /v3/auth/tokens`.
pub fn keystone_request_parse(body: &[u8]) -> Result<KeystoneRequest, KeystoneError> {
    if body.len() > KEYSTONE_BODY_BYTES_MAX {
        return Err(KeystoneError::BodyTooLarge);
    }
    let root: Value = serde_json::from_slice(body).map_err(|_| KeystoneError::NotJson)?;
    let auth = object(root.get("auth"), "auth")?;
    let identity = object(auth.get("identity"), "auth.identity")?;
    let methods = match identity.get("methods") {
        None => return Err(KeystoneError::Missing("auth.identity.methods")),
        Some(Value::Array(methods)) => methods,
        Some(_) => return Err(KeystoneError::WrongType("auth.identity.methods")),
    };
    if methods.len() != 1 || methods[0] != "password" {
        return Err(KeystoneError::UnsupportedMethod);
    }
    let password = object(identity.get("password"), "auth.identity.password")?;
    let user = object(password.get("user"), "auth.identity.password.user")?;
    let secret = match user.get("password") {
        Some(secret) => text(
            secret,
            "auth.identity.password.user.password",
            PASSWORD_BYTES_MAX,
        )?,
        None => {
            return Err(KeystoneError::Missing(
                "auth.identity.password.user.password",
            ))
        }
    };
    let request_user = name_or_id(
        user,
        "auth.identity.password.user.id",
        "auth.identity.password.user.name",
    )?;
    let user_domain = domain(
        user,
        "auth.identity.password.user.domain",
        "auth.identity.password.user.domain.id",
        "auth.identity.password.user.domain.name",
    )?;
    let scope = match auth.get("scope") {
        None | Some(Value::Null) => return Err(KeystoneError::UnsupportedScope),
        Some(Value::Object(scope)) => scope,
        Some(_) => return Err(KeystoneError::WrongType("auth.scope")),
    };
    let Some(project) = scope.get("project") else {
        return Err(KeystoneError::UnsupportedScope);
    };
    let project = object(Some(project), "auth.scope.project")?;
    Ok(KeystoneRequest {
        user: request_user,
        user_domain,
        password: secret,
        project: name_or_id(project, "auth.scope.project.id", "auth.scope.project.name")?,
        project_domain: domain(
            project,
            "auth.scope.project.domain",
            "auth.scope.project.domain.id",
            "auth.scope.project.domain.name",
        )?,
    })
}

/// What the 201 response body reports.
pub struct KeystoneResponse<'a> {
    pub issued_unix_s: i64,
    pub expires_unix_s: i64,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub project_id: &'a str,
    pub project_name: &'a str,
    /// This server's base URL as clients reach it, e.g. `http://127.0.0.1:8080`.
    pub endpoint: &'a str,
    /// The region clients select, e.g. `region-1`.
    pub region: &'a str,
}

/// The body of the 201 answer to `POST /v3/auth/tokens`.
pub fn keystone_response_body(response: &KeystoneResponse<'_>) -> String {
    assert!(
        response.expires_unix_s > response.issued_unix_s,
        "token expires before issue"
    );
    let domain = json!({"id": "default", "name": "Default"});
    let base = response.endpoint.trim_end_matches('/');
    let service = |service_type: &str, path: String| {
        json!({
            "type": service_type,
            "name": service_type,
            "id": service_type,
            "endpoints": [{
                "id": format!("{service_type}-public-{}", response.region),
                "interface": "public",
                "region": response.region,
                "region_id": response.region,
                "url": format!("{base}{path}"),
            }],
        })
    };
    let body = json!({
        "token": {
            "expires_at": keystone_time_format(response.expires_unix_s),
            "issued_at": keystone_time_format(response.issued_unix_s),
            "methods": ["password"],
            "project": {"id": response.project_id, "name": response.project_name, "domain": domain},
            "user": {"id": response.user_id, "name": response.user_name, "domain": domain},
            "roles": [],
            "catalog": [
                service("dms", format!("/v1.0/{}", response.project_id)),
                service("dmsv2", format!("/v2/{}", response.project_id)),
            ],
        }
    });
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `body` (JSON text) and compares with `expected`.
    fn check(body: &str, expected: Result<KeystoneRequest, KeystoneError>) {
        assert_eq!(keystone_request_parse(body.as_bytes()), expected, "{body}");
    }

    fn body(identity: &str, scope: &str) -> String {
        format!(r#"{{"auth": {{"identity": {identity}, "scope": {scope}}}}}"#)
    }

    const IDENTITY: &str = r#"{"methods": ["password"], "password": {"user":
        {"name": "alice", "password": "pw", "domain": {"name": "Default"}}}}"#;

    #[test]
    fn password_project_requests_parse() {
        // Goal: the body openstacksdk/keystoneauth sends with user and project by name.
        check(
            &body(
                IDENTITY,
                r#"{"project": {"name": "p1", "domain": {"id": "default"}}}"#,
            ),
            Ok(KeystoneRequest {
                user: NameOrId::Name("alice".into()),
                user_domain: Some(NameOrId::Name("Default".into())),
                password: "pw".into(),
                project: NameOrId::Name("p1".into()),
                project_domain: Some(NameOrId::Id("default".into())),
            }),
        );
        let by_id = r#"{"methods": ["password"], "password": {"user": {"id": "u1", "name": "x", "password": "pw"}}}"#;
        check(
            &body(by_id, r#"{"project": {"id": "0123"}}"#),
            Ok(KeystoneRequest {
                user: NameOrId::Id("u1".into()),
                user_domain: None,
                password: "pw".into(),
                project: NameOrId::Id("0123".into()),
                project_domain: None,
            }),
        );
    }

    #[test]
    fn other_requests_are_refused_with_the_field() {
        let project = r#"{"project": {"id": "p"}}"#;
        check("{", Err(KeystoneError::NotJson));
        check("{}", Err(KeystoneError::Missing("auth")));
        check(r#"{"auth": []}"#, Err(KeystoneError::WrongType("auth")));
        let token_method = r#"{"methods": ["token"], "token": {"id": "x"}}"#;
        check(
            &body(token_method, project),
            Err(KeystoneError::UnsupportedMethod),
        );
        let two = r#"{"methods": ["password", "totp"]}"#;
        check(&body(two, project), Err(KeystoneError::UnsupportedMethod));
        check(
            &body(IDENTITY, r#"{"domain": {"id": "d"}}"#),
            Err(KeystoneError::UnsupportedScope),
        );
        check(
            &body(IDENTITY, "null"),
            Err(KeystoneError::UnsupportedScope),
        );
        let no_password = r#"{"methods": ["password"], "password": {"user": {"name": "a"}}}"#;
        check(
            &body(no_password, project),
            Err(KeystoneError::Missing(
                "auth.identity.password.user.password",
            )),
        );
        let no_name = r#"{"methods": ["password"], "password": {"user": {"password": "x"}}}"#;
        check(
            &body(no_name, project),
            Err(KeystoneError::Missing("auth.identity.password.user.name")),
        );
        let number =
            r#"{"methods": ["password"], "password": {"user": {"name": 5, "password": "x"}}}"#;
        check(
            &body(number, project),
            Err(KeystoneError::WrongType("auth.identity.password.user.name")),
        );
        check(
            &body(IDENTITY, r#"{"project": {"name": ""}}"#),
            Err(KeystoneError::BadLength("auth.scope.project.name")),
        );
        let long = format!(
            r#"{{"project": {{"id": "{}"}}}}"#,
            "p".repeat(NAME_BYTES_MAX + 1)
        );
        check(
            &body(IDENTITY, &long),
            Err(KeystoneError::BadLength("auth.scope.project.id")),
        );
        let huge = " ".repeat(KEYSTONE_BODY_BYTES_MAX + 1);
        check(&huge, Err(KeystoneError::BodyTooLarge));
        assert!(KeystoneError::Missing("auth")
            .message()
            .contains("auth is required"));
    }

    #[test]
    fn response_body_has_the_catalog() {
        let text = keystone_response_body(&KeystoneResponse {
            issued_unix_s: 1_795_631_904,
            expires_unix_s: 1_795_718_304,
            user_id: "u1",
            user_name: "alice",
            project_id: "0123456789abcdef0123456789abcdef",
            project_name: "p1",
            endpoint: "http://127.0.0.1:8080/",
            region: "region-1",
        });
        let body: Value = serde_json::from_str(&text).unwrap();
        let token = &body["token"];
        assert_eq!(token["expires_at"], "2026-11-26T18:38:24.000000Z");
        assert_eq!(token["issued_at"], "2026-11-25T18:38:24.000000Z");
        assert_eq!(token["methods"], json!(["password"]));
        assert_eq!(token["project"]["domain"]["name"], "Default");
        assert_eq!(token["user"]["name"], "alice");
        let catalog = token["catalog"].as_array().unwrap();
        assert_eq!(catalog.len(), 2);
        assert_eq!(catalog[0]["type"], "dms");
        assert_eq!(
            catalog[0]["endpoints"][0]["url"],
            "http://127.0.0.1:8080/v1.0/0123456789abcdef0123456789abcdef"
        );
        assert_eq!(catalog[1]["type"], "dmsv2");
        assert_eq!(catalog[1]["endpoints"][0]["region_id"], "region-1");
        assert_eq!(catalog[1]["endpoints"][0]["interface"], "public");
        assert!(catalog[1]["endpoints"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/v2/0123456789abcdef0123456789abcdef"));
    }
}
