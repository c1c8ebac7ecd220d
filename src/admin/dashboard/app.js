// Junction dashboard. Polls /api/dashboard once a second (the next poll starts only after
// the last one ended), keeps five minutes of points per route and version, and draws them
// on canvases. The admin token lives in sessionStorage and goes out as a Bearer header.
"use strict";

const POLL_MS = 1000;
const KEEP_POINTS = 300;
// TTFT quantiles come from differences of the cumulative histogram over this long.
const TTFT_SPAN_MS = 10000;
const TOKEN_KEY = "junction.adminToken";

const $ = (id) => document.getElementById(id);
const series = new Map(); // "route\u0000version" -> [{t, rps, err, p50, p99, t50, t99}]
const ttftSnapshots = new Map(); // same key -> [{t, count, buckets}]
const trafficCards = new Map(); // same key -> the card's element

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// ---- formatting ----
const fmt = {
  count(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 1e9) return (n / 1e9).toFixed(2) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n));
  },
  rate(n) { return n === null || n === undefined ? "–" : n >= 100 ? n.toFixed(0) : n.toFixed(n >= 10 ? 1 : 2); },
  pct(n) { return n === null || n === undefined ? "–" : (n * 100).toFixed(n >= 0.1 ? 1 : 2) + "%"; },
  ms(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 10000) return (n / 1000).toFixed(1) + " s";
    if (n >= 100) return n.toFixed(0) + " ms";
    return n.toFixed(n >= 10 ? 1 : 2) + " ms";
  },
  ratio(n) { return n === null || n === undefined ? "–" : n.toFixed(2) + "×"; },
};

// ---- the token ----
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}
function showTokenState() {
  $("token-button").textContent = token() ? "Token set ✓" : "Admin token";
}

function notice(text, kind) {
  const box = $("notice");
  box.textContent = text;
  box.className = "notice" + (kind ? " " + kind : "");
  box.hidden = !text;
}

// What a refusal means to the operator, from the admin API's error body.
function refusal(status, body) {
  const message = body && body.error ? body.error.message : "";
  const type = body && body.error ? body.error.type : "";
  if (status === 401) return "Refused (401): this needs the admin token. Enter it with “Admin token” above." + (token() ? " The token you entered was not accepted." : "");
  if (status === 403 && type === "admin_token_not_set") return "Refused (403): no admin token is configured on the gateway ([admin] token_file or token_env), so no change can be made from here.";
  if (status === 403) return "Refused (403 " + type + "): " + message;
  return "Failed (" + status + (type ? " " + type : "") + ")" + (message ? ": " + message : "");
}

async function call(method, path, json) {
  const init = { method, headers: headers(), cache: "no-store", credentials: "omit" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  return { status: response.status, ok: response.ok, body };
}

// ---- charts ----
function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function drawChart(canvas, series, fixedMax) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (!width || !height) return;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.strokeStyle = css("--line");
  g.lineWidth = 1;
  g.beginPath(); g.moveTo(0, height - 0.5); g.lineTo(width, height - 0.5); g.stroke();
  let max = fixedMax || 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  if (!(max > 0)) return;
  max *= 1.1;
  // The time axis grows with the points kept, from one minute up to five.
  const span = Math.max(60, ...series.map((s) => s.values.length)) - 1;
  const xOf = (i, length) => width - ((length - 1 - i) / span) * width;
  const yOf = (v) => height - 2 - (v / max) * (height - 4);
  series.forEach((s, index) => {
    const colour = css(s.color);
    const runs = [];
    let run = null;
    s.values.forEach((v, i) => {
      if (v === null) { run = null; return; }
      if (!run) runs.push(run = []);
      run.push([xOf(i, s.values.length), yOf(v)]);
    });
    for (const points of runs) {
      if (index === 0 && points.length > 1) {
        // The first series gets a faint fill under it: easier to read at a glance.
        g.globalAlpha = 0.12;
        g.fillStyle = colour;
        g.beginPath();
        g.moveTo(points[0][0], height);
        for (const [x, y] of points) g.lineTo(x, y);
        g.lineTo(points[points.length - 1][0], height);
        g.closePath();
        g.fill();
        g.globalAlpha = 1;
      }
      g.strokeStyle = colour;
      g.lineWidth = 1.5;
      g.lineJoin = "round";
      g.beginPath();
      points.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
      if (points.length === 1) g.lineTo(points[0][0] - 1, points[0][1]);
      g.stroke();
    }
  });
}

// ---- TTFT quantiles from the cumulative histogram ----
function ttftQuantiles(key, total, now) {
  let snaps = ttftSnapshots.get(key);
  if (!snaps) ttftSnapshots.set(key, snaps = []);
  snaps.push({ t: now, count: total.ttft_count, buckets: total.ttft_buckets.map((b) => b[1]) });
  while (snaps.length > 2 && now - snaps[1].t >= TTFT_SPAN_MS) snaps.shift();
  const old = snaps[0];
  const seen = total.ttft_count - old.count;
  if (snaps.length < 2 || seen <= 0 || old.buckets.length !== total.ttft_buckets.length) return [null, null];
  const quantile = (q) => {
    const rank = Math.max(1, Math.ceil(q * seen));
    let sum = 0;
    for (let i = 0; i < total.ttft_buckets.length; i++) {
      sum += total.ttft_buckets[i][1] - old.buckets[i];
      if (sum >= rank) {
        const bound = total.ttft_buckets[i][0];
        // The +Inf bucket: say "above the last bound" with the last bound.
        const last = total.ttft_buckets.length > 1 ? total.ttft_buckets[total.ttft_buckets.length - 2][0] : null;
        return (bound === null ? last : bound) * 1000;
      }
    }
    return null;
  };
  return [quantile(0.5), quantile(0.99)];
}

// ---- traffic ----
function updateTraffic(data, now) {
  const totals = new Map(data.totals.map((t) => [t.route + "\u0000" + t.version, t]));
  const cards = $("traffic-cards");
  let rps = 0, errors = 0, requests = 0;
  for (const t of data.totals) requests += t.requests;
  for (const s of data.stats.routes) { rps += s.requests_per_second; errors += s.errors; }
  $("total-requests").textContent = fmt.count(requests);
  $("total-requests").dataset.value = String(requests);
  $("total-rps").textContent = fmt.rate(rps);
  $("total-errors").textContent = fmt.count(errors);

  const rows = data.stats.routes.slice();
  for (const t of data.totals) {
    if (!rows.some((r) => r.route === t.route && r.version === t.version)) {
      rows.push({ route: t.route, version: t.version, requests: 0, errors: 0, requests_per_second: 0, error_rate: 0, p50_ms: null, p99_ms: null });
    }
  }
  if (rows.length && cards.querySelector(".empty")) cards.textContent = "";
  for (const row of rows) {
    const key = row.route + "\u0000" + row.version;
    const total = totals.get(key);
    const [t50, t99] = total ? ttftQuantiles(key, total, now) : [null, null];
    let points = series.get(key);
    if (!points) series.set(key, points = []);
    points.push({ t: now, rps: row.requests_per_second, err: row.error_rate, p50: row.p50_ms, p99: row.p99_ms, t50, t99 });
    if (points.length > KEEP_POINTS) points.shift();

    let card = trafficCards.get(key);
    if (!card) {
      const chart = (name, label) => el("div", { class: "chart" },
        el("div", { class: "label" }, label), el("div", { class: "figure", dataset: { figure: name } }, "–"), el("canvas", { dataset: { chart: name } }));
      card = el("div", { class: "card", dataset: { route: row.route, version: row.version } },
        el("div", { class: "card-head" }, el("span", { class: "name" }, row.route), el("span", { class: "tag" }, "version " + row.version),
          el("span", { class: "tag num", dataset: { figure: "requests" } }, "")),
        el("div", { class: "charts" }, chart("rps", "requests/s"), chart("err", "error rate"), chart("lat", "latency p50 / p99"), chart("ttft", "TTFT p50 / p99")));
      cards.append(card);
      trafficCards.set(key, card);
    }
    const figure = (name, text) => { card.querySelector('[data-figure="' + name + '"]').textContent = text; };
    figure("requests", fmt.count(total ? total.requests : row.requests) + " requests");
    figure("rps", fmt.rate(row.requests_per_second));
    figure("err", fmt.pct(row.error_rate) + " (" + fmt.count(row.errors) + ")");
    figure("lat", fmt.ms(row.p50_ms) + " / " + fmt.ms(row.p99_ms));
    figure("ttft", t50 === null ? "no streams" : fmt.ms(t50) + " / " + fmt.ms(t99));
    const canvas = (name) => card.querySelector('[data-chart="' + name + '"]');
    const values = (field) => points.map((p) => p[field]);
    drawChart(canvas("rps"), [{ values: values("rps"), color: "--c1" }]);
    drawChart(canvas("err"), [{ values: values("err"), color: "--c2" }], 0.01);
    drawChart(canvas("lat"), [{ values: values("p50"), color: "--c1" }, { values: values("p99"), color: "--c2" }]);
    drawChart(canvas("ttft"), [{ values: values("t50"), color: "--c1" }, { values: values("t99"), color: "--c2" }]);
  }
}

// ---- splits and canaries ----
const POOL_COLOURS = ["--c1", "--c2", "--warn", "--ok"];

function phaseTag(phase) {
  if (!phase) return el("span", { class: "tag" }, "manual split");
  if (phase.state === "promoted") return el("span", { class: "tag ok" }, "promoted");
  if (phase.state === "failed") return el("span", { class: "tag bad", title: phase.reason || "" }, "failed: " + (phase.reason || ""));
  if (phase.state === "progressing") return el("span", { class: "tag warn" }, "progressing · step " + (phase.step + 1));
  if (phase.state === "paused") return el("span", { class: "tag", title: "held by hand: no step up; a regression still rolls it back" }, "paused · step " + (phase.step + 1));
  return el("span", { class: "tag" }, String(phase.state));
}

function figureBox(label, value, text, limit, limitText) {
  const over = value !== null && value !== undefined && limit !== null && limit !== undefined ? value > limit : null;
  return el("div", { class: over === null ? "" : over ? "over" : "under" },
    el("span", { class: "label" }, label), el("b", {}, text), limit === null || limit === undefined ? null : el("small", {}, "limit " + limitText));
}

// Split cards stay in place between polls: the weight editor keeps what is being typed.
const splitCards = new Map(); // route -> {card, live, editor, pools}

function updateSplits(data) {
  const box = $("split-cards");
  const empty = box.querySelector(".empty");
  if (!data.splits.length) {
    splitCards.clear();
    box.textContent = "";
    box.append(el("p", { class: "empty" }, "No route has a split."));
    return;
  }
  if (empty) empty.remove();
  const seen = new Set();
  for (const split of data.splits) {
    seen.add(split.route);
    const pools = Object.keys(split.weights);
    let entry = splitCards.get(split.route);
    if (entry && entry.pools !== pools.join(",")) { entry.card.remove(); entry = null; }
    if (!entry) {
      const live = el("div");
      const editor = weightEditor(split.route, pools, split.weights);
      const card = el("div", { class: "card", dataset: { split: split.route } }, live, editor);
      box.append(card);
      splitCards.set(split.route, entry = { card, live, editor, pools: pools.join(",") });
    }
    entry.live.replaceChildren(...splitView(split, pools));
  }
  for (const [route, entry] of splitCards) {
    if (!seen.has(route)) { entry.card.remove(); splitCards.delete(route); }
  }
}

function splitView(split, pools) {
  const sum = pools.reduce((a, p) => a + split.weights[p], 0) || 1;
  const canary = split.canary;
  const bar = el("div", { class: "weights" }, pools.map((p, i) => {
    const span = el("span", { title: p + " " + split.weights[p] });
    span.style.width = (100 * split.weights[p] / sum) + "%";
    span.style.background = "var(" + POOL_COLOURS[i % POOL_COLOURS.length] + ")";
    return span;
  }));
  const weightText = pools.map((p) => p + " " + split.weights[p] + (split.configured[p] !== split.weights[p] ? " (configured " + split.configured[p] + ")" : "")).join(" · ");
  let figures = null;
  if (canary) {
    const last = canary.last_interval || {};
    figures = el("div", { class: "figures" },
      figureBox("candidate errors", last.candidate_error_rate, fmt.pct(last.candidate_error_rate), canary.max_error_rate, fmt.pct(canary.max_error_rate)),
      figureBox("stable errors", null, fmt.pct(last.stable_error_rate)),
      figureBox("latency ratio", last.latency_ratio, fmt.ratio(last.latency_ratio), canary.max_latency_ratio, fmt.ratio(canary.max_latency_ratio)),
      figureBox("TTFT ratio", last.ttft_ratio, fmt.ratio(last.ttft_ratio), canary.max_ttft_ratio, fmt.ratio(canary.max_ttft_ratio)),
      figureBox("requests (cand. / stable)", null, fmt.count(last.candidate_requests) + " / " + fmt.count(last.stable_requests), canary.min_requests, String(canary.min_requests) + " min"),
      figureBox("steps", null, canary.steps.join(" → ") + "%"));
  }
  const action = (name, label, cls) => el("button", { type: "button", class: cls, dataset: { action: name, route: split.route }, onclick: () => act(split.route, name) }, label);
  // Pause while it steps, resume while paused; an ended analysis has neither.
  const state = canary ? canary.phase.state : null;
  const hold = state === "progressing" ? action("pause", "Pause", "ghost") : state === "paused" ? action("resume", "Resume", "ghost") : null;
  return [
    el("div", { class: "card-head" }, el("span", { class: "name" }, split.route), phaseTag(canary ? canary.phase : null),
      canary ? el("span", { class: "tag" }, canary.stable + " → " + canary.candidate) : null),
    el("div", { class: "num", dataset: { weights: split.route } }, weightText), bar, figures,
    el("div", { class: "row" }, action("promote", "Promote", ""), hold, action("rollback", "Roll back", "danger")),
  ];
}

// PUT /api/routes/NAME/split with the typed weights (0 to 1000 each).
function weightEditor(route, pools, weights) {
  const inputs = pools.map((p) => el("input", { type: "number", min: "0", max: "1000", step: "1", value: String(weights[p]), dataset: { pool: p }, "aria-label": p + " weight" }));
  const form = el("form", { class: "split-editor", dataset: { editor: route } },
    pools.map((p, i) => el("label", {}, el("span", { class: "label" }, p), inputs[i])),
    el("button", { type: "submit", class: "ghost" }, "Set weights"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const wanted = {};
    inputs.forEach((input) => { wanted[input.dataset.pool] = Number(input.value); });
    try {
      const result = await call("PUT", "/api/routes/" + encodeURIComponent(route) + "/split", { weights: wanted });
      if (result.ok) {
        notice("Split of route " + route + " set: " + Object.entries(result.body.weights).map(([p, w]) => p + " " + w).join(", ") + ".", "ok");
        poll.now();
      } else {
        notice("Setting the split of route " + route + ": " + refusal(result.status, result.body), "bad");
        if (result.status === 401) openTokenForm();
      }
    } catch (error) {
      notice("Setting the split of route " + route + " failed: " + error, "bad");
    }
  });
  return form;
}

// The buttons' actions: what each is called, and where it posts.
const ACTIONS = {
  promote: ["Promote", "promote"],
  rollback: ["Roll back", "rollback"],
  pause: ["Pause", "canary/pause"],
  resume: ["Resume", "canary/resume"],
};

async function act(route, name) {
  const [verb, path] = ACTIONS[name];
  try {
    const result = await call("POST", "/api/routes/" + encodeURIComponent(route) + "/" + path);
    if (result.ok) {
      const weights = Object.entries(result.body.weights).map(([p, w]) => p + " " + w).join(", ");
      notice(verb + " of route " + route + " done: weights now " + weights + ".", "ok");
      poll.now();
    } else {
      notice(verb + " of route " + route + ": " + refusal(result.status, result.body), "bad");
      if (result.status === 401) openTokenForm();
    }
  } catch (error) {
    notice(verb + " of route " + route + " failed: " + error, "bad");
  }
}

// ---- pools ----
function table(title, columns, rows) {
  return el("div", { class: "table-wrap" }, title ? el("h3", {}, title) : null,
    el("table", {},
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.n ? "n" : null }, c.label)))),
      el("tbody", {}, rows.length ? rows.map((r) => el("tr", {}, columns.map((c) => el("td", { class: c.n ? "n" : null }, c.value(r)))))
        : el("tr", {}, el("td", { colspan: String(columns.length), class: "empty" }, "none")))));
}

function updatePools(data) {
  const box = $("pool-tables");
  box.textContent = "";
  for (const pool of data.pools) {
    const health = (e) => e.ejected_for_ms !== null ? el("span", { class: "tag bad" }, "ejected " + Math.ceil(e.ejected_for_ms / 1000) + " s")
      : e.up ? el("span", { class: "tag ok" }, "up") : el("span", { class: "tag bad" }, "down (" + e.health_check + ")");
    // least_queue pools: each endpoint's last load report, as the balancer reads it.
    const load = pool.load_max_age_seconds === null || pool.load_max_age_seconds === undefined ? [] : [
      { label: "waiting", n: 1, value: (e) => gauge(e.load.waiting) },
      { label: "running", n: 1, value: (e) => gauge(e.load.running) },
      { label: "KV cache", n: 1, value: (e) => e.load.kv_cache_usage === null ? "–" : (e.load.kv_cache_usage * 100).toFixed(0) + "%" },
      { label: "load report", value: loadReport },
    ];
    box.append(table(pool.name + (pool.version ? " · version " + pool.version : "") + " · " + (pool.balance || "") + " · " + pool.protocol, [
      { label: "endpoint", value: (e) => e.url },
      ...load,
      { label: "health", value: health },
      { label: "weight", n: 1, value: (e) => e.weight },
      { label: "in flight", n: 1, value: (e) => e.in_flight },
      { label: "requests", n: 1, value: (e) => fmt.count(e.requests) },
      { label: "ejections", n: 1, value: (e) => e.ejections },
      { label: "latency EWMA", n: 1, value: (e) => fmt.ms(e.latency_ewma_ms) },
      { label: "idle conns", n: 1, value: (e) => e.idle_connections },
    ], pool.endpoints));
  }
  // Hops between pools of fallback chains: shown once there is one.
  if ((data.tables.junction_fallback_hops_total || []).some((r) => r.value !== 0)) {
    box.append(metricTable(data, "junction_fallback_hops_total", "Fallback hops (before any byte reached the client)", ["route", "from", "to", "reason"]));
  }
}

function gauge(value) {
  return value === null ? "–" : String(Math.round(value * 10) / 10);
}

// Age and source of a report; a stale one (past the pool's max_age) is tagged, the
// balancer then counting in-flight requests for that endpoint.
function loadReport(e) {
  const r = e.load;
  if (r.age_seconds === null) return el("span", { class: "tag bad" }, "none");
  const text = r.age_seconds.toFixed(1) + " s ago · " + r.source;
  return r.stale ? el("span", { class: "tag bad" }, "stale · " + text) : text;
}

// ---- metric tables ----
function metricTable(data, family, title, labels) {
  const rows = (data.tables[family] || []).filter((r) => r.value !== 0);
  return table(title, labels.map((l) => ({ label: l, value: (r) => r.labels[l] === undefined ? "" : r.labels[l] }))
    .concat([{ label: "count", n: 1, value: (r) => fmt.count(r.value) }]), rows);
}

// ---- rate limits: usage against budget per key ----
function budget(b) {
  return b ? fmt.count(b.used) + " / " + fmt.count(b.limit) : "–";
}

function refill(key) {
  const ms = Math.max(key.requests ? key.requests.refill_ms : 0, key.tokens ? key.tokens.refill_ms : 0);
  return ms ? fmt.ms(ms) : "–";
}

function updateLimits(data) {
  const box = $("limit-tables");
  const rows = [];
  for (const route of data.limits || []) {
    for (const limit of route.limits) {
      const head = { route: route.route, limit };
      if (!limit.keys.length) rows.push(Object.assign({ key: null }, head));
      for (const key of limit.keys) rows.push(Object.assign({ key }, head));
    }
  }
  const keyName = (r) => !r.key ? el("small", {}, r.limit.usage_here ? "no key has spent any" : "kept in Redis: not known here")
    : r.key.kind === "route" ? "whole route" : el("span", { dataset: { key: r.key.key } }, r.key.key + (r.key.kind === "api_key" ? " (API key)" : ""));
  const budgetText = (r) => [r.limit.requests ? fmt.count(r.limit.requests) + " req" : null, r.limit.tokens ? fmt.count(r.limit.tokens) + " tok" : null]
    .filter(Boolean).join(" + ") + " / " + fmt.ms(r.limit.period_ms);
  box.replaceChildren(table("Rate limits: usage against budget per key (the most spent first)", [
    { label: "route", value: (r) => r.route },
    { label: "limit", value: (r) => r.limit.scope + " · per " + r.limit.keyed_by },
    { label: "budget", value: budgetText },
    { label: "key", value: keyName },
    { label: "requests used", n: 1, value: (r) => r.key ? budget(r.key.requests) : "" },
    { label: "tokens used", n: 1, value: (r) => r.key ? budget(r.key.tokens) : "" },
    { label: "whole again in", n: 1, value: (r) => r.key ? refill(r.key) : "" },
    { label: "keys spending", n: 1, value: (r) => r.limit.usage_here ? r.limit.keys_in_use : "–" },
  ], rows));
}

function updateTables(data) {
  updateLimits(data);
  const security = $("security-tables");
  security.textContent = "";
  security.append(
    metricTable(data, "junction_errors_total", "Refusals and errors by kind (rate_limit_exceeded: over a rate limit)", ["route", "kind"]),
    metricTable(data, "junction_security_decisions_total", "Security decisions (rate limits: action rate_limited, by limit)", ["rule", "action"]),
    metricTable(data, "junction_masking_findings_total", "Masking findings", ["route", "type", "action", "direction"]),
    metricTable(data, "junction_masking_cache_lookups_total", "Masking: texts read before (hit) and read (miss)", ["route", "result"]),
    metricTable(data, "junction_anomalies_total", "Anomalies", ["route", "detector", "action"]),
    metricTable(data, "junction_anomaly_clients", "Clients with baselines", ["route"]),
    metricTable(data, "junction_capture_flows_total", "Captured flows", Object.keys(((data.tables.junction_capture_flows_total || [])[0] || {}).labels || {})));
  updateEgress(data);
}

// ---- egress: exits, bans and cool-downs per site, sessions ----
function updateEgress(data) {
  const listeners = data.egress || [];
  const exits = listeners.flatMap((g) => g.exits.map((x) => Object.assign({ egress: g.name }, x)));
  const bans = exits.flatMap((x) => x.sites.map((site) => Object.assign({ egress: x.egress, exit: x.name }, site)));
  const sessions = listeners.flatMap((g) => g.sessions.map((s) => Object.assign({ egress: g.name }, s)));
  const more = (shown, total, what) => total > shown ? " · " + shown + " of " + total + " " + what : "";
  const siteTotal = exits.reduce((a, x) => a + x.sites_total, 0);
  const sessionTotal = listeners.reduce((a, g) => a + g.sessions_total, 0);
  $("egress-exits").replaceChildren(table("Exits", [
    { label: "egress / exit", value: (r) => r.egress + " / " + r.name },
    { label: "region", value: (r) => r.region || "" },
    { label: "state", value: (r) => r.state === "up" ? el("span", { class: "tag ok" }, "up") : el("span", { class: "tag bad" }, "probing") },
    { label: "in use", n: 1, value: (r) => r.in_use },
    { label: "bans", n: 1, value: (r) => fmt.count(r.bans) },
    { label: "sites resting", n: 1, value: (r) => r.resting_sites },
  ], exits));
  const egress = $("egress-tables");
  egress.replaceChildren(
    table("Bans and cool-downs per site" + more(bans.length, siteTotal, "sites"), [
      { label: "egress / exit", value: (r) => r.egress + " / " + r.exit },
      { label: "site", value: (r) => r.host },
      { label: "bans in a row", n: 1, value: (r) => r.bans_in_a_row },
      { label: "resting", n: 1, value: (r) => r.resting_ms ? fmt.ms(r.resting_ms) : el("small", {}, "serving again") },
    ], bans),
    table("Sessions" + more(sessions.length, sessionTotal, "live"), [
      { label: "egress", value: (r) => r.egress },
      { label: "session", value: (r) => el("span", { dataset: { session: r.session } }, r.session) },
      { label: "region", value: (r) => r.region || "any" },
      { label: "exit", value: (r) => r.exit },
      { label: "idle", n: 1, value: (r) => fmt.ms(r.idle_ms) },
      { label: "forgotten in", n: 1, value: (r) => fmt.ms(r.expires_in_ms) },
    ], sessions),
    metricTable(data, "junction_egress_requests_total", "Egress requests by outcome", ["egress", "exit", "outcome"]),
    metricTable(data, "junction_egress_open_tunnels", "Open tunnels", ["egress"]));
}

// ---- config and reload ----
async function loadConfig() {
  try {
    const result = await call("GET", "/api/config");
    $("config-text").textContent = result.ok ? JSON.stringify(result.body, null, 2) : refusal(result.status, result.body);
  } catch (error) {
    $("config-text").textContent = "Could not load the config: " + error;
  }
}

async function reload() {
  const box = $("reload-result");
  box.hidden = false;
  box.className = "result";
  box.textContent = "Reloading…";
  try {
    const result = await call("POST", "/api/reload");
    if (result.ok) {
      box.className = "result ok";
      box.textContent = "Reloaded: the new config is serving.";
      loadConfig();
      return;
    }
    box.className = "result bad";
    box.textContent = "";
    const errors = result.body && result.body.error && result.body.error.errors;
    if (result.status === 400 && errors) {
      box.append(el("b", {}, "The new config was refused; the previous one keeps serving."),
        el("ul", {}, errors.map((e) => el("li", {}, (e.line ? "line " + e.line + ": " : "") + (e.path ? e.path + ": " : "") + e.message))));
    } else {
      box.append(refusal(result.status, result.body));
      if (result.status === 401) openTokenForm();
    }
  } catch (error) {
    box.className = "result bad";
    box.textContent = "Reload failed: " + error;
  }
}

// ---- polling ----
const poll = {
  timer: null,
  running: false,
  async run() {
    if (this.running) return;
    this.running = true;
    clearTimeout(this.timer);
    const started = Date.now();
    try {
      const result = await call("GET", "/api/dashboard");
      if (result.ok) {
        render(result.body);
        live(true, "live · " + new Date().toLocaleTimeString());
      } else {
        live(false, "refused " + result.status);
        notice(refusal(result.status, result.body), "bad");
        if (result.status === 401) openTokenForm();
      }
    } catch (error) {
      live(false, "gateway unreachable");
    } finally {
      this.running = false;
      this.timer = setTimeout(() => this.run(), Math.max(0, POLL_MS - (Date.now() - started)));
    }
  },
  now() { setTimeout(() => this.run(), 0); },
};

function live(ok, text) {
  $("live").className = "live " + (ok ? "ok" : "bad");
  $("live-text").textContent = text;
}

function render(data) {
  const now = Date.now();
  updateTraffic(data, now);
  updateSplits(data);
  updatePools(data);
  updateTables(data);
  const renders = (Number(document.body.dataset.rendered) || 0) + 1;
  // When the first figures were on screen, in ms since navigation began (tests read it).
  if (renders === 1) document.body.dataset.firstRenderMs = performance.now().toFixed(1);
  document.body.dataset.rendered = String(renders);
}

function openTokenForm() {
  $("token-form").hidden = false;
  $("token-input").focus();
}

function start() {
  showTokenState();
  $("token-button").addEventListener("click", () => {
    const form = $("token-form");
    form.hidden = !form.hidden;
    if (!form.hidden) $("token-input").focus();
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    $("token-form").hidden = true;
    showTokenState();
    notice(value ? "Token saved for this tab." : "", value ? "ok" : "");
    poll.now();
    loadConfig();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
    notice("Token forgotten.", "");
  });
  $("reload-button").addEventListener("click", reload);
  $("config-refresh").addEventListener("click", loadConfig);
  poll.run();
  loadConfig();
}

start();
