//! Sluice over the DMS API with the same client as `http-load` (`sluice_benches::dms`): a
//! NORMAL queue and one group per row; a send is one request of up to 10 messages,
//! counted when answered 201 with every `state` 0 (after fdatasync); a receive is a long
//! poll of `max_msgs` (1 s), an ack one request for the batch (itself durable).

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;

use serde_json::{json, Value};
use sluice_benches::dms::{
    read_tenant, send_all_stored, spawn_server, unix_now, Conn, Delivery, Signer, Spawned,
};

use crate::args::SLUICE_BATCH_MAX;
use crate::driver::{Consumer, Driver, Producer};

pub struct Sluice {
    signer: Rc<Signer>,
    address: SocketAddr,
    /// `/v1.0/{project_id}`.
    base: String,
    /// The current row's queue and group.
    queue: Option<(String, String)>,
    rows_started: u32,
    /// Dropped last: stops the server and removes its data directory.
    _server: Spawned,
}

impl Sluice {
    /// Starts `binary server` on a fresh data directory under `parent` on a free port.
    pub fn start(binary: &Path, parent: &Path) -> Result<Sluice, String> {
        let (server, address) = spawn_server(binary, parent, "mq-compare-sluice", None)?;
        let tenant = read_tenant(&server.data_dir)?;
        let base = format!("/v1.0/{}", tenant.project_id);
        Ok(Sluice {
            signer: Rc::new(Signer {
                tenant,
                host: address.to_string(),
            }),
            address,
            base,
            queue: None,
            rows_started: 0,
            _server: server,
        })
    }

    fn queue(&self) -> Result<&(String, String), String> {
        self.queue
            .as_ref()
            .ok_or_else(|| "no queue: reset first".to_string())
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        // The server's stderr log sits beside its data directory, which `Spawned` removes.
        let _ = std::fs::remove_file(self._server.data_dir.with_extension("log"));
    }
}

impl Driver for Sluice {
    type Producer = SluiceProducer;
    type Consumer = SluiceConsumer;

    async fn reset(&mut self) -> Result<(), String> {
        let mut conn = Conn::new(self.address);
        if let Some((queue_id, _)) = self.queue.take() {
            let path = format!("{}/queues/{queue_id}", self.base);
            conn.call_json(&self.signer, "DELETE", &path, &Value::Null)
                .await?;
        }
        self.rows_started += 1;
        let name = format!("cmp-{}-{}", unix_now().as_millis(), self.rows_started);
        let path = format!("{}/queues", self.base);
        let created = conn
            .call_json(
                &self.signer,
                "POST",
                &path,
                &json!({"name": name, "queue_mode": "NORMAL"}),
            )
            .await?;
        let queue_id = created["id"]
            .as_str()
            .ok_or("queue answer without id")?
            .to_string();
        let path = format!("{}/queues/{queue_id}/groups", self.base);
        let created = conn
            .call_json(
                &self.signer,
                "POST",
                &path,
                &json!({"groups": [{"name": "g"}]}),
            )
            .await?;
        let group_id = created["groups"][0]["id"]
            .as_str()
            .ok_or("group answer without id")?
            .to_string();
        self.queue = Some((queue_id, group_id));
        Ok(())
    }

    async fn producer(&self, _index: u32) -> Result<SluiceProducer, String> {
        let (queue_id, _) = self.queue()?;
        Ok(SluiceProducer {
            conn: Conn::new(self.address),
            signer: self.signer.clone(),
            path: format!("{}/queues/{queue_id}/messages", self.base),
            body: Vec::new(),
        })
    }

    async fn consumer(
        &self,
        _index: u32,
        _count: u32,
        batch: u32,
    ) -> Result<SluiceConsumer, String> {
        let (queue_id, group_id) = self.queue()?;
        let group_path = format!("{}/queues/{queue_id}/groups/{group_id}", self.base);
        Ok(SluiceConsumer {
            conn: Conn::new(self.address),
            signer: self.signer.clone(),
            receive_path: format!("{group_path}/messages"),
            query: format!(
                "max_msgs={}&time_wait=1&ack_wait=30",
                batch.min(SLUICE_BATCH_MAX)
            ),
            ack_path: format!("{group_path}/ack"),
            handlers: Vec::new(),
        })
    }
}

pub struct SluiceProducer {
    conn: Conn,
    signer: Rc<Signer>,
    path: String,
    body: Vec<u8>,
}

impl Producer for SluiceProducer {
    async fn send(&mut self, bodies: &[Vec<u8>]) -> Result<(), String> {
        assert!(
            bodies.len() <= SLUICE_BATCH_MAX as usize,
            "validated by the arguments"
        );
        self.body.clear();
        self.body.extend_from_slice(b"{\"messages\":[");
        for (index, body) in bodies.iter().enumerate() {
            if index > 0 {
                self.body.push(b',');
            }
            // The bodies are ASCII digits, letters and '-': no JSON escaping needed.
            debug_assert!(body.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'));
            self.body.extend_from_slice(b"{\"body\":\"");
            self.body.extend_from_slice(body);
            self.body.extend_from_slice(b"\"}");
        }
        self.body.extend_from_slice(b"]}");
        let response = self
            .conn
            .call(&self.signer, "POST", &self.path, None, &self.body)
            .await?;
        if response.status == 201 && send_all_stored(&response.body) {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&response.body);
            Err(format!("send: HTTP {}: {text}", response.status))
        }
    }
}

pub struct SluiceConsumer {
    conn: Conn,
    signer: Rc<Signer>,
    receive_path: String,
    query: String,
    ack_path: String,
    /// Handlers received since the last ack (at most one receive's).
    handlers: Vec<String>,
}

impl Consumer for SluiceConsumer {
    async fn receive(&mut self, _max: u32, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let response = self
            .conn
            .call(
                &self.signer,
                "GET",
                &self.receive_path,
                Some(&self.query),
                b"",
            )
            .await?;
        if response.status != 200 {
            let text = String::from_utf8_lossy(&response.body);
            return Err(format!("receive: HTTP {}: {text}", response.status));
        }
        let deliveries: Vec<Delivery> = serde_json::from_slice(&response.body)
            .map_err(|e| format!("receive: bad JSON: {e}"))?;
        for delivery in deliveries {
            let body = match delivery.message.body {
                Value::String(text) => text.into_bytes(),
                other => other.to_string().into_bytes(),
            };
            out.push(body);
            self.handlers.push(delivery.handler);
        }
        Ok(())
    }

    async fn ack(&mut self) -> Result<(), String> {
        if self.handlers.is_empty() {
            return Ok(());
        }
        let entries: Vec<Value> = self
            .handlers
            .iter()
            .map(|handler| json!({"handler": handler, "status": "success"}))
            .collect();
        let body = json!({ "message": entries });
        let answer = self
            .conn
            .call_json(&self.signer, "POST", &self.ack_path, &body)
            .await?;
        let expected = self.handlers.len() as u64;
        self.handlers.clear();
        if answer["success"].as_u64() == Some(expected) {
            Ok(())
        } else {
            Err(format!("ack: partial success: {answer}"))
        }
    }
}
