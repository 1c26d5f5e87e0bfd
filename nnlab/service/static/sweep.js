// A sweep's page: progress and ETA, the ranked configurations (paged, sorted and filtered on
// the server), curves grouped by any grid setting, a heatmap, parallel coordinates, failures
// and the spec; kept live by the sweep's event stream.

import { METRICS, api, apiSweep, duration, el, failOn, follow, json, note, number, setting, show, statusBadge, statusBar, statusLabel, table, throttle, tooltip, when } from "./common.js";
import { heatmap, lineChart, parallel, swatch } from "./charts.js";

const PAGE = 25;
const TOP = 10;
const MOST_RUN_LINES = 2000;  // beyond this, a line per run is more than a page should draw
const name = document.getElementById("app").dataset.sweep;
const tip = tooltip();
const $ = (id) => document.getElementById(id);
const state = {
  details: null,
  sort: null, order: "asc", offset: 0, filters: {},
  metric: null, group: "configuration", log: true,
  highlighted: null,  // a configuration row
  liveEpochs: 0,
  runSeries: null,  // per-run curves, kept up to date from events
};
let curvesChart = { highlight() {} };
let parallelChart = { highlight() {} };
let everyConfiguration = [];

// --- progress -------------------------------------------------------------------------------

function drawProgress() {
  const d = state.details;
  const left = d.runs - d.final;
  // a scheduled sweep has no ETA: its runs end at very different epochs (eta_seconds null)
  const eta = d.status === "running" && d.eta_seconds !== null ? `about ${duration(d.eta_seconds)} left` : "";
  const counts = Object.entries(d.statuses).map(([status, n]) => `${n} ${statusLabel(status)}`).join(", ");
  show($("progress"),
    el("div", { class: "progress-line" },
      statusBadge(d.status), statusBar(d.statuses, d.runs),
      el("span", { id: "final-count" }, `${d.final} of ${d.runs} runs ended`),
      el("span", { id: "eta" }, eta || (left ? `${left} left` : "all ended"))),
    el("div", { class: "facts" },
      el("span", {}, "runs: ", el("b", { id: "status-counts" }, counts || "none")),
      el("span", {}, "started ", el("b", {}, when(d.started_at))),
      el("span", {}, "last activity ", el("b", {}, when(d.last_activity))),
      el("span", {}, "grid: ", el("b", {}, d.axes.join(" × ") || "one configuration")),
      el("span", {}, "epochs received live: ", el("b", { id: "live-epochs" }, String(state.liveEpochs))),
      el("span", { id: "latest-epoch" }, "")));
  drawRungs();
}

// --- rungs (a sweep with a scheduler: successive halving, ASHA, Hyperband) -------------------

function drawRungs() {
  const d = state.details;
  const panel = $("rungs-panel");
  panel.hidden = !d.scheduler;
  if (!d.scheduler) return;
  const s = d.scheduler;
  const count = (key) => ({ key, numeric: true, render: (row) => String(row[key]) });
  const columns = [
    ...(s.brackets > 1 ? [count("bracket")] : []),
    count("rung"),
    count("epoch"),
    { ...count("entered"), label: "configurations" },
    count("promoted"),
    count("pruned"),
    count("waiting"),
    { key: "best", label: `best ${s.metric}`, numeric: true, render: (row) => number(row.best) },
  ];
  show($("rungs"), table(columns, d.rungs));
  const b = d.budget;
  const share = b.full ? ` (${(100 * b.fraction).toFixed(1)}% of the full grid's epochs)` : "";
  const rungs = s.rungs.join(", ");
  show($("budget"),
    el("b", { id: "budget-line" }, `${b.spent.toLocaleString("en")} epochs of ${b.full.toLocaleString("en")}${share}`),
    ` trained · ${s.type} on ${s.metric}, η = ${s.eta}, rungs at ${rungs} epochs${s.brackets > 1 ? `, ${s.brackets} brackets` : ""}`);
}

const refreshDetails = throttle(async () => {
  try {
    state.details = await json(apiSweep(name));
    drawProgress();
  } catch (error) { failOn($("progress"), error); }
}, 1500);

// --- configurations -------------------------------------------------------------------------

function score(metric) { return `final_${metric}_mean`; }

function configurationColumns() {
  const d = state.details;
  const ranked = d.metric;
  const accuracy = ranked.startsWith("val") ? "val_accuracy" : "train_accuracy";
  const columns = [
    { key: "rank", label: "#", numeric: true, sortable: false, render: (row) => String(row.rank) },
    ...d.axes.map((axis) => ({ key: axis, label: axis, render: (row) => setting(axis, row[axis]) })),
    { key: score(ranked), label: `final ${ranked}`, numeric: true, render: (row) => meanStd(row, `final_${ranked}`) },
    { key: `best_${ranked}_mean`, label: `best ${ranked}`, numeric: true, render: (row) => meanStd(row, `best_${ranked}`) },
    { key: `final_${accuracy}_mean`, label: `final ${accuracy}`, numeric: true, render: (row) => meanStd(row, `final_${accuracy}`) },
    ...(d.scheduler ? [{ key: "rung", label: "rung reached", numeric: true, render: (row) => rungReached(row.rung) }] : []),
    { key: "runs", label: "seeds", numeric: true, render: (row) => `${row.finished + row.pruned}/${row.runs}` },
    { key: "troubled", label: "diverged/failed", numeric: true, render: (row) => (row.troubled ? `${row.diverged}/${row.failed}` : "") },
  ];
  return columns;
}

function rungReached(rung) {
  if (rung === null || rung === undefined) return "–";
  const epoch = state.details.scheduler.rungs[rung];
  return `${rung} (${epoch} epoch${epoch === 1 ? "" : "s"})`;
}

function meanStd(row, column) {
  const mean = row[`${column}_mean`];
  const std = row[`${column}_std`];
  if (mean === null || mean === undefined) return "–";
  return std ? `${number(mean)} ± ${number(std, 2)}` : number(mean);
}

function fetchConfigurations() {
  const query = new URLSearchParams({ limit: PAGE, offset: state.offset });
  if (state.sort) { query.set("sort", state.sort); query.set("order", state.order); }
  for (const [axis, value] of Object.entries(state.filters)) query.set(axis, value);
  return api(apiSweep(name, `/configurations?${query}`));
}

async function showConfigurations(answer) {
  try {
    const { body, total } = await answer;
    const rows = body.slice(0, PAGE).map((row, i) => ({ ...row, rank: state.offset + i + 1 }));
    drawConfigurations(rows, Number.isFinite(total) ? total : body.length);
  } catch (error) { failOn($("configurations"), error); }
}

function loadConfigurations() {
  return showConfigurations(fetchConfigurations());
}

let shown = null;  // the configurations on screen: [rows, total]

function drawConfigurations(rows, total) {
  shown = [rows, total];
  const key = state.highlighted?.configuration;
  show($("configurations"), rows.length ? table(configurationColumns(), rows, {
    sort: state.sort, order: state.order,
    onSort: (column) => {
      state.order = state.sort === column && state.order === "asc" ? "desc" : "asc";
      state.sort = column;
      state.offset = 0;
      loadConfigurations();
    },
    onRow: (row) => highlight(state.highlighted?.configuration === row.configuration ? null : row),
    rowClass: (row) => (row.configuration === key ? "selected" : ""),
  }) : note("No configuration matches these filters."));
  const last = Math.min(state.offset + PAGE, total);
  const previous = el("button", { type: "button", id: "previous", disabled: state.offset === 0 }, "← previous");
  const next = el("button", { type: "button", id: "next", disabled: last >= total }, "next →");
  previous.addEventListener("click", () => { state.offset = Math.max(state.offset - PAGE, 0); loadConfigurations(); });
  next.addEventListener("click", () => { state.offset += PAGE; loadConfigurations(); });
  show($("pager"), previous, el("span", { id: "page-info" }, total ? `${state.offset + 1}–${last} of ${total} configurations` : "0 configurations"), next);
}

function drawFilters() {
  const controls = state.details.axes.map((axis) => {
    const values = [...new Map(everyConfiguration.filter((row) => row[axis] !== null).map((row) => [filterValue(row[axis]), row[axis]])).entries()];
    values.sort(([, a], [, b]) => (typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))));
    const select = el("select", { "data-axis": axis, "aria-label": `filter ${axis}` },
      el("option", { value: "" }, "any"),
      values.map(([value, raw]) => el("option", { value, selected: state.filters[axis] === value }, setting(axis, raw))));
    select.addEventListener("change", () => {
      if (select.value) state.filters[axis] = select.value;
      else delete state.filters[axis];
      state.offset = 0;
      loadConfigurations();
    });
    return el("label", {}, `${axis} `, select);
  });
  show($("filters"), ...controls);
}

function filterValue(value) {
  return Array.isArray(value) ? JSON.stringify(value) : String(value);
}

// --- highlighting ---------------------------------------------------------------------------

function highlight(row) {
  state.highlighted = row;
  applyHighlight();
  if (shown) drawConfigurations(...shown);
}

function applyHighlight() {
  const row = state.highlighted;
  if (!row) { curvesChart.highlight(null); parallelChart.highlight(null); return; }
  // grouped by a setting: that setting's value; by configuration or per run: the configuration
  const byAxis = state.group !== "configuration" && state.group !== "run";
  curvesChart.highlight(byAxis ? filterValue(row[state.group]) : row.configuration);
  parallelChart.highlight(row.configuration);
}

// --- curves ---------------------------------------------------------------------------------

function drawControls() {
  const d = state.details;
  state.metric ??= d.metric;
  show($("metric"), ...METRICS.map((m) => el("option", { value: m, selected: m === state.metric }, m)));
  const groups = [["configuration", `best ${TOP} configurations`], ...d.axes.map((a) => [a, a])];
  const options = groups.map(([value, text]) => el("option", { value, selected: value === state.group }, text));
  const tooMany = d.runs > MOST_RUN_LINES;
  options.push(el("option", { value: "run", disabled: tooMany }, tooMany ? `each run (not for ${d.runs} runs)` : "each run"));
  show($("group"), ...options);
  const [rows, columns] = [d.axes[0], d.axes[1] ?? d.axes[0]];
  show($("heat-rows"), ...d.axes.map((a) => el("option", { value: a, selected: a === rows }, a)));
  show($("heat-columns"), ...d.axes.map((a) => el("option", { value: a, selected: a === columns }, a)));
}

function fetchCurves() {
  // before the details arrive, no metric: the server's default is the one the sweep ranks by
  const query = new URLSearchParams({ max_points: 500 });
  if (state.metric) query.set("metric", state.metric);
  if (state.group !== "run") { query.set("by", state.group); query.set("top", TOP); }
  return json(apiSweep(name, `/curves?${query}`));
}

function loadCurves() {
  return showCurves(fetchCurves());
}

async function showCurves(answer) {
  try {
    const groups = await answer;
    if (state.group === "run") {
      state.runSeries = new Map(groups.map((g) => [g.run_id, g]));
    } else {
      state.runSeries = null;
    }
    drawCurves(groups);
  } catch (error) { failOn($("curves"), error); }
}

function drawCurves(groups) {
  const perRun = state.group === "run";
  const series = perRun
    ? groups.map((g, i) => ({ key: g.configuration ?? `run ${g.run_id}`, run: g.run_id, label: `run ${g.run_id}${g.label ? `: ${g.label}` : ""}`, index: i, thin: true, groups: [g.configuration], points: g.epochs.map((e, k) => [e, g.values[k]]) }))
    : groups.map((g, i) => ({
      key: state.group === "configuration" ? g.value : filterValue(g.value),
      label: `${state.group === "configuration" ? "" : `${state.group} `}${g.label} (${g.runs.length} runs)`,
      index: i,
      points: g.epochs.map((e, k) => [e, g.median[k]]),
      band: g.runs.length > 1 ? g.epochs.map((e, k) => [e, g.q25[k], g.q75[k]]) : null,
    }));
  curvesChart = lineChart($("curves"), series, {
    log: state.log && !state.metric.endsWith("accuracy"), yLabel: state.metric, tip,
    onPick: (s) => { if (perRun) window.location.assign(`/runs/${s.run}`); },
  });
  drawLegend(perRun ? [] : series);
  applyHighlight();
}

function drawLegend(series) {
  const buttons = series.map((s) => {
    const button = el("button", { type: "button", "data-key": s.key }, el("i", { class: swatch(s.index) }), s.label);
    button.addEventListener("mouseenter", () => curvesChart.highlight(s.key));
    button.addEventListener("mouseleave", applyHighlight);
    return button;
  });
  show($("legend"), ...buttons);
}

const refreshCurves = throttle(loadCurves, 2000);

// Per-run curves grow as epochs arrive, without asking the server again.
const redrawRuns = throttle(() => drawCurves([...state.runSeries.values()]), 500);

function addEpochs(epochs) {
  if (!state.runSeries) return refreshCurves();
  for (const epoch of epochs) {
    const series = state.runSeries.get(epoch.run_id) ?? { run_id: epoch.run_id, epochs: [], values: [] };
    series.epochs.push(epoch.epoch);
    series.values.push(epoch[state.metric]);
    state.runSeries.set(epoch.run_id, series);
  }
  redrawRuns();
}

// --- heatmap, parallel coordinates, failures ------------------------------------------------

async function loadHeatmap() {
  const d = state.details;
  if (d.axes.length < 2) return show($("heatmap"), note(`A heatmap needs two settings that vary in the grid; ${d.axes.length ? `only ${d.axes[0]} varies` : "nothing varies"}.`));
  const query = new URLSearchParams({ rows: $("heat-rows").value, columns: $("heat-columns").value, metric: state.metric.startsWith("train") ? "train_loss" : "val_loss" });
  try {
    heatmap($("heatmap"), await json(apiSweep(name, `/heatmap?${query}`)), { tip });
  } catch (error) { failOn($("heatmap"), error); }
}

async function loadEveryConfiguration() {
  try {
    everyConfiguration = await json(apiSweep(name, "/configurations"));
    drawFilters();
    const axes = state.details.axes;
    const ranked = score(state.details.metric);
    parallelChart = parallel($("parallel"), everyConfiguration, axes, {
      score: ranked, tip,
      keyOf: (row) => row.configuration,
      labelOf: (row) => axes.map((a) => `${a} ${setting(a, row[a])}`).join(", "),
      onPick: (row) => highlight(state.highlighted?.configuration === row.configuration ? null : row),
    });
    applyHighlight();
  } catch (error) { failOn($("parallel"), error); }
}

async function loadFailures() {
  try {
    const groups = await json(apiSweep(name, "/failures"));
    if (!groups.length) return show($("failures"), note("No run failed."));
    show($("failures"), ...groups.map((group) => el("details", { class: "failure" },
      el("summary", {}, el("b", {}, `${group.runs.length} × `), group.message),
      el("p", {}, "runs ", ...group.runs.slice(0, 50).flatMap((id, i) => [i ? ", " : "", el("a", { href: `/runs/${id}` }, String(id))]), group.runs.length > 50 ? " …" : ""),
      el("p", { class: "muted" }, `first: ${group.settings}`),
      el("pre", {}, group.error))));
  } catch (error) { failOn($("failures"), error); }
}

const refreshRanking = throttle(() => { loadConfigurations(); loadHeatmap(); }, 3000);
const refreshFailures = throttle(loadFailures, 3000);

// --- live -----------------------------------------------------------------------------------

function onEpochs(epochs) {
  state.liveEpochs += epochs.length;
  const counter = $("live-epochs");
  if (counter) counter.textContent = String(state.liveEpochs);
  const last = epochs[epochs.length - 1];
  const latest = $("latest-epoch");
  if (latest && last) latest.textContent = `latest: run ${last.run_id}, epoch ${last.epoch}, ${state.metric} ${number(last[state.metric])}`;
  addEpochs(epochs);
}

function onStatus(changes) {
  refreshDetails();
  refreshRanking();
  if (changes.some((change) => change.status === "failed")) refreshFailures();
  if (changes.some((change) => change.status !== "running")) refreshCurves();
}

// --- start ----------------------------------------------------------------------------------

async function start() {
  // the three first questions at once; the answers drawn as they can be
  const asked = { details: json(apiSweep(name)), ranking: fetchConfigurations(), curves: fetchCurves() };
  for (const answer of Object.values(asked)) answer.catch(() => {});  // each is shown where it is awaited
  try {
    state.details = await asked.details;
  } catch (error) { return failOn($("progress"), error); }
  drawProgress();
  drawControls();
  await showConfigurations(asked.ranking);
  performance.mark("nnlab-painted");  // for benchmarks: since the navigation began
  document.body.dataset.painted = "true";  // the first screen: progress and the ranking
  await showCurves(asked.curves);
  performance.mark("nnlab-charted");
  document.body.dataset.charted = "true";
  loadHeatmap();
  loadEveryConfiguration();
  loadFailures();
  $("metric").addEventListener("change", () => { state.metric = $("metric").value; loadCurves(); loadHeatmap(); });
  $("group").addEventListener("change", () => { state.group = $("group").value; loadCurves(); });
  $("log").addEventListener("change", () => { state.log = $("log").checked; loadCurves(); });
  $("heat-rows").addEventListener("change", loadHeatmap);
  $("heat-columns").addEventListener("change", loadHeatmap);
  follow(name, { epochs: onEpochs, status: onStatus, reset: () => { refreshDetails(); loadCurves(); refreshRanking(); }, opened: refreshDetails, closed: refreshDetails });
}

start();
