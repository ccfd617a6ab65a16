"""Issue 15 item 3: consent stays the user's. `authmd register --provider`
against a provider whose grant objects carry no `status` (like the reference
provider) must see the user's grant, never create one the user did not ask
for in this command, and never replace or widen one.

The status-less provider is the real authmd-provider behind a small proxy
that forwards every request and strips `status` from grant objects (a
revoked grant gets `revoked_at` instead, as such providers say it); the
ID-JAGs are the real provider's, verified by the real authmd-server."""
import http.client
import http.server
import json
import threading
import time
import unittest

from harness import RealProvider, Server, free_port, provider_overrides
from test_agent_cli import Cli


class _Statusless(http.server.BaseHTTPRequestHandler):
    upstream_port = 0
    seen = []  # (method, path, json body or None)

    def _forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else None
        type(self).seen.append((self.command, self.path,
                                json.loads(data) if data else None))
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("authorization", "content-type")}
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            conn.request(self.command, self.path, body=data, headers=headers)
            r = conn.getresponse()
            status, ctype, body = r.status, r.getheader("Content-Type"), r.read()
        finally:
            conn.close()
        if self.path.startswith("/grants") and body:
            doc = json.loads(body)
            for g in doc.get("grants", [doc]):
                if g.pop("status", None) == "revoked":
                    g["revoked_at"] = int(time.time())
            body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _forward

    def log_message(self, *a):
        pass


class ConsentTest(unittest.TestCase):
    def setUp(self):
        self.provider = RealProvider()
        self.session = self.provider.add_user("lee@example.test")
        self.provider.start()
        self.server = Server(provider_overrides(self.provider)).start()
        self.port = free_port()
        _Statusless.upstream_port = self.provider.port
        _Statusless.seen = []
        self.proxy = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _Statusless)
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()
        self.proxy_url = "http://127.0.0.1:%d" % self.port
        self.cli = Cli()
        self.url = self.server.url + "/api/resource"

    def tearDown(self):
        self.proxy.shutdown()
        self.proxy.server_close()
        self.server.cleanup()
        self.provider.cleanup()

    def register(self, *extra, provider=None):
        return self.cli.json("register", self.url, "--provider", provider or self.proxy_url,
                             "--yes", *extra, env={"AUTHMD_SESSION": self.session})

    def grant_posts(self):
        return [b for (m, p, b) in _Statusless.seen if m == "POST" and p == "/grants"]

    def modes(self):
        return [g["mode"] for g in self.provider.grants(self.session)]

    def user_grants_once(self):
        r = self.provider.grant(self.session, self.server.url, "once",
                                self.server.url + "/agent/auth/revoke")
        self.assertEqual(r.status, 201)
        return r.json["id"]

    def test_a_once_grant_without_status_stays_once(self):
        gid = self.user_grants_once()
        self.assertNotIn("status", self.cli_visible_grants()[0])  # the proxy works
        rc, reg = self.register()
        self.assertEqual(rc, 0, reg)
        self.assertEqual(reg["consent"], {"grant_id": gid, "mode": "once", "status": None,
                                          "created": False, "kept_as_is": False})
        self.assertEqual(self.grant_posts(), [])  # no grant was made, least of all "always"
        self.assertEqual(self.modes(), ["once"])
        self.assertEqual(self.provider.grants(self.session)[0]["status"], "consumed")
        self.assertEqual(self.cli.json("curl", self.url)[1]["status"], 200)

    def test_asking_for_always_does_not_widen_an_existing_once_grant(self):
        gid = self.user_grants_once()
        r = self.cli.run("register", self.url, "--provider", self.proxy_url, "--yes",
                         "--consent", "always", env={"AUTHMD_SESSION": self.session})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("used the user's existing once grant %s unchanged" % gid, r.stdout)
        self.assertIn("not replaced or changed to always", r.stdout)
        self.assertEqual(self.grant_posts(), [])
        self.assertEqual(self.modes(), ["once"])

    def test_yes_alone_grants_nothing(self):
        for provider in (self.proxy_url, self.provider.url):
            rc, out = self.register(provider=provider)
            self.assertEqual(rc, 5, out)
            self.assertEqual(out["error"]["code"], "consent_required")
            self.assertIn("--consent once", out["error"]["advice"])
            self.assertIn("none was created", out["error"]["message"])
        self.assertEqual(self.grant_posts(), [])
        self.assertEqual(self.provider.grants(self.session), [])
        self.assertEqual(self.cli.json("status")[1]["credentials"], [])

    def test_consent_once_makes_a_once_grant_and_a_spent_one_is_not_renewed_unasked(self):
        rc, reg = self.register("--consent", "once")
        self.assertEqual(rc, 0, reg)
        self.assertTrue(reg["consent"]["created"])
        self.assertEqual(reg["consent"]["mode"], "once")
        self.assertEqual([b["mode"] for b in self.grant_posts()], ["once"])
        # The grant is spent; the proxy shows it without a status, so it
        # looks live, but the provider refuses to mint: without --consent
        # nothing more is made.
        self.cli.json("forget", self.url)
        rc, out = self.register()
        self.assertEqual(rc, 5, out)
        self.assertEqual(out["error"]["code"], "consent_required")
        self.assertEqual(len(self.grant_posts()), 1)
        # Asked again in this command: one more once grant, still no always.
        rc, reg = self.register("--consent", "once")
        self.assertEqual(rc, 0, reg)
        self.assertTrue(reg["consent"]["created"])
        self.assertEqual(self.modes(), ["once", "once"])

    def test_a_grant_that_says_it_is_revoked_is_not_used(self):
        gid = self.user_grants_once()
        self.assertEqual(self.provider.request("DELETE", "/grants/" + gid,
                                               session=self.session).status, 200)
        rc, out = self.register()
        self.assertEqual(rc, 5, out)
        self.assertFalse([p for (m, p, b) in _Statusless.seen if p == "/id-jag"])
        self.assertEqual(self.grant_posts(), [])

    def test_consent_is_refused_for_other_methods_and_bad_values(self):
        r = self.cli.run("register", self.url, "--anonymous", "--consent", "once")
        self.assertEqual(r.returncode, 2)
        r = self.cli.run("register", self.url, "--provider", self.proxy_url, "--consent",
                         "forever", env={"AUTHMD_SESSION": self.session})
        self.assertEqual(r.returncode, 2)
        self.assertEqual(_Statusless.seen, [])

    def cli_visible_grants(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/grants", headers={"Authorization": "Bearer " + self.session})
            doc = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        _Statusless.seen.clear()
        return doc["grants"]


if __name__ == "__main__":
    unittest.main()
