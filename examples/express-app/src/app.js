// The session-management backend: a stand-in login, then "your sessions" over sessiond.
//
// The access token sessiond issues lives in one cookie, `sid` (HttpOnly, SameSite=Strict, Path=/):
// the page's JavaScript never sees it, and a cross-site page cannot make the browser send it.
// Every /me route validates it with sessiond's Validate first and answers 401 when it is not
// valid; the routes then call List, Revoke and RevokeAll with the same token, so sessiond itself
// decides which sessions are the caller's.

import { isIPv4 } from "node:net";
import { fileURLToPath } from "node:url";

import cookieParser from "cookie-parser";
import express from "express";

import { isoTime, status } from "./sessiond.js";

/** The name of the cookie that carries the access token. */
export const COOKIE = "sid";

// sessiond bounds a user agent at 1024 bytes; a header is Latin-1, at most 2 UTF-8 bytes a char.
const MAX_USER_AGENT_CHARS = 512;
const MAX_USER_CHARS = 128;
const PUBLIC_DIR = fileURLToPath(new URL("../public", import.meta.url));

/** An error with the HTTP status and JSON body the error handler answers with. */
class HttpError extends Error {
  constructor(httpStatus, error, detail) {
    super(detail ?? error);
    this.httpStatus = httpStatus;
    this.error = error;
  }
}

/** The HTTP answer to a failed sessiond call. */
function fromGrpc(err) {
  switch (err.code) {
    case status.UNAUTHENTICATED:
      return new HttpError(401, "unauthenticated", "the session is no longer valid");
    case status.NOT_FOUND:
      return new HttpError(404, "not_found", "no such session");
    case status.INVALID_ARGUMENT:
      return new HttpError(400, "invalid_argument", err.details);
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
    case status.RESOURCE_EXHAUSTED:
      return new HttpError(503, "unavailable", "the session service is unavailable");
    default:
      return new HttpError(502, "session_service_error", "the session service failed");
  }
}

/** Runs a sessiond call, turning its gRPC error into the HTTP one. */
async function call(promise) {
  try {
    return await promise;
  } catch (err) {
    if (err.code === undefined) throw err;
    throw fromGrpc(err);
  }
}

/** The client's address as sessiond stores it: an IPv4-mapped IPv6 address as plain IPv4. */
function clientIp(req) {
  const ip = req.ip ?? "";
  const mapped = ip.startsWith("::ffff:") ? ip.slice("::ffff:".length) : "";
  return isIPv4(mapped) ? mapped : ip;
}

function cookieOptions(req, expiresAt) {
  return {
    httpOnly: true,
    sameSite: "strict",
    secure: req.secure, // behind TLS (or a trusted proxy that terminated it): Secure too
    path: "/",
    ...(expiresAt ? { expires: new Date(expiresAt) } : {}),
  };
}

function clearSid(req, res) {
  const { expires: _, ...options } = cookieOptions(req);
  res.clearCookie(COOKIE, options);
}

/** One session as the page shows it. */
function view(s) {
  return {
    id: s.session_id,
    deviceName: s.device_name || "Unknown device",
    ip: s.ip,
    lastActive: isoTime(s.last_seen_at),
    created: isoTime(s.created_at),
    isCurrent: s.current,
  };
}

/**
 * The Express app over a sessiond client (see ./sessiond.js `connect`). `trustProxy` is Express's
 * "trust proxy" setting: leave it unset unless a proxy you run sets X-Forwarded-For, or every
 * client can choose the IP its sessions are listed with.
 */
export function createApp(sessiond, { trustProxy, log = console } = {}) {
  const app = express();
  app.disable("x-powered-by");
  if (trustProxy !== undefined) app.set("trust proxy", trustProxy);

  app.use((req, res, next) => {
    // The page loads only its own script and style; data is rendered as text, never as markup.
    res.set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'");
    res.set("X-Content-Type-Options", "nosniff");
    res.set("Referrer-Policy", "no-referrer");
    next();
  });
  app.use(express.json({ limit: "1kb" }));
  app.use(cookieParser());
  app.use(express.static(PUBLIC_DIR));

  // Stands in for the real login: whoever posts a user name is that user.
  app.post("/login", async (req, res) => {
    const user = req.body?.user;
    if (typeof user !== "string" || user.trim() === "" || user.length > MAX_USER_CHARS) {
      throw new HttpError(400, "invalid_argument", `user must be 1 to ${MAX_USER_CHARS} chars`);
    }
    const issued = await call(
      sessiond.issue({
        user_id: user.trim(),
        client: {
          ip: clientIp(req),
          user_agent: (req.get("user-agent") ?? "").slice(0, MAX_USER_AGENT_CHARS),
        },
      }),
    );
    const expires = isoTime(issued.tokens.access_token_expires_at);
    res.cookie(COOKIE, issued.tokens.access_token, cookieOptions(req, expires));
    res.json({ user: issued.session.user_id, session: view({ ...issued.session, current: true }) });
  });

  // Every /me route: the cookie's token must be valid now, by sessiond's Validate.
  const me = express.Router();
  me.use(async (req, res, next) => {
    const token = req.cookies?.[COOKIE];
    if (typeof token !== "string" || token === "") {
      throw new HttpError(401, "unauthenticated", "not signed in");
    }
    const v = await call(sessiond.validate({ access_token: token }));
    if (!v.valid) {
      clearSid(req, res);
      throw new HttpError(401, "unauthenticated", `the session is not valid (${v.reason})`);
    }
    req.sessiond = { token, session: v.session };
    next();
  });

  me.get("/", (req, res) => {
    const { session } = req.sessiond;
    res.json({ user: session.user_id, session: view({ ...session, current: true }) });
  });

  me.get("/sessions", async (req, res) => {
    const listed = await call(sessiond.list({ access_token: req.sessiond.token }));
    res.json({ sessions: listed.sessions.map(view) });
  });

  me.delete("/sessions/:id", async (req, res) => {
    let r;
    try {
      r = await call(
        sessiond.revoke({ access_token: req.sessiond.token, session_id: req.params.id }),
      );
    } catch (err) {
      // An id that is not even a UUID names no session of the caller's either.
      if (err instanceof HttpError && err.httpStatus === 400) {
        throw new HttpError(404, "not_found", "no such session");
      }
      throw err;
    }
    if (r.was_current) clearSid(req, res);
    res.status(204).end();
  });

  me.post("/sessions/revoke-all", async (req, res) => {
    const r = await call(
      sessiond.revokeAll({ access_token: req.sessiond.token, include_current: false }),
    );
    res.json({ revoked: r.revoked_count });
  });

  app.use("/me", me);

  // Signing out is revoking the current session, then forgetting the cookie.
  app.post("/logout", async (req, res) => {
    const token = req.cookies?.[COOKIE];
    if (typeof token === "string" && token !== "") {
      const v = await call(sessiond.validate({ access_token: token }));
      if (v.valid) {
        await call(sessiond.revoke({ access_token: token, session_id: v.session.session_id }));
      }
    }
    clearSid(req, res);
    res.status(204).end();
  });

  app.use((req, res) => {
    res.status(404).json({ error: "not_found", detail: "no such route" });
  });

  // Express 5 passes a rejected async handler's error here.
  app.use((err, req, res, _next) => {
    if (err instanceof HttpError) {
      res.status(err.httpStatus).json({ error: err.error, detail: err.message });
      return;
    }
    if (err.type === "entity.parse.failed" || err.type === "entity.too.large") {
      res.status(err.status ?? 400).json({ error: "bad_request", detail: err.message });
      return;
    }
    // Never the request itself: it carries the token cookie.
    log.error(`express-app: ${req.method} ${req.path} failed: ${err.message}`);
    res.status(500).json({ error: "internal", detail: "internal error" });
  });

  return app;
}
