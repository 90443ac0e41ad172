//! A small blocking client of the DMS API that signs its requests (SDK-HMAC-SHA256): the
//! CLI's `send`, `receive`, `ack`, `queue` and `tenant` commands, and the end-to-end
//! tests, use it. Queues and groups are named by name; the client looks their ids up.

use std::time::{Duration, Instant};

use http::header::{HeaderValue, CONTENT_TYPE, HOST};
use http::HeaderMap;
use serde_json::Value;

/// Who signs: a tenant (its project id, AK and SK) or the admin (no project).
#[derive(Clone)]
pub struct Credentials {
    pub project_id: String,
    pub ak: String,
    pub sk: String,
}

pub struct Client {
    /// `http://host:port`, no trailing slash.
    pub endpoint: String,
    pub credentials: Credentials,
    agent: ureq::Agent,
    /// How long a request keeps trying to connect (a server that is starting); zero by
    /// default: one attempt.
    connect_wait: Duration,
}

/// Pause between two connection attempts while `connect_wait` lasts.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A response: status and parsed JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The body, when the status is 2xx; otherwise the server's error message.
    pub fn ok(self) -> Result<Value, String> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let message = self.body["error_msg"].as_str().unwrap_or("(no message)");
        let code = self.body["error_code"].as_str().unwrap_or("-");
        Err(format!("HTTP {}: {message} (code {code})", self.status))
    }
}

fn unix_now_s() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

impl Client {
    pub fn new(endpoint: &str, credentials: Credentials) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(120))
            .build();
        Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            credentials,
            agent,
            connect_wait: Duration::ZERO,
        }
    }

    /// Keeps trying to connect for up to `wait` (the connection is refused while a
    /// server starts); a request that never reached the server is safe to repeat.
    pub fn with_connect_wait(mut self, wait: Duration) -> Client {
        self.connect_wait = wait;
        self
    }

    /// Sends one signed request. `path` may carry a query (`/v1.0/p/queues?x=1`).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer, String> {
        let response = self.exchange(method, path, body)?;
        let status = response.status();
        let text = response.into_string().map_err(|e| e.to_string())?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| format!("{method} {path}: bad JSON: {e}"))?
        };
        Ok(Answer { status, body })
    }

    /// One signed request; the response whatever its status.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ureq::Response, String> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (raw_path, raw_query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let authority = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, rest)| rest);
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(authority).map_err(|e| e.to_string())?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        sluice_http::auth::sign_request(
            &self.credentials.ak,
            &self.credentials.sk,
            method,
            raw_path,
            raw_query,
            &mut headers,
            &bytes,
            unix_now_s(),
        );
        let deadline = Instant::now() + self.connect_wait;
        // Bounded by `connect_wait`: only refused connections are tried again.
        let response = loop {
            let mut request = self
                .agent
                .request(method, &format!("{}{path}", self.endpoint));
            for (name, value) in &headers {
                if name == HOST {
                    continue;
                }
                request = request.set(name.as_str(), value.to_str().map_err(|e| e.to_string())?);
            }
            let result = if bytes.is_empty() {
                request.call()
            } else {
                request.send_bytes(&bytes)
            };
            match result {
                Ok(response) => break response,
                Err(ureq::Error::Status(_, response)) => break response,
                Err(ureq::Error::Transport(failure))
                    if failure.kind() == ureq::ErrorKind::ConnectionFailed
                        && !self.connect_wait.is_zero() =>
                {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "{method} {path}: no server accepts connections at {} \
                             (waited {} ms; is the server running?): {failure}",
                            self.endpoint,
                            self.connect_wait.as_millis()
                        ));
                    }
                    std::thread::sleep(CONNECT_RETRY_PAUSE);
                }
                Err(error) => return Err(format!("{method} {path}: {error}")),
            }
        };
        Ok(response)
    }

    /// Writes every dead letter of `group` of `queue` to `out` as JSON lines (one
    /// message a line, as a consume shows it), page by page through the export API
    /// (`.../deadletters/export`, following `X-Next-Cursor`), leasing none. Returns how
    /// many were written.
    pub fn export_dead_letters(
        &self,
        queue: &str,
        group: &str,
        out: &mut impl std::io::Write,
    ) -> Result<u64, String> {
        let queue_id = self.queue_id(queue)?;
        let group_id = self.group_id(&queue_id, group)?;
        let export = format!(
            "{}/queues/{queue_id}/groups/{group_id}/deadletters/export",
            self.base()
        );
        let mut cursor: Option<String> = None;
        let mut written = 0;
        // Bounded by the dead letters: each page moves the cursor past what it wrote.
        loop {
            let path = match &cursor {
                None => export.clone(),
                Some(cursor) => format!("{export}?cursor={cursor}"),
            };
            let response = self.exchange("GET", &path, None)?;
            let status = response.status();
            let next = response.header("x-next-cursor").map(str::to_string);
            let text = response.into_string().map_err(|e| e.to_string())?;
            if !(200..300).contains(&status) {
                let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                return Answer { status, body }.ok().map(|_| 0);
            }
            for line in text.lines().filter(|line| !line.is_empty()) {
                writeln!(out, "{line}").map_err(|e| format!("writing the export: {e}"))?;
                written += 1;
            }
            match next {
                Some(next) if cursor.as_ref() != Some(&next) => cursor = Some(next),
                Some(_) => return Err("the export's cursor did not move".to_string()),
                None => return Ok(written),
            }
        }
    }

    fn base(&self) -> String {
        format!("/v1.0/{}", self.credentials.project_id)
    }

    pub fn queue_id(&self, name: &str) -> Result<String, String> {
        let list = self
            .call("GET", &format!("{}/queues", self.base()), None)?
            .ok()?;
        list["queues"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| q["name"] == name)
            .and_then(|q| q["id"].as_str().map(str::to_string))
            .ok_or_else(|| format!("no queue named {name:?}"))
    }

    pub fn group_id(&self, queue_id: &str, name: &str) -> Result<String, String> {
        let path = format!("{}/queues/{queue_id}/groups", self.base());
        let list = self.call("GET", &path, None)?.ok()?;
        list["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["name"] == name)
            .and_then(|g| g["id"].as_str().map(str::to_string))
            .ok_or_else(|| format!("no consumer group named {name:?}"))
    }

    pub fn create_queue(
        &self,
        name: &str,
        mode: &str,
        max_consume_count: Option<u32>,
    ) -> Result<Value, String> {
        let mut body = serde_json::json!({"name": name, "queue_mode": mode});
        if let Some(count) = max_consume_count {
            body["redrive_policy"] = "enable".into();
            body["max_consume_count"] = count.into();
        }
        self.call("POST", &format!("{}/queues", self.base()), Some(&body))?
            .ok()
    }

    pub fn create_group(&self, queue: &str, name: &str) -> Result<Value, String> {
        let queue_id = self.queue_id(queue)?;
        let body = serde_json::json!({"groups": [{"name": name}]});
        let path = format!("{}/queues/{queue_id}/groups", self.base());
        self.call("POST", &path, Some(&body))?.ok()
    }

    pub fn send(&self, queue: &str, bodies: &[Value]) -> Result<Value, String> {
        let queue_id = self.queue_id(queue)?;
        let messages: Vec<Value> = bodies
            .iter()
            .map(|b| serde_json::json!({"body": b}))
            .collect();
        let body = serde_json::json!({"messages": messages, "return_id": true});
        let path = format!("{}/queues/{queue_id}/messages", self.base());
        self.call("POST", &path, Some(&body))?.ok()
    }

    pub fn receive(
        &self,
        queue: &str,
        group: &str,
        max: u32,
        wait_s: u32,
        ack_wait_s: u32,
    ) -> Result<Value, String> {
        let queue_id = self.queue_id(queue)?;
        let group_id = self.group_id(&queue_id, group)?;
        let path = format!(
            "{}/queues/{queue_id}/groups/{group_id}/messages?max_msgs={max}&time_wait={wait_s}&ack_wait={ack_wait_s}",
            self.base()
        );
        self.call("GET", &path, None)?.ok()
    }

    pub fn ack(
        &self,
        queue: &str,
        group: &str,
        handlers: &[String],
        success: bool,
    ) -> Result<Value, String> {
        let queue_id = self.queue_id(queue)?;
        let group_id = self.group_id(&queue_id, group)?;
        let status = if success { "success" } else { "fail" };
        let entries: Vec<Value> = handlers
            .iter()
            .map(|h| serde_json::json!({"handler": h, "status": status}))
            .collect();
        let path = format!("{}/queues/{queue_id}/groups/{group_id}/ack", self.base());
        self.call(
            "POST",
            &path,
            Some(&serde_json::json!({"message": entries})),
        )?
        .ok()
    }
}
