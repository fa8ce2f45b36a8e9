//! `cercle msg`: the circle's messages.

use cercle_node::ops::messages::{MsgList, MsgSend};

use crate::Context;
use crate::backend::ask;
use crate::output::{added, answer, human_time};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum MsgCommand {
    /// Send a message to the circle's members.
    Send {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
        /// The message, in quotes.
        text: String,
    },
    /// List the circle's messages, oldest first, and mark them read.
    List {
        circle: String,
        /// Do not record read receipts.
        #[arg(long)]
        no_mark_read: bool,
    },
}

pub(crate) fn run(ctx: &Context, cmd: MsgCommand) -> anyhow::Result<()> {
    match cmd {
        MsgCommand::Send { circle, text } => {
            let send = MsgSend {
                circle,
                text,
                attachments: Vec::new(),
            };
            let sent = ask(ctx, send)?;
            added(ctx.json, sent.circle, sent.ids, ("Message", "sent"))
        }
        MsgCommand::List {
            circle,
            no_mark_read,
        } => {
            let list = MsgList {
                circle,
                mark_read: !no_mark_read,
            };
            let messages = ask(ctx, list)?.messages;
            answer(ctx.json, &messages, || {
                crate::output::rows(&messages, "no messages yet", |m| {
                    let who = m
                        .author_name
                        .clone()
                        .unwrap_or_else(|| m.author[..12].to_string());
                    let read = if m.read_by.is_empty() {
                        String::new()
                    } else {
                        format!("  (read by {})", m.read_by.len())
                    };
                    format!(
                        "{}  {:<20}  {}{read}",
                        human_time(cercle_crdt::Timestamp(m.at_millis)),
                        who,
                        m.text
                    )
                })
            })
        }
    }
}
