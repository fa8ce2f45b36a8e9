//! Property: any interleaving of legitimate concurrent writes on 2–5 replicas of each document
//! kind, exchanged in any order through the validator, is accepted and converges to identical
//! state on every replica.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]
use cercle_crdt::{
    ActorId, ChangeAuthor, ConsentStatus, EntryKind, IdentityUpdate, ItemList, LiaisonNotebook,
    MemberId, NewEntry, PatientFile, Replica, Role, Thread, Timestamp, Vitals,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Write { replica: usize, op: u8, pick: usize },
    Sync { from: usize, to: usize },
}

fn steps(n: usize) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (0..n, any::<u8>(), any::<usize>())
            .prop_map(|(replica, op, pick)| Step::Write { replica, op, pick }),
        2 => (0..n, 0..n).prop_map(|(from, to)| Step::Sync { from, to }),
    ];
    prop::collection::vec(step, 1..40)
}

fn member(i: usize) -> MemberId {
    MemberId::from_bytes([i as u8 + 1; 32])
}

fn actor(i: usize) -> ActorId {
    ActorId::from(&[i as u8 + 100; 16][..])
}

/// A document kind under test: how to write to it and how to compare replicas.
trait Doc: Sized {
    fn new(actor: ActorId) -> Self;
    fn replica_mut(&mut self) -> &mut Replica;
    fn write(&mut self, me: MemberId, role: Role, op: u8, pick: usize, at: Timestamp);
    fn state(&self) -> String;
}

impl Doc for LiaisonNotebook {
    fn new(actor: ActorId) -> Self {
        LiaisonNotebook::new(actor)
    }
    fn replica_mut(&mut self) -> &mut Replica {
        LiaisonNotebook::replica_mut(self)
    }
    fn write(&mut self, me: MemberId, role: Role, op: u8, pick: usize, at: Timestamp) {
        let entries = self.entries();
        let op = if role == Role::Caregiver { 2 } else { op % 4 };
        let _ = match op {
            0 | 3 => self
                .add_entry(
                    me,
                    NewEntry {
                        kind: EntryKind::ALL[pick % 5],
                        text: format!("note {pick}"),
                        vitals: (op == 3).then(|| Vitals {
                            temperature_c: Some(37.2),
                            spo2: Some(95),
                            ..Default::default()
                        }),
                    },
                    at,
                )
                .map(|_| ()),
            1 => {
                let own: Vec<_> = entries.iter().filter(|e| e.author == me).collect();
                match own.get(pick % own.len().max(1)) {
                    Some(e) => self
                        .amend(me, &e.id, &format!("corr {pick}"), at)
                        .map(|_| ()),
                    None => Ok(()),
                }
            }
            _ => {
                let alerts: Vec<_> = entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Alert && e.author != me)
                    .collect();
                match alerts.get(pick % alerts.len().max(1)) {
                    Some(e) => self.acknowledge(me, &e.id, at).map(|_| ()),
                    None => Ok(()),
                }
            }
        };
    }
    fn state(&self) -> String {
        format!("{:?}", self.entries())
    }
}

impl Doc for Thread {
    fn new(actor: ActorId) -> Self {
        Thread::new(actor)
    }
    fn replica_mut(&mut self) -> &mut Replica {
        Thread::replica_mut(self)
    }
    fn write(&mut self, me: MemberId, _role: Role, op: u8, pick: usize, at: Timestamp) {
        let messages = self.messages();
        if op.is_multiple_of(2) || messages.is_empty() {
            let attachment = format!("{:064x}", pick);
            let attachments = if pick.is_multiple_of(3) {
                vec![attachment]
            } else {
                vec![]
            };
            let _ = self.send(me, &format!("msg {pick}"), &attachments, at);
        } else {
            let m = &messages[pick % messages.len()];
            let _ = self.mark_read(me, &m.id, at);
        }
    }
    fn state(&self) -> String {
        format!("{:?}", self.messages())
    }
}

impl Doc for PatientFile {
    fn new(actor: ActorId) -> Self {
        PatientFile::new(actor)
    }
    fn replica_mut(&mut self) -> &mut Replica {
        PatientFile::replica_mut(self)
    }
    fn write(&mut self, me: MemberId, _role: Role, op: u8, pick: usize, at: Timestamp) {
        let lists = [
            ItemList::Contacts,
            ItemList::Problems,
            ItemList::Allergies,
            ItemList::Medications,
            ItemList::Tasks,
        ];
        let list = lists[pick % lists.len()];
        let _ = match op % 9 {
            0 => self.set_identity(
                me,
                &IdentityUpdate {
                    family_name: Some(format!("Nom{}", pick % 5)),
                    birth_date: Some(format!("19{:02}-01-0{}", pick % 100, 1 + pick % 9)),
                    ..Default::default()
                },
                at,
            ),
            1 => {
                let field = match list {
                    ItemList::Contacts | ItemList::Medications => "name",
                    ItemList::Problems => "label",
                    ItemList::Allergies => "substance",
                    _ => "title",
                };
                self.add_item(me, list, &[(field, &format!("item {pick}"))], at)
                    .map(|_| ())
            }
            2 => match self.items(ItemList::Tasks).get(pick % 7) {
                Some(t) => self.complete_task(me, &t.id.clone(), at),
                None => Ok(()),
            },
            3 => match self.items(list).first() {
                Some(i) => self.remove_item(list, &i.id.clone(), at),
                None => Ok(()),
            },
            4 => self.record_consent(me, ConsentStatus::Given, "équipe de soins", at),
            5 => self.set_care_plan(me, &format!("plan {pick}"), at),
            6 => match self.items(list).last() {
                Some(i) => {
                    let change = match list {
                        ItemList::Contacts => ("phone", "0600"),
                        ItemList::Allergies => ("criticality", "high"),
                        ItemList::Tasks => ("due", "2026-12-24"),
                        _ => ("status", "resolved"),
                    };
                    self.change_item(me, list, &i.id.clone(), &[change], at)
                }
                None => Ok(()),
            },
            7 => match self.items(list).first() {
                Some(i) => self.retire_item(me, list, &i.id.clone(), "saisie erronée", at),
                None => Ok(()),
            },
            _ => self.verify_identity(me, cercle_crdt::IdentityDocument::IdCard, at),
        };
    }
    fn state(&self) -> String {
        let lists = ItemList::ALL;
        format!(
            "{:?} {:?} {:?} {:?}",
            self.identity(),
            self.consent(),
            self.care_plan(),
            lists.map(|l| self.items(l))
        )
    }
}

/// Sends `to` every change of `from` it lacks, each validated as written by its author.
fn sync<D: Doc>(docs: &mut [D], roles: &[Role], from: usize, to: usize) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    let changes = docs[from].replica_mut().changes_since(&[]);
    for change in changes {
        let have =
            automerge::ReadDoc::get_missing_deps(docs[to].replica_mut().doc(), &[change.hash()])
                .is_empty();
        if have {
            continue;
        }
        let writer = (0..docs.len())
            .find(|&i| actor(i) == *change.actor_id())
            .ok_or("change by an unknown actor")?;
        let author = ChangeAuthor {
            member: member(writer),
            role: roles[writer],
        };
        docs[to]
            .replica_mut()
            .apply_changes(vec![change], &author)
            .map_err(|e| format!("legitimate change from replica {writer} rejected: {e}"))?;
    }
    Ok(())
}

fn run<D: Doc>(n: usize, roles: Vec<Role>, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut docs: Vec<D> = (0..n).map(|i| D::new(actor(i))).collect();
    for (t, step) in steps.into_iter().enumerate() {
        match step {
            Step::Write { replica, op, pick } => docs[replica].write(
                member(replica),
                roles[replica],
                op,
                pick,
                Timestamp(1_790_000_000_000 + t as i64 * 60_000),
            ),
            Step::Sync { from, to } => {
                sync(&mut docs, &roles, from, to).map_err(TestCaseError::fail)?
            }
        }
    }
    for _round in 0..2 {
        for from in 0..n {
            for to in 0..n {
                sync(&mut docs, &roles, from, to).map_err(TestCaseError::fail)?;
            }
        }
    }
    let first_state = docs[0].state();
    let first_heads = docs[0].replica_mut().heads();
    for d in docs.iter_mut().skip(1) {
        prop_assert_eq!(d.replica_mut().heads(), first_heads.clone());
        prop_assert_eq!(d.state(), first_state.clone());
    }
    Ok(())
}

fn roles(n: usize, last: Role) -> Vec<Role> {
    (0..n)
        .map(|i| match i {
            0 => Role::Coordinator,
            i if i == n - 1 && n > 2 => last,
            _ => Role::Professional,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn notebooks_converge((n, steps) in (2usize..=5).prop_flat_map(|n| (Just(n), steps(n)))) {
        run::<LiaisonNotebook>(n, roles(n, Role::Caregiver), steps)?;
    }

    #[test]
    fn threads_converge((n, steps) in (2usize..=5).prop_flat_map(|n| (Just(n), steps(n)))) {
        run::<Thread>(n, roles(n, Role::Caregiver), steps)?;
    }

    #[test]
    fn patient_files_converge((n, steps) in (2usize..=5).prop_flat_map(|n| (Just(n), steps(n)))) {
        run::<PatientFile>(n, roles(n, Role::Professional), steps)?;
    }
}

/// A device's own changes, re-applied from its store into a fresh replica, are followed by
/// new writes with fresh ids (the item id derives from the change's sequence number).
#[test]
fn a_replica_rebuilt_from_its_own_changes_keeps_numbering_them() {
    let me = member(0);
    let mut first = LiaisonNotebook::new(actor(0));
    let entry = |text: &str| NewEntry {
        kind: EntryKind::Observation,
        text: text.into(),
        vitals: None,
    };
    let a = first.add_entry(me, entry("un"), Timestamp(1)).unwrap();
    let stored = first.replica_mut().changes_since(&[]);
    let mut again = LiaisonNotebook::new(actor(0));
    again
        .replica_mut()
        .apply_stored(
            stored
                .into_iter()
                .filter(|c| *c.actor_id() == actor(0))
                .collect(),
        )
        .unwrap();
    let b = again.add_entry(me, entry("deux"), Timestamp(2)).unwrap();
    assert_ne!(a, b);
    assert_eq!(again.entries().len(), 2);
}
