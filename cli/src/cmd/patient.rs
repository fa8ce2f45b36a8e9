//! `cercle patient`: read and change the patient file (identity and its verification,
//! consent, care plan, problems, allergies, medications, contacts).

use std::collections::BTreeMap;

use cercle_node::ops::patient::{
    ItemAdd, ItemChange, ItemRemove, ItemRow, MedicationStop, PatientChange, PatientSet,
    PatientShow, PatientView,
};

use cercle_node::ops::closing::ConsentWithdraw;

use crate::Context;
use crate::backend::ask;
use crate::output::answer;

// Parsed once per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PatientCommand {
    /// Show the patient file.
    Show {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
    },
    /// Add an item with its fields to a list of the patient file, e.g.
    /// `cercle patient add CIRCLE allergies substance=Pénicilline severity=severe`.
    Add {
        circle: String,
        /// problems, allergies, medications or contacts.
        list: String,
        /// The item's fields as NAME=VALUE.
        #[arg(value_name = "NAME=VALUE", required = true)]
        fields: Vec<String>,
    },
    /// Change fields of an item, e.g.
    /// `cercle patient change CIRCLE problems 3f2a status=resolved`; `NAME=` clears a field.
    Change {
        circle: String,
        /// problems, allergies, medications or contacts.
        list: String,
        /// The item's id or a prefix of at least 4 characters (`patient show`).
        item: String,
        /// The fields to change as NAME=VALUE.
        #[arg(value_name = "NAME=VALUE", required = true)]
        fields: Vec<String>,
    },
    /// Remove an item, saying why; it stays in the record, shown as removed.
    Remove {
        circle: String,
        /// problems, allergies, medications or contacts.
        list: String,
        /// The item's id or a prefix of at least 4 characters (`patient show`).
        item: String,
        /// Why, e.g. "saisie erronée".
        #[arg(long)]
        reason: String,
    },
    /// Record that the patient objects to sharing (professionals and coordinators): every
    /// member's node stops sending and taking the circle's data and keeps what it holds,
    /// read-only ("partage suspendu"); the relays delete their copy and sign a receipt.
    Consent {
        circle: String,
        /// The patient objects to sharing (the only change this command makes).
        #[arg(long, required = true)]
        withdraw: bool,
        /// Why, as the patient said it.
        #[arg(long, requires = "withdraw")]
        reason: String,
    },
    /// Record that a medication was stopped, and why; it stays in the list as stopped.
    Stop {
        circle: String,
        /// The medication's id or a prefix of at least 4 characters (`patient show --json`).
        medication: String,
        /// Why it was stopped.
        #[arg(long)]
        reason: String,
    },
    /// Change the patient file (professionals and coordinators); one change per option.
    Set {
        circle: String,
        #[arg(long)]
        family_name: Option<String>,
        #[arg(long)]
        given_names: Option<String>,
        #[arg(long, value_name = "YYYY-MM-DD")]
        birth_date: Option<String>,
        /// female, male or other.
        #[arg(long)]
        sex: Option<String>,
        /// The national health identifier (INS, 15 digits with its key).
        #[arg(long)]
        ins: Option<String>,
        /// The patient's home address.
        #[arg(long)]
        address: Option<String>,
        /// The patient's phone number.
        #[arg(long)]
        phone: Option<String>,
        /// Record that the identity was checked against an identity document (say which
        /// with --document).
        #[arg(long, requires = "document")]
        verify: bool,
        /// The document of high trust it was checked against: id_card, passport,
        /// residence_permit or family_record_book.
        #[arg(long, requires = "verify")]
        document: Option<String>,
        /// given, refused or withdrawn.
        #[arg(long)]
        consent: Option<String>,
        /// What the consent covers.
        #[arg(long, requires = "consent")]
        consent_scope: Option<String>,
        #[arg(long)]
        care_plan: Option<String>,
        /// Add a problem (a diagnosis); repeat for several.
        #[arg(long)]
        problem: Vec<String>,
        /// Add an allergy (the substance); repeat for several.
        #[arg(long)]
        allergy: Vec<String>,
        /// Add a medication (its name and dose); repeat for several.
        #[arg(long)]
        medication: Vec<String>,
        /// Add a contact (a relative, a neighbour); repeat for several.
        #[arg(long)]
        contact: Vec<String>,
    },
}

pub(crate) fn run(ctx: &Context, cmd: PatientCommand) -> anyhow::Result<()> {
    let view = match cmd {
        PatientCommand::Show { circle } => ask(ctx, PatientShow { circle })?,
        PatientCommand::Add {
            circle,
            list,
            fields,
        } => {
            let list = list.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let fields = name_values(&fields)?;
            let done = ask(
                ctx,
                ItemAdd {
                    circle,
                    list,
                    fields,
                },
            )?;
            return crate::output::added(ctx.json, done.circle, done.ids, ("Item", "added"));
        }
        PatientCommand::Change {
            circle,
            list,
            item,
            fields,
        } => {
            let list = list.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let fields = name_values(&fields)?;
            let change = ItemChange {
                circle,
                list,
                item,
                fields,
            };
            let done = ask(ctx, change)?;
            return crate::output::added(ctx.json, done.circle, done.ids, ("Item", "changed"));
        }
        PatientCommand::Remove {
            circle,
            list,
            item,
            reason,
        } => {
            let list = list.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let remove = ItemRemove {
                circle,
                list,
                item,
                reason,
            };
            let done = ask(ctx, remove)?;
            return crate::output::added(ctx.json, done.circle, done.ids, ("Item", "removed"));
        }
        PatientCommand::Consent {
            circle,
            withdraw: _,
            reason,
        } => {
            let view = ask(ctx, ConsentWithdraw { circle, reason })?;
            return answer(ctx.json, &view, || {
                format!(
                    "sharing suspended in circle {}: the patient objected; every member's node stops sending and taking its data and keeps what it holds, read-only (`cercle circle show` shows the relays' receipts)",
                    &view.id[..12]
                )
            });
        }
        PatientCommand::Stop {
            circle,
            medication,
            reason,
        } => {
            let done = ask(
                ctx,
                MedicationStop {
                    circle,
                    medication,
                    reason,
                },
            )?;
            return crate::output::added(
                ctx.json,
                done.circle,
                done.ids,
                ("Medication", "stopped"),
            );
        }
        PatientCommand::Set {
            circle,
            family_name,
            given_names,
            birth_date,
            sex,
            ins,
            address,
            phone,
            verify,
            document,
            consent,
            consent_scope,
            care_plan,
            problem,
            allergy,
            medication,
            contact,
        } => {
            let change = Box::new(PatientChange {
                family_name,
                given_names,
                birth_date,
                sex,
                ins,
                address,
                phone,
                verify,
                verified_with: document
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e: String| anyhow::anyhow!(e))?,
                consent,
                consent_scope,
                care_plan,
                problems: problem,
                allergies: allergy,
                medications: medication,
                contacts: contact,
            });
            ask(ctx, PatientSet { circle, change })?
        }
    };
    answer(ctx.json, &view, || text(&view))
}

/// `NAME=VALUE` arguments as a map, or which one is not.
fn name_values(fields: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    fields
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("{f:?} is not NAME=VALUE, e.g. severity=severe"))
        })
        .collect()
}

fn text(p: &PatientView) -> String {
    let name = match (&p.given_names, &p.family_name) {
        (Some(g), Some(f)) => format!("{g} {f}"),
        (None, Some(f)) => f.clone(),
        _ => "(no name)".into(),
    };
    let mut s = format!(
        "{name}  born {}  sex {}\nINS {}  identity {}\nconsent {}{}\n",
        p.birth_date.as_deref().unwrap_or("?"),
        p.sex.as_deref().unwrap_or("?"),
        p.ins.as_deref().unwrap_or("-"),
        p.identity_status,
        p.consent.as_deref().unwrap_or("not recorded"),
        p.consent_scope
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
    );
    for (label, value) in [("address", &p.address), ("phone", &p.phone)] {
        if let Some(v) = value {
            s.push_str(&format!("{label} {v}\n"));
        }
    }
    if !p.care_plan.is_empty() {
        s.push_str(&format!("care plan: {}\n", p.care_plan));
    }
    let list = |s: &mut String, title: &str, items: &[ItemRow], key: &str| {
        if items.is_empty() {
            return;
        }
        s.push_str(&format!("{title}:\n"));
        for i in items {
            let rest: Vec<String> = i
                .fields
                .iter()
                .filter(|(k, _)| {
                    k.as_str() != key && !cercle_crdt::ITEM_HISTORY.contains(&k.as_str())
                })
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let removed = match (i.fields.get("removed_reason"), i.fields.get("stop_reason")) {
                (Some(why), _) => format!("REMOVED ({why}) "),
                (None, Some(why)) => format!("STOPPED ({why}) "),
                (None, None) => String::new(),
            };
            s.push_str(&format!(
                "  {}  {removed}{}{}\n",
                crate::output::short(&i.id),
                i.fields.get(key).map_or("?", String::as_str),
                if rest.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", rest.join(", "))
                }
            ));
        }
    };
    list(&mut s, "problems", &p.problems, "label");
    list(&mut s, "allergies", &p.allergies, "substance");
    list(&mut s, "medications", &p.medications, "name");
    list(&mut s, "contacts", &p.contacts, "name");
    if !p.tasks.is_empty() {
        s.push_str(&format!(
            "tasks: {} (see `cercle task list`)\n",
            p.tasks.len()
        ));
    }
    if !p.documents.is_empty() {
        s.push_str(&format!(
            "documents: {} (see `cercle doc list`)\n",
            p.documents.len()
        ));
    }
    s.trim_end().to_string()
}
