"use strict";
// The log viewer's script (issue 21 item 3), inlined into log pages and allowed by its hash in
// the Content-Security-Policy. Highlights the lines of `#L42` or `#L10-L20` (opening their
// sections, or loading the part of a big log that holds them), makes shift-click on a line number
// select a range, searches the log (in the page, then on the server for a log shown in part),
// loads earlier and later parts in place, hides or shows time stamps, and follows a running log
// until the reader scrolls up.
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
  // The page's URL with `?lines=` around `line`, keeping its other parameters.
  function windowAround(line, hash) {
    var params = new URLSearchParams(location.search);
    params.delete("find");
    params.set("lines", Math.max(1, line - 2000) + "-" + (line + 2000));
    return location.pathname + "?" + params.toString() + hash;
  }
  function partial() {
    return !!document.querySelector("a.load-earlier, a.load-later");
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
    if (!found.length && partial() && document.readyState === "complete") {
      // The line is in a part not shown: show the part around it.
      location.replace(windowAround(from, location.hash));
      return;
    }
    for (var j = 0; j < found.length; j++) { found[j].classList.add("hl"); reveal(found[j]); }
    if (found.length) found[0].scrollIntoView({ block: "center" });
  }
  function jumpToFailure(event) {
    var line = document.querySelector(".line.error-line");
    if (!line) return;
    event.preventDefault();
    history.replaceState(null, "", "#" + line.id);
    highlight();
  }
  // Loads the part a `Show earlier/later lines` link points to into the page.
  function loadPart(link) {
    var earlier = link.classList.contains("load-earlier");
    link.setAttribute("aria-busy", "true");
    fetch(link.href, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var page = new DOMParser().parseFromString(html, "text/html");
        var text = page.querySelector("div.log-text");
        var here = document.querySelector("div.log-text");
        if (!text || !here) return;
        var selector = earlier ? "nav.log-earlier" : "nav.log-later";
        var nav = document.querySelector(selector);
        var next = page.querySelector(selector);
        var height = document.documentElement.scrollHeight;
        var nodes = Array.prototype.slice.call(text.childNodes).filter(function (node) {
          // A part's own end markers stay out.
          return !(node.id === "failure" || (node.classList && node.classList.contains("failure-link")));
        });
        var first = here.firstChild;
        for (var i = 0; i < nodes.length; i++) {
          var node = document.importNode(nodes[i], true);
          if (earlier) here.insertBefore(node, first); else here.appendChild(node);
        }
        if (earlier) window.scrollBy(0, document.documentElement.scrollHeight - height);
        if (next) nav.replaceWith(document.importNode(next, true)); else nav.remove();
        bindParts();
        highlight();
      })
      .catch(function () { link.removeAttribute("aria-busy"); });
  }
  function bindParts() {
    var links = document.querySelectorAll("a.load-earlier, a.load-later");
    for (var i = 0; i < links.length; i++) {
      links[i].onclick = function (event) { event.preventDefault(); loadPart(this); };
    }
  }
  // Copies each section's duration into its heading.
  function sectionTimes() {
    var took = document.querySelectorAll("details.section > p.section-took:not(.shown)");
    for (var i = 0; i < took.length; i++) {
      var summary = took[i].parentNode.querySelector("summary .lt");
      if (summary) {
        var label = document.createElement("span");
        label.className = "section-duration";
        label.textContent = " (" + took[i].textContent + ")";
        summary.appendChild(label);
      }
      took[i].classList.add("shown");
    }
  }

  // Time stamps: shown unless the reader hid them (remembered by the browser).
  function stamps(show) {
    document.documentElement.classList.toggle("hide-ts", !show);
    var button = document.getElementById("toggle-ts");
    if (button) button.setAttribute("aria-pressed", show ? "true" : "false");
    try { localStorage.setItem("datakit-ci-ts", show ? "1" : "0"); } catch (error) { /* private mode */ }
  }
  var shown = true;
  try { shown = localStorage.getItem("datakit-ci-ts") !== "0"; } catch (error) { /* private mode */ }
  stamps(shown);

  // Follow mode: a running log keeps its end in view until the reader scrolls up; scrolling
  // back to the end, or the Follow button, follows again.
  var following = true, ours = false;
  function atEnd() {
    var page = document.documentElement;
    return window.innerHeight + window.scrollY >= page.scrollHeight - 40;
  }
  function follow(on) {
    following = on;
    var button = document.getElementById("follow");
    if (button) button.setAttribute("aria-pressed", on ? "true" : "false");
    if (on) { ours = true; window.scrollTo(0, document.documentElement.scrollHeight); }
  }
  var lastScroll = 0;
  window.addEventListener("scroll", function () {
    if (ours) { ours = false; lastScroll = window.scrollY; return; }
    if (!document.getElementById("follow")) return;
    if (window.scrollY < lastScroll && !atEnd()) follow(false);
    else if (atEnd()) follow(true);
    lastScroll = window.scrollY;
  });
  var followTimer = setInterval(function () {
    var tools = document.querySelector(".log-tools");
    if (tools) tools.hidden = false;
    if (!document.getElementById("follow")) return;
    sectionTimes();
    if (following && !location.hash && !atEnd()) follow(true);
  }, 200);

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target.closest && target.closest("a.jump-to-failure")) { jumpToFailure(event); return; }
    if (target.id === "toggle-ts") { stamps(document.documentElement.classList.contains("hide-ts")); return; }
    if (target.id === "follow") { follow(!following); return; }
    var link = target.closest && target.closest("a.ln");
    if (!link || !event.shiftKey || anchor === null) return;
    event.preventDefault();
    var n = +link.getAttribute("data-line");
    var from = Math.min(anchor, n), to = Math.max(anchor, n);
    history.replaceState(null, "", "#L" + from + "-L" + to);
    highlight();
    anchor = from;
  });
  window.addEventListener("hashchange", highlight);
  // Until the page is complete (a live log streams), the end markers may not be there yet.
  window.addEventListener("load", function () {
    clearInterval(followTimer);
    sectionTimes();
    highlight();
  });
  document.addEventListener("DOMContentLoaded", function () {
    highlight();
    sectionTimes();
    bindParts();
    var tools = document.querySelector(".log-tools");
    if (tools) tools.hidden = false;
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
    // A log shown in part: ask the server which lines match, and show the first.
    function searchServer() {
      var params = new URLSearchParams(location.search);
      params.set("find", input.value);
      count.textContent = "searching the whole log…";
      fetch(location.pathname + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (found) {
          if (!found || !found.lines.length) { count.textContent = "0 lines"; return; }
          var line = found.lines[0];
          location.assign(windowAround(line, "#L" + line));
        })
        .catch(function () { count.textContent = "search failed"; });
    }
    function next() {
      if (!matches.length) {
        if (input.value && partial()) searchServer();
        return;
      }
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
