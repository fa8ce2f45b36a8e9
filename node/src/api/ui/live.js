// Live pages: when the node reports news (a colleague's note, a read receipt, a peer), the
// page is fetched again and its `data-live` parts are swapped in place. Forms being typed
// in are never replaced. No framework, no build step.
"use strict";
(function () {
  let timer = null;
  let stale = false;
  const circle = document.body.dataset.circle;

  async function refresh() {
    if (document.visibilityState !== "visible") { stale = true; return; }
    stale = false;
    let response;
    try {
      response = await fetch(location.href, { credentials: "same-origin", headers: { "X-Cercle-Live": "1" } });
    } catch (_) { reachable(false); return; }
    if (!response.ok) return;
    const next = new DOMParser().parseFromString(await response.text(), "text/html");
    if (next.title) document.title = next.title;
    document.querySelectorAll("[data-live]").forEach(function (part) {
      const fresh = next.getElementById(part.id);
      if (!fresh || part.contains(document.activeElement)) return;
      // A form unfolded by the member stays unfolded.
      const open = Array.from(part.querySelectorAll("details[open][id]"), function (d) { return d.id; });
      const swapped = document.importNode(fresh, true);
      open.forEach(function (id) { const d = swapped.querySelector("#" + CSS.escape(id)); if (d) d.open = true; });
      part.replaceWith(swapped);
    });
    document.dispatchEvent(new CustomEvent("cercle:refreshed"));
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 80);
  }

  // An alert from another member raises a system notification that names no patient and
  // no circle (a phone's lock screen is seen by others); the page itself says the rest.
  function notify(text) {
    const N = window.Notification;
    if (!N || N.permission !== "granted") return;
    try { new N(text, { tag: "cercle-alert" }); } catch (_) { /* not here */ }
  }
  const enable = document.getElementById("notify-enable");
  if (enable && window.Notification && window.Notification.permission === "default") {
    enable.hidden = false;
    enable.addEventListener("click", function () {
      window.Notification.requestPermission().then(function () { enable.hidden = true; });
    });
  }

  // While the node does not answer (a phone gone out of the practice's network), the page
  // says so; the browser keeps trying and the banner goes when the node answers again.
  const unreachable = document.getElementById("node-unreachable");
  function reachable(yes) { if (unreachable) unreachable.hidden = yes; }

  const events = new EventSource("/ui/events");
  events.onopen = function () { reachable(true); };
  events.onerror = function () { reachable(false); };
  events.onmessage = function (message) {
    let event;
    try { event = JSON.parse(message.data); } catch (_) { return; }
    if (event.event === "alert") notify(document.body.dataset.alertNotice);
    if (event.event === "reminder") notify(document.body.dataset.reminderNotice);
    if (circle && event.circle && event.circle !== circle) return;
    soon();
  };
  // On the messages page, what is shown is read: the page posts the read receipts (a form
  // with the session's form token) once visible, and again when new messages come in.
  async function markRead() {
    const form = document.getElementById("mark-read");
    if (!form || form.dataset.unread === "0" || document.visibilityState !== "visible") return;
    try {
      await fetch(form.action, { method: "POST", credentials: "same-origin", body: new URLSearchParams(new FormData(form)), redirect: "manual" });
    } catch (_) { /* the next refresh tries again */ }
  }
  if (document.getElementById("mark-read")) {
    markRead();
    document.addEventListener("cercle:refreshed", markRead);
    document.addEventListener("visibilitychange", markRead);
  }

  // A join under way: its page asks again every 2 s until the circle is here.
  const join = document.getElementById("live-join");
  if (join && !join.querySelector("a")) setInterval(function () { if (!document.querySelector("#live-join a")) soon(); }, 2000);

  // The join page reads an invite's QR code with the camera where the browser can
  // (BarcodeDetector); elsewhere the code is pasted or typed. Frames stay in the page.
  const scan = document.getElementById("scan");
  if (scan) {
    const start = document.getElementById("scan-start");
    const video = document.getElementById("scan-video");
    const status = document.getElementById("scan-status");
    const field = document.getElementById("join-code");
    let stream = null;
    const stop = function () {
      if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
      stream = null;
      video.hidden = true;
      start.textContent = scan.dataset.start;
    };
    const isCode = function (text) {
      const compact = text.replace(/[\s-]/g, "");
      return /^cercleinv1/i.test(compact) || compact.length === 24;
    };
    start.addEventListener("click", async function () {
      if (stream) { stop(); return; }
      try {
        const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
        video.srcObject = stream;
        video.hidden = false;
        await video.play();
        start.textContent = scan.dataset.stop;
        status.textContent = "";
        const look = async function () {
          if (!stream) return;
          let found = [];
          try { found = await detector.detect(video); } catch (_) { /* next frame */ }
          const code = found.map(function (f) { return f.rawValue || ""; }).find(isCode);
          if (code) {
            stop();
            field.value = code;
            field.form.requestSubmit();
            return;
          }
          setTimeout(look, 250);
        };
        look();
      } catch (_) {
        stop();
        status.textContent = scan.dataset.failed;
      }
    });
    if ("BarcodeDetector" in window && navigator.mediaDevices) scan.hidden = false;
  }

  const print = document.getElementById("print-notebook");
  if (print) {
    print.hidden = false;
    print.addEventListener("click", function () { window.print(); });
  }

  // The note form folds into one line on a phone or a narrow tablet, so the notebook
  // comes first; on a wider screen it is open at once.
  const compose = document.getElementById("compose");
  if (compose && window.matchMedia("(min-width: 50rem)").matches) compose.open = true;

  // Leaving the page closes the stream at once: a browser allows few connections per site.
  window.addEventListener("pagehide", function () { events.close(); });
  document.addEventListener("visibilitychange", function () { if (stale) soon(); });
})();
