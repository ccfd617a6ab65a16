"""The read-back claim ceremony (issue 14, proposal (b)): POST
/agent/identity/claim {type: login_hint} starts an attempt with no code for
the agent; the user signs in at the verification URL, confirms at
/claim/confirm and only then sees a 6-digit code, which the agent sends to
POST /agent/identity/claim/complete. Every status and error code of it,
the page rules (CSRF, the bound account, no code before confirming, a
reload shows no fresh code), the attempt limit, expiry and reject. The same
walk in a real browser: tests/browser/readback.mjs."""
import base64
import json
import re
import unittest
import urllib.parse

from test_ceremony import CeremonyBase
from webclient import WebClient, csrf_of, hidden

OWNER = "owner@example.test"
SHOWN_CODE = re.compile(rb'id="user-code">(\d{3}) (\d{3})<')
ANY_CODE = re.compile(rb"\b\d{3} \d{3}\b")


def jwt_claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class ReadbackBase(CeremonyBase):
    # --- the agent's calls ---
    def start_rb(self, claim_token, hint=OWNER):
        body = {"type": "login_hint", "claim_token": claim_token}
        if hint is not None:
            body["login_hint"] = hint
        return self.server.post("/agent/identity/claim", body)

    def complete(self, claim_token, code):
        return self.server.post("/agent/identity/claim/complete",
                                {"claim_token": claim_token, "user_code": code})

    def attempt(self, hint=OWNER):
        reg = self.anonymous()
        r = self.start_rb(reg["claim_token"], hint)
        self.assertEqual(r.status, 200, r)
        return reg, r.json

    # --- the user's ---
    def return_to(self, body):
        uri = urllib.parse.urlsplit(body["claim"]["attempt"]["verification_uri"])
        return urllib.parse.parse_qs(uri.query)["return_to"][0]

    def open_as(self, email, body):
        b = WebClient(self.server)
        r = b.sign_in(email, return_to=self.return_to(body))
        self.assertEqual(r.header("Location"), self.return_to(body))
        return b, b.get(r.header("Location"))

    def press_confirm(self, b, page, csrf=True, **kw):
        fields = {"claim_attempt_token": hidden(page.body, "claim_attempt_token"),
                  "serial": hidden(page.body, "serial")}
        return b.post_form("/claim/confirm", fields, csrf=csrf_of(page.body) if csrf else None,
                           **kw)

    def press_reject(self, b, page):
        return b.post_form("/claim/confirm",
                           {"claim_attempt_token": hidden(page.body, "claim_attempt_token"),
                            "decision": "reject"}, csrf=csrf_of(page.body))

    def shown_code(self, r):
        self.assertEqual(r.status, 200, r)
        m = SHOWN_CODE.search(r.body)
        self.assertIsNotNone(m, r.body)
        return (m.group(1) + m.group(2)).decode()

    def confirmed(self, email=OWNER, hint=OWNER):
        """An attempt the user confirmed: the registration, the start's
        answer, the browser and the code the page showed."""
        reg, body = self.attempt(hint)
        b, page = self.open_as(email, body)
        return reg, body, b, self.shown_code(self.press_confirm(b, page))

    def attempt_row(self):
        return self.server.db_query(
            "SELECT mode, status, attempts_left, confirmed_at, code_serial, expires_at, "
            "email FROM ceremony_attempts ORDER BY created_at DESC, id DESC LIMIT 1")[0]

    def reg_row(self, registration_id):
        return self.server.db_query("SELECT status, user_id FROM registrations WHERE id = ?",
                                    (registration_id,))[0]

    def user_id(self, email):
        return self.server.db_query("SELECT id FROM users WHERE email = ?", (email,))[0][0]


class ReadbackTest(ReadbackBase):
    def test_anonymous_agent_claimed_by_the_code_the_user_reads_back(self):
        reg = self.anonymous()
        pre = self.exchange(reg["identity_assertion"]).json["access_token"]
        r = self.start_rb(reg["claim_token"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        body = r.json
        # (b)'s envelope, with the v0.6 fields that do not conflict
        self.assertEqual((body["id"], body["type"], body["status"]),
                         (reg["registration_id"], "anonymous", "initiated"))
        self.assertEqual(body["claim"]["token"], reg["claim_token"])
        self.assertEqual(body["claim"]["url"], self.server.url + "/agent/identity/claim")
        self.assertTrue(body["claim"]["expires_at"])
        self.assertTrue(body["claim"]["attempt"]["expires_at"])
        uri = urllib.parse.urlsplit(body["claim"]["attempt"]["verification_uri"])
        self.assertEqual((uri.scheme + "://" + uri.netloc, uri.path), (self.server.url, "/login"))
        self.assertEqual(body["registration_id"], reg["registration_id"])
        self.assertTrue(body["claim_attempt_id"].startswith("cla_"))
        self.assertEqual(body["expires_at"], body["claim"]["attempt"]["expires_at"])
        # no code goes to the agent in this mode
        self.assertNotIn("user_code", json.dumps(body))
        self.assertNotIn("claim_attempt", body)
        self.assertEqual(self.attempt_row()[:2], ("readback", "initiated"))
        # before the user confirmed
        self.assertV06Error(self.complete(reg["claim_token"], "123456"), 400,
                            "claim_not_confirmed")
        b, page = self.open_as(OWNER, body)
        self.assertEqual(page.status, 200, page)
        self.assertIn(OWNER.encode(), page.body)
        self.assertIn(b"api.read api.write", page.body)
        self.assertIn(b"registered anonymously", page.body)
        self.assertIn(b'action="/claim/confirm"', page.body)
        self.assertIn(b"This wasn't me: reject", page.body)
        self.assertNotIn(b'name="user_code"', page.body)
        self.assertIsNone(ANY_CODE.search(page.body))
        self.assertIn("default-src 'none'", page.header("Content-Security-Policy"))
        code = self.shown_code(self.press_confirm(b, page))
        self.assertRegex(code, r"^\d{6}$")
        mode, status, left, confirmed_at, serial, expires_at, email = self.attempt_row()
        self.assertEqual((mode, status, left, serial, email), ("readback", "initiated", 5, 1, OWNER))
        self.assertEqual(expires_at - confirmed_at, 300)  # [ceremony] readback_code_ttl
        # the code is stored only as a hash
        for row in self.server.db_query("SELECT * FROM ceremony_attempts"):
            self.assertNotIn(code, repr(row))
        self.assertEqual(self.reg_row(reg["registration_id"]), ("pending_claim", None))
        # read back as a person might: with the space
        r = self.complete(reg["claim_token"], code[:3] + " " + code[3:])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual((r.json["id"], r.json["type"], r.json["status"]),
                         (reg["registration_id"], "anonymous", "claimed"))
        self.assertTrue(r.json["identity"]["expires_at"])
        self.assertEqual(r.json["identity_assertion"], r.json["identity"]["assertion"])
        self.assertEqual(r.json["assertion_expires"], r.json["identity"]["expires_at"])
        # and the start of a refresh-token family (proposal (b)) that rotates
        rt = r.json["identity"]["refresh_token"]
        self.assertTrue(rt.startswith("rt_"), r.json)
        self.assertTrue(r.json["identity"]["refresh_token_expires_at"])
        rotated = self.server.post("/agent/identity", {"type": "refresh", "refresh_token": rt})
        self.assertEqual(rotated.status, 200, rotated)
        self.assertEqual(self.server.post("/agent/identity", {"type": "refresh",
                                                              "refresh_token": rt}).status, 400)
        self.assertEqual(r.json["registration_id"], reg["registration_id"])
        self.assertEqual(r.json["claim_attempt_id"], body["claim_attempt_id"])
        claims = jwt_claims(r.json["identity"]["assertion"])
        self.assertEqual((claims["sub"], claims["email"], claims["email_verified"]),
                         (reg["registration_id"], OWNER, True))
        self.assertEqual(self.reg_row(reg["registration_id"]), ("claimed", self.user_id(OWNER)))
        # the pre-claim token ended; the new assertion exchanges for post-claim scopes
        self.assertEqual(self.server.bearer("GET", "/api/resource", pre).status, 401)
        t = self.exchange(r.json["identity"]["assertion"])
        self.assertEqual(t.status, 200, t)
        self.assertEqual(t.json["scope"], "api.read api.write")
        w = self.server.bearer("POST", "/api/resource", t.json["access_token"], body={})
        self.assertEqual((w.status, w.json["email"]), (200, OWNER))
        # once only; and the v0.6 claim grant is not a way around it
        self.assertV06Error(self.complete(reg["claim_token"], code), 400, "invalid_grant")
        self.assertOAuthError(self.poll(reg["claim_token"]), "invalid_grant")
        events = {e["event"]: e for e in self.server.audit_events()
                  if e.get("registration_id") == reg["registration_id"]}
        self.assertEqual(events["claim.requested"]["ceremony"], "readback")
        self.assertEqual(events["claim.user_confirmed"]["user_id"], self.user_id(OWNER))
        self.assertEqual(events["claim.confirmed"]["ceremony"], "readback")
        self.assertEqual(events["claim.confirmed"]["claimed_by_user_id"], self.user_id(OWNER))
        self.assertEqual(events["claim.confirmed"]["credentials_revoked"], 1)
        self.assertNotIn(code, self.server.read_log())
        # the page is spent
        self.assertEqual(b.get(self.return_to(body)).status, 409)

    def test_the_code_is_shown_only_after_sign_in_and_confirm_and_once(self):
        reg, body = self.attempt()
        r = self.server.get(self.return_to(body))  # no session: to /login, no code
        self.assertEqual(r.status, 303, r)
        self.assertEqual(urllib.parse.urlsplit(r.header("Location")).path, "/login")
        b, page = self.open_as(OWNER, body)
        self.assertIsNone(ANY_CODE.search(page.body))
        first = self.shown_code(self.press_confirm(b, page))
        # a reload of the page: no code, and it says why
        again = b.get(self.return_to(body))
        self.assertEqual(again.status, 200, again)
        self.assertIn(b"You confirmed this already", again.body)
        self.assertIsNone(SHOWN_CODE.search(again.body))
        self.assertIn(b"Show a new code", again.body)
        # the confirm form sent again (a reload of the code page): no new code
        r = self.press_confirm(b, page)
        self.assertEqual(r.status, 409, r)
        self.assertIsNone(SHOWN_CODE.search(r.body))
        self.assertIn(b"You confirmed this already", r.body)
        self.assertEqual(self.attempt_row()[4], 1)
        # asked for explicitly, a new code replaces the old one
        second = self.shown_code(self.press_confirm(b, again))
        self.assertEqual(self.attempt_row()[4], 2)
        if second != first:
            self.assertV06Error(self.complete(reg["claim_token"], first), 400,
                                "invalid_user_code")
        self.assertEqual(self.complete(reg["claim_token"], second).status, 200)

    def test_without_login_hint_whoever_confirms_claims_and_binds_it(self):
        reg, body = self.attempt(hint=None)
        self.assertEqual(self.attempt_row()[6], "")
        b, page = self.open_as("zoe@example.test", body)
        self.assertEqual(page.status, 200, page)
        code = self.shown_code(self.press_confirm(b, page))
        # bound now: another account sees no form
        other, page2 = self.open_as("mallory@example.test", body)
        self.assertEqual(page2.status, 403, page2)
        self.assertNotIn(b"zoe@example.test", page2.body)
        self.assertEqual(self.complete(reg["claim_token"], code).status, 200)
        self.assertEqual(self.reg_row(reg["registration_id"]),
                         ("claimed", self.user_id("zoe@example.test")))

    def test_another_account_cannot_confirm(self):
        reg, body = self.attempt()
        b, page = self.open_as("intruder@example.test", body)
        self.assertEqual(page.status, 403, page)
        self.assertIn(b"different account", page.body)
        self.assertNotIn(b'name="serial"', page.body)
        token = urllib.parse.parse_qs(self.return_to(body).split("?", 1)[1])[
            "claim_attempt_token"][0]
        for fields in ({"claim_attempt_token": token, "serial": "0"},
                       {"claim_attempt_token": token, "decision": "reject"}):
            r = b.post_form("/claim/confirm", fields, csrf=csrf_of(page.body))
            self.assertEqual(r.status, 403, r)
            self.assertIsNone(SHOWN_CODE.search(r.body))
        self.assertEqual(self.attempt_row()[:4], ("readback", "initiated", 5, None))
        self.assertV06Error(self.complete(reg["claim_token"], "000000"), 400,
                            "claim_not_confirmed")

    def test_csrf_is_refused_on_confirm(self):
        reg, body = self.attempt()
        b, page = self.open_as(OWNER, body)
        fields = {"claim_attempt_token": hidden(page.body, "claim_attempt_token"),
                  "serial": hidden(page.body, "serial")}
        for r in (b.post_form("/claim/confirm", fields),
                  b.post_form("/claim/confirm", fields, csrf="0" * 64),
                  b.post_form("/claim/confirm", fields, csrf=csrf_of(page.body),
                              same_origin=False,
                              headers={"Origin": "http://evil.example",
                                       "Sec-Fetch-Site": "cross-site"}),
                  b.post_form("/claim/confirm", dict(fields, decision="reject"), csrf="f" * 64)):
            self.assertEqual(r.status, 403, r)
            self.assertIn(b"csrf_refused", r.body)
            self.assertIsNone(SHOWN_CODE.search(r.body))
        self.assertEqual(self.attempt_row()[1:5], ("initiated", 5, None, 0))
        # and without a session at all: to /login
        r = WebClient(self.server).post_form("/claim/confirm", fields)
        self.assertEqual(r.status, 303, r)

    def test_wrong_codes_are_counted_and_the_last_ends_the_attempt(self):
        reg, body, b, code = self.confirmed()
        wrong = "%06d" % ((int(code) + 1) % 1000000)
        for left in (4, 3, 2, 1):
            r = self.complete(reg["claim_token"], wrong)
            self.assertV06Error(r, 400, "invalid_user_code")
            self.assertIn("%d tries left" % left, r.json["message"])
        r = self.complete(reg["claim_token"], "12ab56")  # not even digits: counted too
        self.assertV06Error(r, 400, "invalid_user_code")
        self.assertIn("no tries are left", r.json["message"])
        self.assertEqual(self.attempt_row()[1:3], ("expired", 0))
        self.assertV06Error(self.complete(reg["claim_token"], code), 400, "user_code_expired")
        self.assertEqual(self.reg_row(reg["registration_id"]), ("pending_claim", None))
        # a new attempt works
        body = self.start_rb(reg["claim_token"]).json
        page = b.get(self.return_to(body))
        code = self.shown_code(self.press_confirm(b, page))
        self.assertEqual(self.complete(reg["claim_token"], code).status, 200)

    def test_user_code_expired_when_the_attempt_or_the_code_window_closed(self):
        # not confirmed in time
        reg, body = self.attempt()
        self.server.db_write("UPDATE ceremony_attempts SET expires_at = 1")
        self.assertV06Error(self.complete(reg["claim_token"], "123456"), 400,
                            "user_code_expired")
        b, page = self.open_as(OWNER, body)
        self.assertEqual(page.status, 400, page)
        self.assertIn(b"expired_token", page.body)
        # confirmed, but the shown code's lifetime passed
        reg, body, b, code = self.confirmed()
        self.server.db_write("UPDATE ceremony_attempts SET expires_at = 1 WHERE mode = "
                             "'readback' AND confirmed_at IS NOT NULL")
        self.assertV06Error(self.complete(reg["claim_token"], code), 400, "user_code_expired")
        # the registration's own window closed
        reg, body, b, code = self.confirmed()
        self.server.db_write("UPDATE registrations SET expires_at = 1 WHERE id = ?",
                             (reg["registration_id"],))
        self.assertV06Error(self.complete(reg["claim_token"], code), 400, "user_code_expired")

    def test_reject_marks_the_attempt_denied(self):
        reg, body = self.attempt()
        b, page = self.open_as(OWNER, body)
        r = self.press_reject(b, page)
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"Request rejected", r.body)
        self.assertEqual(self.attempt_row()[1], "denied")
        self.assertV06Error(self.complete(reg["claim_token"], "123456"), 403, "access_denied")
        self.assertEqual(self.reg_row(reg["registration_id"]), ("pending_claim", None))
        self.assertIn("claim.denied", [e["event"] for e in self.server.audit_events()])
        # rejected after confirming: the shown code stops working
        reg, body, b, code = self.confirmed()
        page = b.get(self.return_to(body))
        self.assertEqual(self.press_reject(b, page).status, 200)
        self.assertV06Error(self.complete(reg["claim_token"], code), 403, "access_denied")

    def test_invalid_grant(self):
        self.assertV06Error(self.complete("clm_unknown", "123456"), 400, "invalid_grant")
        reg = self.anonymous()  # no attempt at all
        self.assertV06Error(self.complete(reg["claim_token"], "123456"), 400, "invalid_grant")
        self.assertEqual(self.start(reg["claim_token"]).status, 200)  # a v0.6 attempt
        self.assertV06Error(self.complete(reg["claim_token"], "123456"), 400, "invalid_grant")
        reg, body, b, code = self.confirmed()
        self.server.db_write("UPDATE registrations SET status = 'revoked' WHERE id = ?",
                             (reg["registration_id"],))
        self.assertV06Error(self.complete(reg["claim_token"], code), 400, "invalid_grant")

    def test_service_auth_reads_back_to_its_first_assertion(self):
        sa = self.service_auth(OWNER).json
        self.assertV06Error(self.start_rb(sa["claim_token"], "other@example.test"), 400,
                            "invalid_request")
        r = self.start_rb(sa["claim_token"], None)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["type"], r.json["status"]), ("service_auth", "initiated"))
        self.assertEqual(self.attempt_row()[6], OWNER)
        b, page = self.open_as(OWNER, r.json)
        self.assertIn(b"service_auth", page.body)
        code = self.shown_code(self.press_confirm(b, page))
        done = self.complete(sa["claim_token"], code)
        self.assertEqual(done.status, 200, done)
        self.assertEqual((done.json["type"], done.json["status"]), ("service_auth", "claimed"))
        claims = jwt_claims(done.json["identity"]["assertion"])
        self.assertEqual((claims["registration_type"], claims["email"]), ("service_auth", OWNER))
        t = self.exchange(done.json["identity"]["assertion"])
        self.assertEqual(self.server.bearer("GET", "/api/resource",
                                            t.json["access_token"]).json["email"], OWNER)

    def test_start_and_complete_refuse_bad_bodies(self):
        reg = self.anonymous()
        self.assertV06Error(self.server.post("/agent/identity/claim",
                                             {"type": "nonsense", "claim_token": "x"}),
                            400, "invalid_request")
        self.assertV06Error(self.server.post("/agent/identity/claim",
                                             {"type": 5, "claim_token": "x"}),
                            400, "invalid_request")
        self.assertV06Error(self.start_rb(reg["claim_token"], "not-an-address"), 400,
                            "invalid_login_hint")
        self.assertV06Error(self.server.post("/agent/identity/claim",
                                             {"type": "login_hint",
                                              "claim_token": reg["claim_token"],
                                              "login_hint": 7}),
                            400, "invalid_request")
        self.assertV06Error(self.server.post("/agent/identity/claim", {"type": "login_hint"}),
                            400, "invalid_request")
        self.assertV06Error(self.start_rb("clm_nope"), 400, "invalid_claim_token")
        for body in ({}, {"claim_token": reg["claim_token"]}, {"user_code": "123456"},
                     {"claim_token": reg["claim_token"], "user_code": ""},
                     {"claim_token": reg["claim_token"], "user_code": "1" * 64}):
            self.assertV06Error(self.server.post("/agent/identity/claim/complete", body), 400,
                                "invalid_request")
        # a form post is not the agent's JSON (the page's forms go to /claim/confirm)
        r = self.server.request("POST", "/agent/identity/claim/complete",
                                raw=b"claim_attempt_token=x&user_code=BCDF-GHJK",
                                content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 415, r)
        # the first link's confirmation is its own, and a claimed one is done
        self.server.db_write("UPDATE registrations SET kind = 'agent' WHERE id = ?",
                             (reg["registration_id"],))
        self.assertV06Error(self.start_rb(reg["claim_token"]), 409, "claimed_or_in_flight")
        other = self.anonymous()
        self.server.db_write("UPDATE registrations SET status = 'claimed' WHERE id = ?",
                             (other["registration_id"],))
        self.assertV06Error(self.start_rb(other["claim_token"]), 409, "claimed_or_in_flight")

    def test_a_v06_attempt_is_not_confirmed_as_a_read_back_one(self):
        # the two ceremonies share the page: each form only acts on its own mode
        reg = self.anonymous()
        block = self.start(reg["claim_token"]).json["claim_attempt"]
        uri = urllib.parse.urlsplit(block["verification_uri"])
        back = urllib.parse.parse_qs(uri.query)["return_to"][0]
        b = WebClient(self.server)
        b.sign_in(OWNER, return_to=back)
        page = b.get(back)
        self.assertIn(b'name="user_code"', page.body)
        r = b.post_form("/claim/confirm", {"claim_attempt_token": hidden(page.body,
                                                                         "claim_attempt_token"),
                                           "serial": "0"}, csrf=csrf_of(page.body))
        self.assertEqual(r.status, 400, r)  # the v0.6 form again: it needs the code
        self.assertIsNone(SHOWN_CODE.search(r.body))
        self.assertEqual(self.reg_row(reg["registration_id"]), ("pending_claim", None))


if __name__ == "__main__":
    unittest.main()
