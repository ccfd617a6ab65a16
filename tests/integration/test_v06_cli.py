"""The authmd CLI speaking protocol v0.6 to the real authmd-server: it reads
the metadata, registers at /agent/identity, exchanges the service's
identity_assertion at the token endpoint, keeps the assertion (never shown)
and exchanges it again when the access token expires or is revoked; with
--protocol v0.1 it registers through /agent/auth on the same server. With
the real authmd-provider, revoking the user's consent reaches a v0.6
registration as a SET and a v0.1 registration as a logout token."""
import http.server
import json
import os
import stat
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from harness import RealProvider, Server, free_port, provider_overrides
from test_agent_cli import Cli


def wait_for(fn, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    return fn()


class V01OnlyFront:
    """authmd-server as a service that does not offer v0.6: a loopback
    front that forwards every request to the real server, rewrites the
    server's origin to its own, and drops the v0.6 names from the
    authorization-server metadata."""

    V06_NAMES = ("token_endpoint", "identity_endpoint", "events_endpoint", "claim_endpoint",
                 "grant_types_supported", "authorization_grant_profiles_supported")

    def __init__(self, server):
        port = free_port()
        self.url = "http://127.0.0.1:%d" % port
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("authorization", "content-type", "dpop")}
                req = urllib.request.Request(server.url + self.path, method=self.command,
                                             data=self.rfile.read(n) if n else None,
                                             headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, rh, body = r.status, r.headers, r.read()
                except urllib.error.HTTPError as err:
                    status, rh, body = err.code, err.headers, err.read()
                body = body.replace(server.url.encode(), front.url.encode())
                if self.path == "/.well-known/oauth-authorization-server":
                    doc = json.loads(body)
                    for name in front.V06_NAMES:
                        doc.pop(name, None)
                        doc.get("agent_auth", {}).pop(name, None)
                    body = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in rh.items():
                    if k.lower() in ("content-type", "www-authenticate"):
                        self.send_header(k, v.replace(server.url, front.url))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = forward

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class V06CliTest(unittest.TestCase):
    def setUp(self):
        self.provider = RealProvider()
        self.session = self.provider.add_user("lea@example.test")
        self.provider.start()
        self.server = Server(dict(provider_overrides(self.provider),
                                  limits={"jwks_refetch_interval": "1"})).start()
        self.cli = Cli()
        self.url = self.server.url + "/api/resource"

    def tearDown(self):
        self.server.cleanup()
        self.provider.stop()
        self.provider.cleanup()

    def stored(self):
        with open(self.cli.store) as f:
            return list(json.load(f)["credentials"].values())[0]

    def test_discover_shows_both_generations_and_picks_v06(self):
        rc, d = self.cli.json("discover", self.url)
        self.assertEqual(rc, 0, d)
        self.assertTrue(d["v06_offered"])
        self.assertEqual(d["protocol"], "v0.6")
        self.assertEqual(d["token_endpoint"], self.server.url + "/oauth2/token")
        rc, d = self.cli.json("--protocol", "v0.1", "discover", self.url)
        self.assertEqual(d["protocol"], "v0.1")
        self.assertEqual(self.cli.run("--protocol", "v2", "discover", self.url).returncode, 2)
        self.assertIn("--protocol", self.cli.run("--help").stdout)

    def test_anonymous_v06_registers_exchanges_and_re_exchanges(self):
        rc, reg = self.cli.json("--protocol", "v0.6", "register", self.url, "--anonymous")
        self.assertEqual(rc, 0, reg)
        s = self.stored()
        self.assertEqual((s["protocol"], s["credential_type"]), ("v0.6", "access_token"))
        self.assertEqual(s["register_uri"], self.server.url + "/agent/identity")
        assertion, first = s["identity_assertion"], s["credential"]
        self.assertEqual(assertion.count("."), 2)
        # the assertion and the token are never shown
        for args in (("status",), ("register", self.url, "--anonymous")):
            r = self.cli.run("--protocol", "v0.6", *args, "--json")
            self.assertNotIn(assertion, r.stdout + r.stderr)
            self.assertNotIn(first, r.stdout + r.stderr)
        assertion, first = self.stored()["identity_assertion"], self.stored()["credential"]
        rc, st = self.cli.json("status")
        self.assertTrue(st["credentials"][0]["has_identity_assertion"])
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertEqual(got["body"]["credential_type"], "access_token")
        # the access token has expired: exchanged again before the call
        with open(self.cli.store) as f:
            doc = json.load(f)
        for v in doc["credentials"].values():
            v["credential_expires"] = "2000-01-01T00:00:00Z"
        with open(self.cli.store, "w") as f:
            json.dump(doc, f)
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        second = self.stored()["credential"]
        self.assertNotEqual(second, first)
        # This access token alone revoked at the RFC 7009 endpoint, the
        # registration kept: a 401, one exchange of the same assertion, and on.
        r = self.server.request("POST", "/oauth2/revoke",
                                raw=urllib.parse.urlencode({"token": second}).encode(),
                                content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(wait_for(lambda: self.server.bearer("GET", "/api/resource",
                                                            second).status == 401))
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertNotEqual(self.stored()["credential"], second)
        self.assertEqual(self.stored()["identity_assertion"], assertion)

    def test_auto_registers_anonymous_through_v06_when_offered(self):
        rc, reg = self.cli.json("register", self.url, "--anonymous")  # --protocol auto
        self.assertEqual(rc, 0, reg)
        s = self.stored()
        self.assertEqual((s["protocol"], s["credential_type"]), ("v0.6", "access_token"))
        self.assertEqual(s["register_uri"], self.server.url + "/agent/identity")
        self.assertEqual(s["identity_assertion"].count("."), 2)
        # the server made a v0.6 registration: its credential is an access
        # token minted at the token endpoint, audience-restricted (RFC 8707)
        rows = self.server.db_query(
            "SELECT r.credential_type, c.type, c.resource FROM registrations r "
            "JOIN credentials c ON c.registration_id = r.id")
        self.assertEqual(rows, [("access_token", "access_token", self.server.url + "/api/")])
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertEqual(got["body"]["credential_type"], "access_token")

    def test_auto_registers_through_v01_when_v06_is_not_offered(self):
        front = V01OnlyFront(self.server)
        self.addCleanup(front.close)
        url = front.url + "/api/resource"
        rc, d = self.cli.json("discover", url)
        self.assertEqual(rc, 0, d)
        self.assertFalse(d["v06_offered"])
        self.assertEqual(d["protocol"], "v0.1")
        rc, reg = self.cli.json("register", url, "--anonymous")
        self.assertEqual(rc, 0, reg)
        s = self.stored()
        self.assertEqual((s["protocol"], s["credential_type"]), ("v0.1", "api_key"))
        self.assertEqual(s["register_uri"], front.url + "/agent/auth")
        self.assertNotIn("identity_assertion", s)
        self.assertEqual(self.server.db_query("SELECT credential_type FROM registrations"),
                         [("api_key",)])
        rc, got = self.cli.json("curl", url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        # forcing v0.6 where it is not offered is refused before any request
        other = Cli()
        r = other.run("--protocol", "v0.6", "register", url, "--anonymous")
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertEqual(len(self.server.db_query("SELECT id FROM registrations")), 1)

    def test_forced_v01_registers_through_agent_auth_on_the_same_server(self):
        rc, reg = self.cli.json("--protocol", "v0.1", "register", self.url, "--anonymous")
        self.assertEqual(rc, 0, reg)
        s = self.stored()
        self.assertEqual((s["protocol"], s["credential_type"]), ("v0.1", "api_key"))
        self.assertEqual(s["register_uri"], self.server.url + "/agent/auth")
        self.assertNotIn("identity_assertion", s)
        self.assertEqual(self.server.db_query("SELECT credential_type FROM registrations"),
                         [("api_key",)])
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)

    def test_dpop_binds_the_token_to_a_private_key_and_sends_proofs(self):
        rc, reg = self.cli.json("--dpop", "--protocol", "v0.6", "register", self.url,
                                "--anonymous")
        self.assertEqual(rc, 0, reg)
        key = os.path.join(os.path.dirname(self.cli.store), "dpop-key.pem")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        s = self.stored()
        self.assertEqual(s["token_type"], "DPoP")
        for _ in range(2):  # a fresh proof each time: no replay refusal
            rc, got = self.cli.json("curl", self.url)
            self.assertEqual((rc, got["status"]), (0, 200), got)
        # the token alone, as a bearer token, is refused
        r = self.server.bearer("GET", "/api/resource", s["credential"])
        self.assertEqual((r.status, r.json["error"]), (401, "invalid_dpop_proof"))
        # an expired bound token is exchanged again, bound to the same key
        with open(self.cli.store) as f:
            doc = json.load(f)
        for v in doc["credentials"].values():
            v["credential_expires"] = "2000-01-01T00:00:00Z"
        with open(self.cli.store, "w") as f:
            json.dump(doc, f)
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertEqual(self.stored()["token_type"], "DPoP")
        # a key file others can read is not used
        os.chmod(key, 0o644)
        r = self.cli.run("--dpop", "curl", self.url)
        self.assertEqual(r.returncode, 6, r.stderr)

    def register_provider(self, *protocol):
        rc, reg = self.cli.json(*protocol, "register", self.url, "--provider", self.provider.url,
                                "--yes", "--consent", "always",
                                env={"AUTHMD_SESSION": self.session})
        self.assertEqual(rc, 0, reg)
        self.assertEqual(self.cli.json("curl", self.url)[1]["status"], 200)
        return self.stored()

    def revoke_at_provider(self):
        grant = self.provider.grants(self.session)[0]
        r = self.provider.request("DELETE", "/grants/" + grant["id"], session=self.session)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(wait_for(lambda: self.provider.grants(self.session)[0]
                                 .get("revocation", {}).get("status") == "delivered"))
        return grant

    def test_a_v06_provider_registration_is_revoked_by_a_set(self):
        s = self.register_provider()  # auto: v0.6
        self.assertEqual((s["protocol"], s["method"]), ("v0.6", "id_jag"))
        grant = self.revoke_at_provider()
        self.assertEqual(grant["events_endpoint"], self.server.url + "/agent/event/notify")
        self.assertIn("SET delivered", self.provider.read_log())
        # the access token and the assertion are both dead now
        self.assertEqual(self.server.bearer("GET", "/api/resource", s["credential"]).status, 401)
        r = self.cli.run("curl", self.url)
        self.assertEqual(r.returncode, 5, r.stderr)

    def test_a_v01_provider_registration_is_revoked_by_a_logout_token(self):
        s = self.register_provider("--protocol", "v0.1")
        self.assertEqual(s["protocol"], "v0.1")
        grant = self.revoke_at_provider()
        self.assertEqual(grant["revocation_uri"], self.server.url + "/agent/auth/revoke")
        self.assertIn("logout token delivered", self.provider.read_log())
        self.assertEqual(self.server.bearer("GET", "/api/resource", s["credential"]).status, 401)


if __name__ == "__main__":
    unittest.main()
