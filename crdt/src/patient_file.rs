//! The patient file: who the patient is (and whether that identity was checked), their
//! consent, contacts, problems, allergies, medications, care plan, tasks and document index.
//!
//! Unlike the notebook it is a living record: professionals and coordinators update it, and
//! concurrent updates merge field by field. Items live in maps keyed by ids derived from the
//! change that creates them, so concurrent additions never collide. Editing the identity makes
//! it provisional again until someone verifies it.

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ScalarValue};
use serde::{Deserialize, Serialize};

use crate::document::{
    DocKind, RecordReader, WriteError, check_write, collection_item, collection_items, root_obj,
};
use crate::member::{MemberId, Timestamp};
use crate::replica::{LoadError, Replica};
use crate::schema::{
    DocSchema, Fault, Field, MAX_LABEL_BYTES, MAX_TEXT_BYTES, Root, Scalar, Shape, Writers,
};

const LABEL: Scalar = Scalar::Text {
    max: MAX_LABEL_BYTES,
    non_empty: true,
};
const LONG_TEXT: Scalar = Scalar::Text {
    max: MAX_TEXT_BYTES,
    non_empty: false,
};
const SEXES: &[&str] = &["female", "male", "other", "unknown"];
const IDENTITY_STATUSES: &[&str] = &["provisional", "verified"];
const CONSENT_STATUSES: &[&str] = &["given", "refused", "withdrawn"];
const TASK_STATUSES: &[&str] = &["open", "done"];
const ACTIVE_STATUSES: &[&str] = &["active", "resolved", "stopped"];
const SEVERITIES: &[&str] = &["mild", "moderate", "severe"];
/// How dangerous a future reaction could be (FHIR `AllergyIntolerance.criticality`).
const CRITICALITIES: &[&str] = &["low", "high", "unable-to-assess"];
/// What a contact is to the patient: the trusted person designated under the French
/// public-health code (personne de confiance), the regular GP (médecin traitant), a
/// relative, someone to call in an emergency, another professional.
pub const CONTACT_ROLES: &[&str] = &[
    "trusted_person",
    "regular_gp",
    "relative",
    "emergency",
    "professional",
];
const ADDRESS: Scalar = Scalar::Text {
    max: 500,
    non_empty: true,
};

const fn s(scalar: Scalar) -> Shape {
    Shape::Scalar(scalar)
}

/// Fields every item carries: who added it and when, who last changed it, and who
/// removed it, when and why (a removed item stays in the record, shown as removed).
macro_rules! item {
    ($($field:expr),* $(,)?) => {
        Shape::Record(&[
            $($field,)*
            Field::required("added_by", s(Scalar::Author)),
            Field::required("added_at", s(Scalar::Timestamp)),
            Field::optional("updated_by", s(Scalar::Author)),
            Field::optional("updated_at", s(Scalar::Timestamp)),
            Field::optional("removed_by", s(Scalar::Author)),
            Field::optional("removed_at", s(Scalar::Timestamp)),
            Field::optional("removed_reason", s(LABEL)),
        ])
    };
}

/// The fields of an item that tell what happened to it (added, changed, removed, stopped:
/// by whom, when, why), shown apart from its content. The first seven are written by
/// [`PatientFile::change_item`] and [`PatientFile::retire_item`], never given by hand.
pub const ITEM_HISTORY: [&str; 10] = [
    "added_by",
    "added_at",
    "updated_by",
    "updated_at",
    "removed_by",
    "removed_at",
    "removed_reason",
    "stopped_by",
    "stopped_at",
    "stop_reason",
];

/// What no one gives by hand: who added, changed or removed an item, when and why.
fn is_written_history(field: &str) -> bool {
    ITEM_HISTORY[..7].contains(&field)
}

static IDENTITY_FIELDS: &[Field] = &[
    Field::optional("family_name", s(LABEL)),
    Field::optional("given_names", s(LABEL)),
    Field::optional("birth_date", s(Scalar::Date)),
    Field::optional("sex", s(Scalar::OneOf(SEXES))),
    Field::optional("ins", s(Scalar::Ins)),
    // A circle with no patient (a health centre's staff thread, the on-call rota) names
    // its team here instead of a person; it holds messages and documents only. (A field,
    // not a root of its own: the roots are the genesis every replica shares.)
    Field::optional("team", s(LABEL)),
    Field::optional("address", s(ADDRESS)),
    Field::optional("phone", s(LABEL)),
    Field::optional("status", s(Scalar::OneOf(IDENTITY_STATUSES))),
    Field::optional("verified_by", s(Scalar::Author)),
    Field::optional("verified_at", s(Scalar::Timestamp)),
    Field::optional("verified_with", s(Scalar::OneOf(IDENTITY_DOCUMENTS))),
    Field::optional("updated_by", s(Scalar::Author)),
    Field::optional("updated_at", s(Scalar::Timestamp)),
];
static IDENTITY: Shape = Shape::Record(IDENTITY_FIELDS);

static CONSENT_FIELDS: &[Field] = &[
    Field::optional("status", s(Scalar::OneOf(CONSENT_STATUSES))),
    Field::optional("scope", s(LONG_TEXT)),
    Field::optional("recorded_by", s(Scalar::Author)),
    Field::optional("recorded_at", s(Scalar::Timestamp)),
];
static CONSENT: Shape = Shape::Record(CONSENT_FIELDS);

static CARE_PLAN_FIELDS: &[Field] = &[
    Field::optional("text", s(LONG_TEXT)),
    Field::optional("updated_by", s(Scalar::Author)),
    Field::optional("updated_at", s(Scalar::Timestamp)),
];
static CARE_PLAN: Shape = Shape::Record(CARE_PLAN_FIELDS);

static CONTACT: Shape = item!(
    Field::required("name", s(LABEL)),
    Field::optional("role", s(Scalar::OneOf(CONTACT_ROLES))),
    Field::optional("relation", s(LABEL)),
    Field::optional("phone", s(LABEL)),
    Field::optional("email", s(LABEL)),
);

static PROBLEM: Shape = item!(
    Field::required("label", s(LABEL)),
    Field::optional("since", s(Scalar::Date)),
    Field::optional("status", s(Scalar::OneOf(ACTIVE_STATUSES))),
);

static ALLERGY: Shape = item!(
    Field::required("substance", s(LABEL)),
    Field::optional("reaction", s(LABEL)),
    Field::optional("severity", s(Scalar::OneOf(SEVERITIES))),
    Field::optional("criticality", s(Scalar::OneOf(CRITICALITIES))),
);

static MEDICATION: Shape = item!(
    Field::required("name", s(LABEL)),
    Field::optional("dose", s(LABEL)),
    Field::optional("frequency", s(LABEL)),
    Field::optional("status", s(Scalar::OneOf(ACTIVE_STATUSES))),
    Field::optional("start", s(Scalar::Date)),
    Field::optional("stop_reason", s(LABEL)),
    Field::optional("stopped_by", s(Scalar::Author)),
    Field::optional("stopped_at", s(Scalar::Timestamp)),
);

static TASK: Shape = item!(
    Field::required("title", s(LABEL)),
    Field::optional("owner", s(Scalar::Member)),
    Field::optional("due", s(Scalar::Date)),
    Field::required("status", s(Scalar::OneOf(TASK_STATUSES))),
    Field::optional("done_by", s(Scalar::Author)),
    Field::optional("done_at", s(Scalar::Timestamp)),
);

static DOCUMENT: Shape = item!(
    Field::required("name", s(LABEL)),
    Field::required("media_type", s(LABEL)),
    Field::required(
        "size",
        s(Scalar::Int {
            min: 0,
            max: 1 << 40
        })
    ),
    Field::required("blob", s(Scalar::Hash)),
);

const fn clinical(name: &'static str, shape: Shape) -> Root {
    Root {
        name,
        shape,
        writers: Writers::Clinical,
    }
}

pub(crate) static SCHEMA: DocSchema = DocSchema {
    roots: &[
        clinical("identity", Shape::Record(IDENTITY_FIELDS)),
        clinical("consent", Shape::Record(CONSENT_FIELDS)),
        clinical("care_plan", Shape::Record(CARE_PLAN_FIELDS)),
        clinical("contacts", Shape::Collection(&CONTACT)),
        clinical("problems", Shape::Collection(&PROBLEM)),
        clinical("allergies", Shape::Collection(&ALLERGY)),
        clinical("medications", Shape::Collection(&MEDICATION)),
        clinical("tasks", Shape::Collection(&TASK)),
        clinical("documents", Shape::Collection(&DOCUMENT)),
    ],
    append_only: false,
};

/// The identity documents of high trust against which an identity is checked (the French
/// identity-vigilance rules: an identity card, a passport, a residence permit; for a
/// child, the family record book with a parent's document).
const IDENTITY_DOCUMENTS: &[&str] = &[
    "id_card",
    "passport",
    "residence_permit",
    "family_record_book",
];

/// A document an identity was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityDocument {
    IdCard,
    Passport,
    ResidencePermit,
    FamilyRecordBook,
}

impl IdentityDocument {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityDocument::IdCard => "id_card",
            IdentityDocument::Passport => "passport",
            IdentityDocument::ResidencePermit => "residence_permit",
            IdentityDocument::FamilyRecordBook => "family_record_book",
        }
    }
}

impl std::str::FromStr for IdentityDocument {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_lowercase().replace('-', "_").as_str() {
            "id_card" | "cni" => Ok(IdentityDocument::IdCard),
            "passport" | "passeport" => Ok(IdentityDocument::Passport),
            "residence_permit" | "titre_de_sejour" => Ok(IdentityDocument::ResidencePermit),
            "family_record_book" | "livret_de_famille" => Ok(IdentityDocument::FamilyRecordBook),
            _ => Err(format!(
                "{s:?} is not an identity document of high trust: id_card, passport, residence_permit or family_record_book"
            )),
        }
    }
}

/// Whether the patient's identity has been checked against an identity document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum IdentityStatus {
    /// Not (or no longer) checked.
    Provisional,
    /// Checked by `by` at `at` against `document`.
    Verified {
        by: MemberId,
        at: Timestamp,
        document: IdentityDocument,
    },
}

/// The patient's identity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub family_name: Option<String>,
    pub given_names: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub ins: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
    pub status: IdentityStatus,
}

impl Identity {
    /// "GIVEN FAMILY" as people write it, or "(no name)".
    pub fn display_name(&self) -> String {
        match (&self.given_names, &self.family_name) {
            (Some(g), Some(f)) => format!("{g} {f}"),
            (None, Some(f)) => f.clone(),
            (Some(g), None) => g.clone(),
            (None, None) => "(no name)".into(),
        }
    }
}

/// Changes to the identity; `None` leaves a field as it is. The address and phone are
/// not identity traits: changing them alone keeps a verified identity verified.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdentityUpdate {
    pub family_name: Option<String>,
    pub given_names: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub ins: Option<String>,
    pub address: Option<String>,
    pub phone: Option<String>,
}

/// The patient's consent to sharing within the circle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Consent {
    pub status: ConsentStatus,
    pub scope: String,
    pub recorded_by: MemberId,
    pub recorded_at: Timestamp,
}

/// The state of consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentStatus {
    Given,
    Refused,
    Withdrawn,
}

impl ConsentStatus {
    fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Given => "given",
            ConsentStatus::Refused => "refused",
            ConsentStatus::Withdrawn => "withdrawn",
        }
    }
}

impl std::str::FromStr for ConsentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "given" => Ok(ConsentStatus::Given),
            "refused" => Ok(ConsentStatus::Refused),
            "withdrawn" => Ok(ConsentStatus::Withdrawn),
            _ => Err(format!(
                "unknown consent {s:?}: use given, refused or withdrawn"
            )),
        }
    }
}

/// One item of a list in the patient file (contact, problem, allergy, medication, task,
/// document): its id, its fields as strings, who added it and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub id: String,
    pub fields: std::collections::BTreeMap<String, String>,
    pub added_by: MemberId,
    pub added_at: Timestamp,
}

impl Item {
    /// A field's value, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// Whether it was removed (it stays in the record, shown as removed, left out of
    /// exports).
    pub fn is_removed(&self) -> bool {
        self.fields.contains_key("removed_at")
    }
}

/// The lists of the patient file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemList {
    Contacts,
    Problems,
    Allergies,
    Medications,
    Tasks,
    Documents,
}

impl ItemList {
    /// Every list of the patient file.
    pub const ALL: [ItemList; 6] = [
        ItemList::Contacts,
        ItemList::Problems,
        ItemList::Allergies,
        ItemList::Medications,
        ItemList::Tasks,
        ItemList::Documents,
    ];

    /// The list's name, as the document's root field names it.
    pub fn as_str(self) -> &'static str {
        self.root()
    }

    fn root(self) -> &'static str {
        match self {
            ItemList::Contacts => "contacts",
            ItemList::Problems => "problems",
            ItemList::Allergies => "allergies",
            ItemList::Medications => "medications",
            ItemList::Tasks => "tasks",
            ItemList::Documents => "documents",
        }
    }

    fn shape(self) -> &'static Shape {
        match self {
            ItemList::Contacts => &CONTACT,
            ItemList::Problems => &PROBLEM,
            ItemList::Allergies => &ALLERGY,
            ItemList::Medications => &MEDICATION,
            ItemList::Tasks => &TASK,
            ItemList::Documents => &DOCUMENT,
        }
    }
}

/// A patient file replica.
#[derive(Debug, Clone)]
pub struct PatientFile {
    replica: Replica,
}

impl PatientFile {
    /// A new, empty patient file replica for the device `actor`.
    pub fn new(actor: ActorId) -> Self {
        Self {
            replica: Replica::new(DocKind::PatientFile, actor),
        }
    }

    /// Loads a saved patient file.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Self, LoadError> {
        Ok(Self {
            replica: Replica::load(DocKind::PatientFile, bytes, actor)?,
        })
    }

    /// The replica, for save, sync and validated merges.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The replica, mutably.
    pub fn replica_mut(&mut self) -> &mut Replica {
        &mut self.replica
    }

    /// Updates identity fields. Any change to the identity makes it provisional again.
    pub fn set_identity(
        &mut self,
        author: MemberId,
        update: &IdentityUpdate,
        at: Timestamp,
    ) -> Result<(), WriteError> {
        // The INS as typed or read out ("2 41 05 12 345 678 05"): digits and letters only.
        let ins = update.ins.as_ref().map(|i| {
            i.chars()
                .filter(|c| !c.is_whitespace() && !matches!(c, '.' | '-'))
                .collect::<String>()
        });
        if let Some(born) = update
            .birth_date
            .as_deref()
            .and_then(|d| d.trim().parse::<jiff::civil::Date>().ok())
            && let Ok(now) = jiff::Timestamp::from_millisecond(at.millis())
            && born > now.to_zoned(jiff::tz::TimeZone::UTC).date()
        {
            return Err(WriteError::InvalidValue {
                field: "birth_date",
                reason: Fault::InFuture,
            });
        }
        let traits: [(&'static str, &Option<String>); 5] = [
            ("family_name", &update.family_name),
            ("given_names", &update.given_names),
            ("birth_date", &update.birth_date),
            ("sex", &update.sex),
            ("ins", &ins),
        ];
        let reaches = [("address", &update.address), ("phone", &update.phone)];
        // The same value saved again (a form sent back whole) changes nothing.
        let current = self.identity();
        let stored = |name: &str| match name {
            "family_name" => current.family_name.clone(),
            "given_names" => current.given_names.clone(),
            "birth_date" => current.birth_date.clone(),
            "sex" => current.sex.clone(),
            _ => current.ins.clone(),
        };
        let traits_changed = traits.iter().any(|(name, v)| {
            v.as_deref()
                .is_some_and(|v| Some(v.trim()) != stored(name).as_deref())
        });
        let fields: Vec<_> = traits.into_iter().chain(reaches).collect();
        // An address or phone given empty is cleared (the patient moved, the line was cut).
        let cleared =
            |name: &str, v: &str| matches!(name, "address" | "phone") && v.trim().is_empty();
        for &(name, value) in &fields {
            if let Some(v) = value
                && !cleared(name, v)
            {
                check_field(
                    &IDENTITY,
                    name,
                    &ScalarValue::Str(v.as_str().into()),
                    &author,
                )?;
            }
        }
        self.replica.write(at, |doc, _| {
            let obj = record(doc, "identity")?;
            for &(name, value) in &fields {
                match value {
                    Some(v) if !cleared(name, v) => doc.put(&obj, name, v.trim())?,
                    Some(_) if automerge::ReadDoc::get(doc, &obj, name)?.is_some() => {
                        doc.delete(&obj, name)?
                    }
                    _ => {}
                }
            }
            if traits_changed {
                doc.put(&obj, "status", "provisional")?;
            }
            doc.put(&obj, "updated_by", author.to_hex())?;
            doc.put(&obj, "updated_at", ScalarValue::Timestamp(at.millis()))?;
            Ok(())
        })
    }

    /// Names a circle with no patient (a team's own circle).
    pub fn set_team(
        &mut self,
        author: MemberId,
        name: &str,
        at: Timestamp,
    ) -> Result<(), WriteError> {
        let name = name.trim();
        check_field(&IDENTITY, "team", &ScalarValue::Str(name.into()), &author)?;
        self.replica.write(at, |doc, _| {
            let obj = record(doc, "identity")?;
            doc.put(&obj, "team", name)?;
            doc.put(&obj, "updated_by", author.to_hex())?;
            doc.put(&obj, "updated_at", ScalarValue::Timestamp(at.millis()))?;
            Ok(())
        })
    }

    /// The team's name, if this is a circle with no patient.
    pub fn team(&self) -> Option<String> {
        let doc = self.replica.doc();
        RecordReader {
            doc,
            obj: root_obj(doc, "identity")?,
        }
        .str("team")
    }

    /// What the circle is called: its team's name, or its patient's.
    pub fn title(&self) -> String {
        self.team()
            .unwrap_or_else(|| self.identity().display_name())
    }

    /// Records that `author` checked the identity against `document`.
    pub fn verify_identity(
        &mut self,
        author: MemberId,
        document: IdentityDocument,
        at: Timestamp,
    ) -> Result<(), WriteError> {
        let id = self.identity();
        if id.family_name.is_none() || id.birth_date.is_none() {
            return Err(WriteError::NotAllowed(
                "an identity needs at least a family name and a birth date to be verified".into(),
            ));
        }
        self.replica.write(at, |doc, _| {
            let obj = record(doc, "identity")?;
            doc.put(&obj, "status", "verified")?;
            doc.put(&obj, "verified_by", author.to_hex())?;
            doc.put(&obj, "verified_at", ScalarValue::Timestamp(at.millis()))?;
            doc.put(&obj, "verified_with", document.as_str())?;
            Ok(())
        })
    }

    /// Records the patient's consent (or refusal, or withdrawal).
    pub fn record_consent(
        &mut self,
        author: MemberId,
        status: ConsentStatus,
        scope: &str,
        at: Timestamp,
    ) -> Result<(), WriteError> {
        check_field(&CONSENT, "scope", &ScalarValue::Str(scope.into()), &author)?;
        self.replica.write(at, |doc, _| {
            let obj = record(doc, "consent")?;
            doc.put(&obj, "status", status.as_str())?;
            doc.put(&obj, "scope", scope)?;
            doc.put(&obj, "recorded_by", author.to_hex())?;
            doc.put(&obj, "recorded_at", ScalarValue::Timestamp(at.millis()))?;
            Ok(())
        })
    }

    /// Replaces the care plan text.
    pub fn set_care_plan(
        &mut self,
        author: MemberId,
        text: &str,
        at: Timestamp,
    ) -> Result<(), WriteError> {
        check_field(&CARE_PLAN, "text", &ScalarValue::Str(text.into()), &author)?;
        self.replica.write(at, |doc, _| {
            let obj = record(doc, "care_plan")?;
            doc.put(&obj, "text", text)?;
            doc.put(&obj, "updated_by", author.to_hex())?;
            doc.put(&obj, "updated_at", ScalarValue::Timestamp(at.millis()))?;
            Ok(())
        })
    }

    /// Adds an item to one of the lists; `fields` are `(name, value)` pairs as strings
    /// (`size` of a document is parsed as an integer). Returns the item id.
    pub fn add_item(
        &mut self,
        author: MemberId,
        list: ItemList,
        fields: &[(&str, &str)],
        at: Timestamp,
    ) -> Result<String, WriteError> {
        let Shape::Record(decl) = list.shape() else {
            return Err(WriteError::Automerge("item shape".into()));
        };
        let mut values = typed_values(list, fields, &author)?;
        if list == ItemList::Tasks && !values.iter().any(|(n, _)| *n == "status") {
            values.push(("status", ScalarValue::Str("open".into())));
        }
        if let Some(missing) = decl.iter().find(|f| {
            f.required
                && !matches!(f.name, "added_by" | "added_at")
                && !values.iter().any(|(n, _)| *n == f.name)
        }) {
            return Err(WriteError::InvalidValue {
                field: missing.name,
                reason: Fault::Required,
            });
        }
        self.replica.write(at, |doc, ctx| {
            let coll = root_obj(doc, list.root()).ok_or(WriteError::Automerge("no list".into()))?;
            let id = ctx.next_item_id();
            let obj = doc.put_object(&coll, id.as_str(), ObjType::Map)?;
            for (name, v) in values {
                doc.put(&obj, name, v)?;
            }
            doc.put(&obj, "added_by", author.to_hex())?;
            doc.put(&obj, "added_at", ScalarValue::Timestamp(at.millis()))?;
            Ok(id)
        })
    }

    /// Changes fields of an item (a problem now resolved, an allergy's criticality, a
    /// contact's new phone); who changed it and when are recorded, the earlier values stay
    /// in the document's history. A field given empty is cleared, unless it is required.
    pub fn change_item(
        &mut self,
        author: MemberId,
        list: ItemList,
        id: &str,
        fields: &[(&str, &str)],
        at: Timestamp,
    ) -> Result<(), WriteError> {
        let Shape::Record(decl) = list.shape() else {
            return Err(WriteError::Automerge("item shape".into()));
        };
        let (cleared, set): (Vec<_>, Vec<_>) =
            fields.iter().partition(|(_, v)| v.trim().is_empty());
        let mut gone = Vec::with_capacity(cleared.len());
        for (name, _) in cleared {
            let field = field_of(list, name)?;
            if decl.iter().any(|f| f.name == field && f.required) {
                return Err(WriteError::InvalidValue {
                    field,
                    reason: Fault::Required,
                });
            }
            gone.push(field);
        }
        let values = typed_values(list, &set, &author)?;
        if values.is_empty() && gone.is_empty() {
            return Err(WriteError::InvalidValue {
                field: "field",
                reason: Fault::NothingToChange,
            });
        }
        self.replica.write(at, |doc, _| {
            let obj = existing_item(doc, list, id)?;
            for (name, v) in values {
                doc.put(&obj, name, v)?;
            }
            for name in gone {
                if automerge::ReadDoc::get(doc, &obj, name)?.is_some() {
                    doc.delete(&obj, name)?;
                }
            }
            doc.put(&obj, "updated_by", author.to_hex())?;
            doc.put(&obj, "updated_at", ScalarValue::Timestamp(at.millis()))?;
            Ok(())
        })
    }

    /// Removes an item from the file as people see it (a contact who left, an allergy
    /// recorded by mistake) while keeping it in the record: who removed it, when and why.
    pub fn retire_item(
        &mut self,
        author: MemberId,
        list: ItemList,
        id: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), WriteError> {
        let reason = reason.trim();
        check_field(
            list.shape(),
            "removed_reason",
            &ScalarValue::Str(reason.into()),
            &author,
        )?;
        self.replica.write(at, |doc, _| {
            let obj = existing_item(doc, list, id)?;
            doc.put(&obj, "removed_by", author.to_hex())?;
            doc.put(&obj, "removed_at", ScalarValue::Timestamp(at.millis()))?;
            doc.put(&obj, "removed_reason", reason)?;
            Ok(())
        })
    }

    /// Marks a task done.
    pub fn complete_task(
        &mut self,
        author: MemberId,
        task: &str,
        at: Timestamp,
    ) -> Result<(), WriteError> {
        let doc = self.replica.doc();
        if root_obj(doc, "tasks")
            .and_then(|t| collection_item(doc, &t, task))
            .is_none()
        {
            return Err(WriteError::NotFound {
                what: "task",
                id: task.to_string(),
            });
        }
        self.replica.write(at, |doc, _| {
            let tasks = root_obj(doc, "tasks").ok_or(WriteError::Automerge("no tasks".into()))?;
            let obj = collection_item(doc, &tasks, task).ok_or(WriteError::NotFound {
                what: "task",
                id: task.to_string(),
            })?;
            doc.put(&obj, "status", "done")?;
            doc.put(&obj, "done_by", author.to_hex())?;
            doc.put(&obj, "done_at", ScalarValue::Timestamp(at.millis()))?;
            Ok(())
        })
    }

    /// Records that a medication was stopped, why, by whom and when; the line stays in the
    /// list (the history of a treatment is part of the record).
    pub fn stop_medication(
        &mut self,
        author: MemberId,
        medication: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), WriteError> {
        let reason = reason.trim();
        check_field(
            &MEDICATION,
            "stop_reason",
            &ScalarValue::Str(reason.into()),
            &author,
        )?;
        self.replica.write(at, |doc, _| {
            let list =
                root_obj(doc, "medications").ok_or(WriteError::Automerge("no list".into()))?;
            let obj = collection_item(doc, &list, medication).ok_or(WriteError::NotFound {
                what: "medication",
                id: medication.to_string(),
            })?;
            doc.put(&obj, "status", "stopped")?;
            doc.put(&obj, "stop_reason", reason)?;
            doc.put(&obj, "stopped_by", author.to_hex())?;
            doc.put(&obj, "stopped_at", ScalarValue::Timestamp(at.millis()))?;
            Ok(())
        })
    }

    /// Removes an item from a list (a contact who left, an allergy recorded by mistake).
    pub fn remove_item(
        &mut self,
        list: ItemList,
        id: &str,
        at: Timestamp,
    ) -> Result<(), WriteError> {
        self.replica.write(at, |doc, _| {
            let coll = root_obj(doc, list.root()).ok_or(WriteError::Automerge("no list".into()))?;
            if collection_item(doc, &coll, id).is_none() {
                return Err(WriteError::NotFound {
                    what: "item",
                    id: id.to_string(),
                });
            }
            doc.delete(&coll, id)?;
            Ok(())
        })
    }

    /// The patient's identity.
    pub fn identity(&self) -> Identity {
        let doc = self.replica.doc();
        let r = match root_obj(doc, "identity") {
            Some(obj) => RecordReader { doc, obj },
            None => {
                return Identity {
                    family_name: None,
                    given_names: None,
                    birth_date: None,
                    sex: None,
                    ins: None,
                    address: None,
                    phone: None,
                    status: IdentityStatus::Provisional,
                };
            }
        };
        let status = match (
            r.str("status").as_deref(),
            r.member("verified_by"),
            r.timestamp("verified_at"),
        ) {
            (Some("verified"), Some(by), Some(at)) => {
                // Verified only with the document it was checked against recorded.
                match r.str("verified_with").and_then(|d| d.parse().ok()) {
                    Some(document) => IdentityStatus::Verified { by, at, document },
                    None => IdentityStatus::Provisional,
                }
            }
            _ => IdentityStatus::Provisional,
        };
        Identity {
            family_name: r.str("family_name"),
            given_names: r.str("given_names"),
            birth_date: r.str("birth_date"),
            sex: r.str("sex"),
            ins: r.str("ins"),
            address: r.str("address"),
            phone: r.str("phone"),
            status,
        }
    }

    /// The recorded consent, if any.
    pub fn consent(&self) -> Option<Consent> {
        let doc = self.replica.doc();
        let r = RecordReader {
            doc,
            obj: root_obj(doc, "consent")?,
        };
        Some(Consent {
            status: r.str("status")?.parse().ok()?,
            scope: r.str("scope").unwrap_or_default(),
            recorded_by: r.member("recorded_by")?,
            recorded_at: r.timestamp("recorded_at")?,
        })
    }

    /// The care plan text (empty if none).
    pub fn care_plan(&self) -> String {
        let doc = self.replica.doc();
        root_obj(doc, "care_plan")
            .and_then(|obj| RecordReader { doc, obj }.str("text"))
            .unwrap_or_default()
    }

    /// The items of a list, oldest first.
    pub fn items(&self, list: ItemList) -> Vec<Item> {
        let doc = self.replica.doc();
        let Some(coll) = root_obj(doc, list.root()) else {
            return Vec::new();
        };
        let Shape::Record(decl) = list.shape() else {
            return Vec::new();
        };
        let mut items: Vec<Item> = collection_items(doc, &coll)
            .into_iter()
            .filter_map(|(id, obj)| {
                let r = RecordReader { doc, obj };
                let fields = decl
                    .iter()
                    .filter(|f| !matches!(f.name, "added_by" | "added_at"))
                    .filter_map(|f| {
                        let v = match r.scalar(f.name)? {
                            ScalarValue::Str(s) => s.to_string(),
                            ScalarValue::Int(i) => i.to_string(),
                            ScalarValue::Timestamp(t) => Timestamp(t).to_rfc3339(),
                            _ => return None,
                        };
                        Some((f.name.to_string(), v))
                    })
                    .collect();
                Some(Item {
                    id,
                    fields,
                    added_by: r.member("added_by")?,
                    added_at: r.timestamp("added_at")?,
                })
            })
            .collect();
        items.sort_by(|a, b| (a.added_at, &a.id).cmp(&(b.added_at, &b.id)));
        items
    }
}

/// The schema's name for a field an author may give, or why not.
fn field_of(list: ItemList, name: &str) -> Result<&'static str, WriteError> {
    let Shape::Record(decl) = list.shape() else {
        return Err(WriteError::Automerge("item shape".into()));
    };
    decl.iter()
        .find(|f| f.name == name && !is_written_history(f.name))
        .map(|f| f.name)
        .ok_or_else(|| WriteError::InvalidValue {
            field: "field",
            reason: Fault::UnknownField {
                name: name.to_string(),
                list: list.root().to_string(),
            },
        })
}

/// Fields given as strings, typed and checked against the list's schema as the other
/// members will check them.
fn typed_values(
    list: ItemList,
    fields: &[(&str, &str)],
    author: &MemberId,
) -> Result<Vec<(&'static str, ScalarValue)>, WriteError> {
    let Shape::Record(decl) = list.shape() else {
        return Err(WriteError::Automerge("item shape".into()));
    };
    let mut values = Vec::with_capacity(fields.len() + 1);
    for (name, value) in fields {
        let name = field_of(list, name)?;
        let int = decl
            .iter()
            .any(|f| f.name == name && matches!(f.shape, Shape::Scalar(Scalar::Int { .. })));
        let v = if int {
            ScalarValue::Int(value.trim().parse().map_err(|_| WriteError::InvalidValue {
                field: name,
                reason: Fault::NotANumber {
                    value: value.to_string(),
                },
            })?)
        } else {
            ScalarValue::Str(value.trim().into())
        };
        check_field(list.shape(), name, &v, author)?;
        values.push((name, v));
    }
    Ok(values)
}

/// An item of a list, or `NotFound`.
fn existing_item(
    doc: &AutoCommit,
    list: ItemList,
    id: &str,
) -> Result<automerge::ObjId, WriteError> {
    root_obj(doc, list.root())
        .and_then(|coll| collection_item(doc, &coll, id))
        .ok_or_else(|| WriteError::NotFound {
            what: "item",
            id: id.to_string(),
        })
}

/// The object of a root record of the patient file.
fn record(doc: &AutoCommit, name: &str) -> Result<automerge::ObjId, WriteError> {
    root_obj(doc, name).ok_or_else(|| WriteError::Automerge(format!("no {name}")))
}

/// Checks a value against the schema before writing it, with the same rules as validation.
fn check_field(
    shape: &'static Shape,
    name: &'static str,
    value: &ScalarValue,
    author: &MemberId,
) -> Result<(), WriteError> {
    match shape {
        Shape::Record(fields) => check_write(fields, name, value, author),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_refuses_what_the_other_members_would_refuse() {
        let me = MemberId::from_const([1; 32]);
        let mut pf = PatientFile::new(ActorId::from(&[1u8; 16][..]));
        let long = "x".repeat(MAX_LABEL_BYTES + 1);
        let r = pf.add_item(me, ItemList::Problems, &[("label", &long)], Timestamp(1));
        assert!(
            matches!(r, Err(WriteError::InvalidValue { field: "label", .. })),
            "{r:?}"
        );
        let r = pf.add_item(me, ItemList::Problems, &[("label", "  ")], Timestamp(1));
        assert!(
            matches!(r, Err(WriteError::InvalidValue { field: "label", .. })),
            "{r:?}"
        );
        let bad_ins = IdentityUpdate {
            ins: Some("184127645108947".into()),
            ..Default::default()
        };
        assert!(pf.set_identity(me, &bad_ins, Timestamp(1)).is_err());
        assert!(pf.items(ItemList::Problems).is_empty());
    }

    #[test]
    fn identity_vigilance_on_the_writer() {
        let me = MemberId::from_const([1; 32]);
        let mut pf = PatientFile::new(ActorId::from(&[1u8; 16][..]));
        // 2026-12-02 as the time of writing: a birth date after it is refused.
        let now = Timestamp(1_796_200_000_000);
        let unborn = IdentityUpdate {
            birth_date: Some("2030-01-01".into()),
            ..Default::default()
        };
        let r = pf.set_identity(me, &unborn, now);
        assert!(
            matches!(
                r,
                Err(WriteError::InvalidValue {
                    field: "birth_date",
                    ..
                })
            ),
            "{r:?}"
        );
        // An INS read out in groups is stored as its 15 characters.
        let spoken = IdentityUpdate {
            family_name: Some("Durand".into()),
            birth_date: Some("1941-05-12".into()),
            ins: Some("2 41 05 12 345 678 05".into()),
            ..Default::default()
        };
        pf.set_identity(me, &spoken, now).unwrap_or_default();
        assert_eq!(pf.identity().ins.as_deref(), Some("241051234567805"));
        assert_eq!(pf.identity().status, IdentityStatus::Provisional);
        pf.verify_identity(me, IdentityDocument::Passport, now)
            .unwrap_or_default();
        assert_eq!(
            pf.identity().status,
            IdentityStatus::Verified {
                by: me,
                at: now,
                document: IdentityDocument::Passport
            }
        );
    }

    #[test]
    fn an_item_changed_then_removed_keeps_its_history() {
        let me = MemberId::from_const([1; 32]);
        let mut pf = PatientFile::new(ActorId::from(&[1u8; 16][..]));
        let id = pf
            .add_item(
                me,
                ItemList::Allergies,
                &[("substance", "Pénicilline"), ("reaction", "urticaire")],
                Timestamp(1),
            )
            .unwrap_or_default();
        // A history field cannot be given by hand, nor an unknown one.
        for bad in [("removed_at", "x"), ("added_by", "y"), ("colour", "red")] {
            let r = pf.change_item(me, ItemList::Allergies, &id, &[bad], Timestamp(2));
            assert!(matches!(r, Err(WriteError::InvalidValue { .. })), "{r:?}");
        }
        // A required field cannot be cleared; an optional one can.
        let r = pf.change_item(
            me,
            ItemList::Allergies,
            &id,
            &[("substance", " ")],
            Timestamp(2),
        );
        assert!(
            matches!(
                r,
                Err(WriteError::InvalidValue {
                    field: "substance",
                    ..
                })
            ),
            "{r:?}"
        );
        let r = pf.change_item(
            me,
            ItemList::Allergies,
            &id,
            &[("criticality", "high"), ("reaction", "")],
            Timestamp(3),
        );
        assert_eq!(r, Ok(()));
        let item = &pf.items(ItemList::Allergies)[0];
        assert_eq!(item.get("criticality"), Some("high"));
        assert_eq!(item.get("reaction"), None);
        assert_eq!(item.get("updated_by"), Some(me.to_hex().as_str()));
        assert!(!item.is_removed());
        let r = pf.retire_item(me, ItemList::Allergies, &id, "saisie erronée", Timestamp(4));
        assert_eq!(r, Ok(()));
        let item = &pf.items(ItemList::Allergies)[0];
        assert!(item.is_removed());
        assert_eq!(item.get("removed_reason"), Some("saisie erronée"));
        assert_eq!(item.get("substance"), Some("Pénicilline"));
        let r = pf.retire_item(me, ItemList::Allergies, "nope", "x", Timestamp(5));
        assert!(matches!(r, Err(WriteError::NotFound { .. })), "{r:?}");
    }

    #[test]
    fn the_address_changes_without_unverifying_the_identity() {
        let me = MemberId::from_const([1; 32]);
        let mut pf = PatientFile::new(ActorId::from(&[1u8; 16][..]));
        let now = Timestamp(1_796_200_000_000);
        let who = IdentityUpdate {
            family_name: Some("Durand".into()),
            birth_date: Some("1941-05-12".into()),
            ..Default::default()
        };
        assert_eq!(pf.set_identity(me, &who, now), Ok(()));
        assert_eq!(
            pf.verify_identity(me, IdentityDocument::IdCard, now),
            Ok(())
        );
        let moved = IdentityUpdate {
            address: Some("3 rue des Lilas, 23000 Guéret".into()),
            phone: Some("05 55 00 00 00".into()),
            ..Default::default()
        };
        assert_eq!(pf.set_identity(me, &moved, now), Ok(()));
        // The whole identity sent back unchanged, as a form does, keeps it verified too.
        assert_eq!(pf.set_identity(me, &who, now), Ok(()));
        let id = pf.identity();
        assert!(matches!(id.status, IdentityStatus::Verified { .. }));
        assert_eq!(id.address.as_deref(), Some("3 rue des Lilas, 23000 Guéret"));
        // A phone given empty is cleared.
        let cut = IdentityUpdate {
            phone: Some(" ".into()),
            ..Default::default()
        };
        assert_eq!(pf.set_identity(me, &cut, now), Ok(()));
        assert_eq!(pf.identity().phone, None);
        let renamed = IdentityUpdate {
            family_name: Some("Durand-Petit".into()),
            ..Default::default()
        };
        assert_eq!(pf.set_identity(me, &renamed, now), Ok(()));
        assert_eq!(pf.identity().status, IdentityStatus::Provisional);
    }
}
