//! `cercle circle`: create circles of care, list and show them, and manage their members.

use cercle_crdt::Role;
use cercle_node::ContactCard;
use cercle_node::directory::Standing;
use cercle_node::ops::circles::{
    CircleAccept, CircleCreate, CircleDecline, CircleList, CircleShow, CircleSummary, Circles,
};
use cercle_node::ops::closing::{CircleClose, ClosedRow};
use cercle_node::ops::members::{MemberAdd, MemberRemove};
use cercle_node::ops::relays::{RelaysSet, ReminderSet};
use cercle_node::ops::roles::RoleChange;

use crate::Context;
use crate::backend::ask;
use crate::output::{answer, human_time};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum CircleCommand {
    /// Create a circle of care around a patient (or a team's own circle with --team); you
    /// are its coordinator.
    Create {
        /// The patient's name, given names first: "Jeanne Durand", "Marie-Claire de La
        /// Fontaine" (particles go with the family name).
        #[arg(long, required_unless_present_any = ["family_name", "team"])]
        patient: Option<String>,
        /// Instead of a patient, a team's own circle with this name (the health centre's
        /// staff thread, the on-call rota): messages and documents only.
        #[arg(long, conflicts_with_all = ["patient", "family_name", "birth_date"])]
        team: Option<String>,
        /// The family name, when the split of --patient would be wrong ("Dupont Martin").
        #[arg(long, conflicts_with = "patient")]
        family_name: Option<String>,
        /// The given names, with --family-name.
        #[arg(long, requires = "family_name")]
        given_names: Option<String>,
        /// The patient's birth date, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD")]
        birth_date: Option<String>,
    },
    /// List your circles, and the circles you were added to that wait for your answer.
    List,
    /// Join a circle a member added you to (it shows in `circle list` as invited).
    Accept {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
        /// Also accept every circle the colleague who added you adds you to, now and from
        /// now on (joined at once, without an invitation).
        #[arg(long)]
        always: bool,
    },
    /// Decline a circle a member added you to; it is never offered again.
    Decline {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
    },
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
    /// Show the relays the circle uses, or name them (replacing the list): every member's
    /// node then reserves a slot at them, meets the others there and keeps a mailbox there.
    Relays {
        circle: String,
        /// Relay addresses as `cercle relay` prints them (ending in /p2p/<peer id>).
        #[arg(value_name = "MULTIADDR")]
        relays: Vec<String>,
        /// Use no relay any more.
        #[arg(long, conflicts_with = "relays")]
        none: bool,
    },
    /// Set after how long an unacknowledged alert is recalled to its addressees, then again
    /// every as long (coordinators): `4h`, `2d`, or `off`. The default is 24 h.
    Reminder {
        circle: String,
        #[arg(value_name = "DELAY")]
        delay: String,
    },
    /// Close the circle for good (coordinators), when care ends: every member's node
    /// destroys the circle's keys and all its content, keeping only the audit trail
    /// without content; the relays delete it and send a signed receipt. Cannot be undone.
    Close {
        circle: String,
        /// Do not ask for confirmation (scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Show who may break the glass, or (coordinators) add an on-call professional from
    /// their contact card, or remove one by name.
    OnCall {
        circle: String,
        #[arg(long, conflicts_with = "remove")]
        card: Option<String>,
        #[arg(long, value_name = "NAME")]
        remove: Option<String>,
    },
    /// Print the patient's emergency code (and its QR) to leave at the patient's home: an
    /// on-call professional uses it with `cercle breakglass`. It holds no care data.
    EmergencyCode {
        circle: String,
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// Change a member's role.
    Role {
        circle: String,
        member: String,
        /// coordinator, professional, caregiver or observer.
        role: String,
    },
}

pub(crate) fn run(ctx: &Context, cmd: CircleCommand) -> anyhow::Result<()> {
    match cmd {
        CircleCommand::Create {
            patient,
            team,
            family_name,
            given_names,
            birth_date,
        } => {
            ctx.home.identity()?;
            let create = CircleCreate {
                patient: patient.unwrap_or_default(),
                birth_date,
                family_name,
                given_names,
                team,
            };
            let created = ask(ctx, create)?;
            let info = created
                .circles
                .first()
                .ok_or_else(|| anyhow::anyhow!("the node created no circle"))?;
            answer(ctx.json, info, || {
                let mut s = if info.team {
                    format!("created the team circle {} \"{}\"", info.id, info.patient)
                } else {
                    format!("created circle {} for {}", info.id, info.patient)
                };
                if !info.probable_duplicates.is_empty() {
                    s.push_str(&format!(
                        "\nPROBABLE DUPLICATE: circle {} is for a patient with the same names and birth date (or INS); check the identity before writing in both",
                        short_ids(&info.probable_duplicates)
                    ));
                }
                s
            })
        }
        CircleCommand::List => list(ctx, &ask(ctx, CircleList {})?),
        CircleCommand::Accept { circle, always } => {
            let joined = ask(ctx, CircleAccept { circle, always })?;
            let info = joined
                .circles
                .first()
                .ok_or_else(|| anyhow::anyhow!("the node joined no circle"))?;
            let others = joined.circles.len() - 1;
            answer(ctx.json, info, || {
                let mut s = format!(
                    "joined circle {} ({}); the rest of its data follows from the members",
                    &info.id[..12],
                    if info.patient.is_empty() {
                        "patient not known yet"
                    } else {
                        &info.patient
                    }
                );
                if always {
                    s.push_str(&format!(
                        "\njoined {others} more circle(s) from the same colleague; their next circles will be joined without asking"
                    ));
                }
                s
            })
        }
        CircleCommand::Decline { circle } => {
            let declined = ask(ctx, CircleDecline { circle })?;
            answer(ctx.json, &declined, || {
                format!(
                    "declined circle {}; it will not be offered again",
                    &declined.circle[..12]
                )
            })
        }
        CircleCommand::Show { circle } => show_circle(ctx, &ask(ctx, CircleShow { circle })?),
        CircleCommand::Add { circle, card, role } => {
            let role = parse_role(&role)?;
            // A bad card is reported before the passphrase is asked for.
            ContactCard::decode(&card)?;
            show_circle(ctx, &ask(ctx, MemberAdd { circle, card, role })?)
        }
        CircleCommand::Remove { circle, member } => {
            show_circle(ctx, &ask(ctx, MemberRemove { circle, member })?)
        }
        CircleCommand::Relays {
            circle,
            relays,
            none,
        } => {
            if relays.is_empty() && !none {
                return show_circle(ctx, &ask(ctx, CircleShow { circle })?);
            }
            for r in &relays {
                cercle_node::net::relay_device(r).map_err(|e| {
                    anyhow::anyhow!("{e}; give the address as `cercle relay` prints it")
                })?;
            }
            show_circle(ctx, &ask(ctx, RelaysSet { circle, relays })?)
        }
        CircleCommand::Reminder { circle, delay } => {
            let hours = reminder_hours(&delay)?;
            show_circle(ctx, &ask(ctx, ReminderSet { circle, hours })?)
        }
        CircleCommand::Close { circle, yes } => {
            if !yes {
                confirm_close(ctx, &circle)?;
            }
            let closed = ask(ctx, CircleClose { circle })?;
            answer(ctx.json, &closed, || {
                format!(
                    "closed circle {}: its keys and content are destroyed on this device; every member's node and relay does the same as it learns of it (`cercle circle list` shows the relays' receipts)",
                    &closed.circle[..12]
                )
            })
        }
        CircleCommand::OnCall {
            circle,
            card,
            remove,
        } => crate::cmd::emergency::on_call(ctx, circle, card, remove),
        CircleCommand::EmergencyCode { circle, no_qr } => {
            crate::cmd::emergency::code(ctx, circle, no_qr)
        }
        CircleCommand::Role {
            circle,
            member,
            role,
        } => {
            let change = RoleChange {
                circle,
                member,
                role: parse_role(&role)?,
            };
            show_circle(ctx, &ask(ctx, change)?)
        }
    }
}

/// Asks the person at the terminal to confirm closing the circle by typing its patient's
/// name's first word or `close`; a script must say `--yes`.
fn confirm_close(ctx: &Context, circle: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "closing a circle destroys its content on every member's device and cannot be undone: add --yes to confirm"
        );
    }
    let view = ask(
        ctx,
        CircleShow {
            circle: circle.to_string(),
        },
    )?;
    let mut err = std::io::stderr();
    writeln!(
        err,
        "Closing circle {} ({}) destroys its notes, messages, patient file and documents on every member's device and at its relays. This cannot be undone.",
        &view.id[..12],
        view.patient
    )?;
    write!(err, "Type `close` to confirm: ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "close" {
        anyhow::bail!("nothing was closed");
    }
    Ok(())
}

pub(crate) fn parse_role(role: &str) -> anyhow::Result<Role> {
    role.parse()
        .map_err(|e: cercle_crdt::member::ParseRoleError| anyhow::anyhow!(e))
}

fn show_circle(ctx: &Context, view: &CircleSummary) -> anyhow::Result<()> {
    answer(ctx.json, view, || {
        let patient = if view.patient.is_empty() {
            "(not received yet)"
        } else {
            &view.patient
        };
        let mut s = format!("circle  {}\npatient {}\n", view.id, patient);
        if let Some(e) = &view.epoch {
            s.push_str(&format!("epoch   {}\n", &e[..16.min(e.len())]));
        }
        s.push_str("members:\n");
        for m in &view.members {
            s.push_str(&format!(
                "  {:<13} {:<24} {}  ({} device{})  {}\n",
                m.role.as_str(),
                m.name.as_deref().unwrap_or("?"),
                &m.member[..12],
                m.devices.len(),
                if m.devices.len() == 1 { "" } else { "s" },
                match &m.directory {
                    Standing::Verified => "verified in the directory".to_string(),
                    Standing::Contradicted { directory } =>
                        format!("declared; the directory gives this number to {directory}"),
                    _ => "declared".to_string(),
                }
            ));
        }
        if let Some(sus) = &view.suspended {
            s.push_str(&format!(
                "SHARING SUSPENDED: the patient objected ({}), recorded by {} on {}; read-only\n",
                sus.reason,
                sus.by_name.as_deref().unwrap_or("a member"),
                crate::output::human_time(cercle_crdt::Timestamp(sus.at))
            ));
            for r in &sus.receipts {
                s.push_str(&format!(
                    "  relay {}: deleted {} envelopes ({} bytes), receipt {}\n",
                    r.peer_id,
                    r.envelopes,
                    r.bytes,
                    if r.verified {
                        "signature verified"
                    } else {
                        "SIGNATURE DOES NOT VERIFY"
                    }
                ));
            }
        }
        for e in &view.emergency {
            s.push_str(&format!(
                "EMERGENCY ACCESS by {}{} until {}: {} (granted by {})\n",
                e.name.as_deref().unwrap_or("an on-call professional"),
                e.profession
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .map(|p| format!(", {p}"))
                    .unwrap_or_default(),
                crate::output::human_time(cercle_crdt::Timestamp(e.until)),
                e.reason.as_deref().unwrap_or("reason not readable here"),
                e.granted_by_name.as_deref().unwrap_or("a member"),
            ));
        }
        if !view.on_call.is_empty() {
            let names: Vec<&str> = view.on_call.iter().map(|o| o.name.as_str()).collect();
            s.push_str(&format!(
                "on call (may break the glass): {}\n",
                names.join(", ")
            ));
        }
        for f in &view.forks {
            s.push_str(&format!(
                "fork: a device of {} ({}) signed two versions of its {} #{} (see `cercle audit`)\n",
                f.name.as_deref().unwrap_or("an unknown member"),
                &f.device[..12.min(f.device.len())],
                f.document,
                f.seq
            ));
        }
        if !view.removed.is_empty() {
            s.push_str(&format!("removed: {}\n", view.removed.len()));
        }
        for d in &view.revoked_devices {
            s.push_str(&format!(
                "a device of {} ({}) was revoked on {}\n",
                d.name.as_deref().unwrap_or("?"),
                &d.device[..12.min(d.device.len())],
                crate::output::human_time(cercle_crdt::Timestamp(d.at))
            ));
        }
        match view.reminder_hours {
            0 => s.push_str("alerts left unacknowledged are not recalled\n"),
            h => s.push_str(&format!(
                "alerts left unacknowledged are recalled every {h} h\n"
            )),
        }
        if !view.relays.is_empty() {
            s.push_str("relays:\n");
            for r in &view.relays {
                s.push_str(&format!("  {r}\n"));
            }
        }
        if view.refused > 0 {
            s.push_str(&format!(
                "refused from peers: {} (kept with their reasons)\n",
                view.refused
            ));
        }
        s.trim_end().to_string()
    })
}

/// A reminder delay as people write it ("4h", "2d", "off", "6") in whole hours.
fn reminder_hours(delay: &str) -> anyhow::Result<u16> {
    let d = delay.trim().to_lowercase();
    if matches!(d.as_str(), "off" | "none" | "0") {
        return Ok(0);
    }
    let (number, per) = match d.strip_suffix('d').or_else(|| d.strip_suffix('j')) {
        Some(n) => (n, 24),
        None => (d.strip_suffix('h').unwrap_or(&d), 1),
    };
    number
        .trim()
        .parse::<u16>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{delay:?} is not a delay: write it in hours or days, e.g. 4h or 2d (off for none)"
            )
        })
}

/// Circle ids as a person reads them: their first 12 digits, comma-separated.
fn short_ids(ids: &[String]) -> String {
    let short: Vec<&str> = ids.iter().map(|d| &d[..12.min(d.len())]).collect();
    short.join(", ")
}

/// The circles, then those set aside as damaged and those waiting for an answer. In JSON,
/// one array: a damaged circle's row has `"state": "damaged"` and its reason; an invited
/// one `"state": "invited"`, who added this member and with which role; a closed one
/// `"state": "closed"`, when and by whom, and the relays' receipts.
fn list(ctx: &Context, answer_: &Circles) -> anyhow::Result<()> {
    let mut rows: Vec<serde_json::Value> = answer_
        .circles
        .iter()
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .collect();
    rows.extend(
        answer_
            .damaged
            .iter()
            .map(|d| serde_json::json!({ "id": d.id, "state": "damaged", "reason": d.reason })),
    );
    rows.extend(answer_.closed.iter().map(|c| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        v["id"] = serde_json::json!(c.circle);
        v["state"] = serde_json::json!("closed");
        v
    }));
    rows.extend(answer_.invitations.iter().map(|i| {
        serde_json::json!({
            "id": i.circle,
            "state": "invited",
            "patient": i.patient,
            "added_by": i.added_by,
            "added_by_name": i.added_by_name,
            "role": i.role,
            "members": i.members,
            "at": i.at,
        })
    }));
    answer(ctx.json, &rows, || {
        let mut out = crate::output::rows(
            &answer_.circles,
            "no circles yet: create one with `cercle circle create --patient \"NAME\"`",
            |c| {
                let born = c
                    .birth_date
                    .as_deref()
                    .map(|b| format!(" (born {b})"))
                    .unwrap_or_default();
                let duplicates = if c.probable_duplicates.is_empty() {
                    String::new()
                } else {
                    format!(
                        "  PROBABLE DUPLICATE of {}: check the identity",
                        short_ids(&c.probable_duplicates)
                    )
                };
                format!(
                    "{}  {}  {}{born}{duplicates}",
                    &c.id[..12],
                    human_time(c.created_at),
                    c.patient
                )
            },
        );
        for i in &answer_.invitations {
            let who = i.added_by_name.as_deref().unwrap_or("a member");
            let patient = if i.patient.is_empty() {
                "a patient"
            } else {
                &i.patient
            };
            let role = i.role.map_or("a member", |r| r.as_str());
            out.push_str(&format!(
                "\n{}  INVITED: {who} added you as {role} to the circle of {patient}; `cercle circle accept {}` to join, or `decline`",
                &i.circle[..12],
                &i.circle[..12]
            ));
        }
        for d in &answer_.damaged {
            out.push_str(&format!(
                "\n{}  DAMAGED, not synced: {}",
                &d.id[..12],
                d.reason
            ));
        }
        for c in &answer_.closed {
            out.push_str(&format!("\n{}", closed_line(c)));
        }
        out
    })
}

/// A closed circle in words: when, by whom, and each relay's receipt.
fn closed_line(c: &ClosedRow) -> String {
    let mut s = format!(
        "{}  CLOSED on {} by {}; its content is destroyed here",
        &c.circle[..12],
        human_time(cercle_crdt::Timestamp(c.closed_at)),
        c.closed_by_name.as_deref().unwrap_or(&c.closed_by[..12]),
    );
    for r in &c.receipts {
        s.push_str(&format!(
            "\n              relay {}: deleted {} envelopes ({} bytes) on {}, receipt {}",
            &r.peer_id,
            r.envelopes,
            r.bytes,
            human_time(cercle_crdt::Timestamp(r.at)),
            if r.verified {
                "signature verified"
            } else {
                "SIGNATURE DOES NOT VERIFY"
            }
        ));
    }
    for p in &c.awaited {
        s.push_str(&format!(
            "\n              relay {p}: deletion receipt awaited"
        ));
    }
    s
}
