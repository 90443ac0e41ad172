//! The Telemetry stream: a client opens it to each broker endpoint and writes its
//! Settings; the server answers every Settings with status OK and the settings it is to
//! use (the client's own, with this server's limits filled in: the largest body a
//! producer may send, the long-polling timeout and FIFO flag a push consumer uses,
//! metrics off). The stream stays open for as long as the client keeps it; other client
//! commands (thread stack traces, verify results) are taken and not answered. A
//! producer's stream also carries the checks of its open transactions
//! (`crate::transaction`), which the server takes every `TRANSACTION_CHECK_POLL_MS`.

use bytes::Bytes;
use http::HeaderMap;
use prost::Message as _;
use prost_types::Duration;
use sluice_core::engine::types::QueueMode;
use sluice_node::tenants::Tenant;
use sluice_node::{Node, QueueView};

use crate::auth;
use crate::grpc;
use crate::limits::{
    BODY_BYTES_MAX, LONG_POLL_S_ADVERTISED, RECEIVE_MESSAGES_MAX, TRANSACTION_TOPICS_MAX,
};
use crate::proto::settings::PubSub;
use crate::proto::telemetry_command::Command;
use crate::proto::{Code, Metric, Settings, Status, TelemetryCommand};
use crate::service::ok;

/// One open Telemetry stream of an authenticated client.
#[derive(Debug)]
pub struct Telemetry {
    tenant: Tenant,
    /// A producer's topics (the last Settings' publishing list, those that exist): the
    /// queues whose transaction checks this stream takes.
    topics: Vec<QueueView>,
}

/// A command the server writes on the stream, framed.
fn command_frame(status: Option<Status>, command: Option<Command>) -> Bytes {
    grpc::frame(&TelemetryCommand { status, command })
}

impl Telemetry {
    /// Authenticates the stream by the headers it opened with. A refusal is the one
    /// command to write before ending the stream.
    pub async fn open<N: Node>(node: &N, headers: &HeaderMap) -> Result<Telemetry, Bytes> {
        match auth::authenticate(node, headers).await {
            Ok(tenant) => Ok(Telemetry {
                tenant,
                topics: Vec::new(),
            }),
            Err(error) => Err(command_frame(
                Some(Status {
                    code: Code::Unauthorized as i32,
                    message: error.message().to_string(),
                }),
                None,
            )),
        }
    }

    /// Takes one message of the client: the command to answer with, if any, or why the
    /// message is not a command (which ends the stream with INVALID_ARGUMENT).
    pub fn command<N: Node>(&mut self, node: &N, message: Bytes) -> Result<Option<Bytes>, String> {
        let command = TelemetryCommand::decode(message)
            .map_err(|error| format!("the Telemetry command does not decode: {error}"))?;
        match command.command {
            Some(Command::Settings(settings)) => {
                let settings = self.settings_for(node, settings);
                Ok(Some(command_frame(ok(), Some(Command::Settings(settings)))))
            }
            // Answers to commands this server never sends, or commands only a server
            // sends: nothing to do.
            Some(_) | None => Ok(None),
        }
    }

    /// Whether the stream is a producer's that takes transaction checks.
    pub fn wants_checks(&self) -> bool {
        !self.topics.is_empty()
    }

    /// The due transaction checks of the producer's topics, as commands to write
    /// (`crate::transaction`).
    pub async fn take_checks<N: Node>(&self, node: &N) -> Vec<Bytes> {
        crate::transaction::take_checks(node, &self.topics).await
    }

    /// The client's settings with this server's filled in.
    fn settings_for<N: Node>(&mut self, node: &N, mut settings: Settings) -> Settings {
        match &mut settings.pub_sub {
            Some(PubSub::Publishing(publishing)) => {
                publishing.max_body_size = i32::try_from(BODY_BYTES_MAX).expect("fits i32");
                let tenant = self.tenant.project_id.as_str();
                self.topics = publishing
                    .topics
                    .iter()
                    .filter_map(|topic| node.queue_named(tenant, &topic.name))
                    .filter(|view| matches!(view.config.mode, QueueMode::Normal))
                    .take(TRANSACTION_TOPICS_MAX)
                    .collect();
            }
            Some(PubSub::Subscription(subscription)) => {
                subscription.long_polling_timeout = Some(Duration {
                    seconds: LONG_POLL_S_ADVERTISED,
                    nanos: 0,
                });
                subscription.receive_batch_size =
                    Some(i32::try_from(RECEIVE_MESSAGES_MAX).expect("fits i32"));
                let tenant = self.tenant.project_id.as_str();
                let fifo = subscription.subscriptions.iter().any(|entry| {
                    let name = entry.topic.as_ref().map_or("", |topic| topic.name.as_str());
                    node.queue_named(tenant, name)
                        .is_some_and(|view| matches!(view.config.mode, QueueMode::Fifo(_)))
                });
                subscription.fifo = Some(fifo);
            }
            None => {}
        }
        settings.metric = Some(Metric {
            on: false,
            endpoints: None,
        });
        settings
    }
}
