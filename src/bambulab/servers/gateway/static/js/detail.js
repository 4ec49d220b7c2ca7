// One printer: live camera, full status, temperature chart, job and alert history, control.

import {
  $, ApiError, FleetStore, api, category, fmtAgo, fmtClock, fmtDateTime, fmtDuration, h, initPage, setText,
  stateLabel, wireStatus,
} from "./common.js";

const serial = $(".detail").dataset.serial;
const enc = encodeURIComponent(serial);
const store = new FleetStore([serial]);
const TOKEN_KEY = "bambu.token";
let gatewayInfo = { control_enabled: false, history: false };
let amsKey = "";
let hmsKey = "";

// ------------------------------------------------------------------ status

function row(dl, label, value) {
  dl.append(h("dt", { text: label }), h("dd", { class: "num", text: value }));
}

function temp(value, target) {
  if (value === null || value === undefined) return "–";
  return target ? `${Math.round(value)}° / ${Math.round(target)}°` : `${Math.round(value)}°`;
}

function renderStatus(p) {
  const cat = category(p);
  const root = $(".detail");
  root.dataset.cat = cat;
  document.title = `${p.name || serial} · Bambu farm`;
  setText($("#d-name"), p.name || serial);
  setText($("#d-model"), p.model || "");
  setText($("#d-pill"), stateLabel(p));
  const pill = $("#d-pill");
  pill.style.setProperty("--c", `var(--${cat})`);
  setText($("#d-sub"), `${serial}${p.firmware ? ` · firmware ${p.firmware}` : ""} · ${p.online ? `updated ${fmtAgo(store.age(p))}` : `offline, last seen ${fmtAgo(store.age(p))}`}`);
  const shown = ["RUNNING", "PAUSE", "PREPARE", "FINISH", "FAILED"].includes(p.state) ? p.progress ?? null : null;
  const fill = $("#d-bar i");
  const scale = String((shown ?? 0) / 100);
  if (fill.style.getPropertyValue("--p") !== scale) fill.style.setProperty("--p", scale);
  $("#d-bar").setAttribute("aria-valuenow", String(shown ?? 0));
  setText($("#d-pct"), shown === null ? "–" : `${shown}%`);
  const dl = $("#d-status");
  const t = p.temperatures || {};
  const f = p.fans || {};
  const active = p.state === "RUNNING" || p.state === "PAUSE" || p.state === "PREPARE";
  const rows = [];
  const dlNew = document.createDocumentFragment();
  const add = (label, value) => rows.push([label, value]);
  add("Stage", p.stage_name || "–");
  add("File", p.file ? `${p.file}${p.plate ? ` (plate ${p.plate})` : ""}` : "–");
  add("Progress", p.progress !== null && p.progress !== undefined ? `${p.progress}%` : "–");
  add("Layer", p.layer !== null && p.layer !== undefined && p.total_layers ? `${p.layer} / ${p.total_layers}` : "–");
  add("Time left", active ? fmtDuration(p.remaining_minutes) : "–");
  add("Finishes at", active ? fmtClock(p.finish_at) : "–");
  add("Nozzle", temp(t.nozzle, t.nozzle_target));
  add("Bed", temp(t.bed, t.bed_target));
  if (t.chamber !== null && t.chamber !== undefined) add("Chamber", temp(t.chamber, t.chamber_target));
  add("Fans", [f.part, f.aux, f.chamber].some((x) => x !== null && x !== undefined) ? `part ${f.part ?? "–"}% · aux ${f.aux ?? "–"}% · chamber ${f.chamber ?? "–"}%` : "–");
  add("Speed", ["", "Silent", "Standard", "Sport", "Ludicrous"][p.speed_level] || "–");
  const key = JSON.stringify(rows);
  if (dl.dataset.key !== key) {
    dl.dataset.key = key;
    for (const [label, value] of rows) row(dlNew, label, value);
    dl.replaceChildren(dlNew);
  }
  renderAlerts(p);
  renderAms(p.ams);
  renderCamera(p);
}

function renderAlerts(p) {
  const key = JSON.stringify([p.hms, p.print_error]);
  if (key === hmsKey) return;
  hmsKey = key;
  const items = (p.hms || []).map((a) => h("li", { class: "alert", "data-sev": a.severity || "common" },
    h("code", { text: a.code }), a.text || "Unknown HMS code",
    a.url ? h("span", {}, " · ", h("a", { href: a.url, target: "_blank", rel: "noopener", text: "wiki" })) : null));
  if (p.print_error) items.push(h("li", { class: "alert", "data-sev": "serious" }, h("code", { text: p.print_error.code }), p.print_error.text || "Print error"));
  $("#d-alerts").replaceChildren(...items);
  $("#d-noalerts").hidden = items.length > 0;
}

function renderAms(ams) {
  const key = JSON.stringify(ams);
  if (key === amsKey) return;
  amsKey = key;
  const parts = [];
  for (const unit of (ams && ams.units) || []) {
    const trays = (unit.trays || []).map((t) => {
      const sw = h("span", { class: t.color ? "swatch" : "swatch empty" });
      if (t.color) sw.style.setProperty("--sw", t.color.slice(0, 7));
      return h("span", { class: "tray", title: t.material || "empty" }, sw, h("small", { text: t.material || "–" }),
        h("small", { text: t.remaining !== null && t.remaining !== undefined ? `${t.remaining}%` : "" }));
    });
    const hum = unit.humidity !== null && unit.humidity !== undefined ? `humidity ${unit.humidity}` : "";
    const tmp = unit.temperature !== null && unit.temperature !== undefined ? `${Math.round(unit.temperature)}°` : "";
    parts.push(h("div", { class: "ams-unit" }, h("b", { text: `AMS ${unit.id + 1}` }), ...trays, h("span", { class: "hum", text: [hum, tmp].filter(Boolean).join(" · ") })));
  }
  if (ams && ams.external && ams.external.material) {
    const sw = h("span", { class: ams.external.color ? "swatch" : "swatch empty" });
    if (ams.external.color) sw.style.setProperty("--sw", ams.external.color.slice(0, 7));
    parts.push(h("div", { class: "ams-unit" }, h("b", { text: "External" }), h("span", { class: "tray" }, sw, h("small", { text: ams.external.material }))));
  }
  if (!parts.length) parts.push(h("span", { class: "muted", text: "No AMS." }));
  $("#d-ams").replaceChildren(...parts);
}

let cameraOn = null;
function renderCamera(p) {
  const want = Boolean(p.camera && p.online);
  if (want === cameraOn) return;
  cameraOn = want;
  const live = $("#d-live");
  if (!want) {
    live.replaceChildren(h("span", { text: p.camera ? "Camera unavailable while offline" : "This printer has no camera" }));
    return;
  }
  // One MJPEG stream, shared upstream by the gateway's camera hub with every other viewer.
  const img = h("img", { alt: `Live camera of ${p.name || serial}`, src: `/api/v1/printers/${enc}/camera/stream.mjpeg` });
  img.addEventListener("error", () => {
    cameraOn = null;
    live.replaceChildren(h("span", { text: "Camera unavailable, retrying…" }));
    setTimeout(() => { if (cameraOn === null) renderCamera(store.printers.get(serial) || p); }, 5000);
  });
  live.replaceChildren(img);
}

// ------------------------------------------------------------------ chart

function drawChart(samples) {
  const svg = $("#chart");
  const W = Math.max(300, Math.round(svg.clientWidth || 600));
  const H = 220;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const pad = { l: 34, r: 8, t: 8, b: 20 };
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  svg.replaceChildren();
  const times = samples.map((s) => (typeof s.t === "number" ? s.t * 1000 : Date.parse(s.t)));
  const series = ["nozzle", "bed", "chamber"];
  const values = samples.flatMap((s) => series.map((k) => s[k]).filter((v) => typeof v === "number"));
  if (!samples.length || !values.length) {
    $("#chart-note").hidden = false;
    setText($("#chart-note"), "No temperature samples yet.");
    return;
  }
  $("#chart-note").hidden = true;
  const t0 = Math.min(...times);
  const t1 = Math.max(...times, t0 + 1);
  const vmax = Math.max(50, Math.ceil(Math.max(...values) / 50) * 50);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - (v / vmax) * (H - pad.t - pad.b);
  for (let v = 0; v <= vmax; v += 50) {
    svg.append(el("line", { class: "axis", x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
    const label = el("text", { x: 4, y: y(v) + 4 });
    label.textContent = `${v}°`;
    svg.append(label);
  }
  for (const k of series) {
    let d = "";
    samples.forEach((s, i) => {
      if (typeof s[k] !== "number") return;
      d += `${d ? "L" : "M"}${x(times[i]).toFixed(1)},${y(s[k]).toFixed(1)}`;
    });
    if (d) svg.append(el("path", { class: k, d, "vector-effect": "non-scaling-stroke" }));
  }
  setText($("#chart-range"), `${fmtDateTime(t0 / 1000)} – ${fmtClock(new Date(t1).toISOString())}`);
}

async function loadTelemetry() {
  const since = new Date(Date.now() - 6 * 3600 * 1000).toISOString();
  try {
    const data = await api(`/api/v1/printers/${enc}/telemetry?since=${encodeURIComponent(since)}`);
    drawChart(data.samples || []);
  } catch (err) {
    $("#chart-note").hidden = false;
    setText($("#chart-note"), err instanceof ApiError && (err.status === 404 || err.status === 503) ? "Temperature history needs the gateway's history store." : `Could not load temperatures: ${err.message}`);
  }
}

// ------------------------------------------------------------------ history tables

function resultCell(result) {
  return h("td", {}, h("span", { class: "result", "data-r": (result || "").toLowerCase(), text: result || "–" }));
}

async function loadJobs() {
  const body = $("#jobs tbody");
  try {
    const data = await api(`/api/v1/history/jobs?printer=${enc}&limit=20`);
    const rows = (data.jobs || []).map((j) => h("tr", {},
      h("td", { text: fmtDateTime(j.started_at) }),
      h("td", { text: j.file || j.name || "–" }),
      resultCell(j.result),
      h("td", { class: "num", text: j.duration_seconds !== null && j.duration_seconds !== undefined ? fmtDuration(j.duration_seconds / 60) : "–" })));
    body.replaceChildren(...rows);
    $("#jobs-note").hidden = rows.length > 0;
    setText($("#jobs-note"), "No jobs recorded yet.");
  } catch (err) {
    $("#jobs-note").hidden = false;
    setText($("#jobs-note"), err instanceof ApiError && (err.status === 404 || err.status === 503) ? "Job history needs the gateway's history store." : `Could not load jobs: ${err.message}`);
  }
}

async function loadHmsHistory() {
  const body = $("#hms-history tbody");
  try {
    const data = await api(`/api/v1/printers/${enc}/hms/history`);
    const items = data.hms || data.events || data.alerts || [];
    const rows = items.map((a) => h("tr", {},
      h("td", { text: fmtDateTime(a.raised_at ?? a.raised_time) }),
      h("td", {}, h("code", { text: a.code || "–" })),
      h("td", { text: a.text || "–" }),
      h("td", { text: a.cleared_at ? fmtDateTime(a.cleared_at) : "active" })));
    body.replaceChildren(...rows);
    $("#hms-note").hidden = rows.length > 0;
    setText($("#hms-note"), "No alerts recorded.");
  } catch (err) {
    $("#hms-note").hidden = false;
    setText($("#hms-note"), err instanceof ApiError && (err.status === 404 || err.status === 503) ? "Alert history needs the gateway's history store." : `Could not load alerts: ${err.message}`);
  }
}

// ------------------------------------------------------------------ control

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function showControls() {
  const panel = $("#d-controls");
  panel.hidden = !gatewayInfo.control_enabled;
  const has = Boolean(token());
  $("#token-form").hidden = has;
  $("#control-buttons").hidden = !has;
}

async function control(action, body) {
  const msg = $("#control-msg");
  setText(msg, `${action}…`);
  try {
    await api(`/api/v1/printers/${enc}/control/${action}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token()}`, "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    setText(msg, `${action}: done`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showControls();
      setText(msg, "The gateway refused the token.");
    } else {
      setText(msg, `${action} failed: ${err.message}`);
    }
  }
}

function initControls() {
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("#token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("#token").value = "";
    showControls();
  });
  $("#token-forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showControls(); });
  const dialog = $("#confirm-stop");
  dialog.addEventListener("close", () => { if (dialog.returnValue === "stop") control("stop"); });
  for (const btn of document.querySelectorAll("#control-buttons [data-action]")) {
    btn.addEventListener("click", () => {
      const action = btn.dataset.action;
      if (action === "stop") {
        dialog.returnValue = "";
        dialog.showModal();
      } else if (action === "light") control("light", { on: btn.dataset.on === "true" });
      else control(action);
    });
  }
  $("#speed").addEventListener("change", (e) => {
    const level = Number(e.target.value);
    if (level) control("speed", { level });
    e.target.value = "";
  });
}

// ------------------------------------------------------------------ start

initPage();
wireStatus(store);
store.onChange(() => {
  const p = store.printers.get(serial);
  if (p) renderStatus(p);
  document.body.dataset.ready = "1";
});
store.connect();
initControls();
api("/api/v1/gateway").then((info) => {
  gatewayInfo = info;
  showControls();
}).catch(() => {});
api("/api/v1/gateway").then((info) => {
  if (info.history) {
    loadTelemetry();
    loadJobs();
    loadHmsHistory();
    setInterval(loadTelemetry, 60000);
  } else {
    for (const id of ["#chart-note", "#jobs-note", "#hms-note"]) {
      $(id).hidden = false;
      setText($(id), "History is not enabled on this gateway ([history] in its configuration).");
    }
    for (const el of document.querySelectorAll("#chart, .legend, #jobs, #hms-history")) el.hidden = true;
  }
}).catch(() => {});
window.addEventListener("printer-event", (e) => {
  if (!gatewayInfo.history) return;
  if (e.detail.serial === serial && /Finished|Failed|Started|Cancel/.test(e.detail.type || "")) loadJobs();
  if (e.detail.serial === serial && /Hms/i.test(e.detail.type || "")) loadHmsHistory();
});
setInterval(() => { const p = store.printers.get(serial); if (p) renderStatus(p); }, 5000);
