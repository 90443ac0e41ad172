//! Frames: the request header in front of every request, and the response header and
//! length prefix around every answer.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// What the header of a request frame says.
#[derive(Clone, Debug)]
pub struct FrameHead {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
}

/// Decodes the request header at the front of `frame` (the bytes after the length
/// prefix) and leaves the request body in `frame`. An unknown API key or a header that
/// does not decode is an error: the connection is closed, as Kafka's brokers do.
pub fn decode_frame(frame: &mut Bytes) -> Result<FrameHead, String> {
    if frame.len() < 8 {
        return Err(format!("a request frame of {} bytes", frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(key).map_err(|()| format!("unknown API key {key}"))?;
    let known = known_version(api_key, version);
    if !known && api_key != ApiKey::ApiVersions {
        return Err(format!("{api_key:?} version {version} does not exist"));
    }
    // An ApiVersions request of a version newer than any known is read with the newest
    // header it could have; its body is then not read at all (KIP-511).
    let header_version = if known {
        api_key.request_header_version(version)
    } else {
        2
    };
    let header = RequestHeader::decode(frame, header_version)
        .map_err(|error| format!("{api_key:?} v{version} header: {error}"))?;
    Ok(FrameHead {
        api_key,
        version,
        correlation_id: header.correlation_id,
    })
}

/// The whole response frame for `head`: length prefix, response header, body.
pub fn response_frame<R: Encodable + HeaderVersion>(
    head: &FrameHead,
    version: i16,
    response: &R,
) -> Result<Vec<u8>, String> {
    let mut header = ResponseHeader::default();
    header.correlation_id = head.correlation_id;
    // ApiVersions always answers with header version 0, whatever the request's version.
    let header_version = if head.api_key == ApiKey::ApiVersions {
        0
    } else {
        R::header_version(version)
    };
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|error| format!("response header: {error}"))?;
    response
        .encode(&mut buf, version)
        .map_err(|error| format!("{:?} v{version} response: {error}", head.api_key))?;
    let length = i32::try_from(buf.len() - 4).map_err(|_| "response too large".to_string())?;
    buf[0..4].copy_from_slice(&length.to_be_bytes());
    Ok(buf.to_vec())
}

/// Whether the protocol defines `version` of `api_key` (whether or not Sluice serves it).
pub fn known_version(api_key: ApiKey, version: i16) -> bool {
    let range = api_key.valid_versions();
    (range.min..=range.max).contains(&version)
}
