// Every page (base.html), without inline scripts (CSP): a dropdown is capped in width (a long
// English department name widened the triage queue past a laptop's screen), so a name may be
// cut at its end. It stays readable whole: each option's title is its text, and the
// dropdown's title the option chosen, kept up to date as another is chosen. Selects made
// after the page loaded (the queue's row selectors) get theirs when pointed at or focused.
(function () {
  var name = function (select) {
    Array.prototype.forEach.call(select.options, function (o) {
      if (!o.title) o.title = o.text;
    });
    var chosen = select.options[select.selectedIndex];
    select.title = chosen ? chosen.text : "";
  };
  var named = function (event) {
    if (event.target instanceof HTMLSelectElement) name(event.target);
  };
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("select"), name);
  });
  document.addEventListener("change", named);
  document.addEventListener("focusin", named);
  document.addEventListener("mouseover", named);
})();
