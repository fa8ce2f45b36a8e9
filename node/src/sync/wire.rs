//! How sync [`Message`]s travel on a stream: each is one CBOR value (RFC 8949, through
//! `ciborium`) preceded by its length as a 4-byte big-endian integer. Byte strings are CBOR
//! byte strings, so another implementation can read the protocol with any CBOR library.
//!
//! The length is checked before anything is read or allocated: a frame larger than
//! [`MAX_FRAME`] is refused, and so is one larger than [`MAX_EARLY_FRAME`] before the peer
//! said `Summary` or `Hello` on the stream (its first message in a round). A frame's bytes are kept only as they arrive
//! ([`FrameDecoder`]): announcing a large frame and sending nothing more costs the
//! announcer, not the reader.

use bytes::{Buf, BytesMut};

use super::{MAX_DATA_BYTES, Message};

/// The largest frame: a full `Data` message plus room for its framing and ids.
pub const MAX_FRAME: usize = MAX_DATA_BYTES + 64 * 1024;
/// The largest frame before the peer's `Summary` or `Hello` (those a round starts with, a
/// `Join` or their answers fit).
pub const MAX_EARLY_FRAME: usize = 64 * 1024;
/// The length prefix of a frame.
const HEADER: usize = 4;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("a frame of {0} bytes is larger than the {MAX_FRAME} allowed")]
    TooLarge(usize),
    #[error("the frame is not a valid sync message: {0}")]
    Malformed(String),
    #[error(
        "a frame of {0} bytes before the peer's Hello is larger than the {MAX_EARLY_FRAME} allowed"
    )]
    TooEarly(usize),
    #[error("the stream failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Cuts a stream's bytes into frames as they arrive. Unlike a decoder that reserves room
/// for the length it reads, it holds only what was received: a peer announcing a frame
/// of a megabyte and sending ten bytes makes the reader hold ten bytes.
#[derive(Debug)]
pub struct FrameDecoder {
    limit: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder {
            limit: MAX_EARLY_FRAME,
        }
    }
}

impl FrameDecoder {
    /// The peer said `Summary` or `Hello`: frames up to [`MAX_FRAME`] from now on.
    pub fn open_up(&mut self) {
        self.limit = MAX_FRAME;
    }

    /// The next whole frame in `src`, if it is there; refuses a frame over the limit as
    /// soon as its length is read.
    pub fn next_frame(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        let Some(header) = src.get(..HEADER) else {
            return Ok(None);
        };
        let mut len = [0u8; HEADER];
        len.copy_from_slice(header);
        let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
        if len > self.limit {
            return Err(if self.limit < MAX_FRAME {
                WireError::TooEarly(len)
            } else {
                WireError::TooLarge(len)
            });
        }
        if src.len() < HEADER + len {
            return Ok(None);
        }
        src.advance(HEADER);
        Ok(Some(src.split_to(len)))
    }
}

impl tokio_util::codec::Decoder for FrameDecoder {
    type Item = BytesMut;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        self.next_frame(src)
    }
}

/// A message as one frame: its length, then its CBOR bytes.
pub fn frame(message: &Message) -> Vec<u8> {
    let body = encode(message);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
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
            any::<[u8; 32]>().prop_map(|digest| Message::Summary { digest }),
            (
                prop::collection::vec((any::<[u8; 32]>(), any::<[u8; 32]>()), 0..4),
                any::<bool>()
            )
                .prop_map(|(c, answer)| Message::Changed {
                    circles: c.into_iter().map(|(a, b)| (CircleId(a), b)).collect(),
                    answer,
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
            (
                "[0-9a-f]{16}",
                prop::option::of("\\PC{0,80}"),
                prop::option::of(any::<[u8; 32]>()),
                prop::option::of(any::<[u8; 32]>())
            )
                .prop_map(|(invite, refused, circle, proof)| Message::JoinAnswer {
                    code: refused.as_ref().map(|_| "used".to_string()),
                    invite,
                    refused,
                    circle: circle.map(CircleId),
                    proof,
                }),
            (
                "[0-9a-f]{16}",
                prop::collection::vec(any::<u8>(), 0..20),
                any::<[u8; 32]>()
            )
                .prop_map(|(pairing, secret, x25519)| Message::Pair {
                    pairing,
                    secret,
                    x25519
                }),
            ("[0-9a-f]{16}", prop::option::of("\\PC{0,80}")).prop_map(|(pairing, refused)| {
                Message::PairAnswer {
                    pairing,
                    refused,
                    identity: None,
                    devices: Vec::new(),
                }
            }),
            prop::collection::vec(any::<[u8; 16]>(), 0..4)
                .prop_map(|tags| Message::InviteOpen { tags }),
            any::<[u8; 16]>().prop_map(|tag| Message::InviteSeek { tag }),
            (any::<[u8; 16]>(), any::<[u8; 32]>()).prop_map(|(tag, d)| Message::InviteAt {
                tag,
                device: DeviceId(d)
            }),
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
            (
                any::<[u8; 32]>(),
                prop::collection::vec(any::<[u8; 32]>(), 0..4)
            )
                .prop_map(|(c, d)| Message::Met {
                    circle: CircleId(c),
                    devices: d.into_iter().map(DeviceId).collect(),
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
    fn a_frame_announced_large_holds_only_the_bytes_that_came() {
        let mut d = FrameDecoder::default();
        d.open_up();
        let mut src = BytesMut::new();
        src.extend_from_slice(&u32::try_from(MAX_FRAME).unwrap().to_be_bytes());
        src.extend_from_slice(&[0u8; 10]);
        assert!(d.next_frame(&mut src).unwrap().is_none());
        assert!(src.capacity() < 1024, "reserved {}", src.capacity());
    }

    #[test]
    fn large_frames_wait_for_the_peers_hello() {
        let data = Message::Data {
            circle: CircleId([1; 32]),
            ops: Vec::new(),
            envelopes: vec![vec![7u8; 100_000]],
        };
        let mut d = FrameDecoder::default();
        let mut src = BytesMut::from(&frame(&data)[..]);
        assert!(matches!(
            d.next_frame(&mut src),
            Err(WireError::TooEarly(_))
        ));
        let mut d = FrameDecoder::default();
        let hello = Message::Hello { circles: vec![] };
        let mut src = BytesMut::from(&frame(&hello)[..]);
        let got = d.next_frame(&mut src).unwrap().unwrap();
        assert_eq!(decode(&got).ok(), Some(hello));
        d.open_up();
        let mut src = BytesMut::from(&frame(&data)[..]);
        let got = d.next_frame(&mut src).unwrap().unwrap();
        assert_eq!(decode(&got).ok(), Some(data));
        let mut src = BytesMut::new();
        src.extend_from_slice(&u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes());
        assert!(matches!(
            d.next_frame(&mut src),
            Err(WireError::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn frames_cut_anywhere_decode_as_when_whole(
            messages in prop::collection::vec(message(), 1..5),
            cuts in prop::collection::vec(1usize..200, 0..20),
        ) {
            let mut all = Vec::new();
            for m in &messages {
                all.extend_from_slice(&frame(m));
            }
            let mut d = FrameDecoder::default();
            d.open_up();
            let mut src = BytesMut::new();
            let mut got = Vec::new();
            let mut rest = &all[..];
            let mut cuts = cuts.into_iter().cycle();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
                src.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                while let Some(f) = d.next_frame(&mut src).unwrap() {
                    got.push(decode(&f).unwrap());
                }
            }
            prop_assert_eq!(got, messages);
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_decoding() {
        assert!(matches!(
            decode(&vec![0u8; MAX_FRAME + 1]),
            Err(WireError::TooLarge(_))
        ));
    }
}
