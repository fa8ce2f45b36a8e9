//! The device pages: the member's devices and phones (on the computer), a phone's pairing
//! page and what a phone that is not paired sees (on the LAN).

use maud::{Markup, html};

use super::words::Lang;
use super::{Ctx, bare, document, hidden_csrf, qr};
use crate::api::phones::Phone;
use crate::api::server::LanInfo;
use crate::ops::devices::{Devices, PairingCode};

/// The member's devices, a pairing code or a phone's pairing QR when just made.
pub(crate) fn devices(
    ctx: &Ctx,
    list: &Devices,
    phones: &[Phone],
    lan: Option<&LanInfo>,
    code: Option<&PairingCode>,
    phone_link: Option<&str>,
) -> Markup {
    let w = ctx.w();
    document(
        ctx,
        w.devices_title,
        None,
        html! {
            h1 { (w.devices_title) }
            p class="muted" { (w.devices_help) }
            section class="card" aria-labelledby="my-devices" {
                h2 id="my-devices" { (w.computers) }
                ul class="devices" id="live-devices" data-live {
                    @for d in &list.devices {
                        li {
                            span class="mono" { (&d.device[..16.min(d.device.len())]) }
                            " · "
                            @if d.this { strong { (w.device_this) } }
                            @else if let Some(at) = d.revoked_at { span class="revoked-device" { (w.device_revoked) " " (ctx.when(at)) } }
                            @else if d.connected { (w.device_connected) }
                            @else if let Some(at) = d.last_seen { (w.device_last_seen) " " (ctx.when(at)) }
                            @else { (w.device_never_seen) }
                            " · " (d.circles) " " (w.device_circles)
                            @if !d.this && d.revoked_at.is_none() {
                                form method="post" action=(format!("/devices/{}/revoke", d.device)) class="inline" {
                                    (hidden_csrf(ctx))
                                    button type="submit" class="secondary" { (w.device_revoke) }
                                }
                            }
                        }
                    }
                }
                @if list.holds_member_key {
                    p class="muted" { (w.device_key_here) }
                    @if let Some(c) = code {
                        h3 { (w.device_code) }
                        p class="muted" { (w.device_pair_help) }
                        div class="qr" { (qr(&c.code)) }
                        p { code class="invite" id="device-code" { (c.code) } }
                    } @else {
                        form method="post" action="/devices/pair" {
                            (hidden_csrf(ctx))
                            button type="submit" { (w.device_pair) }
                        }
                    }
                }
            }
            section class="card" aria-labelledby="phones" {
                h2 id="phones" { (w.phones) }
                @match lan {
                    None => { p { (w.phones_off) } }
                    Some(lan) => {
                        @if let Some(link) = phone_link {
                            p { (w.phone_pair_help) }
                            p { (w.fingerprint) " : " code class="mono" id="lan-fingerprint" { (lan.fingerprint) } }
                            div class="qr" { (qr(link)) }
                            p { code class="invite" id="phone-link" { (link) } }
                        } @else {
                            form method="post" action="/phones/pair" {
                                (hidden_csrf(ctx))
                                button type="submit" { (w.phone_pair_button) }
                            }
                        }
                    }
                }
                @if phones.is_empty() {
                    p class="muted" { (w.no_phone) }
                } @else {
                    ul class="devices" id="phones-list" {
                        @for p in phones {
                            li {
                                strong { (p.name) }
                                " · " (w.phone_paired_on) " " (ctx.when(p.paired_at))
                                " · " (w.phone_last_used) " " (ctx.when(p.last_used))
                                form method="post" action=(format!("/phones/{}/revoke", p.id)) class="inline" {
                                    (hidden_csrf(ctx))
                                    button type="submit" class="secondary" aria-label=(format!("{} {}", w.device_revoke, p.name)) { (w.device_revoke) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The page a phone opens from the pairing QR.
pub(crate) fn phone_pair(lang: Lang, code: &str, refused: Option<&str>) -> Markup {
    let w = lang.words();
    bare(
        lang,
        w.phone_pair_title,
        html! {
            @if let Some(r) = refused { p role="alert" class="error" { (r) } }
            @else {
                p { (w.phone_pair_intro) }
                form method="post" action="/phone/pair" {
                    input type="hidden" name="code" value=(code);
                    label for="phone-name" { (w.phone_name) }
                    input id="phone-name" name="name" type="text" maxlength="60" required value="Téléphone" autocomplete="off";
                    button type="submit" id="phone-pair" { (w.phone_pair_submit) }
                }
            }
        },
    )
}

/// What a phone that is not paired gets.
pub(crate) fn not_paired(lang: Lang) -> Markup {
    let w = lang.words();
    bare(
        lang,
        w.not_paired_title,
        html! { p id="not-paired" { (w.not_paired_help) } },
    )
}
