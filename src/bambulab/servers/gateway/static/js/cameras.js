// The camera wall: every camera at once, as snapshots refreshed a few at a time.
//
// Browsers allow only ~6 HTTP/1.1 connections per server, so a wall of MJPEG streams cannot work;
// snapshots can, and the gateway's camera hub serves them from one shared connection per printer.

import { $, FleetStore, SnapshotLoader, category, h, initPage, setText, stateLabel, wireStatus } from "./common.js";

const store = new FleetStore();
const tiles = new Map();
const loader = new SnapshotLoader({ interval: 3000, concurrency: 6 });
const wall = $("#camwall");
let query = "";

function tile(p) {
  const img = h("img", { alt: `Camera of ${p.name || p.serial}`, decoding: "async" });
  const nocam = h("span", { class: "nocam" });
  const name = h("b");
  const state = h("span");
  const root = h("a", { class: "cam", href: `/printers/${encodeURIComponent(p.serial)}`, "data-serial": p.serial }, img, nocam,
    h("span", { class: "label" }, name, state));
  return { root, img, nocam, name, state };
}

function update(t, p) {
  setText(t.name, p.name || p.serial);
  const pct = p.state === "RUNNING" && p.progress !== null && p.progress !== undefined ? ` · ${p.progress}%` : "";
  setText(t.state, `${stateLabel(p)}${pct}`);
  t.root.dataset.cat = category(p);
  const src = p.online ? `/api/v1/printers/${encodeURIComponent(p.serial)}/camera/snapshot.jpg?fallback=1` : "";
  if ((t.img.dataset.src || "") !== src) {
    t.img.dataset.src = src;
    if (src) {
      loader.watch(t.img);
      loader.enqueue(t.img);
    }
  }
  t.img.hidden = !src;
  t.nocam.hidden = Boolean(src);
  setText(t.nocam, "Offline");
}

function render(changed, full) {
  if (full) {
    for (const [serial, t] of tiles) {
      if (!store.printers.has(serial) || !store.printers.get(serial).camera) {
        loader.unwatch(t.img);
        t.root.remove();
        tiles.delete(serial);
      }
    }
  }
  for (const serial of full ? store.printers.keys() : changed) {
    const p = store.printers.get(serial);
    if (!p || !p.camera) continue;
    let t = tiles.get(serial);
    if (!t) {
      t = tile(p);
      tiles.set(serial, t);
    }
    update(t, p);
  }
  if (full) {
    const order = [...tiles.keys()].sort((a, b) => (store.printers.get(a).name || a).localeCompare(store.printers.get(b).name || b, undefined, { numeric: true }));
    wall.replaceChildren(...order.map((s) => tiles.get(s).root));
  }
  filter();
  document.body.dataset.ready = "1";
}

function filter() {
  let shown = 0;
  for (const [serial, t] of tiles) {
    const p = store.printers.get(serial);
    const ok = !query || (p.name || "").toLowerCase().includes(query) || serial.toLowerCase().includes(query);
    t.root.hidden = !ok;
    if (ok) shown += 1;
  }
  setText($("#cam-count"), `${shown} camera${shown === 1 ? "" : "s"}`);
  $("#cam-empty").hidden = tiles.size > 0;
}

initPage();
wireStatus(store);
store.onChange(render);
store.connect();
$("#cam-search").addEventListener("input", (e) => { query = e.target.value.trim().toLowerCase(); filter(); });
