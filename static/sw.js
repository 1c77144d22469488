// Glimpser service worker: makes the app installable. It does not cache pages:
// a monitoring UI must always show live data.
self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });
