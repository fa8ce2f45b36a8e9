//! `cercle task`: the care plan's tasks, with owners and due dates.

use cercle_node::ops::tasks::{TaskAdd, TaskDone, TaskList, TaskRow};

use crate::Context;
use crate::backend::ask;
use crate::output::answer;

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
    let tasks = match cmd {
        TaskCommand::Add {
            circle,
            title,
            owner,
            due,
        } => {
            let added = ask(
                ctx,
                TaskAdd {
                    circle,
                    title,
                    owner,
                    due,
                },
            )?;
            return crate::output::added(ctx.json, added.circle, added.ids, ("Task", "added"));
        }
        TaskCommand::List { circle } => ask(ctx, TaskList { circle })?.tasks,
        TaskCommand::Done { circle, task } => ask(ctx, TaskDone { circle, task })?.tasks,
    };
    answer(ctx.json, &tasks, || text(&tasks))
}

fn text(tasks: &[TaskRow]) -> String {
    let today = cercle_node::ops::tasks::local_today();
    crate::output::rows(tasks, "no tasks yet", |t| {
        format!(
            "{}  [{}]  {}{}{}",
            crate::output::short(&t.id),
            if t.status == "done" { "x" } else { " " },
            t.title,
            t.due
                .as_deref()
                .map(|d| {
                    let late = if t.is_overdue(today) { " OVERDUE" } else { "" };
                    format!("  due {d}{late}")
                })
                .unwrap_or_default(),
            t.owner_name
                .as_deref()
                .map(|o| format!("  ({o})"))
                .unwrap_or_default(),
        )
    })
}
