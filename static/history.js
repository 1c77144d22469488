// The stream page's history: select a thumbnail to see the full snapshot in a viewer;
// the left/right arrow keys (or the buttons) step to newer/older pictures.
(function () {
  "use strict";
  var viewer = document.getElementById("viewer");
  var list = document.getElementById("history");
  if (!viewer || !list || typeof viewer.showModal !== "function") return;
  var img = viewer.querySelector("img");
  var time = viewer.querySelector("h2 time");
  var open = viewer.querySelector("a.viewer-open");
  var current = -1;

  function thumbs() { return Array.prototype.slice.call(list.querySelectorAll("a.thumb")); }

  function show(index) {
    var items = thumbs();
    if (index < 0 || index >= items.length) return false;
    var link = items[index];
    current = index;
    img.src = link.getAttribute("href");
    img.alt = "Snapshot " + (link.dataset.when || link.dataset.time);
    time.textContent = link.dataset.when || link.dataset.time;
    time.setAttribute("datetime", link.dataset.time);
    time.title = link.dataset.time;
    open.setAttribute("href", link.getAttribute("href"));
    viewer.dataset.index = String(index);
    if (!viewer.open) viewer.showModal();
    return true;
  }

  function step(delta) {
    if (show(current + delta) || delta < 0) return;
    // Past the oldest loaded picture: load the next page, then step into it.
    var more = list.querySelector("li.more a");
    if (!more || !window.htmx) return;
    list.addEventListener("htmx:afterSettle", function once() {
      list.removeEventListener("htmx:afterSettle", once);
      show(current + delta);
    });
    window.htmx.trigger(more, "click");
  }

  list.addEventListener("click", function (event) {
    var link = event.target.closest("a.thumb");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    show(thumbs().indexOf(link));
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
  document.addEventListener("keydown", function (event) {
    if (!viewer.open) return;
    if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
    else if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
  });
})();
