//! The `cercle` command with running nodes: invites between two daemons, the `--json`
//! answer of every command, the local API's guards, and exports that Automerge reads back.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]
use std::os::unix::fs::PermissionsExt;

use cercle_tests::browser::WebSession;
use cercle_tests::{Daemon, TestHome, http, http_get, wait_until};

const LOOPBACK: [&str; 3] = ["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];

fn member(name: &str, profession: &str) -> TestHome {
    let h = TestHome::new();
    h.init(name, profession);
    h
}

fn code_of(home: &TestHome, circle: &str, role: &str, expires: &str) -> String {
    home.json(&[
        "invite",
        "create",
        circle,
        "--role",
        role,
        "--expires",
        expires,
    ])["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Runs a command expected to fail: exit code 1 and one sentence on stderr naming `what`.
fn refused(home: &TestHome, args: &[&str], what: &str) {
    let run = home.cercle(args);
    assert_eq!(run.code, Some(1), "{args:?} should fail: {run:#?}");
    let err = run.stderr.trim();
    assert!(
        err.starts_with("error: ") && err.ends_with('.') && err.lines().count() == 1,
        "not one sentence: {err}"
    );
    assert!(err.contains(what), "{args:?}: expected {what:?} in {err}");
}

#[test]
fn a_member_joins_with_an_invite_and_the_inviter_lists_their_note() {
    let a = member("Dr Claire Martin", "médecin généraliste");
    let b = member("Julien Moreau", "infirmier");
    let c = member("Inconnu", "aide");
    let _da = Daemon::start(&a, &[], &LOOPBACK);
    let _db = Daemon::start(&b, &[], &LOOPBACK);
    let _dc = Daemon::start(&c, &[], &LOOPBACK);

    let circle = a.create_circle("Jeanne Durand");
    let code = code_of(&a, &circle, "professional", "2h");
    assert!(code.starts_with("cercleinv1"), "{code}");
    let joined = b.json(&["join", &code]);
    assert_eq!(joined["circle"], circle.as_str());
    assert_eq!(joined["state"], "joined");

    // B writes; A, the inviter, lists the note with B as its author.
    let b_member = b.json(&["whoami"])["member"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    b.json(&["note", "add", &circle, "Pansement refait, plaie propre"]);
    let listed = wait_until(15, || {
        a.json(&["note", "list", &circle])
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| {
                n["text"] == "Pansement refait, plaie propre" && n["author"] == b_member.as_str()
            })
    });
    assert!(listed, "A never listed B's note");
    // B is a professional of the circle, as invited; A knows B's name from the card.
    let shown = a.json(&["circle", "show", &circle]);
    let row = shown["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["member"] == b_member.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["role"], "professional", "{shown}");
    assert_eq!(row["name"], "Julien Moreau", "{shown}");

    // The same code again, by someone else: refused by the inviter, C holds nothing.
    refused(&c, &["join", &code], "already used");
    assert_eq!(c.json(&["circle", "list"]), serde_json::json!([]));

    // A code with one character changed is caught before anything is sent.
    let mut garbled: Vec<char> = code.chars().collect();
    let i = garbled.len() / 2;
    garbled[i] = if garbled[i] == 'a' { 'b' } else { 'a' };
    let garbled: String = garbled.into_iter().collect();
    refused(&c, &["join", &garbled], "damaged");
    refused(&c, &["join", "hello"], "not an invite code");

    // An expired code.
    let short = code_of(&a, &circle, "caregiver", "1s");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    refused(&c, &["join", &short], "expired");
    assert_eq!(c.json(&["circle", "list"]), serde_json::json!([]));

    // Only coordinators invite.
    refused(
        &b,
        &["invite", "create", &circle, "--role", "observer"],
        "only a coordinator",
    );
}

/// Every command's `--json` output parses, with the stable fields scripts rely on.
#[test]
fn every_command_answers_in_json() {
    let a = member("Dr Claire Martin", "médecin généraliste");
    let b = TestHome::new();
    let init = b.init("Julien Moreau", "infirmier");
    assert!(
        init["member"].is_string() && init["card"].is_string(),
        "{init}"
    );

    // Offline (no node running): the store is opened by the command itself.
    let circle = a.json(&[
        "circle",
        "create",
        "--patient",
        "Jeanne Durand",
        "--birth-date",
        "1941-05-12",
    ])["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(circle.len(), 64);
    let offline_status = a.json(&["status"]);
    assert_eq!(offline_status["running"], false);

    let mut da = Daemon::start(&a, &[], &LOOPBACK);
    let _db = Daemon::start(&b, &[], &LOOPBACK);
    let whoami = a.json(&["whoami"]);
    assert!(
        whoami["card"]
            .as_str()
            .is_some_and(|c| c.starts_with("cercle1"))
    );
    let status = a.json(&["status"]);
    assert_eq!(status["running"], true);
    assert!(status["peer_id"].is_string());
    assert!(a.json(&["peers"]).is_array());
    assert!(a.json(&["circle", "list"])[0]["id"] == circle.as_str());

    let code = code_of(&a, &circle, "professional", "1h");
    assert_eq!(b.json(&["join", &code])["circle"], circle.as_str());
    let shown = a.json(&["circle", "show", &circle]);
    assert_eq!(
        shown["members"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );
    let b_member = b.json(&["whoami"])["member"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let role = a.json(&["circle", "role", &circle, &b_member[..12], "caregiver"]);
    assert!(role["members"].is_array());
    a.json(&["circle", "role", &circle, &b_member[..12], "professional"]);
    let relays = a.json(&["circle", "relays", &circle]);
    assert_eq!(relays["relays"], serde_json::json!([]));

    let patient = a.json(&[
        "patient",
        "set",
        &circle,
        "--ins",
        "2 41 05 12 345 678 05",
        "--verify",
        "--document",
        "id_card",
        "--consent",
        "given",
        "--consent-scope",
        "équipe à domicile",
        "--problem",
        "Insuffisance cardiaque",
        "--problem",
        "Ulcère du talon",
        "--address",
        "12 rue des Tilleuls, 23000 Guéret",
        "--care-plan",
        "Pesée quotidienne",
    ]);
    assert_eq!(patient["identity_status"], "verified", "{patient}");
    // The INS read out with spaces is kept as its 15 characters; the verification names
    // its document.
    assert_eq!(patient["ins"], "241051234567805");
    assert_eq!(patient["verified_with"], "id_card");
    // A verification without its document, and a birth date to come, are refused.
    let bare = a.cercle(&["patient", "set", &circle, "--verify"]);
    assert!(bare.stderr.contains("--document"), "{}", bare.stderr);
    let unborn = a.cercle(&["patient", "set", &circle, "--birth-date", "2099-01-01"]);
    assert!(unborn.stderr.contains("in the future"), "{}", unborn.stderr);
    assert_eq!(patient["consent"], "given");
    // Added in one write, at one instant: in no particular order.
    let problem = |label: &str| {
        patient["problems"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["fields"]["label"] == label))
            .cloned()
    };
    assert!(problem("Insuffisance cardiaque").is_some(), "{patient}");
    assert_eq!(
        a.json(&["patient", "show", &circle])["care_plan"],
        "Pesée quotidienne"
    );
    // Repeated flags add one item each; an item is changed, then removed with why, and
    // stays in the file as removed. The address does not unverify the identity.
    assert_eq!(patient["problems"].as_array().map(Vec::len), Some(2));
    assert_eq!(patient["address"], "12 rue des Tilleuls, 23000 Guéret");
    let ulcer = problem("Ulcère du talon").unwrap_or_default();
    let ulcer = ulcer["id"].as_str().unwrap_or_default();
    a.json(&[
        "patient",
        "change",
        &circle,
        "problems",
        &ulcer[..8],
        "status=resolved",
    ]);
    a.json(&[
        "patient",
        "remove",
        &circle,
        "problems",
        &ulcer[..8],
        "--reason",
        "saisie erronée",
    ]);
    let shown = a.json(&["patient", "show", &circle]);
    let fields = shown["problems"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["id"] == ulcer))
        .map(|p| p["fields"].clone())
        .unwrap_or_default();
    assert_eq!(fields["status"], "resolved", "{shown}");
    assert_eq!(fields["removed_reason"], "saisie erronée", "{shown}");
    assert_eq!(shown["identity_status"], "verified");
    let text = a.cercle(&["patient", "show", &circle]).stdout;
    assert!(
        text.contains("REMOVED (saisie erronée) Ulcère du talon"),
        "{text}"
    );
    let wrong = a.cercle(&[
        "patient",
        "change",
        &circle,
        "problems",
        &ulcer[..8],
        "colour=red",
    ]);
    assert!(
        wrong.stderr.contains("not a field of problems"),
        "{}",
        wrong.stderr
    );

    let note = a.json(&[
        "note",
        "add",
        &circle,
        "Prise de poids de 2 kg",
        "--kind",
        "alert",
    ]);
    let note_id = note["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(note["circle"], circle.as_str());
    let amended = a.json(&[
        "note",
        "amend",
        &circle,
        &note_id[..8],
        "Prise de poids de 2 kg en 3 jours",
    ]);
    assert_eq!(amended["id"], note_id.as_str());
    // Its author cannot close it, and is told who may.
    let own = a.cercle(&["note", "ack", &circle, &note_id[..8]]);
    assert_ne!(own.code, Some(0));
    assert!(
        own.stderr.contains("someone other than its author"),
        "{}",
        own.stderr
    );
    // B acknowledges the alert once it reached B's node.
    assert!(wait_until(15, || b
        .cercle(&["--json", "note", "ack", &circle, &note_id[..8]])
        .code
        == Some(0)));
    let notes = a.json(&["note", "list", &circle]);
    let acked = wait_until(15, || {
        a.json(&["note", "list", &circle])[0]["acks"]
            .as_array()
            .is_some_and(|v| v.len() == 1)
    });
    assert!(acked, "{notes}");
    let n = &notes[0];
    for field in ["id", "author", "kind", "text", "at"] {
        assert!(n[field].is_string(), "note list lacks {field}: {n}");
    }
    assert_eq!(n["kind"], "alert");
    assert_eq!(n["text"], "Prise de poids de 2 kg en 3 jours");
    assert_eq!(n["amended"], true);

    let sent = b.json(&["msg", "send", &circle, "Je passe demain matin"]);
    assert!(sent["id"].is_string());
    assert!(wait_until(15, || a
        .json(&["msg", "list", &circle, "--no-mark-read"])
        .as_array()
        .is_some_and(|m| m.len() == 1)));
    let read = a.json(&["msg", "list", &circle]);
    assert_eq!(read[0]["text"], "Je passe demain matin");
    // The receipt is written by A and reaches B.
    assert!(wait_until(15, || {
        b.json(&["msg", "list", &circle])[0]["read_by"]
            .as_array()
            .is_some_and(|r| r.len() == 1)
    }));

    let task = a.json(&[
        "task",
        "add",
        &circle,
        "Renouveler l'ordonnance",
        "--owner",
        &b_member[..12],
        "--due",
        "2099-12-15",
    ]);
    let task_id = task["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        a.json(&["task", "list", &circle])[0]["owner_name"],
        "Julien Moreau"
    );
    // An owner named by the start of their first name; a task past its due date is
    // flagged until it is done.
    let late = a.json(&[
        "task",
        "add",
        &circle,
        "Commander le lit médicalisé",
        "--owner",
        "julien",
        "--due",
        "2020-01-06",
    ]);
    let listed = a.cercle(&["task", "list", &circle]);
    assert!(
        listed.stdout.lines().any(|l| l.contains("Commander le lit")
            && l.contains("OVERDUE")
            && l.contains("Julien Moreau")),
        "{}",
        listed.stdout
    );
    assert!(
        !listed
            .stdout
            .lines()
            .any(|l| l.contains("Renouveler") && l.contains("OVERDUE"))
    );
    let late_id = late["id"].as_str().unwrap_or_default().to_string();
    a.json(&["task", "done", &circle, &late_id[..8]]);
    let done = a.json(&["task", "done", &circle, &task_id[..8]]);
    assert_eq!(done[0]["status"], "done");
    assert!(
        !a.cercle(&["task", "list", &circle])
            .stdout
            .contains("OVERDUE")
    );

    let file = a.path().join("ordonnance.pdf");
    std::fs::write(&file, b"%PDF-1.4 ordonnance de soins infirmiers").unwrap();
    let doc = a.json(&["doc", "add", &circle, &file.display().to_string()]);
    let doc_id = doc["id"].as_str().unwrap_or_default().to_string();
    let docs = a.json(&["doc", "list", &circle]);
    assert_eq!(docs[0]["media_type"], "application/pdf");
    assert_eq!(docs[0]["here"], true);
    let out = a.path().join("copie.pdf");
    let got = a.json(&[
        "doc",
        "get",
        &circle,
        &doc_id[..8],
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(got["bytes"], 39);
    assert_eq!(std::fs::read(&out).ok(), std::fs::read(&file).ok());
    // B's node has the document's entry, not its content, until B opens it: then it is
    // fetched from A, checked against its hash and kept.
    assert!(wait_until(15, || b
        .json(&["doc", "list", &circle])
        .as_array()
        .is_some_and(|d| d.len() == 1)));
    assert_eq!(b.json(&["doc", "list", &circle])[0]["here"], false);
    let b_copy = b.path().join("copie.pdf");
    b.json(&[
        "doc",
        "get",
        &circle,
        &doc_id[..8],
        "--out",
        &b_copy.display().to_string(),
    ]);
    assert_eq!(std::fs::read(&b_copy).ok(), std::fs::read(&file).ok());
    assert_eq!(b.json(&["doc", "list", &circle])[0]["here"], true);
    let mode = std::fs::metadata(&b_copy).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(
        mode.ok(),
        Some(0o600),
        "a patient's document is for this user only"
    );

    // A document named by another member never replaces a file of this user's.
    let evil = a.path().join("evil.sh");
    std::fs::write(&evil, b"echo compromis").unwrap();
    let named = a.json(&[
        "doc",
        "add",
        &circle,
        &evil.display().to_string(),
        "--name",
        ".bashrc",
    ]);
    let named = named["id"].as_str().unwrap_or_default().to_string();
    let work = b.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("bashrc"), b"mine").unwrap();
    let run = b
        .command(&["doc", "get", &circle, &named[..8]])
        .current_dir(&work)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && stderr.contains("already exists"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(work.join("bashrc")).ok(),
        Some(b"mine".to_vec())
    );
    assert!(!work.join(".bashrc").exists(), "never a hidden file");

    let exported = a.json(&[
        "export",
        &circle,
        "--format",
        "json",
        "--out",
        &a.path().join("c.json").display().to_string(),
    ]);
    assert_eq!(exported["files"].as_array().map(Vec::len), Some(1));
    let mode = std::fs::metadata(a.path().join("c.json")).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "an export is for this user only");
    let content: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path().join("c.json")).unwrap_or_default())
            .unwrap_or_else(|e| panic!("the JSON export does not parse: {e}"));
    assert_eq!(content["liaison_notebook"][0]["kind"], "alert");

    let bundle = a.fhir_export(&circle);
    assert_eq!(bundle["resourceType"], "Bundle");
    let observations = cercle_tests::fhir_resources(&bundle, "Observation");
    assert_eq!(
        observations.len(),
        content["liaison_notebook"].as_array().map_or(0, Vec::len)
    );
    assert_eq!(observations[0]["code"]["text"], "alert");

    let set = a.json(&["config", "set", "mdns", "false"]);
    assert_eq!(set["value"], false);
    assert_eq!(a.json(&["config", "get", "mdns"]), serde_json::json!(false));
    let all = a.json(&["config", "get"]);
    assert!(
        all["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("config.toml"))
    );

    let removed = a.json(&["circle", "remove", &circle, &b_member[..12]]);
    assert_eq!(removed["removed"].as_array().map(Vec::len), Some(1));

    // With the node stopped, the same reads come from the store.
    da.stop();
    assert_eq!(a.json(&["note", "list", &circle])[0]["kind"], "alert");
    let repaired = a.json(&["repair"]);
    assert!(repaired["batches"].is_number());
    let imported = a
        .command(&["--json", "note", "import", &circle])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(b"Une\nDeux\n")?;
            }
            child.wait_with_output()
        })
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&imported.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2);
    // Completions are a shell script, not JSON.
    let script = a.cercle(&["completions", "bash"]).ok();
    assert!(script.stdout.contains("cercle"));
}

#[test]
fn the_local_api_wants_its_token_and_a_loopback_host() {
    let a = member("Dr Claire Martin", "médecin généraliste");
    let _d = Daemon::start(&a, &[], &LOOPBACK);
    let api: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path().join("api.json")).unwrap_or_default())
            .unwrap_or_else(|e| panic!("api.json: {e}"));
    let address = api["address"].as_str().unwrap_or_default().to_string();
    let token = api["token"].as_str().unwrap_or_default().to_string();
    for file in ["api.json", "api-token"] {
        let mode = std::fs::metadata(a.path().join(file))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_default();
        assert_eq!(mode, 0o600, "{file} is readable by others");
    }
    let call = format!("http://{address}/api/v1/call");
    let status = serde_json::json!({ "request": "status" });
    let bearer = format!("Bearer {token}");

    let (code, body) = http(reqwest::Method::POST, &call, &[], Some(&status));
    assert_eq!(code, 401, "{body}");
    let (code, _) = http(
        reqwest::Method::POST,
        &call,
        &[("Authorization", "Bearer 00")],
        Some(&status),
    );
    assert_eq!(code, 401);
    let (code, body) = http(
        reqwest::Method::POST,
        &call,
        &[("Authorization", &bearer), ("Host", "evil.example:80")],
        Some(&status),
    );
    assert_eq!(code, 403, "{body}");
    let (code, body) = http(
        reqwest::Method::POST,
        &call,
        &[("Authorization", &bearer)],
        Some(&status),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("peer_id"));
    // A refusal has the status of its kind, and says it.
    let unknown = serde_json::json!({ "request": "note_list", "circle": "abcdef" });
    let (code, body) = http(
        reqwest::Method::POST,
        &call,
        &[("Authorization", &bearer)],
        Some(&unknown),
    );
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("\"kind\":\"not_found\"") && body.contains("no circle matches"),
        "{body}"
    );
    let nonsense = serde_json::json!({ "request": "no_such_thing" });
    let (code, body) = http(
        reqwest::Method::POST,
        &call,
        &[("Authorization", &bearer)],
        Some(&nonsense),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bad_input"), "{body}");

    // The web page: the login page without the token, no care data.
    a.create_circle("Jeanne Durand");
    let (code, page) = http_get(&format!("http://{address}/"), &[]);
    assert_eq!(code, 401);
    assert!(page.contains("Jeton") && !page.contains("Durand"), "{page}");
    let web = WebSession::login(&format!("http://{address}/?token={token}"));
    let (code, page) = web.get("/");
    assert_eq!(code, 200);
    assert!(page.contains("Jeanne Durand"));
    // A file leaves only as a download that cannot run as a page of this site.
    let circle = web.first_circle();
    let (code, headers, _) = web.get_with_headers(&format!("/c/{circle}/export.fhir.json"));
    assert_eq!(code, 200);
    assert_eq!(
        headers.get("content-security-policy").map(String::as_str),
        Some("sandbox")
    );
    assert!(
        headers
            .get("content-disposition")
            .is_some_and(|d| d.starts_with("attachment"))
    );
    let (code, _) = http_get(
        &format!("http://{address}/?token={token}"),
        &[("Host", "rebind.example")],
    );
    assert_eq!(code, 403);

    let (code, doc) = http_get(&format!("http://{address}/api/v1/openapi.json"), &[]);
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/call"]["post"].is_object());
    // Generated from the types: every request with its fields.
    assert!(doc["components"]["schemas"]["NoteAdd"]["properties"]["texts"].is_object());
}

/// Reads the texts of a notebook saved by `export --format automerge` with Automerge alone.
fn texts_in_saved_notebook(bytes: &[u8]) -> Vec<String> {
    use automerge::ReadDoc;
    let doc = automerge::Automerge::load(bytes)
        .unwrap_or_else(|e| panic!("not an Automerge document: {e}"));
    let Some((_, entries)) = doc.get(automerge::ROOT, "entries").ok().flatten() else {
        panic!("no entries in the exported notebook");
    };
    let mut rows: Vec<(i64, String)> = doc
        .map_range(&entries, ..)
        .filter_map(|item| {
            let obj = item.id();
            let text = match doc.get(&obj, "text").ok().flatten()?.0 {
                automerge::Value::Scalar(s) => match s.as_ref() {
                    automerge::ScalarValue::Str(t) => t.to_string(),
                    _ => return None,
                },
                automerge::Value::Object(_) => return None,
            };
            let at = match doc.get(&obj, "at").ok().flatten()?.0 {
                automerge::Value::Scalar(s) => match s.as_ref() {
                    automerge::ScalarValue::Timestamp(t) => *t,
                    _ => 0,
                },
                automerge::Value::Object(_) => 0,
            };
            Some((at, text))
        })
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, t)| t).collect()
}

#[test]
fn an_automerge_export_loads_back_with_the_same_notes() {
    let a = member("Dr Claire Martin", "médecin généraliste");
    let circle = a.create_circle("Jeanne Durand");
    for text in ["Première visite", "Pansement refait", "Constantes stables"] {
        a.json(&["note", "add", &circle, text]);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = a.path().join("export");
    let exported = a.json(&[
        "export",
        &circle,
        "--format",
        "automerge",
        "--out",
        &out.display().to_string(),
    ]);
    let files: Vec<String> = exported["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    assert_eq!(files.len(), 3, "{exported}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        automerge::Automerge::load(&bytes).unwrap_or_else(|e| panic!("{f} does not load: {e}"));
    }
    let notebook = std::fs::read(out.join("liaison_notebook.automerge")).unwrap_or_default();
    assert_eq!(texts_in_saved_notebook(&notebook), a.note_texts(&circle));
    assert_eq!(a.note_texts(&circle).len(), 3);
}
