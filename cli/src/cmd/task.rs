//! `cercle task`: the care plan's tasks, with owners and due dates.

use cercle_node::api::{Answer, Request, TaskRow};

use crate::Context;
use crate::backend::{ask, unexpected};
use crate::output::{added, answer};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TaskCommand {
    /// Add a task to the care plan.
    Add {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
        /// What is to be done, in quotes.
        title: String,
        /// Who does it: a member's name or id prefix.
        #[arg(long)]
        owner: Option<String>,
        /// When it is due.
        #[arg(long, value_name = "YYYY-MM-DD")]
        due: Option<String>,
    },
    /// List the tasks.
    List { circle: String },
    /// Mark a task done (by its id or a prefix of at least 4 characters).
    Done { circle: String, task: String },
}

pub(crate) fn run(ctx: &Context, cmd: TaskCommand) -> anyhow::Result<()> {
    let request = match cmd {
        TaskCommand::Add {
            circle,
            title,
            owner,
            due,
        } => {
            if title.trim().is_empty() {
                anyhow::bail!("the task is empty: give what is to be done, in quotes");
            }
            Request::TaskAdd {
                circle,
                title,
                owner,
                due,
            }
        }
        TaskCommand::List { circle } => Request::TaskList { circle },
        TaskCommand::Done { circle, task } => Request::TaskDone { circle, task },
    };
    match ask(ctx, request)? {
        Answer::Added { circle, ids } => added(ctx.json, circle, ids),
        Answer::Tasks { tasks } => answer(ctx.json, &tasks, || text(&tasks)),
        other => Err(unexpected(&other)),
    }
}

fn text(tasks: &[TaskRow]) -> String {
    crate::output::rows(tasks, "no tasks yet", |t| {
        format!(
            "{}  [{}]  {}{}{}",
            &t.id[..8],
            if t.status == "done" { "x" } else { " " },
            t.title,
            t.due
                .as_deref()
                .map(|d| format!("  due {d}"))
                .unwrap_or_default(),
            t.owner_name
                .as_deref()
                .map(|o| format!("  ({o})"))
                .unwrap_or_default(),
        )
    })
}
