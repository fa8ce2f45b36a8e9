//! Runs: one device's consecutive envelopes of one document kept in one row of the
//! envelopes tree, under the key of the first of them (`keys::envelope(log, first)`).
//!
//! A catch-up brings each device's log a hundred envelopes at a time. One row per envelope
//! cost sled about 13 µs an insert on a two-core machine (100 000 rows of 650 bytes:
//! 1.27 s; the same bytes in 1 000 rows: 0.14 s), more than the receiving core spent
//! checking them, so a batch that stores a device's envelopes one after the other stores
//! them as one row ([`Batch::envelope`](super::Batch::envelope) extends the row it has just
//! written, up to [`MAX_RUN_BYTES`]).
//!
//! A row is either one envelope as it travels (it starts with the envelope's own magic,
//! `CE`) or a run: `CR`, a version byte, the number of envelopes (u32, little-endian), then
//! each envelope after its length (u32, little-endian). A run holds the envelopes
//! `first..first + count` of its log, with no gap, and **the rows of one log never
//! overlap**: a device's envelopes are stored in the order of their sequence numbers, each
//! once. Forgetting one envelope of a run (held, then refused when checked) replaces the
//! row by the envelopes before and after it ([`without`]); the store's writer does it when
//! it applies the delete, so that replaying the journal does the same.

use crate::reader::Reader;

/// Bytes a run grows to, at most, before the next envelope starts a new row.
pub(crate) const MAX_RUN_BYTES: usize = 64 * 1024;

const MAGIC: &[u8; 2] = b"CR";
const VERSION: u8 = 1;
/// Magic, version and count.
const HEADER: usize = 7;

/// Rows of one log, each with the sequence number of its first envelope.
type Rows = Vec<(u64, Vec<u8>)>;

/// Rows to set (`Some`) or delete (`None`), under their keys, in the order to apply them.
type RowWrites = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Why a stored row of envelopes does not decode (a damaged store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a row of envelopes does not decode: {0}")]
pub(crate) struct RunDecodeError(&'static str);

/// Whether `row` is a run (rather than one envelope).
fn is_run(row: &[u8]) -> bool {
    row.starts_with(MAGIC)
}

/// How many envelopes `row` holds (without reading them).
pub(crate) fn count(row: &[u8]) -> Result<u64, RunDecodeError> {
    if !is_run(row) {
        return Ok(1);
    }
    let mut r = Reader::new(row, RunDecodeError("truncated header"));
    r.take(MAGIC.len())?;
    if r.byte()? != VERSION {
        return Err(RunDecodeError("unknown version"));
    }
    Ok(u32::from_le_bytes(r.array()?).into())
}

/// The envelopes `row` holds, in order: the row itself when it is one envelope.
pub(crate) fn envelopes(row: &[u8]) -> Result<Vec<&[u8]>, RunDecodeError> {
    if !is_run(row) {
        return Ok(vec![row]);
    }
    let n = count(row)?;
    let mut r = Reader::new(
        row.get(HEADER..).unwrap_or_default(),
        RunDecodeError("truncated envelope"),
    );
    // Each envelope takes four bytes of length at least: a count beyond what the row can
    // hold allocates nothing.
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(row.len() / 4));
    for _ in 0..n {
        let len = r.len_u32()?;
        out.push(r.take(len)?);
    }
    if !r.is_done() {
        return Err(RunDecodeError("trailing bytes"));
    }
    Ok(out)
}

/// Moves up to `room` envelopes of `row` to the end of `out`: a row that is one envelope
/// is moved, not copied (a sending node reads a catch-up's envelopes this way).
pub(crate) fn take_into(
    mut row: super::Opened,
    room: usize,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), RunDecodeError> {
    if room == 0 {
        return Ok(());
    }
    if !is_run(&row) {
        out.push(std::mem::take(&mut *row));
        return Ok(());
    }
    out.extend(envelopes(&row)?.into_iter().take(room).map(<[u8]>::to_vec));
    Ok(())
}

/// Appends `envelope` to `row`, which becomes a run if it was one envelope.
pub(crate) fn append(row: &mut Vec<u8>, envelope: &[u8]) {
    if !is_run(row) {
        let first = std::mem::take(row);
        row.reserve(HEADER + 8 + first.len() + envelope.len());
        row.extend_from_slice(MAGIC);
        row.push(VERSION);
        row.extend_from_slice(&0u32.to_le_bytes());
        push(row, &first);
    }
    push(row, envelope);
}

/// Adds one envelope and counts it (the row is a run).
fn push(row: &mut Vec<u8>, envelope: &[u8]) {
    row.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
    row.extend_from_slice(envelope);
    if let Some(c) = row.get_mut(MAGIC.len() + 1..HEADER) {
        let counted = <[u8; 4]>::try_from(&*c).map_or(0, u32::from_le_bytes);
        c.copy_from_slice(&counted.saturating_add(1).to_le_bytes());
    }
}

/// The row holding `envelopes` (one envelope: itself).
pub(crate) fn encode(envelopes: &[&[u8]]) -> Vec<u8> {
    match envelopes {
        [] => Vec::new(),
        [one] => one.to_vec(),
        [first, rest @ ..] => {
            let mut row = first.to_vec();
            for e in rest {
                append(&mut row, e);
            }
            row
        }
    }
}

/// The rows standing for `row` (whose first envelope is `first`) once its envelope `seq`
/// is forgotten, each with its first sequence number: the envelopes before `seq` and
/// those after it. `None` if the row does not hold `seq`.
pub(crate) fn without(first: u64, row: &[u8], seq: u64) -> Result<Option<Rows>, RunDecodeError> {
    let all = envelopes(row)?;
    let Some(at) = seq
        .checked_sub(first)
        .and_then(|i| usize::try_from(i).ok())
        .filter(|i| *i < all.len())
    else {
        return Ok(None);
    };
    let mut rows = Vec::new();
    if at > 0 {
        rows.push((first, encode(&all[..at])));
    }
    if at + 1 < all.len() {
        rows.push((seq + 1, encode(&all[at + 1..])));
    }
    Ok(Some(rows))
}

/// The lowest key of the log of the envelope under `key`: where the search for the row
/// that holds it starts (`key` itself if it is not an envelope's key).
pub(crate) fn first_key_of_log(key: &[u8]) -> Vec<u8> {
    super::keys::split_envelope(key)
        .map_or_else(|| key.to_vec(), |(log, _)| super::keys::envelope(&log, 0))
}

/// How forgetting the envelope under `key` changes `row`, the last row of its log at or
/// before that key (under `row_key`): the rows to set (`Some`) or delete (`None`), in the
/// order to apply them; nothing if the row does not hold the envelope. The envelopes after
/// it are put in their own row before the row itself is cut, so that a crash between the
/// two leaves rows that the journal's replay of the same forget puts right.
pub(crate) fn forget(key: &[u8], row_key: &[u8], row: &[u8]) -> Result<RowWrites, RunDecodeError> {
    let (Some((log, seq)), Some((row_log, first))) = (
        super::keys::split_envelope(key),
        super::keys::split_envelope(row_key),
    ) else {
        // Not an envelope's key: that row alone.
        return Ok(if key == row_key {
            vec![(key.to_vec(), None)]
        } else {
            Vec::new()
        });
    };
    if log != row_log {
        return Ok(Vec::new());
    }
    let Some(rows) = without(first, row, seq)? else {
        return Ok(Vec::new());
    };
    let mut writes: RowWrites = rows
        .into_iter()
        .map(|(start, r)| (super::keys::envelope(&log, start), Some(r)))
        .collect();
    // The row's own key last: cut to the envelopes before, or deleted.
    writes.sort_by_key(|(k, _)| k.as_slice() == row_key);
    if writes.last().is_none_or(|(k, _)| k.as_slice() != row_key) {
        writes.push((row_key.to_vec(), None));
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Envelope-like rows: they start with the envelope's magic, as stored envelopes do.
    fn envelope() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|mut v| {
            let mut e = b"CE".to_vec();
            e.append(&mut v);
            e
        })
    }

    #[test]
    fn one_envelope_is_its_own_row_and_two_make_a_run() {
        let (a, b) = (b"CEfirst".to_vec(), b"CEsecond".to_vec());
        let mut row = a.clone();
        assert_eq!(envelopes(&row).unwrap(), vec![a.as_slice()]);
        assert_eq!(count(&row).unwrap(), 1);
        append(&mut row, &b);
        assert_eq!(count(&row).unwrap(), 2);
        assert_eq!(envelopes(&row).unwrap(), vec![a.as_slice(), b.as_slice()]);
        assert_eq!(row, encode(&[&a, &b]));
    }

    #[test]
    fn a_damaged_run_is_refused_not_misread() {
        let row = encode(&[b"CEa", b"CEb", b"CEc"]);
        for cut in HEADER..row.len() {
            assert!(envelopes(&row[..cut]).is_err(), "cut at {cut}");
        }
        let mut more = row.clone();
        more.push(0);
        assert_eq!(envelopes(&more), Err(RunDecodeError("trailing bytes")));
        let mut version = row.clone();
        version[2] = 9;
        assert!(envelopes(&version).is_err());
        // A count the row cannot hold.
        let mut count = row;
        count[3..7].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(envelopes(&count).is_err());
    }

    proptest! {
        /// Whatever the bytes, reading a row returns or refuses; it never panics.
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..200), tag in any::<bool>()) {
            let mut row = bytes;
            if tag {
                row.splice(0..0, b"CR\x01".iter().copied());
            }
            let _ = count(&row);
            if let Ok(all) = envelopes(&row) {
                prop_assert!(all.iter().map(|e| e.len()).sum::<usize>() <= row.len());
            }
        }

        /// Appending one by one and encoding at once give the same run, which reads back.
        #[test]
        fn runs_read_back_what_was_put_in(all in prop::collection::vec(envelope(), 1..20)) {
            let mut row = all[0].clone();
            for e in &all[1..] {
                append(&mut row, e);
            }
            let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(&row, &encode(&refs));
            prop_assert_eq!(count(&row).unwrap(), all.len() as u64);
            prop_assert_eq!(envelopes(&row).unwrap(), refs);
        }

        /// Forgetting one envelope leaves every other one, at its own sequence number, and
        /// a sequence number outside the row changes nothing.
        #[test]
        fn forgetting_one_envelope_keeps_every_other(
            all in prop::collection::vec(envelope(), 1..20),
            first in 1u64..1000,
            pick in 0usize..25,
        ) {
            let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
            let row = encode(&refs);
            let seq = first + pick as u64;
            let rows = without(first, &row, seq).unwrap();
            if pick >= all.len() {
                prop_assert!(rows.is_none());
                return Ok(());
            }
            let mut left: Vec<(u64, Vec<u8>)> = Vec::new();
            for (start, r) in rows.unwrap() {
                for (i, e) in envelopes(&r).unwrap().into_iter().enumerate() {
                    left.push((start + i as u64, e.to_vec()));
                }
            }
            let expected: Vec<(u64, Vec<u8>)> = all
                .iter()
                .enumerate()
                .map(|(i, e)| (first + i as u64, e.clone()))
                .filter(|(s, _)| *s != seq)
                .collect();
            prop_assert_eq!(left, expected);
        }
    }

    /// Runs in the stores: what a node writes and reads back.
    mod stored {
        use std::collections::BTreeMap;
        use std::sync::OnceLock;

        use cercle_crdt::{DocKind, Timestamp};
        use proptest::prelude::*;

        use crate::circle::membership::CircleId;
        use crate::crypto::{EpochId, EpochKey, SecureRng, StorageKey};
        use crate::envelope::{Envelope, LogId, Slot};
        use crate::identity::{LocalIdentity, Profile};
        use crate::store::{Batch, MemoryStore, SledStore, Store, Tree};

        const LOG_LEN: u64 = 24;
        const DOCS: [DocKind; 2] = [DocKind::LiaisonNotebook, DocKind::PatientFile];

        /// Two logs of one device (a document each), `LOG_LEN` envelopes each, sealed once.
        fn sealed() -> &'static Vec<Vec<Envelope>> {
            static LOGS: OnceLock<Vec<Vec<Envelope>>> = OnceLock::new();
            LOGS.get_or_init(|| {
                let mut rng: SecureRng = rand::SeedableRng::seed_from_u64(9);
                let key = EpochKey::generate(&mut rng);
                let profile = Profile::new("Dr Martin", "médecin", None, None).unwrap();
                let me = LocalIdentity::generate_with(profile, Timestamp(1), &mut rng);
                DOCS.into_iter()
                    .map(|doc| {
                        (1..=LOG_LEN)
                            .map(|seq| {
                                let slot = Slot {
                                    circle: CircleId([4; 32]),
                                    doc,
                                    seq,
                                    prev: [0; 32],
                                };
                                Envelope::seal(&me, slot, (EpochId([1; 16]), &key), &[], &mut rng)
                                    .unwrap()
                            })
                            .collect()
                    })
                    .collect()
            })
        }

        fn log(i: usize) -> LogId {
            sealed()[i][0].header.log()
        }

        #[derive(Debug, Clone)]
        enum Step {
            /// One batch: for each part, the next envelopes of a log, another write between.
            Write(Vec<(usize, usize)>),
            /// One envelope forgotten (held, then refused when checked).
            Forget(usize, u64),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                2 => prop::collection::vec((0..DOCS.len(), 1usize..9), 1..4).prop_map(Step::Write),
                1 => (0..DOCS.len(), 0..LOG_LEN + 2).prop_map(|(l, s)| Step::Forget(l, s)),
            ]
        }

        /// Carries out `steps` on `store`; returns what is held, one envelope at a time.
        fn run_steps(store: &dyn Store, steps: &[Step]) -> BTreeMap<(usize, u64), Vec<u8>> {
            let mut model = BTreeMap::new();
            let mut next = [1u64; DOCS.len()];
            for step in steps {
                let mut b = Batch::new();
                match step {
                    Step::Write(parts) => {
                        for &(l, n) in parts {
                            for _ in 0..n {
                                if next[l] > LOG_LEN {
                                    break;
                                }
                                let env = &sealed()[l][(next[l] - 1) as usize];
                                b.envelope(env);
                                model.insert((l, next[l]), env.bytes().to_vec());
                                next[l] += 1;
                            }
                            b.meta("between", &[l as u8]);
                        }
                    }
                    Step::Forget(l, seq) => {
                        b.forget_envelope(&log(*l), *seq);
                        model.remove(&(*l, *seq));
                    }
                }
                store.commit(b).unwrap();
            }
            model
        }

        /// Every read of every log, from every position, gives what the model holds.
        fn reads_match(
            store: &dyn Store,
            model: &BTreeMap<(usize, u64), Vec<u8>>,
        ) -> Result<(), TestCaseError> {
            for l in 0..DOCS.len() {
                for from in 0..=LOG_LEN + 1 {
                    for limit in [1, 3, 100] {
                        let expected: Vec<Vec<u8>> = model
                            .range((l, from)..=(l, u64::MAX))
                            .take(limit)
                            .map(|(_, v)| v.clone())
                            .collect();
                        let read = store.envelopes(&log(l), from, limit).unwrap();
                        prop_assert_eq!(read, expected, "log {} from {} limit {}", l, from, limit);
                    }
                }
            }
            Ok(())
        }

        #[test]
        fn a_batch_of_one_logs_envelopes_is_one_row() {
            let store = MemoryStore::new("runs");
            let mut b = Batch::new();
            for env in &sealed()[0] {
                b.envelope(env);
            }
            store.commit(b).unwrap();
            assert_eq!(store.scan(Tree::Envelopes, b"").unwrap().len(), 1);
            let heads = store.heads(&log(0).circle, log(0).doc).unwrap();
            assert_eq!(heads.values().next().map(|h| h.seq), Some(LOG_LEN));
            assert_eq!(
                heads.values().next().map(|h| h.hash),
                Some(sealed()[0][LOG_LEN as usize - 1].hash())
            );
            assert_eq!(
                store.envelopes(&log(0), 1, 100).unwrap().len(),
                LOG_LEN as usize
            );
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Written in runs, forgotten one by one: the store reads back exactly the
            /// envelopes written and not forgotten, from any position.
            #[test]
            fn runs_read_back_as_the_envelopes_written_and_not_forgotten(
                steps in prop::collection::vec(step(), 1..12),
            ) {
                let memory = MemoryStore::new("runs");
                let model = run_steps(&memory, &steps);
                reads_match(&memory, &model)?;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]

            /// The same on disk: sled reads back what the memory store does, and again once
            /// reopened (from its journal and database).
            #[test]
            fn sled_reads_back_runs_as_the_memory_store_does(
                steps in prop::collection::vec(step(), 1..12),
            ) {
                let memory = MemoryStore::new("runs");
                let model = run_steps(&memory, &steps);
                let dir = tempfile::tempdir().unwrap();
                let key = || StorageKey::derive(&[7; 32]);
                let sled = SledStore::open(dir.path(), key()).unwrap();
                prop_assert_eq!(&run_steps(&sled, &steps), &model);
                reads_match(&sled, &model)?;
                drop(sled);
                let reopened = SledStore::open(dir.path(), key()).unwrap();
                reads_match(&reopened, &model)?;
            }
        }
    }
}
