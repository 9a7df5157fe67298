"use strict";
// Live pages (issue 21 item 2), inlined into the dashboard, the lists and target pages and
// allowed by its hash in their Content-Security-Policy. It follows the engine's status changes
// (`/api/v1/events`, server-sent events); when one concerns the page it fetches the page again
// and swaps the `#live` region in place. Without JavaScript the pages are the same, only static.
//
// The region's attributes say what concerns it: `data-live-target` (only that target's changes;
// none: any change), `data-live-gap` (at least this many milliseconds between two fetches, for
// pages listing many targets) and `data-live-poll` (fetch every so many seconds even without a
// change, while something runs: elapsed times and queue places change without a status).
(function () {
  var region = document.getElementById("live");
  if (!region || !window.EventSource || !window.fetch || !window.DOMParser) return;
  var target = region.getAttribute("data-live-target");
  var source = null, busy = false, wanted = false, timer = null, last = 0, version = 0;

  function number(name) {
    return +(region.getAttribute(name) || 0);
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
    if (!fresh) return;
    var focused = document.activeElement;
    var focusedId = focused && region.contains(focused) ? focused.id : "";
    // Sections the reader opened or closed stay so.
    var open = {};
    var sections = region.querySelectorAll("details[id]");
    for (var i = 0; i < sections.length; i++) open[sections[i].id] = sections[i].open;
    region.innerHTML = fresh.innerHTML;
    ["data-live-poll", "data-live-gap"].forEach(function (name) {
      region.setAttribute(name, fresh.getAttribute(name) || "0");
    });
    var again = region.querySelectorAll("details[id]");
    for (var j = 0; j < again.length; j++) {
      if (again[j].id in open) again[j].open = open[again[j].id];
    }
    if (focusedId) {
      var refocus = document.getElementById(focusedId);
      if (refocus) refocus.focus();
    }
    version += 1;
    region.setAttribute("data-live-version", version);
  }

  function refresh() {
    if (busy) { wanted = true; return; }
    var wait = last + number("data-live-gap") - Date.now();
    if (wait > 0) {
      if (!timer) timer = setTimeout(function () { timer = null; refresh(); }, wait);
      return;
    }
    busy = true;
    wanted = false;
    last = Date.now();
    fetch(location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html !== null) swap(html); })
      .catch(function () { /* the next change or poll tries again */ })
      .then(function () {
        busy = false;
        if (wanted) refresh();
      });
  }

  function connect() {
    var opened = false;
    source = new EventSource("/api/v1/events");
    source.addEventListener("open", function () {
      // After a reconnection, changes may have been missed.
      if (opened) refresh();
      opened = true;
    });
    source.addEventListener("status", function (event) {
      if (target) {
        var change;
        try { change = JSON.parse(event.data); } catch (error) { return; }
        if (change.target !== target) return;
      }
      refresh();
    });
    source.addEventListener("lagged", refresh);
  }

  function poll() {
    var seconds = number("data-live-poll");
    setTimeout(function () {
      if (seconds && !document.hidden) refresh();
      poll();
    }, (seconds || 5) * 1000);
  }

  // A hidden tab keeps no connection open (browsers allow few per site); it catches up when
  // shown again.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      if (source) { source.close(); source = null; }
    } else if (!source) {
      connect();
      refresh();
    }
  });
  if (!document.hidden) connect();
  poll();
})();
