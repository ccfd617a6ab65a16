"""What the server acknowledged survives kill -9, and the database holds no
plaintext secret."""
import shutil
import tempfile
import unittest
import urllib.parse

from harness import Server, ServerTest, claim_link


class KillNineTest(unittest.TestCase):
    def test_acknowledged_registrations_survive_sigkill(self):
        server = Server().start()
        try:
            regs = [server.register_anonymous() for _ in range(20)]
            email_reg = server.register_email("nia@example.test")
            self.assertEqual(server.kill9(), -9)
            server.start()
            for reg in regs:
                r = server.bearer("GET", "/api/resource", reg["credential"])
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json["registration_id"], reg["registration_id"])
            # A claim started before the crash completes after it.
            otp = server.code_from_link(claim_link(server.outbox_messages()[-1]))
            r = server.complete(email_reg["claim_token"], otp)
            self.assertEqual(r.status, 200, r)
        finally:
            server.cleanup()


class MemoryStoreTest(unittest.TestCase):
    def test_sqlite_memory_serves_and_leaves_nothing_behind(self):
        import glob
        import os
        tmpdir = tempfile.mkdtemp(prefix="authmd-mem-")
        server = Server({"store": {"url": "sqlite::memory:"}})
        server.tmp_env = tmpdir
        os.environ["TMPDIR"] = tmpdir
        try:
            server.start()
            reg = server.register_anonymous()
            self.assertEqual(server.bearer("GET", "/api/resource", reg["credential"]).status,
                             200)
            self.assertEqual(len(glob.glob(tmpdir + "/authmd-mem-*.db")), 1)
            self.assertEqual(server.stop(), 0)
            self.assertEqual(glob.glob(tmpdir + "/authmd-mem-*"), [])
        finally:
            del os.environ["TMPDIR"]
            server.cleanup()
            shutil.rmtree(tmpdir, ignore_errors=True)


class NoPlaintextSecretsTest(ServerTest):
    def test_the_database_file_holds_no_secret_in_clear(self):
        s = self.server
        secrets = []
        anon = s.register_anonymous()
        secrets += [anon["credential"], anon["claim_token"]]
        s.start_claim(anon["claim_token"], "oli@example.test")
        link = claim_link(s.outbox_messages()[-1])
        secrets.append(urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0])
        otp = s.code_from_link(link)
        secrets.append(otp)
        self.assertEqual(s.complete(anon["claim_token"], otp).status, 200)
        em = s.register_email("pat@example.test", "access_token")
        secrets.append(em["claim_token"])
        link = claim_link(s.outbox_messages()[-1])
        secrets.append(urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0])
        otp2 = s.code_from_link(link)
        done = s.complete(em["claim_token"], otp2).json
        secrets += [otp2, done["credential"]]
        self.assertEqual(s.stop(), 0)
        blob = b""
        for suffix in ("", "-wal", "-shm"):
            try:
                with open(s.db + suffix, "rb") as f:
                    blob += f.read()
            except FileNotFoundError:
                pass
        self.assertGreater(len(blob), 0)
        for secret in secrets:
            # OTPs are 6 digits and may appear by chance as text; the
            # tokens are long enough that any hit is a leak.
            if len(secret) > 6:
                self.assertNotIn(secret.encode(), blob, secret[:6])
        # Every stored secret column is a 32-byte hash.
        for table, col in (("credentials", "hash"), ("registrations", "claim_token_hash"),
                           ("claim_attempts", "token_hash")):
            for (v,) in s.db_query("SELECT %s FROM %s WHERE %s IS NOT NULL" % (col, table, col)):
                self.assertIsInstance(v, bytes)
                self.assertEqual(len(v), 32)
        for (v,) in s.db_query("SELECT otp_hash FROM claim_attempts"):
            self.assertTrue(v is None or (isinstance(v, bytes) and len(v) == 32))
        s.start()  # for tearDown


if __name__ == "__main__":
    unittest.main()
