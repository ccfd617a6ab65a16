"""One running authmd-server, one user, an agent of each claim ceremony
(issue 14, "must hold when done"): a v0.1 agent (the CLI with --protocol
v0.1: the mailed link and 6-digit code), a v0.6 agent (the user_code
ceremony: the user signs in at the service and types the code the CLI
shows) and a read-back agent (proposal (b): the user signs in, confirms,
and reads the code the page shows back to the CLI). Each ends with a
working credential bound to the same user.

Each agent is one method of GenerationsTest listed in AGENTS."""
import subprocess
import unittest

from harness import Server, claim_link
from test_agent_cli import AUTHMD, Cli
from test_claim_cli import PAGE, USER_CODE, Background, user_answers, wait_for
from test_readback_cli import URI, user_confirms

OWNER = "owner@example.test"


class GenerationsTest(unittest.TestCase):
    # (name, method): each method claims one agent's registration as OWNER
    # and returns (its Cli, its registration id)
    AGENTS = (
        ("v0.1 mailed code", "claim_v01"),
        ("v0.6 user_code", "claim_v06"),
        ("read-back (b)", "claim_readback"),
    )

    def setUp(self):
        self.server = Server({"ceremony": {"interval": "1"}}).start()
        self.url = self.server.url + "/api/resource"
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.server.cleanup()

    def registered(self, cli, protocol):
        rc, reg = cli.json("register", self.url, "--anonymous")
        self.assertEqual(rc, 0, reg)
        self.assertEqual(reg["protocol"], protocol)
        return reg

    def claim_v01(self):
        cli = Cli(protocol="v0.1")
        reg = self.registered(cli, "v0.1")
        before = len(self.server.outbox_messages())
        # the code is read from stdin when stdin is not a terminal
        p = subprocess.Popen([AUTHMD, *cli.pre, "claim", self.url, "--email", OWNER],
                             env=cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        mail = wait_for(lambda: self.server.outbox_messages()[before:])
        self.assertTrue(mail, "no claim mail")
        otp = self.server.code_from_link(claim_link(mail[-1]))
        out, err = p.communicate(otp + "\n", timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("claimed", out)
        return cli, reg["registration_id"]

    def claim_v06(self):
        cli = Cli()  # auto: v0.6
        reg = self.registered(cli, "v0.6")
        b = Background(cli, "claim", self.url, "--email", OWNER)
        self.procs.append(b.p)
        code = b.wait_for(USER_CODE).group(1)
        page = b.wait_for(PAGE).group(1)
        self.assertEqual(user_answers(self.server, OWNER, page, code).status, 200)
        rc, out, err = b.finish()
        self.assertEqual(rc, 0, err)
        self.assertRefreshes(cli)
        return cli, reg["registration_id"]

    def claim_readback(self):
        cli = Cli()  # auto: v0.6, claimed the (b) way
        reg = self.registered(cli, "v0.6")
        r = cli.run("claim", self.url, "--readback", "--email", OWNER)
        self.assertEqual(r.returncode, 5, r)  # no code on stdin: the user must act
        code = user_confirms(self.server, URI.search(r.stdout).group(1), OWNER)
        rc, done = cli.json("claim", self.url, "--readback", "--code", code)
        self.assertEqual(rc, 0, done)
        self.assertEqual(done["claim_state"], "claimed")
        self.assertRefreshes(cli)
        return cli, reg["registration_id"]

    def assertRefreshes(self, cli):
        # the claim handed out a refresh token (proposal (b)); it rotates
        before = open(cli.store).read()
        self.assertIn("rt_", before)
        rc, got = cli.json("refresh", self.url)
        self.assertEqual(rc, 0, got)
        self.assertNotEqual(open(cli.store).read(), before)

    def assertWorksAsOwner(self, cli):
        # POST needs api.write: a post-claim scope of every generation
        rc, got = cli.json("curl", "-X", "POST", "-d", "{}", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertEqual(got["body"]["email"], OWNER)

    def test_each_generation_claims_and_ends_bound_to_the_same_user(self):
        done = {}
        for name, how in self.AGENTS:
            with self.subTest(name):
                cli, registration_id = getattr(self, how)()
                self.assertWorksAsOwner(cli)
                done[name] = (cli, registration_id)
        self.assertEqual(len(done), len(self.AGENTS))
        users = self.server.db_query("SELECT id FROM users WHERE email = ?", (OWNER,))
        self.assertEqual(len(users), 1, users)
        for name, (cli, registration_id) in done.items():
            with self.subTest(name):
                self.assertEqual(self.server.db_query(
                    "SELECT status, user_id FROM registrations WHERE id = ?",
                    (registration_id,)), [("claimed", users[0][0])])
                # a later claim of another generation left this one working
                self.assertWorksAsOwner(cli)


if __name__ == "__main__":
    unittest.main()
