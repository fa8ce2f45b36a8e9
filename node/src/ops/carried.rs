//! Sync files carried by hand (a USB key) where no network reaches: a circle's data written
//! as signed parts ([`crate::sync::file`]), and a part taken in exactly as a peer's data
//! would be.

use serde::{Deserialize, Serialize};

use super::{NodeError, Operation};
use crate::envelope::LogId;
use crate::node::NodeCore;
use crate::sync::Local as _;
use crate::sync::file::{self, Part};

/// Envelopes read from the store at a time while writing a file.
const READ_BATCH: usize = 4096;

/// A circle's membership operations and sealed envelopes, as signed parts of a sync file.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncExport {
    pub circle: String,
}

/// One circle's parts.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncParts {
    pub circle: String,
    /// Each part's bytes, hex (see `sync::file`).
    pub parts: Vec<String>,
    pub operations: usize,
    pub envelopes: usize,
}

impl Operation for SyncExport {
    type Answer = SyncParts;

    fn run(self, core: &mut NodeCore) -> Result<SyncParts, NodeError> {
        let id = core.circle(&self.circle)?.id();
        let local = &core.circles;
        let ops: Vec<Vec<u8>> = local
            .op_hashes(&id)
            .iter()
            .filter_map(|h| local.op(&id, h))
            .collect();
        let mut envelopes = Vec::new();
        for doc in cercle_crdt::DocKind::ALL {
            for (device, last) in local.vector(&id, doc) {
                let log = LogId {
                    circle: id,
                    doc,
                    device,
                };
                let mut from = 1;
                while from <= last {
                    let read = local.envelopes(&log, from, READ_BATCH);
                    if read.is_empty() {
                        break;
                    }
                    from += read.len() as u64;
                    envelopes.extend(read);
                }
            }
        }
        let (operations, count) = (ops.len(), envelopes.len());
        let me = core.me();
        let parts = file::parts(id, me.device(), core.now().millis(), ops, envelopes);
        let parts = parts.iter().map(|p| hex::encode(p.seal(me))).collect();
        tracing::info!(circle = %id, operations, envelopes = count, "a circle written for a sync file");
        Ok(SyncParts {
            circle: id.to_string(),
            parts,
            operations,
            envelopes: count,
        })
    }
}

/// One part of a sync file, taken in as data from the device that signed it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncImport {
    /// The part's bytes, hex.
    pub part: String,
}

/// What one part brought.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncTaken {
    pub circle: String,
    /// The device that wrote the file.
    pub device: String,
    /// Entries new here.
    pub new: usize,
    /// Entries this node already held.
    pub already_held: usize,
    /// Entries refused, each recorded with its reason (`cercle status`).
    pub refused: usize,
    /// Whether this node holds the circle (joined from the file if its operations make
    /// this device a member; otherwise the part changed nothing).
    pub held: bool,
}

impl Operation for SyncImport {
    type Answer = SyncTaken;

    fn run(self, core: &mut NodeCore) -> Result<SyncTaken, NodeError> {
        let bytes = hex::decode(self.part.trim())
            .map_err(|_| NodeError::bad_input("a sync file part is not hex"))?;
        let part = Part::open(&bytes, 1).map_err(|e| NodeError::bad_input(e.to_string()))?;
        let (circle, device) = (part.circle, part.device);
        let taken = core.carried(part);
        Ok(SyncTaken {
            circle: circle.to_string(),
            device: device.to_string(),
            new: taken.applied,
            already_held: taken.replayed,
            refused: taken.refused,
            held: core.circles.open.contains_key(&circle),
        })
    }
}
