"""A store that cannot take a write (locked by another process, or out of
space) answers 503 temporarily_unavailable with Retry-After, promptly, writes
nothing of the refused request, and serves again once the cause goes."""
import http.client
import json
import os
import shutil
import sqlite3
import sys
import unittest

from harness import Response, Server

# A socket timeout well above the server's bounded wait for the write lock:
# an answer that needs the old 5 s wait fails the test by timing out.
SOCKET_TIMEOUT = 5.0

# Runs the server under RLIMIT_FSIZE with SIGXFSZ ignored (inherited across
# exec), so a write past the limit fails as on a full disk.
FSIZE_WRAPPER = ("import os, resource, signal, sys\n"
                 "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                 "n = int(sys.argv[1])\n"
                 "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))\n"
                 "os.execv(sys.argv[2], sys.argv[2:])\n")


def post_json(server, path, body, timeout=SOCKET_TIMEOUT):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def register(server):
    return post_json(server, "/agent/auth",
                     {"type": "anonymous", "requested_credential_type": "api_key"})


class FullDiskServer(Server):
    def __init__(self, fsize, **kw):
        super().__init__(**kw)
        self.fsize = fsize

    def argv(self):
        return [sys.executable, "-c", FSIZE_WRAPPER, str(self.fsize)] + super().argv()


class LockedDatabaseTest(unittest.TestCase):
    def setUp(self):
        self.server = Server().start()

    def tearDown(self):
        self.assertEqual(self.server.stop(), 0)
        self.server.cleanup()

    def assertUnavailable(self, r):
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json["error"], "temporarily_unavailable", r)
        self.assertTrue(r.header("Retry-After"), r.headers)
        self.assertGreaterEqual(int(r.header("Retry-After")), 1)

    def test_a_database_locked_by_another_process_answers_503_then_recovers(self):
        s = self.server
        first = register(s)
        self.assertEqual(first.status, 200, first)
        lock = sqlite3.connect(s.db, timeout=10, isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            # Answered before the socket timeout, i.e. not after the old 5 s.
            r = register(s)
            self.assertUnavailable(r)
            claim = post_json(s, "/agent/auth/claim",
                              {"claim_token": first.json["claim_token"],
                               "email": "lee@example.test"})
            self.assertUnavailable(claim)
            # The bearer check only reads, and reads go on under WAL.
            ok = s.bearer("GET", "/api/resource", first.json["credential"])
            self.assertEqual(ok.status, 200, ok)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        again = register(s)
        self.assertEqual(again.status, 200, again)
        # The refused requests wrote nothing: two registrations, no attempt, no mail.
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM registrations")[0][0], 2)
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM claim_attempts")[0][0], 0)
        self.assertEqual(s.outbox_messages(), [])


class FullDiskTest(unittest.TestCase):
    def test_a_full_disk_at_commit_answers_503_and_writes_nothing_half(self):
        # About 1 MB of WAL: the migrations fit, then some registrations, then
        # a commit cannot write its frames. Odd, so the last write is partial
        # (SQLite reports SQLITE_FULL for a short write).
        server = FullDiskServer(1_000_003).start()
        tmp = server.tmp
        answered = []
        refused = None
        try:
            for _ in range(200):
                r = register(server)
                if r.status == 200:
                    answered.append(r.json)
                    continue
                refused = r
                break
            self.assertIsNotNone(refused, "the file size limit was never reached")
            self.assertEqual(refused.status, 503, refused)
            self.assertEqual(refused.json["error"], "temporarily_unavailable", refused)
            self.assertTrue(refused.header("Retry-After"), refused.headers)
            # Still refused cleanly while the disk stays full, never a 500.
            r = register(server)
            self.assertEqual(r.status, 503, r)
            self.assertGreater(len(answered), 0)
        finally:
            server.stop()
        # With room again, every acknowledged registration is there and
        # works, and no refused one left a row behind.
        server = Server(tmp=tmp).start()
        try:
            self.assertEqual(server.db_query("PRAGMA integrity_check"), [("ok",)])
            self.assertEqual(server.db_query("SELECT COUNT(*) FROM registrations")[0][0],
                             len(answered))
            self.assertEqual(server.db_query("SELECT COUNT(*) FROM credentials")[0][0],
                             len(answered))
            for reg in answered:
                r = server.bearer("GET", "/api/resource", reg["credential"])
                self.assertEqual(r.status, 200, r)
            self.assertEqual(register(server).status, 200)
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
