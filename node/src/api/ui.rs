//! The web pages a node serves to its member, server-rendered (maud), French first: the
//! login page, the circles with their badges, and for one circle its liaison notebook,
//! patient file, messages, documents, members and activity, plus the node's sync status.
//!
//! Pages are pure functions of what the handlers in [`super::web`] read from the node. The
//! parts a colleague's change can alter carry `data-live` and an id: the page's script
//! fetches the page again when the node reports news and swaps those parts in place.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::directory::{Professional, Standing};
use crate::ops::ReceiptRow;
use crate::ops::audit::AuditTrail;
use crate::ops::circles::CircleSummary;
use crate::ops::documents::DocumentRow;
use crate::ops::invite::InviteView;
use crate::ops::messages::MessageRow;
use crate::ops::notes::NoteRow;
use crate::ops::status::{NodeStatus as Status, PeerPath};

pub(crate) mod chart;
mod devices;
mod patient;
pub(crate) mod words;

pub(crate) use devices::{devices, not_paired, phone_pair};
pub(crate) use patient::patient;

use chart::Bar;
use words::{KINDS, Lang, ROLES, Words};

/// The style sheet, served at `/ui/style.css`.
pub(crate) const STYLE: &str = include_str!("ui/style.css");
/// The page script (live updates), served at `/ui/live.js`.
pub(crate) const SCRIPT: &str = include_str!("ui/live.js");

/// What every page of a signed-in member needs.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) lang: Lang,
    /// The form token of the session.
    pub(crate) csrf: String,
    /// The page's own path and query (the language switch comes back to it).
    pub(crate) here: String,
    /// Connected peers, for the header's sync indicator.
    pub(crate) peers: usize,
    /// The page is served to a paired phone on the LAN (no device management there).
    pub(crate) phone: bool,
}

impl Ctx {
    fn w(&self) -> &'static Words {
        self.lang.words()
    }

    /// A date for people, in this machine's time zone.
    fn when(&self, millis: i64) -> String {
        when(self.w().date_format, millis)
    }

    /// A number written the way this language does (French: a decimal comma).
    fn number(&self, x: f64, places: usize) -> String {
        self.w().decimal(x, places)
    }

    /// A calendar date as stored (`YYYY-MM-DD`) written the way this language does; anything
    /// else as it is.
    fn day(&self, date: &str) -> String {
        date.parse::<jiff::civil::Date>()
            .map(|d| d.strftime(self.w().calendar_format).to_string())
            .unwrap_or_else(|_| date.to_string())
    }
}

fn when(format: &str, millis: i64) -> String {
    let Ok(t) = jiff::Timestamp::from_millisecond(millis) else {
        return String::new();
    };
    let zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    t.to_zoned(zone).strftime(format).to_string()
}

fn hidden_csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// The tabs of a circle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Notebook,
    Patient,
    Messages,
    Documents,
    Members,
    Activity,
    Audit,
}

impl Tab {
    const ALL: [Tab; 7] = [
        Tab::Notebook,
        Tab::Patient,
        Tab::Messages,
        Tab::Documents,
        Tab::Members,
        Tab::Activity,
        Tab::Audit,
    ];

    fn path(self) -> &'static str {
        match self {
            Tab::Notebook => "",
            Tab::Patient => "/patient",
            Tab::Messages => "/messages",
            Tab::Documents => "/documents",
            Tab::Members => "/members",
            Tab::Activity => "/activity",
            Tab::Audit => "/audit",
        }
    }

    fn name(self, w: &Words) -> &'static str {
        match self {
            Tab::Notebook => w.notebook,
            Tab::Patient => w.patient_file,
            Tab::Messages => w.messages,
            Tab::Documents => w.documents,
            Tab::Members => w.members,
            Tab::Activity => w.activity,
            Tab::Audit => w.audit,
        }
    }
}

/// A circle as its pages' heading shows it.
#[derive(Debug, Clone)]
pub(crate) struct CircleHead {
    pub(crate) id: String,
    pub(crate) patient: String,
    /// Alerts nobody acknowledged yet.
    pub(crate) alerts: usize,
    /// Messages from others this member has not read.
    pub(crate) unread: usize,
    /// This member's role in the circle.
    pub(crate) role: String,
    /// A team's own circle: no patient, so no notebook nor patient file.
    pub(crate) team: bool,
    /// Closed and shredded here: only its audit trail without content is left.
    pub(crate) closed: bool,
    /// The patient objected to sharing (the reason): read-only, no longer synced.
    pub(crate) suspended: Option<String>,
    /// Emergency accesses not yet removed, and whether each has ended by this node's
    /// clock: the team is told on every page of the circle.
    pub(crate) emergency: Vec<(crate::ops::circles::EmergencyRow, bool)>,
}

impl CircleHead {
    /// Whether this member may write notes, tasks and documents (never in a circle whose
    /// patient objected to sharing).
    pub(crate) fn writes_care(&self) -> bool {
        matches!(self.role.as_str(), "coordinator" | "professional") && self.suspended.is_none()
    }

    /// Whether this member may write messages (and read receipts) here.
    pub(crate) fn writes_messages(&self) -> bool {
        self.role != "observer" && self.suspended.is_none()
    }

    fn url(&self, tab: Tab) -> String {
        format!("/c/{}{}", self.id, tab.path())
    }

    /// The circle's tabs: a team circle has no notebook nor patient file.
    fn tabs(&self) -> impl Iterator<Item = Tab> + '_ {
        Tab::ALL.into_iter().filter(|t| {
            if self.closed {
                return *t == Tab::Audit;
            }
            !self.team || !matches!(t, Tab::Notebook | Tab::Patient)
        })
    }

    /// Where the circle opens: its notebook, or a team circle's messages.
    pub(crate) fn home_tab(&self) -> Tab {
        if self.team {
            Tab::Messages
        } else {
            Tab::Notebook
        }
    }
}

/// Counts of what waits for this member in a circle: open alerts of others (one's own
/// waits for someone else) and unread messages.
pub(crate) fn badges(notes: &[NoteRow], messages: &[MessageRow], me: &str) -> (usize, usize) {
    // The alerts addressed to this member (by role or by name), from someone else, open.
    let alerts = notes.iter().filter(|n| n.waits_for_me).count();
    let unread = messages
        .iter()
        .filter(|m| m.author != me && !m.read_by.iter().any(|r| r.by == me))
        .count();
    (alerts, unread)
}

fn badge(count: usize, label: &str, class: &str) -> Markup {
    html! {
        @if count > 0 {
            span class=(format!("badge {class}")) { (count) span class="visually-hidden" { " " (label) } }
        }
    }
}

fn document(ctx: &Ctx, title: &str, circle: Option<&str>, body: Markup) -> Markup {
    let w = ctx.w();
    let other = ctx.lang.other();
    html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Cercle" }
                link rel="stylesheet" href="/ui/style.css";
                link rel="manifest" href="/manifest.webmanifest";
                meta name="theme-color" content="#1d4e89";
                script src="/ui/live.js" defer {}
            }
            body data-circle=[circle] data-alert-notice=(w.alert_notice) data-reminder-notice=(w.reminder_notice) {
                // Shown by live.js while the node does not answer (a phone out of the LAN).
                p id="node-unreachable" class="error" role="alert" hidden { (w.node_unreachable) }
                a class="skip" href="#main" { (w.skip) }
                header class="top" {
                    a class="brand" href="/" { "Cercle" }
                    a href="/" { (w.circles) }
                    @if !ctx.phone { a href="/devices" id="my-devices-link" { (w.devices_title) } }
                    a id="live-peers" data-live href="/sync" class=(if ctx.peers == 0 { "sync off" } else { "sync on" }) {
                        @if ctx.peers == 0 { (w.offline) } @else { (w.peers_connected) " " (ctx.peers) }
                    }
                    form method="post" action="/lang" class="inline" {
                        (hidden_csrf(ctx))
                        input type="hidden" name="back" value=(ctx.here);
                        input type="hidden" name="lang" value=(other.code());
                        button type="submit" class="link" lang=(other.code()) aria-label=(format!("{} : {}", w.switch_label, other.words().language)) {
                            (other.words().language)
                        }
                    }
                    form method="post" action="/logout" class="inline" {
                        (hidden_csrf(ctx))
                        button type="submit" class="link" { (w.sign_out) }
                    }
                    // Shown by live.js where the browser can notify and has not been asked.
                    button type="button" id="notify-enable" class="link" hidden { (w.enable_notifications) }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
}

/// The join page: a field for the invite code, and once given, where the join stands
/// (updated live until the circle is here).
pub(crate) fn join(ctx: &Ctx, view: Option<&crate::ops::join::JoinView>) -> Markup {
    let w = ctx.w();
    document(
        ctx,
        w.join,
        None,
        html! {
            h1 { (w.join) }
            @match view {
                None => {
                    section class="card narrow" {
                        p id="join-help" { (w.join_help) }
                        form method="post" action="/join" {
                            (hidden_csrf(ctx))
                            label for="join-code" { (w.join_code) }
                            textarea id="join-code" name="code" rows="3" required maxlength="4000"
                                autocomplete="off" autocapitalize="off" spellcheck="false" aria-describedby="join-help" {}
                            button type="submit" { (w.join) }
                        }
                        // Shown by live.js where the browser reads QR codes (BarcodeDetector).
                        div id="scan" hidden data-stop=(w.join_scan_stop) data-start=(w.join_scan) data-failed=(w.join_camera) {
                            button type="button" id="scan-start" class="secondary" { (w.join_scan) }
                            video id="scan-video" muted playsinline hidden aria-label=(w.join_scan) {}
                            p id="scan-status" role="status" {}
                        }
                    }
                }
                Some(v) => {
                    section class="card narrow" id="live-join" data-live {
                        @match v.state.as_str() {
                            "joined" => {
                                p class="ack done" { (w.join_joined) }
                                p { a href=(format!("/c/{}", v.circle)) { (w.open_circle) } }
                            }
                            "accepted" => p { (w.join_accepted) },
                            "refused" => p role="alert" class="error" {
                                (w.join_refused) " "
                                @match v.refusal.as_deref().and_then(|c| w.invite_refusal(c)) {
                                    Some(said) => (said),
                                    None => (v.reason.as_deref().unwrap_or_default()),
                                }
                            },
                            _ => p { (w.join_reaching) },
                        }
                    }
                }
            }
        },
    )
}

/// The page that opens a circle: around a patient (names and birth date; the rest in the
/// patient file) or for a team.
pub(crate) fn new_circle(ctx: &Ctx) -> Markup {
    let w = ctx.w();
    let today = jiff::Zoned::now().date().to_string();
    document(
        ctx,
        w.new_circle,
        None,
        html! {
            h1 { (w.new_circle) }
            section class="card narrow" aria-labelledby="for-patient" {
                h2 id="for-patient" { (w.for_patient) }
                p id="for-patient-help" class="muted" { (w.for_patient_help) }
                form method="post" action="/circles" {
                    (hidden_csrf(ctx))
                    input type="hidden" name="kind" value="patient";
                    label for="new-family" { (w.field_label("family_name")) }
                    input id="new-family" name="family_name" required maxlength="200" autocomplete="off"
                        aria-describedby="for-patient-help";
                    label for="new-given" { (w.field_label("given_names")) }
                    input id="new-given" name="given_names" maxlength="200" autocomplete="off";
                    label for="new-birth" { (w.field_label("birth_date")) }
                    input type="date" id="new-birth" name="birth_date" max=(today);
                    button type="submit" { (w.create_circle) }
                }
            }
            section class="card narrow" aria-labelledby="for-team" {
                h2 id="for-team" { (w.for_team) }
                p id="for-team-help" class="muted" { (w.team_circle) }
                form method="post" action="/circles" {
                    (hidden_csrf(ctx))
                    input type="hidden" name="kind" value="team";
                    label for="new-team" { (w.team_name) }
                    input id="new-team" name="team" required maxlength="200" autocomplete="off"
                        aria-describedby="for-team-help";
                    button type="submit" { (w.create_circle) }
                }
            }
        },
    )
}

/// A circle just created whose patient probably has another circle here: said before
/// anything is written, with the circles to compare.
pub(crate) fn created_duplicate(
    ctx: &Ctx,
    created: &str,
    others: &[(String, String, Option<String>)],
) -> Markup {
    let w = ctx.w();
    document(
        ctx,
        w.new_circle,
        None,
        html! {
            h1 { (w.new_circle) }
            section class="card narrow" {
                p role="alert" class="pill warn duplicate" id="duplicate-warning" { (w.created_duplicate) }
                ul id="duplicates" {
                    @for (id, patient, born) in others {
                        li {
                            a href=(format!("/c/{id}/patient")) { (patient) }
                            @if let Some(b) = born { " · " (w.born) " " (ctx.day(b)) }
                        }
                    }
                }
                p { a href=(format!("/c/{created}/patient")) { (w.complete_file) } }
            }
        },
    )
}

/// A page without a session: the login form (in French, or English when the browser chose
/// it before); `failed` when a token was given and was wrong.
pub(crate) fn login(lang: Lang, failed: bool) -> Markup {
    let w = lang.words();
    bare(
        lang,
        w.login,
        html! {
            @if failed { p role="alert" class="error" { (w.login_wrong) } }
            p { (w.login_help) }
            form method="post" action="/login" {
                input type="hidden" name="lang" value=(lang.code());
                label for="token" { (w.token) }
                input id="token" name="token" type="password" autocomplete="off" required;
                button type="submit" { (w.sign_in) }
            }
        },
    )
}

/// A page outside a session (the login form, a phone's pairing page), in `lang`: one card
/// titled `title` holding `body`.
fn bare(lang: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Cercle" }
                link rel="stylesheet" href="/ui/style.css";
                link rel="manifest" href="/manifest.webmanifest";
            }
            body {
                header class="top" { span class="brand" { "Cercle" } }
                main id="main" { section class="card narrow" { h1 { (title) } (body) } }
            }
        }
    }
}

/// A refused or failed action, with the reason and the way back.
/// The page saying why an action failed: a heading for the kind of failure, in the page's
/// language, and the node's sentence.
pub(crate) fn failure(
    ctx: &Ctx,
    kind: Option<crate::ops::ErrorKind>,
    reason: &str,
    back: &str,
) -> Markup {
    let w = ctx.w();
    let title = kind.map_or(w.failed, |k| w.error_kind(k));
    document(
        ctx,
        title,
        None,
        html! {
            section class="card narrow" {
                h1 { (title) }
                p role="alert" class="error" { (reason) }
                a href=(back) { (w.back) }
            }
        },
    )
}

/// One circle on the home page.
#[derive(Debug, Clone)]
pub(crate) struct CircleRow {
    pub(crate) head: CircleHead,
    pub(crate) last_note: Option<NoteRow>,
}

/// The home page: the circles a member added this member to, waiting for an answer; the
/// member's circles, with what waits in each; and those that cannot be read.
pub(crate) fn home(ctx: &Ctx, rows: &[CircleRow], list: &crate::ops::circles::Circles) -> Markup {
    let w = ctx.w();
    // The tab's title counts the alerts waiting, so a member sees them from another tab.
    let waiting: usize = rows.iter().map(|r| r.head.alerts).sum();
    let title = match waiting {
        0 => w.circles.to_string(),
        n => format!("({n}) {}", w.circles),
    };
    document(
        ctx,
        &title,
        None,
        html! {
            @if !list.invitations.is_empty() {
                section class="card invitations" id="invitations" {
                    h2 { (w.invitations) }
                    ul {
                        @for i in &list.invitations {
                            li {
                                p {
                                    (w.added_you
                                        .replace("{who}", i.added_by_name.as_deref().unwrap_or(w.someone))
                                        .replace("{patient}", if i.patient.is_empty() { w.a_patient } else { &i.patient })
                                        .replace("{role}", &w.role(i.role.map_or("", |r| r.as_str())).to_lowercase()))
                                }
                                @if !i.colleague { p class="ack pending" { (w.from_stranger) } }
                                form method="post" action=(format!("/invitations/{}/accept", i.circle)) class="inline" {
                                    (hidden_csrf(ctx))
                                    @if let (true, Some(who)) = (i.colleague, i.added_by_name.as_deref()) {
                                        label {
                                            input type="checkbox" name="always" value="1";
                                            " " (w.accept_always.replace("{who}", who))
                                        }
                                        " "
                                    }
                                    button type="submit" { (w.accept) }
                                }
                                " "
                                form method="post" action=(format!("/invitations/{}/decline", i.circle)) class="inline" {
                                    (hidden_csrf(ctx))
                                    button type="submit" class="secondary" { (w.decline) }
                                }
                            }
                        }
                    }
                }
            }
            h1 { (w.circles) }
            div id="live-circles" data-live {
                @if rows.is_empty() { section class="card" { p { (w.no_circles) } } }
                ul class="circles" {
                    @for r in rows {
                        li class="card" {
                            h2 {
                                a href=(r.head.url(r.head.home_tab())) { (r.head.patient) }
                                @if r.head.team { " " span class="pill ok team" { (w.team) } }
                                @if r.head.suspended.is_some() { " " span class="pill warn suspended" { (w.suspended_banner) } }
                                " " (badge(r.head.alerts, w.alerts_open, "alert"))
                                (badge(r.head.unread, w.unread, "unread"))
                            }
                            @let info = list.circles.iter().find(|c| c.id == r.head.id);
                            @if let Some(born) = info.and_then(|i| i.birth_date.as_deref()) {
                                p class="born" { (w.born) " " (ctx.day(born)) }
                            }
                            @if info.is_some_and(|i| !i.probable_duplicates.is_empty()) {
                                p class="pill warn duplicate" { (w.probable_duplicate) }
                            }
                            p class="muted" {
                                (w.role(&r.head.role))
                                @if r.head.alerts > 0 { " · " (r.head.alerts) " " (w.alerts_open) }
                                @if r.head.unread > 0 {
                                    " · " a href=(r.head.url(Tab::Messages)) { (r.head.unread) " " (w.unread) }
                                }
                            }
                            @match &r.last_note {
                                Some(n) => p { span class="muted" { (w.last_note) " · " (ctx.when(n.at_millis)) " · " } (n.text) },
                                None if r.head.team => p class="muted" { (w.team_circle) },
                                None => p class="muted" { (w.no_notes) },
                            }
                        }
                    }
                }
            }
            p class="join-link" {
                a href="/new" { (w.new_circle_link) }
                " · "
                a href="/join" { (w.join_link) }
                " · "
                a href="/emergency" id="emergency-link" { (w.emergency_link) }
            }
            @if !list.damaged.is_empty() {
                section class="card" {
                    h2 { (w.damaged_circles) }
                    ul { @for d in &list.damaged { li { code { (&d.id[..12.min(d.id.len())]) } " — " (d.reason) } } }
                }
            }
            @if !list.closed.is_empty() {
                section class="card" id="closed-circles" {
                    h2 { (w.closed_circles) }
                    p class="muted" { (w.closed_help) }
                    ul {
                        @for c in &list.closed {
                            li class="closed-circle" {
                                code { (&c.circle[..12.min(c.circle.len())]) }
                                " — " (w.closed_on) " " (ctx.when(c.closed_at)) " "
                                (w.closed_by) " " (c.closed_by_name.as_deref().unwrap_or(&c.closed_by[..12.min(c.closed_by.len())]))
                                " · " a href=(format!("/c/{}/audit", c.circle)) { (w.audit) }
                                ul {
                                    @if c.receipts.is_empty() && c.awaited.is_empty() { li class="muted" { (w.receipt_no_relay) } }
                                    @for p in &c.awaited {
                                        li class="receipt awaited muted" {
                                            (w.receipt_relay) " " code { (&p[..16.min(p.len())]) } " : " (w.receipt_awaited)
                                        }
                                    }
                                    @for r in &c.receipts {
                                        li class="receipt" {
                                            (w.receipt_relay) " " code { (&r.peer_id[..16.min(r.peer_id.len())]) } " : "
                                            (r.envelopes) " " (w.receipt_envelopes) " · " (ctx.when(r.at)) " · "
                                            @if r.verified { span class="pill ok" { (w.receipt_verified) } }
                                            @else { span class="pill warn" { (w.receipt_bad) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn circle_page(ctx: &Ctx, head: &CircleHead, tab: Tab, body: Markup) -> Markup {
    let w = ctx.w();
    document(
        ctx,
        &format!("{} · {}", head.patient, tab.name(w)),
        Some(&head.id),
        html! {
            h1 { (head.patient) }
            @if let Some(reason) = &head.suspended {
                p class="pill warn suspended" id="suspended" role="status" {
                    (w.suspended_banner) " : " (reason)
                }
            }
            @for (e, ended) in &head.emergency {
                p class="pill warn emergency" role="status" {
                    (w.emergency_banner) " " strong { (e.name.as_deref().unwrap_or("?")) }
                    @if let Some(p) = e.profession.as_deref().filter(|p| !p.is_empty()) { " (" (p) ")" }
                    @if let Some(r) = &e.reason { ", " (w.emergency_reason) " : " (r) }
                    ", " @if *ended { (w.emergency_ended) } @else { (w.emergency_until) } " " (ctx.when(e.until))
                }
            }
            nav aria-label=(w.sections) id="live-tabs" data-live class="tabs" {
                @for t in head.tabs() {
                    a href=(head.url(t)) aria-current=[(t == tab).then_some("page")] {
                        (t.name(w))
                        @if t == Tab::Notebook { (badge(head.alerts, w.alerts_open, "alert")) }
                        @if t == Tab::Messages { (badge(head.unread, w.unread, "unread")) }
                    }
                }
            }
            (body)
        },
    )
}

/// The notebook's filter, from the page's query.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub(crate) struct NoteFilter {
    #[serde(default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) author: String,
    /// The first and last day shown (`YYYY-MM-DD`, this machine's calendar), e.g. the
    /// period to print.
    #[serde(default)]
    pub(crate) from: String,
    #[serde(default)]
    pub(crate) to: String,
}

impl NoteFilter {
    /// Whether a note written at `at_millis` falls within the period (a bound left blank
    /// or unreadable does not limit it).
    fn in_period(&self, at_millis: i64) -> bool {
        let Some(day) = jiff::Timestamp::from_millisecond(at_millis).ok().map(|t| {
            let zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
            t.to_zoned(zone).date()
        }) else {
            return true;
        };
        let bound = |s: &str| s.parse::<jiff::civil::Date>().ok();
        bound(&self.from).is_none_or(|from| day >= from)
            && bound(&self.to).is_none_or(|to| day <= to)
    }

    fn is_set(&self) -> bool {
        !(self.kind.is_empty()
            && self.author.is_empty()
            && self.from.is_empty()
            && self.to.is_empty())
    }
}

/// How long since `at_millis`, roughly, for people: "35 min", "5 h", "3 j".
fn waited(w: &Words, at_millis: i64) -> String {
    let minutes = (jiff::Timestamp::now().as_millisecond() - at_millis).max(0) / 60_000;
    match minutes {
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h", m / 60),
        m => format!("{} {}", m / (24 * 60), w.day_unit),
    }
}

fn who(w: &Words, name: Option<&str>) -> String {
    name.unwrap_or(w.unknown_member).to_string()
}

fn receipts(ctx: &Ctx, rows: &[ReceiptRow], me: &str) -> Markup {
    let w = ctx.w();
    html! {
        @for (i, r) in rows.iter().enumerate() {
            @if i > 0 { ", " }
            @if r.by == me { (w.you) } @else { (who(w, r.by_name.as_deref())) }
            " (" time datetime=(r.at) { (ctx.when(r.at_millis)) } ")"
        }
    }
}

/// The liaison notebook: the timeline (newest first, filtered), and the form to add a note.
pub(crate) fn notebook(
    ctx: &Ctx,
    head: &CircleHead,
    notes: &[NoteRow],
    filter: &NoteFilter,
    me: &str,
    members: &[(String, String)],
) -> Markup {
    let w = ctx.w();
    let mut authors: Vec<(String, String)> = notes
        .iter()
        .map(|n| (n.author.clone(), who(w, n.author_name.as_deref())))
        .collect();
    authors.sort();
    authors.dedup();
    let shown: Vec<&NoteRow> = notes
        .iter()
        .rev()
        .filter(|n| filter.kind.is_empty() || n.kind == filter.kind)
        .filter(|n| filter.author.is_empty() || n.author == filter.author)
        .filter(|n| filter.in_period(n.at_millis))
        .collect();
    circle_page(
        ctx,
        head,
        Tab::Notebook,
        html! {
            // The notebook first: the form folds into one line (opened at once on a wide
            // screen by live.js, and set beside the notebook), the filter into another.
            div class="notebook-layout" {
            section class="card compose" aria-labelledby="new-note" {
                @if head.writes_care() {
                    details id="compose" {
                        summary { h2 id="new-note" { (w.new_note) } }
                        form method="post" action=(format!("/c/{}/notes", head.id)) {
                            (hidden_csrf(ctx))
                            label for="note-kind" { (w.kind) }
                            select id="note-kind" name="kind" {
                                @for k in KINDS { option value=(k) { (w.kind(k)) } }
                            }
                            label for="note-text" { (w.text) }
                            textarea id="note-text" name="text" rows="4" maxlength="8000" {}
                            label for="note-to" { (w.alert_to) }
                            select id="note-to" name="to" aria-describedby="note-to-help" {
                                option value="" { (w.to_coordinators) }
                                @for r in ["professional", "caregiver"] { option value=(r) { (w.to_role(r)) } }
                                @for (id, name) in members.iter().filter(|(id, _)| id != me) { option value=(id) { (name) } }
                            }
                            p class="muted" id="note-to-help" { (w.alert_to_help) }
                            details class="vitals-fields" {
                                summary { (w.vitals_values) }
                                p class="muted" id="vitals-hint" { (w.vitals_hint) }
                                div class="signs" {
                                    @for sign in cercle_crdt::Sign::ALL {
                                        div {
                                            label for=(format!("sign-{}", sign.key())) {
                                                (w.sign(sign)) " (" (sign.unit()) ")"
                                            }
                                            input type="text" id=(format!("sign-{}", sign.key())) name=(sign.key())
                                                inputmode=(if sign == cercle_crdt::Sign::BloodPressure || sign.places() > 0 { "text" } else { "numeric" })
                                                placeholder=(sign.example()) autocomplete="off" size="7" maxlength="16"
                                                aria-describedby="vitals-hint";
                                        }
                                    }
                                }
                            }
                            button type="submit" { (w.add) }
                        }
                    }
                } @else {
                    h2 id="new-note" { (w.new_note) }
                    p { (w.read_only) }
                }
            }
            section class="card" aria-labelledby="timeline" {
                h2 id="timeline" { (w.notebook) }
                // Prints the notebook as filtered (kind, author, period), without the page's forms.
                button type="button" id="print-notebook" class="secondary small" hidden { (w.print_notebook) }
                @if !filter.from.is_empty() || !filter.to.is_empty() {
                    p class="print-only period" {
                        (w.notebook) " · " (head.patient) " · "
                        @if !filter.from.is_empty() { (w.period_from) " " (ctx.day(&filter.from)) " " }
                        @if !filter.to.is_empty() { (w.period_to) " " (ctx.day(&filter.to)) }
                    }
                }
                details class="filter" open[filter.is_set()] {
                    summary { (w.filter) }
                    form method="get" action=(head.url(Tab::Notebook)) class="filters" {
                        div {
                            label for="filter-kind" { (w.kind) }
                            select id="filter-kind" name="kind" {
                                option value="" { (w.all_kinds) }
                                @for k in KINDS { option value=(k) selected[filter.kind == k] { (w.kind(k)) } }
                            }
                        }
                        div {
                            label for="filter-author" { (w.author) }
                            select id="filter-author" name="author" {
                                option value="" { (w.all_authors) }
                                @for (id, name) in &authors { option value=(id) selected[&filter.author == id] { (name) } }
                            }
                        }
                        div {
                            label for="filter-from" { (w.period_from_label) }
                            input type="date" id="filter-from" name="from" value=(filter.from);
                        }
                        div {
                            label for="filter-to" { (w.period_to_label) }
                            input type="date" id="filter-to" name="to" value=(filter.to);
                        }
                        button type="submit" { (w.filter) }
                    }
                }
                ol id="live-notes" data-live class="timeline" {
                    @if shown.is_empty() { li { (w.no_notes) } }
                    @for n in shown {
                        li class=(format!("note {}", n.kind)) id=(format!("note-{}", n.id)) {
                            div class="meta" {
                                span class="kind" { (w.kind(&n.kind)) }
                                time datetime=(n.at) { (ctx.when(n.at_millis)) }
                                span class="muted" { (who(w, n.author_name.as_deref())) }
                                @if n.amended { span class="muted" { " · " (w.amended) } }
                                @if let (true, Some(at), Some(ms)) = (n.dated_apart, &n.received_at, n.received_millis) {
                                    span class=(if n.at_millis > ms { "received future" } else { "received" }) {
                                        " · " (w.received_on) " " time datetime=(at) { (ctx.when(ms)) }
                                    }
                                }
                            }
                            p class="text" { (n.text) }
                            @if let Some(to) = &n.to {
                                p class=(if n.waits_for_me { "to for-me" } else { "to" }) {
                                    (w.for_whom) " "
                                    @match to {
                                        cercle_crdt::Addressee::Member(m) => {
                                            @if m.to_hex() == me { (w.you) } @else { (who(w, n.to_name.as_deref())) }
                                        }
                                        cercle_crdt::Addressee::Role(r) => (w.to_role(r.as_str())),
                                    }
                                }
                            }
                            @if n.kind == "alert" {
                                @if n.acks.is_empty() {
                                    p class="ack pending" { (w.awaiting_ack) " · " (w.waiting_since) " " (waited(w, n.at_millis)) }
                                    // Someone other than its author closes an alert, and only
                                    // a role that writes the notebook.
                                    @if n.author != me && head.writes_care() {
                                        form method="post" action=(format!("/c/{}/notes/{}/ack", head.id, n.id)) class="inline" {
                                            (hidden_csrf(ctx))
                                            button type="submit" class="ack-button" { (w.acknowledge) }
                                        }
                                    } @else if n.author == me {
                                        span class="muted" { (w.ack_by_another) }
                                    }
                                } @else {
                                    p class="ack done" { (w.acknowledged_by) " " (receipts(ctx, &n.acks, me)) }
                                }
                            }
                            @if n.author == me && head.writes_care() {
                                details class="amend" {
                                    summary { (w.amend) }
                                    form method="post" action=(format!("/c/{}/notes/{}/amend", head.id, n.id)) {
                                        (hidden_csrf(ctx))
                                        label for=(format!("amend-{}", n.id)) { (w.text) }
                                        textarea id=(format!("amend-{}", n.id)) name="text" rows="3" required { (n.text) }
                                        button type="submit" { (w.save) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            }
        },
    )
}

/// The circle's messages (oldest first, as a conversation), with who read each.
pub(crate) fn messages(ctx: &Ctx, head: &CircleHead, messages: &[MessageRow], me: &str) -> Markup {
    let w = ctx.w();
    circle_page(
        ctx,
        head,
        Tab::Messages,
        html! {
            section class="card" aria-labelledby="thread" {
                h2 id="thread" { (w.messages) }
                @let unread = messages.iter().filter(|m| m.author != me && m.read_by.iter().all(|r| r.by != me)).count();
                // The page posts this once shown (live.js); without scripts, it is a button.
                form id="mark-read" data-live method="post" action=(format!("{}/read", head.url(Tab::Messages))) data-unread=(unread) {
                    (hidden_csrf(ctx))
                    @if unread > 0 && head.writes_messages() { button type="submit" class="link" { (w.mark_read) } }
                }
                ol id="live-messages" data-live class="thread" {
                    @if messages.is_empty() { li class="muted" { (w.no_messages) } }
                    @for m in messages {
                        li class=(if m.author == me { "message mine" } else { "message" }) id=(format!("msg-{}", m.id)) {
                            div class="meta" {
                                strong { @if m.author == me { (w.you) } @else { (who(w, m.author_name.as_deref())) } }
                                " " time datetime=(m.at) { (ctx.when(m.at_millis)) }
                            }
                            p class="text" { (m.text) }
                            @let others: Vec<ReceiptRow> = m.read_by.iter().filter(|r| r.by != m.author).cloned().collect();
                            p class="receipt muted" {
                                @if others.is_empty() { (w.not_read) } @else { (w.read_by) " " (receipts(ctx, &others, me)) }
                            }
                        }
                    }
                }
            }
            @if head.writes_messages() {
                section class="card" aria-labelledby="new-message" {
                    h2 id="new-message" { (w.new_message) }
                    form method="post" action=(head.url(Tab::Messages)) {
                        (hidden_csrf(ctx))
                        label for="message-text" { (w.text) }
                        textarea id="message-text" name="text" rows="3" required maxlength="8000" {}
                        button type="submit" { (w.send) }
                    }
                }
            }
        },
    )
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} o"),
        b if b < 1024 * 1024 => format!("{:.0} Kio", b as f64 / 1024.0),
        b => format!("{:.1} Mio", b as f64 / (1024.0 * 1024.0)),
    }
}

/// The patient file's documents: download (or fetch from a member), and upload.
pub(crate) fn documents(
    ctx: &Ctx,
    head: &CircleHead,
    docs: &[DocumentRow],
    names: &[(String, String)],
) -> Markup {
    let w = ctx.w();
    circle_page(
        ctx,
        head,
        Tab::Documents,
        html! {
            section class="card" aria-labelledby="docs" {
                h2 id="docs" { (w.documents) }
                div id="live-documents" data-live {
                    @if docs.is_empty() { p class="muted" { (w.no_documents) } }
                    ul class="documents" {
                        @for d in docs {
                            li {
                                @let base = format!("/c/{}/documents/{}", head.id, d.id);
                                // A photo held here shows as a thumbnail (the node checks
                                // it is one); a PDF opens in the browser's viewer.
                                @if d.here && matches!(d.media_type.as_str(), "image/jpeg" | "image/png" | "image/webp" | "image/gif") {
                                    a href=(format!("{base}/view")) target="_blank" rel="noopener" class="thumb" {
                                        img src=(format!("{base}/view")) alt=(d.name) loading="lazy" class="thumb";
                                    }
                                }
                                a href=(base) download=(d.name) {
                                    @if d.here { (w.download) } @else { (w.fetch) } " : " (d.name)
                                }
                                @if d.here && d.media_type == "application/pdf" {
                                    " · " a href=(format!("{base}/view")) target="_blank" rel="noopener" class="view" { (w.view_pdf) }
                                }
                                span class="muted" {
                                    " · " (d.media_type) " · " (w.size) " " (size(d.size)) " · " (w.added_by) " "
                                    (names.iter().find(|(id, _)| *id == d.added_by).map_or(w.unknown_member, |(_, n)| n.as_str()))
                                }
                            }
                        }
                    }
                }
            }
            @if head.writes_care() {
                section class="card" aria-labelledby="upload" {
                    h2 id="upload" { (w.upload) }
                    form method="post" action=(head.url(Tab::Documents)) enctype="multipart/form-data" {
                        (hidden_csrf(ctx))
                        label for="doc-file" { (w.file) " (8 Mio max.)" }
                        input id="doc-file" name="file" type="file" required;
                        button type="submit" { (w.upload) }
                    }
                    // On a phone or a tablet, the camera opens at once; the photo goes
                    // straight into the documents.
                    form method="post" action=(head.url(Tab::Documents)) enctype="multipart/form-data" {
                        (hidden_csrf(ctx))
                        label for="doc-photo" { (w.take_photo) }
                        input id="doc-photo" name="file" type="file" accept="image/*" capture="environment" required;
                        button type="submit" { (w.upload) }
                    }
                }
            }
        },
    )
}

/// The circle's members, its relays, and (for coordinators) the invite form and a fresh
/// code with its QR.
pub(crate) fn members(
    ctx: &Ctx,
    head: &CircleHead,
    summary: &CircleSummary,
    me: &str,
    invite: Option<&InviteView>,
    search: Option<&DirectoryResults>,
) -> Markup {
    let w = ctx.w();
    circle_page(
        ctx,
        head,
        Tab::Members,
        html! {
            section class="card" aria-labelledby="members" {
                h2 id="members" { (w.members) }
                table id="live-members" data-live class="stack" {
                    thead { tr { th scope="col" { (w.name) } th scope="col" { (w.profession) } th scope="col" { (w.role) } th scope="col" { (w.directory) } } }
                    tbody {
                        @for m in &summary.members {
                            tr {
                                td { strong { (who(w, m.name.as_deref())) } @if m.member == me { " (" (w.you) ")" } }
                                td data-label=(w.profession) { (m.profession.as_deref().unwrap_or("")) }
                                td data-label=(w.role) { (w.role(m.role.as_str())) }
                                td data-label=(w.directory) class="directory" {
                                    @match &m.directory {
                                        Standing::Verified => { span class="verified" { "✓ " (w.directory_verified) } }
                                        Standing::Contradicted { directory } => { span class="contradicted" { (w.directory_contradicted) " " (directory) } }
                                        _ => { span class="muted" { (w.directory_declared) } }
                                    }
                                }
                            }
                        }
                    }
                }
                @for f in &summary.forks {
                    p class="error fork" {
                        (w.audit_forks) " : " (who(w, f.name.as_deref())) " — " (f.document) " n° " (f.seq) ". "
                        a href=(format!("/c/{}/audit", head.id)) { (w.audit) }
                    }
                }
                @for d in &summary.revoked_devices {
                    p class="revoked-device" {
                        (w.device_of) " " (who(w, d.name.as_deref())) " " (w.device_revoked_on) " " (ctx.when(d.at)) "."
                    }
                }
                @if !summary.relays.is_empty() {
                    details {
                        summary { (w.relays) " (" (summary.relays.len()) ")" }
                        ul class="mono" { @for r in &summary.relays { li { (r) } } }
                    }
                }
            }
            section class="card" aria-labelledby="reminder" {
                h2 id="reminder" { (w.reminder) }
                p id="reminder-delay" {
                    @if summary.reminder_hours == 0 { (w.reminder_off) }
                    @else { (w.reminder_every) " " (summary.reminder_hours) " h." }
                }
                @if head.role == "coordinator" {
                    details class="edit" id="reminder-details" {
                        summary { (w.reminder_set) }
                        form method="post" action=(format!("/c/{}/reminder", head.id)) class="filters" {
                            (hidden_csrf(ctx))
                            div {
                                label for="reminder-hours" { (w.reminder_hours) }
                                input type="number" id="reminder-hours" name="hours" min="0" max="720" required value=(summary.reminder_hours);
                            }
                            button type="submit" { (w.save) }
                        }
                    }
                }
            }
            @if !head.team {
                section class="card" aria-labelledby="on-call" {
                    h2 id="on-call" { (w.on_call_title) }
                    p { (w.on_call_help) }
                    @if summary.on_call.is_empty() { p class="muted" id="on-call-none" { (w.on_call_none) } }
                    ul id="on-call-list" {
                        @for o in &summary.on_call {
                            li {
                                strong { (o.name) } @if !o.profession.is_empty() { " — " (o.profession) }
                                @if head.role == "coordinator" {
                                    form method="post" action=(format!("/c/{}/on-call", head.id)) class="inline" {
                                        (hidden_csrf(ctx))
                                        input type="hidden" name="remove" value=(o.member);
                                        " " button type="submit" class="secondary" { (w.on_call_remove) }
                                    }
                                }
                            }
                        }
                    }
                    @if head.role == "coordinator" && head.suspended.is_none() {
                        details class="edit" id="on-call-details" {
                            summary { (w.on_call_add) }
                            form method="post" action=(format!("/c/{}/on-call", head.id)) {
                                (hidden_csrf(ctx))
                                div {
                                    label for="on-call-card" { (w.on_call_add) }
                                    textarea id="on-call-card" name="card" rows="3" required maxlength="4000"
                                        autocomplete="off" autocapitalize="off" spellcheck="false" {}
                                }
                                button type="submit" { (w.save) }
                            }
                        }
                    }
                    @if head.suspended.is_none() {
                        p { a href=(format!("/c/{}/emergency-code", head.id)) id="emergency-code-link" { (w.emergency_code_print) } }
                    }
                }
            }
            @if matches!(head.role.as_str(), "coordinator" | "professional") && head.suspended.is_none() && !head.team {
                section class="card" aria-labelledby="withdraw" {
                    h2 id="withdraw" { (w.withdraw_title) }
                    p { (w.withdraw_help) }
                    details class="edit" id="withdraw-details" {
                        summary { (w.withdraw_title) "…" }
                        form method="post" action=(format!("/c/{}/consent-withdraw", head.id)) {
                            (hidden_csrf(ctx))
                            div {
                                label for="withdraw-reason" { (w.withdraw_reason) }
                                textarea id="withdraw-reason" name="reason" required maxlength="500" {}
                            }
                            button type="submit" id="withdraw-button" { (w.withdraw_button) }
                        }
                    }
                }
            }
            @if head.role == "coordinator" {
                section class="card danger" aria-labelledby="close" {
                    h2 id="close" { (w.close_title) }
                    p { (w.close_help) }
                    details class="edit" id="close-details" {
                        summary { (w.close_title) "…" }
                        form method="post" action=(format!("/c/{}/close", head.id)) {
                            (hidden_csrf(ctx))
                            p {
                                input type="checkbox" id="close-confirm" name="confirm" value="yes" required;
                                " " label for="close-confirm" { (w.close_confirm) " " strong { (head.patient) } }
                            }
                            button type="submit" class="danger" id="close-button" { (w.close_button) }
                        }
                    }
                }
            }
            @if let Some(i) = invite {
                section class="card" aria-labelledby="code" {
                    h2 id="code" { (w.invite_code) }
                    p { (w.role) " : " (w.role(i.role.as_str())) " · " (w.invite_expires) " " (ctx.when(i.expires_at)) }
                    p { (w.invite_short) " : " br; code class="short-code" id="invite-short" { (i.short) } }
                    p class="muted" { (w.invite_short_help) }
                    div class="qr" { (qr(&i.code)) }
                    p { code class="invite" id="invite-code" { (i.code) } }
                    p class="muted" { (w.invite_help) }
                }
            }
            @if head.role == "coordinator" {
                section class="card" aria-labelledby="invite" {
                    h2 id="invite" { (w.invite) }
                    form method="get" action=(format!("/c/{}/members", head.id)) class="filters" id="directory-search" {
                        div {
                            label for="directory-query" { (w.directory_search) }
                            input type="search" id="directory-query" name="annuaire" maxlength="80" value=(search.map_or("", |s| s.query.as_str()));
                        }
                        button type="submit" { (w.directory_search_button) }
                    }
                    @if let Some(found) = search {
                        @if found.professionals.is_empty() {
                            p class="muted" id="directory-found" { (w.directory_none) }
                        } @else {
                            ul id="directory-found" {
                                @for p in &found.professionals {
                                    li { strong { (p.first_name) " " (p.last_name) } " — " (p.profession) " — "
                                        (p.register.label()) " " span class="mono" { (p.number) } }
                                }
                            }
                        }
                    }
                    form method="post" action=(format!("/c/{}/invites", head.id)) class="filters" {
                        (hidden_csrf(ctx))
                        div {
                            label for="invite-role" { (w.role) }
                            select id="invite-role" name="role" { @for r in ROLES { option value=(r) { (w.role(r)) } } }
                        }
                        div {
                            label for="invite-validity" { (w.valid_for) }
                            select id="invite-validity" name="validity" {
                                option value="1h" { "1 h" }
                                option value="1d" selected { "24 h" }
                                option value="7d" { "7 j" }
                            }
                        }
                        button type="submit" { (w.create_invite) }
                    }
                }
            }
        },
    )
}

/// What a search of the directory found, for the members page.
#[derive(Debug)]
pub(crate) struct DirectoryResults {
    pub(crate) query: String,
    pub(crate) professionals: Vec<Professional>,
}

/// The page an on-call professional asks for emergency access from: the patient's code,
/// why, and for how long.
pub(crate) fn emergency(ctx: &Ctx) -> Markup {
    let w = ctx.w();
    document(
        ctx,
        w.emergency_title,
        None,
        html! {
            h1 { (w.emergency_title) }
            section class="card narrow" {
                p id="emergency-help" { (w.emergency_help) }
                form method="post" action="/emergency" {
                    (hidden_csrf(ctx))
                    label for="emergency-code" { (w.emergency_code) }
                    textarea id="emergency-code" name="code" rows="3" required maxlength="4000"
                        autocomplete="off" autocapitalize="off" spellcheck="false" aria-describedby="emergency-help" {}
                    label for="emergency-reason" { (w.emergency_reason_label) }
                    textarea id="emergency-reason" name="reason" rows="2" required maxlength="500" {}
                    label for="emergency-hours" { (w.emergency_duration) }
                    select id="emergency-hours" name="hours" {
                        @for h in [1, 4, 12, 24] {
                            option value=(h) selected[h == 24] { (h) " " (w.emergency_hours) }
                        }
                    }
                    button type="submit" { (w.emergency_ask) }
                }
            }
        },
    )
}

/// The patient's emergency code to print and leave at the patient's home.
pub(crate) fn emergency_code(
    ctx: &Ctx,
    head: &CircleHead,
    view: &crate::ops::emergency::EmergencyCodeView,
) -> Markup {
    let w = ctx.w();
    circle_page(
        ctx,
        head,
        Tab::Patient,
        html! {
            section class="card emergency-code" aria-labelledby="emergency-code-title" {
                h2 id="emergency-code-title" { (w.emergency_code) " — " (view.patient) }
                p { (w.emergency_code_help) }
                div class="qr" { (qr(&view.code.to_ascii_uppercase())) }
                p class="mono code" id="emergency-code-text" { (view.code) }
                h3 { (w.on_call_title) }
                @if view.on_call.is_empty() { p class="muted" { (w.on_call_none) } }
                ul { @for o in &view.on_call { li { (o.name) @if !o.profession.is_empty() { " — " (o.profession) } } } }
            }
        },
    )
}

/// The invite code as a QR code (SVG), or nothing when it does not fit one.
fn qr(code: &str) -> Markup {
    match qrcode::QrCode::with_error_correction_level(code.as_bytes(), qrcode::EcLevel::L) {
        Ok(q) => {
            let svg = q
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(220, 220)
                .quiet_zone(true)
                .build();
            // The renderer's own output (no user text in it: only the code's modules).
            let body = svg.find("<svg").map_or("", |at| &svg[at..]);
            PreEscaped(body.to_string())
        }
        Err(_) => html! {},
    }
}

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

/// Notes per week over the last eight weeks, oldest first.
pub(crate) fn notes_per_week(
    notes: &[NoteRow],
    now_ms: i64,
    day_format: &str,
    week_of: &str,
) -> Vec<Bar> {
    (0..8)
        .rev()
        .map(|weeks_ago| {
            let end = now_ms - weeks_ago * WEEK_MS;
            let start = end - WEEK_MS;
            let count = notes
                .iter()
                .filter(|n| n.at_millis > start && n.at_millis <= end)
                .count();
            Bar {
                label: format!("{week_of} {}", when(day_format, start + 1)),
                value: count as f64,
                shown: count.to_string(),
            }
        })
        .collect()
}

/// Hours from each of the last ten alerts to its first acknowledgement; alerts still open
/// are shown waiting, with the time so far.
pub(crate) fn time_to_acknowledge(
    notes: &[NoteRow],
    now_ms: i64,
    day_format: &str,
    w: &Words,
) -> Vec<Bar> {
    let alerts: Vec<&NoteRow> = notes.iter().filter(|n| n.kind == "alert").collect();
    alerts
        .iter()
        .skip(alerts.len().saturating_sub(10))
        .map(|n| {
            let first = n.acks.iter().map(|a| a.at_millis).min();
            let hours = (first.unwrap_or(now_ms) - n.at_millis).max(0) as f64 / 3_600_000.0;
            Bar {
                label: format!("{} {}", when(day_format, n.at_millis), trim(&n.text, 16)),
                value: hours,
                shown: match first {
                    Some(_) => format!("{} {}", w.decimal(hours, 1), w.hours),
                    None => format!("{} {} …", w.decimal(hours, 1), w.hours),
                },
            }
        })
        .collect()
}

/// Notes and messages per member over the last thirty days, most active first.
pub(crate) fn active_members(
    notes: &[NoteRow],
    messages: &[MessageRow],
    now_ms: i64,
    w: &Words,
) -> Vec<Bar> {
    let since = now_ms - 30 * 24 * 3600 * 1000;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let written = notes
        .iter()
        .filter(|n| n.at_millis > since)
        .map(|n| n.author_name.as_deref())
        .chain(
            messages
                .iter()
                .filter(|m| m.at_millis > since)
                .map(|m| m.author_name.as_deref()),
        );
    for name in written {
        *counts.entry(who(w, name)).or_default() += 1;
    }
    let mut bars: Vec<Bar> = counts
        .into_iter()
        .map(|(label, n)| Bar {
            label: trim(&label, 24),
            value: n as f64,
            shown: format!("{n} {}", w.entries),
        })
        .collect();
    bars.sort_by(|a, b| b.value.total_cmp(&a.value));
    bars
}

fn trim(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The activity indicators of a circle.
pub(crate) fn activity(
    ctx: &Ctx,
    head: &CircleHead,
    notes: &[NoteRow],
    messages: &[MessageRow],
    now_ms: i64,
) -> Markup {
    let w = ctx.w();
    circle_page(
        ctx,
        head,
        Tab::Activity,
        html! {
            div id="live-activity" data-live class="charts" {
                section class="card" {
                    (chart::bars("chart-weeks", w.notes_per_week, w.notes_per_week_desc,
                        &notes_per_week(notes, now_ms, w.day_format, w.week_of), w.no_data))
                }
                section class="card" {
                    (chart::bars("chart-acks", w.time_to_ack, w.time_to_ack_desc,
                        &time_to_acknowledge(notes, now_ms, w.day_format, w), w.no_data))
                }
                section class="card" {
                    (chart::bars("chart-members", w.active_members, w.active_members_desc,
                        &active_members(notes, messages, now_ms, w), w.no_data))
                }
            }
        },
    )
}

/// The circle's audit trail: writes with both times, refusals, forks.
pub(crate) fn audit(ctx: &Ctx, head: &CircleHead, trail: &AuditTrail) -> Markup {
    let w = ctx.w();
    let short = |s: &str| s.chars().take(12).collect::<String>();
    circle_page(
        ctx,
        head,
        Tab::Audit,
        html! {
            @if !trail.forks.is_empty() {
                section class="card error" aria-labelledby="forks" id="audit-forks" {
                    h2 id="forks" { (w.audit_forks) }
                    ul {
                        @for f in &trail.forks {
                            li { (who(w, f.name.as_deref())) " — " (w.audit_fork_device) " " span class="mono" { (short(&f.device)) } " — " (f.document) " n° " (f.seq) }
                        }
                    }
                }
            }
            section class="card" aria-labelledby="writes" {
                h2 id="writes" { (w.audit_writes) }
                p class="muted" { (w.audit_help) }
                table id="audit-writes" class="stack" {
                    thead { tr {
                        th scope="col" { (w.audit_at) } th scope="col" { (w.audit_received) }
                        th scope="col" { (w.name) } th scope="col" { (w.audit_device) }
                        th scope="col" { (w.audit_action) }
                    } }
                    tbody {
                        @for r in trail.writes.iter().rev() {
                            tr {
                                td data-label=(w.audit_at) { (ctx.when(r.at)) }
                                td data-label=(w.audit_received) { @match r.received { Some(at) => (ctx.when(at)), None => span class="muted" { (w.audit_here) } } }
                                td data-label=(w.name) { (who(w, r.name.as_deref())) }
                                td data-label=(w.audit_device) class="mono" { (r.device.as_deref().map(short).unwrap_or_default()) }
                                td data-label=(w.audit_action) {
                                    (w.audit_action_name(&r.action))
                                    @if let Some(a) = &r.about {
                                        " — " @if r.action == "note_written" { (w.kind(a)) } @else { (a) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section class="card" aria-labelledby="refusals" {
                h2 id="refusals" { (w.audit_refusals) }
                @if trail.refusals.is_empty() {
                    p class="muted" { (w.audit_no_refusals) }
                } @else {
                    table id="audit-refusals" class="stack" {
                        thead { tr { th scope="col" { (w.audit_at) } th scope="col" { (w.audit_device) } th scope="col" { (w.audit_reason) } } }
                        tbody {
                            @for r in &trail.refusals {
                                tr {
                                    td data-label=(w.audit_at) { (ctx.when(r.at)) }
                                    td data-label=(w.audit_device) class="mono" { (r.device.as_deref().map(short).unwrap_or_default()) }
                                    td data-label=(w.audit_reason) { code { (r.reason) } " — " (r.message) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The node's sync status: its addresses and each connected peer, with the circles shared,
/// what waits to be sent and the last exchange.
pub(crate) fn sync(ctx: &Ctx, status: &Status, circles: &[(String, String)]) -> Markup {
    let w = ctx.w();
    let patient = |id: &String| {
        circles
            .iter()
            .find(|(c, _)| c == id)
            .map_or_else(|| id.chars().take(8).collect(), |(_, p)| p.clone())
    };
    document(
        ctx,
        w.sync,
        None,
        html! {
            h1 { (w.sync) }
            div id="live-sync" data-live {
                section class="card" aria-labelledby="peers" {
                    h2 id="peers" { (w.peer) }
                    @if status.peers.is_empty() {
                        p { (w.no_peers) }
                    } @else {
                        ul class="peers" {
                            @for p in &status.peers {
                                li {
                                    h3 {
                                        @match (&p.name, p.relay) {
                                            (Some(name), _) => (name),
                                            (None, true) => (w.a_relay),
                                            (None, false) => (w.unknown_device),
                                        }
                                    }
                                    dl {
                                        @if !p.circles.is_empty() {
                                            dt { (w.shared_circles) }
                                            dd { (p.circles.iter().map(patient).collect::<Vec<_>>().join(", ")) }
                                        }
                                        @if !p.relay {
                                            dt { (w.path) }
                                            dd { @match p.path {
                                                PeerPath::Direct => (w.path_direct),
                                                PeerPath::Relayed => (w.path_relayed),
                                            } }
                                        }
                                        dt { (w.last_sync) }
                                        dd { @match p.last_seen { Some(t) => (ctx.when(t)), None => "—" } }
                                        dt { (w.pending) }
                                        dd { (p.pending) }
                                        dt { (w.sent) " / " (w.received) }
                                        dd { (size(p.data_bytes_sent)) " / " (size(p.data_bytes_received)) }
                                    }
                                    details {
                                        summary { (w.technical) }
                                        p class="mono" { (p.peer_id) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section class="card" aria-labelledby="node" {
                h2 id="node" { (w.this_node) }
                p class="mono" { (status.peer_id) }
                h3 { (w.addresses) }
                ul class="mono" { @for a in &status.addresses { li { (a) } } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(kind: &str, at: i64, acks: &[i64]) -> NoteRow {
        NoteRow {
            id: format!("n{at}"),
            author: "a".into(),
            author_name: Some("Claire".into()),
            kind: kind.into(),
            text: "x".into(),
            at: String::new(),
            at_millis: at,
            received_at: None,
            received_millis: None,
            dated_apart: false,
            amended: false,
            vitals: None,
            acks: acks
                .iter()
                .map(|t| ReceiptRow {
                    by: "b".into(),
                    by_name: None,
                    at: String::new(),
                    at_millis: *t,
                })
                .collect(),
            to: None,
            to_name: None,
            // As the node computes it for a member other than the author "a".
            waits_for_me: kind == "alert" && acks.is_empty(),
        }
    }

    #[test]
    fn notes_fall_in_their_week_and_old_ones_drop_out() {
        let now = 100 * WEEK_MS;
        let notes = [
            note("care", now - 1, &[]),
            note("care", now - WEEK_MS - 1, &[]),
            note("care", now - WEEK_MS - 2, &[]),
            note("care", now - 20 * WEEK_MS, &[]),
        ];
        let bars = notes_per_week(&notes, now, "%d/%m", "w");
        assert_eq!(bars.len(), 8);
        let values: Vec<f64> = bars.iter().map(|b| b.value).collect();
        assert_eq!(values, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0]);
    }

    #[test]
    fn time_to_acknowledge_takes_the_first_ack_and_counts_open_alerts_until_now() {
        let hour = 3_600_000;
        let notes = [
            note("alert", 0, &[3 * hour, hour]),
            note("care", 0, &[]),
            note("alert", 10 * hour, &[]),
        ];
        let bars = time_to_acknowledge(&notes, 12 * hour, "%d/%m", &words::FR);
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[0].shown, "1,0 h");
        assert_eq!(bars[0].value, 1.0);
        assert_eq!(bars[1].value, 2.0);
        assert!(bars[1].shown.ends_with('…'));
    }

    #[test]
    fn badges_count_open_alerts_and_others_unread_messages() {
        let notes = [
            note("alert", 0, &[]),
            note("alert", 0, &[5]),
            note("care", 0, &[]),
        ];
        let message = |author: &str, read: &[&str]| MessageRow {
            id: "m".into(),
            author: author.into(),
            author_name: None,
            text: String::new(),
            at: String::new(),
            at_millis: 0,
            attachments: Vec::new(),
            read_by: read
                .iter()
                .map(|b| ReceiptRow {
                    by: b.to_string(),
                    by_name: None,
                    at: String::new(),
                    at_millis: 0,
                })
                .collect(),
        };
        let messages = [message("me", &[]), message("b", &[]), message("b", &["me"])];
        // Alerts: those the node found waiting for this member; messages: others' unread.
        assert_eq!(badges(&notes, &messages, "me"), (1, 1));
        assert_eq!(badges(&notes, &messages, "a"), (1, 3));
    }

    #[test]
    fn calendar_dates_are_written_the_way_each_language_does() {
        let ctx = |lang| Ctx {
            phone: false,
            lang,
            csrf: String::new(),
            here: "/".into(),
            peers: 0,
        };
        assert_eq!(ctx(Lang::Fr).day("1941-05-12"), "12/05/1941");
        assert_eq!(ctx(Lang::En).day("1941-05-12"), "1941-05-12");
        assert_eq!(ctx(Lang::Fr).day("vers 1940"), "vers 1940");
    }

    #[test]
    fn the_qr_code_is_an_svg_of_the_code() {
        let svg = qr("cercleinv1abcdefghijklmnopqrstuvwxyz234567").into_string();
        assert!(svg.starts_with("<svg"), "{svg}");
    }
}
