// A sessiond client in Node.js (@grpc/grpc-js): one session's life, and one refusal decoded.
//
// Waits until the server reports SERVING, issues a session, validates it, lists it, revokes it,
// validates it again (REVOKED), and reads the google.rpc.ErrorInfo of an INVALID_ARGUMENT.
// Prints one line per check and exits 1 at the first mismatch.
//
//   SESSIOND_ADDR=127.0.0.1:50051 node client.js
//
// The service and message types are generated at start-up from proto/ by @grpc/proto-loader;
// google/rpc/status.proto and error_details.proto come from google-proto-files.

import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { setTimeout as pause } from "node:timers/promises";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as googleProtos from "google-proto-files";
import { service as healthService } from "grpc-health-check";

const ADDR = process.env.SESSIOND_ADDR ?? "127.0.0.1:50051";
const SERVICE = "sessiond.v1.SessionService";
const USER = "example-node";
// Every call is bounded, and so is the wait for SERVING.
const CALL_TIMEOUT_MS = 10_000;
const READY_TIMEOUT_MS = 30_000;

const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));
const definition = protoLoader.loadSync("sessiond/v1/session.proto", {
  includeDirs: [PROTO_DIR],
  keepCase: true, // field names as in the proto: user_id, access_token
  enums: String, // InvalidReason as its name
  defaults: true,
  longs: String,
});
const SessionService = grpc.loadPackageDefinition(definition).sessiond.v1.SessionService;
const Health = grpc.makeClientConstructor(healthService, "grpc.health.v1.Health");

const rpcTypes = googleProtos.loadSync(
  ["status.proto", "error_details.proto"].map((f) => googleProtos.getProtoPath("rpc", f)),
  { keepCase: true },
);
const RpcStatus = rpcTypes.lookupType("google.rpc.Status");
const ErrorInfo = rpcTypes.lookupType("google.rpc.ErrorInfo");

class CheckFailed extends Error {}

function check(name, ok, detail) {
  if (!ok) throw new CheckFailed(`${name}: ${detail}`);
  console.log(`ok   ${name}: ${detail}`);
}

/** Turns a callback-style unary method into one that returns a promise, with a deadline. */
function unary(client, method) {
  const call = promisify(client[method].bind(client));
  return (request, options = {}) =>
    call(request, { deadline: Date.now() + CALL_TIMEOUT_MS, ...options });
}

/** The google.rpc.ErrorInfo entries of a failed call's grpc-status-details-bin trailer. */
function errorInfos(err) {
  const [bin] = err.metadata?.get("grpc-status-details-bin") ?? [];
  if (!bin) return [];
  const status = RpcStatus.decode(bin);
  return status.details
    .filter((any) => any.type_url === "type.googleapis.com/google.rpc.ErrorInfo")
    .map((any) => ErrorInfo.decode(any.value));
}

/** Polls grpc.health.v1 until SERVING or the deadline; the server starts NOT_SERVING. */
async function waitServing(health) {
  const healthCheck = unary(health, "Check");
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const res = await healthCheck({ service: SERVICE }, { waitForReady: true, deadline });
      if (res.status === "SERVING") return "SERVING";
      last = res.status;
    } catch (err) {
      last = grpc.status[err.code] ?? String(err.code);
    }
    await pause(100);
  }
  return last;
}

async function run() {
  const health = new Health(ADDR, grpc.credentials.createInsecure());
  const client = new SessionService(ADDR, grpc.credentials.createInsecure());
  try {
    const serving = await waitServing(health);
    check("health", serving === "SERVING", `${SERVICE} is ${serving}`);
    const issue = unary(client, "Issue");
    const validate = unary(client, "Validate");
    const list = unary(client, "List");
    const revoke = unary(client, "Revoke");

    const issued = await issue({
      user_id: USER,
      client: { ip: "127.0.0.1", user_agent: "sessiond-example-node" },
    });
    const sessionId = issued.session.session_id;
    const token = issued.tokens.access_token;
    check("issue", sessionId !== "" && token !== "", `session ${sessionId} for ${USER}`);

    let v = await validate({ access_token: token });
    check(
      "validate",
      v.valid && v.session?.session_id === sessionId,
      `valid=${v.valid} user=${v.session?.user_id}`,
    );

    const listed = await list({ access_token: token });
    const mine = listed.sessions.filter((s) => s.session_id === sessionId);
    const current = mine.length > 0 && mine[0].current;
    check(
      "list",
      mine.length === 1 && current,
      `${listed.sessions.length} session(s), ours current=${current}`,
    );

    const r = await revoke({ access_token: token, session_id: sessionId });
    check("revoke", r.was_current, `was_current=${r.was_current}`);

    v = await validate({ access_token: token });
    check(
      "validate after revoke",
      !v.valid && v.reason === "INVALID_REASON_REVOKED",
      `valid=${v.valid} reason=${v.reason}`,
    );

    let refusal;
    try {
      await issue({ user_id: "" });
    } catch (err) {
      refusal = err;
    }
    if (!refusal) {
      throw new CheckFailed("invalid argument: Issue with an empty user_id succeeded");
    }
    check(
      "invalid argument",
      refusal.code === grpc.status.INVALID_ARGUMENT,
      `code=${grpc.status[refusal.code]}`,
    );
    const infos = errorInfos(refusal);
    check(
      "error info",
      infos.length === 1,
      `${infos.length} google.rpc.ErrorInfo in the status details`,
    );
    const [info] = infos;
    check(
      "error info fields",
      info.reason === "INVALID_ARGUMENT" &&
        info.domain === "sessiond" &&
        info.metadata.field === "user_id",
      `reason=${info.reason} domain=${info.domain} field=${info.metadata.field}`,
    );
  } finally {
    health.close();
    client.close();
  }
}

try {
  await run();
} catch (err) {
  if (err instanceof CheckFailed) {
    console.log(`FAIL ${err.message}`);
  } else {
    const code = err.code === undefined ? "" : `${grpc.status[err.code]}: `;
    console.log(`FAIL unexpected error: ${code}${err.details ?? err.message}`);
  }
  process.exitCode = 1;
}
