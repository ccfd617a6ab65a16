"""authmd-provider delivers a revocation as a Security Event Token (RFC 8417,
RFC 8935 push) to a v0.6 service's events_endpoint and as a logout token to
a v0.1 revocation_uri, learning which from the audience's metadata or from
the grant. The v0.6 audience here is a stand-in on loopback that publishes
v0.6 metadata and records what reaches its events_endpoint; the v0.1 one is
the real authmd-server."""
import base64
import http.server
import json
import threading
import time
import unittest

from harness import RealProvider, Server, free_port, provider_overrides, register_idjag

REVOKED = "https://schemas.workos.com/events/agent/auth/identity/assertion/revoked"


def part(token, i):
    p = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def wait_for(predicate, timeout=20, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class V06Audience:
    """Publishes v0.6 AS metadata (events_endpoint, no revocation_uri) and
    answers POST /agent/event/notify with the statuses queued in answers
    (202 once they run out)."""

    def __init__(self):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.received = []
        self.answers = []
        aud = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def reply(self, status, body=b""):
                self.send_response(status)
                if body:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != "/.well-known/oauth-authorization-server":
                    return self.reply(404)
                doc = {"issuer": aud.url, "token_endpoint": aud.url + "/oauth2/token",
                       "agent_auth": {"identity_endpoint": aud.url + "/agent/identity",
                                      "events_endpoint": aud.url + "/agent/event/notify",
                                      "events_supported": [REVOKED]}}
                self.reply(200, json.dumps(doc).encode())

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode()
                if self.path != "/agent/event/notify":
                    return self.reply(404)
                aud.received.append({"content_type": self.headers.get("Content-Type"),
                                     "body": body})
                status = aud.answers.pop(0) if aud.answers else 202
                if status == 400:
                    self.reply(400, json.dumps({"err": "invalid_key",
                                                "description": "no such key"}).encode())
                else:
                    self.reply(status)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ProviderSetTest(unittest.TestCase):
    PROVIDER = {"revocation": {"retry_base": "1", "retry_max": "1", "max_attempts": "3"}}

    def setUp(self):
        self.provider = RealProvider(self.PROVIDER)
        self.session = self.provider.add_user("ann@example.test")
        self.provider.start()
        self.v06 = V06Audience()

    def tearDown(self):
        self.v06.stop()
        rc = self.provider.stop()
        self.provider.cleanup()
        self.assertIn(rc, (0, None))

    def grant(self, **target):
        body = {"audience": self.v06.url, "mode": "always"}
        body.update(target)
        r = self.provider.request("POST", "/grants", body, self.session)
        self.assertEqual(r.status, 201, r)
        return r.json

    def revoke(self, grant):
        r = self.provider.request("DELETE", "/grants/" + grant["id"], session=self.session)
        self.assertEqual(r.status, 200, r)

    def delivery(self, grant):
        return [g for g in self.provider.grants(self.session)
                if g["id"] == grant["id"]][0]["revocation"]

    def test_a_v06_audience_learned_from_its_metadata_gets_a_set(self):
        grant = self.grant(revocation="discover")
        self.assertEqual(grant["events_endpoint"], self.v06.url + "/agent/event/notify")
        self.assertNotIn("revocation_uri", grant)
        self.revoke(grant)
        self.assertTrue(wait_for(lambda: self.v06.received))
        got = self.v06.received[0]
        self.assertEqual(got["content_type"], "application/secevent+jwt")
        h, c = part(got["body"], 0), part(got["body"], 1)
        self.assertEqual(h["typ"], "secevent+jwt")
        self.assertIn(h["alg"], ("ES256", "RS256", "PS256"))
        kids = [k["kid"] for k in
                self.provider.request("GET", "/.well-known/jwks.json").json["keys"]]
        self.assertIn(h["kid"], kids)
        self.assertEqual(c["iss"], self.provider.url)
        self.assertEqual(c["aud"], self.v06.url)
        self.assertTrue(c["sub"])
        self.assertTrue(c["jti"])
        self.assertLessEqual(abs(c["iat"] - time.time()), 60)
        self.assertEqual(c["events"], {REVOKED: {}})
        self.assertTrue(wait_for(lambda: self.delivery(grant)["status"] == "delivered"))
        self.assertEqual(self.delivery(grant)["http_status"], 202)

    def test_a_set_is_retried_after_a_5xx_and_a_400_is_final(self):
        retried = self.grant(events_endpoint=self.v06.url + "/agent/event/notify")
        self.v06.answers = [503]
        self.revoke(retried)
        self.assertTrue(wait_for(lambda: self.delivery(retried)["status"] == "delivered",
                                 timeout=30))
        self.assertEqual(self.delivery(retried)["attempts"], 2)
        first, second = (part(r["body"], 1) for r in self.v06.received[:2])
        self.assertNotEqual(first["jti"], second["jti"])  # minted fresh per attempt

        refused = self.grant(events_endpoint=self.v06.url + "/agent/event/notify")
        self.v06.answers = [400]
        self.revoke(refused)
        self.assertTrue(wait_for(lambda: self.delivery(refused)["status"] == "failed"))
        d = self.delivery(refused)
        self.assertEqual((d["attempts"], d["http_status"]), (1, 400))

    def test_the_target_is_checked(self):
        for body, why in (
                ({"events_endpoint": "http://127.0.0.2:1/agent/event/notify"}, "origin"),
                ({"events_endpoint": "ftp://x"}, "URL"),
                ({"events_endpoint": self.v06.url + "/e", "revocation_uri": self.v06.url},
                 "at most one"),
                ({"revocation": "always"}, "discover")):
            b = {"audience": self.v06.url}
            b.update(body)
            r = self.provider.request("POST", "/grants", b, self.session)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn(why, r.json["error_description"] if "error_description" in r.json
                          else json.dumps(r.json))
        # an audience whose metadata cannot be fetched: no grant with a silent gap
        r = self.provider.request("POST", "/grants", {"audience": "http://127.0.0.1:9",
                                                      "revocation": "discover"}, self.session)
        self.assertEqual(r.status, 503, r)


class ProviderDiscoversV01Test(unittest.TestCase):
    """Against the real authmd-server: the channel the metadata names is the
    one used, and the ID-JAG registration's credential stops working."""

    def setUp(self):
        self.provider = RealProvider()
        self.session = self.provider.add_user("bob@example.test")
        self.provider.start()
        self.server = Server(provider_overrides(self.provider, name="prov")).start()

    def tearDown(self):
        self.server.cleanup()
        self.provider.stop()
        self.provider.cleanup()

    def test_discovery_picks_the_servers_channel_and_revokes(self):
        meta = self.server.request("GET", "/.well-known/oauth-authorization-server").json
        r = self.provider.request("POST", "/grants", {"audience": self.server.url,
                                                      "revocation": "discover"}, self.session)
        self.assertEqual(r.status, 201, r)
        grant = r.json
        if "events_endpoint" in meta["agent_auth"]:
            self.assertEqual(grant["events_endpoint"], meta["agent_auth"]["events_endpoint"])
        else:
            self.assertEqual(grant["revocation_uri"], meta["agent_auth"]["revocation_uri"])
        token = self.provider.mint(self.session, self.server.url).json["assertion"]
        cred = register_idjag(self.server, token).json["credential"]
        self.assertEqual(self.server.bearer("GET", "/api/resource", cred).status, 200)
        self.provider.request("DELETE", "/grants/" + grant["id"], session=self.session)
        self.assertTrue(wait_for(lambda: self.server.bearer("GET", "/api/resource",
                                                            cred).status == 401))


if __name__ == "__main__":
    unittest.main()
