// Set the theme before the first paint: the saved choice, else the OS preference.
(function () {
  var saved = null;
  try { saved = localStorage.getItem("dobby.theme"); } catch (e) { /* storage disabled */ }
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = saved === "dark" || saved === "light" ? saved : (dark ? "dark" : "light");
})();
