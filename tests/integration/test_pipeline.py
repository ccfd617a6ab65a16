"""The request pipeline (issue 8): a request waiting for its durable commit
is parked and does not hold an HTTP worker, many concurrent registrations
on one worker are all answered and all durable, and SIGTERM with requests
parked resumes each with its outcome before the server stops."""
import http.client
import json
import sqlite3
import threading
import time
import unittest

from harness import Provider, Response, Server, claim_link, provider_overrides


def post_json(server, path, body, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def register(server, timeout=30):
    return post_json(server, "/agent/auth", {"type": "anonymous"}, timeout)


def concurrently(n, fn):
    """Runs fn(i) on n threads started together; returns the results (an
    exception stands for a request cut off)."""
    out = [None] * n
    go = threading.Barrier(n)

    def run(i):
        go.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - a cut connection is data here
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


class ParkedRequestTest(unittest.TestCase):
    def setUp(self):
        self.server = Server({"server": {"threads": "1",
                                         "max_connections_per_ip": "1024"}}).start()

    def tearDown(self):
        self.assertEqual(self.server.stop(), 0)
        self.server.cleanup()

    def test_a_registration_waiting_for_the_lock_leaves_the_only_worker_free(self):
        s = self.server
        lock = sqlite3.connect(s.db, timeout=10, isolation_level=None)
        answered = threading.Event()
        result = {}

        def reg():
            result["r"] = register(s)
            answered.set()

        try:
            # Another process holds the write lock: the registration's
            # commit waits for it (then gives up with 503), parked.
            lock.execute("BEGIN EXCLUSIVE")
            t = threading.Thread(target=reg)
            t.start()
            # With one worker thread, a worker blocked in the commit wait
            # (up to its 500 ms bound) could answer nothing else before the
            # registration. Parked, it serves discovery while the
            # registration still waits for the lock.
            answered.wait(0.1)
            d = s.get("/.well-known/oauth-authorization-server")
            self.assertEqual(d.status, 200, d)
            self.assertFalse(answered.is_set(), "the registration held the worker")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        t.join()
        self.assertIn(result["r"].status, (200, 503), result["r"])

    def test_a_claim_completion_waiting_for_the_lock_leaves_the_only_worker_free(self):
        s = self.server
        reg = s.register_anonymous()
        self.assertEqual(s.start_claim(reg["claim_token"], "ria@example.test").status, 200)
        otp = s.code_from_link(claim_link(s.outbox_messages()[-1]))
        lock = sqlite3.connect(s.db, timeout=10, isolation_level=None)
        answered = threading.Event()
        result = {}

        def complete():
            result["r"] = post_json(s, "/agent/auth/claim/complete",
                                    {"claim_token": reg["claim_token"], "otp": otp})
            answered.set()

        try:
            lock.execute("BEGIN EXCLUSIVE")
            t = threading.Thread(target=complete)
            t.start()
            answered.wait(0.1)
            d = s.get("/.well-known/oauth-authorization-server")
            self.assertEqual(d.status, 200, d)
            self.assertFalse(answered.is_set(), "the completion held the worker")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        t.join()
        r = result["r"]
        if r.status == 503:  # the lock outlasted the bounded wait: nothing was claimed
            self.assertNotEqual(s.db_query("SELECT status FROM registrations WHERE id = ?",
                                           (reg["registration_id"],))[0][0], "claimed")
            r = s.complete(reg["claim_token"], otp)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "claimed")

    def test_completions_refused_by_a_check_need_no_write_lock_and_a_wrong_code_only_its_count(self):
        s = self.server
        reg = s.register_anonymous()
        self.assertEqual(s.start_claim(reg["claim_token"], "ola@example.test").status, 200)
        otp = s.code_from_link(claim_link(s.outbox_messages()[-1]))
        wrong = "000000" if otp != "000000" else "111111"
        lock = sqlite3.connect(s.db, timeout=10, isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            # Read-only refusals are answered even while another process
            # holds the write lock: they never queue for it.
            r = s.complete("clm_unknown", otp)
            self.assertEqual(r.status, 400, r)
            self.assertEqual(r.json["error"], "invalid_claim_token")
            # A wrong code must be counted before it is refused: with the
            # lock held it cannot be, so it is not answered 401.
            r = s.complete(reg["claim_token"], wrong)
            self.assertEqual(r.status, 503, r)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        r = s.complete(reg["claim_token"], wrong)
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json["error"], "otp_invalid")
        failures = s.db_query("SELECT otp_failures FROM claim_attempts "
                              "WHERE registration_id = ?", (reg["registration_id"],))
        self.assertEqual(failures[0][0], 1)
        r = s.complete(reg["claim_token"], otp)
        self.assertEqual(r.status, 200, r)

    def test_hundreds_of_concurrent_registrations_on_one_worker_are_all_durable(self):
        s = self.server
        results = concurrently(300, lambda i: register(s))
        ok = [r for r in results if isinstance(r, Response) and r.status == 200]
        self.assertEqual(len(ok), 300, [r for r in results if r not in ok][:3])
        ids = {r.json["registration_id"] for r in ok}
        self.assertEqual(len(ids), 300)
        # Each answered registration's key works: it was committed first.
        for r in ok[::25]:
            b = s.bearer("GET", "/api/resource", r.json["credential"])
            self.assertEqual(b.status, 200, b)
        rows = s.db_query("SELECT COUNT(*) FROM registrations")
        self.assertEqual(rows[0][0], 300)
        # Every answered registration has its credential and audit row:
        # nothing half-made.
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM credentials")[0][0], 300)
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM audit_events WHERE "
                                    "event = 'registration.created'")[0][0], 300)


class ParkedIdJagTest(unittest.TestCase):
    def test_an_idjag_registration_waiting_for_the_lock_leaves_the_only_worker_free(self):
        provider = Provider().start()
        overrides = provider_overrides(provider)
        overrides["server"] = {"threads": "1"}
        s = Server(overrides).start()
        try:
            # The first registration fetches the keys; the second only waits
            # for the store.
            first = post_json(s, "/agent/auth", idjag_body(provider.sign(provider.claims(s))))
            self.assertEqual(first.status, 200, first)
            token = provider.sign(provider.claims(s))
            lock = sqlite3.connect(s.db, timeout=10, isolation_level=None)
            answered = threading.Event()
            result = {}

            def reg():
                result["r"] = post_json(s, "/agent/auth", idjag_body(token))
                answered.set()

            try:
                lock.execute("BEGIN EXCLUSIVE")
                t = threading.Thread(target=reg)
                t.start()
                answered.wait(0.1)
                d = s.get("/.well-known/oauth-authorization-server")
                self.assertEqual(d.status, 200, d)
                self.assertFalse(answered.is_set(), "the registration held the worker")
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            t.join()
            r = result["r"]
            if r.status == 503:  # refused whole: its jti was not burned
                self.assertEqual(r.json["error"], "temporarily_unavailable")
                r = post_json(s, "/agent/auth", idjag_body(token))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["registration_type"], "agent-provider")
            b = s.bearer("GET", "/api/resource", r.json["credential"])
            self.assertEqual(b.status, 200, b)
        finally:
            s.stop()
            s.cleanup()
            provider.stop()


def idjag_body(token):
    return {"type": "identity_assertion",
            "assertion_type": "urn:ietf:params:oauth:token-type:id-jag",
            "assertion": token, "requested_credential_type": "access_token"}


class OrderedIdsTest(unittest.TestCase):
    def test_ids_sort_by_creation_and_keep_96_random_bits(self):
        # Write amplification: ids that sort by creation keep every index
        # on them growing at its right edge (docs/performance.md).
        s = Server().start()
        try:
            regs = []
            for _ in range(5):
                regs.append(s.register_anonymous())
                time.sleep(0.002)  # distinct milliseconds; not a speed check
            ids = [r["registration_id"] for r in regs]
            self.assertEqual(ids, sorted(ids))
            for i in ids:
                self.assertRegex(i, r"^reg_[0-9a-f]{11}[0-9a-f]{24}$")
            creds = [row[0] for row in s.db_query(
                "SELECT id FROM credentials ORDER BY created_at, rowid")]
            self.assertEqual(creds, sorted(creds))
            self.assertEqual(len(set(i[15:] for i in ids)), 5)
        finally:
            s.stop()
            s.cleanup()


class SweeperTest(unittest.TestCase):
    def test_the_sweeper_expires_more_than_one_chunk_through_the_writer(self):
        # 40 registrations fall due together: expired in writer jobs of 16
        # (flows/expiry.c), each complete with its revocation and event.
        s = Server({"ttl": {"registration": "5", "sweep_interval": "1"}}).start()
        try:
            regs = [s.register_anonymous() for _ in range(40)]
            for _ in range(300):
                left = s.db_query("SELECT COUNT(*) FROM registrations "
                                  "WHERE status != 'expired'")[0][0]
                if left == 0:
                    break
                time.sleep(0.1)
            self.assertEqual(left, 0)
            live = s.db_query("SELECT COUNT(*) FROM credentials WHERE revoked_at IS NULL")
            self.assertEqual(live[0][0], 0)
            events = s.db_query("SELECT COUNT(*) FROM audit_events "
                                "WHERE event = 'registration.expired'")
            self.assertEqual(events[0][0], 40)
            r = s.bearer("GET", "/api/resource", regs[-1]["credential"])
            self.assertEqual(r.status, 401, r)
            self.assertEqual(s.register_anonymous()["registration_type"], "anonymous")
        finally:
            s.stop()
            s.cleanup()


class StopWhileParkedTest(unittest.TestCase):
    def test_sigterm_during_a_burst_answers_or_refuses_each_and_exits_cleanly(self):
        s = Server({"server": {"threads": "1", "max_connections_per_ip": "1024"}}).start()
        try:
            stopper = threading.Timer(0.05, lambda: s.proc.terminate())

            def reg(i):
                if i == 0:
                    stopper.start()
                return register(s, timeout=10)

            results = concurrently(120, reg)
            rc = s.stop()
            # No libmicrohttpd panic over a suspended connection: a clean exit.
            self.assertEqual(rc, 0, s.read_log()[-2000:])
            ok = [r for r in results if isinstance(r, Response) and r.status == 200]
            s.start()
            for r in ok:
                b = s.bearer("GET", "/api/resource", r.json["credential"])
                self.assertEqual(b.status, 200, b)
            made = s.db_query("SELECT COUNT(*) FROM registrations")[0][0]
            creds = s.db_query("SELECT COUNT(*) FROM credentials")[0][0]
            self.assertGreaterEqual(made, len(ok))
            self.assertEqual(made, creds)  # none half-made
        finally:
            s.cleanup()


if __name__ == "__main__":
    unittest.main()
