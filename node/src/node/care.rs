//! The care side of a node's answers: a circle's documents read for people (patient file,
//! notebook, messages, tasks, documents), the patient file's changes as the API names them,
//! and exports. Pure functions of an open [`Circle`]; the core decides when to call them.

use std::collections::BTreeMap;

use cercle_crdt::fhir::{self, CareTeamMember, CircleRecord};
use cercle_crdt::{
    ConsentStatus, DocKind, IdentityStatus, IdentityUpdate, Item, ItemList, MemberId, Timestamp,
};

use super::NodeError;
use crate::api::{
    DocumentRow, ExportFile, ExportFormat, ItemRow, MessageRow, NoteRow, PatientChange,
    PatientView, ReceiptRow, TaskRow,
};
use crate::circle::{Circle, Pending};
use crate::identity::LocalIdentity;
use crate::store::Store;

/// Largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// Members' names, read once per answer.
type Names = BTreeMap<MemberId, String>;

fn names(c: &Circle) -> Names {
    c.profiles().into_iter().map(|(m, p)| (m, p.name)).collect()
}

fn name_of(names: &Names, member: &MemberId) -> Option<String> {
    names.get(member).cloned()
}

fn receipt(names: &Names, by: &MemberId, at: Timestamp) -> ReceiptRow {
    ReceiptRow {
        by: by.to_hex(),
        by_name: name_of(names, by),
        at: at.to_rfc3339(),
        at_millis: at.millis(),
    }
}

/// The notebook's notes, oldest first.
pub(super) fn notes(c: &Circle) -> Vec<NoteRow> {
    let names = names(c);
    c.notes()
        .into_iter()
        .map(|e| NoteRow {
            author: e.author.to_hex(),
            author_name: name_of(&names, &e.author),
            kind: e.kind.to_string(),
            text: e.current_text().to_string(),
            at: e.at.to_rfc3339(),
            at_millis: e.at.millis(),
            amended: !e.amendments.is_empty(),
            acks: e
                .acknowledgements
                .iter()
                .map(|a| receipt(&names, &a.by, a.at))
                .collect(),
            id: e.id,
        })
        .collect()
}

/// The thread's messages, oldest first.
pub(super) fn messages(c: &Circle) -> Vec<MessageRow> {
    let names = names(c);
    c.thread
        .messages()
        .into_iter()
        .map(|m| MessageRow {
            author: m.author.to_hex(),
            author_name: name_of(&names, &m.author),
            at: m.at.to_rfc3339(),
            at_millis: m.at.millis(),
            read_by: m
                .read_by
                .iter()
                .map(|r| receipt(&names, &r.by, r.at))
                .collect(),
            text: m.text,
            attachments: m.attachments,
            id: m.id,
        })
        .collect()
}

fn item_row(item: Item) -> ItemRow {
    ItemRow {
        id: item.id,
        added_by: item.added_by.to_hex(),
        added_at: item.added_at.to_rfc3339(),
        fields: item.fields,
    }
}

/// The care plan's tasks, oldest first.
pub(super) fn tasks(c: &Circle) -> Vec<TaskRow> {
    let names = names(c);
    c.patient_file
        .items(ItemList::Tasks)
        .into_iter()
        .map(|t| {
            let owner = t.get("owner").map(str::to_string);
            let owner_name = owner
                .as_deref()
                .and_then(|o| o.parse::<MemberId>().ok())
                .and_then(|m| name_of(&names, &m));
            TaskRow {
                title: t.get("title").unwrap_or_default().to_string(),
                due: t.get("due").map(str::to_string),
                status: t.get("status").unwrap_or("open").to_string(),
                done_by: t.get("done_by").map(str::to_string),
                added_by: t.added_by.to_hex(),
                owner,
                owner_name,
                id: t.id,
            }
        })
        .collect()
}

/// The patient file's documents; `here` says whether this node holds each one's content.
pub(super) fn documents(c: &Circle, store: &dyn Store) -> Vec<DocumentRow> {
    c.patient_file
        .items(ItemList::Documents)
        .into_iter()
        .map(|d| {
            let blob = d.get("blob").unwrap_or_default().to_string();
            let here = blob_hash(&blob).is_some_and(|h| store.has_blob(&h).unwrap_or(false));
            DocumentRow {
                name: d.get("name").unwrap_or_default().to_string(),
                media_type: d.get("media_type").unwrap_or_default().to_string(),
                size: d.get("size").and_then(|s| s.parse().ok()).unwrap_or(0),
                here,
                blob,
                added_by: d.added_by.to_hex(),
                added_at: d.added_at.to_rfc3339(),
                id: d.id,
            }
        })
        .collect()
}

/// A content hash written as 64 hex digits.
pub(super) fn blob_hash(hex_hash: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_hash).ok()?;
    bytes.try_into().ok()
}

/// The patient file for people.
pub(super) fn patient(c: &Circle, store: &dyn Store) -> PatientView {
    let pf = &c.patient_file;
    let id = pf.identity();
    let (identity_status, verified_by) = match &id.status {
        IdentityStatus::Provisional => ("provisional".to_string(), None),
        IdentityStatus::Verified { by, .. } => ("verified".to_string(), Some(by.to_hex())),
    };
    let consent = pf.consent();
    let items = |list| pf.items(list).into_iter().map(item_row).collect();
    PatientView {
        circle: c.info().id.clone(),
        family_name: id.family_name,
        given_names: id.given_names,
        birth_date: id.birth_date,
        sex: id.sex,
        ins: id.ins,
        identity_status,
        verified_by,
        consent: consent.as_ref().map(|k| consent_name(k.status).to_string()),
        consent_scope: consent.map(|k| k.scope),
        care_plan: pf.care_plan(),
        problems: items(ItemList::Problems),
        allergies: items(ItemList::Allergies),
        medications: items(ItemList::Medications),
        contacts: items(ItemList::Contacts),
        tasks: tasks(c),
        documents: documents(c, store),
    }
}

fn consent_name(s: ConsentStatus) -> &'static str {
    match s {
        ConsentStatus::Given => "given",
        ConsentStatus::Refused => "refused",
        ConsentStatus::Withdrawn => "withdrawn",
    }
}

/// Applies a patient file change as one envelope.
pub(super) fn change_patient(
    c: &mut Circle,
    me: &LocalIdentity,
    change: PatientChange,
    now: Timestamp,
) -> Result<Pending<()>, NodeError> {
    let consent: Option<ConsentStatus> = change
        .consent
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(NodeError::BadRequest)?;
    let identity = IdentityUpdate {
        family_name: change.family_name,
        given_names: change.given_names,
        birth_date: change.birth_date,
        sex: change.sex,
        ins: change.ins,
    };
    let identity_changed = identity != IdentityUpdate::default();
    let items: Vec<(ItemList, &str, String)> = [
        (ItemList::Problems, "label", change.problem),
        (ItemList::Allergies, "substance", change.allergy),
        (ItemList::Medications, "name", change.medication),
        (ItemList::Contacts, "name", change.contact),
    ]
    .into_iter()
    .filter_map(|(list, field, value)| value.map(|v| (list, field, v)))
    .collect();
    if !identity_changed
        && !change.verify
        && consent.is_none()
        && change.care_plan.is_none()
        && items.is_empty()
    {
        return Err(NodeError::BadRequest(
            "nothing to change: give at least one field, e.g. --ins or --care-plan".into(),
        ));
    }
    let author = me.member();
    let scope = change.consent_scope.unwrap_or_default();
    let care_plan = change.care_plan;
    Ok(c.edit_patient_file(me, now, |pf| {
        if identity_changed {
            pf.set_identity(author, &identity, now)?;
        }
        if change.verify {
            pf.verify_identity(author, now)?;
        }
        if let Some(status) = consent {
            pf.record_consent(author, status, &scope, now)?;
        }
        if let Some(text) = &care_plan {
            pf.set_care_plan(author, text, now)?;
        }
        for (list, field, value) in &items {
            pf.add_item(author, *list, &[(field, value.as_str())], now)?;
        }
        Ok(())
    })?)
}

/// The circle's documents in `format`: Automerge's binary save of each document, or one
/// JSON file of everything a person reads.
pub(super) fn export(
    c: &mut Circle,
    store: &dyn Store,
    format: ExportFormat,
    now: Timestamp,
) -> Result<Vec<ExportFile>, NodeError> {
    match format {
        ExportFormat::Automerge => Ok(DocKind::ALL
            .into_iter()
            .map(|kind| {
                let bytes = match kind {
                    DocKind::PatientFile => c.patient_file.replica_mut().save(),
                    DocKind::LiaisonNotebook => c.notebook.replica_mut().save(),
                    DocKind::Thread => c.thread.replica_mut().save(),
                };
                ExportFile {
                    name: format!("{}.automerge", kind.as_str()),
                    content: hex::encode(bytes),
                }
            })
            .collect()),
        ExportFormat::Json => {
            let names = names(c);
            let members: BTreeMap<String, Option<String>> = c
                .resolution()
                .members
                .keys()
                .map(|m| (m.to_hex(), name_of(&names, m)))
                .collect();
            let all = serde_json::json!({
                "circle": c.info().id,
                "members": members,
                "patient_file": patient(c, store),
                "liaison_notebook": notes(c),
                "thread": messages(c),
            });
            let bytes = serde_json::to_vec_pretty(&all)
                .map_err(|e| NodeError::BadRequest(format!("cannot write JSON: {e}")))?;
            Ok(vec![ExportFile {
                name: "circle.json".into(),
                content: hex::encode(bytes),
            }])
        }
        ExportFormat::Fhir => {
            let bundle = fhir_bundle(c, now);
            let bytes = serde_json::to_vec_pretty(&bundle)
                .map_err(|e| NodeError::BadRequest(format!("cannot write JSON: {e}")))?;
            Ok(vec![ExportFile {
                name: "circle.fhir.json".into(),
                content: hex::encode(bytes),
            }])
        }
    }
}

/// The circle as a FHIR R4 bundle: the members as the membership log has them now, and
/// anyone else whose profile was published here (a former member who wrote).
fn fhir_bundle(c: &Circle, now: Timestamp) -> serde_json::Value {
    let resolution = c.resolution();
    let members: Vec<CareTeamMember> = c
        .profiles()
        .into_iter()
        .map(|(m, p)| (m, Some(p)))
        .chain(
            resolution
                .members
                .keys()
                .filter(|m| !c.profiles().contains_key(m))
                .map(|m| (*m, None)),
        )
        .map(|(member, profile)| CareTeamMember {
            member,
            role: resolution.members.get(&member).map(|s| s.role),
            name: profile.as_ref().map(|p| p.name.clone()),
            profession: profile.as_ref().map(|p| p.profession.clone()),
            rpps: profile.as_ref().and_then(|p| p.rpps.clone()),
            adeli: profile.and_then(|p| p.adeli),
        })
        .collect();
    fhir::bundle(&CircleRecord {
        circle: &c.info().id,
        closed: resolution.closed,
        patient_file: &c.patient_file,
        notebook: &c.notebook,
        thread: &c.thread,
        members: &members,
        exported_at: now,
    })
}

/// The one id among `ids` equal to or starting with `query` (at least 4 characters).
pub(super) fn pick_id(
    what: &str,
    query: &str,
    ids: impl IntoIterator<Item = String>,
) -> Result<String, NodeError> {
    let q = query.trim().to_ascii_lowercase();
    if q.len() < 4 {
        return Err(NodeError::BadRequest(format!(
            "give at least 4 characters of the {what}'s id"
        )));
    }
    let mut found: Vec<String> = ids.into_iter().filter(|id| id.starts_with(&q)).collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(NodeError::BadRequest(format!(
            "no {what} of this circle has an id starting with {query:?}; list them to see their ids"
        ))),
        n => Err(NodeError::BadRequest(format!(
            "{n} {what}s have an id starting with {query:?}; give more characters"
        ))),
    }
}
