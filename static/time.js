// Times in pages (templates/macros/time.html, glimpser/web/humantime.py):
// - keeps every <time data-relative> ("3 min ago") counting, one interval for the page;
// - stores the browser's time zone once, while the signed-in user has none stored;
// - the theme button in the header switches theme without a page load.
(function () {
  "use strict";
  var body = document.body;
  var csrf = "";
  try { csrf = JSON.parse(body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; }
  catch (e) { csrf = ""; }
  // The server's clock minus the browser's: ages are counted on the server's clock.
  var skew = Number(body.dataset.serverNow || Date.now()) - Date.now();

  function span(seconds) {  // as glimpser.web.humantime.relative_time
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " d";
  }
  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll("time[data-relative]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      var delta = Math.round((now - at) / 1000);
      var text = delta >= 0 ? span(delta) + " ago" : "in " + span(-delta);
      if (el.textContent !== text) el.textContent = text;
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSettle", tick);

  function post(fields) {
    var form = new FormData();
    Object.keys(fields).forEach(function (k) { form.append(k, fields[k]); });
    return fetch(body.dataset.preferencesUrl, {
      method: "POST", body: form, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Accept": "application/json" },
    });
  }

  // Once: the browser's zone, when the user has none (the server stores it only then).
  if (body.dataset.preferencesUrl && body.hasAttribute("data-timezone-unknown")) {
    var zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
    if (zone) {
      post({ timezone: zone, detected: "1" }).then(function (response) {
        if (response.ok) body.removeAttribute("data-timezone-unknown");
      }).catch(function () {});
    }
  }

  // The theme button: system → light → dark → system, applied at once and stored.
  var NEXT = { system: "light", light: "dark", dark: "system" };
  var LABEL = { system: "◐ Auto", light: "☀ Light", dark: "☾ Dark" };
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("theme-toggle")) return;
    event.preventDefault();
    var input = form.querySelector("input[name=theme]");
    var theme = input.value;
    var root = document.documentElement;
    root.setAttribute("data-theme-pref", theme);
    if (theme === "light" || theme === "dark") root.setAttribute("data-theme", theme);
    else root.removeAttribute("data-theme");
    try { localStorage.setItem("glimpser-theme", theme); } catch (e) { /* not remembered here */ }
    var button = form.querySelector("button");
    button.textContent = LABEL[theme];
    button.title = "Theme: " + theme + " (select for " + NEXT[theme] + ")";
    // The accessible name starts with the visible text (WCAG 2.5.3, axe label-content-name-mismatch).
    button.setAttribute("aria-label", LABEL[theme] + " theme, switch to " + NEXT[theme]);
    input.value = NEXT[theme];
    post({ theme: theme }).catch(function () {});
  });
})();
