// plantgate status page: words in both languages and formatting helpers. No dependencies.
"use strict";

const T = {
  en: {
    clock: "Clock", uptime: "Up", config: "Config", active_alarms: "Active alarms", no_alarms: "No active alarms",
    uplink: "Command platform link", spool: "Local store", connected: "Connected", disconnected: "Not connected",
    not_configured: "No upstream configured", endpoint: "Broker", since: "Since", last_ack: "Last acknowledgement",
    last_error: "Last error", cert: "Certificate expires", days: "days", cert_warn: "renew soon",
    backlog: "Waiting to send", readings: "readings", alarms: "alarms", size: "Disk", oldest: "Oldest waiting",
    disk_trouble: "Disk trouble", uncaptured: "Readings dropped (disk refuses them)", not_stored: "not stored",
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
    trend: "Last 10 min", alarm_log: "Alarm log", time: "Time", prev: "Before", no_events: "No alarm or warning events since the gateway started",
    lagged: "events were missed (the page fell behind)", rise: "rising fast", stuck: "sensor stuck",
    filter: "Show", all: "all", f_state: "State", st_alarm: "in alarm", st_fault: "fault or bad reading", st_offline: "offline",
    f_point: "Point name", shown: "devices shown", of: "of", limits: "limits",
  },
  zh: {
    clock: "时间", uptime: "运行", config: "配置", active_alarms: "当前报警", no_alarms: "无报警",
    uplink: "指挥平台连接", spool: "本地缓存", connected: "已连接", disconnected: "未连接",
    not_configured: "未配置上行", endpoint: "服务器", since: "连接于", last_ack: "最近确认",
    last_error: "最近错误", cert: "证书到期", days: "天", cert_warn: "请尽快更新",
    backlog: "待发送", readings: "条读数", alarms: "条报警", size: "磁盘", oldest: "最早待发",
    disk_trouble: "磁盘故障", uncaptured: "已丢弃读数（磁盘拒写）", not_stored: "未存储",
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
    trend: "近10分钟", alarm_log: "报警记录", time: "时间", prev: "之前", no_events: "网关启动以来无报警或预警事件",
    lagged: "条事件未记录（页面处理不及）", rise: "上升过快", stuck: "传感器卡滞",
    filter: "显示", all: "全部", f_state: "状态", st_alarm: "报警中", st_fault: "故障或读数异常", st_offline: "离线",
    f_point: "测点名称", shown: "台设备已显示", of: "共", limits: "限值",
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

function num(v) {
  if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(2).replace(/\.?0+$/, "");
  return String(v);
}

function fmtValue(v, unit) {
  if (v === null || v === undefined) return "–";
  return num(v) + (unit ? " " + unit : "");
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

// As AlarmLevel::severity(): the outer limits, then fault, then the first levels, then a warning.
function rank(level) { return { high: 4, hihi: 4, lolo: 4, fault: 3, low: 2, hi: 2, lo: 2, warning: 1 }[level] || 0; }
