"use strict";
// The staff dashboard: reads the JSON API next to it, builds everything
// with textContent and SVG elements (never HTML from data).
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { from: "", to: "", foss: "", sort: "views", asc: false, tutorials: [], video: null };

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}
const int = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
const pct = (r) => (r === null || r === undefined ? "–" : `${Math.round(r * 100)} %`);
function dur(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}
const hours = (s) => (s === null || s === undefined ? "–" : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : dur(s));
const isoDay = (d) => d.toISOString().slice(0, 10);

function query(extra) {
  const q = new URLSearchParams({ from: state.from, to: state.to });
  if (state.foss) q.set("foss", state.foss);
  for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
  return q.toString();
}
async function get(path, extra) {
  const r = await fetch(`api/${path}?${query(extra)}`, { credentials: "same-origin", headers: { accept: "application/json" } });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}
function showError(e) {
  const box = $("error");
  box.textContent = e ? `Could not load the figures: ${e.message}` : "";
  box.style.display = e ? "block" : "none";
}
function setCsv(id, path) {
  $(id).href = `api/${path}?${query({ format: "csv" })}`;
}

function cards(o) {
  const box = $("cards");
  box.replaceChildren();
  const hidden = o.hidden;
  const items = [
    ["Page views", int(o.page_views)],
    ["Visitors", int(o.visitors)],
    ["Learners", int(o.learners)],
    ["Returning visits", int(o.returning_visits)],
    ["Avg time on page", dur(o.avg_time_on_page_s)],
    ["Sessions", int(o.sessions)],
    ["Avg session", dur(o.avg_session_s)],
    ["Bounce rate", pct(o.bounce_rate)],
    ["Video watched", hours(o.video_s)],
    ["Completions", int(o.completions)],
  ];
  for (const [k, v] of items) {
    const c = el("div", null, "card");
    c.append(el("div", hidden ? "hidden" : v, "v"), el("div", k, "k"));
    box.append(c);
  }
}

function chartFrame(box, n) {
  box.replaceChildren();
  const w = Math.max(box.getBoundingClientRect().width || 900, 320);
  const h = Number(box.getAttribute("height")) || 190;
  const pad = { l: 42, r: 10, t: 10, b: 24 };
  return { w, h, pad, iw: w - pad.l - pad.r, ih: h - pad.t - pad.b, step: (w - pad.l - pad.r) / Math.max(n, 1) };
}
function axis(box, f, max) {
  for (const frac of [0, 0.5, 1]) {
    const y = f.pad.t + f.ih * (1 - frac);
    box.append(svg("line", { x1: f.pad.l, x2: f.w - f.pad.r, y1: y, y2: y, stroke: "#eef0f4" }));
    box.append(svg("text", { x: f.pad.l - 6, y: y + 4, "text-anchor": "end" }, int(Math.round(max * frac))));
  }
}

function daily(series) {
  const box = $("daily");
  const f = chartFrame(box, series.length);
  const max = Math.max(1, ...series.map((d) => d.page_views || 0), ...series.map((d) => d.learners || 0));
  axis(box, f, max);
  const bw = Math.max(1, f.step * 0.7);
  const labelEvery = Math.ceil(series.length / 10);
  const points = [];
  series.forEach((d, i) => {
    const x = f.pad.l + i * f.step + (f.step - bw) / 2;
    const v = d.page_views || 0;
    const bh = (v / max) * f.ih;
    const bar = svg("rect", { x, y: f.pad.t + f.ih - bh, width: bw, height: bh, fill: "#2f6fde", rx: 1.5 });
    bar.append(svg("title", {}, `${d.day}: ${d.hidden ? "hidden" : `${int(v)} page views, ${int(d.learners)} learners`}`));
    box.append(bar);
    if (d.learners !== null && d.learners !== undefined) {
      points.push(`${x + bw / 2},${f.pad.t + f.ih - (d.learners / max) * f.ih}`);
    }
    if (i % labelEvery === 0) {
      box.append(svg("text", { x: x + bw / 2, y: f.h - 6, "text-anchor": "middle" }, d.day.slice(5)));
    }
  });
  if (points.length > 1) box.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: "#12a07a", "stroke-width": 2 }));
}

const COLUMNS = [
  ["foss", "FOSS", false], ["tutorial", "Tutorial", false], ["language", "Language", false],
  ["views", "Views", true], ["visitors", "Visitors", true], ["learners", "Learners", true],
  ["avg_time_on_page_s", "Time on page", true], ["completions", "Completions", true],
  ["video_s", "Video watched", true], ["coverage_mean", "Coverage", true], ["watched", "Watched", false],
];
function tutorialsHead() {
  const tr = $("tutorials").tHead.rows[0];
  tr.replaceChildren();
  for (const [key, name, numeric] of COLUMNS) {
    const th = el("th", name, numeric ? "n" : "");
    if (state.sort === key) th.classList.add("sorted");
    if (state.sort === key && state.asc) th.classList.add("asc");
    th.addEventListener("click", () => {
      state.asc = state.sort === key ? !state.asc : !numeric;
      state.sort = key;
      tutorialsBody();
    });
    tr.append(th);
  }
}
function cmp(a, b) {
  const x = a[state.sort], y = b[state.sort];
  if (x === y) return 0;
  if (x === null || x === undefined) return 1;
  if (y === null || y === undefined) return -1;
  const r = typeof x === "string" ? x.localeCompare(y) : x < y ? -1 : 1;
  return state.asc ? r : -r;
}
function tutorialsBody() {
  tutorialsHead();
  const body = $("tutorials").tBodies[0];
  body.replaceChildren();
  const rows = [...state.tutorials].sort(cmp);
  $("tutorials-empty").hidden = rows.length > 0;
  for (const r of rows) {
    const tr = el("tr");
    for (const [key, , numeric] of COLUMNS) {
      let v = r[key];
      if (r.hidden && !["foss", "tutorial", "language"].includes(key)) v = key === "views" ? "hidden" : "";
      else if (key === "avg_time_on_page_s") v = dur(v);
      else if (key === "video_s") v = hours(v);
      else if (key === "coverage_mean") v = v === null || v === undefined ? "–" : pct(v);
      else if (numeric) v = int(v);
      const td = el("td", key === "watched" ? null : v, numeric ? "n" : "");
      if (key === "watched" && !r.hidden) td.append(el("span", r.watched ? "yes" : "no", r.watched ? "tag yes" : "tag no"));
      tr.append(td);
    }
    if (r.video_id) {
      tr.classList.add("pick");
      tr.title = "Show this video's drop-off";
      tr.addEventListener("click", () => video(r.video_id));
    }
    body.append(tr);
  }
}

async function video(id) {
  try {
    const v = await get(`videos/${encodeURIComponent(id)}`);
    state.video = id;
    $("video-title").textContent = `Video drop-off: ${v.title || v.video_id}`;
    $("csv-video").hidden = false;
    $("csv-video").href = `api/videos/${encodeURIComponent(id)}?${query({ format: "csv" })}`;
    const box = $("dropoff");
    box.hidden = false;
    if (v.hidden) {
      box.replaceChildren();
      $("video-facts").textContent = "Fewer learners than the privacy floor watched this video: its figures are hidden.";
      $("video-empty").hidden = true;
      return;
    }
    $("video-facts").textContent =
      `${int(v.viewers)} viewers · ${int(v.plays)} plays · ${hours(v.watch_s)} watched · mean coverage ${pct(v.coverage_mean)} · ` +
      `${int(v.users_at_start)} at the start, ${int(v.users_at_end)} at the end · all time`;
    const segs = v.segments || [];
    $("video-empty").hidden = segs.length > 0;
    const f = chartFrame(box, segs.length);
    const max = Math.max(1, ...segs.map((s) => s.viewers));
    axis(box, f, max);
    const pts = segs.map((s, i) => `${f.pad.l + (i + 0.5) * f.step},${f.pad.t + f.ih - (s.viewers / max) * f.ih}`);
    if (pts.length) {
      const first = `${f.pad.l + 0.5 * f.step},${f.pad.t + f.ih}`;
      const last = `${f.pad.l + (segs.length - 0.5) * f.step},${f.pad.t + f.ih}`;
      box.append(svg("polygon", { points: [first, ...pts, last].join(" "), fill: "#2f6fde22", stroke: "none" }));
      box.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#2f6fde", "stroke-width": 2 }));
    }
    const every = Math.ceil(segs.length / 12);
    segs.forEach((s, i) => {
      if (i % every === 0) box.append(svg("text", { x: f.pad.l + (i + 0.5) * f.step, y: f.h - 6, "text-anchor": "middle" }, dur(s.start)));
      const dot = svg("circle", { cx: f.pad.l + (i + 0.5) * f.step, cy: f.pad.t + f.ih - (s.viewers / max) * f.ih, r: 2.5, fill: "#2f6fde" });
      dot.append(svg("title", {}, `${dur(s.start)}: ${int(s.viewers)} viewers, ${int(s.views)} views`));
      box.append(dot);
    });
  } catch (e) {
    showError(e);
  }
}

function bars(id, list) {
  const box = $(id);
  box.replaceChildren();
  if (!list || !list.length) {
    const why = state.foss ? "Kept for the whole site only: choose All FOSS." : "No visit with a known value in this range.";
    box.append(el("div", why, "empty"));
    return;
  }
  const max = Math.max(...list.map((c) => c.count));
  for (const c of list.slice(0, 10)) {
    const row = el("div", null, "barrow");
    const bar = el("div", null, "bar");
    bar.style.width = `${(c.count / max) * 100}%`;
    const track = el("div");
    track.append(bar);
    row.append(el("span", c.name, "name"), track, el("span", int(c.count), "n muted"));
    box.append(row);
  }
}

function unwatched(list) {
  const body = $("unwatched").tBodies[0];
  body.replaceChildren();
  $("unwatched-empty").hidden = list.length > 0;
  for (const v of list) {
    const tr = el("tr");
    tr.append(el("td", v.foss), el("td", v.tutorial), el("td", v.language), el("td", v.title),
      el("td", dur(v.duration), "n"), el("td", v.hidden ? "hidden" : int(v.viewers_ever), "n"));
    body.append(tr);
  }
}

async function load() {
  const url = new URL(location.href);
  url.search = query();
  history.replaceState(null, "", url);
  for (const b of document.querySelectorAll("button.quick")) b.classList.remove("on");
  try {
    const [o, t, u] = await Promise.all([get("overview"), get("tutorials"), get("unwatched")]);
    showError(null);
    $("scope").textContent = `${o.from} to ${o.to} (UTC)${o.foss.length ? ` · ${o.foss.join(", ")}` : ""}`;
    cards(o);
    daily(o.series || []);
    state.tutorials = t.tutorials;
    tutorialsBody();
    bars("countries", o.countries);
    bars("browsers", o.browsers);
    unwatched(u.videos);
    const select = $("foss");
    if (select.options.length === 1) {
      for (const name of [...new Set(t.tutorials.map((r) => r.foss))].sort()) select.append(new Option(name, name));
      select.value = state.foss;
    }
    setCsv("csv-series", "overview");
    setCsv("csv-tutorials", "tutorials");
    setCsv("csv-unwatched", "unwatched");
    const first = state.video || (state.tutorials.find((r) => r.video_id && r.watched && !r.hidden) || {}).video_id;
    if (first) await video(first);
    document.body.dataset.loaded = "true";
  } catch (e) {
    showError(e);
    document.body.dataset.loaded = "error";
  }
}

function init() {
  const p = new URLSearchParams(location.search);
  const today = new Date();
  state.to = p.get("to") || isoDay(today);
  state.from = p.get("from") || isoDay(new Date(Date.parse(state.to) - 29 * 86400000));
  state.foss = p.get("foss") || "";
  $("from").value = state.from;
  $("to").value = state.to;
  $("range").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.from = $("from").value;
    state.to = $("to").value;
    state.foss = $("foss").value;
    load();
  });
  for (const b of document.querySelectorAll("button.quick")) {
    b.addEventListener("click", () => {
      const days = Number(b.dataset.days);
      state.to = isoDay(new Date());
      state.from = isoDay(new Date(Date.now() - (days - 1) * 86400000));
      $("from").value = state.from;
      $("to").value = state.to;
      load().then(() => b.classList.add("on"));
    });
  }
  load();
}
init();
