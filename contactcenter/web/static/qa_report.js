/* The QA report's charts (质检报表), drawn by ECharts (static/echarts, Apache-2.0) from the figures the page
 * carries as JSON (#qa-report-data), every label already in Chinese.
 *
 * The page's Content-Security-Policy runs only scripts from this server and applies no inline style
 * attributes, so: no inline code, the SVG renderer, tooltips drawn inside the chart (renderMode "richText",
 * not HTML with style attributes), and no animation (the charts are complete as soon as they are drawn, on
 * screen and on paper). Counts get whole-number axis steps (minInterval 1); scores and rates run 0 to 100.
 */
(function () {
  "use strict";

  const source = document.getElementById("qa-report-data");
  if (!source || !window.echarts) {
    return;
  }
  const data = JSON.parse(source.textContent);
  const passScore = data.pass_score;
  const charts = [];
  const BLUE = "#1f4e79", LIGHT = "#9fb6cd", RED = "#c0392b", GREEN = "#2e7d32", GREY = "#b0b7c3";
  const tooltip = { trigger: "axis", renderMode: "richText", confine: true };
  const grid = { left: 56, right: 64, top: 48, bottom: 48, containLabel: true };
  const percentAxis = (name) => ({ type: "value", name: name, min: 0, max: 100, interval: 20 });
  const countAxis = (name) => ({ type: "value", name: name, min: 0, minInterval: 1 });
  // a second value axis on the right: its own labels, the first axis's grid lines
  const rightAxis = (axis) => Object.assign(axis, { splitLine: { show: false } });
  // an axis name under a horizontal axis rather than at its end, where it would meet the right axis's labels
  const below = (axis) => Object.assign(axis, { nameLocation: "middle", nameGap: 28 });
  const shortDay = (day) => day.slice(5); // 2026-11-02 -> 11-02
  const passLine = (axis) => ({
    silent: true,
    symbol: "none",
    lineStyle: { color: RED, type: "dashed", width: 1.5 },
    label: { formatter: "合格线 " + passScore + " 分", color: RED, position: axis === "x" ? "start" : "insideEndTop" },
    data: [axis === "x" ? { xAxis: passScore } : { yAxis: passScore }],
  });

  function draw(id, option, rows) {
    const dom = document.getElementById(id);
    if (!dom) {
      return;
    }
    if (rows !== undefined) { // a bar per row: tall enough to read every name
      dom.style.height = Math.max(200, 110 + rows * 28) + "px";
    }
    const chart = window.echarts.init(dom, null, { renderer: "svg", locale: "ZH" });
    chart.setOption(Object.assign({ animation: false, aria: { enabled: false }, tooltip: tooltip }, option));
    charts.push(chart);
    dom.setAttribute("data-rendered", "true");
  }

  const d = data.distribution;
  draw("chart-distribution", {
    legend: { data: ["本期", "上期"] },
    grid: grid,
    xAxis: below({ type: "category", name: "得分", data: d.bands }),
    yAxis: countAxis("通话数"),
    series: [
      {
        name: "本期", type: "bar",
        data: d.calls.map((value, n) => ({ value: value, itemStyle: { color: d.below_pass[n] ? RED : BLUE } })),
        itemStyle: { color: BLUE },
        label: { show: true, position: "top" },
      },
      { name: "上期", type: "bar", data: d.previous, itemStyle: { color: GREY } },
    ],
  });

  const t = data.trend;
  const days = t.days.map(shortDay);
  draw("chart-score-trend", {
    legend: { data: ["平均得分", "合格率"] },
    grid: grid,
    xAxis: below({ type: "category", name: "日期", data: days, boundaryGap: false }),
    yAxis: [percentAxis("得分"), rightAxis(percentAxis("合格率(%)"))],
    series: [
      {
        name: "平均得分", type: "line", data: t.average_score, connectNulls: false, symbolSize: 6,
        itemStyle: { color: BLUE }, markLine: passLine("y"),
      },
      {
        name: "合格率", type: "line", yAxisIndex: 1, data: t.pass_rate, connectNulls: false, symbolSize: 6,
        itemStyle: { color: GREEN },
      },
    ],
  });
  draw("chart-violation-trend", {
    legend: { data: ["违规通话数", "违规次数", "违规通话占比"] },
    grid: grid,
    xAxis: below({ type: "category", name: "日期", data: days }),
    yAxis: [countAxis("数量"), rightAxis(percentAxis("占比(%)"))],
    series: [
      { name: "违规通话数", type: "bar", data: t.violation_calls, itemStyle: { color: RED } },
      { name: "违规次数", type: "bar", data: t.violations, itemStyle: { color: "#e59866" } },
      {
        name: "违规通话占比", type: "line", yAxisIndex: 1, data: t.violation_rate, connectNulls: false,
        symbolSize: 6, itemStyle: { color: BLUE },
      },
    ],
  });

  const a = data.agents;
  draw("chart-agents", {
    legend: { data: ["平均得分", "合格率"] },
    grid: Object.assign({}, grid, { left: 16 }),
    yAxis: { type: "category", data: a.names, inverse: true }, // the best on top
    xAxis: below(percentAxis("平均得分 / 合格率(%)")),
    series: [
      {
        name: "平均得分", type: "bar", data: a.average_score, itemStyle: { color: BLUE },
        label: { show: true, position: "right" }, markLine: passLine("x"),
      },
      { name: "合格率", type: "bar", data: a.pass_rate, itemStyle: { color: LIGHT } },
    ],
  }, a.names.length * 1.3);

  const r = data.rules;
  draw("chart-rules", {
    legend: { data: ["本期违规通话", "上期违规通话"] },
    grid: Object.assign({}, grid, { left: 16 }),
    yAxis: { type: "category", data: r.names, inverse: true }, // the most failed on top
    xAxis: below(countAxis("违规通话数")),
    series: [
      {
        name: "本期违规通话", type: "bar", data: r.failed_calls, itemStyle: { color: RED },
        label: { show: true, position: "right" },
      },
      { name: "上期违规通话", type: "bar", data: r.previous_failed_calls, itemStyle: { color: GREY } },
    ],
  }, r.names.length * 1.3);

  const resize = () => charts.forEach((chart) => chart.resize());
  window.addEventListener("resize", resize);
  window.addEventListener("beforeprint", resize);
  window.addEventListener("afterprint", resize);
  const printNow = document.getElementById("print-now");
  if (printNow) {
    printNow.addEventListener("click", () => window.print());
  }
  document.getElementById("qa-report").setAttribute("data-charts", String(charts.length));
})();
