"""DPoP (RFC 9449) end to end on the real server: a proof at /oauth2/token
binds the access token to a key; the gate (the demo API, /authz) then wants
a valid proof from that key with every use, and refuses a bound token
without one, with one from another key, a replayed one, or one for another
URL or method, with 401 invalid_dpop_proof and WWW-Authenticate: DPoP; an
ID-JAG carrying cnf.jkt exchanges only with a proof from that key;
introspection shows cnf.jkt. Proofs are signed by the openssl command with
keys it generates, independently of the server's code."""
import base64
import hashlib
import os
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from harness import Provider, Server, provider_overrides
from test_v06_identity import JWT_BEARER, b64url, es256_sign, thumbprint


RS_SECRET = "a-resource-server-secret-0123456"


def new_key():
    """A P-256 key pair as a private JWK, made by the openssl command."""
    with tempfile.TemporaryDirectory() as d:
        pem = os.path.join(d, "k.pem")
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                        "-out", pem], check=True, capture_output=True)
        der = subprocess.run(["openssl", "ec", "-in", pem, "-outform", "DER"], check=True,
                             capture_output=True).stdout
    # SEC1 ECPrivateKey: the 32-byte d at offset 7, the point 04||x||y at the end
    return {"kty": "EC", "crv": "P-256", "d": b64url(der[7:39]), "x": b64url(der[-64:-32]),
            "y": b64url(der[-32:])}


def public(jwk):
    return {k: jwk[k] for k in ("kty", "crv", "x", "y")}


def proof(jwk, htm, htu, token=None, iat=None, jti=None, typ="dpop+jwt"):
    claims = {"jti": jti or os.urandom(12).hex(), "htm": htm, "htu": htu,
              "iat": int(time.time()) if iat is None else iat}
    if token is not None:
        claims["ath"] = b64url(hashlib.sha256(token.encode()).digest())
    return es256_sign(jwk, {"typ": typ, "alg": "ES256", "jwk": public(jwk)}, claims)


class DpopTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.key, cls.other = new_key(), new_key()

    def setUp(self):
        self.provider = Provider().start()
        overrides = provider_overrides(self.provider)
        overrides["introspection client rs"] = {
            "secret_sha256": hashlib.sha256(RS_SECRET.encode()).hexdigest()}
        self.server = Server(overrides).start()
        self.token_url = self.server.url + "/oauth2/token"
        self.api = self.server.url + "/api/resource"

    def tearDown(self):
        rc = self.server.stop()
        self.server.cleanup()
        self.provider.stop()
        self.assertEqual(rc, 0)

    def exchange(self, assertion, dpop=None):
        headers = {"DPoP": dpop} if dpop is not None else {}
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.server.request("POST", "/oauth2/token", headers=headers,
                                   raw=urllib.parse.urlencode(
                                       {"grant_type": JWT_BEARER, "assertion": assertion}).encode())

    def bound_token(self):
        r = self.server.post("/agent/identity", {"type": "anonymous"})
        self.assertEqual(r.status, 200, r)
        r = self.exchange(r.json["identity_assertion"],
                          proof(self.key, "POST", self.token_url))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["token_type"], "DPoP")
        return r.json["access_token"]

    def call(self, token, dpop=None, scheme="DPoP", path="/api/resource", method="GET"):
        headers = {"Authorization": scheme + " " + token}
        if dpop is not None:
            headers["DPoP"] = dpop
        return self.server.request(method, path, headers=headers)

    def assertRefused(self, r):
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json["error"], "invalid_dpop_proof")
        challenges = [v for k, v in r.headers if k.lower() == "www-authenticate"]
        self.assertTrue(any(c.startswith('DPoP error="invalid_dpop_proof"') and "ES256" in c
                            for c in challenges), challenges)
        self.assertTrue(any("resource_metadata=" in c for c in challenges), challenges)

    def test_the_metadata_publishes_the_algs(self):
        doc = self.server.get("/.well-known/oauth-authorization-server").json
        self.assertIn("ES256", doc["dpop_signing_alg_values_supported"])
        self.assertNotIn("HS256", doc["dpop_signing_alg_values_supported"])

    def test_a_bound_token_works_with_a_fresh_proof_from_its_key(self):
        token = self.bound_token()
        for _ in range(2):
            r = self.call(token, proof(self.key, "GET", self.api, token))
            self.assertEqual(r.status, 200, r)
        # the query is not part of htu
        r = self.call(token, proof(self.key, "GET", self.api, token), path="/api/resource?x=1")
        self.assertEqual(r.status, 200, r)

    def authz(self, token, dpop=None, scheme="DPoP", target="/api/resource", method="GET"):
        headers = {"Authorization": scheme + " " + token, "X-Original-URI": target,
                   "X-Original-Method": method}
        if dpop is not None:
            headers["DPoP"] = dpop
        return self.server.request("GET", "/authz", headers=headers)

    def test_a_bound_token_is_refused_at_every_gate_without_a_fitting_proof(self):
        """One table of refusals, applied to the demo API and to forward
        auth (/authz, where htm and htu are the original request's)."""
        token = self.bound_token()
        gates = {"/api/resource": self.call, "/authz": self.authz}
        now = int(time.time())
        cases = {
            "no proof": (None, "DPoP"),
            "a valid proof, token sent as Bearer": (proof(self.key, "GET", self.api, token),
                                                    "Bearer"),
            "a proof from another key": (proof(self.other, "GET", self.api, token), "DPoP"),
            "a proof for another URL": (proof(self.key, "GET", self.server.url + "/api/x",
                                              token), "DPoP"),
            "a proof for another method": (proof(self.key, "POST", self.api, token), "DPoP"),
            "a proof for another token": (proof(self.key, "GET", self.api, "at_other"), "DPoP"),
            "a proof without ath": (proof(self.key, "GET", self.api), "DPoP"),
            "a stale proof": (proof(self.key, "GET", self.api, token, iat=now - 3600), "DPoP"),
            "a proof from the future": (proof(self.key, "GET", self.api, token,
                                              iat=now + 3600), "DPoP"),
            "a proof of typ JWT": (proof(self.key, "GET", self.api, token, typ="JWT"), "DPoP"),
            "not a JWT": ("not-a-jwt", "DPoP"),
        }
        for gate, send in gates.items():
            for name, (p, scheme) in cases.items():
                with self.subTest(gate + ": " + name):
                    self.assertRefused(send(token, p, scheme=scheme))
            with self.subTest(gate + ": a replayed proof"):
                p = proof(self.key, "GET", self.api, token)
                self.assertEqual(send(token, p).status, 200)
                self.assertRefused(send(token, p))
        # one replay space for every gate: a proof used at one is spent at the other
        p = proof(self.key, "GET", self.api, token)
        self.assertEqual(self.authz(token, p).status, 200)
        self.assertRefused(self.call(token, p))

    def test_forward_auth_derives_htm_and_htu_from_the_proxy_headers(self):
        token = self.bound_token()
        origin = self.server.url  # the default [server] resource is public_url + /api/
        target = "/api/resource?full=1"
        r = self.authz(token, proof(self.key, "GET", origin + "/api/resource", token),
                       target=target)
        self.assertEqual(r.status, 200, r)
        # the URL and method of the original request, not of the /authz call
        self.assertRefused(self.authz(token, proof(self.key, "GET", origin + "/authz", token),
                                      target=target))
        r = self.authz(token, proof(self.key, "POST", origin + "/api/resource", token),
                       target=target, method="POST")
        self.assertNotEqual(r.status, 401, r)  # a fitting proof: only the route decides

    def test_introspection_shows_the_binding(self):
        token = self.bound_token()
        auth = base64.b64encode(("rs:" + RS_SECRET).encode()).decode()
        r = self.server.request("POST", "/oauth2/introspect",
                                raw=urllib.parse.urlencode({"token": token}).encode(),
                                headers={"Authorization": "Basic " + auth},
                                content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json["active"])
        self.assertEqual(r.json["token_type"], "DPoP")
        self.assertEqual(r.json["cnf"], {"jkt": thumbprint(public(self.key))})

    def test_an_unbound_token_still_works_as_bearer_only(self):
        r = self.server.post("/agent/identity", {"type": "anonymous"})
        r = self.exchange(r.json["identity_assertion"])
        self.assertEqual((r.status, r.json["token_type"]), (200, "Bearer"))
        token = r.json["access_token"]
        self.assertEqual(self.call(token, scheme="Bearer").status, 200)
        r = self.call(token, proof(self.key, "GET", self.api, token))
        self.assertEqual((r.status, r.json["error"]), (401, "invalid_token"))

    def test_a_bad_proof_at_the_token_endpoint_is_400_invalid_dpop_proof(self):
        a = self.server.post("/agent/identity", {"type": "anonymous"}).json["identity_assertion"]
        for p in (proof(self.key, "POST", self.server.url + "/elsewhere"),
                  proof(self.key, "GET", self.token_url), "not-a-jwt"):
            r = self.exchange(a, p)
            self.assertEqual((r.status, r.json["error"]), (400, "invalid_dpop_proof"), r)

    def test_an_id_jag_with_cnf_jkt_needs_a_proof_from_that_key(self):
        jag = lambda: self.provider.sign(self.provider.claims(  # noqa: E731
            self.server, cnf={"jkt": thumbprint(public(self.key))},
            auth_time=int(time.time())), key="es",
            typ="oauth-id-jag+jwt")
        r = self.exchange(jag())
        self.assertEqual((r.status, r.json["error"]), (400, "invalid_dpop_proof"), r)
        r = self.exchange(jag(), proof(self.other, "POST", self.token_url))
        self.assertEqual((r.status, r.json["error"]), (400, "invalid_dpop_proof"), r)
        r = self.exchange(jag(), proof(self.key, "POST", self.token_url))
        self.assertEqual((r.status, r.json["token_type"]), (200, "DPoP"), r)


if __name__ == "__main__":
    unittest.main()
