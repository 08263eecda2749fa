// Operations page: keep each rollout slider and its number field in step (the number field is
// the one submitted, so the form works without this script too). Loaded with defer; also runs
// on content htmx swaps in (a saved flag's card).
(function () {
  "use strict";
  function wire(root) {
    root.querySelectorAll("input[type=range][data-sync]").forEach(function (range) {
      if (range.dataset.wired) { return; }
      range.dataset.wired = "1";
      var number = document.getElementById(range.getAttribute("data-sync"));
      if (!number) { return; }
      range.addEventListener("input", function () { number.value = range.value; });
      number.addEventListener("input", function () { range.value = number.value; });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { wire(document); });
  document.addEventListener("htmx:load", function (event) { wire(event.detail.elt); });
})();
