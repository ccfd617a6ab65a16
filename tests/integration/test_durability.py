"""What the server acknowledged survives kill -9, and the database holds no
plaintext secret."""
import email
import email.policy
import glob
import http.client
import json
import os
import random
import shutil
import tempfile
import threading
import time
import unittest
import urllib.parse

from harness import Server, ServerTest, claim_link, otp_in_page


class KillNineTest(unittest.TestCase):
    def test_acknowledged_registrations_survive_sigkill(self):
        server = Server().start()
        try:
            regs = [server.register_anonymous() for _ in range(20)]
            email_reg = server.register_email("nia@example.test")
            self.assertEqual(server.kill9(), -9)
            server.start()
            for reg in regs:
                r = server.bearer("GET", "/api/resource", reg["credential"])
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json["registration_id"], reg["registration_id"])
            # A claim started before the crash completes after it.
            otp = server.code_from_link(claim_link(server.outbox_messages()[-1]))
            r = server.complete(email_reg["claim_token"], otp)
            self.assertEqual(r.status, 200, r)
        finally:
            server.cleanup()


class Load:
    """Clients registering and claiming over loopback until told to stop,
    keeping what the server acknowledged. A request cut by the kill fails
    on the client side and is simply not counted."""

    def __init__(self, server, workers=4):
        self.server = server
        self.stop = threading.Event()
        self.registered = []  # every registration answered 200
        self.claimed = []     # every claim completion answered 200
        self.links = {}       # address -> claim link, from the outbox
        self.seen = set()
        self.lock = threading.Lock()
        self.seq = 0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(workers)]

    def call(self, method, path, body=None, form=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
        try:
            headers = {}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            if form is not None:
                data = urllib.parse.urlencode(form).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def link_for(self, address):
        deadline = time.time() + 2
        while time.time() < deadline and not self.stop.is_set():
            with self.lock:
                for path in glob.glob(os.path.join(self.server.outbox, "*.eml")):
                    if path in self.seen:
                        continue
                    self.seen.add(path)
                    with open(path, "rb") as f:
                        msg = email.message_from_bytes(f.read(), policy=email.policy.default)
                    self.links[msg["To"].addresses[0].addr_spec] = claim_link(msg)
                if address in self.links:
                    return self.links[address]
            time.sleep(0.02)
        return None

    def claim(self, reg):
        with self.lock:
            self.seq += 1
            address = "load%d@example.test" % self.seq
        status, _ = self.call("POST", "/agent/auth/claim",
                              {"claim_token": reg["claim_token"], "email": address})
        if status != 200:
            return
        link = self.link_for(address)
        if link is None:
            return
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]
        status, page = self.call("POST", "/agent/auth/claim/attempt/challenge",
                                 form={"claim_attempt_token": token})
        if status != 200:
            return
        status, _ = self.call("POST", "/agent/auth/claim/complete",
                              {"claim_token": reg["claim_token"], "otp": otp_in_page(page)})
        if status == 200:
            self.claimed.append(reg)

    def run(self, i):
        rnd = random.Random(i)
        while not self.stop.is_set():
            try:
                status, body = self.call("POST", "/agent/auth",
                                         {"type": "anonymous",
                                          "requested_credential_type": "api_key"})
                if status != 200:
                    continue
                reg = json.loads(body)
                self.registered.append(reg)
                if rnd.random() < 0.3:
                    self.claim(reg)
            except (OSError, http.client.HTTPException):
                time.sleep(0.02)  # the server is down or was killed mid-request

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()


class KillNineUnderLoadTest(unittest.TestCase):
    """Issue 10: SIGKILL at random moments during concurrent registrations
    and claims, 20 times; what was answered 200 is there and works, nothing
    answered otherwise is there half-made, and the database is sound."""

    CYCLES = 20

    def test_twenty_sigkills_under_load_lose_nothing_acknowledged(self):
        server = Server({"limits": {"claim_mails_global": "0", "claim_mails_per_address": "0"}})
        rnd = random.Random(os.getpid())
        try:
            with Load(server) as load:
                for _ in range(self.CYCLES):
                    server.start()
                    time.sleep(rnd.uniform(0.2, 1.0))
                    self.assertEqual(server.kill9(), -9)
                server.start()
            self.assertGreater(len(load.registered), self.CYCLES)
            self.assertGreater(len(load.claimed), 0)
            self.assertEqual(server.db_query("PRAGMA integrity_check"), [("ok",)])
            for reg in load.registered:
                r = server.bearer("GET", "/api/resource", reg["credential"])
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json["registration_id"], reg["registration_id"])
            for reg in load.claimed:
                me = server.bearer("GET", "/api/resource", reg["credential"]).json
                self.assertTrue(me["user_id"], me)
                self.assertIn("api.write", me["scopes"])
            self.assertNoHalfMadeRows(server)
        finally:
            server.cleanup()

    def assertNoHalfMadeRows(self, server):
        # Each query lists rows that only part of a transaction would leave.
        half_made = {
            "registration without its credential":
                "SELECT id FROM registrations r WHERE NOT EXISTS "
                "(SELECT 1 FROM credentials c WHERE c.registration_id = r.id)",
            "registration without its registration.created event":
                "SELECT id FROM registrations r WHERE NOT EXISTS (SELECT 1 FROM audit_events a "
                "WHERE a.registration_id = r.id AND a.event = 'registration.created')",
            "credential without its registration":
                "SELECT id FROM credentials c WHERE NOT EXISTS "
                "(SELECT 1 FROM registrations r WHERE r.id = c.registration_id)",
            "claim attempt without its registration":
                "SELECT id FROM claim_attempts a WHERE NOT EXISTS "
                "(SELECT 1 FROM registrations r WHERE r.id = a.registration_id)",
            "pending claim without an attempt":
                "SELECT id FROM registrations r WHERE status = 'pending_claim' AND NOT EXISTS "
                "(SELECT 1 FROM claim_attempts a WHERE a.registration_id = r.id)",
            "claimed registration without user, upgraded key or event":
                "SELECT id FROM registrations r WHERE status = 'claimed' AND (user_id IS NULL "
                "OR EXISTS (SELECT 1 FROM credentials c WHERE c.registration_id = r.id "
                "AND (c.user_id IS NULL OR c.user_id != r.user_id)) "
                "OR NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.registration_id = r.id "
                "AND a.event = 'claim.confirmed'))",
            "key bound to a user on an unclaimed registration":
                "SELECT c.id FROM credentials c JOIN registrations r ON r.id = c.registration_id "
                "WHERE r.status != 'claimed' AND c.user_id IS NOT NULL",
        }
        for what, sql in half_made.items():
            self.assertEqual(server.db_query(sql), [], what)


class MemoryStoreTest(unittest.TestCase):
    def test_sqlite_memory_serves_and_leaves_nothing_behind(self):
        import glob
        import os
        tmpdir = tempfile.mkdtemp(prefix="authmd-mem-")
        server = Server({"store": {"url": "sqlite::memory:"}})
        server.tmp_env = tmpdir
        os.environ["TMPDIR"] = tmpdir
        try:
            server.start()
            reg = server.register_anonymous()
            self.assertEqual(server.bearer("GET", "/api/resource", reg["credential"]).status,
                             200)
            self.assertEqual(len(glob.glob(tmpdir + "/authmd-mem-*.db")), 1)
            self.assertEqual(server.stop(), 0)
            self.assertEqual(glob.glob(tmpdir + "/authmd-mem-*"), [])
        finally:
            del os.environ["TMPDIR"]
            server.cleanup()
            shutil.rmtree(tmpdir, ignore_errors=True)


class NoPlaintextSecretsTest(ServerTest):
    def test_the_database_file_holds_no_secret_in_clear(self):
        s = self.server
        secrets = []
        anon = s.register_anonymous()
        secrets += [anon["credential"], anon["claim_token"]]
        s.start_claim(anon["claim_token"], "oli@example.test")
        link = claim_link(s.outbox_messages()[-1])
        secrets.append(urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0])
        otp = s.code_from_link(link)
        secrets.append(otp)
        self.assertEqual(s.complete(anon["claim_token"], otp).status, 200)
        em = s.register_email("pat@example.test", "access_token")
        secrets.append(em["claim_token"])
        link = claim_link(s.outbox_messages()[-1])
        secrets.append(urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0])
        otp2 = s.code_from_link(link)
        done = s.complete(em["claim_token"], otp2).json
        secrets += [otp2, done["credential"]]
        self.assertEqual(s.stop(), 0)
        blob = b""
        for suffix in ("", "-wal", "-shm"):
            try:
                with open(s.db + suffix, "rb") as f:
                    blob += f.read()
            except FileNotFoundError:
                pass
        self.assertGreater(len(blob), 0)
        for secret in secrets:
            # OTPs are 6 digits and may appear by chance as text; the
            # tokens are long enough that any hit is a leak.
            if len(secret) > 6:
                self.assertNotIn(secret.encode(), blob, secret[:6])
        # Every stored secret column is a 32-byte hash.
        for table, col in (("credentials", "hash"), ("registrations", "claim_token_hash"),
                           ("claim_attempts", "token_hash")):
            for (v,) in s.db_query("SELECT %s FROM %s WHERE %s IS NOT NULL" % (col, table, col)):
                self.assertIsInstance(v, bytes)
                self.assertEqual(len(v), 32)
        for (v,) in s.db_query("SELECT otp_hash FROM claim_attempts"):
            self.assertTrue(v is None or (isinstance(v, bytes) and len(v) == 32))
        s.start()  # for tearDown


if __name__ == "__main__":
    unittest.main()
