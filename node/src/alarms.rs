//! Backlog alarms: rules per queue (and group), evaluated against the monitoring ring
//! (`crate::monitor`) after each sampling pass, with their state and a bounded history on
//! every node, and a webhook notification (`Host::deliver_webhook`) on each change of
//! state from the node that leads partition 0 (one notification per change in a
//! cluster).
//!
//! The rules are durable: they are the member `alarms` of the queue's fields (JSON, like
//! the adapters' members beside it), changed by compare-and-set through
//! `Node::set_queue_meta` (a metadata command on every partition), so they survive
//! restarts and failovers. State and history are in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sluice_core::engine::types::{GroupId, GroupStats, QueueId};

use crate::monitor::Sample;

/// The member of a queue's fields that holds its alarm rules.
pub const ALARMS_MEMBER: &str = "alarms";
/// Rules one queue may have.
pub const ALARMS_PER_QUEUE_MAX: usize = 20;
/// State changes a node remembers, newest last.
pub const ALARM_HISTORY_MAX: usize = 500;
/// The longest a condition may have to hold (a day).
pub const ALARM_FOR_S_MAX: u64 = 86_400;
/// Bytes of a rule's name or webhook URL, at most.
pub const ALARM_TEXT_BYTES_MAX: usize = 256;

/// What a rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// The group's backlog above `threshold`.
    BacklogAbove,
    /// The group's dead letters above `threshold` (0: any).
    DeadLettersAbove,
    /// The group's acks per second below `threshold`.
    ConsumeRateBelow,
    /// The group's oldest unfinished message older than `threshold` seconds.
    OldestAgeAbove,
}

/// One rule, as kept in the queue's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmRule {
    pub name: String,
    /// The group's name.
    pub group: String,
    pub kind: AlarmKind,
    pub threshold: f64,
    /// How long the condition must hold, seconds (0: at one sample).
    pub for_s: u64,
    /// Where state changes are posted (`http://` only), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

impl AlarmRule {
    /// Checks a rule's fields; the reason when one is out of bounds.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err("a rule's name is 1 to 64 of A-Z a-z 0-9 - _".into());
        }
        if self.group.is_empty() || self.group.len() > ALARM_TEXT_BYTES_MAX {
            return Err("a rule names a group".into());
        }
        if !self.threshold.is_finite() || self.threshold < 0.0 {
            return Err("the threshold is a number, 0 or more".into());
        }
        if self.for_s > ALARM_FOR_S_MAX {
            return Err(format!("for_s is at most {ALARM_FOR_S_MAX}"));
        }
        if let Some(url) = &self.webhook {
            let rest = url.strip_prefix("http://").unwrap_or("");
            let host = rest.split('/').next().unwrap_or("");
            let ok = url.len() <= ALARM_TEXT_BYTES_MAX
                && !host.is_empty()
                && url.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err("a webhook is an http:// URL of at most 256 bytes".into());
            }
        }
        Ok(())
    }
}

/// The rules in a queue's fields (`{"alarms": [...]}`); none when absent or unreadable.
pub fn rules_of(meta: &[u8]) -> Vec<AlarmRule> {
    #[derive(Deserialize)]
    struct Fields {
        #[serde(default)]
        alarms: Vec<AlarmRule>,
    }
    serde_json::from_slice::<Fields>(meta)
        .map(|fields| fields.alarms)
        .unwrap_or_default()
}

/// Whether the rule's condition holds over `samples` (oldest first) for `group` (the
/// rule's group, resolved by the caller), and the value it judged: the latest backlog or
/// dead letters (the condition must hold at every sample of the window), or the ack
/// rate over the window. `None` while the samples do not cover the rule's window yet, or
/// do not all show the group.
pub fn evaluate(rule: &AlarmRule, group: GroupId, samples: &[Sample]) -> Option<(bool, f64)> {
    let last = samples.last()?;
    let from = last.at_ms.checked_sub(rule.for_s * 1000)?;
    // The window: the sample at or before `from` that opens it, and those after.
    let start = samples.iter().rposition(|s| s.at_ms <= from)?;
    let window = &samples[start..];
    let stats = |sample: &Sample| {
        sample
            .groups
            .iter()
            .find(|(id, _)| *id == group)
            .map(|(_, stats)| *stats)
    };
    match rule.kind {
        AlarmKind::BacklogAbove | AlarmKind::DeadLettersAbove | AlarmKind::OldestAgeAbove => {
            let value = |sample: &Sample| {
                let stats = stats(sample)?;
                Some(match rule.kind {
                    AlarmKind::BacklogAbove => stats.backlog as f64,
                    AlarmKind::DeadLettersAbove => stats.dead_letters as f64,
                    _ => oldest_age_s(sample.at_ms, &stats),
                })
            };
            let values: Vec<f64> = window.iter().map(value).collect::<Option<_>>()?;
            let latest = *values.last()?;
            Some((values.iter().all(|v| *v > rule.threshold), latest))
        }
        AlarmKind::ConsumeRateBelow => {
            let first = window.first()?;
            let seconds = (last.at_ms - first.at_ms) as f64 / 1000.0;
            if seconds <= 0.0 {
                return None;
            }
            let acked = stats(last)?
                .acked_total
                .saturating_sub(stats(first)?.acked_total);
            let rate = acked as f64 / seconds;
            Some((rate < rule.threshold, rate))
        }
    }
}

/// Seconds since the group's oldest unfinished message arrived, at `at_ms` (0 when it
/// has none).
pub fn oldest_age_s(at_ms: u64, stats: &GroupStats) -> f64 {
    match stats.oldest_available_ms {
        0 => 0.0,
        oldest => at_ms.saturating_sub(oldest) as f64 / 1000.0,
    }
}

/// A rule's state on this node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlarmState {
    pub queue: QueueId,
    pub rule: String,
    pub firing: bool,
    /// When it took this state, wall-clock epoch milliseconds.
    pub since_ms: u64,
    /// The value last judged.
    pub value: f64,
}

/// Rule states and their history on this node.
#[derive(Debug, Default)]
pub struct Alarms {
    inner: Mutex<AlarmsInner>,
}

#[derive(Debug, Default)]
struct AlarmsInner {
    states: HashMap<(QueueId, String), AlarmState>,
    history: VecDeque<AlarmState>,
}

impl Alarms {
    /// Records a judgement; answers the new state when it changed (a rule's first
    /// judgement counts as a change only when it fires).
    pub fn judge(
        &self,
        queue: QueueId,
        rule: &str,
        firing: bool,
        value: f64,
        now_ms: u64,
    ) -> Option<AlarmState> {
        let mut inner = self.inner.lock().expect("not poisoned");
        let key = (queue, rule.to_string());
        let changed = match inner.states.get_mut(&key) {
            Some(state) => {
                state.value = value;
                if state.firing == firing {
                    return None;
                }
                state.firing = firing;
                state.since_ms = now_ms;
                state.clone()
            }
            None => {
                let state = AlarmState {
                    queue,
                    rule: rule.to_string(),
                    firing,
                    since_ms: now_ms,
                    value,
                };
                inner.states.insert(key, state.clone());
                if !firing {
                    return None;
                }
                state
            }
        };
        if inner.history.len() == ALARM_HISTORY_MAX {
            inner.history.pop_front();
        }
        inner.history.push_back(changed.clone());
        Some(changed)
    }

    /// Forgets the states of `queue`'s rules not in `rules`.
    pub fn keep_only(&self, queue: QueueId, rules: &[AlarmRule]) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner
            .states
            .retain(|(q, name), _| *q != queue || rules.iter().any(|r| &r.name == name));
    }

    /// The queue's rule states and its history, oldest first.
    pub fn of(&self, queue: QueueId) -> (Vec<AlarmState>, Vec<AlarmState>) {
        let inner = self.inner.lock().expect("not poisoned");
        let mut states: Vec<AlarmState> = inner
            .states
            .values()
            .filter(|s| s.queue == queue)
            .cloned()
            .collect();
        states.sort_by(|a, b| a.rule.cmp(&b.rule));
        let history = inner
            .history
            .iter()
            .filter(|s| s.queue == queue)
            .cloned()
            .collect();
        (states, history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: GroupId = GroupId(7);

    fn sample(at_ms: u64, backlog: u64, acked_total: u64) -> Sample {
        let stats = GroupStats {
            backlog,
            acked_total,
            ..GroupStats::default()
        };
        Sample {
            at_ms,
            sent_total: 0,
            stored: 0,
            delayed: 0,
            groups: vec![(G, stats)],
        }
    }

    fn rule(kind: AlarmKind, threshold: f64, for_s: u64) -> AlarmRule {
        AlarmRule {
            name: "r".into(),
            group: "g".into(),
            kind,
            threshold,
            for_s,
            webhook: None,
        }
    }

    #[test]
    fn a_condition_fires_only_when_it_held_for_the_whole_window() {
        let backlog = rule(AlarmKind::BacklogAbove, 5.0, 20);
        let samples = [sample(0, 9, 0), sample(10_000, 3, 0), sample(20_000, 9, 0)];
        assert_eq!(evaluate(&backlog, G, &samples), Some((false, 9.0)), "a dip");
        let samples = [sample(0, 9, 0), sample(10_000, 8, 0), sample(20_000, 9, 0)];
        assert_eq!(evaluate(&backlog, G, &samples), Some((true, 9.0)));
        assert_eq!(
            evaluate(&backlog, G, &samples[1..]),
            None,
            "the samples do not cover 20 s yet"
        );
        assert_eq!(
            evaluate(&backlog, GroupId(8), &samples),
            None,
            "another group"
        );
        let slow = rule(AlarmKind::ConsumeRateBelow, 1.0, 10);
        let samples = [sample(0, 0, 0), sample(10_000, 0, 5)];
        assert_eq!(evaluate(&slow, G, &samples), Some((true, 0.5)));
        let samples = [sample(0, 0, 0), sample(10_000, 0, 50)];
        assert_eq!(evaluate(&slow, G, &samples), Some((false, 5.0)));
        let now = rule(AlarmKind::BacklogAbove, 0.0, 0);
        assert_eq!(evaluate(&now, G, &[sample(5, 1, 0)]), Some((true, 1.0)));
        let old = rule(AlarmKind::OldestAgeAbove, 60.0, 0);
        let mut waiting = sample(100_000, 1, 0);
        waiting.groups[0].1.oldest_available_ms = 10_000;
        assert_eq!(evaluate(&old, G, &[waiting.clone()]), Some((true, 90.0)));
        waiting.groups[0].1.oldest_available_ms = 0;
        assert_eq!(
            evaluate(&old, G, &[waiting]),
            Some((false, 0.0)),
            "nothing waits"
        );
    }

    #[test]
    fn only_changes_of_state_are_recorded_and_rules_are_checked() {
        let alarms = Alarms::default();
        let q = QueueId(1);
        assert_eq!(
            alarms.judge(q, "r", false, 0.0, 1),
            None,
            "starting fine is no change"
        );
        assert!(alarms.judge(q, "r", true, 3.0, 2).is_some_and(|s| s.firing));
        assert_eq!(alarms.judge(q, "r", true, 4.0, 3), None);
        assert!(alarms
            .judge(q, "r", false, 0.0, 4)
            .is_some_and(|s| !s.firing));
        let (states, history) = alarms.of(q);
        assert_eq!((states.len(), history.len()), (1, 2));
        alarms.keep_only(q, &[]);
        assert!(alarms.of(q).0.is_empty(), "a removed rule's state goes");
        let mut bad = rule(AlarmKind::BacklogAbove, -1.0, 0);
        assert!(bad.check().is_err());
        bad.threshold = 1.0;
        bad.webhook = Some("ftp://x".into());
        assert!(bad.check().is_err());
        bad.webhook = Some("http://127.0.0.1:9/hook".into());
        assert!(bad.check().is_ok());
        bad.name = "has space".into();
        assert!(bad.check().is_err());
    }
}
