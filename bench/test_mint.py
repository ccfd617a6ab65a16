"""authmd-bench-mint against the real server: the tokens the ID-JAG rows of
`make bench` send are accepted, each once, and `same`/`distinct` mean one
user or a new user per token. Built and run only with -DAUTHMD_BENCH=ON.
No timing is asserted: speed is for `make bench` to show."""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from harness import BIN_DIR, Server, register_idjag  # noqa: E402

MINT = os.path.join(BIN_DIR, "bench", "authmd-bench-mint")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class MintTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="authmd-mint-")
        self.keys = os.path.join(self.tmp, "keys")
        self.www = os.path.join(self.tmp, "www")
        os.makedirs(self.keys)
        os.makedirs(self.www)
        subprocess.run([MINT, "keygen", self.keys], check=True)
        shutil.copyfile(os.path.join(self.keys, "jwks.json"), os.path.join(self.www, "jwks.json"))
        handler = functools.partial(Quiet, directory=self.www)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.issuer = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        os.makedirs(os.path.join(self.tmp, "server"))
        self.server = Server({"provider bench": {"issuer": self.issuer,
                                                 "jwks_uri": self.issuer + "/jwks.json"}},
                             tmp=os.path.join(self.tmp, "server"))
        self.server.start()

    def tearDown(self):
        rc = self.server.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(rc, 0)

    def mint(self, count, files, mode, tag):
        prefix = os.path.join(self.tmp, tag)
        subprocess.run([MINT, "mint", os.path.join(self.keys, "key.json"), self.issuer,
                        self.server.url, str(count), str(files), prefix, mode, tag], check=True)
        per_file = []
        for i in range(files):
            with open("%s.%d" % (prefix, i)) as f:
                per_file.append(f.read().split())
        return per_file

    def users_of(self, tokens):
        users = []
        for token in tokens:
            r = register_idjag(self.server, token, "access_token")
            self.assertEqual(r.status, 200, r)
            me = self.server.bearer("GET", "/api/resource", r.json["credential"])
            self.assertEqual(me.status, 200, me)
            users.append(me.json["user_id"])
        return users

    def test_tokens_are_dealt_round_robin_and_each_is_accepted_once(self):
        files = self.mint(5, 2, "same", "rr")
        self.assertEqual([len(f) for f in files], [3, 2])
        tokens = files[0] + files[1]
        self.assertEqual(len(set(tokens)), 5)
        users = self.users_of(tokens)
        self.assertEqual(len(set(users)), 1, "`same` is one user")
        r = register_idjag(self.server, tokens[0], "access_token")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["error"], "replay_detected")

    def test_distinct_makes_a_new_user_per_token(self):
        tokens = self.mint(3, 1, "distinct", "dd")[0]
        self.assertEqual(len(set(self.users_of(tokens))), 3)

    def test_bad_arguments_are_refused(self):
        key = os.path.join(self.keys, "key.json")
        for argv in (["mint", key, "i", "a", "0", "1", "p", "same", "t"],
                     ["mint", key, "i", "a", "1", "1", "p", "other", "t"],
                     ["mint", key, "i", "a", "1", "65", "p", "same", "t"],
                     ["mint", os.path.join(self.tmp, "nope"), "i", "a", "1", "1",
                      os.path.join(self.tmp, "p"), "same", "t"],
                     ["keygen"]):
            r = subprocess.run([MINT] + argv, capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0, argv)
            self.assertIn("authmd-bench-mint", r.stderr)


if __name__ == "__main__":
    unittest.main()
