"""Bad input is answered with a clear 4xx JSON error and the server keeps
serving."""
import socket
import unittest

from harness import ServerTest


class BadInputTest(ServerTest):
    OVERRIDES = {"limits": {"body_bytes": "4096"}}

    def tearDown(self):
        # Whatever came before, the server still answers.
        self.assertEqual(self.server.register_anonymous()["registration_type"], "anonymous")
        super().tearDown()

    def test_malformed_json(self):
        for raw in (b"{", b"nope", b"[1,2]", b'"str"', b"", b'{"type": "anonymous",}',
                    b'{"type":"anonymous","type":"anonymous"}', b"\xff\xfe"):
            r = self.server.post("/agent/auth", raw=raw, content_type="application/json")
            self.assertError(r, 400, "invalid_request")

    def test_wrong_media_type(self):
        r = self.server.post("/agent/auth", raw=b'{"type":"anonymous"}',
                             content_type="text/plain")
        self.assertError(r, 415, "unsupported_media_type")
        r = self.server.post("/agent/auth", raw=b'{"type":"anonymous"}')
        self.assertError(r, 415, "unsupported_media_type")

    def test_wrong_types_and_missing_fields(self):
        cases = [
            ({}, "type"),
            ({"type": 1}, "type"),
            ({"type": ""}, "type"),
            ({"type": ["anonymous"]}, "type"),
            ({"type": "anonymous", "requested_credential_type": 5},
             "requested_credential_type"),
            ({"type": "identity_assertion"}, "assertion_type"),
            ({"type": "identity_assertion", "assertion_type": "verified_email"}, "assertion"),
            ({"type": "identity_assertion", "assertion_type": "verified_email",
              "assertion": {"email": "a@b.test"}}, "assertion"),
        ]
        for body, field in cases:
            r = self.server.post("/agent/auth", body)
            self.assertError(r, 400, "invalid_request")
            self.assertIn(field, r.json["message"], body)
        self.assertError(self.server.post("/agent/auth/claim", {"email": "a@b.test"}), 400,
                         "invalid_request")
        self.assertError(self.server.post("/agent/auth/claim/complete", {"claim_token": "x"}),
                         400, "invalid_request")
        self.assertError(self.server.post("/agent/auth/claim/complete",
                                          {"claim_token": "x", "otp": 123456}),
                         400, "invalid_request")

    def test_unknown_type_and_assertion_type(self):
        self.assertError(self.server.post("/agent/auth", {"type": "magic"}), 400,
                         "invalid_request")
        r = self.server.post("/agent/auth", {"type": "identity_assertion",
                                             "assertion_type": "saml", "assertion": "x"})
        self.assertError(r, 400, "unsupported_assertion_type")
        r = self.server.post("/agent/auth", {"type": "identity_assertion",
                                             "assertion_type":
                                                 "urn:ietf:params:oauth:token-type:id-jag",
                                             "assertion": "e30.e30.sig"})
        self.assertError(r, 400, "id_jag_not_enabled")
        r = self.server.post("/agent/auth", {"type": "anonymous",
                                             "requested_credential_type": "access_token"})
        self.assertError(r, 400, "unsupported_credential_type")
        r = self.server.post("/agent/auth", {"type": "anonymous",
                                             "requested_credential_type": "cookie"})
        self.assertError(r, 400, "unsupported_credential_type")

    def test_bad_and_header_injecting_emails(self):
        bad = ["plain", "a@b", "@b.test", "a@", "a@@b.test", "a b@c.test", "a@b .test",
               "a@b.test\r\nBcc: victim@evil.test", "a@b.test\nSubject: hi",
               "\"q\"@b.test", "a..b@c.test", ".a@b.test", "a@-b.test", "a@b.test>",
               "<a@b.test>", "a@b.test, c@d.test", "a" * 65 + "@b.test",
               "a@" + "b" * 250 + ".test", "a@b.test\x00"]
        reg = self.server.register_anonymous()
        for address in bad:
            r = self.server.post(
                "/agent/auth", {"type": "identity_assertion", "assertion_type": "verified_email",
                                "assertion": address})
            self.assertEqual(r.status, 400, address)
            self.assertEqual(r.json["error"], "invalid_request", address)
            r = self.server.start_claim(reg["claim_token"], address)
            self.assertEqual(r.status, 400, address)
        self.assertEqual(self.server.outbox_messages(), [])

    def test_oversized_body(self):
        big = b'{"type":"anonymous","pad":"' + b"x" * 5000 + b'"}'
        r = self.server.post("/agent/auth", raw=big, content_type="application/json")
        self.assertError(r, 413, "payload_too_large")

    def test_oversized_chunked_body(self):
        # No Content-Length: the cap applies while the body streams in.
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        try:
            s.sendall(b"POST /agent/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * 1000
            try:
                for _ in range(10):
                    s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                s.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server may close once it has answered
            answer = s.recv(4096)
        finally:
            s.close()
        self.assertTrue(answer.startswith(b"HTTP/1.1 413"), answer)

    def test_long_and_odd_tokens(self):
        self.assertError(self.server.complete("c" * 1000, "123456"), 400, "invalid_request")
        r = self.server.bearer("GET", "/api/resource", "k" * 5000)
        self.assertError(r, 401, "invalid_token")
        r = self.server.get("/agent/auth/claim/view?token=" + "a" * 3000)
        self.assertEqual(r.status, 410)
        r = self.server.get("/agent/auth/claim/view")
        self.assertEqual(r.status, 410)

    def test_challenge_form_without_token(self):
        r = self.server.post("/agent/auth/claim/attempt/challenge", raw=b"x=1",
                             content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 400)
        self.assertIn(b"invalid_request", r.body)

    def test_deep_json(self):
        deep = b'{"type":' + b"[" * 3000 + b"]" * 3000 + b"}"
        r = self.server.post("/agent/auth", raw=deep, content_type="application/json")
        self.assertIn(r.status, (400, 413))

    def test_garbage_request_line(self):
        # Garbage waits for the idle timeout or is refused; either way the
        # server goes on serving (checked in tearDown).
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=1)
        try:
            s.sendall(b"\x00\x01\x02 garbage\r\n\r\n")
            s.recv(4096)
        except OSError:
            pass
        finally:
            s.close()

    def test_malformed_header_is_refused(self):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        try:
            s.sendall(b"GET /api/resource HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n")
            answer = s.recv(4096)
        finally:
            s.close()
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)


if __name__ == "__main__":
    unittest.main()
