// Helpers for the headless-Chromium tests of authmd-server's pages. A
// scenario file imports these, calls scenario() for each case and run() at
// the end; run_browser.py starts the real server and sets the environment:
//   AUTHMD_URL             the server's public URL (http://127.0.0.1:PORT)
//   AUTHMD_OUTBOX          its mail outbox folder (one .eml file per mail)
//   AUTHMD_SCREENSHOT_DIR  where each page's screenshot goes
//   AUTHMD_CHROMIUM        the browser (default /usr/bin/chromium)
// Nothing leaves 127.0.0.1: the browser resolves no other host.
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

export const URL_BASE = process.env.AUTHMD_URL;
const OUTBOX = process.env.AUTHMD_OUTBOX;
const SHOTS = process.env.AUTHMD_SCREENSHOT_DIR || "screenshots";
const CHROMIUM = process.env.AUTHMD_CHROMIUM || "/usr/bin/chromium";

export class Failure extends Error {}

export function check(cond, what) {
  if (!cond) throw new Failure(what);
}

export function equal(got, want, what) {
  if (got !== want) throw new Failure(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

// Chromium's own sandbox needs user namespaces, which root does not get:
// as root (CI, containers) it runs with --no-sandbox, otherwise sandboxed.
export async function launch() {
  const args = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
  ];
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  return chromium.launch({ executablePath: CHROMIUM, headless: true, chromiumSandbox: !root, args });
}

// A fresh browser profile (its own cookies), phone-sized so that the
// screenshots show the layout a phone gets.
export async function newPage(browser, opts = {}) {
  const context = await browser.newContext({
    viewport: { width: 390, height: 780 },
    deviceScaleFactor: 1,
    ...opts,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const problems = [];
  // A CSP violation or a script error on our pages is a bug.
  page.on("console", (m) => {
    // A 4xx page is what some scenarios ask for; the rest is a finding.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource: the server responded"))
      problems.push(m.text());
  });
  page.on("pageerror", (err) => problems.push(String(err)));
  page.problems = problems;
  return page;
}

let shotNo = 0;
export async function screenshot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  shotNo += 1;
  const file = path.join(SHOTS, `${String(shotNo).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// ---- mail ----

function mails() {
  if (!fs.existsSync(OUTBOX)) return [];
  return fs
    .readdirSync(OUTBOX)
    .filter((f) => f.endsWith(".eml"))
    .sort()
    .map((f) => fs.readFileSync(path.join(OUTBOX, f), "utf8"));
}

// The newest mail to address that arrived after `after` mails in all,
// waiting for the mail worker (a few seconds at most).
export async function mailTo(address, after) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const all = mails();
    const found = all.slice(after).filter((m) => m.includes(`\nTo: <${address.toLowerCase()}>`));
    if (found.length > 0) return found[found.length - 1];
    if (Date.now() > deadline) throw new Failure(`no mail to ${address}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function mailCount() {
  return mails().length;
}

export function loginCode(mail) {
  const m = /Your code: (\d{6})/.exec(mail);
  check(m, "the sign-in mail has a code");
  return m[1];
}

export function loginLink(mail) {
  const m = /(http:\/\/\S+\/login\/verify\?token=[A-Za-z0-9_]+)/.exec(mail);
  check(m, "the sign-in mail has a link");
  return m[1];
}

// ---- sign-in ----

// Fills the email form at /login (optionally with return_to) and sends it:
// the page then asks for the code.
export async function askCode(page, email, returnTo) {
  const q = returnTo ? `?return_to=${encodeURIComponent(returnTo)}` : "";
  await page.goto(`${URL_BASE}/login${q}`);
  await page.fill("#email", email);
  const before = mailCount();
  await Promise.all([page.waitForURL(`${URL_BASE}/login`), page.click("button[type=submit]")]);
  return mailTo(email, before);
}

// The whole sign-in by the code read from the mail; resolves when the
// browser has followed the redirect.
export async function signInByCode(page, email, returnTo) {
  const mail = await askCode(page, email, returnTo);
  await page.fill("#code", loginCode(mail));
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  return mail;
}

// The address the browser is signed in as (from /login), or null.
export async function signedInAs(page) {
  await page.goto(`${URL_BASE}/login`);
  const el = await page.$("main strong");
  const h1 = await page.textContent("h1");
  return h1 === "You are signed in" && el ? (await el.textContent()).trim() : null;
}

// ---- running ----

const scenarios = [];
export function scenario(name, fn) {
  scenarios.push({ name, fn });
}

// Runs every scenario in its own browser profile; exits non-zero when one
// fails or a page logged an error (a CSP refusal shows up as one).
export async function run() {
  check(URL_BASE && OUTBOX, "AUTHMD_URL and AUTHMD_OUTBOX must be set (run_browser.py does)");
  const browser = await launch();
  let failed = 0;
  try {
    for (const s of scenarios) {
      const page = await newPage(browser);
      try {
        await s.fn(page, browser);
        check(page.problems.length === 0, `page errors: ${page.problems.join(" | ")}`);
        console.log(`ok - ${s.name}`);
      } catch (err) {
        failed += 1;
        console.log(`FAIL - ${s.name}: ${err.stack || err}`);
        await screenshot(page, `FAILED-${s.name.replace(/\W+/g, "_")}`).catch(() => {});
      } finally {
        await page.context().close();
      }
    }
  } finally {
    await browser.close();
  }
  console.log(`${scenarios.length - failed}/${scenarios.length} scenarios passed`);
  process.exit(failed === 0 ? 0 : 1);
}
