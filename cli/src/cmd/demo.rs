//! `cercle demo`: a demo care circle on this machine, to see the care data model at work.
//!
//! Creates (in a fresh temporary home unless `--home` is given) a GP's identity and a circle
//! around a demo patient with a verified identity, consent, problems, treatments, tasks and a
//! few days of liaison notebook entries, then prints the notebook and the commands to explore
//! it. Everything is written through the same code paths as real use.

use cercle_crdt::{
    ConsentStatus, EntryKind, IdentityUpdate, ItemList, NewEntry, PatientFile, Timestamp, Vitals,
    WriteError,
};
use cercle_node::{Circle, Home, KdfParams, LocalIdentity, Profile, PublicIdentity};
use serde::Serialize;

use crate::Context;
use crate::output::{answer, human_time, now};

#[derive(Debug, Serialize)]
struct DemoSummary {
    home: String,
    circle: String,
    patient: String,
    notes: usize,
}

const HOUR: i64 = 3_600_000;

pub(crate) fn run(ctx: &Context, home_given: bool) -> anyhow::Result<()> {
    let home = if home_given {
        ctx.home.clone()
    } else {
        let dir = std::env::temp_dir().join(format!("cercle-demo-{}", now().millis()));
        Home::at(dir)
    };
    let profile = Profile::new(
        "Dr Claire Martin",
        "médecin généraliste",
        Some("10003456786"),
        None,
    )?;
    let identity = LocalIdentity::generate(profile, now())?;
    home.init(&identity, None, KdfParams::FAST_INSECURE)?;
    let me = identity.public();
    let store: std::sync::Arc<dyn cercle_node::store::Store> =
        std::sync::Arc::new(home.open_store(&identity)?);

    let start = Timestamp(now().millis() - 4 * 24 * HOUR);
    let patient = IdentityUpdate {
        family_name: Some("Durand".into()),
        given_names: Some("Jeanne".into()),
        birth_date: Some("1941-05-12".into()),
        sex: Some("female".into()),
        ins: None,
    };
    let mut circle = Circle::create(store, &identity, &patient, start)?;
    circle
        .edit_patient_file(&identity, start, |pf| demo_patient_file(pf, &me, start))?
        .wait()?;

    let notes: [(i64, EntryKind, &str, Option<Vitals>); 6] = [
        (
            9,
            EntryKind::Observation,
            "Première visite: patiente fatiguée mais souriante, œdèmes des chevilles.",
            None,
        ),
        (
            10,
            EntryKind::Care,
            "Pansement du talon refait, plaie propre, pas de signe d'infection.",
            None,
        ),
        (
            33,
            EntryKind::Vitals,
            "Constantes du matin.",
            Some(Vitals {
                systolic: Some(132),
                diastolic: Some(78),
                heart_rate: Some(84),
                weight_kg: Some(61.4),
                ..Default::default()
            }),
        ),
        (
            57,
            EntryKind::Handover,
            "Pour l'IDE de demain: surveiller le poids, +1,2 kg en deux jours.",
            None,
        ),
        (
            81,
            EntryKind::Alert,
            "Prise de poids de 2 kg en 3 jours et essoufflement: appeler le médecin traitant.",
            None,
        ),
        (
            82,
            EntryKind::Observation,
            "Fille de la patiente prévenue, passera ce soir.",
            None,
        ),
    ];
    for (hours, kind, text, vitals) in notes {
        let entry = NewEntry {
            kind,
            text: text.into(),
            vitals,
        };
        circle
            .add_note(&identity, entry, Timestamp(start.millis() + hours * HOUR))?
            .wait()?;
    }

    let summary = DemoSummary {
        home: home.root().display().to_string(),
        circle: circle.info().id.clone(),
        patient: circle.info().patient.clone(),
        notes: circle.notes().len(),
    };
    answer(ctx.json, &summary, || {
        let mut s = format!(
            "Demo circle for {} created in {}\n\nLiaison notebook:\n",
            summary.patient, summary.home
        );
        for e in circle.notes() {
            s.push_str(&format!(
                "  {}  {:<11} {}\n",
                human_time(e.at),
                e.kind.as_str(),
                e.current_text()
            ));
        }
        let bin =
            std::env::current_exe().map_or_else(|_| "cercle".into(), |p| p.display().to_string());
        let h = &summary.home;
        let c = &summary.circle[..12];
        s.push_str(&format!(
            "\nExplore it:\n  {bin} --home {h} note list {c}\n  {bin} --home {h} note add {c} \"Votre note\" --kind care\n  {bin} --home {h} --json note list {c}\n\nThis demo runs one node, offline. Members' nodes sync with `cercle up` (see the README); a demo team of several nodes and the web UI are not built yet."
        ));
        s
    })
}

/// The demo patient's file: verified identity, consent, problems, allergy, treatment, task
/// and care plan.
fn demo_patient_file(
    pf: &mut PatientFile,
    me: &PublicIdentity,
    start: Timestamp,
) -> Result<(), WriteError> {
    pf.verify_identity(me.member(), start)?;
    pf.record_consent(
        me.member(),
        ConsentStatus::Given,
        "équipe de soins à domicile",
        start,
    )?;
    pf.add_item(
        me.member(),
        ItemList::Problems,
        &[("label", "Insuffisance cardiaque"), ("status", "active")],
        start,
    )?;
    pf.add_item(
        me.member(),
        ItemList::Problems,
        &[("label", "Ulcère du talon droit"), ("status", "active")],
        start,
    )?;
    pf.add_item(
        me.member(),
        ItemList::Allergies,
        &[("substance", "Pénicilline"), ("severity", "severe")],
        start,
    )?;
    pf.add_item(
        me.member(),
        ItemList::Medications,
        &[("name", "Furosémide 40 mg"), ("frequency", "1 le matin")],
        start,
    )?;
    pf.add_item(
        me.member(),
        ItemList::Tasks,
        &[
            ("title", "Renouveler l'ordonnance de soins infirmiers"),
            ("due", "2026-12-15"),
        ],
        start,
    )?;
    pf.set_care_plan(me.member(), "Pansement du talon un jour sur deux; pesée quotidienne; kinésithérapie deux fois par semaine.", start)?;
    Ok(())
}
