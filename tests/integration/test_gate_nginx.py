"""The gate end to end behind a real nginx (Debian's, unprivileged, on
loopback) with authmd answering its auth_request sub-requests and a real
upstream that echoes what it receives. Everything goes through nginx's one
public origin, as an operator would deploy it (docs/gate.md)."""
import http.client
import json
import re
import time
import unittest
import urllib.parse

from harness import (EchoUpstream, Nginx, Server, claim_link, free_port)
from test_agent_cli import Cli, wait_for

ROUTES = {
    "route api-read": {"path": "/api", "methods": "GET HEAD", "scope": "api.read"},
    "route api-write": {"path": "/api", "scope": "api.write"},
}


def stack(extra=None):
    """(upstream, nginx, authmd) started; authmd's public_url is nginx's."""
    upstream = EchoUpstream().start()
    authmd_port = free_port()
    nginx = Nginx(authmd_port, upstream.port)
    cfg = {"server": {"listen": "127.0.0.1:%d" % authmd_port, "public_url": nginx.url,
                      "trusted_proxies": "127.0.0.1/32"}}
    cfg.update(ROUTES)
    for section, keys in (extra or {}).items():
        cfg.setdefault(section, {}).update(keys)
    server = Server(cfg)
    server.port = authmd_port
    server.url = "http://127.0.0.1:%d" % authmd_port
    server.start()
    nginx.start()
    return upstream, nginx, server


class GateStack(unittest.TestCase):
    EXTRA = None

    def setUp(self):
        self.upstream, self.nginx, self.server = stack(self.EXTRA)

    def tearDown(self):
        self.nginx.cleanup()
        self.upstream.stop()
        rc = self.server.stop()
        if rc not in (0, None):
            print(self.server.read_log())
        self.assertIn(rc, (0, None))

    def bearer(self, method, path, cred, **kw):
        headers = dict(kw.pop("headers", {}))
        headers["Authorization"] = "Bearer " + cred
        return self.nginx.request(method, path, headers=headers, **kw)

    def claim(self, reg, address):
        """The claim ceremony through nginx: start, the code from the
        outbox (the user's click on the link also goes through nginx)."""
        r = self.nginx.request("POST", "/agent/auth/claim",
                               body={"claim_token": reg["claim_token"], "email": address})
        self.assertEqual(r.status, 200, r)
        link = claim_link(self.server.outbox_messages()[-1])
        self.assertTrue(link.startswith(self.nginx.url + "/agent/"), link)
        parts = urllib.parse.urlsplit(link)
        page = self.nginx.request("GET", parts.path + "?" + parts.query)
        self.assertEqual(page.status, 200, page)
        token = urllib.parse.parse_qs(parts.query)["token"][0]
        form = urllib.parse.urlencode({"claim_attempt_token": token}).encode()
        shown = self.nginx.request("POST", "/agent/auth/claim/attempt/challenge", raw=form,
                                   content_type="application/x-www-form-urlencoded")
        self.assertEqual(shown.status, 200, shown)
        otp = re.search(rb'class="code">(\d{6})<', shown.body).group(1).decode()
        r = self.nginx.request("POST", "/agent/auth/claim/complete",
                               body={"claim_token": reg["claim_token"], "otp": otp})
        self.assertEqual(r.status, 200, r)


class PlainHttpAgentTest(GateStack):
    def test_discover_register_call_refused_write_claim_then_allowed(self):
        # 1. The API's 401 carries the discovery pointer through nginx.
        r = self.nginx.request("GET", "/api/orders")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json["error"], "invalid_token")
        www = r.header("WWW-Authenticate")
        self.assertEqual(www, 'Bearer resource_metadata="%s/.well-known/'
                              'oauth-protected-resource/api/"' % self.nginx.url)
        self.assertEqual([k for k, _ in r.headers if k.lower() == "www-authenticate"],
                         ["WWW-Authenticate"])  # exactly one challenge
        self.assertEqual(self.upstream.seen, [])  # refused before the API
        prm_url = www.split('"')[1]
        prm = self.nginx.request("GET", urllib.parse.urlsplit(prm_url).path)
        self.assertEqual(prm.status, 200, prm)
        self.assertEqual(prm.json["resource"], self.nginx.url + "/api/")
        as_url = prm.json["authorization_servers"][0]
        self.assertEqual(as_url, self.nginx.url)
        meta = self.nginx.request("GET", "/.well-known/oauth-authorization-server").json
        self.assertEqual(meta["revocation_endpoint"], self.nginx.url + "/oauth2/revoke")
        # 2. Register anonymously at the origin's /agent/auth.
        reg = self.nginx.request("POST", "/agent/auth", body={"type": "anonymous"})
        self.assertEqual(reg.status, 200, reg)
        reg = reg.json
        # 3. The upstream sees the identity, and never the agent's forgeries.
        r = self.bearer("GET", "/api/orders?page=2", reg["credential"],
                        headers={"X-Authmd-User": "usr_admin",
                                 "X-Authmd-Scopes": "api.read api.write admin"})
        self.assertEqual(r.status, 200, r)
        seen = r.json["headers"]
        self.assertEqual(r.json["path"], "/api/orders?page=2")
        self.assertEqual(seen["x-authmd-registration"], reg["registration_id"])
        self.assertEqual(seen["x-authmd-scopes"], "api.read")
        self.assertEqual(seen["x-authmd-credential-type"], "api_key")
        self.assertEqual(seen["x-authmd-source"], "anonymous")
        self.assertNotIn("x-authmd-user", seen)  # not claimed: no user, and not the forgery
        self.assertNotIn("x-authmd-email", seen)
        self.assertNotIn("authorization", seen)
        # 4. A write route needs api.write: 403 with the challenge.
        r = self.bearer("POST", "/api/orders", reg["credential"], body={"n": 1})
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json["error"], "insufficient_scope")
        self.assertEqual(r.header("WWW-Authenticate"),
                         'Bearer error="insufficient_scope", scope="api.write", '
                         'resource_metadata="%s/.well-known/oauth-protected-resource/api/"'
                         % self.nginx.url)
        self.assertEqual(len([k for k, _ in r.headers if k.lower() == "www-authenticate"]), 1)
        self.assertEqual(len(self.upstream.seen), 1)
        # 5. Claim, then the same key writes, as the user.
        self.claim(reg, "ann@example.test")
        r = self.bearer("POST", "/api/orders", reg["credential"], body={"n": 1},
                        headers={"X-Authmd-User": "usr_admin"})
        self.assertEqual(r.status, 200, r)
        seen = r.json["headers"]
        self.assertEqual(r.json["method"], "POST")
        self.assertTrue(seen["x-authmd-user"].startswith("usr_"), seen)
        self.assertNotEqual(seen["x-authmd-user"], "usr_admin")
        self.assertEqual(seen["x-authmd-email"], "ann@example.test")
        self.assertEqual(seen["x-authmd-scopes"], "api.read api.write")
        # 6. Revoked through the origin's RFC 7009 endpoint: refused.
        form = urllib.parse.urlencode({"token": reg["credential"],
                                       "token_type_hint": "access_token"}).encode()
        r = self.nginx.request("POST", "/oauth2/revoke", raw=form,
                               content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 200, r)
        before = len(self.upstream.seen)
        r = self.bearer("GET", "/api/orders", reg["credential"])
        self.assertEqual(r.status, 401, r)
        self.assertIn('error="invalid_token"', r.header("WWW-Authenticate"))
        self.assertEqual(len(self.upstream.seen), before)

    def test_paths_outside_every_route_are_denied_and_tricks_do_not_reach_the_api(self):
        reg = self.nginx.request("POST", "/agent/auth", body={"type": "anonymous"}).json
        r = self.bearer("GET", "/admin", reg["credential"])
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json["error"], "access_denied")
        # A forged X-Forwarded-Uri that disagrees with nginx's X-Original-URI.
        r = self.bearer("GET", "/admin", reg["credential"],
                        headers={"X-Forwarded-Uri": "/api/orders"})
        self.assertNotEqual(r.status, 200, r)
        # An encoded slash is refused rather than guessed at.
        r = self.bearer("GET", "/api%2F..%2Fadmin", reg["credential"])
        self.assertNotEqual(r.status, 200, r)
        self.assertEqual(self.upstream.seen, [])


class ExpiredCredentialTest(GateStack):
    EXTRA = {"ttl": {"registration": "5"}}

    def test_an_unclaimed_key_past_its_ttl_is_refused(self):
        reg = self.nginx.request("POST", "/agent/auth", body={"type": "anonymous"}).json
        self.assertEqual(self.bearer("GET", "/api/x", reg["credential"]).status, 200)
        deadline = time.time() + 30
        while time.time() < deadline:
            r = self.bearer("GET", "/api/x", reg["credential"])
            if r.status != 200:
                break
            time.sleep(0.5)
        self.assertEqual(r.status, 401, r)
        self.assertIn('error="invalid_token"', r.header("WWW-Authenticate"))


class CliAgentTest(GateStack):
    def test_the_authmd_cli_discovers_registers_and_claims_through_nginx(self):
        cli = Cli(protocol="v0.1")  # the v0.1 claim ceremony
        url = self.nginx.url + "/api/orders"
        rc, d = cli.json("discover", url)
        self.assertEqual(rc, 0, d)
        self.assertTrue(d["from_www_authenticate"])
        self.assertEqual(d["authorization_server"], self.nginx.url)
        rc, reg = cli.json("register", url, "--anonymous")
        self.assertEqual(rc, 0, reg)
        rc, got = cli.json("curl", url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertEqual(got["body"]["headers"]["x-authmd-scopes"], "api.read")
        r = cli.run("curl", "-X", "POST", "-d", "{}", url)
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn("insufficient_scope", r.stderr)

        def code():
            mail = wait_for(lambda: self.server.outbox_messages())
            return self.server.code_from_link(claim_link(mail[-1]))
        rc, out = cli.at_pty(["claim", url, "--email", "cli@example.test"], code)
        self.assertEqual(rc, 0, out)
        rc, got = cli.json("curl", "-X", "POST", "-d", "{}", url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertEqual(got["body"]["headers"]["x-authmd-email"], "cli@example.test")


class TrustedProxyTest(GateStack):
    EXTRA = {"limits": {"anonymous_per_ip": "2", "anonymous_global": "0"}}

    def register_via_nginx(self, source, xff=None):
        headers = {"X-Forwarded-For": xff} if xff else {}
        return self.nginx.request("POST", "/agent/auth", body={"type": "anonymous"},
                                  headers=headers, source=source)

    def test_the_per_ip_limit_counts_the_client_behind_nginx(self):
        self.assertEqual(self.register_via_nginx("127.0.0.2").status, 200)
        # What the client writes left of nginx's own entry is not believed.
        self.assertEqual(self.register_via_nginx("127.0.0.2", xff="198.51.100.7").status, 200)
        r = self.register_via_nginx("127.0.0.2", xff="198.51.100.8")
        self.assertEqual(r.status, 429, r)
        self.assertEqual(r.json["error"], "rate_limited")
        # Nor is a Forwarded header, which nginx passes on from the client.
        r = self.nginx.request("POST", "/agent/auth", body={"type": "anonymous"},
                               headers={"Forwarded": "for=198.51.100.9"}, source="127.0.0.2")
        self.assertEqual(r.status, 429, r)
        # Another client behind the same nginx has its own budget.
        self.assertEqual(self.register_via_nginx("127.0.0.3").status, 200)
        ips = [e.get("ip") for e in self.server.audit_events()
               if e["event"] == "registration.created"]
        self.assertEqual(ips, ["127.0.0.2", "127.0.0.2", "127.0.0.3"])

    def test_forwarding_headers_from_an_untrusted_peer_are_ignored(self):
        # Straight to authmd from 127.0.0.4 (not a trusted proxy), claiming
        # to be 127.0.0.2's proxy: counted as 127.0.0.4 all the same.
        for i in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30,
                                              source_address=("127.0.0.4", 0))
            conn.request("POST", "/agent/auth", body=json.dumps({"type": "anonymous"}),
                         headers={"Content-Type": "application/json",
                                  "X-Forwarded-For": "127.0.0.%d" % (10 + i),
                                  "Forwarded": "for=127.0.0.%d" % (20 + i)})
            status = conn.getresponse().status
            conn.close()
            self.assertEqual(status, 200 if i < 2 else 429)
        ips = {e.get("ip") for e in self.server.audit_events()
               if e["event"] == "registration.created"}
        self.assertEqual(ips, {"127.0.0.4"})


class ForwardedHeaderTest(unittest.TestCase):
    """[server] trusted_proxy_header = forwarded: RFC 7239 elements, read
    right to left, from the trusted peer only."""

    def setUp(self):
        self.server = Server({"server": {"trusted_proxies": "127.0.0.1/32",
                                         "trusted_proxy_header": "forwarded"}}).start()
        self.addCleanup(self.server.cleanup)

    def register(self, source, headers):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30,
                                          source_address=(source, 0))
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers)
        conn.request("POST", "/agent/auth", body=json.dumps({"type": "anonymous"}),
                     headers=hdrs)
        status = conn.getresponse().status
        conn.close()
        self.assertEqual(status, 200)
        return self.server.audit_events()[-1]["ip"]

    def test_forwarded_elements_right_to_left(self):
        both = {"Forwarded": 'for=198.51.100.1, for="[2001:db8::7]:4711";proto=https',
                "X-Forwarded-For": "203.0.113.9"}
        self.assertEqual(self.register("127.0.0.1", both), "2001:db8::7")
        # A trusted hop is skipped; an unreadable one stops the walk there.
        self.assertEqual(self.register("127.0.0.1", {"Forwarded": "for=10.9.9.9:80, "
                                                     "for=127.0.0.1"}), "10.9.9.9")
        self.assertEqual(self.register("127.0.0.1", {"Forwarded": "for=10.9.9.9, "
                                                     "for=unknown"}), "127.0.0.1")
        self.assertEqual(self.register("127.0.0.6", both), "127.0.0.6")  # untrusted peer


if __name__ == "__main__":
    unittest.main()
