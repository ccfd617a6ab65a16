"""RFC 7662 introspection and RFC 7009 revocation against the real server:
every credential state, client authentication, limits and metadata; and
--check-config on the gate's sections."""
import base64
import hashlib
import os
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from harness import SERVER, Server, ServerTest, claim_link, write_ini

SECRET = "s3cret-introspection-client-0001"
FILE_SECRET = "another-secret-kept-in-a-file-02"


def form(**fields):
    return urllib.parse.urlencode(fields).encode()


class IntrospectionTest(ServerTest):
    OVERRIDES = {
        "introspection client orders": {"secret_sha256": hashlib.sha256(SECRET.encode())
                                        .hexdigest()},
        "ttl": {"registration": "5"},
    }

    def setUp(self):
        fd, secret_file = tempfile.mkstemp(prefix="authmd-it-secret-")
        with os.fdopen(fd, "w") as f:
            f.write(FILE_SECRET + "\n")
        self.addCleanup(os.unlink, secret_file)
        self.OVERRIDES = dict(self.OVERRIDES)
        self.OVERRIDES["introspection client billing"] = {"secret_file": secret_file}
        super().setUp()

    def introspect(self, token, user="orders", secret=SECRET):
        auth = base64.b64encode(("%s:%s" % (user, secret)).encode()).decode()
        return self.server.request("POST", "/oauth2/introspect", raw=form(token=token),
                                   content_type="application/x-www-form-urlencoded",
                                   headers={"Authorization": "Basic " + auth})

    def revoke(self, token, **extra):
        return self.server.request("POST", "/oauth2/revoke", raw=form(token=token, **extra),
                                   content_type="application/x-www-form-urlencoded")

    def test_a_valid_anonymous_key_is_active_with_its_details(self):
        reg = self.server.register_anonymous()
        r = self.introspect(reg["credential"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        body = r.json
        self.assertIs(body["active"], True)
        self.assertEqual(body["scope"], "api.read")
        self.assertEqual(body["client_id"], reg["registration_id"])
        self.assertEqual(body["sub"], reg["registration_id"])
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["aud"], self.server.url + "/api/")
        self.assertEqual(body["iss"], self.server.url)
        self.assertEqual(body["authmd_credential_type"], "api_key")
        self.assertEqual(body["authmd_registration_status"], "unclaimed")
        self.assertLessEqual(body["iat"], time.time() + 1)
        self.assertGreater(body["exp"], body["iat"])  # the unclaimed key's end
        # The file-held secret of the second client works too.
        self.assertIs(self.introspect(reg["credential"], "billing", FILE_SECRET)
                      .json["active"], True)

    def test_a_claimed_key_names_its_user(self):
        reg = self.server.register_anonymous()
        self.assertEqual(self.server.start_claim(reg["claim_token"], "iz@example.test").status,
                         200)
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        body = self.introspect(reg["credential"]).json
        self.assertIs(body["active"], True)
        self.assertTrue(body["sub"].startswith("usr_"), body)
        self.assertEqual(body["email"], "iz@example.test")
        self.assertEqual(body["scope"], "api.read api.write")
        self.assertEqual(body["authmd_registration_status"], "claimed")
        self.assertNotIn("exp", body)  # a claimed API key does not expire

    def test_unclaimed_past_its_ttl_is_inactive(self):
        reg = self.server.register_anonymous()
        deadline = time.time() + 30
        while time.time() < deadline and self.introspect(reg["credential"]).json["active"]:
            time.sleep(0.5)
        self.assertEqual(self.introspect(reg["credential"]).json, {"active": False})

    def test_revoked_by_rfc7009_is_inactive_and_revocation_answers_the_same_always(self):
        reg = self.server.register_anonymous()
        r = self.revoke(reg["credential"], token_type_hint="refresh_token")
        self.assertEqual((r.status, r.json), (200, {}))
        self.assertEqual(self.introspect(reg["credential"]).json, {"active": False})
        self.assertEqual(self.server.bearer("GET", "/api/resource", reg["credential"]).status,
                         401)
        # Again, and for a token that never existed: the same answer.
        self.assertEqual((self.revoke(reg["credential"]).status), 200)
        self.assertEqual((self.revoke("sk_never_issued").status), 200)
        events = [e for e in self.server.audit_events() if e["event"] == "credential.revoked"]
        self.assertEqual([e["reason"] for e in events], ["agent"])
        self.assertEqual(self.server.db_query(
            "SELECT status FROM registrations WHERE id = ?", (reg["registration_id"],)),
            [("revoked",)])

    def test_unknown_and_malformed_tokens_are_inactive(self):
        for token in ("sk_unknown", "x" * 128, "x" * 300, "a b"):
            self.assertEqual(self.introspect(token).json, {"active": False}, token)

    def test_client_authentication_is_required(self):
        reg = self.server.register_anonymous()
        for user, secret in (("orders", "wrong"), ("nobody", SECRET), ("billing", SECRET)):
            r = self.introspect(reg["credential"], user, secret)
            self.assertError(r, 401, "invalid_client")
            self.assertEqual(r.header("WWW-Authenticate"),
                             'Basic realm="authmd introspection"')
        r = self.server.request("POST", "/oauth2/introspect",
                                raw=form(token=reg["credential"]),
                                content_type="application/x-www-form-urlencoded")
        self.assertError(r, 401, "invalid_client")
        r = self.server.request("POST", "/oauth2/introspect", raw=form(token="x"),
                                content_type="application/x-www-form-urlencoded",
                                headers={"Authorization": "Basic !!!notbase64"})
        self.assertError(r, 401, "invalid_client")

    def test_bad_requests_get_clear_errors(self):
        auth = base64.b64encode(("orders:" + SECRET).encode()).decode()
        r = self.server.request("POST", "/oauth2/introspect", body={"token": "x"},
                                headers={"Authorization": "Basic " + auth})
        self.assertError(r, 415, "unsupported_media_type")
        r = self.server.request("POST", "/oauth2/introspect", raw=form(other="x"),
                                content_type="application/x-www-form-urlencoded",
                                headers={"Authorization": "Basic " + auth})
        self.assertError(r, 400, "invalid_request")
        r = self.revoke("")  # RFC 7009 2.2.1: RFC 6749's envelope
        self.assertEqual((r.status, r.json["error"]), (400, "invalid_request"), r)
        self.assertTrue(r.json["error_description"], r.json)
        self.assertError(self.server.get("/oauth2/introspect"), 405, "method_not_allowed")

    def test_metadata_lists_both_endpoints(self):
        meta = self.server.get("/.well-known/oauth-authorization-server").json
        self.assertEqual(meta["introspection_endpoint"], self.server.url + "/oauth2/introspect")
        self.assertEqual(meta["introspection_endpoint_auth_methods_supported"],
                         ["client_secret_basic"])
        self.assertEqual(meta["revocation_endpoint"], self.server.url + "/oauth2/revoke")
        self.assertIn("agent_auth", meta)


class IntrospectionLimitTest(ServerTest):
    OVERRIDES = {
        "introspection client orders": {"secret_sha256": hashlib.sha256(SECRET.encode())
                                        .hexdigest()},
        "gate": {"introspection_per_minute": "3", "revocation_per_minute": "2"},
    }

    def test_introspection_and_revocation_are_rate_limited(self):
        auth = base64.b64encode(("orders:" + SECRET).encode()).decode()
        statuses = []
        for _ in range(4):
            statuses.append(self.server.request(
                "POST", "/oauth2/introspect", raw=form(token="sk_x"),
                content_type="application/x-www-form-urlencoded",
                headers={"Authorization": "Basic " + auth}).status)
        self.assertEqual(statuses, [200, 200, 200, 429])
        statuses = [self.server.request("POST", "/oauth2/revoke", raw=form(token="sk_x"),
                                        content_type="application/x-www-form-urlencoded")
                    for _ in range(3)]
        self.assertEqual([r.status for r in statuses], [200, 200, 429])
        self.assertTrue(statuses[-1].header("Retry-After"))

    def test_without_clients_introspection_is_not_published(self):
        s = Server().start()
        try:
            meta = s.get("/.well-known/oauth-authorization-server").json
            self.assertNotIn("introspection_endpoint", meta)
            self.assertIn("revocation_endpoint", meta)
        finally:
            s.cleanup()


class GateConfigTest(unittest.TestCase):
    def check(self, cfg):
        s = Server(cfg)
        try:
            return subprocess.run([SERVER, "--check-config", s.config], capture_output=True,
                                  text=True, timeout=30)
        finally:
            s.cleanup()

    def test_check_config_validates_the_gate(self):
        good = {"route a": {"path": "/api/orders", "methods": "GET", "scope": "api.read"},
                "route b": {"path": "/api/orders", "scope": "api.write"},
                "gate": {"default": "authenticated"},
                "server": {"trusted_proxies": "127.0.0.1/32 10.0.0.0/8 ::1"}}
        r = self.check(good)
        self.assertEqual(r.returncode, 0, r.stderr)
        bad = [
            ({"route a": {"path": "api"}}, "plain absolute path"),
            ({"route a": {"path": "/a/../b"}}, "plain absolute path"),
            ({"route a": {"path": "/a", "scope": "admin"}}, "not in supported"),
            ({"route a": {"path": "/a", "methods": "get"}}, "upper-case"),
            ({"route a": {"path": "/a"}, "route b": {"path": "/a"}}, "a method in common"),
            ({"route a": {"path": "/a", "methods": "GET"},
              "route b": {"path": "/a", "methods": "POST GET"}}, "a method in common"),
            ({"route a b": {"path": "/a"}}, "one word"),
            ({"route a": {"path": "/a", "colour": "red"}}, "unknown key"),
            ({"gate": {"default": "allow"}}, "deny|authenticated"),
            ({"server": {"trusted_proxies": "10.0.0.1/8"}}, "bits set past the prefix"),
            ({"server": {"trusted_proxies": "proxy.example"}}, "not a numeric IP"),
            ({"metrics": {"allow": "10.0.0.0/33"}}, "prefix length"),
            ({"introspection client x": {"secret": "x"}}, "unknown key"),
            ({"introspection client x": {"secret_sha256": "a" * 64,
                                         "secret_file": "/etc/hostname"}}, "exactly one"),
            ({"introspection client x": {"secret_sha256": "abc"}}, "64 hex digits"),
            ({"introspection client x": {"secret_file": "/nonexistent/secret"}},
             "cannot open"),
        ]
        for cfg, why in bad:
            r = self.check(cfg)
            self.assertEqual(r.returncode, 1, (cfg, r.stdout))
            self.assertIn(why, r.stderr, cfg)


if __name__ == "__main__":
    unittest.main()
