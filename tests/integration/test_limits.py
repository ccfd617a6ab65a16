"""Rate limits: per IP first, then global; 429 rate_limited with
Retry-After; 0 turns a limit off."""
import unittest

from harness import Provider, Server, ServerTest, provider_overrides, register_idjag


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


class GlobalBudgetAfterVerificationTest(unittest.TestCase):
    """Garbage assertions spend the per-IP budget (checked first) but never
    the global one: that is spent only by a token that verified."""

    def setUp(self):
        self.provider = Provider().start()
        overrides = provider_overrides(self.provider)
        overrides["limits"] = {"identity_per_ip": "0", "identity_global": "2"}
        self.server = Server(overrides).start()

    def tearDown(self):
        rc = self.server.stop()
        self.server.cleanup()
        self.provider.stop()
        self.assertEqual(rc, 0)

    def mint(self, **over):
        return self.provider.sign(self.provider.claims(self.server, **over))

    def test_forged_and_expired_tokens_do_not_spend_the_global_budget(self):
        good = self.mint()
        forged = good[:-8] + ("A" * 8 if not good.endswith("A" * 8) else "B" * 8)
        expired = self.mint(iat=1000, exp=2000)
        for token in [forged, expired, "e30.e30.sig", "not-a-jwt"] * 3:
            r = register_idjag(self.server, token)
            self.assertEqual(r.status, 400, r)
            self.assertNotEqual(r.json["error"], "rate_limited", r)
        # The whole budget of 2 is still there for real agents.
        self.assertEqual(register_idjag(self.server, good).status, 200)
        self.assertEqual(register_idjag(self.server, self.mint(sub="user-2")).status, 200)
        r = register_idjag(self.server, self.mint(sub="user-3"))
        self.assertEqual(r.status, 429, r)
        self.assertIn("right now", r.json["message"])


class PerIpBeforeVerificationTest(unittest.TestCase):
    """The per-IP limit still comes first: one source sending garbage is
    stopped before its tokens cost a signature check."""

    def setUp(self):
        self.provider = Provider().start()
        overrides = provider_overrides(self.provider)
        overrides["limits"] = {"identity_per_ip": "2", "identity_global": "0"}
        self.server = Server(overrides).start()

    def tearDown(self):
        rc = self.server.stop()
        self.server.cleanup()
        self.provider.stop()
        self.assertEqual(rc, 0)

    def test_garbage_spends_the_per_ip_budget(self):
        for _ in range(2):
            self.assertEqual(register_idjag(self.server, "e30.e30.sig").status, 400)
        r = register_idjag(self.server, "e30.e30.sig")
        self.assertEqual(r.status, 429, r)
        self.assertIn("from this address", r.json["message"])


if __name__ == "__main__":
    unittest.main()
