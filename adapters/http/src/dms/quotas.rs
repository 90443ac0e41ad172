//! Quotas (docs/dms-api.md §3.7): the caller's queue quota and the per-queue group quota.

use http::StatusCode;

use super::errors::DmsError;
use super::wire::{QuotaResource, QuotaResources, QuotasResponse};
use super::{Ctx, Reply};
use sluice_node::Node;

/// The range an operator may set a queue quota to, as the service reports it.
const QUEUE_QUOTA_MIN: u64 = 1;
const QUEUE_QUOTA_MAX: u64 = 100;

pub(super) fn show<N: Node>(ctx: &Ctx<'_, N>) -> Result<Reply, DmsError> {
    let quotas = ctx.quotas();
    let queues = ctx.node.queues_of(ctx.tenant);
    let queues_used = u64::try_from(queues.len()).expect("usize fits u64");
    // The group quota is per queue: report the fullest queue.
    let groups_used = queues.iter().map(|q| q.groups.len()).max().unwrap_or(0);
    let response = QuotasResponse {
        quotas: QuotaResources {
            resources: vec![
                QuotaResource {
                    kind: "queue",
                    quota: u64::from(quotas.queues_max),
                    used: queues_used,
                    min: Some(QUEUE_QUOTA_MIN),
                    max: Some(QUEUE_QUOTA_MAX.max(u64::from(quotas.queues_max))),
                },
                QuotaResource {
                    kind: "group",
                    quota: u64::from(quotas.groups_per_queue_max),
                    used: u64::try_from(groups_used).expect("usize fits u64"),
                    min: None,
                    max: None,
                },
            ],
        },
    };
    Ok(Reply::json(StatusCode::OK, &response))
}
