"""SIGHUP (docs/operations.md#reload-sighup): the trust list and routes are
reloaded from the file; a file that does not load keeps the running ones;
log and audit files are opened again after rotation. Run in both builds,
so the ASan build checks that requests racing the swap read live memory."""
import json
import os
import signal
import threading
import time
import unittest

from harness import Provider, Server, ServerTest, provider_overrides, register_idjag


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.a = Provider().start()
        self.b = Provider().start()
        overrides = provider_overrides(self.a, name="a")
        overrides["route v1"] = {"path": "/v1", "scope": "api.read"}
        overrides["log"] = {"file": "server-file.log"}
        self.server = Server(overrides).start()
        self.log_file = os.path.join(self.server.tmp, "server-file.log")
        with open(self.server.config) as f:
            self.good = f.read()

    def tearDown(self):
        rc = self.server.stop()
        self.server.cleanup()
        self.a.stop()
        self.b.stop()
        self.assertEqual(rc, 0)

    def file_log(self):
        with open(self.log_file) as f:
            return f.read()

    def hup(self, text, expect):
        """Writes the config, sends SIGHUP, waits for the line saying how
        the reload ended (expect), counted from the ones before."""
        before = self.file_log().count(expect)
        with open(self.server.config, "w") as f:
            f.write(text)
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.file_log().count(expect) > before:
                return self.file_log()
            time.sleep(0.05)
        self.fail("no %r after SIGHUP:\n%s" % (expect, self.file_log()))

    def register(self, provider, sub):
        token = provider.sign(provider.claims(self.server, sub=sub,
                                              email=sub + "@example.test"))
        return register_idjag(self.server, token)

    def authz(self, cred, uri):
        return self.server.request("GET", "/authz", headers={
            "Authorization": "Bearer " + cred, "X-Original-URI": uri})

    def test_a_broken_file_keeps_the_old_trust_list_and_a_good_one_takes_effect(self):
        r = self.register(self.a, "a-1")
        self.assertEqual(r.status, 200, r)
        cred = r.json["credential"]
        self.assertEqual(self.authz(cred, "/v1/x").status, 200)
        self.assertEqual(self.authz(cred, "/v2/x").status, 403)

        # Broken: B added with an issuer that is no URL. Nothing changes.
        broken = self.good.replace(
            "[provider a]", "[provider b]\nissuer = not a url\n[provider a]")
        log = self.hup(broken, "reload refused")
        self.assertIn("still serving the previous trust list", log)
        self.assertEqual(self.register(self.a, "a-2").status, 200)
        r = self.register(self.b, "b-0")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["error"], "invalid_issuer")
        self.assertEqual(self.authz(cred, "/v2/x").status, 403)

        # Good: B replaces A, and the route policy moves from /v1 to /v2.
        good = self.good.replace("[provider a]\nissuer = %s" % self.a.url,
                                 "[provider b]\nissuer = %s" % self.b.url)
        good = good.replace("path = /v1", "path = /v2")
        self.assertNotEqual(good, self.good)
        self.hup(good, "reload: trust list")
        r = self.register(self.b, "b-1")
        self.assertEqual(r.status, 200, r)
        r = self.register(self.a, "a-3")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["error"], "invalid_issuer")
        self.assertEqual(self.authz(cred, "/v2/x").status, 200)
        self.assertEqual(self.authz(cred, "/v1/x").status, 403)
        changes = [e for e in self.server.audit_events() if e["event"] == "trust_list.changed"]
        self.assertEqual(changes[-1]["providers"], {"a": "removed", "b": "added"})

    def test_a_file_that_would_turn_id_jag_off_is_refused(self):
        text = self.good.replace("[provider a]\nissuer = %s\n" % self.a.url, "")
        self.assertNotEqual(text, self.good)
        log = self.hup(text, "reload refused")
        self.assertIn("needs a restart", log)
        self.assertEqual(self.register(self.a, "a-1").status, 200)

    def test_requests_racing_reloads_are_served(self):
        stop = threading.Event()
        failures = []

        def load():
            n = 0
            while not stop.is_set():
                n += 1
                r = self.register(self.a, "race-%d" % n)
                if r.status != 200:
                    failures.append(r)

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(8):
                # A route change each time, so every reload swaps a new copy.
                text = self.good.replace("path = /v1", "path = /v%d" % (i + 3))
                self.hup(text, "reload: trust list")
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(failures, [])

    def test_reloads_reuse_known_configurations_and_stop_at_the_cap(self):
        self.hup(self.good, "trust list and routes unchanged")
        for i in range(64):  # 64 different ones: each a new copy
            self.hup(self.good.replace("path = /v1", "path = /w%d" % i), "reload: trust list")
        log = self.hup(self.good.replace("path = /v1", "path = /w64"), "reload refused")
        self.assertIn("restart the server to load another", log)
        # Known configurations still load, the first one included.
        before = self.file_log().count("reload refused")
        self.hup(self.good.replace("path = /v1", "path = /w3"), "reload: trust list")
        self.hup(self.good, "reload: trust list")
        self.assertEqual(self.file_log().count("reload refused"), before)
        r = self.register(self.a, "after-cap")
        self.assertEqual(self.authz(r.json["credential"], "/v1/x").status, 200)

    def test_log_and_audit_files_are_opened_again(self):
        os.rename(self.log_file, self.log_file + ".1")
        os.rename(self.server.audit, self.server.audit + ".1")
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while not os.path.exists(self.log_file) and time.time() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(self.log_file))
        # Wait for the reload to finish, then make an audit event.
        while "reload: trust list" not in self.file_log() and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.register(self.a, "after-rotation").status, 200)
        events = self.server.audit_events()
        self.assertTrue(any(e["event"] == "registration.created" for e in events), events)


class JsonLogTest(ServerTest):
    """[log] format = json: every line the real server writes is one JSON
    object with the text format's fields."""
    OVERRIDES = {"log": {"format": "json", "level": "debug"}}

    def test_every_log_line_parses_as_json(self):
        reg = self.server.register_anonymous()
        self.server.post("/agent/auth", {"type": "bogus"})
        self.server.bearer("GET", "/api/resource", reg["credential"])
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while "reopening logs" not in self.server.read_log() and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.server.stop(), 0)
        lines = [l for l in self.server.read_log().splitlines() if l.strip()]
        self.assertGreater(len(lines), 3)
        objects = []
        for line in lines:
            obj = json.loads(line)
            self.assertIsInstance(obj, dict, line)
            for key in ("time", "level", "msg"):
                self.assertIsInstance(obj.get(key), str, line)
            objects.append(obj)
        self.assertTrue(any("req" in o for o in objects), lines)
        started = [o for o in objects if o["msg"].startswith("authmd-server ")]
        self.assertEqual(started[0]["public_url"], self.server.url)
        text = "\n".join(lines)
        self.assertNotIn(reg["credential"], text)
        self.assertNotIn(reg["claim_token"], text)


class RequestLinesTest(unittest.TestCase):
    """[log] requests: one line per answered request when on (the default),
    none when off; the other lines and the metrics are the same either way."""

    def lines_of(self, overrides):
        server = Server(overrides).start()
        self.addCleanup(server.cleanup)
        reg = server.register_anonymous()
        self.assertEqual(server.bearer("GET", "/api/resource", reg["credential"]).status, 200)
        self.assertEqual(server.get("/api/resource").status, 401)
        metrics = server.get("/metrics").body.decode()
        self.assertEqual(server.stop(), 0)
        return server.read_log(), metrics

    def test_a_line_per_request_by_default_and_none_when_off(self):
        log, _ = self.lines_of(None)
        self.assertEqual(log.count("http method=GET path=/api/resource status=200 ip=127.0.0.1"),
                         1, log)
        self.assertIn("http method=POST path=/agent/auth status=200", log)
        self.assertIn("path=/api/resource status=401", log)
        log, metrics = self.lines_of({"log": {"requests": "off"}})
        self.assertNotIn("http method=", log)
        self.assertIn("authmd-server ", log)  # the start-up line is still there
        self.assertRegex(metrics, r'authmd_http_requests_total\{[^}]*status="200"[^}]*\} [1-9]')


if __name__ == "__main__":
    unittest.main()
