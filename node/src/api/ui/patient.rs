//! The patient file page: the identity with its verification and contact details, the
//! trusted person and regular GP, consent, care plan, vital-sign trends, and the lists
//! (problems, allergies, medications, contacts) each with its forms to add, change, stop or
//! remove an item. A removed item stays on the page, folded, with who removed it and why.
//! Forms are shown only to the roles that write the patient file; the node checks again.

use maud::{Markup, html};

use super::{CircleHead, Ctx, Tab, Words, chart, circle_page, hidden_csrf, when};
use crate::ops::notes::NoteRow;
use crate::ops::patient::{ItemRow, PatientView};

/// How a field of an item is typed in a form.
#[derive(Debug, Clone, Copy)]
enum Input {
    Text {
        required: bool,
    },
    Date,
    Tel,
    Email,
    /// One of the schema's values, or none.
    Choice(&'static [&'static str]),
}

/// One list of the patient file as its forms show it: its path in the URLs, the words of
/// its forms, and the fields a member types (in the schema's names).
struct ListForm {
    list: &'static str,
    fields: &'static [(&'static str, Input)],
}

const PROBLEMS: ListForm = ListForm {
    list: "problems",
    fields: &[
        ("label", Input::Text { required: true }),
        ("since", Input::Date),
        ("status", Input::Choice(&["active", "resolved"])),
    ],
};

const ALLERGIES: ListForm = ListForm {
    list: "allergies",
    fields: &[
        ("substance", Input::Text { required: true }),
        ("reaction", Input::Text { required: false }),
        ("severity", Input::Choice(&["mild", "moderate", "severe"])),
        (
            "criticality",
            Input::Choice(&["low", "high", "unable-to-assess"]),
        ),
    ],
};

const MEDICATIONS: ListForm = ListForm {
    list: "medications",
    fields: &[
        ("name", Input::Text { required: true }),
        ("dose", Input::Text { required: false }),
        ("frequency", Input::Text { required: false }),
        ("start", Input::Date),
    ],
};

const CONTACTS: ListForm = ListForm {
    list: "contacts",
    fields: &[
        ("name", Input::Text { required: true }),
        ("role", Input::Choice(cercle_crdt::CONTACT_ROLES)),
        ("relation", Input::Text { required: false }),
        ("phone", Input::Tel),
        ("email", Input::Email),
    ],
};

/// The field that names an item (a problem's label, an allergy's substance), shown first.
const NAMING_FIELDS: [&str; 4] = ["name", "substance", "label", "title"];

/// Age in whole years today of someone born on `birth_date` (`YYYY-MM-DD`).
fn age(birth_date: &str) -> Option<i16> {
    let born: jiff::civil::Date = birth_date.parse().ok()?;
    let today = crate::ops::tasks::local_today();
    let years = today.year() - born.year();
    let before_birthday = (today.month(), today.day()) < (born.month(), born.day());
    let years = if before_birthday { years - 1 } else { years };
    (years >= 0).then_some(years)
}

/// A member's name from their id, for "by whom".
fn name_of<'a>(w: &'a Words, names: &'a [(String, String)], id: Option<&String>) -> &'a str {
    id.and_then(|id| names.iter().find(|(m, _)| m == id))
        .map_or(w.unknown_member, |(_, n)| n.as_str())
}

/// An RFC 3339 instant as a date for people.
fn instant(ctx: &Ctx, at: Option<&String>) -> String {
    at.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| ctx.when(t.as_millisecond()))
        .unwrap_or_default()
}

/// The inputs of a list's form, filled with `row`'s values when it changes one.
fn inputs(ctx: &Ctx, form: &ListForm, prefix: &str, row: Option<&ItemRow>) -> Markup {
    let w = ctx.w();
    html! {
        @for (name, input) in form.fields {
            @let id = format!("{prefix}-{name}");
            @let value = row.and_then(|r| r.fields.get(*name)).map(String::as_str).unwrap_or_default();
            div {
                label for=(id) { (w.field_label(name)) }
                @match input {
                    Input::Text { required: true } => input type="text" id=(id) name=(name) value=(value) required maxlength="200";,
                    Input::Text { required: false } => input type="text" id=(id) name=(name) value=(value) maxlength="200";,
                    Input::Date => input type="date" id=(id) name=(name) value=(value);,
                    Input::Tel => input type="tel" id=(id) name=(name) value=(value) maxlength="200" autocomplete="off";,
                    Input::Email => input type="email" id=(id) name=(name) value=(value) maxlength="200" autocomplete="off";,
                    Input::Choice(values) => select id=(id) name=(name) {
                        option value="" { "—" }
                        @for v in *values {
                            option value=(v) selected[*v == value] { (w.item_value(v)) }
                        }
                    },
                }
            }
        }
    }
}

/// An item's line: what names it, its other fields, and when it was last changed.
fn item_line(ctx: &Ctx, r: &ItemRow, names: &[(String, String)]) -> Markup {
    let w = ctx.w();
    let main = NAMING_FIELDS
        .iter()
        .find_map(|k| r.fields.get_key_value(*k));
    html! {
        @if let Some((_, v)) = main { strong { (v) } }
        @for (k, v) in &r.fields {
            @if main.is_none_or(|(mk, _)| mk != k) && !cercle_crdt::ITEM_HISTORY.contains(&k.as_str()) {
                span class="muted" {
                    " · " (w.item_field(k)) " : "
                    @if k == "since" || k == "start" { (ctx.day(v)) } @else { (w.item_value(v)) }
                }
            }
        }
        @if r.fields.contains_key("updated_at") {
            " " span class="muted changed" {
                "(" (w.changed_on) " " (instant(ctx, r.fields.get("updated_at"))) " · " (name_of(w, names, r.fields.get("updated_by"))) ")"
            }
        }
    }
}

/// The forms under an item: change its fields, remove it with a reason.
fn item_forms(ctx: &Ctx, head: &CircleHead, form: &ListForm, r: &ItemRow) -> Markup {
    let w = ctx.w();
    let base = format!("/c/{}/items/{}/{}", head.id, form.list, r.id);
    let prefix = format!("edit-{}", r.id);
    html! {
        details class="edit" id=(format!("{prefix}-details")) {
            summary { (w.edit) }
            form method="post" action=(base) class="filters" {
                (hidden_csrf(ctx))
                (inputs(ctx, form, &prefix, Some(r)))
                button type="submit" { (w.save) }
            }
        }
        details class="remove" id=(format!("remove-{}-details", r.id)) {
            summary { (w.remove) }
            form method="post" action=(format!("{base}/remove")) {
                (hidden_csrf(ctx))
                label for=(format!("remove-{}", r.id)) { (w.remove_reason) }
                input type="text" id=(format!("remove-{}", r.id)) name="reason" required maxlength="200";
                button type="submit" { (w.remove) }
            }
        }
    }
}

/// The removed items of a list, folded: what they were, who removed them, when and why.
fn removed(ctx: &Ctx, rows: &[&ItemRow], names: &[(String, String)]) -> Markup {
    let w = ctx.w();
    html! {
        @if !rows.is_empty() {
            details class="removed" {
                summary { (w.removed_items) " (" (rows.len()) ")" }
                ul {
                    @for r in rows {
                        li class="removed" id=(format!("item-{}", r.id)) {
                            (item_line(ctx, r, names))
                            p class="stopped-note" {
                                (w.removed_on) " " (instant(ctx, r.fields.get("removed_at")))
                                " · " (name_of(w, names, r.fields.get("removed_by")))
                                @if let Some(why) = r.fields.get("removed_reason") { " : " (why) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A list of the patient file with its forms.
fn item_list(
    ctx: &Ctx,
    head: &CircleHead,
    form: &ListForm,
    (title, add): (&str, &str),
    rows: &[ItemRow],
    names: &[(String, String)],
) -> Markup {
    let w = ctx.w();
    let (gone, shown): (Vec<&ItemRow>, Vec<&ItemRow>) = rows
        .iter()
        .partition(|r| r.fields.contains_key("removed_at"));
    html! {
        section class="card" aria-labelledby=(form.list) id=(format!("list-{}", form.list)) {
            h2 id=(form.list) { (title) }
            @if shown.is_empty() { p class="muted" { (w.none) } }
            ul class="items" {
                @for r in &shown {
                    li id=(format!("item-{}", r.id)) {
                        (item_line(ctx, r, names))
                        @if head.writes_care() { div class="actions" { (item_forms(ctx, head, form, r)) } }
                    }
                }
            }
            (removed(ctx, &gone, names))
            @if head.writes_care() {
                details class="add" id=(format!("add-{}-details", form.list)) {
                    summary { (add) }
                    form method="post" action=(format!("/c/{}/items/{}", head.id, form.list)) class="filters" {
                        (hidden_csrf(ctx))
                        (inputs(ctx, form, &format!("add-{}", form.list), None))
                        button type="submit" { (w.add) }
                    }
                }
            }
        }
    }
}

/// The medications: current ones first with forms to stop (and why), change or remove
/// them; stopped ones kept with who stopped them, when and why; a form to add one.
fn medications(
    ctx: &Ctx,
    head: &CircleHead,
    rows: &[ItemRow],
    names: &[(String, String)],
) -> Markup {
    let w = ctx.w();
    let (gone, rows): (Vec<&ItemRow>, Vec<&ItemRow>) = rows
        .iter()
        .partition(|r| r.fields.contains_key("removed_at"));
    let is_stopped = |r: &&ItemRow| r.fields.get("status").map(String::as_str) == Some("stopped");
    html! {
        section class="card" aria-labelledby="medications" id="list-medications" {
            h2 id="medications" { (w.medications) }
            @if rows.is_empty() { p class="muted" { (w.none) } }
            ul class="medications" {
                // Current treatments first, then the stopped ones, each oldest first.
                @for r in rows.iter().filter(|r| !is_stopped(r)).chain(rows.iter().filter(|r| is_stopped(r))) {
                    @let stopped = is_stopped(r);
                    li id=(format!("medication-{}", r.id)) class=(if stopped { "stopped" } else { "current" }) {
                        (item_line(ctx, r, names))
                        @if stopped {
                            p class="stopped-note" {
                                (w.stopped_on) " " (instant(ctx, r.fields.get("stopped_at")))
                                " · " (name_of(w, names, r.fields.get("stopped_by")))
                                @if let Some(why) = r.fields.get("stop_reason") { " : " (why) }
                            }
                        }
                        @if head.writes_care() {
                            div class="actions" {
                                @if !stopped {
                                    details class="stop" id=(format!("stop-{}-details", r.id)) {
                                        summary { (w.stop) }
                                        form method="post" action=(format!("/c/{}/medications/{}/stop", head.id, r.id)) {
                                            (hidden_csrf(ctx))
                                            label for=(format!("stop-{}", r.id)) { (w.stop_reason) }
                                            input type="text" id=(format!("stop-{}", r.id)) name="reason" required maxlength="200";
                                            button type="submit" { (w.stop) }
                                        }
                                    }
                                }
                                (item_forms(ctx, head, &MEDICATIONS, r))
                            }
                        }
                    }
                }
            }
            (removed(ctx, &gone, names))
            @if head.writes_care() {
                details class="add" id="add-medications-details" {
                    summary { (w.medication_add) }
                    form method="post" action=(format!("/c/{}/items/medications", head.id)) class="filters" {
                        (hidden_csrf(ctx))
                        (inputs(ctx, &MEDICATIONS, "med", None))
                        button type="submit" { (w.add) }
                    }
                }
            }
        }
    }
}

fn field(label: &str, value: Option<&str>, missing: &str) -> Markup {
    html! {
        dt { (label) }
        dd { @match value { Some(v) if !v.is_empty() => (v), _ => span class="muted" { (missing) } } }
    }
}

/// The contacts holding a role (the trusted person, the regular GP), as "name · phone".
fn contact_with_role(p: &PatientView, role: &str) -> Option<String> {
    let names: Vec<String> = p
        .contacts
        .iter()
        .filter(|c| !c.fields.contains_key("removed_at"))
        .filter(|c| c.fields.get("role").map(String::as_str) == Some(role))
        .map(|c| {
            [c.fields.get("name"), c.fields.get("phone")]
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .collect();
    (!names.is_empty()).then(|| names.join(" ; "))
}

/// The identity card: who the patient is, how to reach them, whether the identity was
/// checked; the forms to change it and to record its check.
fn identity(ctx: &Ctx, head: &CircleHead, p: &PatientView, names: &[(String, String)]) -> Markup {
    let w = ctx.w();
    let name = [p.given_names.as_deref(), p.family_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let verified_by = p.verified_by.as_ref().map(|m| name_of(w, names, Some(m)));
    let text = |id: &str, name: &str, label: &str, value: &Option<String>| {
        html! {
            div {
                label for=(id) { (label) }
                input type="text" id=(id) name=(name) value=(value.as_deref().unwrap_or_default()) maxlength="200";
            }
        }
    };
    html! {
        section class="card" aria-labelledby="identity" {
            h2 id="identity" { (w.identity) }
            dl {
                (field(w.name, Some(&name), w.not_recorded))
                (field(w.born, p.birth_date.as_deref().map(|d| match age(d) {
                    Some(years) => format!("{} ({years} {})", ctx.day(d), w.years_old),
                    None => ctx.day(d),
                }).as_deref(), w.not_recorded))
                (field(w.sex, p.sex.as_deref().map(|x| w.sex_name(x)), w.not_recorded))
                dt { (w.ins) }
                @match &p.ins {
                    Some(ins) => dd { span class="mono" { (ins) } br; span class="muted" { (w.ins_not_qualified) } },
                    None => dd class="muted" { (w.not_recorded) },
                }
                dt { (w.identity_status) }
                dd {
                    span class=(if p.identity_status == "verified" { "pill ok" } else { "pill warn" }) {
                        (w.identity_state(&p.identity_status))
                    }
                    @if let (Some(by), Some(document), Some(at)) = (verified_by, p.verified_with, p.verified_at) {
                        " " span class="muted" {
                            (w.verified_by) " " (by) " " (w.verified_on) " " (w.identity_document(document)) ", " (ctx.when(at))
                        }
                    }
                }
                (field(w.address, p.address.as_deref(), w.not_recorded))
                (field(w.phone, p.phone.as_deref(), w.not_recorded))
                (field(w.trusted_person, contact_with_role(p, "trusted_person").as_deref(), w.not_recorded))
                (field(w.regular_gp, contact_with_role(p, "regular_gp").as_deref(), w.not_recorded))
            }
            @if head.writes_care() {
                details class="edit" id="identity-edit-details" {
                    summary { (w.identity_edit) }
                    form method="post" action=(format!("/c/{}/identity", head.id)) class="filters" {
                        (hidden_csrf(ctx))
                        p class="muted" { (w.identity_edit_hint) }
                        (text("id-family", "family_name", w.family_name, &p.family_name))
                        (text("id-given", "given_names", w.given_names, &p.given_names))
                        div {
                            label for="id-birth" { (w.birth_date) }
                            input type="date" id="id-birth" name="birth_date" value=(p.birth_date.as_deref().unwrap_or_default());
                        }
                        div {
                            label for="id-sex" { (w.sex) }
                            select id="id-sex" name="sex" {
                                option value="" { "—" }
                                @for sex in ["female", "male", "other", "unknown"] {
                                    option value=(sex) selected[p.sex.as_deref() == Some(sex)] { (w.sex_name(sex)) }
                                }
                            }
                        }
                        (text("id-ins", "ins", w.ins, &p.ins))
                        (text("id-address", "address", w.address, &p.address))
                        (text("id-phone", "phone", w.phone, &p.phone))
                        button type="submit" { (w.save) }
                    }
                }
                @if p.identity_status != "verified" {
                    details class="edit" id="identity-verify-details" {
                        summary { (w.verify_identity) }
                        form method="post" action=(format!("/c/{}/identity/verify", head.id)) {
                            (hidden_csrf(ctx))
                            label for="id-document" { (w.verify_document) }
                            select id="id-document" name="document" required {
                                @for d in [
                                    cercle_crdt::IdentityDocument::IdCard,
                                    cercle_crdt::IdentityDocument::Passport,
                                    cercle_crdt::IdentityDocument::ResidencePermit,
                                    cercle_crdt::IdentityDocument::FamilyRecordBook,
                                ] {
                                    option value=(d.as_str()) { (w.identity_document(d)) }
                                }
                            }
                            button type="submit" { (w.verify_identity) }
                        }
                    }
                }
            }
        }
    }
}

/// Consent and care plan, with their forms.
fn consent_and_plan(ctx: &Ctx, head: &CircleHead, p: &PatientView) -> Markup {
    let w = ctx.w();
    html! {
        section class="card" aria-labelledby="consent" {
            h2 id="consent" { (w.consent) }
            dl {
                dt { (w.consent) }
                dd { (w.consent_state(p.consent.as_deref().unwrap_or(""))) }
                (field(w.consent_scope, p.consent_scope.as_deref(), w.not_recorded))
            }
            @if head.writes_care() {
                details class="edit" id="consent-details" {
                    summary { (w.consent_edit) }
                    form method="post" action=(format!("/c/{}/consent", head.id)) class="filters" {
                        (hidden_csrf(ctx))
                        div {
                            label for="consent-status" { (w.consent) }
                            select id="consent-status" name="status" required {
                                @for s in ["given", "refused", "withdrawn"] {
                                    option value=(s) selected[p.consent.as_deref() == Some(s)] { (w.consent_state(s)) }
                                }
                            }
                        }
                        div {
                            label for="consent-scope" { (w.consent_scope) }
                            input type="text" id="consent-scope" name="scope" value=(p.consent_scope.as_deref().unwrap_or_default()) maxlength="2000";
                        }
                        button type="submit" { (w.save) }
                    }
                }
            }
            h2 id="care-plan" { (w.care_plan) }
            @if p.care_plan.is_empty() { p class="muted" { (w.not_recorded) } } @else { p class="text" { (p.care_plan) } }
            @if head.writes_care() {
                details class="edit" id="care-plan-details" {
                    summary { (w.care_plan_edit) }
                    form method="post" action=(format!("/c/{}/care-plan", head.id)) {
                        (hidden_csrf(ctx))
                        label for="care-plan-text" { (w.care_plan) }
                        textarea id="care-plan-text" name="text" rows="4" maxlength="8000" { (p.care_plan) }
                        button type="submit" { (w.save) }
                    }
                }
            }
        }
    }
}

/// The most measurements one trend chart draws (the latest ones).
const TREND_POINTS: usize = 60;

/// One line chart per vital sign measured in the notebook, its latest value written out.
fn vital_trends(ctx: &Ctx, notes: &[NoteRow]) -> Markup {
    let w = ctx.w();
    let mut charts = Vec::new();
    for sign in cercle_crdt::Sign::ALL {
        let mut points: Vec<chart::Point> = notes
            .iter()
            .filter_map(|n| {
                let values = sign.values(n.vitals.as_ref()?);
                let shown: Vec<String> = values
                    .iter()
                    .map(|v| ctx.number(*v, sign.places()))
                    .collect();
                let label = format!(
                    "{} : {} {}",
                    ctx.when(n.at_millis),
                    shown.join("/"),
                    sign.unit()
                );
                (!values.is_empty()).then_some(chart::Point {
                    at: n.at_millis,
                    values,
                    label,
                })
            })
            .collect();
        points.sort_by_key(|p| p.at);
        let points = &points[points.len().saturating_sub(TREND_POINTS)..];
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            continue;
        };
        let all = points.iter().flat_map(|p| p.values.iter().copied());
        let (low, high) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let title = format!("{} ({})", w.sign(sign), sign.unit());
        let latest: Vec<String> = last
            .values
            .iter()
            .map(|v| ctx.number(*v, sign.places()))
            .collect();
        let summary = format!(
            "{} {} · {}",
            latest.join("/"),
            sign.unit(),
            ctx.when(last.at)
        );
        let id = format!("trend-{}", sign.key());
        let day = |ms: i64| when(w.day_format, ms);
        let (low, high) = (
            ctx.number(low, sign.places()),
            ctx.number(high, sign.places()),
        );
        let (from, to) = (day(first.at), day(last.at));
        let t = chart::Trend {
            id: &id,
            title: &title,
            summary: &summary,
            low_high: (&low, &high),
            first_last: (&from, &to),
        };
        charts.push(chart::trend(&t, points));
    }
    html! {
        section class="card" aria-labelledby="trends" {
            h2 id="trends" { (w.trends) }
            @if charts.is_empty() {
                p class="muted" { (w.no_vitals) }
            } @else {
                p class="muted" { (w.trends_desc) }
                div class="trends" { @for c in charts { (c) } }
            }
        }
    }
}

/// The patient's tasks, with who owns each, and the form to add one with its owner.
fn tasks(ctx: &Ctx, head: &CircleHead, p: &PatientView, names: &[(String, String)]) -> Markup {
    let w = ctx.w();
    let today = crate::ops::tasks::local_today();
    html! {
        section class="card" aria-labelledby="tasks" {
            h2 id="tasks" { (w.tasks) }
            @if p.tasks.is_empty() { p class="muted" { (w.none) } }
            ul class="tasks" {
                @for t in &p.tasks {
                    li class=(if t.status == "done" { "task done" } else { "task" }) {
                        strong { (t.title) }
                        span class="muted" {
                            @if let Some(o) = &t.owner_name { " · " (o) }
                            @if let Some(d) = &t.due { " · " (w.due) " " (ctx.day(d)) }
                            " · " @if t.status == "done" { (w.done) } @else { (w.to_do) }
                        }
                        @if t.is_overdue(today) { " " span class="pill warn overdue" { (w.overdue) } }
                        @if t.status != "done" && head.role != "observer" {
                            form method="post" action=(format!("/c/{}/tasks/{}/done", head.id, t.id)) class="inline" {
                                (hidden_csrf(ctx))
                                button type="submit" class="small" { (w.mark_done) }
                            }
                        }
                    }
                }
            }
            @if head.writes_care() {
                h3 id="new-task" { (w.new_task) }
                form method="post" action=(format!("/c/{}/tasks", head.id)) class="filters" {
                    (hidden_csrf(ctx))
                    div {
                        label for="task-title" { (w.title) }
                        input id="task-title" name="title" required maxlength="500";
                    }
                    div {
                        label for="task-owner" { (w.owner) }
                        select id="task-owner" name="owner" {
                            option value="" { "—" }
                            @for (id, name) in names { option value=(id) { (name) } }
                        }
                    }
                    div {
                        label for="task-due" { (w.due) }
                        input id="task-due" name="due" type="date";
                    }
                    button type="submit" { (w.add) }
                }
            }
        }
    }
}

/// The patient file: identity and its verification, consent, care plan, vital signs,
/// problems, allergies, medications, contacts and tasks.
pub(crate) fn patient(
    ctx: &Ctx,
    head: &CircleHead,
    p: &PatientView,
    names: &[(String, String)],
    notes: &[NoteRow],
) -> Markup {
    let w = ctx.w();
    circle_page(
        ctx,
        head,
        Tab::Patient,
        html! {
            div id="live-patient" data-live {
                div class="columns" {
                    (identity(ctx, head, p, names))
                    (consent_and_plan(ctx, head, p))
                }
                (vital_trends(ctx, notes))
                div class="columns" {
                    (item_list(ctx, head, &PROBLEMS, (w.problems, w.problem_add), &p.problems, names))
                    (item_list(ctx, head, &ALLERGIES, (w.allergies, w.allergy_add), &p.allergies, names))
                }
                div class="columns" {
                    (medications(ctx, head, &p.medications, names))
                    (item_list(ctx, head, &CONTACTS, (w.contacts, w.contact_add), &p.contacts, names))
                }
                p class="export" {
                    a href=(format!("/c/{}/export.fhir.json", head.id)) download { (w.export_fhir) }
                    " " span class="muted" { (w.export_fhir_hint) }
                }
                @if head.suspended.is_none() && head.role != "observer" {
                    p class="export" {
                        a href=(format!("/c/{}/emergency-code", head.id)) id="patient-emergency-code" { (w.emergency_code_print) }
                    }
                }
                (tasks(ctx, head, p, names))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_count_whole_years_and_no_future_births() {
        assert!(age("1941-05-12").is_some_and(|a| a >= 85));
        assert_eq!(age("2999-01-01"), None);
        assert_eq!(age("vers 1940"), None);
    }
}
