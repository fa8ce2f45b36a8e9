//! The resolution rule as first written: every operation's causal past replayed from
//! scratch, ancestors as sets, rule 3 by trying every pair. Quadratic and more, but a
//! direct reading of the rule; the tests check the resolver against it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use cercle_crdt::MemberId;

use super::resolve::{apply, granted_at, judge};
use super::{OpBody, OpHash, Resolution, SignedOp, VoidReason};

/// The deterministic linear order: topological, ties by smaller hash.
fn linear_order(ops: &BTreeMap<OpHash, SignedOp>) -> Vec<OpHash> {
    let mut children: HashMap<OpHash, Vec<OpHash>> = HashMap::new();
    let mut pending: HashMap<OpHash, usize> = HashMap::new();
    for (h, op) in ops {
        let parents: Vec<&OpHash> = op
            .content
            .parents
            .iter()
            .filter(|p| ops.contains_key(p))
            .collect();
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
    let mut order = Vec::with_capacity(ops.len());
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

pub(super) fn resolve(ops: &BTreeMap<OpHash, SignedOp>) -> Resolution {
    let order = linear_order(ops);
    let position: HashMap<OpHash, usize> = order.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    // Ancestors of each op, as positions in `order` (parents come earlier).
    let mut ancestors: Vec<BTreeSet<usize>> = Vec::with_capacity(order.len());
    for h in &order {
        let mut set = BTreeSet::new();
        if let Some(op) = ops.get(h) {
            for p in &op.content.parents {
                if let Some(&i) = position.get(p) {
                    set.insert(i);
                    set.extend(ancestors[i].iter().copied());
                }
            }
        }
        ancestors.push(set);
    }
    let concurrent =
        |a: usize, b: usize| a != b && !ancestors[a].contains(&b) && !ancestors[b].contains(&a);

    let mut forced_void: BTreeMap<usize, VoidReason> = BTreeMap::new();
    loop {
        let (valid, reasons, authors) = evaluate(ops, &order, &ancestors, &forced_void);
        // Rule 3: removals win over concurrent operations of the removed member.
        let mut grew = false;
        for (r, rop) in order.iter().enumerate() {
            if !valid[r] {
                continue;
            }
            let removed = match ops.get(rop).map(|o| &o.content.body) {
                Some(OpBody::RemoveMember { member, .. }) => member,
                // A revocation voids every concurrent operation its device signed, but in
                // a mutual revocation the device granted first wins.
                Some(OpBody::RevokeDevice { device, .. }) => {
                    let revoker = ops.get(rop).map(|o| o.content.device);
                    let granted = granted_at(ops, &order, &valid);
                    for (x, h) in order.iter().enumerate() {
                        let Some(xop) = ops.get(h) else {
                            continue;
                        };
                        if xop.content.device != *device
                            || forced_void.contains_key(&x)
                            || !concurrent(r, x)
                        {
                            continue;
                        }
                        if let OpBody::RevokeDevice { device: target, .. } = &xop.content.body
                            && Some(*target) == revoker
                            && revoker.is_some_and(|s| granted.get(device) < granted.get(&s))
                        {
                            continue;
                        }
                        forced_void.insert(x, VoidReason::RevokedConcurrently);
                        grew = true;
                    }
                    continue;
                }
                _ => continue,
            };
            for x in 0..order.len() {
                if forced_void.contains_key(&x) || !concurrent(r, x) {
                    continue;
                }
                let Some((author, seniority)) = &authors[x] else {
                    continue;
                };
                if author != removed {
                    continue;
                }
                // Mutual removal: the senior's removal stands.
                if let (
                    Some(OpBody::RemoveMember { member: target, .. }),
                    Some((remover, remover_seniority)),
                ) = (ops.get(&order[x]).map(|o| &o.content.body), &authors[r])
                    && target == remover
                    && seniority < remover_seniority
                {
                    continue;
                }
                forced_void.insert(x, VoidReason::RemovedConcurrently);
                grew = true;
            }
        }
        if !grew {
            let mut res = final_state(ops, &order, &valid);
            res.void = reasons.into_iter().map(|(i, r)| (order[i], r)).collect();
            return res;
        }
    }
}

/// One pass of rule 2 with `forced_void` ops treated as void. Returns per-op validity,
/// void reasons, and each op's author `(member, seniority)` as seen in its causal past.
#[allow(clippy::type_complexity)]
fn evaluate(
    ops: &BTreeMap<OpHash, SignedOp>,
    order: &[OpHash],
    ancestors: &[BTreeSet<usize>],
    forced_void: &BTreeMap<usize, VoidReason>,
) -> (
    Vec<bool>,
    BTreeMap<usize, VoidReason>,
    Vec<Option<(MemberId, usize)>>,
) {
    let mut valid = vec![false; order.len()];
    let mut reasons = BTreeMap::new();
    let mut authors = vec![None; order.len()];
    for (i, h) in order.iter().enumerate() {
        let Some(op) = ops.get(h) else { continue };
        // The state in this op's causal past: its valid ancestors, in order.
        let past: Vec<usize> = ancestors[i].iter().copied().filter(|a| valid[*a]).collect();
        let state = replay(ops, order, &past);
        // Who wrote it and whether it is valid in that state: the per-operation rule
        // (`resolve::judge`) is shared; what this reference checks is the causal past and
        // rule 3.
        let verdict = judge(&state, op, i, ancestors[i].is_empty());
        authors[i] = verdict.author;
        if let Some(reason) = forced_void.get(&i) {
            reasons.insert(i, reason.clone());
            continue;
        }
        let verdict = verdict.outcome;
        match verdict {
            Ok(()) => valid[i] = true,
            Err(r) => {
                reasons.insert(i, r);
            }
        }
    }
    (valid, reasons, authors)
}

/// The state after applying the ops at `positions` (ascending) in order.
fn replay(ops: &BTreeMap<OpHash, SignedOp>, order: &[OpHash], positions: &[usize]) -> Resolution {
    let mut state = Resolution::default();
    for &i in positions {
        if let Some(op) = ops.get(&order[i]) {
            apply(&mut state, op, i);
        }
    }
    state
}

fn final_state(ops: &BTreeMap<OpHash, SignedOp>, order: &[OpHash], valid: &[bool]) -> Resolution {
    let positions: Vec<usize> = (0..order.len()).filter(|i| valid[*i]).collect();
    replay(ops, order, &positions)
}
