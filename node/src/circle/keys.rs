//! The key schedule of a circle: which epoch keys this device can open, who holds each
//! epoch, and new epoch keys sealed to a set of devices. A pure function of the membership
//! log, this device's X25519 secret and the random generator passed in; the results this
//! device computes often (the keys it can open, the key it writes with) are cached until
//! the membership changes.

use std::collections::{BTreeMap, HashMap};

use super::membership::{Membership, MembershipLog, OpBody, OpHash, Resolution};
use super::{Circle, CircleError};
use crate::crypto::{EpochId, EpochKey, SealedKey, SecureRng, open_epoch_key, seal_epoch_key};
use crate::identity::{DeviceCertificate, LocalIdentity};

/// What this device computed from the membership log, until it changes.
#[derive(Debug, Default)]
pub(super) struct KeySchedule {
    /// The epoch and key this device writes with.
    write: Option<(EpochId, EpochKey)>,
    /// Every epoch key this device can open.
    readable: Option<BTreeMap<EpochId, EpochKey>>,
    /// Keys opened already, by the operation that sealed them (opening is the costly part,
    /// and what an operation sealed never changes): a change of membership costs opening
    /// only the keys it brings.
    opened: HashMap<(OpHash, EpochId), Option<EpochKey>>,
}

impl KeySchedule {
    /// The membership changed: who holds what may have.
    pub(super) fn forget(&mut self) {
        self.write = None;
        self.readable = None;
    }

    /// The epoch keys this device can open (cached).
    pub(super) fn readable(
        &mut self,
        membership: &Membership,
        me: &LocalIdentity,
    ) -> &BTreeMap<EpochId, EpochKey> {
        let opened = &mut self.opened;
        self.readable.get_or_insert_with(|| {
            let binding = binding(membership.log());
            let secret = me.x25519_secret();
            let mut keys = BTreeMap::new();
            for (op, sealed) in membership
                .log()
                .sealed_for(&me.device(), membership.resolution())
            {
                let key = opened
                    .entry((op, sealed.epoch))
                    .or_insert_with(|| open_epoch_key(sealed, &binding, &secret).ok());
                if let Some(k) = key {
                    keys.insert(sealed.epoch, k.clone());
                }
            }
            keys
        })
    }

    pub(super) fn cached_write_key(&self) -> Option<(EpochId, EpochKey)> {
        self.write.clone()
    }

    pub(super) fn remember_write_key(&mut self, key: (EpochId, EpochKey)) {
        self.write = Some(key);
    }
}

/// Who a new epoch leaves out.
#[derive(Debug, Clone, Copy)]
pub(super) enum Without<'a> {
    Nobody,
    Member(&'a cercle_crdt::MemberId),
    Device(&'a crate::identity::DeviceId),
}

/// What binds sealed keys to a circle: its genesis nonce.
pub(super) fn binding(log: &MembershipLog) -> Vec<u8> {
    match log.genesis().map(|g| &g.content().body) {
        Some(OpBody::Genesis { nonce, .. }) => nonce.to_vec(),
        _ => Vec::new(),
    }
}

/// Every epoch key of the circle that `me`'s device can open.
pub(super) fn epoch_keys(
    log: &MembershipLog,
    resolution: &Resolution,
    me: &LocalIdentity,
) -> BTreeMap<EpochId, EpochKey> {
    let binding = binding(log);
    let secret = me.x25519_secret();
    log.sealed_for(&me.device(), resolution)
        .into_iter()
        .filter_map(|(_, sealed)| {
            open_epoch_key(sealed, &binding, &secret)
                .ok()
                .map(|k| (sealed.epoch, k))
        })
        .collect()
}

/// Seals `key` of `epoch` to each of `devices`.
pub(super) fn seal_to<'a>(
    rng: &mut SecureRng,
    binding: &[u8],
    (epoch, key): (EpochId, &EpochKey),
    devices: impl IntoIterator<Item = &'a DeviceCertificate>,
) -> Result<Vec<SealedKey>, CircleError> {
    devices
        .into_iter()
        .map(|d| {
            Ok(seal_epoch_key(
                rng, key, binding, epoch, d.device, &d.x25519,
            )?)
        })
        .collect()
}

impl Circle {
    /// Every epoch key of this circle that `me`'s device can open.
    pub fn epoch_keys(&self, me: &LocalIdentity) -> BTreeMap<EpochId, EpochKey> {
        epoch_keys(self.membership.log(), self.resolution(), me)
    }

    /// A fresh epoch key sealed to every device of the current members except those of
    /// the member or the device `without`.
    pub(super) fn new_epoch(
        &self,
        without: Without<'_>,
        rng: &mut SecureRng,
    ) -> Result<(EpochId, Vec<SealedKey>), CircleError> {
        let epoch = EpochId::generate(rng);
        let key = EpochKey::generate(rng);
        let devices = self
            .resolution()
            .members
            .iter()
            .filter(|(m, _)| !matches!(without, Without::Member(w) if w == *m))
            .flat_map(|(_, s)| s.devices.iter())
            .filter(|d| !matches!(without, Without::Device(w) if *w == d.device));
        let binding = binding(self.membership.log());
        let sealed = seal_to(rng, &binding, (epoch, &key), devices)?;
        Ok((epoch, sealed))
    }
}

/// Every epoch key `me`'s device can open from the membership operations `store` holds, of
/// every circle, whatever the circle's state: what anyone holding this device's secrets and
/// its store could read of the envelopes kept anywhere. A circle shredded here has none
/// left (its operations are gone, and their copies are sealed with its forgotten key).
pub fn held_epoch_keys(
    store: &dyn crate::store::Store,
    me: &LocalIdentity,
) -> Result<Vec<EpochKey>, crate::store::StoreError> {
    use super::membership::{CircleId, SignedOp, sealed_keys};
    let secret = me.x25519_secret();
    let mut by_circle: BTreeMap<CircleId, Vec<SignedOp>> = BTreeMap::new();
    for (k, v) in store.scan(crate::store::Tree::Ops, b"")? {
        let Some(circle) = k.get(..32).and_then(|c| c.try_into().ok()).map(CircleId) else {
            continue;
        };
        if let Ok(op) = SignedOp::decode(&v) {
            by_circle.entry(circle).or_default().push(op);
        }
    }
    let mut keys = Vec::new();
    for ops in by_circle.values() {
        let binding = ops
            .iter()
            .find_map(|o| match &o.content().body {
                OpBody::Genesis { nonce, .. } => Some(nonce.to_vec()),
                _ => None,
            })
            .unwrap_or_default();
        for op in ops {
            for sealed in sealed_keys(&op.content().body) {
                if sealed.device == me.device()
                    && let Ok(k) = open_epoch_key(sealed, &binding, &secret)
                {
                    keys.push(k);
                }
            }
        }
    }
    Ok(keys)
}
