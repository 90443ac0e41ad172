//! Redis Streams with consumer groups (redis-rs on tokio), the server started with
//! `appendonly yes` and `appendfsync always` (`peers.rs`): a write is answered after the
//! AOF fsync of the event-loop pass that ran it.
//!
//! - A stream key and group per row (`XGROUP CREATE ... MKSTREAM`).
//! - Send: one pipeline of `XADD key * b BODY` per batch on the producer's connection.
//! - Receive: `XREADGROUP GROUP g cN COUNT n BLOCK 100 STREAMS key >`.
//! - Ack: one `XACK key g id...` per batch (acked entries stay in the stream, as in a
//!   stream trimmed by length).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Value};

use crate::driver::{Consumer, Driver, Producer, RECEIVE_WAIT_MS};

const GROUP: &str = "g";

pub struct Redis {
    client: redis::Client,
    key: String,
    rows_started: u32,
}

impl Redis {
    pub fn new(port: u16) -> Result<Redis, String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .map_err(|e| format!("redis client: {e}"))?;
        Ok(Redis {
            client,
            key: String::new(),
            rows_started: 0,
        })
    }

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        // A blocked XREADGROUP and an fsync-bound pipeline may take a while: wait long.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(60)));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("redis connect: {e}"))
    }
}

impl Driver for Redis {
    type Producer = RedisProducer;
    type Consumer = RedisConsumer;

    async fn reset(&mut self) -> Result<(), String> {
        let mut conn = self.connect().await?;
        if !self.key.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&self.key)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("redis DEL: {e}"))?;
        }
        self.rows_started += 1;
        self.key = format!("cmp:{}", self.rows_started);
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("redis XGROUP CREATE: {e}"))?;
        Ok(())
    }

    async fn producer(&self, _index: u32) -> Result<RedisProducer, String> {
        Ok(RedisProducer {
            conn: self.connect().await?,
            key: self.key.clone(),
        })
    }

    async fn consumer(
        &self,
        index: u32,
        _count: u32,
        _batch: u32,
    ) -> Result<RedisConsumer, String> {
        Ok(RedisConsumer {
            conn: self.connect().await?,
            key: self.key.clone(),
            name: format!("c{index}"),
            pending_ids: Vec::new(),
        })
    }
}

pub struct RedisProducer {
    conn: MultiplexedConnection,
    key: String,
}

impl Producer for RedisProducer {
    async fn send(&mut self, bodies: &[Vec<u8>]) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for body in bodies {
            pipe.cmd("XADD").arg(&self.key).arg("*").arg("b").arg(body);
        }
        let ids: Vec<String> = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| format!("redis XADD: {e}"))?;
        if ids.len() == bodies.len() {
            Ok(())
        } else {
            Err(format!(
                "redis XADD: {} ids for {}",
                ids.len(),
                bodies.len()
            ))
        }
    }
}

pub struct RedisConsumer {
    conn: MultiplexedConnection,
    key: String,
    name: String,
    /// Entry ids received since the last ack (at most one receive's).
    pending_ids: Vec<String>,
}

impl Consumer for RedisConsumer {
    async fn receive(&mut self, max: u32, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(RECEIVE_WAIT_MS)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(">")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| format!("redis XREADGROUP: {e}"))?;
        for stream in reply.into_iter().flat_map(|reply| reply.keys) {
            for entry in stream.ids {
                match entry.map.get("b") {
                    Some(Value::BulkString(body)) => out.push(body.clone()),
                    other => return Err(format!("redis entry without body: {other:?}")),
                }
                self.pending_ids.push(entry.id);
            }
        }
        Ok(())
    }

    async fn ack(&mut self) -> Result<(), String> {
        if self.pending_ids.is_empty() {
            return Ok(());
        }
        let acked: u64 = redis::cmd("XACK")
            .arg(&self.key)
            .arg(GROUP)
            .arg(&self.pending_ids)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| format!("redis XACK: {e}"))?;
        let expected = self.pending_ids.len() as u64;
        self.pending_ids.clear();
        if acked == expected {
            Ok(())
        } else {
            Err(format!("redis XACK: {acked} of {expected}"))
        }
    }
}
