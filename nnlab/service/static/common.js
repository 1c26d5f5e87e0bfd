// What every page of nnlab serve shares: reading the JSON API, building elements (user text
// only ever as text nodes: never parsed as HTML), numbers and times, and live updates.

// ended first, then training, waiting, and not started; paused: waiting at a scheduler's rung
// for its configuration to be promoted or pruned (stopped there by the scheduler, for good)
export const STATUSES = ["completed", "converged", "early_stopped", "pruned", "diverged", "failed", "running", "paused", "interrupted", "pending"];
export const STATUS_LABELS = { paused: "paused at a rung", pruned: "pruned by the scheduler" };

export function statusLabel(status) {
  return STATUS_LABELS[status] ?? status;
}
export const METRICS = ["val_loss", "train_loss", "val_accuracy", "train_accuracy", "learning_rate"];

export class ApiError extends Error {}

export async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `${response.status} from ${path}` }));
  if (!response.ok) throw new ApiError(body.error || `${response.status} from ${path}`);
  return { body, total: Number(response.headers.get("X-Total-Count") ?? NaN) };
}

export async function json(path) {
  return (await api(path)).body;
}

// el("a", {href: "/x", class: "c"}, "text", child): attributes as attributes, children as
// nodes or text (never HTML).
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attributes);
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttributes(node, attributes);
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

export function sweepPath(name) {
  return `/sweeps/${encodeURIComponent(name)}`;
}

export function apiSweep(name, rest = "") {
  return `/api/sweeps/${encodeURIComponent(name)}${rest}`;
}

export function number(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}

export function setting(name, value) {
  if (value === null || value === undefined) return name === "batch_size" ? "all" : "none";
  if (typeof value === "number") return number(value);
  if (Array.isArray(value)) return value.join("-");
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function when(iso) {
  if (!iso) return "–";
  const time = new Date(iso);
  return Number.isNaN(time.getTime()) ? String(iso) : time.toLocaleString();
}

export function secondsBetween(start, end) {
  if (!start) return null;
  const to = end ? new Date(end) : new Date();
  return (to - new Date(start)) / 1000;
}

export function statusBadge(status) {
  return el("span", { class: `status ${status}`, title: statusLabel(status) }, status);
}

// A bar of the runs by status, each part as wide as its share.
export function statusBar(statuses, total) {
  const bar = el("div", { class: "bar", role: "img" });
  const parts = [];
  for (const status of STATUSES) {
    const count = statuses[status] || 0;
    if (!count) continue;
    const part = el("span", { class: status, title: `${count} ${statusLabel(status)}` });
    part.style.width = `${(100 * count) / Math.max(total, 1)}%`;
    bar.append(part);
    parts.push(`${count} ${statusLabel(status)}`);
  }
  bar.setAttribute("aria-label", parts.join(", ") || "no runs");
  bar.title = parts.join(", ") || "no runs";
  return bar;
}

// A table of rows; columns: [{key, label, numeric, render(row) -> node|text, sortable}].
export function table(columns, rows, { sort, order, onSort, onRow, rowClass } = {}) {
  const head = el("tr", {}, columns.map((column) => {
    const sorted = sort === column.key ? ` sorted-${order}` : "";
    const classes = `${column.numeric ? "num" : ""}${onSort && column.sortable !== false ? " sortable" : ""}${sorted}`;
    const cell = el("th", { class: classes.trim() || null, scope: "col", "data-key": column.key }, column.label ?? column.key);
    if (onSort && column.sortable !== false) cell.addEventListener("click", () => onSort(column.key));
    return cell;
  }));
  const body = rows.map((row) => {
    const cells = columns.map((column) => {
      const value = column.render ? column.render(row) : number(row[column.key]);
      return el("td", { class: column.numeric ? "num" : null }, value);
    });
    const tr = el("tr", { class: [onRow ? "clickable" : "", rowClass ? rowClass(row) : ""].join(" ").trim() || null }, cells);
    if (onRow) tr.addEventListener("click", () => onRow(row, tr));
    return tr;
  });
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}

export function show(container, ...nodes) {
  container.replaceChildren(...nodes);
}

export function note(text, kind = "muted") {
  return el("p", { class: `note ${kind}` }, text);
}

// Calls fn at most once per `ms`, the last call always honoured.
export function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  return (...args) => {
    if (timer) { pending = true; return; }
    fn(...args);
    timer = setTimeout(function again() {
      timer = null;
      if (pending) { pending = false; fn(...args); timer = setTimeout(again, ms); }
    }, ms);
  };
}

// Follow a sweep's Server-Sent Events; handlers: {epochs(list), status(list), reset(), opened(),
// closed()}. closed: the server refused the stream (the sweep was deleted or renamed), which
// the browser does not retry, so the page should ask what is there now.
export function follow(name, handlers) {
  const indicator = document.getElementById("live");
  const source = new EventSource(apiSweep(name, "/events"));
  // "open" comes once the server has read where the runs are: what changed before the page
  // read them but after that is in no event, so a page reads its state again then
  source.addEventListener("open", () => {
    indicator.hidden = false; indicator.classList.remove("stale"); indicator.textContent = "live";
    handlers.opened?.();
  });
  source.addEventListener("error", () => {
    indicator.classList.add("stale");
    const closed = source.readyState === EventSource.CLOSED;
    indicator.textContent = closed ? "not live" : "reconnecting";
    if (closed) handlers.closed?.();
  });
  for (const kind of ["epochs", "status"]) {
    source.addEventListener(kind, (event) => handlers[kind]?.(JSON.parse(event.data)));
  }
  source.addEventListener("reset", () => handlers.reset?.());
  return source;
}

export function tooltip() {
  const box = document.getElementById("tooltip");
  return {
    show(text, x, y) {
      box.textContent = text;
      box.hidden = false;
      const left = Math.min(x + 14, window.innerWidth - box.offsetWidth - 8);
      box.style.left = `${Math.max(left, 4)}px`;
      box.style.top = `${Math.max(y - box.offsetHeight - 10, 4)}px`;
    },
    hide() { box.hidden = true; },
  };
}

export function failOn(container, error) {
  show(container, note(error.message || String(error), "error"));
}
