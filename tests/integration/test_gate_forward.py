"""/authz straight from a test, in each proxy's dialect (nginx, Traefik and
Caddy, Envoy), with the route policy of [route] sections and [gate]."""
from harness import ServerTest

IDENTITY = ("x-authmd-user", "x-authmd-email", "x-authmd-scopes", "x-authmd-registration",
            "x-authmd-credential-type", "x-authmd-source")


class ForwardAuthTest(ServerTest):
    OVERRIDES = {
        "route read": {"path": "/v1", "methods": "GET HEAD", "scope": "api.read"},
        "route write": {"path": "/v1", "scope": "api.write"},
        "route open": {"path": "/v1/public"},
    }

    def setUp(self):
        super().setUp()
        self.cred = self.server.register_anonymous()["credential"]

    def authz(self, headers, method="GET", path="/authz", cred=True):
        h = dict(headers)
        if cred:
            h["Authorization"] = "Bearer " + (self.cred if cred is True else cred)
        return self.server.request(method, path, headers=h)

    def identity(self, r):
        return {k.lower() for k, _ in r.headers if k.lower().startswith("x-authmd-")}

    def test_each_proxy_dialect_gets_the_same_decision(self):
        dialects = [
            ("GET", "/authz", {"X-Original-Method": "GET", "X-Original-URI": "/v1/items?q=1"}),
            ("GET", "/authz", {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/v1/items",
                               "X-Forwarded-Host": "api.example"}),
            # Envoy ext_authz: path_prefix /authz, and the raw path as a header
            ("GET", "/authz/v1/items", {"X-Original-URI": "/v1/items"}),
            ("HEAD", "/authz/v1/items", {"X-Original-URI": "/v1/items?page=2"}),
        ]
        for method, path, headers in dialects:
            r = self.authz(headers, method, path)
            self.assertEqual(r.status, 200, (path, headers, r))
            self.assertEqual(self.identity(r), set(IDENTITY) - {"x-authmd-user", "x-authmd-email"})
            self.assertEqual(r.header("X-Authmd-Scopes"), "api.read")
            self.assertEqual(r.header("Cache-Control"), "no-store")
        writes = [
            ("GET", "/authz", {"X-Original-Method": "DELETE", "X-Original-URI": "/v1/items"}),
            ("GET", "/authz", {"X-Forwarded-Method": "PUT", "X-Forwarded-Uri": "/v1/items"}),
            ("POST", "/authz/v1/items", {"X-Original-URI": "/v1/items"}),
        ]
        for method, path, headers in writes:
            r = self.authz(headers, method, path)
            self.assertError(r, 403, "insufficient_scope")
            self.assertIn('scope="api.write"', r.header("WWW-Authenticate"))
            self.assertEqual(self.identity(r), set())

    def test_refusals_never_carry_identity(self):
        cases = [
            ({"X-Original-URI": "/v1/items"}, False, 401, "invalid_token"),
            ({"X-Original-URI": "/v1/items"}, "sk_forged", 401, "invalid_token"),
            ({"X-Original-URI": "/elsewhere"}, True, 403, "access_denied"),
            ({"X-Original-URI": "/v1/%2e%2e/elsewhere"}, True, 403, "access_denied"),
            ({"X-Original-URI": "/v1/..%2Felsewhere"}, True, 400, "invalid_request"),
            ({"X-Original-URI": "v1"}, True, 400, "invalid_request"),
            ({"X-Original-Method": "get", "X-Original-URI": "/v1"}, True, 400,
             "invalid_request"),
            ({}, True, 400, "invalid_request"),
            # The client added the other proxy's header: they must agree.
            ({"X-Original-URI": "/v1/public", "X-Forwarded-Uri": "/v1/items"}, True, 400,
             "invalid_request"),
            ({"X-Original-Method": "GET", "X-Forwarded-Method": "DELETE",
              "X-Original-URI": "/v1/items"}, True, 400, "invalid_request"),
        ]
        for headers, cred, status, code in cases:
            r = self.authz(headers, cred=cred)
            self.assertError(r, status, code)
            self.assertEqual(self.identity(r), set(), headers)
        # Envoy's form: the path alone is decoded already, so it is not
        # enough, and an encoded raw path never matches it.
        for headers in ({}, {"X-Original-URI": "/v1/public"},
                        {"X-Original-URI": "/v1/items%2F..%2Fpublic"}):
            r = self.authz(headers, "GET", "/authz/v1/items%2F..%2Fpublic")
            self.assertError(r, 400, "invalid_request")
        r = self.authz({"X-Original-URI": "/v1/items"}, cred=False)
        self.assertEqual(r.header("WWW-Authenticate"),
                         'Bearer resource_metadata="%s/.well-known/oauth-protected-resource/'
                         'api/"' % self.server.url)
        r = self.server.request("GET", "/authz", headers={"X-Original-URI": "/v1/items",
                                                          "Authorization": "Basic eDp5"})
        self.assertError(r, 401, "invalid_token")
        self.assertIn('error="invalid_request"', r.header("WWW-Authenticate"))

    def test_routes_replace_the_demo_and_methods_do_not_fall_through(self):
        # A route with no scope needs only a live credential.
        self.assertEqual(self.authz({"X-Original-Method": "DELETE",
                                     "X-Original-URI": "/v1/public/x"}).status, 200)
        # The demo API follows the configured policy, which does not cover it.
        r = self.server.bearer("GET", "/api/resource", self.cred)
        self.assertError(r, 403, "access_denied")


class DefaultAuthenticatedTest(ServerTest):
    OVERRIDES = {"gate": {"default": "authenticated"}}

    def test_uncovered_paths_need_only_a_live_credential(self):
        cred = self.server.register_anonymous()["credential"]
        r = self.server.request("PATCH", "/authz/anything", headers={
            "Authorization": "Bearer " + cred, "X-Original-URI": "/anything"})
        self.assertEqual(r.status, 200, r)
        r = self.server.request("PATCH", "/authz/anything",
                                headers={"X-Original-URI": "/anything"})
        self.assertError(r, 401, "invalid_token")
        # The built-in demo routes still apply to the demo API's path.
        r = self.server.request("POST", "/authz/api/resource", headers={
            "Authorization": "Bearer " + cred, "X-Original-URI": "/api/resource"})
        self.assertError(r, 403, "insufficient_scope")
