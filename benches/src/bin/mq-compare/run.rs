//! The workloads, the same on every system, and the check that every confirmed message
//! came back.
//!
//! Each row starts on a fresh queue. Produce and consume share one pass when both are
//! asked for: P producers fill the queue (the produce row), then C consumers drain it
//! (the consume row). A produce row alone still drains afterwards, untimed, to check that
//! nothing was lost; so does the unbatched row. Mixed starts consumers and producers
//! together. Every task runs on the one current-thread runtime (`spawn_local`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use sluice_benches::latency::Samples;

use crate::args::{Args, System, Workload, BODY_PREFIX_BYTES};
use crate::driver::{Consumer, Driver, Producer};
use crate::table::Row;

/// Error messages kept per row.
const ERRORS_KEPT_MAX: usize = 5;
/// How long stopped consumers get to finish their request before they are aborted.
const CONSUMER_STOP_WAIT_S: u64 = 5;

/// Run-wide accounting for one pass, shared by its tasks.
struct Ledger {
    nonce: u64,
    size_bytes: usize,
    message_count_max: u64,
    produce_deadline: Instant,
    ids_allocated: Cell<u64>,
    /// Per id: 1 once confirmed; allocated to `message_count_max` up front.
    confirmed: RefCell<Vec<u8>>,
    /// Per id: deliveries seen (saturating).
    seen: RefCell<Vec<u8>>,
    confirmed_count: Cell<u64>,
    confirmed_seen_count: Cell<u64>,
    distinct_count: Cell<u64>,
    duplicate_count: Cell<u64>,
    corrupt_count: Cell<u64>,
    error_count: Cell<u64>,
    producers_done: Cell<bool>,
    consumers_stop: Cell<bool>,
    last_confirm: Cell<Option<Instant>>,
    last_ack: Cell<Option<Instant>>,
    errors: RefCell<Vec<String>>,
}

impl Ledger {
    fn new(nonce: u64, args: &Args, message_count_max: u64) -> Ledger {
        let slots = usize::try_from(message_count_max).expect("validated: fits memory");
        Ledger {
            nonce,
            size_bytes: usize::try_from(args.size).expect("fits"),
            message_count_max,
            produce_deadline: Instant::now() + Duration::from_secs_f64(args.seconds),
            ids_allocated: Cell::new(0),
            confirmed: RefCell::new(vec![0; slots]),
            seen: RefCell::new(vec![0; slots]),
            confirmed_count: Cell::new(0),
            confirmed_seen_count: Cell::new(0),
            distinct_count: Cell::new(0),
            duplicate_count: Cell::new(0),
            corrupt_count: Cell::new(0),
            error_count: Cell::new(0),
            producers_done: Cell::new(false),
            consumers_stop: Cell::new(false),
            last_confirm: Cell::new(None),
            last_ack: Cell::new(None),
            errors: RefCell::new(Vec::new()),
        }
    }

    /// The next ids, at most `batch`, none at the message limit or after the deadline.
    fn allocate(&self, batch: u32) -> Option<(u64, u32)> {
        if Instant::now() >= self.produce_deadline {
            return None;
        }
        let first = self.ids_allocated.get();
        let count = u64::from(batch).min(self.message_count_max - first);
        if count == 0 {
            return None;
        }
        self.ids_allocated.set(first + count);
        Some((first, u32::try_from(count).expect("at most a batch")))
    }

    fn body(&self, id: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(format!("{:016x}-{id:010}-", self.nonce).as_bytes());
        out.resize(self.size_bytes, b'x');
    }

    /// The id of a body of this pass, after checking its length and filler.
    fn body_id(&self, body: &[u8]) -> Option<u64> {
        let prefix = format!("{:016x}-", self.nonce);
        let prefix_bytes = usize::try_from(BODY_PREFIX_BYTES).expect("fits");
        if body.len() != self.size_bytes || !body.starts_with(prefix.as_bytes()) {
            return None;
        }
        let digits = std::str::from_utf8(&body[17..27]).ok()?;
        let id: u64 = digits.parse().ok()?;
        let filler_ok = body[27] == b'-' && body[prefix_bytes..].iter().all(|&b| b == b'x');
        (filler_ok && id < self.ids_allocated.get()).then_some(id)
    }

    fn confirm(&self, first: u64, count: u32) {
        let mut confirmed = self.confirmed.borrow_mut();
        let seen = self.seen.borrow();
        for id in first..first + u64::from(count) {
            let index = usize::try_from(id).expect("fits");
            assert!(confirmed[index] == 0, "id {id} confirmed twice");
            confirmed[index] = 1;
            self.confirmed_count.set(self.confirmed_count.get() + 1);
            if seen[index] > 0 {
                self.confirmed_seen_count
                    .set(self.confirmed_seen_count.get() + 1);
            }
        }
        self.last_confirm.set(Some(Instant::now()));
    }

    fn delivered(&self, body: &[u8]) {
        let Some(id) = self.body_id(body) else {
            self.corrupt_count.set(self.corrupt_count.get() + 1);
            self.error(format!(
                "foreign or corrupt body: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            ));
            return;
        };
        let index = usize::try_from(id).expect("fits");
        let mut seen = self.seen.borrow_mut();
        seen[index] = seen[index].saturating_add(1);
        if seen[index] > 1 {
            self.duplicate_count.set(self.duplicate_count.get() + 1);
            return;
        }
        self.distinct_count.set(self.distinct_count.get() + 1);
        if self.confirmed.borrow()[index] == 1 {
            self.confirmed_seen_count
                .set(self.confirmed_seen_count.get() + 1);
        }
    }

    fn error(&self, message: String) {
        self.error_count.set(self.error_count.get() + 1);
        let mut errors = self.errors.borrow_mut();
        if errors.len() < ERRORS_KEPT_MAX {
            errors.push(message);
        }
    }

    /// Producing ended and every confirmed message was delivered at least once.
    fn drained(&self) -> bool {
        self.producers_done.get() && self.confirmed_seen_count.get() == self.confirmed_count.get()
    }
}

async fn producer_task<P: Producer>(mut producer: P, ledger: Rc<Ledger>, batch: u32) -> Samples {
    let mut samples = Samples::default();
    let mut bodies: Vec<Vec<u8>> = Vec::with_capacity(usize::try_from(batch).expect("fits"));
    // Bounded by the ledger: allocation stops at the message limit or the deadline.
    while let Some((first, count)) = ledger.allocate(batch) {
        bodies.resize_with(usize::try_from(count).expect("fits"), Vec::new);
        for (body, id) in bodies.iter_mut().zip(first..) {
            ledger.body(id, body);
        }
        let started = Instant::now();
        let result = producer.send(&bodies).await;
        samples.push(started);
        match result {
            Ok(()) => ledger.confirm(first, count),
            Err(error) => ledger.error(format!("send: {error}")),
        }
    }
    samples
}

async fn consumer_task<C: Consumer>(mut consumer: C, ledger: Rc<Ledger>, batch: u32) -> Samples {
    let mut samples = Samples::default();
    let mut bodies = Vec::with_capacity(usize::try_from(batch).expect("fits"));
    // Bounded by the pass: the driver sets `consumers_stop` when drained or timed out.
    while !ledger.consumers_stop.get() {
        bodies.clear();
        let started = Instant::now();
        if let Err(error) = consumer.receive(batch, &mut bodies).await {
            ledger.error(format!("receive: {error}"));
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        if bodies.is_empty() {
            continue;
        }
        for body in &bodies {
            ledger.delivered(body);
        }
        match consumer.ack().await {
            Ok(()) => {
                samples.push(started);
                ledger.last_ack.set(Some(Instant::now()));
            }
            Err(error) => ledger.error(format!("ack: {error}")),
        }
    }
    samples
}

/// What one pass measured.
struct Pass {
    ledger: Rc<Ledger>,
    send: Samples,
    consume: Samples,
    produce_started: Instant,
    consume_started: Instant,
    timed_out: bool,
}

/// How a pass runs: producers, then consumers or both at once.
struct PassPlan {
    producer_count: u32,
    consumer_count: u32,
    batch: u32,
    message_count_max: u64,
    concurrent: bool,
}

async fn start_consumers<D: Driver>(
    driver: &D,
    plan: &PassPlan,
    ledger: &Rc<Ledger>,
) -> Result<Vec<tokio::task::JoinHandle<Samples>>, String> {
    let mut handles = Vec::new();
    for index in 0..plan.consumer_count {
        let consumer = driver
            .consumer(index, plan.consumer_count, plan.batch)
            .await?;
        handles.push(tokio::task::spawn_local(consumer_task(
            consumer,
            ledger.clone(),
            plan.batch,
        )));
    }
    Ok(handles)
}

async fn pass<D: Driver>(driver: &mut D, args: &Args, plan: &PassPlan) -> Result<Pass, String> {
    driver.reset().await?;
    let nonce = u64::from(std::process::id()) << 32
        ^ u64::from(sluice_benches::dms::unix_now().subsec_nanos());
    let ledger = Rc::new(Ledger::new(nonce, args, plan.message_count_max));
    let mut producers = Vec::new();
    for index in 0..plan.producer_count {
        producers.push(driver.producer(index).await?);
    }
    let mut consumers = if plan.concurrent {
        start_consumers(driver, plan, &ledger).await?
    } else {
        Vec::new()
    };
    let produce_started = Instant::now();
    let handles: Vec<_> = producers
        .into_iter()
        .map(|producer| {
            tokio::task::spawn_local(producer_task(producer, ledger.clone(), plan.batch))
        })
        .collect();
    let mut send = Samples::default();
    for handle in handles {
        send.append(handle.await.map_err(|e| format!("producer task: {e}"))?);
    }
    ledger.producers_done.set(true);
    let mut consume_started = produce_started;
    if !plan.concurrent {
        consume_started = Instant::now();
        consumers = start_consumers(driver, plan, &ledger).await?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
    let mut timed_out = false;
    // Bounded by the drain deadline.
    while !ledger.drained() {
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ledger.consumers_stop.set(true);
    let mut consume = Samples::default();
    let stop_deadline = Instant::now() + Duration::from_secs(CONSUMER_STOP_WAIT_S);
    for handle in consumers {
        let left = stop_deadline.saturating_duration_since(Instant::now());
        let abort = handle.abort_handle();
        match tokio::time::timeout(left, handle).await {
            Ok(Ok(samples)) => consume.append(samples),
            Ok(Err(error)) => ledger.error(format!("consumer task: {error}")),
            Err(_) => abort.abort(),
        }
    }
    Ok(Pass {
        ledger,
        send,
        consume,
        produce_started,
        consume_started,
        timed_out,
    })
}

fn seconds_between(from: Instant, to: Option<Instant>) -> f64 {
    to.map_or(0.0, |to| to.saturating_duration_since(from).as_secs_f64())
}

fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// The row of one workload out of a pass.
fn row(system: System, workload: Workload, concurrency: u32, batch: u32, pass: &mut Pass) -> Row {
    let ledger = &pass.ledger;
    let confirmed = ledger.confirmed_count.get();
    let lost = confirmed - ledger.confirmed_seen_count.get();
    let produce_s = seconds_between(pass.produce_started, ledger.last_confirm.get());
    let consume_s = seconds_between(pass.consume_started, ledger.last_ack.get());
    let distinct = ledger.distinct_count.get();
    let (message_count, seconds, samples) = match workload {
        Workload::Produce | Workload::Unbatched => (confirmed, produce_s, &mut pass.send),
        Workload::Consume => (distinct, consume_s, &mut pass.consume),
        Workload::Mixed => (distinct, consume_s, &mut pass.send),
    };
    let (p50_ms, p99_ms, _) = samples.quantiles_ms();
    let ok = !pass.timed_out
        && lost == 0
        && confirmed > 0
        && ledger.corrupt_count.get() == 0
        && ledger.error_count.get() == 0;
    let mut errors = ledger.errors.borrow().clone();
    if pass.timed_out {
        errors.push(format!(
            "drain timed out with {lost} confirmed messages not received"
        ));
    }
    Row {
        system,
        workload,
        concurrency,
        batch,
        message_count,
        seconds,
        msg_per_s: rate(message_count, seconds),
        p50_ms,
        p99_ms,
        produce_msg_per_s: (workload == Workload::Mixed).then(|| rate(confirmed, produce_s)),
        lost_count: lost,
        duplicate_count: ledger.duplicate_count.get(),
        error_count: ledger.error_count.get(),
        ok,
        errors,
        ratio_to_best_peer: None,
    }
}

/// Every asked-for row of one system, one pass after the other.
pub async fn system_rows<D: Driver>(
    driver: &mut D,
    system: System,
    args: &Args,
    on_row: &mut dyn FnMut(&Row),
) -> Result<Vec<Row>, String> {
    let wants = |workload| args.workloads.contains(&workload);
    let mut rows = Vec::new();
    let mut push = |row: Row, rows: &mut Vec<Row>| {
        on_row(&row);
        rows.push(row);
    };
    let batch = args.batch_of(system);
    for &concurrency in &args.concurrency {
        let batched = PassPlan {
            producer_count: concurrency,
            consumer_count: concurrency,
            batch,
            message_count_max: args.messages,
            concurrent: false,
        };
        if wants(Workload::Produce) || wants(Workload::Consume) {
            let mut pass = pass(driver, args, &batched).await?;
            for workload in [Workload::Produce, Workload::Consume] {
                if wants(workload) {
                    let row = row(system, workload, concurrency, batch, &mut pass);
                    push(row, &mut rows);
                }
            }
        }
        if wants(Workload::Mixed) {
            let plan = PassPlan {
                concurrent: true,
                ..batched
            };
            let mut pass = pass(driver, args, &plan).await?;
            push(
                row(system, Workload::Mixed, concurrency, batch, &mut pass),
                &mut rows,
            );
        }
    }
    if wants(Workload::Unbatched) {
        let plan = PassPlan {
            producer_count: 1,
            consumer_count: 1,
            batch: 1,
            message_count_max: args.latency_messages,
            concurrent: false,
        };
        let mut pass = pass(driver, args, &plan).await?;
        push(row(system, Workload::Unbatched, 1, 1, &mut pass), &mut rows);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn bodies_round_trip_and_foreign_ones_are_rejected() {
        let args = Args::try_parse_from(["mq-compare", "--size", "64"]).expect("valid");
        let ledger = Ledger::new(0xabc, &args, 100);
        assert_eq!(ledger.allocate(10), Some((0, 10)));
        let mut body = Vec::new();
        ledger.body(7, &mut body);
        assert_eq!(body.len(), 64);
        assert_eq!(ledger.body_id(&body), Some(7));
        let other = Ledger::new(0xdef, &args, 100);
        assert_eq!(other.body_id(&body), None, "another pass's body");
        ledger.body(70, &mut body);
        assert_eq!(ledger.body_id(&body), None, "an id never allocated");
        ledger.body(3, &mut body);
        body[40] = b'y';
        assert_eq!(ledger.body_id(&body), None, "bad filler");
    }

    #[test]
    fn the_ledger_counts_losses_and_duplicates() {
        let args = Args::try_parse_from(["mq-compare"]).expect("valid");
        let ledger = Ledger::new(1, &args, 25);
        assert_eq!(ledger.allocate(10), Some((0, 10)));
        assert_eq!(ledger.allocate(10), Some((10, 10)));
        assert_eq!(
            ledger.allocate(10),
            Some((20, 5)),
            "capped at the message count"
        );
        assert_eq!(ledger.allocate(10), None);
        ledger.confirm(0, 10);
        ledger.producers_done.set(true);
        let mut body = Vec::new();
        for id in [0, 1, 1, 2] {
            ledger.body(id, &mut body);
            ledger.delivered(&body);
        }
        assert_eq!(ledger.duplicate_count.get(), 1);
        assert_eq!(ledger.confirmed_seen_count.get(), 3);
        assert!(!ledger.drained(), "7 confirmed messages not yet back");
        for id in 3..10 {
            ledger.body(id, &mut body);
            ledger.delivered(&body);
        }
        assert!(ledger.drained());
    }
}
