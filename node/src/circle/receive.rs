//! The receive pipeline of a member's circle: a peer's membership operations first (the
//! envelopes cannot be checked without them), then its envelopes through the envelope
//! checks ([`EnvelopeLog::check`], checks 1–7) and the documents' own validation for the
//! author's role (check 8). What passes is applied and staged; what fails comes back as a
//! rejection record with its reason (the node records it within the peer's budget), and
//! fork evidence is staged as a fork record. Nothing is applied that did not pass every
//! check. No record carries a value the sender chose, only this program's words.
//!
//! The relay's mailbox runs the same two first steps ([`Membership::take_in`] and
//! [`EnvelopeLog::check`] without keys) and stores instead of applying.
//!
//! [`EnvelopeLog::check`]: crate::envelope::EnvelopeLog::check
//! [`Membership::take_in`]: super::membership::Membership::take_in

use std::collections::BTreeMap;

use cercle_crdt::{Change, DocKind, Rejection, Timestamp};

use super::{Circle, Staged};
use crate::envelope::{Accepted, CircleView, EnvelopeRef, Rejected};
use crate::identity::{DeviceId, LocalIdentity};
use crate::store::{ForkRecord, RejectionRecord};

/// What receiving a peer's operations and envelopes did.
#[derive(Debug, Default)]
#[must_use = "the receipt's batch must be made durable"]
pub struct Receipt {
    /// New operations and accepted envelopes to store, rejections and forks to record;
    /// the accepted envelopes to pass on once durable.
    pub staged: Staged,
    /// Envelopes applied, per document.
    pub applied: BTreeMap<DocKind, usize>,
    /// What was refused, with the reason's code; not in the batch: the caller records
    /// what the sender's budget allows ([`Batch::rejection`](crate::store::Batch::rejection)).
    pub rejected: Vec<(&'static str, RejectionRecord)>,
    /// Devices caught signing two envelopes for one position.
    pub forks: usize,
    /// Envelopes already held (routine: peers pass on what others sent; a relay or a
    /// member replaying them gains nothing).
    pub replays: usize,
    /// Some envelopes wait for others not received yet (a predecessor, or another
    /// device's changes they depend on): the sender should be asked for what it has.
    pub incomplete: bool,
    /// Alerts from other members addressed to this node's member among the notes applied
    /// (what the member is told of).
    pub new_alerts: usize,
}

impl Circle {
    /// Receives a peer's operations, then envelopes. `from` names the peer in the records.
    #[tracing::instrument(skip_all, fields(circle = %self.id, peer = from))]
    pub fn receive(
        &mut self,
        me: &LocalIdentity,
        from: &str,
        ops: &[Vec<u8>],
        envelopes: &[Vec<u8>],
        now: Timestamp,
    ) -> Receipt {
        let mut receipt = Receipt::default();
        let id = self.id;
        let refuse = |receipt: &mut Receipt,
                      code: &'static str,
                      device: Option<DeviceId>,
                      hash: [u8; 32],
                      reason: serde_json::Value,
                      message: String| {
            let record = RejectionRecord {
                at: now.millis(),
                from: from.to_string(),
                device: device.map(|d| d.to_string()),
                reason,
                message,
                hash: hex::encode(hash),
            };
            receipt.rejected.push((code, record));
        };

        // Operations first: envelopes cannot be checked without them.
        let intake = self.membership.take_in(ops);
        for (hash, e) in intake.refused {
            let reason = serde_json::json!({"reason": "membership_op"});
            let message = format!("membership operation refused: {e}");
            refuse(&mut receipt, "membership_op", None, hash, reason, message);
        }
        if !intake.new.is_empty() {
            self.keys.forget();
            receipt.staged.membership_changed = true;
            for op in &intake.new {
                receipt.staged.batch.op(&id, op);
                // When this node learnt of it, for the circle's audit.
                receipt.staged.batch.received(
                    &id,
                    &op_item(&op.hash()),
                    now,
                    Some(&op.content().device),
                );
            }
        }
        if envelopes.is_empty() {
            return receipt;
        }
        // The patient objected to sharing: nothing more is taken (what a member wrote
        // before learning of it stays with them).
        if self.resolution().suspended.is_some() {
            let hash = *blake3::hash(&envelopes[0]).as_bytes();
            let reason = serde_json::json!({"reason": "suspended", "envelopes": envelopes.len()});
            let message = format!(
                "{} envelopes not taken: sharing is suspended (the patient objected)",
                envelopes.len()
            );
            refuse(&mut receipt, "suspended", None, hash, reason, message);
            return receipt;
        }
        if self.docs.is_none() {
            // The node wakes a circle before giving it envelopes; unconfirmed, they come
            // again.
            tracing::error!(circle = %id, "envelopes given to a circle at rest; left for later");
            receipt.incomplete = true;
            return receipt;
        }

        let keys = self.keys.readable(&self.membership, me);
        let view = CircleView {
            circle: id,
            resolution: self.membership.resolution(),
            holders: self.membership.holders(),
            keys: Some(keys),
        };
        let checked = self.log.check(envelopes, &view);
        receipt.replays = checked.replays;
        for Rejected {
            device,
            hash,
            reason,
        } in checked.rejected
        {
            let json = serde_json::to_value(&reason).unwrap_or_default();
            let code = reason.kind();
            refuse(&mut receipt, code, device, hash, json, reason.to_string());
        }
        for fork in checked.forks {
            receipt.forks += 1;
            receipt.staged.batch.fork(
                &id,
                &ForkRecord {
                    device: fork.device,
                    doc: fork.doc,
                    seq: fork.seq,
                    first: fork.first,
                    second: fork.second,
                },
            );
        }
        let patient_before = self.info.patient.clone();
        // Consecutive envelopes of one author in one document are validated and applied as
        // one batch: Automerge's cost per apply grows with the document, so one apply per
        // envelope would make a large catch-up quadratic. If the batch is refused, its
        // envelopes are tried one by one so that only the bad one is lost. Envelopes whose
        // changes depend on another device's not applied yet wait (they are not refused):
        // they are tried again whenever something else applied, here or in a later receipt.
        let mut todo: Vec<Vec<Accepted>> = std::mem::take(&mut self.deferred)
            .into_iter()
            .chain(group_by_author(checked.accepted))
            .collect();
        // Whom this node's alerts are for: its member, with their role (the membership
        // does not change while envelopes are applied).
        let member = me.member();
        let role = self.resolution().role(&member);
        loop {
            let mut waiting = Vec::new();
            let mut progress = false;
            for group in todo {
                let doc = group.first().map(|a| a.doc);
                // The writing device, when one wrote the whole group (a member's devices
                // may alternate in one receipt).
                let device = group
                    .first()
                    .map(|a| a.device)
                    .filter(|d| group.iter().all(|a| a.device == *d));
                let (outcomes, rest, created) = self.apply_group(group);
                for item in created {
                    receipt
                        .staged
                        .batch
                        .received(&id, &item, now, device.as_ref());
                    if doc == Some(DocKind::LiaisonNotebook)
                        && self
                            .docs
                            .as_deref()
                            .is_some_and(|d| d.notebook.is_alert_for(&item, &member, role))
                    {
                        receipt.new_alerts += 1;
                    }
                }
                for (a, outcome) in outcomes {
                    match outcome {
                        Ok(()) => {
                            progress = true;
                            tracing::debug!(doc = %a.doc, device = %a.device, seq = a.seq, "applied");
                            self.log.confirm(&a.envelope);
                            receipt.staged.batch.envelope(&a.envelope);
                            receipt.staged.envelopes.push(EnvelopeRef {
                                log: a.envelope.header.log(),
                                seq: a.seq,
                            });
                            let state = self.progress(a.doc);
                            state.applied.insert(a.device, a.seq);
                            state.since_snapshot += 1;
                            *receipt.applied.entry(a.doc).or_default() += 1;
                        }
                        Err(e) => {
                            // Refused for good: a later copy is a replay, not refused again.
                            self.log.confirm(&a.envelope);
                            refuse(
                                &mut receipt,
                                "schema",
                                Some(a.device),
                                *blake3::hash(a.envelope.bytes()).as_bytes(),
                                serde_json::json!({"reason": "schema", "seq": a.seq}),
                                format!("change refused by the {} rules: {e}", a.doc),
                            );
                        }
                    }
                }
                if !rest.is_empty() {
                    waiting.push(rest);
                }
            }
            todo = waiting;
            if !progress || todo.is_empty() {
                break;
            }
        }
        self.defer(todo);
        receipt.incomplete = !self.deferred.is_empty() || self.log.waiting() > 0;
        let listing_before = self.listing.clone();
        if receipt.applied.contains_key(&DocKind::PatientFile)
            && let Some(docs) = self.docs.as_deref()
        {
            let pf = &docs.patient_file;
            (self.info.patient, self.info.team) = (pf.title(), pf.team().is_some());
            self.listing = super::Listing::of(pf);
        }
        if (self.info.patient != patient_before || self.listing != listing_before)
            && let Err(e) = self.record_into(&mut receipt.staged.batch)
        {
            tracing::error!(error = %e, "cannot record the circle's new patient name");
        }
        receipt
    }
}

/// Envelopes kept waiting for other devices' changes, per circle, at most (in bytes): past
/// this the oldest are dropped, which loses nothing (they are not confirmed, so peers send
/// them again).
pub const MAX_DEFERRED_BYTES: usize = 8 * 1024 * 1024;

impl Circle {
    /// Validates and applies one author's envelopes in one document: each with its outcome,
    /// those that must wait (from the first whose dependencies are missing on), and the ids
    /// of the items the applied ones created.
    #[allow(clippy::type_complexity)]
    fn apply_group(
        &mut self,
        group: Vec<Accepted>,
    ) -> (
        Vec<(Accepted, Result<(), Rejection>)>,
        Vec<Accepted>,
        Vec<String>,
    ) {
        let (doc, author) = (group[0].doc, group[0].author());
        // Copies of what this node confirmed meanwhile are dropped.
        let group: Vec<Accepted> = group
            .into_iter()
            .filter(|a| {
                self.progress(a.doc)
                    .applied
                    .get(&a.device)
                    .is_none_or(|s| *s < a.seq)
            })
            .collect();
        if group.is_empty() {
            return (Vec::new(), Vec::new(), Vec::new());
        }
        let changes: Vec<Change> = group
            .iter()
            .flat_map(|a| a.changes.iter().cloned())
            .collect();
        let Some(docs) = self.docs.as_deref_mut() else {
            return (Vec::new(), group, Vec::new());
        };
        let replica = docs.replica_mut(doc);
        if let Ok(created) = replica.apply_changes(changes, &author) {
            let done = group.into_iter().map(|a| (a, Ok(()))).collect();
            return (done, Vec::new(), created);
        }
        let mut done = Vec::new();
        let mut created = Vec::new();
        let mut rest = group.into_iter();
        while let Some(a) = rest.next() {
            match replica.apply_changes(a.changes.clone(), &author) {
                Err(Rejection::MissingDependencies { .. }) => {
                    let mut waiting = vec![a];
                    waiting.extend(rest);
                    return (done, waiting, created);
                }
                Ok(items) => {
                    created.extend(items);
                    done.push((a, Ok(())));
                }
                Err(e) => done.push((a, Err(e))),
            }
        }
        (done, Vec::new(), created)
    }

    /// Keeps `groups` waiting for their dependencies, within the bound: the oldest first
    /// (they can complete first), and in each author's run, nothing after an envelope that
    /// did not fit (it could not apply before it).
    fn defer(&mut self, groups: Vec<Vec<Accepted>>) {
        let mut bytes = 0usize;
        let mut dropped = 0usize;
        let mut kept = Vec::new();
        for group in groups {
            let mut keep = Vec::new();
            let mut full = false;
            for a in group {
                let size = a.envelope.bytes().len();
                full = full || bytes + size > self.defer_limit;
                if full {
                    dropped += 1;
                    continue;
                }
                bytes += size;
                keep.push(a);
            }
            if !keep.is_empty() {
                kept.push(keep);
            }
        }
        if dropped > 0 {
            // Not confirmed, so not lost: peers send them again.
            tracing::debug!(dropped, "envelopes waiting for others dropped at the bound");
        }
        if !kept.is_empty() {
            tracing::debug!(
                groups = kept.len(),
                bytes,
                "envelopes wait for other devices' changes"
            );
        }
        self.deferred = kept;
    }

    /// Bytes of envelopes waiting for other devices' changes.
    pub fn deferred_bytes(&self) -> usize {
        self.deferred
            .iter()
            .flatten()
            .map(|a| a.envelope.bytes().len())
            .sum()
    }

    /// Sets the bound of what waits for other devices' changes (tests reach it with a few
    /// envelopes).
    #[cfg(test)]
    pub(crate) fn set_defer_limit(&mut self, bytes: usize) {
        self.defer_limit = bytes;
    }
}

/// Splits accepted envelopes, in order, into runs of one document and one author.
fn group_by_author(ready: Vec<Accepted>) -> Vec<Vec<Accepted>> {
    let mut groups: Vec<Vec<Accepted>> = Vec::new();
    for a in ready {
        match groups.last_mut() {
            Some(g) if g[0].doc == a.doc && g[0].member == a.member && g[0].role == a.role => {
                g.push(a);
            }
            _ => groups.push(vec![a]),
        }
    }
    groups
}

/// The name under which the time a membership operation was received is kept.
pub(crate) fn op_item(hash: &crate::circle::membership::OpHash) -> String {
    format!("op:{hash}")
}
