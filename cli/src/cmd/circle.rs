//! `cercle circle`: create circles of care and list them.

use cercle_crdt::schema::parse_date;
use cercle_crdt::{IdentityUpdate, Role};
use cercle_node::{Circle, ContactCard};
use serde::Serialize;

use crate::Context;
use crate::output::{answer, human_time, now};
use crate::session::Session;

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
    /// Show a circle: members, roles, devices, key epoch.
    Show {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
    },
    /// Add a member from their contact card (`cercle whoami` prints it).
    Add {
        circle: String,
        /// The member's contact card.
        #[arg(long)]
        card: String,
        /// coordinator, professional, caregiver or observer.
        #[arg(long)]
        role: String,
    },
    /// Remove a member (by member id prefix or name); they can read nothing written after.
    Remove { circle: String, member: String },
    /// Change a member's role.
    Role {
        circle: String,
        member: String,
        /// coordinator, professional, caregiver or observer.
        role: String,
    },
}

#[derive(Debug, Serialize)]
struct MemberRow {
    member: String,
    name: Option<String>,
    profession: Option<String>,
    role: Role,
    devices: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CircleView {
    id: String,
    patient: String,
    epoch: Option<String>,
    closed: bool,
    members: Vec<MemberRow>,
    removed: Vec<String>,
    void_operations: usize,
    waiting_operations: usize,
}

pub(crate) fn run(ctx: &Context, cmd: CircleCommand) -> anyhow::Result<()> {
    match cmd {
        CircleCommand::Create {
            patient,
            birth_date,
        } => create(ctx, &patient, birth_date.as_deref()),
        CircleCommand::List => list(ctx),
        CircleCommand::Show { circle } => show(ctx, &circle),
        CircleCommand::Add { circle, card, role } => {
            let role = parse_role(&role)?;
            let card = ContactCard::decode(&card)?;
            let s = Session::open(ctx)?;
            let mut c = Circle::open(s.store(), &s.me, &circle)?;
            c.add_member(&s.me, &card, role, now())?;
            show_circle(ctx, &c)
        }
        CircleCommand::Remove { circle, member } => {
            let s = Session::open(ctx)?;
            let mut c = Circle::open(s.store(), &s.me, &circle)?;
            let member = c.find_member(&member)?;
            c.remove_member(&s.me, &member, now())?;
            show_circle(ctx, &c)
        }
        CircleCommand::Role {
            circle,
            member,
            role,
        } => {
            let role = parse_role(&role)?;
            let s = Session::open(ctx)?;
            let mut c = Circle::open(s.store(), &s.me, &circle)?;
            let member = c.find_member(&member)?;
            c.change_role(&s.me, &member, role, now())?;
            show_circle(ctx, &c)
        }
    }
}

fn parse_role(role: &str) -> anyhow::Result<Role> {
    role.parse()
        .map_err(|e: cercle_crdt::member::ParseRoleError| anyhow::anyhow!(e))
}

fn show(ctx: &Context, circle: &str) -> anyhow::Result<()> {
    let s = Session::open(ctx)?;
    let c = Circle::open(s.store(), &s.me, circle)?;
    show_circle(ctx, &c)
}

fn show_circle(ctx: &Context, c: &Circle) -> anyhow::Result<()> {
    let r = c.resolution();
    let view = CircleView {
        id: c.info().id.clone(),
        patient: c.info().patient.clone(),
        epoch: r.epoch.map(|e| e.to_string()),
        closed: r.closed,
        members: r
            .members
            .iter()
            .map(|(m, s)| MemberRow {
                member: m.to_hex(),
                name: c.profile_of(m).map(|p| p.name.clone()),
                profession: c.profile_of(m).map(|p| p.profession.clone()),
                role: s.role,
                devices: s.devices.iter().map(|d| d.device.to_string()).collect(),
            })
            .collect(),
        removed: r.removed.keys().map(|m| m.to_hex()).collect(),
        void_operations: r.void.len(),
        waiting_operations: c.membership().waiting(),
    };
    answer(ctx.json, &view, || {
        let mut s = format!(
            "circle  {}
patient {}
",
            view.id, view.patient
        );
        if let Some(e) = &view.epoch {
            s.push_str(&format!(
                "epoch   {}
",
                &e[..16]
            ));
        }
        s.push_str("members:\n");
        for m in &view.members {
            s.push_str(&format!(
                "  {:<13} {:<24} {}  ({} device{})\n",
                m.role.as_str(),
                m.name.as_deref().unwrap_or("?"),
                &m.member[..12],
                m.devices.len(),
                if m.devices.len() == 1 { "" } else { "s" }
            ));
        }
        if !view.removed.is_empty() {
            s.push_str(&format!("removed: {}\n", view.removed.len()));
        }
        s.trim_end().to_string()
    })
}

fn create(ctx: &Context, patient: &str, birth_date: Option<&str>) -> anyhow::Result<()> {
    ctx.home.identity()?;
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
    let s = Session::open(ctx)?;
    let circle = Circle::create(s.store(), &s.me, &update, now())?;
    let info = circle.info();
    answer(ctx.json, info, || {
        format!("created circle {} for {}", info.id, info.patient)
    })
}

fn list(ctx: &Context) -> anyhow::Result<()> {
    let s = Session::open(ctx)?;
    let circles = Circle::list(s.store.as_ref())?;
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
