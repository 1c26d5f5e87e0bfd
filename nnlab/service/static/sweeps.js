// The sweeps page: every sweep with its runs by status, kept live by re-reading the list.

import { duration, el, failOn, json, number, secondsBetween, show, statusBadge, statusBar, sweepPath, table, when } from "./common.js";

const REFRESH_MS = 2000;
const container = document.getElementById("sweeps");
const filter = document.getElementById("filter");
const compare = document.getElementById("compare");
const chosen = new Set();
let listed = [];

function columns() {
  return [
    { key: "pick", label: "", sortable: false, render: (row) => checkbox(row.name) },
    { key: "name", label: "Sweep", render: (row) => el("a", { href: sweepPath(row.name), class: "sweep-link" }, row.name) },
    { key: "description", label: "Description", render: (row) => row.description || "" },
    { key: "status", label: "Status", render: (row) => statusBadge(row.status) },
    { key: "progress", label: "Runs by status", render: (row) => statusBar(row.statuses || {}, row.runs) },
    { key: "runs", label: "Runs", numeric: true, render: (row) => String(row.runs) },
    { key: "started_at", label: "Started", render: (row) => when(row.started_at || row.created_at) },
    { key: "duration", label: "Duration", render: (row) => duration(secondsBetween(row.started_at, row.status === "running" ? null : row.finished_at || row.last_activity)) },
    { key: "best", label: "Best so far", numeric: true, render: (row) => (row.best === null || row.best === undefined ? "–" : `${number(row.best)} ${row.metric}`) },
  ];
}

function checkbox(name) {
  const box = el("input", { type: "checkbox", "aria-label": `choose ${name}`, checked: chosen.has(name) });
  box.addEventListener("change", () => {
    if (box.checked) chosen.add(name);
    else chosen.delete(name);
    compare.disabled = chosen.size < 2;
  });
  return box;
}

function draw() {
  const wanted = filter.value.trim().toLowerCase();
  const rows = listed.filter((row) => !wanted || `${row.name} ${row.description || ""}`.toLowerCase().includes(wanted));
  if (!listed.length) return show(container, el("p", { class: "note muted" }, "No sweeps yet: run one with nnlab sweep SPEC."));
  show(container, table(columns(), rows));
}

async function refresh() {
  try {
    listed = await json("/api/sweeps");
    draw();
  } catch (error) {
    failOn(container, error);
  }
}

filter.addEventListener("input", draw);
compare.addEventListener("click", () => {
  const query = new URLSearchParams([...chosen].map((name) => ["sweeps", name]));
  window.location.assign(`/compare?${query}`);
});
await refresh();
setInterval(refresh, REFRESH_MS);
