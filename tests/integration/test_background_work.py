"""Work that must never stall the request path (issue 8, items 3-5): claim
mail through the durable queue and its worker, JWKS refreshed in the
background, and the bearer check beside both. The slow parties are real
sockets on 127.0.0.1: an SMTP server that accepts and never answers, and a
JWKS endpoint that holds the request open. No timed assertion: every
request made while they hang must complete, 200, within a 2 s socket
timeout."""
import http.client
import json
import socket
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from harness import (ID_JAG_URN, Provider, Server, claim_link, free_port,
                     provider_overrides, register_idjag)
from smtp_sink import SmtpSink

SOCKET_TIMEOUT = 2.0


class SilentSmtp:
    """Accepts TCP connections on port and never sends a byte."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.conns = []
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.accepted.set()

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            c.close()
        self.thread.join(5)


class HangingJwks:
    """A jwks_uri in front of the test provider's JWKS that, while `hang` is
    set, holds each request open until it is cleared (or 30 s pass)."""

    def __init__(self, provider):
        self.provider = provider
        self.hang = threading.Event()
        self.released = threading.Event()
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                if outer.hang.is_set():
                    outer.released.wait(30)
                conn = http.client.HTTPConnection("127.0.0.1", outer.provider.port, timeout=10)
                conn.request("GET", "/.well-known/jwks.json")
                r = conn.getresponse()
                body = r.read()
                conn.close()
                try:
                    self.send_response(r.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the server gave up waiting, as it should

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/jwks.json" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def start_hanging(self):
        self.released.clear()
        self.hang.set()

    def recover(self):
        self.hang.clear()
        self.released.set()

    def stop(self):
        self.recover()
        self.httpd.shutdown()
        self.httpd.server_close()


def quick(server, method, path, body=None, credential=None):
    """One request with a short socket timeout: a stalled answer raises."""
    hdrs = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if credential is not None:
        hdrs["Authorization"] = "Bearer " + credential
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=SOCKET_TIMEOUT)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def in_background(fn, *args):
    out = {}

    def run():
        try:
            out["result"] = fn(*args)
        except Exception as e:  # recorded, checked by the caller
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


class StallTest(unittest.TestCase):
    def setUp(self):
        self.provider = Provider().start()
        self.jwks = HangingJwks(self.provider)
        self.sink = SmtpSink()  # its port is taken by the silent server first
        self.silent = SilentSmtp(self.sink.port)
        overrides = provider_overrides(self.provider, jwks_uri=self.jwks.url)
        overrides["server"] = {"threads": "2"}
        overrides["limits"] = {"jwks_refetch_interval": "1"}
        overrides["mail"] = {"smtp_url": self.sink.url, "starttls": "off",
                             "retry_min": "1", "retry_max": "1"}
        self.server = Server(overrides).start()
        self.sink_started = False

    def tearDown(self):
        rc = self.server.stop()
        self.server.cleanup()
        self.silent.stop()
        if self.sink_started:
            self.sink.stop()
        self.jwks.stop()
        self.provider.stop()
        self.assertEqual(rc, 0)

    def mint(self, **over):
        return self.provider.sign(self.provider.claims(self.server, **over))

    def assert_the_gate_answers(self, credential, rounds=5):
        for i in range(rounds):
            status, _ = quick(self.server, "GET", "/.well-known/oauth-authorization-server")
            self.assertEqual(status, 200)
            status, _ = quick(self.server, "GET", "/.well-known/oauth-protected-resource")
            self.assertEqual(status, 200)
            status, _ = quick(self.server, "GET", "/api/resource", credential=credential)
            self.assertEqual(status, 200)
            status, body = quick(self.server, "POST", "/agent/auth",
                                 {"type": "anonymous", "requested_credential_type": "api_key"})
            self.assertEqual(status, 200, body)

    def test_a_silent_smtp_and_a_hanging_jwks_stall_nothing_and_the_mail_follows(self):
        s = self.server
        # Keys fetched while the provider is healthy; then it starts to hang.
        known = register_idjag(s, self.mint(sub="known", email="known@example.test"))
        self.assertEqual(known.status, 200, known)
        credential = s.register_anonymous()["credential"]
        self.jwks.start_hanging()
        self.provider.rotate()  # ES256 tokens now carry a kid the server has not seen
        time.sleep(1.1)  # past jwks_refetch_interval, so that kid may cause a refetch

        # Email registrations answer at once: the mail is a queue row, and
        # the worker is the one stuck on the silent SMTP server.
        regs = []
        for i in range(2):
            status, body = quick(s, "POST", "/agent/auth",
                                 {"type": "identity_assertion",
                                  "assertion_type": "verified_email",
                                  "assertion": "mia%d@example.test" % i})
            self.assertEqual(status, 200, body)
            regs.append(json.loads(body))
        self.assertTrue(self.silent.accepted.wait(10), "the worker never tried SMTP")

        # An unknown kid makes one request wait for the refetch (bounded,
        # then 503); meanwhile everything else answers, including an ID-JAG
        # whose kid is in the current set.
        waiting, result = in_background(register_idjag, s, self.mint(sub="new"))
        deadline = time.time() + 10
        while self.jwks.hits < 2 and time.time() < deadline:
            time.sleep(0.02)
        self.assertGreaterEqual(self.jwks.hits, 2, "the unknown kid caused no refetch")
        self.assert_the_gate_answers(credential)
        # The RS256 key was not rotated: its kid is in the current set, so
        # its token is verified at once, not behind the pending fetch.
        status, body = quick(s, "POST", "/agent/auth", {
            "type": "identity_assertion", "assertion_type": ID_JAG_URN,
            "assertion": self.provider.sign(self.provider.claims(s, sub="rs"), key="rs"),
            "requested_credential_type": "access_token"})
        self.assertEqual(status, 200, body)
        waiting.join(30)
        self.assertNotIn("error", result)
        self.assertEqual(result["result"].status, 503, result["result"])
        self.assertEqual(result["result"].json["error"], "temporarily_unavailable")
        self.assert_the_gate_answers(credential, rounds=2)

        # Recovery: the SMTP server answers now, and the queued mails go.
        self.silent.stop()
        self.sink.start()
        self.sink_started = True
        msgs = self.sink.wait_for(2, timeout=30)
        self.assertEqual(sorted(m["To"] for m in msgs),
                         ["mia0@example.test", "mia1@example.test"])
        s.wait_mail_queue()
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM mail_queue"), [(0,)])
        # The link in a mail that waited out the outage still works.
        by_to = {m["To"]: m for m in msgs}
        otp = s.code_from_link(claim_link(by_to["mia0@example.test"]))
        r = s.complete(regs[0]["claim_token"], otp)
        self.assertEqual(r.status, 200, r)


class KillBetweenCommitAndSendTest(unittest.TestCase):
    def test_a_kill_9_before_the_mail_left_loses_no_mail(self):
        sink = SmtpSink()
        silent = SilentSmtp(sink.port)
        server = Server({"mail": {"smtp_url": sink.url, "starttls": "off",
                                  "retry_min": "1", "retry_max": "1"}}).start()
        started = False
        try:
            reg = server.register_email("ned@example.test")
            self.assertTrue(silent.accepted.wait(10), "the worker never tried SMTP")
            # Committed, not sent: the worker is stuck in the SMTP greeting.
            self.assertEqual(server.kill9(), -9)
            self.assertEqual(server.db_query(
                "SELECT rcpt, status, message IS NOT NULL FROM mail_queue"),
                [("ned@example.test", "queued", 1)])
            silent.stop()
            sink.start()
            started = True
            server.start()
            msgs = sink.wait_for(1, timeout=30)
            self.assertEqual(len(msgs), 1)
            server.wait_mail_queue()
            # Sent: the row, and the claim link it held, are gone.
            self.assertEqual(server.db_query("SELECT COUNT(*) FROM mail_queue"), [(0,)])
            otp = server.code_from_link(claim_link(msgs[0]))
            r = server.complete(reg["claim_token"], otp)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(len(sink.wait_for(2, timeout=1)), 1)  # sent once
        finally:
            server.cleanup()
            silent.stop()
            if started:
                sink.stop()


class _Rejecting:
    """An SMTP server that refuses every recipient for good (550)."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "550 5.1.1 no such mailbox"


class PermanentFailureTest(unittest.TestCase):
    def test_a_5xx_is_recorded_and_the_attempt_counts_against_no_limit(self):
        port = free_port()
        rejecting = Controller(_Rejecting(), hostname="127.0.0.1", port=port,
                               server_hostname="reject.test")
        rejecting.start()
        server = Server({"mail": {"smtp_url": "smtp://127.0.0.1:%d" % port,
                                  "starttls": "off"},
                         "limits": {"claim_mails_per_registration": "1"}}).start()
        try:
            reg = server.register_anonymous()
            r = server.start_claim(reg["claim_token"], "oli@example.test")
            self.assertEqual(r.status, 200, r)  # the agent does not wait for SMTP
            first = r.json["claim_attempt_id"]
            deadline = time.time() + 15
            while time.time() < deadline and server.db_query(
                    "SELECT COUNT(*) FROM mail_queue WHERE status = 'failed'") != [(1,)]:
                time.sleep(0.05)
            self.assertEqual(server.db_query(
                "SELECT status, message IS NULL, last_error LIKE 'smtp 550%' FROM mail_queue"),
                [("failed", 1, 1)])
            events = server.db_query(
                "SELECT registration_id, data FROM audit_events WHERE event = ?",
                ("claim.mail_failed",))
            self.assertEqual(len(events), 1)
            self.assertEqual(events[0][0], reg["registration_id"])
            self.assertEqual(json.loads(events[0][1])["claim_attempt_id"], first)
            # The mail never left, so it does not count against the one mail
            # this registration may have: asking again mails a new link.
            self.assertEqual(server.db_query(
                "SELECT COUNT(*) FROM claim_attempts WHERE id = ?", (first,)), [(0,)])
            r = server.start_claim(reg["claim_token"], "oli@example.test")
            self.assertEqual(r.status, 200, r)
            self.assertNotEqual(r.json["claim_attempt_id"], first)
        finally:
            server.cleanup()
            rejecting.stop()


if __name__ == "__main__":
    unittest.main()
