//! `cercle note`: add notes to a circle's liaison notebook (one, or many from stdin), list
//! them, correct one's own and acknowledge alerts.

use std::io::{BufRead, Write};

use cercle_crdt::{EntryKind, Sign, TypedVitalsError, Vitals, parse_typed};
use cercle_node::ops::notes::{NoteAck, NoteAdd, NoteAmend, NoteList};

use crate::Context;
use crate::backend::{Backend, ask};
use crate::output::{added, answer, human_time};

/// Notes sent in one request by an import, at most; each request is answered once durable.
const IMPORT_BATCH: usize = 256;

// Parsed once per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub(crate) enum NoteCommand {
    /// Add a note to a circle's liaison notebook. Vital signs go with `--kind vitals` as
    /// values (`--bp 132/78 --hr 84 --temp 37,2`), the text then optional.
    Add {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
        /// The note's text, in quotes (for vital signs given as values, optional). A text
        /// that starts with "-" is taken as a text: "-2 kg en une semaine".
        #[arg(allow_hyphen_values = true)]
        text: Option<String>,
        /// observation, care, vitals, alert or handover (or in French: soin, constantes,
        /// alerte, transmission), in any case.
        #[arg(long, default_value = "observation")]
        kind: String,
        /// For an alert: who must act, a role (coordinator, the default; professional;
        /// caregiver) or a member's name.
        #[arg(long, value_name = "ROLE_OR_NAME")]
        to: Option<String>,
        #[command(flatten)]
        vitals: VitalsArgs,
    },
    /// Add one note per line read from stdin; print each note's id once it is saved.
    Import {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
        /// observation, care, vitals, alert or handover (for every line).
        #[arg(long, default_value = "observation")]
        kind: String,
    },
    /// List a circle's notes, oldest first.
    List {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
    },
    /// Correct one of your notes (the note shows as amended).
    Amend {
        circle: String,
        /// The note's id or a prefix of at least 4 characters.
        note: String,
        /// The corrected text, in quotes.
        text: String,
    },
    /// Acknowledge an alert: the team sees who has seen it.
    Ack {
        circle: String,
        /// The alert's id or a prefix of at least 4 characters.
        note: String,
    },
}

/// Vital signs given as values on `note add`.
#[derive(Debug, clap::Args)]
pub(crate) struct VitalsArgs {
    /// Blood pressure, systolic/diastolic in mmHg: 132/78.
    #[arg(long, value_name = "SYS/DIA")]
    bp: Option<String>,
    /// Heart rate, per minute.
    #[arg(long, value_name = "PER_MIN")]
    hr: Option<String>,
    /// Temperature, °C: 37.2 or 37,2.
    #[arg(long, value_name = "CELSIUS")]
    temp: Option<String>,
    /// Oxygen saturation, %.
    #[arg(long, value_name = "PERCENT")]
    spo2: Option<String>,
    /// Weight, kg: 61.4 or 61,4.
    #[arg(long, value_name = "KG")]
    weight: Option<String>,
    /// Capillary glucose, g/L: 1.05 or 1,05.
    #[arg(long, value_name = "G_PER_L")]
    glucose: Option<String>,
    /// Pain, 0 to 10.
    #[arg(long, value_name = "0-10")]
    pain: Option<String>,
    /// Respiratory rate, per minute.
    #[arg(long, value_name = "PER_MIN")]
    rr: Option<String>,
}

impl VitalsArgs {
    /// The values given, if any, each a number in the notebook's range.
    fn vitals(&self) -> anyhow::Result<Option<Vitals>> {
        let typed = |sign: Sign| {
            match sign {
                Sign::BloodPressure => &self.bp,
                Sign::HeartRate => &self.hr,
                Sign::Temperature => &self.temp,
                Sign::Spo2 => &self.spo2,
                Sign::RespiratoryRate => &self.rr,
                Sign::Weight => &self.weight,
                Sign::Glucose => &self.glucose,
                Sign::Pain => &self.pain,
            }
            .as_deref()
        };
        parse_typed(typed).map_err(|e| match e {
            TypedVitalsError::NotANumber { sign, got } => {
                let (key, example) = (sign.key(), sign.example());
                let what = match sign {
                    Sign::BloodPressure => "systolic/diastolic in mmHg",
                    _ if sign.places() == 0 => "a whole number",
                    _ => "a number",
                };
                anyhow::anyhow!("--{key} takes {what}, e.g. --{key} {example}; got {got:?}")
            }
            TypedVitalsError::OutOfRange {
                sign,
                got,
                min,
                max,
            } => anyhow::anyhow!(
                "--{} {got} is outside {min}–{max} {}: check the value and type it again",
                sign.key(),
                sign.unit()
            ),
        })
    }
}

pub(crate) fn run(ctx: &Context, cmd: NoteCommand) -> anyhow::Result<()> {
    match cmd {
        NoteCommand::Add {
            circle,
            text,
            kind,
            to,
            vitals,
        } => {
            let vitals = vitals.vitals()?;
            if text.is_none() && vitals.is_none() {
                anyhow::bail!(
                    "give the note's text in quotes, e.g. \"Pansement refait\" (or vital signs with --kind vitals)"
                );
            }
            let add = NoteAdd {
                circle,
                texts: text.into_iter().collect(),
                kind: kind.parse().map_err(|e: String| anyhow::anyhow!(e))?,
                at: None,
                vitals,
                to,
            };
            let done = ask(ctx, add)?;
            added(ctx.json, done.circle, done.ids, ("Note", "added"))
        }
        NoteCommand::Import { circle, kind } => import(ctx, &circle, &kind),
        NoteCommand::List { circle } => list(ctx, &circle),
        NoteCommand::Amend { circle, note, text } => {
            let done = ask(ctx, NoteAmend { circle, note, text })?;
            added(ctx.json, done.circle, done.ids, ("Note", "corrected"))
        }
        NoteCommand::Ack { circle, note } => {
            let done = ask(ctx, NoteAck { circle, note })?;
            added(ctx.json, done.circle, done.ids, ("Alert", "acknowledged"))
        }
    }
}

/// Adds one note per line of stdin to the running node or to the store opened here (the
/// same operation either way); prints each note's id once it is durable. Lines that are
/// already there when a request goes are sent together, up to [`IMPORT_BATCH`], so a file
/// goes in large requests (sharing flushes: group commit) and a person typing sees each
/// note acknowledged at once.
fn import(ctx: &Context, circle: &str, kind: &str) -> anyhow::Result<()> {
    let kind: EntryKind = kind.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let mut backend = Backend::open(ctx)?;
    let (lines, incoming) = std::sync::mpsc::sync_channel::<std::io::Result<String>>(IMPORT_BATCH);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut out = std::io::stdout().lock();
    while let Ok(first) = incoming.recv() {
        let mut texts = vec![first?];
        while texts.len() < IMPORT_BATCH {
            match incoming.try_recv() {
                Ok(line) => texts.push(line?),
                Err(_) => break,
            }
        }
        texts.retain(|t| !t.trim().is_empty());
        if texts.is_empty() {
            continue;
        }
        let add = NoteAdd {
            circle: circle.to_string(),
            texts,
            kind,
            at: None,
            vitals: None,
            to: None,
        };
        let done = backend.ask(add)?;
        for id in done.ids {
            print_added(&mut out, ctx.json, id, &done.circle)?;
        }
        out.flush()?;
    }
    Ok(())
}

/// One imported note's line: its id, or `{"id", "circle"}` with `--json`.
fn print_added(out: &mut impl Write, json: bool, id: String, circle: &str) -> anyhow::Result<()> {
    if json {
        let line = serde_json::to_string(&crate::output::Added {
            id,
            circle: circle.to_string(),
        })?;
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "{id}")?;
    }
    Ok(())
}

fn list(ctx: &Context, circle: &str) -> anyhow::Result<()> {
    let list = NoteList {
        circle: circle.to_string(),
    };
    let notes = ask(ctx, list)?.notes;
    answer(ctx.json, &notes, || {
        crate::output::rows(&notes, "no notes yet", |n| {
            let who = n
                .author_name
                .clone()
                .unwrap_or_else(|| n.author[..12].to_string());
            let mut line = format!(
                "{}  {}  {:<11}  {:<20}  {}",
                crate::output::short(&n.id),
                human_time(cercle_crdt::Timestamp(n.at_millis)),
                n.kind,
                who,
                n.text
            );
            if n.amended {
                line.push_str("  (amended)");
            }
            if let (true, Some(at)) = (n.dated_apart, n.received_millis) {
                let at = human_time(cercle_crdt::Timestamp(at));
                line.push_str(&format!("  (received here {at})"));
            }
            if n.kind == "alert" {
                line.push_str(&match n.acks.len() {
                    0 => "  (not acknowledged)".to_string(),
                    k => format!("  (acknowledged by {k})"),
                });
            }
            line
        })
    })
}
