"""Refresh tokens (issue 14 item 6, proposal (b)) against the real server:
every identity assertion of /agent/identity and of the claim grant comes
with one; POST /agent/identity {type: refresh} rotates it; a spent token
presented again revokes its whole family (audited); expiry, revoked and
revived registrations, the v0.1 path without any, a race of two refreshes
of one token, and durability across kill -9. Also the (b) envelope beside
the v0.6 fields."""
import hashlib
import json
import os
import subprocess
import threading
import time
import unittest
import urllib.parse

from harness import ID_JAG_URN, SERVER, Server
from test_ceremony_pages import OWNER, PagesBase, jwt_claims
from test_v06_identity import V06Base


def sha256(text):
    return hashlib.sha256(text.encode()).digest()


class RefreshBase(V06Base):
    def refresh(self, token):
        return self.identity({"type": "refresh", "refresh_token": token})

    def refreshed(self, token):
        r = self.refresh(token)
        self.assertEqual(r.status, 200, r)
        return r.json

    def family_of(self, token):
        rows = self.server.db_query(
            "SELECT f.id, f.revoked_at, f.revoked_reason FROM refresh_tokens t "
            "JOIN refresh_families f ON f.tenant = t.tenant AND f.id = t.family_id "
            "WHERE t.hash = ?", (sha256(token),))
        self.assertEqual(len(rows), 1, rows)
        return rows[0]

    def assertRefused(self, token, why=None):
        r = self.refresh(token)
        self.assertV06Error(r, 400, "invalid_grant")
        if why is not None:
            self.assertIn(why, r.json["message"])
        return r


class RefreshTest(RefreshBase):
    def test_anonymous_answer_carries_both_envelopes_and_a_refresh_token(self):
        r = self.identity({"type": "anonymous"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        body = r.json
        # v0.6 fields, unchanged
        for k in ("registration_id", "registration_type", "identity_assertion",
                  "assertion_expires", "pre_claim_scopes", "claim_url", "claim_token",
                  "claim_token_expires", "post_claim_scopes"):
            self.assertIn(k, body)
        # (b)'s
        self.assertEqual(body["id"], body["registration_id"])
        self.assertEqual(body["type"], "anonymous")
        ident = body["identity"]
        self.assertEqual(ident["assertion"], body["identity_assertion"])
        self.assertEqual(ident["expires_at"], body["assertion_expires"])
        rt = ident["refresh_token"]
        self.assertTrue(rt.startswith("rt_"), rt)
        self.assertGreaterEqual(len(rt), 3 + 32)  # 32 base62 characters: ~190 bits
        self.assertTrue(ident["refresh_token_expires_at"])
        self.assertEqual(body["claim"], {"token": body["claim_token"],
                                         "expires_at": body["claim_token_expires"],
                                         "url": body["claim_url"]})
        # only the hash is stored
        rows = self.server.db_query("SELECT hash, expires_at - created_at FROM refresh_tokens")
        self.assertEqual(rows, [(sha256(rt), 2592000)])
        if not self.server.on_postgres:  # nor anywhere in the files
            for path in (self.server.db, self.server.db + "-wal"):
                if os.path.exists(path):
                    with open(path, "rb") as f:
                        self.assertNotIn(rt.encode(), f.read())

    def test_rotation_answers_a_new_assertion_and_refuses_the_old_token(self):
        reg = self.anonymous()
        old = reg["identity"]["refresh_token"]
        new = self.refreshed(old)
        self.assertEqual((new["id"], new["registration_id"]),
                         (reg["registration_id"], reg["registration_id"]))
        self.assertEqual((new["type"], new["registration_type"]), ("anonymous", "anonymous"))
        self.assertNotIn("claim", new)  # the claim token is shown once
        self.assertEqual(new["scopes"], ["api.read"])
        rt = new["identity"]["refresh_token"]
        self.assertNotEqual(rt, old)
        self.assertEqual(self.family_of(rt)[0], self.family_of(old)[0])
        claims = jwt_claims(new["identity_assertion"])
        self.assertEqual((claims["sub"], claims["registration_type"]),
                         (reg["registration_id"], "anonymous"))
        self.assertNotEqual(new["identity_assertion"], reg["identity_assertion"])
        at = self.exchange(new["identity_assertion"])["access_token"]
        self.assertEqual(self.server.bearer("GET", "/api/resource", at).status, 200)
        # the next rotation works from the new token
        third = self.refreshed(rt)["identity"]["refresh_token"]
        self.assertTrue(third.startswith("rt_"))
        # no refresh token reaches the log or the audit trail
        with open(self.server.audit) as f:
            trail = f.read()
        for token in (old, rt, third):
            self.assertNotIn(token, self.server.read_log())
            self.assertNotIn(token, trail)

    def test_reuse_revokes_the_whole_family_and_is_audited(self):
        reg = self.anonymous()
        old = reg["identity"]["refresh_token"]
        newest = self.refreshed(old)["identity"]["refresh_token"]
        self.assertRefused(old, why="used already")
        # the newest token of the family stops working too
        self.assertRefused(newest, why="revoked")
        fam, revoked_at, reason = self.family_of(newest)
        self.assertTrue(revoked_at)
        self.assertEqual(reason, "reuse")
        ev = [e for e in self.server.audit_events() if e["event"] == "refresh.reused"]
        self.assertEqual(len(ev), 1, ev)
        self.assertEqual((ev[0]["registration_id"], ev[0]["family_id"]),
                         (reg["registration_id"], fam))
        rows = self.server.db_query(
            "SELECT COUNT(*) FROM audit_events WHERE event = 'refresh.reused'")
        self.assertEqual(rows, [(1,)])
        # the refusal leaves the registration itself alone: it registers its
        # assertions as before
        self.assertEqual(self.token(reg["identity_assertion"]).status, 200)

    def test_unknown_and_malformed_tokens(self):
        self.assertRefused("rt_" + "A" * 43, why="unknown")
        self.assertRefused("sk_notarefreshtoken", why="unknown")
        self.assertV06Error(self.identity({"type": "refresh"}), 400, "invalid_request")
        self.assertV06Error(self.identity({"type": "refresh", "refresh_token": 7}), 400,
                            "invalid_request")
        self.assertV06Error(self.identity({"type": "refresh", "refresh_token": "rt_" + "x" * 300}),
                            400, "invalid_request")
        self.assertEqual(self.server.db_query("SELECT COUNT(*) FROM refresh_tokens"), [(0,)])

    def test_id_jag_registration_gets_one_and_a_set_revokes_its_families(self):
        r = self.identity_idjag(self.mint(sub="rt-user", email="rt-user@example.test"))
        self.assertEqual(r.status, 200, r)
        body = r.json
        self.assertEqual((body["type"], body["id"]), ("identity_assertion", body["registration_id"]))
        self.assertNotIn("claim", body)
        rt = body["identity"]["refresh_token"]
        new = self.refreshed(rt)
        self.assertEqual(jwt_claims(new["identity_assertion"])["registration_type"],
                         "identity_assertion")
        rt = new["identity"]["refresh_token"]
        self.exchange(new["identity_assertion"])
        self.assertEqual(self.send_set(self.mint_set(sub="rt-user")).status, 202)
        self.assertEqual(self.family_of(rt)[2], "registration")
        self.assertRefused(rt)
        # a revival (fresh ID-JAG, generation bump) starts a new family and
        # leaves the old one dead
        again = self.identity_idjag(self.mint(sub="rt-user", email="rt-user@example.test"))
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json["registration_id"], body["registration_id"])
        self.assertRefused(rt)
        self.refreshed(again.json["identity"]["refresh_token"])

    def test_a_revival_does_not_revive_a_family_even_if_its_row_stayed_live(self):
        r = self.identity_idjag(self.mint(sub="gen-user", email="gen-user@example.test"))
        rt = r.json["identity"]["refresh_token"]
        self.assertEqual(self.send_set(self.mint_set(sub="gen-user")).status, 202)
        # as if the family had escaped the revocation: only the generation
        # stands between it and the revived registration
        self.server.db_write("UPDATE refresh_families SET revoked_at = NULL")
        self.assertEqual(self.identity_idjag(self.mint(sub="gen-user")).status, 200)
        self.assertRefused(rt, why="revoked after")

    def test_the_revoke_command_ends_refresh(self):
        reg = self.anonymous()
        rt = reg["identity"]["refresh_token"]
        self.exchange(reg["identity_assertion"])
        r = subprocess.run([SERVER, "revoke", "--config", self.server.config, "--registration",
                            reg["registration_id"]], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.family_of(rt)[2], "registration")
        self.assertRefused(rt)

    def test_rfc7009_revocation_of_a_refresh_token_ends_its_family_alone(self):
        reg = self.anonymous()
        rt = reg["identity"]["refresh_token"]
        newest = self.refreshed(rt)["identity"]["refresh_token"]
        for token in (newest, newest, "rt_unknown"):  # again, and unknown: 200 too
            r = self.server.request("POST", "/oauth2/revoke",
                                    raw=urllib.parse.urlencode({"token": token}).encode(),
                                    content_type="application/x-www-form-urlencoded")
            self.assertEqual((r.status, r.json), (200, {}), r)
        self.assertEqual(self.family_of(newest)[2], "agent")
        self.assertRefused(newest, why="revoked")
        ev = [e for e in self.server.audit_events() if e["event"] == "refresh.revoked"]
        self.assertEqual(len(ev), 1, ev)
        # the registration lives on: its assertion still exchanges
        self.assertEqual(self.token(reg["identity_assertion"]).status, 200)

    def test_v01_credentials_never_carry_a_refresh_token(self):
        r = self.server.post("/agent/auth", {"type": "anonymous"})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(b"refresh_token", r.body)
        token = self.mint(sub="v01-user", email="v01-user@example.test")
        r = self.server.post("/agent/auth", {"type": "identity_assertion",
                                             "assertion_type": ID_JAG_URN, "assertion": token})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(b"refresh_token", r.body)
        self.assertEqual(self.server.db_query("SELECT COUNT(*) FROM refresh_tokens"), [(0,)])
        # nor the jwt-bearer answer of /oauth2/token
        reg = self.anonymous()
        self.assertNotIn("refresh_token", self.exchange(reg["identity_assertion"]))

    def test_concurrent_refreshes_of_one_token_one_wins_the_other_is_a_reuse(self):
        rt = self.anonymous()["identity"]["refresh_token"]
        results = []
        barrier = threading.Barrier(2)

        def go():
            barrier.wait()
            results.append(self.refresh(rt))

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200, 400], [r.json for r in results])
        winner = [r for r in results if r.status == 200][0]
        loser = [r for r in results if r.status == 400][0]
        self.assertEqual(loser.json["error"], "invalid_grant")
        # the loser counted as a reuse: the winner's new token is dead too
        self.assertRefused(winner.json["identity"]["refresh_token"])
        self.assertEqual(self.family_of(rt)[2], "reuse")

    def test_a_200_refresh_survives_kill_9(self):
        rt = self.anonymous()["identity"]["refresh_token"]
        new = self.refreshed(rt)["identity"]["refresh_token"]
        self.assertEqual(self.server.kill9(), -9)
        self.server.start()
        self.refreshed(new)
        self.assertRefused(rt)


class RefreshExpiryTest(RefreshBase):
    SERVER_OVERRIDES = {"v06": {"refresh_ttl": "60"}}

    def test_an_expired_refresh_token_is_refused(self):
        reg = self.anonymous()
        rt = reg["identity"]["refresh_token"]
        self.assertEqual(self.server.db_query("SELECT expires_at - created_at FROM "
                                              "refresh_tokens"), [(60,)])
        # rolling: the rotated token gets the full lifetime from now
        new = self.refreshed(rt)["identity"]["refresh_token"]
        self.server.db_write("UPDATE refresh_tokens SET expires_at = ? WHERE hash = ?",
                             (int(time.time()) - 1, sha256(new)))
        self.assertRefused(new, why="expired")
        # not a reuse: the family lives on (nothing revoked it)
        self.assertIsNone(self.family_of(new)[1])

    def test_an_expired_registration_refuses_refresh(self):
        reg = self.anonymous()
        self.server.db_write("UPDATE registrations SET expires_at = ? WHERE id = ?",
                             (int(time.time()) - 1, reg["registration_id"]))
        self.assertRefused(reg["identity"]["refresh_token"], why="expired")


class RefreshConfigTest(unittest.TestCase):
    def test_refresh_ttl_is_range_checked(self):
        for bad in ("59", "31536001", "soon"):
            server = Server({"v06": {"refresh_ttl": bad}})
            try:
                r = subprocess.run([SERVER, "--check-config", server.config],
                                   capture_output=True, text=True, timeout=30)
                self.assertNotEqual(r.returncode, 0, bad)
                self.assertIn("refresh_ttl", r.stderr + r.stdout)
            finally:
                server.cleanup()


class ClaimGrantRefreshTest(PagesBase):
    def test_the_claim_grant_answers_a_refresh_token_naming_the_user(self):
        reg, block = self.anonymous_attempt()
        b, page = self.open_as(OWNER, block)
        self.assertEqual(self.confirm(b, page, block["user_code"]).status, 200)
        t = self.poll(reg["claim_token"])
        self.assertEqual(t.status, 200, t)
        rt = t.json["refresh_token"]
        self.assertTrue(rt.startswith("rt_"))
        self.assertTrue(t.json["refresh_token_expires_at"])
        r = self.server.post("/agent/identity", {"type": "refresh", "refresh_token": rt})
        self.assertEqual(r.status, 200, r)
        claims = jwt_claims(r.json["identity_assertion"])
        self.assertEqual((claims["sub"], claims["email"]), (reg["registration_id"], OWNER))
        self.assertEqual(r.json["scopes"], ["api.read", "api.write"])
        x = self.exchange(r.json["identity_assertion"])
        self.assertEqual(x.status, 200, x)
        self.assertEqual(x.json["scope"], "api.read api.write")

    def test_service_auth_answer_holds_both_claim_blocks(self):
        r = self.service_auth(OWNER)
        self.assertEqual(r.status, 200, r)
        body = r.json
        self.assertEqual((body["id"], body["type"]), (body["registration_id"], "service_auth"))
        self.assertNotIn("identity", body)
        claim = body["claim"]
        self.assertBlock(claim)  # the v0.6 members
        self.assertEqual((claim["token"], claim["expires_at"], claim["url"]),
                         (body["claim_token"], body["claim_token_expires"], body["claim_url"]))
        self.assertEqual(claim["attempt"]["id"], body["claim_attempt_id"])
        self.assertEqual(claim["attempt"]["verification_uri"], claim["verification_uri"])
        self.assertTrue(claim["attempt"]["expires_at"])


if __name__ == "__main__":
    unittest.main()


class RefreshCliTest(unittest.TestCase):
    """authmd refresh URL, and the automatic rotation before an exchange."""

    def setUp(self):
        from test_agent_cli import Cli

        self.server = Server().start()
        self.cli = Cli()
        self.url = self.server.url + "/api/resource"

    def tearDown(self):
        self.server.cleanup()

    def stored(self):
        with open(self.cli.store) as f:
            return list(json.load(f)["credentials"].values())[0]

    def edit_store(self, **fields):
        with open(self.cli.store) as f:
            doc = json.load(f)
        for v in doc["credentials"].values():
            v.update(fields)
        with open(self.cli.store, "w") as f:
            json.dump(doc, f)

    def server_refresh(self, token):
        return self.server.post("/agent/identity", {"type": "refresh", "refresh_token": token})

    def test_refresh_rotates_and_never_shows_the_token(self):
        rc, reg = self.cli.json("--protocol", "v0.6", "register", self.url, "--anonymous")
        self.assertEqual(rc, 0, reg)
        s = self.stored()
        rt, assertion, at = s["refresh_token"], s["identity_assertion"], s["credential"]
        self.assertTrue(rt.startswith("rt_"), s)
        self.assertTrue(s["refresh_expires"])
        rc, st = self.cli.json("status")
        self.assertTrue(st["credentials"][0]["has_refresh_token"])
        r = self.cli.run("refresh", self.url)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("refreshed", r.stdout)
        for secret in (rt, assertion, at):
            self.assertNotIn(secret, r.stdout + r.stderr)
        s = self.stored()
        self.assertNotEqual(s["refresh_token"], rt)
        self.assertNotEqual(s["identity_assertion"], assertion)
        self.assertNotEqual(s["credential"], at)
        self.assertEqual(self.server.bearer("GET", "/api/resource", s["credential"]).status, 200)
        # the spent token is refused by the service (and that reuse ends the
        # family, so the CLI's next refresh asks for a new registration)
        self.assertEqual(self.server_refresh(rt).status, 400)
        r = self.cli.run("refresh", self.url)
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("register", r.stderr)

    def test_an_expired_assertion_is_refreshed_before_the_exchange(self):
        rc, reg = self.cli.json("--protocol", "v0.6", "register", self.url, "--anonymous")
        self.assertEqual(rc, 0, reg)
        rt = self.stored()["refresh_token"]
        self.edit_store(assertion_expires="2000-01-01T00:00:00Z",
                        credential_expires="2000-01-01T00:00:00Z")
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        s = self.stored()
        self.assertNotEqual(s["refresh_token"], rt)
        self.assertNotEqual(s["assertion_expires"], "2000-01-01T00:00:00Z")
        rows = self.server.db_query("SELECT COUNT(*) FROM refresh_tokens WHERE spent_at IS "
                                    "NOT NULL")
        self.assertEqual(rows, [(1,)])

    def test_a_v01_credential_has_no_refresh_token(self):
        rc, reg = self.cli.json("--protocol", "v0.1", "register", self.url, "--anonymous")
        self.assertEqual(rc, 0, reg)
        self.assertNotIn("refresh_token", self.stored())
        r = self.cli.run("refresh", self.url)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("no refresh token", r.stderr)
