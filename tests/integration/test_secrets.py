"""Secrets from files (docs/operations.md#secrets-in-files): the server
refuses to start, with a message naming the file and a non-zero exit,
when a secret file is open to group or others or is not a regular file;
with mode 0600 it starts and uses the secret."""
import base64
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse

from harness import SERVER, Server

SECRET = "file-held-introspection-secret-01"


class SecretFileTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="authmd-it-secrets-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def secret(self, name, text, mode):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text + "\n")
        os.chmod(path, mode)
        return path

    def refused(self, overrides, why):
        """The server, started on overrides, exits 1 saying why; so does
        --check-config."""
        server = Server(overrides, tmp=tempfile.mkdtemp(dir=self.tmp))
        for flag in ("--check-config", "--config"):
            try:
                r = subprocess.run([SERVER, flag, server.config], capture_output=True,
                                   text=True, timeout=30, cwd=server.tmp)
            except subprocess.TimeoutExpired:
                self.fail("%s %s started instead of refusing" % (SERVER, flag))
            self.assertEqual(r.returncode, 1, (flag, r.stdout, r.stderr))
            self.assertIn(why, r.stderr, flag)

    def test_a_group_or_world_readable_smtp_password_file_is_refused(self):
        for mode in (0o640, 0o604, 0o660, 0o644):
            path = self.secret("smtp.pw", "hunter2-smtp", mode)
            self.refused({"mail": {"smtp_url": "smtp://127.0.0.1:1",
                                   "smtp_user": "u", "smtp_password_file": path}},
                         "open to group or others")

    def test_a_secret_file_that_is_not_a_regular_file_is_refused(self):
        os.mkdir(os.path.join(self.tmp, "dir"), 0o700)
        self.refused({"mail": {"smtp_password_file": os.path.join(self.tmp, "dir")}},
                     "not a regular file")
        self.refused({"mail": {"smtp_password_file": "/dev/null"}}, "not a regular file")
        self.refused({"mail": {"smtp_password_file": os.path.join(self.tmp, "missing")}},
                     "cannot open")

    def test_both_the_password_and_its_file_are_refused(self):
        path = self.secret("smtp.pw", "hunter2-smtp", 0o600)
        self.refused({"mail": {"smtp_password": "x", "smtp_password_file": path}},
                     "not both")

    def test_a_readable_introspection_secret_file_is_refused(self):
        path = self.secret("client.secret", SECRET, 0o644)
        self.refused({"introspection client orders": {"secret_file": path}},
                     "open to group or others")

    def test_a_readable_admin_keys_file_is_refused(self):
        path = self.secret("admin.keys", "alice " + "0" * 64, 0o644)
        self.refused({"admin": {"listen": "127.0.0.1:1", "keys_file": path}}, "keys_file")

    def test_owner_only_files_are_used_and_never_logged(self):
        smtp = self.secret("smtp.pw", "hunter2-smtp-password", 0o600)
        client = self.secret("client.secret", SECRET, 0o400)
        server = Server({"mail": {"smtp_url": "smtp://127.0.0.1:1", "smtp_user": "u",
                                  "smtp_password_file": smtp, "starttls": "off"},
                         "introspection client orders": {"secret_file": client}},
                        tmp=tempfile.mkdtemp(dir=self.tmp)).start()
        try:
            cred = server.register_anonymous()["credential"]
            auth = base64.b64encode(("orders:" + SECRET).encode()).decode()
            r = server.request("POST", "/oauth2/introspect",
                               raw=urllib.parse.urlencode({"token": cred}).encode(),
                               content_type="application/x-www-form-urlencoded",
                               headers={"Authorization": "Basic " + auth})
            self.assertEqual(r.status, 200, r)
            self.assertIs(r.json["active"], True)
        finally:
            self.assertEqual(server.stop(), 0)
        log = server.read_log()
        self.assertNotIn("hunter2", log)
        self.assertNotIn(SECRET, log)


if __name__ == "__main__":
    unittest.main()
