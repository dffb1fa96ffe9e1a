// The operators' page of one pipevisor node: plain JavaScript over the node's REST API.
//
// Every figure comes from GET /api/v1/node and GET /api/v1/instances, polled once a second. A
// failed poll is shown at once (a page that silently stops updating is worse than none). The
// log tail follows the SSE stream of the selected instance; the preview fetches PNGs of its
// output at the chosen rate, one request at a time. Mutating calls carry the token kept in this
// tab's sessionStorage; a 401 asks for it and retries. Data is only ever inserted as text.
"use strict";

const API = new URL("../api/v1", document.baseURI).pathname;
const POLL_MS = 1000;
const LOG_LINES = 1000;
const TOKEN_KEY = "pipevisor.token";
const CONFIG_TYPE = "application/json";

const $ = (id) => document.getElementById(id);

const state = {
  instances: new Map(), // name -> InstanceInfo, from the last poll
  selected: null, // name of the instance in the detail view
  lastContact: 0, // Date.now() of the last successful poll
  pollFailures: 0,
  logSource: null, // EventSource of the selected instance's log
  configDirty: false, // the operator edited the config text
  configSeq: null, // config_seq shown in the editor
  previewTimer: null,
  previewUrl: null,
  previewBusy: false,
  cluster: false, // served by a cluster manager: nodes and placements are shown
  placements: new Map(), // instance name -> placement (node and why), from the manager
};

// -- formatting -------------------------------------------------------------------------------

function fmtNumber(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (Math.abs(x) >= 100) return Math.round(x).toString();
  return x.toFixed(digits);
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? Math.round(n) : fmtNumber(n)} ${units[i]}`;
}

function fmtByteRate(n) {
  return n ? `${fmtBytes(n)}/s` : "0";
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function fmtTime(unix) {
  if (!unix) return "–";
  const t = new Date(unix * 1000);
  const pad = (v, n = 2) => String(v).padStart(n, "0");
  return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
}

// -- the token and the API --------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function showTokenState() {
  $("token-button").textContent = token() ? "Token ✓" : "Token";
}

let tokenWaiters = null; // resolve functions waiting for the dialog

function askToken(reason) {
  $("token-reason").textContent = reason;
  $("token-input").value = token();
  const dialog = $("token-dialog");
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
  return new Promise((resolve) => {
    tokenWaiters = tokenWaiters || [];
    tokenWaiters.push(resolve);
  });
}

function closeTokenDialog(value) {
  const dialog = $("token-dialog");
  if (dialog.open) dialog.close();
  const waiters = tokenWaiters || [];
  tokenWaiters = null;
  for (const resolve of waiters) resolve(value);
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function detailOf(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    return JSON.stringify(body.detail ?? body);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// One call of the API. A call refused for its token (a change without the operator's, a read on
// a node with a viewer token) asks for one and tries again.
async function api(method, path, body) {
  for (;;) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = CONFIG_TYPE;
    if (token()) headers.Authorization = `Bearer ${token()}`;
    const response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    if (response.status === 401) {
      const detail = await detailOf(response);
      const given = await askToken(`The node refused the call: ${detail}.`);
      if (given === null) throw new ApiError(401, `${method} ${path}: ${detail}`);
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await detailOf(response));
    if (response.status === 204) return null;
    const type = response.headers.get("content-type") || "";
    return type.includes("json") ? response.json() : response.text();
  }
}

function showBanner(text) {
  const banner = $("banner");
  banner.textContent = text;
  banner.hidden = !text;
}

// -- the node ---------------------------------------------------------------------------------

function renderNode(node) {
  $("node-host").textContent = node.hostname;
  $("node-version").textContent = `v${node.version}`;
  document.title = `pipevisor · ${node.hostname}`;
  const r = node.resources;
  $("node-cpu").textContent = r ? `${fmtNumber(r.cpu_percent)} % of ${r.cpu_count}` : "–";
  $("node-mem").textContent = r
    ? `${fmtBytes(r.memory_total - r.memory_available)} / ${fmtBytes(r.memory_total)}`
    : "–";
  $("node-load").textContent = r ? r.load.map((v) => v.toFixed(2)).join(" ") : "–";
  $("node-rx").textContent = r ? fmtByteRate(r.net_rx_bytes_per_s) : "–";
  $("node-tx").textContent = r ? fmtByteRate(r.net_tx_bytes_per_s) : "–";
  const running = node.states ? node.states.running : 0;
  $("node-instances").textContent = `${running} running / ${node.instances}`;
  $("node-uptime").textContent = fmtDuration(node.uptime);
}

// -- the nodes of a cluster (when the manager serves the page) ---------------------------------

function renderNodes(nodes) {
  $("nodes-section").hidden = !nodes;
  $("instances").classList.toggle("cluster", Boolean(nodes));
  if (!nodes) return;
  const up = nodes.filter((n) => n.status === "up").length;
  $("nodes-summary").textContent = `${up} of ${nodes.length} up`;
  const body = $("node-rows");
  while (body.rows.length > nodes.length) body.lastChild.remove();
  nodes.forEach((n, index) => {
    const row = body.rows[index] || body.insertRow();
    const r = n.resources;
    const cells = [
      n.name,
      n.status,
      r ? fmtNumber(r.cpu_percent) : "–",
      r ? fmtNumber(r.memory_percent) : "–",
      r ? `${fmtByteRate(r.link_rx_bytes_per_s || 0)} / ${fmtByteRate(r.link_tx_bytes_per_s || 0)}` : "–",
      `${n.running} / ${n.instances}`,
      n.score === null ? "–" : n.score.toFixed(3),
      n.groups.join(", ") || (n.generic ? "generic" : "–"),
      n.reason,
    ];
    while (row.cells.length < cells.length) row.insertCell();
    cells.forEach((text, i) => {
      const cell = row.cells[i];
      if (cell.textContent !== text) cell.textContent = text;
      cell.className = i >= 2 && i <= 6 ? "num" : "";
    });
    row.dataset.node = n.name;
    row.className = `node-${n.status}`;
  });
}

// -- the instance table -----------------------------------------------------------------------

// The state with what the node saw of the run: a silent heartbeat, an output standing still.
function stateText(info) {
  if (info.unresponsive) return `${info.state} (unresponsive)`;
  return info.stalled ? `${info.state} (stalled)` : info.state;
}

const COLUMNS = [
  ["name", (i) => i.name],
  ["entry", (i) => i.entry],
  ["node", (i) => i.node || ""],
  ["state", (i) => stateText(i)],
  ["cpu", (i) => (i.resources.sampled_at ? fmtNumber(i.resources.cpu_percent) : "–")],
  ["mem", (i) => (i.resources.sampled_at ? fmtBytes(i.resources.rss_bytes) : "–")],
  ["in", (i) => fmtNumber(i.stats.rate_in)],
  ["out", (i) => fmtNumber(i.stats.rate_out)],
  ["rx", (i) => fmtByteRate(i.stats.byte_rate_in)],
  ["tx", (i) => fmtByteRate(i.stats.byte_rate_out)],
  ["clients", (i) => (i.stats.clients === null ? "–" : String(i.stats.clients))],
  ["drops", (i) => String(i.stats.drops)],
  ["restarts", (i) => String(i.restarts)],
];
const NUMERIC = new Set(["cpu", "mem", "in", "out", "rx", "tx", "clients", "drops", "restarts"]);
const ACTIONS = ["start", "stop", "restart"];
const ACTIVE = new Set(["starting", "running", "backoff"]);

function makeRow(name) {
  const row = document.createElement("tr");
  row.dataset.name = name;
  for (const [key] of COLUMNS) {
    const cell = document.createElement("td");
    cell.className = `c-${key}${NUMERIC.has(key) ? " num" : ""}`;
    row.appendChild(cell);
  }
  const actions = document.createElement("td");
  actions.className = "c-actions";
  for (const action of ACTIONS) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.action = action;
    button.textContent = action[0].toUpperCase() + action.slice(1);
    actions.appendChild(button);
  }
  row.appendChild(actions);
  return row;
}

function matchesFilter(info) {
  const text = $("filter").value.trim().toLowerCase();
  if (!text) return true;
  return [info.name, info.entry, info.state, info.node || ""].some((v) =>
    v.toLowerCase().includes(text),
  );
}

function renderInstances(list) {
  const body = $("instance-rows");
  const rows = new Map([...body.rows].map((row) => [row.dataset.name, row]));
  state.instances = new Map(list.map((info) => [info.name, info]));
  const names = [...state.instances.keys()].sort();
  for (const name of names) {
    const info = state.instances.get(name);
    let row = rows.get(name);
    if (!row) row = makeRow(name);
    body.appendChild(row); // keeps the rows sorted; moves an existing row
    rows.delete(name);
    COLUMNS.forEach(([, value], index) => {
      const text = value(info);
      if (row.cells[index].textContent !== text) row.cells[index].textContent = text;
    });
    row.className = `state-${info.state}${info.stalled || info.unresponsive ? " stalled" : ""}`;
    row.classList.toggle("selected", name === state.selected);
    row.hidden = !matchesFilter(info);
    row.title = info.reason || "";
    const busy = row.dataset.busy === "1";
    for (const button of row.querySelectorAll("button[data-action]")) {
      const action = button.dataset.action;
      const active = ACTIVE.has(info.state);
      const allowed =
        action === "start" ? !active && info.state !== "stopping" : info.state !== "stopping" && active;
      button.disabled = busy || !allowed;
    }
  }
  for (const row of rows.values()) row.remove();
  $("no-instances").hidden = list.length > 0;
  if (state.selected) renderDetail();
}

async function act(name, action, row) {
  row.dataset.busy = "1";
  for (const button of row.querySelectorAll("button")) button.disabled = true;
  try {
    await api("POST", `/instances/${encodeURIComponent(name)}/${action}`);
    showBanner("");
  } catch (error) {
    showBanner(`${action} ${name}: ${error.message}`);
  } finally {
    delete row.dataset.busy;
    poll();
  }
}

// -- polling ----------------------------------------------------------------------------------

let pollTimer = null;
let polling = false;

async function poll() {
  clearTimeout(pollTimer);
  if (polling) return;
  polling = true;
  try {
    const [node, list] = await Promise.all([api("GET", "/node"), api("GET", "/instances")]);
    state.cluster = Boolean(node.cluster);
    let nodes = null;
    if (state.cluster) {
      const [found, placements] = await Promise.all([
        api("GET", "/cluster/nodes"),
        api("GET", "/cluster/placements"),
      ]);
      nodes = found;
      state.placements = new Map(placements.map((p) => [p.instance, p]));
    }
    state.lastContact = Date.now();
    state.pollFailures = 0;
    renderNode(node);
    renderNodes(nodes);
    renderInstances(list);
  } catch (error) {
    state.pollFailures += 1;
    if (state.pollFailures === 1) console.warn("poll failed", error);
  } finally {
    polling = false;
    renderLink();
    pollTimer = setTimeout(poll, POLL_MS);
  }
}

function renderLink() {
  const link = $("link");
  if (!state.lastContact) {
    link.textContent = state.pollFailures ? "no contact with the node" : "connecting…";
    link.className = `link-state${state.pollFailures ? " lost" : ""}`;
    return;
  }
  const age = (Date.now() - state.lastContact) / 1000;
  const lost = state.pollFailures > 0 && age > 2.5;
  link.textContent = lost
    ? `no contact for ${fmtDuration(age)}: figures are stale`
    : `live · ${fmtTime(state.lastContact / 1000).slice(0, 8)}`;
  link.className = `link-state${lost ? " lost" : ""}`;
}

// -- the detail view --------------------------------------------------------------------------

function infoItems(i) {
  const s = i.stats;
  const r = i.resources;
  const items = [];
  if (i.node) {
    const placed = state.placements.get(i.name);
    items.push(["node", i.node]);
    if (placed) {
      const moved = placed.moves ? ` (moved ${placed.moves}×, last off ${placed.moved_from})` : "";
      items.push(["placed", `${placed.why}${moved}`]);
    }
  }
  items.push(
    ["reason", i.reason || "–"],
    ["pid", i.pid ?? "–"],
    ["run", `${i.run} (desired: ${i.desired})`],
    ["started", i.started_at ? `${fmtTime(i.started_at)} (${fmtDuration(Date.now() / 1000 - i.started_at)} ago)` : "–"],
    ["stream", i.stream ? `${i.stream} (${i.output_mode})` : "–"],
    ["input", i.data_url || "–"],
    ["processing", `${fmtNumber(s.processing_time_avg * 1000, 2)} ms avg, ${fmtNumber(s.processing_time_max * 1000, 2)} ms max`],
    ["messages", `${s.messages_in} in, ${s.messages_out} out, ${s.errors} errors, ${s.malformed} malformed, ${s.output_drops} output drops`],
    ["last pulse id", s.last_pulse_id ?? "–"],
    ["last input", fmtTime(s.last_input_at)],
    ["last output", fmtTime(s.last_output_at)],
    ["threads / fds", r.sampled_at ? `${r.threads} / ${r.fds} (${r.processes} processes)` : "–"],
    ["kind", i.permanent ? "permanent" : i.on_demand ? "on demand" : "ordinary"],
    ["log", `${i.logs.stored} stored, ${i.logs.dropped} dropped by the rate limit`],
  );
  if (i.on_demand && i.stops_at) {
    items.push(["stops in", fmtDuration(i.stops_at - Date.now() / 1000)]);
  }
  const counters = Object.entries(s.counters || {});
  if (counters.length) {
    items.push(["counters", counters.map(([k, v]) => `${k} ${fmtNumber(v, 0)}`).join(", ")]);
  }
  if (s.last_error) items.push(["last error", s.last_error]);
  if (i.exit_code !== null || i.exit_signal) {
    items.push(["last exit", i.exit_signal ? `signal ${i.exit_signal}` : `code ${i.exit_code}`]);
  }
  return items;
}

function renderDetail() {
  const info = state.instances.get(state.selected);
  if (!info) {
    closeDetail();
    return;
  }
  $("detail-title").textContent = `${info.name} · ${info.entry}`;
  const badge = $("detail-state");
  badge.textContent = stateText(info);
  badge.className = `state state-${info.state}`;
  const list = $("detail-info");
  const items = infoItems(info);
  while (list.children.length > items.length) list.lastChild.remove();
  items.forEach(([term, value], index) => {
    let pair = list.children[index];
    if (!pair) {
      pair = list.appendChild(document.createElement("div"));
      pair.append(document.createElement("dt"), document.createElement("dd"));
    }
    pair.dataset.term = term;
    pair.firstChild.textContent = term;
    pair.lastChild.textContent = String(value);
  });
  const report = $("report");
  const text = Object.keys(info.report || {}).length ? JSON.stringify(info.report, null, 2) : "";
  if (report.textContent !== text) report.textContent = text;
  $("report-panel").hidden = !text;
  if (!state.configDirty && info.config_seq !== state.configSeq) loadConfig();
}

function select(name) {
  if (state.selected === name) return;
  closeDetail();
  state.selected = name;
  $("detail").hidden = false;
  for (const row of $("instance-rows").rows) row.classList.toggle("selected", row.dataset.name === name);
  renderDetail();
  followLogs(name);
  loadConfig();
  schedulePreview(0);
}

function closeDetail() {
  state.selected = null;
  $("detail").hidden = true;
  if (state.logSource) state.logSource.close();
  state.logSource = null;
  $("logs").textContent = "";
  state.configDirty = false;
  state.configSeq = null;
  clearTimeout(state.previewTimer);
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  $("preview").removeAttribute("src");
  $("preview-status").textContent = "";
  for (const row of $("instance-rows").rows) row.classList.remove("selected");
}

// -- the log tail -----------------------------------------------------------------------------

function appendLog(entry) {
  const pre = $("logs");
  const line = document.createElement("div");
  const level = String(entry.level || "info").toLowerCase();
  line.className = `log log-${level}`;
  line.textContent = `${fmtTime(entry.time)} ${entry.source} ${level.toUpperCase()} ${entry.message}`;
  if (entry.exc) line.textContent += `\n${entry.exc.trimEnd()}`;
  pre.appendChild(line);
  while (pre.childElementCount > LOG_LINES) pre.firstElementChild.remove();
  if ($("logs-follow").checked) pre.scrollTop = pre.scrollHeight;
}

function followLogs(name) {
  // The stored tail first, then live entries: the stream starts with what is stored after
  // ``since`` and resumes by itself after a reconnect (Last-Event-ID).
  const path = `/instances/${encodeURIComponent(name)}/logs`;
  api("GET", `${path}?tail=200`)
    .then((entries) => {
      if (state.selected !== name) return;
      for (const entry of entries) appendLog(entry);
      const since = entries.length ? entries[entries.length - 1].seq : null;
      const url = `${API}${path}/follow${since === null ? "" : `?since=${since}`}`;
      const source = new EventSource(url);
      source.onmessage = (event) => {
        if (state.selected === name) appendLog(JSON.parse(event.data));
      };
      state.logSource = source;
    })
    .catch((error) => {
      $("logs").textContent = `the log cannot be read: ${error.message}`;
    });
}

// -- the config editor ------------------------------------------------------------------------

function currentConfig() {
  const info = state.instances.get(state.selected);
  return info ? info.config : null;
}

// What the editor holds, checked: the parsed object, or the reason it cannot be applied.
function checkConfig() {
  const text = $("config").value;
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return { error: `not valid JSON: ${error.message}` };
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return { error: "the config must be a JSON object ({…})" };
  }
  const before = currentConfig() || {};
  const keys = new Set([...Object.keys(before), ...Object.keys(parsed)]);
  const changed = [...keys].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(parsed[k]));
  return { parsed, changed };
}

function showConfigCheck() {
  const status = $("config-status");
  const result = checkConfig();
  if (result.error) {
    status.textContent = result.error;
    status.className = "status error";
    $("config-apply").disabled = true;
  } else if (!result.changed.length) {
    status.textContent = "no change";
    status.className = "status";
    $("config-apply").disabled = true;
  } else {
    status.textContent = `valid JSON; changes ${result.changed.join(", ")}`;
    status.className = "status ok";
    $("config-apply").disabled = false;
  }
}

async function loadConfig() {
  const name = state.selected;
  if (!name) return;
  try {
    const config = await api("GET", `/instances/${encodeURIComponent(name)}/config`);
    if (state.selected !== name || state.configDirty) return;
    const info = state.instances.get(name);
    state.configSeq = info ? info.config_seq : null;
    $("config").value = JSON.stringify(config, null, 2);
    $("config-seq").textContent = info ? `seq ${info.config_seq}` : "";
    $("config-status").textContent = "";
    $("config-apply").disabled = true;
  } catch (error) {
    $("config-status").textContent = `the config cannot be read: ${error.message}`;
  }
}

async function applyConfig() {
  const name = state.selected;
  const result = checkConfig();
  if (!name || result.error) return;
  const status = $("config-status");
  if ($("config").value.includes('"<redacted>"')) {
    // Read with a viewer's token: applying it would overwrite the secrets with the placeholder.
    status.textContent = "the config shows <redacted> secrets: reload it with the operator's token first";
    status.className = "status error";
    return;
  }
  $("config-apply").disabled = true;
  status.textContent = "applying…";
  status.className = "status";
  try {
    const answer = await api("PUT", `/instances/${encodeURIComponent(name)}/config`, result.parsed);
    state.configDirty = false;
    state.configSeq = answer.seq;
    $("config").value = JSON.stringify(answer.config, null, 2);
    $("config-seq").textContent = `seq ${answer.seq}`;
    const how = { live: "applied live", next_start: "applies at the next start", next_restart: "applies at the next restart" };
    status.textContent = `${how[answer.applied] || answer.applied} (seq ${answer.seq})`;
    status.className = "status ok";
  } catch (error) {
    status.textContent = `refused: ${error.message}`;
    status.className = "status error";
    $("config-apply").disabled = false;
  }
}

// -- the image preview ------------------------------------------------------------------------

function schedulePreview(delay) {
  clearTimeout(state.previewTimer);
  const rate = Number($("preview-rate").value);
  if (!state.selected || !rate) return;
  state.previewTimer = setTimeout(refreshPreview, delay);
}

async function refreshPreview() {
  const name = state.selected;
  const rate = Number($("preview-rate").value);
  if (!name || !rate || state.previewBusy) return;
  const info = state.instances.get(name);
  const status = $("preview-status");
  if (!info || !info.stream || info.output_mode !== "PUB" || !ACTIVE.has(info.state)) {
    status.textContent = info && info.output_mode === "PUSH"
      ? "no preview of a PUSH output: it would take frames from its consumer"
      : "no stream to preview while the instance is not running";
    schedulePreview(1000);
    return;
  }
  state.previewBusy = true;
  const started = performance.now();
  try {
    const width = Math.max(64, Math.min(1280, Math.round(($("preview-panel").clientWidth || 640) / 64) * 64));
    const query = new URLSearchParams({
      channel: $("preview-channel").value || "image",
      colormap: $("preview-colormap").value,
      width: String(width),
    });
    const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
    const response = await fetch(`${API}/instances/${encodeURIComponent(name)}/preview?${query}`, { cache: "no-store", headers });
    if (!response.ok) throw new ApiError(response.status, await detailOf(response));
    const blob = await response.blob();
    if (state.selected !== name) return;
    const url = URL.createObjectURL(blob);
    const image = $("preview");
    image.onload = () => URL.revokeObjectURL(url);
    image.src = url;
    const shape = response.headers.get("x-image-shape") || "?";
    const range = response.headers.get("x-image-range") || "?";
    status.textContent = `pulse ${response.headers.get("x-pulse-id") || "?"} · ${shape} · range ${range}`;
    status.className = "status";
  } catch (error) {
    status.textContent = `no preview: ${error.message}`;
    status.className = "status error";
  } finally {
    state.previewBusy = false;
    const elapsed = performance.now() - started;
    if (state.selected === name) schedulePreview(Math.max(0, 1000 / rate - elapsed));
  }
}

// -- creating instances -----------------------------------------------------------------------

async function loadEntries() {
  try {
    const entries = await api("GET", "/registry");
    const select = $("create-entry");
    const chosen = select.value;
    select.replaceChildren();
    for (const entry of entries.filter((e) => e.valid)) {
      const option = document.createElement("option");
      option.value = entry.name;
      option.textContent = entry.name;
      option.title = entry.description || "";
      select.appendChild(option);
    }
    if (chosen) select.value = chosen;
  } catch (error) {
    console.warn("registry", error);
  }
}

async function createInstance(event) {
  event.preventDefault();
  const name = $("create-name").value.trim();
  const body = { name, entry: $("create-entry").value, start: $("create-start").checked };
  try {
    await api("POST", "/instances", body);
    $("create-name").value = "";
    showBanner("");
    await poll();
    select(name);
  } catch (error) {
    showBanner(`create ${name}: ${error.message}`);
  }
}

// -- wiring -----------------------------------------------------------------------------------

function wire() {
  $("instance-rows").addEventListener("click", (event) => {
    const row = event.target.closest("tr");
    if (!row) return;
    const button = event.target.closest("button[data-action]");
    if (button) {
      act(row.dataset.name, button.dataset.action, row);
    } else {
      select(row.dataset.name);
    }
  });
  $("filter").addEventListener("input", () => renderInstances([...state.instances.values()]));
  $("detail-close").addEventListener("click", closeDetail);
  $("logs-clear").addEventListener("click", () => {
    $("logs").textContent = "";
  });
  $("config").addEventListener("input", () => {
    state.configDirty = true;
    showConfigCheck();
  });
  $("config-reload").addEventListener("click", () => {
    state.configDirty = false;
    state.configSeq = null;
    loadConfig();
  });
  $("config-apply").addEventListener("click", applyConfig);
  $("preview-rate").addEventListener("change", () => schedulePreview(0));
  $("preview-colormap").addEventListener("change", () => schedulePreview(0));
  $("create-form").addEventListener("submit", createInstance);
  $("create-entry").addEventListener("focus", loadEntries);
  $("token-button").addEventListener("click", () => {
    askToken("The token for start, stop, restart and config changes (kept in this tab only).");
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    showTokenState();
    closeTokenDialog(value || null);
  });
  $("token-cancel").addEventListener("click", () => closeTokenDialog(null));
  $("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
    closeTokenDialog(null);
  });
  $("token-dialog").addEventListener("cancel", () => closeTokenDialog(null));
  setInterval(renderLink, 1000);
}

wire();
showTokenState();
loadEntries();
poll();
