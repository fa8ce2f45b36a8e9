//! The liaison notebook ("cahier de liaison"): the append-only timeline of a circle.
//!
//! Entries (observations, care given, vital signs, alerts, handovers) are never edited or
//! deleted: a correction is an [`Amendment`] by the entry's author, and an alert is closed by
//! [`Acknowledgement`]s. The schema below is what the validator enforces on every change.

use automerge::transaction::Transactable;
use automerge::{ActorId, ObjType, ScalarValue};
use serde::{Deserialize, Serialize};

use crate::document::{
    DocKind, RecordReader, WriteError, check_text, check_write, collection_item, collection_items,
    root_obj,
};
use crate::member::{MemberId, Role, Timestamp};
use crate::replica::{LoadError, Replica};
use crate::schema::{DocSchema, Field, MAX_TEXT_BYTES, Root, Scalar, Shape, Writers};

const ENTRY_KINDS: &[&str] = &["observation", "care", "vitals", "alert", "handover"];

const TEXT: Shape = Shape::Scalar(Scalar::Text {
    max: MAX_TEXT_BYTES,
    non_empty: true,
});

static VITALS_FIELDS: [Field; 9] = [
    Field::optional(
        "temperature_c",
        Shape::Scalar(Scalar::Real {
            min: 25.0,
            max: 45.0,
        }),
    ),
    Field::optional(
        "heart_rate",
        Shape::Scalar(Scalar::Int { min: 10, max: 300 }),
    ),
    Field::optional("systolic", Shape::Scalar(Scalar::Int { min: 30, max: 300 })),
    Field::optional(
        "diastolic",
        Shape::Scalar(Scalar::Int { min: 10, max: 200 }),
    ),
    Field::optional("spo2", Shape::Scalar(Scalar::Int { min: 40, max: 100 })),
    Field::optional(
        "respiratory_rate",
        Shape::Scalar(Scalar::Int { min: 2, max: 80 }),
    ),
    Field::optional(
        "glycaemia_g_l",
        Shape::Scalar(Scalar::Real {
            min: 0.1,
            max: 10.0,
        }),
    ),
    Field::optional("pain", Shape::Scalar(Scalar::Int { min: 0, max: 10 })),
    Field::optional(
        "weight_kg",
        Shape::Scalar(Scalar::Real {
            min: 0.3,
            max: 400.0,
        }),
    ),
];

const ROLE_NAMES: &[&str] = &["coordinator", "professional", "caregiver", "observer"];

static ENTRY: Shape = Shape::Record(&[
    Field::required("author", Shape::Scalar(Scalar::Author)),
    Field::required("at", Shape::Scalar(Scalar::Timestamp)),
    Field::required("kind", Shape::Scalar(Scalar::OneOf(ENTRY_KINDS))),
    Field::required("text", TEXT),
    Field::optional("vitals", Shape::Record(&VITALS_FIELDS)),
    // Who must act on an alert: one member, or everyone with a role.
    Field::optional("to_member", Shape::Scalar(Scalar::Member)),
    Field::optional("to_role", Shape::Scalar(Scalar::OneOf(ROLE_NAMES))),
]);

static AMENDMENT: Shape = Shape::Record(&[
    Field::required("author", Shape::Scalar(Scalar::Author)),
    Field::required("at", Shape::Scalar(Scalar::Timestamp)),
    Field::required("entry", Shape::Scalar(Scalar::Ref("entries"))),
    Field::required("text", TEXT),
]);

static ACK: Shape = Shape::Record(&[
    Field::required("by", Shape::Scalar(Scalar::Author)),
    Field::required("at", Shape::Scalar(Scalar::Timestamp)),
    Field::required("entry", Shape::Scalar(Scalar::Ref("entries"))),
]);

pub(crate) static SCHEMA: DocSchema = DocSchema {
    roots: &[
        Root {
            name: "entries",
            shape: Shape::Collection(&ENTRY),
            writers: Writers::Clinical,
        },
        Root {
            name: "amendments",
            shape: Shape::Collection(&AMENDMENT),
            writers: Writers::Clinical,
        },
        Root {
            name: "acks",
            shape: Shape::Collection(&ACK),
            writers: Writers::Members,
        },
    ],
    append_only: true,
};

/// The kind of a notebook entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Something seen or heard: the patient's state, their mood, their home.
    Observation,
    /// Care given: a dressing, an injection, a session of physiotherapy.
    Care,
    /// Vital signs, with structured values.
    Vitals,
    /// Something the team must see and acknowledge.
    Alert,
    /// A handover to the next professional.
    Handover,
}

impl EntryKind {
    /// All kinds.
    pub const ALL: [EntryKind; 5] = [
        EntryKind::Observation,
        EntryKind::Care,
        EntryKind::Vitals,
        EntryKind::Alert,
        EntryKind::Handover,
    ];

    /// The lowercase name stored in the document.
    pub fn as_str(self) -> &'static str {
        ENTRY_KINDS[self as usize]
    }
}

/// The kinds as French care teams name them, each with the kind it means.
const FRENCH_KINDS: [(&str, EntryKind); 8] = [
    ("soin", EntryKind::Care),
    ("soins", EntryKind::Care),
    ("constantes", EntryKind::Vitals),
    ("signes vitaux", EntryKind::Vitals),
    ("alerte", EntryKind::Alert),
    ("transmission", EntryKind::Handover),
    ("relève", EntryKind::Handover),
    ("releve", EntryKind::Handover),
];

/// A kind by its name, in English or French, whatever the case: `alert`, `Alerte`,
/// `transmission`.
impl std::str::FromStr for EntryKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_lowercase();
        EntryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .or_else(|| {
                FRENCH_KINDS
                    .iter()
                    .find(|(french, _)| *french == name)
                    .map(|(_, kind)| *kind)
            })
            .ok_or_else(|| {
                format!(
                    "unknown note kind {s:?}: use {} (or observation, soin, constantes, alerte, transmission)",
                    ENTRY_KINDS.join(", ")
                )
            })
    }
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The range the notebook schema takes for a vitals field (`heart_rate`: 10–300).
pub(crate) fn vital_range(field: &str) -> Option<(f64, f64)> {
    VITALS_FIELDS
        .iter()
        .find(|f| f.name == field)
        .and_then(|f| match f.shape {
            Shape::Scalar(Scalar::Int { min, max }) => Some((min as f64, max as f64)),
            Shape::Scalar(Scalar::Real { min, max }) => Some((min, max)),
            _ => None,
        })
}

#[cfg(test)]
pub(crate) fn check_vitals(v: &Vitals) -> Result<(), WriteError> {
    v.check()
}

/// Who must act on an alert: a member, or every member with a role. An alert that names
/// no one is for the circle's coordinators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Addressee {
    Member(#[schemars(with = "String")] MemberId),
    Role(Role),
}

impl Addressee {
    /// Whom an alert is for when its author named no one.
    pub const DEFAULT: Addressee = Addressee::Role(Role::Coordinator);

    /// Whether `member`, with `role` in the circle, is among those who must act.
    pub fn includes(&self, member: &MemberId, role: Option<Role>) -> bool {
        match self {
            Addressee::Member(m) => m == member,
            Addressee::Role(r) => role == Some(*r),
        }
    }
}

/// The addressee an entry's record names, if any.
fn addressee_of<D: automerge::ReadDoc>(r: &RecordReader<'_, D>) -> Option<Addressee> {
    r.member("to_member")
        .map(Addressee::Member)
        .or_else(|| r.str("to_role")?.parse().ok().map(Addressee::Role))
}

/// Structured vital signs attached to an entry. Every value is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Vitals {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heart_rate: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systolic: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diastolic: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spo2: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub respiratory_rate: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glycaemia_g_l: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pain: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_kg: Option<f64>,
}

impl Vitals {
    fn reals(&self) -> [(&'static str, Option<f64>); 3] {
        [
            ("temperature_c", self.temperature_c),
            ("glycaemia_g_l", self.glycaemia_g_l),
            ("weight_kg", self.weight_kg),
        ]
    }

    fn ints(&self) -> [(&'static str, Option<i64>); 6] {
        [
            ("heart_rate", self.heart_rate),
            ("systolic", self.systolic),
            ("diastolic", self.diastolic),
            ("spo2", self.spo2),
            ("respiratory_rate", self.respiratory_rate),
            ("pain", self.pain),
        ]
    }

    /// Checks every value against the schema's ranges.
    fn check(&self) -> Result<(), WriteError> {
        let reals = self
            .reals()
            .into_iter()
            .map(|(n, v)| (n, v.map(ScalarValue::F64)));
        let ints = self
            .ints()
            .into_iter()
            .map(|(n, v)| (n, v.map(ScalarValue::Int)));
        for (name, value) in reals.chain(ints) {
            if let Some(v) = value {
                // Vitals hold no author field: whose name is passed does not matter.
                check_write(&VITALS_FIELDS, name, &v, &MemberId::from_const([0; 32]))?;
            }
        }
        Ok(())
    }

    /// Whether no value is given.
    pub fn is_empty(&self) -> bool {
        self.reals().iter().all(|(_, v)| v.is_none())
            && self.ints().iter().all(|(_, v)| v.is_none())
    }

    /// The values as a care team writes them in French (the text of an entry given only
    /// values): "TA 132/78 mmHg · FC 84/min · T° 37,2 °C".
    pub fn summary(&self) -> String {
        let decimal = |x: f64, places: usize| format!("{x:.places$}").replace('.', ",");
        let mut parts = Vec::new();
        match (self.systolic, self.diastolic) {
            (Some(s), Some(d)) => parts.push(format!("TA {s}/{d} mmHg")),
            (Some(s), None) => parts.push(format!("TA systolique {s} mmHg")),
            (None, Some(d)) => parts.push(format!("TA diastolique {d} mmHg")),
            (None, None) => {}
        }
        if let Some(v) = self.heart_rate {
            parts.push(format!("FC {v}/min"));
        }
        if let Some(v) = self.temperature_c {
            parts.push(format!("T° {} °C", decimal(v, 1)));
        }
        if let Some(v) = self.spo2 {
            parts.push(format!("SpO₂ {v} %"));
        }
        if let Some(v) = self.respiratory_rate {
            parts.push(format!("FR {v}/min"));
        }
        if let Some(v) = self.weight_kg {
            parts.push(format!("poids {} kg", decimal(v, 1)));
        }
        if let Some(v) = self.glycaemia_g_l {
            parts.push(format!("glycémie {} g/L", decimal(v, 2)));
        }
        if let Some(v) = self.pain {
            parts.push(format!("douleur {v}/10"));
        }
        parts.join(" · ")
    }
}

/// A new entry, as typed by its author.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub text: String,
    pub vitals: Option<Vitals>,
}

/// A notebook entry with its amendments and acknowledgements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub id: String,
    pub author: MemberId,
    pub at: Timestamp,
    pub kind: EntryKind,
    /// The text as first written.
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vitals: Option<Vitals>,
    /// Corrections, oldest first.
    pub amendments: Vec<Amendment>,
    /// Acknowledgements (alerts only), oldest first.
    pub acknowledgements: Vec<Acknowledgement>,
    /// Whom an alert names as who must act, if its author named someone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Addressee>,
}

impl Entry {
    /// Who must act on this alert (its coordinators when it names no one); `None` for a
    /// note that is not an alert.
    pub fn addressee(&self) -> Option<Addressee> {
        (self.kind == EntryKind::Alert).then(|| self.to.unwrap_or(Addressee::DEFAULT))
    }

    /// Whether this is an alert waiting for `member` (with `role`): written by someone
    /// else, addressed to them, not acknowledged yet.
    pub fn waits_for(&self, member: &MemberId, role: Option<Role>) -> bool {
        &self.author != member
            && self.acknowledgements.is_empty()
            && self.addressee().is_some_and(|a| a.includes(member, role))
    }

    /// The text as last corrected.
    pub fn current_text(&self) -> &str {
        self.amendments.last().map_or(&self.text, |a| &a.text)
    }
}

/// A correction of an entry by its author.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Amendment {
    pub id: String,
    pub author: MemberId,
    pub at: Timestamp,
    pub text: String,
}

/// A member's acknowledgement of an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Acknowledgement {
    pub id: String,
    pub by: MemberId,
    pub at: Timestamp,
}

/// A liaison notebook replica.
#[derive(Debug, Clone)]
pub struct LiaisonNotebook {
    replica: Replica,
}

impl LiaisonNotebook {
    /// A new, empty notebook replica for the device `actor`.
    pub fn new(actor: ActorId) -> Self {
        Self {
            replica: Replica::new(DocKind::LiaisonNotebook, actor),
        }
    }

    /// Loads a saved notebook.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Self, LoadError> {
        Ok(Self {
            replica: Replica::load(DocKind::LiaisonNotebook, bytes, actor)?,
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

    /// Adds an entry written by `author` at `at`; returns its id.
    pub fn add_entry(
        &mut self,
        author: MemberId,
        entry: NewEntry,
        at: Timestamp,
    ) -> Result<String, WriteError> {
        let mut ids = self.add_entries(author, vec![entry], at)?;
        ids.pop()
            .ok_or_else(|| WriteError::Automerge("no entry written".into()))
    }

    /// Adds several entries written by `author` at `at` as one change (an import): all of
    /// them or, if one is invalid, none. Returns their ids in order.
    pub fn add_entries(
        &mut self,
        author: MemberId,
        entries: Vec<NewEntry>,
        at: Timestamp,
    ) -> Result<Vec<String>, WriteError> {
        self.add_entries_to(author, entries, None, at)
    }

    /// Adds entries naming who must act (alerts only); returns their ids in order.
    pub fn add_entries_to(
        &mut self,
        author: MemberId,
        entries: Vec<NewEntry>,
        to: Option<Addressee>,
        at: Timestamp,
    ) -> Result<Vec<String>, WriteError> {
        if to.is_some() && entries.iter().any(|e| e.kind != EntryKind::Alert) {
            return Err(WriteError::InvalidValue {
                field: "to",
                reason: crate::schema::Fault::Other {
                    why: "only an alert names who must act".into(),
                },
            });
        }
        let mut checked = Vec::with_capacity(entries.len());
        for entry in entries {
            check_text("text", &entry.text, MAX_TEXT_BYTES)?;
            let vitals = entry.vitals.filter(|v| !v.is_empty());
            if let Some(v) = &vitals {
                v.check()?;
            }
            checked.push((entry.kind, entry.text, vitals));
        }
        self.replica.write(at, |doc, ctx| {
            let root =
                root_obj(doc, "entries").ok_or(WriteError::Automerge("no entries".into()))?;
            let mut ids = Vec::with_capacity(checked.len());
            for (kind, text, vitals) in &checked {
                let id = ctx.next_item_id();
                let obj = doc.put_object(&root, id.as_str(), ObjType::Map)?;
                doc.put(&obj, "author", author.to_hex())?;
                doc.put(&obj, "at", automerge::ScalarValue::Timestamp(at.millis()))?;
                doc.put(&obj, "kind", kind.as_str())?;
                doc.put(&obj, "text", text.as_str())?;
                match to {
                    Some(Addressee::Member(m)) => doc.put(&obj, "to_member", m.to_hex())?,
                    Some(Addressee::Role(r)) => doc.put(&obj, "to_role", r.as_str())?,
                    None => {}
                }
                if let Some(v) = vitals {
                    let vo = doc.put_object(&obj, "vitals", ObjType::Map)?;
                    for (name, value) in v.reals() {
                        if let Some(x) = value {
                            doc.put(&vo, name, x)?;
                        }
                    }
                    for (name, value) in v.ints() {
                        if let Some(x) = value {
                            doc.put(&vo, name, x)?;
                        }
                    }
                }
                ids.push(id);
            }
            Ok(ids)
        })
    }

    /// Corrects entry `entry` (which `author` wrote) with a new text; returns the amendment id.
    pub fn amend(
        &mut self,
        author: MemberId,
        entry: &str,
        text: &str,
        at: Timestamp,
    ) -> Result<String, WriteError> {
        check_text("text", text, MAX_TEXT_BYTES)?;
        let original = self.entry_record(entry)?;
        if original.member("author") != Some(author) {
            return Err(WriteError::NotAllowed(
                "only the author of an entry may amend it; write a new entry instead".into(),
            ));
        }
        self.replica.write(at, |doc, ctx| {
            let amendments =
                root_obj(doc, "amendments").ok_or(WriteError::Automerge("no amendments".into()))?;
            let id = ctx.next_item_id();
            let obj = doc.put_object(&amendments, id.as_str(), ObjType::Map)?;
            doc.put(&obj, "author", author.to_hex())?;
            doc.put(&obj, "at", automerge::ScalarValue::Timestamp(at.millis()))?;
            doc.put(&obj, "entry", entry)?;
            doc.put(&obj, "text", text)?;
            Ok(id)
        })
    }

    /// Records that `by` acknowledged alert `entry`; returns the acknowledgement id.
    pub fn acknowledge(
        &mut self,
        by: MemberId,
        entry: &str,
        at: Timestamp,
    ) -> Result<String, WriteError> {
        let original = self.entry_record(entry)?;
        if original.str("kind").as_deref() != Some("alert") {
            return Err(WriteError::NotAllowed(
                "only alerts are acknowledged".into(),
            ));
        }
        if original.member("author") == Some(by) {
            return Err(WriteError::NotAllowed(
                "an alert is acknowledged by someone other than its author".into(),
            ));
        }
        self.replica.write(at, |doc, ctx| {
            let acks = root_obj(doc, "acks").ok_or(WriteError::Automerge("no acks".into()))?;
            let id = ctx.next_item_id();
            let obj = doc.put_object(&acks, id.as_str(), ObjType::Map)?;
            doc.put(&obj, "by", by.to_hex())?;
            doc.put(&obj, "at", automerge::ScalarValue::Timestamp(at.millis()))?;
            doc.put(&obj, "entry", entry)?;
            Ok(id)
        })
    }

    fn entry_record(
        &self,
        id: &str,
    ) -> Result<RecordReader<'_, automerge::AutoCommit>, WriteError> {
        let not_found = || WriteError::NotFound {
            what: "entry",
            id: id.to_string(),
        };
        let doc = self.replica.doc();
        let entries = root_obj(doc, "entries").ok_or_else(not_found)?;
        let obj = collection_item(doc, &entries, id).ok_or_else(not_found)?;
        Ok(RecordReader { doc, obj })
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        let doc = self.replica.doc();
        root_obj(doc, "entries").map_or(0, |e| automerge::ReadDoc::length(doc, &e))
    }

    /// Whether the notebook has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the entry `id` is an alert written by someone other than `me` and
    /// addressed to `me` (with `role`): what a node tells its member about when it arrives.
    pub fn is_alert_for(&self, id: &str, me: &MemberId, role: Option<Role>) -> bool {
        let doc = self.replica.doc();
        let Some(obj) = root_obj(doc, "entries").and_then(|c| collection_item(doc, &c, id)) else {
            return false;
        };
        let r = RecordReader { doc, obj };
        // The kind first: most entries are not alerts, and their addressee is not read.
        r.str("kind").as_deref() == Some(EntryKind::Alert.as_str())
            && r.member("author").is_some_and(|a| &a != me)
            && addressee_of(&r)
                .unwrap_or(Addressee::DEFAULT)
                .includes(me, role)
    }

    /// The alerts waiting for `me` (with `role`): addressed to them, written by someone
    /// else, acknowledged by no one yet.
    pub fn open_alerts_for(&self, me: &MemberId, role: Option<Role>) -> usize {
        self.alerts_waiting_for(me, role).len()
    }

    /// The alerts waiting for `me` (with `role`), as (id, time written): what
    /// [`Entry::waits_for`] selects, read without the entries' texts, vital signs and
    /// corrections (a reminder looks at every circle of a GP's thousand).
    pub fn alerts_waiting_for(
        &self,
        me: &MemberId,
        role: Option<Role>,
    ) -> Vec<(String, Timestamp)> {
        let doc = self.replica.doc();
        let mut waiting = Vec::new();
        if let Some(coll) = root_obj(doc, "entries") {
            for (id, obj) in collection_items(doc, &coll) {
                let r = RecordReader { doc, obj };
                if r.str("kind").as_deref() != Some(EntryKind::Alert.as_str()) {
                    continue;
                }
                let to = addressee_of(&r).unwrap_or(Addressee::DEFAULT);
                if let (Some(author), Some(at)) = (r.member("author"), r.timestamp("at"))
                    && &author != me
                    && to.includes(me, role)
                {
                    waiting.push((id, at));
                }
            }
        }
        if waiting.is_empty() {
            return waiting;
        }
        let mut acknowledged = std::collections::HashSet::new();
        if let Some(coll) = root_obj(doc, "acks") {
            for (_, obj) in collection_items(doc, &coll) {
                if let Some(entry) = (RecordReader { doc, obj }).str("entry") {
                    acknowledged.insert(entry);
                }
            }
        }
        waiting.retain(|(id, _)| !acknowledged.contains(id));
        waiting
    }

    /// All entries, oldest first (by time, then id), with their amendments and
    /// acknowledgements.
    pub fn entries(&self) -> Vec<Entry> {
        let doc = self.replica.doc();
        let mut entries = Vec::new();
        let mut index = std::collections::HashMap::new();
        if let Some(coll) = root_obj(doc, "entries") {
            for (id, obj) in collection_items(doc, &coll) {
                let r = RecordReader { doc, obj };
                let (Some(author), Some(at), Some(kind), Some(text)) = (
                    r.member("author"),
                    r.timestamp("at"),
                    r.str("kind").and_then(|k| k.parse().ok()),
                    r.str("text"),
                ) else {
                    continue;
                };
                let vitals = r.object("vitals").map(|v| {
                    let v = RecordReader { doc, obj: v };
                    Vitals {
                        temperature_c: v.real("temperature_c"),
                        heart_rate: v.int("heart_rate"),
                        systolic: v.int("systolic"),
                        diastolic: v.int("diastolic"),
                        spo2: v.int("spo2"),
                        respiratory_rate: v.int("respiratory_rate"),
                        glycaemia_g_l: v.real("glycaemia_g_l"),
                        pain: v.int("pain"),
                        weight_kg: v.real("weight_kg"),
                    }
                });
                let to = addressee_of(&r);
                index.insert(id.clone(), entries.len());
                entries.push(Entry {
                    id,
                    author,
                    at,
                    kind,
                    text,
                    vitals,
                    amendments: Vec::new(),
                    acknowledgements: Vec::new(),
                    to,
                });
            }
        }
        if let Some(coll) = root_obj(doc, "amendments") {
            for (id, obj) in collection_items(doc, &coll) {
                let r = RecordReader { doc, obj };
                if let (Some(entry), Some(author), Some(at), Some(text)) = (
                    r.str("entry"),
                    r.member("author"),
                    r.timestamp("at"),
                    r.str("text"),
                ) && let Some(&i) = index.get(&entry)
                {
                    entries[i].amendments.push(Amendment {
                        id,
                        author,
                        at,
                        text,
                    });
                }
            }
        }
        if let Some(coll) = root_obj(doc, "acks") {
            for (id, obj) in collection_items(doc, &coll) {
                let r = RecordReader { doc, obj };
                if let (Some(entry), Some(by), Some(at)) =
                    (r.str("entry"), r.member("by"), r.timestamp("at"))
                    && let Some(&i) = index.get(&entry)
                {
                    entries[i]
                        .acknowledgements
                        .push(Acknowledgement { id, by, at });
                }
            }
        }
        for e in &mut entries {
            e.amendments
                .sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
            e.acknowledgements
                .sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        }
        entries.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_waits_for_its_addressee_until_someone_acknowledges_it() {
        let (nurse, gp, physio) = (
            MemberId::from_const([1; 32]),
            MemberId::from_const([2; 32]),
            MemberId::from_const([3; 32]),
        );
        let mut nb = LiaisonNotebook::new(ActorId::from(&[1u8; 16][..]));
        let alert = |text: &str| NewEntry {
            kind: EntryKind::Alert,
            text: text.into(),
            vitals: None,
        };
        let t = Timestamp(1);
        let to_physio = nb
            .add_entries_to(
                nurse,
                vec![alert("Chute")],
                Some(Addressee::Member(physio)),
                t,
            )
            .unwrap_or_default();
        nb.add_entries(nurse, vec![alert("Appeler le médecin")], t)
            .unwrap_or_default();
        let waiting = |nb: &LiaisonNotebook, m: &MemberId, role| nb.open_alerts_for(m, Some(role));
        // The physio (a professional) for the first; the GP (coordinator) by default for
        // the second; never the author.
        assert_eq!(waiting(&nb, &physio, Role::Professional), 1);
        assert_eq!(waiting(&nb, &gp, Role::Coordinator), 1);
        assert_eq!(waiting(&nb, &nurse, Role::Coordinator), 0);
        assert!(nb.is_alert_for(&to_physio[0], &physio, Some(Role::Professional)));
        assert!(!nb.is_alert_for(&to_physio[0], &gp, Some(Role::Coordinator)));
        // The quick read agrees with the entries as people see them.
        let agree = |nb: &LiaisonNotebook| {
            for (m, role) in [
                (&physio, Role::Professional),
                (&gp, Role::Coordinator),
                (&nurse, Role::Coordinator),
            ] {
                let slow: Vec<(String, Timestamp)> = nb
                    .entries()
                    .into_iter()
                    .filter(|e| e.waits_for(m, Some(role)))
                    .map(|e| (e.id, e.at))
                    .collect();
                let mut quick = nb.alerts_waiting_for(m, Some(role));
                quick.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
                assert_eq!(quick, slow);
            }
        };
        agree(&nb);
        nb.acknowledge(gp, &to_physio[0], t).unwrap_or_default();
        agree(&nb);
        assert_eq!(waiting(&nb, &physio, Role::Professional), 0);
        // Only an alert names who must act.
        let care = NewEntry {
            kind: EntryKind::Care,
            text: "Pansement".into(),
            vitals: None,
        };
        let r = nb.add_entries_to(nurse, vec![care], Some(Addressee::DEFAULT), t);
        assert!(
            matches!(r, Err(WriteError::InvalidValue { field: "to", .. })),
            "{r:?}"
        );
    }

    #[test]
    fn kinds_are_taken_in_english_or_french_whatever_the_case() {
        for (name, kind) in [
            ("alert", EntryKind::Alert),
            ("Alerte", EntryKind::Alert),
            ("TRANSMISSION", EntryKind::Handover),
            ("relève", EntryKind::Handover),
            ("constantes", EntryKind::Vitals),
            ("Soin", EntryKind::Care),
            (" observation ", EntryKind::Observation),
        ] {
            assert_eq!(name.parse::<EntryKind>(), Ok(kind), "{name}");
        }
        let refused = "note".parse::<EntryKind>().unwrap_err();
        assert!(refused.contains("alerte"), "{refused}");
    }

    #[test]
    fn values_read_as_a_french_care_team_writes_them() {
        let v = Vitals {
            systolic: Some(132),
            diastolic: Some(78),
            heart_rate: Some(84),
            temperature_c: Some(37.2),
            weight_kg: Some(61.4),
            glycaemia_g_l: Some(1.05),
            pain: Some(3),
            ..Vitals::default()
        };
        assert_eq!(
            v.summary(),
            "TA 132/78 mmHg · FC 84/min · T° 37,2 °C · poids 61,4 kg · glycémie 1,05 g/L · douleur 3/10"
        );
        assert!(Vitals::default().is_empty() && Vitals::default().summary().is_empty());
    }
}
