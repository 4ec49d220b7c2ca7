// Jobs across the farm: filters, per-printer success rate and print hours, CSV download.

import { $, ApiError, api, fmtDateTime, fmtDuration, h, initPage, setText } from "./common.js";

const PAGE = 50;
let offset = 0;
let total = 0;

function filters() {
  const form = new FormData($("#filters"));
  const params = new URLSearchParams();
  for (const key of ["printer", "result"]) if (form.get(key)) params.set(key, form.get(key));
  const since = form.get("since");
  const until = form.get("until");
  if (since) params.set("since", new Date(`${since}T00:00:00`).toISOString());
  if (until) params.set("until", new Date(new Date(`${until}T00:00:00`).getTime() + 86400000).toISOString());
  return params;
}

/** The trays a job used: a swatch, the material and how much of the spool went (percent). */
function filamentCell(filament) {
  const td = h("td", { class: "filament" });
  const trays = Object.values(filament || {});
  if (!trays.length) td.textContent = "–";
  for (const t of trays) {
    const sw = h("span", { class: "swatch sm" });
    if (t.color) sw.style.setProperty("--sw", t.color.slice(0, 7));
    const used = t.used_percent !== null && t.used_percent !== undefined ? ` ${t.used_percent}%` : "";
    td.append(h("span", { class: "fil", title: "material, and the share of the spool used" }, sw, `${t.material || "?"}${used}`));
  }
  return td;
}

function note(text, err = false) {
  const el = $("#h-note");
  el.hidden = !text;
  el.classList.toggle("err", err);
  setText(el, text || "");
}

async function loadJobs() {
  const params = filters();
  $("#csv").href = `/api/v1/history/jobs.csv?${params}`;
  params.set("limit", PAGE);
  params.set("offset", offset);
  try {
    const data = await api(`/api/v1/history/jobs?${params}`);
    total = data.total ?? (data.jobs || []).length;
    const rows = (data.jobs || []).map((j) => h("tr", {},
      h("td", { text: fmtDateTime(j.started_at) }),
      h("td", {}, h("a", { href: `/printers/${encodeURIComponent(j.serial)}`, text: j.printer || j.serial })),
      h("td", { text: j.file || "–" }),
      h("td", {}, h("span", { class: "result", "data-r": j.result || "", text: j.result || "–" })),
      h("td", { class: "num", text: j.duration_seconds !== null && j.duration_seconds !== undefined ? fmtDuration(j.duration_seconds / 60) : "–" }),
      filamentCell(j.filament)));
    $("#h-jobs tbody").replaceChildren(...rows);
    setText($("#h-total"), total ? `${offset + 1}–${offset + rows.length} of ${total}` : "No jobs");
    $("#prev").disabled = offset === 0;
    $("#next").disabled = offset + PAGE >= total;
    note(rows.length ? "" : "No job matches these filters yet.");
  } catch (err) {
    note(err instanceof ApiError && (err.status === 404 || err.status === 503) ? "History is not enabled on this gateway ([history] in its configuration)." : `Could not load the history: ${err.message}`, true);
  }
}

async function loadStats() {
  const params = filters();
  params.delete("printer");
  params.delete("result");
  try {
    const data = await api(`/api/v1/history/stats?${params}`);
    const cells = (s) => [
      h("td", { class: "num", text: s.jobs ?? "–" }),
      h("td", { class: "num", text: s.succeeded ?? "–" }),
      h("td", { class: "num", text: s.failed ?? "–" }),
      h("td", { class: "num", text: s.success_rate === null || s.success_rate === undefined ? "–" : `${Math.round(s.success_rate * 100)}%` }),
      h("td", { class: "num", text: s.print_hours === null || s.print_hours === undefined ? "–" : s.print_hours.toFixed(1) }),
    ];
    const rows = Object.entries(data.printers || {}).map(([serial, s]) => h("tr", {},
      h("td", {}, h("a", { href: `/printers/${encodeURIComponent(serial)}`, text: s.printer || serial })), ...cells(s)));
    $("#h-stats tbody").replaceChildren(...rows);
    $("#h-stats tfoot").replaceChildren(...(data.farm ? [h("tr", {}, h("th", { text: "Farm" }), ...cells(data.farm))] : []));
  } catch {
    $("#h-stats tbody").replaceChildren();
  }
}

async function loadPrinters() {
  try {
    const data = await api("/api/v1/printers");
    const select = $("#f-printer");
    for (const p of (data.printers || []).sort((a, b) => (a.name || "").localeCompare(b.name || "", undefined, { numeric: true }))) {
      select.append(h("option", { value: p.serial, text: p.name || p.serial }));
    }
    const wanted = new URLSearchParams(location.search).get("printer");
    if (wanted) select.value = wanted;
  } catch {
    // the filter still works by typing a URL
  }
}

initPage();
$("#conn").hidden = true;
$("#filters").addEventListener("submit", (e) => {
  e.preventDefault();
  offset = 0;
  loadJobs();
  loadStats();
});
$("#prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadJobs(); });
$("#next").addEventListener("click", () => { offset += PAGE; loadJobs(); });
await loadPrinters();
const info = await api("/api/v1/gateway").catch(() => ({}));
if (info.history) {
  await Promise.all([loadJobs(), loadStats()]);
} else {
  note("History is not enabled on this gateway: add a [history] section to its configuration (see docs/dashboard.md).");
  $("#csv").hidden = true;
  $("#prev").disabled = true;
  $("#next").disabled = true;
}
document.body.dataset.ready = "1";
