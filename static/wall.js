// The camera wall (templates/dashboard.html): kiosk mode with the Fullscreen API and an idle
// cursor, and a viewer over the page for one stream (live where the kind allows, else its
// latest picture) that the arrow keys step through. Without JavaScript a tile is a link to the
// stream's page and ?kiosk=1 still hides the page's chrome.
(function () {
  "use strict";
  var wall = document.getElementById("wall");
  if (!wall) return;
  var root = document.documentElement;

  // With JavaScript the columns form takes the filters from the filter form (hx-include);
  // the hidden copies are for the plain form post only.
  wall.querySelectorAll("[data-filter-copy]").forEach(function (el) { el.remove(); });

  // --- kiosk mode ---------------------------------------------------------------------------
  function requestFullscreen() {
    if (document.fullscreenElement || !root.requestFullscreen) return;
    root.requestFullscreen().catch(function () {}); // refused (no user gesture): kiosk alone
  }
  function enterKiosk() {
    wall.classList.add("kiosk");
    var url = wall.dataset.kioskUrl;
    if (url && window.location.pathname + window.location.search !== url) {
      window.history.replaceState(window.history.state, "", url); // a reload keeps it
    }
    idle();
  }
  wall.addEventListener("click", function (event) {
    var button = event.target.closest("[data-wall-fullscreen], [data-wall-enter-fullscreen]");
    if (!button) return;
    event.preventDefault();
    enterKiosk();
    requestFullscreen();
  });

  // The cursor and the kiosk bar hide after a few idle seconds; any movement shows them.
  var idleTimer = null;
  function idle() {
    root.classList.remove("wall-idle");
    window.clearTimeout(idleTimer);
    if (!wall.classList.contains("kiosk")) return;
    idleTimer = window.setTimeout(function () { root.classList.add("wall-idle"); }, 3000);
  }
  ["mousemove", "mousedown", "keydown", "touchstart"].forEach(function (name) {
    document.addEventListener(name, idle, { passive: true });
  });
  idle();

  // --- the stream viewer --------------------------------------------------------------------
  var viewer = document.getElementById("wall-viewer");
  if (!viewer || typeof viewer.showModal !== "function") return;
  var img = viewer.querySelector("img");
  var title = viewer.querySelector("h2");
  var stateText = viewer.querySelector(".wall-viewer-state");
  var open = viewer.querySelector("a.wall-viewer-open");
  var empty = viewer.querySelector(".wall-viewer-empty");
  var currentId = null;

  function tiles() {
    return Array.prototype.slice.call(document.querySelectorAll("#dashboard-grid a.tile-link"));
  }
  function source(link) { return link.dataset.live || link.dataset.picture || ""; }

  function show(link) {
    if (!link) return;
    currentId = link.dataset.streamId;
    var src = source(link);
    if (img.getAttribute("src") !== src) {
      if (src) img.setAttribute("src", src); else img.removeAttribute("src");
    }
    img.hidden = !src;
    empty.hidden = !!src;
    img.alt = (link.dataset.live ? "Live view of " : "Latest snapshot of ") + link.dataset.name;
    title.textContent = link.dataset.name;
    stateText.textContent = (link.dataset.live ? "live · " : "latest picture · ") + link.dataset.state +
      (src ? "" : " · no picture yet");
    open.setAttribute("href", link.getAttribute("href"));
    viewer.dataset.streamId = currentId;
    if (!viewer.open) viewer.showModal();
  }
  function step(delta) {
    var items = tiles();
    if (!items.length) return;
    var index = items.findIndex(function (l) { return l.dataset.streamId === currentId; });
    show(items[(index + delta + items.length) % items.length]);
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("#dashboard-grid a.tile-link");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    show(link);
  });
  viewer.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button) {
      if (event.target === viewer) viewer.close(); // a click on the backdrop
      return;
    }
    if (button.hasAttribute("data-close")) viewer.close();
    else if (button.dataset.step) step(Number(button.dataset.step));
  });
  viewer.addEventListener("close", function () {
    img.removeAttribute("src"); // ends a live feed's connection
    var link = tiles().find(function (l) { return l.dataset.streamId === currentId; });
    currentId = null;
    if (link) link.focus();
  });
  document.addEventListener("keydown", function (event) {
    if (!viewer.open) return;
    if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
    else if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
  });
  // A refreshed grid may carry a newer picture of the stream on view.
  document.addEventListener("htmx:afterSettle", function () {
    if (!viewer.open || currentId === null) return;
    var link = tiles().find(function (l) { return l.dataset.streamId === currentId; });
    if (link) show(link);
  });
})();
