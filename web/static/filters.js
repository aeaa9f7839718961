// On a phone the case list's filters fold away under their summary (which counts those
// chosen), so the cases come first; on a wider screen they are always shown. Without a
// script they are shown everywhere.
(function () {
  var box = document.getElementById('filters-box');
  if (!box) return;
  var phone = window.matchMedia('(max-width: 760px)');
  function fit() { box.open = !phone.matches; }
  fit();
  if (phone.addEventListener) phone.addEventListener('change', fit);
})();
