// The group page: everything drawn from the JSON endpoints, for the days in the range form.
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("cfg").textContent);
  var t = cfg.t;
  var names = cfg.names;  // the chat texts' names for the ids in the JSON answers
  function metricName(id) { return names.metrics[id] || id; }
  function windowName(w) { return names.windows[w] || w; }
  function stepName(s) { return names.steps[s] || s; }
  var base = "/api/chats/" + cfg.chat_id;
  var dark = document.documentElement.dataset.theme === "dark";
  var charts = {};
  var css = getComputedStyle(document.documentElement);
  var textColor = css.getPropertyValue("--text").trim() || (dark ? "#eee" : "#222");

  function chart(id) {
    if (!charts[id]) {
      charts[id] = echarts.init(document.getElementById(id), dark ? "dark" : null,
                                {renderer: "svg"});
    }
    return charts[id];
  }
  function pct(rate) { return rate === null || rate === undefined ? "–" : Math.round(rate * 1000) / 10 + "%"; }
  function get(path) {
    return fetch(path, {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) { throw new Error(path + ": " + r.status); }
      return r.json();
    });
  }
  function addDays(iso, n) {
    var d = new Date(iso + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }
  function el(tag, text) { var e = document.createElement(tag); e.textContent = text; return e; }
  function table(id, head, rows) {
    var tb = document.getElementById(id);
    tb.textContent = "";
    var tr = document.createElement("tr");
    head.forEach(function (h) { tr.appendChild(el("th", h)); });
    tb.appendChild(tr);
    if (!rows.length) { var r = document.createElement("tr"); var td = el("td", t.none); td.colSpan = head.length; r.appendChild(td); tb.appendChild(r); }
    rows.forEach(function (row) {
      var r = document.createElement("tr");
      row.forEach(function (c) { r.appendChild(el("td", c === null ? "–" : String(c))); });
      tb.appendChild(r);
    });
  }
  var common = {backgroundColor: "transparent", animation: false,
                textStyle: {color: textColor}};

  // a heat-map cell's label: the rate; "…" while nothing has matured yet; "*" when part is pending
  function cellLabel(c) {
    if (c.rate === null) { return c.pending > 0 ? "…" : ""; }
    return Math.round(c.rate * 100) + "%" + (c.pending > 0 ? "*" : "");
  }
  window.opsbotCellLabel = cellLabel;

  // the change against the day before in percentage points, as in the chat: ↓2.8 pp
  function ppChange(value, prev) {
    if (value === null || prev === null || prev === undefined) { return "–"; }
    var d = Math.round((value - prev) * 1000) / 10;
    return (d > 0 ? "↑" : d < 0 ? "↓" : "→") + names.pp.replace("{n}", Math.abs(d).toFixed(1));
  }
  window.opsbotPpChange = ppChange;

  function drawKpis(report, before) {
    document.getElementById("report-day").textContent = t.report_day + " " + report.date;
    var box = document.getElementById("kpis");
    box.textContent = "";
    var prev = {};
    (before ? before.targets : []).forEach(function (x) { prev[x.metric] = x.value; });
    report.targets.forEach(function (x) {
      var card = document.createElement("div");
      card.className = "card kpi";
      card.appendChild(el("div", metricName(x.metric))).className = "metric";
      card.appendChild(el("div", pct(x.value))).className = "value";
      // the mark is drawn by CSS: many desktops have no emoji font for ✅/❌
      var status = el("div", x.met === null ? t.no_value : (x.met ? t.met : t.missed));
      status.className = x.met === null ? "status" : x.met ? "status met" : "status missed";
      if (x.met !== null) {
        var mark = status.insertBefore(document.createElement("span"), status.firstChild);
        mark.className = "mark";
        mark.setAttribute("aria-hidden", "true");
      }
      card.appendChild(status);
      card.appendChild(el("div", "→ " + pct(x.target) + " · " + x.range)).className = "change";
      card.appendChild(el("div", t.vs_before + " " + ppChange(x.value, prev[x.metric]))).className = "change";
      box.appendChild(card);
    });
    if (!report.targets.length) { box.appendChild(el("p", t.none)).className = "notice"; }
  }

  function drawCohorts(data) {
    var days = data.rows.map(function (r) { return r.day; });
    var cells = [], waiting = [];
    data.rows.forEach(function (r, y) {
      data.windows.forEach(function (w, x) {
        var c = r.cells[w];
        var item = {cell: c, joins: r.joins, label: {formatter: cellLabel(c)}};
        if (c.rate !== null) {
          item.value = [x, y, Math.round(c.rate * 1000) / 10];
          cells.push(item);
        } else if (c.pending > 0) {  // nothing matured yet: a grey cell marked pending
          item.value = [x, y, 0];
          waiting.push(item);
        }
      });
    });
    chart("cohorts").setOption(Object.assign({}, common, {
      tooltip: {formatter: function (p) {
        var c = p.data.cell;
        return days[p.data.value[1]] + " · " + windowName(data.windows[p.data.value[0]]) + "<br>" +
          t.retained + " " + c.retained + " / " + t.matured + " " + c.matured +
          (c.pending ? "<br>" + t.pending + " " + c.pending : "") + "<br>" + t.joins + " " + p.data.joins;
      }},
      grid: {left: 90, right: 10, top: 10, bottom: 60},
      xAxis: {type: "category", data: data.windows.map(windowName), splitArea: {show: true}},
      yAxis: {type: "category", data: days, inverse: true},
      visualMap: {min: 0, max: 100, calculable: false, orient: "horizontal", left: "center",
                  seriesIndex: 0,
                  bottom: 0, itemHeight: 120, textStyle: {color: textColor},
                  inRange: {color: ["#f4e2de", "#f1a66a", "#2f9e6e"]}},
      series: [{type: "heatmap", data: cells,
                label: {show: true, color: "#111"},
                itemStyle: {borderColor: dark ? "#17212b" : "#fff", borderWidth: 1}},
               {type: "heatmap", data: waiting, name: t.pending,
                label: {show: true, color: "#111"},
                itemStyle: {color: dark ? "#3b4654" : "#d9dde2",
                            borderColor: dark ? "#17212b" : "#fff", borderWidth: 1}}]
    }), true);
  }

  function drawTrends(cohorts, active, report) {
    var days = cohorts.rows.map(function (r) { return r.day; });
    var targets = {};
    report.targets.forEach(function (x) { targets[x.metric] = x.target; });
    var series = cohorts.windows.map(function (w) {
      return {id: "retention_" + w,
              data: cohorts.rows.map(function (r) { return r.cells[w].rate; })};
    });
    series.push({id: "response_rate", data: active.rows.map(function (r) { return r.response.rate; })});
    series.push({id: "interaction_rate", data: active.rows.map(function (r) { return r.interaction.rate; })});
    series.forEach(function (s) {
      s.name = metricName(s.id); s.type = "line"; s.connectNulls = false;
      if (targets[s.id] !== undefined) {  // labelled inside the grid, as in the chat's charts
        s.markLine = {symbol: "none", lineStyle: {type: "dashed"},
                      label: {position: "insideEndTop",
                              formatter: names.target.replace("{value}", pct(targets[s.id]))},
                      data: [{yAxis: targets[s.id]}]};
      }
    });
    chart("trends").setOption(Object.assign({}, common, {
      tooltip: {trigger: "axis", valueFormatter: pct},
      legend: {type: "scroll", textStyle: {color: textColor}},
      grid: {left: 50, right: 10, top: 40, bottom: 30},
      xAxis: {type: "category", data: days},
      yAxis: {type: "value", min: 0, max: 1, axisLabel: {formatter: function (v) { return Math.round(v * 100) + "%"; }}},
      series: series
    }), true);
  }

  function drawAudience(active) {
    var days = active.rows.map(function (r) { return r.day; });
    chart("audience").setOption(Object.assign({}, common, {
      tooltip: {trigger: "axis"},
      legend: {textStyle: {color: textColor}},
      grid: {left: 50, right: 50, top: 40, bottom: 30},
      xAxis: {type: "category", data: days},
      yAxis: [{type: "value"}, {type: "value", min: 0, max: 1,
               axisLabel: {formatter: function (v) { return Math.round(v * 100) + "%"; }}}],
      series: [
        {name: t.audience_n, type: "bar", data: active.rows.map(function (r) { return r.audience; })},
        {name: metricName("response_rate"), type: "line", yAxisIndex: 1, data: active.rows.map(function (r) { return r.response.rate; })},
        {name: metricName("interaction_rate"), type: "line", yAxisIndex: 1, data: active.rows.map(function (r) { return r.interaction.rate; })}
      ]
    }), true);
  }

  function drawInsights(ins) {
    var steps = ins.funnel.steps;
    chart("funnel").setOption(Object.assign({}, common, {
      tooltip: {formatter: function (p) { return p.name + ": " + p.value + " (" + pct(p.data.share) + ")"; }},
      series: [{type: "funnel", sort: "none", left: "5%", width: "90%", minSize: "30%",
                label: {position: "inside", color: "#111",
                        formatter: function (p) { return p.name + " " + p.value + " · " + pct(p.data.share); }},
                data: steps.map(function (s) {
                  return {name: stepName(s.step), value: s.users, share: s.share};
                })}]
    }), true);
    table("sources", [t.source, t.joins].concat(cfg.windows.map(windowName)).concat([t.activated]),
      ins.sources.map(function (s) {
        return [s.source, s.joins].concat(cfg.windows.map(function (w) {
          return s.retention[w] ? pct(s.retention[w].rate) : "–";
        })).concat([pct(s.activated.rate) + " (" + s.activated.users + "/" + s.activated.matured + ")"]);
      }));
    var cells = [];
    ins.hours.messages.forEach(function (row, d) {
      row.forEach(function (n, h) { cells.push([h, d, n]); });
    });
    var max = Math.max.apply(null, cells.map(function (c) { return c[2]; }).concat([1]));
    chart("hours").setOption(Object.assign({}, common, {
      tooltip: {},
      grid: {left: 50, right: 10, top: 10, bottom: 60},
      xAxis: {type: "category", data: Array.from({length: 24}, function (_, i) { return i; })},
      yAxis: {type: "category", data: t.weekdays.split(","), inverse: true},
      visualMap: {min: 0, max: max, orient: "horizontal", left: "center", bottom: 0,
                  textStyle: {color: textColor}},
      series: [{type: "heatmap", data: cells}]
    }), true);
    table("quiet", [t.name, "@", t.joined], ins.quiet.map(function (q) {
      return [q.name || q.user_id, q.username ? "@" + q.username : "", q.joined.replace("T", " ").replace("Z", " UTC")];
    }));
  }

  var loading = 0;  // the latest range asked for: answers for an older one are dropped

  function load(from, to) {
    var gen = ++loading;
    function latest(draw) {
      return function (x) { if (gen === loading) { draw(x); } };
    }
    var q = "?from=" + from + "&to=" + to;
    var day = to < cfg.today ? to : addDays(cfg.today, -1);
    document.getElementById("csv").href = base + "/export.csv" + q;
    document.body.dataset.loaded = "";
    // cohorts first: it loads the group's history, which the other requests then reuse
    // (fired together on a cold server, each would load it again); each part is drawn
    // as soon as its numbers arrive
    return get(base + "/cohorts" + q).then(function (cohorts) {
      latest(drawCohorts)(cohorts);
      var daily = Promise.all([
        get(base + "/active" + q),
        get(base + "/report?date=" + day), get(base + "/report?date=" + addDays(day, -1))
      ]).then(latest(function (r) {
        drawKpis(r[1], r[2]);
        drawTrends(cohorts, r[0], r[1]);
        drawAudience(r[0]);
      }));
      var growth = get(base + "/insights" + q).then(latest(drawInsights), function () { return null; });
      return Promise.all([daily, growth]);
    }).then(latest(function () {
      document.body.dataset.loaded = from + ".." + to;
    }));
  }

  document.getElementById("range").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var from = document.getElementById("from").value, to = document.getElementById("to").value;
    if (!from || !to || from > to) { return; }
    history.replaceState(null, "", "?from=" + from + "&to=" + to);
    load(from, to);
  });
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (k) { charts[k].resize(); });
  });
  load(document.getElementById("from").value, document.getElementById("to").value);
})();
