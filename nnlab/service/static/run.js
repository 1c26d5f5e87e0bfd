// A run's page: its settings, where and when it trained, its curves and every epoch, kept live
// by its sweep's event stream.

import { el, failOn, follow, json, note, number, setting, show, table, throttle, tooltip, when } from "./common.js";
import { lineChart } from "./charts.js";

const { run: runId, sweep } = document.getElementById("app").dataset;
const id = Number(runId);
const tip = tooltip();
const $ = (name) => document.getElementById(name);
// epoch_learning_rate: the η the epoch trained with (learning_rate is the run's setting, η₀)
const COLUMNS = ["epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "epoch_learning_rate", "grad_norm", "seconds"];
const PROVENANCE = ["host", "pid", "nnlab_version", "numpy_version", "python_version", "data_fingerprint", "boot_id"];
let epochs = [];
let log = true;

function keyValues(record) {
  const entries = Object.entries(record).filter(([, v]) => v !== undefined);
  return el("dl", { class: "kv" }, entries.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v === null ? "–" : typeof v === "object" ? JSON.stringify(v) : setting(k, v))]));
}

function drawRun(run) {
  const status = $("status");
  status.textContent = run.status;
  status.className = `status ${run.status}`;
  show($("settings"), keyValues({ seed: run.seed, ...run.config }));
  const history = {
    started: when(run.started_at), "last heartbeat": when(run.heartbeat_at),
    finished: when(run.finished_at), status: run.status, attempts: run.attempts, "epochs run": run.epochs_run,
    "duration (s)": run.duration_s,
  };
  show($("history"), keyValues(history));
  const provenance = Object.fromEntries(PROVENANCE.filter((k) => k in run).map((k) => [k, run[k]]));
  show($("provenance"), keyValues(provenance));
  $("failure").hidden = !run.error;
  $("traceback").textContent = run.error || "";
}

function drawEpochs() {
  const columns = COLUMNS.filter((c) => epochs.some((row) => row[c] !== null && row[c] !== undefined)).map((key) => ({ key, label: key, numeric: true }));
  $("epoch-count").textContent = `(${epochs.length})`;
  show($("epochs"), epochs.length ? table(columns, epochs.slice().reverse()) : note("No epoch logged yet."));
  const pair = (train, val) => [
    { key: train, label: train, index: 0, points: epochs.map((e) => [e.epoch, e[train]]) },
    { key: val, label: val, index: 1, points: epochs.map((e) => [e.epoch, e[val]]) },
  ].filter((s) => s.points.some(([, v]) => v !== null));
  lineChart($("loss"), pair("train_loss", "val_loss"), { log, yLabel: "loss", tip, height: 280 });
  const rates = epochs.map((e) => e.epoch_learning_rate);
  if (!epochs.length) show($("rates"), note("No epoch logged yet."));
  else if (new Set(rates).size > 1) {  // a schedule: its η per epoch under the losses
    const eta = [{ key: "learning_rate", label: "learning rate", index: 2, points: epochs.map((e) => [e.epoch, e.epoch_learning_rate]) }];
    lineChart($("rates"), eta, { log, yLabel: "learning rate", tip, height: 180 });
  } else show($("rates"), note(`learning rate ${number(rates[0])} throughout`));
  const accuracy = pair("train_accuracy", "val_accuracy");
  if (accuracy.length) lineChart($("accuracy"), accuracy, { log: false, yLabel: "accuracy", tip, height: 220 });
  else show($("accuracy"), note("No accuracy recorded (a regression run)."));
}

const redraw = throttle(drawEpochs, 300);
const refreshRun = throttle(async () => {
  try { drawRun(await json(`/api/runs/${id}`)); } catch (error) { failOn($("history"), error); }
}, 1000);

async function catchUp() {
  const after = epochs.length ? epochs[epochs.length - 1].epoch : 0;
  try {
    const newer = await json(`/api/runs/${id}/epochs?after=${after}`);
    if (newer.length && newer[0].epoch <= after) epochs = [];  // restarted: read it again
    epochs.push(...newer);
    redraw();
  } catch (error) { failOn($("epochs"), error); }
}

async function start() {
  try {
    drawRun(await json(`/api/runs/${id}`));
  } catch (error) { return failOn($("settings"), error); }
  epochs = await json(`/api/runs/${id}/epochs`);
  drawEpochs();
  document.body.dataset.painted = "true";
  $("log").addEventListener("change", () => { log = $("log").checked; drawEpochs(); });
  follow(sweep, {
    epochs: (batch) => {
      const mine = batch.filter((e) => e.run_id === id);
      if (!mine.length) return;
      const last = epochs.length ? epochs[epochs.length - 1].epoch : 0;
      if (mine[0].epoch !== last + 1) return catchUp();  // a gap, or a restart: ask
      epochs.push(...mine);
      redraw();
    },
    status: (changes) => { if (changes.some((c) => c.run_id === id)) { refreshRun(); catchUp(); } },
    reset: catchUp,
    opened: () => { refreshRun(); catchUp(); },
    closed: refreshRun,
  });
}

start();
