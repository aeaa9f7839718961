// The triage queue (board/queue.html), without inline scripts (CSP): "select all", how many
// are ticked, and each row's department selector: a copy of the one bulk selector, made here
// rather than sent with every row (the page stays light), set to the row's suggestion.
document.addEventListener("DOMContentLoaded", function () {
  // On a phone the rows are cards and each cell names itself (style.css: td[data-label]):
  // the names are the column headings, set here instead of being sent in every cell.
  document.querySelectorAll("table.queue").forEach(function (table) {
    var names = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      return th.textContent.trim();
    });
    table.querySelectorAll("tbody tr").forEach(function (row) {
      Array.prototype.forEach.call(row.children, function (cell, i) {
        if (names[i]) cell.setAttribute("data-label", names[i]);
      });
    });
  });
  var bulk = document.getElementById("bulk");
  if (!bulk) return;
  var boxes = function () {
    return Array.prototype.slice.call(document.querySelectorAll('input[name="case"][form="bulk"]'));
  };
  var all = bulk.querySelector(".select-all");
  var shown = bulk.querySelector(".selected-count");
  var update = function () {
    var n = boxes().filter(function (b) { return b.checked; }).length;
    shown.textContent = n ? "(" + n + ")" : "";
    // "Select all" tells whether all, some or none are ticked (a box unticked by hand left
    // it ticked, and one more press then unticked everything).
    if (all) {
      all.checked = n > 0 && n === boxes().length;
      all.indeterminate = n > 0 && n < boxes().length;
    }
  };
  if (all) {
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
      update();
    });
  }
  boxes().forEach(function (b) { b.addEventListener("change", update); });
  var source = bulk.querySelector("select");
  if (!source) return;
  document.querySelectorAll("td.dispatch").forEach(function (cell) {
    var button = cell.querySelector("button[name=one]");
    if (!button) return;
    var select = source.cloneNode(true);
    select.name = "to-" + button.value;
    select.removeAttribute("id");
    select.setAttribute("form", "bulk");
    select.setAttribute("aria-label", source.getAttribute("data-row-label") || "");
    var suggested = cell.getAttribute("data-suggested") || "";
    // A suggestion of a department no longer active is no choice: the selector would show
    // nothing chosen and the button fail; ask for a department instead.
    var offered = Array.prototype.some.call(source.options, function (o, i) {
      return i > 0 && o.value === suggested;
    });
    // The first option ("each to its suggestion") is for the bulk bar only.
    select.removeChild(select.options[0]);
    // Departments that sent this case back are marked: going back there needs a reason.
    var returned = (cell.getAttribute("data-returned") || "").split(" ");
    Array.prototype.forEach.call(select.options, function (o) {
      if (o.value && returned.indexOf(o.value) >= 0) {
        o.textContent += " " + (source.getAttribute("data-returned-label") || "");
        o.title = o.textContent;
      }
    });
    if (!offered) {
      var pick = document.createElement("option");
      pick.value = "";
      pick.textContent = source.getAttribute("data-choose") || "—";
      // Cut in the narrowed selector in English too: whole in its title as the names are.
      pick.title = pick.textContent;
      select.insertBefore(pick, select.firstChild);
      select.value = "";
    } else {
      select.value = suggested;
    }
    // Its title names the department chosen in full (static/selects.js, which ran before).
    select.title = select.options[select.selectedIndex] ? select.options[select.selectedIndex].text : "";
    cell.insertBefore(select, button);
  });
});
