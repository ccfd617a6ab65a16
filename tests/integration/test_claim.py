"""The user-claimed flows end to end over the outbox: anonymous start, the
claim ceremony, scope upgrade in place, and every claim error code."""
import time
import unittest
import urllib.parse

from harness import ServerTest, claim_link, otp_in_page


class AnonymousClaimTest(ServerTest):
    def claim_to_code(self, address="Ann@Example.test"):
        reg = self.server.register_anonymous()
        r = self.server.start_claim(reg["claim_token"], address)
        self.assertEqual(r.status, 200, r)
        msgs = self.server.outbox_messages()
        return reg, r.json, msgs[-1]

    def test_anonymous_key_works_at_once_with_pre_claim_scopes(self):
        reg = self.server.register_anonymous()
        self.assertEqual(reg["registration_type"], "anonymous")
        self.assertEqual(reg["credential_type"], "api_key")
        self.assertIsNone(reg["credential_expires"])
        self.assertEqual(reg["scopes"], ["api.read"])
        self.assertEqual(reg["post_claim_scopes"], ["api.read", "api.write"])
        self.assertEqual(reg["claim_url"], self.server.url + "/agent/auth/claim")
        self.assertTrue(reg["claim_token"].startswith("clm_"))
        self.assertTrue(reg["registration_id"].startswith("reg_"))
        r = self.server.bearer("GET", "/api/resource", reg["credential"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["scopes"], ["api.read"])
        self.assertIsNone(r.json["user_id"])
        self.assertEqual(r.json["registration_id"], reg["registration_id"])
        self.assertEqual(r.json["source"], "anonymous")
        r = self.server.bearer("POST", "/api/resource", reg["credential"], body={})
        self.assertError(r, 403, "insufficient_scope")
        self.assertRegex(r.header("WWW-Authenticate"),
                         r'^Bearer error="insufficient_scope", scope="api.write", '
                         r'resource_metadata="http://127.0.0.1:\d+/.well-known/'
                         r'oauth-protected-resource/api/"$')

    def test_whole_ceremony_upgrades_the_same_key_in_place(self):
        reg, started, msg = self.claim_to_code()
        self.assertEqual(started["status"], "initiated")
        self.assertEqual(started["registration_id"], reg["registration_id"])
        self.assertTrue(started["claim_attempt_id"].startswith("cla_"))
        self.assertEqual(msg["To"].addresses[0].addr_spec, "ann@example.test")
        self.assertIn("text/html", [p.get_content_type() for p in msg.iter_parts()])
        otp = self.server.code_from_link(claim_link(msg))
        r = self.server.complete(reg["claim_token"], otp)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"registration_id": reg["registration_id"],
                                  "status": "claimed"})
        me = self.server.bearer("GET", "/api/resource", reg["credential"])
        self.assertEqual(me.status, 200)
        self.assertEqual(me.json["scopes"], ["api.read", "api.write"])
        self.assertEqual(me.json["email"], "ann@example.test")
        self.assertTrue(me.json["user_id"].startswith("usr_"))
        r = self.server.bearer("POST", "/api/resource", reg["credential"], body={})
        self.assertEqual(r.status, 200, r)
        events = [e["event"] for e in self.server.audit_events()]
        for ev in ("registration.created", "claim.requested", "otp.generated",
                   "claim.confirmed"):
            self.assertIn(ev, events)
        confirmed = [e for e in self.server.audit_events() if e["event"] == "claim.confirmed"]
        self.assertEqual(confirmed[0]["claimed_by_user_id"], me.json["user_id"])
        # The store holds the same events.
        rows = self.server.db_query("SELECT event FROM audit_events ORDER BY seq")
        self.assertEqual([r[0] for r in rows], events)

    def test_a_second_claim_for_the_same_email_binds_the_same_user(self):
        users = []
        for _ in range(2):
            reg, _, msg = self.claim_to_code("bob@example.test")
            otp = self.server.code_from_link(claim_link(msg))
            self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
            users.append(self.server.bearer("GET", "/api/resource",
                                            reg["credential"]).json["user_id"])
        self.assertEqual(users[0], users[1])

    def test_loading_the_page_mints_no_code(self):
        reg, _, msg = self.claim_to_code()
        link = urllib.parse.urlsplit(claim_link(msg))
        for _ in range(3):
            page = self.server.get(link.path + "?" + link.query)
            self.assertEqual(page.status, 200)
            self.assertNotIn(b'class="code"', page.body)
            self.assertIn(b'<form method="post" action="/agent/auth/claim/attempt/challenge">',
                          page.body)
            self.assertEqual(page.header("Referrer-Policy"), "no-referrer")
            self.assertIn("default-src 'none'", page.header("Content-Security-Policy"))
        events = [e["event"] for e in self.server.audit_events()]
        self.assertNotIn("otp.generated", events)
        r = self.server.complete(reg["claim_token"], "123456")
        self.assertError(r, 401, "otp_invalid")

    def test_a_new_challenge_invalidates_the_previous_code(self):
        reg, _, msg = self.claim_to_code()
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(claim_link(msg)).query)["token"][0]
        first = otp_in_page(self.server.challenge_form(token).body)
        second = self.server.post("/agent/auth/claim/attempt/challenge",
                                  {"claim_attempt_token": token})
        self.assertEqual(second.status, 200, second)
        self.assertEqual(second.json["type"], "otp")
        self.assertRegex(second.json["challenge"], r"^\d{6}$")
        self.assertIn("expires_at", second.json)
        if first != second.json["challenge"]:
            self.assertError(self.server.complete(reg["claim_token"], first), 401,
                             "otp_invalid")
        self.assertEqual(self.server.complete(reg["claim_token"],
                                              second.json["challenge"]).status, 200)

    def test_wrong_codes_burn_the_code_after_the_limit(self):
        reg, _, msg = self.claim_to_code()
        otp = self.server.code_from_link(claim_link(msg))
        wrong = "%06d" % ((int(otp) + 1) % 1000000)
        for i in range(4):
            r = self.server.complete(reg["claim_token"], wrong)
            self.assertError(r, 401, "otp_invalid")
            self.assertIn("%d tries left" % (4 - i), r.json["message"])
        r = self.server.complete(reg["claim_token"], wrong)
        self.assertError(r, 410, "otp_expired")
        # The right code no longer works either: it was burned.
        r = self.server.complete(reg["claim_token"], otp)
        self.assertError(r, 410, "otp_expired")
        # A fresh code from the link works.
        otp = self.server.code_from_link(claim_link(msg))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)

    def test_malformed_codes_count_as_wrong(self):
        reg, _, msg = self.claim_to_code()
        self.server.code_from_link(claim_link(msg))
        for bad in ("12345", "1234567", "abcdef", " 12345"):
            self.assertError(self.server.complete(reg["claim_token"], bad), 401, "otp_invalid")

    def test_claim_start_is_idempotent_for_the_same_address(self):
        reg, first, _ = self.claim_to_code("carol@example.test")
        again = self.server.start_claim(reg["claim_token"], "CAROL@example.test")
        self.assertEqual(again.status, 200)
        self.assertEqual(again.json, first)
        self.assertEqual(len(self.server.outbox_messages()), 1)

    def test_another_address_supersedes_the_open_attempt(self):
        reg, first, msg = self.claim_to_code("dan@example.test")
        second = self.server.start_claim(reg["claim_token"], "erin@example.test")
        self.assertEqual(second.status, 200)
        self.assertNotEqual(second.json["claim_attempt_id"], first["claim_attempt_id"])
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(claim_link(msg)).query)["token"][0]
        r = self.server.post("/agent/auth/claim/attempt/challenge",
                             {"claim_attempt_token": token})
        self.assertError(r, 410, "claim_superseded")
        page = self.server.get("/agent/auth/claim/view?token=" + token)
        self.assertEqual(page.status, 410)
        self.assertIn(b"claim_superseded", page.body)
        msgs = self.server.outbox_messages()
        self.assertEqual(len(msgs), 2)
        otp = self.server.code_from_link(claim_link(msgs[-1]))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        me = self.server.bearer("GET", "/api/resource", reg["credential"]).json
        self.assertEqual(me["email"], "erin@example.test")

    def test_claim_errors_after_completion(self):
        reg, _, msg = self.claim_to_code()
        link = claim_link(msg)
        otp = self.server.code_from_link(link)
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        self.assertError(self.server.complete(reg["claim_token"], otp), 409,
                         "previously_claimed")
        self.assertError(self.server.start_claim(reg["claim_token"], "x@example.test"), 409,
                         "claimed_or_in_flight")
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]
        r = self.server.post("/agent/auth/claim/attempt/challenge",
                             {"claim_attempt_token": token})
        self.assertError(r, 409, "claim_completed")

    def test_unknown_tokens(self):
        self.assertError(self.server.start_claim("clm_nope", "a@example.test"), 400,
                         "invalid_claim_token")
        self.assertError(self.server.complete("clm_nope", "123456"), 400, "invalid_claim_token")
        r = self.server.post("/agent/auth/claim/attempt/challenge",
                             {"claim_attempt_token": "cv_nope"})
        self.assertError(r, 410, "claim_superseded")
        page = self.server.get("/agent/auth/claim/view?token=cv_nope")
        self.assertEqual(page.status, 410)
        page = self.server.get("/agent/auth/claim/view?token=%3Cscript%3E")
        self.assertEqual(page.status, 410)
        self.assertNotIn(b"<script>", page.body)

    def test_complete_before_any_claim_is_started(self):
        reg = self.server.register_anonymous()
        self.assertError(self.server.complete(reg["claim_token"], "123456"), 400,
                         "invalid_request")


class ShortWindowsTest(ServerTest):
    """Expiry of codes, attempts and registrations, on short TTLs."""
    OVERRIDES = {"ttl": {"otp": "5", "claim_attempt": "8", "registration": "12",
                         "sweep_interval": "1"}}

    def test_code_then_attempt_then_registration_expire(self):
        s = self.server
        reg = s.register_anonymous()
        s.start_claim(reg["claim_token"], "fay@example.test")
        link = claim_link(s.outbox_messages()[-1])
        otp = s.code_from_link(link)
        time.sleep(5.5)
        self.assertError(s.complete(reg["claim_token"], otp), 410, "otp_expired")
        time.sleep(3)
        self.assertError(s.complete(reg["claim_token"], otp), 410, "otp_expired")
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]
        self.assertError(s.post("/agent/auth/claim/attempt/challenge",
                                {"claim_attempt_token": token}), 410, "claim_expired")
        self.assertEqual(s.bearer("GET", "/api/resource", reg["credential"]).status, 200)
        time.sleep(5)
        self.assertError(s.complete(reg["claim_token"], otp), 410, "claim_expired")
        self.assertError(s.start_claim(reg["claim_token"], "fay@example.test"), 410,
                         "claim_expired")

    def test_the_sweeper_expires_untouched_registrations(self):
        s = self.server
        claimed = s.register_anonymous()
        s.start_claim(claimed["claim_token"], "gus@example.test")
        otp = s.code_from_link(claim_link(s.outbox_messages()[-1]))
        self.assertEqual(s.complete(claimed["claim_token"], otp).status, 200)
        idle = s.register_anonymous()
        pending = s.register_email("hal@example.test")
        deadline = time.time() + 30
        while time.time() < deadline:
            rows = s.db_query("SELECT status FROM registrations WHERE id IN (?, ?)",
                              (idle["registration_id"], pending["registration_id"]))
            if [r[0] for r in rows] == ["expired", "expired"]:
                break
            time.sleep(0.5)
        self.assertEqual([r[0] for r in rows], ["expired", "expired"])
        expired = [e for e in s.audit_events() if e["event"] == "registration.expired"]
        self.assertEqual(sorted(e["registration_id"] for e in expired),
                         sorted([idle["registration_id"], pending["registration_id"]]))
        r = s.bearer("GET", "/api/resource", idle["credential"])
        self.assertError(r, 401, "invalid_token")
        self.assertIn("resource_metadata=", r.header("WWW-Authenticate"))
        revoked = s.db_query("SELECT revoked_at FROM credentials WHERE registration_id = ?",
                             (idle["registration_id"],))
        self.assertIsNotNone(revoked[0][0])
        # A claimed registration never expires by the sweeper.
        self.assertEqual(s.bearer("GET", "/api/resource", claimed["credential"]).status, 200)


class ClaimMailFloodTest(ServerTest):
    """One claim token alternating two addresses sent a mail per request:
    mails are now capped per registration, per address and in all."""
    OVERRIDES = {"limits": {"claim_mails_per_registration": "3",
                            "claim_mails_per_address": "4",
                            "claim_mails_global": "6"}}

    def assertRefused(self, r):
        self.assertError(r, 429, "rate_limited")
        self.assertGreaterEqual(int(r.header("Retry-After")), 1, r.headers)

    def test_alternating_addresses_cannot_flood_and_a_restart_keeps_the_cap(self):
        s = self.server
        reg = s.register_anonymous()
        answers = [s.start_claim(reg["claim_token"], addr).status
                   for addr in ["a1@example.test", "a2@example.test"] * 10]
        self.assertEqual(answers[:3], [200, 200, 200])
        # Past the cap every switch of address is refused; asking again for
        # the address whose link is open stays an idempotent 200, sending
        # nothing.
        self.assertEqual(set(answers[3::2]), {429})
        self.assertEqual(set(answers[4::2]), {200})
        self.assertEqual(len(s.outbox_messages()), 3)
        self.assertRefused(s.start_claim(reg["claim_token"], "a3@example.test"))
        # The count is in the store: a restart does not reset it.
        self.assertEqual(s.stop(), 0)
        s.start()
        self.assertRefused(s.start_claim(reg["claim_token"], "a2@example.test"))
        self.assertEqual(len(s.outbox_messages()), 3)
        # The link already sent still works.
        otp = s.code_from_link(claim_link(s.outbox_messages()[-1]))
        self.assertEqual(s.complete(reg["claim_token"], otp).status, 200)

    def test_one_address_is_capped_across_registrations(self):
        s = self.server
        for i in range(4):
            reg = s.register_anonymous()
            self.assertEqual(s.start_claim(reg["claim_token"], "vic@example.test").status, 200)
        reg = s.register_anonymous()
        self.assertRefused(s.start_claim(reg["claim_token"], "VIC@example.test"))
        # verified_email registrations count against the same address.
        r = s.post("/agent/auth", {"type": "identity_assertion",
                                   "assertion_type": "verified_email",
                                   "assertion": "vic@example.test"})
        self.assertRefused(r)
        self.assertEqual(len(s.outbox_messages()), 4)
        # Another address is not affected.
        self.assertEqual(s.start_claim(reg["claim_token"], "wes@example.test").status, 200)

    def test_the_global_budget_caps_mail_to_distinct_addresses(self):
        s = self.server
        for i in range(6):
            reg = s.register_anonymous()
            r = s.start_claim(reg["claim_token"], "u%d@example.test" % i)
            self.assertEqual(r.status, 200, r)
        reg = s.register_anonymous()
        self.assertRefused(s.start_claim(reg["claim_token"], "u9@example.test"))
        self.assertEqual(len(s.outbox_messages()), 6)
        # A refused start created no attempt and left the registration as it was.
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM claim_attempts")[0][0], 6)
        self.assertEqual(s.db_query("SELECT status FROM registrations WHERE id = ?",
                                    (reg["registration_id"],)), [("unclaimed",)])

    def test_the_same_address_again_is_idempotent_and_counts_nothing(self):
        s = self.server
        reg = s.register_anonymous()
        for _ in range(5):
            self.assertEqual(s.start_claim(reg["claim_token"], "zoe@example.test").status, 200)
        self.assertEqual(len(s.outbox_messages()), 1)


if __name__ == "__main__":
    unittest.main()
