"""PostgreSQL stopped mid-run (issue 11): requests that need the store get
503 with Retry-After (never 500, never a hang past the configured bounds),
/readyz says not ready, and service resumes by itself when the database is
back. The cluster is this file's own, since the test stops it."""
import time
import unittest

import pgcluster
from harness import Server

PATIENCE_S = 60  # how long the test waits for recovery before it fails


def anonymous(server):
    return server.post("/agent/auth", {"type": "anonymous",
                                       "requested_credential_type": "api_key"})


@unittest.skipIf(pgcluster.pg_bin_dir() is None, "no PostgreSQL server installed")
class PostgresDownTest(unittest.TestCase):
    def setUp(self):
        self.cluster = pgcluster.PgCluster().init().start()
        db = pgcluster.create_database(self.cluster.url(), "down")
        self.server = Server({"store": {"url": db, "connect_timeout": "2",
                                        "statement_timeout": "2"}}).start()

    def tearDown(self):
        self.server.stop()
        self.server.cleanup()
        self.cluster.cleanup()

    def ready_everywhere(self, what):
        """Polls /readyz until it has answered 200 as often as there are
        workers in a row (each may open its connection on its first
        request; on a loaded machine that can take longer than one try)."""
        deadline = time.time() + PATIENCE_S
        row, seen = 0, []
        while row < 8 and time.time() < deadline:
            r = self.server.get("/readyz")
            seen.append((r.status, r.body[:200]))
            row = row + 1 if r.status == 200 else 0
            if r.status != 200:
                time.sleep(0.2)
        self.assertEqual(row, 8, "%s: /readyz %r\n%s" % (what, seen[-5:],
                                                         self.server.read_log()[-3000:]))

    def test_a_stopped_database_gives_503_with_retry_after_and_service_resumes(self):
        self.ready_everywhere("at start")
        before = anonymous(self.server)
        self.assertEqual(before.status, 200, before)

        self.cluster.stop("fast")
        # every worker thread meets the lost connection, then a refused
        # reconnection: each answer is a clean 503, whichever it meets
        for _ in range(8):
            r = anonymous(self.server)
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json["error"], "temporarily_unavailable", r.json)
            self.assertTrue(r.header("Retry-After"), r)
            ready = self.server.get("/readyz")
            self.assertEqual(ready.status, 503, ready)
        time.sleep(1.2)  # past the bearer cache (1 s): the check must reach the store
        gate = self.server.bearer("GET", "/api/resource", before.json["credential"])
        self.assertEqual(gate.status, 503, gate)

        self.cluster.start()  # same port and data: the operator brought it back
        deadline = time.time() + PATIENCE_S
        codes = []
        while time.time() < deadline:
            r = anonymous(self.server)
            codes.append(r.status)
            if r.status == 200:
                break
            self.assertEqual(r.status, 503, r)
            time.sleep(0.2)
        self.assertEqual(codes[-1], 200, codes)
        # every worker reconnects by itself, without a restart: /readyz
        # comes back on all of them, then no request fails
        self.ready_everywhere("after the database came back")
        for _ in range(8):
            r = anonymous(self.server)
            self.assertEqual(r.status, 200, r)
        ok = self.server.bearer("GET", "/api/resource", before.json["credential"])
        self.assertEqual(ok.status, 200, ok)


if __name__ == "__main__":
    unittest.main()
