"""authmd-provider end to end with the real authmd-server: consent, minting,
key rotation, revocation delivered durably."""
import base64
import json
import os
import stat
import time
import unittest

from harness import RealProvider, Server, provider_overrides, register_idjag


def payload(token):
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def header(token):
    h = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))


def wait_for(predicate, timeout=20, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class ProviderTestBase(unittest.TestCase):
    PROVIDER = {}
    SERVER = {"limits": {"jwks_refetch_interval": "1"}}

    def setUp(self):
        self.provider = RealProvider(self.PROVIDER)
        self.session = self.provider.add_user("ann@example.test")
        self.provider.start()
        overrides = provider_overrides(self.provider, name="prov")
        for k, v in self.SERVER.items():
            overrides.setdefault(k, {}).update(v)
        self.server = Server(overrides).start()
        self.aud = self.server.url
        self.revoke_uri = self.server.url + "/agent/auth/revoke"

    def tearDown(self):
        self.server.cleanup()
        rc = self.provider.stop()
        self.provider.cleanup()
        self.assertIn(rc, (0, None))

    def consent(self, mode="always", uri=True):
        r = self.provider.grant(self.session, self.aud, mode, self.revoke_uri if uri else None)
        self.assertEqual(r.status, 201, r)
        return r.json

    def mint(self, **extra):
        r = self.provider.mint(self.session, self.aud, **extra)
        self.assertEqual(r.status, 200, r)
        return r.json["assertion"]


class MintTest(ProviderTestBase):
    def test_a_minted_id_jag_registers_and_its_credential_works(self):
        self.consent()
        r = self.provider.mint(self.session, self.aud, agent_platform="cli",
                               agent_context_id="c-1", resource=self.server.url + "/api/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["assertion_type"], "urn:ietf:params:oauth:token-type:id-jag")
        self.assertEqual(r.json["expires_in"], 300)
        token = r.json["assertion"]
        h, c = header(token), payload(token)
        self.assertEqual(h["typ"], "oauth-id-jag+jwt")
        self.assertEqual(h["alg"], "ES256")
        for k in ("iss", "sub", "aud", "client_id", "jti", "iat", "exp", "email",
                  "email_verified"):
            self.assertIn(k, c)
        self.assertEqual(c["iss"], self.provider.url)
        self.assertEqual(c["aud"], self.aud)
        self.assertEqual(c["exp"] - c["iat"], 300)
        self.assertEqual(c["agent_platform"], "cli")
        self.assertEqual(c["resource"], self.server.url + "/api/")
        self.assertTrue(c["sub"].startswith("sub_"))
        reg = register_idjag(self.server, token)
        self.assertEqual(reg.status, 200, reg)
        me = self.server.bearer("GET", "/api/resource", reg.json["credential"])
        self.assertEqual(me.status, 200)
        self.assertEqual(me.json["email"], "ann@example.test")
        second = payload(self.mint())
        self.assertNotEqual(second["jti"], c["jti"])
        self.assertEqual(second["sub"], c["sub"])

    def test_minting_without_consent_is_refused(self):
        r = self.provider.mint(self.session, self.aud)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json["error"], "consent_required")
        self.provider.grant(self.session, "https://other.test")
        self.assertEqual(self.provider.mint(self.session, self.aud).status, 403)

    def test_a_once_grant_mints_once(self):
        self.consent("once")
        self.assertEqual(self.provider.mint(self.session, self.aud).status, 200)
        r = self.provider.mint(self.session, self.aud)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json["error"], "consent_required")
        self.assertEqual(self.provider.grants(self.session)[0]["status"], "consumed")

    def test_a_user_without_verified_email_or_phone_gets_no_token(self):
        s = self.provider.add_user("unverified@example.test", verified=False)
        self.provider.grant(s, self.aud)
        r = self.provider.mint(s, self.aud)
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["error"], "missing_verified_email")
        s = self.provider.add_user("phone@example.test", verified=False, phone="+15553805188")
        self.provider.grant(s, self.aud)
        tok = self.provider.mint(s, self.aud).json["assertion"]
        self.assertTrue(payload(tok)["phone_number_verified"])
        self.assertEqual(register_idjag(self.server, tok).status, 200)

    def test_sessions_and_input_are_checked(self):
        self.assertEqual(self.provider.request("GET", "/grants").status, 401)
        self.assertEqual(self.provider.request("GET", "/grants", session="ps_nope").status, 401)
        for body in ({"audience": "not a url"}, {"audience": self.aud, "mode": "twice"},
                     {"audience": self.aud, "revocation_uri": "ftp://x"}, {}):
            r = self.provider.request("POST", "/grants", body, self.session)
            self.assertEqual(r.status, 400, (body, r))
        sid = [line.split()[1] for line in
               self.provider.cli("session", "create", "--user", "ann@example.test")
               .stderr.splitlines() if line.startswith("session ")]
        self.assertTrue(sid)
        s2 = self.provider.cli("session", "create", "--user", "ann@example.test").stdout.strip()
        self.assertEqual(self.provider.request("GET", "/grants", session=s2).status, 200)
        self.assertNotEqual(self.provider.cli("session", "revoke", "--id", "ses_nope",
                                              check=False).returncode, 0)
        users = self.provider.cli("user", "list").stdout
        self.assertIn("ann@example.test", users)
        self.assertNotEqual(self.provider.cli("user", "add", "--email", "ann@example.test",
                                              check=False).returncode, 0)


class KeysTest(ProviderTestBase):
    PROVIDER = {"idjag": {"ttl": "10"}, "keys": {"overlap": "10"}}

    def test_jwks_carries_public_members_only_and_the_key_file_is_private(self):
        jwks = self.provider.request("GET", "/.well-known/jwks.json")
        self.assertIn("max-age=600", jwks.header("Cache-Control"))
        for k in jwks.json["keys"]:
            for private in ("d", "p", "q", "dp", "dq", "qi", "k"):
                self.assertNotIn(private, k)
            self.assertEqual(k["use"], "sig")
        path = os.path.join(self.provider.tmp, "keys", "signing.jwk")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)
        with open(path) as f:
            d = json.load(f)["d"]
        self.consent()
        minted = self.provider.mint(self.session, self.aud)
        grants = self.provider.request("GET", "/grants", session=self.session)
        self.assertNotIn(d, self.provider.read_log())
        for r in (jwks, minted, grants):
            self.assertNotIn(d.encode(), r.body)

    def test_rotation_keeps_old_tokens_valid_and_new_ones_verify_at_once(self):
        self.consent()
        first = self.mint()
        self.assertEqual(register_idjag(self.server, first).status, 200)  # server caches old key
        old_token = self.mint()  # signed with the old key, used after the rotation
        old_kid = header(old_token)["kid"]
        time.sleep(1.1)  # past the server's refetch interval
        new_kid = self.provider.cli("keys", "rotate").stdout.strip()
        self.assertNotEqual(new_kid, old_kid)
        fresh = self.mint()  # the running provider picked up the rotation
        self.assertEqual(header(fresh)["kid"], new_kid)
        r = register_idjag(self.server, fresh)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(register_idjag(self.server, old_token).status, 200)
        kids = [k["kid"] for k in self.provider.request("GET",
                                                        "/.well-known/jwks.json").json["keys"]]
        self.assertEqual(sorted(kids), sorted([old_kid, new_kid]))
        # After the overlap the old key is no longer published.
        gone = wait_for(lambda: [k["kid"] for k in self.provider.request(
            "GET", "/.well-known/jwks.json").json["keys"]] == [new_kid], timeout=15)
        self.assertTrue(gone)


class RevocationTest(ProviderTestBase):
    def registered_credential(self):
        r = register_idjag(self.server, self.mint())
        self.assertEqual(r.status, 200, r)
        return r.json["credential"]

    def test_deleting_a_grant_revokes_the_service_credential(self):
        grant = self.consent()
        cred = self.registered_credential()
        self.assertEqual(self.server.bearer("GET", "/api/resource", cred).status, 200)
        r = self.provider.request("DELETE", "/grants/" + grant["id"], session=self.session)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "revoked")
        self.assertTrue(wait_for(lambda: self.server.bearer("GET", "/api/resource",
                                                            cred).status == 401))
        g = wait_for(lambda: [g for g in self.provider.grants(self.session)
                              if g["revocation"]["status"] == "delivered"])
        self.assertEqual(g[0]["revocation"]["http_status"], 200)
        self.assertEqual(self.provider.mint(self.session, self.aud).status, 403)
        self.assertEqual(self.provider.request("DELETE", "/grants/" + grant["id"],
                                               session=self.session).status, 404)

    def test_a_revocation_made_while_the_server_is_down_is_delivered_later(self):
        grant = self.consent()
        cred = self.registered_credential()
        self.server.stop()
        r = self.provider.request("DELETE", "/grants/" + grant["id"], session=self.session)
        self.assertEqual(r.status, 200)
        pending = wait_for(lambda: [g for g in self.provider.grants(self.session)
                                    if g["revocation"]["attempts"] >= 1])
        self.assertEqual(pending[0]["revocation"]["status"], "pending")
        self.assertTrue(pending[0]["revocation"]["last_error"])
        # The provider restarts too: the queue is in its store.
        self.assertEqual(self.provider.stop(), 0)
        self.provider.start()
        self.server.start()
        self.assertTrue(wait_for(lambda: self.server.bearer("GET", "/api/resource",
                                                            cred).status == 401, timeout=30))
        # The service acts on the token before the provider records the 2xx.
        self.assertTrue(wait_for(lambda: self.provider.grants(self.session)[0]["revocation"]
                                 ["status"] == "delivered"))


class FailedDeliveryTest(ProviderTestBase):
    PROVIDER = {"revocation": {"retry_base": "1", "retry_max": "1", "max_attempts": "2"}}

    def test_a_4xx_is_final_and_retries_stop_at_the_limit(self):
        refused = self.provider.grant(self.session, self.aud, "always",
                                      self.server.url + "/nope").json
        unreachable = self.provider.grant(self.session, "http://127.0.0.1:9", "always",
                                          "http://127.0.0.1:9/revoke").json
        for g in (refused, unreachable):
            self.provider.request("DELETE", "/grants/" + g["id"], session=self.session)

        def states():
            return {g["id"]: g["revocation"] for g in self.provider.grants(self.session)}
        done = wait_for(lambda: all(r["status"] == "failed" for r in states().values()),
                        timeout=30)
        self.assertTrue(done, states())
        s = states()
        self.assertEqual(s[refused["id"]]["http_status"], 404)
        self.assertEqual(s[refused["id"]]["attempts"], 1)
        self.assertEqual(s[unreachable["id"]]["attempts"], 2)
        log = self.provider.read_log()
        self.assertIn("(final)", log)
        self.assertIn("undeliverable", log)


class KeyFolderOutlivesDatabaseTest(ProviderTestBase):
    def jwks_kids(self):
        return [k["kid"] for k in
                self.provider.request("GET", "/.well-known/jwks.json").json["keys"]]

    def test_a_new_database_publishes_the_surviving_key_again(self):
        kids = self.jwks_kids()
        self.assertEqual(len(kids), 1)
        self.provider.stop()
        db = os.path.join(self.provider.tmp, "provider.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        self.session = self.provider.add_user("ann@example.test")  # the new database
        self.provider.start()
        self.assertEqual(self.jwks_kids(), kids)  # the same key, not an empty set
        self.consent()
        token = self.mint()
        self.assertEqual(header(token)["kid"], kids[0])
        r = register_idjag(self.server, token)
        self.assertEqual(r.status, 200, r)
        self.assertIn("publishing its public half again", self.provider.read_log())


class SessionRevokeTest(ProviderTestBase):
    def test_a_revoked_session_is_refused(self):
        r = self.provider.cli("session", "create", "--user", "ann@example.test")
        token = r.stdout.strip()
        sid = r.stderr.split()[1]
        self.assertEqual(self.provider.request("GET", "/grants", session=token).status, 200)
        self.provider.cli("session", "revoke", "--id", sid)
        self.assertEqual(self.provider.request("GET", "/grants", session=token).status, 401)
        self.assertEqual(self.provider.request("GET", "/grants", session=self.session).status,
                         200)


class Ps256Test(ProviderTestBase):
    PROVIDER = {"keys": {"alg": "PS256"}}

    def test_a_ps256_provider_registers(self):
        self.consent()
        token = self.mint()
        self.assertEqual(header(token)["alg"], "PS256")
        r = register_idjag(self.server, token)
        self.assertEqual(r.status, 200, r)


class CimdTest(ProviderTestBase):
    def setUp(self):
        self.PROVIDER = {}
        super().setUp()

    def test_the_client_id_metadata_document(self):
        self.provider.stop()
        with open(self.provider.config, "a") as f:
            f.write("[provider]\nclient_id = %s/agent-auth.json\n" % self.provider.url)
        self.provider.start()
        doc = self.provider.request("GET", "/agent-auth.json")
        self.assertEqual(doc.status, 200)
        self.assertEqual(doc.json["client_id"], self.provider.url + "/agent-auth.json")
        self.assertEqual(doc.json["jwks_uri"], self.provider.url + "/.well-known/jwks.json")
        self.consent()
        self.assertEqual(payload(self.mint())["client_id"],
                         self.provider.url + "/agent-auth.json")


if __name__ == "__main__":
    unittest.main()
