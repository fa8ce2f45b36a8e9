//! `cercle note`: add notes to a circle's liaison notebook (one, or many from stdin) and
//! list them.

use std::io::{BufRead, Write};
use std::sync::mpsc;

use cercle_crdt::{EntryKind, NewEntry};
use cercle_node::Circle;
use cercle_node::circle::Pending;
use serde::Serialize;

use crate::Context;
use crate::output::{answer, human_time, now};
use crate::session::Session;

/// At most this many notes written ahead of their acknowledgement.
const IMPORT_WINDOW: usize = 256;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NoteCommand {
    /// Add a note to a circle's liaison notebook.
    Add {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
        /// The note's text, in quotes.
        text: String,
        /// observation, care, vitals, alert or handover.
        #[arg(long, default_value = "observation")]
        kind: String,
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
}

#[derive(Debug, Serialize)]
struct NoteRow {
    id: String,
    author: String,
    kind: String,
    text: String,
    at: String,
    amended: bool,
}

#[derive(Debug, Serialize)]
struct Added {
    id: String,
    circle: String,
}

pub(crate) fn run(ctx: &Context, cmd: NoteCommand) -> anyhow::Result<()> {
    match cmd {
        NoteCommand::Add { circle, text, kind } => add(ctx, &circle, &text, &kind),
        NoteCommand::Import { circle, kind } => import(ctx, &circle, &kind),
        NoteCommand::List { circle } => list(ctx, &circle),
    }
}

fn add(ctx: &Context, circle: &str, text: &str, kind: &str) -> anyhow::Result<()> {
    let kind: EntryKind = kind.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    if text.trim().is_empty() {
        anyhow::bail!("the note is empty: give its text in quotes, e.g. \"Pansement refait\"");
    }
    let s = Session::open(ctx)?;
    let mut c = Circle::open(s.store(), &s.me, circle)?;
    let entry = NewEntry {
        kind,
        text: text.to_string(),
        vitals: None,
    };
    let id = c.add_note(&s.me, entry, now())?.wait()?;
    let added = Added {
        id,
        circle: c.info().id.clone(),
    };
    answer(ctx.json, &added, || added.id.clone())
}

/// Writes each line as it is read; a second thread prints each note's id as soon as it is
/// durable. Notes written while a flush is under way share the next one (group commit).
fn import(ctx: &Context, circle: &str, kind: &str) -> anyhow::Result<()> {
    let kind: EntryKind = kind.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let s = Session::open(ctx)?;
    let mut c = Circle::open(s.store(), &s.me, circle)?;
    let circle_id = c.info().id.clone();
    let json = ctx.json;
    let (acks, pending) = mpsc::sync_channel::<Pending<String>>(IMPORT_WINDOW);
    let printer = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        for p in pending {
            let id = p.wait()?;
            if json {
                let line = serde_json::to_string(&Added {
                    id,
                    circle: circle_id.clone(),
                })?;
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{id}")?;
            }
            out.flush()?;
        }
        Ok(())
    });
    let mut written = Ok(());
    for line in std::io::stdin().lock().lines() {
        let text = match line {
            Ok(t) => t,
            Err(e) => {
                written = Err(e.into());
                break;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let entry = NewEntry {
            kind,
            text,
            vitals: None,
        };
        match c.add_note(&s.me, entry, now()) {
            // The printer stopped: it has the error to report.
            Ok(p) => {
                if acks.send(p).is_err() {
                    break;
                }
            }
            Err(e) => {
                written = Err(e.into());
                break;
            }
        }
    }
    drop(acks);
    let printed = printer
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the output thread failed")));
    printed.and(written)
}

fn list(ctx: &Context, circle: &str) -> anyhow::Result<()> {
    let s = Session::open(ctx)?;
    let me = s.me.public();
    let c = Circle::open(s.store(), &s.me, circle)?;
    let rows: Vec<NoteRow> = c
        .notes()
        .into_iter()
        .map(|e| NoteRow {
            author: e.author.to_hex(),
            kind: e.kind.to_string(),
            text: e.current_text().to_string(),
            at: e.at.to_rfc3339(),
            amended: !e.amendments.is_empty(),
            id: e.id,
        })
        .collect();
    answer(ctx.json, &rows, || {
        if rows.is_empty() {
            return "no notes yet".into();
        }
        c.notes()
            .iter()
            .map(|e| {
                let who = if e.author == me.member() {
                    me.profile.name.clone()
                } else {
                    e.author.short()
                };
                format!(
                    "{}  {:<11}  {:<20}  {}",
                    human_time(e.at),
                    e.kind.as_str(),
                    who,
                    e.current_text()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}
