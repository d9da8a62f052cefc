// The ogcache dashboard: polls GET /api/cache every 2 s, keeps the last 5 minutes in memory and
// draws them on <canvas>. No library, no build step, nothing from the internet. Everything the
// JSON says reaches the page through textContent (never innerHTML), so no figure or namespace
// name can become markup. The admin token lives in sessionStorage and only ever travels in the
// Authorization header.
"use strict";

(() => {
  const POLL_MS = 2000;
  const WINDOW_S = 300;
  const TOKEN_KEY = "ogcache.dashboard.adminToken";
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  const CIRCUIT_CLASS = { closed: "good", suspect: "warn", settling: "warn", half_open: "warn", open: "bad" };

  const samples = []; // {t: seconds, stats: the answer's "stats" object}
  const colours = new Map(); // namespace -> palette index, fixed on first sight
  const $ = (id) => document.getElementById(id);

  // ---- the token ---------------------------------------------------------------------------
  let pageToken = ""; // where sessionStorage is disabled: this page's memory only

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return pageToken;
    }
  }

  function storeToken(value) {
    pageToken = value;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: kept in pageToken until the page is left */ }
    showTokenState();
  }

  function showTokenState() {
    $("token-state").textContent = storedToken() ? "token set for this tab" : "no token: public figures";
  }

  function authHeaders() {
    const token = storedToken();
    return token ? { Authorization: "Bearer " + token } : {};
  }

  // ---- formatting --------------------------------------------------------------------------
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  function fmt(v, digits = 0) {
    if (!isNum(v)) return "–";
    return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }

  function fmtMs(v) {
    if (!isNum(v)) return "–";
    return v < 1 ? v.toFixed(3) : v < 100 ? v.toFixed(2) : fmt(v, 0);
  }

  const fmtPct = (v) => (isNum(v) ? (v * 100).toFixed(1) + " %" : "–");

  function fmtBytes(v) {
    if (!isNum(v)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  function colourOf(name) {
    if (!colours.has(name)) colours.set(name, colours.size % PALETTE.length);
    return colours.get(name);
  }

  // ---- series ------------------------------------------------------------------------------
  function namespaceNames() {
    const last = samples[samples.length - 1];
    const names = last && last.stats.namespaces ? Object.keys(last.stats.namespaces) : [];
    names.sort();
    names.forEach(colourOf);
    return names;
  }

  // Points [t, value] of one figure over the samples (missing or non-numeric ones left out).
  function pointsOf(pick) {
    const points = [];
    for (const s of samples) {
      const v = pick(s.stats);
      if (isNum(v)) points.push([s.t, v]);
    }
    return points;
  }

  // Per-second rate of a counter from consecutive samples. A counter that went down (a restart,
  // or another worker answered) gives no point rather than a negative rate.
  function rateOf(pick) {
    const points = [];
    for (let i = 1; i < samples.length; i += 1) {
      const a = pick(samples[i - 1].stats);
      const b = pick(samples[i].stats);
      const dt = samples[i].t - samples[i - 1].t;
      if (isNum(a) && isNum(b) && dt > 0 && b >= a) points.push([samples[i].t, (b - a) / dt]);
    }
    return points;
  }

  const nsField = (name, ...path) => (stats) => {
    let v = stats.namespaces ? stats.namespaces[name] : undefined;
    for (const key of path) v = v == null ? undefined : v[key];
    return v;
  };

  function perNamespace(names, make) {
    return names.map((name) => ({ label: name, colour: PALETTE[colourOf(name)], points: make(name) }));
  }

  function latestRate(name, field) {
    const points = rateOf(nsField(name, field));
    const last = points[points.length - 1];
    return last && last[0] === samples[samples.length - 1].t ? last[1] : null;
  }

  // ---- charts ------------------------------------------------------------------------------
  // The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least v.
  function niceStep(v) {
    if (!(v > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * power * 1.000001) return m * power;
    return 10 * power;
  }

  // The time axis: the last WINDOW_S seconds, or less while the page is younger (at least 60).
  function timeAxis() {
    const now = samples.length ? samples[samples.length - 1].t : Date.now() / 1000;
    const first = samples.length ? samples[0].t : now;
    const span = Math.min(WINDOW_S, Math.max(60, Math.ceil((now - first) / 30) * 30));
    const tick = [10, 15, 30, 60].find((s) => span / s <= 6) || 60;
    return { now, span, tick };
  }

  function prepareCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 400;
    const height = canvas.clientHeight || 170;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    return { ctx, width, height };
  }

  function tickLabel(seconds) {
    if (seconds === 0) return "now";
    return seconds % 60 === 0 ? "-" + seconds / 60 + "m" : "-" + seconds + "s";
  }

  function drawAxes(ctx, box, axis, yMax, format) {
    ctx.strokeStyle = "#e3e6ea";
    ctx.fillStyle = "#667085";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i += 1) {
      const y = box.bottom - (i / 4) * (box.bottom - box.top);
      ctx.beginPath();
      ctx.moveTo(box.left, y);
      ctx.lineTo(box.right, y);
      ctx.stroke();
      ctx.fillText(i === 0 ? "0" : format((yMax * i) / 4), box.left - 4, y);
    }
    ctx.textBaseline = "top";
    for (let s = 0; s <= axis.span; s += axis.tick) {
      const x = box.right - (s / axis.span) * (box.right - box.left);
      ctx.textAlign = s === 0 ? "right" : "center";
      ctx.fillText(tickLabel(s), x, box.bottom + 4);
    }
  }

  // The legend, in as many rows as it needs above the plot; returns its height.
  function drawLegend(ctx, lines, left, right) {
    let x = left;
    let y = 3;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    for (const line of lines) {
      const width = ctx.measureText(line.label).width + 22;
      if (x > left && x + width > right) { x = left; y += 14; }
      ctx.fillStyle = line.colour;
      ctx.fillRect(x, y + 1, 10, 10);
      ctx.fillStyle = "#1d2430";
      ctx.fillText(line.label, x + 14, y);
      x += width;
    }
    return lines.length ? y + 16 : 6;
  }

  function drawLine(ctx, line, scaleX, scaleY) {
    ctx.strokeStyle = line.colour;
    ctx.fillStyle = line.colour;
    ctx.lineWidth = 1.8;
    ctx.setLineDash(line.dash || []);
    ctx.beginPath();
    line.points.forEach(([t, v], i) => {
      if (i === 0) ctx.moveTo(scaleX(t), scaleY(v));
      else ctx.lineTo(scaleX(t), scaleY(v));
    });
    ctx.stroke();
    ctx.setLineDash([]);
    const [t, v] = line.points[line.points.length - 1];
    ctx.beginPath();
    ctx.arc(scaleX(t), scaleY(v), 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }

  // Lines [{label, colour, points: [[t, v]], dash?}] from 0 up; options: format (axis
  // labels), max (a fixed top), integer (counts: whole-number ticks).
  function drawChart(canvas, lines, options = {}) {
    const format = options.format || ((v) => fmt(v, 2));
    const { ctx, width, height } = prepareCanvas(canvas);
    const drawn = lines.filter((l) => l.points.length > 0);
    const top = drawLegend(ctx, drawn, 48, width - 6);
    const box = { left: 48, right: width - 6, top: top + 4, bottom: height - 18 };
    const axis = timeAxis();
    const peak = Math.max(0, ...drawn.flatMap((l) => l.points.map((p) => p[1])));
    const step = options.integer ? Math.max(1, Math.ceil(niceStep(peak / 4))) : niceStep(peak / 4);
    const yMax = options.max || 4 * step;
    drawAxes(ctx, box, axis, yMax, format);
    const scaleX = (t) => box.right - ((axis.now - t) / axis.span) * (box.right - box.left);
    const scaleY = (v) => box.bottom - (Math.min(v, yMax) / yMax) * (box.bottom - box.top);
    ctx.save();
    ctx.beginPath();
    ctx.rect(box.left, box.top - 3, box.right - box.left, box.bottom - box.top + 6);
    ctx.clip();
    for (const line of drawn) drawLine(ctx, line, scaleX, scaleY);
    ctx.restore();
    if (!drawn.length) {
      ctx.fillStyle = "#667085";
      ctx.textAlign = "center";
      ctx.fillText("no data yet", (box.left + box.right) / 2, (box.top + box.bottom) / 2);
    }
    canvas.dataset.points = String(Math.max(0, ...drawn.map((l) => l.points.length)));
  }

  const mib = (v) => (isNum(v) ? v / 1048576 : null);
  const changes = (stats) => stats.changes || {};
  const lag = (stats) => changes(stats).lagMs || {};
  const verifier = (stats) => stats.verifier || {};
  const local = (stats) => stats.local || {};

  function renderCharts(names) {
    const counts = { format: (v) => fmt(v, 0), integer: true };
    drawChart($("chart-hit-rate"), perNamespace(names,
      (n) => pointsOf(nsField(n, "hitRate")).map(([t, v]) => [t, v * 100])), { format: (v) => fmt(v, 0), max: 100 });
    drawChart($("chart-hits"), perNamespace(names, (n) => rateOf(nsField(n, "hits"))));
    drawChart($("chart-misses"), perNamespace(names, (n) => rateOf(nsField(n, "misses"))));
    drawChart($("chart-p50"), perNamespace(names, (n) => pointsOf(nsField(n, "latencyMs", "p50"))), { format: fmtMs });
    drawChart($("chart-p99"), perNamespace(names, (n) => pointsOf(nsField(n, "latencyMs", "p99"))), { format: fmtMs });
    drawChart($("chart-keys"), [
      { label: "keys", colour: PALETTE[0], points: pointsOf((s) => s.totalKeys) },
      { label: "L1 entries", colour: PALETTE[2], points: pointsOf((s) => local(s).entries) },
    ], counts);
    drawChart($("chart-memory"), [
      { label: "used", colour: PALETTE[3], points: pointsOf((s) => mib(s.memory && s.memory.usedBytes)) },
      { label: "L1", colour: PALETTE[2], points: pointsOf((s) => mib(local(s).bytes)) },
    ]);
    drawChart($("chart-changes"), [
      { label: "lag p50 ms", colour: PALETTE[0], points: pointsOf((s) => lag(s).p50) },
      { label: "lag p99 ms", colour: PALETTE[1], points: pointsOf((s) => lag(s).p99) },
      { label: "backlog", colour: PALETTE[4], points: pointsOf((s) => changes(s).backlog), dash: [4, 3] },
    ]);
    drawChart($("chart-verifier"), [
      { label: "verified", colour: PALETTE[2], points: pointsOf((s) => verifier(s).verified) },
      { label: "inconsistent", colour: PALETTE[1], points: pointsOf((s) => verifier(s).inconsistent) },
    ], counts);
  }

  // ---- tiles and table ---------------------------------------------------------------------
  function setTile(id, text, detail, cls) {
    const el = $(id);
    el.textContent = text;
    el.className = "big" + (cls ? " " + cls : "");
    $(id + "-detail").textContent = detail;
  }

  function renderTiles(body, stats) {
    $("backend").textContent = "backend " + String(body.backend) + " · prefix " + String(body.prefix);
    const avail = $("availability");
    avail.textContent = stats.available ? "available" : "unavailable";
    avail.className = "big " + (stats.available ? "good" : "bad");
    $("totals").textContent = "keys " + fmt(stats.totalKeys) + " · memory " +
      fmtBytes(stats.memory && stats.memory.usedBytes) + " · hit rate " + fmtPct(stats.hitRate) +
      (stats.error ? " · error: " + String(stats.error) : "");
    const c = stats.circuit;
    if (c) setTile("circuit", String(c.state), "trips " + fmt(c.trips) + " · open " + fmt(c.openSeconds, 1) + " s · pending invalidations " + fmt(c.pendingInvalidations), CIRCUIT_CLASS[c.state] || "warn");
    else setTile("circuit", "none", "no breaker on this backend", "");
    const l = stats.local;
    if (l) setTile("local", l.live ? "live" : l.live === false ? "not live" : "on", "entries " + fmt(l.entries) + "/" + fmt(l.maxEntries) + " · " + fmtBytes(l.bytes) + "/" + fmtBytes(l.maxBytes) + " · evictions " + fmt(l.evictions) + " · flushes " + fmt(l.flushes), l.live === false ? "warn" : "good");
    else setTile("local", "off", "no in-process tier on this backend", "");
    const ch = stats.changes;
    if (ch) setTile("changes", ch.enabled ? String(ch.role) : "disabled", "applied " + fmt(ch.applied) + " · backlog " + fmt(ch.backlog) + " · lag p50 " + fmtMs(ch.lagMs && ch.lagMs.p50) + " ms, p99 " + fmtMs(ch.lagMs && ch.lagMs.p99) + " ms · failures " + fmt(ch.failures) + " · errors " + fmt(ch.errors) + (ch.lastError ? " · last: " + String(ch.lastError) : ""), ch.errors || ch.failures ? "warn" : "good");
    else setTile("changes", "–", "not reported", "");
    const v = stats.verifier;
    if (v) setTile("verifier", fmt(v.inconsistent) + " inconsistent", "of " + fmt(v.verified) + " verified · sample " + fmt(v.sample, 4) + " · delay " + fmt(v.delaySeconds, 1) + " s · max age " + fmt(v.maxInconsistencyAgeSeconds, 2) + " s", v.inconsistent ? "bad" : "good");
    else setTile("verifier", "off", "not reported", "");
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function renderTable(stats, names) {
    const rows = names.map((name) => {
      const n = stats.namespaces[name];
      const row = document.createElement("tr");
      row.dataset.namespace = name;
      const first = cell(row, "");
      const swatch = document.createElement("span");
      swatch.className = "swatch c" + colourOf(name);
      first.append(swatch, document.createTextNode(name));
      const lat = n.latencyMs || {};
      [fmtPct(n.hitRate), fmt(n.hits), fmt(n.misses), fmt(latestRate(name, "hits"), 2),
        fmt(latestRate(name, "misses"), 2), fmtMs(lat.p50), fmtMs(lat.p99), fmt(n.localHits),
        fmt(n.loads), fmt((n.errors || 0) + (n.loadErrors || 0)), fmt(n.verified),
        fmt(n.inconsistent)].forEach((text) => cell(row, text));
      return row;
    });
    $("namespaces").tBodies[0].replaceChildren(...rows);
  }

  // ---- polling -----------------------------------------------------------------------------
  function record(body) {
    const t = Date.now() / 1000;
    samples.push({ t, stats: body.stats || {} });
    while (samples.length && samples[0].t < t - WINDOW_S) samples.shift();
    const names = namespaceNames();
    renderTiles(body, body.stats || {});
    renderTable(body.stats || {}, names);
    renderCharts(names);
    const updated = $("updated");
    updated.textContent = "updated " + new Date(t * 1000).toLocaleTimeString() + " · " +
      samples.length + " samples" + (storedToken() ? " · admin (fresh figures)" : "");
    updated.className = "muted";
  }

  async function poll() {
    try {
      const response = await fetch("api/cache", { headers: authHeaders(), cache: "no-store" });
      if (response.ok) record(await response.json());
      else showPollError("GET /api/cache answered " + response.status);
    } catch (err) {
      showPollError("the service is unreachable (" + String(err && err.message) + ")");
    } finally {
      window.setTimeout(poll, POLL_MS);
    }
  }

  function showPollError(text) {
    const updated = $("updated");
    updated.textContent = text;
    updated.className = "bad";
  }

  // ---- admin actions -----------------------------------------------------------------------
  function describe(result) {
    if (result.action === "clear-prefix") return "clear-prefix " + JSON.stringify(String(result.prefix)) + ": " + fmt(result.keysCleared) + " keys removed";
    if (result.action === "clear") return "clear: " + fmt(result.keysCleared) + " keys removed";
    const warmed = Array.isArray(result.warmed) ? result.warmed.map(String).join(", ") : "";
    return String(result.action) + ": " + fmt(result.keysWarmed) + " keys warmed" + (warmed ? " (" + warmed + ")" : "");
  }

  function showResult(outcome, text) {
    const el = $("action-result");
    el.textContent = text;
    el.dataset.outcome = outcome;
    el.className = outcome === "ok" ? "good" : "bad";
  }

  async function runAction(body) {
    showResult("pending", "running " + body.action + "…");
    let response;
    try {
      response = await fetch("api/cache", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify(body),
        cache: "no-store",
      });
    } catch (err) {
      showResult("error", body.action + " failed: " + String(err && err.message));
      return;
    }
    let answer = null;
    try { answer = await response.json(); } catch (_) { answer = null; }
    if (response.ok && answer) showResult("ok", describe(answer));
    else {
      const message = answer && answer.error ? String(answer.error.message) : response.statusText;
      const what = response.status === 401 || response.status === 403 ? "refused" : "error";
      showResult(what, body.action + " " + what + " (" + response.status + "): " + message);
    }
  }

  function start() {
    $("token-save").addEventListener("click", () => { storeToken($("token").value.trim()); $("token").value = ""; });
    $("token-forget").addEventListener("click", () => { storeToken(""); $("token").value = ""; });
    $("token").addEventListener("keydown", (e) => { if (e.key === "Enter") $("token-save").click(); });
    $("warmup").addEventListener("click", () => runAction({ action: "warmup" }));
    $("clear-prefix").addEventListener("click", () => runAction({ action: "clear-prefix", prefix: $("prefix").value }));
    showTokenState();
    poll();
    window.addEventListener("resize", () => renderCharts(namespaceNames()));
  }

  start();
})();
