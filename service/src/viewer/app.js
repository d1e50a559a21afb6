/*
 * tracevault auditor viewer: app.js (vanilla ES2020, no dependencies, no build step).
 *
 * Flow: the token form → GET /v1/whoami → by role:
 *   auditor/admin → session list → POST /v1/views → replay on a canvas, fetching only the
 *                   event blocks near the playhead (GET /v1/views/{view}/blocks), then the
 *                   action timeline (GET /v1/views/{view}/timeline);
 *   subject       → their own access history (GET /v1/me/access);
 *   ml/recorder   → a refusal.
 * The page runs under a strict CSP: no inline code, all listeners are attached here.
 * Test hooks: window.tracevault.{state, open, seek, play, pause}.
 */
"use strict";

(() => {
  // ---------- constants ----------
  const SEC = 1e6; // µs
  const TRAIL_US = 3 * SEC, CLICK_US = 1.5 * SEC, WHEEL_US = 1 * SEC, KEYS_US = 10 * SEC;
  const OPEN_SPAN_US = 10 * SEC, PREFETCH_US = 5 * SEC, STEP_US = 5 * SEC, JUMP_US = 10 * SEC;
  const IDLE_GAP_US = 2 * SEC, IDLE_LEAD_US = 0.5 * SEC;
  const MAX_BATCH = 16, MAX_CACHED = 64, LIST_WINDOW = 200, LIST_MARGIN = 20, MAX_KEY_ITEMS = 30;
  const DEFAULT_SCREEN = { w: 1920, h: 1080 };
  const POINTER_KINDS = new Set(["move", "down", "up", "wheel"]);
  const COLORS = {
    bg: "#f4f5f7", grid: "#dde1e6", trail: "#1f5fbf", drag: "#37474f", wheel: "#00695c",
    left: "#1565c0", right: "#e65100", other: "#6a1b9a", text: "#111111",
    tlBg: "#e9ecef", sealed: "#4a6fa5", unsealed: "#b7791f", action: "#263238",
    episode: "#6a1b9a", app: "#c2410c", playhead: "#b00020",
  };
  const REFUSALS = { ml: "ml tokens export redacted trajectories only.", recorder: "recorder tokens upload recordings only." };
  const MOD_ORDER = ["Ctrl", "Alt", "Shift", "Meta"];
  const SECTIONS = {
    start: ["start"], refused: ["start"], sessions: ["start", "sessions"],
    player: ["player"], failed: ["player"], history: ["start", "access"],
  };
  const PLAY_CONTROLS = ["play", "back10", "fwd10", "speed", "skip-idle", "seek"];

  // ---------- state ----------
  const S = {
    token: null, role: null, phase: "start", sessions: [],
    gen: 0,             // bumped on every open/close: responses for an older view are dropped
    view: null,         // the POST /v1/views answer of the open view
    blocks: [],         // the view's block index, in time order
    cache: new Map(),   // block index → {events, ptr, focus} (ptr, focus: positions in events)
    pending: new Map(), // block index → Promise of its in-flight request
    blockRequests: 0,
    t: 0, playing: false, speed: 1, stalled: false, lastNow: null, raf: 0,
    openT0: 0, firstFrameMs: null, lastSeekMs: null, seekGen: 0,
    steps: [], stepsSummary: "", marks: null, curStep: -1, listWin: [0, 0],
    posOf: new Map(), // block index → position in S.blocks
    integrity: null, lastLabelAt: 0, keysSig: "", clockText: "",
    scrubbing: false, scrubTimer: 0, tlLayer: null, ctx: null,
  };

  const $ = (id) => document.getElementById(id);

  /** An element with attributes (`text` → textContent, `class` → className) and children. */
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") e.textContent = v; else if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    e.append(...children);
    return e;
  }

  function button(text, attrs, onClick) {
    const b = el("button", { type: "button", text, ...attrs });
    b.addEventListener("click", onClick);
    return b;
  }

  const setText = (id, text) => { $(id).textContent = text; };

  // ---------- formatting ----------
  const pad = (n) => String(n).padStart(2, "0");
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");

  function fmtClock(us) {
    const s = Math.max(0, Math.floor(us / SEC));
    return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
  }

  function fmtDate(d) {
    return Number.isNaN(d.getTime()) ? "—" : `${d.toISOString().replace("T", " ").slice(0, 19)} UTC`;
  }

  const fmtUnixUs = (us) => (us == null ? "—" : fmtDate(new Date(us / 1000)));
  const fmtIso = (s) => (s ? fmtDate(new Date(s)) : "—");
  const fmtLabels = (labels) => Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—";
  const truncate = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

  function fmtBytes(n) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let v = Number(n || 0), i = 0;
    for (; v >= 1000 && i < units.length - 1; i++) v /= 1000;
    return `${i ? v.toFixed(1) : v} ${units[i]}`;
  }

  // ---------- alerts, phases ----------
  const showError = (msg) => setText("alert", msg);
  const clearError = () => setText("alert", "");

  /** Shows `e`'s message in the alert region and returns it, to rethrow. */
  function report(e) { showError(e.message); return e; }

  /** An error whose message is `detail`, shown in the alert region. */
  function fail(detail) {
    return report(Object.assign(new Error(detail), { detail, status: 0 }));
  }

  function setPhase(p) {
    S.phase = p;
    document.body.dataset.phase = p;
    document.body.dataset.state = p;
    for (const id of ["start", "sessions", "player", "access"]) $(id).hidden = !SECTIONS[p].includes(id);
  }

  // ---------- HTTP ----------
  /** A JSON request with the bearer token; rejects with an Error carrying the problem's detail. */
  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${S.token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, { method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw Object.assign(new Error(`Network error: ${e.message}`), { status: 0 });
    }
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON: fall back to the status */ }
    if (!res.ok) {
      const detail = (json && (json.detail || json.title)) || `HTTP ${res.status} ${res.statusText}`;
      throw Object.assign(new Error(detail), { detail, status: res.status, problem: json });
    }
    return json;
  }

  const viewPath = (suffix = "") => `/v1/views/${encodeURIComponent(S.view.view)}${suffix}`;

  // ---------- start: token, whoami ----------
  const purposeValue = () => $("purpose").value.trim();
  const ticketValue = () => $("ticket").value.trim() || null;

  /** Takes a `#token=…` fragment into the token field and removes it from the address. */
  async function onConnect(ev) {
    ev.preventDefault();
    clearError();
    const token = $("token").value.trim();
    if (!token) return void fail("Enter an API token.");
    S.token = token;
    let me;
    try {
      me = await api("GET", "/v1/whoami");
    } catch (e) {
      setText("whoami", "Not connected.");
      setPhase("start");
      return void report(e);
    }
    S.role = me.role;
    setText("whoami", `Signed in as ${me.name} (${me.role}${me.user ? `, user ${me.user}` : ""})`);
    await routeByRole(me.role);
  }

  function routeByRole(role) {
    if (role === "subject") return showHistory();
    if (role === "auditor" || role === "admin") return showSessions();
    const why = REFUSALS[role] || "only auditor, admin and subject tokens may.";
    showError(`This token's role (${role}) may not open the viewer: ${why}`);
    setPhase("refused");
    return Promise.resolve();
  }

  // ---------- session list ----------
  async function showSessions() {
    setPhase("sessions");
    try {
      S.sessions = await api("GET", "/v1/sessions");
    } catch (e) {
      S.sessions = [];
      report(e);
    }
    renderSessions();
  }

  function renderSessions() {
    const rows = (S.sessions || []).map(sessionRow);
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "9", text: "No sessions to show." })));
    $("session-rows").replaceChildren(...rows);
  }

  function sessionRow(s) {
    const cells = [s.session, s.user, s.device ?? "—", fmtIso(s.started_at), fmtClock(s.duration_us),
      fmtInt(s.events), fmtBytes(s.bytes), fmtLabels(s.labels)].map((v) => el("td", { text: String(v) }));
    // Only an auditor may open a session; an admin sees the list (its role may list) and no more.
    const action = s.erased
      ? el("span", { class: "erased", text: "erased" })
      : S.role !== "auditor"
        ? el("span", { text: "auditors only" })
        : button("Open", { "aria-label": `Open session ${s.session}` }, () => openFromUi(s.session));
    return el("tr", s.erased ? { class: "erased-row" } : {}, ...cells, el("td", {}, action));
  }

  // ---------- subject: access history ----------
  async function showHistory() {
    let acc;
    try {
      acc = await api("GET", "/v1/me/access");
    } catch (e) {
      setPhase("start");
      return void report(e);
    }
    const n = (acc.sessions || []).length;
    setText("history-h", `Who read your sessions (user ${acc.user})`);
    setText("history-count", `You have ${n} recorded session${n === 1 ? "" : "s"}.`);
    const rows = (acc.entries || []).map(historyRow);
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "8", text: "Nobody has read your sessions." })));
    $("history-rows").replaceChildren(...rows);
    setPhase("history");
  }

  function historyRow(e) {
    const decision = e.decision === "denied" && e.reason ? `denied: ${e.reason}` : e.decision;
    return el("tr", {}, ...[fmtUnixUs(e.time_unix_us), e.actor, e.role, e.action, (e.sessions || []).join(", "),
      e.purpose || "—", e.ticket || "—", decision].map((v) => el("td", { text: String(v ?? "—") })));
  }

  // ---------- opening and closing a view ----------
  function openFromUi(id) {
    openSession(id).then(() => $("screen").focus(), () => {});
  }

  /** Opens session `id`; resolves once the first frame is drawn. Every failure is shown. */
  async function openSession(id) {
    clearError();
    id = String(id ?? "").trim();
    S.token = S.token || $("token").value.trim() || null;
    if (!S.token) throw fail("Connect with an API token first.");
    if (!id) throw fail("Enter a session id.");
    const purpose = purposeValue();
    if (!purpose) {
      $("purpose").focus();
      throw fail("A purpose is required to open a session: it is recorded in the audit log.");
    }
    await closeView();
    const gen = ++S.gen;
    resetPlayer();
    S.openT0 = performance.now();
    let v;
    try {
      v = await api("POST", "/v1/views", { session: id, purpose, ticket: ticketValue() });
    } catch (e) {
      if (gen !== S.gen) throw e;
      if (e.problem && e.problem.integrity) showIntegrityFailure(id, e.problem.integrity.reason || e.message);
      else if (S.phase === "player" || S.phase === "failed") setPhase("sessions");
      throw report(e);
    }
    if (gen !== S.gen) {
      api("DELETE", `/v1/views/${encodeURIComponent(v.view)}`).catch(() => {});
      throw new Error("Another session was opened meanwhile.");
    }
    if (!v.integrity || !v.integrity.verified) {
      showIntegrityFailure(id, (v.integrity && v.integrity.reason) || "the server did not verify the session");
      throw fail("The session's integrity is not verified, so it is not shown.");
    }
    setupView(v);
    await ensureRange(0, blockPos(v.t_min_us + OPEN_SPAN_US)).catch((e) => { throw report(e); });
    if (gen !== S.gen) throw new Error("The session was closed.");
    draw();
    S.firstFrameMs = performance.now() - S.openT0;
    loadTimeline(gen);
    return snapshot();
  }

  /** Closes the open view, if any (DELETE /v1/views/{view}). */
  async function closeView() {
    if (!S.view) return;
    const path = viewPath();
    S.gen++;
    resetPlayer();
    try { await api("DELETE", path); } catch (e) { report(e); }
  }

  async function backToList() {
    await closeView();
    await showSessions();
    $("sessions-h").focus();
  }

  /** Forgets the open view's data and returns the player to its empty, disabled state. */
  function resetPlayer() {
    pause();
    Object.assign(S, {
      view: null, blocks: [], posOf: new Map(), blockRequests: 0, t: 0, stalled: false,
      firstFrameMs: null, lastSeekMs: null, steps: [], marks: null, curStep: -1, listWin: [0, 0],
      integrity: null, keysSig: "", clockText: "", tlLayer: null,
    });
    S.cache.clear();
    S.pending.clear();
    delete document.body.dataset.integrity;
    setBadge("pending", "Integrity: checking…");
    for (const id of ["p-session", "screen-note", "loading", "keys"]) setText(id, "");
    $("steps").replaceChildren();
    setText("steps-note", "Loading actions…");
    setText("app", "App: unknown");
    setControlsEnabled(false);
  }

  function setControlsEnabled(on) {
    for (const id of PLAY_CONTROLS) $(id).disabled = !on;
  }

  function setBadge(kind, text) {
    $("integrity").className = `badge ${kind}`;
    setText("integrity", text);
  }

  function showIntegrityFailure(id, reason) {
    S.integrity = document.body.dataset.integrity = "failed";
    setBadge("failed", `Integrity: FAILED — ${reason}`);
    setText("p-session", id);
    for (const k of ["user", "device", "started", "length"]) setText(`p-${k}`, "—");
    setControlsEnabled(false);
    setPhase("failed");
  }

  /** Lays out the player for an opened, verified view. */
  function setupView(v) {
    S.view = v;
    S.blocks = v.blocks || [];
    S.posOf = new Map(S.blocks.map((b, i) => [b.index, i]));
    S.t = v.t_min_us;
    S.integrity = document.body.dataset.integrity = "verified";
    const s = v.session || {};
    setText("p-session", s.session);
    setText("p-user", s.user || "—");
    setText("p-device", s.device || "—");
    setText("p-started", fmtIso(s.started_at));
    setText("p-length", fmtClock(v.t_max_us - v.t_min_us));
    setBadge(v.integrity.frames ? "verified" : "pending", integrityText(v.integrity, S.blocks));
    const known = Boolean(s.screen && s.screen.w && s.screen.h);
    const { w, h } = known ? s.screen : DEFAULT_SCREEN;
    Object.assign($("screen"), { width: w, height: h });
    setText("screen-note", known ? "" : "screen size unknown; drawn at 1920×1080");
    const seek = $("seek");
    seek.min = String(Math.floor(v.t_min_us / 1000));
    seek.max = String(Math.ceil(v.t_max_us / 1000));
    seek.value = seek.min;
    setControlsEnabled(true);
    setPhase("player");
    buildTimelineLayer();
  }

  function integrityText(ig, blocks) {
    const h = ig.head;
    const head = h
      ? `signed head #${h.counter} (${fmtInt(h.tree_size)} frames, signed ${fmtUnixUs(h.time_unix_us)})`
      : "no signed head yet";
    const wh = ig.witnessed_head;
    const keys = wh && wh.witnesses ? ` (head #${wh.counter}, ${wh.witnesses.map((k) => `key ${k.slice(0, 12)}…`).join(", ")})` : "";
    const witnessed = ig.witnesses > 0 ? `witnessed by ${ig.witnesses}${keys}` : "not witnessed";
    const unsealed = ig.unsealed_events || blocks.filter((b) => b.sealed === false).reduce((n, b) => n + b.events, 0);
    if (!ig.frames) {
      return `Integrity: nothing proven yet — ${fmtInt(unsealed)} events are not yet sealed under a signed head`;
    }
    let text = `Integrity: verified — ${fmtInt(ig.frames)} ${ig.frames === 1 ? "frame" : "frames"} proven against ${head}, ${witnessed}`;
    if (unsealed > 0) text += `; ${fmtInt(unsealed)} events not yet sealed`;
    return text;
  }

  // ---------- block index and cache ----------
  /** Binary search in arr sorted by key: the first i with key(arr[i]) > x, or >= x when `atLeast`. */
  function upper(arr, x, key = (v) => v, atLeast = false) {
    let lo = 0, hi = arr.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1, k = key(arr[mid]);
      if (k < x || (k === x && !atLeast)) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  const evT = (e) => e[0];

  /** Position (in S.blocks) of the last block starting at or before t; 0 before the first. */
  const blockPos = (t) => Math.max(0, upper(S.blocks, t, (b) => b.t_min_us) - 1);
  const entryAt = (p) => { const b = S.blocks[p]; return b ? S.cache.get(b.index) : undefined; };
  const hasBlockAt = (t) => !S.blocks.length || Boolean(entryAt(blockPos(t)));

  /** The block positions a seek to t needs: its block, the one before if the trail reaches it, the next. */
  function seekRange(t) {
    if (!S.blocks.length) return [0, -1];
    const p = blockPos(t);
    const trailReachesPrev = p > 0 && t - TRAIL_US <= S.blocks[p - 1].t_max_us;
    return [trailReachesPrev ? p - 1 : p, Math.min(S.blocks.length - 1, p + 1)];
  }

  /** Loads block positions a..b (missing ones in requests of at most 16); resolves when all are cached. */
  function ensureRange(a, b) {
    const waits = [], missing = [];
    for (let p = Math.max(0, a); p <= Math.min(b, S.blocks.length - 1); p++) {
      const idx = S.blocks[p].index;
      if (S.cache.has(idx)) continue;
      if (S.pending.has(idx)) waits.push(S.pending.get(idx)); else missing.push(p);
    }
    // One request per run of consecutive missing blocks (of at most 16): a cached block is not
    // fetched (and decoded) again.
    for (let i = 0; i < missing.length;) {
      let j = i;
      while (j + 1 < missing.length && missing[j + 1] === missing[j] + 1 && j + 1 - i < MAX_BATCH) j++;
      waits.push(fetchBlocks(missing[i], missing[j]));
      i = j + 1;
    }
    return Promise.all(waits);
  }

  function fetchBlocks(p0, p1) {
    const gen = S.gen;
    const from = S.blocks[p0].index, to = S.blocks[p1].index;
    S.blockRequests++;
    const req = api("GET", viewPath(`/blocks?from=${from}&to=${to}`))
      .then((res) => {
        if (gen !== S.gen) return;
        for (const b of res.blocks || []) storeBlock(b);
        evict();
      })
      .catch((e) => {
        // A block altered since the session was proven: the badge fails and nothing plays on.
        if (gen === S.gen && e.problem && e.problem.integrity) {
          pause();
          showIntegrityFailure(S.view ? S.view.session.session : "", e.problem.integrity.reason || e.message);
        }
        throw e;
      })
      .finally(() => {
        if (gen !== S.gen) return;
        for (let p = p0; p <= p1; p++) {
          const idx = S.blocks[p].index;
          if (S.pending.get(idx) === req) S.pending.delete(idx);
        }
      });
    for (let p = p0; p <= p1; p++) {
      const idx = S.blocks[p].index;
      if (!S.cache.has(idx) && !S.pending.has(idx)) S.pending.set(idx, req);
    }
    return req;
  }

  /** Caches a block with the positions of its pointer and focus events, for fast look-back. */
  function storeBlock(b) {
    const events = b.events || [];
    const entry = { events, ptr: [], focus: [] };
    events.forEach((e, i) => {
      if (POINTER_KINDS.has(e[1])) entry.ptr.push(i); else if (e[1] === "focus") entry.focus.push(i);
    });
    S.cache.set(b.index, entry);
  }

  /** Keeps at most MAX_CACHED blocks, dropping those farthest from the playhead. */
  function evict() {
    if (S.cache.size <= MAX_CACHED) return;
    const here = blockPos(S.t);
    const far = [...S.cache.keys()].sort((a, b) => Math.abs(S.posOf.get(b) - here) - Math.abs(S.posOf.get(a) - here));
    for (const idx of far.slice(0, S.cache.size - MAX_CACHED)) S.cache.delete(idx);
  }

  /** Cached events with a <= t <= b, in time order. */
  function eventsBetween(a, b) {
    const out = [];
    for (let p = blockPos(a), last = blockPos(b); p <= last; p++) {
      const e = entryAt(p);
      if (!e) continue;
      for (let i = upper(e.events, a, evT, true); i < e.events.length && e.events[i][0] <= b; i++) out.push(e.events[i]);
    }
    return out;
  }

  /** The last cached event at or before t among an entry's `field` list (ptr or focus). */
  function lastOfKind(t, field) {
    if (!S.blocks.length) return null;
    for (let p = blockPos(t); p >= 0; p--) {
      const e = entryAt(p);
      if (!e) break; // never an event from a block loaded long before, across one not loaded
      const lim = upper(e.events, t, evT);
      const j = upper(e[field], lim - 1) - 1;
      if (j >= 0) return e.events[e[field][j]];
    }
    return null;
  }

  function pointXY(e) {
    if (e[1] === "move") return { x: e[2], y: e[3] };
    if (e[1] === "wheel") return { x: e[4], y: e[5] };
    return { x: e[3], y: e[4] }; // down, up
  }

  function cursorAt(t) {
    const e = S.view ? lastOfKind(t, "ptr") : null;
    return e ? pointXY(e) : null;
  }

  // ---------- playback ----------
  function play() {
    if (!S.view || S.integrity !== "verified" || S.playing) return;
    if (S.t >= S.view.t_max_us) S.t = S.view.t_min_us;
    Object.assign(S, { playing: true, lastNow: null, raf: requestAnimationFrame(tick) });
    updatePlayButton();
  }

  function pause() {
    if (S.raf) cancelAnimationFrame(S.raf);
    Object.assign(S, { playing: false, raf: 0 });
    updatePlayButton();
  }

  const togglePlay = () => (S.playing ? pause() : play());

  function updatePlayButton() {
    $("play").setAttribute("aria-pressed", String(S.playing));
    setText("play-glyph", S.playing ? "❚❚" : "▶");
  }

  function tick(now) {
    S.raf = 0;
    if (!S.playing) return;
    const dt = S.lastNow === null ? 0 : now - S.lastNow;
    S.lastNow = now;
    if (!S.stalled) advance(dt);
    draw();
    if (S.playing) S.raf = requestAnimationFrame(tick);
  }

  /** Moves the playhead by dtMs of wall time at the chosen speed, skipping idle, waiting for data. */
  function advance(dtMs) {
    const v = S.view;
    let t = S.t + dtMs * 1000 * S.speed;
    if ($("skip-idle").checked) t = Math.max(t, idleJumpTarget(S.t));
    t = Math.min(t, v.t_max_us);
    if (!hasBlockAt(t)) return stall(t);
    S.t = t;
    if (t >= v.t_max_us) return pause();
    prefetch();
  }

  /** Holds the playhead until t's block (and the one before, for the trail) arrives. */
  function stall(t) {
    const gen = S.gen;
    S.stalled = true;
    setLoading(true);
    ensureRange(seekRange(t)[0], blockPos(t))
      .catch((e) => { report(e); pause(); })
      .finally(() => {
        if (gen !== S.gen) return;
        S.stalled = false;
        S.lastNow = null;
        setLoading(false);
      });
  }

  /** Fetches the next block when the playhead is within PREFETCH_US of the loaded range's end. */
  function prefetch() {
    const n = S.blocks.length;
    let p = blockPos(S.t);
    if (!entryAt(p)) return;
    while (p + 1 < n && entryAt(p + 1)) p++;
    if (p + 1 < n && S.blocks[p].t_max_us - S.t < PREFETCH_US) {
      ensureRange(p + 1, p + 1).catch((e) => { report(e); pause(); });
    }
  }

  /** Where skip-idle jumps from t: 0.5 s before the next event when the gap around t is over 2 s. */
  function idleJumpTarget(t) {
    const next = nextEventTime(t), last = lastEventTime(t);
    if (next === null || last === null || next - last <= IDLE_GAP_US) return -Infinity;
    return next - IDLE_LEAD_US;
  }

  /** The first event after t; an unloaded later block counts by its index start. */
  function nextEventTime(t) {
    for (let p = blockPos(t); p < S.blocks.length; p++) {
      const e = entryAt(p);
      if (!e) return S.blocks[p].t_min_us > t ? S.blocks[p].t_min_us : null;
      const i = upper(e.events, t, evT);
      if (i < e.events.length) return e.events[i][0];
    }
    return null;
  }

  /** The last event at or before t; before a block's first event, the previous block's end. */
  function lastEventTime(t) {
    const p = blockPos(t), e = entryAt(p);
    if (!e) return null;
    const i = upper(e.events, t, evT) - 1;
    if (i >= 0) return e.events[i][0];
    if (p === 0) return S.view.t_min_us;
    const prev = entryAt(p - 1);
    return prev && prev.events.length ? prev.events[prev.events.length - 1][0] : S.blocks[p - 1].t_max_us;
  }

  /** Moves the playhead to t; resolves once its blocks are loaded and the frame is drawn. */
  async function seek(t) {
    if (!S.view || S.integrity !== "verified") throw new Error("No verified session is open.");
    const gen = S.gen, sg = ++S.seekGen, t0 = performance.now();
    S.t = clamp(Math.round(Number(t) || 0), S.view.t_min_us, S.view.t_max_us);
    draw();
    const [a, b] = seekRange(S.t);
    if (!hasBlockAt(S.t)) setLoading(true);
    try {
      await ensureRange(a, b);
    } catch (e) {
      throw report(e);
    } finally {
      if (sg === S.seekGen && gen === S.gen) setLoading(false);
    }
    if (gen !== S.gen) throw new Error("The session was closed.");
    if (sg === S.seekGen) {
      draw();
      S.lastSeekMs = performance.now() - t0;
    }
    return snapshot();
  }

  const uiSeek = (t) => { seek(t).catch(() => {}); };
  const seekBy = (d) => uiSeek(S.t + d);

  function setLoading(on) {
    setText("loading", on ? "loading…" : "");
    if (!S.playing) draw();
  }

  // ---------- drawing the screen ----------
  /** Canvas pixels per CSS pixel, so drawn sizes stay readable when the canvas is scaled down. */
  function pxScale(cv) {
    const cw = cv.clientWidth;
    return Math.max(1, cw > 0 ? cv.width / cw : cv.width / 1280);
  }

  function draw() {
    if (!S.view) return;
    const cv = $("screen"), ctx = S.ctx, T = S.t;
    const k = pxScale(cv);
    const recent = eventsBetween(T - KEYS_US, T);
    const focus = lastOfKind(T, "focus");
    const cursor = cursorAt(T);
    drawBackground(ctx, cv.width, cv.height);
    drawPointerHistory(ctx, recent, T, k);
    drawClicks(ctx, recent, T, k);
    drawWheels(ctx, recent, T, k);
    drawCaption(ctx, T, focus, k);
    if (cursor) drawCursor(ctx, cursor, k);
    renderKeys(recent, focus);
    updateReadouts(T, cursor, recent);
  }

  function drawBackground(ctx, w, h) {
    Object.assign(ctx, { fillStyle: COLORS.bg, strokeStyle: COLORS.grid, lineWidth: 1, globalAlpha: 1 });
    ctx.fillRect(0, 0, w, h);
    ctx.beginPath();
    for (let x = 100; x < w; x += 100) { ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, h); }
    for (let y = 100; y < h; y += 100) { ctx.moveTo(0, y + 0.5); ctx.lineTo(w, y + 0.5); }
    ctx.stroke();
  }

  /** The fading 3 s trail, and drags (moves with a button held) as thicker lines from the down point. */
  function drawPointerHistory(ctx, recent, T, k) {
    const held = new Set(), drags = [], segs = [];
    let drag = null, prev = null;
    for (const e of recent) {
      if (!POINTER_KINDS.has(e[1])) continue;
      const p = pointXY(e);
      if (e[1] === "down") {
        held.add(e[2]);
        if (!drag) drags.push(drag = { pts: [p], t: e[0] });
      } else if (drag) {
        drag.pts.push(p);
        drag.t = e[0];
      }
      if (e[1] === "up" && held.delete(e[2]) && held.size === 0) drag = null;
      if (prev && e[0] >= T - TRAIL_US) segs.push([prev, p, T - e[0]]);
      prev = p;
    }
    Object.assign(ctx, { lineCap: "round", lineJoin: "round" });
    for (const d of drags) {
      if (d.t < T - TRAIL_US || !movedFar(d.pts)) continue;
      ctx.globalAlpha = 0.35 + 0.55 * (1 - (T - d.t) / TRAIL_US);
      strokePath(ctx, d.pts, COLORS.drag, 7 * k);
    }
    for (const [a, b, age] of segs) {
      ctx.globalAlpha = 0.15 + 0.8 * (1 - age / TRAIL_US);
      strokePath(ctx, [a, b], COLORS.trail, 2.5 * k);
    }
    ctx.globalAlpha = 1;
  }

  const movedFar = (pts) => pts.some((p) => Math.hypot(p.x - pts[0].x, p.y - pts[0].y) > 3);

  function strokePath(ctx, pts, color, width) {
    Object.assign(ctx, { strokeStyle: color, lineWidth: width });
    ctx.beginPath();
    ctx.moveTo(pts[0].x, pts[0].y);
    for (const p of pts.slice(1)) ctx.lineTo(p.x, p.y);
    ctx.stroke();
  }

  /** Button presses of the last 1.5 s as expanding, fading rings. */
  function drawClicks(ctx, recent, T, k) {
    for (const e of recent) {
      if (e[1] !== "down" || T - e[0] > CLICK_US) continue;
      const f = (T - e[0]) / CLICK_US, p = pointXY(e);
      const color = e[2] === "left" || e[2] === "right" ? COLORS[e[2]] : COLORS.other;
      Object.assign(ctx, { globalAlpha: 1 - 0.8 * f, strokeStyle: color, lineWidth: 3 * k });
      ctx.beginPath();
      ctx.arc(p.x, p.y, (8 + 32 * f) * k, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }

  /** Wheel events of the last second as arrows in the scroll direction. */
  function drawWheels(ctx, recent, T, k) {
    for (const e of recent) {
      if (e[1] !== "wheel" || T - e[0] > WHEEL_US) continue;
      const [dx, dy] = [e[2], e[3]], p = pointXY(e);
      const [ux, uy] = Math.abs(dy) >= Math.abs(dx) ? [0, Math.sign(dy) || 1] : [Math.sign(dx), 0];
      ctx.globalAlpha = 1 - 0.7 * ((T - e[0]) / WHEEL_US);
      drawArrow(ctx, p, ux, uy, k);
    }
    ctx.globalAlpha = 1;
  }

  function drawArrow(ctx, p, ux, uy, k) {
    const len = 36 * k, head = 12 * k;
    const tip = { x: p.x + ux * len, y: p.y + uy * len };
    strokePath(ctx, [{ x: p.x - ux * len * 0.2, y: p.y - uy * len * 0.2 }, tip], COLORS.wheel, 5 * k);
    ctx.fillStyle = COLORS.wheel;
    ctx.beginPath();
    ctx.moveTo(tip.x + ux * head, tip.y + uy * head);
    ctx.lineTo(tip.x - uy * head, tip.y + ux * head);
    ctx.lineTo(tip.x + uy * head, tip.y - ux * head);
    ctx.closePath();
    ctx.fill();
  }

  /** The time and app in a box at the top left. */
  function drawCaption(ctx, T, focus, k) {
    const size = Math.round(15 * k), padPx = 6 * k;
    const app = focus ? focus[2] : currentStepApp();
    const text = `${fmtClock(T)}${app ? ` · ${app}` : ""}${$("loading").textContent ? " · loading…" : ""}`;
    Object.assign(ctx, { font: `${size}px system-ui, sans-serif`, textBaseline: "top", fillStyle: "rgba(255,255,255,0.9)" });
    ctx.fillRect(padPx, padPx, ctx.measureText(text).width + 2 * padPx, size + 2 * padPx);
    ctx.fillStyle = COLORS.text;
    ctx.fillText(text, 2 * padPx, 2 * padPx);
  }

  /** An arrow cursor (black with a white outline) with its tip at the pointer. */
  function drawCursor(ctx, { x, y }, k) {
    const s = 1.4 * k;
    const shape = [[0, 0], [0, 17], [4.5, 13], [7.5, 20], [10.5, 18.8], [7.5, 12], [12.5, 12]];
    ctx.beginPath();
    shape.forEach(([px, py], i) => (i ? ctx.lineTo(x + px * s, y + py * s) : ctx.moveTo(x + px * s, y + py * s)));
    ctx.closePath();
    Object.assign(ctx, { fillStyle: "#000000", strokeStyle: "#ffffff", lineWidth: 1.5 * k });
    ctx.fill();
    ctx.stroke();
  }

  // ---------- key track ----------
  function modifierName(code) {
    const m = /^(Control|Shift|Alt|Meta|OS)/.exec(code || "");
    return m ? { Control: "Ctrl", OS: "Meta" }[m[1]] || m[1] : null;
  }

  function keyLabel(code, text) {
    const m = /^(?:Key|Digit|Numpad)(\w)$/.exec(code || "");
    return m ? m[1] : code || text || "?";
  }

  const printable = (s) => typeof s === "string" && s.length > 0 && !/[\u0000-\u001f\u007f]/.test(s);

  /** Recent key events as chips ("Ctrl+C", "Enter") and runs of typed text; secure keys as "•". */
  function keyItems(events) {
    const items = [], mods = new Set();
    const typed = (s) => {
      const last = items[items.length - 1];
      if (last && last.text) last.s += s; else items.push({ text: true, s });
    };
    for (const e of events) {
      if (e[1] === "text") { typed(String(e[2] ?? "")); continue; }
      if (e[1] !== "keydown" && e[1] !== "keyup") continue;
      const [, kind, code, text, secure] = e;
      const mod = modifierName(code);
      if (kind === "keyup") { if (mod) mods.delete(mod); continue; }
      // A secure field's printable keys are stored as "Unidentified" with no text: a "•" each.
      // Its other keys (Backspace, Enter, Tab) keep their codes and show as chips.
      if (secure && code === "Unidentified") { typed("•"); continue; }
      if (mod) { mods.add(mod); continue; }
      const chord = MOD_ORDER.filter((m) => mods.has(m));
      if (printable(text) && chord.every((m) => m === "Shift")) typed(text);
      else items.push({ text: false, s: [...chord, keyLabel(code, text)].join("+") });
    }
    return items.slice(-MAX_KEY_ITEMS);
  }

  function renderKeys(recent, focus) {
    const items = keyItems(recent);
    const app = focus ? `App: ${focus[2]}${focus[3] ? ` — ${focus[3]}` : ""}` : `App: ${currentStepApp() || "unknown"}`;
    const sig = app + JSON.stringify(items);
    if (sig === S.keysSig) return;
    S.keysSig = sig;
    setText("app", app);
    $("keys").replaceChildren(...items.map((it) => el("span", { class: it.text ? "typed" : "chip", text: it.s })));
  }

  // ---------- readouts: clock, slider, canvas label, timeline, action list ----------
  function updateReadouts(T, cursor, recent) {
    const v = S.view;
    const clock = `${fmtClock(T)} / ${fmtClock(v.t_max_us)}`;
    if (clock !== S.clockText) {
      S.clockText = clock;
      setText("clock", clock);
      $("seek").setAttribute("aria-valuetext", `${fmtClock(T)} of ${fmtClock(v.t_max_us)}`);
    }
    if (!S.scrubbing) $("seek").value = String(Math.round(T / 1000));
    drawTimeline();
    updateStepList(T);
    const now = performance.now();
    if (!S.playing || now - S.lastLabelAt >= 1000) {
      S.lastLabelAt = now;
      const where = cursor ? `Pointer at ${cursor.x}, ${cursor.y}` : "No pointer position";
      $("screen").setAttribute("aria-label", `${where} at ${fmtClock(T)}; last action ${lastAction(T, recent)}`);
    }
  }

  function lastAction(T, recent) {
    const step = S.steps[S.curStep];
    if (step && step.t_start_us <= T) return step.action;
    const e = recent[recent.length - 1];
    return e ? e[1] : "none";
  }

  const currentStepApp = () => (S.steps[S.curStep] && S.steps[S.curStep].app) || null;

  // ---------- timeline bar ----------
  const tlX = (t, w) => ((t - S.view.t_min_us) / Math.max(1, S.view.t_max_us - S.view.t_min_us)) * w;

  /** Renders the static part of the timeline (blocks, actions, markers) to an offscreen canvas. */
  function buildTimelineLayer() {
    if (!S.view) return;
    const cv = $("timeline-bar"), dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round((cv.clientWidth || 800) * dpr)), h = Math.round(56 * dpr);
    Object.assign(cv, { width: w, height: h });
    const layer = Object.assign(document.createElement("canvas"), { width: w, height: h });
    const c = layer.getContext("2d");
    c.fillStyle = COLORS.tlBg;
    c.fillRect(0, 0, w, h);
    for (const b of S.blocks) {
      const x0 = tlX(b.t_min_us, w);
      c.fillStyle = b.sealed === false ? COLORS.unsealed : COLORS.sealed;
      c.fillRect(x0, h * 0.22, Math.max(dpr, tlX(b.t_max_us, w) - x0), h * 0.4);
    }
    c.fillStyle = COLORS.action;
    for (const s of S.steps) if (s.action !== "wait") c.fillRect(tlX(s.t_start_us, w), h * 0.68, dpr, h * 0.28);
    drawMarks(c, w, h, dpr);
    S.tlLayer = layer;
    drawTimeline();
  }

  function drawMarks(c, w, h, dpr) {
    if (!S.marks) return;
    c.fillStyle = COLORS.episode;
    for (const t of S.marks.episodes) c.fillRect(tlX(t, w) - dpr, 0, 2 * dpr, h);
    c.fillStyle = COLORS.app;
    for (const t of S.marks.apps) c.fillRect(tlX(t, w) - 4 * dpr, 0, 8 * dpr, h * 0.18);
  }

  function drawTimeline() {
    if (!S.tlLayer || !S.view) return;
    const cv = $("timeline-bar"), c = cv.getContext("2d"), dpr = window.devicePixelRatio || 1;
    const x = tlX(S.t, cv.width);
    c.drawImage(S.tlLayer, 0, 0);
    c.fillStyle = "#ffffff";
    c.fillRect(x - 2.5 * dpr, 0, 5 * dpr, cv.height);
    c.fillStyle = COLORS.playhead;
    c.fillRect(x - 1.5 * dpr, 0, 3 * dpr, cv.height);
  }

  function onTimelineClick(e) {
    if (!S.view || S.integrity !== "verified") return;
    const r = e.currentTarget.getBoundingClientRect();
    const f = clamp((e.clientX - r.left) / Math.max(1, r.width), 0, 1);
    uiSeek(S.view.t_min_us + f * (S.view.t_max_us - S.view.t_min_us));
  }

  // ---------- action timeline (steps) ----------
  async function loadTimeline(gen) {
    let tl;
    try {
      tl = await api("GET", viewPath("/timeline"));
    } catch (e) {
      if (gen === S.gen) setText("steps-note", `Actions could not be loaded: ${report(e).message}`);
      return;
    }
    if (gen !== S.gen) return;
    S.steps = tl.steps || [];
    S.marks = computeMarks(S.steps);
    Object.assign(S, { curStep: -1, listWin: [0, 0] });
    const eps = tl.episodes ?? 0;
    S.stepsSummary = S.steps.length
      ? `${fmtInt(S.steps.length)} actions in ${fmtInt(eps)} episode${eps === 1 ? "" : "s"}.`
      : "No actions in this session.";
    setText("steps-note", S.stepsSummary);
    buildTimelineLayer();
    draw();
  }

  /** Times where the episode changes and where the app changes (or a focus step). */
  function computeMarks(steps) {
    const episodes = [], apps = [];
    let ep, app;
    for (const s of steps) {
      if (s.episode !== ep) episodes.push(s.t_start_us);
      if (s.action === "focus" || (s.app && app && s.app !== app)) apps.push(s.t_start_us);
      ep = s.episode;
      if (s.app) app = s.app;
    }
    return { episodes, apps };
  }

  function stepArgs(s) {
    const a = s.args || {}, parts = [];
    if (a.secure) parts.push("•••");
    else {
      if (a.text != null) parts.push(`“${truncate(String(a.text), 40)}”`);
      if (a.keys != null) parts.push(Array.isArray(a.keys) ? a.keys.join("+") : String(a.keys));
      if (a.key != null) parts.push([...(a.modifiers || []), a.key].join("+"));
    }
    if (a.button && a.button !== "left") parts.push(String(a.button));
    if (a.x0 != null) parts.push(`(${a.x0}, ${a.y0}) →`);
    if (a.x != null) parts.push(`(${a.x}, ${a.y})`);
    if (a.dx || a.dy) parts.push(`scroll ${a.dx || 0}, ${a.dy || 0}`);
    if (s.action === "focus" && a.app) parts.push(a.title ? `${a.app} — ${truncate(String(a.title), 40)}` : a.app);
    if (a.ms != null && s.action === "wait") parts.push(`${(a.ms / 1000).toFixed(1)} s`);
    return parts.join(" ");
  }

  function stepItem(s, i) {
    const args = stepArgs(s);
    const label = `${fmtClock(s.t_start_us)} ${s.action}${s.app ? ` · ${s.app}` : ""}${args ? ` — ${args}` : ""}`;
    return el("li", {}, button(label, { "data-i": String(i), class: "step" }, () => uiSeek(s.t_start_us)));
  }

  /** Renders the ~200 steps around `center`, keeping focus on a step button that survives. */
  function renderStepWindow(center) {
    const n = S.steps.length, list = $("steps");
    const b = Math.min(n, Math.max(0, center - LIST_WINDOW / 2) + LIST_WINDOW), a = Math.max(0, b - LIST_WINDOW);
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.i : null;
    S.listWin = [a, b];
    list.start = a + 1;
    list.replaceChildren(...S.steps.slice(a, b).map((s, j) => stepItem(s, a + j)));
    if (focused != null) { const f = list.querySelector(`[data-i="${focused}"]`); if (f) f.focus(); }
    const windowed = n > LIST_WINDOW ? ` Showing ${fmtInt(a + 1)}–${fmtInt(b)} around the playhead.` : "";
    setText("steps-note", S.stepsSummary + windowed);
  }

  function updateStepList(T) {
    const n = S.steps.length;
    if (!n) return;
    const i = Math.max(0, upper(S.steps, T, (s) => s.t_start_us) - 1);
    if (i === S.curStep) return;
    S.curStep = i;
    const [a, b] = S.listWin;
    if (i < a || i >= b || (i < a + LIST_MARGIN && a > 0) || (i >= b - LIST_MARGIN && b < n)) renderStepWindow(i);
    markCurrentStep(i);
  }

  function markCurrentStep(i) {
    const list = $("steps");
    for (const old of list.querySelectorAll("[aria-current]")) old.removeAttribute("aria-current");
    const btn = list.querySelector(`[data-i="${i}"]`);
    if (!btn) return;
    btn.setAttribute("aria-current", "step");
    const wrap = $("steps-wrap"), li = btn.parentElement;
    if (li.offsetTop < wrap.scrollTop) wrap.scrollTop = li.offsetTop;
    else if (li.offsetTop + li.offsetHeight > wrap.scrollTop + wrap.clientHeight) {
      wrap.scrollTop = li.offsetTop + li.offsetHeight - wrap.clientHeight;
    }
  }

  // ---------- keyboard and control wiring ----------
  function onPlayerKey(e) {
    if (!S.view || S.integrity !== "verified" || e.ctrlKey || e.altKey || e.metaKey) return;
    const tag = e.target.tagName, type = e.target.type;
    const formish = ["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(tag);
    const textual = tag === "SELECT" || tag === "TEXTAREA" || (tag === "INPUT" && type !== "range" && type !== "checkbox");
    const actions = { " ": togglePlay, ArrowLeft: () => seekBy(-STEP_US), ArrowRight: () => seekBy(STEP_US),
      Home: () => uiSeek(S.view.t_min_us), End: () => uiSeek(S.view.t_max_us) };
    const act = actions[e.key];
    if (!act || (e.key === " " ? formish : textual)) return;
    e.preventDefault();
    act();
  }

  function wireSeekSlider() {
    const seek = $("seek");
    seek.addEventListener("pointerdown", () => { S.scrubbing = true; });
    window.addEventListener("pointerup", () => { S.scrubbing = false; });
    seek.addEventListener("input", () => {
      clearTimeout(S.scrubTimer);
      S.scrubTimer = setTimeout(uiSeek, 120, Number(seek.value) * 1000);
    });
    seek.addEventListener("change", () => {
      S.scrubbing = false;
      clearTimeout(S.scrubTimer);
      uiSeek(Number(seek.value) * 1000);
    });
  }

  function wire() {
    $("connect-form").addEventListener("submit", onConnect);
    $("open-form").addEventListener("submit", (e) => { e.preventDefault(); openFromUi($("session-id").value); });
    $("play").addEventListener("click", togglePlay);
    $("back10").addEventListener("click", () => seekBy(-JUMP_US));
    $("fwd10").addEventListener("click", () => seekBy(JUMP_US));
    $("speed").addEventListener("change", (e) => { S.speed = Number(e.target.value) || 1; });
    $("back").addEventListener("click", () => { backToList().catch(report); });
    $("timeline-bar").addEventListener("click", onTimelineClick);
    $("player").addEventListener("keydown", onPlayerKey);
    wireSeekSlider();
    window.addEventListener("resize", () => { buildTimelineLayer(); if (!S.playing) draw(); });
    window.addEventListener("pagehide", () => {
      if (!S.view) return;
      fetch(viewPath(), { method: "DELETE", keepalive: true, headers: { Authorization: `Bearer ${S.token}` } }).catch(() => {});
    });
  }

  // ---------- test hooks ----------
  function snapshot() {
    return {
      phase: S.phase, t_us: Math.round(S.t), playing: S.playing, speed: S.speed, cursor: cursorAt(Math.round(S.t)),
      loadedBlocks: [...S.cache.keys()].sort((a, b) => a - b), blockRequests: S.blockRequests,
      firstFrameMs: S.firstFrameMs, lastSeekMs: S.lastSeekMs, steps: S.steps.length, integrity: S.integrity,
      blocks: S.blocks.map((b) => ({ index: b.index, t_min_us: b.t_min_us, t_max_us: b.t_max_us, events: b.events })),
    };
  }

  window.tracevault = Object.freeze({ state: snapshot, open: openSession, seek, play, pause });

  // ---------- start ----------
  S.ctx = $("screen").getContext("2d");
  wire();
  setPhase("start");
})();
