(function () {
  // The book's HCP explorer (hcp_lib.stages.explore.static_hcp_browser): no library, no network.
  var root = document.currentScript.previousElementSibling;
  if (!root || root.dataset.ready) return;
  root.dataset.ready = "1";
  var LIMIT = 200, MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function pct(p) { return Math.round(100 * p) + "%"; }
  function unpack(text) {
    var bytes = Uint8Array.from(atob(text.trim()), function (c) { return c.charCodeAt(0); });
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).json();
  }
  unpack(root.querySelector(".payload").textContent).then(function (b) { start(b); }).catch(function (e) {
    root.querySelector(".view").innerHTML =
      "<div class='hcpx-message'>This browser cannot open the explorer's data (" + esc(e) + ").</div>";
  });

  function start(b) {
    var m = b.meta, q = root.querySelector(".q"), fSpec = root.querySelector(".f-spec"),
      fState = root.querySelector(".f-state"), pick = root.querySelector(".f-hcp"),
      hint = root.querySelector(".hint"), view = root.querySelector(".view");
    var DAY = 86400000, t0 = Date.parse(m.start), cut = (Date.parse(m.cutoff) - t0) / DAY,
      end = (Date.parse(m.test_end) - t0) / DAY;
    b.specialties.forEach(function (s, i) { fSpec.add(new Option(s, String(i))); });
    Array.from(new Set(b.hcps.map(function (h) { return h[3]; }))).sort().forEach(function (s) {
      fState.add(new Option(s, s));
    });
    var text = b.hcps.map(function (h) {
      return (h[0] + " " + h[1] + " " + h[4] + " " + b.specialties[h[2]]).toLowerCase();
    });
    function label(h) {
      return h[1] + " · " + b.specialties[h[2]] + " · " + h[4] + ", " + h[3] + " · " + h[0] +
        (h[12] ? " · opted out" : "");
    }
    function item(i) { return b.items[i]; }
    function title(i, limit) {
      var it = item(i), t = it[1], shown = t.length > limit ? t.slice(0, limit - 1).trim() + "…" : t;
      return "<span title='" + esc(t + " (" + it[0] + ")") + "'>" + esc(shown) + "</span><br><small>" +
        esc(it[0]) + " · " + esc(it[2]) + "</small>";
    }
    function score(p) { return m.probability ? pct(p) : p.toPrecision(3) + " (score, not a probability)"; }
    function why(list) {
      return "<ul class='why'>" + list.map(function (s) { return "<li>" + esc(b.sentences[s]) + "</li>"; }).join("") +
        "</ul>";
    }
    function date(day) { return new Date(t0 + day * DAY).toISOString().slice(0, 10); }
    function timeline(touches) {
      if (!touches.length) return "<p>No touches recorded.</p>";
      var W = 640, left = 150, width = W - left - 10, row = 18, pad = 6, H = pad + row * b.channels.length + 22,
        axis = H - 20;
      function x(day) { return left + width * day / end; }
      var s = ["<svg class='timeline' viewBox='0 0 " + W + " " + H + "' width='100%' style='max-width:" + W +
        "px' role='img' aria-label='touches by date and channel'>",
        "<rect x='" + x(cut).toFixed(1) + "' y='0' width='" + (x(end) - x(cut)).toFixed(1) + "' height='" +
        (H - 20) + "' fill='#eef3f8'/>",
        "<text x='" + (x(cut) + 3).toFixed(1) + "' y='" + (H - 24) + "' font-size='9' fill='#555'>test window</text>"];
      b.channels.forEach(function (c, i) {
        var y = pad + row * i + row / 2;
        s.push("<text x='" + (left - 6) + "' y='" + (y + 3).toFixed(1) + "' font-size='10' text-anchor='end'>" +
          esc(c) + "</text><line x1='" + left + "' x2='" + (left + width) + "' y1='" + y.toFixed(1) + "' y2='" +
          y.toFixed(1) + "' stroke='#e3e3e3'/>");
      });
      s.push("<line x1='" + left + "' x2='" + (left + width) + "' y1='" + axis + "' y2='" + axis + "' stroke='#888'/>");
      var d = new Date(t0), month = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
      for (; (month - t0) / DAY <= end; month = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1))) {
        var md = (month - t0) / DAY;
        if (md < 0) continue;
        s.push("<line x1='" + x(md).toFixed(1) + "' x2='" + x(md).toFixed(1) + "' y1='" + axis + "' y2='" +
          (axis + 4) + "' stroke='#888'/><text x='" + x(md).toFixed(1) + "' y='" + (axis + 14) +
          "' font-size='9' text-anchor='middle'>" + MONTHS[month.getUTCMonth()] + " " +
          String(month.getUTCFullYear()).slice(2) + "</text>");
      }
      touches.forEach(function (t) {
        var y = pad + row * t[2] + row / 2, style = t[3] ? "fill='#f58518' stroke='#f58518'" : "fill='white' stroke='#888'";
        s.push("<circle cx='" + x(t[0]).toFixed(1) + "' cy='" + y.toFixed(1) + "' r='4' " + style + "><title>" +
          esc(date(t[0]) + " · " + b.channels[t[2]] + " · " + (t[3] ? "engaged" : "not engaged") + " · " +
          item(t[1])[1]) + "</title></circle>");
      });
      return s.join("") + "</svg>";
    }
    function render(k) {
      var h = b.hcps[k], recs = b.recs[k], week = b.week[k], plan = b.plan[k], touches = b.touches[k];
      var out = ["<p><b>" + esc(h[1]) + "</b> · synthetic id " + esc(h[0]) + " · " + esc(b.specialties[h[2]]) + " · " +
        esc(h[4]) + ", " + esc(h[3]) + " (" + esc(h[5]) + ") · " + esc(h[6]) + " practice, " + h[7] + " years · age " +
        h[8] + " · digital affinity " + h[9].toFixed(2) + " · peer group " + esc(h[10]) + " · " + esc(h[11]) +
        (h[12] ? " · <b>opted out of promotional contact</b>" : "") + "</p>"];
      out.push("<h4>This week (" + m.cutoff + " to " + date(cut + 6) + ")</h4><ul class='story'>" +
        b.story[k].map(function (s) { return "<li>" + esc(s) + "</li>"; }).join("") + "</ul>");
      if (week.length) {
        out.push("<table class='week-options'><tr><th>channel</th><th>best item this week</th><th>" +
          (m.probability ? "P(engage), model" : "score") + "</th></tr>" + week.map(function (w) {
            return "<tr><td>" + esc(b.channels[w[0]]) + "</td><td>" + title(w[1], 110) + "</td><td>" + score(w[2]) +
              "</td></tr>";
          }).join("") + "</table>");
      }
      if (plan.length) {
        out.push("<table class='plan-actions' data-hcp='" + esc(h[0]) + "'><tr><th>day</th><th>channel</th>" +
          "<th>planned content and why</th></tr>" + plan.map(function (a) {
            return "<tr><td>" + esc(a[0]) + "<br><small>" + esc(a[1]) + "</small></td><td>" + esc(b.channels[a[2]]) +
              "</td><td>" + title(a[3], 110) + why(a[5]) + "</td></tr>";
          }).join("") + "</table>");
      }
      out.push("<h4>Recommended next, any channel (" + esc(m.model) + ", made at " + m.cutoff + ")</h4>");
      if (!recs.length) {
        out.push("<div class='hcpx-message'>No recommendation of " + esc(m.model) + " for this HCP.</div>");
      } else {
        var truth = recs[0][3] !== null, unit = m.probability ? "P(engage), model" : "score";
        out.push("<table class='hcp-recommendations' data-hcp='" + esc(h[0]) + "'><tr><th>#</th><th>content and why" +
          "</th><th>best channel, any week (" + unit + ")</th>" +
          (m.has_week ? "<th>best channel open this week (" + unit + ")</th>" : "") +
          (truth ? "<th>P(engage), simulator's truth</th>" : "") + "</tr>" + recs.map(function (r, i) {
            var open = !m.has_week ? "" : r[5] === null ? "<td class='off'>not an option</td>" :
              "<td>" + esc(b.channels[r[5][0]]) + ", " + score(r[5][1]) + "</td>";
            return "<tr><td>" + (i + 1) + "</td><td>" + title(r[0], 110) + why(r[4]) + "</td><td>" +
              esc(b.channels[r[1]]) + ", " + score(r[2]) + "</td>" + open +
              (truth ? "<td>" + pct(r[3]) + "</td>" : "") + "</tr>";
          }).join("") + "</table>");
      }
      var listed = new Set(recs.map(function (r) { return r[0]; })),
        after = touches.filter(function (t) { return t[0] >= cut && t[0] < end; });
      out.push("<h4>What the HCP did next (test window " + m.cutoff + " to " + m.test_end + ")</h4>");
      if (!after.length) {
        out.push("<p>No touches in the test window.</p>");
      } else {
        var engaged = after.filter(function (t) { return t[3]; });
        out.push("<p>" + after.length + " touches, " + engaged.length + " engaged; " +
          engaged.filter(function (t) { return listed.has(t[1]); }).length +
          " of the engaged items are in the list above.</p><table><tr><th>exposed_at</th><th>title</th>" +
          "<th>channel</th><th>engaged</th><th>in_list</th></tr>" + after.map(function (t) {
            return "<tr><td>" + date(t[0]) + "</td><td>" + esc(item(t[1])[1]) + "</td><td>" + esc(b.channels[t[2]]) +
              "</td><td>" + (t[3] ? "yes" : "no") + "</td><td>" + (listed.has(t[1]) ? "yes" : "") + "</td></tr>";
          }).join("") + "</table>");
      }
      out.push("<h4>Engagement timeline</h4>" + timeline(touches));
      view.innerHTML = out.join("");
    }
    function filter() {
      var words = q.value.toLowerCase().split(/\s+/).filter(Boolean), spec = fSpec.value, state = fState.value,
        found = [];
      b.hcps.forEach(function (h, k) {
        if (spec !== "" && String(h[2]) !== spec) return;
        if (state !== "" && h[3] !== state) return;
        if (words.every(function (w) { return text[k].indexOf(w) >= 0; })) found.push(k);
      });
      pick.innerHTML = "";
      found.slice(0, LIMIT).forEach(function (k) { pick.add(new Option(label(b.hcps[k]), String(k))); });
      hint.textContent = (found.length > LIMIT ? LIMIT + " of " : "") + found.length.toLocaleString("en") +
        (found.length === 1 ? " matching HCP" : " matching HCPs") + " listed (of " +
        b.hcps.length.toLocaleString("en") + " in this explorer" +
        (b.hcps.length < m.n_run ? ", a sample of the run's " + m.n_run.toLocaleString("en") : "") + ")" +
        (found.length > LIMIT ? "; type to narrow the list" : "");
      if (found.length) {
        pick.selectedIndex = 0;
        render(found[0]);
      } else {
        view.innerHTML = "<div class='hcpx-message'>No HCP matches the search and filters.</div>";
      }
    }
    q.addEventListener("input", filter);
    fSpec.addEventListener("change", filter);
    fState.addEventListener("change", filter);
    pick.addEventListener("change", function () { if (pick.value !== "") render(Number(pick.value)); });
    filter();
  }
})();
