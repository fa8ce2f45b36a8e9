//! A circle's audit trail as this node holds it ("traçabilité"): every write it accepted —
//! membership operations, notes and their corrections and acknowledgements, messages and
//! their reading, patient-file items and documents — with its author member and device,
//! the author's time and the time this node received it; every envelope or operation it
//! refused, with the reason; and every fork (a device that signed two versions of one
//! position of its log), with both envelopes' hashes.
//!
//! Nothing here is new data: the rows are read from the documents, the membership log and
//! the store's records of receipts, refusals and forks, so the trail is what the node can
//! prove, and the same on every read.

use cercle_crdt::{DocKind, MemberId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Names, NodeError, Operation};
use crate::circle::Circle;
use crate::circle::membership::OpBody;
use crate::identity::LocalIdentity;
use crate::node::NodeCore;
use crate::store::{ItemReceipt, Store};

/// A circle's audit trail, from a date on.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Audit {
    pub circle: String,
    /// Only what was written, refused or received from this time on (milliseconds).
    #[serde(default)]
    pub since: Option<i64>,
}

/// The trail: writes oldest first, then refusals and forks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditTrail {
    pub circle: String,
    pub writes: Vec<AuditWrite>,
    pub refusals: Vec<AuditRefusal>,
    pub forks: Vec<AuditFork>,
}

/// One accepted write.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditWrite {
    /// The author's time (milliseconds), as their device gave it.
    pub at: i64,
    /// When this node received it; absent for what this device wrote (or what it held
    /// before receipts were recorded).
    pub received: Option<i64>,
    /// The author member, and their name when known here.
    pub member: String,
    pub name: Option<String>,
    /// The writing device, when known here.
    pub device: Option<String>,
    /// `membership`, `patient_file`, `liaison_notebook` or `thread`.
    pub document: String,
    /// What was done (`note_written`, `member_added`…).
    pub action: String,
    /// The item or operation.
    pub item: String,
    /// Whom or what it was about, in words (the member added, the document's name…).
    pub about: Option<String>,
}

/// One refused envelope or operation.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditRefusal {
    pub at: i64,
    /// The peer or path it came from.
    pub from: String,
    /// The sending device, when the data decoded.
    pub device: Option<String>,
    /// The reason's code (`bad_signature`, `fork`, `schema`…) and in words.
    pub reason: String,
    pub message: String,
    /// BLAKE3 of the refused bytes.
    pub hash: String,
}

/// Evidence that a device signed two different envelopes for one position of its log.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditFork {
    pub device: String,
    pub member: Option<String>,
    pub name: Option<String>,
    pub document: String,
    pub seq: u64,
    /// BLAKE3 of the envelope held, and of the other one.
    pub first: String,
    pub second: String,
}

impl Operation for Audit {
    type Answer = AuditTrail;

    fn run(self, core: &mut NodeCore) -> Result<AuditTrail, NodeError> {
        let store = core.circles.store.clone();
        let mut trail = match super::closing::find_closed(core, &self.circle) {
            // A circle closed here: the trail kept without content when it was shredded.
            Some(id) => match store.closed_audit(&id)? {
                Some(kept) => serde_json::from_slice(&kept)
                    .map_err(|_| NodeError::internal("the closed circle's trail is damaged"))?,
                None => AuditTrail {
                    circle: id.to_string(),
                    ..AuditTrail::default()
                },
            },
            None => {
                let (c, author) = core.circle_mut(&self.circle)?;
                trail(c, store.as_ref(), author.me)?
            }
        };
        if let Some(since) = self.since {
            trail
                .writes
                .retain(|w| w.at >= since || w.received.is_some_and(|r| r >= since));
            trail.refusals.retain(|r| r.at >= since);
        }
        Ok(trail)
    }
}

/// The trail of `c` as this node (device `me`) holds it.
pub(crate) fn trail(
    c: &Circle,
    store: &dyn Store,
    me: &LocalIdentity,
) -> Result<AuditTrail, NodeError> {
    let keys = c.epoch_keys(me);
    let names = Names::of(c).with_on_call(c, me);
    let me = &me.device();
    let devices = c.certified_devices();
    let receipts = store.receipts(&c.id())?;
    let mut writes = Vec::new();
    let mut row = |at: Timestamp,
                   member: &MemberId,
                   doc: &str,
                   action: &str,
                   item: &str,
                   about: Option<String>| {
        let receipt: Option<&ItemReceipt> = receipts.get(item);
        // No receipt: written here, if by this device's member.
        let device = match receipt {
            Some(r) => r.device,
            None => (devices.get(me) == Some(member)).then_some(*me),
        };
        writes.push(AuditWrite {
            at: at.millis(),
            received: receipt.map(|r| r.at.millis()),
            member: member.to_hex(),
            name: names.get(member),
            device: device.map(|d| d.to_string()),
            document: doc.to_string(),
            action: action.to_string(),
            item: item.to_string(),
            about,
        });
    };

    for op in c.membership().ops() {
        let content = op.content();
        let Some(member) = devices.get(&content.device) else {
            continue;
        };
        let name_of = |m: &MemberId| Some(names.get(m).unwrap_or_else(|| m.short()));
        let (action, about) = match &content.body {
            OpBody::Genesis { .. } => ("circle_created", None),
            OpBody::AddMember { grant, .. } => ("member_added", name_of(&grant.member)),
            OpBody::RemoveMember { member, .. } => ("member_removed", name_of(member)),
            OpBody::ChangeRole { member, role } => (
                "role_changed",
                name_of(member).map(|n| format!("{n}: {}", role.as_str())),
            ),
            OpBody::RotateKey { .. } => ("key_rotated", None),
            OpBody::SetRelays { relays } => ("relays_set", Some(relays.join(" "))),
            OpBody::SetReminder { hours } => ("reminder_set", Some(format!("{hours} h"))),
            OpBody::Close => ("circle_closed", None),
            OpBody::WithdrawConsent { reason, .. } => {
                ("consent_withdrawn", reason.open::<String>(&c.id(), &keys))
            }
            OpBody::AddDevice { certificate, .. } => {
                ("device_added", Some(certificate.device.short()))
            }
            OpBody::RevokeDevice { device, .. } => ("device_revoked", Some(device.short())),
            OpBody::SetOnCall { members, .. } => (
                "on_call_set",
                Some(
                    members
                        .iter()
                        .filter_map(&name_of)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ),
            OpBody::BreakGlass {
                grant,
                until,
                about,
                ..
            } => {
                let name = name_of(&grant.member).unwrap_or_default();
                let until = crate::invite::human_date(*until);
                let why = about
                    .open::<crate::circle::membership::EmergencyAbout>(&c.id(), &keys)
                    .map(|a| a.reason)
                    .unwrap_or_default();
                (
                    "emergency_access",
                    Some(format!("{name}: {why} (until {until})")),
                )
            }
        };
        let item = crate::circle::op_item(&op.hash());
        row(
            Timestamp(content.at),
            member,
            "membership",
            action,
            &item,
            about,
        );
    }
    if c.is_awake() {
        let notebook = DocKind::LiaisonNotebook.as_str();
        for e in c.notebook()?.entries() {
            let kind = Some(e.kind.as_str().to_string());
            row(e.at, &e.author, notebook, "note_written", &e.id, kind);
            for a in &e.amendments {
                row(a.at, &a.author, notebook, "note_corrected", &a.id, None);
            }
            for a in &e.acknowledgements {
                row(a.at, &a.by, notebook, "alert_acknowledged", &a.id, None);
            }
        }
        let thread = DocKind::Thread.as_str();
        for m in c.thread()?.messages() {
            row(m.at, &m.author, thread, "message_written", &m.id, None);
            for r in &m.read_by {
                let item = format!("{}:read:{}", m.id, r.by.short());
                row(r.at, &r.by, thread, "message_read", &item, None);
            }
        }
        if !c.info().team {
            let file = DocKind::PatientFile.as_str();
            for list in cercle_crdt::patient_file::ItemList::ALL {
                for item in c.patient_file()?.items(list) {
                    let about = item
                        .get("title")
                        .or_else(|| item.get("name"))
                        .or_else(|| item.get("label"))
                        .map(|s| format!("{}: {s}", list.as_str()))
                        .or_else(|| Some(list.as_str().to_string()));
                    let action = if item.is_removed() {
                        "item_removed"
                    } else {
                        "item_added"
                    };
                    row(item.added_at, &item.added_by, file, action, &item.id, about);
                }
            }
        }
    }
    // What an on-call professional read under an emergency access, as their node told.
    for read in crate::node::core::emergency::reads(store, &c.id()) {
        writes.push(AuditWrite {
            at: read.at,
            received: (read.device != *me).then_some(read.received),
            member: read.member.to_hex(),
            name: names.get(&read.member),
            device: Some(read.device.to_string()),
            document: read.what.clone(),
            action: "emergency_read".into(),
            item: String::new(),
            about: None,
        });
    }
    writes.sort_by_key(|w| (w.received.unwrap_or(w.at), w.at));

    let refusals = store
        .rejections(&c.id())?
        .into_iter()
        .map(|r| AuditRefusal {
            at: r.at,
            from: r.from,
            device: r.device,
            reason: r.reason["reason"].as_str().unwrap_or("refused").to_string(),
            message: r.message,
            hash: r.hash,
        })
        .collect();
    let forks = store
        .forks(&c.id())?
        .into_iter()
        .map(|f| {
            let member = devices.get(&f.device);
            AuditFork {
                device: f.device.to_string(),
                member: member.map(MemberId::to_hex),
                name: member.and_then(|m| names.get(m)),
                document: f.doc.as_str().to_string(),
                seq: f.seq,
                first: blake3::hash(&f.first).to_hex().to_string(),
                second: blake3::hash(&f.second).to_hex().to_string(),
            }
        })
        .collect();
    Ok(AuditTrail {
        circle: c.info().id.clone(),
        writes,
        refusals,
        forks,
    })
}
