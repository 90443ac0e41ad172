//! The monitoring ring: every node keeps, in memory, the recent counts of its cluster's
//! queues and their groups, sampled at a fixed interval by the host ([`sample`], run by
//! the server's shard 0), so that the console can chart send and consume rates, backlog
//! and dead letters over the last hour ([`Node::queue_history`]).
//!
//! Bounded: at most [`MONITOR_QUEUES_MAX`] queues (those with the lowest ids; the rest are
//! not sampled) and [`MONITOR_SAMPLES_MAX`] samples each, the oldest dropped first. Lost on
//! restart; each node of a cluster samples on its own (the counts are the cluster's).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sluice_core::engine::types::{GroupId, GroupStats, QueueId};

use crate::alarms::{self, Alarms};
use crate::{Node, QueueView};

/// Queues one node samples, at most.
pub const MONITOR_QUEUES_MAX: usize = 1_000;
/// Samples kept per queue: an hour at the default interval of 30 s.
pub const MONITOR_SAMPLES_MAX: usize = 120;
/// The default sampling interval.
pub const MONITOR_INTERVAL_MS_DEFAULT: u64 = 30_000;

/// A queue's counts at one time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Queue time of the sample (`Node::now_ms`, epoch milliseconds): it never steps
    /// back, and message arrival times (`GroupStats::oldest_available_ms`) are on it.
    pub at_ms: u64,
    pub sent_total: u64,
    pub stored: u64,
    pub delayed: u64,
    pub groups: Vec<(GroupId, GroupStats)>,
}

/// The node's samples, by queue.
#[derive(Debug, Default)]
pub struct Monitor {
    series: Mutex<HashMap<QueueId, VecDeque<Sample>>>,
    /// The alarm rules' states, judged after each pass.
    pub alarms: Alarms,
}

impl Monitor {
    /// The queue's samples, oldest first.
    pub fn history(&self, queue: QueueId) -> Vec<Sample> {
        let series = self.series.lock().expect("not poisoned");
        series
            .get(&queue)
            .map(|samples| samples.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records one pass: `samples` of the queues sampled; the series of queues not among
    /// `alive` (deleted, or past the bound) go.
    fn record(&self, samples: Vec<(QueueId, Sample)>, alive: &[QueueId]) {
        let mut series = self.series.lock().expect("not poisoned");
        series.retain(|queue, _| alive.contains(queue));
        for (queue, sample) in samples {
            let ring = series.entry(queue).or_default();
            if ring.len() == MONITOR_SAMPLES_MAX {
                ring.pop_front();
            }
            ring.push_back(sample);
        }
    }
}

/// One sampling pass over the node's queues (every tenant's, the lowest ids first, at
/// most [`MONITOR_QUEUES_MAX`]): each queue's counts (`Node::queue_counts`), recorded in
/// `monitor`; a queue whose counts cannot be read now (a leader changing) is skipped.
/// Then each sampled queue's alarm rules are judged, and each change of state is passed
/// to `notify` (with the queue and the rule, for its webhook).
pub async fn sample<N: Node>(
    node: &N,
    monitor: &Monitor,
    notify: impl Fn(&QueueView, &alarms::AlarmRule, &alarms::AlarmState),
) {
    let tenants = node.tenants();
    let mut views: Vec<QueueView> = tenants
        .all()
        .iter()
        .flat_map(|tenant| node.queues_of(&tenant.project_id))
        .collect();
    views.sort_by_key(|view| view.id);
    views.truncate(MONITOR_QUEUES_MAX);
    let mut samples = Vec::with_capacity(views.len());
    for view in &views {
        if let Ok(counts) = node.queue_counts(view.id).await {
            samples.push((
                view.id,
                Sample {
                    at_ms: node.now_ms(),
                    sent_total: counts.sent_total,
                    stored: counts.stored,
                    delayed: counts.delayed,
                    groups: counts.groups,
                },
            ));
        }
    }
    let queues: Vec<QueueId> = views.iter().map(|view| view.id).collect();
    monitor.record(samples, &queues);
    for view in &views {
        let rules = alarms::rules_of(&view.meta);
        monitor.alarms.keep_only(view.id, &rules);
        if rules.is_empty() {
            continue;
        }
        let history = monitor.history(view.id);
        for rule in &rules {
            let group = view.groups.iter().find(|(_, name)| *name == rule.group);
            let judged = group.and_then(|(group, _)| alarms::evaluate(rule, *group, &history));
            let Some((firing, value)) = judged else {
                continue;
            };
            let now = node.wall_ms();
            if let Some(state) = monitor
                .alarms
                .judge(view.id, &rule.name, firing, value, now)
            {
                notify(view, rule, &state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Sample {
        Sample {
            at_ms: ms,
            sent_total: ms,
            stored: 0,
            delayed: 0,
            groups: Vec::new(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_of_live_queues() {
        let monitor = Monitor::default();
        let (a, b) = (QueueId(1), QueueId(2));
        for ms in 0..(MONITOR_SAMPLES_MAX as u64 + 5) {
            monitor.record(vec![(a, at(ms)), (b, at(ms))], &[a, b]);
        }
        let history = monitor.history(a);
        assert_eq!(history.len(), MONITOR_SAMPLES_MAX);
        assert_eq!(history[0].at_ms, 5, "the oldest went first");
        monitor.record(vec![(a, at(1000))], &[a]);
        assert!(
            monitor.history(b).is_empty(),
            "a deleted queue's series goes"
        );
        assert_eq!(monitor.history(a).last().unwrap().at_ms, 1000);
    }
}
