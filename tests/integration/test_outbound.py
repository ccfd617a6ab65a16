"""The outbound-request policy (src/core/fetch.c) with the real authmd-provider
and authmd-server: where a grant's logout tokens may go, private addresses
refused unless allowed, and no answer body ever shown back."""
import http.server
import os
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (PROVIDER_BIN, SERVER, RealProvider, Server, free_port,
                     provider_overrides, register_idjag)

SECRET = "INTERNAL-ONLY: db password is hunter2"


class _Target(http.server.BaseHTTPRequestHandler):
    """A service inside the network: answers every request with `status` and
    a body the provider's user must never get to read."""
    status = 403
    seen = []

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self.seen.append(self.path)
        body = SECRET.encode()
        self.send_response(self.status)
        if 300 <= self.status < 400:
            self.send_header("Location", "/followed")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def wait_for(predicate, timeout=20, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class OutboundTestBase(unittest.TestCase):
    PROVIDER = {}

    def setUp(self):
        port = free_port()
        self.target = "http://127.0.0.1:%d" % port
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Target)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        _Target.seen = []
        _Target.status = 403
        cfg = {"revocation": {"max_attempts": "1", "retry_base": "1", "retry_max": "1"}}
        for k, v in self.PROVIDER.items():
            cfg.setdefault(k, {}).update(v)
        self.provider = RealProvider(cfg)
        self.session = self.provider.add_user("ann@example.test")
        self.provider.start()

    def tearDown(self):
        rc = self.provider.stop()
        self.provider.cleanup()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.assertIn(rc, (0, None))

    def revoke_and_wait(self, grant):
        r = self.provider.request("DELETE", "/grants/" + grant["id"], session=self.session)
        self.assertEqual(r.status, 200, r)

        def final():
            for g in self.provider.grants(self.session):
                if g["id"] == grant["id"] and g["revocation"]["status"] != "pending":
                    return g["revocation"]
            return None
        state = wait_for(final)
        self.assertIsNotNone(state, self.provider.grants(self.session))
        return state


class RevocationTargetTest(OutboundTestBase):
    PROVIDER = {"revocation": {"allowed_origins": "https://Hooks.Example.TEST:443"}}

    def test_a_revocation_uri_off_the_audience_origin_is_refused(self):
        aud = "https://api.example.test"
        for uri in ("http://169.254.169.254/latest/meta-data/",
                    self.target + "/admin",
                    "https://api.example.test.evil.test/revoke",
                    "http://api.example.test/revoke",         # another scheme
                    "https://api.example.test:8443/revoke",   # another port
                    "https://user@api.example.test/revoke"):  # userinfo
            r = self.provider.grant(self.session, aud, "always", uri)
            self.assertEqual(r.status, 400, (uri, r))
            self.assertEqual(r.json["error"], "invalid_request")
        self.assertEqual(self.provider.grants(self.session), [])

    def test_the_audience_origin_and_listed_origins_are_accepted(self):
        aud = "https://api.example.test"
        for uri in ("https://api.example.test/agent/auth/revoke",
                    "https://API.example.test:443/x",
                    "https://hooks.example.test/authmd"):
            r = self.provider.grant(self.session, aud, "always", uri)
            self.assertEqual(r.status, 201, (uri, r))


class PrivateTargetRefusedTest(OutboundTestBase):
    PROVIDER = {"outbound": {"allow_private_targets": ""}}

    def test_a_delivery_to_a_private_address_is_refused_when_not_allowed(self):
        g = self.provider.grant(self.session, self.target, "always",
                                self.target + "/revoke").json
        state = self.revoke_and_wait(g)
        self.assertEqual(state["status"], "failed")
        self.assertEqual(state["last_error"], "connect refused: private address")
        self.assertEqual(_Target.seen, [])  # no connection was made
        self.assertIn("outbound request refused host=127.0.0.1 addr=127.0.0.1",
                      self.provider.read_log())

    def test_a_name_is_judged_by_the_address_it_resolves_to(self):
        g = self.provider.grant(self.session, "http://localhost:%s" % self.target.split(":")[-1],
                                "always",
                                "http://localhost:%s/revoke" % self.target.split(":")[-1]).json
        state = self.revoke_and_wait(g)
        self.assertEqual(state["last_error"], "connect refused: private address")
        self.assertEqual(_Target.seen, [])


class NoBodyEchoTest(OutboundTestBase):
    def test_a_403_body_is_never_shown_in_get_grants(self):
        g = self.provider.grant(self.session, self.target, "always",
                                self.target + "/internal").json
        state = self.revoke_and_wait(g)
        self.assertEqual(_Target.seen, ["/internal"])  # the target was reached
        self.assertEqual(state["status"], "failed")
        self.assertEqual(state["http_status"], 403)
        self.assertEqual(state["last_error"], "http 403")
        raw = self.provider.request("GET", "/grants", session=self.session).body.decode()
        self.assertNotIn("hunter2", raw)
        self.assertNotIn("INTERNAL", raw)

    def test_a_5xx_body_is_not_shown_either(self):
        _Target.status = 500
        g = self.provider.grant(self.session, self.target, "always",
                                self.target + "/internal").json
        state = self.revoke_and_wait(g)
        self.assertEqual(state["last_error"], "http 500")
        raw = self.provider.request("GET", "/grants", session=self.session).body.decode()
        self.assertNotIn("hunter2", raw)

    def test_a_redirect_is_not_followed(self):
        _Target.status = 307
        g = self.provider.grant(self.session, self.target, "always",
                                self.target + "/internal").json
        state = self.revoke_and_wait(g)
        self.assertEqual(state["last_error"], "http 307")
        self.assertEqual(_Target.seen, ["/internal"])  # never "/followed"


class ServerJwksFetchTest(unittest.TestCase):
    """The server's JWKS fetch shares the policy: a provider on loopback is
    unreachable unless [outbound] allow_private_targets lets it be."""

    def test_a_jwks_on_a_private_address_is_not_fetched_unless_allowed(self):
        provider = RealProvider()
        session = provider.add_user("ann@example.test")
        provider.start()
        overrides = provider_overrides(provider, name="prov")
        refusing = Server(dict(overrides, outbound={"allow_private_targets": ""})).start()
        allowing = Server(overrides).start()
        try:
            for server, ok in ((refusing, False), (allowing, True)):
                r = provider.grant(session, server.url, "always")
                self.assertEqual(r.status, 201, r)
                token = provider.mint(session, server.url).json["assertion"]
                r = register_idjag(server, token)
                if ok:
                    self.assertEqual(r.status, 200, r)
                else:
                    self.assertIn(r.status, (400, 503), r)
                    self.assertIn("connect refused: private address", server.read_log())
        finally:
            refusing.cleanup()
            allowing.cleanup()
            provider.stop()
            provider.cleanup()

    def test_plain_http_keys_off_loopback_are_warned_about_by_the_parsed_host(self):
        server = Server({
            "provider lookalike": {"issuer": "http://127.evil.test",
                                   "jwks_uri": "http://127.evil.test/jwks"},
            "provider lookalike2": {"issuer": "http://localhost.evil.test"},
            "provider local": {"issuer": "http://127.0.0.1:9"},
        }).start()
        try:
            log = server.read_log()
        finally:
            server.cleanup()
        warned = [line for line in log.splitlines() if "plain http" in line]
        self.assertEqual(len(warned), 2, log)
        self.assertTrue(any("provider=lookalike " in w for w in warned), warned)
        self.assertTrue(any("provider=lookalike2 " in w for w in warned), warned)


class PolicyConfigTest(unittest.TestCase):
    """Bad policy values stop startup with the file, line and key."""

    def check(self, program, text):
        fd, path = tempfile.mkstemp(suffix=".ini")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            return subprocess.run([program, "--check-config", path], capture_output=True,
                                  text=True, timeout=30)
        finally:
            os.remove(path)

    def test_allow_lists_must_be_cidr_blocks_and_origins(self):
        for program, text, words in (
                (SERVER, "[outbound]\nallow_private_targets = localhost\n",
                 "[outbound] allow_private_targets"),
                (SERVER, "[outbound]\nallow_private_targets = 10.0.0.0/33\n", "10.0.0.0/33"),
                (PROVIDER_BIN, "[outbound]\nallow_private_targets = 127.0.0.0/8 nope\n",
                 "nope is not a numeric IP address"),
                (PROVIDER_BIN, "[revocation]\nallowed_origins = https://h.test/path\n",
                 "[revocation] allowed_origins"),
                (PROVIDER_BIN, "[revocation]\nallowed_origins = ftp://h.test\n", "ftp://h.test")):
            r = self.check(program, text)
            self.assertNotEqual(r.returncode, 0, (text, r.stdout))
            self.assertIn(words, r.stderr, text)
        for program, text in ((SERVER, "[outbound]\nallow_private_targets = 10.1.0.0/16 ::1\n"),
                              (PROVIDER_BIN, "[revocation]\nallowed_origins = https://a.test "
                               "http://b.test:8080\n")):
            r = self.check(program, text)
            self.assertEqual(r.returncode, 0, (text, r.stderr))


if __name__ == "__main__":
    unittest.main()
