//! The liaison notebook: adding notes (one, or many sent together as an import), listing
//! them, correcting one's own (an amendment: the original stays), acknowledging an alert.

use cercle_crdt::{
    Addressee, EntryKind, LiaisonNotebook, MemberId, NewEntry, Role, Timestamp, Vitals,
};
use serde::{Deserialize, Serialize};

use super::{Added, Names, NodeError, Operation, ReceiptRow, pick_id};
use crate::circle::Circle;
use crate::node::NodeCore;
use crate::node::core::NOTES_PER_CHANGE;
use crate::store::Store;

/// Most notes accepted in one request.
pub const MAX_NOTES_PER_REQUEST: usize = 10_000;
/// How far in the future a note may be dated (clocks of devices differ a little).
const CLOCK_TOLERANCE_MS: i64 = 5 * 60_000;
/// A note received more than this long after the date its author gave it is shown with
/// the time of receipt (written offline, dated afterwards, or a clock that is off).
pub const RECEIVED_LATE_MS: i64 = 3600 * 1000;

/// Adds notes to the liaison notebook; answered once they are durable. `at` dates them
/// (a visit written up afterwards); it may not be in the future.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoteAdd {
    pub circle: String,
    pub texts: Vec<String>,
    pub kind: EntryKind,
    /// Milliseconds since the epoch; now if left out.
    #[serde(default)]
    pub at: Option<i64>,
    /// Vital signs as values, for one note of kind `vitals`; its text may then be left out
    /// (the values, written out, become it).
    #[serde(default)]
    pub vitals: Option<Vitals>,
    /// For an alert: who must act, a role (`coordinator`, the default, `professional`,
    /// `caregiver`) or a member (their name, or their id or a prefix of it).
    #[serde(default)]
    pub to: Option<String>,
}

/// The role or the member (by name, the start of a word of it, or id) `query` names.
fn addressee(c: &Circle, query: &str) -> Result<Addressee, NodeError> {
    match query.trim().parse::<Role>() {
        Ok(role) => Ok(Addressee::Role(role)),
        Err(_) => Ok(Addressee::Member(c.find_member(query)?)),
    }
}

impl NoteAdd {
    /// The checks every way of adding notes goes through.
    fn check(&mut self, now: Timestamp) -> Result<Timestamp, NodeError> {
        if let Some(v) = &self.vitals {
            if self.kind != EntryKind::Vitals {
                return Err(NodeError::bad_input(
                    "vital signs go with a note of kind vitals (--kind vitals)",
                ));
            }
            if v.is_empty() {
                return Err(NodeError::bad_input(
                    "give at least one vital sign, e.g. --bp 132/78 or --hr 84",
                ));
            }
            if self.texts.len() > 1 {
                return Err(NodeError::bad_input(
                    "vital signs go with one note at a time",
                ));
            }
            if self.texts.iter().all(|t| t.trim().is_empty()) {
                self.texts = vec![v.summary()];
            }
        }
        if self.texts.len() > MAX_NOTES_PER_REQUEST {
            return Err(NodeError::bad_input(format!(
                "at most {MAX_NOTES_PER_REQUEST} notes per request"
            )));
        }
        if self.texts.iter().any(|t| t.trim().is_empty()) {
            let which = if self.texts.len() == 1 { "the" } else { "a" };
            return Err(NodeError::bad_input(format!(
                "{which} note is empty: give its text in quotes, e.g. \"Pansement refait\""
            )));
        }
        match self.at {
            Some(t) if t > now.millis() + CLOCK_TOLERANCE_MS => {
                Err(NodeError::bad_input("a note cannot be dated in the future"))
            }
            Some(t) => Ok(Timestamp(t)),
            None => Ok(now),
        }
    }
}

impl Operation for NoteAdd {
    type Answer = Added;

    fn run(mut self, core: &mut NodeCore) -> Result<Added, NodeError> {
        let at = self.check(core.now())?;
        let c = core.circle(&self.circle)?;
        super::about_a_patient(c, "liaison notebook")?;
        let circle = c.info().id.clone();
        let to = match self.to.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(_) if self.kind != EntryKind::Alert => {
                return Err(NodeError::bad_input(
                    "only an alert names who must act (--kind alert)",
                ));
            }
            Some(t) => Some(addressee(c, t)?),
            None => None,
        };
        let mut ids = Vec::with_capacity(self.texts.len());
        // Notes sent together (an import) are written NOTES_PER_CHANGE to a change.
        let mut texts = self.texts.into_iter().peekable();
        while texts.peek().is_some() {
            let entries: Vec<NewEntry> = texts
                .by_ref()
                .take(NOTES_PER_CHANGE)
                .map(|text| NewEntry {
                    kind: self.kind,
                    text,
                    vitals: self.vitals.clone(),
                })
                .collect();
            ids.extend(core.write::<LiaisonNotebook, _>(&circle, |nb, author, _| {
                nb.add_entries_to(author, entries, to, at)
            })?);
        }
        Ok(Added { circle, ids })
    }
}

/// The notebook's notes, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoteList {
    pub circle: String,
}

/// Notes of the notebook, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Notes {
    pub notes: Vec<NoteRow>,
}

/// One note of the liaison notebook.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoteRow {
    pub id: String,
    pub author: String,
    /// The author's name, when known here.
    pub author_name: Option<String>,
    pub kind: String,
    pub text: String,
    /// The date the author's device gave the note.
    pub at: String,
    pub at_millis: i64,
    /// When this node received the note, for a note another device wrote.
    pub received_at: Option<String>,
    pub received_millis: Option<i64>,
    /// The author's date is far from the time of receipt: more than an hour before it, or
    /// after it (beyond the clocks' tolerance). Both dates are then shown.
    pub dated_apart: bool,
    pub amended: bool,
    /// Vital signs given as values.
    pub vitals: Option<Vitals>,
    /// For alerts: who acknowledged it.
    pub acks: Vec<ReceiptRow>,
    /// For alerts: who must act (the coordinators when the author named no one).
    pub to: Option<Addressee>,
    /// That member's name, when the alert names a member.
    pub to_name: Option<String>,
    /// An alert waiting for this node's member: addressed to them, written by someone
    /// else, not acknowledged yet.
    pub waits_for_me: bool,
}

impl Operation for NoteList {
    type Answer = Notes;

    fn run(self, core: &mut NodeCore) -> Result<Notes, NodeError> {
        let store = core.circles.store.clone();
        let me = core.me.member();
        let c = core.circle(&self.circle)?;
        let (id, notes) = (c.id(), notes(c, store.as_ref(), &me)?);
        core.consulted(id, "liaison_notebook");
        Ok(Notes { notes })
    }
}

/// Whether a note dated `at` and received at `received` is shown with both dates.
pub fn dated_apart(at: Timestamp, received: Timestamp) -> bool {
    let late = received.millis() - at.millis();
    !(-CLOCK_TOLERANCE_MS..=RECEIVED_LATE_MS).contains(&late)
}

/// The notebook's notes, oldest first, with when this node received those other devices
/// wrote.
pub(crate) fn notes(
    c: &Circle,
    store: &dyn Store,
    me: &MemberId,
) -> Result<Vec<NoteRow>, NodeError> {
    let names = Names::of(c);
    let my_role = c.resolution().role(me);
    let received = store.received(&c.id()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read when notes were received");
        Default::default()
    });
    Ok(c.notes()?
        .into_iter()
        .map(|e| {
            let got = received.get(&e.id).copied();
            let to = e.addressee();
            NoteRow {
                to,
                to_name: match to {
                    Some(Addressee::Member(m)) => names.get(&m),
                    _ => None,
                },
                waits_for_me: e.waits_for(me, my_role),
                author: e.author.to_hex(),
                author_name: names.get(&e.author),
                kind: e.kind.to_string(),
                text: e.current_text().to_string(),
                at: e.at.to_rfc3339(),
                at_millis: e.at.millis(),
                received_at: got.map(|t| t.to_rfc3339()),
                received_millis: got.map(|t| t.millis()),
                dated_apart: got.is_some_and(|t| dated_apart(e.at, t)),
                amended: !e.amendments.is_empty(),
                vitals: e.vitals.clone(),
                acks: e
                    .acknowledgements
                    .iter()
                    .map(|a| names.receipt(&a.by, a.at))
                    .collect(),
                id: e.id,
            }
        })
        .collect())
}

/// The id of the note `query` names.
fn note_id(core: &mut NodeCore, circle: &str, query: &str) -> Result<String, NodeError> {
    let c = core.circle(circle)?;
    pick_id("note", query, c.notes()?.into_iter().map(|e| e.id))
}

/// Corrects one of this member's notes (the original stays visible as amended).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoteAmend {
    pub circle: String,
    /// The note's id or a prefix of at least 4 characters.
    pub note: String,
    pub text: String,
}

impl Operation for NoteAmend {
    type Answer = Added;

    fn run(self, core: &mut NodeCore) -> Result<Added, NodeError> {
        if self.text.trim().is_empty() {
            return Err(NodeError::bad_input(
                "the corrected text is empty: give it in quotes",
            ));
        }
        let id = note_id(core, &self.circle, &self.note)?;
        core.write::<LiaisonNotebook, _>(&self.circle, |nb, author, now| {
            nb.amend(author, &id, &self.text, now)
        })?;
        Ok(Added::one(core.circle(&self.circle)?, id))
    }
}

/// Acknowledges an alert.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NoteAck {
    pub circle: String,
    /// The alert's id or a prefix of at least 4 characters.
    pub note: String,
}

impl Operation for NoteAck {
    type Answer = Added;

    fn run(self, core: &mut NodeCore) -> Result<Added, NodeError> {
        let id = note_id(core, &self.circle, &self.note)?;
        core.write::<LiaisonNotebook, _>(&self.circle, |nb, by, now| nb.acknowledge(by, &id, now))?;
        Ok(Added::one(core.circle(&self.circle)?, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dates_are_shown_only_when_far_apart() {
        let at = Timestamp(1_000_000_000);
        let after = |ms: i64| Timestamp(at.millis() + ms);
        // Received at once, a little early (clocks differ) or within the hour: as usual.
        for ms in [0, -CLOCK_TOLERANCE_MS, RECEIVED_LATE_MS, 60_000] {
            assert!(!dated_apart(at, after(ms)), "{ms}");
        }
        // Received long after its date, or dated after it was received.
        for ms in [
            RECEIVED_LATE_MS + 1,
            3 * 86_400_000,
            -CLOCK_TOLERANCE_MS - 1,
        ] {
            assert!(dated_apart(at, after(ms)), "{ms}");
        }
    }
}
