"""The authmd CLI in the read-back claim ceremony (issue 14, proposal (b)):
`authmd claim URL --readback` starts an attempt for a v0.6 anonymous
registration, prints the verification URL and asks for the code the user
reads back off the claim page (at a terminal, or later with --code); the
claim ends with a post-claim access token that works on the API."""
import os
import pty
import re
import select
import time
import unittest
import urllib.parse

from harness import Server
from test_agent_cli import AUTHMD, Cli
from webclient import WebClient, csrf_of, hidden

OWNER = "owner@example.test"
URI = re.compile(r"(http://\S+/login\?return_to=\S+)")


def user_confirms(server, uri, email=OWNER):
    """The user opens the printed URL, signs in, confirms: the code shown."""
    back = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)["return_to"][0]
    b = WebClient(server)
    b.sign_in(email, return_to=back)
    page = b.get(back)
    r = b.post_form("/claim/confirm", {"claim_attempt_token": hidden(page.body,
                                                                     "claim_attempt_token"),
                                       "serial": hidden(page.body, "serial")},
                    csrf=csrf_of(page.body))
    m = re.search(rb'id="user-code">(\d{3} \d{3})<', r.body)
    assert m is not None, r
    return m.group(1).decode()


class ReadbackCliTest(unittest.TestCase):
    def setUp(self):
        self.server = Server().start()
        self.cli = Cli()
        self.url = self.server.url + "/api/resource"
        rc, reg = self.cli.json("register", self.url, "--anonymous")
        self.assertEqual(rc, 0, reg)

    def tearDown(self):
        self.server.stop()
        self.server.cleanup()

    def user_confirms(self, uri, email=OWNER):
        return user_confirms(self.server, uri, email)

    def test_two_steps_print_the_url_then_complete_with_the_code(self):
        r = self.cli.run("claim", self.url, "--readback", "--email", OWNER)
        self.assertEqual(r.returncode, 5, r)  # no code on stdin: a person must act
        uri = URI.search(r.stdout).group(1)
        self.assertIn("--readback --code", r.stderr)
        code = self.user_confirms(uri)
        rc, bad = self.cli.json("claim", self.url, "--readback", "--code", "12345")
        self.assertEqual(rc, 5, bad)  # not a code: nothing sent
        wrong = "%06d" % ((int(code.replace(" ", "")) + 1) % 1000000)
        r = self.cli.run("claim", self.url, "--readback", "--code", wrong, "--json")
        self.assertEqual(r.returncode, 4, r)
        self.assertIn("invalid_user_code", r.stdout + r.stderr)
        rc, done = self.cli.json("claim", self.url, "--readback", "--code", code)
        self.assertEqual(rc, 0, done)
        self.assertEqual(done["claim_state"], "claimed")
        self.assertEqual(done["scopes"], ["api.read", "api.write"])
        rc, got = self.cli.json("curl", self.url, "-X", "POST", "-d", "{}")
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertEqual(got["body"]["email"], OWNER)
        # the claim token is gone from the store
        self.assertNotIn("clm_", open(self.cli.store).read())

    def test_at_a_terminal_the_code_is_asked_for_after_the_url(self):
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(AUTHMD, [AUTHMD, "claim", self.url, "--readback"], self.cli.env)
        out, answered = b"", False
        deadline = time.time() + 60
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not answered and b"6-digit code the page shows" in out:
                uri = URI.search(out.decode()).group(1)
                # read back as a person would say it: with the space
                os.write(fd, (self.user_confirms(uri, "zed@example.test") + "\n").encode())
                answered = True
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        self.assertTrue(answered, out)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, out)
        self.assertIn(b"claimed:", out)
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertEqual(got["body"]["email"], "zed@example.test")

if __name__ == "__main__":
    unittest.main()
