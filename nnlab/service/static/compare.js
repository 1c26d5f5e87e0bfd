// Comparing sweeps (each one's best configurations) or hand-picked runs, side by side.

import { METRICS, apiSweep, el, failOn, json, note, number, setting, show, sweepPath, table, tooltip } from "./common.js";
import { lineChart, swatch } from "./charts.js";

const TOP = 3;
const data = document.getElementById("app").dataset;
const sweeps = JSON.parse(data.sweeps);
const runs = JSON.parse(data.runs).map(Number);
const tip = tooltip();
const $ = (id) => document.getElementById(id);
const metric = $("metric");
metric.append(...METRICS.map((m) => el("option", { value: m }, m)));

async function sweepSeries(name, offset) {
  const groups = await json(apiSweep(name, `/curves?by=configuration&top=${TOP}&metric=${metric.value}`));
  return groups.map((g, i) => ({
    key: `${name}/${i}`, label: `${name}: ${g.label} (${g.runs.length} runs)`, index: offset,
    thin: i > 0, points: g.epochs.map((e, k) => [e, g.median[k]]),
    band: i === 0 && g.runs.length > 1 ? g.epochs.map((e, k) => [e, g.q25[k], g.q75[k]]) : null,
  }));
}

async function runSeries(id, index) {
  const epochs = await json(`/api/runs/${id}/epochs`);
  return { key: `run ${id}`, label: `run ${id}`, index, points: epochs.map((e) => [e.epoch, e[metric.value]]) };
}

async function drawSweeps() {
  if (!sweeps.length) return [];
  const details = await Promise.all(sweeps.map((name) => json(apiSweep(name))));
  const best = await Promise.all(sweeps.map((name) => json(apiSweep(name, "/configurations?limit=1"))));
  const rows = sweeps.map((name, i) => ({ name, ...details[i], best: best[i][0] || {} }));
  const columns = [
    { key: "name", label: "Sweep", render: (row) => el("a", { href: sweepPath(row.name) }, el("i", { class: swatch(rows.indexOf(row)) }), ` ${row.name}`) },
    { key: "status", label: "Status", render: (row) => row.status },
    { key: "runs", label: "Runs", numeric: true, render: (row) => `${row.final}/${row.runs}` },
    { key: "metric", label: "Ranked by", render: (row) => row.metric },
    { key: "bestScore", label: "Best final (mean)", numeric: true, render: (row) => number(row.best[`final_${row.metric}_mean`]) },
    { key: "bestConfig", label: "Best configuration", render: (row) => row.axes.map((a) => `${a} ${setting(a, row.best[a])}`).join(", ") || "the only one" },
  ];
  show($("summary"), table(columns, rows));
  return (await Promise.all(sweeps.map((name, i) => sweepSeries(name, i)))).flat();
}

async function drawRuns() {
  if (!runs.length) return [];
  const records = await Promise.all(runs.map((id) => json(`/api/runs/${id}`)));
  const keys = [...new Set(records.flatMap((r) => Object.keys(r.config)))].filter((k) => k !== "seed");
  const differs = (key) => new Set(records.map((r) => JSON.stringify(r.config[key] ?? null))).size > 1;
  const ordered = [...keys.filter(differs), ...keys.filter((k) => !differs(k))];
  const columns = [
    { key: "run", label: "Run", render: (r) => el("a", { href: `/runs/${r.run_id}` }, el("i", { class: swatch(records.indexOf(r) + sweeps.length) }), ` ${r.run_id}`) },
    { key: "sweep", label: "Sweep", render: (r) => r.sweep },
    { key: "status", label: "Status", render: (r) => r.status },
    { key: "seed", label: "seed", numeric: true, render: (r) => String(r.seed) },
    ...ordered.map((key) => ({ key, label: differs(key) ? `${key} ≠` : key, render: (r) => setting(key, r.config[key] ?? null) })),
    { key: "final", label: `final ${metric.value}`, numeric: true, render: (r) => number(r[`final_${metric.value}`]) },
  ];
  show($("settings"), el("h2", {}, "Runs (settings that differ first, marked ≠)"), el("div", { class: "table-wrap" }, table(columns, records)));
  return Promise.all(runs.map((id, i) => runSeries(id, i + sweeps.length)));
}

async function draw() {
  if (!sweeps.length && !runs.length) return show($("curves"), note("Name two or more sweeps or runs above (or choose sweeps on the Sweeps page)."));
  try {
    const series = [...(await drawSweeps()), ...(await drawRuns())];
    const chart = lineChart($("curves"), series, { log: !metric.value.endsWith("accuracy"), yLabel: metric.value, tip });
    show($("legend"), ...series.filter((s) => !s.thin).map((s) => {
      const button = el("button", { type: "button" }, el("i", { class: swatch(s.index) }), s.label);
      button.addEventListener("mouseenter", () => chart.highlight(s.key));
      button.addEventListener("mouseleave", () => chart.highlight(null));
      return button;
    }));
    document.body.dataset.painted = "true";
  } catch (error) { failOn($("curves"), error); }
}

metric.addEventListener("change", draw);
draw();
