//! `cercle circle`: create circles of care and list them.

use cercle_crdt::IdentityUpdate;
use cercle_crdt::schema::parse_date;
use cercle_node::Circle;

use crate::Context;
use crate::output::{answer, human_time, now};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum CircleCommand {
    /// Create a circle of care around a patient; you are its coordinator.
    Create {
        /// The patient's name, given names first: "Jeanne Durand".
        #[arg(long)]
        patient: String,
        /// The patient's birth date, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD")]
        birth_date: Option<String>,
    },
    /// List your circles.
    List,
}

pub(crate) fn run(ctx: &Context, cmd: CircleCommand) -> anyhow::Result<()> {
    match cmd {
        CircleCommand::Create {
            patient,
            birth_date,
        } => create(ctx, &patient, birth_date.as_deref()),
        CircleCommand::List => list(ctx),
    }
}

fn create(ctx: &Context, patient: &str, birth_date: Option<&str>) -> anyhow::Result<()> {
    let me = ctx.home.identity()?;
    let patient = patient.trim();
    if patient.is_empty() {
        anyhow::bail!("the patient's name is empty: pass it as --patient \"Jeanne Durand\"");
    }
    if let Some(d) = birth_date {
        parse_date(d).map_err(|_| {
            anyhow::anyhow!(
                "--birth-date {d:?} is not a valid date: use YYYY-MM-DD, e.g. 1941-05-12"
            )
        })?;
    }
    // "Jeanne Marie Durand": the last word is the family name, the rest the given names.
    let (given, family) = match patient.rsplit_once(char::is_whitespace) {
        Some((g, f)) => (Some(g.trim().to_string()), f.to_string()),
        None => (None, patient.to_string()),
    };
    let update = IdentityUpdate {
        family_name: Some(family),
        given_names: given,
        birth_date: birth_date.map(str::to_string),
        ..Default::default()
    };
    let circle = Circle::create(&ctx.home, &me, &update, now())?;
    let info = circle.info();
    answer(ctx.json, info, || {
        format!("created circle {} for {}", info.id, info.patient)
    })
}

fn list(ctx: &Context) -> anyhow::Result<()> {
    ctx.home.identity()?;
    let circles = Circle::list(&ctx.home)?;
    answer(ctx.json, &circles, || {
        if circles.is_empty() {
            return "no circles yet: create one with `cercle circle create --patient \"NAME\"`"
                .into();
        }
        circles
            .iter()
            .map(|c| {
                format!(
                    "{}  {}  {}",
                    &c.id[..12],
                    human_time(c.created_at),
                    c.patient
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}
