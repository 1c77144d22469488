// Glimpser's small amount of JavaScript. No inline scripts anywhere (the CSP forbids them).
(function () {
  "use strict";
  // Register the service worker (PWA install, and Web Push once notifications exist).
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
  }

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
  });
})();
