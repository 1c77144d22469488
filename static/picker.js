/* The element picker of the stream form's test capture (websites).
   The test capture carries the page's visible elements: data-elements on .picker is
   {width, height, items: [[css selector, x, y, w, h], ...]} in the picture's CSS pixels,
   in document order.

   Mouse: a click on the picture picks the smallest element under the pointer.
   Keyboard: the picture is focusable (role=application); on focus the current candidate is
   outlined (dashed); ← ↑ / → ↓ (and Shift+Tab / Tab, which leave the picture at either end,
   so it never traps the focus) move to the previous / next element in document order,
   Home / End to the first / last, Enter or Space picks the candidate, Escape cancels (the crop
   selector is left as it was and the candidate outline hidden).

   Picking outlines the element, fills "Crop to element" with its selector (selector type:
   CSS) and announces it in the .picker-chosen live region; the candidate is announced in
   .picker-candidate. No inline script (CSP): styles are set through the CSSOM. */
(function () {
  "use strict";

  function data(picker) {
    if (!picker._elements) {
      try { picker._elements = JSON.parse(picker.dataset.elements || "null"); }
      catch (e) { picker._elements = null; }
    }
    const elements = picker._elements;
    return elements && elements.items && elements.items.length ? elements : null;
  }

  function smallestAt(elements, x, y) {
    let best = -1;
    elements.items.forEach(function (item, index) {
      const [, left, top, w, h] = item;
      if (x >= left && x <= left + w && y >= top && y <= top + h) {
        if (best < 0 || w * h < elements.items[best][3] * elements.items[best][4]) best = index;
      }
    });
    return best;
  }

  function place(box, elements, item) {
    if (!box) return;
    box.style.left = (item[1] / elements.width) * 100 + "%";
    box.style.top = (item[2] / elements.height) * 100 + "%";
    box.style.width = (item[3] / elements.width) * 100 + "%";
    box.style.height = (item[4] / elements.height) * 100 + "%";
    box.hidden = false;
  }

  function region(picker, name) {
    return picker.closest("figure").querySelector(name);
  }

  function fill(selector) {
    const field = document.querySelector('[name="config.element_selector"]');
    if (field) {
      field.value = selector;
      field.dispatchEvent(new Event("input", { bubbles: true }));
      field.dispatchEvent(new Event("change", { bubbles: true }));
    }
    const type = document.querySelector('[name="config.selector_type"]');
    if (type && type.value !== "css") {
      type.value = "css";
      type.dispatchEvent(new Event("change", { bubbles: true }));
    }
  }

  function pick(picker, elements, index) {
    const item = elements.items[index];
    picker._chosen = index;
    picker._current = index;
    place(picker.querySelector(".picker-box"), elements, item);
    fill(item[0]);
    const status = region(picker, ".picker-chosen");
    if (status) status.textContent = "Crop to element: " + item[0];
  }

  function show(picker, elements, index) {
    const item = elements.items[index];
    picker._current = index;
    const box = picker.querySelector(".picker-focus");
    place(box, elements, item);
    if (box && box.scrollIntoView) box.scrollIntoView({ block: "nearest", inline: "nearest" });
    const status = region(picker, ".picker-candidate");
    if (status) {
      status.textContent = "Element " + (index + 1) + " of " + elements.items.length + ": " +
        item[0] + ". Enter chooses it, Escape cancels.";
    }
  }

  function hideCandidate(picker) {
    const box = picker.querySelector(".picker-focus");
    if (box) box.hidden = true;
  }

  function startIndex(picker, elements) {
    if (typeof picker._current === "number") return picker._current;
    const field = document.querySelector('[name="config.element_selector"]');
    const value = field ? field.value.trim() : "";
    const found = elements.items.findIndex(function (item) { return item[0] === value; });
    return found >= 0 ? found : 0;
  }

  document.addEventListener("click", function (event) {
    const img = event.target.closest ? event.target.closest(".picker img") : null;
    if (!img) return;
    const picker = img.closest(".picker");
    const elements = data(picker);
    if (!elements) return;
    const rect = img.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * elements.width;
    const y = ((event.clientY - rect.top) / rect.height) * elements.height;
    const index = smallestAt(elements, x, y);
    if (index < 0) {
      const status = region(picker, ".picker-chosen");
      if (status) status.textContent = "No element there; click another part of the picture.";
      return;
    }
    hideCandidate(picker);
    const candidate = region(picker, ".picker-candidate");
    if (candidate) candidate.textContent = "";
    pick(picker, elements, index);
  });

  document.addEventListener("focusin", function (event) {
    const picker = event.target.classList && event.target.classList.contains("picker")
      ? event.target : null;
    if (!picker) return;
    // A click focuses the picture too: the candidate is for the keyboard only.
    if (!picker.matches(":focus-visible")) return;
    const elements = data(picker);
    if (elements) show(picker, elements, startIndex(picker, elements));
  });

  document.addEventListener("focusout", function (event) {
    if (event.target.classList && event.target.classList.contains("picker")) {
      hideCandidate(event.target);
    }
  });

  document.addEventListener("keydown", function (event) {
    const picker = event.target.classList && event.target.classList.contains("picker")
      ? event.target : null;
    if (!picker || event.altKey || event.ctrlKey || event.metaKey) return;
    const elements = data(picker);
    if (!elements) return;
    const last = elements.items.length - 1;
    const current = startIndex(picker, elements);
    let next = null;
    switch (event.key) {
      case "ArrowRight": case "ArrowDown": next = Math.min(current + 1, last); break;
      case "ArrowLeft": case "ArrowUp": next = Math.max(current - 1, 0); break;
      case "Home": next = 0; break;
      case "End": next = last; break;
      case "Tab":
        // Tab walks the elements, then leaves the picture at either end (no keyboard trap).
        if (event.shiftKey ? current <= 0 : current >= last) return;
        next = current + (event.shiftKey ? -1 : 1);
        break;
      case "Enter": case " ":
        event.preventDefault();
        pick(picker, elements, current);
        return;
      case "Escape": {
        event.preventDefault();
        hideCandidate(picker);
        picker._current = typeof picker._chosen === "number" ? picker._chosen : undefined;
        const status = region(picker, ".picker-candidate");
        if (status) status.textContent = "Cancelled: the crop selector is unchanged.";
        return;
      }
      default: return;
    }
    event.preventDefault();
    show(picker, elements, next);
  });
})();
