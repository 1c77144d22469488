// Glimpser's small amount of JavaScript. No inline scripts anywhere (the CSP forbids them).
(function () {
  "use strict";
  // Register the service worker (PWA install, and Web Push once notifications exist).
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
  }
})();
