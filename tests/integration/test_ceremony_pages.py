"""The user's side of the v0.4-v0.6 claim ceremony (issue 14) at the HTTP
level: the verification URL through /login (a real session by the mailed
code) to the /claim page, the user_code form and its reject button, the
agent's poll meanwhile and after (tokens once, pre-claim tokens revoked),
the same-account rule, the attempt limit, CSRF and escaping. The same walk
in a real browser: tests/browser/."""
import base64
import json
import re
import unittest
import urllib.parse

from harness import Server
from test_ceremony import CeremonyBase
from webclient import WebClient, csrf_of, hidden

OWNER = "owner@example.test"


def jwt_claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class PagesBase(CeremonyBase):
    def anonymous_attempt(self, email=OWNER):
        reg = self.anonymous()
        r = self.start(reg["claim_token"], email)
        self.assertEqual(r.status, 200, r)
        return reg, r.json["claim_attempt"]

    def return_to(self, block):
        uri = urllib.parse.urlsplit(block["verification_uri"])
        return urllib.parse.parse_qs(uri.query)["return_to"][0]

    def open_as(self, email, block):
        """A user signing in at the verification URL and landing on /claim."""
        b = WebClient(self.server)
        r = b.sign_in(email, return_to=self.return_to(block))
        self.assertEqual(r.header("Location"), self.return_to(block))
        return b, b.get(r.header("Location"))

    def confirm(self, b, page, code):
        return b.post_form("/claim/confirm",
                           {"claim_attempt_token": hidden(page.body, "claim_attempt_token"),
                            "user_code": code}, csrf=csrf_of(page.body))

    def reject(self, b, page):
        return b.post_form("/claim/confirm",
                           {"claim_attempt_token": hidden(page.body, "claim_attempt_token"),
                            "decision": "reject"}, csrf=csrf_of(page.body))

    def reg_row(self, registration_id):
        return self.server.db_query("SELECT status, user_id FROM registrations WHERE id = ?",
                                    (registration_id,))[0]

    def user_id(self, email):
        return self.server.db_query("SELECT id FROM users WHERE email = ?", (email,))[0][0]


class CeremonyPagesTest(PagesBase):
    def test_anonymous_claim_walked_by_the_user_while_the_agent_polls(self):
        reg, block = self.anonymous_attempt()
        pre = self.exchange(reg["identity_assertion"]).json["access_token"]
        self.assertEqual(self.server.bearer("GET", "/api/resource", pre).status, 200)
        b, page = self.open_as(OWNER, block)
        self.assertEqual(page.status, 200, page)
        self.assertIn(OWNER.encode(), page.body)
        self.assertIn(b"api.read api.write", page.body)
        self.assertIn(b"registered anonymously", page.body)
        self.assertIn(b"This wasn't me: reject", page.body)
        self.assertIsNotNone(csrf_of(page.body))
        self.assertNotIn(block["user_code"].encode(), page.body)  # the user types it
        self.assertIn("default-src 'none'", page.header("Content-Security-Policy"))
        self.assertOAuthError(self.poll(reg["claim_token"]), "authorization_pending")
        # typed as a person might: lower case, no dash
        r = self.confirm(b, page, block["user_code"].lower().replace("-", ""))
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"Agent linked", r.body)
        status, user = self.reg_row(reg["registration_id"])
        self.assertEqual((status, user), ("claimed", self.user_id(OWNER)))
        # the pre-claim token is revoked at completion (v0.4)
        self.assertEqual(self.server.bearer("GET", "/api/resource", pre).status, 401)
        # the poll answers the tokens, once
        t = self.poll(reg["claim_token"])
        self.assertEqual(t.status, 200, t)
        self.assertEqual(t.header("Cache-Control"), "no-store")
        self.assertEqual(t.json["token_type"], "Bearer")
        self.assertEqual(t.json["scope"], "api.read api.write")
        self.assertTrue(t.json["assertion_expires"])
        claims = jwt_claims(t.json["identity_assertion"])
        self.assertEqual((claims["sub"], claims["email"], claims["email_verified"]),
                         (reg["registration_id"], OWNER, True))
        self.assertNotIn("email", jwt_claims(reg["identity_assertion"]))
        r = self.server.bearer("POST", "/api/resource", t.json["access_token"], body={})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["email"], OWNER)
        self.assertOAuthError(self.poll(reg["claim_token"]), "invalid_grant")
        # the v2 assertion is the refresh path now
        again = self.exchange(t.json["identity_assertion"])
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json["scope"], "api.read api.write")
        events = {e["event"]: e for e in self.server.audit_events()
                  if e.get("registration_id") == reg["registration_id"]}
        self.assertEqual(events["claim.confirmed"]["claimed_by_user_id"], self.user_id(OWNER))
        self.assertEqual(events["claim.confirmed"]["credentials_revoked"], 1)
        # the page is spent
        self.assertEqual(b.get(self.return_to(block)).status, 409)

    def test_service_auth_walked_to_its_first_assertion(self):
        body = self.service_auth(OWNER).json
        b, page = self.open_as(OWNER, body["claim"])
        self.assertIn(b"service_auth", page.body)
        self.assertEqual(self.confirm(b, page, body["claim"]["user_code"]).status, 200)
        t = self.poll(body["claim_token"])
        self.assertEqual(t.status, 200, t)
        claims = jwt_claims(t.json["identity_assertion"])
        self.assertEqual((claims["registration_type"], claims["email"]),
                         ("service_auth", OWNER))
        self.assertEqual(self.server.bearer("GET", "/api/resource",
                                            t.json["access_token"]).json["email"], OWNER)

    def test_reject_reaches_the_agent_as_access_denied(self):
        reg, block = self.anonymous_attempt()
        b, page = self.open_as(OWNER, block)
        r = self.reject(b, page)
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"Request rejected", r.body)
        self.assertOAuthError(self.poll(reg["claim_token"]), "access_denied")
        self.assertEqual(self.reg_row(reg["registration_id"])[0], "pending_claim")
        # the code no longer works either
        r = self.confirm(b, page, block["user_code"])
        self.assertEqual(r.status, 403, r)
        self.assertIn(b"access_denied", r.body)
        names = [e["event"] for e in self.server.audit_events()]
        self.assertIn("claim.denied", names)

    def test_another_account_sees_no_form_and_cannot_complete(self):
        reg, block = self.anonymous_attempt()
        b, page = self.open_as("intruder@example.test", block)
        self.assertEqual(page.status, 403, page)
        self.assertIn(b"different account", page.body)
        self.assertNotIn(b'name="user_code"', page.body)
        self.assertNotIn(OWNER.encode(), page.body)  # the bound address is not disclosed
        # a crafted POST with the right code and a valid CSRF token
        token = urllib.parse.parse_qs(self.return_to(block).split("?", 1)[1])[
            "claim_attempt_token"][0]
        r = b.post_form("/claim/confirm",
                        {"claim_attempt_token": token, "user_code": block["user_code"]},
                        csrf=csrf_of(page.body))
        self.assertEqual(r.status, 403, r)
        self.assertEqual(self.reg_row(reg["registration_id"]), ("pending_claim", None))
        r = b.post_form("/claim/confirm",
                        {"claim_attempt_token": token, "decision": "reject"},
                        csrf=csrf_of(page.body))
        self.assertEqual(r.status, 403, r)
        self.assertOAuthError(self.poll(reg["claim_token"]), "authorization_pending")

    def test_wrong_codes_are_counted_and_end_the_attempt(self):
        reg, block = self.anonymous_attempt()
        b, page = self.open_as(OWNER, block)
        code = block["user_code"]
        wrong = ("C" if code[0] == "B" else "B") + code[1:]
        for left in (4, 3, 2, 1):
            r = self.confirm(b, page, wrong)
            self.assertEqual(r.status, 400, r)
            self.assertIn(("%d tries left" % left).encode(), r.body)
            self.assertIn(b'name="user_code"', r.body)  # the form again
        r = self.confirm(b, page, "nonsense!")
        self.assertEqual(r.status, 400, r)
        self.assertIn(b"expired_token", r.body)
        self.assertEqual(self.confirm(b, page, code).status, 400)  # even the right one now
        self.assertOAuthError(self.poll(reg["claim_token"]), "expired_token")
        rows = self.server.db_query("SELECT status, attempts_left FROM ceremony_attempts")
        self.assertEqual(rows, [("expired", 0)])
        # a new attempt from the agent works
        block = self.start(reg["claim_token"]).json["claim_attempt"]
        page = b.get(self.return_to(block))
        self.assertEqual(self.confirm(b, page, block["user_code"]).status, 200)

    def test_an_old_attempts_page_stops_working(self):
        reg, block = self.anonymous_attempt()
        b, page = self.open_as(OWNER, block)
        newer = self.start(reg["claim_token"]).json["claim_attempt"]
        r = self.confirm(b, page, block["user_code"])
        self.assertEqual(r.status, 400, r)
        self.assertIn(b"expired_token", r.body)
        self.assertEqual(b.get(self.return_to(newer)).status, 200)

    def test_without_a_session_both_go_to_login(self):
        reg, block = self.anonymous_attempt()
        r = self.server.get(self.return_to(block))
        self.assertEqual(r.status, 303, r)
        loc = urllib.parse.urlsplit(r.header("Location"))
        self.assertEqual(loc.path, "/login")
        self.assertEqual(urllib.parse.parse_qs(loc.query)["return_to"][0], self.return_to(block))
        # verification_uri_complete comes back with the code to prefill it
        complete = urllib.parse.urlsplit(block["verification_uri_complete"])
        back = urllib.parse.parse_qs(complete.query)["return_to"][0]
        b = WebClient(self.server)
        b.sign_in(OWNER, return_to=back)
        page = b.get(back)
        self.assertIn(('value="%s"' % block["user_code"]).encode(), page.body)
        token = hidden(page.body, "claim_attempt_token")
        r = WebClient(self.server).post_form("/claim/confirm",
                                             {"claim_attempt_token": token,
                                              "user_code": block["user_code"]})
        self.assertEqual(r.status, 303, r)
        self.assertEqual(self.reg_row(reg["registration_id"])[0], "pending_claim")

    def test_csrf_is_refused_on_the_form_action(self):
        reg, block = self.anonymous_attempt()
        b, page = self.open_as(OWNER, block)
        fields = {"claim_attempt_token": hidden(page.body, "claim_attempt_token"),
                  "user_code": block["user_code"]}
        for r in (b.post_form("/claim/confirm", fields),
                  b.post_form("/claim/confirm", fields, csrf="0" * 64),
                  b.post_form("/claim/confirm", fields,
                              csrf=csrf_of(page.body), same_origin=False,
                              headers={"Origin": "http://evil.example",
                                       "Sec-Fetch-Site": "cross-site"}),
                  b.post_form("/claim/confirm", dict(fields, decision="reject"),
                              csrf="f" * 64)):
            self.assertEqual(r.status, 403, r)
            self.assertIn(b"csrf_refused", r.body)
        self.assertEqual(self.reg_row(reg["registration_id"])[0], "pending_claim")
        self.assertOAuthError(self.poll(reg["claim_token"]), "authorization_pending")

    def test_bad_links_are_clear_pages(self):
        b = WebClient(self.server)
        b.sign_in(OWNER)
        for path in ("/claim", "/claim?claim_attempt_token=", "/claim?claim_attempt_token=a%3Cb",
                     "/claim?claim_attempt_token=" + "x" * 300):
            r = b.get(path)
            self.assertEqual(r.status, 400, (path, r))
            self.assertTrue(r.header("Content-Type").startswith("text/html"))
        r = b.get("/claim?claim_attempt_token=cat_unknown")
        self.assertEqual(r.status, 404, r)
        page = b.get("/login")
        r = b.post_form("/claim/confirm", {"user_code": "BCDF-GHJK"},
                        csrf=csrf_of(page.body))
        self.assertEqual(r.status, 400, r)


class EscapingTest(PagesBase):
    SERVER_OVERRIDES = {"server": {"resource_name": "<script>x</script>&co"}}

    def test_values_on_the_page_are_escaped(self):
        reg, block = self.anonymous_attempt()
        b, page = self.open_as(OWNER, block)
        self.assertEqual(page.status, 200, page)
        self.assertNotIn(b"<script>", page.body)
        self.assertIn(b"&lt;script&gt;x&lt;/script&gt;&amp;co", page.body)


if __name__ == "__main__":
    unittest.main()
