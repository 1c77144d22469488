// The event page (templates/events/detail.html): keyboard shortcuts and the strip's viewer.
// j older event, k newer event, a acknowledge, b event picture <-> the one before,
// ? the list of shortcuts. Keys typed into a field, or with Ctrl/Alt/Meta, are left alone.
(function () {
  "use strict";
  var root = document.getElementById("event-review");
  if (!root) return;
  var shortcuts = document.getElementById("shortcuts");
  var viewer = document.getElementById("strip-viewer");

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    if (tag === "input") {
      var type = (target.getAttribute("type") || "text").toLowerCase();
      return ["radio", "checkbox", "button", "submit", "reset"].indexOf(type) < 0;
    }
    return tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function openDialog(dialog) {
    if (dialog && typeof dialog.showModal === "function" && !dialog.open) dialog.showModal();
  }

  function go(url) {
    if (url) window.location.assign(url);
  }

  function toggleBefore() {
    var after = document.getElementById("view-after");
    var before = document.getElementById("view-before");
    if (!after || !before) return;
    (after.checked ? before : after).checked = true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.altKey || event.metaKey || typing(event.target)) return;
    if ((shortcuts && shortcuts.open) || (viewer && viewer.open)) return;
    switch (event.key) {
      case "j": go(root.dataset.older); break;
      case "k": go(root.dataset.newer); break;
      case "a": {
        var form = document.getElementById("event-ack");
        if (form) form.requestSubmit();
        break;
      }
      case "b": toggleBefore(); break;
      case "?": openDialog(shortcuts); break;
      default: return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    if (target.closest("[data-shortcuts]")) { openDialog(shortcuts); return; }
    var close = target.closest("[data-close]");
    if (close) { close.closest("dialog").close(); return; }
    var thumb = target.closest("a[data-strip]");
    if (thumb && viewer && typeof viewer.showModal === "function") {
      event.preventDefault();
      var img = viewer.querySelector("img");
      var caption = thumb.querySelector("time");
      img.src = thumb.getAttribute("href");
      img.alt = "Picture of " + (caption ? caption.getAttribute("datetime") : "");
      viewer.querySelector("h2").textContent = caption ? caption.textContent : "Picture";
      openDialog(viewer);
    }
  });
  root.dataset.ready = "1"; // the shortcuts work from now on (tests wait for this)
})();
