"""The email-required flow, with mail sent over SMTP to a real SMTP server:
no credential until the code comes back, then a fresh one of the type asked
for."""
import time
import unittest

from harness import Server, claim_link
from smtp_sink import SmtpSink


class EmailRequiredOverSmtpTest(unittest.TestCase):
    def setUp(self):
        self.sink = SmtpSink().start()
        # Mail goes out from the queue's worker: a transient failure on a
        # loaded machine is retried after a second, not the default five.
        self.server = Server({"mail": {"smtp_url": self.sink.url, "starttls": "off",
                                       "retry_min": "1", "retry_max": "2"}}).start()

    def tearDown(self):
        self.assertEqual(self.server.stop(), 0)
        self.server.cleanup()
        self.sink.stop()

    def mail_log(self):
        return "\n".join(x for x in self.server.read_log().splitlines() if "mail" in x)

    def ceremony(self, cred_type, address):
        before = len(self.sink.handler.messages)
        reg = self.server.register_email(address, cred_type)
        msgs = self.sink.wait_for(before + 1, timeout=30)
        self.assertEqual(len(msgs), before + 1, self.mail_log())
        msg = msgs[-1]
        self.assertEqual(self.sink.handler.envelopes[-1],
                         ("noreply@authmd.localhost", [address.lower()]))
        otp = self.server.code_from_link(claim_link(msg))
        return reg, self.server.complete(reg["claim_token"], otp)

    def test_access_token_is_issued_at_completion_with_an_expiry(self):
        reg, r = self.ceremony("access_token", "Ivy@Example.test")
        self.assertEqual(reg["registration_type"], "email-verification")
        self.assertNotIn("credential", reg)
        self.assertEqual(reg["post_claim_scopes"], ["api.read", "api.write"])
        self.assertEqual(r.status, 200, r)
        body = r.json
        self.assertEqual(body["status"], "claimed")
        self.assertEqual(body["credential_type"], "access_token")
        self.assertTrue(body["credential"].startswith("at_"))
        self.assertRegex(body["credential_expires"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$")
        self.assertEqual(body["scopes"], ["api.read", "api.write"])
        self.assertNotIn("refresh_token", body)
        me = self.server.bearer("GET", "/api/resource", body["credential"])
        self.assertEqual(me.status, 200)
        self.assertEqual(me.json["email"], "ivy@example.test")
        self.assertEqual(me.json["credential_type"], "access_token")
        self.assertEqual(self.server.bearer("POST", "/api/resource", body["credential"],
                                            body={}).status, 200)

    def test_api_key_is_issued_at_completion_without_expiry(self):
        _, r = self.ceremony("api_key", "jon@example.test")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["credential_type"], "api_key")
        self.assertIsNone(r.json["credential_expires"])
        self.assertEqual(self.server.bearer("GET", "/api/resource",
                                            r.json["credential"]).status, 200)

    def test_mail_is_multipart_with_an_absolute_link(self):
        self.server.register_email("kim@example.test")
        msgs = self.sink.wait_for(1, timeout=30)
        self.assertEqual(len(msgs), 1, self.mail_log())
        msg = msgs[0]
        types = [p.get_content_type() for p in msg.iter_parts()]
        self.assertEqual(types, ["text/plain", "text/html"])
        self.assertTrue(claim_link(msg).startswith(self.server.url + "/agent/auth/claim/view"))
        self.assertIn("kim@example.test", msg.get_body(("html",)).get_content())

    def test_claim_on_an_email_registration_resends_only_to_its_address(self):
        reg = self.server.register_email("lee@example.test")
        r = self.server.start_claim(reg["claim_token"], "other@example.test")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["error"], "invalid_request")


class SmtpDownTest(unittest.TestCase):
    def test_an_unreachable_smtp_server_is_a_200_and_the_queue_sends_once_it_is_back(self):
        sink = SmtpSink()  # not started yet: nothing listens on its port
        server = Server({"mail": {"smtp_url": sink.url, "starttls": "off",
                                  "retry_min": "1", "retry_max": "1"}}).start()
        try:
            reg = server.register_anonymous()
            # The agent's answer does not wait for SMTP; retries of the same
            # request find the queued attempt and queue no second mail.
            first = None
            for _ in range(7):
                r = server.start_claim(reg["claim_token"], "max@example.test")
                self.assertEqual(r.status, 200, r)
                first = first or r.json["claim_attempt_id"]
                self.assertEqual(r.json["claim_attempt_id"], first)
            self.assertEqual(server.db_query(
                "SELECT COUNT(*) FROM mail_queue WHERE status = 'queued'"), [(1,)])
            # The operator sees the outage: each deferral names the queue's
            # depth and the age of its oldest mail.
            deadline = time.time() + 15
            while "queue_depth=1 oldest_age=" not in server.read_log():
                self.assertLess(time.time(), deadline, server.read_log())
                time.sleep(0.05)
            sink.start()
            try:
                server.wait_mail_queue()
                self.assertEqual(len(sink.wait_for(1)), 1)
                self.assertEqual(server.db_query("SELECT COUNT(*) FROM mail_queue"), [(0,)])
            finally:
                sink.stop()
        finally:
            server.cleanup()


class SmtpUrlCredentialsTest(unittest.TestCase):
    def test_credentials_in_smtp_url_never_reach_the_log(self):
        sink = SmtpSink().start()
        url = sink.url.replace("smtp://", "smtp://mailuser:s3cretPW;AUTH=PLAIN@", 1)
        server = Server({"mail": {"smtp_url": url, "starttls": "off"}}).start()
        try:
            reg = server.register_email("una@example.test")
            self.assertTrue(reg["claim_token"])
            sink.wait_for(1)
        finally:
            self.assertEqual(server.stop(), 0)
            log = server.read_log()
            server.cleanup()
            sink.stop()
        self.assertNotIn("s3cretPW", log)
        self.assertNotIn("mailuser", log)
        self.assertIn("AUTH=PLAIN", url)
        line = [x for x in log.splitlines() if "mail via smtp" in x]
        self.assertEqual(len(line), 1, log)
        self.assertIn("credentials_in_url=yes", line[0])
        self.assertIn(sink.url.split("://", 1)[1].rstrip("/"), line[0])


if __name__ == "__main__":
    unittest.main()
