//! How sync [`Message`]s travel on a stream: each is one CBOR value (RFC 8949, through
//! `ciborium`) preceded by its length as a 4-byte big-endian integer. Byte strings are CBOR
//! byte strings, so another implementation can read the protocol with any CBOR library.
//!
//! The length is checked before anything is read or allocated: a frame larger than
//! [`MAX_FRAME`] is refused.

use super::{MAX_DATA_BYTES, Message};

/// The largest frame: a full `Data` message plus room for its framing and ids.
pub const MAX_FRAME: usize = MAX_DATA_BYTES + 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("a frame of {0} bytes is larger than the {MAX_FRAME} allowed")]
    TooLarge(usize),
    #[error("the frame is not a valid sync message: {0}")]
    Malformed(String),
}

/// The CBOR encoding of a message (without the length prefix).
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail, and every message type is serializable.
    if let Err(e) = ciborium::into_writer(message, &mut out) {
        tracing::error!(error = %e, "a sync message could not be encoded");
        out.clear();
    }
    out
}

/// Decodes one frame's CBOR bytes.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MAX_FRAME {
        return Err(WireError::TooLarge(bytes.len()));
    }
    ciborium::from_reader(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Serde helpers so that lists of byte strings are CBOR byte strings, not lists of numbers.
pub(crate) mod byte_strings {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub(crate) fn serialize<S: Serializer>(items: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(serde_bytes::Bytes::new(item))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let items: Vec<serde_bytes::ByteBuf> = Vec::deserialize(d)?;
        Ok(items
            .into_iter()
            .map(serde_bytes::ByteBuf::into_vec)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circle::membership::{CircleId, OpHash};
    use crate::identity::DeviceId;
    use cercle_crdt::DocKind;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = Message> {
        let bytes = || prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..5);
        prop_oneof![
            prop::collection::vec((any::<[u8; 32]>(), any::<[u8; 32]>()), 0..4).prop_map(|c| {
                Message::Hello {
                    circles: c.into_iter().map(|(a, b)| (CircleId(a), b)).collect(),
                }
            }),
            (
                any::<[u8; 32]>(),
                prop::collection::vec(any::<[u8; 32]>(), 0..4),
                prop::collection::btree_map(any::<[u8; 32]>(), any::<u64>(), 0..4)
            )
                .prop_map(|(c, ops, v)| Message::Have {
                    circle: CircleId(c),
                    ops: ops.into_iter().map(OpHash).collect(),
                    vectors: vec![(
                        DocKind::LiaisonNotebook,
                        v.into_iter().map(|(d, s)| (DeviceId(d), s)).collect()
                    )],
                }),
            (any::<[u8; 32]>(), bytes(), bytes()).prop_map(|(c, ops, envelopes)| Message::Data {
                circle: CircleId(c),
                ops,
                envelopes
            }),
            any::<u64>().prop_map(|bytes| Message::Ack { bytes }),
            (
                "[0-9a-f]{16}",
                prop::collection::vec(any::<u8>(), 0..20),
                "\\PC{0,80}"
            )
                .prop_map(|(invite, secret, card)| Message::Join {
                    invite,
                    secret,
                    card
                }),
            ("[0-9a-f]{16}", prop::option::of("\\PC{0,80}"))
                .prop_map(|(invite, refused)| Message::JoinAnswer { invite, refused }),
            (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<u64>()).prop_map(|(c, b, offset)| {
                Message::BlobWant {
                    circle: CircleId(c),
                    blob: b.to_vec(),
                    offset,
                }
            }),
            (
                any::<[u8; 32]>(),
                any::<u64>(),
                any::<u64>(),
                prop::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(c, offset, total, bytes)| Message::BlobPart {
                    circle: CircleId(c),
                    blob: vec![7; 32],
                    offset,
                    total,
                    bytes,
                }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_survives_the_wire(m in message()) {
            prop_assert_eq!(decode(&encode(&m)).ok(), Some(m));
        }

        #[test]
        fn arbitrary_bytes_are_refused_or_decoded_never_a_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..2000)
        ) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn byte_strings_cost_one_byte_per_byte() {
        let m = Message::Data {
            circle: CircleId([1; 32]),
            ops: Vec::new(),
            envelopes: vec![vec![200u8; 10_000]],
        };
        assert!(encode(&m).len() < 10_000 + 200, "{}", encode(&m).len());
    }

    #[test]
    fn an_oversized_frame_is_refused_before_decoding() {
        assert!(matches!(
            decode(&vec![0u8; MAX_FRAME + 1]),
            Err(WireError::TooLarge(_))
        ));
    }
}
