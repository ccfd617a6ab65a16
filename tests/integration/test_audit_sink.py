"""The audit sink is written after the commit: when it fails (here a full
disk, /dev/full), requests still succeed, the events are in the store, and
the failure is logged, rate-limited rather than once per event."""
import unittest

from harness import ServerTest


class FailingAuditSinkTest(ServerTest):
    OVERRIDES = {"audit": {"sink": "file:/dev/full"}}

    def test_a_failing_sink_fails_no_request_and_is_logged_once_a_minute(self):
        s = self.server
        regs = [s.register_anonymous() for _ in range(5)]
        for reg in regs:
            self.assertEqual(s.bearer("GET", "/api/resource", reg["credential"]).status, 200)
        rows = s.db_query("SELECT COUNT(*) FROM audit_events WHERE event = 'registration.created'")
        self.assertEqual(rows[0][0], 5)
        warnings = [line for line in s.read_log().splitlines()
                    if "audit sink write failed" in line]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("No space left on device", warnings[0])


if __name__ == "__main__":
    unittest.main()
