//! Consumer groups: create 1-3 at once (all or nothing), list with counters and
//! pagination, delete (docs/dms-api.md §3.2).

use http::StatusCode;
use sluice_core::engine::types::GroupId;

use super::errors::{from_node, DmsError, GROUP_NAME_LENGTH, TOO_MANY_GROUPS};
use super::request::{field, object, raw_array, raw_object};
use super::wire::{GroupList, GroupObject, GroupRef, GroupsCreated};
use super::{ids, queues, validate, Ctx, Reply};
use sluice_node::{Node, QueueView};

pub(super) async fn create<N: Node>(ctx: &Ctx<'_, N>, view: &QueueView) -> Result<Reply, DmsError> {
    let body = object(ctx.body)?;
    let shape_error =
        || DmsError::parameter("The field groups must be an array of objects with a name.");
    let entries = body
        .get("groups")
        .and_then(|raw| raw_array(raw))
        .ok_or_else(shape_error)?;
    let max = ctx.config.groups_per_request_max;
    if entries.is_empty() {
        return Err(DmsError::parameter(format!(
            "The field groups must name 1 to {max} groups."
        )));
    }
    if entries.len() > usize::try_from(max).expect("u32 fits usize") {
        return Err(DmsError::bad(
            TOO_MANY_GROUPS,
            format!("The number of consumer groups exceeds the upper limit of {max}."),
        ));
    }
    let mut names = Vec::with_capacity(entries.len());
    for entry in &entries {
        let entry = raw_object(entry).ok_or_else(shape_error)?;
        let name: String = field(&entry, "name", "a string")?.ok_or_else(|| {
            DmsError::bad(
                GROUP_NAME_LENGTH,
                "Each group needs a name of 1 to 32 characters.",
            )
        })?;
        validate::group_name(&name)?;
        names.push(name);
    }
    let created = ctx
        .node
        .create_groups(view.id, &names)
        .await
        .map_err(from_node)?;
    assert_eq!(created.len(), names.len(), "one id per group");
    let groups = created
        .iter()
        .zip(names)
        .map(|(group, name)| GroupRef {
            id: ids::group_id_encode(view.id, *group),
            name,
        })
        .collect();
    Ok(Reply::json(StatusCode::CREATED, &GroupsCreated { groups }))
}

pub(super) async fn list<N: Node>(ctx: &Ctx<'_, N>, view: &QueueView) -> Result<Reply, DmsError> {
    let include_deadletter = ctx.query.boolean("include_deadletter", false)?;
    let include_messages_num = ctx.query.boolean("include_messages_num", true)?;
    let page = list_page(ctx)?;
    let counts = if include_messages_num || include_deadletter {
        Some(ctx.node.queue_counts(view.id).await.map_err(from_node)?)
    } else {
        None
    };
    let mut groups = Vec::with_capacity(view.groups.len());
    for (group, name) in &view.groups {
        let stats = counts.as_ref().and_then(|counts| {
            counts
                .groups
                .iter()
                .find(|(id, _)| id == group)
                .map(|(_, stats)| (counts.sent_total, *stats))
        });
        let messages = stats.filter(|_| include_messages_num);
        let dead = stats.filter(|_| include_deadletter);
        groups.push(GroupObject {
            id: ids::group_id_encode(view.id, *group),
            name: name.clone(),
            produced_messages: messages.map(|(sent, _)| sent),
            consumed_messages: messages.map(|(_, s)| s.acked_total),
            available_messages: messages.map(|(_, s)| s.backlog),
            in_flight_messages: messages.map(|(_, s)| s.in_flight),
            delivered_messages: messages.map(|(_, s)| s.delivered_total),
            produced_deadletters: dead.map(|(_, s)| s.dead_letters),
            available_deadletters: dead.map(|(_, s)| s.dead_letters),
        });
    }
    let total = u64::try_from(groups.len()).expect("usize fits u64");
    if let Some((page_size, current_page)) = page {
        let skip = page_size.saturating_mul(current_page - 1);
        groups = groups
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(usize::try_from(page_size).unwrap_or(usize::MAX))
            .collect();
    }
    let list = GroupList {
        queue_id: ids::queue_id_encode(view.id),
        queue_name: view.name.to_string(),
        redrive_policy: queues::redrive_policy(&view.config),
        total,
        groups,
    };
    Ok(Reply::json(StatusCode::OK, &list))
}

/// `page_size` and `current_page`, used only when both are given (each at least 1).
fn list_page<N: Node>(ctx: &Ctx<'_, N>) -> Result<Option<(u64, u64)>, DmsError> {
    let code = super::errors::INVALID_PARAMETER;
    if ctx.query.get("page_size").is_none() || ctx.query.get("current_page").is_none() {
        return Ok(None);
    }
    let page_size = ctx
        .query
        .integer("page_size", 1, (1, u64::from(u32::MAX)), code)?;
    let current_page = ctx
        .query
        .integer("current_page", 1, (1, u64::from(u32::MAX)), code)?;
    Ok(Some((page_size, current_page)))
}

pub(super) async fn delete<N: Node>(
    ctx: &Ctx<'_, N>,
    view: &QueueView,
    group: GroupId,
) -> Result<Reply, DmsError> {
    ctx.node
        .delete_group(view.id, group)
        .await
        .map_err(from_node)?;
    Ok(Reply::no_content())
}
