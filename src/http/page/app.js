// Tessera's account page: sign-in (password, then TOTP when the user has it), the user's
// devices, signing out one or every other session, and the step-up dialog an action opens when
// it answers the RFC 9470 challenge. Served by Tessera itself under a strict CSP: no inline
// script, no third-party origin. The session cookie is HttpOnly; this script never sees it and
// keeps only the CSRF token, in memory.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = null;
let mfaToken = null;

function say(text, isError = false) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

function show(...ids) {
  for (const id of ["signin", "totp", "devices", "payment"]) $(id).hidden = !ids.includes(id);
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (csrf && method !== "GET") headers["x-csrf-token"] = csrf;
  return fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

// One place that turns an answer that is not a success into words for people.
async function explain(response) {
  let detail = "";
  try {
    detail = (await response.json()).message || "";
  } catch (_) {}
  if (response.status === 429) {
    const wait = response.headers.get("retry-after");
    return `Too many attempts. Try again${wait ? ` in ${wait} seconds` : " later"}.`;
  }
  if (response.status === 503) return "The service is unavailable right now. Try again shortly.";
  if (response.status === 401) return detail || "Your session has ended. Please sign in again.";
  return detail || `Something went wrong (${response.status}).`;
}

// The RFC 9470 challenge: `insufficient_user_authentication` in WWW-Authenticate.
function wantsStepUp(response) {
  const challenge = response.headers.get("www-authenticate") || "";
  return challenge.includes("insufficient_user_authentication");
}

// Runs `action`; when it answers the step-up challenge, asks for a fresh sign-in (bound to
// `bind`, the one operation it is for, when given) and retries.
async function withStepUp(action, bind) {
  let response = await action();
  if (!wantsStepUp(response)) return response;
  if (!(await stepUp(bind))) return null;
  response = await action();
  return response;
}

function stepUp(bind) {
  const dialog = $("stepup");
  $("stepup-password").value = "";
  $("stepup-code").value = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      async () => {
        if (dialog.returnValue !== "confirm") return resolve(false);
        const body = {};
        if ($("stepup-password").value) body.password = $("stepup-password").value;
        if ($("stepup-code").value) body.totp = $("stepup-code").value;
        if (bind) body.bind = bind;
        const r = await api("POST", "/v1/session/step-up", body);
        if (!r.ok) {
          say(await explain(r), true);
          return resolve(false);
        }
        const j = await r.json();
        if (j.csrf_token) csrf = j.csrf_token;
        resolve(true);
      },
      { once: true },
    );
    dialog.showModal();
    $("stepup-password").focus();
  });
}

function ago(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} minute${minutes === 1 ? "" : "s"} ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} hour${hours === 1 ? "" : "s"} ago`;
  return `${Math.round(hours / 24)} days ago`;
}

async function loadDevices() {
  const r = await api("GET", "/v1/sessions");
  if (!r.ok) {
    if (r.status === 401) return signedOut(await explain(r));
    return say(await explain(r), true);
  }
  const { sessions, unavailable_regions: away } = await r.json();
  const list = $("device-list");
  list.replaceChildren();
  for (const s of sessions) {
    const item = document.createElement("li");
    const text = document.createElement("div");
    const name = document.createElement("strong");
    name.textContent = s.device_name || s.device;
    text.append(name);
    if (s.current) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "This device";
      text.append(badge);
    }
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${s.ip || "unknown address"} · last active ${ago(s.last_seen_at)}`;
    text.append(meta);
    const end = document.createElement("button");
    end.type = "button";
    end.className = "secondary";
    end.textContent = "Sign out";
    end.setAttribute("aria-label", `Sign out ${s.device_name || s.device}${s.current ? " (this device)" : ""}`);
    end.addEventListener("click", () => signOutOne(s.id, s.current));
    item.append(text, end);
    list.append(item);
  }
  if (away && away.length) say(`Sessions in ${away.join(", ")} could not be listed right now.`, true);
  show("devices", "payment");
}

function signedOut(text) {
  csrf = null;
  show("signin");
  say(text || "You are signed out.", Boolean(text));
  $("username").focus();
}

async function signOutOne(id, current) {
  const r = await withStepUp(() => api("DELETE", `/v1/sessions/${encodeURIComponent(id)}`));
  if (r === null) return;
  if (!r.ok) {
    if (r.status === 401 && !wantsStepUp(r)) return signedOut(await explain(r));
    return say(await explain(r), true);
  }
  if (current) return signedOut("You signed out of this device.");
  say("Signed out that device.");
  await loadDevices();
}

async function signOutOthers() {
  const r = await withStepUp(() => api("DELETE", "/v1/sessions?scope=others"));
  if (r === null) return;
  if (!r.ok) {
    if (r.status === 401 && !wantsStepUp(r)) return signedOut(await explain(r));
    return say(await explain(r), true);
  }
  const { revoked } = await r.json();
  say(`Signed out ${revoked} other session${revoked === 1 ? "" : "s"}.`);
  await loadDevices();
}

async function signedIn(response) {
  const j = await response.json();
  if (j.mfa_required) {
    mfaToken = j.mfa_token;
    show("totp");
    say("Enter the code from your authenticator app.");
    $("code").focus();
    return;
  }
  csrf = j.csrf_token;
  say("");
  await loadDevices();
}

$("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await api("POST", "/v1/login", {
    username: $("username").value,
    password: $("password").value,
  });
  $("password").value = "";
  if (!r.ok) return say(await explain(r), true);
  await signedIn(r);
});

$("totp").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await api("POST", "/v1/login/mfa", { mfa_token: mfaToken, totp: $("code").value });
  $("code").value = "";
  if (!r.ok) return say(await explain(r), true);
  await signedIn(r);
});

$("others").addEventListener("click", signOutOthers);

$("payment").addEventListener("submit", async (e) => {
  e.preventDefault();
  const payment = { amount: $("amount").value, payee: $("payee").value };
  const r = await withStepUp(
    () => api("POST", "/account/demo/payment", payment),
    { action: "payment", ...payment },
  );
  if (r === null) return say("Payment cancelled.");
  if (!r.ok) {
    if (r.status === 401 && !wantsStepUp(r)) return signedOut(await explain(r));
    return say(await explain(r), true);
  }
  const done = await r.json();
  say(`Paid ${done.paid} to ${done.to} (demo: no money moved).`);
});

(async () => {
  const r = await api("GET", "/v1/session");
  if (r.ok) {
    csrf = (await r.json()).csrf_token;
    await loadDevices();
  } else if (r.status === 401) {
    signedOut();
    say("");
  } else {
    show("signin");
    say(await explain(r), true);
  }
})();
