//! The first local commands, end to end through the real binary: a note written with
//! `note add` is listed by `note list --json`, and user mistakes get one clear sentence, a
//! non-zero exit, and lose nothing already stored; a command run while the node starts waits
//! for it.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]
use cercle_tests::TestHome;

fn circle_with_note() -> (TestHome, String, String) {
    let home = TestHome::new();
    let me = home.init("Dr Claire Martin", "médecin généraliste");
    assert_eq!(me["name"], "Dr Claire Martin");
    let circle = home.json(&[
        "circle",
        "create",
        "--patient",
        "Jeanne Durand",
        "--birth-date",
        "1941-05-12",
    ]);
    let id = circle["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(id.len(), 64, "circle id: {circle}");
    let added = home.json(&["note", "add", &id[..8], "Pansement refait, plaie propre"]);
    let note = added["id"].as_str().unwrap_or_default().to_string();
    (home, id, note)
}

#[test]
fn a_note_added_is_listed_with_its_author_kind_text_and_time() {
    let (home, circle, note) = circle_with_note();
    let me = home.json(&["whoami"]);
    assert_eq!(me["member"].as_str().map(str::len), Some(64), "{me}");
    assert_eq!(me["device"].as_str().map(str::len), Some(64), "{me}");
    assert!(
        me["card"]
            .as_str()
            .is_some_and(|c| c.starts_with("cercle1")),
        "{me}"
    );
    let alert = home.json(&["note", "add", &circle, "Chute ce matin", "--kind", "alert"]);
    let notes = home.json(&["note", "list", &circle]);
    let notes = notes.as_array().cloned().unwrap_or_default();
    assert_eq!(notes.len(), 2, "{notes:?}");
    let first = &notes[0];
    assert_eq!(first["id"], note.as_str());
    assert_eq!(first["author"], me["member"]);
    assert_eq!(first["kind"], "observation");
    assert_eq!(first["text"], "Pansement refait, plaie propre");
    assert!(
        first["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    assert_eq!(notes[1]["id"], alert["id"]);
    assert_eq!(notes[1]["kind"], "alert");
    // Kinds in French, in any case; a text starting with "-" is a text.
    home.json(&[
        "note",
        "add",
        &circle,
        "-2 kg en une semaine",
        "--kind",
        "Constantes",
    ]);
    home.json(&[
        "note",
        "add",
        &circle,
        "Relève du soir",
        "--kind",
        "transmission",
    ]);
    let notes = home.json(&["note", "list", &circle]);
    assert_eq!(notes[2]["kind"], "vitals", "{notes}");
    assert_eq!(notes[2]["text"], "-2 kg en une semaine");
    assert_eq!(notes[3]["kind"], "handover", "{notes}");
    let circles = home.json(&["circle", "list"]);
    assert_eq!(circles[0]["patient"], "Jeanne Durand");
}

/// Runs a failing command and checks the error is one sentence on stderr with exit code 1.
fn fails_with(home: &TestHome, args: &[&str], expected: &str) {
    let run = home.cercle(args);
    assert_eq!(run.code, Some(1), "{args:?}: {run:#?}");
    assert!(
        run.stdout.is_empty(),
        "{args:?} printed to stdout: {run:#?}"
    );
    let err = run.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(
        err.starts_with("error: ") && err.ends_with('.'),
        "{args:?}: {err}"
    );
    assert!(
        err.contains(expected),
        "{args:?}: {err:?} lacks {expected:?}"
    );
}

#[test]
fn mistakes_get_one_sentence_a_non_zero_exit_and_lose_nothing() {
    let (home, circle, note) = circle_with_note();
    fails_with(
        &home,
        &["note", "add", "ffffffffff", "texte"],
        "no circle matches",
    );
    fails_with(&home, &["note", "add", &circle, "   "], "the note is empty");
    fails_with(
        &home,
        &["note", "add", &circle, "x", "--kind", "diagnosis"],
        "unknown note kind",
    );
    fails_with(
        &home,
        &[
            "circle",
            "create",
            "--patient",
            "Paul Roy",
            "--birth-date",
            "1950-02-30",
        ],
        "is not a valid date",
    );
    fails_with(
        &home,
        &[
            "circle",
            "create",
            "--patient",
            "Paul Roy",
            "--birth-date",
            "30/01/1950",
        ],
        "use YYYY-MM-DD",
    );
    fails_with(&home, &["note", "list", "zz"], "no circle matches");
    fails_with(
        &home,
        &["init", "--name", "Bis", "--profession", "x"],
        "already holds an identity",
    );
    // Nothing stored was lost or added by the failed commands.
    let notes = home.json(&["note", "list", &circle]);
    assert_eq!(notes.as_array().map(Vec::len), Some(1));
    assert_eq!(notes[0]["id"], note.as_str());
    assert_eq!(
        home.json(&["circle", "list"]).as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn commands_before_init_and_bad_professional_numbers_are_explained() {
    let home = TestHome::new();
    fails_with(&home, &["note", "list", "abc"], "run `cercle init");
    fails_with(
        &home,
        &[
            "init",
            "--name",
            "Claire",
            "--profession",
            "infirmière",
            "--rpps",
            "10003456787",
        ],
        "RPPS",
    );
    fails_with(
        &home,
        &[
            "init",
            "--name",
            "Claire",
            "--profession",
            "infirmière",
            "--adeli",
            "12345",
        ],
        "ADELI",
    );
    let me = home.json(&[
        "init",
        "--name",
        "Claire",
        "--profession",
        "infirmière",
        "--rpps",
        "10003456786",
    ]);
    assert_eq!(me["rpps"], "10003456786");
}

#[test]
fn a_wrong_command_line_exits_with_code_2() {
    let home = TestHome::new();
    assert_eq!(home.cercle(&["note"]).code, Some(2));
    assert_eq!(home.cercle(&["frobnicate"]).code, Some(2));
}

#[test]
fn a_coordinator_adds_shows_changes_and_removes_members_by_their_cards() {
    let (gp, circle, _) = circle_with_note();
    let nurse = TestHome::new();
    let me = nurse.init("Paul Lefèvre", "infirmier");
    let card = me["card"].as_str().unwrap_or_default().to_string();
    let shown = gp.json(&[
        "circle",
        "add",
        &circle,
        "--card",
        &card,
        "--role",
        "caregiver",
    ]);
    let members = shown["members"].as_array().cloned().unwrap_or_default();
    assert_eq!(members.len(), 2, "{shown}");
    let paul = members
        .iter()
        .find(|m| m["member"] == me["member"])
        .cloned()
        .unwrap_or_default();
    assert_eq!(paul["role"], "caregiver");
    assert_eq!(paul["name"], "Paul Lefèvre");
    assert_eq!(paul["devices"][0], me["device"]);

    let shown = gp.json(&["circle", "role", &circle, "paul lefèvre", "professional"]);
    let roles: Vec<_> = shown["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["role"].clone())
        .collect();
    assert!(
        roles.contains(&serde_json::json!("professional")),
        "{shown}"
    );

    fails_with(
        &gp,
        &["circle", "add", &circle, "--card", &card, "--role", "nurse"],
        "unknown role",
    );
    fails_with(
        &gp,
        &[
            "circle", "add", &circle, "--card", &card, "--role", "observer",
        ],
        "already a member",
    );
    fails_with(
        &gp,
        &[
            "circle",
            "add",
            &circle,
            "--card",
            "cercle1abc",
            "--role",
            "observer",
        ],
        "contact card",
    );

    let epoch_before = gp.json(&["circle", "show", &circle])["epoch"].clone();
    let member = me["member"].as_str().unwrap_or_default();
    let shown = gp.json(&["circle", "remove", &circle, &member[..10]]);
    assert_eq!(shown["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(shown["removed"][0], me["member"]);
    assert_ne!(
        shown["epoch"], epoch_before,
        "a removal starts a new key epoch"
    );
    fails_with(
        &gp,
        &["circle", "remove", &circle, &member[..10]],
        "no member of this circle",
    );
}

#[test]
fn a_wrong_passphrase_is_refused_in_one_sentence() {
    let home = TestHome::new();
    home.init("Dr Claire Martin", "médecin");
    let run = std::process::Command::new(cercle_tests::cercle_bin())
        .arg("--home")
        .arg(home.path())
        .args(["circle", "create", "--patient", "Jeanne Durand"])
        .env("CERCLE_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.starts_with("error: wrong passphrase"), "{err}");
}

/// A note holding terminal escape sequences (another member could have written it) is
/// listed with them shown escaped, never sent raw to the terminal; JSON keeps the exact
/// text for scripts.
#[test]
fn escape_sequences_in_notes_never_reach_the_terminal() {
    let (home, circle, _) = circle_with_note();
    let hostile = "Tension 13/8\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}fin";
    home.json(&["note", "add", &circle, hostile]);
    let raw = |text: &str| {
        text.chars()
            .any(|c| matches!(c, '\u{1b}' | '\u{7}' | '\u{9b}' | '\u{202e}'))
    };
    let human = home.cercle(&["note", "list", &circle]).ok().stdout;
    assert!(!raw(&human), "raw escapes printed: {human:?}");
    assert!(human.contains("Tension 13/8"), "{human}");
    let json = home
        .cercle(&["--json", "note", "list", &circle])
        .ok()
        .stdout;
    assert!(!raw(&json), "raw escapes printed: {json:?}");
    let notes: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    assert_eq!(notes[1]["text"], hostile, "JSON must keep the exact text");
}

/// Someone's real card passed on under another name (or another RPPS) is refused: the
/// profile on a card is signed by its member key, and the coordinator is told what to do.
#[test]
fn a_card_whose_name_was_changed_is_refused() {
    let gp = TestHome::new();
    gp.init("Dr Claire Martin", "médecin généraliste");
    let nurse = TestHome::new();
    nurse.init("Julien Petit", "infirmier");
    let circle = gp.create_circle("Jeanne Durand");
    // Read as anyone can read a card, without checking it.
    let json = cercle_node::textcode::decode(
        cercle_node::identity::CARD_PREFIX,
        &nurse.card(),
        cercle_node::identity::MAX_CARD_CHARS,
    )
    .unwrap_or_else(|e| panic!("the nurse's card is not a card: {e}"));
    let mut card: cercle_node::identity::ContactCard = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("the nurse's card does not parse: {e}"));
    card.profile.name = "Dr Usurpateur".into();
    let run = gp.cercle(&[
        "circle",
        "add",
        &circle,
        "--card",
        &card.encode(),
        "--role",
        "professional",
    ]);
    assert_ne!(
        run.code,
        Some(0),
        "a renamed card was taken: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("ask them for their card again"),
        "the refusal does not say what to do: {}",
        run.stderr
    );
    let shown = gp.json(&["circle", "show", &circle]);
    assert_eq!(
        shown["members"].as_array().map(Vec::len),
        Some(1),
        "{shown}"
    );
    // The real card is taken.
    gp.add_member(&circle, &nurse.card(), "professional");
}

/// Identity vigilance on the command line: `circle list` shows each patient's birth date,
/// and a second circle for a patient with the same names and birth date is flagged as a
/// probable duplicate when it is created and in the list; a namesake born another day is
/// not.
#[test]
fn a_second_circle_for_the_same_patient_is_flagged_as_a_probable_duplicate() {
    let home = TestHome::new();
    home.init("Dr Claire Martin", "médecin généraliste");
    let create = |born: &str| {
        home.cercle(&[
            "circle",
            "create",
            "--patient",
            "Jeanne Durand",
            "--birth-date",
            born,
        ])
    };
    let first = create("1941-05-12");
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(!first.stdout.contains("DUPLICATE"), "{}", first.stdout);
    let namesake = create("1950-01-02");
    assert!(
        !namesake.stdout.contains("DUPLICATE"),
        "{}",
        namesake.stdout
    );
    let second = create("1941-05-12");
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert!(
        second.stdout.contains("PROBABLE DUPLICATE"),
        "{}",
        second.stdout
    );
    let list = home.cercle(&["circle", "list"]);
    assert!(list.stdout.contains("(born 1941-05-12)"), "{}", list.stdout);
    assert!(list.stdout.contains("(born 1950-01-02)"), "{}", list.stdout);
    assert_eq!(
        list.stdout.matches("PROBABLE DUPLICATE").count(),
        2,
        "{}",
        list.stdout
    );
    let json = home.json(&["circle", "list"]);
    let flagged = json
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["probable_duplicates"]
                .as_array()
                .is_some_and(|d| d.len() == 1)
        })
        .count();
    assert_eq!(flagged, 2, "{json}");
}

/// Names are stored as the identity-vigilance rules want them: particles go with the
/// family name, and a name the split would get wrong is given in its two fields.
#[test]
fn family_names_with_particles_or_two_words_are_kept_whole() {
    let home = TestHome::new();
    home.init("Dr Claire Martin", "médecin généraliste");
    let circle = home.create_circle("Marie-Claire de La Fontaine");
    let p = home.json(&["patient", "show", &circle]);
    assert_eq!(
        (&p["family_name"], &p["given_names"]),
        (&"de La Fontaine".into(), &"Marie-Claire".into()),
        "{p}"
    );
    let two = home.json(&[
        "circle",
        "create",
        "--family-name",
        "Dupont Martin",
        "--given-names",
        "Jeanne Louise",
    ]);
    let id = two["id"].as_str().unwrap_or_default();
    let p = home.json(&["patient", "show", id]);
    assert_eq!(
        (&p["family_name"], &p["given_names"]),
        (&"Dupont Martin".into(), &"Jeanne Louise".into()),
        "{p}"
    );
    let neither = home.cercle(&["circle", "create", "--given-names", "Jeanne"]);
    assert_ne!(neither.code, Some(0));
}

/// A command run while the home's node is starting (its store taken, its API not answering
/// yet) waits for it and then goes through, instead of telling the member to stop it.
#[test]
fn a_command_run_while_the_node_starts_waits_for_it() {
    let home = TestHome::new();
    home.init("Dr Claire Martin", "médecin généraliste");
    let circle = home.create_circle("Jeanne Durand");
    // The store held as a node holds it while it opens its circles, before its API: locked,
    // and marked as a node's.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(home.path().join("store").join("lock"))
        .unwrap();
    lock.lock().unwrap();
    std::fs::write(home.path().join("node.pid"), "1").unwrap();
    let mut waiting = home.command(&["note", "add", &circle, "Passage du matin"]);
    waiting
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = waiting.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the command gave up while the node was starting"
    );
    lock.unlock().unwrap();
    std::fs::remove_file(home.path().join("node.pid")).unwrap();
    let _node = cercle_tests::up_on_loopback(&home, &[]);
    let out = cercle_tests::finish_child(child, "note add");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.starts_with("Note ") && said.contains(" added in circle "),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = home.cercle(&["note", "list", &circle]).ok().stdout;
    assert!(listed.contains("Passage du matin"), "{listed}");
}

/// Two practices that nothing connects: the GP adds the nurse by her card and writes; a file
/// on a USB key brings the circle and its notes to the nurse's node (joined, as she chose
/// to import it), and her answer back the same way, her node running this time. Importing
/// twice changes nothing; a file with one byte changed is refused whole, nothing of it
/// applied; the file holds no patient name or note text.
#[test]
fn a_usb_key_carries_a_circle_and_its_notes_between_two_practices() {
    let (gp, circle, _) = circle_with_note();
    let nurse = TestHome::new();
    nurse.init("Julien Moreau", "infirmier");
    gp.add_member(&circle, &nurse.card(), "professional");
    gp.json(&["note", "add", &circle, "Glycémie 1,32 g/L à jeun"]);
    let key = tempfile::tempdir().unwrap();
    let file = key.path().join("cercle.sync");
    let file_arg = file.to_str().unwrap();
    let written = gp.json(&["sync", "export", "--out", file_arg]);
    assert_eq!(written["circles"], 1, "{written}");
    let bytes = std::fs::read(&file).unwrap();
    for plain in ["Jeanne", "Durand", "Glycémie", "Pansement"] {
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{plain} in clear in the sync file"
        );
    }

    // One byte changed: refused with why, the nurse holds nothing.
    let mut tampered = bytes.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x20;
    let bad = key.path().join("tampered.sync");
    std::fs::write(&bad, &tampered).unwrap();
    let run = nurse.cercle(&["sync", "import", bad.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr.contains("nothing was imported")
            && (run.stderr.contains("changed after it was written")
                || run.stderr.contains("damaged")),
        "{}",
        run.stderr
    );
    assert_eq!(nurse.json(&["circle", "list"]), serde_json::json!([]));

    let imported = nurse.json(&["sync", "import", file_arg]);
    assert_eq!(imported["refused"], 0, "{imported}");
    assert!(imported["new"].as_u64().unwrap_or(0) >= 2, "{imported}");
    let texts = |home: &TestHome| -> Vec<String> {
        home.json(&["note", "list", &circle])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["text"].as_str().map(str::to_string))
            .collect()
    };
    assert!(texts(&nurse).contains(&"Glycémie 1,32 g/L à jeun".to_string()));
    let again = nurse.json(&["sync", "import", file_arg]);
    assert_eq!(again["new"], 0, "{again}");
    assert_eq!(again["refused"], 0, "{again}");

    // The answer goes back to the GP, whose node runs (no peer, no relay, no mDNS).
    nurse.json(&["note", "add", &circle, "Passage fait, patiente rassurée"]);
    let back = key.path().join("back.sync");
    nurse.json(&[
        "sync",
        "export",
        "--out",
        back.to_str().unwrap(),
        "--circle",
        &circle[..10],
    ]);
    let _node =
        cercle_tests::Daemon::start(&gp, &[], &["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let taken = gp.json(&["sync", "import", back.to_str().unwrap()]);
    assert!(taken["already_held"].as_u64().unwrap_or(0) >= 2, "{taken}");
    assert!(texts(&gp).contains(&"Passage fait, patiente rassurée".to_string()));
}
