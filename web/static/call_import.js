// The page of a call-centre import that is still running reloads itself every two seconds
// until the import has finished (web/templates/board/call_import.html).
"use strict";
if (document.getElementById("import-running")) {
  window.setTimeout(function () { window.location.reload(); }, 2000);
}
