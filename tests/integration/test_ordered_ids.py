"""Time-ordered ids (docs/decisions.md): the ids of new rows start with their
creation time, so inserts land at the right edge of every index keyed by
them. Users are included: their id is the key of `users` and of the
user_id indexes of registrations, credentials and delegations, and a random
one put each new user's entries on a random page of all four (half the
pages an ID-JAG registration of a new user wrote, issue 8). Read through
the API (the bearer check's answer names the credential's user), so it
runs on either store."""
import re
import time

from harness import Provider, ServerTest, claim_link, provider_overrides, register_idjag

ORDERED = re.compile(r"^(usr|reg|crd)_([0-9a-f]{11})[0-9a-f]{24}$")


def created_ms(test, ident):
    m = ORDERED.match(ident)
    test.assertIsNotNone(m, "%r is not a time-ordered id" % ident)
    return int(m.group(2), 16)


class OrderedUserIdsTest(ServerTest):
    def setUp(self):
        self.provider = Provider().start()
        self.OVERRIDES = provider_overrides(self.provider)
        super().setUp()

    def tearDown(self):
        super().tearDown()
        self.provider.stop()

    def user_of(self, credential):
        r = self.server.bearer("GET", "/api/resource", credential)
        self.assertEqual(r.status, 200, r)
        return r.json["user_id"]

    def test_users_made_by_a_claim_and_by_id_jag_have_ids_that_sort_by_creation(self):
        before = int(time.time() * 1000)
        made = []
        # a claim by email makes the user who owns the address
        reg = self.server.register_anonymous()
        self.assertEqual(self.server.start_claim(reg["claim_token"], "cat@example.test").status,
                         200)
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        made.append(self.user_of(reg["credential"]))
        # an ID-JAG for a subject the service has not seen provisions one
        for sub in ("dan", "eve", "fay"):
            time.sleep(0.005)  # a millisecond apart at least, so the order is the time's
            token = self.provider.sign(self.provider.claims(self.server, sub=sub,
                                                            email=sub + "@example.test"))
            r = register_idjag(self.server, token)
            self.assertEqual(r.status, 200, r)
            made.append(self.user_of(r.json["credential"]))
        after = int(time.time() * 1000)
        self.assertEqual(len(set(made)), 4, made)
        stamps = [created_ms(self, u) for u in made]
        for ms in stamps:
            self.assertTrue(before - 1000 <= ms <= after + 1000, (ms, before, after))
        self.assertEqual(stamps, sorted(stamps), made)
        self.assertEqual(made, sorted(made))
        # the same subject again is the same user, not a new id
        token = self.provider.sign(self.provider.claims(self.server, sub="eve",
                                                        email="eve@example.test"))
        r = register_idjag(self.server, token)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.user_of(r.json["credential"]), made[2])


if __name__ == "__main__":
    import unittest
    unittest.main()
