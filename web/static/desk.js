// The operators' desk (board/call.html): the caller's earlier cases appear as the number
// is typed, and Enter logs the call from any field. Without this script the form works the
// same with its 'look up' button.
(function () {
  "use strict";
  var form = document.getElementById("call-form");
  if (!form) return;
  var phone = form.querySelector("[name=phone]");
  var box = document.getElementById("caller-history");
  var list = document.getElementById("history-cases");
  var count = document.getElementById("history-count");
  var labels = document.getElementById("history-labels");
  var logButton = document.getElementById("log-button");
  var lookupButton = document.getElementById("lookup-button");
  var url = form.getAttribute("data-history-url");
  var timer = null;
  var asked = "";
  var pending = null;

  if (lookupButton) lookupButton.hidden = true;

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    if (cls) el.className = cls;
    el.textContent = value;
    return el;
  }

  // Whether 'a new matter' was chosen by show(), not by the operator.
  // (The page comes with it checked when it shows no history.)
  var newMatterByDefault = box.hidden;
  form.addEventListener("change", function (e) {
    if (e.target && e.target.name === "about") newMatterByDefault = false;
  });

  function chosen() {
    var checked = form.querySelector("input[name=about]:checked");
    return checked ? checked.value : "new";
  }

  function show(data) {
    var keep = chosen();
    while (list.firstChild) list.removeChild(list.firstChild);
    var cases = (data && data.cases) || [];
    cases.forEach(function (c) {
      var item = document.createElement("div");
      item.className = "earlier-case";
      item.setAttribute("data-number", c.number);
      var line = document.createElement("p");
      var link = text("a", c.number);
      link.href = c.url;
      link.tabIndex = -1;
      line.appendChild(link);
      line.appendChild(document.createTextNode(" "));
      line.appendChild(text("span", c.status_label, "badge status-" + c.status));
      line.appendChild(document.createTextNode(" "));
      line.appendChild(text("time", c.received));
      line.appendChild(document.createTextNode(" " + c.subject));
      if (c.urge_count) {
        line.appendChild(document.createTextNode(" "));
        line.appendChild(
          text("span", labels.getAttribute("data-urged").replace("999999", c.urge_count), "badge overdue")
        );
      }
      item.appendChild(line);
      c.choices.forEach(function (ch) {
        var label = document.createElement("label");
        label.className = "choice";
        var radio = document.createElement("input");
        radio.type = "radio";
        radio.name = "about";
        radio.value = ch.value;
        radio.checked = ch.value === keep;
        label.appendChild(radio);
        label.appendChild(document.createTextNode(" " + ch.label));
        item.appendChild(label);
      });
      list.appendChild(item);
    });
    // With an open case listed, 'a new matter' is not chosen for the operator: Enter must
    // not open a new case for a repeat call (the server asks when no answer is sent).
    var anyOpen = cases.some(function (c) { return c.open; });
    var newMatter = form.querySelector("input[name=about][value=new]");
    if (anyOpen && newMatterByDefault && newMatter.checked) newMatter.checked = false;
    if (!form.querySelector("input[name=about]:checked") && !anyOpen) {
      newMatter.checked = true;
      newMatterByDefault = true;
    }
    var total = (data && data.total) || 0;
    count.textContent = total ? labels.getAttribute("data-earlier").replace("999999", total + (data.more ? "+" : "")) : "";
    box.hidden = total === 0;
    // Hidden, it sends no answer: a call logged before the history showed is asked about
    // the caller's open cases by the server instead of silently becoming a new case.
    box.disabled = total === 0;
  }

  function lookUp() {
    var value = phone.value.trim();
    var digits = value.replace(/\D/g, "");
    if (digits.length < 7) {
      asked = "";
      show(null);
      return Promise.resolve();
    }
    if (value === asked && pending) return pending;
    asked = value;
    pending = fetch(url + "?phone=" + encodeURIComponent(value), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (r) {
        // Refused (too many lookups) or failed: the 'look up' button is the way left.
        if (!r.ok && lookupButton) lookupButton.hidden = false;
        return r.ok ? r.json() : null;
      })
      .then(function (data) {
        if (asked === value && data) show(data.valid ? data : null);
      })
      .catch(function () {
        /* the 'look up' button still works */
        if (lookupButton) lookupButton.hidden = false;
      });
    return pending;
  }

  // 'Anonymous caller' ticked: no number to type or match, no call-back to promise.
  var anonymous = form.querySelector("[name=anonymous]");
  var callback = form.querySelector("[name=callback]");
  function anonymousChanged() {
    if (!anonymous) return;
    var on = anonymous.checked;
    if (on) {
      phone.value = "";
      asked = "";
      show(null);
      if (callback) callback.checked = false;
    }
    phone.disabled = on;
    if (callback) callback.disabled = on;
  }
  if (anonymous) {
    anonymous.addEventListener("change", anonymousChanged);
    anonymousChanged();
  }

  phone.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(lookUp, 250);
  });

  form.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || e.isComposing) return;
    var t = e.target;
    if (t.tagName === "TEXTAREA") {
      if (e.ctrlKey || e.metaKey) {
        e.preventDefault();
        form.requestSubmit(logButton);
      }
      return;
    }
    if (t.tagName === "BUTTON" || t.tagName === "A") return;
    e.preventDefault();
    if (t === phone) {
      clearTimeout(timer);
      lookUp().then(function () {
        // The answer chosen, or (none chosen: the caller has an open case) the first one.
        var first = box.hidden
          ? null
          : box.querySelector("input[name=about]:checked") || box.querySelector("input[name=about]");
        (first || form.querySelector("[name=name]")).focus();
      });
      return;
    }
    form.requestSubmit(logButton);
  });

  // The call time the desk filled in follows the clock until the operator types over it:
  // the page may have been opened long before the call came. Counted from the time the
  // server filled in (office time), not the browser's zone.
  var calledAt = form.querySelector("[name=called_at]");
  var calledShown = form.querySelector("[name=called_at_shown]");
  var filled = calledShown && /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(calledShown.value);
  if (calledAt && filled) {
    var loaded = Date.now();
    var base = Date.UTC(+filled[1], +filled[2] - 1, +filled[3], +filled[4], +filled[5]);
    var pad = function (n) {
      return (n < 10 ? "0" : "") + n;
    };
    setInterval(function () {
      if (calledAt.value !== calledShown.value) return;
      var d = new Date(base + (Date.now() - loaded));
      var value =
        d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
        "T" + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
      calledAt.value = value;
      calledShown.value = value;
    }, 15000);
  }

  if (phone.value) lookUp();
})();
