// The console's only script of its own (served same-origin; no inline handlers, no eval).
// 1. The idle-timeout warning: two minutes before the server signs an idle session out,
//    offer "Stay signed in" (a request that counts as activity), else go to sign-in.
// 2. Small progressive enhancements: auto-submitting selects, copy/download buttons.
(function () {
  "use strict";
  var WARN_BEFORE_MS = 120 * 1000;

  function idleTimer() {
    var body = document.body;
    var seconds = parseInt(body.getAttribute("data-idle-timeout") || "", 10);
    var dialog = document.getElementById("idle-warning");
    if (!seconds || !dialog) { return; }
    var timeoutMs = seconds * 1000;
    var KEY = "aayu-last-activity";
    var lastActivity = Date.now();
    // Tabs share the newest activity: working in one tab keeps the others signed in too.
    function shared() {
      try { return parseInt(window.localStorage.getItem(KEY) || "0", 10) || 0; } catch (e) { return 0; }
    }
    function touched() {
      lastActivity = Date.now();
      try { window.localStorage.setItem(KEY, String(lastActivity)); } catch (e) { /* private mode */ }
    }
    touched();
    var countdown = document.getElementById("idle-countdown");
    var stay = document.getElementById("idle-stay");
    var returnFocus = null;

    function remaining() { return timeoutMs - (Date.now() - Math.max(lastActivity, shared())); }

    function show() {
      if (dialog.hidden) {
        returnFocus = document.activeElement;
        dialog.hidden = false;
        stay.focus();
      }
    }

    function hide() {
      dialog.hidden = true;
      if (returnFocus && returnFocus.focus) { returnFocus.focus(); }
    }

    function tick() {
      var left = remaining();
      if (left <= 0) {
        // Sign out for real (the server would refuse the session anyway), then sign-in.
        var form = document.getElementById("sign-out-form");
        if (form && !form.dataset.sent) {
          form.dataset.sent = "1";
          form.elements.idle.value = "1";
          form.submit();
        } else if (!form) {
          window.location.assign("/sign-in?idle=1");
        }
        return;
      }
      if (left > WARN_BEFORE_MS && !dialog.hidden) { hide(); }
      if (left <= WARN_BEFORE_MS) {
        var s = Math.ceil(left / 1000);
        countdown.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
        show();
      }
    }

    stay.addEventListener("click", function () {
      // redirect: "manual": an ended session answers a redirect to sign-in, which must not
      // look like success.
      fetch("/session/ping", {
        credentials: "same-origin", redirect: "manual", headers: { "Accept": "application/json" }
      }).then(function (response) {
        if (response.ok) { touched(); hide(); }
        else { window.location.assign("/sign-in?idle=1"); }
      }, function () { window.location.assign("/sign-in?idle=1"); });
    });
    // Every htmx request the page makes counts as activity on the server too.
    document.addEventListener("htmx:afterRequest", touched);
    window.setInterval(tick, 1000);
  }

  // A list's items one per line, else the element's text.
  function textOf(element) {
    var items = element.querySelectorAll("li");
    if (!items.length) { return element.textContent.trim(); }
    return Array.prototype.map.call(items, function (li) { return li.textContent.trim(); }).join("\n");
  }

  function enhance(root) {
    root.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var text = textOf(document.getElementById(button.getAttribute("data-copy")));
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      });
    });
    root.querySelectorAll("[data-download]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var text = textOf(document.getElementById(button.getAttribute("data-download")));
        var url = URL.createObjectURL(new Blob([text + "\n"], { type: "text/plain" }));
        var link = document.createElement("a");
        link.href = url;
        link.download = button.getAttribute("data-filename") || "download.txt";
        document.body.appendChild(link);
        link.click();
        link.remove();
        URL.revokeObjectURL(url);
      });
    });
    root.querySelectorAll("[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    idleTimer();
    enhance(document);
    var main = document.getElementById("main");
    var error = document.getElementById("form-error");
    if (error) { error.focus(); }
    else if (main && window.location.hash === "") { /* keep the browser's default focus */ }
  });
  document.addEventListener("htmx:load", function (event) { enhance(event.detail.elt); });
})();
