//! Wire identifiers: queue and group ids (UUID-shaped strings carrying the engine's u32
//! id and a check value), message ids and consume handlers.
//!
//! A message id is 20 lower-case hex digits: the partition (4) and the log offset (16).
//!
//! A queue id is 16 bytes: a 12-byte check (SHA-256 of a domain tag and the id) followed
//! by the id XOR the check's first four bytes, printed 8-4-4-4-12. A group id's check also
//! covers its queue, so a group id only resolves under the queue it belongs to. Anything
//! that is not 36 characters of that shape is malformed (400); a well-formed id whose
//! check fails names nothing (404). Decoding never panics.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use sluice_core::engine::types::{GroupId, MessageId, QueueId, ReceiptHandle};
use sluice_node::Routed;

const CHECK_BYTES: usize = 12;
const ID_BYTES: usize = 16;
/// Characters of the 8-4-4-4-12 form.
const ID_CHARS: usize = 36;
const DASH_POSITIONS: [usize; 4] = [8, 13, 18, 23];
/// Hex digits of a message id: the partition (u16) and the offset (u64).
const MESSAGE_ID_CHARS: usize = 4 + 16;
/// A handler: the partition (u16 LE) and the engine's encoded receipt handle.
const HANDLER_BYTES: usize = 2 + ReceiptHandle::ENCODED_BYTES;

/// Why a wire id did not resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdError {
    /// Not of the id's shape (a 400).
    Malformed,
    /// Well-formed but not an id this server issued here (a 404).
    Unknown,
}

fn check(domain: &[u8], parent: u32, id: u32) -> [u8; CHECK_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(domain);
    hasher.update(parent.to_le_bytes());
    hasher.update(id.to_le_bytes());
    let digest = hasher.finalize();
    digest[..CHECK_BYTES]
        .try_into()
        .expect("a SHA-256 digest is longer than the check")
}

fn encode(domain: &[u8], parent: u32, id: u32) -> String {
    let check = check(domain, parent, id);
    let mut bytes = [0u8; ID_BYTES];
    bytes[..CHECK_BYTES].copy_from_slice(&check);
    for (index, byte) in id.to_be_bytes().iter().enumerate() {
        bytes[CHECK_BYTES + index] = byte ^ check[index];
    }
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn decode(domain: &[u8], parent: u32, text: &str) -> Result<u32, IdError> {
    let raw = text.as_bytes();
    if raw.len() != ID_CHARS {
        return Err(IdError::Malformed);
    }
    let mut hex_digits = Vec::with_capacity(2 * ID_BYTES);
    for (position, byte) in raw.iter().enumerate() {
        if DASH_POSITIONS.contains(&position) {
            if *byte != b'-' {
                return Err(IdError::Malformed);
            }
        } else if byte.is_ascii_digit() || (b'a'..=b'f').contains(byte) {
            hex_digits.push(*byte);
        } else {
            return Err(IdError::Malformed);
        }
    }
    let mut bytes = [0u8; ID_BYTES];
    hex::decode_to_slice(&hex_digits, &mut bytes).map_err(|_| IdError::Malformed)?;
    let mut id_bytes = [0u8; 4];
    for (index, byte) in id_bytes.iter_mut().enumerate() {
        *byte = bytes[CHECK_BYTES + index] ^ bytes[index];
    }
    let id = u32::from_be_bytes(id_bytes);
    if check(domain, parent, id)[..] != bytes[..CHECK_BYTES] {
        return Err(IdError::Unknown);
    }
    Ok(id)
}

pub fn queue_id_encode(queue: QueueId) -> String {
    encode(b"sluice-dms-queue", 0, queue.0)
}

pub fn queue_id_decode(text: &str) -> Result<QueueId, IdError> {
    decode(b"sluice-dms-queue", 0, text).map(QueueId)
}

pub fn group_id_encode(queue: QueueId, group: GroupId) -> String {
    encode(b"sluice-dms-group", queue.0, group.0)
}

pub fn group_id_decode(queue: QueueId, text: &str) -> Result<GroupId, IdError> {
    decode(b"sluice-dms-group", queue.0, text).map(GroupId)
}

/// A message id: the partition and the log offset, as 20 hex digits.
pub fn message_id_encode(partition: u16, message: MessageId) -> String {
    format!("{partition:04x}{:016x}", message.0)
}

/// The partition and message a message id names, if it has the shape
/// [`message_id_encode`] produces (lower-case only, so each message has one id).
pub fn message_id_decode(text: &str) -> Option<(u16, MessageId)> {
    let lower_hex = |byte: &u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte);
    if text.len() != MESSAGE_ID_CHARS || !text.as_bytes().iter().all(lower_hex) {
        return None;
    }
    let partition = u16::from_str_radix(&text[..4], 16).ok()?;
    let offset = u64::from_str_radix(&text[4..], 16).ok()?;
    Some((partition, MessageId(offset)))
}

/// The handler of one delivery: url-safe base64 (no padding) of the partition and the
/// receipt handle.
pub fn handler_encode(handle: &Routed<ReceiptHandle>) -> String {
    let mut bytes = [0u8; HANDLER_BYTES];
    bytes[..2].copy_from_slice(&handle.partition.to_le_bytes());
    bytes[2..].copy_from_slice(&handle.item.encode());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The handle a handler names, if it is one this encoding can produce.
pub fn handler_decode(text: &str) -> Option<Routed<ReceiptHandle>> {
    // Reject long input before decoding, so a huge string costs nothing.
    if text.len() > 2 * HANDLER_BYTES {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
    if bytes.len() != HANDLER_BYTES {
        return None;
    }
    let partition = u16::from_le_bytes([bytes[0], bytes[1]]);
    let item = ReceiptHandle::decode(&bytes[2..])?;
    Some(Routed { partition, item })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_queue(id: u32) {
        let text = queue_id_encode(QueueId(id));
        assert_eq!(text.len(), ID_CHARS);
        assert_eq!(queue_id_decode(&text), Ok(QueueId(id)));
    }

    #[test]
    fn ids_round_trip_and_reject_forgeries() {
        // Goal: every id decodes to itself; changed digits, other queues and other shapes
        // are refused with the right kind of error.
        for id in [0, 1, 7, 65_535, u32::MAX] {
            check_queue(id);
        }
        let queue = queue_id_encode(QueueId(5));
        let mut typo = queue.clone().into_bytes();
        typo[0] = if typo[0] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(queue_id_decode(&typo), Err(IdError::Unknown));
        assert_eq!(queue_id_decode("abc"), Err(IdError::Malformed));
        assert_eq!(
            queue_id_decode(&queue.to_uppercase()),
            Err(IdError::Malformed)
        );
        assert_eq!(
            queue_id_decode(&queue.replace('-', "x")),
            Err(IdError::Malformed)
        );
        let group = group_id_encode(QueueId(5), GroupId(9));
        assert_eq!(group_id_decode(QueueId(5), &group), Ok(GroupId(9)));
        assert_eq!(group_id_decode(QueueId(6), &group), Err(IdError::Unknown));
        assert_eq!(queue_id_decode(&group), Err(IdError::Unknown));
    }

    #[test]
    fn handlers_round_trip_and_reject_garbage() {
        // Goal: a handler names its partition and handle; anything else decodes to None.
        let handle = Routed {
            partition: 3,
            item: ReceiptHandle {
                queue: QueueId(1),
                group: GroupId(2),
                seq: 99,
                nonce: u64::MAX,
                dead_letter: true,
            },
        };
        let text = handler_encode(&handle);
        assert_eq!(handler_decode(&text), Some(handle));
        assert_eq!(handler_decode(""), None);
        assert_eq!(handler_decode("!!!"), None);
        assert_eq!(handler_decode(&"A".repeat(4000)), None);
        assert_eq!(handler_decode(&text[1..]), None);
        assert_eq!(message_id_encode(1, MessageId(255)), "000100000000000000ff");
    }

    #[test]
    fn message_ids_round_trip_and_reject_other_shapes() {
        // Goal: a message id decodes to its partition and offset; other lengths, upper
        // case, signs and non-hex are refused.
        for (partition, offset) in [(0, 0), (1, 255), (1023, 1 << 40), (u16::MAX, u64::MAX)] {
            let text = message_id_encode(partition, MessageId(offset));
            assert_eq!(
                message_id_decode(&text),
                Some((partition, MessageId(offset)))
            );
        }
        assert_eq!(message_id_decode("000100000000000000FF"), None);
        assert_eq!(message_id_decode("000100000000000000f"), None);
        assert_eq!(message_id_decode("000100000000000000ff0"), None);
        assert_eq!(message_id_decode("+00100000000000000ff"), None);
        assert_eq!(message_id_decode("00010000000000000-ff"), None);
        assert_eq!(message_id_decode("0001000000000000000g"), None);
        assert_eq!(message_id_decode("é0010000000000000ff"), None);
        assert_eq!(message_id_decode(""), None);
    }
}
