//! Members' nodes converge over real libp2p connections on loopback, through the real
//! `cercle up` processes: a note written on one node is listed on the other; a node that is
//! a member of nothing receives nothing; a stopped node catches up when it returns; two
//! nodes that both wrote while cut apart end with the same notes; a removed member gets
//! nothing written after its removal; a note dated long before it arrived is listed with the
//! time it was received.

use cercle_tests::checkers::validate_fhir;
use cercle_tests::{TestHome, pair_on_loopback, up_on_loopback, wait_until};

/// A and B members of one circle (A coordinator, B professional); C a member of nothing.
fn team() -> (TestHome, TestHome, TestHome, String) {
    let a = TestHome::new();
    let b = TestHome::new();
    let c = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    b.init("Julien Petit", "infirmier");
    c.init("Sophie Bernard", "kinésithérapeute");
    let circle = a.create_circle("Jeanne Durand");
    a.add_member(&circle, &b.card(), "professional");
    (a, b, c, circle)
}

fn peers(home: &TestHome) -> Vec<serde_json::Value> {
    home.json(&["peers"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn has_note(home: &TestHome, circle: &str, text: &str) -> bool {
    home.note_texts(circle).iter().any(|t| t == text)
}

/// Whether any file under the home contains `needle`.
fn files_contain(home: &TestHome, needle: &[u8]) -> bool {
    home.files().iter().any(|f| {
        std::fs::read(f)
            .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

#[test]
fn members_converge_a_stranger_gets_nothing_and_a_stopped_node_catches_up() {
    let (a, b, c, circle) = team();
    let (node_a, mut node_b) = pair_on_loopback(&a, &b, &circle);
    let node_c = up_on_loopback(&c, &[&node_a, &node_b]);

    // A note written on A is listed on B.
    a.json(&["note", "add", &circle, "Pansement refait, plaie propre"]);
    assert!(
        wait_until(20, || has_note(
            &b,
            &circle,
            "Pansement refait, plaie propre"
        )),
        "B never listed A's note: {:?}",
        b.note_texts(&circle)
    );
    // B joined from A's operations and learned the patient from the patient file.
    assert_eq!(b.json(&["circle", "list"])[0]["patient"], "Jeanne Durand");

    // C is connected to both, shares nothing, and received no sync data at all.
    assert!(
        wait_until(20, || peers(&c).len() == 2),
        "C is not connected to A and B: {:?}",
        peers(&c)
    );
    for p in peers(&c) {
        assert_eq!(p["data_bytes_received"], 0, "C received circle data: {p}");
        assert_eq!(p["circles"].as_array().map(Vec::len), Some(0), "{p}");
    }
    for p in peers(&a) {
        if p["peer_id"] == node_c.peer_id.as_str() {
            assert_eq!(p["data_bytes_sent"], 0, "A sent C circle data: {p}");
        }
    }
    assert_eq!(c.json(&["circle", "list"]), serde_json::json!([]));
    let id_bytes: Vec<u8> = (0..circle.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&circle[i..i + 2], 16).ok())
        .collect();
    assert!(
        !files_contain(&c, &id_bytes) && !files_contain(&c, circle.as_bytes()),
        "C's home holds something of the circle"
    );

    // B stops; A writes; B comes back and catches up.
    assert_eq!(node_b.stop(), Some(0), "B did not stop cleanly");
    for i in 0..5 {
        a.json(&["note", "add", &circle, &format!("Visite du soir {i}")]);
    }
    let node_b = up_on_loopback(&b, &[&node_a]);
    assert!(
        wait_until(20, || has_note(&b, &circle, "Visite du soir 4")),
        "B did not catch up after its restart: {:?}",
        b.note_texts(&circle)
    );
    drop(node_b);
    drop(node_c);
}

#[test]
fn notes_written_on_both_sides_of_a_cut_are_on_both_after_it_heals() {
    let (a, b, _c, circle) = team();
    let (node_a, mut node_b) = pair_on_loopback(&a, &b, &circle);
    a.json(&["note", "add", &circle, "Avant la coupure"]);
    assert!(wait_until(20, || has_note(&b, &circle, "Avant la coupure")));

    // The cut: B's node stops; both keep writing (B offline, on its own store).
    assert_eq!(node_b.stop(), Some(0));
    a.json(&["note", "add", &circle, "Écrit par A pendant la coupure"]);
    b.json(&["note", "add", &circle, "Écrit par B pendant la coupure"]);
    a.json(&["note", "add", &circle, "Encore A"]);

    // The cut heals.
    let _node_b = up_on_loopback(&b, &[&node_a]);
    let same = wait_until(30, || {
        let on_a = a.note_texts(&circle);
        on_a.len() == 4 && on_a == b.note_texts(&circle)
    });
    assert!(
        same,
        "A and B differ after the cut healed:\nA: {:?}\nB: {:?}",
        a.note_texts(&circle),
        b.note_texts(&circle)
    );
}

#[test]
fn a_removed_member_receives_nothing_written_after_the_removal() {
    let (a, b, _c, circle) = team();
    let _nodes = pair_on_loopback(&a, &b, &circle);
    a.json(&["note", "add", &circle, "Avant le retrait"]);
    assert!(wait_until(20, || has_note(&b, &circle, "Avant le retrait")));
    let epoch_before = b.json(&["circle", "show", &circle])["epoch"].clone();

    let b_member = b.json(&["whoami"])["member"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    a.json(&["circle", "remove", &circle, &b_member[..12]]);
    // A no longer shares the circle with B's device.
    assert!(wait_until(20, || {
        peers(&a)
            .iter()
            .all(|p| p["circles"].as_array().is_some_and(Vec::is_empty))
    }));
    let received_before: u64 = peers(&b)
        .iter()
        .filter_map(|p| p["data_bytes_received"].as_u64())
        .sum();
    a.json(&["note", "add", &circle, "Après le retrait"]);
    // Give the note every chance to travel, then check it did not.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!has_note(&b, &circle, "Après le retrait"));
    let received_after: u64 = peers(&b)
        .iter()
        .filter_map(|p| p["data_bytes_received"].as_u64())
        .sum();
    assert_eq!(
        received_before, received_after,
        "B received data after its removal"
    );
    assert_eq!(
        b.json(&["circle", "show", &circle])["epoch"],
        epoch_before,
        "B learned of the new epoch"
    );
    assert!(has_note(&a, &circle, "Après le retrait"));
}

#[test]
fn a_member_added_from_a_running_nodes_card_is_dialed_and_joins_once_accepted() {
    let a = TestHome::new();
    let b = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    b.init("Julien Petit", "infirmier");
    let circle = a.create_circle("Jeanne Durand");
    let _node_a = up_on_loopback(&a, &[]);
    let node_b = up_on_loopback(&b, &[]);
    // The card of a running node carries its addresses.
    let card = b.card();
    assert!(a.cercle(&["whoami"]).ok().stdout.contains("cercle1"));
    a.json(&["note", "add", &circle, "Premier passage"]);
    // Adding B with that card is all A needs to reach B; B's user accepts.
    a.add_member(&circle, &card, "professional");
    b.accept(&circle);
    assert!(
        wait_until(20, || b.cercle(&["--json", "note", "list", &circle]).code
            == Some(0)
            && has_note(&b, &circle, "Premier passage")),
        "B did not join through the address on its card; A's peers: {:?}",
        peers(&a)
    );
    assert!(
        peers(&a)
            .iter()
            .any(|p| p["peer_id"] == node_b.peer_id.as_str())
    );
}

/// A note's date is what its author's device says. Each node keeps when it received a
/// note another device wrote, and shows it beside a date far from it: a note dated three
/// days back (a visit written up afterwards, or a date set to mislead) is listed on B with
/// the time B received it; a note dated now is listed as usual; A's own notes carry no
/// time of receipt.
#[test]
fn a_note_dated_long_before_it_arrived_is_listed_with_when_it_was_received() {
    let (a, b, _c, circle) = team();
    let _nodes = pair_on_loopback(&a, &b, &circle);
    let api: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path().join("api.json")).unwrap_or_default())
            .unwrap_or_else(|e| panic!("api.json: {e}"));
    let call = format!(
        "http://{}/api/v1/call",
        api["address"].as_str().unwrap_or_default()
    );
    let bearer = format!("Bearer {}", api["token"].as_str().unwrap_or_default());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let three_days_ago = now - 3 * 24 * 3600 * 1000;
    let add = serde_json::json!({
        "request": "note_add",
        "circle": circle,
        "texts": ["Visite du lundi : pansement refait"],
        "kind": "care",
        "at": three_days_ago,
    });
    let (code, body) = cercle_tests::http(
        reqwest::Method::POST,
        &call,
        &[("Authorization", &bearer)],
        Some(&add),
    );
    assert_eq!(code, 200, "{body}");
    a.cercle(&["note", "add", &circle, "Tension 13/8"]).ok();
    assert!(
        wait_until(30, || has_note(&b, &circle, "Tension 13/8")
            && has_note(&b, &circle, "Visite du lundi : pansement refait")),
        "B never got A's notes"
    );
    let on_b = b.json(&["note", "list", &circle]);
    let row = |notes: &serde_json::Value, text: &str| {
        notes
            .as_array()
            .and_then(|n| n.iter().find(|r| r["text"] == text))
            .cloned()
            .unwrap_or_else(|| panic!("no note {text:?} in {notes}"))
    };
    let late = row(&on_b, "Visite du lundi : pansement refait");
    assert_eq!(late["at_millis"], three_days_ago, "{late}");
    let received = late["received_millis"].as_i64().unwrap_or_default();
    assert!(
        received >= now - 60_000 && received <= now + 120_000,
        "received at {received}, now {now}: {late}"
    );
    assert_eq!(late["dated_apart"], true, "{late}");
    let fresh = row(&on_b, "Tension 13/8");
    assert!(fresh["received_millis"].is_i64(), "{fresh}");
    assert_eq!(fresh["dated_apart"], false, "{fresh}");
    let listed = b.cercle(&["note", "list", &circle]).ok().stdout;
    let line = listed
        .lines()
        .find(|l| l.contains("Visite du lundi"))
        .unwrap_or_default();
    assert!(line.contains("(received here"), "{listed}");
    // On the author's node, its own notes have no time of receipt.
    let on_a = a.json(&["note", "list", &circle]);
    let own = row(&on_a, "Visite du lundi : pansement refait");
    assert!(own["received_millis"].is_null(), "{own}");
}

/// Vital signs given as values on the command line (no text: the values, written out,
/// become it) reach the other member's node as values, and its FHIR export carries them as
/// one Observation per sign, LOINC-coded in UCUM units, valid for an independent checker. A value out of range, or values on a note of another kind,
/// are refused with what to do.
#[test]
fn vital_signs_given_as_values_reach_the_other_member_and_its_valid_fhir_export() {
    let (a, b, _c, circle) = team();
    let _nodes = pair_on_loopback(&a, &b, &circle);
    let vitals = [
        "--kind",
        "vitals",
        "--bp",
        "132/78",
        "--hr",
        "84",
        "--temp",
        "37,2",
        "--spo2",
        "96",
        "--weight",
        "61,4",
        "--glucose",
        "1,05",
        "--pain",
        "3",
        "--rr",
        "16",
    ];
    let mut add = vec!["note", "add", circle.as_str()];
    add.extend(vitals);
    a.json(&add);
    let text = "TA 132/78 mmHg · FC 84/min · T° 37,2 °C · SpO₂ 96 % · FR 16/min · poids 61,4 kg · glycémie 1,05 g/L · douleur 3/10";
    assert!(
        wait_until(30, || has_note(&b, &circle, text)),
        "B never got the vital signs: {:?}",
        b.note_texts(&circle)
    );
    let on_b = b.json(&["note", "list", &circle]);
    let v = &on_b[0]["vitals"];
    assert_eq!(
        (
            &v["systolic"],
            &v["diastolic"],
            &v["heart_rate"],
            &v["temperature_c"]
        ),
        (&132.into(), &78.into(), &84.into(), &37.2.into()),
        "{on_b}"
    );
    assert_eq!(
        (&v["weight_kg"], &v["glycaemia_g_l"]),
        (&61.4.into(), &1.05.into())
    );
    assert_eq!(
        (&v["spo2"], &v["pain"], &v["respiratory_rate"]),
        (&96.into(), &3.into(), &16.into())
    );

    // One vital-signs Observation per sign, blood pressure as the panel with its two
    // components, each LOINC-coded with its value in UCUM units; and the whole export valid
    // against HL7's FHIR R4 schema.
    let bundle = b.fhir_export(&circle);
    validate_fhir(&b.path().join("c.fhir.json"));
    let signs: Vec<serde_json::Value> = cercle_tests::fhir_resources(&bundle, "Observation")
        .into_iter()
        .filter(|r| {
            r["category"][0]["coding"][0]["code"] == "vital-signs"
                && r["code"]["coding"][0]["system"] == "http://loinc.org"
                && r["code"]["coding"][0]["code"] != "85353-1"
        })
        .collect();
    let quantity = |q: &serde_json::Value| {
        assert_eq!(q["system"], "http://unitsofmeasure.org", "{q}");
        (
            q["value"].clone(),
            q["code"].as_str().unwrap_or_default().to_string(),
        )
    };
    let sign = |code: &str| {
        signs
            .iter()
            .find(|o| o["code"]["coding"][0]["code"] == code)
            .unwrap_or_else(|| panic!("no Observation coded {code} in {signs:#?}"))
    };
    for (code, value, unit) in [
        ("8867-4", serde_json::json!(84), "/min"),
        ("8310-5", serde_json::json!(37.2), "Cel"),
        ("59408-5", serde_json::json!(96), "%"),
        ("29463-7", serde_json::json!(61.4), "kg"),
        ("2339-0", serde_json::json!(1.05), "g/L"),
        ("72514-3", serde_json::json!(3), "{score}"),
        ("9279-1", serde_json::json!(16), "/min"),
    ] {
        assert_eq!(
            quantity(&sign(code)["valueQuantity"]),
            (value, unit.to_string()),
            "{code}"
        );
    }
    let bp = sign("85354-9");
    assert!(bp.get("valueQuantity").is_none(), "{bp}");
    for (i, code, value) in [(0, "8480-6", 132), (1, "8462-4", 78)] {
        let c = &bp["component"][i];
        assert_eq!(c["code"]["coding"][0]["code"], code, "{bp}");
        assert_eq!(
            quantity(&c["valueQuantity"]),
            (value.into(), "mm[Hg]".to_string())
        );
    }
    assert_eq!(signs.len(), 8, "{signs:#?}");

    // Mistakes get one sentence saying what to do.
    let refused = |args: &[&str], needle: &str| {
        let mut all = vec!["note", "add", circle.as_str()];
        all.extend(args);
        let run = a.cercle(&all);
        assert_ne!(run.code, Some(0), "{args:?} was taken");
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    };
    refused(&["--kind", "vitals", "--bp", "132-78"], "--bp 132/78");
    refused(&["Pouls", "--hr", "84"], "--kind vitals");
    refused(
        &["--kind", "vitals", "--hr", "400"],
        "--hr 400 is outside 10–300 /min",
    );
    refused(
        &["--kind", "vitals", "--temp", "37.2.1"],
        "--temp takes a number, e.g. --temp 37,2",
    );
    refused(&["--kind", "vitals"], "text");
}

/// A member's webhook (a phone's push service, an SMS gateway) is told of an alert from
/// another member addressed to them (by name), and of nothing else: the request names no
/// patient, no note text and no circle id, only an opaque handle and how many alerts wait. Notes that are not alerts,
/// alerts for others (the coordinators) and the member's own alerts send nothing.
#[test]
fn an_alert_reaches_the_members_webhook_which_learns_nothing_about_the_patient() {
    let (a, b, _c, circle) = team();
    let hook = cercle_tests::webhook::Receiver::start();
    // A plain-http webhook to another machine is refused with what to do.
    let far = b.cercle(&[
        "config",
        "set",
        "notify.webhook",
        "http://sms.example.fr/hook",
    ]);
    assert_ne!(far.code, Some(0));
    assert!(far.stderr.contains("https"), "{}", far.stderr);
    b.json(&["config", "set", "notify.webhook", &hook.url()]);
    let _nodes = pair_on_loopback(&a, &b, &circle);

    let plain = "Pansement refait, plaie propre";
    a.json(&["note", "add", &circle, plain]);
    b.json(&[
        "note",
        "add",
        &circle,
        "Mon alerte à moi",
        "--kind",
        "alert",
    ]);
    // For the coordinators (the default): not B's to act on.
    a.json(&[
        "note",
        "add",
        &circle,
        "Rappeler la pharmacie",
        "--kind",
        "alert",
    ]);
    let alert = "Chute ce matin: appeler le médecin traitant";
    a.json(&[
        "note", "add", &circle, alert, "--kind", "alerte", "--to", "julien",
    ]);
    let wrong = a.cercle(&["note", "add", &circle, "Pansement", "--to", "julien"]);
    assert!(
        wrong.stderr.contains("only an alert names who must act"),
        "{}",
        wrong.stderr
    );
    assert!(
        wait_until(30, || has_note(&b, &circle, alert)),
        "B never got the alert"
    );
    assert!(
        wait_until(15, || !hook.requests().is_empty()),
        "the webhook was never called"
    );
    // Time for a wrong call (for the note or B's own alert) to arrive too.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let body: serde_json::Value = serde_json::from_str(&requests[0].body)
        .unwrap_or_else(|e| panic!("{e}: {}", requests[0].body));
    assert_eq!(body["event"], "alert");
    assert_eq!(body["count"], 1);
    let handle = body["circle"].as_str().unwrap_or_default();
    assert_eq!(handle.len(), 16, "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "{body}");
    let raw = requests[0].raw.to_lowercase();
    for secret in [
        "durand",
        "jeanne",
        "chute",
        "médecin",
        "claire",
        "martin",
        &circle[..8],
        &circle,
    ] {
        assert!(!raw.contains(&secret.to_lowercase()), "{secret:?} in {raw}");
    }
}

/// An alert left unacknowledged past the circle's reminder delay is recalled to its
/// addressee: their webhook gets a `reminder` event naming no patient. Here the alert was
/// written five hours ago on a phone offline all morning, in a circle that recalls after 4 h.
#[test]
fn an_alert_waiting_past_the_circles_delay_is_recalled_to_its_addressee() {
    let (a, b, _c, circle) = team();
    let shown = a.json(&["circle", "show", &circle]);
    assert_eq!(shown["reminder_hours"], 24, "{shown}");
    let wrong = a.cercle(&["circle", "reminder", &circle, "soon"]);
    assert!(wrong.stderr.contains("is not a delay"), "{}", wrong.stderr);
    let set = a.json(&["circle", "reminder", &circle, "4h"]);
    assert_eq!(set["reminder_hours"], 4, "{set}");
    let hook = cercle_tests::webhook::Receiver::start();
    b.json(&["config", "set", "notify.webhook", &hook.url()]);
    let _nodes = pair_on_loopback(&a, &b, &circle);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let five_hours_ago = now - 5 * 3_600_000;
    let alert = "Plaie du talon inflammatoire, avis médical";
    let request = serde_json::json!({
        "request": "note_add",
        "circle": circle,
        "texts": [alert],
        "kind": "alert",
        "at": five_hours_ago,
        "to": "julien",
    });
    let (code, body) = cercle_tests::api_call(&a, &request);
    assert_eq!(code, 200, "{body}");
    let recalled = || {
        hook.requests()
            .into_iter()
            .find(|r| r.body.contains("\"reminder\""))
    };
    assert!(
        wait_until(30, || recalled().is_some()),
        "{:#?}",
        hook.requests()
    );
    let reminder = recalled().unwrap_or_else(|| panic!("no reminder"));
    let body: serde_json::Value = serde_json::from_str(&reminder.body).unwrap_or_default();
    assert_eq!(body["event"], "reminder");
    assert_eq!(body["count"], 1);
    let raw = reminder.raw.to_lowercase();
    for secret in ["durand", "plaie", "claire", &circle[..8]] {
        assert!(!raw.contains(secret), "{secret:?} in {raw}");
    }
}

/// A team's own circle (no patient: the health centre's staff thread) holds messages and
/// documents only: a message reaches the other member, the page opens on the messages
/// with no notebook nor patient tab, and a note or a FHIR export is refused in one sentence.
#[test]
fn a_team_circle_carries_messages_and_no_patient() {
    let a = TestHome::new();
    let b = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    b.init("Julien Petit", "infirmier");
    let both = a.cercle(&["circle", "create", "--team", "x", "--patient", "Jeanne"]);
    assert_ne!(both.code, Some(0));
    let team = a.json(&["circle", "create", "--team", "MSP des Tilleuls — équipe"]);
    assert_eq!(team["team"], true, "{team}");
    let circle = team["id"].as_str().unwrap_or_default().to_string();
    a.add_member(&circle, &b.card(), "professional");
    let _nodes = pair_on_loopback(&a, &b, &circle);
    let said = "Réunion d'équipe jeudi 13 h, salle 2";
    b.json(&["msg", "send", &circle, said]);
    let got = wait_until(30, || {
        a.json(&["msg", "list", &circle, "--no-mark-read"])
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["text"] == said))
    });
    assert!(got, "A never got B's message");
    let note = a.cercle(&["note", "add", &circle, "Pansement"]);
    assert!(note.stderr.contains("a team's circle"), "{}", note.stderr);
    let fhir = a.cercle(&["export", &circle, "--format", "fhir", "--out", "x.json"]);
    assert!(fhir.stderr.contains("a team's circle"), "{}", fhir.stderr);

    let web = cercle_tests::browser::WebSession::login(&a.ui_link());
    let (_, home) = web.get("/");
    assert!(
        home.contains("MSP des Tilleuls — équipe") && home.contains("Équipe"),
        "{home}"
    );
    assert!(
        home.contains(&format!("href=\"/c/{circle}/messages\"")),
        "{home}"
    );
    let (code, headers, _) = web.get_with_headers(&format!("/c/{circle}"));
    assert_eq!(code, 303);
    assert_eq!(
        headers.get("location").map(String::as_str),
        Some(format!("/c/{circle}/messages").as_str())
    );
    let (_, messages) = web.get(&format!("/c/{circle}/messages"));
    assert!(messages.contains(said), "{messages}");
    assert!(
        !messages.contains(&format!("href=\"/c/{circle}/patient\"")),
        "{messages}"
    );
}
