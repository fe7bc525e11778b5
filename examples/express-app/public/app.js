// The sessions page: signs in, lists the user's sessions, revokes one or all others.
//
// The access token is in an HttpOnly cookie the browser sends by itself; this script only calls
// the app's JSON routes. Every value from the server is rendered with textContent, never as
// markup, so a crafted user agent or device name stays text.

const $ = (id) => document.getElementById(id);

function say(text) {
  $("message").textContent = text;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

/** fetch with the JSON conventions of the app's routes; a 401 shows the sign-in form. */
async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    showLogin("Your session has ended. Please sign in again.");
    return null;
  }
  if (!res.ok) {
    const detail = await res.json().catch(() => ({}));
    throw new Error(detail.detail ?? `${method} ${path}: HTTP ${res.status}`);
  }
  return res.status === 204 ? {} : res.json();
}

function showLogin(text = "") {
  $("sessions").hidden = true;
  $("login").hidden = false;
  say(text);
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function row(s) {
  const tr = document.createElement("tr");
  if (s.isCurrent) tr.className = "current";
  tr.append(
    cell(s.isCurrent ? `${s.deviceName} (this device)` : s.deviceName),
    cell(s.ip),
    cell(when(s.lastActive)),
    cell(when(s.created)),
  );
  const actions = document.createElement("td");
  if (!s.isCurrent) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Revoke";
    button.addEventListener("click", () => revoke(s.id, s.deviceName));
    actions.append(button);
  }
  tr.append(actions);
  return tr;
}

async function refresh() {
  const me = await api("GET", "/me");
  if (!me) return;
  const listed = await api("GET", "/me/sessions");
  if (!listed) return;
  $("user").textContent = me.user;
  $("session-rows").replaceChildren(...listed.sessions.map(row));
  $("login").hidden = true;
  $("sessions").hidden = false;
}

async function revoke(id, deviceName) {
  if ((await api("DELETE", `/me/sessions/${encodeURIComponent(id)}`)) === null) return;
  say(`Signed out ${deviceName}.`);
  await refresh();
}

async function revokeAll() {
  const r = await api("POST", "/me/sessions/revoke-all");
  if (!r) return;
  say(`Signed out ${r.revoked} other session(s).`);
  await refresh();
}

function guard(action) {
  return (event) => {
    event?.preventDefault();
    action(event).catch((err) => say(err.message));
  };
}

$("login-form").addEventListener(
  "submit",
  guard(async (event) => {
    const user = new FormData(event.target).get("user");
    await api("POST", "/login", { user });
    say("");
    await refresh();
  }),
);
$("revoke-all").addEventListener("click", guard(revokeAll));
$("logout").addEventListener(
  "click",
  guard(async () => {
    await api("POST", "/logout");
    showLogin("Signed out.");
  }),
);

guard(refresh)();
