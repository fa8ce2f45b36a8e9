//! Break-glass with real nodes and a relay on loopback.
//!
//! The story: a GP (coordinator) and a nurse share a patient's circle through a relay; a
//! physiotherapist left it between their two notes (a new key epoch). The GP names the
//! territory's on-call doctor and prints the patient's emergency code. At
//! night the on-call doctor, whose node shares no circle with the team and knows only the
//! code, asks for access with a reason: a member's node checks the on-call list and lets
//! her read within seconds; the nurse's pages show the banner with her name, the reason and
//! the end; the audit shows the grant and what she read. A professional the list does not name is refused.
//! When the access expires, a member's node removes her and starts a new key epoch: a note
//! written after that reaches the nurse and never the on-call doctor. The relay never held
//! her name nor the reason in clear.

use cercle_tests::browser::WebSession;
use cercle_tests::{Daemon, Relay, TestHome, wait_until};

const PATIENT: &str = "Lucienne Faure-Delacroix";
const REASON: &str = "Appel du 15 : chute nocturne, patiente confuse";
const ON_CALL: &str = "Dr Nadia Oulmi";
const NOTES: [&str; 2] = [
    "Traitement par AVK, INR 2,8 ce matin",
    "Pansement de l'ulcère refait, pas de signe infectieux",
];
const AFTER: &str = "Retour au calme, surveillance rapprochée demain matin";

fn node(home: &TestHome, relay: &Relay, peers: &[&Daemon]) -> Daemon {
    cercle_tests::up_with_relay(home, relay, peers)
}

fn emergency_members(home: &TestHome, circle: &str) -> Vec<serde_json::Value> {
    home.json(&["circle", "show", circle])["emergency"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn an_on_call_doctor_reads_with_the_emergency_code_the_team_sees_it_and_it_ends_on_time() {
    let relay_home = TestHome::new();
    let relay = Relay::start(&relay_home, &[], &["--listen", "/ip4/127.0.0.1/tcp/0"]);
    let (gp, nurse, on_call, stranger) = (
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
        TestHome::new(),
    );
    gp.init("Dr Hélène Brissac", "médecin généraliste");
    nurse.init("Karim Benali", "infirmier");
    on_call.init(ON_CALL, "médecin généraliste");
    stranger.init("Dr Paul Inconnu", "médecin généraliste");
    let circle = gp.create_circle(PATIENT);
    gp.json(&["circle", "relays", &circle, &relay.address_on("127.0.0.1")]);
    gp.add_member(&circle, &nurse.card(), "professional");
    let former = TestHome::new();
    former.init("Sophie Marchetti", "masseur-kinésithérapeute");
    gp.add_member(&circle, &former.card(), "professional");
    let epoch = |home: &TestHome| home.json(&["circle", "show", &circle])["epoch"].clone();

    // Only a coordinator names who may break the glass.
    let listed = gp.json(&["circle", "on-call", &circle, "--card", &on_call.card()]);
    assert_eq!(listed["on_call"][0]["name"], ON_CALL, "{listed}");

    let mut node_gp = node(&gp, &relay, &[]);
    let mut node_nurse = node(&nurse, &relay, &[&node_gp]);
    nurse.accept(&circle);
    let not_coordinator = nurse.cercle(&["circle", "on-call", &circle, "--card", &stranger.card()]);
    assert_ne!(not_coordinator.code, Some(0));
    assert!(
        not_coordinator.stderr.contains("role"),
        "{}",
        not_coordinator.stderr
    );
    gp.json(&["note", "add", &circle, NOTES[0]]);
    // A member leaves: what follows is sealed in a new epoch, and the on-call doctor must
    // read both.
    gp.json(&["circle", "remove", &circle, "Sophie"]);
    assert!(
        wait_until(60, || epoch(&nurse) == epoch(&gp)),
        "the nurse's node did not take the removal's epoch"
    );
    nurse.json(&["note", "add", &circle, NOTES[1]]);
    assert!(
        wait_until(60, || gp.note_texts(&circle).len() == 2
            && nurse.note_texts(&circle).len() == 2),
        "the team's notes did not reach both nodes"
    );
    let code = gp.json(&["circle", "emergency-code", &circle]);
    let code = code["code"].as_str().unwrap_or_default().to_string();
    assert!(code.starts_with("cercleurg1"), "{code}");
    assert!(!code.contains(PATIENT));

    // The on-call doctor's node knows no one: only the relay, through the code.
    let mut node_on_call = Daemon::start(
        &on_call,
        &[],
        &["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"],
    );
    let granted = on_call.json(&[
        "breakglass",
        &code,
        "--reason",
        REASON,
        "--minutes",
        "1",
        "--timeout",
        "60",
    ]);
    assert_eq!(granted["state"], "joined", "{granted}");
    assert_eq!(granted["circle"], circle.as_str());
    assert!(
        wait_until(30, || on_call.note_texts(&circle).len() == 2),
        "the on-call doctor cannot read the notebook: {:?}",
        on_call.note_texts(&circle)
    );
    // Read-only.
    let write = on_call.cercle(&["note", "add", &circle, "note d'astreinte"]);
    assert_ne!(write.code, Some(0), "an emergency access wrote a note");

    // The nurse's pages show who, why and until when.
    assert!(
        wait_until(30, || emergency_members(&nurse, &circle).len() == 1),
        "the nurse's node does not show the emergency access"
    );
    let shown = emergency_members(&nurse, &circle);
    assert_eq!(shown[0]["name"], ON_CALL, "{shown:?}");
    assert_eq!(shown[0]["reason"], REASON, "{shown:?}");
    let web = WebSession::login(&nurse.ui_link());
    for path in [format!("/c/{circle}"), format!("/c/{circle}/messages")] {
        let (status, page) = web.get(&path);
        assert_eq!(status, 200);
        assert!(
            page.contains("Accès d'urgence par")
                && page.contains(ON_CALL)
                && page.contains("chute nocturne"),
            "no emergency banner on {path}: {page}"
        );
    }
    // The audit shows the grant with its reason.
    let trail = nurse.json(&["audit", &circle]);
    let rows = trail["writes"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().any(|w| w["action"] == "emergency_access"
            && w["about"]
                .as_str()
                .is_some_and(|a| a.contains(ON_CALL) && a.contains("chute"))),
        "no emergency access in the audit: {trail}"
    );

    // What she read is in the team's audit trail too, told by her node.
    assert!(
        wait_until(30, || {
            let trail = gp.json(&["audit", &circle]);
            trail["writes"].as_array().is_some_and(|rows| {
                rows.iter().any(|w| {
                    w["action"] == "emergency_read"
                        && w["document"] == "liaison_notebook"
                        && w["name"] == ON_CALL
                        && w["received"].is_number()
                })
            })
        }),
        "the on-call doctor's reading of the notebook is not in the GP's audit: {}",
        gp.json(&["audit", &circle])
    );

    // A professional the on-call list does not name is refused.
    let mut node_stranger = Daemon::start(
        &stranger,
        &[],
        &["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"],
    );
    let refused = stranger.cercle(&[
        "breakglass",
        &code,
        "--reason",
        "curiosité",
        "--timeout",
        "60",
    ]);
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("on-call list"),
        "{}",
        refused.stderr
    );
    node_stranger.stop();

    // The access expires: a member's node removes her and starts a new key epoch.
    let epoch_before = epoch(&gp);
    assert!(
        wait_until(150, || emergency_members(&gp, &circle).is_empty()
            && emergency_members(&nurse, &circle).is_empty()),
        "the emergency access never ended"
    );
    assert_ne!(
        epoch(&gp),
        epoch_before,
        "no new epoch at the end of the access"
    );
    assert!(
        wait_until(30, || epoch(&nurse) == epoch(&gp)),
        "the nurse's node did not take the new epoch"
    );
    gp.json(&["note", "add", &circle, AFTER]);
    assert!(
        wait_until(60, || nurse.note_texts(&circle).iter().any(|n| n == AFTER)),
        "the note after the access did not reach the nurse"
    );
    // Long enough for it to have reached the on-call doctor too, had it been sent.
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(
        !on_call.note_texts(&circle).iter().any(|n| n == AFTER),
        "the on-call doctor received a note written after the access ended"
    );
    // Her own node says the access ended.
    let hers = WebSession::login(&on_call.ui_link());
    let (_, page) = hers.get(&format!("/c/{circle}"));
    assert!(
        page.contains("terminé le"),
        "her page does not say the access ended: {page}"
    );
    node_on_call.stop();
    node_nurse.stop();
    node_gp.stop();
    drop(relay);

    // The relay never held her name nor the reason in clear.
    for path in relay_home.files() {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let path = path.display();
        for needle in [REASON.as_bytes(), ON_CALL.as_bytes(), PATIENT.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{path} holds {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}
