"""User sign-in at the service (issue 14) at the HTTP level: the cookie
attributes, CSRF refusal on every page POST, attempt and rate limits, code
and session expiry, open-redirect refusal, the link's confirmation step,
logout, the sweeper, and the claim page's reject action. The same pages in
a real browser: tests/browser/."""
import time
import unittest
import urllib.parse

from harness import Server, ServerTest, claim_link
from webclient import WebClient, csrf_of, hidden, login_code, login_link

FORM = "application/x-www-form-urlencoded"


def cookie_attrs(line):
    name, _, rest = line.partition("=")
    parts = [p.strip() for p in rest.split(";")]
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.lower()] = v
    return name, parts[0], attrs


class SignInTest(ServerTest):
    def test_sign_in_by_code_sets_a_server_side_session_cookie(self):
        b = WebClient(self.server)
        r = b.sign_in("Ann@Example.test", return_to="/account?tab=keys")
        self.assertEqual(r.header("Location"), "/account?tab=keys")
        line = [l for l in b.set_cookie_lines if l.startswith("authmd_session=")][-1]
        name, value, attrs = cookie_attrs(line)
        self.assertTrue(value.startswith("ses_"))
        self.assertIn("httponly", attrs)
        self.assertEqual(attrs["samesite"], "Lax")
        self.assertEqual(attrs["path"], "/")
        self.assertEqual(attrs["max-age"], "86400")
        self.assertNotIn("secure", attrs)  # public_url is http here
        self.assertNotIn("domain", attrs)
        self.assertEqual(b.signed_in_as(), "ann@example.test")
        # Only the hash is stored; the user was created with the address.
        rows = self.server.db_query("SELECT hash, user_id, email, auth_time, expires_at "
                                    "FROM web_sessions")
        self.assertEqual(len(rows), 1)
        self.assertNotIn(value, str(rows[0][0]))
        self.assertNotIn(value[4:].encode().hex(), str(rows[0][0]))
        users = self.server.db_query("SELECT id FROM users WHERE email = ?",
                                     ("ann@example.test",))
        self.assertEqual(users[0][0], rows[0][1])
        self.assertGreater(rows[0][3], 0)
        events = [e for e in self.server.audit_events() if e["event"] == "user.signed_in"]
        self.assertEqual(events[-1]["method"], "code")
        self.assertTrue(events[-1]["user_created"])

    def test_the_pre_session_cookie_has_the_same_attributes(self):
        r = self.server.get("/login")
        self.assertEqual(r.status, 200)
        name, value, attrs = cookie_attrs(r.header("Set-Cookie"))
        self.assertEqual(name, "authmd_pre")
        self.assertIn("httponly", attrs)
        self.assertEqual(attrs["samesite"], "Lax")
        self.assertEqual(attrs["path"], "/")

    def test_pages_carry_the_security_headers(self):
        r = self.server.get("/login")
        csp = r.header("Content-Security-Policy")
        for part in ("default-src 'none'", "style-src 'self'", "form-action 'self'",
                     "frame-ancestors 'none'"):
            self.assertIn(part, csp)
        self.assertNotIn("unsafe-inline", csp)
        self.assertNotIn("script-src", csp)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertEqual(r.header("Referrer-Policy"), "no-referrer")
        self.assertIn(b'name="viewport"', r.body)
        self.assertIn(b'href="/static/authmd.css"', r.body)
        css = self.server.get("/static/authmd.css")
        self.assertEqual(css.status, 200)
        self.assertTrue(css.header("Content-Type").startswith("text/css"))

    def test_an_existing_user_is_signed_in_as_that_user(self):
        WebClient(self.server).sign_in("bob@example.test")
        WebClient(self.server).sign_in("BOB@example.test")
        self.assertEqual(len(self.server.db_query(
            "SELECT id FROM users WHERE email = 'bob@example.test'")), 1)
        ids = {r[0] for r in self.server.db_query("SELECT user_id FROM web_sessions")}
        self.assertEqual(len(ids), 1)

    def test_the_link_asks_for_confirmation_before_signing_in(self):
        b = WebClient(self.server)
        b.ask_code("cat@example.test", return_to="/dash")
        link = login_link(self.server.outbox_messages()[-1])
        parts = urllib.parse.urlsplit(link)
        # A mail scanner (no cookies, GET only) opens the link: nothing happens.
        scan = self.server.get(parts.path + "?" + parts.query)
        self.assertEqual(scan.status, 200)
        self.assertIn(b"cat@example.test", scan.body)
        self.assertEqual(self.server.db_query("SELECT COUNT(*) FROM web_sessions")[0][0], 0)
        # Another browser (the phone's mail app) presses the button.
        phone = WebClient(self.server)
        r = phone.sign_in_by_link(link)
        self.assertEqual(r.status, 303, r)
        self.assertEqual(r.header("Location"), "/dash")
        self.assertEqual(phone.signed_in_as(), "cat@example.test")
        # Once only: the link, and the code of the same mail, are spent.
        again = WebClient(self.server).get(parts.path + "?" + parts.query)
        self.assertEqual(again.status, 410, again)
        self.assertIn(b"otp_expired", again.body)

    def test_wrong_codes_are_counted_and_burn_the_code(self):
        b = WebClient(self.server)
        page = b.ask_code("dan@example.test")
        code = login_code(self.server.outbox_messages()[-1])
        wrong = "%06d" % ((int(code) + 1) % 1000000)
        csrf, attempt = csrf_of(page.body), hidden(page.body, "attempt")
        for left in (4, 3, 2, 1):
            r = b.post_form("/login/verify", {"attempt": attempt, "code": wrong}, csrf=csrf)
            self.assertEqual(r.status, 401, r)
            self.assertIn(("%d tries left" % left).encode(), r.body)
            self.assertIn(b'name="code"', r.body)  # the form again
        r = b.post_form("/login/verify", {"attempt": attempt, "code": wrong}, csrf=csrf)
        self.assertEqual(r.status, 410, r)
        r = b.post_form("/login/verify", {"attempt": attempt, "code": code}, csrf=csrf)
        self.assertEqual(r.status, 410, r)
        self.assertIsNone(b.cookie("authmd_session"))
        self.assertEqual(self.server.db_query(
            "SELECT status, failures FROM login_attempts")[0], ("burned", 5))

    def test_a_code_is_only_accepted_in_the_browser_that_asked(self):
        b = WebClient(self.server)
        page = b.ask_code("eve@example.test")
        code = login_code(self.server.outbox_messages()[-1])
        other = WebClient(self.server)
        other_page = other.get("/login")
        r = other.post_form("/login/verify", {"attempt": hidden(page.body, "attempt"),
                                              "code": code}, csrf=csrf_of(other_page.body))
        self.assertEqual(r.status, 401, r)
        self.assertIsNone(other.cookie("authmd_session"))
        # Not counted against the real user, who still signs in.
        r = b.post_form("/login/verify", {"attempt": hidden(page.body, "attempt"),
                                          "code": code}, csrf=csrf_of(page.body))
        self.assertEqual(r.status, 303, r)

    def test_an_expired_code_and_link_are_refused(self):
        b = WebClient(self.server)
        page = b.ask_code("fay@example.test")
        msg = self.server.outbox_messages()[-1]
        self.server.db_write("UPDATE login_attempts SET expires_at = 1")
        r = b.post_form("/login/verify", {"attempt": hidden(page.body, "attempt"),
                                          "code": login_code(msg)}, csrf=csrf_of(page.body))
        self.assertEqual(r.status, 410, r)
        parts = urllib.parse.urlsplit(login_link(msg))
        self.assertEqual(b.get(parts.path + "?" + parts.query).status, 410)
        self.assertIsNone(b.cookie("authmd_session"))

    def test_a_session_ends_at_its_lifetime_and_when_idle(self):
        b = WebClient(self.server)
        b.sign_in("gus@example.test")
        self.assertEqual(b.signed_in_as(), "gus@example.test")
        self.server.db_write("UPDATE web_sessions SET expires_at = 1")
        self.assertIsNone(b.signed_in_as())
        b2 = WebClient(self.server)
        b2.sign_in("gus@example.test")
        now = int(time.time())
        self.server.db_write("UPDATE web_sessions SET last_seen = ? WHERE expires_at > 1",
                             (now - 3601,))
        self.assertIsNone(b2.signed_in_as())

    def test_logout_ends_the_session_row_and_clears_the_cookie(self):
        b = WebClient(self.server)
        b.sign_in("hal@example.test")
        stolen = b.cookie("authmd_session")
        r = b.logout()
        self.assertEqual(r.status, 303, r)
        self.assertEqual(r.header("Location"), "/login")
        self.assertTrue(any(l.startswith("authmd_session=;") and "Max-Age=0" in l
                            for l in b.set_cookie_lines))
        self.assertIsNone(b.cookie("authmd_session"))
        self.assertEqual(self.server.db_query("SELECT COUNT(*) FROM web_sessions")[0][0], 0)
        # The old cookie value no longer works anywhere.
        r = self.server.get("/login", headers={"Cookie": "authmd_session=" + stolen})
        self.assertNotIn(b"Signed in as", r.body)

    def test_bad_input_is_a_clear_4xx_page(self):
        b = WebClient(self.server)
        page = b.get("/login")
        for email in ("not-an-address", "a@b", "x" * 300 + "@example.test", ""):
            r = b.post_form("/login", {"email": email}, csrf=csrf_of(page.body))
            self.assertEqual(r.status, 400, r)
            self.assertTrue(r.header("Content-Type").startswith("text/html"))
        r = b.post_form("/login/verify", {"attempt": "lgn_x", "code": "12ab56"},
                        csrf=csrf_of(page.body))
        self.assertEqual(r.status, 400, r)
        r = b.post_form("/login/verify", {"attempt": "lgn_nope", "code": "123456"},
                        csrf=csrf_of(page.body))
        self.assertEqual(r.status, 410, r)
        for token in ("", "lnk_", "lnk_<script>", "x" * 400):
            r = b.get("/login/verify?token=" + urllib.parse.quote(token))
            self.assertEqual(r.status, 410, r)
            self.assertNotIn(b"<script>", r.body)


class OpenRedirectTest(ServerTest):
    ATTEMPTS = ["//evil.example/", "https://evil.example/", "/\\evil.example",
                "\\\\evil.example", "javascript:alert(1)", "/%0d%0aSet-Cookie:x=1",
                "http:/evil.example", "evil.example", "/ok\nLocation: //evil", "/a b",
                "//", "/\t/evil.example", "/x:y/z"]

    def test_return_to_accepts_only_same_origin_paths(self):
        b = WebClient(self.server)
        for bad in self.ATTEMPTS:
            r = b.get("/login?" + urllib.parse.urlencode({"return_to": bad}))
            self.assertEqual(r.status, 400, (bad, r))
            self.assertNotIn(b'name="return_to"', r.body)
        page = b.get("/login")
        for bad in self.ATTEMPTS:
            r = b.post_form("/login", {"email": "ivy@example.test", "return_to": bad},
                            csrf=csrf_of(page.body))
            self.assertEqual(r.status, 400, (bad, r))
        self.assertEqual(self.server.db_query("SELECT COUNT(*) FROM login_attempts")[0][0], 0)

    def test_a_good_return_to_survives_the_whole_sign_in(self):
        r = WebClient(self.server).sign_in("jo@example.test", return_to="/claim?user_code=AB-CD")
        self.assertEqual(r.header("Location"), "/claim?user_code=AB-CD")
        r = WebClient(self.server).sign_in("jo@example.test")
        self.assertEqual(r.header("Location"), "/login")


class CsrfTest(ServerTest):
    """Every page POST refuses a missing or wrong token, a cross-site
    browser and a foreign Origin with 403 and a page."""

    def assertRefused(self, r):
        self.assertEqual(r.status, 403, r)
        self.assertTrue(r.header("Content-Type").startswith("text/html"), r)
        self.assertIn(b"csrf_refused", r.body)

    def forms(self):
        """(browser, path, fields, good csrf) for every page form."""
        signed = WebClient(self.server)
        signed.sign_in("kim@example.test")
        out = [(signed, "/logout", {}, csrf_of(signed.get("/login").body))]
        b = WebClient(self.server)
        page = b.ask_code("lee@example.test")
        out.append((b, "/login/verify", {"attempt": hidden(page.body, "attempt"),
                                         "code": login_code(self.server.outbox_messages()[-1])},
                    csrf_of(page.body)))
        b2 = WebClient(self.server)
        out.append((b2, "/login", {"email": "mo@example.test"}, csrf_of(b2.get("/login").body)))
        reg = self.server.register_email("ned@example.test")
        self.assertTrue(reg)
        view = claim_link(self.server.outbox_messages()[-1])
        parts = urllib.parse.urlsplit(view)
        b3 = WebClient(self.server)
        vp = b3.get(parts.path + "?" + parts.query)
        out.append((b3, "/agent/auth/claim/attempt/reject",
                    {"claim_attempt_token": hidden(vp.body, "claim_attempt_token")},
                    csrf_of(vp.body)))
        return out

    def test_every_page_post_refuses_a_missing_or_wrong_token(self):
        for b, path, fields, good in self.forms():
            with self.subTest(path=path):
                self.assertRefused(b.post_form(path, fields))
                self.assertRefused(b.post_form(path, fields, csrf="0" * 64))
                self.assertRefused(b.post_form(path, fields, csrf=good[:-1] + "x"))
                # Another browser's token does not fit this browser's cookie.
                other = csrf_of(WebClient(self.server).get("/login").body)
                self.assertRefused(b.post_form(path, fields, csrf=other))
                # The right token from another site's page.
                self.assertRefused(b.post_form(path, fields, csrf=good, headers={
                    "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}))
                self.assertRefused(b.post_form(path, fields, csrf=good, headers={
                    "Origin": "http://evil.example"}))
                self.assertRefused(b.post_form(path, fields, csrf=good, headers={
                    "Sec-Fetch-Site": "same-site"}))
                # Without the browser's cookie the token means nothing (a
                # logout without a session has nothing to end: it only
                # clears the cookie, as for anyone).
                jarless = WebClient(self.server)
                r = jarless.post_form(path, fields, csrf=good)
                if path == "/logout":
                    self.assertEqual(r.status, 303, r)
                else:
                    self.assertRefused(r)
        # Nothing was done: no session beyond the first, no attempt rejected.
        self.assertEqual(self.server.db_query("SELECT COUNT(*) FROM web_sessions")[0][0], 1)
        self.assertFalse([e for e in self.server.audit_events()
                          if e["event"] == "claim.rejected"])

    def test_the_same_forms_pass_with_their_token(self):
        for b, path, fields, good in self.forms():
            with self.subTest(path=path):
                r = b.post_form(path, fields, csrf=good)
                self.assertIn(r.status, (200, 303), (path, r))

    def test_the_claim_code_form_refuses_a_cross_site_post(self):
        self.server.register_email("oz@example.test")
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(
            claim_link(self.server.outbox_messages()[-1])).query)["token"][0]
        r = self.server.request("POST", "/agent/auth/claim/attempt/challenge",
                                raw=("claim_attempt_token=" + token).encode(),
                                content_type=FORM, headers={"Sec-Fetch-Site": "cross-site"})
        self.assertRefused(r)
        self.assertEqual(self.server.db_query(
            "SELECT COUNT(*) FROM claim_attempts WHERE otp_hash IS NOT NULL")[0][0], 0)


class ClaimRejectTest(ServerTest):
    def test_this_was_not_me_closes_the_attempt(self):
        reg = self.server.register_email("pat@example.test")
        link = claim_link(self.server.outbox_messages()[-1])
        parts = urllib.parse.urlsplit(link)
        b = WebClient(self.server)
        view = b.get(parts.path + "?" + parts.query)
        self.assertEqual(view.status, 200)
        self.assertIn(b'action="/agent/auth/claim/attempt/reject"', view.body)
        self.assertIn(b"This wasn't me", view.body)
        r = b.post_form("/agent/auth/claim/attempt/reject",
                        {"claim_attempt_token": hidden(view.body, "claim_attempt_token")},
                        csrf=csrf_of(view.body))
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"Request rejected", r.body)
        events = [e for e in self.server.audit_events() if e["event"] == "claim.rejected"]
        self.assertEqual(events[-1]["registration_id"], reg["registration_id"])
        # The link no longer shows a code.
        token = hidden(view.body, "claim_attempt_token")
        self.assertEqual(self.server.challenge_form(token).status, 410)
        self.assertEqual(b.get(parts.path + "?" + parts.query).status, 410)


class LimitsTest(ServerTest):
    OVERRIDES = {"login": {"mails_per_address": "2", "per_ip": "0"}}

    def test_mails_to_one_address_are_limited(self):
        b = WebClient(self.server)
        b.ask_code("quin@example.test")
        b.ask_code("QUIN@example.test")
        page = b.get("/login")
        r = b.post_form("/login", {"email": "quin@example.test"}, csrf=csrf_of(page.body))
        self.assertEqual(r.status, 429, r)
        self.assertTrue(int(r.header("Retry-After")) > 0)
        self.assertEqual(len(self.server.outbox_messages()), 2)
        # Another address is not affected.
        b.ask_code("ray@example.test")


class PerIpLimitTest(ServerTest):
    OVERRIDES = {"login": {"per_ip": "3"}}

    def test_sign_in_posts_from_one_ip_are_limited(self):
        b = WebClient(self.server)
        page = b.get("/login")
        statuses = [b.post_form("/login", {"email": "s%d@example.test" % i},
                                csrf=csrf_of(page.body)).status for i in range(4)]
        self.assertEqual(statuses, [200, 200, 200, 429])


class SecureCookieTest(unittest.TestCase):
    def test_https_public_url_gives_host_prefixed_secure_cookies(self):
        s = Server({"server": {"public_url": "https://login.example.test"}}).start()
        try:
            b = WebClient(s, origin="https://login.example.test")
            page = b.get("/login")
            name, _, attrs = cookie_attrs(page.header("Set-Cookie"))
            self.assertEqual(name, "__Host-authmd_pre")
            self.assertIn("secure", attrs)
            self.assertEqual(attrs["path"], "/")
            self.assertNotIn("domain", attrs)
            # The mailed link points at the public URL; the form posts here.
            r = b.post_form("/login", {"email": "tia@example.test"}, csrf=csrf_of(page.body))
            self.assertEqual(r.status, 200, r)
            code = login_code(s.outbox_messages()[-1])
            r = b.post_form("/login/verify", {"attempt": hidden(r.body, "attempt"),
                                              "code": code}, csrf=csrf_of(r.body))
            self.assertEqual(r.status, 303, r)
            line = [l for l in b.set_cookie_lines if "authmd_session" in l][-1]
            name, _, attrs = cookie_attrs(line)
            self.assertEqual(name, "__Host-authmd_session")
            self.assertIn("secure", attrs)
            self.assertIn("httponly", attrs)
        finally:
            s.stop()


class SweepTest(ServerTest):
    OVERRIDES = {"ttl": {"sweep_interval": "1"}}

    def test_the_sweeper_deletes_ended_sessions_and_attempts(self):
        WebClient(self.server).sign_in("uma@example.test")
        WebClient(self.server).ask_code("uma@example.test")
        self.server.db_write("UPDATE web_sessions SET expires_at = 1")
        self.server.db_write("UPDATE login_attempts SET expires_at = 1")
        deadline = time.time() + 20
        while time.time() < deadline:
            left = (self.server.db_query("SELECT COUNT(*) FROM web_sessions")[0][0] +
                    self.server.db_query("SELECT COUNT(*) FROM login_attempts")[0][0])
            if left == 0:
                break
            time.sleep(0.1)
        self.assertEqual(left, 0)


class DisabledTest(ServerTest):
    OVERRIDES = {"login": {"enabled": "off"}}

    def test_the_pages_are_gone_when_sign_in_is_off(self):
        self.assertEqual(self.server.get("/login").status, 404)
        self.assertEqual(self.server.post("/logout", raw=b"", content_type=FORM).status, 404)


if __name__ == "__main__":
    unittest.main()
