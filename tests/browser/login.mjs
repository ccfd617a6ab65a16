// Sign-in at the service in a real browser (issue 14): by the mailed code,
// by the mailed link, a wrong code, logout, CSRF refusal, open-redirect
// refusal, and the v0.1 claim page's "this wasn't me". Screenshots of each
// page go to AUTHMD_SCREENSHOT_DIR. Run by run_browser.py (ctest
// browser/login).
import {
  URL_BASE,
  askCode,
  check,
  equal,
  loginCode,
  loginLink,
  mailCount,
  mailTo,
  newPage,
  run,
  scenario,
  screenshot,
  signInByCode,
  signedInAs,
} from "./lib.mjs";

async function sessionCookie(page) {
  const all = await page.context().cookies(URL_BASE);
  return all.find((c) => c.name.endsWith("authmd_session")) || null;
}

scenario("sign in by the code read from the mail", async (page) => {
  await page.goto(`${URL_BASE}/login?return_to=${encodeURIComponent("/login?from=test")}`);
  await screenshot(page, "login-form");
  await page.fill("#email", "Ann@Example.test");
  const before = mailCount();
  await page.click("button[type=submit]");
  await page.waitForSelector("#code");
  await screenshot(page, "login-check-email");
  const mail = await mailTo("ann@example.test", before);
  await page.fill("#code", loginCode(mail));
  await page.click("button[type=submit]");
  await page.waitForURL(`${URL_BASE}/login?from=test`);
  await screenshot(page, "login-signed-in");
  equal(await page.textContent("h1"), "You are signed in", "the page after sign-in");
  const c = await sessionCookie(page);
  check(c, "a session cookie");
  check(c.httpOnly, "the session cookie is HttpOnly");
  equal(c.sameSite, "Lax", "its SameSite");
  equal(c.path, "/", "its Path");
  equal(await signedInAs(page), "ann@example.test", "signed in as");
});

scenario("sign in by the mail link on another device", async (page, browser) => {
  const mail = await askCode(page, "bea@example.test", "/login");
  const phone = await newPage(browser, { viewport: { width: 360, height: 740 } });
  try {
    await phone.goto(loginLink(mail));
    await screenshot(phone, "login-link-confirm");
    // Opening the link signed nobody in: it asks first.
    check((await sessionCookie(phone)) === null, "no session before the button");
    check((await phone.textContent("main")).includes("bea@example.test"), "the page names the address");
    await phone.click("button[type=submit]");
    await phone.waitForURL(`${URL_BASE}/login`);
    equal(await signedInAs(phone), "bea@example.test", "the phone is signed in");
    await screenshot(phone, "login-link-signed-in");
    // The link works once.
    await phone.goto(loginLink(mail));
    equal(await phone.textContent("h1"), "This link cannot be used", "a used link");
    await screenshot(phone, "login-link-used");
  } finally {
    await phone.context().close();
  }
});

scenario("a wrong code is refused and counted", async (page) => {
  const mail = await askCode(page, "cy@example.test");
  const code = loginCode(mail);
  const wrong = String((Number(code) + 1) % 1000000).padStart(6, "0");
  await page.fill("#code", wrong);
  await page.click("button[type=submit]");
  await page.waitForSelector(".error");
  const msg = await page.textContent(".error");
  check(msg.includes("does not match") && msg.includes("4 tries left"), `the error says so: ${msg}`);
  await screenshot(page, "login-wrong-code");
  check((await sessionCookie(page)) === null, "no session after a wrong code");
  // The right code still works on the form shown again.
  await page.fill("#code", code);
  await page.click("button[type=submit]");
  await page.waitForURL(`${URL_BASE}/login`);
  equal(await signedInAs(page), "cy@example.test", "signed in after the right code");
});

scenario("logout ends the session", async (page) => {
  await signInByCode(page, "dee@example.test", "/login");
  await page.goto(`${URL_BASE}/login`);
  await page.click("text=Sign out");
  await page.waitForSelector("#email");
  await screenshot(page, "logout-done");
  check((await sessionCookie(page)) === null, "the cookie is gone");
  equal(await signedInAs(page), null, "signed out");
});

scenario("CSRF: a form without or with a wrong token is refused", async (page) => {
  await page.goto(`${URL_BASE}/login`);
  await page.fill("#email", "eli@example.test");
  await page.$eval("input[name=csrf]", (el) => el.remove());
  await page.click("button[type=submit]");
  await page.waitForSelector("h1");
  equal(await page.textContent("h1"), "Request refused", "no token");
  check((await page.content()).includes("csrf_refused"), "the error code is shown");
  await screenshot(page, "csrf-missing-token");

  await page.goto(`${URL_BASE}/login`);
  await page.fill("#email", "eli@example.test");
  await page.$eval("input[name=csrf]", (el) => {
    el.value = "0".repeat(64);
  });
  await page.click("button[type=submit]");
  await page.waitForSelector("h1");
  equal(await page.textContent("h1"), "Request refused", "a wrong token");
  await screenshot(page, "csrf-wrong-token");

  // A signed-in user's logout form, posted with another token.
  await signInByCode(page, "eli@example.test", "/login");
  await page.$eval("input[name=csrf]", (el) => {
    el.value = "f".repeat(64);
  });
  await page.click("text=Sign out");
  await page.waitForSelector("h1");
  equal(await page.textContent("h1"), "Request refused", "logout with a wrong token");
  equal(await signedInAs(page), "eli@example.test", "still signed in");
});

scenario("CSRF: a form on another site is refused", async (page) => {
  await signInByCode(page, "fin@example.test", "/login");
  // A page of another origin (about:blank here) posting to the service.
  await page.goto("about:blank");
  await page.setContent(
    `<form method="post" action="${URL_BASE}/logout"><input name="csrf" value="${"a".repeat(64)}">` +
      `<button type="submit">win a prize</button></form>`,
  );
  await page.click("button");
  await page.waitForURL(`${URL_BASE}/logout`);
  equal(await page.textContent("h1"), "Request refused", "the cross-site post");
  await screenshot(page, "csrf-cross-site");
  equal(await signedInAs(page), "fin@example.test", "still signed in");
});

scenario("open redirects are refused", async (page) => {
  for (const bad of ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"]) {
    const r = await page.goto(`${URL_BASE}/login?return_to=${encodeURIComponent(bad)}`);
    equal(r.status(), 400, `return_to=${bad}`);
    check((await page.$("#email")) === null, "no sign-in form for it");
  }
  await screenshot(page, "open-redirect-refused");
});

scenario("the v0.1 claim page offers 'this wasn't me'", async (page) => {
  const before = mailCount();
  const r = await fetch(`${URL_BASE}/agent/auth`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      type: "identity_assertion",
      assertion_type: "verified_email",
      assertion: "gil@example.test",
      requested_credential_type: "api_key",
    }),
  });
  equal(r.status, 200, "the agent registers");
  const mail = await mailTo("gil@example.test", before);
  const m = /(http:\/\/\S+\/agent\/auth\/claim\/view\?token=[A-Za-z0-9_]+)/.exec(mail);
  check(m, "the claim mail has a link");
  await page.goto(m[1]);
  await screenshot(page, "claim-view");
  await page.click("text=This wasn't me");
  await page.waitForSelector("h1");
  equal(await page.textContent("h1"), "Request rejected", "the rejection page");
  await screenshot(page, "claim-rejected");
  await page.goto(m[1]);
  equal(await page.textContent("h1"), "This link cannot be used", "the link after rejection");
});

await run();
