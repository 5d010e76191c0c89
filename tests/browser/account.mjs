// The account page in a real browser (Debian's chromium via playwright-core). Run by
// tests/api/browser.rs against a live Tessera with real Redis:
//   BASE=http://localhost:PORT TOTP_USER=bob TOTP_PASSWORD=… TOTP_SECRET=<base32>
//   PLAIN_USER=alice PLAIN_PASSWORD=… SHOTS=<dir> node account.mjs
// Exits non-zero (with the reason) on the first expectation that does not hold.
import { chromium } from "playwright-core";
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";

const { BASE, TOTP_USER, TOTP_PASSWORD, TOTP_SECRET, PLAIN_USER, PLAIN_PASSWORD, SHOTS } = process.env;
mkdirSync(SHOTS, { recursive: true });

function expect(condition, what) {
  if (!condition) throw new Error(`expected: ${what}`);
}

// RFC 6238 with SHA-1, 30 s steps, 6 digits (what authenticator apps compute).
function totp(base32) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of base32.replace(/=+$/, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

// Signs in on a fresh page; a TOTP user gets the second step.
async function signIn(page, username, password, secret) {
  const response = await page.goto(`${BASE}/account`);
  await page.locator("#signin").getByLabel("Username").fill(username);
  await page.locator("#signin").getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  if (secret) {
    await page.getByLabel("Code from your authenticator app").fill(totp(secret));
    await page.getByRole("button", { name: "Verify" }).click();
  }
  await page.getByRole("heading", { name: "Your devices" }).waitFor();
  return response;
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  // 1. Sign-in with password, then TOTP; the device listing with "this device".
  const first = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await first.newPage();
  const served = await signIn(page, TOTP_USER, TOTP_PASSWORD, TOTP_SECRET);
  const csp = served.headers()["content-security-policy"] || "";
  expect(csp.includes("script-src 'self'") && csp.includes("frame-ancestors 'none'"), `a strict CSP, got ${csp}`);
  expect(served.headers()["x-content-type-options"] === "nosniff", "nosniff");
  await page.getByText("This device").waitFor();
  await page.screenshot({ path: `${SHOTS}/devices-1280.png`, fullPage: true });

  // 2. The session cookie is HttpOnly: page scripts never see it.
  const visible = await page.evaluate(() => document.cookie);
  expect(!visible.includes("tessera"), `document.cookie without the session, got "${visible}"`);
  const jar = await first.cookies();
  expect(jar.some((c) => c.name === "__Host-tessera" && c.httpOnly && c.secure), "an HttpOnly Secure __Host- cookie");

  // 3. Two browsers of one user (password only: a TOTP code is good once); the first ends the
  // second, which is signed out on its next action.
  const mine = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const second = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const own = await mine.newPage();
  await signIn(own, PLAIN_USER, PLAIN_PASSWORD);
  const other = await second.newPage();
  await signIn(other, PLAIN_USER, PLAIN_PASSWORD);
  await own.reload();
  await own.getByRole("heading", { name: "Your devices" }).waitFor();
  const items = own.locator("#device-list li");
  expect((await items.count()) === 2, `two devices listed, got ${await items.count()}`);
  await own.locator("#device-list li", { hasNotText: "This device" }).getByRole("button", { name: /Sign out/ }).click();
  await own.getByText("Signed out that device.").waitFor();
  await other.getByRole("button", { name: "Sign out everywhere else" }).click();
  await other.getByRole("heading", { name: "Sign in" }).waitFor();
  await other.screenshot({ path: `${SHOTS}/signed-out-1280.png`, fullPage: true });

  // 4. The demo payment: the RFC 9470 challenge opens the step-up dialog; confirming it binds a
  // single-use grant to exactly this payment, and the payment is retried.
  await own.getByRole("button", { name: "Pay" }).click();
  const dialog = own.getByRole("dialog", { name: "Confirm it's you" });
  await dialog.waitFor();
  await own.screenshot({ path: `${SHOTS}/step-up-1280.png`, fullPage: true });
  await dialog.getByLabel("Password").fill(PLAIN_PASSWORD);
  await dialog.getByRole("button", { name: "Confirm" }).click();
  await own.getByText("Paid 120.00 EUR to ACME").waitFor();
  // The grant was single-use: the same payment again asks again.
  await own.getByRole("button", { name: "Pay" }).click();
  await dialog.waitFor();
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await own.getByText("Payment cancelled.").waitFor();

  // 5. A cross-origin form post is refused (no Origin of ours, no CSRF token).
  // (In the signed-in browser itself: SameSite=Lax keeps the cookie off, and the origin is
  // not ours either.)
  const evil = await first.newPage();
  await evil.setContent(`<form method="post" action="${BASE}/v1/logout"><button>go</button></form>`);
  const [refused] = await Promise.all([
    evil.waitForResponse((r) => r.url().endsWith("/v1/logout")),
    evil.click("button"),
  ]);
  expect(refused.status() === 403 || refused.status() === 401, `cross-origin post refused, got ${refused.status()}`);
  // …and the first browser is still signed in.
  await page.reload();
  await page.getByText("This device").waitFor();

  // 5b. Too many wrong passwords: the page says so, with the wait.
  const guesser = await (await browser.newContext()).newPage();
  await guesser.goto(`${BASE}/account`);
  let limited = false;
  for (let i = 0; i < 30 && !limited; i++) {
    await guesser.locator("#signin").getByLabel("Username").fill("mallory");
    await guesser.locator("#signin").getByLabel("Password").fill(`wrong-${i}`);
    await guesser.getByRole("button", { name: "Sign in" }).click();
    await guesser.locator("#message:not(:empty)").waitFor();
    limited = (await guesser.locator("#message").textContent()).startsWith("Too many attempts");
    if (!limited) await guesser.evaluate(() => { document.getElementById("message").textContent = ""; });
  }
  expect(limited, "a rate-limit message after repeated wrong passwords");

  // 6. The page at 375 px: nothing wider than the screen.
  await page.setViewportSize({ width: 375, height: 740 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(width <= 375, `no horizontal scrolling at 375 px, page is ${width} px wide`);
  await page.screenshot({ path: `${SHOTS}/devices-375.png`, fullPage: true });

  // 7. Keyboard only: Tab reaches the buttons, and focus is visible.
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.tagName);
  expect(focused === "BUTTON", `Tab reaches a button, got ${focused}`);
  console.log("account page: all browser checks passed");
} finally {
  await browser.close();
}
