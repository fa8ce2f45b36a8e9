//! Document contents (blobs) between members: fetched on demand, one part at a time.
//!
//! Envelopes carry the patient file's document index (name, type, size, BLAKE3 hash of the
//! content); the content itself is asked for when a member opens a document this node
//! does not hold. The node asks every connected member of the circle for the part from
//! `offset` on; each part is answered only to a current member of the circle, for a blob
//! the circle's documents list; one part per fetch is in flight, so a slow link is never
//! blocked by a large file. The content is stored (sealed) only once its hash matches.
//! Relays hold no blobs: the parts travel member to member, inside the Noise channel.

use std::collections::BTreeMap;

use cercle_crdt::ItemList;

use super::writes::After;
use super::{Effect, NodeCore};
use crate::circle::membership::CircleId;
use crate::identity::DeviceId;
use crate::ops::documents::MAX_DOCUMENT_BYTES;
use crate::store::Batch;
use crate::sync::Message;

/// Bytes per part.
pub(super) const BLOB_PART: usize = 256 * 1024;
/// Documents fetched at once, at most.
const MAX_FETCHES: usize = 8;
/// A fetch without progress for this long asks every member again (milliseconds).
const STALL: i64 = 5_000;

/// One part of a document's content, as received.
#[derive(Debug)]
pub(super) struct Part {
    pub(super) circle: CircleId,
    pub(super) blob: Vec<u8>,
    pub(super) offset: u64,
    pub(super) total: u64,
    pub(super) bytes: Vec<u8>,
}

/// A document being fetched.
#[derive(Debug)]
pub(crate) struct Fetch {
    circle: CircleId,
    total: u64,
    received: Vec<u8>,
    last_progress: i64,
}

impl Fetch {
    /// Bytes received so far.
    pub(super) fn received(&self) -> u64 {
        self.received.len() as u64
    }
}

impl NodeCore {
    /// Starts (or keeps going) the fetch of `blob`, a document of `circle` of `total` bytes.
    pub(crate) fn fetch_blob(
        &mut self,
        circle: CircleId,
        blob: [u8; 32],
        total: u64,
        now: i64,
    ) -> Vec<Effect> {
        if self.fetches.contains_key(&blob) {
            return Vec::new();
        }
        if self.fetches.len() >= MAX_FETCHES || total > MAX_DOCUMENT_BYTES as u64 {
            return Vec::new();
        }
        self.fetches.insert(
            blob,
            Fetch {
                circle,
                total,
                received: Vec::new(),
                last_progress: now,
            },
        );
        self.ask_members(circle, blob, 0)
    }

    /// Asks every connected member's device of `circle` for `blob` from `offset` on.
    fn ask_members(&self, circle: CircleId, blob: [u8; 32], offset: u64) -> Vec<Effect> {
        let Some(c) = self.circles.open.get(&circle) else {
            return Vec::new();
        };
        let r = c.resolution();
        self.peers
            .keys()
            .filter(|d| r.member_of(d).is_some())
            .map(|d| {
                Effect::Send(
                    *d,
                    Message::BlobWant {
                        circle,
                        blob: blob.to_vec(),
                        offset,
                    },
                )
            })
            .collect()
    }

    /// A member asks for a part of a document: answered if it is a current member and the
    /// circle lists the document.
    pub(super) fn blob_wanted(
        &mut self,
        from: DeviceId,
        circle: CircleId,
        blob: &[u8],
        offset: u64,
    ) {
        let answer = self.blob_part_for(from, circle, blob, offset);
        self.out.extend(answer);
    }

    fn blob_part_for(
        &mut self,
        from: DeviceId,
        circle: CircleId,
        blob: &[u8],
        offset: u64,
    ) -> Vec<Effect> {
        let Ok(hash) = <[u8; 32]>::try_from(blob) else {
            return Vec::new();
        };
        let Some(c) = self.circles.open.get(&circle) else {
            return Vec::new();
        };
        if c.resolution().reader_at(&from, self.now.millis()).is_none() {
            tracing::warn!(peer = %from, %circle, "refused a document to a device that is not a member");
            return Vec::new();
        }
        if self.wake(circle).is_err() {
            return Vec::new();
        }
        let Some(Ok(pf)) = self.circles.open.get(&circle).map(|c| c.patient_file()) else {
            return Vec::new();
        };
        let listed = pf
            .items(ItemList::Documents)
            .iter()
            .any(|d| d.get("blob") == Some(hex::encode(hash).as_str()));
        if !listed {
            tracing::warn!(peer = %from, %circle, "refused a document the circle does not list");
            return Vec::new();
        }
        // Parts are asked for one after the other: the document last served stays open
        // rather than being read and opened again for each part.
        let content = match &self.serving {
            Some((h, c)) if *h == hash => c.clone(),
            _ => match self.circles.store.blob(&circle, &hash) {
                Ok(Some(c)) => {
                    let c = std::sync::Arc::new(c);
                    self.serving = Some((hash, c.clone()));
                    c
                }
                Ok(None) => return Vec::new(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a document to send");
                    return Vec::new();
                }
            },
        };
        let Ok(start) = usize::try_from(offset) else {
            return Vec::new();
        };
        if start > content.len() {
            return Vec::new();
        }
        let end = (start + BLOB_PART).min(content.len());
        vec![Effect::Send(
            from,
            Message::BlobPart {
                circle,
                blob: hash.to_vec(),
                offset,
                total: content.len() as u64,
                bytes: content[start..end].to_vec(),
            },
        )]
    }

    /// A part arrived: appended if it is the next one; at the end, the content is stored if
    /// its hash is the one the document names.
    pub(super) fn blob_part(&mut self, from: DeviceId, part: Part) {
        let now = self.now.millis();
        let next = self.take_part(from, part, now);
        self.out.extend(next);
    }

    fn take_part(&mut self, from: DeviceId, part: Part, now: i64) -> Vec<Effect> {
        let Part {
            circle,
            blob,
            offset,
            total,
            bytes,
        } = part;
        let Ok(hash) = <[u8; 32]>::try_from(blob.as_slice()) else {
            return Vec::new();
        };
        let Some(f) = self.fetches.get_mut(&hash) else {
            return Vec::new();
        };
        let fits = f.circle == circle
            && total == f.total
            && offset == f.received.len() as u64
            && bytes.len() <= BLOB_PART
            && f.received.len() + bytes.len() <= usize::try_from(total).unwrap_or(0)
            && (!bytes.is_empty() || total == 0);
        if !fits {
            tracing::debug!(peer = %from, "a document part out of turn was dropped");
            return Vec::new();
        }
        f.received.extend_from_slice(&bytes);
        f.last_progress = now;
        if (f.received.len() as u64) < total {
            return vec![Effect::Send(
                from,
                Message::BlobWant {
                    circle,
                    blob: hash.to_vec(),
                    offset: f.received.len() as u64,
                },
            )];
        }
        let Some(done) = self.fetches.remove(&hash) else {
            return Vec::new();
        };
        if blake3::hash(&done.received) != blake3::Hash::from_bytes(hash) {
            tracing::warn!(peer = %from, %circle, "a document's content does not match its hash; dropped");
            return Vec::new();
        }
        let mut batch = Batch::new();
        batch.blob(&circle, &done.received);
        self.write_batch(batch, After::default());
        Vec::new()
    }

    /// Fetches without progress for a while ask every connected member again.
    pub(super) fn retry_fetches(&mut self, now: i64) -> Vec<Effect> {
        let stalled: Vec<(CircleId, [u8; 32], u64)> = self
            .fetches
            .iter_mut()
            .filter(|(_, f)| now - f.last_progress >= STALL)
            .map(|(h, f)| {
                f.last_progress = now;
                (f.circle, *h, f.received.len() as u64)
            })
            .collect();
        stalled
            .into_iter()
            .flat_map(|(c, h, o)| self.ask_members(c, h, o))
            .collect()
    }

    /// How far the fetch of `blob` got, if one is under way.
    pub(crate) fn fetch_progress(&self, blob: &[u8; 32]) -> Option<u64> {
        self.fetches.get(blob).map(Fetch::received)
    }
}

/// The fetches under way, by blob hash.
pub(crate) type Fetches = BTreeMap<[u8; 32], Fetch>;

/// The document whose parts this node is sending, kept open between parts.
pub(crate) type Serving = Option<([u8; 32], std::sync::Arc<crate::store::Opened>)>;
