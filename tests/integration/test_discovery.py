"""Discovery: the 401 header, PRM at both RFC 9728 locations, AS metadata
with the agent_auth block, auth.md, and JSON 404/405."""
import re
import unittest

from harness import Server, ServerTest

PRM_HEADER = re.compile(r'^Bearer resource_metadata="([^"]+)"(, error="[a-z_]+")?$')


class DiscoveryTest(ServerTest):
    def test_401_points_at_the_path_inserted_prm(self):
        r = self.server.get("/api/resource")
        self.assertError(r, 401, "invalid_token")
        m = PRM_HEADER.match(r.header("WWW-Authenticate"))
        self.assertTrue(m, r.header("WWW-Authenticate"))
        url = m.group(1)
        self.assertEqual(url, self.server.url + "/.well-known/oauth-protected-resource/api/")
        # The URL the header names serves a PRM whose resource matches it.
        prm = self.server.get(url[len(self.server.url):])
        self.assertEqual(prm.status, 200)
        self.assertEqual(prm.json["resource"], self.server.url + "/api/")

    def test_a_bad_credential_gets_the_same_pointer(self):
        r = self.server.bearer("GET", "/api/resource", "sk_nope")
        self.assertError(r, 401, "invalid_token")
        self.assertRegex(r.header("WWW-Authenticate"),
                         r'^Bearer resource_metadata="http://127\.0\.0\.1:\d+/\.well-known/'
                         r'oauth-protected-resource/api/", error="invalid_token"$')
        for bad in ("Basic abc", "Bearer", "Bearer a b", "bearer"):
            r = self.server.get("/api/resource", headers={"Authorization": bad})
            self.assertEqual(r.status, 401, bad)
            self.assertIn("resource_metadata=", r.header("WWW-Authenticate"))

    def test_prm_at_the_root_location(self):
        r = self.server.get("/.well-known/oauth-protected-resource")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "application/json")
        prm = r.json
        self.assertEqual(prm["resource"], self.server.url + "/api/")
        self.assertEqual(prm["resource_name"], "authmd demo API")
        self.assertNotIn("resource_logo_uri", prm)
        self.assertEqual(prm["authorization_servers"], [self.server.url])
        self.assertEqual(prm["scopes_supported"], ["api.read", "api.write"])
        self.assertEqual(prm["bearer_methods_supported"], ["header"])

    def test_as_metadata_has_issuer_and_the_agent_auth_block(self):
        r = self.server.get("/.well-known/oauth-authorization-server")
        self.assertEqual(r.status, 200)
        md = r.json
        base = self.server.url
        self.assertEqual(md["issuer"], base)
        self.assertEqual(md["issuer"], md["authorization_servers"][0])
        for k in ("resource", "resource_name", "scopes_supported", "bearer_methods_supported"):
            self.assertIn(k, md)
        aa = md["agent_auth"]
        self.assertEqual(aa["skill"], base + "/auth.md")
        self.assertEqual(aa["register_uri"], base + "/agent/auth")
        self.assertEqual(aa["claim_uri"], base + "/agent/auth/claim")
        self.assertEqual(aa["identity_types_supported"],
                         ["anonymous", "identity_assertion", "service_auth"])
        self.assertEqual(aa["anonymous"], {"credential_types_supported": ["api_key"]})
        self.assertEqual(aa["identity_assertion"]["assertion_types_supported"],
                         ["verified_email"])
        self.assertEqual(aa["identity_assertion"]["credential_types_supported"],
                         ["access_token", "api_key"])
        # ID-JAG is not enabled: nothing about it is advertised.
        self.assertNotIn("revocation_uri", aa)
        self.assertNotIn("events_supported", aa)
        for v in (aa["skill"], aa["register_uri"], aa["claim_uri"]):
            self.assertTrue(v.startswith("http://127.0.0.1:"), v)

    def test_auth_md_is_markdown_filled_from_config(self):
        r = self.server.get("/auth.md")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/markdown; charset=utf-8")
        text = r.body.decode()
        self.assertIn(self.server.url + "/.well-known/oauth-protected-resource/api/", text)
        self.assertIn(self.server.url + "/agent/auth/claim/complete", text)
        self.assertIn("otp_invalid", text)
        self.assertIn("anonymous_not_enabled", text)
        self.assertNotIn("{{", text)
        self.assertNotIn("urn:ietf:params:oauth:token-type:id-jag", text)

    def test_unknown_paths_and_methods_are_json(self):
        r = self.server.get("/nope")
        self.assertError(r, 404, "not_found")
        r = self.server.request("DELETE", "/agent/auth")
        self.assertError(r, 405, "method_not_allowed")
        self.assertEqual(r.header("Allow"), "POST, OPTIONS")  # OPTIONS: the CORS preflight
        r = self.server.get("/agent/auth")
        self.assertError(r, 405, "method_not_allowed")


class DisabledFlowsTest(ServerTest):
    OVERRIDES = {"flows": {"anonymous": "off"},
                 "server": {"resource": "https://api.example.test/",
                            "resource_logo_uri": "https://example.test/logo.png",
                            "resource_name": "Example"}}

    def test_only_enabled_flows_are_listed(self):
        aa = self.server.get("/.well-known/oauth-authorization-server").json["agent_auth"]
        self.assertEqual(aa["identity_types_supported"], ["identity_assertion", "service_auth"])
        self.assertNotIn("anonymous", aa)
        r = self.server.post("/agent/auth", {"type": "anonymous"})
        self.assertError(r, 400, "anonymous_not_enabled")
        text = self.server.get("/auth.md").body.decode()
        self.assertNotIn("anonymous_not_enabled", text)

    def test_root_resource_has_only_the_root_prm(self):
        prm = self.server.get("/.well-known/oauth-protected-resource").json
        self.assertEqual(prm["resource"], "https://api.example.test/")
        self.assertEqual(prm["resource_logo_uri"], "https://example.test/logo.png")
        r = self.server.get("/api/resource")
        self.assertEqual(r.header("WWW-Authenticate"),
                         'Bearer resource_metadata="https://api.example.test/.well-known/'
                         'oauth-protected-resource"')


class OperatorAuthMdTest(unittest.TestCase):
    def test_an_operator_file_is_served_as_is(self):
        server = Server()
        path = server.tmp + "/mine.md"
        with open(path, "w") as f:
            f.write("# Ours\nhello agents\n")
        with open(server.config, "a") as f:
            f.write("[server]\nauth_md_file = %s\n" % path)
        server.start()
        try:
            r = server.get("/auth.md")
            self.assertEqual(r.body, b"# Ours\nhello agents\n")
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
