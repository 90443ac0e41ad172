//! Fetch.

use bytes::Bytes;
use sluice_node::Node;

use super::api::Context;
use super::Reply;

pub async fn fetch<N: Node>(_c: &Context<'_>, _node: &N, _body: &mut Bytes) -> Reply {
    Reply::Close("Fetch: not yet".to_string())
}
