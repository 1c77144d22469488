// Glimpser service worker: makes the app installable and shows Web Push notifications.
// It does not cache pages: a monitoring UI must always show live data.
self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });

// A push from Glimpser carries JSON: {title, body, url, tag, severity, image?}.
self.addEventListener("push", function (event) {
  var data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (e) {
    data = { title: "Glimpser", body: event.data ? event.data.text() : "" };
  }
  var options = {
    body: data.body || "",
    tag: data.tag,
    icon: "/static/icons/glimpser.svg",
    data: { url: data.url || "/events" },
    requireInteraction: data.severity === "critical" || data.severity === "high",
  };
  if (data.image) options.image = data.image;
  event.waitUntil(self.registration.showNotification(data.title || "Glimpser", options));
});

// A click opens the event (or focuses a Glimpser tab already showing it).
self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var target = new URL(event.notification.data.url || "/events", self.location.origin).href;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (tabs) {
      for (var i = 0; i < tabs.length; i++) {
        if (tabs[i].url === target && "focus" in tabs[i]) return tabs[i].focus();
      }
      return self.clients.openWindow(target);
    })
  );
});
