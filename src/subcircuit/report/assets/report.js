// subcircuit report: the interactive circuit (vanilla JS, bundled; nothing is fetched).
// Edges carry data-rank (0 = highest score); the slider shows ranks below its value.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var svg = document.getElementById("circuit-svg");
  if (!svg) { return; }
  var edges = Array.prototype.slice.call(svg.querySelectorAll("path.edge"));
  var nodes = Array.prototype.slice.call(svg.querySelectorAll("g.node"));
  var slider = document.getElementById("edge-slider");
  var count = document.getElementById("edge-count");
  var note = document.getElementById("edge-count-note");
  var tip = document.getElementById("tooltip");
  var panel = document.getElementById("node-panel");
  var selected = null;

  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  function fmt(x) {
    if (x === null || x === undefined) { return "n/a"; }
    var a = Math.abs(x);
    return (a !== 0 && (a < 1e-3 || a >= 1e4)) ? x.toExponential(3) : x.toPrecision(4).replace(/\.?0+$/, "");
  }

  function apply(n) {
    var used = {};
    edges.forEach(function (e) {
      var on = Number(e.getAttribute("data-rank")) < n;
      e.style.display = on ? "" : "none";
      if (on) { used[e.getAttribute("data-sender")] = 1; used[e.getAttribute("data-receiver")] = 1; }
    });
    nodes.forEach(function (g) {
      g.classList.toggle("faded", !used[g.getAttribute("data-node")]);
    });
    var text = n + " of " + data.n_circuit_edges + " circuit edges shown";
    if (data.n_circuit_edges > edges.length) { text += " (at most " + edges.length + " drawn)"; }
    count.textContent = text;
    if (note) { note.textContent = "top " + n + " of " + data.n_circuit_edges + " edges by score"; }
    svg.setAttribute("data-visible-edges", String(n));
    if (selected) { showNode(selected); }
  }

  function showNode(name) {
    selected = name;
    nodes.forEach(function (g) { g.classList.toggle("selected", g.getAttribute("data-node") === name); });
    var h = '<h3 style="margin:0 0 6px">' + esc(name) + "</h3>";
    var r = data.roles[name];
    if (r) {
      h += "<div>label: <b>" + esc(r.label || "none (no role reaches its cut-off)") + "</b></div>";
      h += '<table><tr><th>role</th><th class="num">score</th><th class="num">cut-off</th><th></th></tr>';
      data.role_names.forEach(function (role) {
        var s = r.scores[role], c = data.cutoffs[role];
        var pass = s !== null && s !== undefined && s >= c;
        var w = (s === null || s === undefined) ? 0 : Math.max(0, Math.min(1, s)) * 60;
        h += "<tr><td>" + role + '</td><td class="num' + (pass ? " pass" : "") + '">' + fmt(s) +
             '</td><td class="num">' + fmt(c) + '</td><td><span class="bar" style="width:' + w + 'px"></span></td></tr>';
      });
      h += "</table>";
    } else if (data.roles_note) {
      h += '<div class="muted">' + esc(data.roles_note) + "</div>";
    } else {
      h += '<div class="muted">no role scores for this node (roles are measured for attention heads)</div>';
    }
    var ins = [], outs = [];
    edges.forEach(function (e) {
      if (e.style.display === "none") { return; }
      var item = [e.getAttribute("data-edge"), Number(e.getAttribute("data-score"))];
      if (e.getAttribute("data-receiver") === name) { ins.push(item); }
      if (e.getAttribute("data-sender") === name) { outs.push(item); }
    });
    function list(title, xs) {
      if (!xs.length) { return ""; }
      xs.sort(function (a, b) { return b[1] - a[1]; });
      var s = "<div style='margin-top:8px'><b>" + title + "</b> (" + xs.length + ")</div><table>";
      xs.slice(0, 12).forEach(function (x) { s += "<tr><td>" + esc(x[0]) + '</td><td class="num">' + fmt(x[1]) + "</td></tr>"; });
      if (xs.length > 12) { s += "<tr><td class='muted'>… " + (xs.length - 12) + " more</td><td></td></tr>"; }
      return s + "</table>";
    }
    h += list("edges in", ins) + list("edges out", outs);
    panel.innerHTML = h;
  }

  edges.forEach(function (e) {
    e.addEventListener("mouseenter", function (ev) {
      e.classList.add("hover");
      tip.textContent = e.getAttribute("data-edge") + "   score " + fmt(Number(e.getAttribute("data-score"))) +
                        "   (rank " + (Number(e.getAttribute("data-rank")) + 1) + ")";
      tip.style.display = "block";
    });
    e.addEventListener("mousemove", function (ev) {
      tip.style.left = (ev.clientX + 12) + "px";
      tip.style.top = (ev.clientY + 12) + "px";
    });
    e.addEventListener("mouseleave", function () { e.classList.remove("hover"); tip.style.display = "none"; });
  });
  nodes.forEach(function (g) {
    g.addEventListener("click", function () { showNode(g.getAttribute("data-node")); });
  });
  if (slider) {
    slider.addEventListener("input", function () { apply(Number(slider.value)); });
    apply(Number(slider.value));
  }
})();
