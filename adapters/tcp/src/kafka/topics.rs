//! Topics: Metadata, CreateTopics, DeleteTopics, ListOffsets.

use bytes::Bytes;
use sluice_node::Node;

use super::api::Context;
use super::Reply;

pub async fn metadata<N: Node>(_c: &Context<'_>, _node: &N, _body: &mut Bytes) -> Reply {
    Reply::Close("Metadata: not yet".to_string())
}
pub async fn create_topics<N: Node>(_c: &Context<'_>, _node: &N, _body: &mut Bytes) -> Reply {
    Reply::Close("CreateTopics: not yet".to_string())
}
pub async fn delete_topics<N: Node>(_c: &Context<'_>, _node: &N, _body: &mut Bytes) -> Reply {
    Reply::Close("DeleteTopics: not yet".to_string())
}
pub async fn list_offsets<N: Node>(_c: &Context<'_>, _node: &N, _body: &mut Bytes) -> Reply {
    Reply::Close("ListOffsets: not yet".to_string())
}
