//! Requests Sluice does not serve: an API it does not implement, or a version of one
//! outside the range ApiVersions advertised. Where the API's response has a top-level
//! error code, the request is answered with UNSUPPORTED_VERSION in that response (at the
//! version asked, so the client can read it); the other APIs' responses carry errors
//! only per resource, and such a request closes the connection, as Kafka's brokers do.
//! The request's body is not read.

use kafka_protocol::messages::{self, ApiKey};
use kafka_protocol::ResponseError;

use super::api::respond;
use super::codec::FrameHead;
use super::Reply;

/// The UNSUPPORTED_VERSION answer to `head`, if its API's response can carry one.
pub fn answer(head: &FrameHead) -> Option<Reply> {
    let code = ResponseError::UnsupportedVersion.code();
    macro_rules! answer {
        ($response:ty) => {{
            let mut response = <$response>::default();
            response.error_code = code;
            Some(respond(head, &response))
        }};
    }
    match head.api_key {
        ApiKey::AddOffsetsToTxn => answer!(messages::AddOffsetsToTxnResponse),
        ApiKey::AddPartitionsToTxn => answer!(messages::AddPartitionsToTxnResponse),
        ApiKey::AddRaftVoter => answer!(messages::AddRaftVoterResponse),
        ApiKey::AllocateProducerIds => answer!(messages::AllocateProducerIdsResponse),
        ApiKey::AlterPartition => answer!(messages::AlterPartitionResponse),
        ApiKey::AlterPartitionReassignments => {
            answer!(messages::AlterPartitionReassignmentsResponse)
        }
        ApiKey::AlterShareGroupOffsets => answer!(messages::AlterShareGroupOffsetsResponse),
        ApiKey::ApiVersions => answer!(messages::ApiVersionsResponse),
        ApiKey::AssignReplicasToDirs => answer!(messages::AssignReplicasToDirsResponse),
        ApiKey::BeginQuorumEpoch => answer!(messages::BeginQuorumEpochResponse),
        ApiKey::BrokerHeartbeat => answer!(messages::BrokerHeartbeatResponse),
        ApiKey::BrokerRegistration => answer!(messages::BrokerRegistrationResponse),
        ApiKey::ConsumerGroupHeartbeat => answer!(messages::ConsumerGroupHeartbeatResponse),
        ApiKey::ControllerRegistration => answer!(messages::ControllerRegistrationResponse),
        ApiKey::CreateDelegationToken => answer!(messages::CreateDelegationTokenResponse),
        ApiKey::DeleteShareGroupOffsets => answer!(messages::DeleteShareGroupOffsetsResponse),
        ApiKey::DescribeAcls => answer!(messages::DescribeAclsResponse),
        ApiKey::DescribeClientQuotas => answer!(messages::DescribeClientQuotasResponse),
        ApiKey::DescribeCluster => answer!(messages::DescribeClusterResponse),
        ApiKey::DescribeDelegationToken => answer!(messages::DescribeDelegationTokenResponse),
        ApiKey::DescribeLogDirs => answer!(messages::DescribeLogDirsResponse),
        ApiKey::DescribeQuorum => answer!(messages::DescribeQuorumResponse),
        ApiKey::DescribeUserScramCredentials => {
            answer!(messages::DescribeUserScramCredentialsResponse)
        }
        ApiKey::ElectLeaders => answer!(messages::ElectLeadersResponse),
        ApiKey::EndQuorumEpoch => answer!(messages::EndQuorumEpochResponse),
        ApiKey::EndTxn => answer!(messages::EndTxnResponse),
        ApiKey::Envelope => answer!(messages::EnvelopeResponse),
        ApiKey::ExpireDelegationToken => answer!(messages::ExpireDelegationTokenResponse),
        ApiKey::Fetch => answer!(messages::FetchResponse),
        ApiKey::FetchSnapshot => answer!(messages::FetchSnapshotResponse),
        ApiKey::FindCoordinator => answer!(messages::FindCoordinatorResponse),
        ApiKey::GetTelemetrySubscriptions => answer!(messages::GetTelemetrySubscriptionsResponse),
        ApiKey::Heartbeat => answer!(messages::HeartbeatResponse),
        ApiKey::InitProducerId => answer!(messages::InitProducerIdResponse),
        ApiKey::JoinGroup => answer!(messages::JoinGroupResponse),
        ApiKey::LeaveGroup => answer!(messages::LeaveGroupResponse),
        ApiKey::ListConfigResources => answer!(messages::ListConfigResourcesResponse),
        ApiKey::ListGroups => answer!(messages::ListGroupsResponse),
        ApiKey::ListPartitionReassignments => answer!(messages::ListPartitionReassignmentsResponse),
        ApiKey::ListTransactions => answer!(messages::ListTransactionsResponse),
        ApiKey::Metadata => answer!(messages::MetadataResponse),
        ApiKey::OffsetDelete => answer!(messages::OffsetDeleteResponse),
        ApiKey::OffsetFetch => answer!(messages::OffsetFetchResponse),
        ApiKey::PushTelemetry => answer!(messages::PushTelemetryResponse),
        ApiKey::RemoveRaftVoter => answer!(messages::RemoveRaftVoterResponse),
        ApiKey::RenewDelegationToken => answer!(messages::RenewDelegationTokenResponse),
        ApiKey::SaslAuthenticate => answer!(messages::SaslAuthenticateResponse),
        ApiKey::SaslHandshake => answer!(messages::SaslHandshakeResponse),
        ApiKey::ShareAcknowledge => answer!(messages::ShareAcknowledgeResponse),
        ApiKey::ShareFetch => answer!(messages::ShareFetchResponse),
        ApiKey::ShareGroupHeartbeat => answer!(messages::ShareGroupHeartbeatResponse),
        ApiKey::SyncGroup => answer!(messages::SyncGroupResponse),
        ApiKey::UnregisterBroker => answer!(messages::UnregisterBrokerResponse),
        ApiKey::UpdateFeatures => answer!(messages::UpdateFeaturesResponse),
        ApiKey::UpdateRaftVoter => answer!(messages::UpdateRaftVoterResponse),
        ApiKey::Vote => answer!(messages::VoteResponse),
        _ => None,
    }
}
