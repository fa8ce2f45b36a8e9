//! The store's promises, end to end through the real binary: nothing acknowledged is lost to
//! SIGKILL, the store always reopens, no care data is readable on disk, and damaged, locked,
//! foreign or full stores get one clear sentence instead of a panic.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]
// The crash test reports its seed and what it saw on stderr.
#![allow(clippy::print_stderr)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cercle_tests::{Run, TestHome};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// A home with an identity (no passphrase when `fast`) and one circle; returns the circle id.
fn home_with_circle(fast: bool, patient: &str) -> (TestHome, String) {
    let home = TestHome::new();
    let mut args = vec![
        "init",
        "--name",
        "Claire Martin",
        "--profession",
        "infirmière",
    ];
    if fast {
        args.push("--insecure-no-passphrase");
    }
    home.json(&args);
    let circle = home.json(&["circle", "create", "--patient", patient]);
    let id = circle["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(id.len(), 64, "{circle}");
    (home, id)
}

fn note_ids(home: &TestHome, circle: &str) -> Vec<String> {
    ids(&home.cercle(&["--json", "note", "list", circle]).ok())
}

/// The note ids in a `note list --json` answer, in order.
fn ids(list: &Run) -> Vec<String> {
    list.json()
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A running `note import`: a thread feeds it notes, another collects the ids it
/// acknowledges.
struct Importer {
    child: Child,
    acked: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
}

impl Importer {
    fn start(home: &TestHome, circle: &str, round: usize) -> Importer {
        let mut child = home
            .command(&["note", "import", circle])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start cercle: {e}"));
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let seen = acked.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(id) => seen.lock().unwrap_or_else(|e| e.into_inner()).push(id),
                    Err(_) => break,
                }
            }
        });
        let writer = std::thread::spawn(move || {
            // Bursts of lines, so some share a flush and some arrive alone.
            for i in 0..100_000 {
                let line = format!("Passage {round}-{i}: pansement refait, plaie propre\n");
                if stdin.write_all(line.as_bytes()).is_err() {
                    break;
                }
                if i % 16 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Importer {
            child,
            acked,
            reader,
            writer,
        }
    }

    /// SIGKILL, then every id the process acknowledged before dying.
    fn kill(mut self) -> Vec<String> {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("cannot kill cercle: {e}"));
        let _ = self.child.wait();
        let _ = self.reader.join();
        let _ = self.writer.join();
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        acked.clone()
    }
}

/// `CERCLE_CRASH_KILLS` (default 50; 1000 for the long run), `CERCLE_CRASH_SEED`.
#[test]
fn every_acknowledged_note_survives_sigkill_and_the_store_always_reopens() {
    let kills: usize = std::env::var("CERCLE_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("CERCLE_CRASH_SEED")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    eprintln!("crash test: {kills} kills, CERCLE_CRASH_SEED={seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (home, first) = home_with_circle(true, "Jeanne Durand");
    // A new circle every 50 kills keeps each round's check quick in the long run; the
    // earlier circles stay in the store and are checked again at the end.
    let mut circles: Vec<(String, BTreeSet<String>)> = vec![(first, BTreeSet::new())];
    let mut rebuilt = 0;
    let started = Instant::now();
    for round in 0..kills {
        if round > 0 && round % 50 == 0 {
            let c = home.json(&["circle", "create", "--patient", &format!("Patient {round}")]);
            let id = c["id"].as_str().unwrap_or_default().to_string();
            circles.push((id, BTreeSet::new()));
        }
        let Some((circle, acknowledged)) = circles.last_mut() else {
            break;
        };
        let importer = Importer::start(&home, circle, round);
        // Anywhere from while the store is still opening to well into the writes.
        std::thread::sleep(Duration::from_millis(rng.random_range(5..250)));
        acknowledged.extend(importer.kill());
        let list = home.cercle(&["--json", "note", "list", circle]);
        if list.stderr.contains("rebuilt") {
            rebuilt += 1;
        }
        assert_eq!(
            list.code,
            Some(0),
            "round {round} (seed {seed}): the store did not reopen:\n{list:#?}"
        );
        let present: BTreeSet<String> = ids(&list).into_iter().collect();
        let lost: Vec<&String> = acknowledged.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "round {round} (seed {seed}): {} acknowledged notes lost, e.g. {:?}",
            lost.len(),
            lost.first()
        );
    }
    let mut total = 0;
    for (circle, acknowledged) in &circles {
        let present: BTreeSet<String> = note_ids(&home, circle).into_iter().collect();
        assert!(
            acknowledged.is_subset(&present),
            "seed {seed}: notes lost in {circle}"
        );
        total += acknowledged.len();
    }
    eprintln!(
        "crash test: {kills} kills, {total} notes acknowledged and all found, database rebuilt from the journal {rebuilt} times, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        total > kills,
        "the importer acknowledged too few notes for the test to mean anything"
    );
}

#[test]
fn no_note_text_nor_patient_name_is_readable_anywhere_in_the_home() {
    let marker = "MARQUEUR-7f3a9c-escarre";
    let (home, circle) = home_with_circle(false, "Albertine Quenouille");
    home.json(&["note", "add", &circle, &format!("{marker} au talon gauche")]);
    // Enough notes for a snapshot to be written on the next opening.
    let mut import = home
        .command(&["note", "import", &circle])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(mut stdin) = import.stdin.take() {
        for i in 0..120 {
            writeln!(stdin, "{marker} passage {i}, Mme Quenouille va mieux").unwrap();
        }
    }
    let out = import.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(note_ids(&home, &circle).len(), 121);
    // The store was opened, snapshotted and closed; the journal and database are on disk.
    let files = home.files();
    assert!(files.iter().any(|f| f.ends_with("journal")), "{files:?}");
    for needle in [
        marker,
        "Quenouille",
        "Albertine",
        "QUENOUILLE",
        "talon gauche",
    ] {
        for f in &files {
            let bytes = std::fs::read(f).unwrap_or_default();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} is readable in {}",
                f.display()
            );
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join("store"))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o700, "the store directory is private");
    }
}

fn overwrite_with_random_bytes(path: &std::path::Path, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let len = std::fs::metadata(path)
        .map(|m| m.len())
        .unwrap_or(0)
        .max(4096) as usize;
    let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    std::fs::write(path, junk).unwrap();
}

fn one_clear_sentence(run: &Run, expected: &str) {
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(!run.stderr.contains("panicked"), "{run:#?}");
    let line = run.stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("error: ") && line.ends_with('.'),
        "{run:#?}"
    );
    assert!(line.contains(expected), "expected {expected:?} in {line:?}");
}

#[test]
fn a_database_of_random_bytes_is_rebuilt_from_the_journal_or_refused_clearly() {
    let (home, circle) = home_with_circle(true, "Jeanne Durand");
    for i in 0..5 {
        home.json(&["note", "add", &circle, &format!("Note {i}")]);
    }
    let before = note_ids(&home, &circle);
    let db: Vec<_> = home
        .files()
        .into_iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == "db"))
        .collect();
    assert!(!db.is_empty());
    for (i, f) in db.iter().enumerate() {
        overwrite_with_random_bytes(f, i as u64);
    }
    // The journal survived: the node rebuilds from it, says so, and loses nothing.
    let list = home.cercle(&["--json", "note", "list", &circle]).ok();
    assert_eq!(ids(&list), before);
    assert!(!list.stderr.contains("panicked"), "{list:#?}");

    // `cercle repair` rebuilds on demand too.
    let repaired = home.json(&["repair"]);
    assert!(repaired["batches"].as_u64().unwrap_or(0) >= 6, "{repaired}");
    assert_eq!(note_ids(&home, &circle), before);

    // Database and journal both destroyed: a clear error and a non-zero exit.
    for (i, f) in home
        .files()
        .into_iter()
        .filter(|f| f.ends_with("journal") || f.ends_with("db/db") || f.ends_with("conf"))
        .enumerate()
    {
        overwrite_with_random_bytes(&f, 100 + i as u64);
    }
    let run = home.cercle(&["note", "list", &circle]);
    one_clear_sentence(&run, "damaged");
}

#[test]
fn a_second_process_on_the_same_home_is_told_a_node_is_running() {
    let (home, circle) = home_with_circle(true, "Jeanne Durand");
    let mut holder = home
        .command(&["note", "import", &circle])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the importer holds the store: its first note is acknowledged.
    let mut stdin = holder.stdin.take().unwrap_or_else(|| panic!("no stdin"));
    writeln!(stdin, "première note").unwrap();
    let mut first = String::new();
    let mut out = BufReader::new(holder.stdout.take().unwrap_or_else(|| panic!("no stdout")));
    out.read_line(&mut first).unwrap();
    assert!(!first.trim().is_empty());
    let run = home.cercle(&["note", "list", &circle]);
    one_clear_sentence(&run, "a node is already running on this home");
    drop(stdin);
    assert!(holder.wait().map(|s| s.success()).unwrap_or(false));
    assert_eq!(note_ids(&home, &circle).len(), 1);
}

#[test]
fn another_identitys_store_is_refused() {
    let (a, _) = home_with_circle(true, "Jeanne Durand");
    let (b, circle_b) = home_with_circle(true, "Paul Martin");
    let store_a = a.path().join("store");
    let store_b = b.path().join("store");
    std::fs::remove_dir_all(&store_b).unwrap();
    copy_dir(&store_a, &store_b);
    let run = b.cercle(&["note", "list", &circle_b]);
    one_clear_sentence(&run, "belongs to another identity");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).into_iter().flatten().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A full disk (a small tmpfs; needs root to mount, so only where the tests run as root,
/// as in CI): the write that does not fit is refused in one sentence, and everything
/// acknowledged before it is still there once space is freed.
#[test]
fn a_full_disk_refuses_the_write_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(dir.path().to_path_buf());
    let home_dir = tempfile::tempdir_in(dir.path()).unwrap();
    let home = TestHome::in_dir(home_dir);
    home.json(&[
        "init",
        "--name",
        "Claire",
        "--profession",
        "infirmière",
        "--insecure-no-passphrase",
    ]);
    let circle = home.json(&["circle", "create", "--patient", "Jeanne Durand"]);
    let circle = circle["id"].as_str().unwrap_or_default().to_string();
    // Room to free later: enough for sled to reopen and replay the journal's last records
    // (with 1 MiB it sometimes found the disk still full and said so).
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 2 * 1024 * 1024]).unwrap();
    let mut import = home
        .command(&["note", "import", &circle])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = import.stdin.take().unwrap_or_else(|| panic!("no stdin"));
    let writer = std::thread::spawn(move || {
        // Incompressible text, 8 KiB per note: the disk fills within a few hundred notes.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..5000 {
            let text: String = (0..8000)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect();
            if writeln!(stdin, "{text}").is_err() {
                break;
            }
        }
    });
    // Should the import hang on the full disk, it is killed and the test fails.
    let out = cercle_tests::finish_child(import, "note import on the full disk");
    let _ = writer.join();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    one_clear_sentence(&run, "is full");
    let acked: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    assert!(!acked.is_empty(), "some notes fit before the disk filled");
    std::fs::remove_file(&filler).unwrap();
    let present: BTreeSet<String> = note_ids(&home, &circle).into_iter().collect();
    for id in &acked {
        assert!(present.contains(id), "acknowledged note {id} lost");
    }
}
