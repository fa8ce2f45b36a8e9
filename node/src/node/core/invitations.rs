//! Circles a member added this node to, waiting for its user's answer. A node joins a circle
//! only through an invite its user followed (`cercle join CODE`) or an explicit acceptance:
//! data of a circle not held here that makes this device a member becomes an
//! **invitation** ("Dr X added you to the circle of Jeanne Durand"), accepted or declined
//! with `cercle circle accept|decline` or from the web UI. Anyone holding someone's contact
//! card can make them a member of a circle of their own; they cannot make them hold it.
//!
//! What an offer may cost is bounded before the work: a circle declined, one already
//! invited to, or one more from a peer with [`MAX_PER_PEER`] invitations pending is
//! dropped unread; at most [`MAX_INVITATIONS`] wait, each holding the one message it came
//! with (at most a sync message's size), and a colleague's invitation (from a device this
//! node shares a circle with) takes the place of a stranger's when they are all taken.
//! Declined circles are remembered in the store and never offered to the user again.
//!
//! A user may accept a colleague's circles always (`circle accept --always`: a practice's
//! nurse and its GP, who adds her to each of his 1 000 patients' circles): that member is
//! remembered in the store ([`MAX_TRUSTED`] at most), their pending invitations are
//! accepted, and every later circle in which that member added this device is joined at
//! once, without an invitation and past the bounds above (whether a circle is such is
//! first read from its operations undecoded by signature, from the devices of that member
//! the circles held here know; the join then checks every signature as always).

use std::collections::BTreeSet;

use cercle_crdt::{DocKind, MemberId, Role};

use super::NodeCore;
use crate::circle::membership::{CircleId, SignedOp};
use crate::circle::{Circle, CircleInfo, Staged};
use crate::envelope::Envelope;
use crate::identity::DeviceId;
use crate::ops::NodeError;
use crate::store::{Batch, Store, Tree};
use crate::sync::Received;

/// Invitations waiting at once, at most.
pub(crate) const MAX_INVITATIONS: usize = 16;
/// Invitations pending from one peer device, at most.
pub(crate) const MAX_PER_PEER: usize = 4;
/// Colleagues whose circles are accepted always, at most.
pub(crate) const MAX_TRUSTED: usize = 256;
/// The store's key prefix of declined circles.
const DECLINED: &str = "declined/";
/// The store's key prefix of colleagues whose circles are accepted always.
const TRUSTED: &str = "trusted/";

/// A circle this node was added to, as its user sees it before answering.
#[derive(Debug)]
pub(crate) struct Invitation {
    /// The peer device the circle came from.
    pub(crate) from: DeviceId,
    /// Whether that device shares a circle with this node.
    pub(crate) colleague: bool,
    /// The member who added this device, and their name if known.
    pub(crate) added_by: Option<MemberId>,
    pub(crate) added_by_name: Option<String>,
    /// The patient, if the patient file came with the offer.
    pub(crate) patient: String,
    pub(crate) role: Option<Role>,
    pub(crate) members: usize,
    /// When it arrived (milliseconds).
    pub(crate) at: i64,
    /// The circle as joined to show it (its operations checked, the patient file and
    /// thread applied), with the writes that needs: taken as it is on acceptance.
    joined: Box<Joined>,
    /// The message it came with, but the envelopes the preview took: given to the circle
    /// on acceptance.
    data: Received,
}

/// An offered circle joined in memory, not yet held.
#[derive(Debug)]
struct Joined {
    circle: Circle,
    /// The operations, record and envelopes to store once accepted.
    staged: Staged,
    /// What the preview refused, recorded once accepted.
    rejected: Vec<(&'static str, crate::store::RejectionRecord)>,
}

/// Whether `op` adds a member with `device` among their devices.
fn adds_member_device(op: &SignedOp, device: DeviceId) -> bool {
    op.content()
        .body
        .grant()
        .is_some_and(|g| g.devices.iter().any(|d| d.device == device))
}

/// The declined circles the store remembers.
pub(super) fn declined(store: &dyn Store) -> BTreeSet<CircleId> {
    listed(store, DECLINED, "the declined circles")
}

/// The colleagues whose circles the store says are accepted always.
pub(super) fn trusted(store: &dyn Store) -> BTreeSet<MemberId> {
    listed(
        store,
        TRUSTED,
        "the colleagues whose circles are accepted always",
    )
}

/// The ids the store lists in `Meta` under `prefix` followed by their hex (`what` names
/// them in the log should the store not answer).
fn listed<T: std::str::FromStr + Ord>(store: &dyn Store, prefix: &str, what: &str) -> BTreeSet<T> {
    match store.scan(Tree::Meta, prefix.as_bytes()) {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|(k, _)| {
                std::str::from_utf8(k.get(prefix.len()..)?)
                    .ok()?
                    .parse()
                    .ok()
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read {what}");
            BTreeSet::new()
        }
    }
}

impl NodeCore {
    /// Whether this node's user followed an invite to `circle` (a join under way or done).
    pub(super) fn followed_invite(&self, circle: &CircleId) -> bool {
        self.joins.values().any(|j| {
            j.circle() == Some(*circle)
                && !matches!(j.state, super::invites::JoinState::Refused(..))
        })
    }

    /// Data of a circle not held here, not followed by an invite: an invitation if it makes
    /// this device a member, within the bounds; otherwise dropped.
    pub(super) fn offered(&mut self, from: DeviceId, mut r: Received) {
        let circle = r.circle;
        let invited = &self.circles.invited;
        if self.circles.declined.contains(&circle) || invited.contains_key(&circle) {
            return;
        }
        let colleague = self.shares_a_circle(&from);
        // A circle a trusted colleague added this device to is joined at once below, once
        // every operation's signature is checked: it passes the bounds.
        let trusted = self.added_by_trusted(&r.ops);
        if !trusted && !self.room_for_offer(from, colleague) {
            return;
        }
        // The membership first (its operations decoded and resolved, bounded by the
        // message's size), then, in memory only, what the invitation shows: who the
        // patient is (the patient file) and who added this device (the profiles in the
        // thread). The notebook, the bulk of a circle, is applied once, when accepted.
        let (mut trial, mut staged) = match Circle::join(&self.me, circle, &r.ops) {
            Ok(joined) => joined,
            Err(e) => {
                tracing::debug!(%circle, peer = %from, reason = %e, "an offered circle does not make this device a member");
                return;
            }
        };
        let (shown, rest): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            std::mem::take(&mut r.envelopes).into_iter().partition(|b| {
                matches!(
                    Envelope::peek_doc(b),
                    Some(DocKind::PatientFile | DocKind::Thread)
                )
            });
        r.envelopes = rest;
        let receipt = trial.receive(
            &self.me,
            &from.to_string(),
            &[],
            &shown,
            self.now.timestamp(),
        );
        staged.extend(receipt.staged);
        let me = self.me.device();
        let adder = trial
            .membership()
            .ops()
            .filter(|o| adds_member_device(o, me))
            .filter_map(|o| {
                let device = o.content().device;
                trial
                    .resolution()
                    .member_of(&device)
                    .map(|(m, _)| (device, *m))
            })
            .last();
        let added_by = adder.map(|(_, m)| m);
        let added_by_name = added_by.and_then(|m| {
            trial
                .profiles()
                .get(&m)
                .map(|p| p.name.clone())
                .or_else(|| self.colleague_name(&m))
        });
        let invitation = Invitation {
            from,
            colleague,
            added_by,
            added_by_name,
            patient: trial.info().patient.clone(),
            role: trial.resolution().role(&self.me.member()),
            members: trial.resolution().members.len(),
            at: self.now.millis(),
            joined: Box::new(Joined {
                circle: trial,
                staged,
                rejected: receipt.rejected,
            }),
            data: r,
        };
        // Joined at once only if the device that added this one is, in a circle held
        // here, a current device of the trusted colleague (not one revoked since: a stolen
        // laptop of theirs gets an invitation like anyone's).
        if adder.is_some_and(|(device, m)| self.trusted_device(&device, &m)) {
            tracing::info!(%circle, peer = %from, "added to a circle by a colleague whose circles are accepted always");
            self.circles.invited.insert(circle, invitation);
            if let Err(e) = self.accept_invitation(circle) {
                tracing::error!(%circle, error = %e, "cannot join a trusted colleague's circle");
            }
            return;
        }
        // The operations named a trusted colleague's device, but checked, the member who
        // added this device is someone else: an invitation like any other, within the
        // bounds.
        if trusted && !self.room_for_offer(from, colleague) {
            return;
        }
        tracing::info!(%circle, peer = %from, "added to a circle: waiting for this user's answer");
        self.out
            .push(super::Effect::Event(crate::api::NodeEvent::Invited {
                circle: circle.to_string(),
            }));
        self.circles.invited.insert(circle, invitation);
    }

    /// Whether an invitation offered by `from` fits within the bounds of pending ones: at
    /// most [`MAX_PER_PEER`] from one peer and [`MAX_INVITATIONS`] in all, where a
    /// colleague's invitation replaces the oldest stranger's and a stranger's waits for
    /// room. An offer that does not fit is dropped, and its peer asked again later.
    fn room_for_offer(&mut self, from: DeviceId, colleague: bool) -> bool {
        let invited = &self.circles.invited;
        if invited.values().filter(|i| i.from == from).count() >= MAX_PER_PEER {
            tracing::warn!(peer = %from, "a peer offers more circles than it may have pending; dropped");
            self.crowded(from);
            return false;
        }
        if invited.len() >= MAX_INVITATIONS {
            let stranger = invited
                .iter()
                .filter(|(_, i)| !i.colleague)
                .min_by_key(|(_, i)| i.at)
                .map(|(c, _)| *c);
            match stranger {
                Some(old) if colleague => {
                    self.circles.invited.remove(&old);
                }
                _ => {
                    tracing::warn!(peer = %from, "too many invitations pending; an offer was dropped");
                    self.crowded(from);
                    return false;
                }
            }
        }
        true
    }

    /// An offer from `from` was dropped at the bounds: once an invitation is answered, that
    /// peer is asked for a new round, which offers its circles again (only connected peers
    /// are remembered, until they disconnect).
    fn crowded(&mut self, from: DeviceId) {
        if self.peers.contains_key(&from) {
            self.crowded.insert(from);
        }
    }

    /// An invitation was answered: the peers whose offers were dropped meanwhile start a
    /// new round, so that the next circles they offer come now, not at the next
    /// anti-entropy round.
    fn room_for_invitations(&mut self) {
        let now = self.now.millis();
        for device in std::mem::take(&mut self.crowded) {
            if let Some(peer) = self.peers.get_mut(&device) {
                let round = peer.sync.resync(&self.circles, now);
                self.send_all(device, round);
            }
        }
    }

    /// Whether `ops` (decoded, signatures not checked yet) add this device to a circle by
    /// a device that the circles held here know as a trusted colleague's.
    fn added_by_trusted(&self, ops: &[Vec<u8>]) -> bool {
        if self.circles.trusted.is_empty() {
            return false;
        }
        let me = self.me.device();
        ops.iter()
            .filter_map(|b| SignedOp::peek(b).ok())
            .filter(|o| adds_member_device(o, me))
            .any(|o| {
                let by = o.content().device;
                self.circles.open.values().any(|c| {
                    c.resolution()
                        .member_of(&by)
                        .is_some_and(|(m, _)| self.circles.trusted.contains(m))
                })
            })
    }

    /// Whether `device` is a current device of `member`, a colleague whose circles are
    /// accepted always, in a circle held here.
    fn trusted_device(&self, device: &DeviceId, member: &MemberId) -> bool {
        self.circles.trusted.contains(member)
            && self.circles.open.values().any(|c| {
                c.resolution()
                    .member_of(device)
                    .is_some_and(|(m, _)| m == member)
            })
    }

    /// Accepts the invitation to `circle`, and every later circle its adder adds this
    /// device to: that member is remembered, and their other pending invitations accepted.
    pub(crate) fn accept_always(&mut self, circle: CircleId) -> Result<Vec<CircleInfo>, NodeError> {
        let adder = self
            .circles
            .invited
            .get(&circle)
            .ok_or_else(|| NodeError::not_found("no invitation to this circle is waiting"))?
            .added_by
            .ok_or_else(|| {
                NodeError::bad_input(
                    "who added you to this circle is not known; accept it without --always",
                )
            })?;
        if !self.circles.trusted.contains(&adder) {
            if self.circles.trusted.len() >= MAX_TRUSTED {
                return Err(NodeError::bad_input(format!(
                    "the circles of {MAX_TRUSTED} colleagues are already accepted always; accept this one without --always"
                )));
            }
            self.circles.trusted.insert(adder);
            let mut batch = Batch::new();
            batch.meta(
                &format!("{TRUSTED}{}", adder.to_hex()),
                &self.now.millis().to_be_bytes(),
            );
            self.write_batch(batch, Default::default());
            tracing::info!(member = %adder, "a colleague's circles are accepted always");
        }
        let theirs: Vec<CircleId> = self
            .circles
            .invited
            .iter()
            .filter(|(c, i)| **c != circle && i.added_by == Some(adder))
            .map(|(c, _)| *c)
            .collect();
        let mut joined = vec![self.accept_invitation(circle)?];
        for c in theirs {
            joined.push(self.accept_invitation(c)?);
        }
        Ok(joined)
    }

    /// Accepts the invitation to `circle`: joins it from the data it came with, then asks
    /// the members for the rest.
    pub(crate) fn accept_invitation(&mut self, circle: CircleId) -> Result<CircleInfo, NodeError> {
        let invitation = self
            .circles
            .invited
            .remove(&circle)
            .ok_or_else(|| NodeError::not_found("no invitation to this circle is waiting"))?;
        let from = invitation.from;
        // Joined as shown: the membership is not checked a second time.
        let Joined {
            circle: joined,
            mut staged,
            rejected,
        } = *invitation.joined;
        for (code, record) in &rejected {
            if self.refused(from, code) {
                staged.batch.rejection(&circle, record);
            }
        }
        tracing::info!(%circle, "joined a circle");
        self.circles.put_open(circle, joined);
        self.stage_from(circle, staged, Some(from));
        self.take_data(from, invitation.data, true);
        self.membership_changed(circle);
        self.room_for_invitations();
        self.circles
            .open
            .get(&circle)
            .map(|c| c.info().clone())
            .ok_or_else(|| NodeError::internal("the circle joined is not open"))
    }

    /// Declines the invitation to `circle`; it is remembered, and never offered again.
    pub(crate) fn decline_invitation(&mut self, circle: CircleId) -> Result<(), NodeError> {
        if self.circles.invited.remove(&circle).is_none() {
            return Err(NodeError::not_found(
                "no invitation to this circle is waiting",
            ));
        }
        self.circles.declined.insert(circle);
        self.room_for_invitations();
        let mut batch = Batch::new();
        batch.meta(
            &format!("{DECLINED}{circle}"),
            &self.now.millis().to_be_bytes(),
        );
        self.write_batch(batch, Default::default());
        tracing::info!(%circle, "declined an invitation");
        Ok(())
    }

    /// The invitation whose circle id starts with `query`.
    pub(crate) fn find_invitation(&self, query: &str) -> Result<CircleId, NodeError> {
        let q = query.trim().to_lowercase();
        let found: Vec<CircleId> = self
            .circles
            .invited
            .keys()
            .filter(|c| !q.is_empty() && c.to_string().starts_with(&q))
            .copied()
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(NodeError::not_found(format!(
                "no invitation waits for a circle {query:?}; `cercle circle list` shows them"
            ))),
            _ => Err(NodeError::bad_input(format!(
                "{query:?} names several invitations; give more of the circle's id"
            ))),
        }
    }

    /// Whether `device` is a member of a circle held here.
    fn shares_a_circle(&self, device: &DeviceId) -> bool {
        self.circles
            .open
            .values()
            .any(|c| c.resolution().member_of(device).is_some())
    }

    /// A member's name as a circle held here knows it.
    fn colleague_name(&self, member: &MemberId) -> Option<String> {
        self.circles
            .open
            .values()
            .find_map(|c| c.profiles().get(member).map(|p| p.name.clone()))
    }
}
