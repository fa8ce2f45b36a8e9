//! Joining a circle takes its user's consent, through the real `cercle up` processes: a
//! node added to a circle (by a colleague or by a stranger holding its card) lists it only
//! as an invitation, in the CLI and on the web UI's home page, until its user accepts; a
//! declined circle is never offered again, even after a restart; a colleague's circles
//! accepted always are joined without asking, a stranger's still are not.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]

use cercle_tests::browser::WebSession;
use cercle_tests::{TestHome, up_on_loopback, wait_until};

fn member(name: &str, profession: &str) -> TestHome {
    let h = TestHome::new();
    h.init(name, profession);
    h
}

/// The rows of `circle list` with `state` (absent for circles held).
fn rows(home: &TestHome, state: Option<&str>) -> Vec<serde_json::Value> {
    home.json(&["circle", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"].as_str() == state)
        .cloned()
        .collect()
}

fn web(home: &TestHome) -> WebSession {
    let api: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("api.json")).unwrap()).unwrap();
    WebSession::login(&format!(
        "http://{}/?token={}",
        api["address"].as_str().unwrap(),
        api["token"].as_str().unwrap()
    ))
}

fn csrf(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string()
}

#[test]
fn a_circle_is_joined_only_once_its_user_accepts_and_a_declined_one_never_returns() {
    let a = member("Dr Claire Martin", "médecin généraliste");
    let b = member("Julien Moreau", "infirmier");
    let mallory = member("Mallory", "inconnu");
    let da = up_on_loopback(&a, &[]);
    let mut db = up_on_loopback(&b, &[&da]);

    // A colleague adds B: B's node lists an invitation, not the circle.
    let circle = a.create_circle("Jeanne Durand");
    a.add_member(&circle, &b.card(), "professional");
    assert!(
        wait_until(30, || !rows(&b, Some("invited")).is_empty()),
        "no invitation reached B"
    );
    assert!(rows(&b, None).is_empty(), "joined without consent");
    let invited = &rows(&b, Some("invited"))[0];
    assert_eq!(invited["id"], circle.as_str());
    assert_eq!(invited["added_by_name"], "Dr Claire Martin");
    let human = b.cercle(&["circle", "list"]).ok().stdout;
    assert!(
        human.contains("Dr Claire Martin added you as professional to the circle of Jeanne Durand"),
        "{human}"
    );

    // The web UI says it, in French, and joins from its button.
    let session = web(&b);
    let (_, page) = session.get("/");
    assert!(
        page.contains("Dr Claire Martin vous a ajouté·e au cercle de Jeanne Durand"),
        "{page}"
    );
    let (code, _) = session.post(
        &format!("/invitations/{circle}/accept"),
        &[("csrf", &csrf(&page))],
    );
    assert_eq!(code, 303);
    assert_eq!(rows(&b, None)[0]["id"], circle.as_str());
    a.json(&["note", "add", &circle, "Passage du soir, RAS."]);
    assert!(wait_until(30, || b
        .note_texts(&circle)
        .iter()
        .any(|t| t.contains("RAS"))));

    // A's next circle: the page offers to accept A's circles always, and B ticks it; the
    // circle after that is joined without asking.
    let second = a.create_circle("Paul Girard");
    a.add_member(&second, &b.card(), "professional");
    assert!(wait_until(30, || !rows(&b, Some("invited")).is_empty()));
    let (_, page) = session.get("/");
    assert!(
        page.contains("Toujours accepter les cercles de Dr Claire Martin"),
        "{page}"
    );
    let (code, _) = session.post(
        &format!("/invitations/{second}/accept"),
        &[("csrf", &csrf(&page)), ("always", "1")],
    );
    assert_eq!(code, 303);
    let third = a.create_circle("Louise Petit");
    a.add_member(&third, &b.card(), "professional");
    assert!(
        wait_until(30, || rows(&b, None).len() == 3),
        "A's third circle was not joined: {:?}",
        b.json(&["circle", "list"])
    );
    assert!(rows(&b, Some("invited")).is_empty());

    // A stranger holding B's card adds B to a circle of its own: an invitation at most.
    let dm = up_on_loopback(&mallory, &[&db]);
    let spam = mallory.create_circle("Faux Patient");
    mallory.add_member(&spam, &b.card(), "coordinator");
    assert!(
        wait_until(30, || rows(&b, Some("invited"))
            .iter()
            .any(|r| r["id"] == spam.as_str())),
        "the stranger's circle never showed as an invitation"
    );
    assert_eq!(rows(&b, None).len(), 3, "the stranger's circle was joined");
    let (_, page) = session.get("/");
    assert!(
        page.contains("aucun cercle"),
        "no warning about a stranger: {page}"
    );
    b.json(&["circle", "decline", &spam[..12]]);
    assert!(rows(&b, Some("invited")).is_empty());

    // After a restart, still connected to the stranger, it is not offered again.
    db.stop();
    let _db = up_on_loopback(&b, &[&da, &dm]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(rows(&b, Some("invited")).is_empty());
    assert_eq!(rows(&b, None).len(), 3);
    let refused = b.cercle(&["circle", "accept", &spam[..12]]);
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("no invitation"),
        "{}",
        refused.stderr
    );
}
