// Glimpser's small amount of JavaScript. No inline scripts anywhere (the CSP forbids them).
(function () {
  "use strict";
  // Register the service worker (PWA install, and Web Push once notifications exist).
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
  }

  // Ages ("12 s ago") are rendered by the server with data-age = seconds at render time;
  // between refreshes (which answer 204 while nothing changed) they keep counting here,
  // formatted exactly as glimpser.web.dashboard.time_ago does.
  function formatAge(seconds) {
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
    return Math.floor(seconds / 86400) + " d ago";
  }
  var seen = new WeakMap();
  function tickAges() {
    var now = Date.now();
    document.querySelectorAll("time[data-age]").forEach(function (el) {
      var start = seen.get(el);
      if (start === undefined) {
        start = now - Number(el.dataset.age) * 1000;
        seen.set(el, start);
      }
      var text = formatAge(Math.max(0, Math.floor((now - start) / 1000)));
      if (el.textContent !== text) el.textContent = text;
    });
  }
  setInterval(tickAges, 1000);

  // Polling elements (data-poll) skip their request while the tab is hidden.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (document.hidden && elt && elt.hasAttribute && elt.hasAttribute("data-poll")) {
      event.preventDefault();
    }
  });

  // A refresh must not close an error the user opened (<details> in a dashboard card).
  var openDetails = [];
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (!target || !target.querySelectorAll) return;
    openDetails = Array.prototype.map.call(
      target.querySelectorAll("details[open][id]"), function (d) { return d.id; });
  });
  document.addEventListener("htmx:afterSettle", function () {
    openDetails.forEach(function (id) {
      var el = document.getElementById(id);
      if (el) el.open = true;
    });
    openDetails = [];
    tickAges();
  });
})();
