"""Tokens that name their row (migration 0018, docs/decisions.md): new API
keys, access tokens and claim tokens carry their row's id, and are found by
primary key and their hash; keys and claim tokens of the older form, found by
hash alone, keep working, on a fresh store and on one upgraded in place."""
import glob
import hashlib
import os
import re
import secrets
import shutil
import sqlite3
import string
import tempfile
import time
import unittest

from harness import HERE, ON_POSTGRES, Server, ServerTest, claim_link

MIGRATIONS = os.path.join(HERE, "..", "..", "src", "store", "migrations")
BASE62 = string.ascii_letters + string.digits
NAMED = r"^%s_([0-9a-f]{35})_[A-Za-z0-9]{32}$"


def older_form(prefix):
    """A token as authmd minted them before 0018: prefix and 32 base62."""
    return prefix + "".join(secrets.choice(BASE62) for _ in range(32))


def sha256(text):
    return hashlib.sha256(text.encode()).digest()


def insert_older_rows(run, key, claim, now):
    """An unclaimed anonymous registration and its API key, as a store
    before 0018 held them (by_id and claim_by_id not set); run executes
    one statement with ? parameters."""
    run("INSERT INTO registrations (tenant, id, kind, status, claim_token_hash, "
        "credential_type, created_at, expires_at) "
        "VALUES ('default', 'reg_old', 'anonymous', 'unclaimed', ?, 'api_key', ?, ?)",
        (sha256(claim), now, now + 86400))
    run("INSERT INTO credentials (tenant, id, hash, type, scopes, source, registration_id, "
        "created_at) VALUES ('default', 'crd_old', ?, 'api_key', 'api.read', 'anonymous', "
        "'reg_old', ?)", (sha256(key), now))


class TokenFormTest(ServerTest):
    def test_new_tokens_name_their_row_and_only_their_secret_opens_it(self):
        reg = self.server.register_anonymous()
        key = re.match(NAMED % "sk", reg["credential"])
        claim = re.match(NAMED % "clm", reg["claim_token"])
        self.assertIsNotNone(key, reg["credential"])
        self.assertIsNotNone(claim, reg["claim_token"])
        self.assertEqual("reg_" + claim.group(1), reg["registration_id"])
        me = self.server.bearer("GET", "/api/resource", reg["credential"])
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json["credential_id"], "crd_" + key.group(1))
        # The stored hash is still the SHA-256 of the whole token; the row
        # says it is found by id, so it is in no hash index.
        rows = self.server.db_query(
            "SELECT hash, by_id FROM credentials WHERE id = ?", (me.json["credential_id"],))
        self.assertEqual(rows, [(sha256(reg["credential"]), 1)])
        rows = self.server.db_query(
            "SELECT claim_token_hash, claim_by_id FROM registrations WHERE id = ?",
            (reg["registration_id"],))
        self.assertEqual(rows, [(sha256(reg["claim_token"]), 1)])

        # The right row with a wrong secret, the right secret naming another
        # row, and a token cut to the older form's shape are all refused.
        other = self.server.register_anonymous()
        body, secret = key.group(1), reg["credential"].rsplit("_", 1)[1]
        other_body = re.match(NAMED % "sk", other["credential"]).group(1)
        flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        for forged in ("sk_%s_%s" % (body, flipped), "sk_%s_%s" % (other_body, secret),
                       "sk_" + secret, "sk_%s_%s_" % (body, secret),
                       "at_%s_%s" % (body, secret)[: len(reg["credential"])]):
            r = self.server.bearer("GET", "/api/resource", forged)
            self.assertError(r, 401, "invalid_token")
        claim_secret = reg["claim_token"].rsplit("_", 1)[1]
        r = self.server.start_claim("clm_%s_%s" % (claim.group(1), claim_secret[::-1]),
                                    "ann@example.test")
        self.assertError(r, 400, "invalid_claim_token")

        # The claim token still claims, and upgrades the same key in place.
        r = self.server.start_claim(reg["claim_token"], "ann@example.test")
        self.assertEqual(r.status, 200, r)
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        me = self.server.bearer("GET", "/api/resource", reg["credential"])
        self.assertEqual(me.json["scopes"], ["api.read", "api.write"])

    def test_an_access_token_names_its_row_too(self):
        reg = self.server.register_email("bo@example.test", cred_type="access_token")
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        r = self.server.complete(reg["claim_token"], otp)
        self.assertEqual(r.status, 200, r)
        token = re.match(NAMED % "at", r.json["credential"])
        self.assertIsNotNone(token, r.json)
        me = self.server.bearer("GET", "/api/resource", r.json["credential"])
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json["credential_id"], "crd_" + token.group(1))

    def test_keys_and_claim_tokens_of_the_older_form_keep_working(self):
        key, claim = older_form("sk_"), older_form("clm_")
        insert_older_rows(self.server.db_write, key, claim, int(time.time()))
        me = self.server.bearer("GET", "/api/resource", key)
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json["credential_id"], "crd_old")
        self.assertEqual(me.json["registration_id"], "reg_old")
        r = self.server.start_claim(claim, "cy@example.test")
        self.assertEqual(r.status, 200, r)
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        self.assertEqual(self.server.complete(claim, otp).status, 200)
        me = self.server.bearer("GET", "/api/resource", key)
        self.assertEqual(me.json["scopes"], ["api.read", "api.write"])
        self.assertEqual(me.json["email"], "cy@example.test")
        # A wrong secret of the older form is refused all the same.
        self.assertError(self.server.bearer("GET", "/api/resource", older_form("sk_")), 401,
                         "invalid_token")


@unittest.skipIf(ON_POSTGRES, "builds a SQLite database of schema 17 by hand")
class UpgradeTest(unittest.TestCase):
    def test_a_store_of_schema_17_is_upgraded_and_its_tokens_still_work(self):
        tmp = tempfile.mkdtemp(prefix="authmd-it-upgrade-")
        self.addCleanup(shutil.rmtree, tmp, True)
        server = Server(tmp=tmp)
        con = sqlite3.connect(server.db)
        now = int(time.time())
        with con:
            con.execute("CREATE TABLE schema_migrations "
                        "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
            for path in sorted(glob.glob(os.path.join(MIGRATIONS, "*.sql"))):
                version = int(os.path.basename(path)[:4])
                if version > 17:
                    break
                with open(path) as f:
                    con.executescript(f.read())
                con.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, now))
        key, claim = older_form("sk_"), older_form("clm_")
        with con:
            insert_older_rows(con.execute, key, claim, now)
        con.close()

        server.start()
        self.addCleanup(server.cleanup)
        self.assertEqual(server.db_query("SELECT MAX(version) FROM schema_migrations"),
                         [(len(glob.glob(os.path.join(MIGRATIONS, "*.sql"))),)])
        indexes = dict(server.db_query(
            "SELECT name, sql FROM sqlite_master WHERE name IN "
            "('credentials_hash', 'registrations_claim')"))
        self.assertIn("WHERE by_id IS NULL", indexes["credentials_hash"])
        self.assertIn("claim_by_id IS NULL", indexes["registrations_claim"])
        me = server.bearer("GET", "/api/resource", key)
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json["credential_id"], "crd_old")
        r = server.start_claim(claim, "di@example.test")
        self.assertEqual(r.status, 200, r)
        # New registrations beside the old rows take the new form.
        reg = server.register_anonymous()
        self.assertRegex(reg["credential"], NAMED % "sk")
        self.assertEqual(server.bearer("GET", "/api/resource", reg["credential"]).status, 200)
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
