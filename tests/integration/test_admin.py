"""The admin API (docs/operations.md#the-admin-api) on its own listener:
operator keys (refused without or with a wrong one), search, show, revoke
and unblock, with the audit trail naming the operator; and the revoke and
unblock commands going through the same code."""
import getpass
import hashlib
import http.client
import json
import os
import subprocess
import unittest
import urllib.parse

from harness import (SERVER, Provider, Server, free_port, provider_overrides,
                     register_idjag)

ALICE = "alice-token-" + "a" * 40
BOB = "bob-token-" + "b" * 40


class AdminTest(unittest.TestCase):
    def setUp(self):
        self.provider = Provider().start()
        self.admin_port = free_port()
        overrides = provider_overrides(self.provider)
        overrides["admin"] = {"listen": "127.0.0.1:%d" % self.admin_port,
                              "keys_file": "admin.keys"}
        self.server = Server(overrides)
        keys = os.path.join(self.server.tmp, "admin.keys")
        with open(keys, "w") as f:
            f.write("# operators\n")
            for name, token in (("alice", ALICE), ("bob", BOB)):
                f.write("%s %s\n" % (name, hashlib.sha256(token.encode()).hexdigest()))
        os.chmod(keys, 0o600)
        self.server.start()

    def tearDown(self):
        rc = self.server.stop()
        self.server.cleanup()
        self.provider.stop()
        self.assertEqual(rc, 0)

    def admin(self, method, path, body=None, token=ALICE, headers=None):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            return r.status, dict(r.getheaders()), json.loads(raw) if raw else None
        finally:
            conn.close()

    def search(self, **q):
        status, _, body = self.admin("GET", "/admin/registrations?" + urllib.parse.urlencode(q))
        self.assertEqual(status, 200, body)
        return body

    def idjag(self, sub):
        token = self.provider.sign(self.provider.claims(self.server, sub=sub,
                                                        email=sub + "@example.test"))
        r = register_idjag(self.server, token)
        self.assertEqual(r.status, 200, r)
        return r.json

    def test_requests_without_a_valid_operator_key_are_refused(self):
        reg = self.server.register_anonymous()
        for token, headers in ((None, None), ("wrong-token", None), (ALICE + "x", None),
                               (None, {"Authorization": "Basic " + ALICE}),
                               (None, {"Authorization": "Bearer "}),
                               (hashlib.sha256(ALICE.encode()).hexdigest(), None)):
            for method, path, body in (
                    ("GET", "/admin/registrations", None),
                    ("GET", "/admin/registrations/" + reg["registration_id"], None),
                    ("POST", "/admin/revoke", {"all": True}),
                    ("POST", "/admin/unblock", {"user": "usr_x"})):
                status, hdrs, out = self.admin(method, path, body, token=token,
                                               headers=headers)
                self.assertEqual(status, 401, (token, headers, path, out))
                self.assertEqual(out["error"], "invalid_token")
                self.assertIn("Bearer", hdrs.get("WWW-Authenticate", ""))
        # Nothing was revoked by the refused calls.
        self.assertEqual(self.server.bearer("GET", "/api/resource", reg["credential"]).status,
                         200)
        # The public listener does not serve the admin API at all.
        r = self.server.bearer("GET", "/admin/registrations", ALICE)
        self.assertEqual(r.status, 404, r)

    def test_search_by_status_email_issuer_user_and_pages(self):
        anon = [self.server.register_anonymous()["registration_id"] for _ in range(3)]
        mail = self.server.register_email("carol@example.test")["registration_id"]
        agent = self.idjag("dave")
        user_id = self.server.bearer("GET", "/api/resource", agent["credential"]).json["user_id"]

        everything = self.search()["registrations"]
        self.assertEqual({r["id"] for r in everything},
                         set(anon) | {mail, agent["registration_id"]})
        self.assertEqual({r["id"] for r in self.search(email="carol@example.test")
                          ["registrations"]}, {mail})
        self.assertEqual({r["id"] for r in self.search(email="dave@example.test")
                          ["registrations"]}, {agent["registration_id"]})
        self.assertEqual([r["id"] for r in self.search(issuer=self.provider.url)
                          ["registrations"]], [agent["registration_id"]])
        self.assertEqual([r["id"] for r in self.search(user=user_id)["registrations"]],
                         [agent["registration_id"]])
        unclaimed = {r["id"] for r in self.search(status="unclaimed")["registrations"]}
        self.assertTrue(set(anon) <= unclaimed, unclaimed)
        self.assertNotIn(agent["registration_id"], unclaimed)
        self.assertEqual(self.search(status="claimed", issuer="https://nobody.test")
                         ["registrations"], [])

        # Pages of two, in id order, following "next".
        seen, after = [], None
        while True:
            q = {"limit": 2}
            if after:
                q["after"] = after
            page = self.search(**q)
            seen += [r["id"] for r in page["registrations"]]
            after = page["next"]
            if after is None:
                break
        self.assertEqual(seen, sorted(r["id"] for r in everything))

        for q in ("limit=0", "limit=101", "limit=x", "status=bogus",
                  "email=" + "a" * 300):
            status, _, out = self.admin("GET", "/admin/registrations?" + q)
            self.assertEqual(status, 400, (q, out))
            self.assertEqual(out["error"], "invalid_request")

    def test_show_gives_credentials_without_secrets_and_the_audit_trail(self):
        reg = self.server.register_anonymous()
        status, _, out = self.admin("GET", "/admin/registrations/" + reg["registration_id"])
        self.assertEqual(status, 200, out)
        self.assertEqual(out["registration"]["id"], reg["registration_id"])
        self.assertEqual(out["registration"]["status"], "unclaimed")
        self.assertEqual(len(out["credentials"]), 1)
        cred = out["credentials"][0]
        self.assertEqual(cred["revoked_at"], None)
        self.assertEqual(cred["hash_prefix"],
                         hashlib.sha256(reg["credential"].encode()).hexdigest()[:8])
        text = json.dumps(out)
        self.assertNotIn(reg["credential"], text)
        self.assertNotIn(reg["claim_token"], text)
        self.assertNotIn(hashlib.sha256(reg["credential"].encode()).hexdigest(), text)
        self.assertIn("registration.created", [e["event"] for e in out["audit"]])
        self.assertIsNone(out["blocked"])
        for bad in ("reg_nope", "a/b", "x" * 100):
            status, _, out = self.admin("GET", "/admin/registrations/" + bad)
            self.assertEqual(status, 404, out)

    def test_revoke_and_unblock_name_the_operator(self):
        agent = self.idjag("erin")
        rid = agent["registration_id"]
        status, _, out = self.admin("POST", "/admin/revoke", {"registration": rid})
        self.assertEqual(status, 200, out)
        self.assertEqual(out, {"revoked": 1, "block": "created"})
        self.assertEqual(self.server.bearer("GET", "/api/resource", agent["credential"]).status,
                         401)
        # A fresh ID-JAG cannot revive it while the block stands.
        token = self.provider.sign(self.provider.claims(self.server, sub="erin",
                                                        email="erin@example.test"))
        self.assertEqual(register_idjag(self.server, token).status, 400)

        status, _, shown = self.admin("GET", "/admin/registrations/" + rid)
        self.assertEqual(shown["blocked"], "registration")
        self.assertIsNotNone(shown["credentials"][0]["revoked_at"])
        created = [e for e in shown["audit"] if e["event"] == "block.created"]
        self.assertEqual([e["actor"] for e in created], ["alice"])
        self.assertIn("credential.revoked", [e["event"] for e in shown["audit"]])

        status, _, out = self.admin("POST", "/admin/unblock", {"registration": rid}, token=BOB)
        self.assertEqual(status, 200, out)
        status, _, out = self.admin("POST", "/admin/unblock", {"registration": rid}, token=BOB)
        self.assertEqual(status, 404, out)
        lifted = [e for e in self.server.audit_events() if e["event"] == "block.lifted"]
        self.assertEqual([e["actor"] for e in lifted], ["bob"])
        token = self.provider.sign(self.provider.claims(self.server, sub="erin",
                                                        email="erin@example.test"))
        self.assertEqual(register_idjag(self.server, token).status, 200)

        # By issuer and subject, and everything: each change names alice.
        status, _, out = self.admin("POST", "/admin/revoke",
                                    {"issuer": self.provider.url, "subject": "erin"})
        self.assertEqual((status, out["block"]), (200, "created"), out)
        status, _, out = self.admin("POST", "/admin/revoke", {"all": True})
        self.assertEqual(status, 200, out)
        events = self.server.audit_events()
        self.assertEqual([e["actor"] for e in events if e["event"] == "operator.revoked_all"],
                         ["alice"])
        subject = [e for e in events if e["event"] == "block.created" and e["kind"] == "subject"]
        self.assertEqual([e["actor"] for e in subject], ["alice"])

        for body in ({}, {"all": False}, {"user": ""}, {"subject": "x"},
                     {"registration": rid, "user": "usr_x"}, {"bogus": 1},
                     {"registration": 5}):
            status, _, out = self.admin("POST", "/admin/revoke", body)
            self.assertEqual(status, 400, (body, out))
        status, _, out = self.admin("POST", "/admin/unblock", {"all": True})
        self.assertEqual(status, 400, out)
        status, _, out = self.admin("POST", "/admin/revoke", None,
                                    headers={"Content-Type": "text/plain"})
        self.assertIn(status, (400, 415), out)

    def test_the_commands_go_through_the_same_flow(self):
        reg = self.server.register_anonymous()
        r = subprocess.run([SERVER, "revoke", "--config", self.server.config,
                            "--registration", reg["registration_id"]],
                           capture_output=True, text=True, timeout=60, cwd=self.server.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("revoked 1 credential", r.stdout)
        status, _, shown = self.admin("GET", "/admin/registrations/" + reg["registration_id"])
        self.assertEqual(shown["blocked"], "registration")
        actor = [e["actor"] for e in shown["audit"] if e["event"] == "block.created"]
        self.assertEqual(actor, ["cli:" + getpass.getuser()])
        r = subprocess.run([SERVER, "unblock", "--config", self.server.config,
                            "--registration", reg["registration_id"]],
                           capture_output=True, text=True, timeout=60, cwd=self.server.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        status, _, shown = self.admin("GET", "/admin/registrations/" + reg["registration_id"])
        self.assertIsNone(shown["blocked"])


if __name__ == "__main__":
    unittest.main()
