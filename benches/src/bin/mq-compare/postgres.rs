//! PostgreSQL as a queue (tokio-postgres), with `synchronous_commit = on` and `fsync = on`
//! set by the server's start-up (`peers.rs`): a commit returns after the WAL flush.
//!
//! - A table per row, `id bigserial primary key, body bytea`.
//! - Send: one autocommit `INSERT ... SELECT unnest($1::bytea[])` per batch, so one
//!   commit (one WAL flush) per batch.
//! - Receive: `BEGIN`, then `SELECT id, body ... ORDER BY id LIMIT n FOR UPDATE SKIP
//!   LOCKED`; the row locks are the lease. When nothing is there it rolls back and polls
//!   again every millisecond, for at most [`RECEIVE_WAIT_MS`].
//! - Ack: `DELETE ... WHERE id = ANY($1)` and `COMMIT` (one WAL flush per batch).

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, Statement};

use crate::driver::{Consumer, Driver, Producer, RECEIVE_WAIT_MS};

pub struct Postgres {
    dsn: String,
    table: String,
    rows_started: u32,
}

impl Postgres {
    pub fn new(port: u16) -> Postgres {
        Postgres {
            dsn: format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
            table: String::new(),
            rows_started: 0,
        }
    }
}

async fn connect(dsn: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls)
        .await
        .map_err(|e| format!("postgres connect: {e}"))?;
    // Ends when the client is dropped (or the server goes away).
    tokio::task::spawn_local(async move {
        if let Err(error) = connection.await {
            eprintln!("mq-compare: postgres connection: {error}");
        }
    });
    Ok(client)
}

fn pg_error(what: &str) -> impl Fn(tokio_postgres::Error) -> String + '_ {
    move |error| format!("postgres {what}: {error}")
}

impl Driver for Postgres {
    type Producer = PgProducer;
    type Consumer = PgConsumer;

    async fn reset(&mut self) -> Result<(), String> {
        let client = connect(&self.dsn).await?;
        if !self.table.is_empty() {
            let drop = format!("DROP TABLE IF EXISTS {}", self.table);
            client
                .batch_execute(&drop)
                .await
                .map_err(pg_error("drop"))?;
        }
        self.rows_started += 1;
        self.table = format!("cmp_queue_{}", self.rows_started);
        let create = format!(
            "CREATE TABLE {} (id bigserial PRIMARY KEY, body bytea NOT NULL)",
            self.table
        );
        client
            .batch_execute(&create)
            .await
            .map_err(pg_error("create"))
    }

    async fn producer(&self, _index: u32) -> Result<PgProducer, String> {
        let client = connect(&self.dsn).await?;
        let sql = format!(
            "INSERT INTO {} (body) SELECT unnest($1::bytea[])",
            self.table
        );
        let insert = client.prepare(&sql).await.map_err(pg_error("prepare"))?;
        Ok(PgProducer { client, insert })
    }

    async fn consumer(&self, _index: u32, _count: u32, _batch: u32) -> Result<PgConsumer, String> {
        let client = connect(&self.dsn).await?;
        let sql = format!(
            "SELECT id, body FROM {} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            self.table
        );
        let select = client.prepare(&sql).await.map_err(pg_error("prepare"))?;
        let sql = format!("DELETE FROM {} WHERE id = ANY($1)", self.table);
        let delete = client.prepare(&sql).await.map_err(pg_error("prepare"))?;
        Ok(PgConsumer {
            client,
            select,
            delete,
            leased_ids: Vec::new(),
        })
    }
}

pub struct PgProducer {
    client: Client,
    insert: Statement,
}

impl Producer for PgProducer {
    async fn send(&mut self, bodies: &[Vec<u8>]) -> Result<(), String> {
        let slices: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let inserted = self
            .client
            .execute(&self.insert, &[&slices])
            .await
            .map_err(pg_error("insert"))?;
        if inserted == bodies.len() as u64 {
            Ok(())
        } else {
            Err(format!(
                "postgres insert: {inserted} rows of {}",
                bodies.len()
            ))
        }
    }
}

pub struct PgConsumer {
    client: Client,
    select: Statement,
    delete: Statement,
    /// Rows locked by the open transaction, deleted at the ack.
    leased_ids: Vec<i64>,
}

impl Consumer for PgConsumer {
    async fn receive(&mut self, max: u32, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        if !self.leased_ids.is_empty() {
            return Err("postgres receive: the previous batch was not acked".to_string());
        }
        let deadline = Instant::now() + Duration::from_millis(RECEIVE_WAIT_MS);
        // Bounded by the deadline.
        loop {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(pg_error("begin"))?;
            let rows = self
                .client
                .query(&self.select, &[&i64::from(max)])
                .await
                .map_err(pg_error("select"))?;
            if !rows.is_empty() {
                for row in rows {
                    self.leased_ids.push(row.get(0));
                    out.push(row.get::<_, Vec<u8>>(1));
                }
                return Ok(());
            }
            self.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(pg_error("rollback"))?;
            if Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn ack(&mut self) -> Result<(), String> {
        if self.leased_ids.is_empty() {
            return Ok(());
        }
        let deleted = self
            .client
            .execute(&self.delete, &[&self.leased_ids])
            .await
            .map_err(pg_error("delete"))?;
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(pg_error("commit"))?;
        let expected = self.leased_ids.len() as u64;
        self.leased_ids.clear();
        if deleted == expected {
            Ok(())
        } else {
            Err(format!("postgres ack: deleted {deleted} of {expected}"))
        }
    }
}
