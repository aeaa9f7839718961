// Staff pages (base.html), without inline scripts (CSP): on a phone the top menu (a dozen
// links, five lines at 360 px) folds behind a "Menu" button; style.css folds it only when
// this script has marked the page (class js-menu on <html>), so without JavaScript the menu
// shows whole, as before. Loaded without defer, so the mark is there before the first paint.
// The button says whether the menu is open (aria-expanded); Escape closes it and puts the
// focus back on the button.
(function () {
  document.documentElement.classList.add("js-menu");
  var setUp = function () {
    var button = document.getElementById("menu-toggle");
    if (!button) return;
    var header = button.closest("header");
    var open = function (yes) {
      header.classList.toggle("menu-open", yes);
      button.setAttribute("aria-expanded", yes ? "true" : "false");
    };
    button.addEventListener("click", function () {
      open(!header.classList.contains("menu-open"));
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && header.classList.contains("menu-open")) {
        open(false);
        button.focus();
      }
    });
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
