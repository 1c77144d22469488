// Live view: when the MJPEG feed fails or ends (the reader stopped, the server restarted,
// too many viewers), reconnect after a pause. No inline script: the CSP forbids it.
(function () {
  "use strict";
  var img = document.getElementById("live-feed");
  if (!img) { return; }
  var base = img.getAttribute("data-live-src");
  var timer = null;
  function reconnect() {
    if (timer) { return; }
    timer = window.setTimeout(function () {
      timer = null;
      img.src = base + (base.indexOf("?") < 0 ? "?" : "&") + "r=" + Date.now();
    }, 3000);
  }
  img.addEventListener("error", reconnect);
})();
