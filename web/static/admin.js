// The password choice of the new-account and reset forms: the password field is usable only
// when "Set this password" is chosen, so that nothing typed is dropped unseen (the server
// refuses a typed password with "Generate" chosen, for a browser without this script).
(function () {
  "use strict";
  document.querySelectorAll("[data-password-choice]").forEach(function (box) {
    var radios = box.querySelectorAll("input[type=radio]");
    var input = box.querySelector("input[type=password]");
    if (!input || !radios.length) {
      return;
    }
    function update() {
      var chosen = box.querySelector("input[type=radio]:checked");
      var set = chosen && chosen.value === "set";
      input.disabled = !set;
      if (!set) {
        input.value = "";
      }
    }
    radios.forEach(function (r) {
      r.addEventListener("change", update);
    });
    update();
  });
})();
