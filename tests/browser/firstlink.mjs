// v0.5's first link at v0.6's /agent/identity in a real browser (issue 14):
// an ID-JAG whose verified email is an existing account's gets 401
// interaction_required with a user_code; the account's owner opens the
// verification_uri, signs in with the mailed login code, sees the page that
// asks to link the provider's identity, types the agent's code; the agent's
// poll of the claim grant then gets its token, and a later ID-JAG of the
// subject is answered at once. Screenshots go to AUTHMD_SCREENSHOT_DIR. Run by
// run_browser.py (ctest browser/firstlink), which starts the test provider.
import { URL_BASE, check, equal, newPage, run, scenario, screenshot, signInByCode } from "./lib.mjs";
import { loginCode, mailCount, mailTo } from "./lib.mjs";

const PROVIDER = process.env.AUTHMD_PROVIDER;
const CLAIM_GRANT = "urn:workos:agent-auth:grant-type:claim";
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ID_JAG_URN = "urn:ietf:params:oauth:token-type:id-jag";

// ---- the agent's side, plain HTTP ----

async function post(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, body: await r.json() };
}

async function token(fields) {
  const r = await fetch(`${URL_BASE}/oauth2/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: r.status, body: await r.json() };
}

// An ID-JAG for sub with a verified email, signed by the test provider.
async function idJag(sub, email) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: PROVIDER, sub, aud: URL_BASE, client_id: PROVIDER,
    jti: `${sub}-${now}-${Math.random().toString(16).slice(2)}`,
    iat: now, exp: now + 300, auth_time: now - 5, email, email_verified: true,
  };
  const r = await post(`${PROVIDER}/sign`, { key: "es", typ: "oauth-id-jag+jwt", claims });
  equal(r.status, 200, "the provider signs");
  return r.body.token;
}

async function identity(sub, email) {
  return post(`${URL_BASE}/agent/identity`, {
    type: "identity_assertion", assertion_type: ID_JAG_URN, assertion: await idJag(sub, email),
  });
}

// An account at the service: its owner signed in once (its own profile).
async function accountExists(browser, email) {
  const p = await newPage(browser);
  await signInByCode(p, email);
  await p.context().close();
}

// The owner opens the verification URL the agent printed and signs in by the
// mailed code; the browser lands on /claim.
async function ownerOpens(page, block, email, shot) {
  await page.goto(block.verification_uri);
  await page.waitForSelector("#email");
  await page.fill("#email", email);
  const before = mailCount();
  await page.click("button[type=submit]");
  await page.waitForSelector("#code");
  const mail = await mailTo(email, before);
  await screenshot(page, `${shot}-login-code`);
  await page.fill("#code", loginCode(mail));
  await page.click("button[type=submit]");
  await page.waitForURL((u) => u.pathname === "/claim");
}

scenario("the owner links a provider's identity; the agent polls to its token", async (page, browser) => {
  await accountExists(browser, "hana@example.test");
  const r = await identity("hana-at-provider", "hana@example.test");
  equal(r.status, 401, "the first ID-JAG");
  equal(r.body.error, "interaction_required", "the step-up");
  check(r.headers.get("www-authenticate").startsWith("AgentAuth"), "WWW-Authenticate: AgentAuth");
  const block = r.body.claim;
  check(block && block.user_code && block.verification_uri, "a claim block");
  const pending = await token({ grant_type: CLAIM_GRANT, claim_token: r.body.claim_token });
  equal(pending.body.error, "authorization_pending", "the first poll");
  await ownerOpens(page, block, "hana@example.test", "link");
  equal(await page.textContent("h1"), "Link an AI agent to your account", "the claim page");
  const text = await page.textContent("main");
  check(text.includes("is asking to link one of its users"), "it says this is a link");
  check(text.includes("test"), "it names the provider (the trust list's name)");
  check(text.includes("hana@example.test"), "it names the account");
  check(text.includes("hana-at-provider"), "it names the provider's user");
  await screenshot(page, "link-page");
  await page.fill("input[name=user_code]", block.user_code.toLowerCase().replace("-", ""));
  await screenshot(page, "link-code-typed");
  await page.click("button:has-text('Confirm')");
  await page.waitForSelector("h1:has-text('Agent linked')");
  await screenshot(page, "link-done");
  const done = await token({ grant_type: CLAIM_GRANT, claim_token: r.body.claim_token });
  equal(done.status, 200, "the poll after the owner confirmed");
  equal(done.body.scope, "api.read api.write", "the provider's scopes");
  const api = await fetch(`${URL_BASE}/api/resource`, {
    headers: { Authorization: `Bearer ${done.body.access_token}` },
  });
  equal(api.status, 200, "the token works");
  equal((await api.json()).email, "hana@example.test", "for the owner's account");
  // linked now: the next ID-JAG of the subject is answered at once
  const again = await identity("hana-at-provider", "hana@example.test");
  equal(again.status, 200, "a later ID-JAG");
  check(again.body.identity_assertion, "with its assertion");
  const ex = await token({ grant_type: JWT_BEARER, assertion: again.body.identity_assertion });
  equal(ex.status, 200, "which exchanges");
});

scenario("signed in as another account: the link page refuses", async (page, browser) => {
  await accountExists(browser, "ivan@example.test");
  const r = await identity("ivan-at-provider", "ivan@example.test");
  equal(r.status, 401, "the first ID-JAG");
  await ownerOpens(page, r.body.claim, "mallory@example.test", "wrong-account");
  equal(await page.textContent("h1"), "Signed in with another account", "the refusal page");
  check((await page.$("input[name=user_code]")) === null, "no code form");
  await screenshot(page, "link-wrong-account");
  const poll = await token({ grant_type: CLAIM_GRANT, claim_token: r.body.claim_token });
  check(["authorization_pending", "slow_down"].includes(poll.body.error), `the poll: ${poll.body.error}`);
});

await run();
