//! The patient file: read for people, and changed (identity and its verification, consent,
//! care plan, problems, allergies, medications, contacts) as one envelope per request.

use std::collections::BTreeMap;

use cercle_crdt::{
    ConsentStatus, IdentityDocument, IdentityStatus, IdentityUpdate, Item, ItemList, PatientFile,
};
use serde::{Deserialize, Serialize};

use super::documents::{DocumentRow, documents};
use super::tasks::{TaskRow, tasks};
use super::{NodeError, Operation};
use crate::circle::Circle;
use crate::node::NodeCore;
use crate::store::Store;

/// The patient file.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PatientShow {
    pub circle: String,
}

/// The patient file, for people.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PatientView {
    pub circle: String,
    pub family_name: Option<String>,
    pub given_names: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub ins: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
    /// `provisional` or `verified`.
    pub identity_status: String,
    pub verified_by: Option<String>,
    /// When, and against which document, the identity was checked.
    pub verified_at: Option<i64>,
    pub verified_with: Option<IdentityDocument>,
    /// `given`, `refused` or `withdrawn`; `None` if never recorded.
    pub consent: Option<String>,
    pub consent_scope: Option<String>,
    pub care_plan: String,
    pub problems: Vec<ItemRow>,
    pub allergies: Vec<ItemRow>,
    pub medications: Vec<ItemRow>,
    pub contacts: Vec<ItemRow>,
    pub tasks: Vec<TaskRow>,
    pub documents: Vec<DocumentRow>,
}

/// One item of a patient file list.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ItemRow {
    pub id: String,
    pub fields: BTreeMap<String, String>,
    pub added_by: String,
    pub added_at: String,
}

impl Operation for PatientShow {
    type Answer = PatientView;

    fn run(self, core: &mut NodeCore) -> Result<PatientView, NodeError> {
        let store = core.circles.store.clone();
        let c = core.circle(&self.circle)?;
        let (id, view) = (c.id(), view(c, store.as_ref())?);
        core.consulted(id, "patient_file");
        Ok(view)
    }
}

/// Changes to the patient file (fields left out are unchanged).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PatientSet {
    pub circle: String,
    #[serde(default)]
    pub change: Box<PatientChange>,
}

/// Changes to a patient file; `None` leaves a part as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct PatientChange {
    pub family_name: Option<String>,
    pub given_names: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub ins: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
    /// Marks the identity as checked against the identity document `verified_with`.
    pub verify: bool,
    /// The identity document of high trust it was checked against.
    pub verified_with: Option<IdentityDocument>,
    /// `given`, `refused` or `withdrawn`.
    pub consent: Option<String>,
    pub consent_scope: Option<String>,
    pub care_plan: Option<String>,
    /// Problems to add, by name.
    pub problems: Vec<String>,
    /// Allergies to add, by substance.
    pub allergies: Vec<String>,
    /// Medications to add, by name and dose.
    pub medications: Vec<String>,
    /// Contacts to add, by name.
    pub contacts: Vec<String>,
}

impl Operation for PatientSet {
    type Answer = PatientView;

    fn run(self, core: &mut NodeCore) -> Result<PatientView, NodeError> {
        super::about_a_patient(core.circle(&self.circle)?, "patient file")?;
        let change = *self.change;
        let consent: Option<ConsentStatus> = change
            .consent
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| NodeError::bad_input(e))?;
        let identity = IdentityUpdate {
            family_name: change.family_name,
            given_names: change.given_names,
            birth_date: change.birth_date,
            sex: change.sex,
            ins: change.ins,
            address: change.address,
            phone: change.phone,
        };
        let identity_changed = identity != IdentityUpdate::default();
        let items: Vec<(ItemList, &str, String)> = [
            (ItemList::Problems, "label", change.problems),
            (ItemList::Allergies, "substance", change.allergies),
            (ItemList::Medications, "name", change.medications),
            (ItemList::Contacts, "name", change.contacts),
        ]
        .into_iter()
        .flat_map(|(list, field, values)| values.into_iter().map(move |v| (list, field, v)))
        .collect();
        if !identity_changed
            && !change.verify
            && consent.is_none()
            && change.care_plan.is_none()
            && items.is_empty()
        {
            return Err(NodeError::bad_input(
                "nothing to change: give at least one field, e.g. --ins or --care-plan",
            ));
        }
        let verify = match (change.verify, change.verified_with) {
            (false, _) => None,
            (true, Some(document)) => Some(document),
            (true, None) => {
                return Err(NodeError::bad_input(
                    "say which document the identity was checked against: --document id_card, passport, residence_permit or family_record_book",
                ));
            }
        };
        let scope = change.consent_scope.unwrap_or_default();
        let care_plan = change.care_plan;
        core.write::<PatientFile, _>(&self.circle, |pf, author, now| {
            if identity_changed {
                pf.set_identity(author, &identity, now)?;
            }
            if let Some(document) = verify {
                pf.verify_identity(author, document, now)?;
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
        })?;
        let store = core.circles.store.clone();
        view(core.circle(&self.circle)?, store.as_ref())
    }
}

/// Adds an item to one of the patient file's lists, with its fields: a problem and its
/// status, an allergy and its severity, a medication and its frequency, a contact and
/// their phone. The list's schema says which fields exist and which are required.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ItemAdd {
    pub circle: String,
    pub list: PatientList,
    /// Field names and values, e.g. `{"substance": "Pénicilline", "severity": "severe"}`.
    pub fields: BTreeMap<String, String>,
}

/// The patient file's lists of items (tasks and documents have their own operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PatientList {
    Problems,
    Allergies,
    Medications,
    Contacts,
}

impl PatientList {
    pub(crate) fn items(self) -> ItemList {
        match self {
            PatientList::Problems => ItemList::Problems,
            PatientList::Allergies => ItemList::Allergies,
            PatientList::Medications => ItemList::Medications,
            PatientList::Contacts => ItemList::Contacts,
        }
    }
}

impl std::str::FromStr for PatientList {
    type Err = String;
    fn from_str(s: &str) -> Result<PatientList, String> {
        match s.trim().to_lowercase().as_str() {
            "problems" | "problem" => Ok(PatientList::Problems),
            "allergies" | "allergy" => Ok(PatientList::Allergies),
            "medications" | "medication" => Ok(PatientList::Medications),
            "contacts" | "contact" => Ok(PatientList::Contacts),
            _ => Err(format!(
                "{s:?} is not a list of the patient file: use problems, allergies, medications or contacts"
            )),
        }
    }
}

impl Operation for ItemAdd {
    type Answer = super::Added;

    fn run(self, core: &mut NodeCore) -> Result<super::Added, NodeError> {
        super::about_a_patient(core.circle(&self.circle)?, "patient file")?;
        if self.fields.is_empty() {
            return Err(NodeError::bad_input(
                "give the item's fields, e.g. substance=Pénicilline severity=severe",
            ));
        }
        let fields: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let list = self.list.items();
        let id = core.write::<PatientFile, _>(&self.circle, |pf, author, now| {
            pf.add_item(author, list, &fields, now)
        })?;
        Ok(super::Added::one(core.circle(&self.circle)?, id))
    }
}

/// Records that a medication was stopped and why; it stays in the list as stopped.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MedicationStop {
    pub circle: String,
    /// The medication's id or a prefix of at least 4 characters.
    pub medication: String,
    /// Why: "hypotension", "fin du traitement", "remplacé par …".
    pub reason: String,
}

impl Operation for MedicationStop {
    type Answer = super::Added;

    fn run(self, core: &mut NodeCore) -> Result<super::Added, NodeError> {
        if self.reason.trim().is_empty() {
            return Err(NodeError::bad_input(
                "say why the medication is stopped, e.g. \"hypotension\"",
            ));
        }
        let id = pick_item(core, &self.circle, ItemList::Medications, &self.medication)?;
        core.write::<PatientFile, _>(&self.circle, |pf, author, now| {
            pf.stop_medication(author, &id, &self.reason, now)
        })?;
        Ok(super::Added::one(core.circle(&self.circle)?, id))
    }
}

/// Changes fields of an item of the patient file (a problem resolved, an allergy's
/// criticality, a contact's phone); a field given empty is cleared.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ItemChange {
    pub circle: String,
    pub list: PatientList,
    /// The item's id or a prefix of at least 4 characters.
    pub item: String,
    pub fields: BTreeMap<String, String>,
}

impl Operation for ItemChange {
    type Answer = super::Added;

    fn run(self, core: &mut NodeCore) -> Result<super::Added, NodeError> {
        if self.fields.is_empty() {
            return Err(NodeError::bad_input(
                "give the fields to change, e.g. status=resolved",
            ));
        }
        let list = self.list.items();
        let id = pick_item(core, &self.circle, list, &self.item)?;
        let fields: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        core.write::<PatientFile, _>(&self.circle, |pf, author, now| {
            pf.change_item(author, list, &id, &fields, now)
        })?;
        Ok(super::Added::one(core.circle(&self.circle)?, id))
    }
}

/// Removes an item from the patient file as people see it, saying why; it stays in the
/// record with who removed it and when.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ItemRemove {
    pub circle: String,
    pub list: PatientList,
    /// The item's id or a prefix of at least 4 characters.
    pub item: String,
    /// Why: "saisie erronée", "n'intervient plus", "guéri".
    pub reason: String,
}

impl Operation for ItemRemove {
    type Answer = super::Added;

    fn run(self, core: &mut NodeCore) -> Result<super::Added, NodeError> {
        if self.reason.trim().is_empty() {
            return Err(NodeError::bad_input(
                "say why it is removed, e.g. \"saisie erronée\"",
            ));
        }
        let list = self.list.items();
        let id = pick_item(core, &self.circle, list, &self.item)?;
        core.write::<PatientFile, _>(&self.circle, |pf, author, now| {
            pf.retire_item(author, list, &id, &self.reason, now)
        })?;
        Ok(super::Added::one(core.circle(&self.circle)?, id))
    }
}

/// The id of the item of `list` that `query` starts.
fn pick_item(
    core: &mut NodeCore,
    circle: &str,
    list: ItemList,
    query: &str,
) -> Result<String, NodeError> {
    let ids = core
        .circle(circle)?
        .patient_file()?
        .items(list)
        .into_iter()
        .map(|i| i.id);
    super::pick_id("item", query, ids)
}

fn item_row(item: Item) -> ItemRow {
    ItemRow {
        id: item.id,
        added_by: item.added_by.to_hex(),
        added_at: item.added_at.to_rfc3339(),
        fields: item.fields,
    }
}

/// The patient file for people.
pub(crate) fn view(c: &Circle, store: &dyn Store) -> Result<PatientView, NodeError> {
    let pf = c.patient_file()?;
    let id = pf.identity();
    let (identity_status, verified_by, verified_at, verified_with) = match &id.status {
        IdentityStatus::Provisional => ("provisional".to_string(), None, None, None),
        IdentityStatus::Verified { by, at, document } => (
            "verified".to_string(),
            Some(by.to_hex()),
            Some(at.millis()),
            Some(*document),
        ),
    };
    let consent = pf.consent();
    let items = |list| pf.items(list).into_iter().map(item_row).collect();
    Ok(PatientView {
        circle: c.info().id.clone(),
        family_name: id.family_name,
        given_names: id.given_names,
        birth_date: id.birth_date,
        sex: id.sex,
        ins: id.ins,
        address: id.address,
        phone: id.phone,
        identity_status,
        verified_by,
        verified_at,
        verified_with,
        consent: consent.as_ref().map(|k| consent_name(k.status).to_string()),
        consent_scope: consent.map(|k| k.scope),
        care_plan: pf.care_plan(),
        problems: items(ItemList::Problems),
        allergies: items(ItemList::Allergies),
        medications: items(ItemList::Medications),
        contacts: items(ItemList::Contacts),
        tasks: tasks(c)?,
        documents: documents(c, store)?,
    })
}

fn consent_name(s: ConsentStatus) -> &'static str {
    match s {
        ConsentStatus::Given => "given",
        ConsentStatus::Refused => "refused",
        ConsentStatus::Withdrawn => "withdrawn",
    }
}
