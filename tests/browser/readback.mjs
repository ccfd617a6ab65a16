// The read-back claim ceremony in a real browser (issue 14, proposal (b)):
// the agent (this script, over HTTP) registers and starts a read-back claim;
// the user opens the verification_uri, signs in by the mailed code, lands on
// /claim, presses Confirm and reads the 6-digit code off the page; the agent
// completes with it and its new assertion exchanges for a working token. A
// reload shows no fresh code. Another run rejects. Screenshots of each page
// go to AUTHMD_SCREENSHOT_DIR. Run by run_browser.py (ctest browser/readback).
import { URL_BASE, check, equal, loginCode, mailCount, mailTo, run, scenario, screenshot } from "./lib.mjs";

const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";

// ---- the agent's side, plain HTTP ----

async function json(path, body) {
  const r = await fetch(`${URL_BASE}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

async function exchange(assertion) {
  const r = await fetch(`${URL_BASE}/oauth2/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: JWT_BEARER, assertion }).toString(),
  });
  return { status: r.status, body: await r.json() };
}

async function api(method, accessToken) {
  const r = await fetch(`${URL_BASE}/api/resource`, {
    method,
    headers: { Authorization: `Bearer ${accessToken}`, "Content-Type": "application/json" },
    body: method === "POST" ? "{}" : undefined,
  });
  return r.status;
}

// An anonymous agent that started a read-back claim for email: its
// registration, pre-claim token and the start's answer.
async function agentStartsReadback(email) {
  const reg = await json("/agent/identity", { type: "anonymous" });
  equal(reg.status, 200, "anonymous registration");
  const pre = await exchange(reg.body.identity_assertion);
  equal(pre.status, 200, "the pre-claim exchange");
  const claim = await json("/agent/identity/claim", {
    type: "login_hint",
    claim_token: reg.body.claim_token,
    login_hint: email,
  });
  equal(claim.status, 200, "the read-back start");
  equal(claim.body.status, "initiated", "the start's status");
  check(!JSON.stringify(claim.body).includes("user_code"), "no code goes to the agent");
  const early = await json("/agent/identity/claim/complete", {
    claim_token: reg.body.claim_token,
    user_code: "000000",
  });
  equal(early.body.error, "claim_not_confirmed", "completing before the user confirmed");
  return { reg: reg.body, pre: pre.body.access_token, start: claim.body };
}

// ---- the user's side, in the browser ----

async function userOpens(page, start, email, shotPrefix) {
  await page.goto(start.claim.attempt.verification_uri);
  await page.waitForSelector("#email");
  await screenshot(page, `${shotPrefix}-login`);
  await page.fill("#email", email);
  const before = mailCount();
  await page.click("button[type=submit]");
  await page.waitForSelector("#code");
  await screenshot(page, `${shotPrefix}-login-code`);
  const mail = await mailTo(email, before);
  await page.fill("#code", loginCode(mail));
  await page.click("button[type=submit]");
  await page.waitForURL((u) => u.pathname === "/claim");
}

scenario("an anonymous agent claimed by the code its user reads back", async (page) => {
  const { reg, pre, start } = await agentStartsReadback("hana@example.test");
  await userOpens(page, start, "hana@example.test", "readback");
  equal(await page.textContent("h1"), "Link an AI agent to your account", "the claim page");
  const main = await page.textContent("main");
  check(main.includes("hana@example.test"), "it names the account");
  check(main.includes("api.read api.write"), "it names the scopes");
  check(!/\b\d{3} \d{3}\b/.test(main), "no code before confirming");
  equal(await page.getAttribute("form:has(button:has-text('Confirm'))", "action"), "/claim/confirm",
        "the confirm form's action");
  await screenshot(page, "readback-claim-page");
  await page.click("button:has-text('Confirm')");
  await page.waitForSelector("#user-code");
  equal(await page.textContent("h1"), "Read this code to your agent", "the code page");
  const shown = (await page.textContent("#user-code")).trim();
  check(/^\d{3} \d{3}$/.test(shown), `a 6-digit code is shown: ${shown}`);
  await screenshot(page, "readback-code-shown");
  // a reload of the claim page shows no fresh code
  const claimPage = URL_BASE + new URL(start.claim.attempt.verification_uri).searchParams.get("return_to");
  await page.goto(claimPage);
  check((await page.textContent("main")).includes("You confirmed this already"), "the reload says so");
  check((await page.$("#user-code")) === null, "and shows no code");
  await screenshot(page, "readback-reloaded");
  // the agent completes with what the user read out
  const done = await json("/agent/identity/claim/complete", {
    claim_token: reg.claim_token,
    user_code: shown,
  });
  equal(done.status, 200, "the completion");
  equal(done.body.status, "claimed", "claimed");
  check(done.body.identity && done.body.identity.assertion, "an identity assertion");
  const t = await exchange(done.body.identity.assertion);
  equal(t.status, 200, "the new assertion exchanges");
  equal(t.body.scope, "api.read api.write", "post-claim scopes");
  equal(await api("POST", t.body.access_token), 200, "the new token writes");
  equal(await api("GET", pre), 401, "the pre-claim token was revoked");
  await page.goto(claimPage);
  await page.waitForSelector("h1");
  check((await page.textContent("main")).includes("completed already"), "the spent link says so");
  await screenshot(page, "readback-spent");
});

scenario("this wasn't me: the read-back agent is told access_denied", async (page) => {
  const { reg, start } = await agentStartsReadback("ivo@example.test");
  await userOpens(page, start, "ivo@example.test", "readback-reject");
  await page.click("text=This wasn't me");
  await page.waitForSelector("h1");
  equal(await page.textContent("h1"), "Request rejected", "the page after rejecting");
  await screenshot(page, "readback-rejected");
  const r = await json("/agent/identity/claim/complete", {
    claim_token: reg.claim_token,
    user_code: "123456",
  });
  equal(r.status, 403, "the completion after the rejection");
  equal(r.body.error, "access_denied", "access_denied");
});

await run();
