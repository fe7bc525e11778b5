// sessiond admin console. Talks only to /admin/api/ on this origin.
//
// Safety rules this file keeps (the server's Content-Security-Policy enforces the first two):
// - data reaches the page only through textContent, element properties and dataset, never as
//   markup; every element is made with createElement;
// - no inline script or style, no eval;
// - the credential lives in the `credential` variable of this module and nowhere else: not in
//   a URL, a cookie or storage. Closing the tab or signing out forgets it.

/** The typed confirmation of the emergency switch. */
const PHRASE = "LOG OUT EVERYONE";
/** How often the live view polls the stats. */
const POLL_MS = 2000;
/** How many points the chart keeps (5 minutes at one point per poll). */
const HISTORY = 150;
/** How long one API request may take. */
const REQUEST_TIMEOUT_MS = 10000;

let credential = null; // the admin credential; null while signed out
let signedIn = false;

const $ = (id) => document.getElementById(id);

/** A refusal of the admin API: its HTTP status, ErrorInfo reason and message. */
class ApiError extends Error {
  constructor(status, reason, message) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

/** Calls the admin API; resolves with the decoded JSON, rejects with an ApiError. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  const init = {
    method,
    headers,
    credentials: "omit",
    cache: "no-store",
    redirect: "error",
    referrerPolicy: "no-referrer",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    // A credential that is not a valid header value lands here too.
    throw new ApiError(0, "NETWORK", `request failed: ${err.message}`);
  }
  const text = await res.text();
  let data = {};
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = {};
    }
  }
  if (!res.ok) {
    throw new ApiError(res.status, data.error ?? `HTTP_${res.status}`, data.message ?? "");
  }
  return data;
}

/** An element with text, built without markup. */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

/** A table cell with a main line and an optional second, muted line. */
function cell(main, sub, className) {
  const td = el("td", main, className);
  if (sub) td.append(el("span", sub, "sub"));
  return td;
}

/** An RFC 3339 timestamp as "YYYY-MM-DD HH:MM:SS UTC" (the exact value in the tooltip). */
function when(ts) {
  if (!ts) return "";
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return String(ts);
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function timeCell(ts) {
  const td = cell(when(ts));
  if (ts) td.title = String(ts);
  return td;
}

/** A proto3 JSON duration ("900s", "1.500s") as "15m", "1h 30m", "1.5s". */
function span(text) {
  const total = Number(String(text ?? "").replace(/s$/, ""));
  if (!text || !Number.isFinite(total)) return String(text ?? "");
  const whole = Math.floor(total);
  if (whole !== total || whole < 60) return `${total}s`;
  const parts = [];
  const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  let rest = whole;
  for (const [unit, size] of units) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0) parts.push(`${n}${unit}`);
  }
  return parts.join(" ");
}

/** When a session was last used, and how long it may go unused (its idle timeout). */
function lastSeenCell(s) {
  const td = cell(when(s.lastSeenAt), s.idleTimeout ? `idle timeout ${span(s.idleTimeout)}` : "");
  if (s.lastSeenAt) td.title = String(s.lastSeenAt);
  return td;
}

/** When and how the user last signed in for a session (RFC 9470 auth_time, acr, amr). */
function signInCell(s) {
  const how = [s.acr ?? "", (s.amr ?? []).join(", ")].filter((part) => part !== "").join(" · ");
  const td = cell(when(s.authTime), how);
  if (s.authTime) td.title = String(s.authTime);
  return td;
}

function say(message, ok = true) {
  const status = $("status");
  status.textContent = message;
  status.className = ok ? "status ok" : "status failed";
  status.hidden = false;
}

function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 429) return `Too many requests (${err.reason}); try again in a moment.`;
    return `${err.reason}${err.message ? `: ${err.message}` : ""}`;
  }
  return String(err);
}

/** Reports a failed call; a refused credential signs the tab out. */
function failed(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403) && signedIn) {
    signOut(`Signed out: the credential was refused (${describe(err)}).`);
    return;
  }
  say(describe(err), false);
}

// --- views -----------------------------------------------------------------------------------

const VIEWS = ["sessions", "audit", "live", "emergency"];
let current = "sessions";

function show(view) {
  if (view !== current) $("status").hidden = true; // a message belongs to the view it came from
  current = view;
  for (const name of VIEWS) $(`${name}-view`).hidden = name !== view;
  for (const tab of document.querySelectorAll(".tab")) {
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (view === "live") startPolling();
  else stopPolling();
  if (view === "sessions") sessions.load();
  if (view === "audit") audit.load();
}

// --- paging ----------------------------------------------------------------------------------

/** A paged listing: the tokens of the pages seen so far, so Previous works too. */
class Pager {
  constructor(prefix, fetchPage, render) {
    this.prefix = prefix;
    this.fetchPage = fetchPage;
    this.render = render;
    this.reset();
    $(`${prefix}-first`).addEventListener("click", () => this.go(0));
    $(`${prefix}-prev`).addEventListener("click", () => this.go(this.index - 1));
    $(`${prefix}-next`).addEventListener("click", () => this.go(this.index + 1));
  }

  reset() {
    this.tokens = [""];
    this.index = 0;
    this.next = "";
  }

  async go(index) {
    if (index < 0) return;
    if (index === this.tokens.length) {
      if (!this.next) return;
      this.tokens.push(this.next);
    }
    this.index = index;
    await this.load();
  }

  async load() {
    if (!signedIn) return;
    try {
      const page = await this.fetchPage(this.tokens[this.index] ?? "");
      this.next = page.nextPageToken ?? "";
      this.tokens.length = this.index + 1;
      this.render(page);
      $(`${this.prefix}-page`).textContent = `Page ${this.index + 1}`;
      $(`${this.prefix}-prev`).disabled = this.index === 0;
      $(`${this.prefix}-first`).disabled = this.index === 0;
      $(`${this.prefix}-next`).disabled = !this.next;
    } catch (err) {
      failed(err);
    }
  }
}

// --- sessions --------------------------------------------------------------------------------

function sessionFilter() {
  return {
    user_id: $("filter-user").value.trim(),
    tenant_id: $("filter-tenant").value.trim(),
    include_revoked: $("filter-revoked").checked,
    page_size: $("filter-size").value,
  };
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === "" || value === false) continue;
    q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

function sessionRow(s) {
  const tr = document.createElement("tr");
  tr.dataset.sessionId = s.sessionId ?? "";
  tr.dataset.userId = s.userId ?? "";
  if (s.revokedAt) tr.className = "revoked";
  tr.append(
    cell(s.userId, s.sessionId, "id"),
    cell(s.tenantId ?? ""),
    cell(s.deviceName ?? "", s.userAgent ?? "", "device"),
    cell(s.ip ?? "", undefined, "mono nowrap"),
    timeCell(s.createdAt),
    lastSeenCell(s),
    timeCell(s.expiresAt),
  );
  const revoked = s.revokedAt ? cell(when(s.revokedAt), s.revokeReason ?? "") : cell("active");
  if (s.revokedAt) revoked.title = String(s.revokedAt);
  tr.append(revoked, signInCell(s));

  const actions = el("td");
  const box = el("div", undefined, "actions");
  if (!s.revokedAt) {
    const revoke = el("button", "Revoke", "small warn");
    revoke.type = "button";
    revoke.dataset.action = "revoke";
    revoke.setAttribute("aria-label", `Revoke session ${s.sessionId} of ${s.userId}`);
    revoke.addEventListener("click", () => revokeSession(s.sessionId, revoke));
    box.append(revoke);
  }
  const logout = el("button", "Log out user…", "small secondary");
  logout.type = "button";
  logout.dataset.action = "logout";
  logout.setAttribute("aria-label", `Prepare a force logout of ${s.userId}`);
  logout.addEventListener("click", () => {
    $("logout-user").value = s.userId ?? "";
    $("logout-tenant").value = s.tenantId ?? "";
    $("logout-reason").focus();
    $("logout-form").scrollIntoView({ block: "nearest" });
  });
  box.append(logout);
  actions.append(box);
  tr.append(actions);
  return tr;
}

const sessions = new Pager(
  "sessions",
  (token) => api("GET", `/admin/api/sessions${query({ ...sessionFilter(), page_token: token })}`),
  (page) => {
    const rows = (page.sessions ?? []).map(sessionRow);
    $("sessions-body").replaceChildren(...rows);
    $("sessions-empty").hidden = rows.length > 0;
  },
);

async function revokeSession(id, button) {
  button.disabled = true;
  try {
    const answer = await api("DELETE", `/admin/api/sessions/${encodeURIComponent(id)}`, {
      reason: "admin_console",
    });
    say(answer.revoked ? `Session ${id} revoked.` : `Session ${id} was already revoked.`);
    await sessions.load();
  } catch (err) {
    button.disabled = false;
    failed(err);
  }
}

async function forceLogout(event) {
  event.preventDefault();
  const user = $("logout-user").value.trim();
  const tenant = $("logout-tenant").value.trim();
  const reason = $("logout-reason").value.trim();
  if (!user) {
    say("Name the user to log out.", false);
    return;
  }
  try {
    const path = `/admin/api/users/${encodeURIComponent(user)}/sessions${query({ tenant_id: tenant })}`;
    const answer = await api("DELETE", path, reason ? { reason } : undefined);
    const count = answer.revokedCount ?? 0;
    say(`Logged out ${user}${tenant ? ` in ${tenant}` : ""}: ${count} session${count === 1 ? "" : "s"} ended.`);
    $("logout-form").reset();
    await sessions.load();
  } catch (err) {
    failed(err);
  }
}

// --- audit -----------------------------------------------------------------------------------

function auditRow(e) {
  const tr = document.createElement("tr");
  tr.dataset.kind = e.kind ?? "";
  const at = timeCell(e.at);
  tr.append(
    at,
    cell(e.kind ?? "", undefined, "nowrap"),
    cell(e.actor ?? "", undefined, "nowrap"),
    cell(e.userId ?? ""),
    cell(e.sessionId ?? "", undefined, "mono id"),
    cell(e.ip ?? "", undefined, "mono nowrap"),
    cell(e.userAgent ?? ""),
    cell(e.reason ?? ""),
  );
  return tr;
}

const audit = new Pager(
  "audit",
  (token) =>
    api(
      "GET",
      `/admin/api/audit${query({
        user_id: $("audit-user").value.trim(),
        page_size: $("audit-size").value,
        page_token: token,
      })}`,
    ),
  (page) => {
    const rows = (page.events ?? []).map(auditRow);
    $("audit-body").replaceChildren(...rows);
    $("audit-empty").hidden = rows.length > 0;
  },
);

// --- live ------------------------------------------------------------------------------------

let poller = null;
const history = []; // { calls, live }

function startPolling() {
  if (poller !== null) return;
  pollStats();
  poller = setInterval(pollStats, POLL_MS);
}

function stopPolling() {
  if (poller !== null) clearInterval(poller);
  poller = null;
}

function fixed(n, digits) {
  return Number.isFinite(n) ? n.toFixed(digits) : "–";
}

async function pollStats() {
  if (!signedIn) return;
  let stats;
  try {
    stats = await api("GET", "/admin/api/stats");
  } catch (err) {
    failed(err);
    return;
  }
  const calls = Number(stats.totalCallsPerSecond ?? 0);
  const live = stats.liveSessions === undefined ? null : Number(stats.liveSessions);
  history.push({ calls, live });
  while (history.length > HISTORY) history.shift();

  $("stat-calls").textContent = fixed(calls, 1);
  $("stat-live").textContent = live === null ? "–" : String(live);
  $("stat-lag").textContent = `${fixed(Number(stats.revocationFeedLagSeconds), 1)} s`;

  const rpcs = Object.entries(stats.callsPerSecond ?? {}).sort((a, b) => b[1] - a[1]);
  $("rpc-body").replaceChildren(
    ...(rpcs.length
      ? rpcs.map(([rpc, rate]) => {
          const tr = el("tr");
          tr.append(cell(rpc.split("/").pop(), rpc.split("/")[0]), cell(fixed(rate, 2), undefined, "num"));
          return tr;
        })
      : [rowOf("no calls in the last seconds")]),
  );
  const caches = Object.entries(stats.cacheHitRatio ?? {});
  $("cache-body").replaceChildren(
    ...(caches.length
      ? caches.map(([cache, ratio]) => {
          const tr = el("tr");
          tr.append(cell(cache), cell(`${fixed(ratio * 100, 1)} %`, undefined, "num"));
          return tr;
        })
      : [rowOf("no lookups yet")]),
  );
  draw();
}

function rowOf(text) {
  const tr = el("tr");
  const td = el("td", text, "muted");
  td.colSpan = 2;
  tr.append(td);
  return tr;
}

/** A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten. */
function ceiling(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) if (max <= step * power) return step * power;
  return 10 * power;
}

/** Draws both series on the canvas: calls per second on the left axis, sessions on the right. */
function draw() {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  canvas.dataset.points = String(history.length); // how many polls the chart shows
  const w = canvas.width;
  const h = canvas.height;
  const pad = { left: 54, right: 54, top: 14, bottom: 26 };
  const plotW = w - pad.left - pad.right;
  const plotH = h - pad.top - pad.bottom;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "12px system-ui, sans-serif";

  const callsMax = ceiling(Math.max(...history.map((p) => p.calls), 0));
  const liveMax = ceiling(Math.max(...history.map((p) => p.live ?? 0), 0));

  ctx.strokeStyle = "#d5dae1";
  ctx.fillStyle = "#5b6470";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + plotH - (plotH * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(pad.left + plotW, y);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(String(Math.round(((callsMax * i) / 4) * 100) / 100), pad.left - 6, y + 4);
    ctx.textAlign = "left";
    ctx.fillText(String(Math.round((liveMax * i) / 4)), pad.left + plotW + 6, y + 4);
  }
  ctx.textAlign = "center";
  ctx.fillText(`last ${Math.round((HISTORY * POLL_MS) / 60000)} minutes`, pad.left + plotW / 2, h - 6);

  const x = (i) => pad.left + (plotW * (i + HISTORY - history.length)) / (HISTORY - 1);
  const series = (value, max, color) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    history.forEach((point, i) => {
      const v = value(point);
      if (v === null) return;
      const y = pad.top + plotH - (plotH * Math.min(v, max)) / max;
      if (started) ctx.lineTo(x(i), y);
      else ctx.moveTo(x(i), y);
      started = true;
    });
    ctx.stroke();
    const last = history.length - 1;
    const v = last >= 0 ? value(history[last]) : null;
    if (v !== null) {
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(x(last), pad.top + plotH - (plotH * Math.min(v, max)) / max, 3, 0, 2 * Math.PI);
      ctx.fill();
    }
  };
  series((p) => p.calls, callsMax, "#1f5fbf");
  series((p) => p.live, liveMax, "#1b7a3d");
}

// --- emergency -------------------------------------------------------------------------------

function emergencyTyped() {
  $("emergency-submit").disabled = $("emergency-confirm").value !== PHRASE;
}

async function emergency(event) {
  event.preventDefault();
  if ($("emergency-confirm").value !== PHRASE) return;
  const reason = $("emergency-reason").value.trim();
  $("emergency-submit").disabled = true;
  try {
    const answer = await api("POST", "/admin/api/revoke-all", { confirm: true, reason });
    const result = $("emergency-result");
    result.textContent = `Done: every session and token issued before ${when(answer.notBefore)} is revoked.`;
    result.hidden = false;
    say("Everyone was logged out.");
    $("emergency-form").reset();
  } catch (err) {
    failed(err);
  } finally {
    emergencyTyped();
  }
}

// --- signing in and out ----------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const input = $("credential");
  const error = $("signin-error");
  error.hidden = true;
  credential = input.value;
  try {
    await api("GET", "/admin/api/stats");
  } catch (err) {
    credential = null;
    error.textContent = `Refused: ${describe(err)}`;
    error.hidden = false;
    return;
  }
  input.value = ""; // the page keeps no copy outside `credential`
  signedIn = true;
  $("signin-view").hidden = true;
  $("nav").hidden = false;
  $("status").hidden = true;
  sessions.reset();
  audit.reset();
  show("sessions");
}

function signOut(message) {
  credential = null;
  signedIn = false;
  stopPolling();
  history.length = 0;
  for (const id of ["sessions-body", "audit-body", "rpc-body", "cache-body"]) $(id).replaceChildren();
  for (const name of VIEWS) $(`${name}-view`).hidden = true;
  $("nav").hidden = true;
  $("signin-view").hidden = false;
  $("emergency-result").hidden = true;
  if (typeof message === "string") say(message, false);
  else $("status").hidden = true;
  $("credential").focus();
}

function start() {
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => show(tab.dataset.view));
  }
  $("sessions-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    sessions.reset();
    sessions.load();
  });
  $("audit-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    audit.reset();
    audit.load();
  });
  $("logout-form").addEventListener("submit", forceLogout);
  $("emergency-phrase").textContent = PHRASE;
  $("emergency-confirm").addEventListener("input", emergencyTyped);
  $("emergency-form").addEventListener("submit", emergency);
  $("credential").focus();
}

start();
