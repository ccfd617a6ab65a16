"""Rate limits: per IP first, then global; 429 rate_limited with
Retry-After; 0 turns a limit off."""
import unittest

from harness import ServerTest


class PerIpLimitTest(ServerTest):
    OVERRIDES = {"limits": {"anonymous_per_ip": "3", "anonymous_global": "100",
                            "identity_per_ip": "2", "identity_global": "0"}}

    def test_per_ip_limit_then_429_with_retry_after(self):
        for _ in range(3):
            self.server.register_anonymous()
        r = self.server.post("/agent/auth", {"type": "anonymous"})
        self.assertError(r, 429, "rate_limited")
        retry = int(r.header("Retry-After"))
        self.assertGreater(retry, 0)
        self.assertLessEqual(retry, 3600)
        self.assertIn("from this address", r.json["message"])
        # Identity assertions have their own budget.
        self.server.register_email("q1@example.test")
        self.server.register_email("q2@example.test")
        r = self.server.post("/agent/auth", {"type": "identity_assertion",
                                             "assertion_type": "verified_email",
                                             "assertion": "q3@example.test"})
        self.assertError(r, 429, "rate_limited")
        self.assertEqual(len(self.server.outbox_messages()), 2)


class GlobalLimitTest(ServerTest):
    OVERRIDES = {"limits": {"anonymous_per_ip": "0", "anonymous_global": "2"}}

    def test_global_limit_applies_when_per_ip_is_off(self):
        self.server.register_anonymous()
        self.server.register_anonymous()
        r = self.server.post("/agent/auth", {"type": "anonymous"})
        self.assertError(r, 429, "rate_limited")
        self.assertIn("right now", r.json["message"])
        self.assertTrue(r.header("Retry-After").isdigit())


if __name__ == "__main__":
    unittest.main()
