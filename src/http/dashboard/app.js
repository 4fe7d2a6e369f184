// The dsm dashboard: the node's /status (refreshed), charts of the last minutes sampled from
// /status and /metrics, its event stream (/messages/stream) and a form for /send. Plain browser JavaScript, no dependencies; every value from the node is
// inserted as text, never as HTML. On a node started with --client-token the page asks for the
// token (or takes it from a link's #token=... fragment) before it shows anything.
"use strict";

const params = new URLSearchParams(location.search);
const REFRESH_MS = Math.max(200, Number(params.get("refresh_ms")) || 1000);
const HISTORY = 20;      // messages shown from before the page opened
const FEED_MAX = 200;    // messages kept in the feed
const OUTCOMES_MAX = 10;
const CHART_SECONDS = 300;  // the charts' time window

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function ago(seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 10) return seconds.toFixed(1) + " s ago";
  if (seconds < 120) return Math.round(seconds) + " s ago";
  return Math.round(seconds / 60) + " min ago";
}

// ---- client token -----------------------------------------------------------------------------
// The page itself is public; the node's data is not when it has a client token. The token is
// kept in sessionStorage (this tab), sent as "Authorization: Bearer" on every fetch, and set as
// the session cookie dsm_token for the event stream: an EventSource cannot send headers, and the
// node accepts the cookie for reads only. A link may carry the token in its fragment (#token=...),
// which the browser never sends to the server; it is read once and removed from the address bar.

const TOKEN_KEY = "dsm_token";
let token = null;
let tokenNeeded = false;  // the token form is shown instead of the data

function setCookie(value, extra) {
  document.cookie = "dsm_token=" + value + "; Path=/; SameSite=Strict" + (extra || "");
}

function useToken(t) {
  token = t;
  try { sessionStorage.setItem(TOKEN_KEY, t); } catch (e) { /* storage disabled: this page only */ }
  setCookie(encodeURIComponent(t));
}

function forgetToken() {
  token = null;
  try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage disabled */ }
  setCookie("", "; Max-Age=0");
}

// The token of a "#token=..." fragment (percent-decoded; '+' is itself), which is then removed
// from the address bar and the history entry. null when there is none.
function takeTokenFromFragment() {
  const parts = location.hash.replace(/^#/, "").split("&");
  const i = parts.findIndex((p) => p.startsWith("token="));
  if (i < 0) return null;
  let t = null;
  try { t = decodeURIComponent(parts[i].slice("token=".length)).trim(); } catch (e) { t = null; }
  parts.splice(i, 1);
  const rest = parts.filter((p) => p !== "").join("&");
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  return t || null;
}

function loadToken() {
  let t = takeTokenFromFragment();
  if (!t) {
    try { t = sessionStorage.getItem(TOKEN_KEY); } catch (e) { t = null; }
  }
  if (t) useToken(t);  // (re)sets the cookie too
}

// Headers of every request to the node.
function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

function showTokenForm(message) {
  tokenNeeded = true;
  if (source) {
    source.close();
    source = null;
  }
  setBadge($("feed-state"), "", "closed");
  setBadge($("node-state"), "warn", "token required");
  $("content").hidden = true;
  $("token-panel").hidden = false;
  $("token-error").textContent = message || "";
  $("token-form").elements.token.focus();
}

function hideTokenForm() {
  tokenNeeded = false;
  $("token-panel").hidden = true;
  $("token-error").textContent = "";
  $("content").hidden = false;
}

async function submitToken(ev) {
  ev.preventDefault();
  const input = ev.target.elements.token;
  const t = input.value.trim();
  if (!t) return;
  input.value = "";
  useToken(t);
  $("token-button").disabled = true;
  try {
    const result = await refreshStatus();
    if (result === "unreachable") $("token-error").textContent = "the node does not answer";
  } finally {
    $("token-button").disabled = false;
  }
}

// The reason of a JSON error answer, or "".
async function reasonOf(r) {
  try {
    const body = await r.json();
    return body && typeof body.reason === "string" ? body.reason : "";
  } catch (e) {
    return "";
  }
}

// ---- /status ----------------------------------------------------------------------------------

let lastStatus = null;
let lastStatusAt = 0;

function renderStatus(st) {
  $("node-id").textContent = st.node_id;
  $("stream-id").textContent = st.stream || "";
  $("last-seq").textContent = st.last_seq;
  $("own-hw").textContent = st.own_high_water;
  $("mode").textContent = st.replication_mode;
  $("quorum").textContent = st.quorum;
  $("writable").textContent = st.writable === false ? "stopped" : "ok";
  $("writable").title = st.write_error || "";
  document.title = "dsm " + st.node_id;

  const peers = st.peers || [];
  const ps = st.peer_status || {};
  const alive = peers.filter((u) => ps[u] && ps[u].alive).length;
  $("peers-alive").textContent = alive + " / " + peers.length;

  const now = Date.now() / 1000;
  const rows = [];
  rows.push(el("tr", { "data-node": "self", class: "alive" },
    el("td", {}, st.node_id + " (this node, port " + st.port + ")"),
    el("td", {}, el("span", { class: "badge alive" }, "alive")),
    el("td", {}, "–"), el("td", {}, "–"), el("td", {}, "–"), el("td", {}, "–"),
    el("td", {}, st.own_high_water)));
  for (const url of peers) {
    const p = ps[url] || {};
    const state = p.alive ? "alive" : "dead";
    rows.push(el("tr", { "data-peer": url, "data-alive": String(!!p.alive), class: state },
      el("td", {}, el("span", { class: "peer-id" }, p.node_id || "?"), " ",
        el("span", { class: "muted" }, url)),
      el("td", {}, el("span", { class: "badge " + state }, state)),
      el("td", {}, p.last_ok ? ago(now - p.last_ok) : "never"),
      el("td", {}, p.lag_messages ?? "–"),
      el("td", {}, p.lag_seconds !== undefined ? Number(p.lag_seconds).toFixed(1) : "–"),
      el("td", {}, p.consecutive_failures ?? "–"),
      el("td", {}, p.push_cursor ?? "–")));
  }
  $("cluster").tBodies[0].replaceChildren(...rows);

  // Durable consumers (GET /consumers has the details): their lag is what they have not taken.
  const consumers = st.consumers || [];
  $("consumers-section").hidden = consumers.length === 0;
  $("consumers").tBodies[0].replaceChildren(...consumers.map((c) =>
    el("tr", { "data-consumer": c.name },
      el("td", {}, c.name),
      el("td", { class: "pending" }, c.pending),
      el("td", { class: "in-flight" }, c.in_flight),
      el("td", { class: "dead" }, c.dead))));
}

// Fetches and shows /status. Returns "ok", "unauthorized" (the token form is shown) or
// "unreachable".
async function refreshStatus() {
  let result = "ok";
  try {
    const r = await fetch("/status", { cache: "no-store", headers: authHeaders() });
    if (r.status === 401) {
      const reason = await reasonOf(r);
      // A stored token that is refused is dropped; without one, the form's own title says it.
      const refused = token !== null;
      if (refused) forgetToken();
      showTokenForm(refused ? reason || "invalid client token" : "");
      return "unauthorized";
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    lastStatus = await r.json();
    lastStatusAt = Date.now();
    if (tokenNeeded) {
      // The token was accepted: show the data and open the feed.
      hideTokenForm();
      follow(Math.max(0, lastStatus.last_seq - HISTORY));
    }
    renderStatus(lastStatus);
    setBadge($("node-state"), "live", "reachable");
    await sampleCharts(lastStatus);
  } catch (e) {
    result = "unreachable";
    if (!tokenNeeded) setBadge($("node-state"), "dead", "unreachable");
  }
  const age = lastStatusAt ? ((Date.now() - lastStatusAt) / 1000).toFixed(1) + " s old" : "";
  $("status-age").textContent = age;
  return result;
}

function setBadge(node, cls, text) {
  node.className = "badge " + cls;
  node.textContent = text;
}

// ---- charts -----------------------------------------------------------------------------------
// At each refresh one sample is taken from /status (each peer's lag) and /metrics (counters, turned
// into rates against the previous sample) and kept in a ring buffer covering CHART_SECONDS; the
// charts are plain SVG paths redrawn from it. Each path carries data-series, data-last (its newest
// value) and data-max (its largest value in the window).

class Ring {
  constructor(capacity) {
    this.items = new Array(capacity);
    this.start = 0;
    this.size = 0;
  }

  push(item) {
    const capacity = this.items.length;
    this.items[(this.start + this.size) % capacity] = item;
    if (this.size < capacity) this.size++;
    else this.start = (this.start + 1) % capacity;
  }

  toArray() {
    const out = [];
    for (let i = 0; i < this.size; i++) out.push(this.items[(this.start + i) % this.items.length]);
    return out;
  }
}

const samples = new Ring(Math.ceil(CHART_SECONDS * 1000 / REFRESH_MS) + 1);
let lastCounters = null;  // { t, values } of the previous /metrics read

// The samples of a Prometheus text answer: "name{label=\"v\",...}" (as written) -> number.
function parseMetrics(text) {
  const values = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_:][\w:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (m) values.set(m[1] + (m[2] || ""), Number(m[3]));
  }
  return values;
}

// The sum of every sample of metric `name` (all label sets).
function metricSum(values, name) {
  let sum = 0;
  for (const [key, v] of values) {
    if (key === name || key.startsWith(name + "{")) sum += v;
  }
  return sum;
}

// The counters the charts show as rates.
function chartCounters(values) {
  return {
    accepted: values.get('dsm_messages_appended_total{source="client"}') || 0,
    received: (values.get('dsm_messages_appended_total{source="replicate"}') || 0) +
      (values.get('dsm_messages_appended_total{source="pull"}') || 0),
    replicated: metricSum(values, "dsm_peer_replicated_messages_total"),
    quorum_ok: values.get('dsm_quorum_writes_total{outcome="ok"}') || 0,
    quorum_refused: values.get('dsm_quorum_writes_total{outcome="refused"}') || 0,
    quorum_timeout: values.get('dsm_quorum_writes_total{outcome="timeout"}') || 0,
  };
}

async function sampleCharts(st) {
  let values;
  try {
    const r = await fetch("/metrics", { cache: "no-store", headers: authHeaders() });
    if (!r.ok) return;
    values = parseMetrics(await r.text());
  } catch (e) {
    return;
  }
  const now = Date.now();
  const counters = chartCounters(values);
  const rates = {};
  if (lastCounters) {
    const dt = (now - lastCounters.t) / 1000;
    for (const k of Object.keys(counters)) {
      // A counter that went down belongs to a restarted node: no rate for that interval.
      const d = counters[k] - lastCounters.values[k];
      rates[k] = dt > 0 && d >= 0 ? d / dt : 0;
    }
  }
  lastCounters = { t: now, values: counters };
  const lag = {};
  for (const url of st.peers || []) {
    const p = (st.peer_status || {})[url];
    if (p) lag[url] = Number(p.lag_messages) || 0;
  }
  if (Object.keys(rates).length > 0) samples.push({ t: now, rates, lag });
  drawCharts(st);
}

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_W = 300;
const CHART_H = 80;

function formatValue(v) {
  return v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
}

// Draws `series` ([{ key, label, points: [[t, v], ...] }]) into the SVG `svgId` and its legend.
function drawChart(svgId, legendId, series, tEnd) {
  let max = 1;
  for (const s of series) for (const [, v] of s.points) max = Math.max(max, v);
  const tStart = tEnd - CHART_SECONDS * 1000;
  const x = (t) => ((t - tStart) / (CHART_SECONDS * 1000)) * CHART_W;
  const y = (v) => CHART_H - 2 - (v / max) * (CHART_H - 6);
  const paths = [];
  const legend = [];
  series.forEach((s, i) => {
    const cls = "s" + (i % 6);
    const d = s.points.map(([t, v], j) => (j ? "L" : "M") + x(t).toFixed(1) + " " + y(v).toFixed(1));
    const path = document.createElementNS(SVG_NS, "path");
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    const seriesMax = s.points.reduce((m, [, v]) => Math.max(m, v), 0);
    path.setAttribute("d", d.join(" ") || "M0 " + CHART_H);
    path.setAttribute("class", cls);
    path.setAttribute("data-series", s.key);
    path.setAttribute("data-last", String(last));
    path.setAttribute("data-max", String(seriesMax));
    paths.push(path);
    legend.push(el("li", { "data-series": s.key }, el("span", { class: "swatch " + cls }),
      s.label + " " + formatValue(last)));
  });
  legend.push(el("li", { class: "muted" }, "scale 0.." + formatValue(max)));
  $(svgId).replaceChildren(...paths);
  $(legendId).replaceChildren(...legend);
}

function drawCharts(st) {
  const all = samples.toArray();
  const tEnd = all.length ? all[all.length - 1].t : Date.now();
  const rate = (k) => all.map((s) => [s.t, s.rates[k]]);
  drawChart("chart-rates", "legend-rates", [
    { key: "accepted", label: "accepted from clients", points: rate("accepted") },
    { key: "replicated", label: "acknowledged by peers", points: rate("replicated") },
    { key: "received", label: "received from peers", points: rate("received") },
  ], tEnd);
  const ps = st.peer_status || {};
  drawChart("chart-lag", "legend-lag", (st.peers || []).map((url) => ({
    key: "lag:" + url,
    label: ((ps[url] && ps[url].node_id) || url),
    points: all.filter((s) => url in s.lag).map((s) => [s.t, s.lag[url]]),
  })), tEnd);
  drawChart("chart-quorum", "legend-quorum", [
    { key: "quorum_ok", label: "ok", points: rate("quorum_ok") },
    { key: "quorum_refused", label: "503 refused", points: rate("quorum_refused") },
    { key: "quorum_timeout", label: "504 timeout", points: rate("quorum_timeout") },
  ], tEnd);
}

// ---- live feed (Server-Sent Events) -----------------------------------------------------------

let source = null;
let received = 0;

function follow(start) {
  if (source) source.close();
  const f = new FormData($("filter-form"));
  const q = new URLSearchParams({ after: String(start) });
  for (const k of ["recipient", "sender"]) {
    const v = String(f.get(k) || "").trim();
    if (v) q.set(k, v);
  }
  $("feed").replaceChildren();
  received = 0;
  $("feed-count").textContent = "";
  // EventSource reconnects by itself after a failure, sending Last-Event-ID (the last seq it
  // got), so the feed resumes where it stopped on this node.
  // It sends the dsm_token cookie, if any: it cannot send an Authorization header. An answer
  // other than 200 (e.g. 401) closes it for good; the status refresh then shows why.
  const es = new EventSource("/messages/stream?" + q.toString());
  source = es;
  es.onopen = () => setBadge($("feed-state"), "live", "live");
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) setBadge($("feed-state"), "dead", "closed");
    else setBadge($("feed-state"), "reconnecting", "reconnecting");
  };
  es.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    addToFeed(m);
  };
}

function addToFeed(m) {
  received++;
  $("feed-count").textContent = received + " received";
  const when = new Date(m.ts * 1000).toLocaleTimeString();
  const li = el("li", { "data-seq": m.seq, "data-msg-id": m.msg_id, class: "fresh" },
    el("div", { class: "meta" },
      "#" + m.seq + " · " + when + " · " + m.sender + " → " + m.recipient + " · " +
      m.origin + " #" + m.origin_seq),
    el("div", { class: "payload" }, m.payload));
  const feed = $("feed");
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

// ---- send form --------------------------------------------------------------------------------

async function send(ev) {
  ev.preventDefault();
  const form = ev.target;
  const f = new FormData(form);
  const body = {};
  for (const k of ["sender", "recipient", "payload", "msg_id"]) {
    const v = String(f.get(k) || "");
    if (v !== "" || k === "payload") body[k] = v;
  }
  if (f.get("ack")) body.ack = f.get("ack");
  $("send-button").disabled = true;
  let status = 0;
  let answer = null;
  let text = "";
  try {
    const r = await fetch("/send", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
    status = r.status;
    text = await r.text();
    try { answer = JSON.parse(text); } catch (e) { answer = null; }
  } catch (e) {
    text = "no answer: " + e.message;
  } finally {
    $("send-button").disabled = false;
  }
  showOutcome(status, answer, text);
  refreshStatus();
}

function showOutcome(status, answer, text) {
  const ok = status === 200 && answer && answer.status === "ok";
  let detail;
  if (ok) {
    detail = "stored at seq " + answer.seq + ", msg_id " + answer.msg_id +
      (answer.duplicate ? " (duplicate: already stored)" : "");
  } else if (answer && answer.reason) {
    detail = answer.reason;
    if (status === 504 && answer.msg_id) {
      detail += " — written at seq " + answer.seq + "; retry with msg_id " + answer.msg_id;
    }
  } else {
    detail = text;
  }
  const label = ok ? "ok" : status ? String(status) : "failed";
  const li = el("li", { class: ok ? "ok" : "err", "data-status": String(status) },
    el("span", { class: "code" }, label),
    el("span", { class: "detail" }, detail),
    el("span", { class: "muted" }, " · " + new Date().toLocaleTimeString()));
  const list = $("outcomes");
  list.prepend(li);
  while (list.children.length > OUTCOMES_MAX) list.lastElementChild.remove();
}

// ---- start ------------------------------------------------------------------------------------

async function start() {
  $("refresh-every").textContent = "every " + (REFRESH_MS / 1000) + " s";
  $("chart-window").textContent = CHART_SECONDS / 60 + " minutes";
  loadToken();
  $("token-form").addEventListener("submit", submitToken);
  $("send-form").addEventListener("submit", send);
  $("filter-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    follow(Math.max(0, (lastStatus ? lastStatus.last_seq : 0) - HISTORY));
  });
  // Without the token nothing is fetched until the form is submitted.
  if (await refreshStatus() !== "unauthorized") {
    follow(Math.max(0, (lastStatus ? lastStatus.last_seq : 0) - HISTORY));
  }
  setInterval(() => { if (!tokenNeeded) refreshStatus(); }, REFRESH_MS);
}

start();
