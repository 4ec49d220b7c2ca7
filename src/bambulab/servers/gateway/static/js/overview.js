// The farm overview: one card per printer, updated in place from the gateway's events.
//
// Each card is built once; an update touches only the nodes whose text changed. Deltas are
// batched per animation frame by FleetStore, and re-sorting happens at most once a second.

import {
  $, FleetStore, SnapshotLoader, category, fmtAgo, fmtClock, fmtDuration, h, initPage, setAttr, setText,
  stateLabel, wireStatus,
} from "./common.js";

const CATS = [
  ["printing", "Printing"], ["paused", "Paused"], ["error", "Error"], ["done", "Finished"],
  ["idle", "Idle"], ["offline", "Offline"],
];
const ORDER = { error: 0, paused: 1, printing: 2, done: 3, idle: 4, offline: 5 };

const store = new FleetStore();
const cards = new Map(); // serial -> {root, refs}
const thumbs = new SnapshotLoader({ interval: 10000, concurrency: 4 });
const grid = $("#grid");
const view = {
  filter: new Set(),
  search: "",
  sort: localStorage.getItem("bambu.sort") || "state",
  cameras: localStorage.getItem("bambu.cameras") !== "off",
};
let lastSort = 0;
let sortPending = false;

function temp(label, cls) {
  const value = h("b", { class: "num" });
  const target = h("span", { class: "tgt num" });
  const el = h("div", { class: `stat ${cls}` }, h("span", { class: "lbl", text: label }), h("span", { class: "tv" }, value, target));
  return { el, value, target };
}

function buildCard(p) {
  const name = h("a", { class: "name", href: `/printers/${encodeURIComponent(p.serial)}` });
  const model = h("span", { class: "model" });
  const pill = h("span", { class: "pill" }); // no live region: 200 cards would chatter
  const img = h("img", { alt: "", loading: "lazy", decoding: "async", width: "320", height: "180" });
  const nocam = h("span", { class: "nocam" });
  const thumb = h("a", { class: "thumb", href: `/printers/${encodeURIComponent(p.serial)}`, tabindex: "-1", "aria-hidden": "true" }, img, nocam);
  const stageName = h("span", { class: "stage-name" });
  const file = h("span", { class: "file" });
  const fill = h("i");
  const bar = h("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, fill);
  const pct = h("span", { class: "pct num" });
  const left = h("b", { class: "num" });
  const finish = h("b", { class: "num" });
  const layer = h("b", { class: "num" });
  const nozzle = temp("Nozzle", "t-nozzle");
  const bed = temp("Bed", "t-bed");
  const chamber = temp("Chamber", "t-chamber");
  const ams = h("div", { class: "ams hide-wall" });
  const alerts = h("ul", { class: "alerts", "aria-label": "Alerts" });
  const seen = h("span", { class: "seen-text" });
  const serial = h("span", { class: "serial hide-wall", text: p.serial });
  const root = h("article", { class: "card", "data-serial": p.serial, "aria-label": p.name || p.serial },
    h("div", { class: "card-head" }, name, model, pill),
    thumb,
    h("div", { class: "body" },
      h("div", { class: "stage" }, stageName, file),
      h("div", { class: "progress" }, bar, pct),
      h("div", { class: "stats" },
        h("div", { class: "stat" }, h("span", { class: "lbl", text: "Time left" }), left),
        h("div", { class: "stat" }, h("span", { class: "lbl", text: "Done at" }), finish),
        h("div", { class: "stat" }, h("span", { class: "lbl", text: "Layer" }), layer)),
      h("div", { class: "stats temps" }, nozzle.el, bed.el, chamber.el),
      ams,
      alerts,
      h("div", { class: "seen" }, seen, serial)));
  const refs = { name, model, pill, img, nocam, thumb, stageName, file, fill, bar, pct, left, finish, layer, nozzle, bed, chamber, ams, alerts, seen, amsKey: "", hmsKey: "" };
  return { root, refs, cat: "" };
}

function setTemp(t, value, target) {
  setText(t.value, value === null || value === undefined ? "–" : `${Math.round(value)}°`);
  setText(t.target, target ? `/${Math.round(target)}°` : "");
}

function renderAms(refs, ams) {
  const units = (ams && ams.units) || [];
  const ext = ams && ams.external;
  const key = JSON.stringify([units, ext]);
  if (key === refs.amsKey) return;
  refs.amsKey = key;
  const parts = [];
  for (const unit of units) {
    const trays = (unit.trays || []).map((t) => {
      const sw = h("span", { class: t.color ? "swatch" : "swatch empty" });
      if (t.color) sw.style.setProperty("--sw", t.color.slice(0, 7));
      const label = t.material ? `${t.material}${t.remaining !== null && t.remaining !== undefined ? ` ${t.remaining}%` : ""}` : "empty";
      return h("span", { class: "tray", title: `AMS ${unit.id + 1} slot ${t.id + 1}: ${label}` }, sw, h("small", { class: "num", text: t.material && t.remaining !== null && t.remaining !== undefined ? `${t.remaining}%` : "\u00a0" }), h("small", { text: t.material || "empty" }));
    });
    const hum = unit.humidity !== null && unit.humidity !== undefined ? h("span", { class: "hum", title: "AMS humidity level", text: `Hum ${unit.humidity}` }) : null;
    parts.push(h("span", { class: "ams-unit", "aria-label": `AMS ${unit.id + 1}` }, ...trays, hum));
  }
  if (ext && ext.material) {
    const sw = h("span", { class: ext.color ? "swatch" : "swatch empty" });
    if (ext.color) sw.style.setProperty("--sw", ext.color.slice(0, 7));
    parts.push(h("span", { class: "tray", title: `External spool: ${ext.material}` }, sw, h("small", { text: "Ext" }), h("small", { text: ext.material })));
  }
  refs.ams.replaceChildren(...parts);
  refs.ams.hidden = parts.length === 0;
}

function renderAlerts(refs, p) {
  const hms = p.hms || [];
  const err = p.print_error;
  const key = JSON.stringify([hms, err]);
  if (key === refs.hmsKey) return;
  refs.hmsKey = key;
  const items = hms.map((a) => h("li", { class: "alert", "data-sev": a.severity || "common" }, h("code", { text: a.code }), a.text || "Unknown HMS code"));
  if (err) items.push(h("li", { class: "alert", "data-sev": "serious" }, h("code", { text: err.code }), err.text || "Print error"));
  refs.alerts.replaceChildren(...items);
  refs.alerts.hidden = items.length === 0;
}

function update(card, p) {
  const r = card.refs;
  const cat = category(p);
  if (card.cat !== cat) {
    card.root.dataset.cat = cat;
    card.cat = cat;
  }
  setText(r.name, p.name || p.serial);
  setText(r.model, p.model || "");
  r.model.hidden = !p.model;
  setText(r.pill, stateLabel(p));
  const active = p.state === "RUNNING" || p.state === "PAUSE" || p.state === "PREPARE";
  setText(r.stageName, p.online ? (p.stage_name || (active ? "Printing" : "")) : "");
  setText(r.file, p.file || "");
  setAttr(r.file, "title", p.file || null);
  const progress = p.progress ?? null;
  const shown = active || p.state === "FINISH" || p.state === "FAILED" ? progress : null;
  const scale = String((shown ?? 0) / 100);
  if (r.fill.style.getPropertyValue("--p") !== scale) r.fill.style.setProperty("--p", scale);
  setAttr(r.bar, "aria-valuenow", shown ?? 0);
  setText(r.pct, shown === null ? "–" : `${shown}%`);
  setText(r.left, active ? fmtDuration(p.remaining_minutes) : "–");
  setText(r.finish, active ? fmtClock(p.finish_at) : "–");
  setText(r.layer, p.layer !== null && p.layer !== undefined && p.total_layers ? `${p.layer} / ${p.total_layers}` : "–");
  const t = p.temperatures || {};
  if (Array.isArray(t.nozzles) && t.nozzles.length > 1) {
    // two nozzles (H2D): both temperatures, the active one's target
    setText(r.nozzle.value, t.nozzles.map((n) => (n.temp === null || n.temp === undefined ? "–" : `${Math.round(n.temp)}°`)).join(" "));
    setText(r.nozzle.target, t.nozzle_target ? `/${Math.round(t.nozzle_target)}°` : "");
  } else {
    setTemp(r.nozzle, t.nozzle, t.nozzle_target);
  }
  setTemp(r.bed, t.bed, t.bed_target);
  setTemp(r.chamber, t.chamber, t.chamber_target);
  r.chamber.el.classList.toggle("na", t.chamber === null || t.chamber === undefined);
  renderAms(r, p.ams);
  renderAlerts(r, p);
  setSeen(card, p);
  const cam = view.cameras && p.camera && p.online;
  const src = cam ? `/api/v1/printers/${encodeURIComponent(p.serial)}/camera/snapshot.jpg?fallback=1` : "";
  if ((r.img.dataset.src || "") !== src) {
    r.img.dataset.src = src;
    if (src) {
      thumbs.watch(r.img);
      thumbs.enqueue(r.img);
    } else {
      r.img.removeAttribute("src");
      delete r.img.dataset.loaded;
    }
  }
  r.img.hidden = !cam;
  setText(r.nocam, !p.camera ? "No camera" : !p.online ? "Offline" : !view.cameras ? "Camera off" : "");
  r.nocam.hidden = Boolean(cam);
}

function setSeen(card, p) {
  const age = store.age(p);
  setText(card.refs.seen, p.online ? `Updated ${fmtAgo(age)}` : `Offline · last seen ${fmtAgo(age)}`);
}

// ------------------------------------------------------------------ filter, search, sort, counts

function matches(p, cat) {
  if (view.filter.size && !view.filter.has(cat)) return false;
  if (view.search) {
    const q = view.search;
    return (p.name || "").toLowerCase().includes(q) || p.serial.toLowerCase().includes(q) || (p.model || "").toLowerCase().includes(q);
  }
  return true;
}

function compare(a, b) {
  const pa = store.printers.get(a);
  const pb = store.printers.get(b);
  const byName = (pa.name || pa.serial).localeCompare(pb.name || pb.serial, undefined, { numeric: true });
  if (view.sort === "name") return byName;
  if (view.sort === "left") {
    const la = pa.online && pa.remaining_minutes !== null && pa.remaining_minutes !== undefined && pa.state === "RUNNING" ? pa.remaining_minutes : Infinity;
    const lb = pb.online && pb.remaining_minutes !== null && pb.remaining_minutes !== undefined && pb.state === "RUNNING" ? pb.remaining_minutes : Infinity;
    return la - lb || byName;
  }
  return ORDER[category(pa)] - ORDER[category(pb)] || byName;
}

function reorder() {
  lastSort = performance.now();
  sortPending = false;
  const order = [...cards.keys()].sort(compare);
  let i = 0;
  const children = grid.children;
  for (const serial of order) {
    const el = cards.get(serial).root;
    if (children[i] !== el) grid.insertBefore(el, children[i] || null);
    i += 1;
  }
}

function requestSort() {
  if (sortPending) return;
  const wait = Math.max(0, 1000 - (performance.now() - lastSort));
  sortPending = true;
  setTimeout(() => requestAnimationFrame(reorder), wait);
}

function updateCounts() {
  const counts = Object.fromEntries(CATS.map(([c]) => [c, 0]));
  let shown = 0;
  for (const [serial, card] of cards) {
    const p = store.printers.get(serial);
    counts[card.cat] += 1;
    const visible = matches(p, card.cat);
    if (card.root.hidden === visible) card.root.hidden = !visible;
    if (visible) shown += 1;
  }
  for (const [cat] of CATS) setText($(`#count-${cat} b`), counts[cat]);
  setText($("#total"), `${shown} of ${cards.size} printers`);
  $("#empty").hidden = cards.size !== 0;
  $("#nomatch").hidden = cards.size === 0 || shown !== 0;
}

function render(changed, full) {
  if (full) {
    for (const [serial, card] of cards) {
      if (!store.printers.has(serial)) {
        thumbs.unwatch(card.refs.img);
        card.root.remove();
        cards.delete(serial);
      }
    }
  }
  const serials = full ? store.printers.keys() : changed;
  let added = false;
  for (const serial of serials) {
    const p = store.printers.get(serial);
    if (!p) continue;
    let card = cards.get(serial);
    if (!card) {
      card = buildCard(p);
      cards.set(serial, card);
      grid.append(card.root);
      added = true;
    }
    const before = card.cat;
    update(card, p);
    if (before !== card.cat && view.sort === "state") requestSort();
    else if (view.sort === "left" && !full) requestSort();
  }
  if (added || full) reorder();
  updateCounts();
  if (!document.body.dataset.ready && cards.size) performance.mark("bambu:first-render");
  document.body.dataset.ready = "1";
}

// ------------------------------------------------------------------ controls

function initControls() {
  const counts = $("#counts");
  for (const [cat, label] of CATS) {
    const btn = h("button", { class: "count", id: `count-${cat}`, type: "button", "aria-pressed": "false", title: `Show only ${label.toLowerCase()}` },
      h("span", { class: "dot" }), h("b", { class: "num", text: "0" }), h("span", { text: label }));
    btn.style.setProperty("--c", `var(--${cat === "done" ? "done" : cat})`);
    btn.addEventListener("click", () => {
      if (view.filter.has(cat)) view.filter.delete(cat);
      else view.filter.add(cat);
      btn.setAttribute("aria-pressed", String(view.filter.has(cat)));
      updateCounts();
    });
    counts.append(btn);
  }
  const search = $("#search");
  search.addEventListener("input", () => {
    view.search = search.value.trim().toLowerCase();
    updateCounts();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement !== search) {
      e.preventDefault();
      search.focus();
    }
  });
  const sort = $("#sort");
  sort.value = view.sort;
  sort.addEventListener("change", () => {
    view.sort = sort.value;
    localStorage.setItem("bambu.sort", view.sort);
    reorder();
  });
  const cams = $("#cams");
  cams.setAttribute("aria-pressed", String(view.cameras));
  cams.addEventListener("click", () => {
    view.cameras = !view.cameras;
    localStorage.setItem("bambu.cameras", view.cameras ? "on" : "off");
    cams.setAttribute("aria-pressed", String(view.cameras));
    for (const [serial, card] of cards) update(card, store.printers.get(serial));
  });
}

initPage();
initControls();
wireStatus(store);
store.onChange(render);
store.connect();
// "last seen" ticks locally: one cheap pass every 5 s (text writes skip when unchanged).
setInterval(() => {
  for (const [serial, card] of cards) setSeen(card, store.printers.get(serial));
}, 5000);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) for (const card of cards.values()) if (!card.refs.img.hidden && !card.refs.img.dataset.loaded) thumbs.enqueue(card.refs.img);
});
window.bambuDashboard = { store, cards };
