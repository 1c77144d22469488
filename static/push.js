// Web Push on the profile page: subscribe this browser with the install's VAPID public key and
// hand the subscription to the server; or unsubscribe. No inline scripts (the CSP forbids them).
(function () {
  "use strict";
  var section = document.getElementById("push");
  if (!section) return;
  var state = document.getElementById("push-state");
  var onButton = document.getElementById("push-subscribe");
  var offButton = document.getElementById("push-unsubscribe");

  function say(text) { state.textContent = text; }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
    } catch (e) {
      return "";
    }
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    }).then(function (response) {
      if (response.ok) return response;
      // The server says why in {"error": "..."} (e.g. 409: another user's subscription).
      return response.json().catch(function () { return {}; }).then(function (data) {
        throw new Error(data.error || "the server answered " + response.status);
      });
    });
  }

  function keyBytes(base64url) {
    var padded = (base64url + "===".slice((base64url.length + 3) % 4))
      .replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(padded);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function show(subscribed) {
    onButton.hidden = subscribed;
    offButton.hidden = !subscribed;
    say(subscribed ? "This browser receives notifications."
                   : "This browser does not receive notifications.");
  }

  if (!window.isSecureContext || !("serviceWorker" in navigator) || !("PushManager" in window)) {
    say("This browser cannot receive push notifications here (it needs HTTPS and the Push API).");
    return;
  }

  navigator.serviceWorker.register("/sw.js", { scope: "/" }).then(function () {
    return navigator.serviceWorker.ready;
  }).then(function (registration) {
    return registration.pushManager.getSubscription().then(function (existing) {
      show(Boolean(existing));

      onButton.addEventListener("click", function () {
        say("Asking this browser for permission…");
        registration.pushManager.subscribe({
          userVisibleOnly: true,
          applicationServerKey: keyBytes(section.dataset.vapidPublicKey),
        }).then(function (subscription) {
          return post(section.dataset.subscribeUrl, subscription.toJSON());
        }).then(function () {
          window.location.reload();
        }).catch(function (error) {
          say("Notifications could not be turned on: " + error.message);
        });
      });

      offButton.addEventListener("click", function () {
        registration.pushManager.getSubscription().then(function (subscription) {
          if (!subscription) return show(false);
          var endpoint = subscription.endpoint;
          return subscription.unsubscribe().then(function () {
            return post(section.dataset.unsubscribeUrl, { endpoint: endpoint });
          }).then(function () {
            window.location.reload();
          });
        }).catch(function (error) {
          say("Notifications could not be turned off: " + error.message);
        });
      });
    });
  }).catch(function (error) {
    say("The service worker could not start: " + error.message);
  });
})();
