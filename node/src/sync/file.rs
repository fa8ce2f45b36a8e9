//! Sync files: what travels on a USB key between practices that nothing connects. A file
//! carries, per circle, its membership operations and sealed envelopes (nothing readable:
//! the same bytes the network would carry), in parts the writing device signs. The reader
//! checks every part's signature before anything is imported, then each part goes through
//! the node's receive checks exactly as a peer's `Data` would (signatures, membership,
//! chains; refusals recorded), so importing twice changes nothing.
//!
//! Layout: [`MAGIC`], then each part as a 4-byte big-endian length and the part's bytes:
//! CBOR `{ body, signature }`, the body itself CBOR of the circle, the writing device, when,
//! the operations and the envelopes; the signature is the device key's over
//! [`SIGNED_CONTEXT`] and the body. Pure: the caller reads and writes the file.

use serde::{Deserialize, Serialize};

use crate::circle::membership::CircleId;
use crate::identity::{DeviceId, LocalIdentity};

/// Every sync file starts with this.
pub const MAGIC: &[u8] = b"cercle-sync-1\n";
/// What a part's signature covers, before its body.
const SIGNED_CONTEXT: &[u8] = b"cercle sync file part v1";
/// Operations and envelopes in one part, in bytes, at most (a writer cuts before this).
pub const MAX_PART_BYTES: usize = 4 * 1024 * 1024;
/// A part's encoded size, at most (its content, the framing, the signature).
pub const MAX_PART_ENCODED: usize = MAX_PART_BYTES + 64 * 1024;
/// Items (operations and envelopes) in one part, at most.
pub const MAX_PART_ITEMS: usize = 100_000;

/// Why a sync file or one of its parts is refused: one sentence for the person importing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncFileError {
    #[error("this is not a Cercle sync file (it was not written by `cercle sync export`)")]
    NotASyncFile,
    #[error("the sync file is cut short (part {0}); copy it again from the key")]
    Truncated(usize),
    #[error("part {part} of the sync file is {bytes} bytes, more than a part may be")]
    TooLarge { part: usize, bytes: usize },
    #[error("part {0} of the sync file is damaged")]
    Damaged(usize),
    #[error(
        "part {0} of the sync file was changed after it was written (its signature does not match)"
    )]
    BadSignature(usize),
}

/// One circle's data in a file, as written by one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub circle: CircleId,
    /// The device that wrote the file (and signed the part).
    pub device: DeviceId,
    /// Milliseconds since the epoch.
    pub written_at: i64,
    pub ops: Vec<Vec<u8>>,
    pub envelopes: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    c: serde_bytes::ByteBuf,
    d: serde_bytes::ByteBuf,
    t: i64,
    o: Vec<serde_bytes::ByteBuf>,
    e: Vec<serde_bytes::ByteBuf>,
}

#[derive(Serialize, Deserialize)]
struct Signed {
    b: serde_bytes::ByteBuf,
    s: serde_bytes::ByteBuf,
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNED_CONTEXT.len() + body.len());
    m.extend_from_slice(SIGNED_CONTEXT);
    m.extend_from_slice(body);
    m
}

impl Part {
    /// The part's bytes, signed by `me` (whose device must be [`Part::device`]).
    pub fn seal(&self, me: &LocalIdentity) -> Vec<u8> {
        let bytes = |v: &[Vec<u8>]| -> Vec<serde_bytes::ByteBuf> {
            v.iter()
                .map(|b| serde_bytes::ByteBuf::from(b.clone()))
                .collect()
        };
        let body = Body {
            c: serde_bytes::ByteBuf::from(self.circle.0.to_vec()),
            d: serde_bytes::ByteBuf::from(self.device.0.to_vec()),
            t: self.written_at,
            o: bytes(&self.ops),
            e: bytes(&self.envelopes),
        };
        let mut encoded = Vec::new();
        if let Err(e) = ciborium::into_writer(&body, &mut encoded) {
            tracing::error!(error = %e, "a sync file part could not be encoded");
        }
        let signature = me.sign(&signed_message(&encoded));
        let mut out = Vec::with_capacity(encoded.len() + 80);
        let signed = Signed {
            b: serde_bytes::ByteBuf::from(encoded),
            s: serde_bytes::ByteBuf::from(signature.to_vec()),
        };
        if let Err(e) = ciborium::into_writer(&signed, &mut out) {
            tracing::error!(error = %e, "a sync file part could not be encoded");
        }
        out
    }

    /// Reads part number `n` (for errors) and checks its signature by the device it names.
    pub fn open(bytes: &[u8], n: usize) -> Result<Part, SyncFileError> {
        if bytes.len() > MAX_PART_ENCODED {
            return Err(SyncFileError::TooLarge {
                part: n,
                bytes: bytes.len(),
            });
        }
        let signed: Signed = ciborium::from_reader(bytes).map_err(|_| SyncFileError::Damaged(n))?;
        let body: Body =
            ciborium::from_reader(signed.b.as_slice()).map_err(|_| SyncFileError::Damaged(n))?;
        let fixed = |b: &[u8]| <[u8; 32]>::try_from(b).map_err(|_| SyncFileError::Damaged(n));
        let device = DeviceId(fixed(&body.d)?);
        let signature =
            <[u8; 64]>::try_from(signed.s.as_slice()).map_err(|_| SyncFileError::Damaged(n))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&device.0)
            .map_err(|_| SyncFileError::BadSignature(n))?;
        key.verify_strict(
            &signed_message(&signed.b),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .map_err(|_| SyncFileError::BadSignature(n))?;
        if body.o.len() + body.e.len() > MAX_PART_ITEMS {
            return Err(SyncFileError::TooLarge {
                part: n,
                bytes: bytes.len(),
            });
        }
        Ok(Part {
            circle: CircleId(fixed(&body.c)?),
            device,
            written_at: body.t,
            ops: body
                .o
                .into_iter()
                .map(serde_bytes::ByteBuf::into_vec)
                .collect(),
            envelopes: body
                .e
                .into_iter()
                .map(serde_bytes::ByteBuf::into_vec)
                .collect(),
        })
    }
}

/// Cuts one circle's operations and envelopes into parts of at most [`MAX_PART_BYTES`]
/// (operations first, as a peer sends them: envelopes cannot be checked without them).
pub fn parts(
    circle: CircleId,
    device: DeviceId,
    written_at: i64,
    ops: Vec<Vec<u8>>,
    envelopes: Vec<Vec<u8>>,
) -> Vec<Part> {
    let empty = || Part {
        circle,
        device,
        written_at,
        ops: Vec::new(),
        envelopes: Vec::new(),
    };
    let mut out = vec![empty()];
    let mut size = 0usize;
    for (is_op, item) in ops
        .into_iter()
        .map(|o| (true, o))
        .chain(envelopes.into_iter().map(|e| (false, e)))
    {
        let full = size + item.len() > MAX_PART_BYTES
            || out
                .last()
                .is_some_and(|p| p.ops.len() + p.envelopes.len() >= MAX_PART_ITEMS);
        if full && size > 0 {
            out.push(empty());
            size = 0;
        }
        size += item.len();
        if let Some(p) = out.last_mut() {
            if is_op {
                p.ops.push(item);
            } else {
                p.envelopes.push(item);
            }
        }
    }
    out
}

/// The file's bytes for `parts` (each as [`Part::seal`] made it).
pub fn write(parts: &[Vec<u8>], out: &mut impl std::io::Write) -> std::io::Result<()> {
    out.write_all(MAGIC)?;
    for p in parts {
        let len = u32::try_from(p.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(p)?;
    }
    Ok(())
}

/// The parts of a file's bytes, each checked ([`Part::open`]), in order: the first refusal
/// stops the reading, so a caller imports nothing of a file with one bad part.
pub fn read(file: &[u8]) -> Result<Vec<(Vec<u8>, Part)>, SyncFileError> {
    let mut rest = file
        .strip_prefix(MAGIC)
        .ok_or(SyncFileError::NotASyncFile)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let n = out.len() + 1;
        let (len, tail) = rest
            .split_at_checked(4)
            .ok_or(SyncFileError::Truncated(n))?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| SyncFileError::Truncated(n))?);
        let len = usize::try_from(len).map_err(|_| SyncFileError::Damaged(n))?;
        if len > MAX_PART_ENCODED {
            return Err(SyncFileError::TooLarge {
                part: n,
                bytes: len,
            });
        }
        let (bytes, tail) = tail
            .split_at_checked(len)
            .ok_or(SyncFileError::Truncated(n))?;
        out.push((bytes.to_vec(), Part::open(bytes, n)?));
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn me() -> LocalIdentity {
        let profile = crate::identity::Profile::new("Dr Claire Martin", "médecin", None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        LocalIdentity::generate(profile, cercle_crdt::Timestamp(1))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn file_of(me: &LocalIdentity, parts: &[Part]) -> Vec<u8> {
        let sealed: Vec<Vec<u8>> = parts.iter().map(|p| p.seal(me)).collect();
        let mut out = Vec::new();
        write(&sealed, &mut out).unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[test]
    fn a_file_reads_back_part_by_part_and_a_changed_byte_is_caught() {
        let me = me();
        let ops = vec![vec![1u8; 100]; 3];
        let envelopes = vec![vec![2u8; MAX_PART_BYTES / 3]; 5];
        let parts = parts(CircleId([7; 32]), me.device(), 1_000, ops, envelopes);
        assert!(parts.len() >= 2, "{}", parts.len());
        assert!(parts.iter().all(|p| {
            p.ops
                .iter()
                .chain(&p.envelopes)
                .map(Vec::len)
                .sum::<usize>()
                <= MAX_PART_BYTES
        }));
        let file = file_of(&me, &parts);
        let read_back: Vec<Part> = read(&file)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(read_back, parts);

        let mut changed = file.clone();
        let at = changed.len() - 10;
        changed[at] ^= 1;
        assert!(matches!(
            read(&changed),
            Err(SyncFileError::BadSignature(_) | SyncFileError::Damaged(_))
        ));
        assert_eq!(
            read(&file[..file.len() - 1]).err(),
            Some(SyncFileError::Truncated(parts.len()))
        );
        assert_eq!(read(b"hello").err(), Some(SyncFileError::NotASyncFile));
    }

    /// A part re-signed by another device is that device's part, not the writer's.
    #[test]
    fn a_part_names_the_device_that_signed_it() {
        let (a, b) = (me(), me());
        let mut part = parts(CircleId([1; 32]), a.device(), 0, vec![vec![1]], Vec::new()).remove(0);
        let sealed = part.seal(&b);
        assert_eq!(
            Part::open(&sealed, 1).err(),
            Some(SyncFileError::BadSignature(1))
        );
        part.device = b.device();
        assert_eq!(
            Part::open(&part.seal(&b), 1).map(|p| p.device),
            Ok(b.device())
        );
    }

    proptest! {
        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = read(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = read(&with_magic);
        }
    }
}
