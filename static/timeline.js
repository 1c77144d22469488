// The stream page's day timeline (templates/streams/detail.html, #timeline): a 24 h strip of
// activity marks (motion per 5 minutes, events as dots) under a range input that scrubs
// through the day's stored pictures. Dragging or clicking picks the picture nearest to that
// time; the arrow keys step to the previous/next picture (Page Up/Down by ten, Home/End to
// the first/last). The day's data comes from GET /streams/<id>/timeline?day=YYYY-MM-DD.
// No inline style or script (the CSP forbids them): positions are SVG attributes.
(function () {
  "use strict";
  var section = document.getElementById("timeline");
  if (!section || !window.fetch) return;
  var summary = document.getElementById("timeline-summary");
  var figure = section.querySelector(".timeline-picture");
  var strip = section.querySelector(".timeline-strip");
  var marks = section.querySelector("svg.timeline-marks");
  var scrub = document.getElementById("timeline-scrub");
  var img = document.getElementById("timeline-img");
  var link = section.querySelector("a.timeline-open");
  var timeEl = document.getElementById("timeline-time");
  var motionEl = document.getElementById("timeline-motion");
  var eventList = section.querySelector("ul.timeline-events");
  var SVG = "http://www.w3.org/2000/svg";
  var data = null;
  var current = -1;

  function svg(name, attrs) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    return el;
  }

  function x(seconds) { return (seconds / data.seconds) * 1000; }

  function draw() {
    var width = 1000 / data.activity.length;
    data.activity.forEach(function (motion, i) {
      if (motion === null) return;
      // Every bin with pictures gets a low bar; motion raises it (scores are 0..1).
      var height = 4 + Math.min(1, motion * 4) * 32;
      marks.appendChild(svg("rect", {
        x: (i * width).toFixed(2), y: (40 - height).toFixed(2),
        width: Math.max(width - 0.6, 0.8).toFixed(2), height: height.toFixed(2),
        "class": motion > 0 ? "mark-motion" : "mark-picture"
      }));
    });
    data.events.forEach(function (e) {
      marks.appendChild(svg("circle", {
        cx: x(e.at).toFixed(2), cy: "5", r: "4", "class": "mark-event sev-" + e.severity
      }));
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = e.url;
      a.textContent = e.time + " " + e.title;
      li.appendChild(a);
      eventList.appendChild(li);
    });
    marks.appendChild(svg("line", { x1: "0", y1: "0", x2: "0", y2: "40", "class": "mark-cursor" }));
  }

  // The picture nearest to `seconds` after the day's start (binary search; sorted by time).
  function nearest(seconds) {
    var snaps = data.snapshots, lo = 0, hi = snaps.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (snaps[mid][1] < seconds) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && seconds - snaps[lo - 1][1] < snaps[lo][1] - seconds) lo -= 1;
    return lo;
  }

  function show(index) {
    var snaps = data.snapshots;
    index = Math.max(0, Math.min(snaps.length - 1, index));
    var snap = snaps[index];
    current = index;
    var url = data.image.replace("{id}", String(snap[0]));
    if (img.getAttribute("src") !== url) img.src = url;
    img.alt = "Snapshot of " + data.day + " " + snap[2];
    img.dataset.snapshot = String(snap[0]);
    link.href = url;
    timeEl.textContent = data.day_label + " " + snap[2];  // "today 14:03:07", "Tue 1 Dec …"
    timeEl.title = data.day + " " + snap[2] + " " + data.zone;
    timeEl.setAttribute("datetime", data.day + "T" + snap[2]);
    motionEl.textContent = snap[3] === null ? "" :
      "· motion " + Math.round(snap[3] * 1000) / 10 + " %";
    scrub.value = String(snap[1]);
    scrub.setAttribute("aria-valuetext",
      snap[2] + ", picture " + (index + 1) + " of " + snaps.length);
    var cursor = marks.querySelector(".mark-cursor");
    if (cursor) {
      cursor.setAttribute("x1", x(snap[1]).toFixed(2));
      cursor.setAttribute("x2", x(snap[1]).toFixed(2));
    }
  }

  scrub.addEventListener("input", function () { show(nearest(Number(scrub.value))); });
  scrub.addEventListener("keydown", function (event) {
    var step = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1,
                 PageDown: -10, PageUp: 10 }[event.key];
    if (event.key === "Home") step = -current;
    if (event.key === "End") step = data.snapshots.length;
    if (step === undefined) return;
    event.preventDefault();
    show(current + step);
  });

  fetch(section.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(function (json) {
      data = json;
      var n = data.snapshots.length;
      summary.textContent = n === 0
        ? "No picture stored on " + data.day + "."
        : data.total + (data.total === 1 ? " picture" : " pictures") + " on " + data.day +
          (data.sampled ? " (every " + Math.ceil(data.total / n) + "th shown)" : "") +
          (data.events.length ? ", " + data.events.length +
            (data.events.length === 1 ? " event" : " events") : "") + ".";
      if (n === 0) return;
      scrub.max = String(data.seconds - 1);
      draw();
      strip.hidden = false;
      figure.hidden = false;
      eventList.hidden = data.events.length === 0;
      show(n - 1);
    })
    .catch(function (error) {
      summary.textContent = "The timeline could not be loaded (" + error.message + "); reload the page.";
    });
})();
