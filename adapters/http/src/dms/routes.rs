//! The DMS path grammar: which endpoint a method and path name (docs/dms-api.md §2, the
//! queue tags of row 14 on `/v2` only, plus the Sluice extensions
//! `DELETE .../messages/{message_id}` and `DELETE .../queue/{queue_id}/tags/{key}`), under
//! the `/v1.0/{project_id}` and `/v2/{project_id}` prefixes. Parsing only: ids stay strings
//! here and are resolved by the handlers.

use http::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A resource path, ids not yet resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    Queues,
    Queue(&'a str),
    Groups(&'a str),
    Group(&'a str, &'a str),
    Messages(&'a str),
    /// One message of a queue: the queue id, the message id (Sluice extension).
    Message(&'a str, &'a str),
    /// The end of a half message's transaction: `.../messages/{m}/commit` (true) or
    /// `/rollback` (false) (Sluice extension).
    MessageEnd(&'a str, &'a str, bool),
    /// The checks of a queue's open transactions (Sluice extension).
    TransactionChecks(&'a str),
    /// A message's trace: `.../messages/{m}/trace` (Sluice extension).
    MessageTrace(&'a str, &'a str),
    GroupMessages(&'a str, &'a str),
    /// Sluice extension: a queue's sampled counts (the console's charts).
    QueueMetrics(&'a str),
    /// Sluice extension: a queue's alarm rules, states and history.
    QueueAlarms(&'a str),
    Ack(&'a str, &'a str),
    DeadLetters(&'a str, &'a str),
    DeadLetterAck(&'a str, &'a str),
    /// Sluice extension: the group's dead letters back to its main lane.
    DeadLetterRedrive(&'a str, &'a str),
    /// Sluice extension: the group's dead letters as JSON lines, unleased.
    DeadLetterExport(&'a str, &'a str),
    Quotas,
    /// `/v2` `queue/tags`: the tags of the project's queues.
    ProjectTags,
    /// `/v2` `queue/{queue_id}/tags`.
    QueueTags(&'a str),
    /// `/v2` `queue/{queue_id}/tags/action`.
    QueueTagAction(&'a str),
    /// `/v2` `queue/{queue_id}/tags/{key}`, the key still percent-encoded (Sluice
    /// extension).
    QueueTag(&'a str, &'a str),
}

impl<'a> Resource<'a> {
    /// The queue id and group id the resource names, as written in the path.
    pub fn ids(self) -> (Option<&'a str>, Option<&'a str>) {
        match self {
            Resource::Queues | Resource::Quotas | Resource::ProjectTags => (None, None),
            Resource::Queue(q)
            | Resource::Groups(q)
            | Resource::Messages(q)
            | Resource::Message(q, _)
            | Resource::MessageEnd(q, _, _)
            | Resource::TransactionChecks(q)
            | Resource::MessageTrace(q, _)
            | Resource::QueueMetrics(q)
            | Resource::QueueAlarms(q)
            | Resource::QueueTags(q)
            | Resource::QueueTagAction(q)
            | Resource::QueueTag(q, _) => (Some(q), None),
            Resource::Group(q, g)
            | Resource::GroupMessages(q, g)
            | Resource::Ack(q, g)
            | Resource::DeadLetters(q, g)
            | Resource::DeadLetterAck(q, g)
            | Resource::DeadLetterRedrive(q, g)
            | Resource::DeadLetterExport(q, g) => (Some(q), Some(g)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub version: Version,
    pub project: &'a str,
    pub resource: Resource<'a>,
}

/// An endpoint of §2's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    QueueCreate,
    QueueList,
    QueueShow,
    QueueDelete,
    GroupCreate,
    GroupList,
    GroupDelete,
    Send,
    /// Sluice extension: cancel a scheduled message.
    Cancel,
    /// Sluice extension: commit or roll back a half message's transaction.
    EndTransaction,
    /// Sluice extension: take the checks of a queue's open transactions.
    TransactionChecks,
    /// Sluice extension: a message's trace.
    MessageTrace,
    Consume,
    Ack,
    DeadLetterConsume,
    DeadLetterAck,
    /// Sluice extension: redrive a group's dead letters.
    DeadLetterRedrive,
    /// Sluice extension: export a group's dead letters.
    DeadLetterExport,
    /// Sluice extension: a queue's sampled counts.
    QueueMetrics,
    /// Sluice extension: a queue's alarms.
    QueueAlarmsShow,
    /// Sluice extension: replace a queue's alarm rules.
    QueueAlarmsReplace,
    Quotas,
    ProjectTags,
    QueueTagList,
    QueueTagAction,
    /// Sluice extension: delete one tag by key.
    QueueTagDelete,
}

impl Endpoint {
    /// A low-cardinality name for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::QueueCreate => "queue_create",
            Endpoint::QueueList => "queue_list",
            Endpoint::QueueShow => "queue_show",
            Endpoint::QueueDelete => "queue_delete",
            Endpoint::GroupCreate => "group_create",
            Endpoint::GroupList => "group_list",
            Endpoint::GroupDelete => "group_delete",
            Endpoint::Send => "send",
            Endpoint::Cancel => "cancel",
            Endpoint::EndTransaction => "end_transaction",
            Endpoint::TransactionChecks => "transaction_checks",
            Endpoint::MessageTrace => "message_trace",
            Endpoint::Consume => "consume",
            Endpoint::Ack => "ack",
            Endpoint::DeadLetterConsume => "deadletter_consume",
            Endpoint::DeadLetterAck => "deadletter_ack",
            Endpoint::DeadLetterRedrive => "deadletter_redrive",
            Endpoint::DeadLetterExport => "deadletter_export",
            Endpoint::QueueMetrics => "queue_metrics",
            Endpoint::QueueAlarmsShow => "queue_alarms",
            Endpoint::QueueAlarmsReplace => "queue_alarms_replace",
            Endpoint::Quotas => "quotas",
            Endpoint::ProjectTags => "project_tags",
            Endpoint::QueueTagList => "queue_tags",
            Endpoint::QueueTagAction => "queue_tag_action",
            Endpoint::QueueTagDelete => "queue_tag_delete",
        }
    }
}

/// Splits a path (no query) into a route, or `None` if it is not a DMS resource.
/// One trailing `/` is tolerated.
pub fn parse(path: &str) -> Option<Route<'_>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let (version, rest) = if let Some(rest) = path.strip_prefix("/v1.0/") {
        (Version::V1, rest)
    } else if let Some(rest) = path.strip_prefix("/v2/") {
        (Version::V2, rest)
    } else {
        return None;
    };
    let mut segments = rest.split('/');
    let project = segments.next()?;
    // Bounded: a DMS path has at most six segments after the project.
    let mut parts: [&str; 6] = [""; 6];
    let mut count = 0;
    for segment in segments {
        if count == parts.len() {
            return None;
        }
        parts[count] = segment;
        count += 1;
    }
    let resource = match (&parts[..count], version) {
        (["queues"], _) => Resource::Queues,
        (["queues", q], _) => Resource::Queue(q),
        (["queues", q, "groups"], _) => Resource::Groups(q),
        (["queues", q, "messages"], _) => Resource::Messages(q),
        (["queues", q, "metrics"], _) => Resource::QueueMetrics(q),
        (["queues", q, "alarms"], _) => Resource::QueueAlarms(q),
        (["queues", q, "groups", g], _) => Resource::Group(q, g),
        (["queues", q, "messages", m], _) => Resource::Message(q, m),
        (["queues", q, "messages", m, "commit"], _) => Resource::MessageEnd(q, m, true),
        (["queues", q, "messages", m, "rollback"], _) => Resource::MessageEnd(q, m, false),
        (["queues", q, "messages", m, "trace"], _) => Resource::MessageTrace(q, m),
        (["queues", q, "transactions", "checks"], _) => Resource::TransactionChecks(q),
        (["queues", q, "groups", g, "messages"], _) => Resource::GroupMessages(q, g),
        (["queues", q, "groups", g, "ack"], _) => Resource::Ack(q, g),
        (["queues", q, "groups", g, "deadletters"], _) => Resource::DeadLetters(q, g),
        (["queues", q, "groups", g, "deadletters", "ack"], _) => Resource::DeadLetterAck(q, g),
        (["queues", q, "groups", g, "deadletters", "redrive"], _) => {
            Resource::DeadLetterRedrive(q, g)
        }
        (["queues", q, "groups", g, "deadletters", "export"], _) => {
            Resource::DeadLetterExport(q, g)
        }
        (["quotas", "dms"], Version::V1) | (["quotas"], Version::V2) => Resource::Quotas,
        (["queue", "tags"], Version::V2) => Resource::ProjectTags,
        (["queue", q, "tags"], Version::V2) => Resource::QueueTags(q),
        (["queue", q, "tags", "action"], Version::V2) => Resource::QueueTagAction(q),
        (["queue", q, "tags", key], Version::V2) => Resource::QueueTag(q, key),
        _ => return None,
    };
    if project.is_empty() {
        return None;
    }
    Some(Route {
        version,
        project,
        resource,
    })
}

/// The endpoint a method selects on a resource, or the methods the resource allows.
pub fn endpoint(method: &Method, resource: &Resource<'_>) -> Result<Endpoint, &'static str> {
    let endpoint = match (resource, method.as_str()) {
        (Resource::Queues, "POST") => Endpoint::QueueCreate,
        (Resource::Queues, "GET") => Endpoint::QueueList,
        (Resource::Queues, _) => return Err("GET, POST"),
        (Resource::Queue(_), "GET") => Endpoint::QueueShow,
        (Resource::Queue(_), "DELETE") => Endpoint::QueueDelete,
        (Resource::Queue(_), _) => return Err("GET, DELETE"),
        (Resource::Groups(_), "POST") => Endpoint::GroupCreate,
        (Resource::Groups(_), "GET") => Endpoint::GroupList,
        (Resource::Groups(_), _) => return Err("GET, POST"),
        (Resource::Group(..), "DELETE") => Endpoint::GroupDelete,
        (Resource::Group(..), _) => return Err("DELETE"),
        (Resource::Messages(_), "POST") => Endpoint::Send,
        (Resource::Messages(_), _) => return Err("POST"),
        (Resource::QueueMetrics(_), "GET") => Endpoint::QueueMetrics,
        (Resource::QueueMetrics(_), _) => return Err("GET"),
        (Resource::QueueAlarms(_), "GET") => Endpoint::QueueAlarmsShow,
        (Resource::QueueAlarms(_), "PUT") => Endpoint::QueueAlarmsReplace,
        (Resource::QueueAlarms(_), _) => return Err("GET, PUT"),
        (Resource::Message(..), "DELETE") => Endpoint::Cancel,
        (Resource::Message(..), _) => return Err("DELETE"),
        (Resource::MessageEnd(..), "POST") => Endpoint::EndTransaction,
        (Resource::MessageEnd(..), _) => return Err("POST"),
        (Resource::TransactionChecks(_), "POST") => Endpoint::TransactionChecks,
        (Resource::TransactionChecks(_), _) => return Err("POST"),
        (Resource::MessageTrace(..), "GET") => Endpoint::MessageTrace,
        (Resource::MessageTrace(..), _) => return Err("GET"),
        (Resource::GroupMessages(..), "GET") => Endpoint::Consume,
        (Resource::GroupMessages(..), _) => return Err("GET"),
        (Resource::Ack(..), "POST") => Endpoint::Ack,
        (Resource::Ack(..), _) => return Err("POST"),
        (Resource::DeadLetters(..), "GET") => Endpoint::DeadLetterConsume,
        (Resource::DeadLetters(..), _) => return Err("GET"),
        (Resource::DeadLetterAck(..), "POST") => Endpoint::DeadLetterAck,
        (Resource::DeadLetterAck(..), _) => return Err("POST"),
        (Resource::DeadLetterRedrive(..), "POST") => Endpoint::DeadLetterRedrive,
        (Resource::DeadLetterRedrive(..), _) => return Err("POST"),
        (Resource::DeadLetterExport(..), "GET") => Endpoint::DeadLetterExport,
        (Resource::DeadLetterExport(..), _) => return Err("GET"),
        (Resource::Quotas, "GET") => Endpoint::Quotas,
        (Resource::Quotas, _) => return Err("GET"),
        (Resource::ProjectTags, "GET") => Endpoint::ProjectTags,
        (Resource::ProjectTags, _) => return Err("GET"),
        (Resource::QueueTags(_), "GET") => Endpoint::QueueTagList,
        (Resource::QueueTags(_), _) => return Err("GET"),
        (Resource::QueueTagAction(_), "POST") => Endpoint::QueueTagAction,
        (Resource::QueueTagAction(_), _) => return Err("POST"),
        (Resource::QueueTag(..), "DELETE") => Endpoint::QueueTagDelete,
        (Resource::QueueTag(..), _) => return Err("DELETE"),
    };
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str) -> Option<Result<Endpoint, &'static str>> {
        parse(path).map(|route| endpoint(&method, &route.resource))
    }

    #[test]
    fn every_endpoint_under_both_prefixes() {
        // Goal: the §2 table, both prefixes, the per-version quota paths, 405 lists.
        for prefix in ["/v1.0/p", "/v2/p"] {
            let at = |tail: &str| format!("{prefix}{tail}");
            assert_eq!(
                check(Method::POST, &at("/queues")),
                Some(Ok(Endpoint::QueueCreate))
            );
            assert_eq!(
                check(Method::GET, &at("/queues/")),
                Some(Ok(Endpoint::QueueList))
            );
            assert_eq!(
                check(Method::GET, &at("/queues/q")),
                Some(Ok(Endpoint::QueueShow))
            );
            assert_eq!(
                check(Method::DELETE, &at("/queues/q")),
                Some(Ok(Endpoint::QueueDelete))
            );
            assert_eq!(
                check(Method::POST, &at("/queues/q/groups")),
                Some(Ok(Endpoint::GroupCreate))
            );
            assert_eq!(
                check(Method::GET, &at("/queues/q/groups")),
                Some(Ok(Endpoint::GroupList))
            );
            assert_eq!(
                check(Method::DELETE, &at("/queues/q/groups/g")),
                Some(Ok(Endpoint::GroupDelete))
            );
            assert_eq!(
                check(Method::POST, &at("/queues/q/messages")),
                Some(Ok(Endpoint::Send))
            );
            assert_eq!(
                check(Method::DELETE, &at("/queues/q/messages/m")),
                Some(Ok(Endpoint::Cancel))
            );
            assert_eq!(
                check(Method::GET, &at("/queues/q/messages/m")),
                Some(Err("DELETE"))
            );
            assert_eq!(check(Method::DELETE, &at("/queues/q/messages/m/x")), None);
            assert_eq!(
                check(Method::GET, &at("/queues/q/groups/g/messages")),
                Some(Ok(Endpoint::Consume))
            );
            assert_eq!(
                check(Method::POST, &at("/queues/q/groups/g/ack")),
                Some(Ok(Endpoint::Ack))
            );
            assert_eq!(
                check(Method::GET, &at("/queues/q/groups/g/deadletters")),
                Some(Ok(Endpoint::DeadLetterConsume))
            );
            assert_eq!(
                check(Method::POST, &at("/queues/q/groups/g/deadletters/ack")),
                Some(Ok(Endpoint::DeadLetterAck))
            );
            assert_eq!(
                check(Method::PUT, &at("/queues/q")),
                Some(Err("GET, DELETE"))
            );
            assert_eq!(check(Method::GET, &at("/queues/q/x")), None);
            assert_eq!(check(Method::GET, &at("/queues/q/groups/g/a/b/c/d")), None);
        }
        assert_eq!(
            check(Method::GET, "/v1.0/p/quotas/dms"),
            Some(Ok(Endpoint::Quotas))
        );
        assert_eq!(
            check(Method::GET, "/v2/p/quotas"),
            Some(Ok(Endpoint::Quotas))
        );
        assert_eq!(check(Method::GET, "/v1.0/p/quotas"), None);
        assert_eq!(check(Method::GET, "/v2/p/quotas/dms"), None);
        assert_eq!(check(Method::GET, "/v1.0//queues"), None);
        assert_eq!(
            check(Method::GET, "/v2/p/queue/tags"),
            Some(Ok(Endpoint::ProjectTags))
        );
        assert_eq!(
            check(Method::GET, "/v2/p/queue/q/tags"),
            Some(Ok(Endpoint::QueueTagList))
        );
        assert_eq!(
            check(Method::POST, "/v2/p/queue/q/tags/action"),
            Some(Ok(Endpoint::QueueTagAction))
        );
        assert_eq!(
            check(Method::DELETE, "/v2/p/queue/q/tags/env"),
            Some(Ok(Endpoint::QueueTagDelete))
        );
        assert_eq!(
            check(Method::DELETE, "/v2/p/queue/q/tags/action"),
            Some(Err("POST"))
        );
        assert_eq!(check(Method::GET, "/v1.0/p/queue/tags"), None);
        assert_eq!(check(Method::GET, "/v1.0/p/queue/q/tags"), None);
        assert_eq!(check(Method::GET, "/v3/p/queues"), None);
        assert_eq!(Endpoint::Consume.label(), "consume");
        assert_eq!(Endpoint::Cancel.label(), "cancel");
    }
}
