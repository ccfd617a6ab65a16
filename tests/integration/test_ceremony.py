"""The v0.4-v0.6 claim ceremony (issue 14): POST /agent/identity/claim and
type service_auth mint an RFC 8628 user_code and a verification URL through
/login; the agent polls /oauth2/token with the claim grant
(authorization_pending, slow_down, expired_token, access_denied, the
tokens once). The agent side of every error code of the v0.6 claim tables;
the user's side (the /claim page) is in test_ceremony_pages.py."""
import hashlib
import re
import time
import unittest
import urllib.parse

from harness import Server

CLAIM_GRANT = "urn:workos:agent-auth:grant-type:claim"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


class CeremonyBase(unittest.TestCase):
    SERVER_OVERRIDES = {}

    def setUp(self):
        self.server = Server(self.SERVER_OVERRIDES).start()

    def tearDown(self):
        rc = self.server.stop()
        if rc != 0:
            print(self.server.read_log())
        self.server.cleanup()
        self.assertEqual(rc, 0)

    # --- the agent's calls ---
    def form(self, path, fields):
        return self.server.request("POST", path, raw=urllib.parse.urlencode(fields).encode(),
                                   content_type="application/x-www-form-urlencoded")

    def poll(self, claim_token):
        return self.form("/oauth2/token", {"grant_type": CLAIM_GRANT, "claim_token": claim_token})

    def exchange(self, assertion):
        return self.form("/oauth2/token", {"grant_type": JWT_BEARER, "assertion": assertion})

    def anonymous(self):
        r = self.server.post("/agent/identity", {"type": "anonymous"})
        self.assertEqual(r.status, 200, r)
        return r.json

    def start(self, claim_token, email="owner@example.test"):
        body = {"claim_token": claim_token}
        if email is not None:
            body["email"] = email
        return self.server.post("/agent/identity/claim", body)

    def service_auth(self, hint="owner@example.test"):
        return self.server.post("/agent/identity", {"type": "service_auth", "login_hint": hint})

    # --- checks ---
    def assertV06Error(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json["error"], code, r.json)
        self.assertTrue(r.json["message"], r.json)

    def assertOAuthError(self, r, code, status=400):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json["error"], code, r.json)
        self.assertTrue(r.json["error_description"], r.json)
        self.assertEqual(r.header("Cache-Control"), "no-store")

    def assertBlock(self, block, interval=5):
        """The RFC 8628 fields; the verification URL goes through /login to
        the /claim page of the attempt and never carries the code."""
        self.assertRegex(block["user_code"], USER_CODE)
        self.assertGreater(block["expires_in"], 0)
        self.assertLessEqual(block["expires_in"], 600)
        self.assertEqual(block["interval"], interval)
        uri = urllib.parse.urlsplit(block["verification_uri"])
        self.assertEqual(uri.scheme + "://" + uri.netloc, self.server.url)
        self.assertEqual(uri.path, "/login")
        return_to = urllib.parse.parse_qs(uri.query)["return_to"][0]
        page = urllib.parse.urlsplit(return_to)
        self.assertEqual(page.path, "/claim")
        token = urllib.parse.parse_qs(page.query)["claim_attempt_token"][0]
        self.assertNotIn(block["user_code"], block["verification_uri"])
        complete = urllib.parse.urlsplit(block["verification_uri_complete"])
        q = urllib.parse.parse_qs(urllib.parse.parse_qs(complete.query)["return_to"][0]
                                  .split("?", 1)[1])
        self.assertEqual(q["claim_attempt_token"], [token])
        self.assertEqual(q["user_code"], [block["user_code"]])
        return token

    def attempt_row(self, attempt_id):
        rows = self.server.db_query(
            "SELECT status, attempts_left, poll_interval, last_poll_at, email, token_hash, "
            "code_hash FROM ceremony_attempts WHERE id = ?", (attempt_id,))
        self.assertEqual(len(rows), 1)
        return rows[0]


class ClaimStartTest(CeremonyBase):
    def test_anonymous_claim_answers_an_attempt_with_a_user_code(self):
        reg = self.anonymous()
        r = self.start(reg["claim_token"], "Owner@Example.test")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        body = r.json
        self.assertEqual(body["registration_id"], reg["registration_id"])
        self.assertEqual(body["status"], "initiated")
        self.assertTrue(body["claim_attempt_id"].startswith("cla_"))
        self.assertTrue(body["expires_at"])
        token = self.assertBlock(body["claim_attempt"])
        # stored: the bound address, and only hashes of the token and code
        status, left, interval, last_poll, email, token_hash, code_hash = \
            self.attempt_row(body["claim_attempt_id"])
        self.assertEqual((status, left, interval, last_poll, email),
                         ("initiated", 5, 5, None, "owner@example.test"))
        self.assertEqual(bytes(token_hash), hashlib.sha256(token.encode()).digest())
        code = body["claim_attempt"]["user_code"].replace("-", "")
        self.assertEqual(bytes(code_hash), hashlib.sha256(
            ("%s:%s" % (body["claim_attempt_id"], code)).encode()).digest())
        self.assertEqual(self.server.db_query(
            "SELECT status FROM registrations WHERE id = ?", (reg["registration_id"],)),
            [("pending_claim",)])
        events = [e for e in self.server.audit_events()
                  if e.get("registration_id") == reg["registration_id"]]
        names = [e["event"] for e in events]
        self.assertIn("claim.requested", names)
        self.assertIn("user_code.minted", names)
        for e in events:  # no secret reaches the audit trail
            self.assertNotIn(token, str(e))
            self.assertNotIn(code, str(e).replace("-", ""))
        self.assertNotIn(token, self.server.read_log())
        self.assertNotIn(body["claim_attempt"]["user_code"], self.server.read_log())
        # no mail: the agent shows the code itself (v0.4)
        self.assertEqual(self.server.outbox_messages(), [])

    def test_each_call_makes_a_new_attempt_and_ends_the_previous(self):
        reg = self.anonymous()
        first = self.start(reg["claim_token"]).json
        second = self.start(reg["claim_token"]).json
        self.assertNotEqual(first["claim_attempt_id"], second["claim_attempt_id"])
        self.assertNotEqual(first["claim_attempt"]["verification_uri"],
                            second["claim_attempt"]["verification_uri"])
        self.assertEqual(self.attempt_row(first["claim_attempt_id"])[0], "expired")
        self.assertEqual(self.attempt_row(second["claim_attempt_id"])[0], "initiated")

    def test_claim_errors(self):
        reg = self.anonymous()
        self.assertV06Error(self.start("clm_nope"), 400, "invalid_claim_token")
        self.assertV06Error(self.start(reg["claim_token"], None), 400, "invalid_request")
        self.assertV06Error(self.start(reg["claim_token"], "not-an-address"), 400,
                            "invalid_request")
        self.assertV06Error(self.start(reg["claim_token"], "a@b.test\r\nBcc: x@y.test"), 400,
                            "invalid_request")
        self.assertV06Error(self.server.post("/agent/identity/claim", {}), 400,
                            "invalid_request")
        self.assertV06Error(self.server.post("/agent/identity/claim",
                                             {"claim_token": 5, "email": "a@b.test"}),
                            400, "invalid_request")
        r = self.server.request("POST", "/agent/identity/claim", raw=b"{oops",
                                content_type="application/json")
        self.assertV06Error(r, 400, "invalid_request")
        self.assertEqual(self.server.request(
            "POST", "/agent/identity/claim", raw=b"claim_token=x",
            content_type="application/x-www-form-urlencoded").status, 415)
        # a window that closed
        self.server.db_write("UPDATE registrations SET expires_at = 1 WHERE id = ?",
                             (reg["registration_id"],))
        self.assertV06Error(self.start(reg["claim_token"]), 410, "claim_expired")
        # a registration already claimed
        other = self.anonymous()
        self.server.db_write("UPDATE registrations SET status = 'claimed' WHERE id = ?",
                             (other["registration_id"],))
        self.assertV06Error(self.start(other["claim_token"]), 409, "claimed_or_in_flight")

    def test_the_v01_claim_endpoint_is_unchanged(self):
        reg = self.server.register_anonymous()
        r = self.server.start_claim(reg["claim_token"], "owner@example.test")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("claim_attempt", r.json)
        self.assertEqual(len(self.server.outbox_messages()), 1)


class ServiceAuthTest(CeremonyBase):
    def test_service_auth_registers_with_a_claim_block_and_no_assertion(self):
        r = self.service_auth("Someone@Example.test")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        body = r.json
        self.assertEqual(body["registration_type"], "service_auth")
        self.assertTrue(body["claim_token"].startswith("clm_"))
        self.assertTrue(body["claim_token_expires"])
        self.assertEqual(body["claim_url"], self.server.url + "/agent/identity/claim")
        self.assertEqual(body["post_claim_scopes"], ["api.read", "api.write"])
        self.assertNotIn("identity_assertion", body)
        self.assertBlock(body["claim"])
        rows = self.server.db_query(
            "SELECT kind, status, email FROM registrations WHERE id = ?",
            (body["registration_id"],))
        self.assertEqual(rows, [("email", "pending_claim", "someone@example.test")])
        self.assertEqual(self.attempt_row(body["claim_attempt_id"])[4], "someone@example.test")
        names = [e["event"] for e in self.server.audit_events()
                 if e.get("registration_id") == body["registration_id"]]
        for ev in ("registration.created", "claim.requested", "user_code.minted"):
            self.assertIn(ev, names)
        self.assertOAuthError(self.poll(body["claim_token"]), "authorization_pending")

    def test_a_new_code_for_the_same_address_only(self):
        body = self.service_auth().json
        again = self.start(body["claim_token"], None)
        self.assertEqual(again.status, 200, again)
        self.assertBlock(again.json["claim_attempt"])
        self.assertEqual(self.attempt_row(body["claim_attempt_id"])[0], "expired")
        same = self.start(body["claim_token"], "OWNER@example.test")
        self.assertEqual(same.status, 200, same)
        self.assertV06Error(self.start(body["claim_token"], "other@example.test"), 400,
                            "invalid_request")

    def test_login_hint_errors(self):
        for hint in ("not-an-email", "", "a@", "x" * 300 + "@example.test"):
            self.assertV06Error(self.service_auth(hint), 400, "invalid_login_hint")
        self.assertV06Error(self.server.post("/agent/identity", {"type": "service_auth"}), 400,
                            "invalid_request")
        self.assertV06Error(self.server.post("/agent/identity", {"type": "service_auth",
                                                                 "login_hint": 7}),
                            400, "invalid_request")

    def test_discovery_advertises_service_auth_and_the_claim_grant(self):
        doc = self.server.get("/.well-known/oauth-authorization-server").json
        self.assertIn(CLAIM_GRANT, doc["grant_types_supported"])
        self.assertIn(JWT_BEARER, doc["grant_types_supported"])
        aa = doc["agent_auth"]
        self.assertIn("service_auth", aa["identity_types_supported"])
        # v0.1 keeps its verified_email under identity_assertion
        self.assertIn("verified_email", aa["identity_assertion"]["assertion_types_supported"])
        self.assertEqual(aa["claim_endpoint"], self.server.url + "/agent/identity/claim")
        guide = self.server.get("/auth.md").body.decode()
        self.assertIn("service_auth", guide)
        self.assertIn(CLAIM_GRANT, guide)


class ServiceAuthOffTest(CeremonyBase):
    SERVER_OVERRIDES = {"flows": {"service_auth": "off"}}

    def test_service_auth_not_enabled(self):
        self.assertV06Error(self.service_auth(), 400, "service_auth_not_enabled")
        doc = self.server.get("/.well-known/oauth-authorization-server").json
        self.assertNotIn("service_auth", doc["agent_auth"]["identity_types_supported"])


class PollTest(CeremonyBase):
    def started(self):
        reg = self.anonymous()
        r = self.start(reg["claim_token"])
        self.assertEqual(r.status, 200, r)
        return reg, r.json

    def test_pending_then_slow_down_raises_the_interval(self):
        reg, att = self.started()
        self.assertOAuthError(self.poll(reg["claim_token"]), "authorization_pending")
        # a second poll inside the 5 s interval (the two requests follow
        # each other at once): slow_down, and the interval grows by 5 s
        r = self.poll(reg["claim_token"])
        self.assertOAuthError(r, "slow_down")
        self.assertIn("10", r.json["error_description"])
        self.assertEqual(self.attempt_row(att["claim_attempt_id"])[2], 10)
        self.assertOAuthError(self.poll(reg["claim_token"]), "slow_down")
        self.assertEqual(self.attempt_row(att["claim_attempt_id"])[2], 15)
        # once the agent waited the interval (the last poll moved back),
        # pending again, at the raised interval
        self.server.db_write("UPDATE ceremony_attempts SET last_poll_at = last_poll_at - 60 "
                             "WHERE id = ?", (att["claim_attempt_id"],))
        self.assertOAuthError(self.poll(reg["claim_token"]), "authorization_pending")
        self.assertEqual(self.attempt_row(att["claim_attempt_id"])[2], 15)
        # the pre-claim access token keeps working during the ceremony
        t = self.exchange(reg["identity_assertion"])
        self.assertEqual(t.status, 200, t)
        self.assertEqual(t.json["scope"], "api.read")

    def test_expired_token_when_the_code_or_the_window_closed(self):
        reg, att = self.started()
        self.server.db_write("UPDATE ceremony_attempts SET expires_at = 1 WHERE id = ?",
                             (att["claim_attempt_id"],))
        self.assertOAuthError(self.poll(reg["claim_token"]), "expired_token")
        # a fresh code: pending again
        self.assertEqual(self.start(reg["claim_token"]).status, 200)
        self.assertOAuthError(self.poll(reg["claim_token"]), "authorization_pending")
        # the registration's own window
        self.server.db_write("UPDATE registrations SET expires_at = 1 WHERE id = ?",
                             (reg["registration_id"],))
        self.assertOAuthError(self.poll(reg["claim_token"]), "expired_token")

    def test_an_attempt_replaced_by_a_newer_one_polls_the_newest(self):
        reg, att = self.started()
        newer = self.start(reg["claim_token"]).json
        self.assertOAuthError(self.poll(reg["claim_token"]), "authorization_pending")
        self.assertIsNotNone(self.attempt_row(newer["claim_attempt_id"])[3])
        self.assertIsNone(self.attempt_row(att["claim_attempt_id"])[3])

    def test_poll_errors(self):
        self.assertOAuthError(self.poll("clm_unknown"), "invalid_grant")
        r = self.form("/oauth2/token", {"grant_type": CLAIM_GRANT})
        self.assertOAuthError(r, "invalid_request")
        r = self.form("/oauth2/token", {"grant_type": CLAIM_GRANT, "claim_token": ""})
        self.assertOAuthError(r, "invalid_request")
        r = self.server.post("/oauth2/token", {"grant_type": CLAIM_GRANT, "claim_token": "x"})
        self.assertOAuthError(r, "invalid_request")
        # an anonymous registration that never started a claim
        reg = self.anonymous()
        self.assertOAuthError(self.poll(reg["claim_token"]), "invalid_grant")


if __name__ == "__main__":
    unittest.main()
