"""Slow and hostile clients (slowloris): a per-address connection cap, a
deadline on a request's headers and on the whole request, and a log that
summarises instead of flooding.

Attackers connect from 127.0.0.2, the legitimate client from 127.0.0.3: the
server listens on 127.0.0.1 only, and all of 127/8 reaches it over loopback.
"""
import base64
import errno
import http.client
import json
import resource
import select
import socket
import threading
import time
import unittest

from harness import Server, ServerTest

ATTACKER = "127.0.0.2"
VISITOR = "127.0.0.3"
PATH = "/.well-known/oauth-protected-resource"


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise unittest.SkipTest("the open-file hard limit %d is below %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


class SlowSockets:
    """n sockets from one source address, each sending a request line and
    then one more header line per round, never finishing its headers.
    Sockets the server closes are opened again at the next round."""

    def __init__(self, port, n, source=ATTACKER, body_after_headers=False):
        self.port, self.n, self.source = port, n, source
        self.body = body_after_headers
        self.socks = {}
        self.closed_by_server = 0
        self.opened = 0

    def _open(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((self.source, 0))
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", self.port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            return
        self.socks[s.fileno()] = [s, False]
        self.opened += 1

    def fill(self):
        while len(self.socks) < self.n:
            self._open()

    def reap_closed(self, wait=0.0):
        """Forgets sockets the server closed, watching for wait seconds
        (at least one look); returns how many."""
        end = time.monotonic() + wait
        gone = self._reap_once(wait)
        while time.monotonic() < end:
            gone += self._reap_once(end - time.monotonic())
        return gone

    def _reap_once(self, wait):
        p = select.poll()
        for fd in self.socks:
            p.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        gone = 0
        for fd, _ in p.poll(max(0, int(wait * 1000))):
            s = self.socks[fd][0]
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                continue  # an answer (408/400): the server is closing it
            s.close()
            del self.socks[fd]
            gone += 1
        self.closed_by_server += gone
        return gone

    def trickle(self, line):
        for fd, entry in list(self.socks.items()):
            s, started = entry
            try:
                if not started:
                    head = b"GET / HTTP/1.1\r\nHost: x\r\n"
                    if self.body:
                        head = (b"POST /agent/auth HTTP/1.1\r\nHost: x\r\n"
                                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
                    s.send(head)
                    entry[1] = True
                else:
                    s.send(b"{" if self.body else line)
            except BlockingIOError:
                pass  # not connected yet: next round
            except OSError:
                s.close()
                del self.socks[fd]
                self.closed_by_server += 1

    def close(self):
        for s, _ in self.socks.values():
            s.close()
        self.socks.clear()


def visit(port):
    """One request from another address; the status, or the error."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1,
                                      source_address=(VISITOR, 0))
    try:
        conn.request("GET", PATH)
        r = conn.getresponse()
        r.read()
        return r.status
    except (OSError, http.client.HTTPException) as exc:
        return repr(exc)
    finally:
        conn.close()


class SlowlorisTest(ServerTest):
    # The shipped caps; short deadlines and log interval so the test sees
    # several rounds of reaping in a few seconds.
    OVERRIDES = {"server": {"header_timeout": "2", "request_timeout": "4",
                            "slow_log_interval": "1"}}
    ROUNDS = 12  # one header line per socket per round, a round every 0.6 s: 7 s

    def test_1500_slow_connections_from_one_address_do_not_stop_another(self):
        raise_fd_limit(4096)
        attack = SlowSockets(self.server.port, 1500)
        answers = []
        stop = threading.Event()

        def visitor():
            while not stop.is_set():
                answers.append(visit(self.server.port))
                stop.wait(0.1)

        attack.fill()
        t = threading.Thread(target=visitor)
        t.start()
        try:
            for i in range(self.ROUNDS):
                attack.trickle(b"X-Slow-%d: 1\r\n" % i)
                attack.reap_closed(wait=0.6)
                attack.fill()  # a slowloris reconnects whatever is dropped
        finally:
            stop.set()
            t.join()
            attack.close()
        failed = [a for a in answers if a != 200]
        self.assertEqual(failed, [], "%d of %d requests failed" % (len(failed), len(answers)))
        self.assertGreaterEqual(len(answers), 10)
        # The server refused most of them at accept and reaped the others.
        self.assertGreater(attack.closed_by_server, 1500 - 128)
        log = self.server.read_log()
        self.assertRegex(log, r"closed \d+ slow connections in the last 1s")
        # One line per kind of warning per second, not one per connection.
        mhd_lines = [l for l in log.splitlines() if "mhd:" in l]
        self.assertLess(len(mhd_lines), 4 * (self.ROUNDS + 5), "\n".join(mhd_lines[:20]))


class PerAddressCapTest(ServerTest):
    # Long deadlines: only the cap closes connections here.
    OVERRIDES = {"server": {"max_connections_per_ip": "50", "header_timeout": "120",
                            "request_timeout": "120", "idle_timeout": "120"}}

    def test_connections_past_the_cap_are_refused_and_others_still_served(self):
        raise_fd_limit(1024)
        attack = SlowSockets(self.server.port, 200)
        try:
            attack.fill()
            attack.trickle(b"")
            for _ in range(200):
                if attack.closed_by_server >= 150:
                    break
                attack.reap_closed(wait=0.1)
            attack.reap_closed(wait=0.5)  # and no more than those
            self.assertEqual(attack.closed_by_server, 150)
            self.assertEqual(len(attack.socks), 50)
            self.assertEqual(visit(self.server.port), 200)
        finally:
            attack.close()


class TrustedProxyCapTest(ServerTest):
    """A trusted proxy's connections all come from its one address, so it is
    not held to the per-address cap (issue 8: nginx auth_request met 502s
    once its upstream connections to /authz passed 128); others still are."""
    OVERRIDES = {"server": {"max_connections_per_ip": "50", "header_timeout": "120",
                            "request_timeout": "120", "idle_timeout": "120",
                            "trusted_proxies": ATTACKER + "/32"}}

    def test_a_trusted_proxy_may_hold_more_than_the_cap(self):
        raise_fd_limit(1024)
        proxy = SlowSockets(self.server.port, 120)  # from the trusted address
        other = SlowSockets(self.server.port, 80, source=VISITOR)
        try:
            proxy.fill()
            proxy.trickle(b"")
            other.fill()
            other.trickle(b"")
            for _ in range(200):
                if other.closed_by_server >= 30:
                    break
                other.reap_closed(wait=0.1)
            other.reap_closed(wait=0.5)
            proxy.reap_closed(wait=0.5)
            self.assertEqual(proxy.closed_by_server, 0)
            self.assertEqual(len(proxy.socks), 120)
            self.assertEqual(other.closed_by_server, 30)
            self.assertEqual(len(other.socks), 50)
        finally:
            proxy.close()
            other.close()
        # Once the server has seen them close, the address is served again.
        deadline = time.monotonic() + 10
        status = visit(self.server.port)
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            status = visit(self.server.port)
        self.assertEqual(status, 200)


class DeadlineTest(ServerTest):
    OVERRIDES = {"server": {"header_timeout": "2", "request_timeout": "3"}}

    def trickle_until_closed(self, first, more, max_steps):
        """Sends first, then more every 0.5 s; the number of sends before
        the server closed the connection, or None if it never did."""
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=0.5)
        try:
            s.sendall(first)
            for step in range(max_steps):
                try:
                    if s.recv(4096) == b"":
                        return step
                except socket.timeout:
                    pass  # 0.5 s without news: trickle on
                except OSError:
                    return step
                try:
                    s.sendall(more)
                except OSError:
                    return step
            return None
        finally:
            s.close()

    def test_trickled_headers_are_cut_off_at_the_header_deadline(self):
        # Bytes keep moving, so the idle timeout (15 s) alone never fires:
        # 40 steps are 20 s.
        steps = self.trickle_until_closed(b"GET / HTTP/1.1\r\nHost: x\r\n", b"X-A: b\r\n", 40)
        self.assertIsNotNone(steps, "a trickling client was never closed")
        self.assertLess(steps, 20)

    def test_a_trickled_body_is_cut_off_at_the_request_deadline(self):
        head = (b"POST /agent/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{")
        steps = self.trickle_until_closed(head, b" ", 40)
        self.assertIsNotNone(steps, "a trickling body was never cut off")
        self.assertLess(steps, 20)

    def test_a_kept_alive_connection_serves_several_requests(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            for _ in range(5):
                conn.request("GET", PATH)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                time.sleep(0.5)  # the next request's clock starts at the last reply
        finally:
            conn.close()


class SlowHandlerTest(unittest.TestCase):
    """The deadlines bound how long a client takes to send its request, not
    how long the server takes to answer it: a request waiting on a JWKS
    fetch that hangs (3 s fetch timeout) is still answered, with JSON."""

    def setUp(self):
        # A "provider" that accepts connections and never answers.
        self.hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.hole.bind(("127.0.0.1", 0))
        self.hole.listen(16)
        issuer = "http://127.0.0.1:%d" % self.hole.getsockname()[1]
        self.issuer = issuer
        self.server = Server({"server": {"header_timeout": "1", "request_timeout": "1"},
                              "provider hole": {"issuer": issuer}}).start()

    def tearDown(self):
        rc = self.server.stop()
        self.server.cleanup()
        self.hole.close()
        self.assertEqual(rc, 0)

    def test_a_request_waiting_on_the_server_is_not_cut_off(self):
        def b64(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        now = int(time.time())
        token = ".".join([b64({"alg": "ES256", "typ": "oauth-id-jag+jwt", "kid": "k1"}),
                          b64({"iss": self.issuer, "sub": "u", "aud": self.server.url,
                               "client_id": self.issuer, "jti": "j1", "iat": now,
                               "exp": now + 300}),
                          "c2ln"])
        r = self.server.post("/agent/auth", {"type": "identity_assertion",
                                             "assertion_type":
                                                 "urn:ietf:params:oauth:token-type:id-jag",
                                             "assertion": token})
        self.assertGreaterEqual(r.status, 400, r)
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        self.assertTrue(r.json["error"], r)


if __name__ == "__main__":
    unittest.main()
