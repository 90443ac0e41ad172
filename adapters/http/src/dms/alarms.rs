//! Sluice extension: a queue's alarm rules, their states and history
//! (`sluice_node::alarms`). `GET .../queues/{queue_id}/alarms` answers `{"rules": [...],
//! "states": [...], "history": [...]}`; `PUT` with `{"rules": [...]}` replaces the rules,
//! kept in the queue's fields (member `alarms`) by compare-and-set, a metadata command on
//! every partition, so they survive restarts and failovers.

use http::StatusCode;
use serde_json::{json, Value};
use sluice_node::alarms::{AlarmRule, AlarmState, ALARMS_MEMBER, ALARMS_PER_QUEUE_MAX};
use sluice_node::{Node, QueueView};

use super::errors::DmsError;
use super::request::object;
use super::{ids, Ctx, Reply};
use crate::queue_meta;

fn state_json(view: &QueueView, state: &AlarmState) -> Value {
    json!({
        "queue_id": ids::queue_id_encode(view.id),
        "rule": state.rule,
        "state": if state.firing { "firing" } else { "ok" },
        "since": state.since_ms,
        "value": state.value,
    })
}

pub(super) fn show<N: Node>(ctx: &Ctx<'_, N>, view: &QueueView) -> Reply {
    let rules = sluice_node::alarms::rules_of(&view.meta);
    let (states, history) = ctx.node.queue_alarms(view.id);
    let body = json!({
        "rules": rules,
        "states": states.iter().map(|s| state_json(view, s)).collect::<Vec<_>>(),
        "history": history.iter().map(|s| state_json(view, s)).collect::<Vec<_>>(),
    });
    Reply::json(StatusCode::OK, &body)
}

pub(super) async fn replace<N: Node>(ctx: &Ctx<'_, N>, queue: &str) -> Result<Reply, DmsError> {
    let body = object(ctx.body)?;
    let rules: Vec<AlarmRule> = body
        .get("rules")
        .map(|raw| serde_json::from_str(raw.get()))
        .transpose()
        .map_err(|error| DmsError::parameter(format!("The rules do not parse: {error}.")))?
        .ok_or_else(|| DmsError::parameter("The field rules (an array of rules) is required."))?;
    if rules.len() > ALARMS_PER_QUEUE_MAX {
        return Err(DmsError::parameter(format!(
            "A queue has at most {ALARMS_PER_QUEUE_MAX} alarm rules."
        )));
    }
    for (index, rule) in rules.iter().enumerate() {
        rule.check()
            .map_err(|why| DmsError::parameter(format!("Rule {index}: {why}.")))?;
        if rules[..index].iter().any(|other| other.name == rule.name) {
            return Err(DmsError::parameter(format!(
                "Rule {index}: the name {} is taken.",
                rule.name
            )));
        }
    }
    let value = serde_json::to_value(&rules).expect("rules serialise");
    queue_meta::update(
        ctx.node,
        async || ctx.queue(queue),
        |_, meta| {
            if rules.is_empty() {
                meta.others.remove(ALARMS_MEMBER);
            } else {
                meta.others.insert(ALARMS_MEMBER.into(), value.clone());
            }
            Ok::<_, DmsError>(())
        },
    )
    .await?;
    Ok(Reply::no_content())
}
