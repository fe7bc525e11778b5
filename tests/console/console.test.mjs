// The admin console in a real browser: Debian's Chromium driven by playwright-core, against a
// real sessiond.
//
// Starts `sessiond serve` (SESSIOND_BIN, default target/debug/sessiond) on loopback ports the
// kernel picks, with a fresh data directory and two callers made by `sessiond credential`: `ops`
// (admin) and `login` (issuer, validator). Sessions are issued over gRPC (@grpc/grpc-js from
// proto/), the console is driven through its views, and what it did is checked over gRPC with
// Validate: exactly the sessions it revoked are REVOKED, then everyone after the emergency
// switch. A session whose user agent is markup must show as text and run nothing. Screenshots of
// each view go to SHOTS_DIR (default target/console-shots). The processes are stopped by PID when
// the file ends; with TEST_PID_FILE set their PIDs are also written there for the calling script.
//
// The tests of this file share one server and one browser page and run in order.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { setTimeout as pause } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { chromium } from "playwright-core";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SESSIOND_BIN = process.env.SESSIOND_BIN ?? join(ROOT, "target/debug/sessiond");
const SHOTS_DIR = process.env.SHOTS_DIR ?? join(ROOT, "target/console-shots");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const START_TIMEOUT_MS = 30_000;
const CALL_TIMEOUT_MS = 5_000;
/** How long the page may take to show what a step expects. */
const UI_TIMEOUT_MS = 10_000;

const XSS = "<img src=x onerror=alert(1)>";
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

const children = [];
let workDir;
let browser;
let page;
let base;
let sessiond; // { issue, validate, close }
let credentials; // { ops, login }
const dialogs = [];
const pageErrors = [];
/** What the browser's console said about the Content-Security-Policy or Trusted Types. */
const policyErrors = [];
/** The sessions issued over gRPC, by name. */
const issued = {};
/** The auth_time (Unix seconds) stated for dave_acme's sign-in. */
let daveAuthTime;

// --- processes -------------------------------------------------------------------------------

/**
 * Spawns a process and resolves with the first value `match` returns for one of its output
 * lines, or rejects when it exits first or the deadline passes.
 */
function start(command, args, match) {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  if (process.env.TEST_PID_FILE && child.pid) {
    appendFileSync(process.env.TEST_PID_FILE, `${child.pid}\n`);
  }
  const output = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${command}: not ready within ${START_TIMEOUT_MS} ms:\n${output.join("\n")}`));
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

/** A caller's credential and its callers-file entry, from `sessiond credential`. */
async function credential(name, roles) {
  const { stdout } = await promisify(execFile)(SESSIOND_BIN, [
    "credential",
    "--name",
    name,
    "--roles",
    roles,
  ]);
  const secret = stdout.match(/^#\s+authorization: Bearer (\S+)$/m)?.[1];
  assert.ok(secret, `no credential in: ${stdout}`);
  const entry = stdout
    .split("\n")
    .filter((line) => !line.startsWith("#"))
    .join("\n");
  return { secret, entry };
}

/** sessiond's gRPC API as promises with deadlines, authenticated as `secret`. */
function connect(addr, secret) {
  const definition = protoLoader.loadSync("sessiond/v1/session.proto", {
    includeDirs: [join(ROOT, "proto")],
    keepCase: true,
    enums: String,
    defaults: true,
    longs: String,
  });
  const Service = grpc.loadPackageDefinition(definition).sessiond.v1.SessionService;
  const client = new Service(addr, grpc.credentials.createInsecure());
  const unary = (method) => {
    const call = promisify(client[method].bind(client));
    return (request) => {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${secret}`);
      return call(request, metadata, { deadline: Date.now() + CALL_TIMEOUT_MS });
    };
  };
  return { issue: unary("Issue"), validate: unary("Validate"), close: () => client.close() };
}

async function issue(name, user, userAgent, tenant = "", extra = {}) {
  const answer = await sessiond.issue({
    user_id: user,
    tenant_id: tenant,
    client: { ip: "203.0.113.7", user_agent: userAgent },
    metadata: { login_method: "password" },
    ...extra,
  });
  issued[name] = { id: answer.session.session_id, token: answer.tokens.access_token, user };
  return issued[name];
}

/** `VALID` or the InvalidReason name of a token, from gRPC Validate. */
async function verdict(token) {
  const answer = await sessiond.validate({ access_token: token });
  return answer.valid ? "VALID" : answer.reason.replace("INVALID_REASON_", "");
}

async function verdicts() {
  const out = {};
  for (const [name, s] of Object.entries(issued)) out[name] = await verdict(s.token);
  return out;
}

async function shot(name) {
  await page.screenshot({ path: join(SHOTS_DIR, `${name}.png`), fullPage: true });
}

/** The rows of the sessions table, as the page shows them. */
async function rows() {
  return page.locator("#sessions-body tr").evaluateAll((trs) =>
    trs.map((tr) => ({
      id: tr.dataset.sessionId,
      user: tr.dataset.userId,
      cells: [...tr.cells].map((td) => td.textContent),
    })),
  );
}

/** Waits until the sessions table holds exactly the sessions `ids`. */
async function waitRows(ids) {
  const want = [...ids].sort();
  await page.waitForFunction(
    (expected) => {
      const shown = [...document.querySelectorAll("#sessions-body tr")]
        .map((tr) => tr.dataset.sessionId)
        .sort();
      return JSON.stringify(shown) === JSON.stringify(expected);
    },
    want,
    { timeout: UI_TIMEOUT_MS },
  );
}

/** Waits until the audit table shows events, all of `user` (the page's answer to the filter). */
async function waitAuditOf(user) {
  await page.waitForFunction(
    (who) => {
      const users = [...document.querySelectorAll("#audit-body tr")].map((tr) => tr.cells[3]?.textContent);
      return users.length > 0 && users.every((u) => u === who);
    },
    user,
    { timeout: UI_TIMEOUT_MS },
  );
}

async function statusText(pattern) {
  const status = page.locator("#status");
  await status.filter({ hasText: pattern }).waitFor({ timeout: UI_TIMEOUT_MS });
  return status.textContent();
}

// --- set-up ----------------------------------------------------------------------------------

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), "console-test-"));
  await mkdir(SHOTS_DIR, { recursive: true });
  const ops = await credential("ops", "admin");
  const login = await credential("login", "issuer,validator");
  credentials = { ops: ops.secret, login: login.secret };
  const callers = join(workDir, "callers.toml");
  await writeFile(callers, `${ops.entry}\n${login.entry}\n`, { mode: 0o600 });

  const addrs = {};
  await start(
    SESSIOND_BIN,
    ["serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"].concat([
      "--data-dir",
      join(workDir, "data"),
      "--callers-file",
      callers,
      "--log-format",
      "json",
    ]),
    (line) => {
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return undefined;
      }
      const message = entry.message ?? entry.fields?.message;
      const addr = entry.addr ?? entry.fields?.addr;
      if (message === "sessiond serving") addrs.grpc = addr;
      if (message === "http surface serving") addrs.http = addr;
      return addrs.grpc && addrs.http ? addrs : undefined;
    },
  );
  await waitReady(addrs.http);
  base = `http://${addrs.http}`;
  sessiond = connect(addrs.grpc, credentials.login);

  await issue("alice_mac", "alice", UA.chromeMac);
  await issue("alice_windows", "alice", UA.firefoxWindows);
  await issue("bob_mac", "bob", UA.chromeMac);
  await issue("bob_phone", "bob", UA.safariIphone);
  await issue("mallory", "mallory", XSS);
  // A sign-in ten minutes ago with a second factor, and an idle timeout of 15 minutes.
  daveAuthTime = Math.floor(Date.now() / 1000) - 600;
  await issue("dave_acme", "dave", UA.firefoxWindows, "acme", {
    idle_timeout: { seconds: 900 },
    auth_time: { seconds: daveAuthTime },
    acr: "urn:example:mfa",
    amr: ["pwd", "otp"],
  });

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  page = await context.newPage();
  page.on("dialog", async (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (msg) => {
    if (/Content Security Policy|Trusted ?Type/i.test(msg.text())) policyErrors.push(msg.text());
  });
  // Only this server: anything else the page tried to reach would be an outside fetch.
  await context.route("**/*", (route) =>
    route.request().url().startsWith(`${base}/`) ? route.continue() : route.abort(),
  );
});

after(async () => {
  if (browser) await browser.close();
  if (sessiond) sessiond.close();
  await Promise.all(children.map(stop));
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

// --- the console -----------------------------------------------------------------------------

test("a wrong credential is refused and the console stays closed", async () => {
  await page.goto(`${base}/admin/`);
  await page.fill("#credential", "sdc_not-a-credential");
  await page.click("#signin-form button[type=submit]");
  const error = page.locator("#signin-error");
  await error.filter({ hasText: "CREDENTIAL_UNKNOWN" }).waitFor({ timeout: UI_TIMEOUT_MS });
  assert.equal(await page.locator("#nav").isVisible(), false);
  assert.equal(await page.locator("#sessions-view").isVisible(), false);
  await shot("signin-refused");

  // A real credential without the admin role: refused as well.
  await page.fill("#credential", credentials.login);
  await page.click("#signin-form button[type=submit]");
  await error.filter({ hasText: "PERMISSION_DENIED" }).waitFor({ timeout: UI_TIMEOUT_MS });
  assert.equal(await page.locator("#nav").isVisible(), false);
});

test("signs in with the admin credential and lists the sessions issued over gRPC", async () => {
  await page.fill("#credential", credentials.ops);
  await page.click("#signin-form button[type=submit]");
  await page.locator("#sessions-view").waitFor({ timeout: UI_TIMEOUT_MS });
  await waitRows(Object.values(issued).map((s) => s.id));
  const shown = await rows();
  const aliceMac = shown.find((r) => r.id === issued.alice_mac.id);
  assert.equal(aliceMac.user, "alice");
  assert.ok(aliceMac.cells[2].startsWith("Chrome on macOS"), aliceMac.cells[2]);
  assert.equal(aliceMac.cells[3], "203.0.113.7");
  for (const column of [4, 5, 6]) assert.match(aliceMac.cells[column], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  assert.equal(aliceMac.cells[7], "active");
  // Signed in when issued, with no acr or amr given, and no idle timeout.
  assert.match(aliceMac.cells[8], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  const dave = shown.find((r) => r.id === issued.dave_acme.id);
  const daveSignIn = `${new Date(daveAuthTime * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`;
  assert.equal(dave.cells[8], `${daveSignIn}urn:example:mfa · pwd, otp`);
  assert.match(dave.cells[5], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTCidle timeout 15m$/);
  const bobPhone = shown.find((r) => r.id === issued.bob_phone.id);
  assert.ok(bobPhone.cells[2].startsWith("Safari on iOS") || bobPhone.cells[2].includes("iPhone"), bobPhone.cells[2]);
  await shot("sessions");

  // The credential is nowhere but in the script's memory.
  const kept = await page.evaluate(() => ({
    url: location.href,
    cookie: document.cookie,
    local: localStorage.length,
    session: sessionStorage.length,
    input: document.getElementById("credential").value,
  }));
  assert.equal(kept.url, `${base}/admin/`);
  assert.deepEqual(kept, { url: kept.url, cookie: "", local: 0, session: 0, input: "" });
  assert.ok(!kept.url.includes(credentials.ops));
});

test("filters by user and tenant, and pages", async () => {
  await page.fill("#filter-user", "dave");
  await page.fill("#filter-tenant", "acme");
  await page.click("#sessions-filter button[type=submit]");
  await waitRows([issued.dave_acme.id]);
  await page.fill("#filter-tenant", "other");
  await page.click("#sessions-filter button[type=submit]");
  await page.locator("#sessions-empty").waitFor({ timeout: UI_TIMEOUT_MS });

  await page.fill("#filter-user", "");
  await page.fill("#filter-tenant", "");
  await page.selectOption("#filter-size", "10");
  await page.click("#sessions-filter button[type=submit]");
  await waitRows(Object.values(issued).map((s) => s.id));
  assert.equal(await page.locator("#sessions-next").isDisabled(), true, "six sessions: one page");
});

test("a user agent made of markup renders as text and runs nothing", async () => {
  const row = (await rows()).find((r) => r.id === issued.mallory.id);
  assert.ok(row.cells[2].includes(XSS), `the user agent as text: ${row.cells[2]}`);
  assert.equal(await page.locator("#sessions-body img").count(), 0, "no img element");
  assert.equal(await page.locator("img").count(), 0, "no img element anywhere");
  assert.deepEqual(dialogs, [], "no dialog opened");
  assert.deepEqual(pageErrors, [], "no script error");
});

test("revokes one session", async () => {
  await page.click(`tr[data-session-id="${issued.alice_mac.id}"] button[data-action=revoke]`);
  await statusText(`Session ${issued.alice_mac.id} revoked.`);
  await waitRows(Object.values(issued).filter((s) => s !== issued.alice_mac).map((s) => s.id));
  assert.equal(await verdict(issued.alice_mac.token), "REVOKED");
  assert.equal(await verdict(issued.alice_windows.token), "VALID");

  // With revoked sessions included, it is there, marked.
  await page.check("#filter-revoked");
  await page.click("#sessions-filter button[type=submit]");
  await waitRows(Object.values(issued).map((s) => s.id));
  const row = (await rows()).find((r) => r.id === issued.alice_mac.id);
  assert.match(row.cells[7], /UTC.*admin_console/);
  await shot("sessions-revoked");
  await page.uncheck("#filter-revoked");
});

test("force logout of a user", async () => {
  // The row's button fills the form; the form does it.
  await page.click(`tr[data-session-id="${issued.bob_mac.id}"] button[data-action=logout]`);
  assert.equal(await page.inputValue("#logout-user"), "bob");
  await page.fill("#logout-reason", "password reset");
  await page.click("#logout-form button[type=submit]");
  const text = await statusText("Logged out bob");
  assert.match(text, /2 sessions ended/);
  assert.equal(await verdict(issued.bob_mac.token), "REVOKED");
  assert.equal(await verdict(issued.bob_phone.token), "REVOKED");
  await waitRows([issued.alice_windows.id, issued.mallory.id, issued.dave_acme.id]);
});

test("the audit log of a user", async () => {
  await page.click("button.tab[data-view=audit]");
  await page.fill("#audit-user", "bob");
  await page.click("#audit-filter button[type=submit]");
  await waitAuditOf("bob");
  const events = await page
    .locator("#audit-body tr")
    .evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  const revoked = events.find((cells) => cells[1] === "user_revoked");
  assert.equal(revoked[2], "ops:admin");
  assert.equal(revoked[3], "bob");
  assert.equal(revoked[5], "127.0.0.1", "from the console's address");
  assert.equal(revoked[7], "password reset");
  assert.equal(events.filter((cells) => cells[1] === "session_issued").length, 2);
  assert.ok(events.every((cells) => cells[3] === "bob"), "only bob's events");
  await shot("audit");

  // mallory's user agent in the audit log: text too.
  await page.fill("#audit-user", "mallory");
  await page.click("#audit-filter button[type=submit]");
  await waitAuditOf("mallory");
  assert.ok((await page.locator("#audit-body").textContent()).includes(XSS));
  assert.equal(await page.locator("img").count(), 0);
});

test("the live view charts calls per second and live sessions", async () => {
  await page.click("button.tab[data-view=live]");
  // Two polls (2 s apart) make a line; meanwhile some traffic to chart.
  for (let i = 0; i < 20; i++) await verdict(issued.alice_windows.token);
  await page.waitForFunction(
    () => document.getElementById("stat-live").textContent === "6",
    undefined,
    { timeout: UI_TIMEOUT_MS },
  );
  await page
    .locator("#rpc-body td", { hasText: "Validate" })
    .first()
    .waitFor({ timeout: UI_TIMEOUT_MS });
  const calls = Number(await page.textContent("#stat-calls"));
  assert.ok(calls >= 0, `calls per second shown: ${calls}`);
  // A line needs two polls (2 s apart): wait, bounded, until the chart has two points.
  await page.waitForFunction(() => Number(document.getElementById("chart").dataset.points) >= 2, undefined, {
    timeout: UI_TIMEOUT_MS,
  });
  const drawn = await page
    .waitForFunction(
      () => {
        const canvas = document.getElementById("chart");
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let blue = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i + 2] > 150 && data[i] < 80 && data[i + 3] > 0) blue++;
        }
        return blue > 20 ? blue : false;
      },
      undefined,
      { timeout: UI_TIMEOUT_MS, polling: 200 },
    )
    .then((handle) => handle.jsonValue());
  assert.ok(drawn > 20, `the calls line is drawn (${drawn} pixels)`);
  await shot("live");
});

test("exactly the sessions the console ended are revoked", async () => {
  assert.deepEqual(await verdicts(), {
    alice_mac: "REVOKED",
    alice_windows: "VALID",
    bob_mac: "REVOKED",
    bob_phone: "REVOKED",
    mallory: "VALID",
    dave_acme: "VALID",
  });
});

test("the emergency switch asks for its typed confirmation, then logs out everyone", async () => {
  await page.click("button.tab[data-view=emergency]");
  const button = page.locator("#emergency-submit");
  assert.equal(await button.isDisabled(), true);
  await page.fill("#emergency-confirm", "log out everyone");
  assert.equal(await button.isDisabled(), true, "the phrase, exactly");
  await page.fill("#emergency-reason", "incident drill");
  await page.fill("#emergency-confirm", "LOG OUT EVERYONE");
  assert.equal(await button.isDisabled(), false);
  await shot("emergency");
  assert.deepEqual(Object.values(await verdicts()).filter((v) => v === "VALID").length, 3, "still valid before");
  await button.click();
  await page.locator("#emergency-result").filter({ hasText: "Done" }).waitFor({ timeout: UI_TIMEOUT_MS });
  const after = await verdicts();
  assert.deepEqual(
    Object.entries(after).filter(([, v]) => v !== "REVOKED"),
    [],
    "every token issued before is revoked",
  );
  const late = await issue("late", "erin", UA.chromeMac);
  assert.equal(await verdict(late.token), "VALID", "a session issued after the switch stands");
  delete issued.late;
  await shot("emergency-done");
});

test("signing out forgets the credential", async () => {
  await page.click("#sign-out");
  await page.locator("#signin-view").waitFor({ timeout: UI_TIMEOUT_MS });
  assert.equal(await page.locator("#nav").isVisible(), false);
  assert.equal(await page.locator("#sessions-body tr").count(), 0, "no data left on the page");
  // A fresh tab of the console holds no credential: its API calls are refused.
  const other = await page.context().newPage();
  await other.goto(`${base}/admin/`);
  const status = await other.evaluate(async () => (await fetch("/admin/api/stats")).status);
  assert.equal(status, 401);
  await other.close();
  assert.deepEqual(dialogs, [], "no dialog opened in the whole run");
  assert.deepEqual(pageErrors, [], "no script error in the whole run");
  assert.deepEqual(policyErrors, [], "the console itself never trips its own policy");
});

test("the console refuses to be framed", async () => {
  const framed = await page.context().newPage();
  await framed.goto(`${base}/healthz`);
  // Frames `path` in a page of the same origin (which 'self' would allow) and tells whether
  // its document loaded, within the deadline.
  const loads = async (path, probe) => {
    await framed.evaluate((url) => {
      const frame = document.createElement("iframe");
      frame.src = url;
      document.body.append(frame);
    }, `${base}${path}`);
    const deadline = Date.now() + 3_000;
    while (Date.now() < deadline) {
      const frame = framed.frames().find((f) => f.url() === `${base}${path}`);
      const loaded = frame ? await frame.evaluate(probe).catch(() => false) : false;
      if (loaded) return true;
      await pause(100);
    }
    return false;
  };
  // The control: a page without the console's headers loads in a frame, and is seen to.
  assert.equal(await loads("/readyz", () => document.body.textContent.includes("ready")), true);
  assert.equal(await loads("/admin/", () => !!document.getElementById("signin-form")), false);
  await framed.close();
});
