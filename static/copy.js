// A "Copy" button next to a read-only field: <button data-copy-from="FIELD-ID" hidden>.
// Shown only with JavaScript; without it the field can be selected and copied by hand.
(function () {
  "use strict";
  function copy(button) {
    var field = document.getElementById(button.getAttribute("data-copy-from"));
    var status = document.getElementById(button.id + "-status");
    if (!field) return;
    function said(text) { if (status) status.textContent = text; }
    field.focus();
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(
        function () { said("Copied."); },
        function () { said("Press Ctrl+C (⌘C) to copy the selected key."); }
      );
    } else {
      said(document.execCommand && document.execCommand("copy")
        ? "Copied." : "Press Ctrl+C (⌘C) to copy the selected key.");
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy-from]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { copy(button); });
    });
  });
})();
