// Load the embedded viewer only on screens wide enough to show it beside the
// report. Below that width reading.css hides the frame, and the page links to
// the viewer in its own window instead.
(function () {
  "use strict";
  var WIDE = window.matchMedia("(min-width: 1200px)");

  function loadViewer() {
    var frame = document.querySelector("iframe.viewer-frame[data-src]");
    if (frame && WIDE.matches && !frame.getAttribute("src")) {
      frame.setAttribute("src", frame.getAttribute("data-src"));
    }
  }

  document.addEventListener("DOMContentLoaded", loadViewer);
  WIDE.addEventListener("change", loadViewer);
})();
