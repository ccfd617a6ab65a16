"""The request pipeline (issue 8): a request waiting for its durable commit
is parked and does not hold an HTTP worker, many concurrent registrations
on one worker are all answered and all durable, and SIGTERM with requests
parked resumes each with its outcome before the server stops."""
import email
import email.policy
import http.client
import json
import os
import resource
import sqlite3
import threading
import time
import unittest
import urllib.parse

from harness import Provider, Response, Server, claim_link, otp_in_page, provider_overrides
from smtp_sink import SmtpSink
from test_background_work import SilentSmtp


def post_raw(server, path, body, content_type, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def post_json(server, path, body, timeout=30):
    return post_raw(server, path, json.dumps(body).encode(), "application/json", timeout)


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


def call_while_locked(test, server, call):
    """Runs call() while another process holds the store's write lock, and
    checks that the server's only worker answers a discovery request
    meanwhile (the call waits parked, not on the worker); returns call()'s
    answer once the lock is gone."""
    answered = threading.Event()
    result = {}

    def run():
        result["r"] = call()
        answered.set()
    lock = sqlite3.connect(server.db, timeout=10, isolation_level=None)
    try:
        # Another process holds the write lock: the call's commit waits for
        # it (then gives up with 503). With one worker thread, a worker
        # blocked in the commit wait (up to its 500 ms bound) could answer
        # nothing else first; parked, it serves discovery meanwhile.
        lock.execute("BEGIN EXCLUSIVE")
        t = threading.Thread(target=run)
        t.start()
        answered.wait(0.1)
        d = server.get("/.well-known/oauth-authorization-server")
        test.assertEqual(d.status, 200, d)
        test.assertFalse(answered.is_set(), "the request held the worker")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    t.join()
    return result["r"]


class ParkedRequestTest(unittest.TestCase):
    def setUp(self):
        self.server = Server({"server": {"threads": "1",
                                         "max_connections_per_ip": "1024"}}).start()

    def tearDown(self):
        self.assertEqual(self.server.stop(), 0)
        self.server.cleanup()

    def test_a_registration_waiting_for_the_lock_leaves_the_only_worker_free(self):
        s = self.server
        r = call_while_locked(self, s, lambda: register(s))
        self.assertIn(r.status, (200, 503), r)

    def test_a_claim_completion_waiting_for_the_lock_leaves_the_only_worker_free(self):
        s = self.server
        reg = s.register_anonymous()
        self.assertEqual(s.start_claim(reg["claim_token"], "ria@example.test").status, 200)
        otp = s.code_from_link(claim_link(s.outbox_messages()[-1]))
        r = call_while_locked(self, s, lambda: post_json(
            s, "/agent/auth/claim/complete", {"claim_token": reg["claim_token"], "otp": otp}))
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
            r = call_while_locked(self, s,
                                  lambda: post_json(s, "/agent/auth", idjag_body(token)))
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


class V06ParkedTest(unittest.TestCase):
    """Issue 13: /agent/identity, /oauth2/token and /agent/event/notify
    commit through the group commit like /agent/auth: with one worker and
    the write lock held by another process, each waits parked and the
    worker serves others."""

    def setUp(self):
        self.provider = Provider().start()
        overrides = provider_overrides(self.provider)
        overrides["server"] = {"threads": "1"}
        self.s = Server(overrides).start()

    def tearDown(self):
        self.assertEqual(self.s.stop(), 0)
        self.s.cleanup()
        self.provider.stop()

    def token(self, assertion):
        return post_raw(self.s, "/oauth2/token", urllib.parse.urlencode(
            {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
             "assertion": assertion}).encode(), "application/x-www-form-urlencoded")

    def set_event(self, sub):
        token = self.provider.sign(self.provider.logout_claims(self.s, sub=sub),
                                   typ="secevent+jwt")
        return post_raw(self.s, "/agent/event/notify", token.encode(),
                        "application/secevent+jwt")

    def idjag(self, sub):
        return self.provider.sign(self.provider.claims(self.s, sub=sub,
                                                       auth_time=int(time.time())))

    def test_each_v06_write_waits_parked_and_leaves_the_only_worker_free(self):
        s = self.s
        # warm: the provider's keys fetched, the service key loaded
        self.assertEqual(post_json(s, "/agent/identity",
                                   idjag_body(self.idjag("warm"))).status, 200)
        anon = post_json(s, "/agent/identity", {"type": "anonymous"}).json
        own = anon["identity_assertion"]
        cases = [
            ("anonymous", lambda: post_json(s, "/agent/identity", {"type": "anonymous"}),
             "identity_assertion"),
            ("id-jag", lambda: post_json(s, "/agent/identity", idjag_body(self.idjag("p1"))),
             "identity_assertion"),
            ("token, own assertion", lambda: self.token(own), "access_token"),
            ("token, id-jag", lambda: self.token(self.idjag("p2")), "access_token"),
            ("SET", lambda: self.set_event("p1"), None),
            ("refresh", lambda: post_json(s, "/agent/identity", {
                "type": "refresh", "refresh_token": anon["identity"]["refresh_token"]}),
             "identity_assertion"),
        ]
        for name, call, field in cases:
            with self.subTest(name):
                r = call_while_locked(self, s, call)
                self.assertIn(r.status, (200, 202, 503), r)
                if r.status == 503:  # the writer gave up whole: nothing half-written
                    self.assertEqual(r.json["error"], "temporarily_unavailable")
                elif field is None:  # the SET: 202, no body
                    self.assertEqual((r.status, r.body), (202, b""), r)
                else:
                    self.assertTrue(r.json[field], r.json)


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


def thread_nices(pid):
    """{thread name: [nice of each thread of that name]} of process pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                nice = int(f.read().rsplit(")", 1)[1].split()[16])  # field 19
        except OSError:
            continue  # ended meanwhile
        out.setdefault(name, []).append(nice)
    return out


class WriterPriorityTest(unittest.TestCase):
    """The store writer, the one serial stage of every durable write, runs a
    few nice steps above the HTTP workers ([store] writer_priority), so
    that busy workers cannot starve it; refused, it says so and runs on."""

    def nices(self, s):
        deadline = time.time() + 5
        while True:  # the writer sets its own as it starts
            n = thread_nices(s.proc.pid)
            if "store-writer" in n and "MHD-worker" in n or time.time() > deadline:
                return n
            time.sleep(0.05)

    def test_the_writer_runs_five_steps_above_the_workers_or_says_why_not(self):
        base = os.getpriority(os.PRIO_PROCESS, 0)
        s = Server().start()
        try:
            n = self.nices(s)
            self.assertEqual(set(n["MHD-worker"]), {base})  # the workers keep it
            allowed = os.geteuid() == 0 or \
                resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20 - (base - 5)
            if allowed:
                self.assertEqual(n["store-writer"], [max(base - 5, -20)])
            else:
                self.assertEqual(n["store-writer"], [base])
                self.assertIn("store writer priority not raised", s.read_log())
        finally:
            s.stop()
            s.cleanup()

    def test_writer_priority_0_leaves_the_writer_at_the_process_priority(self):
        base = os.getpriority(os.PRIO_PROCESS, 0)
        s = Server({"store": {"writer_priority": "0"}}).start()
        try:
            time.sleep(0.2)
            n = self.nices(s)
            self.assertEqual(n["store-writer"], [base])
            self.assertNotIn("store writer priority", s.read_log())
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
            # The first process, bound now: reg(0) may run late on a loaded
            # machine, and a timer reading s.proc when it fires could stop
            # the server restarted below.
            stopper = threading.Timer(0.05, s.proc.terminate)

            def reg(i):
                if i == 0:
                    stopper.start()
                return register(s, timeout=10)

            results = concurrently(120, reg)
            stopper.join()
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


def post_form(server, path, form, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("POST", path, body=urllib.parse.urlencode(form).encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def queued_attempt_token(server, registration_id):
    """The attempt token of a registration's newest claim mail, read from the
    durable mail queue (the SMTP server never answers, so it stays there)."""
    rows = server.db_query(
        "SELECT m.message FROM mail_queue m JOIN claim_attempts a ON a.id = m.attempt_id "
        "WHERE a.registration_id = ? ORDER BY m.id DESC LIMIT 1", (registration_id,))
    assert rows, "no queued mail for %s" % registration_id
    raw = rows[0][0]
    msg = email.message_from_bytes(raw if isinstance(raw, bytes) else raw.encode(),
                                   policy=email.policy.default)
    link = claim_link(msg)
    return urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]


class SilentSmtpWritesTest(unittest.TestCase):
    """Every durable write of the claim ceremony waits for the group commit
    parked: with two workers, a silent SMTP server and the database locked
    by another process, a dozen email registrations, claim starts, code
    pages and completions wait together while discovery and the bearer
    check keep answering; once the lock goes each is answered, durable."""

    def setUp(self):
        self.sink = SmtpSink()
        self.silent = SilentSmtp(self.sink.port)
        self.server = Server({"server": {"threads": "2", "max_connections_per_ip": "1024"},
                              "limits": {"claim_mails_global": "0",
                                         "claim_mails_per_address": "0"},
                              "mail": {"smtp_url": self.sink.url, "starttls": "off",
                                       "retry_min": "1", "retry_max": "1"}}).start()

    def tearDown(self):
        rc = self.server.stop()
        self.server.cleanup()
        self.silent.stop()
        self.assertEqual(rc, 0)

    def test_writes_waiting_for_the_commit_hold_no_worker(self):
        s = self.server
        credential = s.register_anonymous()["credential"]
        # Four registrations with a code shown, ready to complete; four to
        # start a claim on; four code pages to press.
        done, to_start, to_press = [], [], []
        for i in range(4):
            reg = s.register_anonymous()
            self.assertEqual(s.start_claim(reg["claim_token"], "c%d@example.test" % i).status,
                             200)
            token = queued_attempt_token(s, reg["registration_id"])
            shown = post_json(s, "/agent/auth/claim/attempt/challenge",
                              {"claim_attempt_token": token})
            self.assertEqual(shown.status, 200, shown)
            done.append((reg, shown.json["challenge"]))
            to_start.append(s.register_anonymous())
            reg = s.register_anonymous()
            self.assertEqual(s.start_claim(reg["claim_token"], "p%d@example.test" % i).status,
                             200)
            to_press.append(queued_attempt_token(s, reg["registration_id"]))
        self.assertTrue(self.silent.accepted.wait(10), "the mail worker never tried SMTP")

        def write(i):
            kind, k = divmod(i, 4)
            if kind == 0:
                return post_json(s, "/agent/auth", {
                    "type": "identity_assertion", "assertion_type": "verified_email",
                    "assertion": "e%d@example.test" % k})
            if kind == 1:
                return post_json(s, "/agent/auth/claim",
                                 {"claim_token": to_start[k]["claim_token"],
                                  "email": "s%d@example.test" % k})
            if kind == 2:
                return post_form(s, "/agent/auth/claim/attempt/challenge",
                                 {"claim_attempt_token": to_press[k]})
            return post_json(s, "/agent/auth/claim/complete",
                             {"claim_token": done[k][0]["claim_token"], "otp": done[k][1]})

        results = [None] * 16
        answered = [threading.Event() for _ in range(16)]

        def run(i):
            try:
                results[i] = write(i)
            except Exception as exc:  # noqa: BLE001 - checked below
                results[i] = exc
            answered[i].set()

        lock = sqlite3.connect(s.db, timeout=10, isolation_level=None)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
        try:
            lock.execute("BEGIN EXCLUSIVE")
            for t in threads:
                t.start()
            answered[0].wait(0.15)
            # Sixteen writes wait for the writer, which waits for the lock;
            # with two workers, a worker held by any of them could not
            # answer these before the writes are answered.
            d = s.get("/.well-known/oauth-authorization-server")
            self.assertEqual(d.status, 200, d)
            b = s.bearer("GET", "/api/resource", credential)
            self.assertEqual(b.status, 200, b)
            pending = [i for i in range(16) if not answered[i].is_set()]
            self.assertEqual(pending, list(range(16)), "a write was answered under the lock")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        for t in threads:
            t.join()
        # The lock outlasted the writer's bounded wait, or did not: each
        # write is answered 200 (durable) or 503 with Retry-After (nothing
        # of it exists), never cut off. A 503 is retried once.
        for i, r in enumerate(results):
            self.assertIsInstance(r, Response, r)
            if r.status == 503:
                self.assertEqual(r.json["error"], "temporarily_unavailable")
                self.assertTrue(r.header("Retry-After"), r)
                results[i] = write(i)
            self.assertEqual(results[i].status, 200, (i, results[i]))
        for k in range(4):
            me = s.bearer("GET", "/api/resource", done[k][0]["credential"])
            self.assertTrue(me.json["user_id"], me)
            self.assertEqual(s.db_query("SELECT status FROM registrations WHERE id = ?",
                                        (to_start[k]["registration_id"],)),
                             [("pending_claim",)])
        # Each code shown on a page is the one stored: it completes.
        for k in range(4):
            otp = otp_in_page(results[8 + k].body)
            reg_id = s.db_query("SELECT registration_id FROM claim_attempts WHERE "
                                "email = ?", ("p%d@example.test" % k,))[0][0]
            self.assertEqual(s.db_query("SELECT COUNT(*) FROM audit_events WHERE "
                                        "event = 'otp.generated' AND registration_id = ?",
                                        (reg_id,)), [(1,)])
            self.assertRegex(otp, r"^[0-9]{6}$")
        # Email registrations and claim starts queued their mails durably.
        rcpts = {row[0] for row in s.db_query("SELECT rcpt FROM mail_queue")}
        for k in range(4):
            self.assertIn("e%d@example.test" % k, rcpts)
            self.assertIn("s%d@example.test" % k, rcpts)


class KillDuringClaimsTest(unittest.TestCase):
    def test_sigkill_during_a_burst_of_claim_completions_loses_nothing_acknowledged(self):
        s = Server({"server": {"threads": "2", "max_connections_per_ip": "1024"},
                    "limits": {"claim_mails_global": "0",
                               "claim_mails_per_address": "0"}}).start()
        try:
            ready = []
            for i in range(40):
                reg = s.register_anonymous()
                started = s.start_claim(reg["claim_token"], "k%d@example.test" % i)
                self.assertEqual(started.status, 200, started)
                ready.append(reg)
            by_to = {m["To"]: m for m in s.outbox_messages()}
            codes = [s.code_from_link(claim_link(by_to["k%d@example.test" % i]))
                     for i in range(40)]
            killer = threading.Timer(0.03, lambda: s.proc.kill())

            def complete(i):
                if i == 0:
                    killer.start()
                return post_json(s, "/agent/auth/claim/complete",
                                 {"claim_token": ready[i]["claim_token"], "otp": codes[i]},
                                 timeout=10)

            results = concurrently(40, complete)
            killer.join()
            self.assertEqual(s.kill9(), -9)
            s.start()
            acked = [i for i, r in enumerate(results)
                     if isinstance(r, Response) and r.status == 200]
            for i in acked:
                me = s.bearer("GET", "/api/resource", ready[i]["credential"])
                self.assertEqual(me.status, 200, me)
                self.assertTrue(me.json["user_id"], me)
                self.assertIn("api.write", me.json["scopes"])
            # Claimed whole or not at all: no claimed row without its user,
            # upgraded key and event, no key bound on an unclaimed one.
            half = s.db_query(
                "SELECT id FROM registrations r WHERE status = 'claimed' AND (user_id IS NULL "
                "OR EXISTS (SELECT 1 FROM credentials c WHERE c.registration_id = r.id "
                "AND (c.user_id IS NULL OR c.user_id != r.user_id)) "
                "OR NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.registration_id = r.id "
                "AND a.event = 'claim.confirmed'))")
            self.assertEqual(half, [])
            bound = s.db_query(
                "SELECT c.id FROM credentials c JOIN registrations r ON "
                "r.id = c.registration_id WHERE r.status != 'claimed' AND c.user_id IS NOT NULL")
            self.assertEqual(bound, [])
            self.assertEqual(s.db_query("PRAGMA integrity_check"), [("ok",)])
        finally:
            s.cleanup()


if __name__ == "__main__":
    unittest.main()
