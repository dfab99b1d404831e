// plantgate status page: sparklines (SVG, drawn here: no inline style, no library).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const SPARK_W = 120, SPARK_H = 26, SPARK_BUCKETS = 120;

function svgEl(tag, cls, attrs) {
  const e = document.createElementNS(SVG, tag);
  if (cls) e.setAttribute("class", cls);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}

// Merges a trend answer `nu` ({from, lo, hi}) into what the page holds; keeps 10 minutes.
function mergeTrend(old, nu) {
  let tr = nu;
  if (old && nu.from >= old.from) {
    const keep = Math.min(old.lo.length, nu.from - old.from);
    const gap = Math.max(0, nu.from - old.from - old.lo.length);
    const pad = new Array(gap).fill(null);
    tr = { from: old.from, lo: old.lo.slice(0, keep).concat(pad, nu.lo), hi: old.hi.slice(0, keep).concat(pad, nu.hi) };
  }
  const over = tr.lo.length - SPARK_BUCKETS;
  if (over > 0) tr = { from: tr.from + over, lo: tr.lo.slice(over), hi: tr.hi.slice(over) };
  return tr;
}

// Draws one point's last 10 minutes (min–max band and the max line) with its limits as lines.
// `tr` is {from, lo, hi} or undefined (not fetched yet), `newest` the newest bucket on the page.
function sparkline(tr, limits, newest) {
  const svg = svgEl("svg", "spark", { viewBox: "0 0 " + SPARK_W + " " + SPARK_H, width: SPARK_W, height: SPARK_H, role: "img" });
  if (!tr) { svg.classList.add("empty"); return svg; }
  const vals = tr.lo.concat(tr.hi).filter((v) => v !== null);
  const bounds = limits.map((l) => (l.above !== undefined ? l.above : l.below));
  if (!vals.length) { svg.classList.add("empty"); return svg; }
  let lo = Math.min(...vals, ...bounds), hi = Math.max(...vals, ...bounds);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const first = newest - SPARK_BUCKETS + 1;
  const x = (b) => (((b - first) / (SPARK_BUCKETS - 1)) * (SPARK_W - 2) + 1).toFixed(1);
  const y = (v) => (SPARK_H - 2 - ((v - lo) / (hi - lo)) * (SPARK_H - 4)).toFixed(1);
  for (const l of limits) {
    const v = l.above !== undefined ? l.above : l.below;
    const line = svgEl("line", "limit lim-" + l.level, { x1: 0, x2: SPARK_W, y1: y(v), y2: y(v) });
    line.append(svgEl("title", null, {}));
    line.firstChild.textContent = t(l.level) + " " + (l.above !== undefined ? ">" : "<") + " " + num(v);
    svg.append(line);
  }
  // One band and one line per run of buckets that have values.
  let run = [];
  const flush = () => {
    if (!run.length) return;
    const top = run.map((b) => x(b) + "," + y(tr.hi[b - tr.from]));
    const bottom = run.slice().reverse().map((b) => x(b) + "," + y(tr.lo[b - tr.from]));
    svg.append(svgEl("polygon", "band", { points: top.concat(bottom).join(" ") }));
    svg.append(svgEl("polyline", "line", { points: top.join(" ") }));
    if (run.length === 1) svg.append(svgEl("circle", "dot", { cx: x(run[0]), cy: y(tr.hi[run[0] - tr.from]), r: 1.5 }));
    run = [];
  };
  for (let b = Math.max(tr.from, first); b < tr.from + tr.lo.length; b++) {
    if (tr.hi[b - tr.from] === null) flush(); else run.push(b);
  }
  flush();
  return svg;
}
