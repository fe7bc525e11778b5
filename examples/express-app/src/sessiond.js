// The app's sessiond client: the five SessionService methods it uses, as promises with deadlines.
//
// The service and message types are generated at start-up from proto/ by @grpc/proto-loader
// (field names kept as in the proto: user_id, access_token, last_seen_at).

import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

// Every call is bounded: a stuck sessiond turns into a 503, not a hung request.
const CALL_TIMEOUT_MS = 5_000;

const PROTO_DIR = fileURLToPath(new URL("../../../proto", import.meta.url));
const definition = protoLoader.loadSync("sessiond/v1/session.proto", {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  enums: String, // InvalidReason as its name
  defaults: true,
  longs: String, // Timestamp.seconds is an int64
});
const SessionService = grpc.loadPackageDefinition(definition).sessiond.v1.SessionService;

/** The gRPC status codes, by name, for the routes' error mapping. */
export const status = grpc.status;

/**
 * Connects to sessiond at `addr` (host:port). `credential`, when set, is sent as
 * `authorization: Bearer <credential>` on every call, for a sessiond behind a callers file.
 */
export function connect(addr, { credential } = {}) {
  const client = new SessionService(addr, grpc.credentials.createInsecure());
  const unary = (method) => {
    const call = promisify(client[method].bind(client));
    return (request) => {
      const metadata = new grpc.Metadata();
      if (credential) metadata.set("authorization", `Bearer ${credential}`);
      return call(request, metadata, { deadline: Date.now() + CALL_TIMEOUT_MS });
    };
  };
  return {
    issue: unary("Issue"),
    validate: unary("Validate"),
    list: unary("List"),
    revoke: unary("Revoke"),
    revokeAll: unary("RevokeAll"),
    close: () => client.close(),
  };
}

/** A google.protobuf.Timestamp as an ISO 8601 string, or null when unset. */
export function isoTime(ts) {
  if (!ts) return null;
  const ms = Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);
  return new Date(ms).toISOString();
}
