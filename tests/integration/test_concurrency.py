"""200 concurrent anonymous registrations all succeed with distinct,
working keys."""
import concurrent.futures
import unittest

from harness import ServerTest


class ConcurrencyTest(ServerTest):
    def test_200_concurrent_anonymous_registrations(self):
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            regs = list(pool.map(lambda _: self.server.register_anonymous(), range(200)))
        keys = {r["credential"] for r in regs}
        self.assertEqual(len(keys), 200)
        self.assertEqual(len({r["claim_token"] for r in regs}), 200)
        self.assertEqual(len({r["registration_id"] for r in regs}), 200)

        def use(reg):
            r = self.server.bearer("GET", "/api/resource", reg["credential"])
            return r.status, r.json["registration_id"] == reg["registration_id"]

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(use, regs))
        self.assertEqual(results, [(200, True)] * 200)
        count = self.server.db_query("SELECT COUNT(*) FROM credentials")[0][0]
        self.assertEqual(count, 200)


if __name__ == "__main__":
    unittest.main()
