//! RabbitMQ quorum queues over AMQP 0-9-1 (lapin). A quorum queue writes every message
//! to its Raft log and fsyncs it before the publisher confirm.
//!
//! - A durable queue with `x-queue-type = quorum` per row.
//! - Send: one connection and channel per producer in confirm mode; a batch is that many
//!   persistent `basic.publish`es, counted when every one's `basic.ack` arrived.
//! - Receive: `basic.consume` with manual acks and `basic.qos` prefetch of twice the
//!   batch; a receive takes what has arrived, up to the batch, waiting at most
//!   [`RECEIVE_WAIT_MS`] for the first.
//! - Ack: one `basic.ack(multiple)` up to the last delivery tag (AMQP has no answer to an
//!   ack, so it counts when written).

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use lapin::{Confirmation, PublisherConfirm};

use crate::driver::{Consumer, Driver, Producer, RECEIVE_WAIT_MS};

/// `delivery_mode` of a persistent message.
const PERSISTENT: u8 = 2;

pub struct Rabbitmq {
    url: String,
    queue: String,
    rows_started: u32,
}

impl Rabbitmq {
    pub fn new(port: u16) -> Rabbitmq {
        Rabbitmq {
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            queue: String::new(),
            rows_started: 0,
        }
    }

    async fn open(&self) -> Result<(Connection, Channel), String> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(|e| format!("rabbitmq connect: {e}"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("rabbitmq channel: {e}"))?;
        Ok((connection, channel))
    }
}

impl Driver for Rabbitmq {
    type Producer = RabbitProducer;
    type Consumer = RabbitConsumer;

    async fn reset(&mut self) -> Result<(), String> {
        let (connection, channel) = self.open().await?;
        if !self.queue.is_empty() {
            channel
                .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|e| format!("rabbitmq queue.delete: {e}"))?;
        }
        self.rows_started += 1;
        self.queue = format!("cmp-{}", self.rows_started);
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(self.queue.as_str().into(), options, arguments)
            .await
            .map_err(|e| format!("rabbitmq queue.declare: {e}"))?;
        let _ = connection.close(200, "reset done".into()).await;
        Ok(())
    }

    async fn producer(&self, _index: u32) -> Result<RabbitProducer, String> {
        let (connection, channel) = self.open().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("rabbitmq confirm.select: {e}"))?;
        Ok(RabbitProducer {
            _connection: connection,
            channel,
            queue: self.queue.clone(),
            confirms: Vec::new(),
        })
    }

    async fn consumer(
        &self,
        index: u32,
        _count: u32,
        batch: u32,
    ) -> Result<RabbitConsumer, String> {
        let (connection, channel) = self.open().await?;
        let prefetch = u16::try_from(batch.saturating_mul(2)).unwrap_or(u16::MAX);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| format!("rabbitmq basic.qos: {e}"))?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                format!("cmp-consumer-{index}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("rabbitmq basic.consume: {e}"))?;
        Ok(RabbitConsumer {
            _connection: connection,
            channel,
            consumer,
            last_tag: None,
        })
    }
}

pub struct RabbitProducer {
    _connection: Connection,
    channel: Channel,
    queue: String,
    /// The confirms of the batch in flight (at most one batch).
    confirms: Vec<PublisherConfirm>,
}

impl Producer for RabbitProducer {
    async fn send(&mut self, bodies: &[Vec<u8>]) -> Result<(), String> {
        self.confirms.clear();
        for body in bodies {
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_delivery_mode(PERSISTENT),
                )
                .await
                .map_err(|e| format!("rabbitmq publish: {e}"))?;
            self.confirms.push(confirm);
        }
        for confirm in self.confirms.drain(..) {
            match confirm.await {
                Ok(Confirmation::Ack(None)) => {}
                Ok(Confirmation::Ack(Some(_))) => return Err("rabbitmq: returned".into()),
                Ok(Confirmation::Nack(_)) => return Err("rabbitmq: nacked".into()),
                Ok(Confirmation::NotRequested) => return Err("rabbitmq: no confirm".into()),
                Err(error) => return Err(format!("rabbitmq confirm: {error}")),
            }
        }
        Ok(())
    }
}

pub struct RabbitConsumer {
    _connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    last_tag: Option<u64>,
}

impl Consumer for RabbitConsumer {
    async fn receive(&mut self, max: u32, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let wait = Duration::from_millis(RECEIVE_WAIT_MS);
        let first = match tokio::time::timeout(wait, self.consumer.next()).await {
            Err(_) => return Ok(()),
            Ok(None) => return Err("rabbitmq: consumer cancelled".to_string()),
            Ok(Some(delivery)) => delivery.map_err(|e| format!("rabbitmq delivery: {e}"))?,
        };
        self.last_tag = Some(first.delivery_tag);
        out.push(first.data);
        let mut taken = 1;
        // Bounded by `max`.
        while taken < max {
            match futures_lite::future::poll_once(self.consumer.next()).await {
                Some(Some(delivery)) => {
                    let delivery = delivery.map_err(|e| format!("rabbitmq delivery: {e}"))?;
                    self.last_tag = Some(delivery.delivery_tag);
                    out.push(delivery.data);
                    taken += 1;
                }
                Some(None) => return Err("rabbitmq: consumer cancelled".to_string()),
                None => break,
            }
        }
        Ok(())
    }

    async fn ack(&mut self) -> Result<(), String> {
        let Some(tag) = self.last_tag.take() else {
            return Ok(());
        };
        self.channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await
            .map_err(|e| format!("rabbitmq basic.ack: {e}"))
    }
}
