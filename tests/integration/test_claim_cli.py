"""The authmd CLI speaking the v0.4-v0.6 user_code claim ceremony (issue 14
item 8) to the real authmd-server: `authmd claim URL --email ADDR` for a v0.6
anonymous registration prints the code and the page, and polls the claim
grant while the test, as the user, signs in by the mailed login code and
types the code on the page (or rejects). Then: slow_down, expiry, --no-wait
and --wait, Ctrl-C, the mistakes it refuses, and the v0.5 first link and
login_required at `authmd register`."""
import http.server
import json
import re
import signal
import subprocess
import threading
import time
import types
import unittest
import urllib.error
import urllib.parse
import urllib.request

from harness import RealProvider, Server, claim_link, free_port, provider_overrides
from test_agent_cli import AUTHMD, Cli
from test_mcp import McpClient
from webclient import WebClient, csrf_of, hidden

OWNER = "owner@example.test"
CLAIM_GRANT = "urn:workos:agent-auth:grant-type:claim"
USER_CODE = re.compile(r"^    ([BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4})$", re.M)
PAGE = re.compile(r"^    (http://\S+/login\?return_to=\S+)$", re.M)


def wait_for(fn, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    return fn()


class Background:
    """The CLI started in the background; its stderr collected as it comes,
    so a test can read the code it prints while it waits."""

    def __init__(self, cli, *args):
        self.p = subprocess.Popen([AUTHMD, *cli.pre, *args], env=cli.env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.err = ""
        self.lines = []  # (time, line) of stderr
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append((time.time(), line))
            self.err += line

    def wait_for(self, regex, timeout=30):
        m = wait_for(lambda: re.search(regex, self.err), timeout)
        if m is None:
            self.p.kill()
            raise AssertionError("no %r in the CLI's output: %s" % (regex, self.err))
        return m

    def finish(self, timeout=90):
        # not communicate(): it would read stderr too, racing the reader
        self.p.wait(timeout=timeout)
        out = self.p.stdout.read()
        self.p.stdout.close()
        self.reader.join(10)
        return self.p.returncode, out, self.err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def user_answers(server, email, page_url, code=None, reject=False):
    """The user: opens the page the CLI printed, signs in by the mailed
    login code, and types the code (or presses reject) with the CSRF token."""
    b = WebClient(server)
    return_to = urllib.parse.parse_qs(urllib.parse.urlsplit(page_url).query)["return_to"][0]
    r = b.sign_in(email, return_to=return_to)
    page = b.get(r.header("Location"))
    assert page.status == 200, page
    fields = {"claim_attempt_token": hidden(page.body, "claim_attempt_token")}
    fields.update({"decision": "reject"} if reject else {"user_code": code})
    return b.post_form("/claim/confirm", fields, csrf=csrf_of(page.body))


class ClaimCliBase(unittest.TestCase):
    INTERVAL = "1"

    def setUp(self):
        self.server = Server({"ceremony": {"interval": self.INTERVAL}}).start()
        self.cli = Cli()  # --protocol auto: v0.6 for anonymous registration
        self.url = self.server.url + "/api/resource"
        self.bg = []

    def tearDown(self):
        for b in self.bg:
            b.kill()
        self.server.cleanup()

    def background(self, *args):
        b = Background(self.cli, *args)
        self.bg.append(b)
        return b

    def stored(self):
        with open(self.cli.store) as f:
            return list(json.load(f)["credentials"].values())[0]

    def register(self):
        rc, reg = self.cli.json("register", self.url, "--anonymous")
        self.assertEqual(rc, 0, reg)
        self.assertEqual((reg["protocol"], reg["claim_state"]), ("v0.6", "unclaimed"))
        return self.stored()

    def attempt(self):
        rows = self.server.db_query(
            "SELECT id, status, poll_interval, last_poll_at FROM ceremony_attempts "
            "ORDER BY created_at DESC LIMIT 1")
        return rows[0] if rows else None

    def user_id(self, email):
        return self.server.db_query("SELECT id FROM users WHERE email = ?", (email,))[0][0]


class ClaimCliTest(ClaimCliBase):
    def test_the_user_confirms_and_the_cli_stores_the_post_claim_credential(self):
        before = self.register()
        rc, got = self.cli.json("curl", "-X", "POST", "-d", "{}", self.url)
        self.assertEqual((rc, got["status"]), (4, 403), got)  # api.write needs the claim
        pre_token, pre_assertion = before["credential"], before["identity_assertion"]
        b = self.background("claim", self.url, "--email", OWNER)
        code = b.wait_for(USER_CODE).group(1)
        page = b.wait_for(PAGE).group(1)
        b.wait_for("Waiting for the user")
        self.assertIn("signs in there as " + OWNER, b.err)
        self.assertIn("user_code%3D" + code, b.err)  # verification_uri_complete
        self.assertNotIn(before["claim_token"], b.err)
        r = user_answers(self.server, OWNER, page, code.lower().replace("-", ""))
        self.assertEqual(r.status, 200, r)
        rc, out, err = b.finish()
        self.assertEqual(rc, 0, err)
        self.assertIn("claimed: " + self.server.url + "/api/", out)
        self.assertIn("scopes: api.read -> api.read api.write", out)
        # stored: the new token and assertion; the claim token and attempt gone
        s = self.stored()
        self.assertEqual((s["claim_state"], s["scopes"]), ("claimed", "api.read api.write"))
        self.assertNotIn("claim_token", s)
        self.assertNotIn("user_code", s)
        self.assertNotEqual(s["credential"], pre_token)
        self.assertNotEqual(s["identity_assertion"], pre_assertion)
        for secret in (s["credential"], s["identity_assertion"]):
            self.assertNotIn(secret, out + err)
        # the upgraded credential passes the gate with post-claim scopes, as the user
        rc, got = self.cli.json("curl", "-X", "POST", "-d", "{}", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertEqual(got["body"]["email"], OWNER)
        self.assertEqual(self.server.bearer("GET", "/api/resource", pre_token).status, 401)
        self.assertEqual(self.server.db_query(
            "SELECT status, user_id FROM registrations WHERE id = ?",
            (s["registration_id"],)), [("claimed", self.user_id(OWNER))])
        # the new assertion is the refresh path: an expired token is exchanged again
        with open(self.cli.store) as f:
            doc = json.load(f)
        for v in doc["credentials"].values():
            v["credential_expires"] = "2000-01-01T00:00:00Z"
        with open(self.cli.store, "w") as f:
            json.dump(doc, f)
        rc, got = self.cli.json("curl", "-X", "POST", "-d", "{}", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        rc, st = self.cli.json("status")
        self.assertEqual(st["credentials"][0]["scopes"], ["api.read", "api.write"])

    def test_the_user_rejects_and_the_cli_says_so(self):
        before = self.register()
        b = self.background("claim", self.url, "--email", OWNER)
        page = b.wait_for(PAGE).group(1)
        b.wait_for("Waiting for the user")
        self.assertEqual(user_answers(self.server, OWNER, page, reject=True).status, 200)
        rc, out, err = b.finish()
        self.assertEqual(rc, 4, err)
        self.assertIn("the user rejected this claim (access_denied)", err)
        self.assertIn("start again", err)
        s = self.stored()
        self.assertEqual(s["claim_state"], "unclaimed")
        self.assertEqual(s["claim_token"], before["claim_token"])  # a new attempt may follow
        self.assertNotIn("user_code", s)
        self.assertEqual(self.server.db_query(
            "SELECT status FROM registrations WHERE id = ?", (s["registration_id"],)),
            [("pending_claim",)])
        rc, got = self.cli.json("curl", self.url)  # the pre-claim token still works
        self.assertEqual((rc, got["status"]), (0, 200), got)

    def test_an_expired_code_ends_the_wait_and_a_new_one_can_start(self):
        self.register()
        b = self.background("--json", "claim", self.url, "--email", OWNER)
        b.wait_for("Waiting for the user")
        self.assertTrue(wait_for(lambda: self.attempt() and self.attempt()[3] is not None))
        self.server.db_write("UPDATE ceremony_attempts SET expires_at = 1")
        rc, out, err = b.finish()
        self.assertEqual(rc, 5, err)
        res = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(res["error"]["code"], "expired_token")
        self.assertIn("Start again", res["error"]["advice"])
        self.assertEqual(self.stored()["claim_state"], "unclaimed")
        # a fresh code, without waiting
        rc, res = self.cli.json("claim", self.url, "--email", OWNER, "--no-wait")
        self.assertEqual(rc, 0, res)
        att = res["claim_attempt"]
        self.assertRegex(att["user_code"], r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
        self.assertGreater(att["expires_in"], 500)
        self.assertEqual(att["interval"], 1)
        self.assertEqual(self.attempt()[1], "initiated")

    def test_no_wait_then_wait_resumes_and_ctrl_c_stops_cleanly(self):
        self.register()
        rc, res = self.cli.json("claim", self.url, "--email", OWNER, "--no-wait")
        self.assertEqual(rc, 0, res)
        att = res["claim_attempt"]
        self.assertIsNone(self.attempt()[3])  # nothing polled
        # a wait, stopped by Ctrl-C: the attempt stays open
        b = self.background("claim", self.url, "--wait")
        self.assertEqual(b.wait_for(USER_CODE).group(1), att["user_code"])
        b.wait_for("Waiting for the user")
        b.p.send_signal(signal.SIGINT)
        rc, out, err = b.finish(timeout=10)
        self.assertEqual(rc, 5, err)
        self.assertIn("stopped waiting for the claim", err)
        self.assertIn("--wait resumes", err)
        self.assertEqual(self.stored()["user_code"], att["user_code"])
        self.assertEqual(self.attempt()[1], "initiated")
        # a later --wait polls the same attempt to its end
        b = self.background("claim", self.url, "--wait")
        b.wait_for("Waiting for the user")
        r = user_answers(self.server, OWNER, att["verification_uri"], att["user_code"])
        self.assertEqual(r.status, 200, r)
        rc, out, err = b.finish()
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.stored()["claim_state"], "claimed")

    def test_mistakes_are_refused_before_anything_is_sent(self):
        self.register()
        r = self.cli.run("claim", self.url, "--wait")  # nothing started yet
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("no claim attempt is open", r.stderr)
        r = self.cli.run("claim", self.url, "--otp", "123456")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("no mailed code", r.stderr)
        r = self.cli.run("--protocol", "v0.1", "claim", self.url, "--email", OWNER)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("was made with v0.6", r.stderr)
        self.assertIsNone(self.attempt())
        # the service's own refusal of the address comes back as such
        r = self.cli.run("claim", self.url, "--email", "not-an-address")
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("invalid_request", r.stderr)


class McpClaimTest(ClaimCliBase):
    def test_authmd_mcp_starts_polls_and_waits_a_v06_claim(self):
        mcp = McpClient(self.cli)
        self.addCleanup(mcp.close)
        mcp.initialize()
        reg = mcp.tool("authmd_register", url=self.url, method="anonymous")
        self.assertFalse(reg["isError"], reg)
        self.assertEqual(reg["structuredContent"]["protocol"], "v0.6")
        self.assertIn("authmd_claim with url and the user's email", reg["content"][0]["text"])
        started = mcp.tool("authmd_claim", url=self.url, email=OWNER)
        self.assertFalse(started["isError"], started)
        att = started["structuredContent"]["claim_attempt"]
        self.assertIn(att["user_code"], started["content"][0]["text"])
        self.assertIn(att["verification_uri"], started["content"][0]["text"])
        time.sleep(1.1)
        once = mcp.tool("authmd_claim", url=self.url, poll="once")
        self.assertFalse(once["isError"], once)
        self.assertEqual(once["structuredContent"]["status"], "authorization_pending")
        self.assertEqual(once["structuredContent"]["interval"], 1)
        self.assertEqual(user_answers(self.server, OWNER, att["verification_uri"],
                                      att["user_code"]).status, 200)
        done = mcp.tool("authmd_claim", url=self.url, poll="wait")
        self.assertFalse(done["isError"], done)
        self.assertEqual(done["structuredContent"]["claim_state"], "claimed")
        self.assertEqual(done["structuredContent"]["scopes"], ["api.read", "api.write"])
        got = mcp.tool("authmd_fetch", url=self.url, method="POST", body="{}")
        self.assertEqual(got["structuredContent"]["status"], 200, got)
        # a v0.6 claim has no mailed code to send
        bad = mcp.tool("authmd_claim", url=self.url, otp="123456")
        self.assertTrue(bad["isError"])
        s = self.stored()
        rc, err = mcp.close()
        self.assertEqual(rc, 0, err)
        out = "".join(mcp.raw)
        for secret in (s["credential"], s["identity_assertion"]):
            self.assertNotIn(secret, out)


class SlowDownTest(ClaimCliBase):
    # 2 s, so that a poll right after the CLI's is inside the interval even
    # on the server's whole-second clock
    INTERVAL = "2"

    def test_slow_down_grows_the_interval_the_cli_then_keeps(self):
        s = self.register()
        b = self.background("claim", self.url, "--email", OWNER)
        code = b.wait_for(USER_CODE).group(1)
        page = b.wait_for(PAGE).group(1)
        # right after the CLI's first poll, a second poller (the test) uses
        # the same claim token: it gets slow_down (2 -> 7), and so does the
        # CLI's next poll, 2 s later (7 -> 12)
        self.assertTrue(wait_for(lambda: self.attempt()[3] is not None))
        r = self.server.request(
            "POST", "/oauth2/token", content_type="application/x-www-form-urlencoded",
            raw=urllib.parse.urlencode({"grant_type": CLAIM_GRANT,
                                        "claim_token": s["claim_token"]}).encode())
        self.assertEqual(r.json["error"], "slow_down", r.json)
        m = b.wait_for(r"slow_down\): polling every (\d+) s now", timeout=15)
        self.assertEqual(m.group(1), "12")
        told = [t for t, line in b.lines if "slow_down" in line][0]
        self.assertEqual(self.stored()["claim_interval"], 12)
        self.assertEqual(user_answers(self.server, OWNER, page, code).status, 200)
        rc, out, err = b.finish()
        self.assertEqual(rc, 0, err)
        # the next poll came only after the new interval, and without
        # another slow_down
        self.assertGreaterEqual(time.time() - told, 11.5)
        self.assertEqual(err.count("slow_down"), 1, err)
        self.assertEqual(self.server.db_query(
            "SELECT status, poll_interval FROM ceremony_attempts WHERE id = ?",
            (self.attempt()[0],)), [("completed", 12)])

class FirstLinkBlockFront:
    """The claim block of a v0.5 first link, which today's server does not
    send yet (branch firstlink does): a loopback front that forwards to the
    real server, adds the block to its 401 interaction_required, and answers
    the claim grant for that claim token itself (pending, slow_down, then
    the tokens), recording when each poll came. The server's public_url is
    the front's, so the provider's ID-JAG names it as its audience."""

    def __init__(self):
        port = free_port()
        self.target = None  # the server's own URL, once it runs
        self.url = "http://127.0.0.1:%d" % port
        self.polls = []  # (time, answer)
        self.answers = ["authorization_pending", "slow_down", "authorization_pending", 200]
        self.claim_token = None
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def reply(self, status, body, ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n) if n else None
                if self.path == "/oauth2/token" and front.claim_token and data and \
                        front.claim_token.encode() in data:
                    return front.poll(self)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("authorization", "content-type", "dpop")}
                req = urllib.request.Request(front.target + self.path, method=self.command,
                                             data=data, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, rh, body = r.status, r.headers, r.read()
                except urllib.error.HTTPError as err:
                    status, rh, body = err.code, err.headers, err.read()
                if self.path == "/agent/identity" and status == 401:
                    doc = json.loads(body)
                    if doc.get("error") == "interaction_required":
                        front.claim_token = doc["claim_token"]
                        page = front.url + "/login?return_to=%2Fclaim%3Fclaim_attempt_token%3Dcat_x"
                        doc["claim"] = {"user_code": "WDJB-MJHT", "verification_uri": page,
                                        "verification_uri_complete": page + "%26user_code%3DWDJB-MJHT",
                                        "expires_in": 120, "interval": 1}
                        body = json.dumps(doc).encode()
                self.reply(status, body, rh.get("Content-Type", "application/json"))

            do_GET = do_POST = forward

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def poll(self, h):
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.polls.append((time.time(), answer))
        if answer == 200:
            body = {"access_token": "at_from_the_first_link", "token_type": "Bearer",
                    "expires_in": 300, "scope": "api.read api.write",
                    "identity_assertion": "eyJ0.eyJ0.sig", "assertion_expires":
                    "2099-01-01T00:00:00Z"}
            return h.reply(200, json.dumps(body).encode())
        desc = "polled within the interval; wait 6 s" if answer == "slow_down" else "pending"
        h.reply(400, json.dumps({"error": answer, "error_description": desc}).encode())

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class FirstLinkTest(unittest.TestCase):
    """`authmd register --provider` at /agent/identity when the service
    answers 401: a first link (v0.5 interaction_required) and a stale
    sign-in at the provider (login_required)."""

    def setUp(self):
        self.provider = RealProvider()
        self.session = self.provider.add_user("linked@example.test")
        self.provider.start()
        self.cli = Cli()
        self.server = None

    def tearDown(self):
        if self.server is not None:
            self.server.cleanup()
        self.provider.stop()
        self.provider.cleanup()

    def start(self, **over):
        self.server = Server(provider_overrides(self.provider, **over)).start()
        self.url = self.server.url + "/api/resource"

    def register(self):
        return self.cli.run("register", self.url, "--provider", self.provider.url, "--yes",
                            "--consent", "always", env={"AUTHMD_SESSION": self.session})

    def test_a_first_link_shows_the_code_and_ends_once_the_owner_confirms(self):
        self.start(link_by_email="on")
        # an account with the provider user's address exists already
        reg = self.server.register_email("linked@example.test")
        self.server.wait_mail_queue()
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        # the server answers 401 interaction_required with a claim block: the
        # CLI shows the code and page, the owner confirms, the poll ends
        cli = types.SimpleNamespace(pre=self.cli.pre,
                                    env=dict(self.cli.env, AUTHMD_SESSION=self.session))
        b = Background(cli, "register", self.url, "--provider", self.provider.url, "--yes",
                       "--consent", "always")
        try:
            code = b.wait_for(USER_CODE).group(1)
            page = b.wait_for(PAGE).group(1)
            self.assertEqual(user_answers(self.server, "linked@example.test", page,
                                          code).status, 200)
            rc, out, err = b.finish()
        finally:
            b.kill()
        self.assertEqual(rc, 0, err)
        self.assertIn("scopes:", out)
        rc, st = self.cli.json("status")
        self.assertEqual(len(st["credentials"]), 1, st)
        # the owner's confirmation made the delegation: the next ID-JAG is answered at once
        r = self.register()
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_a_first_link_with_a_claim_block_shows_the_code_and_polls(self):
        front = FirstLinkBlockFront()
        self.addCleanup(front.close)
        self.server = Server(dict(provider_overrides(self.provider, link_by_email="on"),
                                  server={"public_url": front.url})).start()
        front.target = self.server.url
        self.url = front.url + "/api/resource"
        reg = self.server.register_email("linked@example.test")
        self.server.wait_mail_queue()
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        r = self.register()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("the account's owner must confirm this link", r.stdout)
        self.assertIn("\n    WDJB-MJHT\n", r.stderr)
        self.assertIn(front.url + "/login?return_to=", r.stderr)
        self.assertIn("slow_down): polling every 6 s now", r.stderr)
        self.assertIn("scopes: (none) -> api.read api.write", r.stdout)
        self.assertNotIn("pre-claim", r.stdout)  # there was none
        # the interval was kept (1 s; then the 6 s slow_down named)
        times = [t for t, _ in front.polls]
        self.assertEqual([a for _, a in front.polls],
                         ["authorization_pending", "slow_down", "authorization_pending", 200])
        self.assertGreaterEqual(times[1] - times[0], 0.9)
        self.assertGreaterEqual(times[2] - times[1], 5.9)
        with open(self.cli.store) as f:
            s = list(json.load(f)["credentials"].values())[0]
        self.assertEqual((s["method"], s["protocol"], s["claim_state"], s["credential"]),
                         ("id_jag", "v0.6", "claimed", "at_from_the_first_link"))
        self.assertEqual(s["provider"], self.provider.url)  # kept to register alone later
        self.assertNotIn("claim_token", s)

    def test_login_required_says_the_provider_must_sign_the_user_in_again(self):
        self.start()
        self.server.stop()
        self.server.cleanup()
        self.server = Server(dict(provider_overrides(self.provider),
                                  v06={"max_auth_age": "1"})).start()
        self.url = self.server.url + "/api/resource"
        time.sleep(2.1)  # the provider session's auth_time is now too old
        r = self.register()
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("at most 1 s old (login_required)", r.stderr)
        self.assertIn("The provider must sign the user in again", r.stderr)
        rc, out = self.cli.json("register", self.url, "--provider", self.provider.url, "--yes",
                                env={"AUTHMD_SESSION": self.session})
        self.assertEqual(out["error"]["code"], "login_required")
        self.assertEqual(out["error"]["http_status"], 401)


if __name__ == "__main__":
    unittest.main()
