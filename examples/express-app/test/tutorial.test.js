// The tutorial's exercises over HTTP, against a real sessiond and the app as its own process.
//
// Starts `sessiond serve` (SESSIOND_BIN, default target/debug/sessiond of the repository) on
// loopback ports the kernel picks with a fresh data directory, waits (bounded) for its /readyz,
// starts `node server.js` on a free port, and plays several "devices": each is a cookie jar with
// its own User-Agent header. Both processes are stopped by PID when the file's tests end; with
// TEST_PID_FILE set, their PIDs are also appended to that file, so that a caller can stop them
// when this process is killed before its `after` hook runs.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { setTimeout as pause } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const SESSIOND_BIN = process.env.SESSIOND_BIN ?? join(ROOT, "target/debug/sessiond");
const START_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;

const UA = {
  chromeMac:
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) " +
    "Chrome/120.0.0.0 Safari/537.36",
  firefoxWindows:
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
  safariIphone:
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 " +
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
};

let dataDir;
const children = [];
let base;

/**
 * Spawns a process and resolves with the first value `match` returns for one of its output lines,
 * or rejects when it exits first or the deadline passes. Its output is kept for the failure text.
 */
function start(command, args, options, match) {
  const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  if (process.env.TEST_PID_FILE && child.pid) {
    appendFileSync(process.env.TEST_PID_FILE, `${child.pid}\n`);
  }
  const output = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const seen = output.join("\n");
      reject(new Error(`${command}: not ready within ${START_TIMEOUT_MS} ms:\n${seen}`));
    }, START_TIMEOUT_MS);
    const onLine = (line) => {
      output.push(line);
      const found = match(line);
      if (found !== undefined) {
        clearTimeout(timer);
        resolve(found);
      }
    };
    createInterface({ input: child.stdout }).on("line", onLine);
    createInterface({ input: child.stderr }).on("line", onLine);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited (${code ?? signal}):\n${output.join("\n")}`));
    });
  });
}

/** Stops a child by its PID: SIGTERM, then SIGKILL if it has not exited within 10 s. */
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Polls sessiond's /readyz until 200 or the deadline; the pause is between bounded polls. */
async function waitReady(httpAddr) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://${httpAddr}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err.message;
    }
    await pause(100);
  }
  throw new Error(`sessiond not ready within ${START_TIMEOUT_MS} ms: ${last}`);
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "express-app-test-"));
  const addrs = {};
  await start(
    SESSIOND_BIN,
    ["serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"]
      .concat(["--data-dir", join(dataDir, "data"), "--log-format", "json"]),
    {},
    (line) => {
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return undefined;
      }
      if (entry.message === "sessiond serving") addrs.grpc = entry.addr;
      if (entry.message === "http surface serving") addrs.http = entry.addr;
      return addrs.grpc && addrs.http ? addrs : undefined;
    },
  );
  await waitReady(addrs.http);
  base = await start(
    process.execPath,
    ["server.js"],
    { cwd: APP_DIR, env: { ...process.env, SESSIOND_ADDR: addrs.grpc, PORT: "0" } },
    (line) => line.match(/^express-app listening on (http:\/\/\S+)$/)?.[1],
  );
});

after(async () => {
  await Promise.all(children.map(stop));
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** A browser: one User-Agent, one cookie jar holding `sid`. */
class Device {
  constructor(userAgent) {
    this.userAgent = userAgent;
    this.sid = null;
  }

  async request(method, path, body) {
    const headers = { "user-agent": this.userAgent };
    if (this.sid !== null) headers.cookie = `sid=${this.sid}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    for (const cookie of res.headers.getSetCookie()) {
      const [pair] = cookie.split(";");
      const [name, value] = pair.split("=");
      if (name === "sid") this.sid = value === "" ? null : value;
    }
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
  }

  async login(user) {
    const res = await this.request("POST", "/login", { user });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.ok(this.sid, "POST /login set the sid cookie");
    return res.body.session;
  }

  async sessions() {
    return this.request("GET", "/me/sessions");
  }
}

test("two devices of one user are listed with their own device names", async () => {
  const mac = new Device(UA.chromeMac);
  const windows = new Device(UA.firefoxWindows);
  const macSession = await mac.login("alice");
  const windowsSession = await windows.login("alice");
  assert.notEqual(macSession.id, windowsSession.id);

  const fromMac = await mac.sessions();
  assert.equal(fromMac.status, 200);
  const byId = new Map(fromMac.body.sessions.map((s) => [s.id, s]));
  assert.equal(byId.size, 2);
  assert.equal(byId.get(macSession.id).deviceName, "Chrome on macOS");
  assert.equal(byId.get(windowsSession.id).deviceName, "Firefox on Windows");
  assert.equal(byId.get(macSession.id).isCurrent, true);
  assert.equal(byId.get(windowsSession.id).isCurrent, false);
  for (const s of byId.values()) {
    assert.equal(s.ip, "127.0.0.1");
    assert.ok(Date.parse(s.created) > 0, `created ${s.created}`);
    assert.ok(Date.parse(s.lastActive) >= Date.parse(s.created), `lastActive ${s.lastActive}`);
  }

  // The other device sees the same two, with itself as the current one.
  const fromWindows = await windows.sessions();
  assert.equal(fromWindows.status, 200);
  const current = fromWindows.body.sessions.filter((s) => s.isCurrent).map((s) => s.id);
  assert.deepEqual(current, [windowsSession.id]);
});

test("revoking a device from another makes the revoked device's next request 401", async () => {
  const mac = new Device(UA.chromeMac);
  const phone = new Device(UA.safariIphone);
  await mac.login("bob");
  const phoneSession = await phone.login("bob");
  assert.equal(phoneSession.deviceName, "Safari on iOS");
  assert.equal((await phone.sessions()).status, 200);

  const revoked = await mac.request("DELETE", `/me/sessions/${phoneSession.id}`);
  assert.equal(revoked.status, 204);

  const after = await phone.sessions();
  assert.equal(after.status, 401);
  assert.equal(after.body.error, "unauthenticated");
  assert.equal(phone.sid, null, "the 401 cleared the revoked device's cookie");

  const still = await mac.sessions();
  assert.equal(still.status, 200);
  assert.deepEqual(
    still.body.sessions.map((s) => s.deviceName),
    ["Chrome on macOS"],
  );
});

test("revoke all keeps the current device working and ends the others", async () => {
  const mac = new Device(UA.chromeMac);
  const windows = new Device(UA.firefoxWindows);
  const phone = new Device(UA.safariIphone);
  await mac.login("carol");
  const windowsSession = await windows.login("carol");
  await phone.login("carol");

  const all = await windows.request("POST", "/me/sessions/revoke-all");
  assert.equal(all.status, 200);
  assert.equal(all.body.revoked, 2);

  const kept = await windows.sessions();
  assert.equal(kept.status, 200);
  assert.deepEqual(
    kept.body.sessions.map((s) => [s.id, s.isCurrent]),
    [[windowsSession.id, true]],
  );
  assert.equal((await mac.sessions()).status, 401);
  assert.equal((await phone.request("GET", "/me")).status, 401);
});

test("another user's session id, an unknown one and a malformed one are 404", async () => {
  const dave = new Device(UA.chromeMac);
  const erin = new Device(UA.firefoxWindows);
  await dave.login("dave");
  const erinSession = await erin.login("erin");

  const other = await dave.request("DELETE", `/me/sessions/${erinSession.id}`);
  assert.equal(other.status, 404);
  assert.equal(other.body.error, "not_found");
  assert.equal((await erin.sessions()).status, 200, "erin's session survived");

  const unknown = await dave.request("DELETE", "/me/sessions/00000000-0000-4000-8000-000000000000");
  assert.equal(unknown.status, 404);
  const malformed = await dave.request("DELETE", "/me/sessions/not-a-session");
  assert.equal(malformed.status, 404);
  assert.equal((await dave.sessions()).status, 200);
});

test("without a valid cookie every /me route is 401", async () => {
  const nobody = new Device(UA.chromeMac);
  for (const [method, path] of [
    ["GET", "/me"],
    ["GET", "/me/sessions"],
    ["DELETE", "/me/sessions/00000000-0000-4000-8000-000000000000"],
    ["POST", "/me/sessions/revoke-all"],
  ]) {
    assert.equal((await nobody.request(method, path)).status, 401, `${method} ${path}`);
  }
  nobody.sid = "not.a.token";
  assert.equal((await nobody.sessions()).status, 401);
});

test("logout revokes the current session", async () => {
  const mac = new Device(UA.chromeMac);
  await mac.login("frank");
  const token = mac.sid;
  assert.equal((await mac.request("POST", "/logout")).status, 204);
  assert.equal(mac.sid, null, "logout cleared the cookie");
  mac.sid = token; // a copy of the cookie kept from before is no use either
  assert.equal((await mac.sessions()).status, 401);
});

test("login needs a user name", async () => {
  const device = new Device(UA.chromeMac);
  for (const body of [{}, { user: "" }, { user: 7 }, { user: "x".repeat(129) }]) {
    const res = await device.request("POST", "/login", body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal(device.sid, null);
  }
});

test("the page is served with a same-origin policy and renders data as text", async () => {
  const device = new Device(UA.chromeMac);
  const page = await fetch(`${base}/`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /^text\/html/);
  assert.match(page.headers.get("content-security-policy"), /default-src 'self'/);
  const html = await page.text();
  assert.match(html, /<script src="app\.js" defer><\/script>/);
  assert.doesNotMatch(html, /<script>/, "no inline script");

  const script = await fetch(`${base}/app.js`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  assert.equal(script.status, 200);
  const js = await script.text();
  assert.match(js, /textContent/);
  assert.doesNotMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  assert.equal((await device.request("GET", "/no-such-route")).status, 404);
});
