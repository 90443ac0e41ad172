//! The dispatcher: which APIs and versions Sluice serves, the authentication gate, and
//! ApiVersions and SASL themselves.

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::ResponseError;
use sluice_node::tenants::Tenant;
use sluice_node::Node;

use super::codec::{self, FrameHead};
use super::sasl::{self, Mechanism, SaslState, Step, MECHANISMS, SASL_MESSAGE_BYTES_MAX};
use super::{fetch, groups, produce, share, topics, unsupported, Reply, Session};

/// The APIs Sluice serves and the versions of each (what ApiVersions advertises). The
/// ranges stop where a version needs what Sluice does not keep (topic ids in Fetch 13+,
/// KIP-848's consumer protocol).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 0, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
];

/// The versions of `api_key` Sluice serves, if any.
pub fn served(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|(_, min, max)| (*min, *max))
}

/// Decodes a request body of a known version; a body that does not decode closes the
/// connection.
pub fn decode<R: Decodable>(head: &FrameHead, body: &mut Bytes) -> Result<R, Reply> {
    R::decode(body, head.version).map_err(|error| {
        Reply::Close(format!(
            "{:?} v{} body does not decode: {error}",
            head.api_key, head.version
        ))
    })
}

/// Encodes a response frame; a response that does not encode (a bug, or a value the
/// asked version cannot carry) closes the connection.
pub fn respond<R: Encodable + HeaderVersion>(head: &FrameHead, response: &R) -> Reply {
    match codec::response_frame(head, head.version, response) {
        Ok(frame) => Reply::Send(frame),
        Err(error) => Reply::Close(error),
    }
}

pub(super) async fn handle<N: Node>(session: &mut Session, node: &N, mut frame: Bytes) -> Reply {
    let head = match codec::decode_frame(&mut frame) {
        Ok(head) => head,
        Err(error) => return Reply::Close(error),
    };
    let served_range = served(head.api_key);
    if !served_range.is_some_and(|(min, max)| (min..=max).contains(&head.version)) {
        if head.api_key == ApiKey::ApiVersions {
            return api_versions(&head, ResponseError::UnsupportedVersion.code());
        }
        return unsupported::answer(&head).unwrap_or_else(|| {
            Reply::Close(match served_range {
                Some((min, max)) => format!(
                    "{:?} v{} is not served (v{min} to v{max} are)",
                    head.api_key, head.version
                ),
                None => format!("{:?} is not served", head.api_key),
            })
        });
    }
    if matches!(session.sasl, SaslState::Failed) {
        return Reply::Close("a request after failed authentication".to_string());
    }
    match head.api_key {
        ApiKey::ApiVersions => return api_versions(&head, 0),
        ApiKey::SaslHandshake => return sasl_handshake(session, &head, &mut frame),
        ApiKey::SaslAuthenticate => {
            return sasl_authenticate(session, node, &head, &mut frame).await
        }
        _ => {}
    }
    let Some(tenant) = session.tenant.clone() else {
        return Reply::Close(format!(
            "{:?} before SASL authentication (PLAIN or SCRAM, the AK as user name and \
             the SK as password)",
            head.api_key
        ));
    };
    let context = Context {
        config: &session.config,
        tenant: &tenant,
        head: &head,
    };
    // Each handler's future is boxed: the node's futures nest deeply, and one state
    // machine holding all of them would be as large as the largest and deep to lay out.
    let body = &mut frame;
    match head.api_key {
        ApiKey::Metadata => Box::pin(topics::metadata(&context, node, body)).await,
        ApiKey::CreateTopics => Box::pin(topics::create_topics(&context, node, body)).await,
        ApiKey::DeleteTopics => Box::pin(topics::delete_topics(&context, node, body)).await,
        ApiKey::ListOffsets => Box::pin(topics::list_offsets(&context, node, body)).await,
        ApiKey::Produce => Box::pin(produce::produce(&context, node, body)).await,
        ApiKey::Fetch => Box::pin(fetch::fetch(&context, node, body)).await,
        ApiKey::InitProducerId => produce::init_producer_id(&context, body),
        ApiKey::DescribeConfigs => Box::pin(topics::describe_configs(&context, node, body)).await,
        ApiKey::CreatePartitions => Box::pin(topics::create_partitions(&context, node, body)).await,
        ApiKey::ShareGroupHeartbeat => {
            Box::pin(share::heartbeat(&context, node, &mut session.share, body)).await
        }
        ApiKey::ShareFetch => {
            Box::pin(share::fetch(&context, node, &mut session.share, body)).await
        }
        ApiKey::ShareAcknowledge => {
            Box::pin(share::acknowledge_request(
                &context,
                node,
                &mut session.share,
                body,
            ))
            .await
        }
        ApiKey::FindCoordinator => Box::pin(groups::find_coordinator(&context, node, body)).await,
        ApiKey::JoinGroup => Box::pin(groups::join_group(&context, node, body)).await,
        ApiKey::SyncGroup => Box::pin(groups::sync_group(&context, node, body)).await,
        ApiKey::Heartbeat => Box::pin(groups::heartbeat(&context, node, body)).await,
        ApiKey::LeaveGroup => Box::pin(groups::leave_group(&context, node, body)).await,
        ApiKey::OffsetCommit => Box::pin(groups::offset_commit(&context, node, body)).await,
        ApiKey::OffsetFetch => Box::pin(groups::offset_fetch(&context, node, body)).await,
        ApiKey::DescribeGroups => Box::pin(groups::describe_groups(&context, node, body)).await,
        ApiKey::ListGroups => Box::pin(groups::list_groups(&context, node, body)).await,
        other => Reply::Close(format!("{other:?} is not served")),
    }
}

/// What a request handler needs besides the node and its body.
pub struct Context<'a> {
    pub config: &'a super::KafkaConfig,
    pub tenant: &'a Tenant,
    pub head: &'a FrameHead,
}

fn api_versions(head: &FrameHead, error_code: i16) -> Reply {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error_code;
    response.api_keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    // An unsupported version is answered in v0, which every client reads (KIP-511).
    let version = if error_code == 0 { head.version } else { 0 };
    match codec::response_frame(head, version, &response) {
        Ok(frame) => Reply::Send(frame),
        Err(error) => Reply::Close(error),
    }
}

fn sasl_handshake(session: &mut Session, head: &FrameHead, body: &mut Bytes) -> Reply {
    let request: SaslHandshakeRequest = match decode(head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let mut response = SaslHandshakeResponse::default();
    response.mechanisms = MECHANISMS
        .iter()
        .map(|name| StrBytes::from_static_str(name))
        .collect();
    let fresh = matches!(session.sasl, SaslState::Start);
    match Mechanism::parse(request.mechanism.as_str()) {
        Some(mechanism) if fresh => session.sasl = SaslState::Chosen(mechanism),
        Some(_) => response.error_code = ResponseError::IllegalSaslState.code(),
        None => response.error_code = ResponseError::UnsupportedSaslMechanism.code(),
    }
    respond(head, &response)
}

async fn sasl_authenticate<N: Node>(
    session: &mut Session,
    node: &N,
    head: &FrameHead,
    body: &mut Bytes,
) -> Reply {
    let request: SaslAuthenticateRequest = match decode(head, body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let mut response = SaslAuthenticateResponse::default();
    if request.auth_bytes.len() > SASL_MESSAGE_BYTES_MAX {
        return Reply::Close("a SASL message over its size limit".to_string());
    }
    // A tenant created through another node a moment ago may not be here yet.
    let known = |ak: &str| node.tenants().by_ak(ak).is_some();
    let wanted_ak = match &session.sasl {
        SaslState::Chosen(Mechanism::Plain) => plain_user(&request.auth_bytes),
        SaslState::ScramSent(pending) => Some(pending.ak().to_string()),
        _ => None,
    };
    if let Some(ak) = wanted_ak {
        if !known(&ak) {
            node.sync_tenants().await;
        }
    }
    let find = |ak: &str| node.tenants().by_ak(ak).cloned();
    let step = match std::mem::take(&mut session.sasl) {
        SaslState::Chosen(Mechanism::Plain) => sasl::plain(&request.auth_bytes, find),
        SaslState::Chosen(mechanism) => {
            let nonce = server_nonce();
            match sasl::scram_first(mechanism, &request.auth_bytes, &nonce) {
                Ok((pending, answer)) => {
                    session.sasl = SaslState::ScramSent(Box::new(pending));
                    Step::Continue(answer)
                }
                Err(why) => Step::Refused(why),
            }
        }
        SaslState::ScramSent(pending) => sasl::scram_final(&pending, &request.auth_bytes, find),
        state @ (SaslState::Start | SaslState::Done | SaslState::Failed) => {
            session.sasl = state;
            response.error_code = ResponseError::IllegalSaslState.code();
            response.error_message = Some(StrBytes::from_static_str(
                "SaslAuthenticate without a SaslHandshake first",
            ));
            return respond(head, &response);
        }
    };
    match step {
        Step::Done(tenant, answer) => {
            session.tenant = Some(*tenant);
            session.sasl = SaslState::Done;
            response.auth_bytes = Bytes::from(answer);
        }
        Step::Continue(answer) => response.auth_bytes = Bytes::from(answer),
        Step::Refused(why) => {
            session.sasl = SaslState::Failed;
            response.error_code = ResponseError::SaslAuthenticationFailed.code();
            response.error_message = Some(StrBytes::from_string(why));
        }
    }
    respond(head, &response)
}

/// The user name of a PLAIN message, to know whether the tenant directory must be synced.
fn plain_user(message: &[u8]) -> Option<String> {
    let user = message.split(|byte| *byte == 0).nth(1)?;
    std::str::from_utf8(user).ok().map(str::to_string)
}

/// A fresh SCRAM server nonce: 18 random bytes, base64.
fn server_nonce() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 18];
    getrandom::getrandom(&mut bytes).expect("the OS random source works");
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}
