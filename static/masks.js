// Masks and the region of interest, drawn on a snapshot in the stream form.
// The server renders the shapes (an SVG over the picture) and labelled JSON textareas that
// work without JavaScript; this script folds the textareas away and lets the user draw:
// drag for a rectangle, click points for a polygon (double-click or "Finish polygon" closes
// it). Shapes are fractions 0..1 of the picture, a rectangle is four points; the textareas
// always hold the JSON that is posted (analysis.masks, analysis.region). No inline code: the
// CSP forbids it, so listeners are attached here on DOMContentLoaded and htmx:afterSwap.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var MAX_MASKS = 16;
  var MAX_POINTS = 64;
  var DRAG_PX = 5; // movement that turns a click into a drag
  var MIN_SIZE = 0.01; // smaller rectangles are slips of the hand

  function round(v) {
    return Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
  }

  function isPoint(p) {
    return Array.isArray(p) && p.length === 2 &&
      p.every(function (c) { return typeof c === "number" && c >= 0 && c <= 1; });
  }

  function isPolygon(s) {
    return Array.isArray(s) && s.length >= 3 && s.length <= MAX_POINTS && s.every(isPoint);
  }

  // The textarea's JSON as shapes; undefined when it is not something we can draw.
  function parseMasks(text) {
    text = text.trim();
    if (!text) return [];
    try {
      var v = JSON.parse(text);
      if (v === null) return [];
      if (Array.isArray(v) && v.length && v.every(isPoint)) v = [v]; // one polygon typed
      if (Array.isArray(v) && v.length <= MAX_MASKS && v.every(isPolygon)) return v;
    } catch (e) { /* fall through */ }
    return undefined;
  }

  function parseRegion(text) {
    text = text.trim();
    if (!text) return null;
    try {
      var v = JSON.parse(text);
      if (v === null || (Array.isArray(v) && !v.length)) return null;
      if (isPolygon(v)) return v;
    } catch (e) { /* fall through */ }
    return undefined;
  }

  function pointsAttr(points) {
    return points.map(function (p) { return p[0] + "," + p[1]; }).join(" ");
  }

  function isRectangle(s) {
    if (s.length !== 4) return false;
    var xs = {}, ys = {};
    s.forEach(function (p) { xs[p[0]] = 1; ys[p[1]] = 1; });
    return Object.keys(xs).length === 2 && Object.keys(ys).length === 2;
  }

  function describe(shape) {
    return isRectangle(shape) ? "rectangle" : "polygon, " + shape.length + " points";
  }

  function setup(section) {
    if (section.dataset.shapesReady) return;
    var form = section.closest("form");
    var masksInput = section.querySelector("textarea[name='analysis.masks']");
    var regionInput = section.querySelector("textarea[name='analysis.region']");
    var surface = section.querySelector("[data-shape-surface]");
    var layer = section.querySelector("[data-shape-layer]");
    var tools = section.querySelector("[data-shape-tools]");
    var list = section.querySelector("[data-shape-list]");
    var json = section.querySelector("[data-shape-json]");
    var finishButton = section.querySelector("[data-finish-polygon]");
    var clearButton = section.querySelector("[data-clear-shapes]");
    var status = section.querySelector("[data-shape-status]");
    var targetButtons = section.querySelectorAll("[data-draw-target]");
    if (!form || !masksInput || !regionInput || !surface || !layer) return;

    var masks = parseMasks(masksInput.value);
    var region = parseRegion(regionInput.value);
    var invalid = masksInput.getAttribute("aria-invalid") === "true" ||
      regionInput.getAttribute("aria-invalid") === "true";
    // Text the drawing cannot show (or the server refused) stays as text, to be corrected.
    if (masks === undefined || region === undefined || invalid) return;
    section.dataset.shapesReady = "1";

    var target = "masks";
    var pending = []; // points of the polygon being clicked
    var drag = null;

    json.open = false;
    tools.hidden = false;
    list.hidden = false;
    surface.classList.add("drawing");

    function say(text) { if (status) status.textContent = text; }

    function save() {
      masksInput.value = masks.length ? JSON.stringify(masks) : "";
      regionInput.value = region ? JSON.stringify(region) : "";
    }

    function svgEl(name, cls, points) {
      var el = document.createElementNS(SVG, name);
      el.setAttribute("class", cls);
      el.setAttribute("points", points);
      return el;
    }

    function draw() {
      while (layer.firstChild) layer.removeChild(layer.firstChild);
      masks.forEach(function (m) { layer.appendChild(svgEl("polygon", "shape-mask", pointsAttr(m))); });
      if (region) layer.appendChild(svgEl("polygon", "shape-region", pointsAttr(region)));
      if (pending.length) {
        var pts = pending.length === 1 ? [pending[0], pending[0]] : pending;
        layer.appendChild(svgEl("polyline", "shape-pending " + "pending-" + target, pointsAttr(pts)));
      }
      if (drag && drag.moving) {
        layer.appendChild(svgEl("polygon", "shape-preview", pointsAttr(rectangle(drag.start, drag.end))));
      }
      finishButton.disabled = pending.length < 3;
      renderList();
    }

    function renderList() {
      while (list.firstChild) list.removeChild(list.firstChild);
      function item(text, remove) {
        var li = document.createElement("li");
        var span = document.createElement("span");
        span.textContent = text;
        var button = document.createElement("button");
        button.type = "button";
        button.className = "secondary outline small";
        button.textContent = "Remove";
        button.setAttribute("aria-label", "Remove " + text.split(" (")[0].toLowerCase());
        button.addEventListener("click", function () { remove(); save(); draw(); });
        li.appendChild(span);
        li.appendChild(button);
        list.appendChild(li);
      }
      masks.forEach(function (m, i) {
        item("Mask " + (i + 1) + " (" + describe(m) + ")", function () { masks.splice(i, 1); });
      });
      if (region) item("Region of interest (" + describe(region) + ")", function () { region = null; });
      if (!masks.length && !region) {
        var li = document.createElement("li");
        li.className = "muted";
        li.textContent = "No masks, no region: the whole picture counts.";
        list.appendChild(li);
      }
    }

    function rectangle(a, b) {
      var x0 = round(Math.min(a[0], b[0])), x1 = round(Math.max(a[0], b[0]));
      var y0 = round(Math.min(a[1], b[1])), y1 = round(Math.max(a[1], b[1]));
      return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
    }

    function add(shape) {
      if (target === "region") {
        region = shape;
        say("Region of interest set.");
      } else if (masks.length >= MAX_MASKS) {
        say("At most " + MAX_MASKS + " masks.");
        return;
      } else {
        masks.push(shape);
        say("Mask " + masks.length + " added.");
      }
      save();
    }

    function finishPolygon() {
      if (pending.length < 3) return; // a double-click too early keeps the points so far
      add(pending);
      pending = [];
      draw();
    }

    function fraction(event) {
      var box = (surface.querySelector("img") || surface).getBoundingClientRect();
      return [round((event.clientX - box.left) / box.width), round((event.clientY - box.top) / box.height)];
    }

    surface.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      // No preventDefault here: it would also cancel the mouse events and so the dblclick.
      // Text selection and image dragging are off through CSS and the dragstart listener.
      drag = { start: fraction(event), end: null, x: event.clientX, y: event.clientY, moving: false };
      if (surface.setPointerCapture) surface.setPointerCapture(event.pointerId);
    });
    surface.addEventListener("pointermove", function (event) {
      if (!drag) return;
      if (!drag.moving && Math.hypot(event.clientX - drag.x, event.clientY - drag.y) >= DRAG_PX) {
        drag.moving = true;
      }
      if (drag.moving) {
        drag.end = fraction(event);
        draw();
      }
    });
    surface.addEventListener("pointerup", function (event) {
      if (!drag) return;
      var done = drag;
      drag = null;
      if (done.moving) {
        var rect = rectangle(done.start, fraction(event));
        if (rect[1][0] - rect[0][0] >= MIN_SIZE && rect[2][1] - rect[0][1] >= MIN_SIZE) {
          pending = [];
          add(rect);
        }
      } else {
        var p = done.start, last = pending[pending.length - 1];
        // The second click of a double-click lands on the same spot: one point, not two.
        if (!last || Math.hypot(p[0] - last[0], p[1] - last[1]) > 0.005) {
          if (pending.length < MAX_POINTS) pending.push(p);
        }
      }
      draw();
    });
    surface.addEventListener("pointercancel", function () { drag = null; draw(); });
    surface.addEventListener("dblclick", function (event) { event.preventDefault(); finishPolygon(); });
    surface.addEventListener("dragstart", function (event) { event.preventDefault(); });
    finishButton.addEventListener("click", finishPolygon);
    clearButton.addEventListener("click", function () {
      masks = [];
      region = null;
      pending = [];
      save();
      draw();
      say("All shapes removed.");
    });
    targetButtons.forEach(function (button) {
      button.addEventListener("click", function () {
        target = button.dataset.drawTarget;
        targetButtons.forEach(function (b) {
          var on = b === button;
          b.setAttribute("aria-pressed", on ? "true" : "false");
          b.classList.toggle("secondary", !on);
        });
        pending = [];
        draw();
      });
    });
    targetButtons.forEach(function (b) {
      b.classList.toggle("secondary", b.getAttribute("aria-pressed") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && pending.length && section.isConnected) {
        pending = [];
        draw();
      }
    });
    // Typed JSON (the text view stays available) redraws once it is valid.
    [masksInput, regionInput].forEach(function (input) {
      input.addEventListener("change", function () {
        var m = parseMasks(masksInput.value), r = parseRegion(regionInput.value);
        if (m !== undefined && r !== undefined) {
          masks = m;
          region = r;
          draw();
        }
      });
    });
    draw();
  }

  // A test capture (new stream) gives the picture to draw on when there is none yet.
  function usePreview(preview) {
    var img = preview && preview.querySelector("figure.test-capture img");
    if (!img) return;
    document.querySelectorAll("[data-shape-surface]").forEach(function (surface) {
      var own = surface.querySelector("img[data-surface-image]");
      if (own && !own.dataset.fromPreview) return; // the stream's own snapshot stays
      if (!own) {
        own = document.createElement("img");
        own.setAttribute("data-surface-image", "");
        own.dataset.fromPreview = "1";
        own.alt = "Test capture, to draw masks and the region on";
        own.draggable = false;
        surface.insertBefore(own, surface.firstChild);
      }
      own.src = img.src;
      var placeholder = surface.querySelector("[data-surface-placeholder]");
      if (placeholder) placeholder.remove();
      surface.classList.remove("no-snapshot");
    });
  }

  function showRangeValue(input) {
    var out = document.getElementById(input.id + "-value");
    if (out) out.textContent = input.value;
  }

  // The trigger's placeholder shows the default of the chosen kind (motion or change).
  function showTriggerDefault() {
    var fieldset = document.getElementById("analysis-fields");
    var kind = document.getElementById("f-kind");
    var trigger = document.getElementById("f-analysis-trigger-percent");
    if (!fieldset || !kind || !trigger) return;
    try {
      var defaults = JSON.parse(fieldset.dataset.triggerDefaults || "{}");
      if (defaults[kind.value] !== undefined) trigger.placeholder = String(defaults[kind.value]);
    } catch (e) { /* keep the server's placeholder */ }
  }

  function init(root) {
    (root || document).querySelectorAll("[data-shapes]").forEach(setup);
  }

  document.addEventListener("input", function (event) {
    var el = event.target;
    if (el && el.matches && el.matches("input[type='range']")) showRangeValue(el);
  });
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "f-kind") showTriggerDefault();
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    // The test capture's result replaces its own "Capturing…" line (outerHTML), so look at
    // the preview box itself rather than at the swap's target.
    usePreview(document.getElementById("preview"));
    init(document);
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  } else {
    init(document);
  }
})();
