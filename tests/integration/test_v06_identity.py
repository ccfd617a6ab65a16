"""Protocol v0.6 beside v0.1 in one server (issue 13): discovery, the
service signing key and its JWKS, POST /agent/identity (anonymous and
ID-JAG), POST /oauth2/token (the service's assertion and an ID-JAG
presented directly), POST /agent/event/notify (RFC 8935 SETs), and the two
generations sharing one store."""
import base64
import hashlib
import hmac
import json
import os
import stat
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from harness import (ID_JAG_URN, REVOKED_EVENT, SERVER, Provider, Server, claim_link,
                     provider_overrides, register_idjag, send_logout)

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ID_JAG_PROFILE = "urn:ietf:params:oauth:grant-profile:id-jag"
ASSERTION_TYP = "oauth-id-jag+jwt"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token):
    h, p, _ = token.split(".")
    return json.loads(unb64url(h)), json.loads(unb64url(p))


def thumbprint(jwk):
    """RFC 7638, computed independently of the server."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    canon = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64url(hashlib.sha256(canon).digest())


def es256_sign(jwk, header, claims):
    """Signs with a P-256 private JWK through the openssl command (the test
    stands in for whoever stole or misuses the service's own key)."""
    d, x, y = (unb64url(jwk[k]) for k in ("d", "x", "y"))
    der = (bytes.fromhex("30770201010420") + d + bytes.fromhex("a00a06082a8648ce3d030107") +
           bytes.fromhex("a144034200") + b"\x04" + x + y)
    pem = ("-----BEGIN EC PRIVATE KEY-----\n" + base64.b64encode(der).decode() +
           "\n-----END EC PRIVATE KEY-----\n")
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode())).encode()
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(pem)
        path = f.name
    try:
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", path],
                             input=signing_input, capture_output=True, check=True).stdout
    finally:
        os.unlink(path)
    # DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, 32 bytes each
    i = 2 if sig[1] < 0x80 else 3
    lr = sig[i + 1]
    r = sig[i + 2:i + 2 + lr]
    j = i + 2 + lr
    ls = sig[j + 1]
    s = sig[j + 2:j + 2 + ls]
    raw = r[-32:].rjust(32, b"\0") + s[-32:].rjust(32, b"\0")
    return signing_input.decode() + "." + b64url(raw)


class V06Base(unittest.TestCase):
    SERVER_OVERRIDES = {}

    def setUp(self):
        self.provider = Provider().start()
        overrides = provider_overrides(self.provider)
        for k, v in self.SERVER_OVERRIDES.items():
            overrides.setdefault(k, {}).update(v)
        self.server = Server(overrides).start()

    def tearDown(self):
        rc = self.server.stop()
        if rc != 0:
            print(self.server.read_log())
        self.server.cleanup()
        self.provider.stop()
        self.assertEqual(rc, 0)

    # --- helpers ---
    def mint(self, key="es", typ=ASSERTION_TYP, **over):
        over.setdefault("auth_time", int(time.time()) - 5)  # v0.5: a fresh sign-in
        return self.provider.sign(self.provider.claims(self.server, **over), key=key, typ=typ)

    def identity(self, body):
        return self.server.post("/agent/identity", body)

    def identity_idjag(self, token):
        return self.identity({"type": "identity_assertion", "assertion_type": ID_JAG_URN,
                              "assertion": token})

    def token(self, assertion, grant=JWT_BEARER, resource=None, extra=None):
        form = {"grant_type": grant, "assertion": assertion}
        if resource is not None:
            form["resource"] = resource
        form.update(extra or {})
        return self.server.request("POST", "/oauth2/token",
                                   raw=urllib.parse.urlencode(form).encode(),
                                   content_type="application/x-www-form-urlencoded")

    def anonymous(self):
        r = self.identity({"type": "anonymous"})
        self.assertEqual(r.status, 200, r)
        return r.json

    def exchange(self, assertion, **kw):
        r = self.token(assertion, **kw)
        self.assertEqual(r.status, 200, r)
        return r.json

    def send_set(self, token, content_type="application/secevent+jwt"):
        return self.server.request("POST", "/agent/event/notify", raw=token.encode(),
                                   content_type=content_type)

    def set_claims(self, **over):
        return self.provider.logout_claims(self.server, **over)

    def mint_set(self, typ="secevent+jwt", key="es", **over):
        return self.provider.sign(self.set_claims(**over), key=key, typ=typ)

    def service_keys(self):
        with open(os.path.join(self.server.tmp, "keys", "service-keys.json")) as f:
            return json.load(f)["keys"]

    def own_assertion(self, registration_id, **over):
        """An assertion signed with the service's current key, claims
        overridable (None drops): for the checks a signature cannot make."""
        jwk = [k for k in self.service_keys() if k["retired_at"] == 0][0]["jwk"]
        now = int(time.time())
        claims = {"iss": self.server.url, "aud": self.server.url, "sub": registration_id,
                  "iat": now, "exp": now + 600, "jti": os.urandom(8).hex(),
                  "registration_type": "anonymous", "authmd_gen": 0}
        header = {"alg": "ES256", "typ": ASSERTION_TYP, "kid": jwk["kid"]}
        for k, v in over.items():
            if k.startswith("h_"):
                header[k[2:]] = v
            elif v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return es256_sign(jwk, header, claims)

    def assertV06Error(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json["error"], code, r.json)
        self.assertTrue(r.json["message"], r.json)

    def assertOAuthError(self, r, code, status=400, why=None):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json["error"], code, r.json)
        self.assertTrue(r.json["error_description"], r.json)
        self.assertNotIn("message", r.json)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        if why is not None:
            self.assertIn(why, r.json["error_description"])

    def assertSetError(self, r, err):
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["err"], err, r.json)
        self.assertTrue(r.json["description"], r.json)


class DiscoveryTest(V06Base):
    def test_one_document_carries_both_generations_and_rfc8414(self):
        doc = self.server.get("/.well-known/oauth-authorization-server").json
        url = self.server.url
        self.assertEqual(doc["issuer"], url)
        self.assertEqual(doc["token_endpoint"], url + "/oauth2/token")
        self.assertEqual(doc["jwks_uri"], url + "/.well-known/jwks.json")
        self.assertEqual(doc["revocation_endpoint"], url + "/oauth2/revoke")
        self.assertIn(JWT_BEARER, doc["grant_types_supported"])
        self.assertEqual(doc["authorization_grant_profiles_supported"], [ID_JAG_PROFILE])
        aa = doc["agent_auth"]
        # v0.6 names
        self.assertEqual(aa["identity_endpoint"], url + "/agent/identity")
        self.assertEqual(aa["claim_endpoint"], url + "/agent/identity/claim")
        self.assertEqual(aa["events_endpoint"], url + "/agent/event/notify")
        self.assertEqual(aa["events_supported"], [REVOKED_EVENT])
        # v0.1 names, still pointing at the v0.1 endpoints
        self.assertEqual(aa["register_uri"], url + "/agent/auth")
        self.assertEqual(aa["claim_uri"], url + "/agent/auth/claim")
        self.assertEqual(aa["revocation_uri"], url + "/agent/auth/revoke")
        self.assertIn("api_key", aa["anonymous"]["credential_types_supported"])
        self.assertIn(ID_JAG_URN, aa["identity_assertion"]["assertion_types_supported"])
        # the trust list is not advertised by default
        self.assertNotIn("issuers_supported", aa["identity_assertion"])
        md = self.server.get("/auth.md").body.decode()
        self.assertIn("/agent/identity", md)
        self.assertIn("/oauth2/token", md)
        self.assertIn("/agent/auth", md)

    def test_the_jwks_publishes_the_es256_key_under_its_thumbprint(self):
        r = self.server.get("/.well-known/jwks.json")
        self.assertEqual(r.status, 200, r)
        keys = r.json["keys"]
        self.assertEqual(len(keys), 1)
        k = keys[0]
        self.assertEqual((k["kty"], k["crv"], k["alg"], k["use"]), ("EC", "P-256", "ES256", "sig"))
        self.assertEqual(k["kid"], thumbprint(k))
        self.assertNotIn("d", k)
        path = os.path.join(self.server.tmp, "keys", "service-keys.json")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)
        # the key survives a restart
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        self.assertEqual(self.server.get("/.well-known/jwks.json").json["keys"], keys)


class IssuersPublishedTest(V06Base):
    SERVER_OVERRIDES = {"v06": {"publish_issuers": "on"}}

    def test_issuers_supported_lists_the_trust_list_when_asked(self):
        aa = self.server.get("/.well-known/oauth-authorization-server").json["agent_auth"]
        self.assertEqual(aa["identity_assertion"]["issuers_supported"], [self.provider.url])


class AnonymousTest(V06Base):
    def test_anonymous_through_the_exchange_to_the_resource(self):
        body = self.anonymous()
        self.assertEqual(body["registration_type"], "anonymous")
        self.assertEqual(body["pre_claim_scopes"], ["api.read"])
        self.assertEqual(body["post_claim_scopes"], ["api.read", "api.write"])
        self.assertTrue(body["claim_token"].startswith("clm_"))
        self.assertEqual(body["claim_url"], self.server.url + "/agent/identity/claim")
        for absent in ("credential", "access_token", "api_key"):
            self.assertNotIn(absent, body)
        header, claims = jwt_parts(body["identity_assertion"])
        jwks = self.server.get("/.well-known/jwks.json").json["keys"]
        self.assertEqual(header["typ"], ASSERTION_TYP)
        self.assertEqual(header["alg"], "ES256")
        self.assertEqual(header["kid"], jwks[0]["kid"])
        self.assertEqual(claims["iss"], self.server.url)
        self.assertEqual(claims["aud"], self.server.url)
        self.assertEqual(claims["sub"], body["registration_id"])
        tok = self.token(body["identity_assertion"], resource=self.server.url + "/api/")
        self.assertEqual(tok.status, 200, tok)
        self.assertEqual(tok.header("Cache-Control"), "no-store")
        self.assertEqual(tok.header("Pragma"), "no-cache")
        t = tok.json
        self.assertEqual(t["token_type"], "Bearer")
        self.assertEqual(t["scope"], "api.read")
        self.assertGreater(t["expires_in"], 0)
        self.assertNotIn("refresh_token", t)
        self.assertEqual(self.server.bearer("GET", "/api/resource", t["access_token"]).status, 200)
        self.assertEqual(self.server.bearer("POST", "/api/resource", t["access_token"],
                                            body={}).status, 403)
        # the assertion re-exchanges until it expires (the v0.6 refresh path)
        self.assertEqual(self.token(body["identity_assertion"]).status, 200)
        # the row is a registration of the v0.1 tables
        rows = self.server.db_query("SELECT kind, status FROM registrations WHERE id = ?",
                                    (body["registration_id"],))
        self.assertEqual(rows, [("anonymous", "unclaimed")])
        events = [e["event"] for e in self.server.audit_events()
                  if e.get("registration_id") == body["registration_id"]]
        for ev in ("registration.created", "assertion.issued", "token.issued"):
            self.assertIn(ev, events)

    def test_the_claim_endpoint_starts_the_user_code_ceremony(self):
        body = self.anonymous()
        r = self.server.post("/agent/identity/claim", {"claim_token": body["claim_token"],
                                                       "email": "owner@example.test"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "initiated")
        self.assertTrue(r.json["claim_attempt_id"].startswith("cla_"))
        self.assertIn("user_code", r.json["claim_attempt"])  # test_ceremony*.py: the rest
        # while the ceremony runs the agent keeps its pre-claim scopes
        self.assertEqual(self.exchange(body["identity_assertion"])["scope"], "api.read")
        self.assertEqual(self.server.outbox_messages(), [])  # v0.4: no mail

    def test_identity_request_errors(self):
        self.assertV06Error(self.identity({"type": "nope"}), 400, "invalid_request")
        self.assertV06Error(self.identity({}), 400, "invalid_request")
        self.assertV06Error(self.identity({"type": "identity_assertion",
                                           "assertion_type": "verified_email",
                                           "assertion": "a@b.test"}),
                            400, "unsupported_assertion_type")
        r = self.server.request("POST", "/agent/identity", raw=b"{not json",
                                content_type="application/json")
        self.assertV06Error(r, 400, "invalid_request")
        r = self.server.request("POST", "/agent/identity", raw=b"type=anonymous",
                                content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 415, r)


class AnonymousOffTest(V06Base):
    SERVER_OVERRIDES = {"flows": {"anonymous": "off"}}

    def test_anonymous_not_enabled(self):
        self.assertV06Error(self.identity({"type": "anonymous"}), 400, "anonymous_not_enabled")


class TokenEndpointTest(V06Base):
    def test_request_errors_use_the_rfc6749_envelope(self):
        a = self.anonymous()["identity_assertion"]
        self.assertOAuthError(self.token(a, grant="password"), "unsupported_grant_type")
        r = self.server.request("POST", "/oauth2/token",
                                raw=urllib.parse.urlencode({"assertion": a}).encode(),
                                content_type="application/x-www-form-urlencoded")
        self.assertOAuthError(r, "invalid_request")
        r = self.server.request("POST", "/oauth2/token",
                                raw=urllib.parse.urlencode({"grant_type": JWT_BEARER}).encode(),
                                content_type="application/x-www-form-urlencoded")
        self.assertOAuthError(r, "invalid_request")
        r = self.server.post("/oauth2/token", {"grant_type": JWT_BEARER, "assertion": a})
        self.assertOAuthError(r, "invalid_request")
        self.assertOAuthError(self.token(a, resource="https://elsewhere.test/"), "invalid_target")
        self.assertOAuthError(self.token("not-a-jwt"), "invalid_grant")

    def test_an_expired_registration_cannot_exchange(self):
        reg = self.anonymous()
        self.server.db_write("UPDATE registrations SET expires_at = 1 WHERE id = ?",
                             (reg["registration_id"],))
        self.assertOAuthError(self.token(reg["identity_assertion"]), "invalid_grant",
                              why="expired")


class IdJagTest(V06Base):
    def test_id_jag_registration_exchange_and_resource(self):
        r = self.identity_idjag(self.mint(sub="v06-user", email="v06@example.test"))
        self.assertEqual(r.status, 200, r)
        body = r.json
        self.assertEqual(body["registration_type"], "identity_assertion")
        self.assertEqual(body["scopes"], ["api.read", "api.write"])
        self.assertNotIn("claim_token", body)
        self.assertNotIn("credential", body)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        _, claims = jwt_parts(body["identity_assertion"])
        self.assertEqual(claims["sub"], body["registration_id"])
        t = self.exchange(body["identity_assertion"])
        self.assertEqual(t["scope"], "api.read api.write")
        me = self.server.bearer("GET", "/api/resource", t["access_token"])
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json["email"], "v06@example.test")
        rows = self.server.db_query("SELECT kind, status, iss, sub FROM registrations "
                                    "WHERE id = ?", (body["registration_id"],))
        self.assertEqual(rows, [("agent", "claimed", self.provider.url, "v06-user")])

    def test_one_jti_space_for_both_generations(self):
        token = self.mint(sub="replayed")
        self.assertEqual(self.identity_idjag(token).status, 200)
        r = register_idjag(self.server, token)  # the same ID-JAG at v0.1's /agent/auth
        self.assertEqual((r.status, r.json["error"]), (400, "replay_detected"), r.json)
        self.assertOAuthError(self.token(token), "invalid_grant", why="replay_detected")

    def test_auth_time_is_required_and_fresh(self):
        now = int(time.time())
        for over, why in (({"auth_time": None}, "no auth_time"),
                          ({"auth_time": now - 7200}, "more than 3600"),
                          ({"auth_time": now + 3600}, "future")):
            with self.subTest(why):
                r = self.identity_idjag(self.mint(**over))
                self.assertEqual(r.status, 401, r)
                self.assertEqual(r.json["error"], "login_required")
                self.assertEqual(r.json["max_age"], 3600)
                self.assertIn(why, r.json["error_description"])
                self.assertIn('max_age="3600"', r.header("WWW-Authenticate"))
                self.assertOAuthError(self.token(self.mint(**over)), "invalid_grant",
                                      why="login_required")
        # a refused token did not burn its jti
        claims = self.provider.claims(self.server, auth_time=now - 7200)
        self.assertEqual(self.identity_idjag(self.provider.sign(claims)).status, 401)
        claims["auth_time"] = now
        self.assertEqual(self.identity_idjag(self.provider.sign(claims)).status, 200)
        self.assertV06Error(self.identity_idjag(self.mint(auth_time="yesterday")), 400,
                            "invalid_request")
        # v0.1 keeps its own rules: no auth_time needed at /agent/auth
        self.assertEqual(register_idjag(self.server, self.provider.sign(
            self.provider.claims(self.server))).status, 200)

    def test_an_id_jag_presented_directly_at_the_token_endpoint(self):
        t = self.exchange(self.mint(sub="direct", email="direct@example.test"))
        self.assertEqual(t["scope"], "api.read api.write")
        self.assertNotIn("refresh_token", t)
        self.assertEqual(self.server.bearer("GET", "/api/resource", t["access_token"]).status, 200)
        rows = self.server.db_query("SELECT kind, status FROM registrations WHERE sub = ?",
                                    ("direct",))
        self.assertEqual(rows, [("agent", "claimed")])

    def test_a_first_link_is_interaction_required(self):
        # An account with this address exists (a claimed email registration);
        # the provider links by email, so the v0.5 step-up applies.
        self.server.stop()
        self.server.cleanup()
        self.server = Server(provider_overrides(self.provider, link_by_email="on")).start()
        reg = self.server.register_email("linked@example.test")
        self.server.wait_mail_queue()
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        r = self.identity_idjag(self.mint(sub="new-sub", email="linked@example.test"))
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json["error"], "interaction_required")
        self.assertIn("interaction_required", r.header("WWW-Authenticate"))
        self.assertTrue(r.json["claim_token"].startswith("clm_"))
        self.assertNotIn("identity_assertion", r.json)


class RotationTest(V06Base):
    def test_rotate_key_keeps_the_old_key_published(self):
        reg = self.anonymous()
        old_kid = jwt_parts(reg["identity_assertion"])[0]["kid"]
        r = subprocess.run([SERVER, "rotate-key", "--config", self.server.config],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        keys = self.server.get("/.well-known/jwks.json").json["keys"]
        kids = [k["kid"] for k in keys]
        self.assertEqual(len(kids), 2)
        self.assertIn(old_kid, kids)
        for k in keys:
            self.assertEqual(k["kid"], thumbprint(k))
        new_kid = [k for k in kids if k != old_kid][0]
        self.assertIn(new_kid, r.stdout)
        # the old assertion still exchanges; new ones carry the new kid
        self.assertEqual(self.token(reg["identity_assertion"]).status, 200)
        fresh = self.anonymous()["identity_assertion"]
        self.assertEqual(jwt_parts(fresh)[0]["kid"], new_kid)
        self.assertEqual(self.token(fresh).status, 200)


class NoOverlapRotationTest(V06Base):
    SERVER_OVERRIDES = {"v06": {"key_overlap": "0"}}

    def test_a_retired_key_past_its_overlap_is_gone(self):
        reg = self.anonymous()
        r = subprocess.run([SERVER, "rotate-key", "--config", self.server.config],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.server.get("/.well-known/jwks.json").json["keys"]), 1)
        self.assertOAuthError(self.token(reg["identity_assertion"]), "invalid_grant")


class EventsTest(V06Base):
    def registered(self, sub):
        r = self.identity_idjag(self.mint(sub=sub, email=sub + "@example.test"))
        self.assertEqual(r.status, 200, r)
        return r.json

    def test_a_set_revokes_the_registration_and_a_fresh_id_jag_revives_it(self):
        body = self.registered("set-user")
        at = self.exchange(body["identity_assertion"])["access_token"]
        r = self.send_set(self.mint_set(sub="set-user"))
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.body, b"")
        self.assertEqual(self.server.bearer("GET", "/api/resource", at).status, 401)
        self.assertOAuthError(self.token(body["identity_assertion"]), "invalid_grant",
                              why="revoked")
        rows = self.server.db_query("SELECT status FROM registrations WHERE id = ?",
                                    (body["registration_id"],))
        self.assertEqual(rows, [("revoked",)])
        # a fresh ID-JAG revives the same registration; the old assertion stays dead
        again = self.registered("set-user")
        self.assertEqual(again["registration_id"], body["registration_id"])
        self.assertOAuthError(self.token(body["identity_assertion"]), "invalid_grant",
                              why="revoked after")
        self.assertEqual(self.token(again["identity_assertion"]).status, 200)

    def test_an_operator_block_wins_over_a_revival(self):
        body = self.registered("blocked-user")
        self.assertEqual(self.send_set(self.mint_set(sub="blocked-user")).status, 202)
        r = subprocess.run([SERVER, "revoke", "--config", self.server.config, "--issuer",
                            self.provider.url, "--subject", "blocked-user"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertV06Error(self.identity_idjag(self.mint(sub="blocked-user")), 400,
                            "invalid_grant")
        self.assertOAuthError(self.token(self.mint(sub="blocked-user")), "invalid_grant")
        self.assertOAuthError(self.token(body["identity_assertion"]), "invalid_grant")
        rows = self.server.db_query("SELECT status FROM registrations WHERE id = ?",
                                    (body["registration_id"],))
        self.assertEqual(rows, [("revoked",)])

    def test_unknown_events_are_accepted_and_ignored(self):
        body = self.registered("calm-user")
        at = self.exchange(body["identity_assertion"])["access_token"]
        r = self.send_set(self.mint_set(sub="calm-user",
                                        events={"https://example.test/ev/other": {}}))
        self.assertEqual(r.status, 202, r)
        self.assertEqual(self.server.bearer("GET", "/api/resource", at).status, 200)


def hs256(header, claims, secret):
    """A JWT really signed with HMAC-SHA256 (the alg-confusion attack: a
    verifier that took the header's word would check it with secret)."""
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode()))
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def unsigned(header, claims):
    return (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode()) +
            ".")


def tampered(token, **over):
    """token with claims changed after signing: the signature no longer fits."""
    h, p, sig = token.split(".")
    claims = json.loads(unb64url(p))
    claims.update(over)
    return h + "." + b64url(json.dumps(claims).encode()) + "." + sig


class NegativeJwtTest(V06Base):
    """Every JWT-accepting v0.6 endpoint against one table of bad tokens:
    alg (none, HS256, one unfit for the key), typ, signature, aud, iss, exp,
    iat in the future, jti replay, and the checks of its own kind. Each
    endpoint is a kit: how to make a good token with overrides (claims;
    h_alg, h_typ, h_kid for the header; key), how to send it, how its
    refusal looks and which code each case gets."""

    COMMON = ("alg none", "alg HS256", "alg unfit for the key", "typ", "signature", "aud",
              "iss", "exp", "iat in the future")

    def provider_token(self, claims, typ, key="es", h_alg=None, h_typ=None, h_kid=None):
        kid = h_kid or self.provider.stats()["es_kid"]
        header = {"alg": h_alg, "typ": h_typ or typ, "kid": kid}
        if h_alg == "none":
            return unsigned(header, claims)
        if h_alg == "HS256":
            return hs256(header, claims, kid.encode())
        return self.provider.sign(claims, key=key, typ=h_typ or typ,
                                  kid=h_kid if key == "es" else kid)

    def common_cases(self, make):
        now = int(time.time())
        return {
            "alg none": make(h_alg="none"),
            "alg HS256": make(h_alg="HS256"),
            "alg unfit for the key": make(key="rs"),
            "typ": make(h_typ="JWT"),
            "signature": tampered(make(), sub="someone-else"),
            "aud": make(aud="https://other.test"),
            "iss": make(iss="https://evil.test"),
            "exp": make(iat=now - 900, exp=now - 600),
            "iat in the future": make(iat=now + 3600, exp=now + 3900),
        }

    def run_table(self, kit):
        tokens = self.common_cases(kit["make"])
        tokens.update(kit.get("extra", {}))
        self.assertEqual(set(tokens), set(kit["codes"]), "every case has its expected code")
        for name, token in tokens.items():
            with self.subTest(kit["name"] + ": " + name):
                kit["refused"](kit["send"](token), kit["codes"][name])
        with self.subTest(kit["name"] + ": jti replay"):
            token = kit["make"]()
            first = kit["send"](token)
            self.assertIn(first.status, (200, 202), first)
            kit["replayed"](kit["send"](token))

    # --- the kits ---
    def refused_v06(self, r, code):
        self.assertV06Error(r, 400, code)

    def refused_grant(self, r, why):
        self.assertOAuthError(r, "invalid_grant", why=why)

    def idjag_make(self, sub):
        def make(key="es", h_alg=None, h_typ=None, h_kid=None, **over):
            over.setdefault("sub", sub)
            over.setdefault("auth_time", int(time.time()) - 5)
            claims = self.provider.claims(self.server, **over)
            return self.provider_token(claims, ASSERTION_TYP, key, h_alg, h_typ, h_kid)
        return make

    def test_id_jags_at_agent_identity(self):
        make = self.idjag_make("neg-identity")
        codes = dict.fromkeys(self.COMMON, "invalid_signature")
        codes.update({"typ": "invalid_request", "typ logout": "invalid_request",
                      "aud": "invalid_audience", "iss": "invalid_issuer", "exp": "expired",
                      "iat in the future": "invalid_request",
                      "unknown kid": "invalid_signature",
                      "email not verified": "missing_verified_email",
                      "client_id": "invalid_client_id"})
        self.run_table({
            "name": "/agent/identity", "make": make, "send": self.identity_idjag,
            "refused": self.refused_v06, "codes": codes,
            "extra": {"typ logout": make(h_typ="logout+jwt"),
                      "unknown kid": make(h_kid="no-such-kid"),
                      "email not verified": make(email_verified=False),
                      "client_id": make(client_id="https://other.test")},
            "replayed": lambda r: self.assertV06Error(r, 400, "replay_detected")})

    def test_id_jags_at_the_token_endpoint(self):
        make = self.idjag_make("neg-token")
        # invalid_grant throughout (RFC 7523 3.1); the detail names the
        # ID-JAG check, as /agent/identity would
        codes = dict.fromkeys(self.COMMON, "invalid_signature")
        codes.update({"typ": None, "aud": "invalid_audience", "iss": "invalid_issuer",
                      "exp": "expired", "iat in the future": "invalid_request",
                      "unknown kid": "invalid_signature", "auth_time": "login_required"})
        self.run_table({
            "name": "/oauth2/token (ID-JAG)", "make": make, "send": self.token,
            "refused": self.refused_grant, "codes": codes,
            "extra": {"unknown kid": make(h_kid="no-such-kid"),
                      "auth_time": make(auth_time=int(time.time()) - 7200)},
            "replayed": lambda r: self.refused_grant(r, "replay_detected")})

    def test_the_services_own_assertions_at_the_token_endpoint(self):
        rid = self.anonymous()["registration_id"]
        service_jwk = [k for k in self.service_keys() if k["retired_at"] == 0][0]["jwk"]

        def make(key="es", h_alg=None, h_typ=None, h_kid=None, **over):
            if h_alg in ("none", "HS256"):
                now = int(time.time())
                claims = {"iss": self.server.url, "aud": self.server.url, "sub": rid,
                          "iat": now, "exp": now + 600, "jti": os.urandom(8).hex(),
                          "registration_type": "anonymous", "authmd_gen": 0}
                header = {"alg": h_alg, "typ": ASSERTION_TYP, "kid": service_jwk["kid"]}
                return (unsigned(header, claims) if h_alg == "none" else
                        hs256(header, claims, service_jwk["x"].encode()))
            if key == "rs":  # we have no RSA key: an RS256 header on our EC key's kid
                over["h_alg"] = "RS256"
            for name, v in (("h_typ", h_typ), ("h_kid", h_kid)):
                if v is not None:
                    over[name] = v
            return self.own_assertion(rid, **over)
        codes = dict.fromkeys(self.COMMON, None)
        codes.update({"iss": "invalid_issuer", "unknown kid": None, "no exp": None,
                      "unknown registration": "does not exist",
                      "generation": "revoked after"})
        self.run_table({
            "name": "/oauth2/token (identity assertion)", "make": make, "send": self.token,
            "refused": self.refused_grant, "codes": codes,
            "extra": {"unknown kid": make(h_kid="unknown-kid"),
                      "no exp": make(exp=None),
                      "unknown registration": self.own_assertion("reg_nope"),
                      "generation": make(authmd_gen=3)},
            # not a replay: the assertion is the v0.6 refresh handle
            # (docs/protocol.md), exchanged again until it expires
            "replayed": lambda r: self.assertEqual(r.status, 200, r)})

    def test_sets_at_the_events_endpoint(self):
        def make(key="es", h_alg=None, h_typ=None, h_kid=None, **over):
            return self.provider_token(self.set_claims(**over), "secevent+jwt", key, h_alg,
                                       h_typ, h_kid)
        codes = dict.fromkeys(self.COMMON, "invalid_key")
        codes.update({"typ": "invalid_request", "typ logout": "invalid_request",
                      "typ id-jag": "invalid_request", "aud": "invalid_audience",
                      "iss": "invalid_issuer", "exp": "invalid_request",
                      "iat in the future": "invalid_request", "stale iat": "invalid_request",
                      "unknown kid": "invalid_key", "no events": "invalid_request",
                      "events not an object": "invalid_request", "garbage": "invalid_request"})
        self.run_table({
            "name": "/agent/event/notify", "make": make, "send": self.send_set,
            "refused": self.assertSetError, "codes": codes,
            "extra": {"typ logout": make(h_typ="logout+jwt"),
                      "typ id-jag": make(h_typ=ASSERTION_TYP),
                      "stale iat": make(iat=int(time.time()) - 3600),
                      "unknown kid": make(h_kid="no-such-kid"),
                      "no events": make(events=None),
                      "events not an object": make(events=[REVOKED_EVENT]),
                      "garbage": "a.b.c"},
            "replayed": lambda r: self.assertSetError(r, "invalid_request")})
        self.assertSetError(self.send_set(make(), content_type="application/json"),
                            "invalid_request")
        # a logout token's replay window is its own: same jti, other kind
        token = make()
        self.assertEqual(self.send_set(token).status, 202)
        self.assertEqual(send_logout(self.server, self.provider.sign(
            self.set_claims(jti=jwt_parts(token)[1]["jti"]), typ="logout+jwt")).status, 200)


class ResourceTest(V06Base):
    def test_a_token_is_refused_by_the_gate_of_another_resource(self):
        t = self.exchange(self.anonymous()["identity_assertion"],
                          resource=self.server.url + "/api/")["access_token"]
        key = self.server.register_anonymous()["credential"]  # v0.1: not restricted
        for cred in (t, key):
            self.assertEqual(self.server.bearer("GET", "/api/resource", cred).status, 200)
        rows = self.server.db_query("SELECT resource FROM credentials WHERE source = ?",
                                    ("anonymous",))
        self.assertIn((self.server.url + "/api/",), rows)
        # The same store behind a service for another resource.
        self.assertEqual(self.server.stop(), 0)
        other = Server(dict(provider_overrides(self.provider),
                            server={"resource": "https://other-api.test/"}),
                       tmp=self.server.tmp).start()
        self.server = other  # tearDown stops it
        r = other.bearer("GET", "/api/resource", t)
        self.assertEqual(r.status, 401, r)
        self.assertIn("resource_metadata", r.header("WWW-Authenticate"))
        def authz(cred):
            return other.request("GET", "/authz", headers={
                "Authorization": "Bearer " + cred, "X-Original-Method": "GET",
                "X-Original-URI": "/api/resource"})
        self.assertEqual(authz(t).status, 401, authz(t))
        self.assertEqual(authz(key).status, 200)
        self.assertEqual(other.bearer("GET", "/api/resource", key).status, 200)


class BothGenerationsTest(V06Base):
    """A v0.1 agent and a v0.6 agent on one running server, one store."""

    def both(self, sub):
        v01 = register_idjag(self.server, self.mint(sub=sub, email=sub + "@example.test"))
        self.assertEqual(v01.status, 200, v01)
        v06 = self.identity_idjag(self.mint(sub=sub, email=sub + "@example.test"))
        self.assertEqual(v06.status, 200, v06)
        # one delegation: the v0.6 agent got the same registration row
        self.assertEqual(v01.json["registration_id"], v06.json["registration_id"])
        at = self.exchange(v06.json["identity_assertion"])["access_token"]
        for cred in (v01.json["credential"], at):
            self.assertEqual(self.server.bearer("GET", "/api/resource", cred).status, 200)
        return v01.json["credential"], at, v06.json

    def test_anonymous_agents_of_both_generations(self):
        key = self.server.register_anonymous()["credential"]
        at = self.exchange(self.anonymous()["identity_assertion"])["access_token"]
        for cred in (key, at):
            self.assertEqual(self.server.bearer("GET", "/api/resource", cred).status, 200)

    def test_either_revocation_mechanism_revokes_both_generations(self):
        mechanisms = [
            ("logout token to /agent/auth/revoke", lambda sub: send_logout(
                self.server, self.provider.sign(self.set_claims(sub=sub), typ="logout+jwt")),
             200),
            ("SET to /agent/event/notify", lambda sub: self.send_set(self.mint_set(sub=sub)),
             202),
        ]
        for i, (name, revoke, status) in enumerate(mechanisms):
            with self.subTest(name):
                sub = "both-%d" % i  # a user of its own per mechanism
                key, at, v06 = self.both(sub)
                r = revoke(sub)
                self.assertEqual(r.status, status, r)
                for cred in (key, at):
                    self.assertEqual(self.server.bearer("GET", "/api/resource", cred).status,
                                     401)
                # the v0.6 agent cannot get a new token from its assertion
                self.assertOAuthError(self.token(v06["identity_assertion"]), "invalid_grant")
                rows = self.server.db_query(
                    "SELECT r.status, COUNT(c.id), COUNT(c.revoked_at) FROM registrations r "
                    "JOIN credentials c ON c.registration_id = r.id WHERE r.id = ? "
                    "GROUP BY r.status", (v06["registration_id"],))
                self.assertEqual(rows, [("revoked", 2, 2)])


class Rfc7009Test(V06Base):
    """POST /oauth2/revoke: an access token minted at /oauth2/token is
    revoked alone (RFC 7009 2.1, the v0.6 guide), its registration and
    identity assertion untouched; a v0.1 credential takes its registration
    with it (the v0.1 choice, docs/protocol.md)."""

    def revoke(self, raw, content_type="application/x-www-form-urlencoded"):
        return self.server.request("POST", "/oauth2/revoke", raw=raw, content_type=content_type)

    def revoke_token(self, token, **extra):
        return self.revoke(urllib.parse.urlencode(dict(token=token, **extra)).encode())

    def status_of(self, rid):
        return self.server.db_query("SELECT status FROM registrations WHERE id = ?", (rid,))[0][0]

    def test_an_access_token_is_revoked_alone_and_its_assertion_exchanges_again(self):
        idjag = self.identity_idjag(self.mint(sub="rv-user", email="rv@example.test"))
        self.assertEqual(idjag.status, 200, idjag)
        for name, reg, status in (("anonymous", self.anonymous(), "unclaimed"),
                                  ("identity_assertion", idjag.json, "claimed")):
            with self.subTest(name):
                first = self.exchange(reg["identity_assertion"])["access_token"]
                other = self.exchange(reg["identity_assertion"])["access_token"]
                r = self.revoke_token(first, token_type_hint="access_token")
                self.assertEqual((r.status, r.json), (200, {}), r)
                self.assertEqual(r.header("Cache-Control"), "no-store")
                self.assertEqual(self.server.bearer("GET", "/api/resource", first).status, 401)
                # the registration, its other token and its assertion live on
                self.assertEqual(self.status_of(reg["registration_id"]), status)
                self.assertEqual(self.server.bearer("GET", "/api/resource", other).status, 200)
                again = self.exchange(reg["identity_assertion"])["access_token"]
                self.assertEqual(self.server.bearer("GET", "/api/resource", again).status, 200)
                # a revoked (or never issued) token: the same 200
                self.assertEqual(self.revoke_token(first).status, 200)
        events = [e["event"] for e in self.server.audit_events()]
        self.assertEqual(events.count("token.revoked"), 2, events)  # the guide's event
        self.assertNotIn("credential.revoked", events)
        self.assertNotIn("registration.revoked", events)

    def test_a_v01_credential_revokes_its_registration(self):
        v01 = register_idjag(self.server, self.mint(sub="rv-both", email="rvb@example.test"))
        self.assertEqual(v01.status, 200, v01)
        v06 = self.identity_idjag(self.mint(sub="rv-both", email="rvb@example.test"))
        at = self.exchange(v06.json["identity_assertion"])["access_token"]
        self.assertEqual(self.revoke_token(v01.json["credential"]).status, 200)
        self.assertEqual(self.status_of(v01.json["registration_id"]), "revoked")
        for cred in (v01.json["credential"], at):
            self.assertEqual(self.server.bearer("GET", "/api/resource", cred).status, 401)
        self.assertOAuthError(self.token(v06.json["identity_assertion"]), "invalid_grant")

    def test_unknown_tokens_are_200_and_only_a_malformed_body_is_400(self):
        for token in ("at_never_issued", "x" * 300, self.anonymous()["identity_assertion"]):
            self.assertEqual(self.revoke_token(token).status, 200)
        for name, raw, ctype in (("no token", b"token_type_hint=access_token",
                                  "application/x-www-form-urlencoded"),
                                 ("empty token", b"token=", "application/x-www-form-urlencoded"),
                                 ("json body", b'{"token": "x"}', "application/json")):
            with self.subTest(name):
                self.assertOAuthError(self.revoke(raw, ctype), "invalid_request")


if __name__ == "__main__":
    unittest.main()
