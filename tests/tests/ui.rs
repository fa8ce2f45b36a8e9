//! The web UI in a real headless Chromium, against the demo team's running nodes: the GP
//! (A) and the home nurse (B) each in their own browser. What they type on one side appears
//! on the other without a reload; acknowledgements and read receipts travel back; the pages
//! refuse strangers and forged forms; French by default, English on every page; and
//! screenshots of the main pages at 1280 and 800 px, with no sideways scrolling.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]
// The test reports where its screenshots are and how fast a note reached the other page.
#![allow(clippy::print_stderr)]

use std::time::Duration;

use cercle_tests::browser::{Browser, Driver, WebSession, screenshot_dir};
use cercle_tests::demo::Demo;
use cercle_tests::{TestHome, up_on_loopback, wait_until};

/// The base address of a login link.
fn base(link: &str) -> String {
    link.split("/?").next().unwrap_or(link).to_string()
}

/// The id of the notebook entry, message or medication (`li`) whose text contains `text`.
fn item_id(browser: &Browser, list: &str, text: &str) -> String {
    let js = format!(
        "const li = [...document.querySelectorAll('{list} > li')].find(l => l.textContent.includes({text:?})); return li ? li.id : '';"
    );
    browser.script(&js).as_str().unwrap_or_default().to_string()
}

fn form_token(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no form token in {page}"))
        .to_string()
}

#[test]
fn two_members_work_together_in_their_browsers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(tmp.path());
    let (gp, nurse) = (demo.url(0), demo.url(1));
    let driver = Driver::start();
    let a = driver.browser(1280, 900);
    let b = driver.browser(1280, 900);
    let shots = screenshot_dir();

    // A browser without the token gets the login page, in French, and no care data.
    a.goto(&format!("{}/", base(&gp)));
    assert_eq!(a.attr("html", "lang").as_deref(), Some("fr"));
    assert_eq!(a.text("h1"), "Connexion");
    let source = a.script("return document.documentElement.outerHTML;");
    assert!(!source.to_string().contains("Durand"), "{source}");
    a.screenshot(&shots.join("login-1280.png"));

    // The login link signs in and leaves the address bar at once.
    a.goto(&gp);
    assert!(!a.url().contains("token"), "{}", a.url());
    assert_eq!(a.text("h1"), "Vos cercles de soins");
    assert!(a.text("ul.circles").contains("Jeanne Durand"));
    let circle = a
        .attr("ul.circles h2 a", "href")
        .and_then(|h| h.strip_prefix("/c/").map(str::to_string))
        .unwrap_or_else(|| panic!("no circle link"));
    let notebook = |link: &str| format!("{}/c/{circle}", base(link));
    // Pages name a circle by its whole id: a one-character prefix finds nothing.
    let (code, _) = WebSession::login(&gp).get(&format!("/c/{}", &circle[..1]));
    assert_eq!(code, 404);
    b.goto(&nurse);
    b.goto(&notebook(&nurse));
    a.goto(&notebook(&gp));

    // A types a note; it appears in B's open page within 2 s, without a reload.
    b.script("window.cercleNoReload = 42; return 1;");
    let text = "Tension 13/8, pouls régulier, patiente souriante";
    a.select("#note-kind", "observation");
    a.type_in("#note-text", text);
    a.click("form[action$='/notes'] button[type=submit]");
    let shown = a.wait_for_text("#live-notes", text, Duration::from_secs(5));
    assert!(
        shown.is_some(),
        "{}: {}",
        a.url(),
        a.script("return document.documentElement.outerHTML;")
    );
    let took = b.wait_for_text("#live-notes", text, Duration::from_secs(2));
    assert!(took.is_some(), "B's page did not show A's note within 2 s");
    assert_eq!(
        b.script("return window.cercleNoReload;"),
        42,
        "B's page reloaded"
    );
    eprintln!("A's note reached B's open page in {took:?}");

    // The notebook of one day, to print: that day's notes only, headed by the period (the
    // demo's notes of the days before are left out).
    let count = "return document.querySelectorAll('#live-notes li.note').length;";
    let all = b.script(count).as_i64().unwrap_or_default();
    let today = b.script(
        "const d = new Date(); return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0');",
    );
    let today = today.as_str().unwrap_or_default().to_string();
    b.goto(&format!("{}?from={today}&to={today}", notebook(&nurse)));
    let of_today = b.script(count).as_i64().unwrap_or_default();
    assert!(of_today >= 1 && of_today < all, "{of_today} of {all}");
    assert!(b.text("#live-notes").contains(text));
    let heading = b.script("return document.querySelector('.print-only.period').textContent;");
    assert!(
        heading
            .as_str()
            .is_some_and(|h| h.starts_with("Cahier de liaison · Jeanne Durand · du ")),
        "{heading}"
    );
    b.goto(&notebook(&nurse));

    // An alert from A, acknowledged on B, shows as acknowledged on A.
    // A names the nurse as who must act: flagged for her ("Pour : vous") until someone
    // other than A acknowledges it.
    let alert = "Chute ce matin, douleur hanche droite";
    a.select("#note-kind", "alert");
    a.type_in("#note-text", alert);
    let chosen = a.script(
        "const s = document.getElementById('note-to'); const o = [...s.options].find(o => o.text === 'Julien Moreau'); if (!o) return false; s.value = o.value; return true;",
    );
    assert_eq!(chosen, true, "the nurse is not among the addressees");
    a.click("form[action$='/notes'] button[type=submit]");
    assert!(
        b.wait_for_text("#live-notes", alert, Duration::from_secs(5))
            .is_some()
    );
    let id = item_id(&b, "#live-notes", alert);
    assert!(!id.is_empty());
    // Its author cannot close it: no button on A's page, and the node refuses it anyway.
    let buttons = a.script(&format!(
        "return document.querySelectorAll(\"[id='{id}'] .ack-button\").length;"
    ));
    assert_eq!(buttons, 0, "A may acknowledge A's own alert");
    assert!(
        a.text(&format!("[id='{id}']"))
            .contains("un autre membre de l'équipe l'acquittera")
    );
    assert!(
        b.text(&format!("[id='{id}']"))
            .contains("En attente d'acquittement")
    );
    assert_eq!(b.text(&format!("[id='{id}'] .to.for-me")), "Pour : vous");
    assert_eq!(a.text(&format!("[id='{id}'] .to")), "Pour : Julien Moreau");
    b.click(&format!("[id='{id}'] .ack-button"));
    assert!(
        b.wait_for_text(
            &format!("[id='{id}']"),
            "Acquittée par vous",
            Duration::from_secs(5)
        )
        .is_some()
    );
    let acked = a.wait_for_text(
        &format!("[id='{id}']"),
        "Acquittée par Julien Moreau",
        Duration::from_secs(5),
    );
    assert!(
        acked.is_some(),
        "A never saw B's acknowledgement: {}",
        a.text(&format!("[id='{id}']"))
    );

    // Vital signs typed in B's note form appear in the trend charts of A's open patient
    // page; a mistake in them is answered in the page's language, and nothing is written.
    a.goto(&format!("{}/patient", notebook(&gp)));
    b.goto(&notebook(&nurse));
    b.click("details.vitals-fields summary");
    b.type_in("#sign-hr", "400");
    b.click("form[action$='/notes'] button[type=submit]");
    assert!(
        b.wait_for_text(
            "main",
            "Fréquence cardiaque : 400 est hors de la plage 10 à 300 /min",
            Duration::from_secs(5)
        )
        .is_some(),
        "{}",
        b.text("main")
    );
    b.goto(&notebook(&nurse));
    b.click("details.vitals-fields summary");
    for (field, value) in [
        ("#sign-bp", "141/86"),
        ("#sign-hr", "97"),
        ("#sign-temp", "38,4"),
    ] {
        b.type_in(field, value);
    }
    b.click("form[action$='/notes'] button[type=submit]");
    assert!(
        b.wait_for_text(
            "#live-notes",
            "TA 141/86 mmHg · FC 97/min · T° 38,4 °C",
            Duration::from_secs(5)
        )
        .is_some(),
        "{}",
        b.text("#live-notes")
    );
    let charted = a.wait_for_text("#trend-hr .trend-last", "97 /min", Duration::from_secs(5));
    assert!(
        charted.is_some(),
        "A's chart: {}",
        a.text("section[aria-labelledby=trends]")
    );
    assert!(a.text("#trend-bp .trend-last").contains("141/86 mmHg"));
    assert!(a.text("#trend-temp .trend-last").contains("38,4 °C"));
    // The demo's earlier vitals and B's are both points of the heart-rate line.
    let points = a.script("return document.querySelectorAll('#trend-hr circle').length;");
    assert!(points.as_i64() >= Some(2), "{points}");
    a.screenshot(&shots.join("patient-trends-1280.png"));

    // A medication added and then stopped in A's page shows as stopped, with why and by
    // whom, on B's open patient page.
    b.goto(&format!("{}/patient", notebook(&nurse)));
    a.click("#add-medications-details summary");
    a.type_in("#med-name", "Furosémide 40 mg");
    a.type_in("#med-dose", "1 cp le matin");
    a.click("form[action$='/items/medications'] button[type=submit]");
    assert!(
        b.wait_for_text("ul.medications", "Furosémide 40 mg", Duration::from_secs(5))
            .is_some(),
        "{}",
        b.text("ul.medications")
    );
    let med = item_id(&a, "ul.medications", "1 cp le matin");
    assert!(!med.is_empty());
    a.click(&format!("[id='{med}'] details.stop summary"));
    a.type_in(
        &format!("[id='{med}'] input[name=reason]"),
        "hypotension orthostatique",
    );
    a.click(&format!("[id='{med}'] button[type=submit]"));
    let stopped = b.wait_for_text(
        &format!("[id='{med}'] .stopped-note"),
        "Dr Claire Martin : hypotension orthostatique",
        Duration::from_secs(5),
    );
    assert!(stopped.is_some(), "{}", b.text(&format!("[id='{med}']")));
    assert_eq!(
        b.attr(&format!("[id='{med}']"), "class").as_deref(),
        Some("stopped")
    );
    b.script(&format!(
        "document.getElementById('{med}').scrollIntoView(); return 1;"
    ));
    b.screenshot(&shots.join("patient-medication-stopped-1280.png"));

    // The rest of the patient file edited in A's page, seen on B's open page: a phone
    // number (the identity stays verified), a trusted person, an allergy with its
    // criticality, a problem resolved, an allergy removed as a mistake (folded, with why).
    let identity = "section[aria-labelledby=identity]";
    a.click("#identity-edit-details summary");
    a.script("document.getElementById('id-phone').value = ''; return 1;");
    a.type_in("#id-phone", "05 55 99 88 77");
    a.click("#identity-edit-details button[type=submit]");
    assert!(
        b.wait_for_text(identity, "05 55 99 88 77", Duration::from_secs(5))
            .is_some(),
        "{}",
        b.text(identity)
    );
    assert!(
        b.text(identity).contains("Identité validée"),
        "{}",
        b.text(identity)
    );
    // A value the model refuses is said in the page's language, naming the field.
    a.click("#identity-edit-details summary");
    a.type_in("#id-ins", "1 84 12 76 451 089 47");
    a.click("#identity-edit-details button[type=submit]");
    let refused = a.wait_for_text(
        "main",
        "INS : n'est pas un INS valide",
        Duration::from_secs(5),
    );
    assert!(refused.is_some(), "{}", a.text("main"));
    assert!(!a.text("main").contains("characters"), "{}", a.text("main"));
    a.goto(&format!("{}/patient", notebook(&gp)));
    a.click("#add-contacts-details summary");
    a.type_in("#add-contacts-name", "Paul Durand");
    a.select("#add-contacts-role", "trusted_person");
    a.type_in("#add-contacts-phone", "06 98 76 54 32");
    a.click("#add-contacts-details button[type=submit]");
    assert!(
        b.wait_for_text(
            identity,
            "Paul Durand · 06 98 76 54 32",
            Duration::from_secs(5)
        )
        .is_some(),
        "{}",
        b.text(identity)
    );
    a.click("#add-allergies-details summary");
    a.type_in("#add-allergies-substance", "Latex");
    a.select("#add-allergies-criticality", "high");
    a.click("#add-allergies-details button[type=submit]");
    assert!(
        b.wait_for_text("#list-allergies", "Latex", Duration::from_secs(5))
            .is_some(),
        "{}",
        b.text("#list-allergies")
    );
    assert!(b.text("#list-allergies").contains("criticité : élevée"));
    let problem = item_id(&a, "#list-problems ul.items", "Insuffisance cardiaque");
    let problem = problem.trim_start_matches("item-");
    assert!(!problem.is_empty());
    a.click(&format!("#edit-{problem}-details summary"));
    a.select(&format!("#edit-{problem}-status"), "resolved");
    a.click(&format!("#edit-{problem}-details button[type=submit]"));
    let resolved = b.wait_for_text(
        &format!("[id='item-{problem}']"),
        "statut : résolu",
        Duration::from_secs(5),
    );
    assert!(resolved.is_some(), "{}", b.text("#list-problems"));
    assert!(
        b.text(&format!("[id='item-{problem}']"))
            .contains("modifié le")
    );
    let latex = item_id(&a, "#list-allergies ul.items", "Latex");
    let latex = latex.trim_start_matches("item-");
    a.click(&format!("#remove-{latex}-details summary"));
    a.type_in(&format!("#remove-{latex}"), "saisie erronée");
    a.click(&format!("#remove-{latex}-details button[type=submit]"));
    let folded = b.wait_for_text(
        "#list-allergies details.removed",
        "Retirés du dossier (1)",
        Duration::from_secs(5),
    );
    assert!(folded.is_some(), "{}", b.text("#list-allergies"));
    assert!(!b.text("#list-allergies ul.items").contains("Latex"));
    b.click("#list-allergies details.removed summary");
    let why = b.text("#list-allergies details.removed");
    assert!(
        why.contains("Latex") && why.contains("Dr Claire Martin : saisie erronée"),
        "{why}"
    );
    b.script("document.getElementById('list-allergies').scrollIntoView(); return 1;");
    b.screenshot(&shots.join("patient-file-edited-1280.png"));

    // An alert from B raises a system notification in A's open page that names no patient
    // (a phone's lock screen is seen by others), and the circles list counts it.
    a.goto(&format!("{}/", base(&gp)));
    let badge = a.text("ul.circles .badge.alert");
    assert!(badge.starts_with('1'), "{badge}");
    a.script(
        "window.notices = []; window.Notification = function (title, options) { window.notices.push({ title, options }); }; window.Notification.permission = 'granted'; return 1;",
    );
    b.goto(&notebook(&nurse));
    let urgent = "Plaie du talon inflammatoire, avis médical";
    b.select("#note-kind", "alert");
    b.type_in("#note-text", urgent);
    b.click("form[action$='/notes'] button[type=submit]");
    assert!(
        a.wait_for_text("ul.circles .badge.alert", "2", Duration::from_secs(5))
            .is_some(),
        "{}",
        a.text("ul.circles")
    );
    let title = a.script("return document.title;");
    assert_eq!(title, "(2) Vos cercles de soins — Cercle");
    let notices = a.script("return JSON.stringify(window.notices);");
    let notices = notices.as_str().unwrap_or_default();
    assert!(
        notices.contains("\"title\":\"Nouvelle alerte dans un de vos cercles\""),
        "{notices}"
    );
    for secret in ["Durand", "Jeanne", "talon", &circle[..8]] {
        assert!(!notices.contains(secret), "{secret} in {notices}");
    }

    // A message from B shows on A; once A opens it, B sees A's read receipt.
    let message = "Pouvez-vous passer voir Mme Durand demain ?";
    b.goto(&format!("{}/messages", notebook(&nurse)));
    b.type_in("#message-text", message);
    b.click("form[action$='/messages'] button[type=submit]");
    assert!(
        b.wait_for_text("#live-messages", message, Duration::from_secs(5))
            .is_some()
    );
    let id = item_id(&b, "#live-messages", message);
    assert!(b.text(&format!("[id='{id}']")).contains("Pas encore lu"));
    // Fetching A's messages page (as a page on another local port could make A's browser
    // do) writes no read receipt: only the page itself, shown, posts them with its token.
    let fetched = WebSession::login(&gp);
    let (code, _) = fetched.get(&format!("/c/{circle}/messages"));
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(b.text(&format!("[id='{id}']")).contains("Pas encore lu"));
    a.goto(&format!("{}/messages", notebook(&gp)));
    assert!(
        a.wait_for_text("#live-messages", message, Duration::from_secs(5))
            .is_some()
    );
    let read = b.wait_for_text(
        &format!("[id='{id}']"),
        "Lu par Dr Claire Martin",
        Duration::from_secs(5),
    );
    assert!(
        read.is_some(),
        "B never saw A's read receipt: {}",
        b.text(&format!("[id='{id}']"))
    );

    // A document uploaded by A is listed on B's open page.
    let file = tmp.path().join("ordonnance.txt");
    std::fs::write(&file, "Paracétamol 1 g, 3 fois par jour").unwrap();
    b.goto(&format!("{}/documents", notebook(&nurse)));
    a.goto(&format!("{}/documents", notebook(&gp)));
    a.choose_file("#doc-file", &file);
    a.click("form[action$='/documents'] button[type=submit]");
    assert!(
        a.wait_for_text("#live-documents", "ordonnance.txt", Duration::from_secs(5))
            .is_some()
    );
    assert!(
        b.wait_for_text("#live-documents", "ordonnance.txt", Duration::from_secs(5))
            .is_some()
    );
    // A photo shows as a thumbnail; a page named like a photo is never shown, only
    // downloaded: the node reads what the content is, not what its name says.
    let photo = tmp.path().join("plaie-talon.png");
    std::fs::copy(shots.join("patient-trends-1280.png"), &photo).unwrap();
    let fake = tmp.path().join("fausse.png");
    std::fs::write(&fake, "<html><script>alert(1)</script></html>").unwrap();
    for file in [&photo, &fake] {
        a.choose_file("#doc-file", file);
        a.click("form[action$='/documents'] button[type=submit]");
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            a.wait_for_text("#live-documents", &name, Duration::from_secs(5))
                .is_some()
        );
    }
    let thumb = |alt: &str| {
        format!(
            "const i = [...document.querySelectorAll('img.thumb')].find(i => i.alt === '{alt}');"
        )
    };
    let shown = wait_until(5, || {
        a.script(&format!(
            "{} return !!i && i.complete && i.naturalWidth > 0;",
            thumb("plaie-talon.png")
        )) == serde_json::json!(true)
    });
    assert!(shown, "the photo's thumbnail did not load");
    let src = a.script(&format!(
        "{} return i.getAttribute('src');",
        thumb("fausse.png")
    ));
    let src = src.as_str().unwrap_or_default();
    assert!(src.ends_with("/view"), "{src}");
    let web = WebSession::login(&gp);
    assert_eq!(
        web.get(src).0,
        415,
        "a page named like a photo was served to be shown"
    );
    a.screenshot(&shots.join("documents-thumbnail-1280.png"));

    // A coordinator's invite code, with its QR.
    a.goto(&format!("{}/members", notebook(&gp)));
    a.select("#invite-role", "caregiver");
    a.click("form[action$='/invites'] button[type=submit]");
    let code = a.wait_for_text("#invite-code", "cercleinv1", Duration::from_secs(5));
    assert!(code.is_some(), "{}", a.text("main"));
    assert!(a.script("return document.querySelectorAll('.qr svg').length;") == 1);

    // Forms need the session's form token: without it, or with a wrong one, refused and
    // nothing written; with the one the page carries, accepted.
    let web = WebSession::login(&gp);
    let notes = format!("/c/{circle}/notes");
    let forged = [("kind", "observation"), ("text", "Note forgée")];
    assert_eq!(web.post(&notes, &forged).0, 403);
    let wrong = [
        ("csrf", "00"),
        ("kind", "observation"),
        ("text", "Note forgée"),
    ];
    assert_eq!(web.post(&notes, &wrong).0, 403);
    let (_, page) = web.get(&format!("/c/{circle}"));
    assert!(!page.contains("Note forgée"));
    let token = form_token(&page);
    let right = [
        ("csrf", token.as_str()),
        ("kind", "care"),
        ("text", "Pansement refait"),
    ];
    assert_eq!(web.post(&notes, &right).0, 303);
    // And a browser without the session is sent to the login page for every page.
    let stranger = WebSession {
        base: base(&gp),
        cookie: "cercle_1=0".into(),
    };
    let (code, page) = stranger.get(&format!("/c/{circle}/patient"));
    assert_eq!(code, 401);
    assert!(page.contains("Connexion") && !page.contains("Durand"));

    // French by default, English on every page: each switch keeps the page and the choice.
    let pages = [
        (
            "home",
            "/".to_string(),
            "Vos cercles de soins",
            "Your circles of care",
        ),
        (
            "notebook",
            format!("/c/{circle}"),
            "Nouvelle note",
            "New note",
        ),
        (
            "patient",
            format!("/c/{circle}/patient"),
            "Projet de soins",
            "Care plan",
        ),
        (
            "messages",
            format!("/c/{circle}/messages"),
            "Nouveau message",
            "New message",
        ),
        (
            "documents",
            format!("/c/{circle}/documents"),
            "Déposer",
            "Upload",
        ),
        (
            "members",
            format!("/c/{circle}/members"),
            "Inviter un membre",
            "Invite a member",
        ),
        (
            "members-directory",
            format!("/c/{circle}/members?annuaire=martin"),
            "Chercher un collègue dans l'annuaire",
            "Find a colleague in the directory",
        ),
        (
            "activity",
            format!("/c/{circle}/activity"),
            "Notes par semaine",
            "Notes per week",
        ),
        (
            "audit",
            format!("/c/{circle}/audit"),
            "Données refusées",
            "Refused data",
        ),
        ("sync", "/sync".to_string(), "Ce nœud", "This node"),
        (
            "join",
            "/join".to_string(),
            "Code d'invitation",
            "Invite code",
        ),
        (
            "new-circle",
            "/new".to_string(),
            "Autour d'un patient",
            "Around a patient",
        ),
        (
            "devices",
            "/devices".to_string(),
            "Téléphones et tablettes",
            "Phones and tablets",
        ),
    ];
    let mut english = false;
    for (name, path, fr, en) in &pages {
        a.goto(&format!("{}{path}", base(&gp)));
        let (lang, word, other, other_word) = if english {
            ("en", en, "fr", fr)
        } else {
            ("fr", fr, "en", en)
        };
        assert_eq!(a.attr("html", "lang").as_deref(), Some(lang), "{name}");
        assert!(
            a.text("main").contains(*word),
            "{name} in {lang}: {}",
            a.text("main")
        );
        a.click("form[action='/lang'] button");
        assert!(
            a.wait_for_attr("html", "lang", other),
            "{name}: {}",
            a.url()
        );
        assert!(a.url().ends_with(path.as_str()), "{name}: {}", a.url());
        assert!(
            a.text("main").contains(*other_word),
            "{name} in {other}: {}",
            a.text("main")
        );
        english = !english;
    }
    if english {
        a.click("form[action='/lang'] button");
    }

    // Screenshots of every page at 1280, 800 and 390 px; nothing scrolls sideways; at 1280
    // and 390 px, axe-core finds no serious or critical WCAG 2.1 A/AA fault.
    let mut faults = Vec::new();
    for width in [1280, 800, 390] {
        a.resize(width, 1000);
        for (name, path, _, _) in &pages {
            a.goto(&format!("{}{path}", base(&gp)));
            let overflow = a.script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            );
            if overflow.as_i64() != Some(0) {
                faults.push(format!(
                    "{name} at {width} px scrolls sideways by {overflow} px"
                ));
            }
            a.screenshot(&shots.join(format!("{name}-{width}.png")));
            if width != 800 {
                faults.extend(
                    a.accessibility_faults()
                        .into_iter()
                        .map(|f| format!("{name} at {width} px: {f}")),
                );
            }
        }
    }
    assert!(
        faults.is_empty(),
        "accessibility faults:\n{}",
        faults.join("\n")
    );
    eprintln!("screenshots in {}", shots.display());

    drop((a, b));
    assert_eq!(demo.stop(), Some(0));
}

/// A family caregiver with no terminal joins from the join page by pasting the code the
/// GP gave her; a mistyped code is answered in French. In the circle, her notebook shows
/// the team's alert with no acknowledge button (her role may not close it).
#[test]
fn a_caregiver_joins_from_the_join_page_with_a_pasted_code() {
    let a = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    let c = TestHome::new();
    c.init("Marie Durand", "aidante");
    let circle = a.create_circle("Jeanne Durand");
    let alert = "Chute ce matin : appeler le médecin traitant";
    a.json(&["note", "add", &circle, alert, "--kind", "alert"]);
    a.json(&[
        "patient",
        "add",
        &circle,
        "allergies",
        "substance=Pénicilline",
        "criticality=high",
    ]);
    let _node_a = up_on_loopback(&a, &[]);
    let _node_c = up_on_loopback(&c, &[]);
    let invite = a.json(&[
        "invite",
        "create",
        &circle,
        "--role",
        "caregiver",
        "--no-qr",
    ]);
    let code = invite["code"].as_str().unwrap().to_string();

    let driver = Driver::start();
    let browser = driver.browser(390, 900);
    let shots = screenshot_dir();
    let link = c.ui_link();
    browser.goto(&link);
    browser.click("p.join-link a[href='/join']");
    let shown = browser.wait_for_text("h1", "Rejoindre un cercle", Duration::from_secs(10));
    assert!(shown.is_some(), "{}", browser.text("main"));
    let faults = browser.accessibility_faults();
    assert!(faults.is_empty(), "join page at 390 px: {faults:?}");
    browser.screenshot(&shots.join("join-390.png"));

    browser.type_in("#join-code", "cercleinv1 mal recopié");
    browser.click("form[action='/join'] button[type=submit]");
    let said = browser.wait_for_text(
        "main",
        "Ce code n'est pas un code d'invitation valable",
        Duration::from_secs(10),
    );
    assert!(said.is_some(), "{}", browser.text("main"));

    browser.goto(&format!("{}/join", base(&link)));
    // Pasted: the whole code lands in the field at once.
    browser.script(&format!(
        "const f = document.getElementById('join-code'); f.value = {code:?}; f.dispatchEvent(new Event('input')); return 1;"
    ));
    browser.click("form[action='/join'] button[type=submit]");
    let joined = browser.wait_for_text("#live-join", "Ouvrir le cercle", Duration::from_secs(30));
    assert!(joined.is_some(), "{}", browser.text("main"));
    browser.click("#live-join a");
    assert!(
        browser
            .wait_for_text("#live-notes", alert, Duration::from_secs(15))
            .is_some(),
        "{}",
        browser.text("main")
    );
    assert_eq!(browser.text("main h1"), "Jeanne Durand");
    let buttons = browser.script("return document.querySelectorAll('.ack-button').length;");
    assert_eq!(buttons, 0, "a caregiver is offered to acknowledge");
    assert!(
        browser
            .text("#live-notes")
            .contains("En attente d'acquittement")
    );
    browser.screenshot(&shots.join("notebook-caregiver-390.png"));
    // Asked anyway (a hand-made request with her form token), the refusal says why in
    // the page's language.
    let web = WebSession::login(&link);
    let (_, page) = web.get(&format!("/c/{circle}"));
    let alert_id: String = page
        .split("id=\"note-")
        .nth(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_hexdigit).collect())
        .unwrap_or_default();
    assert!(!alert_id.is_empty(), "{page}");
    let token = form_token(&page);
    let (code, refused) = web.post(
        &format!("/c/{circle}/notes/{alert_id}/ack"),
        &[("csrf", &token)],
    );
    assert_eq!(code, 403, "{refused}");
    assert!(
        refused.contains("Votre rôle dans ce cercle (Aidant) ne permet pas cette action."),
        "{refused}"
    );
    // Nor to change the patient file: she reads it, with no form.
    browser.goto(&format!("{}/patient", link_of_notebook(&browser)));
    let forms = browser.script(
        "return document.querySelectorAll(\"form[action*='/items/'], form[action$='/identity'], form[action$='/consent'], form[action$='/care-plan'], details.edit\").length;",
    );
    assert_eq!(
        forms, 0,
        "a caregiver is offered to change the patient file"
    );
    assert!(browser.text("#list-allergies").contains("Pénicilline"));
}

/// Joining without a terminal and without pasting: the coordinator's page shows the invite
/// as a QR code and as a short code to read out. One newcomer scans the QR with the camera
/// (the page reads it with the browser's `BarcodeDetector`; this Chromium has none, so the
/// button is hidden until the test gives the page a detector that reports what the QR
/// holds, with a fake camera behind); another types the short code read out to her, and her
/// node finds the coordinator's among its peers by the code's fingerprint.
#[test]
fn newcomers_join_by_scanning_the_qr_or_typing_the_short_code() {
    let a = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    let (c, d) = (TestHome::new(), TestHome::new());
    c.init("Marie Durand", "aidante");
    d.init("Julien Petit", "infirmier");
    let circle = a.create_circle("Jeanne Durand");
    let node_a = up_on_loopback(&a, &[]);
    let _node_c = up_on_loopback(&c, &[]);
    // D's node is connected to A's, as on the practice's network (mDNS is off in tests).
    let _node_d = up_on_loopback(&d, &[&node_a]);

    let driver = Driver::start();
    let coordinator = driver.browser(1280, 900);
    let shots = screenshot_dir();
    let link = a.ui_link();
    coordinator.goto(&link);
    let invite = |role: &str| {
        coordinator.goto(&format!("{}/c/{circle}/members", base(&link)));
        coordinator.select("#invite-role", role);
        coordinator.click("form[action$='/invites'] button[type=submit]");
        let shown = coordinator.wait_for_text("#invite-code", "cercleinv1", Duration::from_secs(5));
        assert!(shown.is_some(), "{}", coordinator.text("main"));
        (
            coordinator.text("#invite-code"),
            coordinator.text("#invite-short"),
        )
    };
    let (code, _) = invite("caregiver");
    let faults = coordinator.accessibility_faults();
    assert!(faults.is_empty(), "invite at 1280 px: {faults:?}");
    coordinator.script("document.getElementById('code').scrollIntoView(); return 1;");
    coordinator.screenshot(&shots.join("invite-short-1280.png"));

    let browser = driver.browser(390, 900);
    let c_link = c.ui_link();
    browser.goto(&c_link);
    browser.goto(&format!("{}/join", base(&c_link)));
    let hidden = browser.script("return document.getElementById('scan').hidden;");
    assert_eq!(
        hidden, true,
        "a camera button where the browser reads no QR code"
    );
    // The browser's detector, as Chrome on Android or macOS has it: it reports the QR code
    // in front of the camera once the video plays.
    browser.script(&format!(
        "window.BarcodeDetector = class {{ constructor(o) {{ this.formats = o.formats; }} \
           async detect(video) {{ return video.readyState >= 2 ? [{{ format: 'qr_code', rawValue: {code:?} }}] : []; }} }}; \
         document.getElementById('scan').hidden = false; return 1;"
    ));
    browser.click("#scan-start");
    browser.screenshot(&shots.join("join-scan-390.png"));
    let joined = browser.wait_for_text("#live-join", "Ouvrir le cercle", Duration::from_secs(30));
    assert!(joined.is_some(), "{}", browser.text("main"));
    // The camera was let go once the code was read.
    let live = browser.script("const v = document.getElementById('scan-video'); return v ? !!(v.srcObject && v.srcObject.active) : false;");
    assert_eq!(live, false);

    let (_, short) = invite("professional");
    assert_eq!(short.len(), 29, "{short}");
    let d_browser = driver.browser(390, 900);
    let d_link = d.ui_link();
    d_browser.goto(&d_link);
    // The code C used, tried again by D: the inviter's refusal, worded in French.
    d_browser.goto(&format!("{}/join", base(&d_link)));
    d_browser.type_in("#join-code", &code);
    d_browser.click("form[action='/join'] button[type=submit]");
    let refused = d_browser.wait_for_text("#live-join", "a déjà servi", Duration::from_secs(30));
    assert!(refused.is_some(), "{}", d_browser.text("main"));
    d_browser.goto(&format!("{}/join", base(&d_link)));
    // Typed as heard: in lowercase, groups separated by spaces.
    d_browser.type_in("#join-code", &short.to_lowercase().replace('-', " "));
    d_browser.click("form[action='/join'] button[type=submit]");
    let joined = d_browser.wait_for_text("#live-join", "Ouvrir le cercle", Duration::from_secs(30));
    assert!(joined.is_some(), "{}", d_browser.text("main"));
    d_browser.click("#live-join a");
    let shown = d_browser.wait_for_text("main h1", "Jeanne Durand", Duration::from_secs(10));
    assert!(shown.is_some(), "{}", d_browser.text("main"));
    // A photo too large for a document: said in French, nothing added.
    let tmp = tempfile::tempdir().unwrap();
    let large = tmp.path().join("radio.jpg");
    std::fs::write(&large, vec![0xffu8; 9 * 1024 * 1024]).unwrap();
    d_browser.goto(&format!("{}/documents", link_of_notebook(&d_browser)));
    d_browser.choose_file("#doc-file", &large);
    d_browser.click("form[action$='/documents'] button[type=submit]");
    let said = d_browser.wait_for_text("main", "dépasse 8 Mo", Duration::from_secs(15));
    assert!(said.is_some(), "{}", d_browser.text("main"));
    let members = a.json(&["circle", "show", &circle])["members"].clone();
    let roles: Vec<&str> = members
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles.len(), 3, "{members}");
    assert!(
        roles.contains(&"caregiver") && roles.contains(&"professional"),
        "{members}"
    );
}

/// A circle opened from the page, around a patient or for a team; a second circle for the
/// same patient (same names and birth date) is flagged before anything is written in it;
/// a birth date in the future or a missing family name is refused in French.
#[test]
fn a_circle_is_created_in_the_page_and_a_probable_duplicate_is_flagged() {
    let a = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    let existing = a.json(&[
        "circle",
        "create",
        "--patient",
        "Jeanne Durand",
        "--birth-date",
        "1941-05-12",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let _node = up_on_loopback(&a, &[]);
    let driver = Driver::start();
    let browser = driver.browser(390, 900);
    let shots = screenshot_dir();
    let link = a.ui_link();
    browser.goto(&link);
    browser.click("a[href='/new']");
    let shown = browser.wait_for_text("h1", "Nouveau cercle", Duration::from_secs(10));
    assert!(shown.is_some(), "{}", browser.text("main"));
    let faults = browser.accessibility_faults();
    assert!(faults.is_empty(), "new circle at 390 px: {faults:?}");
    browser.screenshot(&shots.join("new-circle-390.png"));
    browser.resize(1280, 900);
    let faults = browser.accessibility_faults();
    assert!(faults.is_empty(), "new circle at 1280 px: {faults:?}");

    let patient = |family: &str, given: &str, born: &str| {
        browser.goto(&format!("{}/new", base(&link)));
        browser.type_in("#new-family", family);
        browser.type_in("#new-given", given);
        browser.script(&format!(
            "document.getElementById('new-birth').value = {born:?}; return 1;"
        ));
        browser.click("form:has(#new-family) button[type=submit]");
    };
    patient("Moreau", "Paul Henri", "1950-03-02");
    let opened = browser.wait_for_text("main h1", "Paul Henri Moreau", Duration::from_secs(10));
    assert!(opened.is_some(), "{}", browser.text("main"));
    assert!(browser.url().ends_with("/patient"), "{}", browser.url());
    assert!(
        browser.text("main").contains("02/03/1950"),
        "{}",
        browser.text("main")
    );

    // The same patient again: said at once, with the circle to compare.
    patient("Durand", "Jeanne", "1941-05-12");
    let warned = browser.wait_for_text(
        "#duplicate-warning",
        "probablement le même patient",
        Duration::from_secs(10),
    );
    assert!(warned.is_some(), "{}", browser.text("main"));
    let compare = browser.attr("#duplicates a", "href").unwrap_or_default();
    assert_eq!(compare, format!("/c/{existing}/patient"));
    let faults = browser.accessibility_faults();
    assert!(faults.is_empty(), "duplicate warning: {faults:?}");
    browser.screenshot(&shots.join("new-circle-duplicate-1280.png"));

    // A team's circle opens on its messages.
    browser.goto(&format!("{}/new", base(&link)));
    browser.type_in("#new-team", "MSP des Tilleuls");
    browser.click("form:has(#new-team) button[type=submit]");
    let opened = browser.wait_for_text("main h1", "MSP des Tilleuls", Duration::from_secs(10));
    assert!(opened.is_some(), "{}", browser.text("main"));
    assert!(browser.url().ends_with("/messages"), "{}", browser.url());

    // Past the browser's own checks: refused with the field named, in French.
    let web = WebSession::login(&link);
    let (_, page) = web.get("/new");
    let token = form_token(&page);
    let future = [
        ("csrf", token.as_str()),
        ("kind", "patient"),
        ("family_name", "Petit"),
        ("birth_date", "2090-01-01"),
    ];
    let (code, refused) = web.post("/circles", &future);
    assert_eq!(code, 400, "{refused}");
    assert!(
        refused.contains("Date de naissance : est dans le futur"),
        "{refused}"
    );
    let nameless = [
        ("csrf", token.as_str()),
        ("kind", "patient"),
        ("family_name", " "),
    ];
    let (code, refused) = web.post("/circles", &nameless);
    assert_eq!(code, 400, "{refused}");
    assert!(
        refused.contains("Nom de naissance : est obligatoire"),
        "{refused}"
    );
    let listed = a.json(&["circle", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(4), "{listed}");

    // Care ends: the coordinator closes a circle from its members page, box ticked.
    let moreau = listed
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["patient"] == "Paul Henri Moreau"))
        .and_then(|r| r["id"].as_str())
        .unwrap_or_default()
        .to_string();
    let (_, members) = web.get(&format!("/c/{existing}/members"));
    let members_token = form_token(&members);
    let unticked = [("csrf", members_token.as_str())];
    let (code, refused) = web.post(&format!("/c/{existing}/close"), &unticked);
    assert_eq!(code, 400, "closing without the box ticked: {refused}");
    browser.goto(&format!("{}/c/{moreau}/members", base(&link)));
    browser.click("#close-details summary");
    browser.click("#close-confirm");
    browser.click("#close-button");
    let shown = browser.wait_for_text("#closed-circles", "Cercles clos", Duration::from_secs(10));
    assert!(shown.is_some(), "{}", browser.text("main"));
    assert!(!browser.text("main").contains("Paul Henri Moreau"));
    let faults = browser.accessibility_faults();
    assert!(faults.is_empty(), "closed circles: {faults:?}");
    browser.screenshot(&shots.join("closed-circles-1280.png"));
    let listed = a.json(&["circle", "list"]);
    let state = |id: &str| {
        listed
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == id))
            .map(|r| r["state"].clone())
    };
    assert_eq!(
        state(&moreau),
        Some(serde_json::json!("closed")),
        "{listed}"
    );
    assert_eq!(state(&existing), Some(serde_json::Value::Null), "{listed}");
    // Its trail stays, without content.
    browser.click("#closed-circles a[href$='/audit']");
    let trail = browser.wait_for_text("main", "Cercle clos", Duration::from_secs(10));
    assert!(trail.is_some(), "{}", browser.text("main"));
}

/// The circle page the browser is on, without its query.
fn link_of_notebook(browser: &Browser) -> String {
    let here = browser.script("return location.origin + location.pathname;");
    here.as_str()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string()
}
