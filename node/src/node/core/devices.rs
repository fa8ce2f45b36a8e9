//! The node core's side of a member's devices (the code, the records and their checks are in
//! [`crate::pairing`]):
//!
//! - **pairing, on the first device**: a new device proves a pairing code; this device
//!   certifies it with the member key, answers once that is durable, and adds it to each of
//!   the member's circles;
//! - **pairing, on the new device**: it dials the first device, proves the code, checks the
//!   answer (a certificate of exactly its keys, the member's signed profile) and keeps it;
//! - **the member's devices**, kept by each of them: they reach each other (dialed at
//!   start), and each circle of the member holds all of them but the revoked ones: a device
//!   that holds a circle adds the member's other devices missing from it, and revokes there
//!   a device revoked anywhere else;
//! - **revocation** of a lost device in every circle of the member.

use std::collections::BTreeMap;

use super::writes::After;
use super::{Effect, NodeCore};
use crate::circle::Circle;
use crate::circle::membership::{CircleId, OpBody, SignedOp};
use crate::identity::{DeviceCertificate, DeviceId, PublicIdentity};
use crate::ops::NodeError;
use crate::pairing::{
    DEVICE_RECORD_PREFIX, DeviceRecord, MAX_DEVICE_ADDRESSES, MAX_DEVICES, PairCode, PairError,
    PairRecord,
};
use crate::store::Batch;
use crate::sync::Message;

/// How often a new device tries the first device again while no answer came (milliseconds).
const RETRY_EVERY: i64 = 3_000;
/// How often the member's other devices not connected are dialed again (milliseconds).
const DIAL_SIBLINGS_EVERY: i64 = 60_000;

/// A pairing under way on the new device.
#[derive(Debug)]
pub(crate) struct Pairing {
    pub(crate) code: PairCode,
    pub(crate) state: PairState,
    last_try: i64,
}

/// Where a pairing stands on the new device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PairState {
    /// Dialing the first device, or waiting for its answer.
    Reaching,
    /// Certified: the identity to keep.
    Paired(Box<PublicIdentity>),
    /// Refused by the first device, and why.
    Refused(String),
}

impl Pairing {
    pub(crate) fn new(code: PairCode, now: i64) -> Pairing {
        Pairing {
            code,
            state: PairState::Reaching,
            last_try: now,
        }
    }
}

/// The member's devices known here, by device: from the records kept and the circles held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Siblings {
    pub(crate) certificates: BTreeMap<DeviceId, DeviceCertificate>,
    /// Those revoked (in a circle, or by this device).
    pub(crate) revoked: BTreeMap<DeviceId, i64>,
}

/// What [`Siblings`] were gathered from: they are the same while it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SiblingsVersion {
    /// Device records kept.
    records: u64,
    /// [`super::Circles::membership_version`].
    circles: (u64, usize),
}

/// The member's device records the store keeps.
pub(super) fn load_records(store: &dyn crate::store::Store) -> BTreeMap<DeviceId, DeviceRecord> {
    match store.metas(DEVICE_RECORD_PREFIX) {
        Ok(rows) => rows
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice::<DeviceRecord>(v).ok())
            .map(|r| (r.certificate.device, r))
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read this member's devices");
            BTreeMap::new()
        }
    }
}

fn record_batch(record: &DeviceRecord) -> Result<Batch, NodeError> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| NodeError::internal(format!("cannot record a device: {e}")))?;
    let mut batch = Batch::new();
    batch.meta(&DeviceRecord::key(&record.certificate.device), &bytes);
    Ok(batch)
}

impl NodeCore {
    // --- The new device.

    /// The `Pair` message for `device`, if it is the first device of the pairing under way.
    pub(crate) fn send_pair(&mut self, device: &DeviceId) -> Vec<Effect> {
        let Some(p) = &self.pairing else {
            return Vec::new();
        };
        if p.state != PairState::Reaching || p.code.device != *device {
            return Vec::new();
        }
        if !self.peers.contains_key(device) {
            return Vec::new();
        }
        let message = Message::Pair {
            pairing: p.code.id(),
            secret: p.code.secret.to_vec(),
            x25519: self.me.x25519_public(),
        };
        vec![Effect::Send(*device, message)]
    }

    /// A pairing without an answer yet: dial the first device again, or ask again.
    fn retry_pair(&mut self, now: i64) {
        let Some(p) = &mut self.pairing else {
            return;
        };
        if p.state != PairState::Reaching || now - p.last_try < RETRY_EVERY {
            return;
        }
        p.last_try = now;
        let device = p.code.device;
        if self.peers.contains_key(&device) {
            let again = self.send_pair(&device);
            self.out.extend(again);
        } else {
            let dials: Vec<Effect> = p.code.addresses.iter().cloned().map(Effect::Dial).collect();
            self.out.extend(dials);
        }
    }

    /// The first device's answer: kept only if it certifies exactly this device's keys for a
    /// member whose profile it signed.
    pub(crate) fn pair_answered(
        &mut self,
        from: DeviceId,
        refused: Option<String>,
        identity: Option<Box<PublicIdentity>>,
        devices: Vec<DeviceCertificate>,
    ) {
        let me = self.me.device();
        let x25519 = self.me.x25519_public();
        let Some(p) = &mut self.pairing else {
            return;
        };
        if p.code.device != from || p.state != PairState::Reaching {
            tracing::warn!(peer = %from, "a pairing answer from a device that was not asked");
            return;
        }
        if let Some(reason) = refused {
            let reason: String = reason.chars().take(300).collect();
            tracing::info!(%reason, "the first device refused the pairing");
            p.state = PairState::Refused(reason);
            return;
        }
        let checked = identity.filter(|id| {
            let cert = &id.certificate;
            cert.device == me
                && cert.x25519 == x25519
                && cert.verify().is_ok()
                && id
                    .profile_signature
                    .as_deref()
                    .is_some_and(|s| id.profile.verify(&cert.member, s).is_ok())
        });
        let Some(identity) = checked else {
            tracing::warn!(peer = %from, "a pairing answer that does not certify this device");
            p.state =
                PairState::Refused("the first device's answer does not certify this device".into());
            return;
        };
        let member = identity.member();
        let addresses = p.code.addresses.clone();
        p.state = PairState::Paired(identity);
        tracing::info!(peer = %from, "paired: this device is certified");
        // The member's devices, to reach them from now on.
        for cert in devices.into_iter().take(MAX_DEVICES) {
            if cert.member != member || cert.device == me || cert.verify().is_err() {
                continue;
            }
            let record = DeviceRecord {
                addresses: if cert.device == from {
                    addresses.clone()
                } else {
                    Vec::new()
                },
                certificate: cert,
                last_seen: Some(self.now.millis()),
                revoked_at: None,
            };
            self.keep_record(record);
        }
    }

    // --- The first device.

    /// A device asks to pair with a code this device made: certify it, add it to the
    /// member's circles, and answer once that is durable; or say why not.
    pub(crate) fn pair_asked(
        &mut self,
        from: DeviceId,
        pairing: String,
        secret: &[u8],
        x25519: [u8; 32],
    ) {
        match self.certify(from, &pairing, secret, x25519) {
            Ok(identity) => {
                let mut devices: Vec<DeviceCertificate> =
                    self.siblings().certificates.into_values().collect();
                devices.push(self.me.certificate.clone());
                let answer = Message::PairAnswer {
                    pairing,
                    refused: None,
                    identity: Some(Box::new(identity)),
                    devices,
                };
                self.after_writes(vec![Effect::Send(from, answer)]);
            }
            Err(e) => {
                if matches!(e, PairError::WrongSecret | PairError::Unknown)
                    && self.refused(from, "wrong_pairing_secret")
                {
                    tracing::warn!(peer = %from, reason = %e, "refused a pairing");
                }
                let answer = Message::PairAnswer {
                    pairing,
                    refused: Some(e.to_string()),
                    identity: None,
                    devices: Vec::new(),
                };
                self.out.push(Effect::Send(from, answer));
            }
        }
    }

    fn certify(
        &mut self,
        from: DeviceId,
        pairing: &str,
        secret: &[u8],
        x25519: [u8; 32],
    ) -> Result<PublicIdentity, PairError> {
        let now = self.now.millis();
        if pairing.len() != 16 || !pairing.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PairError::Unknown);
        }
        if !self.me.holds_member_key() {
            return Err(PairError::NoMemberKey);
        }
        let key = PairRecord::key(pairing);
        let mut record: PairRecord = match self.circles.store.meta(&key) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|_| PairError::Unknown)?,
            Ok(None) => return Err(PairError::Unknown),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a pairing record");
                return Err(PairError::Unknown);
            }
        };
        record.admit(secret, &from, now)?;
        let siblings = self.siblings();
        let live = siblings
            .certificates
            .keys()
            .filter(|d| !siblings.revoked.contains_key(d))
            .count();
        if record.used_by.is_none() && live + 1 >= MAX_DEVICES {
            return Err(PairError::TooManyDevices);
        }
        let certificate = match self.devices.get(&from) {
            // Paired before, the answer was lost: the same certificate again.
            Some(r) if r.certificate.x25519 == x25519 => r.certificate.clone(),
            _ => self
                .me
                .certify_device(&from, &x25519, self.now.timestamp())
                .map_err(|_| PairError::NoMemberKey)?,
        };
        if record.used_by.is_none() {
            record.used_by = Some(from);
            match serde_json::to_vec(&record) {
                Ok(bytes) => {
                    let mut batch = Batch::new();
                    batch.meta(&key, &bytes);
                    self.write_batch(batch, After::default());
                }
                Err(e) => tracing::error!(error = %e, "cannot record a pairing"),
            }
        }
        self.keep_record(DeviceRecord {
            certificate: certificate.clone(),
            addresses: Vec::new(),
            last_seen: Some(now),
            revoked_at: None,
        });
        tracing::info!(device = %from, "paired a new device of this member");
        self.reconcile_all_devices();
        let mine = self.me.public();
        Ok(PublicIdentity {
            profile: mine.profile,
            certificate,
            profile_signature: mine.profile_signature,
        })
    }

    // --- The member's devices.

    /// Keeps `record` (in memory and in the store).
    fn keep_record(&mut self, record: DeviceRecord) {
        match record_batch(&record) {
            Ok(batch) => {
                self.write_batch(batch, After::default());
            }
            Err(e) => tracing::error!(error = %e, "cannot keep a device's record"),
        }
        self.devices.insert(record.certificate.device, record);
        self.records_kept += 1;
    }

    /// The member's other devices known here: the records kept and the devices of this
    /// member in the circles held, with those revoked anywhere. Gathered again only when
    /// a record was kept, a circle taken out of memory, or a membership log grew; a circle
    /// just put in memory (a catch-up joins one after the other) is looked at alone.
    pub(crate) fn siblings(&self) -> Siblings {
        let version = SiblingsVersion {
            records: self.records_kept,
            circles: self.circles.membership_version(),
        };
        if let Ok(mut cache) = self.siblings_cache.try_borrow_mut()
            && let Some((v, s)) = cache.as_mut()
        {
            if *v == version {
                return s.clone();
            }
            if self
                .only_put_since(v, &version)
                .is_some_and(|c| self.brings_nothing(c, s))
            {
                *v = version;
                return s.clone();
            }
        }
        let s = self.gather_siblings();
        if let Ok(mut cache) = self.siblings_cache.try_borrow_mut() {
            *cache = Some((version, s.clone()));
        }
        s
    }

    /// The circle put in memory since `then`, if that is the only change from `then` to
    /// `now`.
    fn only_put_since(&self, then: &SiblingsVersion, now: &SiblingsVersion) -> Option<&Circle> {
        let id = self.circles.last_put?;
        let c = self.circles.open.get(&id)?;
        let (changes, ops) = now.circles;
        (then.records == now.records
            && then.circles.0 + 1 == changes
            && then.circles.1 + c.membership().len() == ops)
            .then_some(c)
    }

    /// Whether circle `c` holds no device of the member outside `known` (with the same
    /// certificate), and no revocation of one.
    fn brings_nothing(&self, c: &Circle, known: &Siblings) -> bool {
        let member = self.me.member();
        let me = self.me.device();
        let res = c.resolution();
        res.revoked.values().all(|r| r.member != member)
            && res.members.get(&member).is_none_or(|state| {
                state
                    .devices
                    .iter()
                    .all(|d| d.device == me || known.certificates.get(&d.device) == Some(d))
            })
    }

    /// [`NodeCore::siblings`], gathered over every record and circle.
    pub(super) fn gather_siblings(&self) -> Siblings {
        let member = self.me.member();
        let mut s = Siblings::default();
        for r in self.devices.values() {
            s.certificates
                .insert(r.certificate.device, r.certificate.clone());
            if let Some(at) = r.revoked_at {
                s.revoked.insert(r.certificate.device, at);
            }
        }
        for c in self.circles.open.values() {
            if let Some(state) = c.resolution().members.get(&member) {
                for d in &state.devices {
                    s.certificates.entry(d.device).or_insert_with(|| d.clone());
                }
            }
        }
        // A revocation counts everywhere only when one of the member's own devices made it:
        // a coordinator of one circle revoking a device there does not make the member's
        // devices revoke it in every other circle.
        let me = self.me.device();
        for c in self.circles.open.values() {
            for (device, r) in &c.resolution().revoked {
                let by_member = r.by == me || s.certificates.contains_key(&r.by);
                if r.member == member && by_member {
                    s.revoked.entry(*device).or_insert(r.at);
                }
            }
        }
        s.certificates.remove(&me);
        s
    }

    /// Whether a circle not held here is the member's own: `from` is another device of
    /// this member, or `ops` hold this device's addition signed by one (that operation's
    /// signature checked), whoever delivered them (the first device, or a relay's mailbox
    /// before it).
    pub(crate) fn members_own(&self, from: &DeviceId, ops: &[Vec<u8>]) -> bool {
        let siblings = self.siblings();
        let counts = |d: &DeviceId| {
            siblings.certificates.contains_key(d) && !siblings.revoked.contains_key(d)
        };
        if counts(from) {
            return true;
        }
        // Read first without the signatures; only an operation that says one of the
        // member's devices added this one has its signature checked (the join checks all).
        let me = self.me.device();
        ops.iter().any(|b| {
            SignedOp::peek(b).is_ok_and(|op| {
                let c = op.content();
                matches!(&c.body, OpBody::AddDevice { certificate, .. } if certificate.device == me)
                    && counts(&c.device)
            }) && SignedOp::decode(b).is_ok()
        })
    }

    /// The membership of `circle` changed: it is brought to the member's devices, and every
    /// circle is if what this node knows of the member's devices changed with it.
    pub(crate) fn devices_changed(&mut self, circle: CircleId) {
        let siblings = self.siblings();
        let seen = (
            siblings.certificates.keys().copied().collect(),
            siblings.revoked.keys().copied().collect(),
        );
        if seen != self.siblings_seen {
            self.siblings_seen = seen;
            self.reconcile_all_devices();
        } else {
            self.reconcile_devices(circle, &siblings);
        }
    }

    /// Brings every circle held here to the member's devices known here.
    pub(crate) fn reconcile_all_devices(&mut self) {
        let siblings = self.siblings();
        let ids: Vec<CircleId> = self.circles.open.keys().copied().collect();
        for id in ids {
            self.reconcile_devices(id, &siblings);
        }
    }

    /// In `circle`, adds the member's devices missing from it and revokes those revoked
    /// elsewhere. Nothing is done by a device revoked itself, or not a member's.
    pub(crate) fn reconcile_devices(&mut self, circle: CircleId, siblings: &Siblings) {
        let me = self.me.member();
        if siblings.revoked.contains_key(&self.me.device()) {
            return;
        }
        let Some(c) = self.circles.open.get_mut(&circle) else {
            return;
        };
        let res = c.resolution();
        let Some(state) = res.members.get(&me) else {
            return;
        };
        if !state.devices.iter().any(|d| d.device == self.me.device()) || res.closed {
            return;
        }
        let held: Vec<DeviceId> = state.devices.iter().map(|d| d.device).collect();
        let missing: Vec<DeviceCertificate> = siblings
            .certificates
            .values()
            .filter(|d| {
                !siblings.revoked.contains_key(&d.device)
                    && !held.contains(&d.device)
                    && !res.revoked.contains_key(&d.device)
            })
            .cloned()
            .collect();
        let lost: Vec<DeviceId> = held
            .iter()
            .filter(|d| siblings.revoked.contains_key(d))
            .copied()
            .collect();
        let now = self.now.timestamp();
        for cert in missing {
            let Some(c) = self.circles.open.get_mut(&circle) else {
                return;
            };
            match c.add_device(&self.me, &cert, now, &mut self.rng) {
                Ok(staged) => {
                    tracing::info!(%circle, device = %cert.device, "added a device of this member to a circle");
                    self.stage(circle, staged);
                }
                Err(e) => {
                    tracing::warn!(%circle, device = %cert.device, error = %e, "cannot add a device of this member");
                }
            }
        }
        for device in lost {
            let Some(c) = self.circles.open.get_mut(&circle) else {
                return;
            };
            match c.revoke_device(&self.me, &me, &device, now, &mut self.rng) {
                Ok(staged) => {
                    tracing::info!(%circle, %device, "revoked a lost device of this member in a circle");
                    self.stage(circle, staged);
                }
                Err(e) => {
                    tracing::warn!(%circle, %device, error = %e, "cannot revoke a device of this member");
                }
            }
        }
    }

    /// Revokes `device`, one of this member's others, in every circle held here; returns in
    /// how many it was.
    pub(crate) fn revoke_sibling(&mut self, device: DeviceId) -> Result<usize, NodeError> {
        if device == self.me.device() {
            return Err(NodeError::bad_input(
                "this is the device you are using: revoke it from another of your devices",
            ));
        }
        let siblings = self.siblings();
        let Some(certificate) = siblings.certificates.get(&device).cloned() else {
            return Err(NodeError::not_found(
                "no device of yours has this id; `cercle device list` shows them",
            ));
        };
        let now = self.now.millis();
        let mut record = self.devices.get(&device).cloned().unwrap_or(DeviceRecord {
            certificate,
            addresses: Vec::new(),
            last_seen: None,
            revoked_at: None,
        });
        record.revoked_at.get_or_insert(now);
        self.keep_record(record);
        let member = self.me.member();
        let holding = |c: &crate::circle::Circle| {
            c.resolution()
                .members
                .get(&member)
                .is_some_and(|m| m.devices.iter().any(|d| d.device == device))
        };
        let circles = self.circles.open.values().filter(|c| holding(c)).count();
        // Each circle's revocation is its own operation; other members' nodes stop sending
        // to the device as each arrives.
        self.reconcile_all_devices();
        tracing::info!(%device, circles, "revoked a device of this member");
        Ok(circles)
    }

    /// One of the member's devices connected or went away: when it was last seen.
    pub(crate) fn sibling_seen(&mut self, device: &DeviceId, connected: bool) {
        let now = self.now.millis();
        let Some(record) = self.devices.get_mut(device) else {
            return;
        };
        record.last_seen = Some(now);
        if !connected {
            let record = record.clone();
            self.keep_record(record);
            // Dialed again at the next tick, not a minute later: a connection lost in the
            // middle of a catch-up (a peer slow to read is let go) resumes at once.
            self.siblings_dialed = 0;
        }
    }

    /// Dials the member's other devices not connected, where they were last reached.
    pub(crate) fn dial_siblings(&mut self) {
        let now = self.now.millis();
        if now - self.siblings_dialed < DIAL_SIBLINGS_EVERY && self.siblings_dialed != 0 {
            return;
        }
        self.siblings_dialed = now;
        let dials: Vec<Effect> = self
            .devices
            .values()
            .filter(|r| r.revoked_at.is_none() && !self.peers.contains_key(&r.certificate.device))
            .flat_map(|r| r.addresses.iter().take(MAX_DEVICE_ADDRESSES).cloned())
            .map(Effect::Dial)
            .collect();
        self.out.extend(dials);
    }

    /// What the tick does for devices: a pairing retried, the other devices dialed.
    pub(crate) fn tick_devices(&mut self) {
        let now = self.now.millis();
        self.retry_pair(now);
        if self.running && self.pairing.is_none() {
            self.dial_siblings();
        }
    }
}
