//! A member removed from a circle, through real `cercle up` processes: what they wrote before
//! the removal reaches every member, even one that was offline and gets it later from
//! another member; nothing they write afterwards is taken.

use cercle_tests::{TestHome, up_on_loopback, wait_until};

fn member(name: &str, profession: &str) -> TestHome {
    let h = TestHome::new();
    h.init(name, profession);
    h
}

#[test]
fn a_removed_members_notes_from_before_the_removal_reach_a_member_who_was_offline() {
    let gp = member("Dr Claire Martin", "médecin généraliste");
    let nurse = member("Julien Petit", "infirmier");
    let physio = member("Anne Leroy", "kinésithérapeute");
    let circle = gp.create_circle("Jeanne Durand");
    gp.add_member(&circle, &nurse.card(), "professional");
    gp.add_member(&circle, &physio.card(), "professional");
    let node_gp = up_on_loopback(&gp, &[]);
    let mut node_nurse = up_on_loopback(&nurse, &[&node_gp]);
    let mut node_physio = up_on_loopback(&physio, &[&node_gp]);
    nurse.accept(&circle);
    physio.accept(&circle);
    // The physiotherapist goes offline (a rural round) before the nurse's last notes.
    node_physio.stop();

    let before = "Pansement refait, plaie propre";
    nurse.json(&["note", "add", &circle, before]);
    assert!(
        wait_until(20, || gp.note_texts(&circle).iter().any(|t| t == before)),
        "the GP never received the nurse's note"
    );
    // The nurse leaves the team; the GP removes her while the physiotherapist is away.
    node_nurse.stop();
    gp.json(&["circle", "remove", &circle, "Julien Petit"]);
    // What the nurse writes on her own node afterwards goes nowhere.
    let after = "Note écrite après le retrait";
    let _ = nurse.cercle(&["note", "add", &circle, after]);

    // The physiotherapist comes back: the GP passes on what the nurse wrote before.
    let _node_physio = up_on_loopback(&physio, &[&node_gp]);
    assert!(
        wait_until(30, || physio
            .note_texts(&circle)
            .iter()
            .any(|t| t == before)),
        "the nurse's note from before her removal never reached the physiotherapist: {:?}\n{}",
        physio.note_texts(&circle),
        physio.json(&["circle", "show", &circle])
    );
    let shown = physio.json(&["circle", "show", &circle]);
    assert_eq!(
        shown["refused"], 0,
        "the physiotherapist refused data: {shown}"
    );
    // And the nurse, connecting again, has nothing she wrote after taken by anyone.
    let _node_nurse = up_on_loopback(&nurse, &[&node_gp]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    for home in [&gp, &physio] {
        assert!(
            !home.note_texts(&circle).iter().any(|t| t == after),
            "a note written after the removal was taken"
        );
    }
}
