//! A circle's documents as one FHIR R4 `Bundle` (type `collection`), for the hospital, the
//! regional platform or the next practice: the patient, the care team, the liaison notebook
//! as `Observation`s, the thread as `Communication`s, documents, consent, the patient file's
//! lists, tasks, and one `Provenance` per act with its verified author.
//!
//! Pure: the caller passes the documents, the members (from the signed membership log) and
//! the export time. Resource ids are UUIDs derived from the circle and each item's id, so
//! exporting twice names every resource the same way and a receiver can update in place.
//!
//! Codes: LOINC for vital signs, HL7 terminology for statuses and categories, the French
//! OIDs for the INS (exported only once the identity is verified) and for professionals'
//! national ids (RPPS, ADELI). What has no standard code (a note's kind, a member's role in
//! the circle, the identity's verification status) uses a `urn:cercle:` system.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::member::{MemberId, Role, Timestamp};
use crate::notebook::{Entry, EntryKind, LiaisonNotebook, Vitals};
use crate::patient_file::{ConsentStatus, IdentityStatus, Item, ItemList, PatientFile};
use crate::thread::{Message, Thread};

/// The OID of the INS built on the NIR (the French national health identifier).
pub const INS_NIR_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.8";
/// The OID of the French national professional id (IdNatPS: "8" + RPPS or "0" + ADELI).
pub const IDNATPS_SYSTEM: &str = "urn:oid:1.2.250.1.71.4.2.1";
/// Where a member id (their public member key) is named.
pub const MEMBER_SYSTEM: &str = "urn:cercle:member";
/// Where a circle id is named.
pub const CIRCLE_SYSTEM: &str = "urn:cercle:circle";
/// Where a document's content hash (BLAKE3, hex) is named.
pub const BLOB_SYSTEM: &str = "urn:cercle:blob:blake3";

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const ALLERGY_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const DATA_OPERATION: &str = "http://terminology.hl7.org/CodeSystem/v3-DataOperation";
const CONTACT_RELATIONSHIP: &str = "http://terminology.hl7.org/CodeSystem/v2-0131";
const PARTICIPANT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
const NOTE_KIND_SYSTEM: &str = "urn:cercle:notebook-kind";
const ROLE_SYSTEM: &str = "urn:cercle:circle-role";
const ACT_SYSTEM: &str = "urn:cercle:act";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const AUDIT_ACTION_SYSTEM: &str = "urn:cercle:audit-action";
const IDENTITY_STATUS_URL: &str = "urn:cercle:fhir:identity-status";

/// One person of the care team, as the membership log and their published profile say.
#[derive(Debug, Clone, PartialEq)]
pub struct CareTeamMember {
    pub member: MemberId,
    /// Their role in the circle; `None` for someone who wrote here and is no longer a member.
    pub role: Option<Role>,
    pub name: Option<String>,
    pub profession: Option<String>,
    pub rpps: Option<String>,
    pub adeli: Option<String>,
}

/// What one export reads.
#[derive(Debug, Clone, Copy)]
pub struct CircleRecord<'a> {
    /// The circle's id.
    pub circle: &'a str,
    /// Whether the circle was closed (the care team is then `inactive`).
    pub closed: bool,
    pub patient_file: &'a PatientFile,
    pub notebook: &'a LiaisonNotebook,
    pub thread: &'a Thread,
    pub members: &'a [CareTeamMember],
    /// When the export is made (the bundle's `timestamp`).
    pub exported_at: Timestamp,
    /// The exporting node's audit trail: one `AuditEvent` each.
    pub audit: &'a [AuditEntry],
    /// The patient's objection to sharing, recorded in the membership log: it stands over
    /// the patient file's consent.
    pub objection: Option<&'a Objection>,
}

/// The patient's objection to sharing, as the exporting node reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objection {
    /// The recording device's time.
    pub at: Timestamp,
    /// Who recorded it, when known.
    pub by: Option<MemberId>,
    /// Why, when the exporting node can open it.
    pub reason: Option<String>,
}

/// One row of the exporting node's audit trail (a write it accepted, data it refused, a
/// fork it saw), for an `AuditEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When the node recorded it: the time of receipt, or the author's time for what it
    /// wrote itself.
    pub recorded: Timestamp,
    /// Who did it, when known.
    pub member: Option<MemberId>,
    /// The device that wrote or sent it (hex), when known.
    pub device: Option<String>,
    /// The action (`note_written`…) or the refusal's reason (`bad_signature`…).
    pub action: String,
    /// A write accepted, or something refused.
    pub accepted: bool,
    /// What it was about, or why it was refused.
    pub detail: Option<String>,
}

/// The circle as a FHIR R4 `Bundle` of type `collection`, every reference resolving to an
/// entry of the bundle.
pub fn bundle(record: &CircleRecord<'_>) -> Value {
    let mut b = Builder::new(record);
    b.patient();
    b.consent();
    b.care_plan();
    b.patient_lists();
    b.tasks();
    b.documents();
    b.notebook();
    b.thread();
    b.audit_events();
    b.care_team();
    let entries = std::mem::take(&mut b.entries);
    json!({
        "resourceType": "Bundle",
        "id": b.id("bundle", &record.exported_at.millis().to_string()),
        "identifier": { "system": CIRCLE_SYSTEM, "value": record.circle },
        "type": "collection",
        "timestamp": instant(record.exported_at),
        "entry": entries,
    })
}

/// What a `Provenance` records being done.
#[derive(Debug, Clone, Copy)]
enum Act {
    Create,
    Update,
    VerifyIdentity,
    Acknowledge,
    Read,
    Complete,
}

impl Act {
    fn activity(self) -> Value {
        let (system, code, text) = match self {
            Act::Create => (DATA_OPERATION, "CREATE", "create"),
            Act::Update => (DATA_OPERATION, "UPDATE", "update"),
            Act::VerifyIdentity => (ACT_SYSTEM, "verify-identity", "identity verified"),
            Act::Acknowledge => (ACT_SYSTEM, "acknowledge", "alert acknowledged"),
            Act::Read => (ACT_SYSTEM, "read", "message read"),
            Act::Complete => (ACT_SYSTEM, "complete", "task done"),
        };
        json!({ "coding": [{ "system": system, "code": code }], "text": text })
    }
}

struct Builder<'a> {
    record: &'a CircleRecord<'a>,
    entries: Vec<Value>,
    /// Members referenced so far: each gets a resource at the end.
    referenced: BTreeSet<MemberId>,
    patient: String,
    team: String,
    /// Document resources by content hash, for messages' attachments.
    documents: BTreeMap<String, String>,
}

impl<'a> Builder<'a> {
    fn new(record: &'a CircleRecord<'a>) -> Self {
        let mut b = Self {
            record,
            entries: Vec::new(),
            referenced: BTreeSet::new(),
            patient: String::new(),
            team: String::new(),
            documents: BTreeMap::new(),
        };
        b.patient = b.id("patient", "");
        b.team = b.id("care-team", "");
        b
    }

    /// The UUID of the resource for `local` (an item id, a member id…) of kind `what`.
    fn id(&self, what: &str, local: &str) -> String {
        let mut h = blake3::Hasher::new_derive_key("cercle 2026 fhir resource id v1");
        for part in [self.record.circle, what, local] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&h.finalize().as_bytes()[..16]);
        uuid::Uuid::new_v8(bytes).to_string()
    }

    fn push(&mut self, id: &str, mut resource: Value) {
        resource["id"] = Value::String(id.to_string());
        self.entries.push(json!({
            "fullUrl": urn(id),
            "resource": resource,
        }));
    }

    fn member_id(&self, m: &MemberId) -> String {
        self.id("member", &m.to_hex())
    }

    fn member_ref(&mut self, m: &MemberId) -> Value {
        self.referenced.insert(*m);
        reference(&self.member_id(m))
    }

    fn subject(&self) -> Value {
        reference(&self.patient)
    }

    /// Records that `who` did `act` on the resource `target` at `at`.
    fn provenance(&mut self, target: &str, local: &str, who: &MemberId, at: Timestamp, act: Act) {
        self.provenance_of(&[target], local, who, at, act);
    }

    /// One act that made several resources (a vitals note: the panel and each sign).
    fn provenance_of(
        &mut self,
        targets: &[&str],
        local: &str,
        who: &MemberId,
        at: Timestamp,
        act: Act,
    ) {
        // Item ids are unique within a document only: the target makes them unique here.
        let first = targets.first().copied().unwrap_or_default();
        let id = self.id("provenance", &format!("{first}/{local}"));
        let agent = self.member_ref(who);
        let targets: Vec<Value> = targets.iter().map(|t| reference(t)).collect();
        self.push(
            &id,
            json!({
                "resourceType": "Provenance",
                "target": targets,
                "recorded": instant(at),
                "activity": act.activity(),
                "agent": [{
                    "type": { "coding": [{ "system": PARTICIPANT_TYPE, "code": "author" }] },
                    "who": agent,
                }],
            }),
        );
    }

    /// One `AuditEvent` per row of the exporting node's trail: a write accepted is a
    /// "Patient Record" event (DICOM 110110) that succeeded, data refused a "Security
    /// Alert" (110113) that failed; the action is the subtype.
    fn audit_events(&mut self) {
        let patient = self.subject();
        for (i, e) in self.record.audit.iter().enumerate() {
            let id = self.id(
                "audit",
                &format!("{i}/{}/{}", e.recorded.millis(), e.action),
            );
            let who = match &e.member {
                Some(m) => self.member_ref(m),
                None => {
                    json!({ "display": format!("device {}", e.device.as_deref().unwrap_or("unknown")) })
                }
            };
            let (code, display, outcome) = if e.accepted {
                ("110110", "Patient Record", "0")
            } else {
                ("110113", "Security Alert", "4")
            };
            let mut agent = json!({ "who": who, "requestor": true });
            if let Some(device) = &e.device {
                agent["altId"] = json!(device);
            }
            let mut event = json!({
                "resourceType": "AuditEvent",
                "type": { "system": DICOM, "code": code, "display": display },
                "subtype": [{ "system": AUDIT_ACTION_SYSTEM, "code": e.action }],
                "action": "C",
                "recorded": instant(e.recorded),
                "outcome": outcome,
                "agent": [agent],
                "source": {
                    "observer": { "display": "Cercle node" },
                    "type": [{ "system": SOURCE_TYPE, "code": "4", "display": "Application Server" }],
                },
                "entity": [{ "what": patient }],
            });
            if let Some(detail) = e.detail.as_ref().filter(|d| !d.is_empty()) {
                event["outcomeDesc"] = json!(detail);
            }
            self.push(&id, event);
        }
    }

    fn patient(&mut self) {
        let pf = self.record.patient_file;
        let identity = pf.identity();
        let mut patient = json!({
            "resourceType": "Patient",
            "active": !self.record.closed,
            "identifier": [{ "system": CIRCLE_SYSTEM, "value": self.record.circle }],
        });
        let status = match identity.status {
            IdentityStatus::Provisional => "provisional",
            IdentityStatus::Verified { .. } => "verified",
        };
        patient["extension"] = json!([{ "url": IDENTITY_STATUS_URL, "valueCode": status }]);
        if let (Some(ins), IdentityStatus::Verified { .. }) = (&identity.ins, &identity.status) {
            push_to(
                &mut patient,
                "identifier",
                json!({ "use": "official", "system": INS_NIR_SYSTEM, "value": ins }),
            );
        }
        let mut name = json!({ "use": "official" });
        if let Some(family) = &identity.family_name {
            name["family"] = json!(family);
        }
        if let Some(given) = &identity.given_names {
            name["given"] = json!(given.split_whitespace().collect::<Vec<_>>());
        }
        if identity.family_name.is_some() || identity.given_names.is_some() {
            patient["name"] = json!([name]);
        }
        if let Some(sex) = &identity.sex {
            patient["gender"] = json!(sex);
        }
        if let Some(birth) = &identity.birth_date {
            patient["birthDate"] = json!(birth);
        }
        if let Some(address) = &identity.address {
            patient["address"] = json!([{ "use": "home", "text": address }]);
        }
        if let Some(phone) = &identity.phone {
            patient["telecom"] = json!([{ "system": "phone", "value": phone, "use": "home" }]);
        }
        for c in pf.items(ItemList::Contacts) {
            if c.is_removed() {
                continue;
            }
            let name = c.get("name").unwrap_or_default();
            // The regular GP is the patient's general practitioner, not a contact.
            if c.get("role") == Some("regular_gp") {
                push_to(
                    &mut patient,
                    "generalPractitioner",
                    json!({ "display": name }),
                );
                continue;
            }
            let mut contact = json!({ "name": { "text": name } });
            let mut relationship = Vec::new();
            match c.get("role") {
                Some("emergency") => relationship.push(json!({
                    "coding": [{ "system": CONTACT_RELATIONSHIP, "code": "C" }],
                    "text": "Contact en cas d'urgence",
                })),
                Some("relative") => relationship.push(json!({
                    "coding": [{ "system": CONTACT_RELATIONSHIP, "code": "N" }],
                    "text": "Proche",
                })),
                // No code system names the French trusted person: it is said in words.
                Some("trusted_person") => {
                    relationship.push(json!({ "text": "Personne de confiance" }))
                }
                _ => {}
            }
            if let Some(relation) = c.get("relation") {
                relationship.push(json!({ "text": relation }));
            }
            if !relationship.is_empty() {
                contact["relationship"] = json!(relationship);
            }
            for system in ["phone", "email"] {
                if let Some(value) = c.get(system) {
                    push_to(
                        &mut contact,
                        "telecom",
                        json!({ "system": system, "value": value }),
                    );
                }
            }
            push_to(&mut patient, "contact", contact);
        }
        let id = self.patient.clone();
        self.push(&id, patient);
        if let IdentityStatus::Verified { by, at, .. } = identity.status {
            self.provenance(&id, "identity-verified", &by, at, Act::VerifyIdentity);
        }
    }

    /// The consent that stands: the patient's objection, once recorded, as an active
    /// opt-out that denies sharing from its time on; otherwise the patient file's consent.
    fn consent(&mut self) {
        let (status, rule, text, at, by, provision) = match self.record.objection {
            Some(o) => (
                "active",
                "OPTOUT",
                o.reason.clone(),
                o.at,
                o.by,
                Some(json!({ "type": "deny", "period": { "start": instant(o.at) } })),
            ),
            None => {
                let Some(consent) = self.record.patient_file.consent() else {
                    return;
                };
                let (status, rule) = match consent.status {
                    ConsentStatus::Given => ("active", "OPTIN"),
                    ConsentStatus::Refused => ("rejected", "OPTOUT"),
                    ConsentStatus::Withdrawn => ("inactive", "OPTOUT"),
                };
                let by = Some(consent.recorded_by);
                (
                    status,
                    rule,
                    Some(consent.scope),
                    consent.recorded_at,
                    by,
                    None,
                )
            }
        };
        let mut policy = json!({ "coding": [{ "system": ACT_CODE, "code": rule }] });
        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            policy["text"] = json!(text);
        }
        let id = self.id("consent", "");
        let mut resource = json!({
            "resourceType": "Consent",
            "status": status,
            "scope": { "coding": [{ "system": CONSENT_SCOPE, "code": "patient-privacy" }] },
            "category": [{ "coding": [{ "system": LOINC, "code": "59284-0" }] }],
            "patient": self.subject(),
            "dateTime": instant(at),
            "performer": [self.subject()],
            "policyRule": policy,
        });
        if let Some(provision) = provision {
            resource["provision"] = provision;
        }
        self.push(&id, resource);
        if let Some(by) = &by {
            self.provenance(&id, "consent", by, at, Act::Update);
        }
    }

    fn care_plan(&mut self) {
        let text = self.record.patient_file.care_plan();
        if text.trim().is_empty() {
            return;
        }
        let id = self.id("care-plan", "");
        let resource = json!({
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": self.subject(),
            "description": text,
            "careTeam": [reference(&self.team)],
        });
        self.push(&id, resource);
    }

    /// Problems, allergies and medications, each with the `Provenance` of who added it.
    fn patient_lists(&mut self) {
        let pf = self.record.patient_file;
        for (list, what) in [
            (ItemList::Problems, "condition"),
            (ItemList::Allergies, "allergy"),
            (ItemList::Medications, "medication"),
        ] {
            // A removed item stays in the record, not in what is handed to others.
            for item in pf.items(list).into_iter().filter(|i| !i.is_removed()) {
                let id = self.id(what, &item.id);
                let author = self.member_ref(&item.added_by);
                let resource = match list {
                    ItemList::Problems => self.condition(&item, author),
                    ItemList::Allergies => self.allergy(&item, author),
                    _ => self.medication(&item, author),
                };
                self.push(&id, resource);
                self.provenance(&id, &item.id, &item.added_by, item.added_at, Act::Create);
            }
        }
    }

    fn condition(&self, item: &Item, recorder: Value) -> Value {
        let clinical = match item.get("status") {
            Some("resolved") => "resolved",
            Some("stopped") => "inactive",
            _ => "active",
        };
        let mut c = json!({
            "resourceType": "Condition",
            "clinicalStatus": { "coding": [{ "system": CONDITION_CLINICAL, "code": clinical }] },
            "category": [{ "coding": [{ "system": CONDITION_CATEGORY, "code": "problem-list-item" }] }],
            "code": { "text": item.get("label").unwrap_or_default() },
            "subject": self.subject(),
            "recordedDate": instant(item.added_at),
            "recorder": recorder,
        });
        if let Some(since) = item.get("since") {
            c["onsetDateTime"] = json!(since);
        }
        c
    }

    fn allergy(&self, item: &Item, recorder: Value) -> Value {
        let mut a = json!({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": { "coding": [{ "system": ALLERGY_CLINICAL, "code": "active" }] },
            "code": { "text": item.get("substance").unwrap_or_default() },
            "patient": self.subject(),
            "recordedDate": instant(item.added_at),
            "recorder": recorder,
        });
        if let Some(criticality) = item.get("criticality") {
            a["criticality"] = json!(criticality);
        }
        let severity = item.get("severity");
        match item.get("reaction") {
            Some(reaction) => {
                let mut r = json!({ "manifestation": [{ "text": reaction }] });
                if let Some(s) = severity {
                    r["severity"] = json!(s);
                }
                a["reaction"] = json!([r]);
            }
            // A reaction needs a manifestation: a severity alone is kept as a note.
            None => {
                if let Some(s) = severity {
                    a["note"] = json!([{ "text": format!("severity: {s}") }]);
                }
            }
        }
        a
    }

    fn medication(&self, item: &Item, source: Value) -> Value {
        let status = match item.get("status") {
            Some("stopped") => "stopped",
            Some("resolved") => "completed",
            _ => "active",
        };
        let mut m = json!({
            "resourceType": "MedicationStatement",
            "status": status,
            "medicationCodeableConcept": { "text": item.get("name").unwrap_or_default() },
            "subject": self.subject(),
            "dateAsserted": instant(item.added_at),
            "informationSource": source,
        });
        let dosage: Vec<&str> = [item.get("dose"), item.get("frequency")]
            .into_iter()
            .flatten()
            .collect();
        if !dosage.is_empty() {
            m["dosage"] = json!([{ "text": dosage.join(", ") }]);
        }
        let mut period = serde_json::Map::new();
        if let Some(start) = item.get("start") {
            period.insert("start".into(), json!(start));
        }
        if let Some(end) = item.get("stopped_at").and_then(parse_instant) {
            period.insert("end".into(), json!(instant(end)));
        }
        if !period.is_empty() {
            m["effectivePeriod"] = Value::Object(period);
        }
        if let Some(why) = item.get("stop_reason") {
            m["statusReason"] = json!([{ "text": why }]);
        }
        m
    }

    fn tasks(&mut self) {
        for item in self.record.patient_file.items(ItemList::Tasks) {
            let id = self.id("task", &item.id);
            let done = item.get("status") == Some("done");
            let requester = self.member_ref(&item.added_by);
            let mut task = json!({
                "resourceType": "Task",
                "status": if done { "completed" } else { "requested" },
                "intent": "plan",
                "description": item.get("title").unwrap_or_default(),
                "for": self.subject(),
                "authoredOn": instant(item.added_at),
                "requester": requester,
            });
            if let Some(owner) = item.get("owner").and_then(|o| o.parse::<MemberId>().ok()) {
                task["owner"] = self.member_ref(&owner);
            }
            if let Some(due) = item.get("due") {
                task["restriction"] = json!({ "period": { "end": due } });
            }
            let completed = item
                .get("done_by")
                .and_then(|b| b.parse::<MemberId>().ok())
                .zip(item.get("done_at").and_then(parse_instant));
            if let Some((_, at)) = completed {
                task["executionPeriod"] = json!({ "end": instant(at) });
            }
            self.push(&id, task);
            self.provenance(&id, &item.id, &item.added_by, item.added_at, Act::Create);
            if let Some((by, at)) = completed {
                self.provenance(&id, &format!("{}/done", item.id), &by, at, Act::Complete);
            }
        }
    }

    fn documents(&mut self) {
        for item in self.record.patient_file.items(ItemList::Documents) {
            let id = self.id("document", &item.id);
            let author = self.member_ref(&item.added_by);
            let mut attachment = json!({
                "contentType": item.get("media_type").unwrap_or("application/octet-stream"),
                "title": item.get("name").unwrap_or_default(),
                "creation": instant(item.added_at),
            });
            if let Some(size) = item.get("size").and_then(|s| s.parse::<u64>().ok()) {
                attachment["size"] = json!(size);
            }
            let mut doc = json!({
                "resourceType": "DocumentReference",
                "status": "current",
                "subject": self.subject(),
                "date": instant(item.added_at),
                "author": [author],
                "description": item.get("name").unwrap_or_default(),
                "content": [{ "attachment": attachment }],
            });
            if let Some(blob) = item.get("blob") {
                doc["identifier"] = json!([{ "system": BLOB_SYSTEM, "value": blob }]);
                self.documents.insert(blob.to_string(), id.clone());
            }
            self.push(&id, doc);
            self.provenance(&id, &item.id, &item.added_by, item.added_at, Act::Create);
        }
    }

    fn notebook(&mut self) {
        for entry in self.record.notebook.entries() {
            let id = self.id("observation", &entry.id);
            let mut resource = self.observation(&entry);
            // Each measured sign is an Observation of its own (the FHIR vital-signs
            // profile), the note is the panel that groups them.
            let mut signs = Vec::new();
            if let Some(vitals) = &entry.vitals {
                for sign in vital_signs(vitals) {
                    let sign_id = self.id("observation", &format!("{}/{}", entry.id, sign.code));
                    let o = self.vital_sign(&entry, &sign);
                    self.push(&sign_id, o);
                    signs.push(sign_id);
                }
            }
            if !signs.is_empty() {
                resource["hasMember"] = signs.iter().map(|s| reference(s)).collect();
            }
            self.push(&id, resource);
            let targets: Vec<&str> = std::iter::once(id.as_str())
                .chain(signs.iter().map(String::as_str))
                .collect();
            self.provenance_of(&targets, &entry.id, &entry.author, entry.at, Act::Create);
            for a in &entry.amendments {
                self.provenance(&id, &a.id, &a.author, a.at, Act::Update);
            }
            for a in &entry.acknowledgements {
                self.provenance(&id, &a.id, &a.by, a.at, Act::Acknowledge);
            }
        }
    }

    fn observation(&mut self, entry: &Entry) -> Value {
        let performer = self.member_ref(&entry.author);
        let kind = entry.kind.as_str();
        let mut code = json!({
            "coding": [{ "system": NOTE_KIND_SYSTEM, "code": kind }],
            "text": kind,
        });
        let mut o = json!({
            "resourceType": "Observation",
            "status": if entry.amendments.is_empty() { "final" } else { "amended" },
            "subject": self.subject(),
            "effectiveDateTime": instant(entry.at),
            "issued": instant(entry.at),
            "performer": [performer],
        });
        if entry.kind == EntryKind::Vitals {
            push_to(
                &mut code,
                "coding",
                json!({ "system": LOINC, "code": "85353-1" }),
            );
            o["category"] = vital_signs_category();
        }
        o["code"] = code;
        if !entry.current_text().is_empty() {
            o["valueString"] = json!(entry.current_text());
        }
        // The earlier versions of an amended note, each with who wrote it and when.
        let mut versions = Vec::new();
        if !entry.amendments.is_empty() {
            versions.push((entry.author, entry.at, entry.text.as_str()));
            for a in &entry.amendments[..entry.amendments.len() - 1] {
                versions.push((a.author, a.at, a.text.as_str()));
            }
        }
        let notes: Vec<Value> = versions
            .into_iter()
            .map(|(by, at, text)| {
                json!({ "authorReference": self.member_ref(&by), "time": instant(at), "text": text })
            })
            .collect();
        if !notes.is_empty() {
            o["note"] = Value::Array(notes);
        }
        o
    }

    /// One measured sign of a vitals note: a vital-signs Observation coded in LOINC with
    /// its value in UCUM units (blood pressure: the panel with its two components).
    fn vital_sign(&mut self, entry: &Entry, sign: &Sign) -> Value {
        let performer = self.member_ref(&entry.author);
        let mut o = json!({
            "resourceType": "Observation",
            "status": if entry.amendments.is_empty() { "final" } else { "amended" },
            "category": vital_signs_category(),
            "code": loinc(sign.code, sign.display),
            "subject": self.subject(),
            "effectiveDateTime": instant(entry.at),
            "issued": instant(entry.at),
            "performer": [performer],
        });
        match &sign.value {
            SignValue::Quantity(q) => o["valueQuantity"] = q.clone(),
            SignValue::Components(parts) => {
                o["component"] = parts
                    .iter()
                    .map(|(code, display, q)| json!({ "code": loinc(code, display), "valueQuantity": q }))
                    .collect();
            }
        }
        o
    }

    fn thread(&mut self) {
        for message in self.record.thread.messages() {
            let id = self.id("communication", &message.id);
            let resource = self.communication(&message);
            self.push(&id, resource);
            self.provenance(&id, &message.id, &message.author, message.at, Act::Create);
            for r in &message.read_by {
                let local = format!("{}/read/{}", message.id, r.by.to_hex());
                self.provenance(&id, &local, &r.by, r.at, Act::Read);
            }
        }
    }

    fn communication(&mut self, message: &Message) -> Value {
        let sender = self.member_ref(&message.author);
        let mut payload = vec![json!({ "contentString": message.text })];
        for blob in &message.attachments {
            let to = match self.documents.get(blob) {
                Some(doc) => reference(doc),
                None => json!({ "identifier": { "system": BLOB_SYSTEM, "value": blob } }),
            };
            payload.push(json!({ "contentReference": to }));
        }
        json!({
            "resourceType": "Communication",
            "status": "completed",
            "subject": self.subject(),
            "sent": instant(message.at),
            "sender": sender,
            "recipient": [reference(&self.team)],
            "payload": payload,
        })
    }

    /// The care team, and a resource for every member referenced anywhere: practitioners,
    /// family caregivers (`RelatedPerson`), and former members who wrote here.
    fn care_team(&mut self) {
        let known: BTreeMap<MemberId, &CareTeamMember> =
            self.record.members.iter().map(|m| (m.member, m)).collect();
        let mut participants = Vec::new();
        let current = self.record.members.iter().filter(|m| m.role.is_some());
        let everyone: BTreeSet<MemberId> = current
            .clone()
            .map(|m| m.member)
            .chain(self.referenced.iter().copied())
            .collect();
        for m in current {
            let Some(role) = m.role else { continue };
            let mut r = json!({ "coding": [{ "system": ROLE_SYSTEM, "code": role.as_str() }] });
            if let Some(p) = &m.profession {
                r["text"] = json!(p);
            }
            participants
                .push(json!({ "role": [r], "member": reference(&self.member_id(&m.member)) }));
        }
        for member in everyone {
            let id = self.member_id(&member);
            let resource = self.person(member, known.get(&member).copied());
            self.push(&id, resource);
        }
        let identity = self.record.patient_file.identity();
        let team = self.team.clone();
        let mut resource = json!({
            "resourceType": "CareTeam",
            "identifier": [{ "system": CIRCLE_SYSTEM, "value": self.record.circle }],
            "status": if self.record.closed { "inactive" } else { "active" },
            "subject": self.subject(),
        });
        if identity.family_name.is_some() || identity.given_names.is_some() {
            resource["name"] = json!(identity.display_name());
        }
        if !participants.is_empty() {
            resource["participant"] = Value::Array(participants);
        }
        self.push(&team, resource);
    }

    fn person(&self, member: MemberId, known: Option<&CareTeamMember>) -> Value {
        let mut identifiers = vec![json!({ "system": MEMBER_SYSTEM, "value": member.to_hex() })];
        let role = known.and_then(|k| k.role);
        let mut p = if role == Some(Role::Caregiver) {
            let mut p = json!({ "resourceType": "RelatedPerson", "patient": self.subject() });
            if let Some(rel) = known.and_then(|k| k.profession.as_ref()) {
                p["relationship"] = json!([{ "text": rel }]);
            }
            p
        } else {
            let mut p = json!({ "resourceType": "Practitioner" });
            if let Some(k) = known {
                if let Some(rpps) = &k.rpps {
                    identifiers
                        .push(json!({ "system": IDNATPS_SYSTEM, "value": format!("8{rpps}") }));
                } else if let Some(adeli) = &k.adeli {
                    identifiers
                        .push(json!({ "system": IDNATPS_SYSTEM, "value": format!("0{adeli}") }));
                }
                if let Some(prof) = &k.profession {
                    p["qualification"] = json!([{ "code": { "text": prof } }]);
                }
            }
            p
        };
        p["identifier"] = Value::Array(identifiers);
        p["active"] = json!(role.is_some() && !self.record.closed);
        if let Some(name) = known.and_then(|k| k.name.as_ref()) {
            p["name"] = json!([{ "text": name }]);
        }
        p
    }
}

/// One sign measured in a vitals note.
struct Sign {
    code: &'static str,
    display: &'static str,
    value: SignValue,
}

enum SignValue {
    Quantity(Value),
    /// (LOINC code, display, valueQuantity) of each component.
    Components(Vec<(&'static str, &'static str, Value)>),
}

/// The signs a vitals note measured, in LOINC with UCUM units, in the order a nurse
/// reads them out.
fn vital_signs(v: &Vitals) -> Vec<Sign> {
    let mut signs = Vec::new();
    let bp: Vec<_> = [
        (v.systolic, "8480-6", "Systolic blood pressure"),
        (v.diastolic, "8462-4", "Diastolic blood pressure"),
    ]
    .into_iter()
    .filter_map(|(value, code, display)| {
        value.map(|x| (code, display, quantity(json!(x), "mm[Hg]", "mmHg")))
    })
    .collect();
    if !bp.is_empty() {
        signs.push(Sign {
            code: "85354-9",
            display: "Blood pressure panel with all children optional",
            value: SignValue::Components(bp),
        });
    }
    let ints = [
        (v.heart_rate, "8867-4", "Heart rate", "/min", "beats/minute"),
        (
            v.spo2,
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
            "%",
            "%",
        ),
        (
            v.respiratory_rate,
            "9279-1",
            "Respiratory rate",
            "/min",
            "breaths/minute",
        ),
    ];
    let reals = [
        (v.temperature_c, "8310-5", "Body temperature", "Cel", "°C"),
        (v.weight_kg, "29463-7", "Body weight", "kg", "kg"),
        (
            v.glycaemia_g_l,
            "2339-0",
            "Glucose [Mass/volume] in Blood",
            "g/L",
            "g/L",
        ),
    ];
    let pain = [(
        v.pain,
        "72514-3",
        "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
        "{score}",
        "score",
    )];
    let values = ints
        .into_iter()
        .map(|(x, c, d, u, h)| (x.map(|x| json!(x)), c, d, u, h))
        .chain(
            reals
                .into_iter()
                .map(|(x, c, d, u, h)| (x.map(|x| json!(x)), c, d, u, h)),
        )
        .chain(
            pain.into_iter()
                .map(|(x, c, d, u, h)| (x.map(|x| json!(x)), c, d, u, h)),
        );
    for (value, code, display, ucum, human) in values {
        if let Some(value) = value {
            signs.push(Sign {
                code,
                display,
                value: SignValue::Quantity(quantity(value, ucum, human)),
            });
        }
    }
    signs
}

/// A FHIR `Quantity` in UCUM: the UCUM code, and the unit as people write it.
fn quantity(value: Value, ucum: &str, human: &str) -> Value {
    json!({ "value": value, "unit": human, "system": UCUM, "code": ucum })
}

fn loinc(code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": LOINC, "code": code, "display": display }], "text": display })
}

fn vital_signs_category() -> Value {
    json!([{
        "coding": [{ "system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs" }],
        "text": "Vital Signs",
    }])
}

fn urn(id: &str) -> String {
    format!("urn:uuid:{id}")
}

fn reference(id: &str) -> Value {
    json!({ "reference": urn(id) })
}

/// A FHIR `instant`: RFC 3339 in UTC with milliseconds.
fn instant(t: Timestamp) -> String {
    match jiff::Timestamp::from_millisecond(t.millis()) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        // Out of range cannot come from a validated document; the epoch marks it.
        Err(_) => "1970-01-01T00:00:00.000Z".into(),
    }
}

fn parse_instant(s: &str) -> Option<Timestamp> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| Timestamp(t.as_millisecond()))
}

/// Appends `value` to the array `key` of `object`, creating it.
fn push_to(object: &mut Value, key: &str, value: Value) {
    match object.get_mut(key).and_then(Value::as_array_mut) {
        Some(list) => list.push(value),
        None => object[key] = json!([value]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActorId;
    use crate::notebook::NewEntry;
    use crate::patient_file::{IdentityDocument, IdentityUpdate};
    use proptest::prelude::*;

    /// What a test expects to succeed: its failure is the test's failure.
    trait Must<T> {
        fn must(self) -> T;
    }

    impl<T, E: std::fmt::Debug> Must<T> for Result<T, E> {
        fn must(self) -> T {
            self.unwrap_or_else(|e| panic!("{e:?}"))
        }
    }

    impl<T> Must<T> for Option<T> {
        fn must(self) -> T {
            self.unwrap_or_else(|| panic!("expected a value"))
        }
    }

    const GP: MemberId = MemberId::from_const([1; 32]);
    const NURSE: MemberId = MemberId::from_const([2; 32]);
    const DAUGHTER: MemberId = MemberId::from_const([3; 32]);
    const FORMER: MemberId = MemberId::from_const([4; 32]);
    const UNKNOWN: MemberId = MemberId::from_const([5; 32]);

    /// The elements FHIR R4 requires of each resource type we write (cardinality 1..).
    fn required(resource_type: &str) -> Option<&'static [&'static str]> {
        Some(match resource_type {
            "Patient" | "Practitioner" | "CareTeam" => &[],
            "RelatedPerson" => &["patient"],
            "Observation" => &["status", "code"],
            "Communication" => &["status"],
            "DocumentReference" => &["status", "content"],
            "Consent" => &["status", "scope", "category"],
            "Provenance" => &["target", "recorded", "agent"],
            "AuditEvent" => &["type", "recorded", "agent", "source"],
            "Condition" => &["subject"],
            "AllergyIntolerance" => &["patient"],
            "MedicationStatement" => &["status", "medicationCodeableConcept", "subject"],
            "CarePlan" => &["status", "intent", "subject"],
            "Task" => &["status", "intent"],
            _ => return None,
        })
    }

    fn is_fhir_id(s: &str) -> bool {
        (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    }

    fn is_instant(s: &str) -> bool {
        s.parse::<jiff::Timestamp>().is_ok() && s.ends_with('Z') && s.len() == 24
    }

    /// Walks `v`: no empty element (FHIR forbids `""`, `[]`, `{}` and `null`), every
    /// `reference` names an entry, every instant-typed element parses.
    fn walk(v: &Value, path: &str, urls: &BTreeSet<String>) -> Result<(), String> {
        match v {
            Value::Null => Err(format!("{path}: null")),
            Value::String(s) if s.is_empty() => Err(format!("{path}: empty string")),
            Value::Array(a) if a.is_empty() => Err(format!("{path}: empty array")),
            Value::Object(o) if o.is_empty() => Err(format!("{path}: empty object")),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .try_for_each(|(i, x)| walk(x, &format!("{path}[{i}]"), urls)),
            Value::Object(o) => o.iter().try_for_each(|(k, x)| {
                let here = format!("{path}.{k}");
                if k == "reference" && !x.as_str().is_some_and(|r| urls.contains(r)) {
                    return Err(format!("{here}: {x} names no entry of the bundle"));
                }
                let instants = ["recorded", "issued", "sent", "authoredOn", "recordedDate"];
                if (instants.contains(&k.as_str()) || k == "dateAsserted" || k == "creation")
                    && !x.as_str().is_some_and(is_instant)
                {
                    return Err(format!("{here}: {x} is not an instant"));
                }
                walk(x, &here, urls)
            }),
            _ => Ok(()),
        }
    }

    /// The structural rules of FHIR R4 a receiver checks first.
    fn check_r4(bundle: &Value) -> Result<(), String> {
        if bundle["resourceType"] != "Bundle" || bundle["type"] != "collection" {
            return Err("not a collection bundle".into());
        }
        let entries = bundle["entry"].as_array().ok_or("no entries")?;
        let mut urls = BTreeSet::new();
        for e in entries {
            let id = e["resource"]["id"]
                .as_str()
                .ok_or("a resource without id")?;
            if !is_fhir_id(id) || e["fullUrl"] != format!("urn:uuid:{id}") {
                return Err(format!("bad id or fullUrl: {e}"));
            }
            if !urls.insert(urn(id)) {
                return Err(format!("two entries named {id}"));
            }
        }
        for (i, e) in entries.iter().enumerate() {
            let r = &e["resource"];
            let t = r["resourceType"].as_str().unwrap_or_default();
            let needs = required(t).ok_or(format!("unexpected resource type {t:?}"))?;
            for field in needs {
                if r.get(*field).is_none() {
                    return Err(format!("{t} without its required {field}"));
                }
            }
            if t == "Consent" && r.get("policy").is_none() && r.get("policyRule").is_none() {
                return Err("Consent without policy or policyRule (ppc-1)".into());
            }
            walk(r, &format!("entry[{i}]:{t}"), &urls)?;
        }
        walk(bundle, "Bundle", &urls)
    }

    fn of_type<'v>(bundle: &'v Value, t: &str) -> Vec<&'v Value> {
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .filter(|r| r["resourceType"] == t)
            .collect()
    }

    fn team() -> Vec<CareTeamMember> {
        let m = |member, role, name: &str, profession: &str| CareTeamMember {
            member,
            role,
            name: Some(name.into()),
            profession: Some(profession.into()),
            rpps: None,
            adeli: None,
        };
        let mut gp = m(
            GP,
            Some(Role::Coordinator),
            "Dr Claire Martin",
            "médecin généraliste",
        );
        gp.rpps = Some("10101201234".into());
        vec![
            gp,
            m(
                NURSE,
                Some(Role::Professional),
                "Julien Moreau",
                "infirmier",
            ),
            m(DAUGHTER, Some(Role::Caregiver), "Sophie Durand", "fille"),
            m(FORMER, None, "Marc Petit", "kinésithérapeute"),
        ]
    }

    struct Docs {
        pf: PatientFile,
        nb: LiaisonNotebook,
        th: Thread,
    }

    fn actor(n: u8) -> ActorId {
        ActorId::from(&[n; 16][..])
    }

    fn full_circle() -> Docs {
        let mut pf = PatientFile::new(actor(1));
        let mut nb = LiaisonNotebook::new(actor(1));
        let mut th = Thread::new(actor(1));
        let t = Timestamp(1_795_000_000_000);
        let identity = IdentityUpdate {
            family_name: Some("Durand".into()),
            given_names: Some("Jeanne Marie".into()),
            birth_date: Some("1941-05-12".into()),
            sex: Some("female".into()),
            ins: Some("241051234567805".into()),
            address: Some("3 rue des Lilas, 23000 Guéret".into()),
            phone: Some("05 55 00 00 00".into()),
        };
        pf.set_identity(GP, &identity, t).must();
        pf.verify_identity(GP, IdentityDocument::IdCard, t).must();
        pf.record_consent(GP, ConsentStatus::Given, "soins à domicile", t)
            .must();
        pf.set_care_plan(GP, "Pansement tous les deux jours.", t)
            .must();
        let add = |pf: &mut PatientFile, list, fields: &[(&str, &str)]| {
            pf.add_item(GP, list, fields, t).must()
        };
        add(
            &mut pf,
            ItemList::Problems,
            &[("label", "Ulcère veineux"), ("since", "2026-09-01")],
        );
        add(
            &mut pf,
            ItemList::Allergies,
            &[
                ("substance", "Pénicilline"),
                ("severity", "severe"),
                ("criticality", "high"),
            ],
        );
        let mistaken = add(&mut pf, ItemList::Allergies, &[("substance", "Aspirine")]);
        pf.retire_item(GP, ItemList::Allergies, &mistaken, "saisie erronée", t)
            .must();
        add(
            &mut pf,
            ItemList::Allergies,
            &[("substance", "Latex"), ("reaction", "urticaire")],
        );
        add(
            &mut pf,
            ItemList::Medications,
            &[
                ("name", "Paracétamol"),
                ("dose", "1 g"),
                ("frequency", "3/jour"),
            ],
        );
        let stopped = add(
            &mut pf,
            ItemList::Medications,
            &[("name", "Furosémide 40 mg"), ("start", "2026-09-15")],
        );
        pf.stop_medication(GP, &stopped, "hypotension", t).must();
        add(
            &mut pf,
            ItemList::Contacts,
            &[
                ("name", "Sophie Durand"),
                ("phone", "0600000000"),
                ("role", "trusted_person"),
                ("relation", "fille"),
            ],
        );
        add(
            &mut pf,
            ItemList::Contacts,
            &[("name", "Dr Claire Martin"), ("role", "regular_gp")],
        );
        let nurse = NURSE.to_hex();
        let task = add(
            &mut pf,
            ItemList::Tasks,
            &[
                ("title", "Bilan sanguin"),
                ("owner", &nurse),
                ("due", "2026-12-01"),
                ("status", "open"),
            ],
        );
        pf.complete_task(NURSE, &task, Timestamp(t.0 + 5_000))
            .must();
        let blob = "ab".repeat(32);
        add(
            &mut pf,
            ItemList::Documents,
            &[
                ("name", "ordonnance.pdf"),
                ("media_type", "application/pdf"),
                ("size", "1200"),
                ("blob", &blob),
            ],
        );
        let entry = |kind, text: &str| NewEntry {
            kind,
            text: text.into(),
            vitals: None,
        };
        nb.add_entry(
            NURSE,
            entry(EntryKind::Observation, "Mange peu, moral bas"),
            t,
        )
        .must();
        let vitals = Vitals {
            temperature_c: Some(38.2),
            systolic: Some(135),
            diastolic: Some(85),
            pain: Some(3),
            ..Vitals::default()
        };
        nb.add_entry(
            NURSE,
            NewEntry {
                kind: EntryKind::Vitals,
                text: "Constantes du soir".into(),
                vitals: Some(vitals),
            },
            t,
        )
        .must();
        let alert = nb
            .add_entry(FORMER, entry(EntryKind::Alert, "Chute ce matin"), t)
            .must();
        nb.acknowledge(GP, &alert, Timestamp(t.0 + 60_000)).must();
        let care = nb
            .add_entry(UNKNOWN, entry(EntryKind::Care, "Pansement fait"), t)
            .must();
        nb.amend(
            UNKNOWN,
            &care,
            "Pansement refait, plaie propre",
            Timestamp(t.0 + 1),
        )
        .must();
        let msg = th
            .send(DAUGHTER, "Maman a bien dormi", &[blob, "cd".repeat(32)], t)
            .must();
        th.mark_read(GP, &msg, Timestamp(t.0 + 2)).must();
        Docs { pf, nb, th }
    }

    fn export(d: &Docs, members: &[CareTeamMember], closed: bool) -> Value {
        bundle(&CircleRecord {
            circle: "c1rc1e",
            closed,
            patient_file: &d.pf,
            notebook: &d.nb,
            thread: &d.th,
            members,
            exported_at: Timestamp(1_795_000_100_000),
            objection: None,
            audit: &[
                AuditEntry {
                    recorded: Timestamp(1_795_000_000_500),
                    member: Some(NURSE),
                    device: Some("ab".repeat(32)),
                    action: "note_written".into(),
                    accepted: true,
                    detail: None,
                },
                AuditEntry {
                    recorded: Timestamp(1_795_000_000_900),
                    member: None,
                    device: Some("cd".repeat(32)),
                    action: "bad_signature".into(),
                    accepted: false,
                    detail: Some("the device signature does not verify".into()),
                },
            ],
        })
    }

    #[test]
    fn a_full_circle_is_a_valid_r4_collection_with_every_reference_resolved() {
        let d = full_circle();
        let b = export(&d, &team(), false);
        check_r4(&b).unwrap_or_else(|e| panic!("{e}\n{b:#}"));
        let count = |t| of_type(&b, t).len();
        assert_eq!(count("Patient"), 1);
        assert_eq!(count("CareTeam"), 1);
        assert_eq!(count("AuditEvent"), 2, "one per row of the trail");
        // Four notes, one of them vitals with three signs measured.
        assert_eq!(count("Observation"), 4 + 3);
        assert_eq!(count("Communication"), 1);
        assert_eq!(count("DocumentReference"), 1);
        assert_eq!(count("Consent"), 1);
        assert_eq!(count("CarePlan"), 1);
        assert_eq!(count("Condition"), 1);
        // The allergy removed as a mistake is not handed over.
        assert_eq!(count("AllergyIntolerance"), 2);
        assert!(!b.to_string().contains("Aspirine"));
        let penicillin = of_type(&b, "AllergyIntolerance")
            .into_iter()
            .find(|a| a["code"]["text"] == "Pénicilline")
            .must();
        assert_eq!(penicillin["criticality"], "high");
        assert_eq!(count("MedicationStatement"), 2);
        let stopped = of_type(&b, "MedicationStatement")
            .into_iter()
            .find(|m| m["status"] == "stopped")
            .must();
        assert_eq!(stopped["statusReason"][0]["text"], "hypotension");
        assert_eq!(stopped["effectivePeriod"]["start"], "2026-09-15");
        assert!(stopped["effectivePeriod"]["end"].is_string(), "{stopped}");
        assert_eq!(count("Task"), 1);
        // GP, nurse, former physio, unknown author; the daughter is a RelatedPerson.
        assert_eq!(count("Practitioner"), 4);
        assert_eq!(count("RelatedPerson"), 1);
        // One per act: identity verified, consent, 5 list items, task added and done,
        // document, 4 notes, 1 amendment, 1 acknowledgement, 1 message, 1 read receipt.
        assert_eq!(count("Provenance"), 1 + 1 + 5 + 2 + 1 + 4 + 1 + 1 + 1 + 1);
    }

    #[test]
    fn the_patients_objection_stands_over_the_consent_of_the_patient_file() {
        let d = full_circle();
        let objection = Objection {
            at: Timestamp(1_795_000_050_000),
            by: Some(NURSE),
            reason: Some("ne souhaite plus que son dossier soit partagé".into()),
        };
        let b = bundle(&CircleRecord {
            circle: "c1rc1e",
            closed: false,
            patient_file: &d.pf,
            notebook: &d.nb,
            thread: &d.th,
            members: &team(),
            exported_at: Timestamp(1_795_000_100_000),
            objection: Some(&objection),
            audit: &[],
        });
        check_r4(&b).unwrap_or_else(|e| panic!("{e}\n{b:#}"));
        let consents = of_type(&b, "Consent");
        assert_eq!(consents.len(), 1, "one consent: the objection");
        let c = consents[0];
        assert_eq!(c["status"], "active");
        assert_eq!(c["policyRule"]["coding"][0]["code"], "OPTOUT");
        assert_eq!(
            c["policyRule"]["text"],
            "ne souhaite plus que son dossier soit partagé"
        );
        assert_eq!(c["provision"]["type"], "deny");
        assert_eq!(c["dateTime"], c["provision"]["period"]["start"]);
        // Without the objection, the patient file's consent is what is exported.
        let given = export(&d, &team(), false);
        let given = of_type(&given, "Consent");
        assert_eq!(given[0]["policyRule"]["coding"][0]["code"], "OPTIN");
    }

    #[test]
    fn the_patient_carries_the_ins_only_once_the_identity_is_verified() {
        let d = full_circle();
        let b = export(&d, &team(), false);
        let p = of_type(&b, "Patient")[0];
        assert_eq!(p["name"][0]["family"], "Durand");
        assert_eq!(p["name"][0]["given"], json!(["Jeanne", "Marie"]));
        assert_eq!(p["gender"], "female");
        assert_eq!(p["birthDate"], "1941-05-12");
        assert_eq!(p["extension"][0]["valueCode"], "verified");
        assert_eq!(p["address"][0]["text"], "3 rue des Lilas, 23000 Guéret");
        assert_eq!(p["telecom"][0]["value"], "05 55 00 00 00");
        // The regular GP is the general practitioner; the trusted person a contact.
        assert_eq!(p["generalPractitioner"][0]["display"], "Dr Claire Martin");
        assert_eq!(p["contact"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            p["contact"][0]["relationship"][0]["text"],
            "Personne de confiance"
        );
        assert_eq!(p["contact"][0]["relationship"][1]["text"], "fille");
        let ins = p["identifier"]
            .as_array()
            .must()
            .iter()
            .find(|i| i["system"] == INS_NIR_SYSTEM);
        assert_eq!(ins.map(|i| &i["value"]), Some(&json!("241051234567805")));

        let mut provisional = PatientFile::new(actor(2));
        let identity = IdentityUpdate {
            family_name: Some("Durand".into()),
            ins: Some("241051234567805".into()),
            ..IdentityUpdate::default()
        };
        provisional.set_identity(GP, &identity, Timestamp(1)).must();
        let d = Docs {
            pf: provisional,
            ..d
        };
        let b = export(&d, &team(), false);
        check_r4(&b).unwrap();
        let p = of_type(&b, "Patient")[0];
        assert_eq!(p["extension"][0]["valueCode"], "provisional");
        assert!(!p.to_string().contains("241051234567805"), "{p}");
    }

    #[test]
    fn notes_become_observations_with_their_history_and_loinc_coded_vitals() {
        let d = full_circle();
        let b = export(&d, &team(), false);
        let obs = of_type(&b, "Observation");
        let vitals = obs.iter().find(|o| o["code"]["text"] == "vitals").must();
        assert_eq!(vitals["category"][0]["coding"][0]["code"], "vital-signs");
        // The note is the panel; each sign is an Observation of its own that it points at.
        let members: Vec<&Value> = vitals["hasMember"]
            .as_array()
            .must()
            .iter()
            .map(|r| {
                obs.iter()
                    .find(|o| format!("urn:uuid:{}", o["id"].as_str().must()) == r["reference"])
                    .copied()
                    .must()
            })
            .collect();
        let codes: Vec<&str> = members
            .iter()
            .map(|o| o["code"]["coding"][0]["code"].as_str().must())
            .collect();
        assert_eq!(codes, ["85354-9", "8310-5", "72514-3"]);
        for o in &members {
            assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
            assert_eq!(o["subject"], vitals["subject"]);
            assert_eq!(o["effectiveDateTime"], vitals["effectiveDateTime"]);
        }
        assert_eq!(members[1]["valueQuantity"]["value"], 38.2);
        assert_eq!(members[1]["valueQuantity"]["code"], "Cel");
        assert_eq!(
            members[1]["valueQuantity"]["system"],
            "http://unitsofmeasure.org"
        );
        let bp = &members[0]["component"];
        assert_eq!(bp[0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(bp[0]["valueQuantity"]["value"], 135);
        assert_eq!(bp[1]["code"]["coding"][0]["code"], "8462-4");
        assert_eq!(bp[1]["valueQuantity"]["code"], "mm[Hg]");
        assert_eq!(members[2]["valueQuantity"]["code"], "{score}");

        let care = obs.iter().find(|o| o["code"]["text"] == "care").must();
        assert_eq!(care["status"], "amended");
        assert_eq!(care["valueString"], "Pansement refait, plaie propre");
        assert_eq!(care["note"][0]["text"], "Pansement fait");

        let acks: Vec<_> = of_type(&b, "Provenance")
            .into_iter()
            .filter(|p| p["activity"]["coding"][0]["code"] == "acknowledge")
            .collect();
        assert_eq!(acks.len(), 1);
        let gp = of_type(&b, "Practitioner")
            .into_iter()
            .find(|p| p["name"][0]["text"] == "Dr Claire Martin")
            .must();
        assert_eq!(
            acks[0]["agent"][0]["who"]["reference"],
            format!("urn:uuid:{}", gp["id"].as_str().must())
        );
        let idnat = gp["identifier"]
            .as_array()
            .must()
            .iter()
            .find(|i| i["system"] == IDNATPS_SYSTEM);
        assert_eq!(idnat.map(|i| &i["value"]), Some(&json!("810101201234")));
    }

    #[test]
    fn a_message_points_at_its_attached_document_and_its_readers_are_recorded() {
        let d = full_circle();
        let b = export(&d, &team(), false);
        let c = of_type(&b, "Communication")[0];
        let doc_id = of_type(&b, "DocumentReference")[0]["id"]
            .as_str()
            .must()
            .to_string();
        assert_eq!(c["payload"][0]["contentString"], "Maman a bien dormi");
        assert_eq!(
            c["payload"][1]["contentReference"]["reference"],
            format!("urn:uuid:{doc_id}")
        );
        // A blob no document of the file names stays named by its hash.
        assert_eq!(
            c["payload"][2]["contentReference"]["identifier"]["value"],
            "cd".repeat(32)
        );
        let sender = &c["sender"]["reference"];
        let daughter = of_type(&b, "RelatedPerson")[0];
        assert_eq!(
            *sender,
            format!("urn:uuid:{}", daughter["id"].as_str().must())
        );
        assert!(
            of_type(&b, "Provenance")
                .iter()
                .any(|p| p["activity"]["coding"][0]["code"] == "read")
        );
    }

    #[test]
    fn the_same_circle_exports_the_same_ids_and_a_closed_circle_an_inactive_team() {
        let d = full_circle();
        let a = export(&d, &team(), false);
        assert_eq!(a, export(&d, &team(), false));
        let closed = export(&d, &team(), true);
        check_r4(&closed).unwrap();
        assert_eq!(of_type(&closed, "CareTeam")[0]["status"], "inactive");
        assert_eq!(of_type(&a, "CareTeam")[0]["status"], "active");
        // Only current members take part in the team; the former one is still named.
        assert_eq!(
            of_type(&a, "CareTeam")[0]["participant"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
        assert!(
            of_type(&a, "Practitioner")
                .iter()
                .any(|p| p["name"][0]["text"] == "Marc Petit" && p["active"] == false)
        );
    }

    #[test]
    fn an_empty_circle_is_still_a_valid_bundle() {
        let d = Docs {
            pf: PatientFile::new(actor(1)),
            nb: LiaisonNotebook::new(actor(1)),
            th: Thread::new(actor(1)),
        };
        let b = export(&d, &[], false);
        check_r4(&b).unwrap_or_else(|e| panic!("{e}\n{b:#}"));
        assert_eq!(of_type(&b, "Patient").len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever members write (any text, any kind, any vitals in range, amendments,
        /// messages), the export stays a valid bundle with one resource per note, per sign
        /// measured and per message.
        #[test]
        fn any_notebook_and_thread_export_to_a_valid_bundle(
            notes in proptest::collection::vec(
                (0usize..5, "\\PC{1,40}", proptest::option::of(30.0f64..42.0), proptest::option::of(40i64..180), any::<bool>()),
                0..12,
            ),
            messages in proptest::collection::vec(("\\PC{1,40}", any::<bool>()), 0..6),
        ) {
            let mut nb = LiaisonNotebook::new(actor(1));
            let mut th = Thread::new(actor(1));
            let mut expected_notes = 0;
            for (i, (kind, text, temp, hr, amend)) in notes.into_iter().enumerate() {
                let at = Timestamp(1_795_000_000_000 + i as i64);
                let vitals = Vitals { temperature_c: temp, heart_rate: hr, ..Vitals::default() };
                let entry = NewEntry { kind: EntryKind::ALL[kind], text, vitals: Some(vitals) };
                let Ok(id) = nb.add_entry(NURSE, entry, at) else { continue };
                expected_notes += 1 + usize::from(temp.is_some()) + usize::from(hr.is_some());
                if amend {
                    nb.amend(NURSE, &id, "corrigé", at).must();
                }
            }
            let mut expected_messages = 0;
            for (i, (text, read)) in messages.into_iter().enumerate() {
                let at = Timestamp(1_795_000_000_000 + i as i64);
                let Ok(id) = th.send(DAUGHTER, &text, &[], at) else { continue };
                expected_messages += 1;
                if read {
                    th.mark_read(GP, &id, at).must();
                }
            }
            let d = Docs { pf: PatientFile::new(actor(1)), nb, th };
            let b = export(&d, &team(), false);
            prop_assert!(check_r4(&b).is_ok(), "{:?}", check_r4(&b));
            prop_assert_eq!(of_type(&b, "Observation").len(), expected_notes);
            prop_assert_eq!(of_type(&b, "Communication").len(), expected_messages);
        }
    }
}
