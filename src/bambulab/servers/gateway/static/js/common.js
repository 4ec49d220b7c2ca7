// Shared pieces of every page: theme, wall mode, formatting, JSON fetch, and the live fleet store.

export const $ = (sel, root = document) => root.querySelector(sel);

/** Create an element: h("div", {class: "x", text: "hi"}, child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

/** Set text only when it changed (cheap no-op writes keep 200 cards smooth). */
export function setText(el, value) {
  const text = value === null || value === undefined ? "" : String(value);
  if (el.textContent !== text) el.textContent = text;
}

export function setAttr(el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else {
    const v = value === true ? "" : String(value);
    if (el.getAttribute(name) !== v) el.setAttribute(name, v);
  }
}

// ------------------------------------------------------------------ theme and wall mode

const THEMES = ["auto", "light", "dark"];

export function applyTheme(theme) {
  const root = document.documentElement;
  if (theme === "light" || theme === "dark") root.dataset.theme = theme;
  else delete root.dataset.theme;
  const btn = $("#theme");
  if (btn) {
    btn.dataset.theme = theme;
    btn.title = `Theme: ${theme} (click to change)`;
    setText(btn, theme === "dark" ? "☾" : theme === "light" ? "☀" : "◐");
    btn.setAttribute("aria-label", `Theme: ${theme}`);
  }
}

function initTheme() {
  const params = new URLSearchParams(location.search);
  let theme = params.get("theme") || localStorage.getItem("bambu.theme") || "auto";
  if (!THEMES.includes(theme)) theme = "auto";
  applyTheme(theme);
  $("#theme")?.addEventListener("click", () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    localStorage.setItem("bambu.theme", theme);
    applyTheme(theme);
  });
}

export function setWall(on) {
  document.body.classList.toggle("wall", on);
  const btn = $("#wall");
  if (btn) btn.setAttribute("aria-pressed", String(on));
  const url = new URL(location.href);
  if (on) url.searchParams.set("wall", "1");
  else url.searchParams.delete("wall");
  history.replaceState(null, "", url);
}

function initWall() {
  const params = new URLSearchParams(location.search);
  setWall(params.get("wall") === "1");
  $("#wall")?.addEventListener("click", () => setWall(!document.body.classList.contains("wall")));
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    if (e.key === "w" && !e.ctrlKey && !e.metaKey && !e.altKey) setWall(!document.body.classList.contains("wall"));
    if (e.key === "Escape" && document.body.classList.contains("wall")) setWall(false);
  });
}

export function initPage() {
  initTheme();
  initWall();
}

// ------------------------------------------------------------------ formatting

export function fmtTemp(value, target) {
  if (value === null || value === undefined) return "–";
  const v = `${Math.round(value)}°`;
  return target ? `${v}` : v;
}

export function fmtDuration(minutes) {
  if (minutes === null || minutes === undefined) return "–";
  const m = Math.max(0, Math.round(minutes));
  if (m < 60) return `${m} min`;
  const hrs = Math.floor(m / 60);
  const rest = m % 60;
  if (hrs < 24) return `${hrs} h ${String(rest).padStart(2, "0")} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayClock = new Intl.DateTimeFormat(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** "14:32" today, "Tue 09:10" another day. */
export function fmtClock(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "–";
  const today = new Date();
  return d.toDateString() === today.toDateString() ? clock.format(d) : dayClock.format(d);
}

export function fmtDateTime(value) {
  if (value === null || value === undefined || value === "") return "–";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) ? "–" : dateTime.format(d);
}

export function fmtAgo(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  const s = Math.max(0, Math.round(seconds));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// ------------------------------------------------------------------ state categories

const LABELS = {
  RUNNING: "Printing", PREPARE: "Preparing", SLICING: "Slicing", PAUSE: "Paused", FINISH: "Finished",
  FAILED: "Failed", IDLE: "Idle", INIT: "Starting", UNKNOWN: "Unknown",
};

/** One of printing, paused, error, done, idle, offline: drives the colour and the counts. */
export function category(p) {
  if (!p.online) return "offline";
  const s = p.state;
  if (p.ended === "cancelled") return "idle"; // FAILED on the printer, but somebody stopped it
  if (s === "FAILED" || p.print_error) return "error";
  if (s === "PAUSE") return "paused";
  if ((p.hms || []).some((a) => a.severity === "fatal" || a.severity === "serious")) return "error";
  if (s === "RUNNING" || s === "PREPARE" || s === "SLICING") return "printing";
  if (s === "FINISH") return "done";
  return "idle";
}

export function stateLabel(p) {
  if (!p.online) return "Offline";
  if (p.ended === "cancelled") return "Cancelled";
  return LABELS[p.state] || (p.state ? p.state.charAt(0) + p.state.slice(1).toLowerCase() : "Unknown");
}

// ------------------------------------------------------------------ JSON API

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, options = {}) {
  const res = await fetch(path, { headers: { Accept: "application/json", ...(options.headers || {}) }, ...options });
  let body = null;
  const type = res.headers.get("content-type") || "";
  if (type.includes("json")) body = await res.json();
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

// ------------------------------------------------------------------ the live fleet

/**
 * The fleet as the gateway's event stream tells it: a snapshot, then deltas.
 *
 * The stream is read off the main thread (feed-worker.js) and arrives here in merged batches;
 * listeners get the set of serials that changed at most once per animation frame, so a burst of
 * a thousand deltas costs one DOM pass. EventSource reconnects by itself (with Last-Event-ID).
 */
export class FleetStore {
  constructor(serials = null) {
    this.printers = new Map();
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.dirty = new Set();
    this.full = false;
    this.scheduled = false;
    this.serials = serials;
    this.receivedAt = performance.now();
    this.deltas = 0;
    this.flushes = 0;
    this.snapshots = 0;
  }

  onChange(fn) { this.listeners.add(fn); }
  onStatus(fn) { this.statusListeners.add(fn); }

  status(state) {
    for (const fn of this.statusListeners) fn(state);
  }

  connect() {
    const sink = (m) => this.receive(m);
    if (typeof Worker === "function") {
      try {
        const worker = new Worker(new URL("./feed-worker.js", import.meta.url), { type: "module" });
        worker.addEventListener("message", (e) => sink(e.data));
        worker.postMessage({ type: "connect", origin: location.origin, serials: this.serials || [] });
        this.worker = worker;
        return;
      } catch {
        // no module workers: read the stream here
      }
    }
    import("./feed.js").then(({ Feed }) => new Feed(location.origin, this.serials || [], sink).connect());
  }

  receive(m) {
    if (m.type === "status") {
      this.status(m.state);
      return;
    }
    const now = performance.now();
    if (m.snapshot) {
      this.snapshots += 1;
      this.printers = new Map(m.snapshot.map((p) => [p.serial, p]));
      this.receivedAt = now;
      this.full = true;
    }
    for (const [serial, changes] of m.changes) {
      let p = this.printers.get(serial);
      if (!p) {
        p = { serial };
        this.printers.set(serial, p);
        this.full = true;
      }
      if (changes._seen) {
        delete changes._seen;
        p._seenAt = now;
      }
      Object.assign(p, changes);
      this.dirty.add(serial);
    }
    for (const serial of m.removed) {
      this.printers.delete(serial);
      this.full = true;
    }
    this.deltas += m.deltas;
    for (const detail of m.events) window.dispatchEvent(new CustomEvent("printer-event", { detail }));
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.flushes += 1;
    this.scheduled = false;
    const changed = this.dirty;
    const full = this.full;
    this.dirty = new Set();
    this.full = false;
    for (const fn of this.listeners) fn(changed, full);
  }

  /** Seconds since the printer was last heard from, ticking locally between events. */
  age(p) {
    if (p._seenAt !== undefined) return (performance.now() - p._seenAt) / 1000;
    if (p.age_seconds === null || p.age_seconds === undefined) return null;
    return p.age_seconds + (performance.now() - this.receivedAt) / 1000;
  }
}

export function wireStatus(store) {
  const el = $("#conn");
  if (!el) return;
  const words = { live: "Live", connecting: "Connecting…", down: "Reconnecting…" };
  store.onStatus((state) => {
    el.dataset.state = state;
    setText(el, words[state] || state);
  });
}

// ------------------------------------------------------------------ snapshot loader

/**
 * Loads camera snapshots a few at a time, so a wall of 200 thumbnails never opens 200 requests
 * at once. Each <img> asks again `interval` ms after its previous picture arrived, while visible.
 */
export class SnapshotLoader {
  constructor({ interval = 10000, concurrency = 4 } = {}) {
    this.interval = interval;
    this.concurrency = concurrency;
    this.queue = [];
    this.busy = 0;
    this.visible = new WeakSet();
    this.timers = new WeakMap();
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting) {
          this.visible.add(e.target);
          if (!e.target.dataset.loaded) this.enqueue(e.target);
        } else {
          this.visible.delete(e.target);
        }
      }
    }, { rootMargin: "200px" });
  }

  watch(img) {
    if (img.dataset.watched) return;
    img.dataset.watched = "1";
    img.addEventListener("load", () => this.done(img, true));
    img.addEventListener("error", () => this.done(img, false));
    this.observer.observe(img);
  }

  unwatch(img) {
    this.observer.unobserve(img);
    clearTimeout(this.timers.get(img));
  }

  enqueue(img) {
    if (img.dataset.queued) return;
    img.dataset.queued = "1";
    this.queue.push(img);
    this.pump();
  }

  pump() {
    while (this.busy < this.concurrency && this.queue.length) {
      const img = this.queue.shift();
      delete img.dataset.queued;
      if (!img.isConnected || !img.dataset.src) continue;
      this.busy += 1;
      img.dataset.loading = "1";
      img.src = `${img.dataset.src}${img.dataset.src.includes("?") ? "&" : "?"}t=${Date.now()}`;
    }
  }

  done(img, ok) {
    if (img.dataset.loading) {
      delete img.dataset.loading;
      this.busy -= 1;
    }
    img.dataset.loaded = "1";
    img.classList.toggle("failed", !ok);
    const delay = ok ? this.interval : this.interval * 3;
    this.timers.set(img, setTimeout(() => {
      if (img.isConnected && this.visible.has(img) && !document.hidden) this.enqueue(img);
      else delete img.dataset.loaded;
    }, delay));
    this.pump();
  }
}
