"""The agent client's retry policy against a real HTTP server that answers 5xx:
a request that may have taken effect (POST) is never sent twice."""
import http.server
import json
import os
import threading
import unittest

from harness import free_port
from test_agent_cli import Cli


class _AlwaysFailing(http.server.BaseHTTPRequestHandler):
    seen = []

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.seen.append(self.command)
        body = b'{"error":"server_error"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args):
        pass


class ClientRetryTest(unittest.TestCase):
    def setUp(self):
        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _AlwaysFailing)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.cli = Cli()
        base = "http://127.0.0.1:%d/" % self.port
        os.makedirs(os.path.dirname(self.cli.store), mode=0o700)
        with open(self.cli.store, "w") as f:
            json.dump({"version": 1, "credentials": {base: {
                "resource": base, "method": "anonymous", "credential": "sk_test",
                "credential_type": "api_key", "registration_id": "reg_x"}}}, f)
        os.chmod(self.cli.store, 0o600)
        self.url = base + "orders"
        _AlwaysFailing.seen = []

    def tearDown(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def test_a_post_that_gets_a_5xx_is_sent_once(self):
        r = self.cli.run("curl", self.url, "-X", "POST", "-d", '{"buy": 1}')
        self.assertEqual(r.returncode, 3, r.stderr)  # the 5xx is reported
        self.assertEqual(_AlwaysFailing.seen, ["POST"])

    def test_a_patch_that_gets_a_5xx_is_sent_once(self):
        r = self.cli.run("curl", self.url, "-X", "PATCH", "-d", '{"qty": 2}')
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(_AlwaysFailing.seen, ["PATCH"])

    def test_an_idempotent_put_is_still_retried(self):
        r = self.cli.run("curl", self.url, "-X", "PUT", "-d", '{"qty": 2}')
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(_AlwaysFailing.seen, ["PUT"] * 4)  # one try and three retries


if __name__ == "__main__":
    unittest.main()
