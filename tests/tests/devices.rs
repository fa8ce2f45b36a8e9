//! A member's devices, through real `cercle` processes on loopback: a second home paired
//! with `init --pair` is the same member, receives the member's circles with their notes,
//! and writes notes that reach another member; once revoked from the first device, it
//! receives nothing written after, while the member's remaining device does, and the team
//! sees the revocation.

use cercle_tests::{TestHome, up_on_loopback, wait_until};

fn note_listed(home: &TestHome, circle: &str, text: &str) -> bool {
    home.note_texts(circle).iter().any(|t| t == text)
}

/// What `home`'s node received from all its peers, in sync data bytes.
fn data_received(home: &TestHome) -> u64 {
    home.json(&["peers"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["data_bytes_received"].as_u64())
        .sum()
}

#[test]
fn a_paired_device_is_the_same_member_and_once_revoked_receives_nothing_more() {
    let laptop = TestHome::new();
    let nurse = TestHome::new();
    let desktop = TestHome::new();
    laptop.init("Dr Claire Martin", "médecin généraliste");
    nurse.init("Julien Moreau", "infirmier");
    let circle = laptop.create_circle("Jeanne Durand");
    laptop.json(&["note", "add", &circle, "Écrit avant l'appairage"]);
    laptop.add_member(&circle, &nurse.card(), "professional");
    let node_laptop = up_on_loopback(&laptop, &[]);
    let _node_nurse = up_on_loopback(&nurse, &[&node_laptop]);
    nurse.accept(&circle);

    // Pairing: a code from the first device; `init --pair` on a new home.
    let code = laptop.json(&["device", "pair"])["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(code.starts_with("cerclepair1"), "{code}");
    // A code typed wrong is refused before anything is made.
    let typo = format!("{}x", &code[..code.len() - 1]);
    let refused = desktop.cercle(&["init", "--pair", &typo]);
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("damaged"), "{}", refused.stderr);
    assert!(desktop.cercle(&["whoami"]).code != Some(0));
    let paired = desktop.json(&["init", "--pair", &code]);
    let first = laptop.json(&["whoami"]);
    assert_eq!(paired["member"], first["member"], "{paired}");
    assert_ne!(paired["device"], first["device"]);
    assert_eq!(paired["name"], "Dr Claire Martin");
    // The code is spent: another home cannot pair with it.
    let other = TestHome::new();
    let again = other.cercle(&["init", "--pair", &code]);
    assert_ne!(again.code, Some(0));
    assert!(again.stderr.contains("already used"), "{}", again.stderr);

    // The new device's node reaches the first device by itself (no --peer) and receives
    // the circle with its notes.
    let _node_desktop = up_on_loopback(&desktop, &[]);
    assert!(
        wait_until(30, || note_listed(
            &desktop,
            &circle,
            "Écrit avant l'appairage"
        )),
        "the paired device never received the circle: {:?}",
        desktop.cercle(&["--json", "circle", "list"]).stdout
    );
    let devices = laptop.json(&["device", "list"]);
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(2),
        "{devices}"
    );
    assert_eq!(devices["holds_member_key"], true);
    // A paired device pairs no other: the member key stays on the first.
    let refused = desktop.cercle(&["device", "pair"]);
    assert!(refused.stderr.contains("member key"), "{}", refused.stderr);

    // A note written on the new device reaches the nurse, as the doctor's.
    desktop.json(&["note", "add", &circle, "Écrit sur le poste du cabinet"]);
    assert!(
        wait_until(30, || note_listed(
            &nurse,
            &circle,
            "Écrit sur le poste du cabinet"
        )),
        "the nurse never received the note written on the paired device"
    );
    let author = nurse
        .json(&["note", "list", &circle])
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["text"] == "Écrit sur le poste du cabinet")
        .map(|n| n["author_name"].clone());
    assert_eq!(author, Some("Dr Claire Martin".into()));

    // The desktop is lost: revoked from the laptop. The nurse's node sees it.
    let desktop_device = paired["device"].as_str().unwrap_or_default().to_string();
    let revoked = laptop.json(&["device", "revoke", &desktop_device[..12]]);
    assert_eq!(revoked["circles"], 1, "{revoked}");
    assert!(
        wait_until(30, || {
            nurse.json(&["circle", "show", &circle])["revoked_devices"]
                .as_array()
                .is_some_and(|r| {
                    r.iter().any(|d| {
                        d["device"] == desktop_device.as_str() && d["name"] == "Dr Claire Martin"
                    })
                })
        }),
        "the team never saw the revocation"
    );
    let shown = nurse.cercle(&["circle", "show", &circle]).ok().stdout;
    assert!(shown.contains("a device of Dr Claire Martin"), "{shown}");

    // A note the nurse writes now reaches the laptop and not the revoked desktop.
    let before = data_received(&desktop);
    let refused_before = desktop.json(&["circle", "show", &circle])["refused"].clone();
    nurse.json(&["note", "add", &circle, "Après la révocation"]);
    assert!(
        wait_until(30, || note_listed(&laptop, &circle, "Après la révocation")),
        "the member's remaining device never received the note"
    );
    // The note has had time to go everywhere it may go.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!note_listed(&desktop, &circle, "Après la révocation"));
    assert_eq!(
        data_received(&desktop),
        before,
        "the revoked device was sent data"
    );
    assert_eq!(
        desktop.json(&["circle", "show", &circle])["refused"],
        refused_before,
        "the revoked device received something it refused"
    );

    // What the lost device writes now is taken by no one.
    desktop.json(&["note", "add", &circle, "Écrit par un appareil perdu"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!note_listed(&nurse, &circle, "Écrit par un appareil perdu"));
    assert!(!note_listed(
        &laptop,
        &circle,
        "Écrit par un appareil perdu"
    ));
}
