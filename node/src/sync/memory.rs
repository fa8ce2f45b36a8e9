//! An in-memory [`Local`] for tests and the simulations: operations and opaque envelopes
//! per circle, and which devices belong to which circle. Its envelopes carry
//! `doc ‖ device ‖ seq` in clear so the receiver can file them; the protocol never looks
//! inside them.

use std::collections::{BTreeMap, BTreeSet};

use cercle_crdt::DocKind;

use super::{Local, Received, Vector};
use crate::circle::membership::{CircleId, OpHash};
use crate::envelope::LogId;
use crate::identity::DeviceId;

/// A node's state in memory: ops and envelopes per circle, and who shares what.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    ops: BTreeMap<CircleId, BTreeMap<OpHash, Vec<u8>>>,
    envelopes: BTreeMap<LogId, BTreeMap<u64, Vec<u8>>>,
    members: BTreeMap<CircleId, BTreeSet<DeviceId>>,
}

/// Test envelopes: doc ‖ device ‖ seq ‖ filler, so the receiver can file them.
pub fn envelope(doc: DocKind, device: DeviceId, seq: u64, len: usize) -> Vec<u8> {
    let mut b = vec![doc.code()];
    b.extend_from_slice(&device.0);
    b.extend_from_slice(&seq.to_le_bytes());
    b.resize(41 + len, 7);
    b
}

impl Memory {
    /// Makes `devices` the members' devices of `circle`.
    pub fn share(&mut self, circle: CircleId, devices: impl IntoIterator<Item = DeviceId>) {
        self.members.entry(circle).or_default().extend(devices);
    }

    /// Number of envelopes held for `circle`.
    pub fn envelope_count(&self, circle: &CircleId) -> usize {
        self.envelopes
            .iter()
            .filter(|(log, _)| log.circle == *circle)
            .map(|(_, log)| log.len())
            .sum()
    }

    pub fn write(&mut self, circle: CircleId, doc: DocKind, device: DeviceId, len: usize) {
        let log = self
            .envelopes
            .entry(LogId {
                circle,
                doc,
                device,
            })
            .or_default();
        let seq = log.len() as u64 + 1;
        log.insert(seq, envelope(doc, device, seq, len));
    }

    pub fn add_op(&mut self, circle: CircleId, n: u8) {
        let bytes = vec![n; 100];
        self.ops
            .entry(circle)
            .or_default()
            .insert(OpHash(*blake3::hash(&bytes).as_bytes()), bytes);
    }

    /// Files received data; envelopes only in order, like the envelope log.
    pub fn apply(&mut self, r: Received) {
        for op in r.ops {
            self.ops
                .entry(r.circle)
                .or_default()
                .insert(OpHash(*blake3::hash(&op).as_bytes()), op);
        }
        for e in r.envelopes {
            let doc = DocKind::from_code(e[0]).unwrap_or(DocKind::Thread);
            let device = DeviceId(e[1..33].try_into().unwrap_or([0; 32]));
            let seq = u64::from_le_bytes(e[33..41].try_into().unwrap_or([0; 8]));
            let log = self
                .envelopes
                .entry(LogId {
                    circle: r.circle,
                    doc,
                    device,
                })
                .or_default();
            if seq == log.len() as u64 + 1 {
                log.insert(seq, e);
            }
        }
    }
}

impl Local for Memory {
    fn shared_with(&self, device: &DeviceId) -> Vec<CircleId> {
        self.members
            .iter()
            .filter(|(_, m)| m.contains(device))
            .map(|(c, _)| *c)
            .collect()
    }
    fn membership(&self, _: &CircleId) -> Option<&crate::circle::membership::MembershipLog> {
        // Its operations are opaque test bytes, not a log: it answers for them itself.
        None
    }
    fn knows(&self, circle: &CircleId) -> bool {
        self.members.contains_key(circle)
    }
    fn op_hashes(&self, circle: &CircleId) -> Vec<OpHash> {
        self.ops
            .get(circle)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }
    fn op(&self, circle: &CircleId, hash: &OpHash) -> Option<Vec<u8>> {
        self.ops.get(circle).and_then(|m| m.get(hash)).cloned()
    }
    fn vector(&self, circle: &CircleId, doc: DocKind) -> Vector {
        self.envelopes
            .iter()
            .filter(|(log, _)| log.circle == *circle && log.doc == doc)
            .map(|(log, held)| (log.device, held.len() as u64))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
    fn envelopes(&self, log: &LogId, from: u64, limit: usize) -> Vec<Vec<u8>> {
        let held = self
            .envelopes
            .get(log)
            .into_iter()
            .flat_map(|h| h.range(from..));
        held.take(limit).map(|(_, b)| b.clone()).collect()
    }
}
