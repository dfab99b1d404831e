// plantgate status page: polls /api/status every second and renders it. No dependencies.
"use strict";

const T = {
  en: {
    clock: "Clock", uptime: "Up", config: "Config", active_alarms: "Active alarms", no_alarms: "No active alarms",
    uplink: "Command platform link", spool: "Local store", connected: "Connected", disconnected: "Not connected",
    not_configured: "No upstream configured", endpoint: "Broker", since: "Since", last_ack: "Last acknowledgement",
    last_error: "Last error", cert: "Certificate expires", days: "days", cert_warn: "renew soon",
    backlog: "Waiting to send", readings: "readings", alarms: "alarms", size: "Disk", oldest: "Oldest waiting",
    evicted: "Readings dropped (store full)", append_errors: "Write errors", wear: "Written to storage", per_day: "per day",
    in_memory: "in memory (not yet on disk)", gaps: "Gaps to announce",
    bus: "Bus", utilisation: "line busy", device: "Device", unit: "unit", health_ok: "OK", health_degraded: "Degraded",
    health_offline: "Offline", health_unknown: "Not polled yet", last_poll: "Last poll", success: "Success",
    point: "Point", value: "Value", quality: "Quality", age: "Age", level: "Alarm",
    stale: "The gateway does not answer: the values below are not current.",
    low: "LOW", high: "HIGH", fault: "FAULT", normal: "normal", unknown: "unknown",
    hi: "HI", hihi: "HIHI", lo: "LO", lolo: "LOLO", inhibit: "inhibited", warning: "WARNING",
    good: "good", timeout: "timeout", exception: "exception", bad_frame: "bad reply", disconnected_q: "line down", offline: "offline", bad_value: "not a number",
    s: "s", ago: "ago", never: "never", lang: "中文",
  },
  zh: {
    clock: "时间", uptime: "运行", config: "配置", active_alarms: "当前报警", no_alarms: "无报警",
    uplink: "指挥平台连接", spool: "本地缓存", connected: "已连接", disconnected: "未连接",
    not_configured: "未配置上行", endpoint: "服务器", since: "连接于", last_ack: "最近确认",
    last_error: "最近错误", cert: "证书到期", days: "天", cert_warn: "请尽快更新",
    backlog: "待发送", readings: "条读数", alarms: "条报警", size: "磁盘", oldest: "最早待发",
    evicted: "已丢弃读数（缓存满）", append_errors: "写入错误", wear: "存储写入量", per_day: "每天",
    in_memory: "在内存中（尚未落盘）", gaps: "待通告的缺口",
    bus: "总线", utilisation: "线路占用", device: "设备", unit: "站号", health_ok: "正常", health_degraded: "部分异常",
    health_offline: "离线", health_unknown: "尚未采集", last_poll: "最近采集", success: "成功率",
    point: "测点", value: "数值", quality: "质量", age: "时长", level: "报警",
    stale: "网关无响应：以下数值不是最新的。",
    low: "低报", high: "高报", fault: "故障", normal: "正常", unknown: "未知",
    hi: "高限", hihi: "高高限", lo: "低限", lolo: "低低限", inhibit: "屏蔽", warning: "预警",
    good: "正常", timeout: "超时", exception: "异常应答", bad_frame: "报文错误", disconnected_q: "线路断开", offline: "离线", bad_value: "非数值",
    s: "秒", ago: "前", never: "从未", lang: "English",
  },
};

function pickLang() {
  const q = new URLSearchParams(location.search).get("lang");
  if (q === "zh" || q === "en") return q;
  const saved = localStorage.getItem("plantgate.lang");
  if (saved === "zh" || saved === "en") return saved;
  return (navigator.languages || [navigator.language || "en"]).some((l) => String(l).toLowerCase().startsWith("zh")) ? "zh" : "en";
}

let lang = pickLang();
let last = null;
const t = (k) => (T[lang] && T[lang][k]) || T.en[k] || k;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function dur(s) {
  if (s === null || s === undefined) return "–";
  if (s < 120) return s + " " + t("s");
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

function ago(ms, now) { return ms ? dur(Math.max(0, Math.round((now - ms) / 1000))) + " " + t("ago") : t("never"); }

function bytes(n) {
  if (n < 1024) return Math.round(n) + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
  return (n / 1073741824).toFixed(2) + " GiB";
}

function fmtValue(p) {
  if (p.value === null || p.value === undefined) return "–";
  if (typeof p.value === "number" && !Number.isInteger(p.value)) return p.value.toFixed(2).replace(/\.?0+$/, "") + (p.unit ? " " + p.unit : "");
  return String(p.value) + (p.unit ? " " + p.unit : "");
}

function quality(q) { return q === "disconnected" ? t("disconnected_q") : t(q || "unknown"); }

function facts(dl, rows) {
  dl.replaceChildren();
  for (const [k, v, cls] of rows) {
    dl.append(el("dt", null, k));
    dl.append(el("dd", cls || null, v));
  }
}

function applyStatic() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  document.getElementById("lang").textContent = t("lang");
}

function render(s) {
  const now = s.gateway.now_ms;
  document.getElementById("gw-id").textContent = s.gateway.id;
  document.getElementById("gw-version").textContent = "v" + s.gateway.version;
  document.getElementById("clock").textContent = new Date(now).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB");
  document.getElementById("uptime").textContent = dur(s.gateway.uptime_s);
  document.getElementById("config").textContent = s.gateway.config_path + " (" + s.gateway.config_sha256.slice(0, 12) + ")";

  // Active alarms first, unmistakable.
  const box = document.getElementById("alarms");
  const list = document.getElementById("alarm-list");
  list.replaceChildren();
  for (const a of s.active_alarms) {
    list.append(el("li", "lvl-" + a.level, "⚠ " + t(a.level) + " — " + a.device + " · " + a.point + (a.value !== null ? " = " + a.value : "")));
  }
  box.className = "alarms " + (s.active_alarms.length ? "active" : "none");

  // Uplink
  const up = s.uplink;
  const upCard = document.getElementById("uplink");
  const st = document.getElementById("uplink-state");
  upCard.className = "card " + (!up.configured ? "degraded" : up.connected ? "ok" : "bad");
  st.textContent = !up.configured ? t("not_configured") : up.connected ? "● " + t("connected") : "○ " + t("disconnected");
  const rows = [];
  if (up.endpoint) rows.push([t("endpoint"), up.endpoint]);
  if (up.since_ms) rows.push([t("since"), ago(up.since_ms, now)]);
  rows.push([t("last_ack"), ago(up.last_puback_ms, now)]);
  if (up.cert_days_left !== null && up.cert_days_left !== undefined) {
    const warn = up.cert_days_left < 30;
    rows.push([t("cert"), up.cert_days_left + " " + t("days") + (warn ? " — " + t("cert_warn") : ""), warn ? "warn" : null]);
  }
  if (up.last_error) rows.push([t("last_error"), up.last_error, "err"]);
  facts(document.getElementById("uplink-facts"), rows);

  // Spool
  const sp = s.spool;
  facts(document.getElementById("spool-facts"), [
    [t("backlog"), sp.readings + " " + t("readings") + ", " + sp.alarms + " " + t("alarms"), sp.alarms > 0 ? "warn" : null],
    [t("oldest"), sp.oldest_age_s === null ? "–" : dur(sp.oldest_age_s)],
    [t("size"), bytes(sp.bytes)],
    [t("backlog") + ", " + t("in_memory"), sp.head_readings + " " + t("readings")],
    [t("evicted"), sp.evicted_readings, sp.evicted_readings > 0 ? "warn" : null],
    [t("gaps"), sp.gaps, sp.gaps > 0 ? "warn" : null],
    [t("append_errors"), sp.append_errors, sp.append_errors > 0 ? "err" : null],
    [t("wear"), sp.written_bytes === null ? "–" : bytes(sp.written_bytes) + " (" + bytes(sp.written_bytes_per_day) + " " + t("per_day") + ")"],
  ]);

  // Buses and devices
  const buses = document.getElementById("buses");
  buses.replaceChildren();
  for (const b of s.buses) {
    const sec = el("section", "bus");
    sec.append(el("h2", null, t("bus") + " " + b.name + " — " + b.link + " · " + t("utilisation") + " " + Math.round(b.utilisation * 100) + "%"));
    const grid = el("div", "devices");
    for (const d of b.devices) {
      const card = el("article", "card device " + d.health);
      card.dataset.device = d.name;
      const h = el("h2", null, d.name + " ");
      h.append(el("span", "badge " + d.health, t("health_" + d.health)));
      card.append(h);
      const dl = el("dl");
      const rows = [
        [t("unit"), d.unit],
        [t("last_poll"), ago(d.last_poll_ms, now)],
        [t("success"), d.success_rate === null ? "–" : (d.success_rate * 100).toFixed(1) + "%"],
      ];
      if (d.last_error) rows.push([t("last_error"), d.last_error, "err"]);
      facts(dl, rows);
      card.append(dl);
      const table = el("table");
      const head = el("tr");
      for (const k of ["point", "value", "quality", "age"]) head.append(el("th", null, t(k)));
      table.append(head);
      // alarm points in alarm first, then the rest in order
      const pts = [...d.points].sort((x, y) => (rank(y.level) - rank(x.level)));
      for (const p of pts) {
        const tr = el("tr", (p.level ? "level-" + p.level : "") + (p.quality && p.quality !== "good" ? " bad-quality" : ""));
        tr.dataset.point = p.name;
        tr.append(el("td", null, p.name));
        const v = el("td", "num", fmtValue(p));
        if (p.alarm && p.level) v.append(el("span", "lvl-" + p.level, " " + t(p.level)));
        tr.append(v);
        tr.append(el("td", null, quality(p.quality) + (p.exception ? " " + p.exception : "")));
        tr.append(el("td", "num", p.quality === "good" ? dur(p.age_s) : dur(p.last_good_age_s)));
        table.append(tr);
      }
      card.append(table);
      grid.append(card);
    }
    sec.append(grid);
    buses.append(sec);
  }
}

// As AlarmLevel::severity(): the outer limits, then fault, then the first levels, then a warning.
function rank(level) { return { high: 4, hihi: 4, lolo: 4, fault: 3, low: 2, hi: 2, lo: 2, warning: 1 }[level] || 0; }

async function refresh() {
  try {
    const r = await fetch("/api/status", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status);
    last = await r.json();
    document.getElementById("stale").classList.add("hidden");
    render(last);
  } catch (e) {
    document.getElementById("stale").classList.remove("hidden");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  applyStatic();
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("plantgate.lang", lang);
    applyStatic();
    if (last) render(last);
  });
  refresh();
  setInterval(refresh, 1000);
});
