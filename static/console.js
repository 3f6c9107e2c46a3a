// Progressive enhancement only: every link and form works without this file.
(function () {
  "use strict";
  var opener = null;

  function dialog() { return document.getElementById("action-dialog"); }

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var target = evt.detail.target;
    if (target && target.id === "dialog-content" && !dialog().open) {
      opener = document.activeElement;
    }
  });

  document.addEventListener("htmx:afterSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || target.id !== "dialog-content") { return; }
    var d = dialog();
    if (!d.open) { d.showModal(); }
    var focusable = d.querySelector("[autofocus], textarea, input:not([type=hidden]), button");
    if (focusable) { focusable.focus(); }
  });

  function closeDialog() {
    var d = dialog();
    if (d && d.open) { d.close(); }
  }

  document.addEventListener("console:close-dialog", closeDialog);
  document.body && document.body.addEventListener("console:close-dialog", closeDialog);

  // Action links: the confirm step in the shared dialog (the link itself works without JS).
  document.addEventListener("click", function (evt) {
    var link = evt.target.closest && evt.target.closest("a[data-dialog]");
    if (!link || !window.htmx || evt.button !== 0 ||
        evt.metaKey || evt.ctrlKey || evt.shiftKey || evt.altKey) { return; }
    evt.preventDefault();
    window.htmx.ajax("GET", link.getAttribute("href"),
      { source: link, target: "#dialog-content", swap: "innerHTML" });
  });

  document.addEventListener("click", function (evt) {
    var el = evt.target.closest("[data-close-dialog]");
    if (el && dialog().open) {
      evt.preventDefault();
      closeDialog();
    }
  });

  // Delegated (close does not bubble; capture sees it): the dialog survives an htmx
  // swap of the whole body (HX-Location after an action without a row to swap).
  document.addEventListener("close", function (evt) {
    if (!evt.target || evt.target.id !== "action-dialog") { return; }
    document.getElementById("dialog-content").innerHTML = "";
    if (opener && document.body.contains(opener)) { opener.focus(); }
    opener = null;
  }, true);
})();
