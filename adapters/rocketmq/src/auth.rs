//! The client's signature (`MQv2-HMAC-SHA1`): every call carries
//! `authorization: MQv2-HMAC-SHA1 Credential=<AK>, SignedHeaders=x-mq-date-time,
//! Signature=<hex>`, where the signature is HMAC-SHA1 keyed with the tenant's SK over the
//! value of the `x-mq-date-time` header. The tenant is found by its AK and the MAC
//! checked in constant time. The date is not checked against the clock: the client
//! writes local time with a `Z` suffix, and a Telemetry stream keeps the date it opened
//! with for as long as it lives (docs/rocketmq.md, "Authentication").

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha1::Sha1;
use sluice_node::tenants::Tenant;
use sluice_node::Node;

use crate::limits::AUTHORIZATION_BYTES_MAX;

/// The algorithm the header names.
const ALGORITHM: &str = "MQv2-HMAC-SHA1";
/// The signed header.
pub const DATE_HEADER: &str = "x-mq-date-time";

/// Why a call is not authenticated (the message of its UNAUTHORIZED status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    /// An unknown AK or a wrong signature: the same answer, so that AKs cannot be probed.
    Refused,
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "the authorization and x-mq-date-time headers are required",
            AuthError::Malformed => "the authorization header is not MQv2-HMAC-SHA1",
            AuthError::Refused => "the access key or the signature is wrong",
        }
    }
}

/// The parts of an `authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Credential<'a> {
    pub ak: &'a str,
    pub signature: [u8; 20],
}

/// Parses `MQv2-HMAC-SHA1 Credential=AK, SignedHeaders=x-mq-date-time, Signature=HEX`
/// (the parts in any order, separated by commas and spaces).
pub fn parse(header: &str) -> Result<Credential<'_>, AuthError> {
    if header.len() > AUTHORIZATION_BYTES_MAX {
        return Err(AuthError::Malformed);
    }
    let rest = header
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(AuthError::Malformed)?;
    let (mut ak, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=').ok_or(AuthError::Malformed)?;
        let slot = match name {
            "Credential" => &mut ak,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(AuthError::Malformed),
        };
        if slot.replace(value).is_some() {
            return Err(AuthError::Malformed);
        }
    }
    let (Some(ak), Some(signed), Some(signature)) = (ak, signed, signature) else {
        return Err(AuthError::Malformed);
    };
    if !signed.eq_ignore_ascii_case(DATE_HEADER) {
        return Err(AuthError::Malformed);
    }
    let mut bytes = [0u8; 20];
    hex::decode_to_slice(signature, &mut bytes).map_err(|_| AuthError::Malformed)?;
    Ok(Credential {
        ak,
        signature: bytes,
    })
}

/// Whether `signature` is HMAC-SHA1(`sk`, `date`), compared in constant time.
pub fn verify(sk: &str, date: &[u8], signature: &[u8; 20]) -> bool {
    let mut mac = Hmac::<Sha1>::new_from_slice(sk.as_bytes()).expect("HMAC takes any key");
    mac.update(date);
    mac.verify_slice(signature).is_ok()
}

/// The `authorization` header a client signs `date` with (what the official clients
/// send; for tools and tests).
pub fn sign(ak: &str, sk: &str, date: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(sk.as_bytes()).expect("HMAC takes any key");
    mac.update(date.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    format!("{ALGORITHM} Credential={ak}, SignedHeaders={DATE_HEADER}, Signature={signature}")
}

/// The tenant a call's headers sign for. An AK this node does not know is looked up again
/// after reading partition 0's leader (a tenant created through another node).
pub async fn authenticate<N: Node>(node: &N, headers: &HeaderMap) -> Result<Tenant, AuthError> {
    let (Some(authorization), Some(date)) = (
        headers.get(http::header::AUTHORIZATION),
        headers.get(DATE_HEADER),
    ) else {
        return Err(AuthError::Missing);
    };
    let authorization = authorization.to_str().map_err(|_| AuthError::Malformed)?;
    let credential = parse(authorization)?;
    let mut tenant = node.tenants().by_ak(credential.ak).cloned();
    if tenant.is_none() && !credential.ak.is_empty() {
        node.sync_tenants().await;
        tenant = node.tenants().by_ak(credential.ak).cloned();
    }
    match tenant {
        Some(tenant) if verify(&tenant.sk, date.as_bytes(), &credential.signature) => Ok(tenant),
        _ => Err(AuthError::Refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `header` and checks its signature against `sk` over `date`.
    fn check(header: &str, sk: &str, date: &str) -> Result<bool, AuthError> {
        let credential = parse(header)?;
        Ok(verify(sk, date.as_bytes(), &credential.signature))
    }

    /// The worked example computed with the client's own signing code (ak1/sk1).
    #[test]
    fn the_clients_signature_verifies() {
        let header = "MQv2-HMAC-SHA1 Credential=ak1, SignedHeaders=x-mq-date-time, \
                      Signature=dd39b206edb1322b2a01097336f780e3073447d1";
        assert_eq!(parse(header).unwrap().ak, "ak1");
        assert_eq!(check(header, "sk1", "20261207T120000Z"), Ok(true));
        assert_eq!(sign("ak1", "sk1", "20261207T120000Z"), header);
        assert_eq!(check(header, "sk2", "20261207T120000Z"), Ok(false));
        assert_eq!(check(header, "sk1", "20261207T120001Z"), Ok(false));
        let empty = "MQv2-HMAC-SHA1 Credential=, SignedHeaders=x-mq-date-time, \
                     Signature=43d7c50081611f3e1bef34609c24ea2ebe1ffa81";
        assert_eq!(check(empty, "", "20261207T120000Z"), Ok(true));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            "",
            "MQv2-HMAC-SHA1",
            "MQv2-HMAC-SHA256 Credential=a, SignedHeaders=x-mq-date-time, Signature=00",
            "MQv2-HMAC-SHA1 Credential=a, SignedHeaders=host, Signature=dd39b206edb1322b2a01097336f780e3073447d1",
            "MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, Signature=zz",
            "MQv2-HMAC-SHA1 Credential=a, Credential=b, SignedHeaders=x-mq-date-time, Signature=dd39b206edb1322b2a01097336f780e3073447d1",
        ] {
            assert_eq!(check(header, "sk1", "d"), Err(AuthError::Malformed), "{header}");
        }
    }
}
