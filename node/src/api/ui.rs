//! The web pages a node serves to its member, server-rendered (maud), French first: the
//! login page and the circles with their liaison notebooks.

use maud::{DOCTYPE, Markup, html};

use super::{NoteRow, Status};
use crate::circle::CircleInfo;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#0b5d7a;color:#fff;padding:.8rem 1.5rem}
header h1{margin:0;font-size:1.3rem}
main{max-width:60rem;margin:1.5rem auto;padding:0 1rem}
section{background:#fff;border:1px solid #d8dde3;border-radius:.5rem;padding:1rem 1.25rem;margin-bottom:1rem}
h2{margin:.2rem 0 .8rem;font-size:1.15rem}
ol{list-style:none;padding:0;margin:0}
li{padding:.45rem 0;border-top:1px solid #eef0f3}
.kind{display:inline-block;min-width:6.5rem;font-size:.8rem;font-weight:600;color:#0b5d7a}
.alert .kind{color:#a4161a}
time{color:#5c6670;font-size:.85rem;margin-right:.6rem}
.who{color:#5c6670;font-size:.85rem}
label{display:block;margin:.6rem 0 .3rem}
input{font-size:1rem;padding:.45rem;width:100%;max-width:30rem}
button{margin-top:.8rem;font-size:1rem;padding:.45rem 1rem;background:#0b5d7a;color:#fff;border:0;border-radius:.3rem}
";

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="fr" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Cercle" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header { h1 { "Cercle" } }
                main { (body) }
            }
        }
    }
}

/// The login page; `failed` when a token was given and was wrong.
pub(super) fn login(failed: bool) -> Markup {
    page(
        "Connexion",
        html! {
            section {
                h2 { "Connexion" }
                @if failed {
                    p role="alert" { "Ce jeton n'est pas le bon. Vérifiez-le et réessayez." }
                }
                p { "Collez le jeton de votre nœud (fichier " code { "api-token" } " de son répertoire)." }
                form method="post" action="/login" {
                    label for="token" { "Jeton d'accès" }
                    input id="token" name="token" type="password" autocomplete="off" required;
                    button type="submit" { "Se connecter" }
                }
            }
        },
    )
}

/// The circles held by the node, each with its notebook (newest first).
pub(super) fn circles(
    circles: &[(CircleInfo, Vec<NoteRow>)],
    me: Option<&super::Answer>,
) -> Markup {
    let status: Option<&Status> = match me {
        Some(super::Answer::Status(s)) => Some(s),
        _ => None,
    };
    page(
        "Vos cercles",
        html! {
            @if let Some(s) = status {
                p class="who" { "Nœud " (s.peer_id) " · " (s.peers.len()) " pair(s) connecté(s)" }
            }
            @if circles.is_empty() {
                section { p { "Aucun cercle pour l'instant." } }
            }
            @for (c, notes) in circles {
                section aria-labelledby=(format!("c-{}", &c.id[..12])) {
                    h2 id=(format!("c-{}", &c.id[..12])) { (c.patient) }
                    p class="who" { "Cahier de liaison · " (notes.len()) " note(s)" }
                    ol {
                        @for n in notes.iter().rev() {
                            li class=(n.kind) {
                                time datetime=(n.at) { (n.at.get(..16).unwrap_or(&n.at).replace('T', " ")) }
                                span class="kind" { (n.kind) }
                                (n.text)
                                " "
                                span class="who" { "— " (n.author_name.as_deref().unwrap_or("?")) }
                            }
                        }
                    }
                }
            }
        },
    )
}
