// Starts the app: `SESSIOND_ADDR=127.0.0.1:50051 PORT=3000 node server.js`.
//
// HOST (default 127.0.0.1) and PORT (default 3000; 0 lets the kernel pick) are where it listens;
// SESSIOND_ADDR is sessiond's gRPC address; SESSIOND_CREDENTIAL, when set, is sent as a Bearer
// credential on every call (a sessiond behind a callers file); TRUST_PROXY is Express's
// "trust proxy" setting (unset: the socket's address is the client's IP).
// Prints one line `express-app listening on http://HOST:PORT` once it accepts connections, and
// stops on SIGTERM or SIGINT.

import { createApp } from "./src/app.js";
import { connect } from "./src/sessiond.js";

const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT ?? 3000);
const sessiond = connect(process.env.SESSIOND_ADDR ?? "127.0.0.1:50051", {
  credential: process.env.SESSIOND_CREDENTIAL,
});
const app = createApp(sessiond, { trustProxy: process.env.TRUST_PROXY });

const server = app.listen(port, host, (err) => {
  if (err) {
    console.error(`express-app: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  }
  const addr = server.address();
  console.log(`express-app listening on http://${addr.address}:${addr.port}`);
});

function stop(signal) {
  console.log(`express-app: ${signal}, stopping`);
  server.close(() => {
    sessiond.close();
    process.exit(0);
  });
  // Keep-alive connections would hold close() open; a stop is bounded.
  server.closeAllConnections();
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
