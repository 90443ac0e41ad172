//! Command line: which systems, which workloads, how many messages, and its checks.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Messages per send request the DMS API allows: the `sluice` (DMS) system's batch is
/// capped here (`Args::batch_of`); `sluice-kafka` and the peers take `--batch` as given.
pub const SLUICE_BATCH_MAX: u32 = sluice_benches::dms::SEND_BATCH_MAX;
/// Largest producer batch (messages in flight per producer) and consume batch.
pub const BATCH_MAX: u32 = 1000;
/// Largest number of producers (and of consumers) of one row.
pub const CONCURRENCY_MAX: u32 = 64;
/// Largest number of messages of one row (the ledger holds one byte per message).
pub const MESSAGES_MAX: u64 = 50_000_000;
/// Smallest body: 16 hex digits of the run nonce, '-', 10 digits of id, '-'.
pub const BODY_PREFIX_BYTES: u32 = 28;
/// Largest body.
pub const BODY_BYTES_MAX: u32 = 1 << 20;

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum System {
    /// Sluice over the DMS HTTP API.
    Sluice,
    /// Sluice over its Kafka listener.
    SluiceKafka,
    Postgres,
    Rabbitmq,
    Redis,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Sluice => "sluice",
            System::SluiceKafka => "sluice-kafka",
            System::Postgres => "postgres",
            System::Rabbitmq => "rabbitmq",
            System::Redis => "redis",
        }
    }

    /// Every system but Sluice (DMS or Kafka) is a peer: the ratio column compares with
    /// the best peer.
    pub fn is_peer(self) -> bool {
        !matches!(self, System::Sluice | System::SluiceKafka)
    }
}

/// A workload, the same for every system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    /// P producers, each with one batch in flight, into an empty queue.
    Produce,
    /// C consumers receive batches and ack each from a queue the producers filled.
    Consume,
    /// P producers and C consumers at once on an empty queue.
    Mixed,
    /// One producer, one message in flight: the confirm latency.
    Unbatched,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Produce => "produce",
            Workload::Consume => "consume",
            Workload::Mixed => "mixed",
            Workload::Unbatched => "unbatched",
        }
    }
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "mq-compare",
    about = "Sluice against PostgreSQL, RabbitMQ quorum queues and Redis Streams \
             (appendfsync always): the same durable workloads, one table"
)]
pub struct Args {
    /// Systems to measure, one at a time in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sluice,postgres,rabbitmq,redis"
    )]
    pub systems: Vec<System>,
    /// Workloads to run on each system.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "produce,consume,mixed,unbatched"
    )]
    pub workloads: Vec<Workload>,
    /// Producers (produce, mixed) and consumers (consume, mixed) of a row, one row each.
    #[arg(long, value_delimiter = ',', default_value = "2,16")]
    pub concurrency: Vec<u32>,
    /// Messages per produce / consume / mixed row.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Messages of the unbatched row (one in flight).
    #[arg(long, default_value_t = 2_000)]
    pub latency_messages: u64,
    /// Messages per producer batch (one batch in flight per producer; one request, one
    /// transaction, one pipeline or one window of confirms) and per consumer receive.
    /// The `sluice` (DMS API) system caps it at 10 per request; `sluice-kafka` and the
    /// peers take it as given.
    #[arg(long, default_value_t = 10)]
    pub batch: u32,
    /// Body bytes per message.
    #[arg(long, default_value_t = 1024)]
    pub size: u32,
    /// Producing stops after this many seconds even short of --messages.
    #[arg(long, default_value_t = 120.0)]
    pub seconds: f64,
    /// Seconds consumers may take, after producing ended, to receive everything.
    #[arg(long, default_value_t = 120.0)]
    pub drain_timeout: f64,
    /// A short run: 2,000 messages per row, 200 unbatched, concurrency 2 only.
    #[arg(long)]
    pub quick: bool,
    /// The `sluice` binary (default: `sluice` beside this binary).
    #[arg(long)]
    pub sluice: Option<PathBuf>,
    /// Parent of the systems' fresh data directories (a real disk, not tmpfs).
    #[arg(long, default_value = "/tmp")]
    pub data_parent: PathBuf,
    /// Never run apt-get: fail when a peer's binaries are missing.
    #[arg(long)]
    pub no_install: bool,
    /// Write the rows as a JSON array (one object per row) to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

impl Args {
    /// The batch `system` runs with: `--batch`, but at most [`SLUICE_BATCH_MAX`] for the
    /// `sluice` (DMS API) system.
    pub fn batch_of(&self, system: System) -> u32 {
        match system {
            System::Sluice => self.batch.min(SLUICE_BATCH_MAX),
            _ => self.batch,
        }
    }

    /// Whether the DMS cap lowered the `sluice` system's batch in this run.
    pub fn dms_batch_capped(&self) -> bool {
        self.systems.contains(&System::Sluice) && self.batch > SLUICE_BATCH_MAX
    }

    /// Applies `--quick`, sorts and dedups the lists, and checks every bound.
    pub fn normalise(mut self) -> Result<Args, String> {
        if self.quick {
            self.messages = 2_000;
            self.latency_messages = 200;
            self.concurrency = vec![2];
        }
        self.systems.sort_unstable();
        self.systems.dedup();
        self.workloads.sort_unstable();
        self.workloads.dedup();
        self.concurrency.sort_unstable();
        self.concurrency.dedup();
        if self.systems.is_empty() || self.workloads.is_empty() {
            return Err("--systems and --workloads must name at least one".to_string());
        }
        let batched = self.workloads.iter().any(|w| *w != Workload::Unbatched);
        if batched && self.concurrency.is_empty() {
            return Err("--concurrency must name at least one number".to_string());
        }
        if let Some(bad) = self
            .concurrency
            .iter()
            .find(|c| !(1..=CONCURRENCY_MAX).contains(*c))
        {
            return Err(format!(
                "--concurrency {bad}: must be 1..={CONCURRENCY_MAX}"
            ));
        }
        if !(1..=BATCH_MAX).contains(&self.batch) {
            return Err(format!("--batch must be 1..={BATCH_MAX}"));
        }
        if !(1..=MESSAGES_MAX).contains(&self.messages)
            || !(1..=MESSAGES_MAX).contains(&self.latency_messages)
        {
            return Err(format!(
                "--messages and --latency-messages must be 1..={MESSAGES_MAX}"
            ));
        }
        if !(BODY_PREFIX_BYTES..=BODY_BYTES_MAX).contains(&self.size) {
            return Err(format!(
                "--size must be {BODY_PREFIX_BYTES}..={BODY_BYTES_MAX} bytes"
            ));
        }
        let finite = |s: f64| s.is_finite() && s > 0.0 && s <= 86_400.0;
        if !finite(self.seconds) || !finite(self.drain_timeout) {
            return Err("--seconds and --drain-timeout must be in (0, 86400]".to_string());
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str]) -> Result<Args, String> {
        let mut argv = vec!["mq-compare"];
        argv.extend_from_slice(line);
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .normalise()
    }

    #[test]
    fn defaults_cover_every_system_workload_and_both_concurrencies() {
        let args = parse(&[]).expect("defaults are valid");
        assert_eq!(args.systems.len(), 4);
        assert_eq!(args.workloads.len(), 4);
        assert_eq!(args.concurrency, vec![2, 16]);
        assert_eq!((args.batch, args.size), (10, 1024));
    }

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        let args = parse(&[
            "--systems",
            "redis,sluice,redis",
            "--concurrency",
            "16,2,16",
        ])
        .expect("valid");
        assert_eq!(args.systems, vec![System::Sluice, System::Redis]);
        assert_eq!(args.concurrency, vec![2, 16]);
    }

    #[test]
    fn the_dms_cap_applies_to_the_sluice_system_only() {
        let args = parse(&[
            "--batch",
            "1000",
            "--systems",
            "sluice,sluice-kafka,postgres",
        ])
        .expect("valid");
        assert_eq!(args.batch_of(System::Sluice), SLUICE_BATCH_MAX);
        assert_eq!(args.batch_of(System::SluiceKafka), 1000);
        assert_eq!(args.batch_of(System::Postgres), 1000);
        assert!(args.dms_batch_capped());
        let args = parse(&["--batch", "10"]).expect("valid");
        assert_eq!(args.batch_of(System::Sluice), 10);
        assert!(!args.dms_batch_capped());
        let args = parse(&["--batch", "100", "--systems", "sluice-kafka"]).expect("valid");
        assert!(!args.dms_batch_capped());
    }

    #[test]
    fn quick_shrinks_the_run() {
        let args = parse(&["--quick", "--messages", "99999"]).expect("valid");
        assert_eq!((args.messages, args.latency_messages), (2_000, 200));
        assert_eq!(args.concurrency, vec![2]);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(parse(&["--batch", "1001"]).is_err());
        assert!(parse(&["--batch", "0"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--concurrency", "65"]).is_err());
        assert!(parse(&["--size", "27"]).is_err());
        assert!(parse(&["--messages", "0"]).is_err());
        assert!(parse(&["--seconds", "NaN"]).is_err());
        assert!(parse(&["--systems", "kafka"]).is_err());
        assert!(parse(&["--systems", "sluice-kafka"]).is_ok());
        assert!(parse(&["--workloads", ""]).is_err());
    }
}
