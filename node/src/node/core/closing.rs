//! A circle whose sharing ended.
//!
//! - **Suspended** (the patient objected): the circle stays here, read-only; nothing of it
//!   is sent or taken (`Circle::receive`, `Circles::envelopes`); each relay connected is
//!   sent the objection and answers with its signed receipt of the circle's deletion, kept
//!   in the store.
//! - **Closed** for good: once its `Close` operation is taken here (written by this node's
//!   coordinator, or received), the circle is shredded at once: its tombstone and its audit
//!   trail without content are written, then every row of it is deleted and its own key at
//!   rest forgotten (`Write::Shred`), in that order, in one batch. The other members'
//!   devices connected and the relays are then sent the `Close` operation; a relay answers
//!   with its signed deletion receipt, kept with the tombstone. A member's node that missed
//!   the closing is sent it when it next lists the circle (`sync::Local::closed`).

use std::collections::BTreeMap;

use crate::api::NodeEvent;
use crate::circle::membership::CircleId;
use crate::identity::DeviceId;
use crate::node::core::{Effect, NodeCore};
use crate::ops::NodeError;
use crate::ops::audit::AuditTrail;
use crate::store::{Batch, Store};
use crate::tombstone::{DeletionReceipt, MAX_TOLD, Tombstone, keep_receipt};

/// How long after shredding a node still asks a relay for its receipt (milliseconds).
const ASK_RECEIPTS_FOR: i64 = 30 * 24 * 3600 * 1000;
/// Closed circles asked about per relay connection, at most.
const MAX_ASKED: usize = 64;

/// The tombstones in `store`.
pub(crate) fn tombstones(store: &dyn Store) -> Result<BTreeMap<CircleId, Tombstone>, NodeError> {
    let mut out = BTreeMap::new();
    for (id, v) in store.tombstones()? {
        match serde_json::from_slice::<Tombstone>(&v) {
            Ok(t) => {
                out.insert(id, t);
            }
            Err(e) => {
                tracing::error!(circle = %id, error = %e, "a closed circle's record is damaged")
            }
        }
    }
    Ok(out)
}

/// The relays' receipts kept for a circle whose sharing was suspended.
pub(crate) fn suspended_receipts(store: &dyn Store, circle: &CircleId) -> Vec<DeletionReceipt> {
    store
        .deletion_receipts(circle)
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default()
}

/// The audit trail as kept once the circle is shredded: who did what and when, without
/// the patient file's words (an item's title, a document's name).
fn without_content(mut trail: AuditTrail) -> AuditTrail {
    for w in &mut trail.writes {
        // Reasons are the patient's business: the objection's and an emergency's go, the
        // on-call professional's name stays.
        match w.action.as_str() {
            "consent_withdrawn" => w.about = None,
            "emergency_access" => {
                w.about = w
                    .about
                    .as_deref()
                    .map(|a| a.split(':').next().unwrap_or_default().to_string());
            }
            _ => {}
        }
        if w.document == cercle_crdt::DocKind::PatientFile.as_str() {
            w.about = w
                .about
                .as_deref()
                .map(|a| a.split(':').next().unwrap_or_default().to_string());
        }
    }
    trail
}

impl NodeCore {
    /// Shreds `circle`, whose `Close` operation this node just took (from `from`, or
    /// written here): see the module's comment. Does nothing to a circle not closed.
    pub(crate) fn shred_closed(&mut self, circle: CircleId, from: Option<DeviceId>) {
        // The documents give the trail's rows; a circle that does not wake keeps the
        // membership's.
        if let Err(e) = self.wake(circle) {
            tracing::warn!(%circle, error = %e, "a closed circle does not wake; its trail keeps the membership only");
        }
        let Some(c) = self.circles.open.get(&circle) else {
            return;
        };
        let Some(close) = c.close_op() else {
            return;
        };
        let store = self.circles.store.clone();
        let me = self.me.device();
        let trail = match crate::ops::audit::trail(c, store.as_ref(), &self.me) {
            Ok(t) => Some(without_content(t)),
            Err(e) => {
                tracing::warn!(%circle, error = %e, "a closed circle's trail cannot be read; it is not kept");
                None
            }
        };
        let closed_by = c.certified_devices().get(&close.content().device).copied();
        let names = crate::ops::Names::of(c);
        let devices: Vec<DeviceId> = c
            .resolution()
            .members
            .values()
            .flat_map(|m| m.devices.iter().map(|d| d.device))
            .filter(|d| *d != me)
            .take(MAX_TOLD)
            .collect();
        // Documents stored before schema 3 are under their hash alone.
        let legacy: Vec<[u8; 32]> = crate::ops::documents::blob_hashes(c)
            .into_iter()
            .filter(|h| {
                store
                    .contains(crate::store::Tree::Blobs, h)
                    .unwrap_or(false)
            })
            .collect();
        let Some(closed_by) = closed_by else {
            tracing::error!(%circle, "a closing by a device of no member; not shredded");
            return;
        };
        let withdrawal = c.withdrawal_op().map(|w| hex::encode(w.hash().0));
        let receipts = if withdrawal.is_some() {
            suspended_receipts(store.as_ref(), &circle)
        } else {
            Vec::new()
        };
        let relays: Vec<DeviceId> = c
            .resolution()
            .relay_devices
            .iter()
            .chain(&self.circles.relays)
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let tombstone = Tombstone {
            relays,
            closed_at: close.content().at,
            closed_by,
            closed_by_name: names.get(&closed_by),
            shredded_at: self.now.millis(),
            close: hex::encode(close.bytes()),
            devices,
            receipts,
            withdrawal,
        };
        let mut batch = Batch::new();
        let audit = trail.and_then(|t| serde_json::to_vec(&t).ok());
        batch.tombstone(
            &circle,
            &serde_json::to_vec(&tombstone).unwrap_or_default(),
            audit.as_deref(),
        );
        for h in &legacy {
            batch.forget_blob(h);
        }
        batch.shred(&circle);
        self.circles.take_open(&circle);
        self.circles.used.remove(&circle);
        self.circles.damaged.remove(&circle);
        self.circles.invited.remove(&circle);
        tracing::info!(%circle, "the circle was closed: shredded here");
        self.write_batch(batch, Default::default());

        // Once shredded, the closing goes to the members' devices and relays connected.
        let close = close.bytes().to_vec();
        let mut sends = Vec::new();
        for (device, peer) in &mut self.peers {
            let told = self.circles.is_relay(device) || tombstone.devices.contains(device);
            if Some(*device) == from || !told {
                continue;
            }
            sends.push(Effect::Send(
                *device,
                peer.sync.tell_closed(circle, close.clone()),
            ));
        }
        sends.push(Effect::Event(NodeEvent::Closed {
            circle: circle.to_string(),
        }));
        self.circles.closed.insert(circle, tombstone);
        self.after_writes(sends);
    }

    /// A relay's receipt for a closed circle: kept with its tombstone if it verifies and
    /// was signed by the relay that sent it.
    pub(crate) fn deletion_receipt(&mut self, from: DeviceId, receipt: DeletionReceipt) {
        let circle = receipt.circle;
        let store = self.circles.store.clone();
        let kept = if let Some(t) = self.circles.closed.get_mut(&circle) {
            t.keep(&from, receipt).map(|new| {
                let mut batch = Batch::new();
                batch.tombstone(&circle, &serde_json::to_vec(&*t).unwrap_or_default(), None);
                new.then_some(batch)
            })
        } else if let Some(w) = self
            .circles
            .open
            .get(&circle)
            .and_then(|c| c.resolution().suspended.as_ref())
        {
            let mut held = suspended_receipts(store.as_ref(), &circle);
            keep_receipt(&mut held, &w.op, &from, receipt).map(|new| {
                let mut batch = Batch::new();
                batch.deletion_receipts(&circle, &serde_json::to_vec(&held).unwrap_or_default());
                new.then_some(batch)
            })
        } else {
            tracing::debug!(%circle, relay = %from, "a deletion receipt for a circle neither closed nor suspended here");
            return;
        };
        match kept {
            Ok(Some(batch)) => {
                tracing::info!(%circle, relay = %from, "a relay's deletion receipt kept");
                self.write_batch(batch, Default::default());
                self.out.push(Effect::Event(NodeEvent::Closed {
                    circle: circle.to_string(),
                }));
            }
            Ok(None) => {}
            Err(e) => {
                if self.refused(from, "deletion_receipt") {
                    tracing::warn!(%circle, relay = %from, reason = %e, "refused a deletion receipt");
                }
            }
        }
    }

    /// A relay connected: the circles closed here lately, and the circles suspended, whose
    /// receipt it has not given are sent to it again (it answers with its receipt).
    pub(crate) fn ask_receipts(&mut self, relay: DeviceId) {
        if !self.is_relay(&relay) {
            return;
        }
        let now = self.now.millis();
        let store = self.circles.store.clone();
        let mut asked: Vec<(CircleId, Vec<u8>)> = self
            .circles
            .closed
            .iter()
            .filter(|(_, t)| now - t.shredded_at < ASK_RECEIPTS_FOR && !t.has_receipt(&relay))
            .take(MAX_ASKED)
            .map(|(c, t)| (*c, t.close_op()))
            .collect();
        for (id, c) in &self.circles.open {
            if asked.len() >= MAX_ASKED {
                break;
            }
            let Some(op) = c.withdrawal_op() else {
                continue;
            };
            if !suspended_receipts(store.as_ref(), id)
                .iter()
                .any(|r| r.relay == relay)
            {
                asked.push((*id, op.bytes().to_vec()));
            }
        }
        let Some(peer) = self.peers.get_mut(&relay) else {
            return;
        };
        let sends: Vec<Effect> = asked
            .into_iter()
            .map(|(circle, op)| Effect::Send(relay, peer.sync.tell_closed(circle, op)))
            .collect();
        self.out.extend(sends);
    }

    /// `circle`'s sharing was just suspended here (its objection is durable): the relays
    /// connected are sent the objection (each deletes its copy and answers with a receipt).
    pub(crate) fn suspended(&mut self, circle: CircleId) {
        let Some(op) = self
            .circles
            .open
            .get(&circle)
            .and_then(|c| c.withdrawal_op())
        else {
            return;
        };
        tracing::info!(%circle, "the patient objected to sharing: the circle is read-only and no longer synced");
        let relays: Vec<DeviceId> = self
            .peers
            .keys()
            .filter(|d| self.is_relay(d))
            .copied()
            .collect();
        for relay in relays {
            if let Some(peer) = self.peers.get_mut(&relay) {
                let m = peer.sync.tell_closed(circle, op.bytes().to_vec());
                self.out.push(Effect::Send(relay, m));
            }
        }
        self.out.push(Effect::Event(NodeEvent::Closed {
            circle: circle.to_string(),
        }));
    }
}
