/* The kanban (web/kanban.py): drag a card onto another column. The drop posts to the same
   move the card's buttons post to (with the page's CSRF token); the server answers which
   move that is: made (the card moves, with its new buttons), a form to fill on the case page
   (the browser goes there), or refused (the message shows and the card stays). */
(function () {
  "use strict";
  var board = document.getElementById("kanban");
  if (!board) { return; }
  var message = document.getElementById("kanban-message");
  var dragged = null;

  function say(text, error) {
    message.textContent = text;
    message.className = "flash " + (error ? "error" : "info");
    message.setAttribute("role", error ? "alert" : "status");
    message.hidden = false;
  }

  function recount(column, delta) {
    var count = column.querySelector(".count");
    if (!count) { return; }
    var n = parseInt(count.getAttribute("data-count"), 10) + delta;
    count.setAttribute("data-count", String(n));
    count.textContent = String(n);
  }

  function move(card, column) {
    var to = column.getAttribute("data-status");
    if (card.getAttribute("data-status") === to ||
        (to === "triage" && card.getAttribute("data-status") === "received")) {
      return;
    }
    var body = new FormData();
    body.append("csrf_token", board.getAttribute("data-csrf"));
    body.append("number", card.getAttribute("data-number"));
    body.append("to", to);
    body.append("department", board.getAttribute("data-department"));
    card.classList.add("moving");
    fetch(board.getAttribute("data-move-url"), {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      // Not JSON: the session ended (the sign-in page), the form expired or the server
      // failed. Reloading shows which; "not allowed" would be wrong.
      return response.json().catch(function () { return { ok: false, failed: true }; });
    }).then(function (answer) {
      card.classList.remove("moving");
      if (answer.redirect) {
        window.location.assign(answer.redirect);
        return;
      }
      if (!answer.ok) {
        say(answer.message || board.getAttribute(answer.failed ? "data-failed" : "data-refused"), true);
        return;
      }
      var from = card.closest(".kanban-column");
      var holder = document.createElement("ul");
      holder.innerHTML = answer.card;
      var fresh = holder.firstElementChild;
      column.querySelector(".kanban-cards").insertBefore(fresh, column.querySelector(".kanban-card"));
      card.remove();
      recount(from, -1);
      recount(column, 1);
      say(answer.message, false);
    }).catch(function () {
      card.classList.remove("moving");
      say(board.getAttribute("data-failed"), true);
    });
  }

  board.addEventListener("dragstart", function (event) {
    var card = event.target.closest && event.target.closest(".kanban-card");
    if (!card) { return; }
    dragged = card;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.getAttribute("data-number"));
    card.classList.add("dragging");
  });
  board.addEventListener("dragend", function () {
    if (dragged) { dragged.classList.remove("dragging"); }
    dragged = null;
    board.querySelectorAll(".drop-target").forEach(function (c) { c.classList.remove("drop-target"); });
  });
  board.addEventListener("dragover", function (event) {
    var column = event.target.closest && event.target.closest(".kanban-column");
    if (!column || !dragged) { return; }
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    column.classList.add("drop-target");
  });
  board.addEventListener("dragleave", function (event) {
    var column = event.target.closest && event.target.closest(".kanban-column");
    if (column && !column.contains(event.relatedTarget)) { column.classList.remove("drop-target"); }
  });
  board.addEventListener("drop", function (event) {
    var column = event.target.closest && event.target.closest(".kanban-column");
    if (!column || !dragged) { return; }
    event.preventDefault();
    column.classList.remove("drop-target");
    move(dragged, column);
  });
}());
