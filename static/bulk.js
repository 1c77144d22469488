// The streams list's bulk actions (templates/streams/list.html): "select all" and a count of
// the selected streams. The form works without it (each checkbox belongs to form#bulk).
(function () {
  "use strict";
  var form = document.getElementById("bulk");
  var all = document.getElementById("bulk-all");
  var count = document.getElementById("bulk-count");
  if (!form || !all) return;
  function boxes() {
    return Array.prototype.slice.call(document.querySelectorAll('input[name="ids"][form="bulk"]'));
  }
  function update() {
    var items = boxes();
    var n = items.filter(function (b) { return b.checked; }).length;
    all.checked = n > 0 && n === items.length;
    all.indeterminate = n > 0 && n < items.length;
    count.textContent = n === 0 ? "" : n + (n === 1 ? " stream selected" : " streams selected");
  }
  all.addEventListener("change", function () {
    boxes().forEach(function (b) { b.checked = all.checked; });
    update();
  });
  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches('input[name="ids"]')) update();
  });
  update();
})();
