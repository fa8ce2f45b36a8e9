//! The resolution of a membership log (the rule is in the parent module's documentation),
//! computed in time close to linear in the log and kept up to date in constant time when
//! an operation is appended on top of every head, which is how a log almost always grows.
//!
//! The rule asks, for each operation, for the state built from its valid causal past. A
//! naive evaluation replays the past of every operation (quadratic, and worse with the
//! fixpoint of rule 3). Here the operations are swept once in the linear order `L` with:
//!
//! - a **running state** (every valid operation so far, in `L` order), which *is* the
//!   causal past of a *linear point*: an operation that has every earlier operation of `L`
//!   as an ancestor (it names every head of the prefix as a parent). In a log that grows on
//!   one device at a time, every operation is one;
//! - for an operation with one parent `p` that is not a linear point (a concurrent
//!   branch), the state after `p`, handed down the branch without copying;
//! - for a partial merge, the state at its last linear ancestor (a checkpoint) and the
//!   valid ancestors after it, found by a walk that stops at that checkpoint.
//!
//! Rule 3 looks for operations concurrent with a removal; a removal that is a linear point
//! and an ancestor of everything after it has none, which is found from a suffix minimum
//! without any walk.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use cercle_crdt::{MemberId, Role};

use crate::identity::DeviceId;

use super::{
    MAX_EMERGENCY_MILLIS, MAX_ON_CALL, MAX_OP_NOTE, MAX_RELAY_ADDRESS, MAX_RELAYS,
    MAX_REMINDER_HOURS, MemberState, OpBody, OpHash, Resolution, SignedOp, VoidReason,
};

/// A position in the linear order `L`.
type Pos = usize;

/// The resolution of a log, with what it needs to take one more operation on top.
#[derive(Debug, Clone, Default)]
pub(super) struct Resolver {
    /// `L`: topological, ties broken by the smaller hash.
    order: Vec<OpHash>,
    position: HashMap<OpHash, Pos>,
    /// The positions of each operation's parents.
    parents: Vec<Vec<Pos>>,
    /// Whether every earlier operation of `L` is an ancestor.
    linear: Vec<bool>,
    /// The last linear point that is an ancestor (or the operation itself, if it is one):
    /// every position up to it is an ancestor too.
    anchor: Vec<Option<Pos>>,
    /// The heads of the whole log, as positions.
    heads: BTreeSet<Pos>,
    /// Each operation's author as its causal past says: (member, seniority).
    authors: Vec<Option<(MemberId, usize)>>,
    valid: Vec<bool>,
    /// The outcome.
    resolution: Resolution,
}

/// What one operation is, in the state of its causal past: who wrote it, and whether it
/// takes effect (or why not).
pub(super) struct Verdict {
    pub(super) author: Option<(MemberId, usize)>,
    pub(super) outcome: Result<(), VoidReason>,
}

/// Judges `op`, at `position` in `L`, against `past`: the state its valid causal past
/// builds. `rootless`: it has no ancestor at all.
pub(super) fn judge(past: &Resolution, op: &SignedOp, position: Pos, rootless: bool) -> Verdict {
    let content = op.content();
    let author = match &content.body {
        OpBody::Genesis { creator, .. } if rootless => creator
            .devices
            .iter()
            .any(|d| d.device == content.device && d.member == creator.member && d.verify().is_ok())
            .then_some((creator.member, position)),
        _ => past
            .member_of(&content.device)
            .map(|(m, s)| (*m, s.seniority)),
    };
    let outcome = match (&content.body, author) {
        (_, None) => Err(VoidReason::NotCoordinator),
        (OpBody::Genesis { .. }, Some(_)) if rootless => Ok(()),
        (OpBody::Genesis { .. }, Some(_)) => Err(VoidReason::BadTarget),
        (OpBody::AddDevice { .. } | OpBody::RevokeDevice { .. }, Some((m, _))) => {
            judge_device(past, &content.body, &m)
        }
        (OpBody::WithdrawConsent { reason, .. }, Some((m, _))) => {
            judge_withdrawal(past, &m, reason)
        }
        (OpBody::BreakGlass { .. }, Some((m, _))) => judge_break_glass(past, op, &m),
        // An emergency access ends with its member's removal, by any member who writes.
        (OpBody::RemoveMember { member, .. }, Some((m, _)))
            if past.emergency.contains_key(member)
                && past.role(&m).is_some_and(Role::writes_anything)
                && !past.emergency.contains_key(&m) =>
        {
            if past.closed {
                Err(VoidReason::Closed)
            } else {
                Ok(())
            }
        }
        (_, Some((m, _))) if past.role(&m) != Some(Role::Coordinator) => {
            Err(VoidReason::NotCoordinator)
        }
        _ if past.closed => Err(VoidReason::Closed),
        (body, _) if past.suspended.is_some() && !matches!(body, OpBody::Close) => {
            Err(VoidReason::Suspended)
        }
        (OpBody::AddMember { grant, .. }, _)
            if past.members.contains_key(&grant.member)
                || grant.devices.is_empty()
                || grant
                    .devices
                    .iter()
                    .any(|d| d.member != grant.member || d.verify().is_err()) =>
        {
            Err(VoidReason::BadTarget)
        }
        (OpBody::RemoveMember { member, .. } | OpBody::ChangeRole { member, .. }, _)
            if !past.members.contains_key(member) =>
        {
            Err(VoidReason::BadTarget)
        }
        (OpBody::SetRelays { relays }, _)
            if relays.len() > MAX_RELAYS
                || relays
                    .iter()
                    .any(|r| r.is_empty() || r.len() > MAX_RELAY_ADDRESS) =>
        {
            Err(VoidReason::BadTarget)
        }
        (OpBody::SetReminder { hours }, _) if *hours > MAX_REMINDER_HOURS => {
            Err(VoidReason::BadTarget)
        }
        (OpBody::SetOnCall { members, names }, _)
            if members.len() > MAX_ON_CALL || names.data.len() > MAX_OP_NOTE =>
        {
            Err(VoidReason::BadTarget)
        }
        _ => Ok(()),
    };
    Verdict { author, outcome }
}

/// The patient's objection, recorded by a coordinator or a professional, once, with a
/// reason, in a circle still open.
fn judge_withdrawal(
    past: &Resolution,
    author: &MemberId,
    reason: &super::OpNote,
) -> Result<(), VoidReason> {
    if !matches!(
        past.role(author),
        Some(Role::Coordinator | Role::Professional)
    ) {
        return Err(VoidReason::NotCoordinator);
    }
    if past.closed {
        return Err(VoidReason::Closed);
    }
    if past.suspended.is_some() {
        return Err(VoidReason::Suspended);
    }
    if reason.data.is_empty() || reason.data.len() > MAX_OP_NOTE {
        return Err(VoidReason::BadTarget);
    }
    Ok(())
}

/// An emergency access: by a member who writes (not one let in by another emergency), in
/// a circle open and shared, to an observer on the on-call list who is not a member, with
/// certified devices that are no one's yet, and an end within 24 hours.
fn judge_break_glass(
    past: &Resolution,
    op: &SignedOp,
    author: &MemberId,
) -> Result<(), VoidReason> {
    let content = op.content();
    let OpBody::BreakGlass {
        grant,
        until,
        about,
        ..
    } = &content.body
    else {
        return Err(VoidReason::BadTarget);
    };
    if !past.role(author).is_some_and(Role::writes_anything) || past.emergency.contains_key(author)
    {
        return Err(VoidReason::NotCoordinator);
    }
    if past.closed {
        return Err(VoidReason::Closed);
    }
    if past.suspended.is_some() {
        return Err(VoidReason::Suspended);
    }
    let fits = past.on_call(&grant.member)
        && !past.members.contains_key(&grant.member)
        && grant.role == Role::Observer
        && !grant.devices.is_empty()
        && grant.devices.iter().all(|d| {
            d.member == grant.member && d.verify().is_ok() && past.member_of(&d.device).is_none()
        })
        && about.data.len() <= MAX_OP_NOTE
        && *until > content.at
        && until.saturating_sub(content.at) <= MAX_EMERGENCY_MILLIS;
    if fits {
        Ok(())
    } else {
        Err(VoidReason::BadTarget)
    }
}

/// A device's addition or revocation: by a device of the member it concerns or by a
/// coordinator's; to a current member; an added device certified by that member and no
/// one's yet; a revoked one the member's, and not their last.
fn judge_device(past: &Resolution, body: &OpBody, author: &MemberId) -> Result<(), VoidReason> {
    let member = match body {
        OpBody::AddDevice { certificate, .. } => &certificate.member,
        OpBody::RevokeDevice { member, .. } => member,
        _ => return Err(VoidReason::BadTarget),
    };
    if author != member && past.role(author) != Some(Role::Coordinator) {
        return Err(VoidReason::NotCoordinator);
    }
    if past.closed {
        return Err(VoidReason::Closed);
    }
    if past.suspended.is_some() {
        return Err(VoidReason::Suspended);
    }
    let Some(state) = past.members.get(member) else {
        return Err(VoidReason::BadTarget);
    };
    let fits = match body {
        OpBody::AddDevice { certificate, .. } => {
            certificate.verify().is_ok() && past.member_of(&certificate.device).is_none()
        }
        OpBody::RevokeDevice { device, .. } => {
            state.devices.len() > 1 && state.devices.iter().any(|d| d.device == *device)
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(VoidReason::BadTarget)
    }
}

/// Applies a valid operation at `position` to `state`.
pub(super) fn apply(state: &mut Resolution, op: &SignedOp, position: Pos) {
    match &op.content().body {
        OpBody::Genesis { creator, epoch, .. } => {
            state.members.insert(
                creator.member,
                MemberState {
                    role: Role::Coordinator,
                    devices: creator.devices.clone(),
                    seniority: position,
                },
            );
            state.epoch = Some(*epoch);
            state.epochs.push(*epoch);
        }
        OpBody::AddMember { grant, .. } => {
            if !state.members.contains_key(&grant.member)
                && !state.removed.contains_key(&grant.member)
            {
                state.members.insert(
                    grant.member,
                    MemberState {
                        role: grant.role,
                        devices: grant.devices.clone(),
                        seniority: position,
                    },
                );
            }
        }
        OpBody::RemoveMember {
            member,
            logs,
            epoch,
            ..
        } => {
            // An emergency access that ends leaves no former member behind (they wrote
            // nothing, and may be added to the team later).
            let emergency = state.emergency.remove(member).is_some();
            if let Some(gone) = state.members.remove(member) {
                if !emergency {
                    let removal = super::Removal {
                        role: gone.role,
                        logs: logs.clone(),
                    };
                    state.removed.insert(*member, removal);
                }
                state.epoch = Some(*epoch);
                state.epochs.push(*epoch);
            }
        }
        OpBody::ChangeRole { member, role } => {
            if let Some(m) = state.members.get_mut(member) {
                m.role = *role;
            }
        }
        OpBody::RotateKey { epoch, .. } => {
            state.epoch = Some(*epoch);
            state.epochs.push(*epoch);
        }
        OpBody::AddDevice { certificate, .. } => {
            let free = !state.revoked.contains_key(&certificate.device)
                && state.member_of(&certificate.device).is_none();
            if let Some(m) = state.members.get_mut(&certificate.member)
                && free
            {
                m.devices.push(certificate.clone());
            }
        }
        OpBody::RevokeDevice {
            member,
            device,
            logs,
            epoch,
            ..
        } => {
            let Some(m) = state.members.get_mut(member) else {
                return;
            };
            let before = m.devices.len();
            m.devices.retain(|d| d.device != *device);
            if m.devices.len() < before {
                let revocation = super::Revocation {
                    member: *member,
                    cut: super::Removal {
                        role: m.role,
                        logs: logs.clone(),
                    },
                    by: op.content().device,
                    at: op.content().at,
                };
                state.revoked.insert(*device, revocation);
                state.epoch = Some(*epoch);
                state.epochs.push(*epoch);
            }
        }
        OpBody::SetRelays { relays } => {
            state.relays = relays.clone();
            state.relay_devices = relays
                .iter()
                .filter_map(|a| crate::net::relay_device(a).ok())
                .collect();
        }
        OpBody::SetReminder { hours } => state.reminder_hours = Some(*hours),
        OpBody::Close => state.closed = true,
        OpBody::SetOnCall { members, names } => {
            state.on_call = members.clone();
            state.on_call_names = Some(names.clone());
        }
        OpBody::BreakGlass {
            grant,
            until,
            about,
            ..
        } => {
            if let std::collections::btree_map::Entry::Vacant(slot) =
                state.members.entry(grant.member)
            {
                slot.insert(MemberState {
                    role: Role::Observer,
                    devices: grant.devices.clone(),
                    seniority: position,
                });
                let emergency = super::Emergency {
                    by: op.content().device,
                    at: op.content().at,
                    until: *until,
                    about: about.clone(),
                };
                state.emergency.insert(grant.member, emergency);
            }
        }
        OpBody::WithdrawConsent { reason, epoch } => {
            state.suspended = Some(super::Suspension {
                by: op.content().device,
                at: op.content().at,
                reason: reason.clone(),
                op: op.hash(),
            });
            state.epoch = Some(*epoch);
            state.epochs.push(*epoch);
        }
    }
}

/// The operations by hash, as the resolver reads them.
pub(super) trait Ops {
    fn op(&self, hash: &OpHash) -> Option<&SignedOp>;
}

#[cfg(test)]
impl Ops for BTreeMap<OpHash, SignedOp> {
    fn op(&self, hash: &OpHash) -> Option<&SignedOp> {
        self.get(hash)
    }
}

impl Ops for HashMap<OpHash, SignedOp> {
    fn op(&self, hash: &OpHash) -> Option<&SignedOp> {
        self.get(hash)
    }
}

impl Resolver {
    /// Resolves `hashes` (every operation of a log: each one's parents are among them or
    /// absent from the log altogether).
    pub(super) fn build(ops: &impl Ops, hashes: impl IntoIterator<Item = OpHash>) -> Resolver {
        let mut r = Resolver::default();
        r.order = linear_order(ops, hashes);
        r.position = r.order.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let mut prefix_heads: BTreeSet<Pos> = BTreeSet::new();
        for (i, h) in r.order.iter().enumerate() {
            let parents: Vec<Pos> = ops
                .op(h)
                .map(|o| {
                    o.content()
                        .parents
                        .iter()
                        .filter_map(|p| r.position.get(p).copied())
                        .collect()
                })
                .unwrap_or_default();
            let named = parents.iter().filter(|p| prefix_heads.contains(p)).count();
            let linear = named == prefix_heads.len();
            for p in &parents {
                prefix_heads.remove(p);
            }
            prefix_heads.insert(i);
            let anchor = if linear {
                Some(i)
            } else {
                parents.iter().filter_map(|p| r.anchor[*p]).max()
            };
            r.parents.push(parents);
            r.linear.push(linear);
            r.anchor.push(anchor);
        }
        r.heads = prefix_heads;
        r.resolve(ops);
        r
    }

    /// The outcome.
    pub(super) fn resolution(&self) -> &Resolution {
        &self.resolution
    }

    /// How `op` would be judged if appended on top of every head (see [`Self::append`]).
    pub(super) fn judge_next(&self, op: &SignedOp) -> Verdict {
        judge(
            &self.resolution,
            op,
            self.order.len(),
            op.content().parents.is_empty(),
        )
    }

    /// Whether `parents` are exactly the log's heads, so that an operation naming them
    /// comes last in `L` with everything else in its causal past.
    pub(super) fn on_top(&self, parents: &[OpHash]) -> bool {
        parents.len() == self.heads.len()
            && parents
                .iter()
                .all(|p| self.position.get(p).is_some_and(|i| self.heads.contains(i)))
    }

    /// Takes `op`, whose parents are every head ([`Self::on_top`]), in constant time: it
    /// is last in `L`, its causal past is the whole log, and nothing is concurrent with it,
    /// so no earlier verdict changes. Returns its verdict.
    pub(super) fn append(&mut self, op: &SignedOp) -> Result<(), VoidReason> {
        let i = self.order.len();
        let verdict = self.judge_next(op);
        let parents: Vec<Pos> = std::mem::take(&mut self.heads).into_iter().collect();
        self.order.push(op.hash());
        self.position.insert(op.hash(), i);
        self.parents.push(parents);
        self.linear.push(true);
        self.anchor.push(Some(i));
        self.heads.insert(i);
        self.authors.push(verdict.author);
        let valid = verdict.outcome.is_ok();
        self.valid.push(valid);
        match &verdict.outcome {
            Ok(()) => apply(&mut self.resolution, op, i),
            Err(reason) => {
                self.resolution.void.insert(op.hash(), reason.clone());
            }
        }
        verdict.outcome
    }

    /// Rules 2 and 3 to their fixpoint.
    fn resolve(&mut self, ops: &impl Ops) {
        let mut forced: BTreeMap<Pos, VoidReason> = BTreeMap::new();
        let mut walks = Walks::default();
        loop {
            let (state, reasons) = self.sweep(ops, &forced);
            if !self.concurrent_removals(ops, &mut forced, &mut walks) {
                self.resolution = state;
                self.resolution.void = reasons
                    .into_iter()
                    .map(|(i, r)| (self.order[i], r))
                    .collect();
                return;
            }
        }
    }

    /// One pass of rule 2 in `L` order, with the `forced` operations void. Sets each
    /// operation's author and validity; returns the final state and the void reasons.
    fn sweep(
        &mut self,
        ops: &impl Ops,
        forced: &BTreeMap<Pos, VoidReason>,
    ) -> (Resolution, BTreeMap<Pos, VoidReason>) {
        let n = self.order.len();
        // Who needs the state after an operation: its single-parent children that are not
        // linear points; and which linear points partial merges start from.
        let mut handed_down = vec![0usize; n];
        let mut checkpoints: HashSet<Pos> = HashSet::new();
        for i in 0..n {
            if self.linear[i] {
                continue;
            }
            match self.parents[i].as_slice() {
                [p] => handed_down[*p] += 1,
                _ => {
                    if let Some(a) = self.anchor[i] {
                        checkpoints.insert(a);
                    }
                }
            }
        }
        self.valid = vec![false; n];
        self.authors = vec![None; n];
        let mut reasons = BTreeMap::new();
        let mut running = Resolution::default();
        let mut after: HashMap<Pos, (Resolution, usize)> = HashMap::new();
        let mut saved: HashMap<Pos, Resolution> = HashMap::new();
        for (i, handed) in handed_down.into_iter().enumerate() {
            let Some(op) = ops.op(&self.order[i]) else {
                continue;
            };
            let past: std::borrow::Cow<'_, Resolution> = if self.linear[i] {
                std::borrow::Cow::Borrowed(&running)
            } else if let [p] = self.parents[i].as_slice() {
                std::borrow::Cow::Owned(take_handed(&mut after, *p))
            } else {
                std::borrow::Cow::Owned(self.replay_window(ops, i, &saved))
            };
            let verdict = judge(&past, op, i, self.parents[i].is_empty());
            self.authors[i] = verdict.author;
            let outcome = match forced.get(&i) {
                Some(reason) => Err(reason.clone()),
                None => verdict.outcome,
            };
            if let Err(reason) = &outcome {
                reasons.insert(i, reason.clone());
            }
            self.valid[i] = outcome.is_ok();
            if handed > 0 {
                let mut state = past.into_owned();
                if self.valid[i] {
                    apply(&mut state, op, i);
                }
                after.insert(i, (state, handed));
            }
            if self.valid[i] {
                apply(&mut running, op, i);
            }
            if checkpoints.contains(&i) {
                saved.insert(i, running.clone());
            }
        }
        (running, reasons)
    }

    /// The state of the valid causal past of a partial merge: its checkpoint, then its
    /// valid ancestors after it, in `L` order.
    fn replay_window(
        &self,
        ops: &impl Ops,
        i: Pos,
        saved: &HashMap<Pos, Resolution>,
    ) -> Resolution {
        let anchor = self.anchor[i];
        let mut state = anchor
            .and_then(|a| saved.get(&a).cloned())
            .unwrap_or_default();
        let mut window: Vec<Pos> = self.window(i).into_iter().collect();
        window.sort_unstable();
        for a in window {
            if self.valid[a]
                && let Some(op) = ops.op(&self.order[a])
            {
                apply(&mut state, op, a);
            }
        }
        state
    }

    /// The ancestors of `i` after its anchor (every position up to the anchor is one).
    fn window(&self, i: Pos) -> HashSet<Pos> {
        let floor = self.anchor[i];
        let above = |p: Pos| floor.is_none_or(|f| p > f);
        let mut seen = HashSet::new();
        let mut stack: Vec<Pos> = self.parents[i]
            .iter()
            .copied()
            .filter(|p| above(*p))
            .collect();
        while let Some(p) = stack.pop() {
            if seen.insert(p) {
                stack.extend(self.parents[p].iter().copied().filter(|q| above(*q)));
            }
        }
        seen
    }

    /// Rule 3, once: each valid removal voids the concurrent operations of the member it
    /// removes (in a mutual removal, the senior's stands). Returns whether `forced` grew.
    fn concurrent_removals(
        &self,
        ops: &impl Ops,
        forced: &mut BTreeMap<Pos, VoidReason>,
        walks: &mut Walks,
    ) -> bool {
        let n = self.order.len();
        // The smallest anchor at or after each position: a removal at `r` that is a linear
        // point, with every later anchor at `r` or beyond, is an ancestor of everything
        // after it and concurrent with nothing.
        let mut lowest_after = vec![usize::MAX; n + 1];
        for i in (0..n).rev() {
            let a = self.anchor[i].map_or(0, |a| a + 1);
            lowest_after[i] = lowest_after[i + 1].min(a);
        }
        let mut by_author: HashMap<MemberId, Vec<Pos>> = HashMap::new();
        let mut by_device: HashMap<DeviceId, Vec<Pos>> = HashMap::new();
        for (i, a) in self.authors.iter().enumerate() {
            if let Some((m, _)) = a {
                by_author.entry(*m).or_default().push(i);
            }
            if let Some(op) = ops.op(&self.order[i]) {
                by_device.entry(op.content().device).or_default().push(i);
            }
        }
        let granted = granted_at(ops, &self.order, &self.valid);
        let mut grew = false;
        for r in 0..n {
            if !self.valid[r] || (self.linear[r] && lowest_after[r + 1] > r) {
                continue;
            }
            let removed = match ops.op(&self.order[r]).map(|o| &o.content().body) {
                Some(OpBody::RemoveMember { member, .. }) => member,
                // A revocation voids what the revoked device signed concurrently; in a
                // mutual revocation, the device granted first wins.
                Some(OpBody::RevokeDevice { device, .. }) => {
                    let signer = ops.op(&self.order[r]).map(|o| o.content().device);
                    for &x in by_device.get(device).into_iter().flatten() {
                        if forced.contains_key(&x) || !self.concurrent(r, x, walks) {
                            continue;
                        }
                        let mutual = matches!(
                            ops.op(&self.order[x]).map(|o| &o.content().body),
                            Some(OpBody::RevokeDevice { device: target, .. }) if Some(*target) == signer
                        );
                        if mutual && signer.is_some_and(|s| granted.get(device) < granted.get(&s)) {
                            continue;
                        }
                        forced.insert(x, VoidReason::RevokedConcurrently);
                        grew = true;
                    }
                    continue;
                }
                _ => continue,
            };
            let Some(candidates) = by_author.get(removed) else {
                continue;
            };
            for &x in candidates {
                if x == r || forced.contains_key(&x) || !self.concurrent(r, x, walks) {
                    continue;
                }
                // Mutual removal: the senior's removal stands.
                if let (
                    Some(OpBody::RemoveMember { member: target, .. }),
                    Some((remover, remover_seniority)),
                    Some((_, seniority)),
                ) = (
                    ops.op(&self.order[x]).map(|o| &o.content().body),
                    &self.authors[r],
                    &self.authors[x],
                ) && target == remover
                    && seniority < remover_seniority
                {
                    continue;
                }
                forced.insert(x, VoidReason::RemovedConcurrently);
                grew = true;
            }
        }
        grew
    }

    /// Whether neither of `a` and `b` is an ancestor of the other.
    fn concurrent(&self, a: Pos, b: Pos, walks: &mut Walks) -> bool {
        let (early, late) = if a < b { (a, b) } else { (b, a) };
        early != late && !self.is_ancestor(early, late, walks)
    }

    /// Whether `early` (before `late` in `L`) is an ancestor of `late`.
    fn is_ancestor(&self, early: Pos, late: Pos, walks: &mut Walks) -> bool {
        if self.linear[late] || self.anchor[late].is_some_and(|a| a >= early) {
            return true;
        }
        walks
            .0
            .entry(late)
            .or_insert_with(|| self.window(late))
            .contains(&early)
    }
}

/// The windows walked during one resolution (they depend only on the log's shape).
#[derive(Default)]
struct Walks(HashMap<Pos, HashSet<Pos>>);

/// Where each device was first granted in `order` by a valid operation (its seniority in
/// a mutual revocation).
pub(super) fn granted_at(
    ops: &impl Ops,
    order: &[OpHash],
    valid: &[bool],
) -> HashMap<DeviceId, Pos> {
    let mut granted = HashMap::new();
    for (i, h) in order.iter().enumerate() {
        if !valid.get(i).copied().unwrap_or(false) {
            continue;
        }
        match ops.op(h).map(|o| &o.content().body) {
            Some(OpBody::Genesis { creator: grant, .. } | OpBody::AddMember { grant, .. }) => {
                for d in &grant.devices {
                    granted.entry(d.device).or_insert(i);
                }
            }
            Some(OpBody::AddDevice { certificate, .. }) => {
                granted.entry(certificate.device).or_insert(i);
            }
            _ => {}
        }
    }
    granted
}

/// The state after `p`, for one of the children it is handed down to (the last one takes
/// it without a copy).
fn take_handed(after: &mut HashMap<Pos, (Resolution, usize)>, p: Pos) -> Resolution {
    match after.get_mut(&p) {
        Some((_, left)) if *left > 1 => {
            *left -= 1;
            after.get(&p).map(|(s, _)| s.clone()).unwrap_or_default()
        }
        Some(_) => after.remove(&p).map(|(s, _)| s).unwrap_or_default(),
        None => Resolution::default(),
    }
}

/// `L`: a topological order of `hashes` (parents outside the set are ignored), ties broken
/// by the smaller hash.
fn linear_order(ops: &impl Ops, hashes: impl IntoIterator<Item = OpHash>) -> Vec<OpHash> {
    let members: HashSet<OpHash> = hashes.into_iter().collect();
    let mut children: HashMap<OpHash, Vec<OpHash>> = HashMap::new();
    let mut pending: HashMap<OpHash, usize> = HashMap::with_capacity(members.len());
    for h in &members {
        let parents: Vec<&OpHash> = ops
            .op(h)
            .map(|o| {
                o.content()
                    .parents
                    .iter()
                    .filter(|p| members.contains(p))
                    .collect()
            })
            .unwrap_or_default();
        pending.insert(*h, parents.len());
        for p in parents {
            children.entry(*p).or_default().push(*h);
        }
    }
    let mut ready: BinaryHeap<Reverse<OpHash>> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(h, _)| Reverse(*h))
        .collect();
    let mut order = Vec::with_capacity(members.len());
    while let Some(Reverse(h)) = ready.pop() {
        order.push(h);
        for c in children.get(&h).into_iter().flatten() {
            if let Some(n) = pending.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    ready.push(Reverse(*c));
                }
            }
        }
    }
    order
}
