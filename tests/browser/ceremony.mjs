// The v0.4-v0.6 claim ceremony in a real browser (issue 14): the agent (this
// script, over HTTP) registers, starts a claim and polls the claim grant;
// the user opens the verification_uri, signs in by the mailed code, lands on
// /claim, types the user_code and confirms (or rejects), and the agent's
// poll ends with a working access token on /api/resource (or
// access_denied). Screenshots of each page go to AUTHMD_SCREENSHOT_DIR. Run
// by run_browser.py (ctest browser/ceremony).
import { URL_BASE, check, equal, loginCode, mailCount, mailTo, run, scenario, screenshot } from "./lib.mjs";

const CLAIM_GRANT = "urn:workos:agent-auth:grant-type:claim";
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

async function token(fields) {
  const r = await fetch(`${URL_BASE}/oauth2/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
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

// An anonymous v0.6 agent that started a claim for email: its
// registration, pre-claim access token and the claim_attempt block.
async function agentStartsClaim(email) {
  const reg = await json("/agent/identity", { type: "anonymous" });
  equal(reg.status, 200, "anonymous registration");
  const pre = await token({ grant_type: JWT_BEARER, assertion: reg.body.identity_assertion });
  equal(pre.status, 200, "the pre-claim exchange");
  const claim = await json("/agent/identity/claim", { claim_token: reg.body.claim_token, email });
  equal(claim.status, 200, "the claim start");
  const pending = await token({ grant_type: CLAIM_GRANT, claim_token: reg.body.claim_token });
  equal(pending.body.error, "authorization_pending", "the first poll");
  return { reg: reg.body, pre: pre.body.access_token, block: claim.body.claim_attempt };
}

// ---- the user's side, in the browser ----

// Opens the verification URL as the agent printed it, signs in by the
// mailed code and lands on the claim page.
async function userOpens(page, block, email, shotPrefix) {
  await page.goto(block.verification_uri);
  await page.waitForSelector("#email");
  await screenshot(page, `${shotPrefix}-login`);
  await page.fill("#email", email);
  const before = mailCount();
  await page.click("button[type=submit]");
  await page.waitForSelector("#code");
  const mail = await mailTo(email, before);
  await page.fill("#code", loginCode(mail));
  await page.click("button[type=submit]");
  await page.waitForURL((u) => u.pathname === "/claim");
}

scenario("an anonymous agent claimed by its user, the agent polling to a token", async (page) => {
  const { reg, pre, block } = await agentStartsClaim("dana@example.test");
  await userOpens(page, block, "dana@example.test", "ceremony");
  equal(await page.textContent("h1"), "Link an AI agent to your account", "the claim page");
  check((await page.textContent("main")).includes("dana@example.test"), "it names the account");
  check((await page.textContent("main")).includes("api.read api.write"), "it names the scopes");
  await screenshot(page, "ceremony-claim-page");
  // both ceremonies' page forms post to /claim/confirm; /agent/identity/claim/complete
  // is the read-back agent's JSON endpoint
  equal(await page.getAttribute("form:has(input[name=user_code])", "action"), "/claim/confirm",
        "the code form's action");
  // typed as a person might, in lower case
  await page.fill("input[name=user_code]", block.user_code.toLowerCase());
  await screenshot(page, "ceremony-code-typed");
  await page.click("button:has-text('Confirm')");
  await page.waitForSelector("h1");
  equal(await page.textContent("h1"), "Agent linked", "the page after confirming");
  await screenshot(page, "ceremony-linked");
  const done = await token({ grant_type: CLAIM_GRANT, claim_token: reg.claim_token });
  equal(done.status, 200, "the poll after completion");
  equal(done.body.scope, "api.read api.write", "post-claim scopes");
  check(done.body.identity_assertion, "a v2 identity assertion");
  equal(await api("POST", done.body.access_token), 200, "the new token writes");
  equal(await api("GET", pre), 401, "the pre-claim token was revoked");
});

scenario("a service_auth agent: a wrong code first, then the right one", async (page) => {
  const reg = await json("/agent/identity", { type: "service_auth", login_hint: "eli@example.test" });
  equal(reg.status, 200, "service_auth registration");
  await userOpens(page, reg.body.claim, "eli@example.test", "service-auth");
  const code = reg.body.claim.user_code;
  await page.fill("input[name=user_code]", (code[0] === "B" ? "C" : "B") + code.slice(1));
  await page.click("button:has-text('Confirm')");
  await page.waitForSelector(".error");
  check((await page.textContent(".error")).includes("4 tries left"), "the error counts the tries");
  await screenshot(page, "service-auth-wrong-code");
  await page.fill("input[name=user_code]", code);
  await page.click("button:has-text('Confirm')");
  await page.waitForSelector("h1:has-text('Agent linked')");
  const done = await token({ grant_type: CLAIM_GRANT, claim_token: reg.body.claim_token });
  equal(done.status, 200, "the poll after completion");
  equal(await api("GET", done.body.access_token), 200, "the first token works");
});

scenario("this wasn't me: the agent is told access_denied", async (page) => {
  const { reg, block } = await agentStartsClaim("fay@example.test");
  await userOpens(page, block, "fay@example.test", "reject");
  await page.click("text=This wasn't me");
  await page.waitForSelector("h1");
  equal(await page.textContent("h1"), "Request rejected", "the page after rejecting");
  await screenshot(page, "reject-done");
  const r = await token({ grant_type: CLAIM_GRANT, claim_token: reg.claim_token });
  equal(r.body.error, "access_denied", "the poll after the rejection");
});

scenario("signed in as another account: no form", async (page) => {
  const { reg, block } = await agentStartsClaim("gus@example.test");
  await userOpens(page, block, "mallory@example.test", "wrong-account");
  equal(await page.textContent("h1"), "Signed in with another account", "the refusal page");
  check((await page.$("input[name=user_code]")) === null, "no code form");
  await screenshot(page, "wrong-account");
  const r = await token({ grant_type: CLAIM_GRANT, claim_token: reg.claim_token });
  // still waiting (slow_down too when this poll came within the interval)
  check(["authorization_pending", "slow_down"].includes(r.body.error), `the poll: ${r.body.error}`);
});

await run();
