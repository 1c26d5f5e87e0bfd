// nnlab's charts, drawn as SVG in the browser: line charts with median + interquartile bands
// (log or linear, hover, highlight), heatmaps and parallel coordinates. Small on purpose: no
// chart library to load, nothing evaluated as code, nothing but attributes set from data.

import { number, svg, show, note } from "./common.js";

const WIDTH = 1000;
const MARGIN = { left: 64, right: 16, top: 14, bottom: 40 };
const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];

export function swatch(index) {
  return `swatch-${index % 10}`;
}

// A colour from viridis for t in [0, 1] (0 dark purple, 1 yellow).
export function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const mix = (a, b) => Math.round(a + (b - a) * (x - i));
  const [r1, g1, b1] = rgb(VIRIDIS[i]);
  const [r2, g2, b2] = rgb(VIRIDIS[i + 1]);
  return `rgb(${mix(r1, r2)}, ${mix(g1, g2)}, ${mix(b1, b2)})`;
}

function rgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

export function scale(domain, range, log) {
  const [d0, d1] = log ? domain.map(Math.log10) : domain;
  const span = d1 - d0 || 1;
  const to = (v) => range[0] + (((log ? Math.log10(v) : v) - d0) / span) * (range[1] - range[0]);
  to.invert = (p) => {
    const v = d0 + ((p - range[0]) / (range[1] - range[0])) * span;
    return log ? 10 ** v : v;
  };
  return to;
}

export function ticks([low, high], log, count = 6) {
  if (!(high > low)) return [low];
  if (log) {
    const first = Math.floor(Math.log10(low));
    const last = Math.ceil(Math.log10(high));
    const decades = [];
    for (let k = first; k <= last; k++) decades.push(...(last - first <= 2 ? [1, 2, 5] : [1]).map((m) => m * 10 ** k));
    const inside = decades.filter((v) => v >= low * 0.999 && v <= high * 1.001);
    return inside.length >= 2 ? inside : ticks([low, high], false, count);
  }
  const step0 = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= step0);
  const values = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) values.push(Number(v.toPrecision(12)));
  return values;
}

function extent(values, log) {
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v) || (log && v <= 0)) continue;
    if (v < low) low = v;
    if (v > high) high = v;
  }
  if (low === Infinity) return null;
  if (low === high) return log ? [low / 1.5, high * 1.5] : [low - 1, high + 1];
  return log ? [low, high] : [low - (high - low) * 0.04, high + (high - low) * 0.04];
}

function pathOf(points, x, y, log) {
  let d = "";
  let drawing = false;
  for (const [px, py] of points) {
    if (py === null || !Number.isFinite(py) || (log && py <= 0)) { drawing = false; continue; }
    d += `${drawing ? "L" : "M"}${x(px).toFixed(1)},${y(py).toFixed(1)}`;
    drawing = true;
  }
  return d;
}

function bandOf(band, x, y, log) {
  const ok = band.filter(([, lo, hi]) => Number.isFinite(lo) && Number.isFinite(hi) && (!log || lo > 0));
  if (ok.length < 2) return "";
  const top = ok.map(([px, , hi]) => `${x(px).toFixed(1)},${y(hi).toFixed(1)}`);
  const bottom = ok.reverse().map(([px, lo]) => `${x(px).toFixed(1)},${y(lo).toFixed(1)}`);
  return `M${top.join("L")}L${bottom.join("L")}Z`;
}

// Series: [{key, label, index (colour), points: [[epoch, value]], band: [[epoch, q25, q75]],
// thin, groups: [keys it belongs to]}]. Returns {highlight(key or null)}.
export function lineChart(container, series, { log = true, yLabel = "", xLabel = "epoch", height = 340, tip, onPick } = {}) {
  const values = series.flatMap((s) => [...s.points.map((p) => p[1]), ...(s.band || []).flatMap((b) => [b[1], b[2]])]);
  const yDomain = extent(values, log) || extent(values, (log = false));
  if (!yDomain) {
    show(container, note(series.length ? `No ${yLabel} logged${log ? " above zero" : ""} yet.` : "No epochs logged yet."));
    return { highlight() {} };
  }
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const xDomain = [Math.min(1, ...xs), Math.max(2, ...xs)];
  const x = scale(xDomain, [MARGIN.left, WIDTH - MARGIN.right], false);
  const y = scale(yDomain, [height - MARGIN.bottom, MARGIN.top], log);
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": `${yLabel} by ${xLabel}` });
  chart.append(axes(x, y, xDomain, yDomain, log, xLabel, yLabel, height));
  const drawn = [];
  for (const s of series) {
    const classes = `${swatch(s.index)}`;
    if (s.band) {
      const d = bandOf(s.band, x, y, log);
      if (d) drawn.push({ s, node: chart.appendChild(svg("path", { class: `band ${classes}`, d })) });
    }
    const d = pathOf(s.points, x, y, log);
    if (d) drawn.push({ s, node: chart.appendChild(svg("path", { class: `series ${classes}${s.thin ? " thin" : ""}`, d, "data-key": s.key })) });
  }
  hover(chart, series, x, y, log, tip, onPick);
  show(container, chart);
  return {
    highlight(key) {
      chart.classList.toggle("dim", key !== null && key !== undefined);
      for (const { s, node } of drawn) node.classList.toggle("hot", key !== null && (s.key === key || (s.groups || []).includes(key)));
    },
  };
}

function axes(x, y, xDomain, yDomain, log, xLabel, yLabel, height) {
  const group = svg("g", { class: "axis" });
  const grid = svg("g", { class: "grid" });
  const bottom = height - MARGIN.bottom;
  for (const value of ticks(yDomain, log)) {
    const py = y(value);
    grid.append(svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: py, y2: py }));
    group.append(svg("text", { x: MARGIN.left - 6, y: py + 4, "text-anchor": "end" }, number(value, 3)));
  }
  for (const value of ticks(xDomain, false, 8).filter(Number.isInteger)) {
    const px = x(value);
    grid.append(svg("line", { x1: px, x2: px, y1: MARGIN.top, y2: bottom }));
    group.append(svg("text", { x: px, y: bottom + 16, "text-anchor": "middle" }, String(value)));
  }
  group.append(svg("path", { d: `M${MARGIN.left},${MARGIN.top}V${bottom}H${WIDTH - MARGIN.right}` }));
  group.append(svg("text", { x: (MARGIN.left + WIDTH) / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  group.append(svg("text", { x: 14, y: (MARGIN.top + bottom) / 2, transform: `rotate(-90 14 ${(MARGIN.top + bottom) / 2})`, "text-anchor": "middle" }, yLabel + (log ? " (log)" : "")));
  return svg("g", {}, grid, group);
}

// The point of any series nearest the pointer, its dot and a tooltip; a click picks its series.
function hover(chart, series, x, y, log, tip, onPick) {
  const dot = svg("circle", { class: "dot", r: 4, visibility: "hidden" });
  chart.append(dot);
  let nearest = null;
  chart.addEventListener("mousemove", (event) => {
    const box = chart.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * WIDTH;
    const py = ((event.clientY - box.top) / box.height) * chart.viewBox.baseVal.height;
    const epoch = x.invert(px);
    nearest = null;
    let best = Infinity;
    for (const s of series) {
      const point = closest(s.points, epoch);
      if (!point || !Number.isFinite(point[1]) || (log && point[1] <= 0)) continue;
      const distance = Math.abs(y(point[1]) - py) + Math.abs(x(point[0]) - px) * 0.2;
      if (distance < best) { best = distance; nearest = { s, point }; }
    }
    if (!nearest || best > 60) { dot.setAttribute("visibility", "hidden"); tip?.hide(); nearest = null; return; }
    dot.setAttribute("cx", x(nearest.point[0]));
    dot.setAttribute("cy", y(nearest.point[1]));
    dot.setAttribute("class", `dot ${swatch(nearest.s.index)}`);
    dot.setAttribute("visibility", "visible");
    tip?.show(`${nearest.s.label}\nepoch ${nearest.point[0]}: ${number(nearest.point[1], 5)}`, event.clientX, event.clientY);
  });
  chart.addEventListener("mouseleave", () => { dot.setAttribute("visibility", "hidden"); tip?.hide(); });
  chart.addEventListener("click", () => { if (nearest && onPick) onPick(nearest.s); });
}

function closest(points, epoch) {
  let low = 0;
  let high = points.length - 1;
  if (high < 0) return null;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (points[middle][0] < epoch) low = middle + 1;
    else high = middle;
  }
  if (low > 0 && Math.abs(points[low - 1][0] - epoch) < Math.abs(points[low][0] - epoch)) low -= 1;
  return points[low];
}

// A heatmap of /api/sweeps/{name}/heatmap: colour by log median, text in every cell.
export function heatmap(container, cells, { tip } = {}) {
  const rows = cells.row_values.length;
  const columns = cells.column_values.length;
  const finite = cells.median.flat().filter((v) => Number.isFinite(v) && v > 0);
  if (!finite.length) return show(container, note("No run has finished cleanly yet."));
  const [low, high] = [Math.min(...finite), Math.max(...finite)];
  const shade = (v) => viridis(1 - (high > low ? (Math.log10(v) - Math.log10(low)) / (Math.log10(high) - Math.log10(low)) : 0.5));
  const left = 160;
  const cellWidth = Math.min(140, (WIDTH - left - 20) / columns);
  const inset = (WIDTH - left - 20 - columns * cellWidth) / 2;
  const cellHeight = 34;
  const height = 40 + rows * cellHeight + 40;
  const chart = svg("svg", { viewBox: `${-inset} 0 ${WIDTH} ${height}`, role: "img", "aria-label": `${cells.rows} × ${cells.columns}` });
  cells.row_values.forEach((rowLabel, i) => {
    const top = 20 + (rows - 1 - i) * cellHeight;
    chart.append(svg("text", { x: left - 8, y: top + cellHeight / 2 + 4, "text-anchor": "end" }, rowLabel));
    cells.column_values.forEach((columnLabel, j) => {
      const median = cells.median[i][j];
      const total = cells.total[i][j];
      const diverged = cells.diverged[i][j];
      const fill = Number.isFinite(median) && median > 0 ? shade(median) : "#e9ecef";
      const cell = svg("rect", { x: left + j * cellWidth, y: top, width: cellWidth - 2, height: cellHeight - 2, fill, rx: 3, class: "heat-cell" });
      const lines = total === 0 ? "–" : `${Number.isFinite(median) ? number(median, 3) : ""}${diverged ? ` ${diverged}/${total} div.` : ""}`;
      const dark = Number.isFinite(median) && shade(median) && (Math.log10(median) - Math.log10(low)) / (Math.log10(high) - Math.log10(low) || 1) > 0.45;
      const text = svg("text", { x: left + j * cellWidth + cellWidth / 2 - 1, y: top + cellHeight / 2 + 3, "text-anchor": "middle", class: `cell-text${dark ? " dark" : ""}` }, lines);
      const describe = `${cells.rows} ${rowLabel}, ${cells.columns} ${columnLabel}\nmedian final ${cells.metric}: ${number(median, 5)}\n${total} runs, ${diverged} diverged`;
      for (const node of [cell, text]) {
        node.addEventListener("mousemove", (event) => tip?.show(describe, event.clientX, event.clientY));
        node.addEventListener("mouseleave", () => tip?.hide());
      }
      chart.append(cell, text);
    });
  });
  cells.column_values.forEach((label, j) => {
    chart.append(svg("text", { x: left + j * cellWidth + cellWidth / 2, y: 20 + rows * cellHeight + 16, "text-anchor": "middle" }, label));
  });
  chart.append(svg("text", { x: left + (columns * cellWidth) / 2, y: height - 6, "text-anchor": "middle" }, cells.columns));
  chart.append(svg("text", { x: 12, y: 14 }, `${cells.rows} ↑ · colour: median final ${cells.metric} (yellow is lower; grey: no clean run)`));
  show(container, chart);
}

// Parallel coordinates: one line per row across `axes`, the last axis the score, coloured by
// it. Returns {highlight(key or null)}.
export function parallel(container, rows, axes, { score, keyOf, labelOf, tip, onPick } = {}) {
  const scored = rows.filter((row) => Number.isFinite(row[score]));
  if (!scored.length || !axes.length) {
    show(container, note(axes.length ? "No configuration has a final score yet." : "Nothing varies in this grid."));
    return { highlight() {} };
  }
  const height = 320;
  const all = [...axes, score];
  const step = (WIDTH - 2 * 70) / Math.max(all.length - 1, 1);
  const positions = all.map((axis) => position(axis, axis === score ? scored : rows, height));
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": "parallel coordinates" });
  // coloured by rank, best darkest: one far-off score does not wash out the rest
  const order = scored.map((row, i) => [row[score], i]).sort((a, b) => a[0] - b[0]);
  const rank = new Map(order.map(([, i], r) => [i, r / Math.max(order.length - 1, 1)]));
  const lines = [];
  for (const [i, row] of scored.entries()) {
    const points = all.map((axis, k) => `${(70 + k * step).toFixed(1)},${positions[k].at(row[axis]).toFixed(1)}`);
    const t = rank.get(i);
    const line = svg("polyline", { points: points.join(" "), class: "pc-line", stroke: viridis(t * 0.9), "data-key": keyOf(row) });
    line.addEventListener("mousemove", (event) => tip?.show(`${labelOf(row)}\n${score}: ${number(row[score], 5)}`, event.clientX, event.clientY));
    line.addEventListener("mouseleave", () => tip?.hide());
    line.addEventListener("click", () => onPick?.(row));
    lines.push({ key: keyOf(row), line });
  }
  // the best drawn last, on top
  lines.slice().reverse().forEach(({ line }) => chart.append(line));
  all.forEach((axis, k) => {
    const px = 70 + k * step;
    const group = svg("g", { class: "axis" }, svg("path", { d: `M${px},24V${height - 30}` }));
    for (const [label, py] of positions[k].ticks) group.append(svg("text", { x: px + 5, y: py + 4 }, label));
    group.append(svg("text", { x: px, y: 14, "text-anchor": "middle" }, axis));
    chart.append(group);
  });
  show(container, chart);
  return {
    highlight(key) {
      chart.classList.toggle("dim", key !== null && key !== undefined);
      for (const { key: k, line } of lines) line.classList.toggle("hot", k === key);
    },
  };
}

// Where each value of `axis` sits: numbers on a (log when they span decades) scale, anything
// else evenly by first appearance.
function position(axis, rows, height) {
  const values = rows.map((row) => row[axis]);
  const range = [height - 30, 24];
  const numeric = values.every((v) => v === null || typeof v === "number") && values.some((v) => typeof v === "number");
  const distinct = [...new Set(values.map((v) => JSON.stringify(v)))];
  if (!numeric || distinct.length <= 8) {
    const order = numeric ? distinct.slice().sort((a, b) => (JSON.parse(a) ?? Infinity) - (JSON.parse(b) ?? Infinity)) : distinct;
    const at = (v) => {
      const i = order.indexOf(JSON.stringify(v));
      return order.length === 1 ? (range[0] + range[1]) / 2 : range[0] + (i / (order.length - 1)) * (range[1] - range[0]);
    };
    return { at, ticks: order.map((v) => [label(JSON.parse(v), axis), at(JSON.parse(v))]) };
  }
  const finite = values.filter(Number.isFinite);
  const log = Math.min(...finite) > 0 && Math.max(...finite) / Math.min(...finite) > 20;
  const domain = extent(finite, log);
  const to = scale(domain, range, log);
  const at = (v) => (Number.isFinite(v) && (!log || v > 0) ? to(v) : range[1] - 10);
  return { at, ticks: ticks(domain, log, 5).map((v) => [number(v, 3), to(v)]) };
}

function label(value, axis) {
  if (value === null) return axis === "batch_size" ? "all" : "none";
  return Array.isArray(value) ? value.join("-") : typeof value === "number" ? number(value) : String(value);
}
