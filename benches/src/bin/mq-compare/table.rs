//! The result rows: the ratio to the best peer, the printed table and the JSON.

use serde_json::{json, Value};

use crate::args::{System, Workload};

/// One measured (system, workload, concurrency).
#[derive(Clone, Debug)]
pub struct Row {
    pub system: System,
    pub workload: Workload,
    /// Producers (produce, unbatched), consumers (consume), or each of both (mixed).
    pub concurrency: u32,
    /// Messages per producer batch (and per receive).
    pub batch: u32,
    /// Messages the row's rate counts: confirmed (produce, unbatched) or received.
    pub message_count: u64,
    pub seconds: f64,
    /// The row's rate: confirms/s (produce, unbatched), distinct receives/s (consume,
    /// mixed).
    pub msg_per_s: f64,
    /// Of every send confirm (produce, mixed, unbatched) or receive + ack (consume).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Mixed only: the producers' confirm rate beside the consumers'.
    pub produce_msg_per_s: Option<f64>,
    pub lost_count: u64,
    pub duplicate_count: u64,
    pub error_count: u64,
    /// No loss, corruption, failed confirm or timeout.
    pub ok: bool,
    pub errors: Vec<String>,
    /// `msg_per_s` over the best peer's of the same workload and concurrency.
    pub ratio_to_best_peer: Option<f64>,
}

/// Sets each row's ratio to the best successful peer row of its (workload, concurrency).
pub fn fill_ratios(rows: &mut [Row]) {
    let best: Vec<Option<f64>> = rows
        .iter()
        .map(|row| {
            rows.iter()
                .filter(|peer| {
                    peer.system.is_peer()
                        && peer.ok
                        && peer.workload == row.workload
                        && peer.concurrency == row.concurrency
                })
                .map(|peer| peer.msg_per_s)
                .filter(|rate| *rate > 0.0)
                .fold(None, |best: Option<f64>, rate| {
                    Some(best.map_or(rate, |b| b.max(rate)))
                })
        })
        .collect();
    for (row, best) in rows.iter_mut().zip(best) {
        row.ratio_to_best_peer = best.map(|best| row.msg_per_s / best);
    }
}

/// Rows in table order: workload, then concurrency, then system.
pub fn sort(rows: &mut [Row]) {
    rows.sort_by_key(|row| (row.workload, row.concurrency, row.system));
}

/// The table, one line per row, with a blank line between row groups.
pub fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<12} {:<10} {:>5} {:>5} {:>9} {:>11} {:>8} {:>8} {:>9}  {}\n",
        "system",
        "workload",
        "conc",
        "batch",
        "msgs",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        "vs best",
        "check"
    );
    let mut group = None;
    for row in rows {
        let key = (row.workload, row.concurrency);
        if group.is_some_and(|g| g != key) {
            out.push('\n');
        }
        group = Some(key);
        let ratio = row
            .ratio_to_best_peer
            .map_or("-".to_string(), |r| format!("{r:.2}x"));
        let check = if row.ok {
            "ok".to_string()
        } else {
            format!(
                "FAILED (lost {}, errors {})",
                row.lost_count, row.error_count
            )
        };
        out.push_str(&format!(
            "{:<12} {:<10} {:>5} {:>5} {:>9} {:>11.0} {:>8.2} {:>8.2} {:>9}  {}\n",
            row.system.name(),
            row.workload.name(),
            row.concurrency,
            row.batch,
            row.message_count,
            row.msg_per_s,
            row.p50_ms,
            row.p99_ms,
            ratio,
            check
        ));
    }
    out
}

pub fn to_json(row: &Row) -> Value {
    json!({
        "system": row.system.name(),
        "workload": row.workload.name(),
        "concurrency": row.concurrency,
        "batch": row.batch,
        "messages": row.message_count,
        "seconds": row.seconds,
        "msg_per_s": row.msg_per_s,
        "p50_ms": row.p50_ms,
        "p99_ms": row.p99_ms,
        "produce_msg_per_s": row.produce_msg_per_s,
        "ratio_to_best_peer": row.ratio_to_best_peer,
        "lost": row.lost_count,
        "duplicates": row.duplicate_count,
        "errors": row.error_count,
        "error_messages": row.errors,
        "ok": row.ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: System, workload: Workload, concurrency: u32, rate: f64) -> Row {
        Row {
            system,
            workload,
            concurrency,
            batch: 10,
            message_count: 1000,
            seconds: 1.0,
            msg_per_s: rate,
            p50_ms: 1.0,
            p99_ms: 2.0,
            produce_msg_per_s: None,
            lost_count: 0,
            duplicate_count: 0,
            error_count: 0,
            ok: true,
            errors: Vec::new(),
            ratio_to_best_peer: None,
        }
    }

    #[test]
    fn ratio_is_to_the_best_peer_of_the_same_group() {
        let mut rows = vec![
            row(System::Sluice, Workload::Produce, 2, 300.0),
            row(System::Postgres, Workload::Produce, 2, 100.0),
            row(System::Redis, Workload::Produce, 2, 150.0),
            row(System::Postgres, Workload::Produce, 16, 1000.0),
            row(System::Sluice, Workload::Produce, 16, 500.0),
            row(System::Sluice, Workload::Consume, 2, 50.0),
        ];
        fill_ratios(&mut rows);
        let ratios: Vec<Option<f64>> = rows.iter().map(|r| r.ratio_to_best_peer).collect();
        assert_eq!(
            ratios,
            vec![
                Some(2.0),
                Some(100.0 / 150.0),
                Some(1.0),
                Some(1.0),
                Some(0.5),
                None
            ]
        );
    }

    #[test]
    fn a_failed_peer_is_not_the_best() {
        let mut rows = vec![
            row(System::Sluice, Workload::Mixed, 2, 100.0),
            row(System::Rabbitmq, Workload::Mixed, 2, 400.0),
            row(System::Redis, Workload::Mixed, 2, 50.0),
        ];
        rows[1].ok = false;
        fill_ratios(&mut rows);
        assert_eq!(rows[0].ratio_to_best_peer, Some(2.0));
        assert_eq!(rows[2].ratio_to_best_peer, Some(1.0));
    }

    #[test]
    fn table_groups_rows_and_json_has_every_column() {
        let mut rows = vec![
            row(System::Redis, Workload::Consume, 2, 10.0),
            row(System::Sluice, Workload::Produce, 16, 20.0),
            row(System::Sluice, Workload::Produce, 2, 30.0),
        ];
        sort(&mut rows);
        fill_ratios(&mut rows);
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 3 + 2, "{text}");
        assert!(
            lines[1].starts_with("sluice       produce        2"),
            "{text}"
        );
        assert!(lines[5].starts_with("redis        consume"), "{text}");
        assert!(lines[5].contains("1.00x"), "{text}");
        let value = to_json(&rows[2]);
        assert_eq!(value["system"], "redis");
        assert_eq!(value["ratio_to_best_peer"], 1.0);
        assert_eq!(value["ok"], true);
    }
}
