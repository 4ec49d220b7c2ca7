// The gateway's event stream, merged and batched. Runs in a Web Worker (feed-worker.js), so the
// page's main thread gets a few batches a second instead of one task per event (1,000 events/s
// from a big farm would otherwise keep it busy); falls back to the main thread without Workers.

const MAX_EVENTS = 200; // printer events (PrintFinished, ...) kept per batch; older ones are dropped

export class Feed {
  /** `sink(message)` receives {type: "status", state} and {type: "batch", ...} messages. */
  constructor(origin, serials, sink, interval = 40) {
    this.origin = origin;
    this.serials = serials || [];
    this.sink = sink;
    this.interval = interval;
    this.retry = 1000;
    this.timer = null;
    this.reset();
  }

  reset() {
    this.snapshot = null;
    this.changes = new Map();
    this.removed = new Set();
    this.events = [];
    this.deltas = 0;
  }

  connect() {
    const url = new URL("/api/v1/events", this.origin);
    for (const s of this.serials) url.searchParams.append("printer", s);
    this.sink({ type: "status", state: "connecting" });
    const es = new EventSource(url);
    es.addEventListener("open", () => { this.retry = 1000; this.sink({ type: "status", state: "live" }); });
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) {
        this.sink({ type: "status", state: "down" });
        setTimeout(() => this.connect(), this.retry);
        this.retry = Math.min(this.retry * 2, 30000);
      } else {
        this.sink({ type: "status", state: "connecting" });
      }
    });
    es.addEventListener("snapshot", (e) => {
      this.reset();
      this.snapshot = JSON.parse(e.data).printers || [];
      this.schedule();
    });
    es.addEventListener("delta", (e) => {
      const d = JSON.parse(e.data);
      const changes = { ...(d.changes || {}), _seen: true };
      if (d.last_seen !== undefined) changes.last_seen = d.last_seen;
      this.merge(d.serial, changes);
      this.deltas += 1;
    });
    for (const kind of ["online", "offline"]) {
      es.addEventListener(kind, (e) => {
        const d = JSON.parse(e.data);
        const { serial, ...rest } = d;
        this.merge(serial, { ...rest, online: kind === "online" });
      });
    }
    es.addEventListener("added", (e) => {
      const d = JSON.parse(e.data);
      this.removed.delete(d.serial);
      this.merge(d.serial, d.summary || { serial: d.serial, name: d.name || d.serial, online: false });
    });
    es.addEventListener("removed", (e) => {
      const d = JSON.parse(e.data);
      this.changes.delete(d.serial);
      this.removed.add(d.serial);
      this.schedule();
    });
    es.addEventListener("printer_event", (e) => {
      this.events.push(JSON.parse(e.data));
      if (this.events.length > MAX_EVENTS) this.events.shift();
      this.schedule();
    });
  }

  merge(serial, changes) {
    const pending = this.changes.get(serial);
    if (pending) Object.assign(pending, changes);
    else this.changes.set(serial, changes);
    this.schedule();
  }

  schedule() {
    if (this.timer === null) this.timer = setTimeout(() => this.flush(), this.interval);
  }

  flush() {
    this.timer = null;
    const batch = {
      type: "batch",
      snapshot: this.snapshot,
      changes: [...this.changes],
      removed: [...this.removed],
      events: this.events,
      deltas: this.deltas,
    };
    this.reset();
    this.sink(batch);
  }
}
