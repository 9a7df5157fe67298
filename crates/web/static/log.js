"use strict";
// The log viewer's script (issue 21 item 3), inlined into log pages and allowed by its hash in
// the Content-Security-Policy. Highlights the lines of `#L42` or `#L10-L20` (opening their
// sections), makes shift-click on a line number select a range, and searches the log.
(function () {
  var anchor = null;
  function lines(from, to) {
    var found = [];
    for (var n = from; n <= to; n++) {
      var line = document.getElementById("L" + n);
      if (line) found.push(line);
    }
    return found;
  }
  function reveal(line) {
    for (var node = line.parentNode; node; node = node.parentNode) {
      if (node.tagName === "DETAILS") node.open = true;
    }
  }
  function highlight() {
    var marked = document.querySelectorAll(".line.hl");
    for (var i = 0; i < marked.length; i++) marked[i].classList.remove("hl");
    var match = /^#L(\d+)(?:-L(\d+))?$/.exec(location.hash);
    if (!match) return;
    var from = +match[1], to = match[2] ? +match[2] : from;
    if (to < from) { var swap = from; from = to; to = swap; }
    anchor = from;
    var found = lines(from, to);
    for (var j = 0; j < found.length; j++) { found[j].classList.add("hl"); reveal(found[j]); }
    if (found.length) found[0].scrollIntoView({ block: "center" });
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.ln");
    if (!link || !event.shiftKey || anchor === null) return;
    event.preventDefault();
    var n = +link.getAttribute("data-line");
    var from = Math.min(anchor, n), to = Math.max(anchor, n);
    history.replaceState(null, "", "#L" + from + "-L" + to);
    highlight();
    anchor = from;
  });
  window.addEventListener("hashchange", highlight);
  document.addEventListener("DOMContentLoaded", function () {
    highlight();
    var form = document.getElementById("log-search");
    if (!form) return;
    form.hidden = false;
    var input = form.querySelector("input");
    var count = document.getElementById("log-search-count");
    var matches = [], current = -1, last = "";
    function search() {
      var query = input.value.toLowerCase();
      if (query === last) return;
      last = query;
      for (var i = 0; i < matches.length; i++) matches[i].classList.remove("match", "current");
      matches = [];
      current = -1;
      if (query) {
        var all = document.querySelectorAll(".line");
        for (var k = 0; k < all.length; k++) {
          if (all[k].textContent.toLowerCase().indexOf(query) >= 0) {
            all[k].classList.add("match");
            matches.push(all[k]);
          }
        }
      }
      count.textContent = query ? matches.length + " lines" : "";
    }
    function next() {
      if (!matches.length) return;
      if (current >= 0) matches[current].classList.remove("current");
      current = (current + 1) % matches.length;
      var line = matches[current];
      line.classList.add("current");
      reveal(line);
      line.scrollIntoView({ block: "center" });
      count.textContent = (current + 1) + " of " + matches.length + " lines";
    }
    input.addEventListener("input", search);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      search();
      next();
    });
  });
})();
