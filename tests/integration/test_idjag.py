"""The agent-verified flow against the real server and a real provider
process: ID-JAG verification (every check), user matching, delegations,
logout-token revocation and the operator's bulk revoke."""
import base64
import hashlib
import hmac
import json
import re
import subprocess
import time
import unittest

from harness import (ID_JAG_URN, SERVER, Provider, Server, ServerTest, claim_link,
                     provider_overrides, register_idjag, send_logout)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class IdJagTestBase(unittest.TestCase):
    SERVER_OVERRIDES = {}
    PROVIDER_KEYS = {}

    def setUp(self):
        self.provider = Provider().start()
        overrides = provider_overrides(self.provider, **self.PROVIDER_KEYS)
        for k, v in self.SERVER_OVERRIDES.items():
            overrides.setdefault(k, {}).update(v)
        self.server = Server(overrides).start()

    def tearDown(self):
        rc = self.server.stop()
        self.server.cleanup()
        self.provider.stop()
        self.assertEqual(rc, 0)

    def mint(self, key="es", **over):
        return self.provider.sign(self.provider.claims(self.server, **over), key=key)

    def assertError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json["error"], code, r.json)
        self.assertTrue(r.json["message"])


class VerificationTest(IdJagTestBase):
    def test_es256_and_rs256_with_both_credential_types(self):
        for key in ("es", "rs"):
            for cred in ("access_token", "api_key"):
                sub = "u-" + key + cred
                r = register_idjag(self.server,
                                   self.mint(key=key, sub=sub, email=sub + "@example.test"), cred)
                self.assertEqual(r.status, 200, r)
                body = r.json
                self.assertEqual(body["registration_type"], "agent-provider")
                self.assertEqual(body["credential_type"], cred)
                self.assertEqual(body["scopes"], ["api.read", "api.write"])
                self.assertNotIn("claim_token", body)
                self.assertNotIn("refresh_token", body)
                if cred == "api_key":
                    self.assertIsNone(body["credential_expires"])
                else:
                    self.assertIsNotNone(body["credential_expires"])
                me = self.server.bearer("GET", "/api/resource", body["credential"])
                self.assertEqual(me.status, 200, me)
                self.assertEqual(me.json["source"], "id_jag")
                self.assertEqual(me.json["email"], sub + "@example.test")
                self.assertEqual(self.server.bearer("POST", "/api/resource", body["credential"],
                                                    body={}).status, 200)
        created = [e for e in self.server.audit_events() if e["event"] == "registration.created"]
        self.assertEqual(created[0]["iss"], self.provider.url)
        self.assertEqual(created[0]["agent_platform"], "test-agent")
        self.assertEqual(created[0]["agent_context_id"], "chat-1")

    def test_the_created_event_names_the_user_and_whether_the_registration_is_new(self):
        # Most of the event is packed before the job reaches the store
        # writer; the user and the new_registration flag come from the job.
        sub = "event-subject"
        first = register_idjag(self.server, self.mint(sub=sub, email=sub + "@example.test"))
        again = register_idjag(self.server, self.mint(sub=sub, email=sub + "@example.test"))
        self.assertEqual(first.status, 200, first)
        self.assertEqual(again.status, 200, again)
        reg = first.json["registration_id"]
        self.assertEqual(again.json["registration_id"], reg)
        created = [e for e in self.server.audit_events()
                   if e["event"] == "registration.created" and e["registration_id"] == reg]
        self.assertEqual([e["new_registration"] for e in created], [True, False])
        user = self.server.db_query(
            "SELECT user_id FROM registrations WHERE id = ?", (reg,))[0][0]
        self.assertTrue(user.startswith("usr_"), user)
        self.assertEqual({e["user_id"] for e in created}, {user})
        self.assertEqual({e["sub"] for e in created}, {sub})
        self.assertEqual({e["ip"] for e in created}, {"127.0.0.1"})

    def test_discovery_advertises_the_id_jag_flow(self):
        aa = self.server.get("/.well-known/oauth-authorization-server").json["agent_auth"]
        self.assertEqual(aa["revocation_uri"], self.server.url + "/agent/auth/revoke")
        self.assertIn(ID_JAG_URN, aa["identity_assertion"]["assertion_types_supported"])
        self.assertEqual(len(aa["events_supported"]), 1)
        self.assertIn(ID_JAG_URN, self.server.get("/auth.md").body.decode())

    def test_the_resource_identifier_is_also_an_accepted_audience(self):
        r = register_idjag(self.server, self.mint(aud=self.server.url + "/api/"))
        self.assertEqual(r.status, 200, r)
        r = register_idjag(self.server, self.mint(aud=[self.server.url]))
        self.assertEqual(r.status, 200, r)

    def test_replay_is_refused(self):
        token = self.mint()
        self.assertEqual(register_idjag(self.server, token).status, 200)
        self.assertError(register_idjag(self.server, token), 400, "replay_detected")

    def test_a_refused_token_does_not_burn_its_jti(self):
        claims = self.provider.claims(self.server, client_id="https://nope.test")
        self.assertError(register_idjag(self.server, self.provider.sign(claims)), 400,
                         "invalid_client_id")
        claims["client_id"] = self.provider.url
        self.assertEqual(register_idjag(self.server, self.provider.sign(claims)).status, 200)

    def test_untrusted_issuer(self):
        self.assertError(register_idjag(self.server, self.mint(iss="https://evil.test")), 400,
                         "invalid_issuer")

    def test_wrong_and_foreign_array_audiences(self):
        for aud in ("https://other.test", self.server.url + "/", [self.server.url, "https://x"],
                    ["https://other.test"], [], 5):
            self.assertError(register_idjag(self.server, self.mint(aud=aud)), 400,
                             "invalid_audience")

    def test_expired_and_missing_exp(self):
        now = int(time.time())
        self.assertError(register_idjag(self.server, self.mint(iat=now - 900, exp=now - 600)),
                         400, "expired")
        self.assertError(register_idjag(self.server, self.mint(exp=None)), 400, "expired")

    def test_a_hostile_exp_is_refused_without_overflow(self):
        # exp + clock_skew overflowed int64 here (UBSan aborted the server).
        now = int(time.time())
        for exp in (2**63 - 1, 2**63 - 30, now + 10 * 365 * 86400):
            r = register_idjag(self.server, self.mint(iat=now, exp=exp))
            self.assertError(r, 400, "invalid_request")
            self.assertIn("lifetime", r.json["message"])
        token = self.provider.sign(self.provider.logout_claims(self.server, exp=2**63 - 1),
                                   typ="logout+jwt")
        r = send_logout(self.server, token)
        self.assertError(r, 400, "invalid_request")
        self.assertIn("lifetime", r.json["message"])
        # The server is alive and a token at the cap (3600 s) still works.
        r = register_idjag(self.server, self.mint(iat=now, exp=now + 3600))
        self.assertEqual(r.status, 200, r)

    def test_iat_far_in_the_future(self):
        now = int(time.time())
        r = register_idjag(self.server, self.mint(iat=now + 3600, exp=now + 3900))
        self.assertError(r, 400, "invalid_request")
        self.assertIn("iat", r.json["message"])

    def test_tampered_payload(self):
        h, p, s = self.mint().split(".")
        claims = json.loads(unb64url(p))
        claims["sub"] = "someone-else"
        forged = ".".join([h, b64url(json.dumps(claims).encode()), s])
        self.assertError(register_idjag(self.server, forged), 400, "invalid_signature")

    def test_stripped_signature(self):
        h, p, _ = self.mint().split(".")
        for forged in (h + "." + p + ".", h + "." + p):
            r = register_idjag(self.server, forged)
            self.assertEqual(r.status, 400, r)
            self.assertIn(r.json["error"], ("invalid_signature", "invalid_request"))

    def test_alg_none(self):
        claims = self.provider.claims(self.server)
        kid = self.provider.stats()["es_kid"]
        header = {"alg": "none", "typ": "oauth-id-jag+jwt", "kid": kid}
        token = b64url(json.dumps(header).encode()) + "." + \
            b64url(json.dumps(claims).encode()) + "."
        self.assertError(register_idjag(self.server, token), 400, "invalid_signature")

    def test_hs256_signed_with_the_public_key(self):
        jwks = json.loads(self.server_fetch_jwks())
        rsa = [k for k in jwks["keys"] if k["kty"] == "RSA"][0]
        claims = self.provider.claims(self.server)
        header = {"alg": "HS256", "typ": "oauth-id-jag+jwt", "kid": rsa["kid"]}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode())).encode()
        for secret in (json.dumps(rsa).encode(), unb64url(rsa["n"])):
            sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
            token = signing_input.decode() + "." + b64url(sig)
            self.assertError(register_idjag(self.server, token), 400, "invalid_signature")

    def server_fetch_jwks(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.provider.port)
        try:
            conn.request("GET", "/.well-known/jwks.json")
            return conn.getresponse().read()
        finally:
            conn.close()

    def test_alg_that_does_not_fit_the_key(self):
        # An RS256 header naming the EC key's kid.
        kid = self.provider.stats()["es_kid"]
        token = self.provider.sign(self.provider.claims(self.server), key="rs", kid=kid)
        self.assertError(register_idjag(self.server, token), 400, "invalid_signature")

    def test_missing_verified_email_and_phone(self):
        for over in ({"email_verified": False}, {"email_verified": None},
                     {"email_verified": "true"}, {"email": None, "email_verified": True}):
            self.assertError(register_idjag(self.server, self.mint(**over)), 400,
                             "missing_verified_email")
        r = register_idjag(self.server, self.mint(email=None, email_verified=None,
                                                  phone_number="+15553805188",
                                                  phone_number_verified=True))
        self.assertEqual(r.status, 200, r)

    def test_unaccepted_client_id(self):
        self.assertError(register_idjag(self.server, self.mint(client_id="https://other.test")),
                         400, "invalid_client_id")
        self.assertError(register_idjag(self.server, self.mint(client_id=None)), 400,
                         "invalid_request")

    def test_missing_sub_and_jti(self):
        for over in ({"sub": None}, {"jti": None}, {"sub": ""}, {"jti": 7}):
            self.assertError(register_idjag(self.server, self.mint(**over)), 400,
                             "invalid_request")

    def test_typ_confusion_both_ways(self):
        logout = self.provider.sign(self.provider.logout_claims(self.server), typ="logout+jwt")
        r = register_idjag(self.server, logout)
        self.assertError(r, 400, "invalid_request")
        self.assertIn("typ", r.json["message"])
        idjag = self.mint()
        r = send_logout(self.server, idjag)
        self.assertError(r, 400, "invalid_request")
        self.assertIn("typ", r.json["message"])
        for typ in ("JWT", "at+jwt", "oauth-id-jag+JWT"):
            token = self.provider.sign(self.provider.claims(self.server), typ=typ)
            self.assertError(register_idjag(self.server, token), 400, "invalid_request")

    def test_a_token_over_16_kib(self):
        token = self.mint(padding="x" * 17000)
        r = register_idjag(self.server, token)
        self.assertError(r, 400, "invalid_request")
        self.assertIn("longer than", r.json["message"])

    def test_garbage_assertions(self):
        for junk in ("x", "a.b.c", "a.b.c.d.e", "....", "eyJ9.eyJ9.", "é.é.é"):
            r = register_idjag(self.server, junk)
            self.assertEqual(r.status, 400, (junk, r))


class ReplayAcrossRestartTest(IdJagTestBase):
    def test_a_restart_does_not_reopen_the_replay_window(self):
        token = self.mint()
        self.assertEqual(register_idjag(self.server, token).status, 200)
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        self.assertError(register_idjag(self.server, token), 400, "replay_detected")


class IdentityRateLimitTest(IdJagTestBase):
    SERVER_OVERRIDES = {"limits": {"identity_per_ip": "2", "identity_global": "0"}}

    def test_id_jag_registrations_are_rate_limited_per_ip(self):
        for i in range(2):
            self.assertEqual(register_idjag(self.server, self.mint(sub="r%d" % i)).status, 200)
        r = register_idjag(self.server, self.mint(sub="r9"))
        self.assertError(r, 429, "rate_limited")
        self.assertTrue(r.header("Retry-After").isdigit())


class KeyRotationTest(IdJagTestBase):
    SERVER_OVERRIDES = {"limits": {"jwks_refetch_interval": "2"}}

    def test_unknown_kid_after_rotation_is_handled_by_one_refetch(self):
        self.assertEqual(register_idjag(self.server, self.mint()).status, 200)
        self.assertEqual(self.provider.stats()["jwks_fetches"], 1)
        time.sleep(2.1)  # past the refetch interval
        self.provider.rotate("es")
        r = register_idjag(self.server, self.mint(sub="after-rotation"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.provider.stats()["jwks_fetches"], 2)
        # Cached now: no more fetches for known kids.
        for i in range(3):
            self.assertEqual(register_idjag(self.server, self.mint(sub="s%d" % i)).status, 200)
        self.assertEqual(self.provider.stats()["jwks_fetches"], 2)

class ForgedKidFloodTest(IdJagTestBase):
    # The default 30 s refetch window: the whole flood falls inside it
    # however slow the machine is.
    def test_a_flood_of_unknown_kids_makes_at_most_one_fetch_per_window(self):
        self.assertEqual(register_idjag(self.server, self.mint()).status, 200)
        self.assertEqual(self.provider.stats()["jwks_fetches"], 1)
        for i in range(30):
            token = self.provider.sign(self.provider.claims(self.server), kid="forged-%d" % i)
            r = register_idjag(self.server, token)
            self.assertError(r, 400, "invalid_signature")
            self.assertIn("kid", r.json["message"])
        self.assertEqual(self.provider.stats()["jwks_fetches"], 1)
        # A genuine token still verifies from the cache.
        self.assertEqual(register_idjag(self.server, self.mint(sub="after")).status, 200)


class JwksDownTest(unittest.TestCase):
    def test_an_unreachable_jwks_is_a_clear_error_and_no_hang(self):
        provider = Provider()  # never started: nothing listens on its port
        server = Server(provider_overrides(provider)).start()
        try:
            claims = {"iss": provider.url, "sub": "u", "aud": server.url,
                      "client_id": provider.url, "jti": "j1", "iat": int(time.time()),
                      "exp": int(time.time()) + 300, "email": "a@b.test",
                      "email_verified": True}
            # A correctly shaped, unsigned token: the JWKS fetch comes first.
            hdr = base64.urlsafe_b64encode(json.dumps(
                {"alg": "ES256", "typ": "oauth-id-jag+jwt", "kid": "k"}).encode()).rstrip(b"=")
            body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
            token = hdr.decode() + "." + body.decode() + ".c2ln"
            t = time.time()
            r = register_idjag(server, token)
            self.assertLess(time.time() - t, 10)
            # The provider is down, not the token bad: 503 with Retry-After.
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json["error"], "temporarily_unavailable")
            self.assertIn("could not be fetched", r.json["message"])
            self.assertTrue(r.header("Retry-After").isdigit(), r)
            self.assertGreaterEqual(int(r.header("Retry-After")), 1)
            # The server still serves everything else.
            self.assertEqual(server.register_anonymous()["registration_type"], "anonymous")
        finally:
            server.cleanup()


class MatchingTest(IdJagTestBase):
    def test_the_same_subject_maps_to_the_same_user_and_registration(self):
        a = register_idjag(self.server, self.mint(sub="stable")).json
        b = register_idjag(self.server, self.mint(sub="stable", email="new@example.test")).json
        self.assertEqual(a["registration_id"], b["registration_id"])
        ua = self.server.bearer("GET", "/api/resource", a["credential"]).json["user_id"]
        ub = self.server.bearer("GET", "/api/resource", b["credential"]).json["user_id"]
        self.assertEqual(ua, ub)

    def existing_user(self, address):
        """A local account with this address, made by a claimed registration."""
        reg = self.server.register_anonymous()
        self.server.start_claim(reg["claim_token"], address)
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        return self.server.bearer("GET", "/api/resource", reg["credential"]).json["user_id"]

    def test_by_default_a_verified_email_never_takes_over_an_existing_user(self):
        # link_by_email used to default to on: any trusted provider's
        # "verified" email took over the matching local account.
        existing = self.existing_user("linda@example.test")
        mails = len(self.server.outbox_messages())
        r = register_idjag(self.server, self.mint(sub="linda", email="Linda@example.test"))
        self.assertEqual(r.status, 200, r)
        me = self.server.bearer("GET", "/api/resource", r.json["credential"]).json
        self.assertNotEqual(me["user_id"], existing)
        self.assertIsNone(me["email"])  # the address stays with its owner
        self.assertEqual(len(self.server.outbox_messages()), mails)

    def test_jit_creates_a_user_otherwise(self):
        r = register_idjag(self.server, self.mint(sub="fresh", email="fresh@example.test"))
        me = self.server.bearer("GET", "/api/resource", r.json["credential"]).json
        self.assertTrue(me["user_id"].startswith("usr_"))
        self.assertEqual(me["email"], "fresh@example.test")
        rows = self.server.db_query("SELECT created_by_agent FROM users WHERE id = ?",
                                    (me["user_id"],))
        self.assertEqual(rows, [(1,)])


class FirstLinkTest(IdJagTestBase):
    """link_by_email on: an unknown (iss, sub) whose verified email matches an
    existing account is linked only after the account's owner confirms with
    the code mailed to the account's own address."""
    PROVIDER_KEYS = {"link_by_email": "on"}

    def test_the_first_link_needs_the_code_mailed_to_the_account(self):
        s = self.server
        existing = MatchingTest.existing_user(self, "linda@example.test")
        mails = len(s.outbox_messages())
        r = register_idjag(s, self.mint(sub="linda", email="Linda@example.test"), "api_key")
        self.assertEqual(r.status, 200, r)
        body = r.json
        self.assertEqual(body["status"], "interaction_required")
        self.assertEqual(body["registration_type"], "agent-provider")
        self.assertNotIn("credential", body)
        self.assertTrue(body["claim_token"].startswith("clm_"))
        self.assertEqual(body["claim_url"], s.url + "/agent/auth/claim")
        self.assertEqual(body["post_claim_scopes"], ["api.read", "api.write"])
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM delegations"), [(0,)])
        # The code went to the account's own address, once.
        sent = s.outbox_messages()[mails:]
        self.assertEqual([m["To"] for m in sent], ["linda@example.test"])
        # The agent cannot redirect the mail to an address it controls.
        r = s.start_claim(body["claim_token"], "attacker@example.test")
        self.assertError(r, 400, "invalid_request")
        self.assertEqual(len(s.outbox_messages()), mails + 1)
        # A wrong code links nothing.
        otp = s.code_from_link(claim_link(sent[0]))
        wrong = "000000" if otp != "000000" else "111111"
        self.assertError(s.complete(body["claim_token"], wrong), 401, "otp_invalid")
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM delegations"), [(0,)])
        # The owner's code links, and only then is a credential issued.
        done = s.complete(body["claim_token"], otp)
        self.assertEqual(done.status, 200, done)
        self.assertEqual(done.json["credential_type"], "api_key")
        me = s.bearer("GET", "/api/resource", done.json["credential"]).json
        self.assertEqual(me["user_id"], existing)
        self.assertEqual(me["source"], "id_jag")
        # From now on the delegation answers at once, same registration.
        again = register_idjag(s, self.mint(sub="linda", email="linda@example.test"))
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json["registration_id"], body["registration_id"])
        self.assertEqual(s.bearer("GET", "/api/resource",
                                  again.json["credential"]).json["user_id"], existing)
        events = [e["event"] for e in s.audit_events()]
        self.assertIn("delegation.created", events)
        # A logout token reaches the linked credentials like any others.
        token = self.provider.sign(self.provider.logout_claims(s, sub="linda"), typ="logout+jwt")
        self.assertEqual(send_logout(s, token).json, {"revoked": 2})

    def test_an_unknown_email_is_provisioned_without_a_ceremony(self):
        mails = len(self.server.outbox_messages())
        r = register_idjag(self.server, self.mint(sub="new", email="new@example.test"))
        self.assertEqual(r.status, 200, r)
        self.assertIn("credential", r.json)
        self.assertEqual(len(self.server.outbox_messages()), mails)

    def test_an_operator_block_stops_the_ceremony(self):
        s = self.server
        existing = MatchingTest.existing_user(self, "bo@example.test")
        body = register_idjag(s, self.mint(sub="bo", email="bo@example.test")).json
        otp = s.code_from_link(claim_link(s.outbox_messages()[-1]))
        r = subprocess.run([SERVER, "revoke", "--config", s.config, "--user", existing],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertError(s.complete(body["claim_token"], otp), 400, "invalid_grant")
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM delegations"), [(0,)])
        self.assertError(register_idjag(s, self.mint(sub="bo", email="bo@example.test")), 400,
                         "invalid_grant")


class NoLinkingTest(IdJagTestBase):
    PROVIDER_KEYS = {"link_by_email": "off", "link_by_phone": "off"}

    def test_without_linking_an_unknown_subject_never_attaches_by_email(self):
        first = register_idjag(self.server, self.mint(sub="one", email="same@example.test"))
        second = register_idjag(self.server, self.mint(sub="two", email="same@example.test"))
        u1 = self.server.bearer("GET", "/api/resource", first.json["credential"]).json
        u2 = self.server.bearer("GET", "/api/resource", second.json["credential"]).json
        self.assertNotEqual(u1["user_id"], u2["user_id"])


class NoJitTest(IdJagTestBase):
    SERVER_OVERRIDES = {"flows": {"jit": "off"}}

    def test_jit_off_refuses_an_unknown_user(self):
        r = register_idjag(self.server, self.mint(sub="nobody", email="nobody@example.test"))
        self.assertError(r, 400, "invalid_request")
        self.assertIn("does not create accounts", r.json["message"])


class RevocationTest(IdJagTestBase):
    def test_a_logout_token_revokes_every_credential_of_that_subject(self):
        mine = [register_idjag(self.server, self.mint(sub="victim"), t).json["credential"]
                for t in ("access_token", "api_key", "access_token")]
        other = register_idjag(self.server, self.mint(sub="bystander",
                                                      email="b@example.test")).json["credential"]
        token = self.provider.sign(self.provider.logout_claims(self.server, sub="victim"),
                                   typ="logout+jwt")
        r = send_logout(self.server, token)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"revoked": 3})
        for cred in mine:
            r = self.server.bearer("GET", "/api/resource", cred)
            self.assertEqual(r.status, 401)
            self.assertIn("resource_metadata=", r.header("WWW-Authenticate"))
        self.assertEqual(self.server.bearer("GET", "/api/resource", other).status, 200)
        self.assertError(send_logout(self.server, token), 400, "replay_detected")
        events = [e for e in self.server.audit_events() if e["event"] == "registration.revoked"]
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["sub"], "victim")
        self.assertEqual(events[0]["iss"], self.provider.url)
        self.assertEqual(events[0]["agent_platform"], "test-agent")
        # The provider may vouch again later: a fresh ID-JAG registers anew.
        r = register_idjag(self.server, self.mint(sub="victim"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.server.bearer("GET", "/api/resource",
                                            r.json["credential"]).status, 200)

    def test_the_oidc_form_encoding_and_the_resource_audience(self):
        cred = register_idjag(self.server, self.mint(sub="f", aud=self.server.url + "/api/"))
        token = self.provider.sign(self.provider.logout_claims(self.server, sub="f"),
                                   typ="logout+jwt", key="rs")
        r = send_logout(self.server, token, form=True)
        self.assertEqual(r.json, {"revoked": 1})
        self.assertEqual(self.server.bearer("GET", "/api/resource",
                                            cred.json["credential"]).status, 401)

    def test_bad_logout_tokens(self):
        lc = self.provider.logout_claims
        cases = [
            (lc(self.server, events=None), "invalid_request"),
            (lc(self.server, events={"https://other.test/event": {}}), "invalid_request"),
            (lc(self.server, nonce="n"), "invalid_request"),
            (lc(self.server, iat=int(time.time()) - 3600), "expired"),
            (lc(self.server, iat=int(time.time()) - 3600, exp=int(time.time()) - 60), "expired"),
            (lc(self.server, aud="https://other.test"), "invalid_audience"),
            (lc(self.server, iss="https://evil.test"), "invalid_issuer"),
            (lc(self.server, sub=None), "invalid_request"),
            (lc(self.server, jti=None), "invalid_request"),
        ]
        for claims, code in cases:
            token = self.provider.sign(claims, typ="logout+jwt")
            self.assertError(send_logout(self.server, token), 400, code)
        r = self.server.request("POST", "/agent/auth/revoke", raw=b"x", content_type="text/plain")
        self.assertError(r, 415, "unsupported_media_type")
        # A logout token with a future exp and an old iat is fine (within the
        # [limits] id_jag_max_lifetime cap on exp - iat).
        token = self.provider.sign(lc(self.server, iat=int(time.time()) - 3000,
                                      exp=int(time.time()) + 60), typ="logout+jwt")
        self.assertEqual(send_logout(self.server, token).status, 200)


class BulkRevokeTest(IdJagTestBase):
    def revoke(self, *args):
        r = subprocess.run([SERVER, "revoke", "--config", self.server.config, *args],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return int(r.stdout.strip().splitlines()[-1].split()[1])

    def test_the_operator_revokes_by_registration_user_issuer_and_all(self):
        s = self.server
        a = register_idjag(s, self.mint(sub="a", email="a@example.test")).json
        b1 = register_idjag(s, self.mint(sub="b", email="b@example.test")).json
        b2 = register_idjag(s, self.mint(sub="b", email="b@example.test"), "api_key").json
        anon = s.register_anonymous()
        works = lambda c: s.bearer("GET", "/api/resource", c).status == 200

        # The revoke command is another process: the server's bearer cache
        # sees its change within AM_AUTH_CACHE_TTL_MS (1 s), so poll for it.
        def gone(*creds, bound=3.0):
            deadline = time.time() + bound
            while any(works(c) for c in creds):
                if time.time() > deadline:
                    return False
                time.sleep(0.05)
            return True

        self.assertEqual(self.revoke("--registration", a["registration_id"]), 1)
        self.assertTrue(gone(a["credential"]))
        self.assertTrue(works(b1["credential"]))
        user_b = s.bearer("GET", "/api/resource", b1["credential"]).json["user_id"]
        self.assertEqual(self.revoke("--user", user_b), 2)
        self.assertTrue(gone(b1["credential"], b2["credential"]))
        self.assertTrue(works(anon["credential"]))
        c = register_idjag(s, self.mint(sub="c", email="c@example.test")).json
        self.assertEqual(self.revoke("--issuer", self.provider.url), 1)
        self.assertTrue(gone(c["credential"]))
        self.assertEqual(self.revoke("--all"), 1)
        self.assertTrue(gone(anon["credential"]))
        self.assertEqual(self.revoke("--all"), 0)
        revoked = [e for e in s.audit_events() if e["event"] == "credential.revoked"]
        self.assertEqual(len(revoked), 5)
        self.assertTrue(all(e["reason"] == "operator" for e in revoked))

    def test_usage_errors(self):
        for args in ([], ["--bogus"], ["--user"], ["--all", "--user", "x"]):
            r = subprocess.run([SERVER, "revoke", *args], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 2, args)


class OperatorBlockTest(IdJagTestBase):
    """revoke --issuer/--subject/--user/--registration blocks durably: a fresh
    ID-JAG used to revive the same registration with a working credential."""

    def op(self, *args, rc=0):
        r = subprocess.run([SERVER, *args[:1], "--config", self.server.config, *args[1:]],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, rc, (args, r.stdout, r.stderr))
        return r.stdout

    def works(self, cred):
        return self.server.bearer("GET", "/api/resource", cred).status == 200

    def assertBlocked(self, **over):
        r = register_idjag(self.server, self.mint(**over))
        self.assertError(r, 400, "invalid_grant")
        self.assertIn("operator", r.json["message"])

    def redos(self):
        body = self.server.get("/metrics").body.decode()
        m = re.search(r"^authmd_store_batch_redos_total (\S+)$", body, re.M)
        self.assertIsNotNone(m, "no redo counter in /metrics")
        return float(m.group(1))

    def test_each_operator_revocation_sticks_until_unblocked(self):
        s, iss = self.server, self.provider.url
        first = register_idjag(s, self.mint(sub="a")).json
        reg, user = first["registration_id"], s.bearer(
            "GET", "/api/resource", first["credential"]).json["user_id"]
        targets = [("--issuer", iss), ("--issuer", iss, "--subject", "a"), ("--user", user),
                   ("--registration", reg)]
        for target in targets:
            cred = register_idjag(s, self.mint(sub="a")).json["credential"]
            out = self.op("revoke", *target)
            self.assertFalse(self.works(cred), target)
            # A fresh ID-JAG for the same subject does not revive it, and the
            # refused token does not burn its jti (the transaction rolled back).
            token = self.mint(sub="a")
            redos = self.redos()
            r = register_idjag(s, token)
            self.assertError(r, 400, "invalid_grant")
            if target is targets[0]:
                # The refusal undid the jti it had written: on SQLite the
                # writer's batch, run without savepoints, was rolled back
                # and run again with them; PostgreSQL keeps its savepoints
                # (docs/decisions.md, "Optimistic batches").
                self.assertEqual(self.redos(), redos + (0 if s.on_postgres else 1))
            self.assertFalse(self.works(cred))
            self.assertIn("blocked", out)
            rows = s.db_query("SELECT status FROM registrations WHERE id = ?", (reg,))
            self.assertEqual(rows, [("revoked",)], target)
            # Only what was named is blocked.
            other = register_idjag(s, self.mint(sub="bystander", email="b@example.test"))
            if target[0] == "--issuer" and len(target) == 2:
                self.assertError(other, 400, "invalid_grant")
            else:
                self.assertEqual(other.status, 200, (target, other))
            # Revoking again keeps one block; a restart keeps it too.
            self.assertIn("already blocked", self.op("revoke", *target))
            self.assertEqual(s.stop(), 0)
            s.start()
            self.assertBlocked(sub="a")
            self.assertIn("unblocked", self.op("unblock", *target))
            self.op("unblock", *target, rc=1)  # no such block any more
            r = register_idjag(s, token)
            self.assertEqual(r.status, 200, (target, r))
            self.assertEqual(r.json["registration_id"], reg)
            self.assertTrue(self.works(r.json["credential"]))
        events = s.audit_events()
        created = [e for e in events if e["event"] == "block.created"]
        lifted = [e for e in events if e["event"] == "block.lifted"]
        self.assertEqual([e["kind"] for e in created],
                         ["issuer", "subject", "user", "registration"])
        self.assertEqual([e["kind"] for e in lifted], [e["kind"] for e in created])
        self.assertEqual(created[1]["sub"], "a")
        self.assertEqual(created[3]["registration_id"], reg)

    def test_block_usage_errors(self):
        for args in (["unblock"], ["unblock", "--all"], ["revoke", "--subject", "a"],
                     ["unblock", "--subject", "a"], ["revoke", "--user", "u", "--issuer", "x"],
                     ["revoke", "--issuer", "x", "--user", "u"], ["revoke", "--user", ""]):
            r = subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, args)


class TrustListChangeTest(unittest.TestCase):
    def test_a_changed_trust_list_is_logged_and_audited_at_start(self):
        p1, p2 = Provider(), Provider()
        server = Server(provider_overrides(p1, name="one"))
        try:
            server.start()
            server.stop()
            with open(server.config, "a") as f:
                f.write("[provider two]\nissuer = %s\n" % p2.url)
            server.start()
            log = server.read_log()
            self.assertIn("trust list changed provider=two added", log)
            self.assertEqual(log.count("trust list changed provider=one"), 1)  # first start
            events = [e for e in server.audit_events() if e["event"] == "trust_list.changed"]
            self.assertEqual(events[-1]["providers"], {"two": "added"})
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
