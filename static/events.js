// Motion boxes in the stream page's history viewer: history.js shows a snapshot in the
// <dialog>; this draws that snapshot's boxes (data-boxes on its thumbnail, [x, y, w, h] as
// fractions) into the overlay <svg>, which the "Show motion boxes" checkbox shows (CSS).
(function () {
  "use strict";
  var viewer = document.getElementById("viewer");
  var list = document.getElementById("history");
  if (!viewer || !list) return;
  var img = viewer.querySelector(".snapshot-frame img");
  var svg = viewer.querySelector(".snapshot-frame svg.boxes");
  var count = viewer.querySelector("[data-boxes-count]");
  if (!img || !svg) return;
  var NS = "http://www.w3.org/2000/svg";

  function thumbFor(href) {
    var links = list.querySelectorAll("a.thumb");
    for (var i = 0; i < links.length; i++) {
      if (links[i].getAttribute("href") === href) return links[i];
    }
    return null;
  }

  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var link = thumbFor(img.getAttribute("src"));
    var raw = link ? link.getAttribute("data-boxes") : null;
    if (raw === null) {
      if (count) count.textContent = "(not analysed yet)";
      return;
    }
    var boxes = [];
    try { boxes = JSON.parse(raw); } catch (e) { boxes = []; }
    boxes.forEach(function (box) {
      var rect = document.createElementNS(NS, "rect");
      rect.setAttribute("x", box[0]);
      rect.setAttribute("y", box[1]);
      rect.setAttribute("width", box[2]);
      rect.setAttribute("height", box[3]);
      svg.appendChild(rect);
    });
    if (count) count.textContent = boxes.length ? "(" + boxes.length + ")" : "(none)";
  }

  new MutationObserver(draw).observe(img, { attributes: true, attributeFilter: ["src"] });
})();
