// plantgate status page: follows /api/status?since= every second (only what changed since the
// version it holds), the trends of the devices on screen and the alarm log, each only when they
// changed (If-None-Match). Renders with filters, alarms on top. Needs i18n.js and spark.js.
"use strict";

const $ = (id) => document.getElementById(id);
const S = { version: "0", devs: [], buses: [], util: [], polled: [], gw: null, up: null, sp: null, order: "" };
const TR = {}; // device index → { etag, bucketMs, points: { name: {from, lo, hi} }, at, pending }
const LOG = { newest: null, etag: null, events: [], lagged: 0, dirty: true };
const visible = new Set();
const perf = { firstRender: null, bytes: 0 };
let tick = 0;
let wantBus = new URLSearchParams(location.search).get("bus");

function applyStatus(s) {
  Object.assign(S, { version: s.version, gw: s.gateway, up: s.uplink, sp: s.spool, util: s.util, polled: s.polled });
  if (s.full) {
    S.buses = s.buses;
    // Devices of one profile share their points' layout (sent once).
    S.devs = s.devices.map((d) => ({ layout: Object.assign(d.layout, { points: s.layouts[d.layout.points] }), dyn: d, card: null, dirty: true }));
    for (const k in TR) delete TR[k];
    buildCards();
  } else {
    for (const d of s.devices) {
      const D = S.devs[d.i];
      if (D) Object.assign(D, { dyn: d, dirty: true });
    }
  }
}

const io = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const i = Number(e.target.dataset.i);
    if (e.isIntersecting) { visible.add(i); fetchTrend(i); } else visible.delete(i);
  }
}, { rootMargin: "200px" });

function buildCards() {
  io.disconnect();
  visible.clear();
  const grid = $("devices");
  grid.replaceChildren();
  S.order = "";
  S.devs.forEach((D, i) => {
    D.card = el("article", "card device");
    D.card.dataset.device = D.layout.name;
    D.card.dataset.i = i;
    grid.append(D.card);
    io.observe(D.card);
  });
  // The bus asked for in the address applies once its option exists (after the first load).
  const bus = $("f-bus"), keep = wantBus !== null ? wantBus : bus.value;
  wantBus = null;
  bus.replaceChildren(bus.firstElementChild);
  for (const b of S.buses) { const o = el("option", null, b.name); o.value = b.name; bus.append(o); }
  bus.value = keep;
  $("device-names").replaceChildren(...S.devs.map((D) => { const o = el("option"); o.value = D.layout.name; return o; }));
}

// How urgently a device needs a look: its most severe point, an offline device as a fault.
function devRank(D) {
  let r = D.dyn.health === "offline" ? 3 : 0;
  for (const x of D.dyn.p) r = Math.max(r, rank(x[2]));
  return r;
}

function filters() {
  return { bus: $("f-bus").value, device: $("f-device").value.trim().toLowerCase(), state: $("f-state").value, point: $("f-point").value.trim().toLowerCase() };
}

function matches(D, f) {
  const p = D.dyn.p;
  if (f.bus && D.layout.bus !== f.bus) return false;
  if (f.device && !D.layout.name.toLowerCase().includes(f.device)) return false;
  if (f.state === "alarm" && !p.some((x) => rank(x[2]) >= 2)) return false;
  if (f.state === "fault" && !p.some((x) => x[2] === "fault" || (x[1] && x[1] !== "good"))) return false;
  if (f.state === "offline" && D.dyn.health !== "offline") return false;
  if (f.point && !D.layout.points.some((q) => q[0].toLowerCase().includes(f.point))) return false;
  return true;
}

function pointRow(D, i, j, now) {
  const [name, unit, alarm, limits] = D.layout.points[j];
  const [value, q, level, lastGood, exc] = D.dyn.p[j];
  const tr = el("tr", (level ? "level-" + level : "") + (q && q !== "good" ? " bad-quality" : ""));
  tr.dataset.point = name;
  tr.append(el("td", null, name));
  const v = el("td", "num", fmtValue(value, unit));
  if (alarm && level) v.append(el("span", "lvl-" + level, " " + t(level)));
  tr.append(v);
  const cell = el("td", "trend");
  const trend = TR[i];
  cell.append(sparkline(trend && trend.points[name], limits, Math.floor(now / ((trend && trend.bucketMs) || 5000))));
  tr.append(cell);
  const qc = el("td", null, quality(q) + (exc ? " " + exc : ""));
  // The spool's disk hangs or refuses writes: what was read since is sent live but not stored.
  const trouble = S.sp && S.sp.disk_trouble;
  if (trouble && S.polled[i] !== null && now - S.polled[i] * 1000 >= trouble.since_ms) {
    tr.classList.add("not-stored");
    qc.append(el("span", "err", " · " + t("not_stored")));
  }
  tr.append(qc);
  const age = q === "good" ? S.polled[i] : lastGood ? Math.round((now - lastGood) / 1000) : null;
  tr.append(el("td", "num", dur(age)));
  return tr;
}

function fillCard(i, now, pointFilter) {
  const D = S.devs[i], d = D.dyn, L = D.layout;
  D.card.className = "card device " + d.health;
  const h = el("h2", null, L.name + " ");
  h.append(el("span", "badge " + d.health, t("health_" + d.health)));
  const dl = el("dl");
  const polled = S.polled[i];
  const rows = [
    [t("bus") + " · " + t("unit"), L.bus + " · " + L.unit],
    [t("last_poll"), polled === null ? t("never") : dur(polled) + " " + t("ago")],
    [t("success"), d.success_rate === null ? "–" : (d.success_rate * 100).toFixed(1) + "%"],
  ];
  if (d.last_error) rows.push([t("last_error"), d.last_error, "err"]);
  facts(dl, rows);
  const table = el("table");
  const head = el("tr");
  for (const k of ["point", "value", "trend", "quality", "age"]) head.append(el("th", null, t(k)));
  table.append(head);
  // alarm points in alarm first, then the rest in order
  const idx = L.points.map((_, j) => j).sort((x, y) => rank(d.p[y][2]) - rank(d.p[x][2]));
  for (const j of idx) {
    if (pointFilter && !L.points[j][0].toLowerCase().includes(pointFilter)) continue;
    table.append(pointRow(D, i, j, now));
  }
  D.card.replaceChildren(h, dl, table);
  D.dirty = false;
  D.shownFilter = pointFilter;
}

function renderDevices(now) {
  const f = filters();
  let shown = 0;
  S.devs.forEach((D, i) => {
    const show = matches(D, f);
    D.card.hidden = !show;
    if (!show) return;
    shown++;
    if (D.dirty || visible.has(i) || D.shownFilter !== f.point) fillCard(i, now, f.point);
  });
  // Alarms on top: most severe first, the configured order among equals.
  const order = S.devs.map((D, i) => [devRank(D), i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map((x) => x[1]);
  const key = order.join(",");
  if (key !== S.order) { S.order = key; $("devices").append(...order.map((i) => S.devs[i].card)); }
  $("shown").textContent = shown + " / " + S.devs.length + " " + t("shown");
}

function renderAlarms() {
  const act = [];
  for (const D of S.devs) {
    D.dyn.p.forEach((x, j) => { if (rank(x[2]) >= 2) act.push([rank(x[2]), D.layout.name, D.layout.points[j][0], x[2], x[0]]); });
  }
  act.sort((a, b) => b[0] - a[0]);
  $("alarm-list").replaceChildren(...act.map(([, dev, pt, level, v]) =>
    el("li", "lvl-" + level, "⚠ " + t(level) + " — " + dev + " · " + pt + (v !== null ? " = " + num(v) : ""))));
  $("alarms").className = "alarms " + (act.length ? "active" : "none");
}

function renderLinks(now) {
  const up = S.up;
  $("uplink").className = "card " + (!up.configured ? "degraded" : up.connected ? "ok" : "bad");
  $("uplink-state").textContent = !up.configured ? t("not_configured") : up.connected ? "● " + t("connected") : "○ " + t("disconnected");
  const rows = [];
  if (up.endpoint) rows.push([t("endpoint"), up.endpoint]);
  if (up.since_ms) rows.push([t("since"), ago(up.since_ms, now)]);
  rows.push([t("last_ack"), ago(up.last_puback_ms, now)]);
  if (up.cert_days_left !== null && up.cert_days_left !== undefined) {
    const warn = up.cert_days_left < 30;
    rows.push([t("cert"), up.cert_days_left + " " + t("days") + (warn ? " — " + t("cert_warn") : ""), warn ? "warn" : null]);
  }
  if (up.last_error) rows.push([t("last_error"), up.last_error, "err"]);
  facts($("uplink-facts"), rows);
  const sp = S.sp;
  $("spool").className = "card " + (sp.disk_trouble ? "bad" : "ok");
  facts($("spool-facts"), [
    ...(sp.disk_trouble ? [[t("disk_trouble"), sp.disk_trouble.reason, "err"]] : []),
    ...(sp.uncaptured_readings > 0 ? [[t("uncaptured"), sp.uncaptured_readings, "err"]] : []),
    [t("backlog"), sp.readings + " " + t("readings") + ", " + sp.alarms + " " + t("alarms"), sp.alarms > 0 ? "warn" : null],
    [t("oldest"), sp.oldest_age_s === null ? "–" : dur(sp.oldest_age_s)],
    [t("size"), bytes(sp.bytes)],
    [t("backlog") + ", " + t("in_memory"), sp.head_readings + " " + t("readings")],
    [t("evicted"), sp.evicted_readings, sp.evicted_readings > 0 ? "warn" : null],
    [t("gaps"), sp.gaps, sp.gaps > 0 ? "warn" : null],
    [t("append_errors"), sp.append_errors, sp.append_errors > 0 ? "err" : null],
    [t("wear"), sp.written_bytes === null ? "–" : bytes(sp.written_bytes) + " (" + bytes(sp.written_bytes_per_day) + " " + t("per_day") + ")"],
  ]);
  $("bus-list").replaceChildren(...S.buses.map((b, k) =>
    el("li", null, t("bus") + " " + b.name + " — " + b.link + " · " + t("utilisation") + " " + Math.round((S.util[k] || 0) * 100) + "%")));
}

function render() {
  const g = S.gw, now = g.now_ms;
  $("gw-id").textContent = g.id;
  $("gw-version").textContent = "v" + g.version;
  $("clock").textContent = new Date(now).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB");
  $("uptime").textContent = dur(g.uptime_s);
  $("config").textContent = g.config_path + " (" + g.config_sha256.slice(0, 12) + ")";
  renderAlarms();
  renderLinks(now);
  renderDevices(now);
}

function renderLog() {
  if (!LOG.dirty) return;
  LOG.dirty = false;
  const loc = lang === "zh" ? "zh-CN" : "en-GB";
  $("log-rows").replaceChildren(...LOG.events.slice().reverse().map((e) => {
    const tr = el("tr", "level-" + e.level);
    tr.append(el("td", null, new Date(e.ts_ms).toLocaleTimeString(loc)), el("td", null, e.device + " · " + e.point));
    tr.append(el("td", "lvl-" + e.level, t(e.level) + (e.warn ? " (" + t(e.warn) + ")" : "")));
    tr.append(el("td", "lvl-" + e.prev, t(e.prev)), el("td", "num", e.value === null ? "–" : num(e.value)));
    return tr;
  }));
  $("no-events").classList.toggle("hidden", LOG.events.length > 0);
  $("log-lagged").classList.toggle("hidden", !LOG.lagged);
  $("log-lagged").textContent = LOG.lagged + " " + t("lagged");
}

// GET `url` with If-None-Match `etag`; null when nothing changed (304) or it failed.
async function fetchIfChanged(url, etag) {
  const r = await fetch(url, { cache: "no-store", headers: etag ? { "If-None-Match": etag } : {} });
  if (r.status !== 200) return null;
  return { etag: r.headers.get("ETag"), body: await r.json() };
}

async function fetchTrend(i) {
  const D = S.devs[i], have = TR[i] || { points: {}, at: -Infinity };
  if (!D || have.pending || performance.now() - have.at < 4000) return;
  have.pending = true;
  TR[i] = have;
  try {
    const since = Object.values(have.points).reduce((m, p) => Math.max(m, p.from + p.lo.length - 1), -1);
    const r = await fetchIfChanged("/api/trends?device=" + encodeURIComponent(D.layout.name) + (since >= 0 ? "&since=" + since : ""), have.etag);
    have.at = performance.now();
    if (!r || S.devs[i] !== D) return;
    for (const p of r.body.points) have.points[p.name] = mergeTrend(have.points[p.name], p);
    Object.assign(have, { etag: r.etag, bucketMs: r.body.bucket_ms });
    if (S.gw && !D.card.hidden) fillCard(i, S.gw.now_ms, filters().point);
  } catch (e) { /* the next round retries */ } finally { have.pending = false; }
}

async function fetchLog() {
  try {
    const r = await fetchIfChanged("/api/alarms" + (LOG.newest !== null ? "?since=" + LOG.newest : ""), LOG.etag);
    if (!r) return;
    const j = r.body;
    LOG.events = (j.full ? j.events : LOG.events.concat(j.events)).slice(-200);
    Object.assign(LOG, { newest: j.newest, lagged: j.lagged, etag: r.etag, dirty: true });
    renderLog();
  } catch (e) { /* the next round retries */ }
}

// What the page fetched (Resource Timing), and when it first showed the data: for the browser test.
function accountPerf() {
  for (const e of performance.getEntriesByType("resource")) perf.bytes += e.transferSize || 0;
  performance.clearResourceTimings();
  const out = $("perf"), fcp = performance.getEntriesByName("first-contentful-paint")[0];
  out.dataset.bytes = perf.bytes;
  out.dataset.elapsedMs = Math.round(performance.now());
  if (perf.firstRender !== null) out.dataset.firstRenderMs = Math.round(perf.firstRender);
  if (fcp) out.dataset.fcpMs = Math.round(fcp.startTime);
}

// Once, for whoever looks at the console (and the browser test): how long the first view took.
function firstRendered() {
  perf.firstRender = performance.now();
  accountPerf();
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  console.info("plantgate page: first render " + Math.round(perf.firstRender) + " ms, first contentful paint " +
    (fcp ? Math.round(fcp.startTime) : "?") + " ms, " + perf.bytes + " bytes fetched, " + S.devs.length + " devices");
}

async function refresh() {
  try {
    const r = await fetch("/api/status?since=" + encodeURIComponent(S.version), { cache: "no-store" });
    if (!r.ok) throw new Error(r.status);
    applyStatus(await r.json());
    $("stale").classList.add("hidden");
    render();
    if (perf.firstRender === null) requestAnimationFrame(firstRendered);
  } catch (e) {
    $("stale").classList.remove("hidden");
  }
  if (tick % 2 === 0) fetchLog();
  if (tick % 5 === 0) for (const i of visible) fetchTrend(i);
  tick++;
  accountPerf();
  setTimeout(refresh, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  applyStatic();
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("plantgate.lang", lang);
    applyStatic();
    for (const D of S.devs) D.dirty = true;
    LOG.dirty = true;
    renderLog();
    if (S.gw) render();
  });
  // Filters may come in the address (a tablet at the tank farm bookmarks ?bus=rio-1&state=alarm).
  const q = new URLSearchParams(location.search);
  for (const k of ["device", "state", "point"]) if (q.has(k)) $("f-" + k).value = q.get(k);
  $("filters").addEventListener("submit", (e) => e.preventDefault()); // Enter filters, never navigates
  for (const id of ["f-bus", "f-device", "f-state", "f-point"]) $(id).addEventListener("input", () => { if (S.gw) render(); });
  refresh();
});
