//! `cercle note`: add notes to a circle's liaison notebook (one, or many from stdin) and
//! list them.

use std::io::{BufRead, Write};
use std::sync::mpsc;

use cercle_crdt::{EntryKind, NewEntry};
use cercle_node::Circle;
use cercle_node::api::{Answer, Request};
use cercle_node::circle::Pending;

use crate::Context;
use crate::backend::{Backend, Client};
use crate::output::{added, answer, human_time, now};
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

pub(crate) fn run(ctx: &Context, cmd: NoteCommand) -> anyhow::Result<()> {
    match cmd {
        NoteCommand::Add { circle, text, kind } => add(ctx, &circle, &text, &kind),
        NoteCommand::Import { circle, kind } => import(ctx, &circle, &kind),
        NoteCommand::List { circle } => list(ctx, &circle),
        NoteCommand::Amend { circle, note, text } => {
            if text.trim().is_empty() {
                anyhow::bail!("the corrected text is empty: give it in quotes");
            }
            changed(ctx, Request::NoteAmend { circle, note, text })
        }
        NoteCommand::Ack { circle, note } => changed(ctx, Request::NoteAck { circle, note }),
    }
}

/// Amend and ack answer with the note's id.
fn changed(ctx: &Context, request: Request) -> anyhow::Result<()> {
    match Backend::open(ctx)?.call(request)? {
        Answer::Added { circle, ids } => added(ctx.json, circle, ids),
        other => Err(crate::backend::unexpected(&other)),
    }
}

fn add(ctx: &Context, circle: &str, text: &str, kind: &str) -> anyhow::Result<()> {
    let kind: EntryKind = kind.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    if text.trim().is_empty() {
        anyhow::bail!("the note is empty: give its text in quotes, e.g. \"Pansement refait\"");
    }
    let request = Request::NoteAdd {
        circle: circle.to_string(),
        texts: vec![text.to_string()],
        kind,
        at: None,
    };
    match Backend::open(ctx)?.call(request)? {
        Answer::Added { circle, ids } => added(ctx.json, circle, ids),
        other => Err(crate::backend::unexpected(&other)),
    }
}

/// Writes each line as it is read; a second thread prints each note's id as soon as it is
/// durable. Notes written while a flush is under way share the next one (group commit).
fn import(ctx: &Context, circle: &str, kind: &str) -> anyhow::Result<()> {
    let kind: EntryKind = kind.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    if let Some(client) = Client::running(ctx)? {
        return import_through(ctx, &client, circle, kind);
    }
    let s = Session::open(ctx)?;
    let mut c = Circle::open(s.store(), &s.me, circle)?;
    let circle_id = c.info().id.clone();
    let json = ctx.json;
    let (acks, pending) = mpsc::sync_channel::<Pending<String>>(IMPORT_WINDOW);
    let printer = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        for p in pending {
            print_added(&mut out, json, p.wait()?, &circle_id)?;
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

/// Import through the running node: lines are sent in batches, each answered once durable.
fn import_through(
    ctx: &Context,
    client: &Client,
    circle: &str,
    kind: EntryKind,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut send = |texts: Vec<String>| -> anyhow::Result<()> {
        let request = Request::NoteAdd {
            circle: circle.to_string(),
            texts,
            kind,
            at: None,
        };
        let Answer::Added { circle, ids } = client.call(&request)? else {
            anyhow::bail!("the node gave an unexpected answer");
        };
        for id in ids {
            print_added(&mut out, ctx.json, id, &circle)?;
        }
        out.flush()?;
        Ok(())
    };
    let mut batch = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let text = line?;
        if text.trim().is_empty() {
            continue;
        }
        batch.push(text);
        if batch.len() == IMPORT_WINDOW {
            send(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        send(batch)?;
    }
    Ok(())
}

fn list(ctx: &Context, circle: &str) -> anyhow::Result<()> {
    let request = Request::NoteList {
        circle: circle.to_string(),
    };
    let notes = match Backend::open(ctx)?.call(request)? {
        Answer::Notes { notes } => notes,
        other => anyhow::bail!("the node gave an unexpected answer: {other:?}"),
    };
    answer(ctx.json, &notes, || {
        crate::output::rows(&notes, "no notes yet", |n| {
            let who = n
                .author_name
                .clone()
                .unwrap_or_else(|| n.author[..12].to_string());
            let mut line = format!(
                "{}  {}  {:<11}  {:<20}  {}",
                &n.id[..8],
                human_time(cercle_crdt::Timestamp(n.at_millis)),
                n.kind,
                who,
                n.text
            );
            if n.amended {
                line.push_str("  (amended)");
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
