//! Property: random and mutated bytes given to every decoder of this crate (Automerge change
//! decoding followed by validation, and document loading) never panic or hang; they are
//! rejected or, when they happen to be well-formed, judged by the same rules as anything else.

use cercle_crdt::{
    ActorId, Change, ChangeAuthor, DocKind, EntryKind, LiaisonNotebook, MemberId, NewEntry,
    PatientFile, Role, Thread, Timestamp, validate_changes,
};
use proptest::prelude::*;

const ME: MemberId = MemberId::from_const([7; 32]);

fn sample_changes() -> Vec<Vec<u8>> {
    let mut nb = LiaisonNotebook::new(ActorId::from(&[1u8; 16][..]));
    let _ = nb.add_entry(
        ME,
        NewEntry {
            kind: EntryKind::Alert,
            text: "Chute, douleur hanche gauche".into(),
            vitals: None,
        },
        Timestamp(1_790_000_000_000),
    );
    let mut changes = nb.replica_mut().changes_since(&[]);
    let mut th = Thread::new(ActorId::from(&[2u8; 16][..]));
    let _ = th.send(ME, "Bonjour", &[], Timestamp(1));
    changes.extend(th.replica_mut().changes_since(&[]));
    changes
        .into_iter()
        .map(|mut c| c.bytes().to_vec())
        .collect()
}

fn sample_docs() -> Vec<Vec<u8>> {
    let mut nb = LiaisonNotebook::new(ActorId::from(&[1u8; 16][..]));
    let _ = nb.add_entry(
        ME,
        NewEntry {
            kind: EntryKind::Observation,
            text: "RAS".into(),
            vitals: None,
        },
        Timestamp(1),
    );
    vec![
        nb.replica_mut().save(),
        PatientFile::new(ActorId::random()).replica_mut().save(),
    ]
}

/// Feeds bytes to every decoder; only panics matter.
fn exercise(bytes: &[u8]) {
    if let Ok(change) = Change::from_bytes(bytes.to_vec()) {
        for kind in DocKind::ALL {
            let target = match kind {
                DocKind::PatientFile => PatientFile::new(ActorId::random()).replica().clone(),
                DocKind::LiaisonNotebook => {
                    LiaisonNotebook::new(ActorId::random()).replica().clone()
                }
                DocKind::Thread => Thread::new(ActorId::random()).replica().clone(),
            };
            let author = ChangeAuthor {
                member: ME,
                role: Role::Professional,
            };
            let _ = validate_changes(kind, target.doc(), std::slice::from_ref(&change), &author);
        }
    }
    let actor = ActorId::from(&[9u8; 16][..]);
    let _ = LiaisonNotebook::load(bytes, actor.clone());
    let _ = PatientFile::load(bytes, actor.clone());
    let _ = Thread::load(bytes, actor);
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Truncate { at: usize },
    Insert { at: usize, byte: u8 },
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match *m {
            Mutation::Flip { at, bit } => {
                let i = at % bytes.len();
                bytes[i] ^= 1 << (bit % 8);
            }
            Mutation::Truncate { at } => bytes.truncate(at % bytes.len()),
            Mutation::Insert { at, byte } => {
                let i = at % bytes.len();
                bytes.insert(i, byte);
            }
        }
    }
    bytes
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
            any::<usize>().prop_map(|at| Mutation::Truncate { at }),
            (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        ],
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_changes_never_panic(which in 0usize..2, muts in mutations()) {
        let samples = sample_changes();
        exercise(&mutate(samples[which % samples.len()].clone(), &muts));
    }

    #[test]
    fn mutated_documents_never_panic(which in 0usize..2, muts in mutations()) {
        let samples = sample_docs();
        exercise(&mutate(samples[which % samples.len()].clone(), &muts));
    }
}
