// The colour theme, applied before the page paints (loaded without defer in <head>).
// A signed-in page says the user's choice in <html data-theme-pref>; it is remembered here in
// localStorage so that the pages before sign-in look the same. "light" and "dark" set Pico's
// data-theme; "system" leaves it out (Pico then follows prefers-color-scheme).
(function () {
  "use strict";
  var KEY = "glimpser-theme";
  var root = document.documentElement;
  var pref = root.getAttribute("data-theme-pref");
  try {
    if (pref) localStorage.setItem(KEY, pref);
    else pref = localStorage.getItem(KEY);
  } catch (e) { /* storage disabled: the server's choice still applies */ }
  if (pref === "light" || pref === "dark") root.setAttribute("data-theme", pref);
  else root.removeAttribute("data-theme");
})();
