//! The web UI on a phone, from the member's own node over the LAN: a node in a network
//! namespace serves its pages over TLS on the namespace's address (not loopback); a headless
//! Chromium as a phone (390 × 844, touch) that trusts only the certificate whose fingerprint
//! the node shows gets nothing until paired; paired from a one-time link, it reads the
//! notebook and adds a note that reaches another member; it says "hors ligne" while the node
//! is down and is still paired when it is back; once its session is revoked it gets nothing.
//!
//! Creating namespaces needs root and `ip`; without them the test says it was skipped and
//! why. CI runs as root.

// Saying why the test was skipped is its output.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use cercle_tests::browser::Driver;
use cercle_tests::{Daemon, Netns, TestHome, is_root, wait_until};

const UI: &str = "10.78.0.1:18443";

fn page_source(b: &cercle_tests::browser::Browser) -> String {
    b.script("return document.documentElement.outerHTML;")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_paired_phone_reads_and_writes_the_notebook_over_tls_and_nothing_else_gets_in() {
    if !is_root() {
        eprintln!("SKIPPED: creating network namespaces needs root (CI runs as root)");
        return;
    }
    // The practice's LAN: the node's machine (a namespace) and this one, joined by a veth.
    let lan = match Netns::create(&["phone"]).and_then(|mut n| {
        n.link(0, "10.78.0.1", None, "10.78.0.2")?;
        Ok(n)
    }) {
        Ok(lan) => lan,
        Err(e) => {
            eprintln!("SKIPPED: cannot create the namespace: {e}");
            return;
        }
    };
    let doctor = TestHome::new();
    let nurse = TestHome::new();
    doctor.init("Dr Claire Martin", "médecin généraliste");
    nurse.init("Julien Moreau", "infirmier");
    let circle = doctor.create_circle("Jeanne Durand");
    doctor.add_member(&circle, &nurse.card(), "professional");
    doctor.json(&["note", "add", &circle, "Pansement refait, plaie propre"]);
    let in_doctor = |args: &[&str]| doctor.through(&lan.exec(0), args);
    let in_nurse = |args: &[&str]| nurse.through(&lan.exec(0), args);
    let doctor_args = [
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--ui-listen",
        UI,
    ];
    let mut node_doctor = Daemon::start(&doctor, &lan.exec(0), &doctor_args);
    let peer = node_doctor.tcp_address();
    let nurse_args = [
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--peer",
        &peer,
    ];
    let _node_nurse = Daemon::start(&nurse, &lan.exec(0), &nurse_args);
    cercle_tests::accept_with(in_nurse, &circle);

    // The pairing link and the certificate's fingerprint, as the computer shows them.
    let pairing = in_doctor(&["--json", "phone", "pair"]).ok().json();
    let link = pairing["link"].as_str().unwrap_or_default().to_string();
    let pin = pairing["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        link.starts_with(&format!("https://{UI}/phone/pair?code=")),
        "{link}"
    );

    let driver = Driver::start();
    // A phone that is not paired gets the page that says so, and no care data.
    let stranger = driver.phone(&pin);
    stranger.goto(&format!("https://{UI}/c/{circle}"));
    assert!(
        stranger.text("main").contains("pas appairé"),
        "{}",
        stranger.text("main")
    );
    assert!(!page_source(&stranger).contains("Pansement"));
    // Nor can it sign in with a token or guess a pairing.
    stranger.goto(&format!("https://{UI}/phone/pair?code=0000"));
    stranger.click("#phone-pair");
    let refused = stranger.wait_for_text("main", "inconnu", Duration::from_secs(10));
    assert!(refused.is_some(), "{}", stranger.text("main"));
    stranger.goto(&format!("https://{UI}/"));
    assert!(!page_source(&stranger).contains("Jeanne Durand"));

    // The member's phone opens the link, names itself and is in.
    let phone = driver.phone(&pin);
    phone.goto(&link);
    phone.type_in("#phone-name", " de Claire");
    phone.click("#phone-pair");
    assert!(
        phone
            .wait_for_text("main", "Jeanne Durand", Duration::from_secs(10))
            .is_some(),
        "{}",
        phone.text("main")
    );
    // The link was for one phone: used again, it opens nothing.
    stranger.goto(&link);
    stranger.click("#phone-pair");
    assert!(
        stranger
            .wait_for_text("main", "inconnu", Duration::from_secs(10))
            .is_some()
    );
    let notebook = format!("https://{UI}/c/{circle}");
    phone.goto(&notebook);
    assert!(
        phone
            .text("#live-notes")
            .contains("Pansement refait, plaie propre")
    );
    // At phone width nothing scrolls sideways; the page installs (manifest and icon).
    let fits = phone.script("return document.documentElement.scrollWidth <= window.innerWidth;");
    assert_eq!(fits, true, "the notebook scrolls sideways on a phone");
    let manifest = phone.script(
        "return fetch('/manifest.webmanifest').then(r => r.json()).then(m => m.display + ' ' + m.icons.length);",
    );
    assert_eq!(manifest, "standalone 2");
    let faults = phone.accessibility_faults();
    assert!(faults.is_empty(), "the notebook on a phone: {faults:?}");

    // A note written on the phone (the form unfolded by a tap) reaches the nurse's node.
    phone.click("#compose summary");
    phone.select("#note-kind", "care");
    phone.type_in(
        "#note-text",
        "Écrit au lit de la patiente, depuis le téléphone",
    );
    phone.click("form[action$='/notes'] button[type=submit]");
    assert!(
        phone
            .wait_for_text(
                "#live-notes",
                "depuis le téléphone",
                Duration::from_secs(10)
            )
            .is_some()
    );
    let reached = wait_until(30, || {
        let run = in_nurse(&["--json", "note", "list", &circle]);
        run.code == Some(0)
            && run.json().as_array().is_some_and(|n| {
                n.iter()
                    .any(|n| n["text"] == "Écrit au lit de la patiente, depuis le téléphone")
            })
    });
    assert!(
        reached,
        "the note written on the phone never reached the nurse"
    );

    // The node stops: the open page says it is offline; back, the phone is still paired.
    node_doctor.stop();
    let offline = wait_until(20, || {
        phone.script("return !document.getElementById('node-unreachable').hidden;") == true
    });
    assert!(
        offline,
        "the phone's page never said the node was unreachable"
    );
    assert!(phone.text("#node-unreachable").contains("Hors ligne"));
    let _node_doctor = Daemon::start(&doctor, &lan.exec(0), &doctor_args);
    phone.goto(&notebook);
    assert!(
        phone
            .wait_for_text("#live-notes", "Pansement", Duration::from_secs(10))
            .is_some(),
        "the phone lost its pairing when the node restarted"
    );

    // The phone is listed with its name; revoked, it gets nothing.
    let phones = in_doctor(&["--json", "phone", "list"]).ok().json();
    let listed = phones.as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{phones}");
    assert_eq!(listed[0]["name"], "Téléphone de Claire");
    let id = listed[0]["id"].as_str().unwrap_or_default().to_string();
    in_doctor(&["phone", "revoke", &id]).ok();
    phone.goto(&notebook);
    assert!(
        phone.text("main").contains("pas appairé"),
        "{}",
        phone.text("main")
    );
    assert!(!page_source(&phone).contains("Pansement"));
}
