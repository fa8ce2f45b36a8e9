//! Professionals checked against the directory, through real `cercle up` processes: the GP
//! imports a few lines of the directory's public extract in its real format; her own and
//! the nurse's signed profiles match it and show as verified (in `circle show` and on the
//! members page), the physiotherapist who gives another professional's RPPS number is
//! contradicted; and the directory is searched by name and number. (A contact card whose
//! profile was altered after its member signed it is refused: `cli_local.rs`.)

use cercle_tests::browser::WebSession;
use cercle_tests::{TestHome, up_on_loopback};

const HEADER: &str = "Type d'identifiant PP|Identifiant PP|Identification nationale PP|Code civilité d'exercice|Libellé civilité d'exercice|Code civilité|Libellé civilité|Nom d'exercice|Prénom d'exercice|Code profession|Libellé profession|Code catégorie professionnelle|Libellé catégorie professionnelle|Code type savoir-faire|Libellé type savoir-faire|Code savoir-faire|Libellé savoir-faire|Code mode exercice|Libellé mode exercice|Numéro SIRET site|Numéro SIREN site|Numéro FINESS site|Numéro FINESS établissement juridique|Identifiant technique de la structure|Raison sociale site|Enseigne commerciale site|Complément destinataire (coord. structure)|Complément point géographique (coord. structure)|Numéro Voie (coord. structure)|Indice répétition voie (coord. structure)|Code type de voie (coord. structure)|Libellé type de voie (coord. structure)|Libellé Voie (coord. structure)|Mention distribution (coord. structure)|Bureau cedex (coord. structure)|Code postal (coord. structure)|Code commune (coord. structure)|Libellé commune (coord. structure)|Code pays (coord. structure)|Libellé pays (coord. structure)|Téléphone (coord. structure)|Téléphone 2 (coord. structure)|Télécopie (coord. structure)|Adresse e-mail (coord. structure)|Code Département (structure)|Libellé Département (structure)|Ancien identifiant de la structure|Autorité d'enregistrement|Code secteur d'activité|Libellé secteur d'activité|Code section tableau pharmaciens|Libellé section tableau pharmaciens|";

/// One activity line of the extract, as the directory writes them.
fn line(number: &str, civility: &str, last: &str, first: &str, code: &str, label: &str) -> String {
    format!(
        "8|{number}|8{number}|{civility}||M|Monsieur|{last}|{first}|{code}|{label}|C|Civil|S|Spécialité ordinale|SM54|Médecine générale|L|Libéral|||||C{number}|CABINET {last}||||12||R|Rue|DES LILAS||12000 RODEZ|12000|12202|Rodez||||||||||ARS/CPAM/CPAM|SA07|Cabinet individuel|||"
    )
}

fn member(name: &str, profession: &str, rpps: &str) -> TestHome {
    let h = TestHome::new();
    h.json(&[
        "init",
        "--name",
        name,
        "--profession",
        profession,
        "--rpps",
        rpps,
    ]);
    h
}

/// The directory standing of the member named `name` in `circle show --json`.
fn standing(shown: &serde_json::Value, name: &str) -> serde_json::Value {
    shown["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == name))
        .map(|m| m["directory"].clone())
        .unwrap_or_else(|| panic!("no member {name}: {shown}"))
}

#[test]
fn members_whose_signed_profile_matches_the_directory_show_as_verified() {
    let gp = member("Dr Claire Martin", "médecin généraliste", "10003456786");
    let nurse = member("Julien Petit", "infirmier", "10009876540");
    // The physiotherapist gives a number the directory holds for someone else.
    let physio = member("Anne Leroy", "kinésithérapeute", "10001112225");
    let circle = gp.create_circle("Jeanne Durand");
    gp.add_member(&circle, &nurse.card(), "professional");
    gp.add_member(&circle, &physio.card(), "professional");

    let extract = gp.path().join("PS_LibreAcces_Personne_activite.txt");
    let lines = [
        HEADER.to_string(),
        line("10003456786", "DR", "MARTIN", "CLAIRE", "10", "Médecin"),
        // Her second practice: the same professional, once.
        line("10003456786", "DR", "MARTIN", "CLAIRE", "10", "Médecin"),
        line("10009876540", "", "PETIT", "JULIEN", "60", "Infirmier"),
        line(
            "10001112225",
            "",
            "ROUSSEL",
            "MARC",
            "70",
            "Masseur-Kinésithérapeute",
        ),
        "8|123|broken line".to_string(),
    ];
    std::fs::write(&extract, lines.join("\n") + "\n").unwrap();
    let extract = extract.to_string_lossy().to_string();

    let node_gp = up_on_loopback(&gp, &[]);
    let _node_nurse = up_on_loopback(&nurse, &[&node_gp]);
    let _node_physio = up_on_loopback(&physio, &[&node_gp]);
    nurse.accept(&circle);
    physio.accept(&circle);

    // Before the import every member is as they declare themselves.
    let shown = gp.json(&["circle", "show", &circle]);
    assert_eq!(standing(&shown, "Julien Petit")["status"], "declared");

    // Imported through the running node.
    let imported = gp.json(&["directory", "import", &extract]);
    assert_eq!(imported["professionals"], 3, "{imported}");
    assert_eq!(imported["skipped"], 1, "{imported}");

    let shown = gp.json(&["circle", "show", &circle]);
    assert_eq!(standing(&shown, "Dr Claire Martin")["status"], "verified");
    assert_eq!(standing(&shown, "Julien Petit")["status"], "verified");
    let leroy = standing(&shown, "Anne Leroy");
    assert_eq!(leroy["status"], "contradicted", "{shown}");
    assert!(
        leroy["directory"]
            .as_str()
            .unwrap_or("")
            .contains("ROUSSEL"),
        "{leroy}"
    );
    // The nurse's node holds no directory: there, everyone is declared.
    let theirs = nurse.json(&["circle", "show", &circle]);
    assert_eq!(standing(&theirs, "Dr Claire Martin")["status"], "declared");

    // Searching the directory to invite a colleague, by name and by number.
    let found = gp.json(&["directory", "search", "petit"]);
    assert_eq!(found[0]["number"], "10009876540", "{found}");
    let found = gp.json(&["directory", "search", "julien petit"]);
    assert_eq!(found[0]["last_name"], "PETIT", "{found}");
    let found = gp.json(&["directory", "search", "10001112225"]);
    assert_eq!(found[0]["first_name"], "MARC", "{found}");
    let none = gp.json(&["directory", "search", "durand"]);
    assert_eq!(none, serde_json::json!([]));

    // The members page says it in French, and searches the directory.
    let web = WebSession::login(&gp.ui_link());
    let (status, page) = web.get(&format!("/c/{circle}/members"));
    assert_eq!(status, 200);
    assert_eq!(
        page.matches("vérifié dans l").count(),
        2,
        "the GP and the nurse are not both shown verified: {page}"
    );
    assert!(
        page.contains("MARC ROUSSEL, Masseur-Kinésithérapeute"),
        "the contradiction is not shown: {page}"
    );
    let (_, page) = web.get(&format!("/c/{circle}/members?annuaire=petit"));
    assert!(
        page.contains("10009876540"),
        "the search found nothing: {page}"
    );
}
