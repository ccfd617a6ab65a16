"""Configuration errors stop start-up naming file, line and key; SIGTERM
drains and exits 0."""
import os
import subprocess
import tempfile
import unittest

from harness import SERVER, Server


def run(*args):
    return subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=30)


class ConfigTest(unittest.TestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp(suffix=".ini")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_bad_values_name_file_line_and_key(self):
        cases = [
            ("[server]\nlisten = 127.0.0.1:0\n", 2, "[server] listen"),
            ("[ttl]\n\notp = soon\n", 3, "[ttl] otp"),
            ("[flows]\nanonymous = maybe\n", 2, "[flows] anonymous"),
            ("[server]\nnope = 1\n", 2, "[server] nope: unknown key"),
            ("[limits]\notp_attempts = 0\n", 2, "[limits] otp_attempts"),
            ("[server]\npublic_url = ftp://x\n", 2, "[server] public_url"),
            ("[scopes]\nsupported = a b\"\n", 2, "[scopes] supported"),
        ]
        for text, line, key in cases:
            path = self.write(text)
            r = run("--check-config", path)
            self.assertNotEqual(r.returncode, 0, text)
            self.assertIn("%s:%d: %s" % (path, line, key), r.stderr, text)
            r = run("--config", path)
            self.assertNotEqual(r.returncode, 0, text)
            self.assertIn(path, r.stderr)

    def test_cross_key_rules(self):
        path = self.write("[scopes]\npre_claim = api.admin\n")
        r = run("--check-config", path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("pre_claim has api.admin", r.stderr)
        path = self.write("[server]\npublic_url = https://x.test/auth\n")
        self.assertIn("origin", run("--check-config", path).stderr)

    def test_missing_file(self):
        r = run("--config", "/nonexistent/authmd.ini")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/authmd.ini", r.stderr)

    def test_good_config_checks_ok(self):
        path = self.write("[server]\npublic_url = https://auth.example.test/\n"
                          "[ttl]\notp = 300\n")
        r = run("--check-config", path)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_sigterm_exits_cleanly(self):
        server = Server().start()
        try:
            server.register_anonymous()
            self.assertEqual(server.stop(), 0)
            self.assertIn("stopped", server.read_log())
        finally:
            server.cleanup()

    def test_listen_port_in_use_is_a_clear_failure(self):
        first = Server().start()
        try:
            second = Server()
            with open(second.config, "a") as f:
                f.write("[server]\nlisten = 127.0.0.1:%d\n" % first.port)
            with self.assertRaises(RuntimeError) as ctx:
                second.start()
            self.assertIn("cannot listen", str(ctx.exception))
            second.cleanup()
        finally:
            first.cleanup()


if __name__ == "__main__":
    unittest.main()
