//! What a RocketMQ message keeps in Sluice, and the opaque strings handed to clients.
//!
//! A RocketMQ message is one Sluice message: the body is the body, the tag its one tag,
//! the message group its FIFO group; the client's message id, keys, user properties, born
//! time and host, and the body's encoding are the message's attributes in the binary form below (a NUL first, so
//! never the DMS adapter's JSON, and `R` where the Kafka adapter writes `K`). A message
//! sent through another API reads with a Sluice id and, when it has attributes, one user
//! property [`FOREIGN_ATTRIBUTES_PROPERTY`] holding them as text.
//!
//! Receipt handles, recall handles and transaction ids are hex strings of the partition
//! and the node's own handle or message id: the node resolves them, and the adapter
//! checks that the queue they name is the caller's.

use bytes::{Buf, BufMut, Bytes};
use sluice_core::engine::types::{MessageId, ReceiptHandle};
use sluice_node::Routed;

use crate::limits::{NAME_BYTES_MAX, PROPERTIES_PER_MESSAGE_MAX};

/// The first bytes of RocketMQ attributes.
const MAGIC: [u8; 3] = [0, b'R', 1];
/// The user property under which a message's non-RocketMQ attributes are shown.
pub const FOREIGN_ATTRIBUTES_PROPERTY: &str = "sluice.attributes";

/// What a RocketMQ message keeps beside its body, tag and message group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// The id the producer made; echoed to consumers.
    pub message_id: String,
    /// `MessageType` as sent (NORMAL, FIFO, DELAY, TRANSACTION).
    pub message_type: i32,
    /// `Encoding` of the body as sent (IDENTITY, or GZIP: the body is stored compressed
    /// and delivered so).
    pub body_encoding: i32,
    pub born_ms: u64,
    pub born_host: String,
    pub keys: Vec<String>,
    pub properties: Vec<(String, String)>,
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.put_u32(u32::try_from(text.len()).expect("names are bounded"));
    out.extend_from_slice(text.as_bytes());
}

fn take_str(bytes: &mut Bytes) -> Option<String> {
    if bytes.remaining() < 4 {
        return None;
    }
    let length = usize::try_from(bytes.get_u32()).ok()?;
    if bytes.remaining() < length {
        return None;
    }
    String::from_utf8(bytes.split_to(length).to_vec()).ok()
}

impl Attributes {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        put_str(&mut out, &self.message_id);
        out.put_i32(self.message_type);
        out.put_i32(self.body_encoding);
        out.put_u64(self.born_ms);
        put_str(&mut out, &self.born_host);
        out.put_u32(u32::try_from(self.keys.len()).expect("keys are bounded"));
        for key in &self.keys {
            put_str(&mut out, key);
        }
        out.put_u32(u32::try_from(self.properties.len()).expect("properties are bounded"));
        for (name, value) in &self.properties {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        out
    }

    /// The attributes in `bytes`, or `None` when they are not in this form (a message
    /// sent through another API) or are damaged.
    pub fn decode(bytes: &Bytes) -> Option<Attributes> {
        if !bytes.starts_with(&MAGIC) {
            return None;
        }
        let mut rest = bytes.slice(MAGIC.len()..);
        let message_id = take_str(&mut rest)?;
        if rest.remaining() < 16 {
            return None;
        }
        let message_type = rest.get_i32();
        let body_encoding = rest.get_i32();
        let born_ms = rest.get_u64();
        let born_host = take_str(&mut rest)?;
        let mut attributes = Attributes {
            message_id,
            message_type,
            body_encoding,
            born_ms,
            born_host,
            keys: Vec::new(),
            properties: Vec::new(),
        };
        let count = take_count(&mut rest)?;
        for _ in 0..count {
            attributes.keys.push(take_str(&mut rest)?);
        }
        let count = take_count(&mut rest)?;
        for _ in 0..count {
            let name = take_str(&mut rest)?;
            attributes.properties.push((name, take_str(&mut rest)?));
        }
        rest.is_empty().then_some(attributes)
    }
}

/// A count of keys or properties, refused past the bound (damaged bytes cannot make the
/// decoder loop long or allocate much).
fn take_count(bytes: &mut Bytes) -> Option<usize> {
    if bytes.remaining() < 4 {
        return None;
    }
    let count = usize::try_from(bytes.get_u32()).ok()?;
    (count <= PROPERTIES_PER_MESSAGE_MAX).then_some(count)
}

const _: () = assert!(NAME_BYTES_MAX < u32::MAX as usize);

/// A delivery's receipt handle for the wire: the partition and the node's handle, hex.
pub fn receipt_handle_encode(handle: &Routed<ReceiptHandle>) -> String {
    let mut bytes = Vec::with_capacity(2 + ReceiptHandle::ENCODED_BYTES);
    bytes.put_u16(handle.partition);
    bytes.extend_from_slice(&handle.item.encode());
    hex::encode(bytes)
}

/// The handle [`receipt_handle_encode`] wrote, or `None` for any other string.
pub fn receipt_handle_decode(text: &str) -> Option<Routed<ReceiptHandle>> {
    if text.len() != 2 * (2 + ReceiptHandle::ENCODED_BYTES) {
        return None;
    }
    let bytes = hex::decode(text).ok()?;
    let partition = u16::from_be_bytes([bytes[0], bytes[1]]);
    Some(Routed {
        partition,
        item: ReceiptHandle::decode(&bytes[2..])?,
    })
}

/// A stored message for the wire (recall handles, transaction ids, and the message id of
/// a message that came through another API): its partition and id, hex.
pub fn message_ref_encode(partition: u16, message: MessageId) -> String {
    let mut bytes = Vec::with_capacity(10);
    bytes.put_u16(partition);
    bytes.put_u64(message.0);
    hex::encode_upper(bytes)
}

/// The partition and id [`message_ref_encode`] wrote.
pub fn message_ref_decode(text: &str) -> Option<(u16, MessageId)> {
    if text.len() != 20 {
        return None;
    }
    let bytes = hex::decode(text).ok()?;
    let mut rest = &bytes[..];
    Some((rest.get_u16(), MessageId(rest.get_u64())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::engine::types::{GroupId, QueueId};

    /// Encodes `attributes` and decodes them back.
    fn check(attributes: &Attributes) {
        let bytes = Bytes::from(attributes.encode());
        assert_eq!(Attributes::decode(&bytes).as_ref(), Some(attributes));
        for cut in 0..bytes.len() {
            assert_eq!(Attributes::decode(&bytes.slice(..cut)), None);
        }
    }

    #[test]
    fn attributes_round_trip() {
        check(&Attributes::default());
        check(&Attributes {
            message_id: "0102FC0000000107510B28B92C00000000".into(),
            message_type: 2,
            body_encoding: 2,
            born_ms: 1_700_000_000_000,
            born_host: "10.0.0.1".into(),
            keys: vec!["k1".into(), "k2".into()],
            properties: vec![("a".into(), "1".into()), ("b".into(), String::new())],
        });
        assert_eq!(Attributes::decode(&Bytes::from_static(b"{\"a\":1}")), None);
    }

    #[test]
    fn handles_round_trip() {
        let handle = Routed {
            partition: 7,
            item: ReceiptHandle {
                queue: QueueId(3),
                group: GroupId(4),
                seq: 99,
                nonce: 12345,
                dead_letter: false,
            },
        };
        let text = receipt_handle_encode(&handle);
        assert_eq!(receipt_handle_decode(&text), Some(handle));
        assert_eq!(receipt_handle_decode(&text[1..]), None);
        assert_eq!(receipt_handle_decode("zz"), None);
        let text = message_ref_encode(5, MessageId(77));
        assert_eq!(message_ref_decode(&text), Some((5, MessageId(77))));
        assert_eq!(message_ref_decode("0005"), None);
    }
}
