//! Circles: the ones held here, a new one around a patient, and one circle's members, roles,
//! relays and key epoch.

use std::collections::BTreeMap;

use cercle_crdt::{IdentityUpdate, MemberId, Role};
use serde::{Deserialize, Serialize};

use super::{NodeError, Operation};
use crate::circle::{About, Circle, CircleInfo};
use crate::identity::{LocalIdentity, Profile};
use crate::node::NodeCore;
use crate::store::Store;

/// The circles held here.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CircleList {}

/// Circles, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Circles {
    pub circles: Vec<CircleInfo>,
    /// Circles of the store that could not be opened: neither synced nor written.
    #[serde(default)]
    pub damaged: Vec<DamagedCircle>,
    /// Circles a member added this node to, waiting for an answer (`circle accept` or
    /// `circle decline`).
    #[serde(default)]
    pub invitations: Vec<InvitationRow>,
    /// Circles closed and shredded here: what is kept of them.
    #[serde(default)]
    pub closed: Vec<super::closing::ClosedRow>,
}

/// A circle this node was added to, before its user answers.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InvitationRow {
    pub circle: String,
    /// The patient, if known yet.
    pub patient: String,
    /// The member who added this device (hex), and their name if known.
    pub added_by: Option<String>,
    pub added_by_name: Option<String>,
    /// The role given to this member.
    pub role: Option<Role>,
    pub members: usize,
    /// The peer it came from, and whether that peer shares a circle with this node.
    pub from: String,
    pub colleague: bool,
    /// Milliseconds since the epoch.
    pub at: i64,
}

/// Accepts an invitation: this node joins the circle.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CircleAccept {
    pub circle: String,
    /// Also accept, now and from now on, every circle the member who added this device
    /// adds it to (a colleague of the practice): joined at once, without an invitation.
    #[serde(default)]
    pub always: bool,
}

impl Operation for CircleAccept {
    type Answer = Circles;

    fn run(self, core: &mut NodeCore) -> Result<Circles, NodeError> {
        let circle = core.find_invitation(&self.circle)?;
        let circles = if self.always {
            core.accept_always(circle)?
        } else {
            vec![core.accept_invitation(circle)?]
        };
        Ok(Circles {
            circles,
            damaged: Vec::new(),
            invitations: Vec::new(),
            closed: Vec::new(),
        })
    }
}

/// Declines an invitation: the circle is never offered again.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CircleDecline {
    pub circle: String,
}

/// An invitation declined.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Declined {
    pub circle: String,
}

impl Operation for CircleDecline {
    type Answer = Declined;

    fn run(self, core: &mut NodeCore) -> Result<Declined, NodeError> {
        let circle = core.find_invitation(&self.circle)?;
        core.decline_invitation(circle)?;
        Ok(Declined {
            circle: circle.to_string(),
        })
    }
}

/// A circle held here that could not be opened.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DamagedCircle {
    pub id: String,
    /// Why, in one sentence.
    pub reason: String,
}

/// The circles as listed, oldest first: each with its patient's birth date and the other
/// circles probably for the same patient (identity vigilance: the same INS, or the same
/// names and birth date).
fn listed<'a>(open: impl Iterator<Item = &'a Circle>) -> Vec<CircleInfo> {
    let mut same: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut circles: Vec<CircleInfo> = Vec::new();
    for c in open {
        // From the circle's record: listing opens no document.
        let (birth_date, ins, names) = c.listed_identity();
        let mut info = c.info().clone();
        info.birth_date = birth_date.map(str::to_string);
        if let Some(ins) = ins {
            same.entry(format!("ins {ins}"))
                .or_default()
                .push(info.id.clone());
        }
        if let (Some((f, g)), Some(b)) = (names, birth_date) {
            let key = format!(
                "name {}|{}|{b}",
                f.trim().to_lowercase(),
                g.trim().to_lowercase()
            );
            same.entry(key).or_default().push(info.id.clone());
        }
        circles.push(info);
    }
    for ids in same.values().filter(|ids| ids.len() > 1) {
        for info in circles.iter_mut().filter(|i| ids.contains(&i.id)) {
            for other in ids.iter().filter(|o| **o != info.id) {
                if !info.probable_duplicates.contains(other) {
                    info.probable_duplicates.push(other.clone());
                }
            }
        }
    }
    circles.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    circles
}

impl Operation for CircleList {
    type Answer = Circles;

    fn run(self, core: &mut NodeCore) -> Result<Circles, NodeError> {
        let circles = listed(core.circles.open.values());
        let damaged = core
            .circles
            .damaged
            .iter()
            .map(|(id, reason)| DamagedCircle {
                id: id.to_string(),
                reason: reason.clone(),
            })
            .collect();
        let invitations = core
            .circles
            .invited
            .iter()
            .map(|(id, i)| InvitationRow {
                circle: id.to_string(),
                patient: i.patient.clone(),
                added_by: i.added_by.map(|m| m.to_hex()),
                added_by_name: i.added_by_name.clone(),
                role: i.role,
                members: i.members,
                from: i.from.to_string(),
                colleague: i.colleague,
                at: i.at,
            })
            .collect();
        let closed = core
            .circles
            .closed
            .iter()
            .map(|(id, t)| super::closing::ClosedRow::of(id, t))
            .collect();
        Ok(Circles {
            circles,
            damaged,
            invitations,
            closed,
        })
    }
}

/// A new circle around a patient ("Jeanne Marie Durand": the last word is the family name).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CircleCreate {
    /// The patient's name as one text, given names first ("Marie-Claire de La Fontaine");
    /// may be left empty when `family_name` is given.
    #[serde(default)]
    pub patient: String,
    /// YYYY-MM-DD.
    #[serde(default)]
    pub birth_date: Option<String>,
    /// The family name and given names as separate fields, which `patient` then need not
    /// give (names the split below would get wrong: "Dupont Martin").
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub given_names: Option<String>,
    /// Instead of a patient: the name of a team's own circle (a health centre's staff
    /// thread, the on-call rota), which holds messages and documents only.
    #[serde(default)]
    pub team: Option<String>,
}

/// Words that belong to the family name that follows them ("de La Fontaine", "Le Gall").
const NAME_PARTICLES: &[&str] = &[
    "de", "du", "des", "d'", "le", "la", "les", "van", "von", "der", "den", "da", "di", "del",
    "della", "dos", "ben", "el", "al", "mac", "st", "saint", "sainte",
];

/// "Marie-Claire de La Fontaine" as (given names, family name): the last word, with the
/// particles right before it, is the family name; the rest the given names.
pub fn split_name(name: &str) -> (Option<String>, String) {
    let words: Vec<&str> = name.split_whitespace().collect();
    let Some(last) = words.len().checked_sub(1) else {
        return (None, String::new());
    };
    let mut first_family = last;
    while first_family > 1
        && NAME_PARTICLES.contains(&words[first_family - 1].to_lowercase().as_str())
    {
        first_family -= 1;
    }
    let given = words[..first_family].join(" ");
    (
        (!given.is_empty()).then_some(given),
        words[first_family..].join(" "),
    )
}

impl CircleCreate {
    /// A circle for `patient`, with nothing else said about them.
    pub fn for_patient(patient: impl Into<String>) -> CircleCreate {
        CircleCreate {
            patient: patient.into(),
            birth_date: None,
            family_name: None,
            given_names: None,
            team: None,
        }
    }

    /// What the circle is about: a team named, or the patient given.
    fn about(&self) -> Result<About, NodeError> {
        match self.team.as_deref().map(str::trim) {
            Some(_) if !self.patient.trim().is_empty() || self.family_name.is_some() => {
                Err(NodeError::bad_input(
                    "a circle is about a patient or a team, not both: give --patient or --team",
                ))
            }
            Some("") => Err(NodeError::bad_input(
                "the team's name is empty: pass it as --team \"Équipe de la MSP\"",
            )),
            Some(name) => Ok(About::Team(name.to_string())),
            None => Ok(About::Patient(self.identity()?)),
        }
    }

    /// The patient's identity as the request gives it, checked.
    fn identity(&self) -> Result<IdentityUpdate, NodeError> {
        let patient = self.patient.trim();
        let family = self
            .family_name
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty());
        if patient.is_empty() && family.is_none() {
            return Err(NodeError::bad_input(
                "the patient's name is empty: pass it as --patient \"Jeanne Durand\", or --family-name and --given-names",
            ));
        }
        if let Some(d) = &self.birth_date {
            cercle_crdt::schema::parse_date(d).map_err(|_| {
                NodeError::bad_input(format!(
                    "--birth-date {d:?} is not a valid date: use YYYY-MM-DD, e.g. 1941-05-12"
                ))
            })?;
        }
        let (given, family) = match family {
            Some(f) => (
                self.given_names
                    .as_deref()
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string),
                f.to_string(),
            ),
            None => split_name(patient),
        };
        Ok(IdentityUpdate {
            family_name: Some(family),
            given_names: given,
            birth_date: self.birth_date.clone(),
            ..Default::default()
        })
    }
}

impl Operation for CircleCreate {
    type Answer = Circles;

    fn run(self, core: &mut NodeCore) -> Result<Circles, NodeError> {
        let about = self.about()?;
        let a = core.author();
        let (c, staged) = Circle::create_about(a.me, &about, a.now, a.rng)?;
        let info = c.info().clone();
        let id = c.id();
        core.circles.put_open(id, c);
        // No member shares it yet; relays (which keep a mailbox of every circle) get all
        // of it from the Hello that follows once durable.
        core.stage(id, staged);
        core.publish_profile(id);
        // As listed: with the circles probably for the same patient, told at once.
        let info = listed(core.circles.open.values())
            .into_iter()
            .find(|i| i.id == info.id)
            .unwrap_or(info);
        Ok(Circles {
            circles: vec![info],
            damaged: Vec::new(),
            invitations: Vec::new(),
            closed: Vec::new(),
        })
    }
}

/// A circle's members, roles, relays and key epoch.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CircleShow {
    pub circle: String,
}

/// A circle, its members and key epoch.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CircleSummary {
    pub id: String,
    /// The patient's name, or the team's for a team circle.
    pub patient: String,
    /// A team's own circle: messages and documents only.
    pub team: bool,
    pub epoch: Option<String>,
    pub closed: bool,
    pub members: Vec<MemberRow>,
    pub removed: Vec<String>,
    /// Members' devices revoked (lost, stolen, replaced), oldest first.
    #[serde(default)]
    pub revoked_devices: Vec<RevokedDevice>,
    /// The relays the circle uses.
    pub relays: Vec<String>,
    /// After how many hours an unacknowledged alert is recalled to its addressees (0: never).
    pub reminder_hours: u16,
    pub void_operations: usize,
    pub waiting_operations: usize,
    /// Envelopes and operations from peers refused (recorded with their reasons).
    pub refused: usize,
    /// Devices that signed two versions of one position of their log (`cercle audit`
    /// shows the evidence).
    #[serde(default)]
    pub forks: Vec<ForkNotice>,
    /// The patient's objection to sharing, once recorded: the circle is read-only.
    #[serde(default)]
    pub suspended: Option<SuspensionRow>,
    /// Who may break the glass (the coordinator's list).
    #[serde(default)]
    pub on_call: Vec<OnCallRow>,
    /// Emergency accesses under way (until their member is removed).
    #[serde(default)]
    pub emergency: Vec<EmergencyRow>,
}

/// An on-call professional a circle names.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OnCallRow {
    pub member: String,
    pub name: String,
    pub profession: String,
}

impl OnCallRow {
    pub(crate) fn of(o: crate::circle::membership::OnCall) -> OnCallRow {
        OnCallRow {
            member: o.member.to_hex(),
            name: o.name,
            profession: o.profession,
        }
    }
}

/// An emergency access, as the team sees it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EmergencyRow {
    /// Who reads (hex, and name and profession when this device can open them).
    pub member: String,
    pub name: Option<String>,
    pub profession: Option<String>,
    /// Why, as they gave it.
    pub reason: Option<String>,
    /// When granted and until when (milliseconds), and by whom.
    pub at: i64,
    pub until: i64,
    pub granted_by: Option<String>,
    pub granted_by_name: Option<String>,
}

/// The patient's objection to sharing, as the team sees it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SuspensionRow {
    /// When (the recording device's time, milliseconds), by whom, and why.
    pub at: i64,
    pub by: Option<String>,
    pub by_name: Option<String>,
    pub reason: String,
    /// The relays' signed receipts of the circle's deletion.
    pub receipts: Vec<super::closing::ReceiptRow>,
}

/// A device caught signing two versions of its log, as the team sees it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ForkNotice {
    pub device: String,
    pub name: Option<String>,
    pub document: String,
    pub seq: u64,
}

/// A member's device revoked from a circle, as the team sees it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RevokedDevice {
    pub member: String,
    pub name: Option<String>,
    pub device: String,
    /// When, as the revoking device wrote it (milliseconds).
    pub at: i64,
}

/// One member of a circle.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberRow {
    pub member: String,
    pub name: Option<String>,
    pub profession: Option<String>,
    pub role: Role,
    pub devices: Vec<String>,
    /// How the profile the member signed stands against the directory imported here.
    #[serde(default)]
    pub directory: crate::directory::Standing,
}

impl Operation for CircleShow {
    type Answer = CircleSummary;

    fn run(self, core: &mut NodeCore) -> Result<CircleSummary, NodeError> {
        let store = core.circles.store.clone();
        let (c, a) = core.circle_mut(&self.circle)?;
        let refused = store.rejections(&c.id()).map_or(0, |r| r.len());
        Ok(summary(c, a.me, refused, store.as_ref()))
    }
}

/// A circle's members and epoch, for people.
pub(crate) fn summary(
    c: &Circle,
    me: &LocalIdentity,
    refused: usize,
    store: &dyn Store,
) -> CircleSummary {
    let r = c.resolution();
    let profiles = c.profiles();
    let on_call: Vec<OnCallRow> = c.on_call_list(me).into_iter().map(OnCallRow::of).collect();
    let devices = c.certified_devices();
    let emergency = c
        .emergencies(me)
        .into_iter()
        .map(|(m, e, about)| {
            let by = devices.get(&e.by).copied();
            EmergencyRow {
                member: m.to_hex(),
                name: about.as_ref().map(|a| a.name.clone()),
                profession: about.as_ref().map(|a| a.profession.clone()),
                reason: about.map(|a| a.reason),
                at: e.at,
                until: e.until,
                granted_by: by.map(|m| m.to_hex()),
                granted_by_name: by.and_then(|m| profiles.get(&m).map(|p| p.name.clone())),
            }
        })
        .collect();
    CircleSummary {
        id: c.info().id.clone(),
        patient: c.info().patient.clone(),
        team: c.info().team,
        epoch: r.epoch.map(|e| e.to_string()),
        closed: r.closed,
        suspended: c.suspension(me).map(|(s, reason)| {
            let by = c.certified_devices().get(&s.by).copied();
            SuspensionRow {
                at: s.at,
                by: by.map(|m| m.to_hex()),
                by_name: by.and_then(|m| profiles.get(&m).map(|p| p.name.clone())),
                reason: reason.unwrap_or_default(),
                receipts: crate::node::suspended_receipts(store, &c.id())
                    .iter()
                    .map(super::closing::ReceiptRow::of)
                    .collect(),
            }
        }),
        members: r
            .members
            .iter()
            .map(|(m, s)| MemberRow {
                member: m.to_hex(),
                name: profiles.get(m).map(|p| p.name.clone()),
                profession: profiles.get(m).map(|p| p.profession.clone()),
                role: s.role,
                devices: s.devices.iter().map(|d| d.device.to_string()).collect(),
                directory: profiles
                    .get(m)
                    .map(|p| super::directory::standing(store, p))
                    .unwrap_or_default(),
            })
            .collect(),
        removed: r.removed.keys().map(|m| m.to_hex()).collect(),
        revoked_devices: {
            let mut revoked: Vec<RevokedDevice> = r
                .revoked
                .iter()
                .map(|(d, v)| RevokedDevice {
                    member: v.member.to_hex(),
                    name: profiles.get(&v.member).map(|p| p.name.clone()),
                    device: d.to_string(),
                    at: v.at,
                })
                .collect();
            revoked.sort_by_key(|v| v.at);
            revoked
        },
        relays: r.relays.clone(),
        reminder_hours: r.reminder_after(),
        void_operations: r.void.len(),
        waiting_operations: c.membership().waiting(),
        refused,
        forks: forks(c, store, &profiles),
        on_call,
        emergency,
    }
}

/// The forks recorded for `c`, each with the name of its device's member.
fn forks(c: &Circle, store: &dyn Store, profiles: &BTreeMap<MemberId, Profile>) -> Vec<ForkNotice> {
    let forks = store.forks(&c.id()).unwrap_or_default();
    if forks.is_empty() {
        return Vec::new();
    }
    let devices = c.certified_devices();
    forks
        .into_iter()
        .map(|f| ForkNotice {
            device: f.device.to_string(),
            name: devices
                .get(&f.device)
                .and_then(|m| profiles.get(m))
                .map(|p| p.name.clone()),
            document: f.doc.as_str().to_string(),
            seq: f.seq,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::split_name;

    #[test]
    fn particles_go_with_the_family_name() {
        let split = |n: &str| split_name(n);
        assert_eq!(
            split("Jeanne Durand"),
            (Some("Jeanne".into()), "Durand".into())
        );
        assert_eq!(
            split("Marie-Claire de La Fontaine"),
            (Some("Marie-Claire".into()), "de La Fontaine".into())
        );
        assert_eq!(
            split("Jean Le Gall"),
            (Some("Jean".into()), "Le Gall".into())
        );
        assert_eq!(split("Durand"), (None, "Durand".into()));
        // A lone particle-like first word stays a given name.
        assert_eq!(split("Le Gall"), (Some("Le".into()), "Gall".into()));
        assert_eq!(split("  "), (None, String::new()));
    }
}
