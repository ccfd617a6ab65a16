"""CORS on the agent-facing endpoints (issue 15 item 2): browser-style
preflights and requests with an Origin, checked per endpoint class: public
discovery documents (any origin), registration endpoints (configured
origins only), and pages and the API (never cross-origin)."""
import os
import subprocess
import tempfile
import unittest

from harness import SERVER, Server, ServerTest

APP = "http://app.example.test"
EVIL = "http://evil.example.test"
DISCOVERY = ["/.well-known/oauth-protected-resource",
             "/.well-known/oauth-protected-resource/api/",
             "/.well-known/oauth-authorization-server", "/auth.md"]
AGENT = ["/agent/auth", "/agent/auth/claim", "/agent/auth/claim/complete",
         "/agent/auth/claim/attempt/challenge"]


def preflight(server, path, origin, method="POST",
              headers="authorization, content-type"):
    return server.request("OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers})


class CorsChecks:
    def assertNoCors(self, r):
        for h in ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                  "Access-Control-Allow-Headers", "Access-Control-Allow-Credentials"):
            self.assertIsNone(r.header(h), (h, r))

    def assertPreflight(self, r, origin, method):
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), origin, r.headers)
        methods = [m.strip() for m in r.header("Access-Control-Allow-Methods").split(",")]
        self.assertIn(method, methods)
        allowed = [h.strip().lower() for h in r.header("Access-Control-Allow-Headers").split(",")]
        self.assertIn("authorization", allowed)
        self.assertIn("content-type", allowed)
        self.assertTrue(int(r.header("Access-Control-Max-Age")) > 0)
        self.assertIsNone(r.header("Access-Control-Allow-Credentials"))


class ConfiguredOriginTest(ServerTest, CorsChecks):
    OVERRIDES = {"server": {"cors_origins": APP + " http://other.example.test:8443"}}

    def test_discovery_documents_allow_any_origin(self):
        for path in DISCOVERY:
            for origin in (APP, EVIL):
                self.assertPreflight(preflight(self.server, path, origin, "GET", "authorization"),
                                     "*", "GET")
                r = self.server.get(path, headers={"Origin": origin})
                self.assertEqual(r.status, 200, (path, r))
                self.assertEqual(r.header("Access-Control-Allow-Origin"), "*", path)
                self.assertIsNone(r.header("Access-Control-Allow-Credentials"))

    def test_registration_endpoints_answer_configured_origins_only(self):
        for path in AGENT:
            r = preflight(self.server, path, APP)
            self.assertPreflight(r, APP, "POST")
            self.assertIn("Origin", r.header("Vary"))
            r = preflight(self.server, path, EVIL)
            self.assertEqual(r.status, 204, r)
            self.assertNoCors(r)
        r = preflight(self.server, "/agent/auth", "http://other.example.test:8443")
        self.assertPreflight(r, "http://other.example.test:8443", "POST")

    def test_registration_answers_carry_the_echoed_origin(self):
        body = {"type": "anonymous", "requested_credential_type": "api_key"}
        r = self.server.post("/agent/auth", body, headers={"Origin": APP})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), APP)
        self.assertIn("Origin", r.header("Vary"))
        self.assertIn("WWW-Authenticate", r.header("Access-Control-Expose-Headers"))
        self.assertIsNone(r.header("Access-Control-Allow-Credentials"))
        # Errors too, so a browser agent can read why.
        r = self.server.post("/agent/auth", {"type": "nonsense"}, headers={"Origin": APP})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), APP)
        r = self.server.post("/agent/auth", body, headers={"Origin": EVIL})
        self.assertEqual(r.status, 200, r)
        self.assertNoCors(r)
        self.assertIn("Origin", r.header("Vary"))
        # An Origin that only starts like an allowed one is another origin.
        r = self.server.post("/agent/auth", body, headers={"Origin": APP + ".evil.test"})
        self.assertNoCors(r)

    def test_the_json_claim_endpoints_answer_configured_origins(self):
        r = self.server.post("/agent/auth/claim/attempt/challenge",
                             {"claim_attempt_token": "cv_nope"}, headers={"Origin": APP})
        self.assertEqual(r.header("Access-Control-Allow-Origin"), APP, r)

    def test_claim_pages_and_the_api_are_never_cross_origin(self):
        reg = self.server.register_email("ann@example.test")
        self.assertTrue(reg)
        link = [m for m in self.server.outbox_messages()][-1]
        from harness import claim_link
        url = claim_link(link)
        path = url[len(self.server.url):]
        r = self.server.get(path, headers={"Origin": APP})
        self.assertEqual(r.status, 200, r)
        self.assertNoCors(r)
        r = preflight(self.server, "/agent/auth/claim/view", APP, "GET")
        self.assertNotEqual(r.status, 204, r)
        self.assertNoCors(r)
        # The code page: a form POST to a marked path, answered in HTML.
        # From another origin the page form is refused (issue 14: CSRF),
        # still as a page without CORS headers; from its own, it is served.
        token = path.split("token=", 1)[1]
        r = self.server.request("POST", "/agent/auth/claim/attempt/challenge",
                                raw=("claim_attempt_token=" + token).encode(),
                                content_type="application/x-www-form-urlencoded",
                                headers={"Origin": APP})
        self.assertEqual(r.status, 403, r)
        self.assertTrue(r.header("Content-Type").startswith("text/html"))
        self.assertNoCors(r)
        r = self.server.request("POST", "/agent/auth/claim/attempt/challenge",
                                raw=("claim_attempt_token=" + token).encode(),
                                content_type="application/x-www-form-urlencoded",
                                headers={"Origin": self.server.url})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/html"))
        self.assertNoCors(r)
        for method in ("GET", "POST"):
            r = self.server.request(method, "/api/resource", headers={"Origin": APP})
            self.assertNoCors(r)
        self.assertNoCors(preflight(self.server, "/api/resource", APP, "GET"))

    def test_a_plain_options_request_gets_allow(self):
        r = self.server.request("OPTIONS", "/agent/auth")
        self.assertEqual(r.status, 204, r)
        self.assertIn("POST", r.header("Allow"))
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))


class DefaultTest(ServerTest, CorsChecks):
    def test_by_default_only_discovery_is_cross_origin(self):
        self.assertPreflight(preflight(self.server, "/auth.md", APP, "GET"), "*", "GET")
        r = preflight(self.server, "/agent/auth", APP)
        self.assertEqual(r.status, 204, r)
        self.assertNoCors(r)
        r = self.server.post("/agent/auth", {"type": "anonymous"}, headers={"Origin": APP})
        self.assertEqual(r.status, 200, r)
        self.assertNoCors(r)


class AnyOriginTest(ServerTest, CorsChecks):
    OVERRIDES = {"server": {"cors_origins": "*"}}

    def test_star_admits_any_origin_without_credentials(self):
        self.assertPreflight(preflight(self.server, "/agent/auth", EVIL), "*", "POST")
        r = self.server.post("/agent/auth", {"type": "anonymous"}, headers={"Origin": EVIL})
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "*")
        self.assertIsNone(r.header("Access-Control-Allow-Credentials"))


class ConfigTest(unittest.TestCase):
    def test_bad_cors_origins_stop_start_up(self):
        for value in ("https://app.example.com/path", "app.example.com", "* https://a.test",
                      "https://APP.example.com", "https://app.example.com:443"):
            with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
                f.write("[server]\ncors_origins = %s\n" % value)
            try:
                r = subprocess.run([SERVER, "--check-config", f.name], capture_output=True,
                                   text=True, timeout=30)
                self.assertNotEqual(r.returncode, 0, value)
                self.assertIn("cors_origins", r.stderr, value)
            finally:
                os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
