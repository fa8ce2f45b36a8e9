//! `cercle note`: add notes to a circle's liaison notebook and list them.

use cercle_crdt::{EntryKind, NewEntry};
use cercle_node::Circle;
use serde::Serialize;

use crate::Context;
use crate::output::{answer, human_time, now};

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
        NoteCommand::List { circle } => list(ctx, &circle),
    }
}

fn add(ctx: &Context, circle: &str, text: &str, kind: &str) -> anyhow::Result<()> {
    let me = ctx.home.identity()?;
    let kind: EntryKind = kind.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    if text.trim().is_empty() {
        anyhow::bail!("the note is empty: give its text in quotes, e.g. \"Pansement refait\"");
    }
    let mut c = Circle::open(&ctx.home, &me, circle)?;
    let entry = NewEntry {
        kind,
        text: text.to_string(),
        vitals: None,
    };
    let id = c.add_note(&me, entry, now())?;
    let added = Added {
        id,
        circle: c.info().id.clone(),
    };
    answer(ctx.json, &added, || added.id.clone())
}

fn list(ctx: &Context, circle: &str) -> anyhow::Result<()> {
    let me = ctx.home.identity()?;
    let c = Circle::open(&ctx.home, &me, circle)?;
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
