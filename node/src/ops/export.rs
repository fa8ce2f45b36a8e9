//! A circle's documents in portable forms: Automerge's binary save of each document, one
//! JSON file of everything a person reads, or a FHIR R4 `Bundle` for other care systems
//! (built by `cercle_crdt::fhir`, with the members as the membership log has them).

use std::collections::BTreeMap;

use cercle_crdt::fhir::{self, AuditEntry, CareTeamMember, CircleRecord};
use cercle_crdt::{DocKind, MemberId, Timestamp};
use serde::{Deserialize, Serialize};

use super::audit::AuditTrail;
use super::{Names, NodeError, Operation};
use crate::circle::Circle;
use crate::node::NodeCore;

/// The circle's documents in a portable form.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Export {
    pub circle: String,
    pub format: ExportFormat,
}

/// The form of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Each document in Automerge's binary save format.
    Automerge,
    /// The circle's content as one JSON document.
    Json,
    /// The circle as one FHIR R4 `Bundle` (JSON) for other care systems.
    Fhir,
}

/// The exported files.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Exported {
    pub files: Vec<ExportFile>,
}

/// One exported file.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExportFile {
    pub name: String,
    /// The file's bytes, hex.
    pub content: String,
}

impl Operation for Export {
    type Answer = Exported;

    fn run(self, core: &mut NodeCore) -> Result<Exported, NodeError> {
        let store = core.circles.store.clone();
        let now = core.now();
        let me = core.me.member();
        let (c, author) = core.circle_mut(&self.circle)?;
        let identity = author.me;
        if self.format == ExportFormat::Fhir {
            super::about_a_patient(c, "patient to export as FHIR; export it as json")?;
        }
        let files = match self.format {
            ExportFormat::Automerge => DocKind::ALL
                .into_iter()
                .map(|kind| {
                    Ok(ExportFile {
                        name: format!("{}.automerge", kind.as_str()),
                        content: hex::encode(c.save(kind)?),
                    })
                })
                .collect::<Result<_, NodeError>>()?,
            ExportFormat::Json => {
                let names = Names::of(c);
                let members: BTreeMap<String, Option<String>> = c
                    .resolution()
                    .members
                    .keys()
                    .map(|m| (m.to_hex(), names.get(m)))
                    .collect();
                let all = serde_json::json!({
                    "circle": c.info().id,
                    "members": members,
                    "patient_file": super::patient::view(c, store.as_ref())?,
                    "liaison_notebook": super::notes::notes(c, store.as_ref(), &me)?,
                    "thread": super::messages::messages(c)?,
                });
                vec![json_file("circle.json", &all)?]
            }
            ExportFormat::Fhir => {
                let audit = audit_entries(&super::audit::trail(c, store.as_ref(), identity)?);
                vec![json_file(
                    "circle.fhir.json",
                    &fhir_bundle(c, identity, now, &audit)?,
                )?]
            }
        };
        // Taking a patient's file out of the circle is worth a line in the log.
        let id = c.id();
        tracing::info!(circle = %id, format = ?self.format, "circle exported");
        core.consulted(id, "export");
        Ok(Exported { files })
    }
}

fn json_file(name: &str, value: &serde_json::Value) -> Result<ExportFile, NodeError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| NodeError::internal(format!("cannot write JSON: {e}")))?;
    Ok(ExportFile {
        name: name.into(),
        content: hex::encode(bytes),
    })
}

/// The trail's rows as the FHIR export's `AuditEvent`s.
fn audit_entries(trail: &AuditTrail) -> Vec<AuditEntry> {
    let member = |hex: &str| hex.parse::<MemberId>().ok();
    let writes = trail.writes.iter().map(|w| AuditEntry {
        recorded: Timestamp(w.received.unwrap_or(w.at)),
        member: member(&w.member),
        device: w.device.clone(),
        action: w.action.clone(),
        accepted: true,
        detail: w.about.clone(),
    });
    let refusals = trail.refusals.iter().map(|r| AuditEntry {
        recorded: Timestamp(r.at),
        member: None,
        device: r.device.clone(),
        action: r.reason.clone(),
        accepted: false,
        detail: Some(r.message.clone()),
    });
    writes.chain(refusals).collect()
}

/// The circle as a FHIR R4 bundle: the members as the membership log has them now, and
/// anyone else whose profile was published here (a former member who wrote); the
/// patient's objection, if recorded, as the consent that stands.
fn fhir_bundle(
    c: &Circle,
    me: &crate::identity::LocalIdentity,
    now: Timestamp,
    audit: &[AuditEntry],
) -> Result<serde_json::Value, NodeError> {
    let resolution = c.resolution();
    let profiles = c.profiles();
    let unprofiled: Vec<MemberId> = resolution
        .members
        .keys()
        .filter(|m| !profiles.contains_key(m))
        .copied()
        .collect();
    let members: Vec<CareTeamMember> = profiles
        .into_iter()
        .map(|(m, p)| (m, Some(p)))
        .chain(unprofiled.into_iter().map(|m| (m, None)))
        .map(|(member, profile)| CareTeamMember {
            member,
            role: resolution.members.get(&member).map(|s| s.role),
            name: profile.as_ref().map(|p| p.name.clone()),
            profession: profile.as_ref().map(|p| p.profession.clone()),
            rpps: profile.as_ref().and_then(|p| p.rpps.clone()),
            adeli: profile.and_then(|p| p.adeli),
        })
        .collect();
    let objection = c.suspension(me).map(|(s, reason)| fhir::Objection {
        at: Timestamp(s.at),
        by: c.certified_devices().get(&s.by).copied(),
        reason,
    });
    Ok(fhir::bundle(&CircleRecord {
        objection: objection.as_ref(),
        circle: &c.info().id,
        closed: resolution.closed,
        patient_file: c.patient_file()?,
        notebook: c.notebook()?,
        thread: c.thread()?,
        members: &members,
        exported_at: now,
        audit,
    }))
}
