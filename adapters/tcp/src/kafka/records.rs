//! Records: what a Kafka record keeps in a Sluice message's attributes.

/// A record's key, headers and timestamp.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaAttributes {}

pub fn encode_attributes(_a: &KafkaAttributes) -> Vec<u8> {
    Vec::new()
}
pub fn decode_attributes(_b: &[u8]) -> Option<KafkaAttributes> {
    None
}
