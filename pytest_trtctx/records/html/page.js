// pytest-trtctx's HTML page: draws the grids from the inline data, filters them, and opens a
// cell's record. No request leaves the page: everything it shows is in the data below it.
(function () {
  "use strict";
  // The data is the report's JSON, gzip-compressed in base64: unpacked by the browser itself.
  function unpack(text) {
    var raw = atob(text.trim()), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }
  if (typeof DecompressionStream === "undefined") {
    document.getElementById("head").innerHTML = '<p class="banner">This browser cannot unpack ' +
      "the page's data (it has no DecompressionStream): open the page in a current browser.</p>";
    return;
  }
  var begun = performance.now();
  unpack(document.getElementById("trtctx-data").textContent).then(function (data) {
    document.body.setAttribute("data-unpacked", (performance.now() - begun).toFixed(1));
    draw(data);
  }).catch(function (e) {  // unreadable data, or a record the page cannot draw: say so
    document.getElementById("head").innerHTML = '<p class="banner">The page\'s data cannot be ' +
      "read: " + String(e) + "</p>";
  });
  function draw(data) {
    var tests = data.tests, strings = data.strings, states = data.states;
    var diff = data.diff, marks = diff ? diff.marks : {};
    var ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
    function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }
    function str(i) { return strings[i]; }
    function $(id) { return document.getElementById(id); }

    // ---- header: the run, its environment, and for a diff what changed first
    function table(rows) {
      return '<table class="env">' + rows.map(function (r) {
        return "<tr><th>" + esc(r[0]) + "</th><td>" + esc(r[1]) + "</td></tr>";
      }).join("") + "</table>";
    }
    function changes(title, rows) {  // a diff's header fields that changed: key, old -> new
      if (!rows.length) return "";
      return "<h2>" + title + " (" + rows.length + ")</h2>" +
        table(rows.map(function (e) { return [e[0], e[1] + " \u2192 " + e[2]]; }));
    }
    function totals() {
      var n = {};
      Object.keys(states).forEach(function (s) { n[s] = 0; });
      data.grids.forEach(function (g) { Object.keys(g.counts).forEach(function (s) { n[s] += g.counts[s]; }); });
      return n;
    }
    function drawHead() {
      var h = "<h1>" + esc(data.title) + "</h1>";
      if (diff) {
        h += '<p>base <code>' + esc(diff.base) + '</code> &rarr; new <code>' + esc(diff.new) +
          '</code>: <span class="verdict' + (diff.verdict === "no regression" ? "" : " bad") +
          '" id="verdict">' + esc(diff.verdict) + "</span></p>";
        diff.incomplete.forEach(function (w) { h += '<p class="banner">incomplete run: ' + esc(w) + "</p>"; });
      } else {
        h += "<p>from <code>" + esc(data.source) + "</code></p>";
        if (data.incomplete) h += '<p class="banner" id="incomplete">incomplete run: ' + esc(data.incomplete) + "</p>";
      }
      h += table(data.header);
      if (diff) h += drawChanges();
      $("head").innerHTML = h;
    }
    function drawChanges() {
      var byKind = {}, h = "";
      Object.keys(marks).forEach(function (i) {
        marks[i].forEach(function (m) { (byKind[m[0]] = byKind[m[0]] || []).push([+i, m[1], m[2]]); });
      });
      h += '<h2>Changes</h2><ul class="changes" id="changes">';
      var any = false;
      Object.keys(diff.labels).forEach(function (kind) {
        var rows = byKind[kind];
        if (!rows) return;
        any = true;
        var groups = {}, order = [];
        rows.forEach(function (r) {
          if (!groups[r[1]]) { groups[r[1]] = []; order.push(r[1]); }
          groups[r[1]].push(r[0]);
        });
        order.sort(function (a, b) { return groups[b].length - groups[a].length; });
        h += '<li data-kind="' + kind + '"><details' + (order.length <= 12 ? " open" : "") +
          '><summary><span class="sw mark-' + kind + '"></span><b>' + esc(diff.labels[kind]) +
          "</b> (" + rows.length + ")" + (rows.some(function (r) { return r[2]; }) ? " <b>regression</b>" : "") +
          "</summary><ul>";
        order.slice(0, 20).forEach(function (text) {
          var ids = groups[text];
          h += "<li>" + ids.length + " \u00d7 " + esc(text) + ": " + ids.slice(0, 5).map(function (i) {
            return '<a data-open="' + i + '">' + esc(tests[i].n.split("::").pop()) + "</a>";
          }).join(", ") + (ids.length > 5 ? " and " + (ids.length - 5) + " more (marked below)" : "") + "</li>";
        });
        if (order.length > 20) h += "<li>... and " + (order.length - 20) + " more kinds of change (marked below)</li>";
        h += "</ul></details></li>";
      });
      if (!any) h += "<li>no cell changed</li>";
      h += "</ul>";
      return h + changes("Environment changes", diff.environment) +
        changes("Settings changes", diff.settings);
    }

    // ---- filters: scenario, state (the legend), text, changed cells only
    var filter = { scenario: "", text: "", changed: false, states: {} };
    function drawFilters() {
      var n = totals(), scen = {};
      tests.forEach(function (t) { scen[t.sc] = 1; });
      var h = '<label>scenario <select id="f-scenario"><option value="">all</option>' +
        Object.keys(scen).sort().map(function (s) { return '<option value="' + esc(s) + '">' + esc(s) + "</option>"; }).join("") +
        "</select></label>";
      Object.keys(states).forEach(function (s) {
        filter.states[s] = true;
        h += '<label><input type="checkbox" class="f-state" value="' + s + '" checked><span class="sw st-' + s +
          '"></span>' + esc(states[s]) + ' <span class="count" data-state="' + s + '">' + n[s] + "</span></label>";
      });
      if (diff) {
        h += '<label><input type="checkbox" id="f-changed"> changed cells only</label>' +
          '<span class="muted" id="mark-legend">changed: outlined cell; black dot: a regression; ' +
          "white dot: another change; hatched: a test the new report lacks</span>";
      }
      h += '<input type="search" id="f-text" placeholder="filter: test id, signature, message">';
      h += '<span class="muted" id="shown"></span>';
      $("filters").innerHTML = h;
      $("f-scenario").onchange = function () { filter.scenario = this.value; apply(); };
      $("f-text").oninput = function () { filter.text = this.value.toLowerCase(); apply(); };
      if (diff) $("f-changed").onchange = function () { filter.changed = this.checked; apply(); };
      Array.prototype.forEach.call(document.querySelectorAll(".f-state"), function (box) {
        box.onchange = function () { filter.states[this.value] = this.checked; apply(); };
      });
    }

    // ---- the grids
    function headRows(g) {
      var levels = g.columns.length ? g.columns[0].groups.length : 0, h = "";
      for (var level = 0; level < levels; level++) {
        h += '<tr><th colspan="2"></th>';
        var i = 0;
        while (i < g.columns.length) {
          var j = i + 1, key = g.columns[i].groups.slice(0, level + 1).join("\u0000");
          while (j < g.columns.length && g.columns[j].groups.slice(0, level + 1).join("\u0000") === key) j++;
          h += '<th colspan="' + (j - i) + '"' + (j - i < 3 ? ' class="v"' : "") + ' title="' + esc(g.columns[i].groups[level]) + '">' +
            esc(g.columns[i].groups[level]) + "</th>";
          i = j;
        }
        h += "</tr>";
      }
      return h;
    }
    function cell(i) {
      if (i < 0) return '<td class="e"></td>';
      var m = marks[i], cls = "c st-" + tests[i].s;
      if (m) cls += " mk mk-" + m[0][0];
      return '<td class="' + cls + '" data-i="' + i + '" title="' + esc(tests[i].n + "\n" + states[tests[i].s]) + '"></td>';
    }
    function drawGrids() {
      var h = "";
      data.grids.forEach(function (g, k) {
        var c = Object.keys(g.counts).filter(function (s) { return g.counts[s]; })
          .map(function (s) { return g.counts[s] + " " + states[s]; }).join(", ");
        h += '<section class="grid-box" data-grid="' + k + '"><h2>' + esc(g.title) +
          ' <span class="muted">(' + esc(c) + ")</span></h2>" +
          '<div class="scroll"><table class="grid" data-kind="' + g.kind + '"><thead>' + headRows(g) +
          "</thead><tbody>";
        g.rows.forEach(function (r, n) {
          var first = n === 0 || g.rows[n - 1].scenario !== r.scenario, span = 1;
          while (first && n + span < g.rows.length && g.rows[n + span].scenario === r.scenario) span++;
          h += '<tr data-scenario="' + esc(r.scenario) + '">' +
            (first ? '<th class="sc" rowspan="' + span + '">' + esc(r.scenario) + "</th>" : "") +
            "<th>" + esc(r.label) + "</th>" + r.cells.map(cell).join("") + "</tr>";
        });
        h += "</tbody></table></div></section>";
      });
      if (!data.grids.length) h = "<p>The report holds no test.</p>";
      $("grids").innerHTML = h;
    }

    // ---- filtering: a cell that does not match is dimmed, a row with none left is hidden
    var cells = null, rows = null, hay = [];
    function haystack(i) {
      if (hay[i] === undefined) {
        var t = tests[i], parts = [t.n, t.sc, t.b || "", t.sp || "", states[t.s]];
        if (t.sig !== undefined) parts.push(str(t.sig));
        t.m.forEach(function (m) { parts.push(str(m)); });
        (t.c || []).forEach(function (c) { parts.push(c); });
        if (t.dg) parts.push(t.dg);
        if (t.t && t.t.mm) t.t.mm.forEach(function (m) { parts.push(m); });
        (marks[i] || []).forEach(function (m) { parts.push(diff.labels[m[0]], m[1]); });
        hay[i] = parts.join("\n").toLowerCase();
      }
      return hay[i];
    }
    function apply() {
      if (!cells) {
        cells = Array.prototype.slice.call(document.querySelectorAll("td.c"));
        rows = Array.prototype.slice.call(document.querySelectorAll("table.grid tbody tr"));
      }
      var shown = 0, f = filter;
      cells.forEach(function (td) {
        var i = +td.getAttribute("data-i"), t = tests[i];
        var on = f.states[t.s] && (!f.scenario || t.sc === f.scenario) && (!f.changed || marks[i] !== undefined) &&
          (!f.text || haystack(i).indexOf(f.text) >= 0);
        if (on) shown++;
        if (td.classList.contains("off") === on) td.classList.toggle("off", !on);
      });
      rows.forEach(function (tr) {
        tr.classList.toggle("hid", !tr.querySelector("td.c:not(.off)"));
      });
      $("shown").textContent = shown + " of " + cells.length + " cells shown";
    }

    // ---- a cell's record
    function section(title, body) { return body ? "<h3>" + esc(title) + "</h3>" + body : ""; }
    function pre(lines) { return lines && lines.length ? "<pre>" + esc(lines.join("\n")) + "</pre>" : ""; }
    function open(i) {
      var t = tests[i], h = '<button class="close" id="panel-close">close</button>';
      h += '<h2 class="name"><span class="sw st-' + t.s + '"></span><code>' + esc(t.n) + "</code></h2>";
      var facts = [["state", states[t.s]], ["outcome", String(t.o)], ["scenario", t.sc], ["backend", String(t.b)]];
      if (t.sp) facts.push(["spec", t.sp]);
      if (t.a !== undefined) facts.push(["order applied", String(t.a)]);
      if (t.f !== undefined) facts.push(["met the order fresh", String(t.f)]);
      if (t.r) facts.push(["reruns", String(t.r)]);
      h += table(facts);
      if (marks[i]) {
        h += section("What changed", '<ul class="marks">' + marks[i].map(function (m) {
          return "<li><b>" + esc(diff.labels[m[0]]) + "</b>" + (m[2] ? " (regression)" : "") + ": " + esc(m[1]) + "</li>";
        }).join("") + "</ul>" + (t.was ? "<p>was: " + esc(String(t.was.o)) + "</p>" : ""));
      }
      if (t.sig !== undefined) h += section("Failure signature", pre([str(t.sig)]));
      if (t.k) h += section("Known failure", table([["status", t.k[0]], ["declared signature", str(t.k[1])]]));
      h += section("Checks", pre(t.c));
      var failing = t.s === "failed" || t.s === "known" || t.s === "gone";
      if (failing || t.dg) {
        h += section("trtctx contexts", t.dg ? '<pre class="diagnosis">' + esc(t.dg) + "</pre>" :
          '<p class="diagnosis muted">' + esc(data.noDiagnosis) + "</p>");
      }
      if (t.t) {
        h += section("trtctx trace", t.t.on ?
          (t.t.mm.length ? '<pre class="trace">' + esc(t.t.mm.join("\n\n")) + "</pre>" :
            "<p>traced: no launch ran in another context than its module's</p>") :
          "<p>tracer off: " + esc(t.t.why) + "</p>");
      }
      h += section("Messages", pre(t.m.map(str)));
      var hashes = Object.keys(t.h).sort();
      h += section("Output SHA-256", hashes.length ? table(hashes.map(function (k) {
        var was = t.was && t.was.h[k] !== undefined && t.was.h[k] !== t.h[k] ? " (was " + t.was.h[k] + ")" : "";
        return [k, t.h[k] + was];
      })) : "");
      var d = t.d, total = 0, parts = Object.keys(d).map(function (k) { total += d[k]; return [k, d[k].toFixed(4) + " s"]; });
      if (parts.length) parts.push(["total", total.toFixed(4) + " s"]);
      h += section("Duration", parts.length ? table(parts) : "");
      var panel = $("panel");
      panel.innerHTML = h;
      panel.hidden = false;
      panel.setAttribute("data-i", i);
      $("panel-close").onclick = close;
      var prev = document.querySelector("td.sel");
      if (prev) prev.classList.remove("sel");
      var td = document.querySelector('td[data-i="' + i + '"]');
      if (td) td.classList.add("sel");
    }
    function close() { $("panel").hidden = true; }

    drawHead();
    drawFilters();
    drawGrids();
    apply();
    document.body.addEventListener("click", function (e) {
      var target = e.target.closest("td.c:not(.off), a[data-open]");
      if (!target) return;
      open(+(target.getAttribute("data-i") || target.getAttribute("data-open")));
    });
    document.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
    // When the grids were drawn, and when they were first painted (the page's own clock, ms).
    document.body.setAttribute("data-ready", performance.now().toFixed(1));
    requestAnimationFrame(function () {
      setTimeout(function () { document.body.setAttribute("data-painted", performance.now().toFixed(1)); }, 0);
    });
  }
})();
