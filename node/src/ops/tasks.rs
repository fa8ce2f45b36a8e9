//! The care plan's tasks: adding one (with an owner among the members and a due date),
//! listing them, marking one done.

use cercle_crdt::{ItemList, MemberId, PatientFile};
use serde::{Deserialize, Serialize};

use super::{Added, Names, NodeError, Operation, pick_id};
use crate::circle::Circle;
use crate::node::NodeCore;

/// Adds a task to the care plan.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskAdd {
    pub circle: String,
    pub title: String,
    /// A member's id prefix or name.
    #[serde(default)]
    pub owner: Option<String>,
    /// YYYY-MM-DD.
    #[serde(default)]
    pub due: Option<String>,
}

impl Operation for TaskAdd {
    type Answer = Added;

    fn run(self, core: &mut NodeCore) -> Result<Added, NodeError> {
        super::about_a_patient(core.circle(&self.circle)?, "patient file")?;
        if self.title.trim().is_empty() {
            return Err(NodeError::bad_input(
                "the task is empty: give what is to be done, in quotes",
            ));
        }
        let c = core.circle(&self.circle)?;
        let owner = self
            .owner
            .as_deref()
            .map(|o| c.find_member(o))
            .transpose()?
            .map(|m| m.to_hex());
        let mut fields = vec![("title", self.title.as_str()), ("status", "open")];
        if let Some(o) = &owner {
            fields.push(("owner", o.as_str()));
        }
        if let Some(d) = &self.due {
            fields.push(("due", d.as_str()));
        }
        let id = core.write::<PatientFile, _>(&self.circle, |pf, author, now| {
            pf.add_item(author, ItemList::Tasks, &fields, now)
        })?;
        Ok(Added::one(core.circle(&self.circle)?, id))
    }
}

/// The care plan's tasks.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskList {
    pub circle: String,
}

/// Tasks, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Tasks {
    pub tasks: Vec<TaskRow>,
}

/// One task of the care plan.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskRow {
    pub id: String,
    pub title: String,
    pub owner: Option<String>,
    pub owner_name: Option<String>,
    pub due: Option<String>,
    /// `open` or `done`.
    pub status: String,
    pub done_by: Option<String>,
    pub added_by: String,
}

impl TaskRow {
    /// Whether the task is still open past its due date; `today` is the viewer's local
    /// date ([`local_today`]).
    pub fn is_overdue(&self, today: jiff::civil::Date) -> bool {
        self.status != "done"
            && self
                .due
                .as_deref()
                .and_then(|d| d.parse::<jiff::civil::Date>().ok())
                .is_some_and(|d| d < today)
    }
}

/// Today's date where this program runs (the viewer's calendar: a task is late, a
/// patient has an age, by it).
pub fn local_today() -> jiff::civil::Date {
    let zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::now().to_zoned(zone).date()
}

impl Operation for TaskList {
    type Answer = Tasks;

    fn run(self, core: &mut NodeCore) -> Result<Tasks, NodeError> {
        Ok(Tasks {
            tasks: tasks(core.circle(&self.circle)?)?,
        })
    }
}

/// Marks a task done.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskDone {
    pub circle: String,
    /// The task's id or a prefix of at least 4 characters.
    pub task: String,
}

impl Operation for TaskDone {
    type Answer = Tasks;

    fn run(self, core: &mut NodeCore) -> Result<Tasks, NodeError> {
        let c = core.circle(&self.circle)?;
        let id = pick_id("task", &self.task, tasks(c)?.into_iter().map(|t| t.id))?;
        core.write::<PatientFile, _>(&self.circle, |pf, author, now| {
            pf.complete_task(author, &id, now)
        })?;
        Ok(Tasks {
            tasks: tasks(core.circle(&self.circle)?)?,
        })
    }
}

/// The care plan's tasks, oldest first.
pub(crate) fn tasks(c: &Circle) -> Result<Vec<TaskRow>, NodeError> {
    let names = Names::of(c);
    Ok(c.patient_file()?
        .items(ItemList::Tasks)
        .into_iter()
        .map(|t| {
            let owner = t.get("owner").map(str::to_string);
            let owner_name = owner
                .as_deref()
                .and_then(|o| o.parse::<MemberId>().ok())
                .and_then(|m| names.get(&m));
            TaskRow {
                title: t.get("title").unwrap_or_default().to_string(),
                due: t.get("due").map(str::to_string),
                status: t.get("status").unwrap_or("open").to_string(),
                done_by: t.get("done_by").map(str::to_string),
                added_by: t.added_by.to_hex(),
                owner,
                owner_name,
                id: t.id,
            }
        })
        .collect())
}
