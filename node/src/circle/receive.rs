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

use super::{Circle, CircleError, Staged, Unchecked};
use crate::envelope::{
    Accepted, CircleView, Envelope, EnvelopeRef, EnvelopeRejection, LogId, Rejected,
};
use crate::identity::{DeviceId, LocalIdentity};
use crate::store::{ForkRecord, RejectionRecord, Store};

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
    /// Envelopes taken in unchecked (by [`Circle::receive`]); device logs still holding
    /// some (after [`Circle::check_unchecked`]).
    pub unchecked: usize,
}

/// Envelopes checked and applied at most per [`Circle::check_unchecked`], so that the
/// node answers between two rounds of the work.
pub const CHECK_AT_ONCE: usize = 512;

/// A rejection record for what `from` sent, at `now`.
fn record(
    now: Timestamp,
    from: &str,
    device: Option<DeviceId>,
    hash: [u8; 32],
    reason: serde_json::Value,
    message: String,
) -> RejectionRecord {
    RejectionRecord {
        at: now.millis(),
        from: from.to_string(),
        device: device.map(|d| d.to_string()),
        reason,
        message,
        hash: hex::encode(hash),
    }
}

impl Circle {
    /// Receives a peer's operations, then envelopes. `from` names the peer in the records.
    ///
    /// An awake circle checks the envelopes in full and applies them. A circle at rest (or
    /// one that still holds envelopes not checked) takes them in with the checks that need
    /// no key, as a relay does (1–5: size, decoding, signature, writer, chain), stores
    /// them, and checks and applies them later ([`Circle::check_unchecked`]): a member who
    /// joins a thousand circles holds them all at once, and nothing reaches a document
    /// without every check.
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

        // Operations first: envelopes cannot be checked without them.
        let intake = self.membership.take_in(ops);
        for (hash, e) in intake.refused {
            let reason = serde_json::json!({"reason": "membership_op"});
            let message = format!("membership operation refused: {e}");
            let r = record(now, from, None, hash, reason, message);
            receipt.rejected.push(("membership_op", r));
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
            let r = record(now, from, None, hash, reason, message);
            receipt.rejected.push(("suspended", r));
            return receipt;
        }
        if self.docs.is_none() || !self.unchecked.is_empty() {
            self.take_unchecked(from, envelopes, now, &mut receipt);
            return receipt;
        }

        let accepted = self.check(Some(me), from, envelopes, now, &mut receipt);
        // Consecutive envelopes of one author in one document are validated and applied as
        // one batch: Automerge's cost per apply grows with the document, so one apply per
        // envelope would make a large catch-up quadratic. If the batch is refused, its
        // envelopes are tried one by one so that only the bad one is lost. Envelopes whose
        // changes depend on another device's not applied yet wait (they are not refused):
        // they are tried again whenever something else applied, here or in a later receipt.
        let todo: Vec<Vec<Accepted>> = std::mem::take(&mut self.deferred)
            .into_iter()
            .chain(group_by_author(accepted))
            .collect();
        let arrived = Arrived::Now { at: now, from };
        let waiting = self.apply_groups(me, todo, &arrived, &mut receipt);
        self.defer(waiting);
        receipt.incomplete = !self.deferred.is_empty() || self.log.waiting() > 0;
        if receipt.applied.contains_key(&DocKind::PatientFile) {
            self.relist(&mut receipt.staged);
        }
        receipt
    }

    /// Runs the envelope checks (1–7 with `me`'s keys, 1–5 without: as a relay), with
    /// what they refused and caught into the receipt; the envelopes accepted.
    fn check(
        &mut self,
        me: Option<&LocalIdentity>,
        from: &str,
        envelopes: &[Vec<u8>],
        now: Timestamp,
        receipt: &mut Receipt,
    ) -> Vec<Accepted> {
        let keys = me.map(|me| self.keys.readable(&self.membership, me));
        let view = CircleView {
            circle: self.id,
            resolution: self.membership.resolution(),
            holders: self.membership.holders(),
            keys,
        };
        let checked = self.log.check(envelopes, &view);
        receipt.replays += checked.replays;
        for Rejected {
            device,
            hash,
            reason,
        } in checked.rejected
        {
            let json = serde_json::to_value(&reason).unwrap_or_default();
            let r = record(now, from, device, hash, json, reason.to_string());
            receipt.rejected.push((reason.kind(), r));
        }
        for fork in checked.forks {
            receipt.forks += 1;
            receipt.staged.batch.fork(
                &self.id,
                &ForkRecord {
                    device: fork.device,
                    doc: fork.doc,
                    seq: fork.seq,
                    first: fork.first,
                    second: fork.second,
                },
            );
        }
        checked.accepted
    }

    /// Takes envelopes in unchecked: the checks that need no key, then stored and passed
    /// on like any other; opened, checked and applied by [`Circle::check_unchecked`].
    fn take_unchecked(
        &mut self,
        from: &str,
        envelopes: &[Vec<u8>],
        now: Timestamp,
        receipt: &mut Receipt,
    ) {
        if !self.log_ready {
            // The node readies the log of a circle at rest before giving it envelopes;
            // unconfirmed, they come again.
            tracing::error!(circle = %self.id, "envelopes given to a circle whose log is not read; left for later");
            receipt.incomplete = true;
            return;
        }
        for a in self.check(None, from, envelopes, now, receipt) {
            self.log.confirm(&a.envelope);
            receipt.staged.batch.envelope(&a.envelope);
            receipt.staged.envelopes.push(EnvelopeRef {
                log: a.envelope.header.log(),
                seq: a.seq,
            });
            self.progress(a.doc).applied.insert(a.device, a.seq);
            self.unchecked
                .entry((a.doc, a.device))
                .or_insert_with(|| Unchecked {
                    from: a.seq,
                    at: now.millis(),
                    by: from.to_string(),
                });
            receipt.unchecked += 1;
        }
        if receipt.unchecked > 0
            && let Err(e) = self.record_into(&mut receipt.staged.batch)
        {
            tracing::error!(error = %e, "cannot record the envelopes to check");
        }
        receipt.incomplete = self.log.waiting() > 0;
    }

    /// Checks and applies up to `limit` envelopes held but not checked yet (the circle
    /// must be awake): each is opened and its writer checked again as the membership
    /// stands now (4, 6, 7), then the document's rules (8). What passes is applied, its
    /// items dated from the envelopes' arrival; what fails is recorded and forgotten, so
    /// that it never reaches the document. Envelopes waiting for another device's changes
    /// stay to check. The receipt's `unchecked` counts what is left.
    pub fn check_unchecked(
        &mut self,
        store: &dyn Store,
        me: &LocalIdentity,
        limit: usize,
    ) -> Result<Receipt, CircleError> {
        let mut receipt = Receipt::default();
        if self.docs.is_none() || self.unchecked.is_empty() {
            receipt.unchecked = self.unchecked.len();
            return Ok(receipt);
        }
        let id = self.id;
        // Each log to check: from where, and up to the last envelope held.
        let logs: Vec<((DocKind, DeviceId), Unchecked, u64)> = self
            .unchecked
            .iter()
            .map(|(key, u)| (*key, u.clone(), self.held_from(key.0, &key.1)))
            .collect();
        let keys = self.keys.readable(&self.membership, me);
        let view = CircleView {
            circle: id,
            resolution: self.membership.resolution(),
            holders: self.membership.holders(),
            keys: Some(keys),
        };
        let mut budget = limit.max(1);
        let mut opened: Vec<Accepted> = Vec::new();
        // Per log, the last sequence number read.
        let mut read: BTreeMap<(DocKind, DeviceId), u64> = BTreeMap::new();
        let mut refused: Vec<(LogId, u64, Unchecked, EnvelopeRejection, [u8; 32])> = Vec::new();
        for ((doc, device), u, held) in logs {
            if budget == 0 {
                break;
            }
            let log = LogId {
                circle: id,
                doc,
                device,
            };
            let whole = usize::try_from(held.saturating_sub(u.from) + 1).unwrap_or(usize::MAX);
            let count = whole.min(budget);
            let mut last = u.from.saturating_sub(1);
            for bytes in store.envelopes(&log, u.from, count)? {
                let env = match Envelope::decode_stored(&bytes) {
                    Ok(env) if env.header.seq <= held => env,
                    Ok(_) => break,
                    Err(reason) => {
                        // Stored bytes that do not decode: the position is unknown.
                        tracing::error!(circle = %id, %reason, "a held envelope does not decode");
                        continue;
                    }
                };
                let (seq, hash) = (env.header.seq, env.hash());
                last = seq;
                match self.log.open_stored(env, &view) {
                    Ok(a) => opened.push(a),
                    Err(reason) => refused.push((log, seq, u.clone(), reason, hash)),
                }
            }
            // Read to the log's end, even where envelopes are missing.
            if count == whole {
                last = held;
            }
            read.insert((doc, device), last);
            budget = budget.saturating_sub(count);
        }
        for (log, seq, u, reason, hash) in refused {
            let json = serde_json::json!({"reason": reason.kind(), "seq": seq});
            let message = format!("refused when checked after its arrival: {reason}");
            let r = record(
                Timestamp(u.at),
                &u.by,
                Some(log.device),
                hash,
                json,
                message,
            );
            receipt.rejected.push((reason.kind(), r));
            receipt.staged.batch.forget_envelope(&log, seq);
        }
        // When each log's envelopes arrived, for their items' records.
        let arrivals: BTreeMap<(DocKind, DeviceId), (i64, String)> = self
            .unchecked
            .iter()
            .map(|(k, u)| (*k, (u.at, u.by.clone())))
            .collect();
        let groups = group_by_author(opened);
        let waiting = self.apply_groups(me, groups, &Arrived::Held(&arrivals), &mut receipt);
        // Each log now continues from its first envelope still waiting, or after the
        // last read; a log read to its end and with nothing waiting is checked.
        let mut first_waiting: BTreeMap<(DocKind, DeviceId), u64> = BTreeMap::new();
        for a in waiting.iter().flatten() {
            let e = first_waiting.entry((a.doc, a.device)).or_insert(a.seq);
            *e = (*e).min(a.seq);
        }
        for (key, last) in read {
            let held = self.held_from(key.0, &key.1);
            let next = first_waiting.get(&key).copied().unwrap_or(last + 1);
            if next > held {
                self.unchecked.remove(&key);
            } else if let Some(u) = self.unchecked.get_mut(&key) {
                u.from = next;
            }
        }
        receipt.unchecked = self.unchecked.len();
        if receipt.applied.contains_key(&DocKind::PatientFile) {
            self.relist(&mut receipt.staged);
        }
        self.record_into(&mut receipt.staged.batch)?;
        Ok(receipt)
    }

    /// Validates and applies runs of one author's envelopes, again while any applied
    /// (some wait for another's changes); returns those still waiting. `arrived`: when
    /// the items were received, for their records; envelopes checked after their arrival
    /// are already stored and pushed.
    fn apply_groups(
        &mut self,
        me: &LocalIdentity,
        mut todo: Vec<Vec<Accepted>>,
        arrived: &Arrived<'_>,
        receipt: &mut Receipt,
    ) -> Vec<Vec<Accepted>> {
        let id = self.id;
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
                let (at, from) = arrived.of(group.first());
                let (outcomes, rest, created) = self.apply_group(group);
                for item in created {
                    receipt
                        .staged
                        .batch
                        .received(&id, &item, at, device.as_ref());
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
                    let stored = matches!(arrived, Arrived::Held(_));
                    match outcome {
                        Ok(()) => {
                            progress = true;
                            tracing::debug!(doc = %a.doc, device = %a.device, seq = a.seq, "applied");
                            if !stored {
                                self.log.confirm(&a.envelope);
                                receipt.staged.batch.envelope(&a.envelope);
                                receipt.staged.envelopes.push(EnvelopeRef {
                                    log: a.envelope.header.log(),
                                    seq: a.seq,
                                });
                            }
                            let state = self.progress(a.doc);
                            if state.applied.get(&a.device).is_none_or(|s| *s < a.seq) {
                                state.applied.insert(a.device, a.seq);
                            }
                            state.since_snapshot += 1;
                            *receipt.applied.entry(a.doc).or_default() += 1;
                        }
                        Err(e) => {
                            let hash = a.envelope.hash();
                            if stored {
                                // Held, never to be applied.
                                let log = a.envelope.header.log();
                                receipt.staged.batch.forget_envelope(&log, a.seq);
                            } else {
                                // Refused for good: a later copy is a replay, not refused
                                // again.
                                self.log.confirm(&a.envelope);
                            }
                            let r = record(
                                at,
                                from,
                                Some(a.device),
                                hash,
                                serde_json::json!({"reason": "schema", "seq": a.seq}),
                                format!("change refused by the {} rules: {e}", a.doc),
                            );
                            receipt.rejected.push(("schema", r));
                        }
                    }
                }
                if !rest.is_empty() {
                    waiting.push(rest);
                }
            }
            todo = waiting;
            if !progress || todo.is_empty() {
                return todo;
            }
        }
    }
}

/// When the envelopes being applied arrived.
enum Arrived<'a> {
    /// Now, from peer `from`: they are new, to store and pass on.
    Now { at: Timestamp, from: &'a str },
    /// Earlier, per log, from a peer: held already (checked after their arrival).
    Held(&'a BTreeMap<(DocKind, DeviceId), (i64, String)>),
}

impl Arrived<'_> {
    /// When the envelopes of `first`'s log arrived, and from which peer.
    fn of(&self, first: Option<&Accepted>) -> (Timestamp, &str) {
        match self {
            Arrived::Now { at, from } => (*at, from),
            Arrived::Held(held) => first
                .and_then(|a| held.get(&(a.doc, a.device)))
                .map_or((Timestamp(0), ""), |(at, by)| (Timestamp(*at), by.as_str())),
        }
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
        // Copies of what this node applied meanwhile are dropped.
        let group: Vec<Accepted> = group
            .into_iter()
            .filter(|a| self.applied_from(a.doc, &a.device) < a.seq)
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
