//! Every word the web UI shows, in French (the default: its users are French care teams)
//! and in English. One struct per language, so a missing translation does not compile.

/// The language of the pages, chosen by the member and kept in a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lang {
    #[default]
    Fr,
    En,
}

impl Lang {
    /// The language named `code` ("fr" or "en"), if it is one of ours.
    pub(crate) fn parse(code: &str) -> Option<Lang> {
        match code {
            "fr" => Some(Lang::Fr),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    /// The other language, offered by the switch.
    pub(crate) fn other(self) -> Lang {
        match self {
            Lang::Fr => Lang::En,
            Lang::En => Lang::Fr,
        }
    }

    pub(crate) fn words(self) -> &'static Words {
        match self {
            Lang::Fr => &FR,
            Lang::En => &EN,
        }
    }
}

/// The words of one language.
#[derive(Debug)]
pub(crate) struct Words {
    /// The name of the language, in itself (shown on the switch).
    pub(crate) language: &'static str,
    pub(crate) switch_label: &'static str,
    pub(crate) skip: &'static str,
    pub(crate) login: &'static str,
    pub(crate) login_wrong: &'static str,
    pub(crate) login_help: &'static str,
    pub(crate) token: &'static str,
    pub(crate) sign_in: &'static str,
    pub(crate) sign_out: &'static str,
    pub(crate) circles: &'static str,
    pub(crate) no_circles: &'static str,
    pub(crate) invitations: &'static str,
    /// "{who} added you to the circle of {patient}, as {role}".
    pub(crate) added_you: &'static str,
    pub(crate) someone: &'static str,
    pub(crate) a_patient: &'static str,
    pub(crate) from_stranger: &'static str,
    pub(crate) accept_always: &'static str,
    pub(crate) accept: &'static str,
    pub(crate) decline: &'static str,
    pub(crate) damaged_circles: &'static str,
    pub(crate) peers_connected: &'static str,
    pub(crate) offline: &'static str,
    pub(crate) alerts_open: &'static str,
    pub(crate) unread: &'static str,
    pub(crate) last_note: &'static str,
    pub(crate) no_notes: &'static str,
    pub(crate) notebook: &'static str,
    pub(crate) patient_file: &'static str,
    pub(crate) messages: &'static str,
    pub(crate) documents: &'static str,
    pub(crate) members: &'static str,
    pub(crate) activity: &'static str,
    pub(crate) audit: &'static str,
    pub(crate) audit_writes: &'static str,
    pub(crate) audit_help: &'static str,
    pub(crate) audit_at: &'static str,
    pub(crate) audit_received: &'static str,
    pub(crate) audit_here: &'static str,
    pub(crate) audit_device: &'static str,
    pub(crate) audit_action: &'static str,
    pub(crate) audit_refusals: &'static str,
    pub(crate) audit_no_refusals: &'static str,
    pub(crate) audit_reason: &'static str,
    pub(crate) audit_forks: &'static str,
    pub(crate) audit_fork_device: &'static str,
    pub(crate) sync: &'static str,
    pub(crate) sections: &'static str,
    pub(crate) new_note: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) text: &'static str,
    pub(crate) add: &'static str,
    pub(crate) all_kinds: &'static str,
    pub(crate) all_authors: &'static str,
    pub(crate) author: &'static str,
    pub(crate) filter: &'static str,
    pub(crate) amend: &'static str,
    pub(crate) amended: &'static str,
    /// Before the time a note was received, when far from its author's date.
    pub(crate) received_on: &'static str,
    pub(crate) save: &'static str,
    pub(crate) acknowledge: &'static str,
    pub(crate) acknowledged_by: &'static str,
    pub(crate) awaiting_ack: &'static str,
    pub(crate) vitals_values: &'static str,
    pub(crate) alert_to: &'static str,
    pub(crate) alert_to_help: &'static str,
    pub(crate) to_coordinators: &'static str,
    pub(crate) for_whom: &'static str,
    pub(crate) join: &'static str,
    pub(crate) join_link: &'static str,
    pub(crate) new_circle: &'static str,
    pub(crate) new_circle_link: &'static str,
    pub(crate) for_patient: &'static str,
    pub(crate) for_patient_help: &'static str,
    pub(crate) for_team: &'static str,
    pub(crate) team_name: &'static str,
    pub(crate) create_circle: &'static str,
    pub(crate) created_duplicate: &'static str,
    pub(crate) complete_file: &'static str,
    pub(crate) join_help: &'static str,
    pub(crate) join_code: &'static str,
    pub(crate) join_scan: &'static str,
    pub(crate) join_scan_stop: &'static str,
    pub(crate) join_camera: &'static str,
    pub(crate) join_bad_code: &'static str,
    pub(crate) join_reaching: &'static str,
    pub(crate) join_accepted: &'static str,
    pub(crate) join_joined: &'static str,
    pub(crate) join_refused: &'static str,
    pub(crate) document_too_large: &'static str,
    pub(crate) choose_file: &'static str,
    pub(crate) open_circle: &'static str,
    pub(crate) medication_add: &'static str,
    pub(crate) stop: &'static str,
    pub(crate) stop_reason: &'static str,
    pub(crate) stopped_on: &'static str,
    pub(crate) edit: &'static str,
    pub(crate) owner: &'static str,
    pub(crate) remove: &'static str,
    pub(crate) remove_reason: &'static str,
    pub(crate) removed_on: &'static str,
    pub(crate) removed_items: &'static str,
    pub(crate) changed_on: &'static str,
    pub(crate) identity_edit: &'static str,
    pub(crate) identity_edit_hint: &'static str,
    pub(crate) verify_identity: &'static str,
    pub(crate) verify_document: &'static str,
    pub(crate) family_name: &'static str,
    pub(crate) given_names: &'static str,
    pub(crate) birth_date: &'static str,
    pub(crate) address: &'static str,
    pub(crate) phone: &'static str,
    pub(crate) trusted_person: &'static str,
    pub(crate) regular_gp: &'static str,
    pub(crate) consent_edit: &'static str,
    pub(crate) care_plan_edit: &'static str,
    pub(crate) problem_add: &'static str,
    pub(crate) allergy_add: &'static str,
    pub(crate) contact_add: &'static str,
    pub(crate) alert_notice: &'static str,
    pub(crate) reminder_notice: &'static str,
    pub(crate) reminder: &'static str,
    pub(crate) reminder_set: &'static str,
    pub(crate) reminder_hours: &'static str,
    pub(crate) reminder_off: &'static str,
    pub(crate) close_title: &'static str,
    pub(crate) suspended_banner: &'static str,
    pub(crate) emergency_banner: &'static str,
    pub(crate) emergency_reason: &'static str,
    pub(crate) emergency_reason_label: &'static str,
    pub(crate) emergency_until: &'static str,
    pub(crate) emergency_ended: &'static str,
    pub(crate) emergency_link: &'static str,
    pub(crate) emergency_title: &'static str,
    pub(crate) emergency_help: &'static str,
    pub(crate) emergency_code: &'static str,
    pub(crate) emergency_duration: &'static str,
    pub(crate) emergency_ask: &'static str,
    pub(crate) emergency_hours: &'static str,
    pub(crate) emergency_code_print: &'static str,
    pub(crate) emergency_code_help: &'static str,
    pub(crate) on_call_title: &'static str,
    pub(crate) on_call_help: &'static str,
    pub(crate) on_call_none: &'static str,
    pub(crate) on_call_add: &'static str,
    pub(crate) on_call_remove: &'static str,
    pub(crate) withdraw_title: &'static str,
    pub(crate) withdraw_help: &'static str,
    pub(crate) withdraw_reason: &'static str,
    pub(crate) withdraw_button: &'static str,
    pub(crate) close_help: &'static str,
    pub(crate) close_confirm: &'static str,
    pub(crate) close_button: &'static str,
    pub(crate) closed_circles: &'static str,
    pub(crate) closed_help: &'static str,
    pub(crate) closed_on: &'static str,
    pub(crate) closed_by: &'static str,
    pub(crate) receipt_no_relay: &'static str,
    pub(crate) receipt_awaited: &'static str,
    pub(crate) receipt_relay: &'static str,
    pub(crate) receipt_envelopes: &'static str,
    pub(crate) receipt_verified: &'static str,
    pub(crate) receipt_bad: &'static str,
    /// "A device of" … "was revoked on" (a member's lost device, seen by the team).
    pub(crate) device_of: &'static str,
    pub(crate) device_revoked_on: &'static str,
    pub(crate) devices_title: &'static str,
    pub(crate) devices_help: &'static str,
    pub(crate) device_this: &'static str,
    pub(crate) device_connected: &'static str,
    pub(crate) device_last_seen: &'static str,
    pub(crate) device_never_seen: &'static str,
    pub(crate) device_revoked: &'static str,
    pub(crate) device_revoke: &'static str,
    pub(crate) device_circles: &'static str,
    pub(crate) computers: &'static str,
    pub(crate) device_pair: &'static str,
    pub(crate) device_pair_help: &'static str,
    pub(crate) device_code: &'static str,
    pub(crate) device_key_here: &'static str,
    pub(crate) devices_on_computer: &'static str,
    pub(crate) phones: &'static str,
    pub(crate) phones_off: &'static str,
    pub(crate) phone_pair_button: &'static str,
    pub(crate) phone_pair_help: &'static str,
    pub(crate) fingerprint: &'static str,
    pub(crate) phone_name: &'static str,
    pub(crate) phone_pair_title: &'static str,
    pub(crate) phone_pair_intro: &'static str,
    pub(crate) phone_pair_submit: &'static str,
    pub(crate) phone_pair_refused: &'static str,
    pub(crate) not_paired_title: &'static str,
    pub(crate) not_paired_help: &'static str,
    pub(crate) phone_paired_on: &'static str,
    pub(crate) phone_last_used: &'static str,
    pub(crate) no_phone: &'static str,
    pub(crate) manifest_description: &'static str,
    pub(crate) node_unreachable: &'static str,
    pub(crate) reminder_every: &'static str,
    pub(crate) waiting_since: &'static str,
    pub(crate) day_unit: &'static str,
    pub(crate) view_pdf: &'static str,
    pub(crate) team: &'static str,
    pub(crate) team_circle: &'static str,
    pub(crate) period_from: &'static str,
    pub(crate) period_to: &'static str,
    pub(crate) period_from_label: &'static str,
    pub(crate) period_to_label: &'static str,
    pub(crate) enable_notifications: &'static str,
    pub(crate) vitals_hint: &'static str,
    pub(crate) note_needs_text: &'static str,
    pub(crate) trends: &'static str,
    pub(crate) trends_desc: &'static str,
    pub(crate) no_vitals: &'static str,
    /// Beside one's own alert: its author does not close it.
    pub(crate) ack_by_another: &'static str,
    pub(crate) read_only: &'static str,
    pub(crate) unknown_member: &'static str,
    pub(crate) identity: &'static str,
    pub(crate) name: &'static str,
    pub(crate) born: &'static str,
    pub(crate) sex: &'static str,
    pub(crate) ins: &'static str,
    pub(crate) identity_status: &'static str,
    pub(crate) verified_by: &'static str,
    pub(crate) verified_on: &'static str,
    pub(crate) ins_not_qualified: &'static str,
    pub(crate) years_old: &'static str,
    pub(crate) probable_duplicate: &'static str,
    pub(crate) overdue: &'static str,
    pub(crate) take_photo: &'static str,
    pub(crate) print_notebook: &'static str,
    pub(crate) consent: &'static str,
    pub(crate) consent_scope: &'static str,
    pub(crate) not_recorded: &'static str,
    pub(crate) problems: &'static str,
    pub(crate) allergies: &'static str,
    pub(crate) medications: &'static str,
    pub(crate) contacts: &'static str,
    pub(crate) care_plan: &'static str,
    pub(crate) export_fhir: &'static str,
    pub(crate) export_fhir_hint: &'static str,
    pub(crate) tasks: &'static str,
    pub(crate) none: &'static str,
    pub(crate) new_task: &'static str,
    pub(crate) title: &'static str,
    pub(crate) due: &'static str,
    pub(crate) done: &'static str,
    pub(crate) mark_done: &'static str,
    pub(crate) to_do: &'static str,
    pub(crate) send: &'static str,
    pub(crate) new_message: &'static str,
    pub(crate) no_messages: &'static str,
    pub(crate) read_by: &'static str,
    pub(crate) not_read: &'static str,
    pub(crate) mark_read: &'static str,
    pub(crate) you: &'static str,
    pub(crate) upload: &'static str,
    pub(crate) file: &'static str,
    pub(crate) download: &'static str,
    pub(crate) fetch: &'static str,
    pub(crate) no_documents: &'static str,
    pub(crate) size: &'static str,
    pub(crate) added_by: &'static str,
    pub(crate) role: &'static str,
    pub(crate) profession: &'static str,
    pub(crate) directory: &'static str,
    pub(crate) directory_verified: &'static str,
    pub(crate) directory_declared: &'static str,
    pub(crate) directory_contradicted: &'static str,
    pub(crate) directory_search: &'static str,
    pub(crate) directory_search_button: &'static str,
    pub(crate) directory_none: &'static str,
    pub(crate) invite: &'static str,
    pub(crate) invite_help: &'static str,
    pub(crate) invite_short: &'static str,
    pub(crate) invite_short_help: &'static str,
    pub(crate) valid_for: &'static str,
    pub(crate) create_invite: &'static str,
    pub(crate) invite_code: &'static str,
    pub(crate) invite_expires: &'static str,
    pub(crate) relays: &'static str,
    pub(crate) peer: &'static str,
    pub(crate) shared_circles: &'static str,
    pub(crate) pending: &'static str,
    pub(crate) last_sync: &'static str,
    pub(crate) path: &'static str,
    pub(crate) path_direct: &'static str,
    pub(crate) path_relayed: &'static str,
    pub(crate) received: &'static str,
    pub(crate) sent: &'static str,
    pub(crate) no_peers: &'static str,
    pub(crate) this_node: &'static str,
    pub(crate) a_relay: &'static str,
    pub(crate) unknown_device: &'static str,
    pub(crate) technical: &'static str,
    pub(crate) addresses: &'static str,
    pub(crate) notes_per_week: &'static str,
    pub(crate) notes_per_week_desc: &'static str,
    pub(crate) time_to_ack: &'static str,
    pub(crate) time_to_ack_desc: &'static str,
    pub(crate) active_members: &'static str,
    pub(crate) active_members_desc: &'static str,
    pub(crate) week_of: &'static str,
    pub(crate) hours: &'static str,
    pub(crate) entries: &'static str,
    pub(crate) no_data: &'static str,
    pub(crate) failed: &'static str,
    pub(crate) back: &'static str,
    pub(crate) refused_form: &'static str,
    pub(crate) date_format: &'static str,
    /// A calendar date alone (birth date, due date).
    pub(crate) calendar_format: &'static str,
    pub(crate) day_format: &'static str,
}

impl Words {
    /// The name of a notebook entry kind.
    pub(crate) fn kind(&self, kind: &str) -> &'static str {
        let fr = std::ptr::eq(self, &FR);
        match (kind, fr) {
            ("observation", true) => "Observation",
            ("care", true) => "Soin",
            ("vitals", true) => "Constantes",
            ("alert", true) => "Alerte",
            ("handover", true) => "Transmission",
            ("observation", false) => "Observation",
            ("care", false) => "Care",
            ("vitals", false) => "Vital signs",
            ("alert", false) => "Alert",
            ("handover", false) => "Handover",
            _ => "?",
        }
    }

    /// A number with `places` decimals, written the way this language does (French: "15,5").
    pub(crate) fn decimal(&self, x: f64, places: usize) -> String {
        self.decimal_mark(format!("{x:.places$}"))
    }

    /// A number already written with a point, with this language's decimal mark.
    fn decimal_mark(&self, number: String) -> String {
        if std::ptr::eq(self, &FR) {
            number.replace('.', ",")
        } else {
            number
        }
    }

    /// The name of a vital sign, as a care team abbreviates it.
    pub(crate) fn sign(&self, sign: cercle_crdt::Sign) -> &'static str {
        use cercle_crdt::Sign::*;
        let fr = std::ptr::eq(self, &FR);
        match (sign, fr) {
            (BloodPressure, true) => "Tension artérielle",
            (BloodPressure, false) => "Blood pressure",
            (HeartRate, true) => "Fréquence cardiaque",
            (HeartRate, false) => "Heart rate",
            (Temperature, true) => "Température",
            (Temperature, false) => "Temperature",
            (Spo2, _) => "SpO₂",
            (RespiratoryRate, true) => "Fréquence respiratoire",
            (RespiratoryRate, false) => "Respiratory rate",
            (Weight, true) => "Poids",
            (Weight, false) => "Weight",
            (Glucose, true) => "Glycémie capillaire",
            (Glucose, false) => "Capillary glucose",
            (Pain, true) => "Douleur (EN 0–10)",
            (Pain, false) => "Pain (NRS 0–10)",
        }
    }

    /// Why a typed vital sign was not taken, in this language.
    pub(crate) fn typed_vitals_error(&self, e: &cercle_crdt::TypedVitalsError) -> String {
        use cercle_crdt::TypedVitalsError::*;
        let fr = std::ptr::eq(self, &FR);
        let decimal = |x: f64| self.decimal_mark(format!("{x}"));
        match (e, fr) {
            (NotANumber { sign, got }, true) => format!(
                "{} : « {got} » n'est pas une valeur ; écrivez par exemple {} {}.",
                self.sign(*sign),
                sign.example(),
                sign.unit()
            ),
            (NotANumber { sign, got }, false) => format!(
                "{}: \"{got}\" is not a value; type for example {} {}.",
                self.sign(*sign),
                sign.example().replace(',', "."),
                sign.unit()
            ),
            (
                OutOfRange {
                    sign,
                    got,
                    min,
                    max,
                },
                true,
            ) => format!(
                "{} : {got} est hors de la plage {} à {} {} ; vérifiez la valeur.",
                self.sign(*sign),
                decimal(*min),
                decimal(*max),
                sign.unit()
            ),
            (
                OutOfRange {
                    sign,
                    got,
                    min,
                    max,
                },
                false,
            ) => format!(
                "{}: {got} is outside {} to {} {}; check the value.",
                self.sign(*sign),
                decimal(*min),
                decimal(*max),
                sign.unit()
            ),
        }
    }

    /// Whom an alert is for, by role ("les coordinateurs du cercle").
    pub(crate) fn to_role(&self, role: &str) -> &'static str {
        let fr = std::ptr::eq(self, &FR);
        match (role, fr) {
            ("coordinator", true) => "les coordinateurs du cercle",
            ("professional", true) => "les professionnels du cercle",
            ("caregiver", true) => "les aidants du cercle",
            ("observer", true) => "les observateurs du cercle",
            ("coordinator", false) => "the circle's coordinators",
            ("professional", false) => "the circle's professionals",
            ("caregiver", false) => "the circle's caregivers",
            ("observer", false) => "the circle's observers",
            _ => "?",
        }
    }

    /// What an audit row's action says, in this language (the code itself if unknown).
    pub(crate) fn audit_action_name<'a>(&self, action: &'a str) -> &'a str {
        let fr = std::ptr::eq(self, &FR);
        let (fr_name, en_name) = match action {
            "circle_created" => ("Cercle créé", "Circle created"),
            "member_added" => ("Membre ajouté", "Member added"),
            "member_removed" => ("Membre retiré", "Member removed"),
            "role_changed" => ("Rôle changé", "Role changed"),
            "key_rotated" => ("Clé renouvelée", "Key rotated"),
            "relays_set" => ("Relais choisis", "Relays set"),
            "reminder_set" => ("Rappel réglé", "Reminder set"),
            "circle_closed" => ("Cercle clos", "Circle closed"),
            "consent_withdrawn" => (
                "Opposition du patient au partage",
                "Patient objected to sharing",
            ),
            "on_call_set" => (
                "Professionnels d'astreinte désignés",
                "On-call professionals named",
            ),
            "emergency_access" => ("Accès d'urgence accordé", "Emergency access granted"),
            "emergency_read" => ("Lecture en accès d'urgence", "Read under emergency access"),
            "device_added" => ("Appareil ajouté", "Device added"),
            "device_revoked" => ("Appareil révoqué", "Device revoked"),
            "note_written" => ("Transmission écrite", "Note written"),
            "note_corrected" => ("Transmission corrigée", "Note corrected"),
            "alert_acknowledged" => ("Alerte prise en compte", "Alert acknowledged"),
            "message_written" => ("Message écrit", "Message written"),
            "message_read" => ("Message lu", "Message read"),
            "item_added" => ("Dossier patient : ajout", "Patient file: item added"),
            "item_removed" => ("Dossier patient : retrait", "Patient file: item removed"),
            _ => return action,
        };
        if fr { fr_name } else { en_name }
    }

    /// The name of a role.
    pub(crate) fn role(&self, role: &str) -> &'static str {
        let fr = std::ptr::eq(self, &FR);
        match (role, fr) {
            ("coordinator", true) => "Coordinateur",
            ("professional", true) => "Professionnel",
            ("caregiver", true) => "Aidant",
            ("observer", true) => "Observateur",
            ("coordinator", false) => "Coordinator",
            ("professional", false) => "Professional",
            ("caregiver", false) => "Caregiver",
            ("observer", false) => "Observer",
            _ => "?",
        }
    }

    /// The document an identity was checked against.
    pub(crate) fn identity_document(
        &self,
        document: cercle_crdt::IdentityDocument,
    ) -> &'static str {
        use cercle_crdt::IdentityDocument::*;
        let fr = std::ptr::eq(self, &FR);
        match (document, fr) {
            (IdCard, true) => "carte nationale d'identité",
            (IdCard, false) => "identity card",
            (Passport, true) => "passeport",
            (Passport, false) => "passport",
            (ResidencePermit, true) => "titre de séjour",
            (ResidencePermit, false) => "residence permit",
            (FamilyRecordBook, true) => "livret de famille",
            (FamilyRecordBook, false) => "family record book",
        }
    }

    /// The status of a patient's identity (INS qualification).
    pub(crate) fn identity_state(&self, status: &str) -> &'static str {
        let fr = std::ptr::eq(self, &FR);
        match (status, fr) {
            // The words of the French identity-vigilance rules: checked against a document
            // of high trust, the identity is "validée"; "qualifiée" would also need the INS
            // from the INSi teleservice, which Cercle does not query.
            ("verified", true) => "Identité validée",
            ("verified", false) => "Validated identity",
            (_, true) => "Identité provisoire",
            (_, false) => "Provisional identity",
        }
    }

    /// The patient's sex as stored (`female`, `male`, `other`, `unknown`).
    pub(crate) fn sex_name(&self, sex: &str) -> &'static str {
        let fr = std::ptr::eq(self, &FR);
        match (sex, fr) {
            ("female", true) => "Féminin",
            ("female", false) => "Female",
            ("male", true) => "Masculin",
            ("male", false) => "Male",
            ("other", true) => "Autre",
            ("other", false) => "Other",
            (_, true) => "Inconnu",
            (_, false) => "Unknown",
        }
    }

    /// The name of a field of a patient file item, as the schema names it.
    pub(crate) fn item_field<'a>(&self, field: &'a str) -> &'a str {
        let fr = std::ptr::eq(self, &FR);
        match (field, fr) {
            ("status", true) => "statut",
            ("label", true) => "problème",
            ("label", false) => "problem",
            ("name", true) => "nom",
            ("role", true) => "rôle",
            ("criticality", true) => "criticité",
            ("since", true) => "depuis",
            ("since", false) => "since",
            ("severity", true) => "gravité",
            ("reaction", true) => "réaction",
            ("dose", true) => "dose",
            ("start", true) => "début",
            ("frequency", true) => "fréquence",
            ("relation", true) => "lien",
            ("phone", true) => "téléphone",
            ("email", true) => "courriel",
            (other, _) => other,
        }
    }

    /// A value of a patient file item: the schema's words in this language, other text as
    /// written.
    pub(crate) fn item_value<'a>(&self, value: &'a str) -> &'a str {
        let fr = std::ptr::eq(self, &FR);
        match (value, fr) {
            ("active", true) => "en cours",
            ("resolved", true) => "résolu",
            ("stopped", true) => "arrêté",
            ("mild", true) => "légère",
            ("moderate", true) => "modérée",
            ("severe", true) => "sévère",
            ("low", true) => "faible",
            ("high", true) => "élevée",
            ("unable-to-assess", true) => "non évaluable",
            ("unable-to-assess", false) => "unable to assess",
            ("trusted_person", true) => "personne de confiance",
            ("trusted_person", false) => "trusted person",
            ("regular_gp", true) => "médecin traitant",
            ("regular_gp", false) => "regular GP",
            ("relative", true) => "proche",
            ("emergency", true) => "contact en cas d'urgence",
            ("emergency", false) => "emergency contact",
            ("professional", true) => "professionnel",
            (other, _) => other,
        }
    }

    /// The label of a field of the documents, as a form shows it.
    pub(crate) fn field_label(&self, field: &str) -> String {
        let fr = std::ptr::eq(self, &FR);
        let label = match (field, fr) {
            ("family_name", _) => self.family_name,
            ("given_names", _) => self.given_names,
            ("birth_date", _) => self.birth_date,
            ("sex", _) => self.sex,
            ("ins", _) => self.ins,
            ("address", _) => self.address,
            ("phone", _) => self.phone,
            ("scope", _) => self.consent_scope,
            ("title", _) => self.title,
            ("due", _) => self.due,
            ("owner", _) => self.owner,
            ("stop_reason", _) => self.stop_reason,
            ("removed_reason", _) => self.remove_reason,
            ("team", _) => self.team_name,
            ("text", true) => "Texte",
            ("to", true) => "Destinataire",
            ("field", true) => "Champ",
            (other, _) => self.item_field(other),
        };
        let mut chars = label.chars();
        chars
            .next()
            .map(|f| f.to_uppercase().chain(chars).collect())
            .unwrap_or_default()
    }

    /// An invite's refusal by its stable name (`InviteError::code`), in this language.
    pub(crate) fn invite_refusal(&self, code: &str) -> Option<&'static str> {
        let fr = std::ptr::eq(self, &FR);
        Some(match (code, fr) {
            ("not_a_code" | "damaged", true) => self.join_bad_code,
            ("expired", true) => {
                "Cette invitation a expiré : demandez-en une nouvelle au coordinateur."
            }
            ("used", true) => {
                "Cette invitation a déjà servi : demandez-en une nouvelle au coordinateur."
            }
            ("unknown", true) => {
                "La personne qui vous invite ne connaît pas cette invitation (retirée, ou faite sur un autre appareil) : demandez-en une nouvelle."
            }
            ("wrong_secret", true) => {
                "Le code ne correspond pas : recopiez-le, ou demandez-en un nouveau."
            }
            ("wrong_device", true) => {
                "La carte de contact envoyée n'est pas celle de cet appareil."
            }
            ("no_address", true) => {
                "Ce code ne dit pas où joindre la personne qui vous invite : demandez-en un nouveau, son nœud allumé."
            }
            ("impostor", true) => {
                "Le nœud qui a répondu ne prouve pas avoir fait cette invitation."
            }
            ("not_a_code" | "damaged", false) => self.join_bad_code,
            ("expired", false) => "This invite expired: ask the coordinator for a new one.",
            ("used", false) => "This invite was already used: ask the coordinator for a new one.",
            ("unknown", false) => {
                "The inviter does not know this invite (withdrawn, or made on another device): ask for a new one."
            }
            ("wrong_secret", false) => {
                "The code does not match: copy it again, or ask for a new one."
            }
            ("wrong_device", false) => "The contact card sent is not this device's.",
            ("no_address", false) => {
                "This code does not say where to reach the inviter: ask for a new one, their node running."
            }
            ("impostor", false) => "The node that answered does not prove it made this invite.",
            _ => return None,
        })
    }

    /// A request this member's role does not allow, in this language.
    pub(crate) fn role_refusal(&self, role: &str) -> String {
        match (std::ptr::eq(self, &FR), self.role(role)) {
            (true, "?") => "Vous n'êtes pas membre de ce cercle.".to_string(),
            (true, name) => {
                format!("Votre rôle dans ce cercle ({name}) ne permet pas cette action.")
            }
            (false, "?") => "You are not a member of this circle.".to_string(),
            (false, name) => format!("Your role in this circle ({name}) does not allow this."),
        }
    }

    /// A refused value, in this language: "Date de naissance : est dans le futur".
    pub(crate) fn invalid(&self, invalid: &crate::ops::Invalid) -> String {
        use cercle_crdt::schema::Fault as F;
        let field = self.field_label(&invalid.field);
        if !std::ptr::eq(self, &FR) {
            return format!("{field}: {}", invalid.fault);
        }
        let why = match &invalid.fault {
            F::Empty => "ne peut pas être vide".to_string(),
            F::TooLong { len, max } => format!("trop long ({len} octets, {max} au plus)"),
            F::Required => "est obligatoire".to_string(),
            F::InFuture => "est dans le futur".to_string(),
            F::NothingToChange => "rien à modifier".to_string(),
            F::UnknownField { name, .. } => format!("« {name} » n'est pas un champ de cette liste"),
            F::NotANumber { value } => format!("« {value} » n'est pas un nombre"),
            F::OutOfRange { min, max } => format!("doit être un nombre entre {min} et {max}"),
            F::NotOneOf { allowed } => {
                let shown: Vec<&str> = allowed.iter().map(|a| self.item_value(a)).collect();
                format!("doit être l'une de ces valeurs : {}", shown.join(", "))
            }
            F::BadDate { .. } => "n'est pas une date valide (entre 1900 et 2200)".to_string(),
            F::BadIns { .. } => "n'est pas un INS valide : 13 caractères et une clé de 2 chiffres qui doit correspondre".to_string(),
            F::NotTheAuthor { .. } => "désigne un autre membre que vous".to_string(),
            F::Other { why } => why.clone(),
        };
        format!("{field} : {why}")
    }

    /// The heading of a refusal of this kind.
    pub(crate) fn error_kind(&self, kind: crate::ops::ErrorKind) -> &'static str {
        use crate::ops::ErrorKind as K;
        let fr = std::ptr::eq(self, &FR);
        match (kind, fr) {
            (K::BadInput, true) => "Saisie à corriger",
            (K::NotAllowed, true) => "Action non autorisée",
            (K::NotFound, true) => "Introuvable",
            (K::Conflict, true) => "Déjà fait",
            (K::Unavailable, true) => "Indisponible pour le moment",
            (K::Internal, true) => "Erreur du logiciel",
            (K::BadInput, false) => "Please correct the entry",
            (K::NotAllowed, false) => "Not allowed",
            (K::NotFound, false) => "Not found",
            (K::Conflict, false) => "Already done",
            (K::Unavailable, false) => "Not available right now",
            (K::Internal, false) => "Software error",
        }
    }

    /// The state of the patient's consent.
    pub(crate) fn consent_state(&self, status: &str) -> &'static str {
        let fr = std::ptr::eq(self, &FR);
        match (status, fr) {
            ("given", true) => "Recueilli",
            ("refused", true) => "Refusé",
            ("withdrawn", true) => "Retiré",
            ("given", false) => "Given",
            ("refused", false) => "Refused",
            ("withdrawn", false) => "Withdrawn",
            (_, true) => "Non recueilli",
            (_, false) => "Not recorded",
        }
    }
}

/// The entry kinds a note may have, in the order the form offers them.
pub(crate) const KINDS: [&str; 5] = ["observation", "care", "vitals", "alert", "handover"];

/// The roles an invite may give, in the order the form offers them.
pub(crate) const ROLES: [&str; 4] = ["professional", "caregiver", "observer", "coordinator"];

pub(crate) static FR: Words = Words {
    language: "Français",
    switch_label: "Langue",
    skip: "Aller au contenu",
    login: "Connexion",
    login_wrong: "Ce jeton n'est pas le bon. Vérifiez-le et réessayez.",
    login_help: "Collez le jeton d'accès de votre nœud : il est dans le fichier api-token de son répertoire, et la commande « cercle up » affiche un lien qui connecte directement.",
    token: "Jeton d'accès",
    sign_in: "Se connecter",
    sign_out: "Se déconnecter",
    circles: "Vos cercles de soins",
    no_circles: "Aucun cercle pour l'instant. Un coordinateur peut vous envoyer un code d'invitation.",
    invitations: "Invitations en attente",
    added_you: "{who} vous a ajouté·e au cercle de {patient}, comme {role}.",
    someone: "Un membre",
    a_patient: "un patient",
    from_stranger: "Attention : cette invitation vient d'un appareil avec lequel vous ne partagez aucun cercle.",
    accept_always: "Toujours accepter les cercles de {who}",
    accept: "Rejoindre",
    decline: "Refuser",
    damaged_circles: "Cercles illisibles (ni synchronisés ni modifiables)",
    peers_connected: "en ligne · appareils joignables :",
    offline: "hors ligne : vos saisies sont gardées et partiront dès qu'un chemin existe",
    alerts_open: "alerte(s) à acquitter",
    unread: "non lu(s)",
    last_note: "Dernière note",
    no_notes: "Aucune note pour l'instant.",
    notebook: "Cahier de liaison",
    patient_file: "Dossier patient",
    messages: "Messages",
    documents: "Documents",
    members: "Membres",
    activity: "Activité",
    audit: "Traçabilité",
    audit_writes: "Écritures",
    audit_help: "Chaque écriture acceptée par ce poste : son auteur et son appareil, l'heure donnée par l'auteur et l'heure de réception ici. Export CSV : « cercle audit CERCLE --csv FICHIER ».",
    audit_at: "Heure de l'auteur",
    audit_received: "Reçu ici",
    audit_here: "écrit sur ce poste",
    audit_device: "Appareil",
    audit_action: "Action",
    audit_refusals: "Données refusées",
    audit_no_refusals: "Rien n'a été refusé.",
    audit_reason: "Motif",
    audit_forks: "Historique falsifié : un appareil a signé deux versions",
    audit_fork_device: "appareil",
    sync: "Synchronisation",
    sections: "Sections du cercle",
    new_note: "Nouvelle note",
    kind: "Type",
    text: "Texte",
    add: "Ajouter",
    all_kinds: "Tous les types",
    all_authors: "Tous les auteurs",
    author: "Auteur",
    filter: "Filtrer",
    amend: "Corriger",
    amended: "corrigée",
    received_on: "reçue ici le",
    save: "Enregistrer",
    acknowledge: "Accuser réception",
    acknowledged_by: "Acquittée par",
    awaiting_ack: "En attente d'acquittement",
    vitals_values: "Constantes (valeurs)",
    alert_to: "Pour (alerte)",
    alert_to_help: "Qui doit agir sur une alerte : elle reste signalée chez cette personne jusqu'à ce qu'un autre membre l'acquitte.",
    to_coordinators: "Les coordinateurs du cercle (par défaut)",
    for_whom: "Pour :",
    join: "Rejoindre un cercle",
    join_link: "Rejoindre un cercle avec un code d'invitation",
    new_circle: "Nouveau cercle",
    new_circle_link: "Créer un cercle de soins",
    for_patient: "Autour d'un patient",
    for_patient_help: "Vous en serez le coordinateur. Le reste de l'identité (sexe, INS, adresse) se complète ensuite dans le dossier patient.",
    for_team: "Pour l'équipe, sans patient",
    team_name: "Nom de l'équipe",
    create_circle: "Créer le cercle",
    created_duplicate: "Le cercle est créé. Attention : un autre de vos cercles concerne probablement le même patient (même INS, ou mêmes noms et date de naissance). Vérifiez qu'il ne s'agit pas d'un doublon avant d'y écrire.",
    complete_file: "Compléter le dossier patient",
    join_help: "Collez le code d'invitation, tapez le code court de 24 caractères qu'on vous a lu, ou scannez le QR code (les espaces, les tirets et les majuscules ne comptent pas). Le nœud de la personne qui vous invite doit être joignable : sur le même réseau, ou par un relais que vous utilisez tous deux.",
    join_scan: "Scanner le QR code avec la caméra",
    join_scan_stop: "Arrêter la caméra",
    join_camera: "La caméra n'est pas disponible : collez ou tapez le code.",
    join_code: "Code d'invitation",
    join_bad_code: "Ce code n'est pas un code d'invitation valable, ou il a expiré : vérifiez-le, ou demandez-en un nouveau au coordinateur.",
    join_reaching: "Recherche du nœud de la personne qui vous a invité… Cette page se met à jour seule.",
    join_accepted: "Invitation acceptée : le cercle arrive…",
    join_joined: "Vous êtes membre du cercle.",
    join_refused: "L'invitation a été refusée :",
    document_too_large: "Ce document dépasse 8 Mo, la taille la plus grande acceptée : réduisez-le (une photo moins lourde, un PDF compressé) et réessayez.",
    choose_file: "Choisissez d'abord le fichier à ajouter.",
    open_circle: "Ouvrir le cercle",
    medication_add: "Ajouter un traitement",
    stop: "Arrêter",
    stop_reason: "Motif de l'arrêt",
    stopped_on: "Arrêté le",
    edit: "Modifier",
    owner: "Responsable",
    remove: "Retirer",
    remove_reason: "Motif du retrait",
    removed_on: "Retiré le",
    removed_items: "Retirés du dossier",
    changed_on: "modifié le",
    identity_edit: "Modifier l'identité ou les coordonnées",
    identity_edit_hint: "Changer le nom, les prénoms, la date de naissance, le sexe ou l'INS rend l'identité provisoire jusqu'à une nouvelle validation ; l'adresse et le téléphone non.",
    verify_identity: "Valider l'identité",
    verify_document: "Pièce d'identité présentée",
    family_name: "Nom de naissance",
    given_names: "Prénoms",
    birth_date: "Date de naissance",
    address: "Adresse",
    phone: "Téléphone",
    trusted_person: "Personne de confiance",
    regular_gp: "Médecin traitant",
    consent_edit: "Enregistrer le consentement",
    care_plan_edit: "Modifier le projet de soins",
    problem_add: "Ajouter un problème de santé",
    allergy_add: "Ajouter une allergie",
    contact_add: "Ajouter un contact",
    alert_notice: "Nouvelle alerte dans un de vos cercles",
    reminder_notice: "Rappel : une alerte attend toujours dans un de vos cercles",
    reminder: "Relance des alertes",
    reminder_set: "Changer le délai de relance",
    reminder_hours: "Délai en heures (0 : pas de relance)",
    close_title: "Clore le cercle",
    suspended_banner: "Partage suspendu — opposition du patient",
    emergency_banner: "Accès d'urgence par",
    emergency_reason: "motif",
    emergency_reason_label: "Motif de l'accès",
    emergency_until: "jusqu'au",
    emergency_ended: "terminé le",
    emergency_link: "Accès d'urgence (médecin d'astreinte)",
    emergency_title: "Accès d'urgence",
    emergency_help: "Avec le code d'urgence laissé au domicile du patient, un professionnel d'astreinte désigné par le coordinateur peut lire le dossier, en lecture seule, 24 heures au plus. L'équipe le voit, avec le motif, et tout est tracé.",
    emergency_code: "Code d'urgence",
    emergency_duration: "Durée",
    emergency_ask: "Demander l'accès d'urgence",
    emergency_hours: "heures",
    emergency_code_print: "Imprimer le code d'urgence",
    emergency_code_help: "À imprimer et à laisser au domicile du patient. Il ne contient aucune donnée de santé : seul un professionnel d'astreinte désigné ci-dessous peut s'en servir, pour 24 heures au plus, et l'équipe le voit.",
    on_call_title: "Professionnels d'astreinte",
    on_call_help: "Ils peuvent, avec le code d'urgence du patient, lire le dossier en lecture seule pendant 24 heures au plus.",
    on_call_none: "Personne n'est désigné : le code d'urgence ne sert à personne.",
    on_call_add: "Ajouter un professionnel d'astreinte (sa carte de contact)",
    on_call_remove: "Retirer",
    withdraw_title: "Le patient s'oppose au partage",
    withdraw_help: "À enregistrer dès que le patient s'y oppose : le nœud de chaque membre cesse d'envoyer et de recevoir les données du cercle et garde ce qu'il détient en lecture seule ; les relais suppriment leur copie et en signent le reçu.",
    withdraw_reason: "Motif, tel que le patient l'a exprimé",
    withdraw_button: "Enregistrer l'opposition et suspendre le partage",
    close_help: "Quand la prise en charge est terminée : le nœud de chaque membre détruit les clés du cercle et tout son contenu (transmissions, messages, dossier, documents) ; seule la traçabilité sans contenu est gardée. Les relais suppriment leur copie et en signent le reçu. C'est définitif.",
    close_confirm: "Je confirme la clôture définitive du cercle de",
    close_button: "Clore et détruire le cercle",
    closed_circles: "Cercles clos",
    closed_help: "Leur contenu est détruit sur cet appareil ; il reste la traçabilité sans contenu et les reçus de suppression des relais.",
    closed_on: "clos le",
    closed_by: "par",
    receipt_no_relay: "Aucun relais ne gardait ce cercle : rien à effacer ailleurs que chez ses membres.",
    receipt_awaited: "reçu d'effacement attendu (le relais le donnera à sa prochaine connexion)",
    receipt_relay: "Relais",
    receipt_envelopes: "enveloppes supprimées",
    receipt_verified: "reçu signé vérifié",
    receipt_bad: "SIGNATURE DU REÇU INVALIDE",
    reminder_off: "Pas de relance des alertes non acquittées.",
    device_of: "Un appareil de",
    device_revoked_on: "a été révoqué le",
    devices_title: "Mes appareils",
    devices_help: "Vos ordinateurs reliés à votre compte, et les téléphones qui ouvrent cette page sur le réseau du cabinet.",
    device_this: "cet appareil",
    device_connected: "connecté",
    device_last_seen: "vu le",
    device_never_seen: "jamais vu d'ici",
    device_revoked: "révoqué le",
    device_revoke: "Révoquer",
    device_circles: "cercle(s)",
    computers: "Ordinateurs",
    device_pair: "Appairer un nouvel ordinateur",
    device_pair_help: "Sur le nouvel ordinateur, tapez : cercle init --pair suivi de ce code, pendant que ce nœud tourne. Le code sert une fois, 15 minutes.",
    device_code: "Code d'appairage",
    device_key_here: "Cet ordinateur détient votre clé de membre : c'est d'ici que l'on appaire les autres.",
    devices_on_computer: "La gestion des appareils se fait sur l'ordinateur.",
    phones: "Téléphones et tablettes",
    phones_off: "Pour ouvrir Cercle sur un téléphone, démarrez le nœud avec cercle up --ui-listen ADRESSE:PORT (l'adresse de cet ordinateur sur le réseau du cabinet).",
    phone_pair_button: "Appairer un téléphone",
    phone_pair_help: "Scannez ce QR avec l'appareil photo du téléphone, connecté au même réseau. Le lien sert une fois, 10 minutes. Le téléphone doit voir la même empreinte de certificat :",
    fingerprint: "Empreinte",
    phone_name: "Nom de ce téléphone",
    phone_pair_title: "Appairer ce téléphone",
    phone_pair_intro: "Ce téléphone pourra lire et écrire dans vos cercles tant qu'il reste appairé ; vous pourrez le révoquer à tout moment depuis l'ordinateur.",
    phone_pair_submit: "Appairer",
    phone_pair_refused: "Ce lien d'appairage est inconnu, déjà utilisé ou expiré : affichez un nouveau QR sur l'ordinateur.",
    not_paired_title: "Téléphone non appairé",
    not_paired_help: "Ce téléphone n'est pas appairé avec ce nœud. Sur l'ordinateur, ouvrez « Mes appareils », puis « Appairer un téléphone », et scannez le QR.",
    phone_paired_on: "appairé le",
    phone_last_used: "dernière utilisation",
    no_phone: "Aucun téléphone appairé.",
    manifest_description: "Le cahier de liaison et le dossier partagés de l'équipe de soins.",
    node_unreachable: "Hors ligne : le nœud ne répond pas. Rien n'est gardé sur ce téléphone ; la page se met à jour dès qu'il répond.",
    reminder_every: "Une alerte non acquittée est rappelée à ses destinataires toutes les",
    waiting_since: "en attente depuis",
    day_unit: "j",
    view_pdf: "Ouvrir",
    team: "Équipe",
    team_circle: "Le cercle de l'équipe : messages et documents, sans patient.",
    period_from: "du",
    period_to: "au",
    period_from_label: "Du",
    period_to_label: "Au",
    enable_notifications: "Recevoir les alertes sur cet appareil",
    vitals_hint: "Remplies, elles font de la note une note de constantes ; le texte devient facultatif.",
    note_needs_text: "Écrivez le texte de la note, ou des constantes.",
    trends: "Évolution des constantes",
    trends_desc: "Chaque constante mesurée dans le cahier, de la plus ancienne à la plus récente.",
    no_vitals: "Aucune constante relevée pour l'instant.",
    ack_by_another: "un autre membre de l'équipe l'acquittera",
    read_only: "Votre rôle dans ce cercle permet de lire le cahier, pas d'y écrire.",
    unknown_member: "membre inconnu",
    identity: "Identité",
    name: "Nom",
    born: "Né(e) le",
    sex: "Sexe",
    ins: "INS",
    identity_status: "Statut de l'identité",
    verified_by: "vérifiée par",
    verified_on: "sur",
    ins_not_qualified: "INS non qualifiée : le téléservice INSi n'a pas été interrogé",
    years_old: "ans",
    overdue: "En retard",
    take_photo: "Ou une photo prise avec l'appareil photo (téléphone, tablette)",
    print_notebook: "Imprimer le cahier",
    probable_duplicate: "Doublon probable : un autre cercle a les mêmes nom, prénoms et date de naissance (ou le même INS) ; vérifiez l'identité.",
    consent: "Consentement",
    consent_scope: "Portée",
    not_recorded: "non renseigné",
    problems: "Problèmes de santé",
    allergies: "Allergies",
    medications: "Traitements",
    contacts: "Contacts",
    care_plan: "Projet de soins",
    export_fhir: "Exporter le dossier (FHIR R4)",
    export_fhir_hint: "Un fichier JSON à transmettre à un autre logiciel de soins : patient, équipe, cahier de liaison, messages, documents et traçabilité de chaque saisie.",
    tasks: "Tâches",
    none: "Aucun",
    new_task: "Nouvelle tâche",
    title: "Intitulé",
    due: "Échéance",
    done: "faite",
    mark_done: "Marquer faite",
    to_do: "à faire",
    send: "Envoyer",
    new_message: "Nouveau message",
    no_messages: "Aucun message pour l'instant.",
    read_by: "Lu par",
    not_read: "Pas encore lu",
    mark_read: "Marquer comme lus",
    you: "vous",
    upload: "Déposer",
    file: "Fichier",
    download: "Télécharger",
    fetch: "Récupérer auprès d'un membre",
    no_documents: "Aucun document pour l'instant.",
    size: "Taille",
    added_by: "Ajouté par",
    role: "Rôle",
    profession: "Profession",
    directory: "Annuaire",
    directory_verified: "vérifié dans l'annuaire",
    directory_declared: "déclaré",
    directory_contradicted: "déclaré — l'annuaire donne ce numéro à",
    directory_search: "Chercher un collègue dans l'annuaire (nom ou n° RPPS)",
    directory_search_button: "Chercher",
    directory_none: "Personne dans l'annuaire importé pour cette recherche (il s'importe avec « cercle directory import FICHIER »).",
    invite: "Inviter un membre",
    invite_help: "Le code ne sert qu'une fois. Transmettez-le en main propre ou par un canal sûr : le nouveau membre le scanne ou le colle dans la page « Rejoindre un cercle » (ou avec « cercle join »). Gardez votre nœud allumé jusqu'à ce qu'il ait rejoint.",
    invite_short: "Code court, à lire à voix haute",
    invite_short_help: "Il retrouve votre nœud sur le même réseau, ou par un relais que vous utilisez tous deux.",
    valid_for: "Valable",
    create_invite: "Créer le code",
    invite_code: "Code d'invitation",
    invite_expires: "Expire le",
    relays: "Relais",
    peer: "Appareils joignables",
    shared_circles: "Cercles partagés",
    pending: "En attente d'envoi",
    last_sync: "Dernier échange",
    path: "Liaison",
    path_direct: "directe",
    path_relayed: "par le relais (chiffrée de bout en bout)",
    received: "Reçu",
    sent: "Envoyé",
    no_peers: "Aucun appareil joignable : vos saisies restent sur ce poste et partiront dès qu'un membre ou un relais sera joignable.",
    this_node: "Ce nœud",
    a_relay: "Relais (ne lit rien : il garde les envois chiffrés pour les membres absents)",
    unknown_device: "Appareil inconnu (ni membre ni relais de vos cercles)",
    technical: "Détails techniques",
    addresses: "Adresses",
    notes_per_week: "Notes par semaine",
    notes_per_week_desc: "Nombre de notes du cahier de liaison sur les huit dernières semaines.",
    time_to_ack: "Délai d'acquittement des alertes",
    time_to_ack_desc: "Heures entre chaque alerte et son premier acquittement (dix dernières alertes).",
    active_members: "Membres actifs",
    active_members_desc: "Notes et messages écrits par chaque membre sur les trente derniers jours.",
    week_of: "sem. du",
    hours: "h",
    entries: "écrit(s)",
    no_data: "Pas encore de données.",
    failed: "L'action n'a pas abouti",
    back: "Retour",
    refused_form: "Ce formulaire a expiré ou ne vient pas de cette page. Rechargez la page et recommencez.",
    date_format: "%d/%m/%Y %H:%M",
    calendar_format: "%d/%m/%Y",
    day_format: "%d/%m",
};

pub(crate) static EN: Words = Words {
    language: "English",
    switch_label: "Language",
    skip: "Skip to content",
    login: "Sign in",
    login_wrong: "That token is not the right one. Check it and try again.",
    login_help: "Paste your node's access token: it is in the api-token file of its home, and `cercle up` prints a link that signs you in directly.",
    token: "Access token",
    sign_in: "Sign in",
    sign_out: "Sign out",
    circles: "Your circles of care",
    no_circles: "No circle yet. A coordinator can send you an invite code.",
    invitations: "Invitations waiting",
    added_you: "{who} added you to the circle of {patient}, as {role}.",
    someone: "A member",
    a_patient: "a patient",
    from_stranger: "Beware: this invitation comes from a device you share no circle with.",
    accept_always: "Always accept {who}'s circles",
    accept: "Join",
    decline: "Decline",
    damaged_circles: "Unreadable circles (neither synced nor writable)",
    peers_connected: "online · devices reachable:",
    offline: "offline: what you write is kept and leaves as soon as a path exists",
    alerts_open: "alert(s) to acknowledge",
    unread: "unread",
    last_note: "Last note",
    no_notes: "No note yet.",
    notebook: "Liaison notebook",
    patient_file: "Patient file",
    messages: "Messages",
    documents: "Documents",
    members: "Members",
    activity: "Activity",
    audit: "Audit trail",
    audit_writes: "Writes",
    audit_help: "Every write this node accepted: its author and device, the author's time and the time it arrived here. CSV export: “cercle audit CIRCLE --csv FILE”.",
    audit_at: "Author's time",
    audit_received: "Received here",
    audit_here: "written on this node",
    audit_device: "Device",
    audit_action: "Action",
    audit_refusals: "Refused data",
    audit_no_refusals: "Nothing was refused.",
    audit_reason: "Reason",
    audit_forks: "Forged history: a device signed two versions",
    audit_fork_device: "device",
    sync: "Sync",
    sections: "Circle sections",
    new_note: "New note",
    kind: "Kind",
    text: "Text",
    add: "Add",
    all_kinds: "All kinds",
    all_authors: "All authors",
    author: "Author",
    filter: "Filter",
    amend: "Correct",
    amended: "corrected",
    received_on: "received here on",
    save: "Save",
    acknowledge: "Acknowledge",
    acknowledged_by: "Acknowledged by",
    awaiting_ack: "Awaiting acknowledgement",
    vitals_values: "Vital signs (values)",
    alert_to: "For (alert)",
    alert_to_help: "Who must act on an alert: it stays flagged for them until another member acknowledges it.",
    to_coordinators: "The circle's coordinators (default)",
    for_whom: "For:",
    join: "Join a circle",
    join_link: "Join a circle with an invite code",
    new_circle: "New circle",
    new_circle_link: "Create a care circle",
    for_patient: "Around a patient",
    for_patient_help: "You will be its coordinator. The rest of the identity (sex, INS, address) is completed afterwards in the patient file.",
    for_team: "For the team, no patient",
    team_name: "Team name",
    create_circle: "Create the circle",
    created_duplicate: "The circle is created. Beware: another of your circles is probably about the same patient (same INS, or same names and birth date). Check that it is not a duplicate before writing in it.",
    complete_file: "Complete the patient file",
    join_help: "Paste the invite code, type the 24-character short code read out to you, or scan the QR code (spaces, dashes and case do not matter). The inviter's node must be reachable: on the same network, or through a relay you both use.",
    join_scan: "Scan the QR code with the camera",
    join_scan_stop: "Stop the camera",
    join_camera: "The camera is not available: paste or type the code.",
    join_code: "Invite code",
    join_bad_code: "This is not a valid invite code, or it has expired: check it, or ask the coordinator for a new one.",
    join_reaching: "Looking for the node of the person who invited you… This page updates itself.",
    join_accepted: "Invitation accepted: the circle is arriving…",
    join_joined: "You are a member of the circle.",
    join_refused: "The invitation was refused:",
    document_too_large: "This document is over 8 MB, the largest accepted: make it smaller (a lighter photo, a compressed PDF) and try again.",
    choose_file: "Choose the file to add first.",
    open_circle: "Open the circle",
    medication_add: "Add a medication",
    stop: "Stop",
    stop_reason: "Why it is stopped",
    stopped_on: "Stopped on",
    edit: "Edit",
    owner: "Owner",
    remove: "Remove",
    remove_reason: "Why it is removed",
    removed_on: "Removed on",
    removed_items: "Removed from the file",
    changed_on: "changed on",
    identity_edit: "Edit the identity or contact details",
    identity_edit_hint: "Changing the names, birth date, sex or INS makes the identity provisional until it is checked again; the address and phone do not.",
    verify_identity: "Check the identity",
    verify_document: "Identity document shown",
    family_name: "Family name",
    given_names: "Given names",
    birth_date: "Birth date",
    address: "Address",
    phone: "Phone",
    trusted_person: "Trusted person",
    regular_gp: "Regular GP",
    consent_edit: "Record the consent",
    care_plan_edit: "Edit the care plan",
    problem_add: "Add a health problem",
    allergy_add: "Add an allergy",
    contact_add: "Add a contact",
    alert_notice: "New alert in one of your circles",
    reminder_notice: "Reminder: an alert still waits in one of your circles",
    reminder: "Alert reminders",
    reminder_set: "Change the reminder delay",
    reminder_hours: "Delay in hours (0: no reminder)",
    close_title: "Close the circle",
    suspended_banner: "Sharing suspended — the patient objected",
    emergency_banner: "Emergency access by",
    emergency_reason: "reason",
    emergency_reason_label: "Reason for access",
    emergency_until: "until",
    emergency_ended: "ended on",
    emergency_link: "Emergency access (on-call doctor)",
    emergency_title: "Emergency access",
    emergency_help: "With the emergency code left at the patient's home, an on-call professional named by the coordinator may read the record, read-only, for 24 hours at most. The team sees it, with the reason, and all of it is in the audit trail.",
    emergency_code: "Emergency code",
    emergency_duration: "Duration",
    emergency_ask: "Ask for emergency access",
    emergency_hours: "hours",
    emergency_code_print: "Print the emergency code",
    emergency_code_help: "Print it and leave it at the patient's home. It holds no health data: only an on-call professional named below may use it, for 24 hours at most, and the team sees it.",
    on_call_title: "On-call professionals",
    on_call_help: "With the patient's emergency code they may read the record, read-only, for 24 hours at most.",
    on_call_none: "No one is named: the emergency code lets no one in.",
    on_call_add: "Add an on-call professional (their contact card)",
    on_call_remove: "Remove",
    withdraw_title: "The patient objects to sharing",
    withdraw_help: "Record it as soon as the patient objects: every member's node stops sending and receiving the circle's data and keeps what it holds, read-only; the relays delete their copy and sign a receipt.",
    withdraw_reason: "Reason, as the patient gave it",
    withdraw_button: "Record the objection and suspend sharing",
    close_help: "When care ends: every member's node destroys the circle's keys and all its content (notes, messages, patient file, documents); only the audit trail without content is kept. The relays delete their copy and sign a receipt. This cannot be undone.",
    close_confirm: "I confirm closing for good the circle of",
    close_button: "Close and destroy the circle",
    closed_circles: "Closed circles",
    closed_help: "Their content is destroyed on this device; the audit trail without content and the relays' deletion receipts remain.",
    closed_on: "closed on",
    closed_by: "by",
    receipt_no_relay: "No relay kept this circle: nothing to delete but on its members' devices.",
    receipt_awaited: "deletion receipt awaited (the relay gives it when next connected)",
    receipt_relay: "Relay",
    receipt_envelopes: "envelopes deleted",
    receipt_verified: "signed receipt verified",
    receipt_bad: "RECEIPT SIGNATURE INVALID",
    reminder_off: "Unacknowledged alerts are not recalled.",
    device_of: "A device of",
    device_revoked_on: "was revoked on",
    devices_title: "My devices",
    devices_help: "Your computers tied to your account, and the phones that open this page on the practice's network.",
    device_this: "this device",
    device_connected: "connected",
    device_last_seen: "last seen",
    device_never_seen: "never seen from here",
    device_revoked: "revoked on",
    device_revoke: "Revoke",
    device_circles: "circle(s)",
    computers: "Computers",
    device_pair: "Pair a new computer",
    device_pair_help: "On the new computer, type: cercle init --pair followed by this code, while this node runs. The code works once, for 15 minutes.",
    device_code: "Pairing code",
    device_key_here: "This computer holds your member key: other devices are paired from here.",
    devices_on_computer: "Devices are managed on the computer.",
    phones: "Phones and tablets",
    phones_off: "To open Cercle on a phone, start the node with cercle up --ui-listen ADDRESS:PORT (this computer's address on the practice's network).",
    phone_pair_button: "Pair a phone",
    phone_pair_help: "Scan this QR with the phone's camera, on the same network. The link works once, for 10 minutes. The phone must see the same certificate fingerprint:",
    fingerprint: "Fingerprint",
    phone_name: "This phone's name",
    phone_pair_title: "Pair this phone",
    phone_pair_intro: "This phone will read and write in your circles while it stays paired; you can revoke it at any time from the computer.",
    phone_pair_submit: "Pair",
    phone_pair_refused: "This pairing link is unknown, already used or expired: show a new QR on the computer.",
    not_paired_title: "Phone not paired",
    not_paired_help: "This phone is not paired with this node. On the computer, open \"My devices\", then \"Pair a phone\", and scan the QR.",
    phone_paired_on: "paired on",
    phone_last_used: "last used",
    no_phone: "No phone paired.",
    manifest_description: "The care team's shared liaison notebook and patient file.",
    node_unreachable: "Offline: the node does not answer. Nothing is kept on this phone; the page updates as soon as it answers.",
    reminder_every: "An unacknowledged alert is recalled to its addressees every",
    waiting_since: "waiting for",
    day_unit: "d",
    view_pdf: "Open",
    team: "Team",
    team_circle: "The team's own circle: messages and documents, no patient.",
    period_from: "from",
    period_to: "to",
    period_from_label: "From",
    period_to_label: "To",
    enable_notifications: "Get alerts on this device",
    vitals_hint: "Once filled, they make the note a vital-signs note; the text becomes optional.",
    note_needs_text: "Write the note's text, or vital signs.",
    trends: "Vital signs over time",
    trends_desc: "Each vital sign measured in the notebook, oldest to newest.",
    no_vitals: "No vital signs recorded yet.",
    ack_by_another: "another member of the team will acknowledge it",
    read_only: "Your role in this circle lets you read the notebook, not write in it.",
    unknown_member: "unknown member",
    identity: "Identity",
    name: "Name",
    born: "Born",
    sex: "Sex",
    ins: "INS",
    identity_status: "Identity status",
    verified_by: "verified by",
    verified_on: "on",
    ins_not_qualified: "INS not qualified: the INSi teleservice was not queried",
    years_old: "years old",
    overdue: "Overdue",
    take_photo: "Or a photo taken with the camera (phone, tablet)",
    print_notebook: "Print the notebook",
    probable_duplicate: "Probable duplicate: another circle has the same names and birth date (or the same INS); check the identity.",
    consent: "Consent",
    consent_scope: "Scope",
    not_recorded: "not recorded",
    problems: "Health problems",
    allergies: "Allergies",
    medications: "Medications",
    contacts: "Contacts",
    care_plan: "Care plan",
    export_fhir: "Export the file (FHIR R4)",
    export_fhir_hint: "A JSON file for another care system: patient, care team, liaison notebook, messages, documents and the provenance of every entry.",
    tasks: "Tasks",
    none: "None",
    new_task: "New task",
    title: "Title",
    due: "Due",
    done: "done",
    mark_done: "Mark done",
    to_do: "to do",
    send: "Send",
    new_message: "New message",
    no_messages: "No message yet.",
    read_by: "Read by",
    not_read: "Not read yet",
    mark_read: "Mark as read",
    you: "you",
    upload: "Upload",
    file: "File",
    download: "Download",
    fetch: "Fetch from a member",
    no_documents: "No document yet.",
    size: "Size",
    added_by: "Added by",
    role: "Role",
    profession: "Profession",
    directory: "Directory",
    directory_verified: "verified in the directory",
    directory_declared: "declared",
    directory_contradicted: "declared — the directory gives this number to",
    directory_search: "Find a colleague in the directory (name or RPPS number)",
    directory_search_button: "Search",
    directory_none: "Nobody in the imported directory for this search (import it with “cercle directory import FILE”).",
    invite: "Invite a member",
    invite_help: "The code works once. Hand it over in person or through a safe channel: the new member scans it or pastes it in the \"Join a circle\" page (or with `cercle join`). Keep your node running until they have joined.",
    invite_short: "Short code, to read out",
    invite_short_help: "It finds your node on the same network, or through a relay you both use.",
    valid_for: "Valid for",
    create_invite: "Create the code",
    invite_code: "Invite code",
    invite_expires: "Expires",
    relays: "Relays",
    peer: "Reachable devices",
    shared_circles: "Shared circles",
    pending: "Waiting to be sent",
    last_sync: "Last exchange",
    path: "Link",
    path_direct: "direct",
    path_relayed: "through the relay (end-to-end encrypted)",
    received: "Received",
    sent: "Sent",
    no_peers: "No device reachable: what you write stays on this computer and leaves as soon as a member or a relay is reachable.",
    this_node: "This node",
    a_relay: "Relay (reads nothing: it keeps sealed envelopes for absent members)",
    unknown_device: "Unknown device (neither a member nor a relay of your circles)",
    technical: "Technical details",
    addresses: "Addresses",
    notes_per_week: "Notes per week",
    notes_per_week_desc: "Liaison notebook notes over the last eight weeks.",
    time_to_ack: "Time to acknowledge alerts",
    time_to_ack_desc: "Hours between each alert and its first acknowledgement (last ten alerts).",
    active_members: "Active members",
    active_members_desc: "Notes and messages written by each member over the last thirty days.",
    week_of: "week of",
    hours: "h",
    entries: "written",
    no_data: "No data yet.",
    failed: "That did not work",
    back: "Back",
    refused_form: "This form has expired or does not come from this page. Reload the page and try again.",
    date_format: "%Y-%m-%d %H:%M",
    calendar_format: "%Y-%m-%d",
    day_format: "%m-%d",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_role_has_a_name_in_both_languages() {
        for w in [&FR, &EN] {
            for k in KINDS {
                assert_ne!(w.kind(k), "?", "{k}");
            }
            for r in ROLES {
                assert_ne!(w.role(r), "?", "{r}");
            }
        }
        for sex in ["female", "male", "other", "unknown"] {
            assert_ne!(FR.sex_name(sex), EN.sex_name(sex), "{sex}");
        }
        // The French page never shows the schema's English words for an item's details.
        for field in [
            "status",
            "since",
            "severity",
            "reaction",
            "frequency",
            "relation",
            "phone",
            "email",
        ] {
            assert_ne!(FR.item_field(field), field, "{field}");
            assert_eq!(EN.item_field(field), field);
        }
        for value in [
            "active", "resolved", "stopped", "mild", "moderate", "severe",
        ] {
            assert_ne!(FR.item_value(value), value, "{value}");
        }
        assert_eq!(FR.item_value("1 le matin"), "1 le matin");
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("de"), None);
        assert_eq!(Lang::default().other(), Lang::En);
    }
}
