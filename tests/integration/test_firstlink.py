"""v0.5's first-link gate at the v0.6 endpoints (issue 14 item 4): an ID-JAG
at /agent/identity that matches an existing account answers 401
interaction_required with a user_code claim block bound to that account's
address; its owner signs in at /login, types the code at /claim, and the
agent's poll of the claim grant gets the tokens; later ID-JAGs of the
subject are answered at once. Also [provider] max_auth_age per provider
(login_required) and v0.7's ID-JAG claim of an anonymous registration
(POST /agent/identity/claim {type: identity_assertion}). The same walk in
a real browser: tests/browser/firstlink.mjs."""
import base64
import json
import re
import subprocess
import time
import unittest
import urllib.parse

from harness import (ID_JAG_URN, SERVER, Provider, Server, provider_overrides,
                     register_idjag)
from webclient import WebClient, csrf_of, hidden

CLAIM_GRANT = "urn:workos:agent-auth:grant-type:claim"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYP = "oauth-id-jag+jwt"
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
OWNER = "owner@example.test"


class FirstLinkBase(unittest.TestCase):
    PROVIDER_KEYS = {"link_by_email": "on"}
    SERVER_OVERRIDES = {}

    def setUp(self):
        self.provider = Provider().start()
        overrides = provider_overrides(self.provider, **self.PROVIDER_KEYS)
        for k, v in self.SERVER_OVERRIDES.items():
            overrides.setdefault(k, {}).update(v)
        self.server = Server(overrides).start()

    def tearDown(self):
        rc = self.server.stop()
        if rc != 0:
            print(self.server.read_log())
        self.server.cleanup()
        self.provider.stop()
        self.assertEqual(rc, 0)

    # --- the agent's calls ---
    def mint(self, provider=None, **over):
        provider = provider or self.provider
        over.setdefault("auth_time", int(time.time()) - 5)
        return provider.sign(provider.claims(self.server, **over), typ=ASSERTION_TYP)

    def identity_idjag(self, token):
        return self.server.post("/agent/identity", {"type": "identity_assertion",
                                                    "assertion_type": ID_JAG_URN,
                                                    "assertion": token})

    def form(self, path, fields):
        return self.server.request("POST", path, raw=urllib.parse.urlencode(fields).encode(),
                                   content_type="application/x-www-form-urlencoded")

    def poll(self, claim_token):
        return self.form("/oauth2/token", {"grant_type": CLAIM_GRANT, "claim_token": claim_token})

    def exchange(self, assertion):
        return self.form("/oauth2/token", {"grant_type": JWT_BEARER, "assertion": assertion})

    # --- the account's owner ---
    def account(self, email=OWNER):
        """An existing account: the user signs in at the service once."""
        b = WebClient(self.server)
        self.assertEqual(b.sign_in(email).status, 303)
        return b

    def return_to(self, block):
        uri = urllib.parse.urlsplit(block["verification_uri"])
        return urllib.parse.parse_qs(uri.query)["return_to"][0]

    def open_as(self, email, block):
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

    # --- checks ---
    def assertV06Error(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json["error"], code, r.json)
        self.assertTrue(r.json["message"], r.json)

    def assertOAuthError(self, r, code):
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["error"], code, r.json)

    def assertBlock(self, block):
        self.assertRegex(block["user_code"], USER_CODE)
        self.assertEqual(block["interval"], 5)
        self.assertGreater(block["expires_in"], 0)
        self.assertTrue(block["verification_uri"].startswith(self.server.url + "/login?"))
        self.assertIn("user_code", block["verification_uri_complete"])

    def user_id(self, email):
        return self.server.db_query("SELECT id FROM users WHERE email = ?", (email,))[0][0]

    def delegations(self, sub):
        return self.server.db_query("SELECT user_id FROM delegations WHERE sub = ?", (sub,))

    def step_up(self, sub="fl-sub", email=OWNER):
        r = self.identity_idjag(self.mint(sub=sub, email=email))
        self.assertEqual(r.status, 401, r)
        return r.json


class FirstLinkTest(FirstLinkBase):
    def test_the_owner_links_and_the_agent_polls_to_its_tokens(self):
        self.account()
        r = self.identity_idjag(self.mint(sub="fl-sub", email=OWNER))
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("WWW-Authenticate").split(" ")[0], "AgentAuth")
        self.assertIn('error="interaction_required"', r.header("WWW-Authenticate"))
        body = r.json
        self.assertEqual(body["error"], "interaction_required")
        self.assertTrue(body["error_description"])
        self.assertEqual(body["registration_type"], "identity_assertion")
        self.assertTrue(body["claim_token"].startswith("clm_"))
        self.assertEqual(body["claim_url"], self.server.url + "/agent/identity/claim")
        self.assertEqual(body["post_claim_scopes"], ["api.read", "api.write"])
        self.assertTrue(body["claim_attempt_id"].startswith("cla_"))
        self.assertNotIn("identity_assertion", body)
        self.assertBlock(body["claim"])
        # bound to the existing account's address; nothing mailed (the
        # owner signed in once: that one mail only)
        rows = self.server.db_query("SELECT email, status FROM ceremony_attempts WHERE id = ?",
                                    (body["claim_attempt_id"],))
        self.assertEqual(rows, [(OWNER, "initiated")])
        self.assertEqual(len(self.server.outbox_messages()), 1)
        self.assertEqual(self.delegations("fl-sub"), [])
        self.assertOAuthError(self.poll(body["claim_token"]), "authorization_pending")
        # the owner signs in from the verification URL and sees the link page
        b, page = self.open_as(OWNER, body["claim"])
        self.assertEqual(page.status, 200, page)
        self.assertIn(b"is asking to link one of its users to your account", page.body)
        self.assertIn(b"<strong>test</strong>", page.body)  # the trust list's name
        self.assertIn(b"fl-sub", page.body)
        self.assertIn(OWNER.encode(), page.body)
        r = self.confirm(b, page, body["claim"]["user_code"])
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"Agent linked", r.body)
        self.assertEqual(self.delegations("fl-sub"), [(self.user_id(OWNER),)])
        events = [e for e in self.server.audit_events()
                  if e.get("registration_id") == body["registration_id"]]
        created = [e for e in events if e["event"] == "delegation.created"]
        self.assertEqual(len(created), 1)
        self.assertEqual(created[0]["via"], "first_link")
        self.assertEqual(created[0]["user_id"], self.user_id(OWNER))
        # the poll answers the tokens once
        t = self.poll(body["claim_token"])
        self.assertEqual(t.status, 200, t)
        self.assertEqual(t.json["scope"], "api.read api.write")
        r = self.server.bearer("GET", "/api/resource", t.json["access_token"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["email"], OWNER)
        self.assertEqual(self.exchange(t.json["identity_assertion"]).status, 200)
        self.assertOAuthError(self.poll(body["claim_token"]), "invalid_grant")
        # a later ID-JAG of the subject: credentials at once
        again = self.identity_idjag(self.mint(sub="fl-sub", email=OWNER))
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json["registration_id"], body["registration_id"])
        self.assertEqual(self.exchange(again.json["identity_assertion"]).status, 200)

    def test_signed_in_as_another_account_the_page_refuses(self):
        self.account()
        body = self.step_up()
        b, page = self.open_as("mallory@example.test", body["claim"])
        self.assertEqual(page.status, 403, page)
        self.assertNotIn(b"user_code", page.body)
        # and a forged POST with that session is refused as well
        r = b.post_form("/claim/confirm",
                        {"claim_attempt_token": self.return_to(body["claim"]).split("=", 1)[1],
                         "user_code": body["claim"]["user_code"]}, csrf=csrf_of(page.body))
        self.assertEqual(r.status, 403, r)
        self.assertEqual(self.delegations("fl-sub"), [])
        self.assertOAuthError(self.poll(body["claim_token"]), "authorization_pending")

    def test_reject_links_nothing(self):
        self.account()
        body = self.step_up()
        b, page = self.open_as(OWNER, body["claim"])
        r = self.reject(b, page)
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"Request rejected", r.body)
        self.assertEqual(self.delegations("fl-sub"), [])
        self.assertOAuthError(self.poll(body["claim_token"]), "access_denied")
        # the subject is still unknown: the next ID-JAG asks again
        self.assertEqual(self.step_up()["error"], "interaction_required")

    def test_an_expired_code_links_nothing(self):
        self.account()
        body = self.step_up()
        self.server.db_write("UPDATE ceremony_attempts SET expires_at = 1 WHERE id = ?",
                             (body["claim_attempt_id"],))
        self.assertOAuthError(self.poll(body["claim_token"]), "expired_token")
        b, page = self.open_as(OWNER, body["claim"])
        self.assertEqual(page.status, 400, page)  # expired_token's status
        self.assertIn(b"expired", page.body)
        self.assertEqual(self.delegations("fl-sub"), [])
        # a fresh ID-JAG starts again with a new code
        fresh = self.step_up()
        self.assertNotEqual(fresh["claim"]["user_code"], body["claim"]["user_code"])

    def test_no_new_code_at_the_claim_endpoint_and_v01_is_unchanged(self):
        self.account()
        body = self.step_up()
        r = self.server.post("/agent/identity/claim",
                             {"claim_token": body["claim_token"], "email": OWNER})
        self.assertV06Error(r, 409, "claimed_or_in_flight")
        # v0.1's /agent/auth first link keeps mailing its code
        before = len(self.server.outbox_messages())
        r = register_idjag(self.server, self.mint(sub="v01-sub", email=OWNER))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "interaction_required")
        self.server.wait_mail_queue()
        self.assertEqual(len(self.server.outbox_messages()), before + 1)
        self.assertNotIn("claim", r.json)
        # whose claim token the v0.6 claim grant does not know
        self.assertOAuthError(self.poll(r.json["claim_token"]), "invalid_grant")


class MaxAuthAgeTest(FirstLinkBase):
    """Two providers in one config: strict (60 s) and lax (0: optional)."""
    PROVIDER_KEYS = {"max_auth_age": "60"}

    def setUp(self):
        self.provider = Provider().start()
        self.lax = Provider().start()
        overrides = provider_overrides(self.provider, "strict", max_auth_age="60",
                                       require_auth_time="on")
        overrides.update(provider_overrides(self.lax, "lax", max_auth_age="0"))
        self.server = Server(overrides).start()

    def tearDown(self):
        super().tearDown()
        self.lax.stop()

    def test_each_provider_has_its_window(self):
        now = int(time.time())
        r = self.identity_idjag(self.mint(sub="s1", auth_time=now - 120))
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json["error"], "login_required")
        self.assertEqual(r.json["max_age"], 60)
        self.assertIn("more than 60 s", r.json["error_description"])
        self.assertIn('max_age="60"', r.header("WWW-Authenticate"))
        self.assertIn('error="login_required"', r.header("WWW-Authenticate"))
        r = self.identity_idjag(self.mint(sub="s1", auth_time=None))
        self.assertEqual((r.status, r.json["max_age"]), (401, 60))
        self.assertEqual(self.identity_idjag(self.mint(sub="s1", auth_time=now - 10)).status,
                         200)
        # the lax one: auth_time optional, any age
        self.assertEqual(self.identity_idjag(self.mint(self.lax, sub="l1", auth_time=None,
                                                       email="l1@example.test")).status, 200)
        self.assertEqual(self.identity_idjag(self.mint(self.lax, sub="l2",
                                                       auth_time=now - 86400 * 20,
                                                       email="l2@example.test")).status, 200)
        # a future auth_time is refused even there
        r = self.identity_idjag(self.mint(self.lax, sub="l3", auth_time=now + 3600))
        self.assertEqual((r.status, r.json["error"], r.json["max_age"]),
                         (401, "login_required", 0))

    def test_v01_requires_auth_time_where_the_provider_says_so(self):
        now = int(time.time())
        claims = self.provider.claims(self.server, sub="v1", auth_time=now - 120)
        r = register_idjag(self.server, self.provider.sign(claims))
        self.assertEqual((r.status, r.json["error"]), (401, "login_required"), r.json)
        claims = self.provider.claims(self.server, sub="v1")
        r = register_idjag(self.server, self.provider.sign(claims))
        self.assertEqual((r.status, r.json["error"]), (401, "login_required"), r.json)
        claims = self.provider.claims(self.server, sub="v1", auth_time=now)
        self.assertEqual(register_idjag(self.server, self.provider.sign(claims)).status, 200)
        # the lax provider (require_auth_time off): v0.1 as ever
        claims = self.lax.claims(self.server, sub="v2", email="v2@example.test")
        self.assertEqual(register_idjag(self.server, self.lax.sign(claims)).status, 200)


def jwt_claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class IdentityClaimTest(FirstLinkBase):
    """v0.7 (unmerged): POST /agent/identity/claim {type: identity_assertion}."""

    def anonymous(self):
        r = self.server.post("/agent/identity", {"type": "anonymous"})
        self.assertEqual(r.status, 200, r)
        return r.json

    def claim(self, claim_token, assertion, **extra):
        body = {"type": "identity_assertion", "claim_token": claim_token, "assertion": assertion}
        body.update(extra)
        return self.server.post("/agent/identity/claim", body)

    def reg_row(self, rid):
        return self.server.db_query("SELECT status, user_id FROM registrations WHERE id = ?",
                                    (rid,))[0]

    def test_a_clean_match_claims_at_once_with_a_new_user(self):
        reg = self.anonymous()
        pre = self.exchange(reg["identity_assertion"]).json["access_token"]
        r = self.claim(reg["claim_token"], self.mint(sub="c1", email="c1@example.test"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        body = r.json
        self.assertEqual((body["status"], body["registration_id"]),
                         ("claimed", reg["registration_id"]))
        self.assertEqual(body["identity"]["assertion"], body["identity_assertion"])
        self.assertEqual(body["identity"]["expires_at"], body["assertion_expires"])
        self.assertEqual(body["scopes"], ["api.read", "api.write"])
        # the claim starts a refresh-token family (proposal (b)) that rotates
        rt = body["identity"]["refresh_token"]
        self.assertTrue(rt.startswith("rt_"), body)
        rotated = self.server.post("/agent/identity", {"type": "refresh", "refresh_token": rt})
        self.assertEqual(rotated.status, 200, rotated)
        self.assertNotEqual(rotated.json["identity"]["refresh_token"], rt)
        claims = jwt_claims(body["identity_assertion"])
        self.assertEqual((claims["sub"], claims["email"], claims["registration_type"]),
                         (reg["registration_id"], "c1@example.test", "anonymous"))
        user = self.user_id("c1@example.test")
        self.assertEqual(self.reg_row(reg["registration_id"]), ("claimed", user))
        self.assertEqual(self.delegations("c1"), [(user,)])
        # the pre-claim token ended; the new assertion gets the post-claim scopes
        self.assertEqual(self.server.bearer("GET", "/api/resource", pre).status, 401)
        t = self.exchange(body["identity_assertion"])
        self.assertEqual((t.status, t.json["scope"]), (200, "api.read api.write"))
        events = {e["event"]: e for e in self.server.audit_events()
                  if e.get("registration_id") == reg["registration_id"]}
        self.assertEqual(events["claim.confirmed"]["ceremony"], "identity_assertion")
        self.assertEqual(events["claim.confirmed"]["credentials_revoked"], 1)
        self.assertEqual(events["delegation.created"]["via"], "identity_claim")
        # claimed now: a second claim is refused, whatever it carries
        r = self.claim(reg["claim_token"], self.mint(sub="c1", email="c1@example.test"))
        self.assertV06Error(r, 409, "claimed_or_in_flight")
        # the subject's later ID-JAG finds this registration through the delegation
        later = self.identity_idjag(self.mint(sub="c1", email="c1@example.test"))
        self.assertEqual((later.status, later.json["registration_id"]),
                         (200, reg["registration_id"]), later)
        # and the provider's revocation of the subject ends it (2026-07-23 SET)
        set_token = self.provider.sign(self.provider.logout_claims(self.server, sub="c1"),
                                       typ="secevent+jwt")
        r = self.server.request("POST", "/agent/event/notify", raw=set_token.encode(),
                                content_type="application/secevent+jwt")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(self.server.bearer("GET", "/api/resource",
                                            t.json["access_token"]).status, 401)
        self.assertEqual(self.reg_row(reg["registration_id"])[0], "revoked")

    def test_a_subject_with_a_delegation_claims_for_its_user(self):
        first = self.identity_idjag(self.mint(sub="c2", email="c2@example.test"))
        self.assertEqual(first.status, 200, first)
        user = self.user_id("c2@example.test")
        reg = self.anonymous()
        r = self.claim(reg["claim_token"], self.mint(sub="c2", email="c2@example.test"))
        self.assertEqual((r.status, r.json["status"]), (200, "claimed"), r)
        self.assertEqual(self.reg_row(reg["registration_id"]), ("claimed", user))
        self.assertEqual(self.delegations("c2"), [(user,)])  # no second one

    def test_a_step_up_starts_the_first_link_ceremony(self):
        self.account()
        reg = self.anonymous()
        r = self.claim(reg["claim_token"], self.mint(sub="c3", email=OWNER))
        self.assertEqual(r.status, 200, r)
        body = r.json
        self.assertEqual((body["status"], body["registration_id"]),
                         ("initiated", reg["registration_id"]))
        self.assertBlock(body["claim_attempt"])
        self.assertNotIn("identity_assertion", body)
        rows = self.server.db_query("SELECT email FROM ceremony_attempts WHERE id = ?",
                                    (body["claim_attempt_id"],))
        self.assertEqual(rows, [(OWNER,)])
        self.assertEqual(self.reg_row(reg["registration_id"]), ("pending_claim", None))
        self.assertOAuthError(self.poll(reg["claim_token"]), "authorization_pending")
        b, page = self.open_as(OWNER, body["claim_attempt"])
        self.assertEqual(page.status, 200, page)
        self.assertIn(b"is asking to link one of its users", page.body)
        self.assertIn(b"c3", page.body)
        self.assertEqual(self.confirm(b, page, body["claim_attempt"]["user_code"]).status, 200)
        self.assertEqual(self.reg_row(reg["registration_id"]),
                         ("claimed", self.user_id(OWNER)))
        rows = self.server.db_query("SELECT link_iss, link_sub FROM ceremony_attempts "
                                    "WHERE id = ?", (body["claim_attempt_id"],))
        self.assertEqual(rows, [(self.provider.url, "c3")])
        # the owner's confirmation linked the subject too
        self.assertEqual(self.delegations("c3"), [(self.user_id(OWNER),)])
        t = self.poll(reg["claim_token"])
        self.assertEqual(t.status, 200, t)
        self.assertEqual(t.json["scope"], "api.read api.write")
        later = self.identity_idjag(self.mint(sub="c3", email=OWNER))
        self.assertEqual((later.status, later.json["registration_id"]),
                         (200, reg["registration_id"]), later)

    def test_only_anonymous_unclaimed_registrations(self):
        self.account()
        sa = self.server.post("/agent/identity", {"type": "service_auth", "login_hint": OWNER})
        self.assertEqual(sa.status, 200, sa)
        self.assertV06Error(self.claim(sa.json["claim_token"], self.mint(sub="c4")), 409,
                            "claimed_or_in_flight")
        link = self.step_up(sub="c5")
        self.assertV06Error(self.claim(link["claim_token"], self.mint(sub="c6")), 409,
                            "claimed_or_in_flight")
        self.assertV06Error(self.claim("clm_unknown", self.mint(sub="c7")), 400,
                            "invalid_claim_token")
        reg = self.anonymous()
        self.server.db_write("UPDATE registrations SET expires_at = 1 WHERE id = ?",
                             (reg["registration_id"],))
        self.assertV06Error(self.claim(reg["claim_token"], self.mint(sub="c8")), 410,
                            "claim_expired")
        # a malformed body and an unknown type
        self.assertV06Error(self.server.post("/agent/identity/claim",
                                             {"type": "identity_assertion",
                                              "claim_token": reg["claim_token"]}),
                            400, "invalid_request")
        self.assertV06Error(self.server.post("/agent/identity/claim",
                                             {"type": "magic", "claim_token": "x"}),
                            400, "invalid_request")

    def test_every_id_jag_refusal_on_this_path(self):
        reg = self.anonymous()
        now = int(time.time())
        kid = self.provider.stats()["es_kid"]
        good = self.mint(sub="n1", email="n1@example.test")
        h, p, sig = good.split(".")
        claims = jwt_claims(good)
        claims["sub"] = "someone-else"  # changed after signing
        forged = (h + "." + base64.urlsafe_b64encode(json.dumps(claims).encode())
                  .rstrip(b"=").decode() + "." + sig)
        cases = {
            "invalid_issuer": self.mint(sub="n1", iss="https://evil.test"),
            "invalid_signature": forged,
            "expired": self.mint(sub="n1", iat=now - 900, exp=now - 600),
            "invalid_audience": self.mint(sub="n1", aud="https://other.test"),
            "invalid_client_id": self.mint(sub="n1", client_id="https://other.test"),
            "missing_verified_email": self.mint(sub="n1", email_verified=False),
            "invalid_request": self.provider.sign(
                self.provider.claims(self.server, sub="n1", auth_time=now), typ="JWT",
                kid=kid),
        }
        for code, token in cases.items():
            with self.subTest(code):
                self.assertV06Error(self.claim(reg["claim_token"], token), 400, code)
        with self.subTest("login_required"):
            r = self.claim(reg["claim_token"], self.mint(sub="n1", auth_time=now - 7200))
            self.assertEqual((r.status, r.json["error"], r.json["max_age"]),
                             (401, "login_required", 3600), r.json)
            self.assertIn('max_age="3600"', r.header("WWW-Authenticate"))
        # nothing was claimed by any of them
        self.assertEqual(self.reg_row(reg["registration_id"])[0], "unclaimed")
        with self.subTest("replay_detected"):
            token = self.mint(sub="n2", email="n2@example.test")
            self.assertEqual(self.identity_idjag(token).status, 200)
            self.assertV06Error(self.claim(reg["claim_token"], token), 400, "replay_detected")
        with self.subTest("invalid_grant (operator block)"):
            r = subprocess.run([SERVER, "revoke", "--config", self.server.config, "--issuer",
                                self.provider.url, "--subject", "n3"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertV06Error(self.claim(reg["claim_token"],
                                           self.mint(sub="n3", email="n3@example.test")),
                                400, "invalid_grant")
        self.assertEqual(self.reg_row(reg["registration_id"])[0], "unclaimed")
        self.assertEqual(self.delegations("n3"), [])


if __name__ == "__main__":
    unittest.main()
