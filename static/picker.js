/* The element picker of the stream form's test capture (websites).
   The test capture carries the page's visible elements: data-elements on .picker is
   {width, height, items: [[css selector, x, y, w, h], ...]} in the picture's CSS pixels.
   A click on the picture picks the smallest element under the pointer, outlines it and
   fills "Crop to element" with its selector (selector type: CSS). No inline script (CSP). */
(function () {
  "use strict";

  function data(picker) {
    if (!picker._elements) {
      try { picker._elements = JSON.parse(picker.dataset.elements || "null"); }
      catch (e) { picker._elements = null; }
    }
    return picker._elements;
  }

  function smallestAt(elements, x, y) {
    let best = null;
    for (const item of elements.items) {
      const [, left, top, w, h] = item;
      if (x >= left && x <= left + w && y >= top && y <= top + h) {
        if (best === null || w * h < best[3] * best[4]) best = item;
      }
    }
    return best;
  }

  function outline(picker, elements, item) {
    const box = picker.querySelector(".picker-box");
    if (!box) return;
    box.style.left = (item[1] / elements.width) * 100 + "%";
    box.style.top = (item[2] / elements.height) * 100 + "%";
    box.style.width = (item[3] / elements.width) * 100 + "%";
    box.style.height = (item[4] / elements.height) * 100 + "%";
    box.hidden = false;
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

  document.addEventListener("click", function (event) {
    const img = event.target.closest ? event.target.closest(".picker img") : null;
    if (!img) return;
    const picker = img.closest(".picker");
    const elements = data(picker);
    if (!elements || !elements.items || !elements.items.length) return;
    const rect = img.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * elements.width;
    const y = ((event.clientY - rect.top) / rect.height) * elements.height;
    const item = smallestAt(elements, x, y);
    const status = picker.parentElement.querySelector(".picker-chosen");
    if (!item) {
      if (status) status.textContent = "No element there; click another part of the picture.";
      return;
    }
    outline(picker, elements, item);
    fill(item[0]);
    if (status) status.textContent = "Crop to element: " + item[0];
  });
})();
