//! Membership commands of a coordinator: add a member (sealing every readable epoch key to
//! the newcomer's devices: history is part of care), remove one (a new epoch sealed to the
//! others only, with a cut-off per removed device), change a role, name the relays. Each is
//! one signed operation appended to the log, staged for the node to make durable.

use cercle_crdt::{MemberId, Role, Timestamp};

use super::keys::{Without, binding, seal_to};
use super::membership::{
    Emergency, EmergencyAbout, MAX_CONSENT_REASON, MAX_EMERGENCY_MILLIS, MAX_ON_CALL, MAX_RELAYS,
    MemberGrant, OnCall, OpBody, OpContent, OpNote, SignedOp, Suspension,
};
use super::{Circle, CircleError, Staged};
use crate::crypto::SecureRng;
use crate::identity::{ContactCard, DeviceCertificate, DeviceId, LocalIdentity};
use crate::store::Batch;

impl Circle {
    /// The local member's role, checked against what they want to do.
    pub(super) fn require_role(
        &self,
        me: &LocalIdentity,
        allowed: impl Fn(Role) -> bool,
        action: &'static str,
    ) -> Result<Role, CircleError> {
        match self.resolution().role(&me.member()) {
            Some(role) if allowed(role) => Ok(role),
            Some(role) => Err(CircleError::NotAllowed {
                role: role.to_string(),
                action,
            }),
            None => Err(CircleError::NotAllowed {
                role: "not a member".into(),
                action,
            }),
        }
    }

    fn require_coordinator(
        &self,
        me: &LocalIdentity,
        action: &'static str,
    ) -> Result<(), CircleError> {
        self.require_role(me, |r| r == Role::Coordinator, action)
            .map(|_| ())
    }

    /// Adds the member of `card` with `role`, as a signed operation by `me`.
    pub fn add_member(
        &mut self,
        me: &LocalIdentity,
        card: &ContactCard,
        role: Role,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<Staged, CircleError> {
        self.require_coordinator(me, "adding members")?;
        if self.resolution().members.contains_key(&card.member) {
            return Err(CircleError::AlreadyMember {
                name: card.profile.name.clone(),
            });
        }
        // History is part of care: the newcomer receives every epoch key this device holds.
        let binding = binding(self.membership.log());
        let mut sealed = Vec::new();
        for (epoch, key) in &self.epoch_keys(me) {
            sealed.extend(seal_to(rng, &binding, (*epoch, key), &card.devices)?);
        }
        let body = OpBody::AddMember {
            grant: MemberGrant {
                member: card.member,
                devices: card.devices.clone(),
                role,
            },
            sealed,
        };
        let mut staged = self.append_op(me, body, now)?;
        self.names.insert(card.member, card.profile.clone());
        self.record_into(&mut staged.batch)?;
        Ok(staged)
    }

    /// Removes `member`; each of their devices is cut off after the last change seen here.
    pub fn remove_member(
        &mut self,
        me: &LocalIdentity,
        member: &MemberId,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<Staged, CircleError> {
        // An emergency access is ended by any member who writes; a member, by a coordinator.
        if self.resolution().emergency.contains_key(member) {
            self.require_role(me, Role::writes_anything, "ending an emergency access")?;
        } else {
            self.require_coordinator(me, "removing members")?;
        }
        let state = self
            .resolution()
            .members
            .get(member)
            .cloned()
            .ok_or_else(|| CircleError::UnknownMember {
                query: member.short(),
            })?;
        let cutoffs = state
            .devices
            .iter()
            .map(|d| Ok((d.device, self.last_seq_of(&d.device.actor())?)))
            .collect::<Result<_, CircleError>>()?;
        // What this node holds of each of the member's logs is still taken from anyone who
        // has it: a member who has not received it yet is not made to lose it.
        let logs = state
            .devices
            .iter()
            .flat_map(|d| {
                cercle_crdt::DocKind::ALL
                    .into_iter()
                    .map(|doc| (d.device, doc, self.held_seq(&d.device, doc)))
            })
            .collect();
        // A new epoch that only the remaining devices can open.
        let (epoch, sealed) = self.new_epoch(Without::Member(member), rng)?;
        let body = OpBody::RemoveMember {
            member: *member,
            cutoffs,
            logs,
            epoch,
            sealed,
        };
        self.append_op(me, body, now)
    }

    /// Adds `certificate`'s device to its member (this device's own member, or any member
    /// for a coordinator), sealing it every epoch key this device reads.
    pub fn add_device(
        &mut self,
        me: &LocalIdentity,
        certificate: &DeviceCertificate,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<Staged, CircleError> {
        if certificate.member != me.member() {
            self.require_coordinator(me, "adding another member's devices")?;
        }
        let binding = binding(self.membership.log());
        let mut sealed = Vec::new();
        for (epoch, key) in &self.epoch_keys(me) {
            sealed.extend(seal_to(rng, &binding, (*epoch, key), [certificate])?);
        }
        let body = OpBody::AddDevice {
            certificate: certificate.clone(),
            sealed,
        };
        self.append_op(me, body, now)
    }

    /// Revokes `device` of `member` (this device's own member, or any member for a
    /// coordinator): it is cut off after the last change seen here from it, and a new epoch
    /// is sealed to every other device.
    pub fn revoke_device(
        &mut self,
        me: &LocalIdentity,
        member: &MemberId,
        device: &DeviceId,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<Staged, CircleError> {
        if *member != me.member() {
            self.require_coordinator(me, "revoking another member's devices")?;
        }
        let logs = cercle_crdt::DocKind::ALL
            .into_iter()
            .map(|doc| (*device, doc, self.held_seq(device, doc)))
            .collect();
        let (epoch, sealed) = self.new_epoch(Without::Device(device), rng)?;
        let body = OpBody::RevokeDevice {
            member: *member,
            device: *device,
            logs,
            epoch,
            sealed,
        };
        self.append_op(me, body, now)
    }

    /// Changes `member`'s role.
    pub fn change_role(
        &mut self,
        me: &LocalIdentity,
        member: &MemberId,
        role: Role,
        now: Timestamp,
    ) -> Result<Staged, CircleError> {
        self.require_coordinator(me, "changing roles")?;
        if !self.resolution().members.contains_key(member) {
            return Err(CircleError::UnknownMember {
                query: member.short(),
            });
        }
        let body = OpBody::ChangeRole {
            member: *member,
            role,
        };
        self.append_op(me, body, now)
    }

    /// Names the relays the circle uses (replacing the earlier list; empty to use none).
    pub fn set_relays(
        &mut self,
        me: &LocalIdentity,
        relays: Vec<String>,
        now: Timestamp,
    ) -> Result<Staged, CircleError> {
        self.require_coordinator(me, "choosing the circle's relays")?;
        if relays.len() > MAX_RELAYS {
            return Err(CircleError::TooManyRelays { max: MAX_RELAYS });
        }
        self.append_op(me, OpBody::SetRelays { relays }, now)
    }

    /// Sets after how many hours an unacknowledged alert is recalled to its addressees
    /// (0: never).
    pub fn set_reminder(
        &mut self,
        me: &LocalIdentity,
        hours: u16,
        now: Timestamp,
    ) -> Result<Staged, CircleError> {
        self.require_coordinator(me, "setting when alerts are recalled")?;
        self.append_op(me, OpBody::SetReminder { hours }, now)
    }

    /// Closes the circle for good (coordinator): every node that takes the operation in,
    /// this one first, shreds the circle.
    pub fn close(&mut self, me: &LocalIdentity, now: Timestamp) -> Result<Staged, CircleError> {
        self.require_coordinator(me, "closing the circle")?;
        self.append_op(me, OpBody::Close, now)
    }

    /// Records the patient's objection to sharing (coordinator or professional): every
    /// member's node stops sending and taking the circle's data, and the new epoch is
    /// sealed to nobody.
    pub fn withdraw_consent(
        &mut self,
        me: &LocalIdentity,
        reason: &str,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<Staged, CircleError> {
        self.require_role(
            me,
            |r| {
                matches!(
                    r,
                    cercle_crdt::Role::Coordinator | cercle_crdt::Role::Professional
                )
            },
            "recording the patient's objection",
        )?;
        let reason = self.seal_note(me, &checked_reason(reason)?, rng)?;
        let epoch = crate::crypto::EpochId::generate(rng);
        let body = OpBody::WithdrawConsent { reason, epoch };
        self.append_op(me, body, now)
    }

    /// Names who may break the glass (replacing the earlier list; empty for no one):
    /// their keys in the clear for the rule, their names sealed with the current epoch.
    pub fn set_on_call(
        &mut self,
        me: &LocalIdentity,
        on_call: Vec<OnCall>,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<Staged, CircleError> {
        self.require_coordinator(me, "naming who may break the glass")?;
        if on_call.len() > MAX_ON_CALL {
            return Err(CircleError::TooManyOnCall { max: MAX_ON_CALL });
        }
        let names = self.seal_note(me, &on_call, rng)?;
        let members = on_call.iter().map(|o| o.member).collect();
        self.append_op(me, OpBody::SetOnCall { members, names }, now)
    }

    /// `value` sealed with the current epoch's key, for an operation.
    fn seal_note<T: serde::Serialize>(
        &self,
        me: &LocalIdentity,
        value: &T,
        rng: &mut SecureRng,
    ) -> Result<OpNote, CircleError> {
        let epoch = self.resolution().epoch.ok_or(CircleError::NoEpochKey)?;
        let keys = self.epoch_keys(me);
        let key = keys.get(&epoch).ok_or(CircleError::NoEpochKey)?;
        Ok(OpNote::seal(rng, &self.id, (epoch, key), value)?)
    }

    /// The on-call list with the names this device can open (a name sealed under an
    /// epoch it does not hold shows as the member's short id).
    pub fn on_call_list(&self, me: &LocalIdentity) -> Vec<OnCall> {
        let r = self.resolution();
        if r.on_call.is_empty() {
            return Vec::new();
        }
        let keys = self.epoch_keys(me);
        let named: Vec<OnCall> = r
            .on_call_names
            .as_ref()
            .and_then(|n| n.open(&self.id, &keys))
            .unwrap_or_default();
        r.on_call
            .iter()
            .map(|m| {
                named
                    .iter()
                    .find(|o| o.member == *m)
                    .cloned()
                    .unwrap_or_else(|| OnCall {
                        member: *m,
                        name: m.short(),
                        profession: String::new(),
                    })
            })
            .collect()
    }

    /// The emergency accesses under way, with who and why where this device can open it.
    pub fn emergencies(
        &self,
        me: &LocalIdentity,
    ) -> Vec<(MemberId, Emergency, Option<EmergencyAbout>)> {
        let r = self.resolution();
        if r.emergency.is_empty() {
            return Vec::new();
        }
        let keys = self.epoch_keys(me);
        r.emergency
            .iter()
            .map(|(m, e)| (*m, e.clone(), e.about.open(&self.id, &keys)))
            .collect()
    }

    /// The patient's objection, if recorded, with its reason as this device opens it.
    pub fn suspension(&self, me: &LocalIdentity) -> Option<(&Suspension, Option<String>)> {
        let s = self.resolution().suspended.as_ref()?;
        let keys = self.epoch_keys(me);
        Some((s, s.reason.open(&self.id, &keys)))
    }

    /// What a change meets in a circle whose sharing the patient suspended.
    pub(super) fn suspended_error(&self, me: &LocalIdentity) -> Option<CircleError> {
        self.suspension(me)
            .map(|(_, reason)| CircleError::Suspended {
                reason: reason.unwrap_or_else(|| {
                    "its reason is sealed with a key this device does not hold".into()
                }),
            })
    }

    /// Lets the on-call professional of `card` read the circle until `until` (at most 24
    /// hours from now) for `reason`: they are added as an observer and given every epoch
    /// key this device reads (without the earlier epochs', a circle that ever rotated its
    /// key would show them nothing: the documents are built from their whole history).
    /// Any member who writes grants it; the list is the coordinator's.
    #[allow(clippy::too_many_arguments)]
    pub fn break_glass(
        &mut self,
        me: &LocalIdentity,
        card: &ContactCard,
        reason: &str,
        until: i64,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<Staged, CircleError> {
        self.require_role(me, Role::writes_anything, "granting an emergency access")?;
        if self.resolution().emergency.contains_key(&me.member()) {
            return Err(CircleError::NotAllowed {
                role: "emergency access".into(),
                action: "granting an emergency access",
            });
        }
        if !self.resolution().on_call(&card.member) {
            return Err(CircleError::NotOnCall {
                name: card.profile.name.clone(),
            });
        }
        if self.resolution().members.contains_key(&card.member) {
            return Err(CircleError::AlreadyMember {
                name: card.profile.name.clone(),
            });
        }
        let reason = checked_reason(reason)?;
        let until = until.min(now.millis() + MAX_EMERGENCY_MILLIS);
        let epoch = self.resolution().epoch.ok_or(CircleError::NoEpochKey)?;
        let keys = self.epoch_keys(me);
        let key = keys.get(&epoch).ok_or(CircleError::NoEpochKey)?;
        let binding = binding(self.membership.log());
        let mut sealed = Vec::new();
        for (e, k) in &keys {
            sealed.extend(seal_to(rng, &binding, (*e, k), &card.devices)?);
        }
        let about = EmergencyAbout {
            name: card.profile.name.clone(),
            profession: card.profile.profession.clone(),
            reason: reason.to_string(),
        };
        let about = OpNote::seal(rng, &self.id, (epoch, key), &about)?;
        let body = OpBody::BreakGlass {
            grant: MemberGrant {
                member: card.member,
                devices: card.devices.clone(),
                role: Role::Observer,
            },
            until,
            sealed,
            about,
        };
        let mut staged = self.append_op(me, body, now)?;
        self.names.insert(card.member, card.profile.clone());
        self.record_into(&mut staged.batch)?;
        Ok(staged)
    }

    /// The operation that recorded the patient's objection, once recorded.
    pub fn withdrawal_op(&self) -> Option<SignedOp> {
        let hash = self.resolution().suspended.as_ref()?.op;
        self.membership.log().get(&hash).cloned()
    }

    /// The operation that closed the circle, once it is closed (the log holds only
    /// operations valid in their own past, so any `Close` in it is the coordinator's).
    pub fn close_op(&self) -> Option<SignedOp> {
        if !self.resolution().closed {
            return None;
        }
        self.membership
            .log()
            .ops()
            .find(|op| matches!(op.content().body, OpBody::Close))
            .cloned()
    }

    /// The last envelope held here from `device` in `doc`: the receive checks' head while
    /// awake, the store's at rest.
    fn held_seq(&self, device: &DeviceId, doc: cercle_crdt::DocKind) -> u64 {
        let stored = self
            .progress
            .get(&doc)
            .and_then(|s| s.applied.get(device).copied())
            .unwrap_or(0);
        self.log.head_seq(device, doc).max(stored)
    }

    /// The highest Automerge sequence number of `actor` in any of the circle's documents.
    fn last_seq_of(&mut self, actor: &cercle_crdt::ActorId) -> Result<u64, CircleError> {
        let docs = self.docs_mut()?;
        Ok(cercle_crdt::DocKind::ALL
            .into_iter()
            .map(|k| docs.replica_mut(k).last_seq_of(actor))
            .max()
            .unwrap_or(0))
    }

    /// Signs `body` on top of the log's heads and appends it.
    pub(super) fn append_op(
        &mut self,
        me: &LocalIdentity,
        body: OpBody,
        now: Timestamp,
    ) -> Result<Staged, CircleError> {
        if !matches!(body, OpBody::Close)
            && let Some(e) = self.suspended_error(me)
        {
            return Err(e);
        }
        let op = SignedOp::sign(
            me,
            OpContent {
                circle: Some(self.membership.log().circle()),
                parents: self.membership.log().heads(),
                device: me.device(),
                at: now.millis(),
                body,
            },
        );
        self.membership.append(op.clone())?;
        self.keys.forget();
        let mut batch = Batch::new();
        batch.op(&self.id, &op);
        Ok(Staged {
            batch,
            envelopes: Vec::new(),
            membership_changed: true,
        })
    }
}

/// A reason as an operation records it (a patient's objection, an emergency access):
/// trimmed, not empty, at most [`MAX_CONSENT_REASON`] bytes.
fn checked_reason(reason: &str) -> Result<&str, CircleError> {
    let reason = reason.trim();
    let fault = if reason.is_empty() {
        cercle_crdt::schema::Fault::Empty
    } else if reason.len() > MAX_CONSENT_REASON {
        cercle_crdt::schema::Fault::TooLong {
            len: reason.len(),
            max: MAX_CONSENT_REASON,
        }
    } else {
        return Ok(reason);
    };
    Err(CircleError::Write(cercle_crdt::WriteError::InvalidValue {
        field: "reason",
        reason: fault,
    }))
}
