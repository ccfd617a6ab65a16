"""The authmd CLI end to end against the real server and provider, a pty for
the code prompt, and a small misbehaving server for the retry policy."""
import http.server
import json
import os
import pty
import select
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (BIN_DIR, RealProvider, Server, claim_link, free_port, provider_overrides)

AUTHMD = os.path.join(BIN_DIR, "authmd")


class Cli:
    def __init__(self, protocol=None):
        # protocol: "v0.1" for the tests of the v0.1 claim ceremony, which
        # --protocol auto no longer picks for anonymous registration
        self.pre = ["--protocol", protocol] if protocol is not None else []
        self.home = tempfile.mkdtemp(prefix="authmd-cli-")
        self.env = dict(os.environ, XDG_CONFIG_HOME=self.home)
        self.env.pop("AUTHMD_SESSION", None)
        self.env.pop("AUTHMD_CREDENTIALS", None)
        self.store = os.path.join(self.home, "authmd", "credentials.json")

    def run(self, *args, stdin=None, env=None):
        e = dict(self.env, **(env or {}))
        return subprocess.run([AUTHMD, *self.pre, *args], capture_output=True, text=True, env=e,
                              input=stdin if stdin is not None else "", timeout=120)

    def json(self, *args, **kw):
        r = self.run(*args, "--json", **kw)
        return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])

    def at_pty(self, args, answer_fn, prompt=b"6-digit code"):
        """Runs authmd at a real pseudo-terminal, answers the prompt with
        answer_fn() and returns (exit code, all output)."""
        return self.at_pty_steps(args, [(prompt, lambda: (answer_fn() + "\n").encode())])

    def at_pty_steps(self, args, steps):
        """Runs authmd at a real pseudo-terminal; for each (prompt, answer_fn)
        in steps, in order, waits for the next appearance of prompt and types
        answer_fn() (bytes, written at once as a paste would be). Returns
        (exit code, all output)."""
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(AUTHMD, [AUTHMD, *self.pre, *args], self.env)
        out = b""
        seen = 0  # output up to here has been matched against a prompt
        steps = list(steps)
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
            if steps and steps[0][0] in out[seen:]:
                seen = out.index(steps[0][0], seen) + len(steps[0][0])
                os.write(fd, steps.pop(0)[1]())
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


class ServiceCliTest(unittest.TestCase):
    def setUp(self):
        self.server = Server().start()
        self.cli = Cli(protocol="v0.1")  # the v0.1 claim ceremony
        self.url = self.server.url + "/api/resource"

    def tearDown(self):
        self.server.cleanup()

    def test_discover_prints_the_chain(self):
        r = self.cli.run("discover", self.url)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("oauth-protected-resource/api/ (from the 401)", r.stdout)
        rc, d = self.cli.json("discover", self.url)
        self.assertEqual(rc, 0)
        self.assertTrue(d["ok"])
        self.assertEqual(d["resource"], self.server.url + "/api/")
        self.assertEqual(d["authorization_server"], self.server.url)
        self.assertEqual(d["methods"], {"anonymous": True, "verified_email": True,
                                        "id_jag": False})
        self.assertTrue(d["from_www_authenticate"])

    def test_anonymous_register_use_and_claim_at_a_terminal_prompt(self):
        rc, reg = self.cli.json("register", self.url, "--anonymous")
        self.assertEqual(rc, 0)
        self.assertEqual(reg["method"], "anonymous")
        self.assertEqual(reg["scopes"], ["api.read"])
        self.assertNotIn("credential", reg)  # never printed
        self.assertEqual(stat.S_IMODE(os.stat(self.cli.store).st_mode), 0o600)
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200))
        self.assertEqual(got["body"]["scopes"], ["api.read"])
        r = self.cli.run("curl", "-X", "POST", "-d", "{}", self.url)
        self.assertEqual(r.returncode, 4)
        self.assertIn("insufficient_scope", r.stderr)

        def code():
            mail = wait_for(lambda: self.server.outbox_messages())
            return self.server.code_from_link(claim_link(mail[-1]))
        rc, out = self.cli.at_pty(["claim", self.url, "--email", "pat@example.test"], code)
        self.assertEqual(rc, 0, out)
        self.assertIn("Check your email and tell me the 6-digit code", out)
        self.assertIn("claimed", out)
        rc, got = self.cli.json("curl", "-X", "POST", "-d", "{}", self.url)
        self.assertEqual((rc, got["status"]), (0, 200))
        self.assertEqual(got["body"]["scopes"], ["api.read", "api.write"])
        with open(self.cli.store) as f:
            self.assertNotIn("claim_token", f.read())  # not kept past the claim

    def test_a_wrong_code_gets_the_advice(self):
        self.cli.json("register", self.url, "--anonymous")
        r = self.cli.run("claim", self.url, "--email", "q@example.test", "--otp", "000000")
        self.assertEqual(r.returncode, 4)
        self.assertIn("That code didn't work", r.stderr)
        rc, out = self.cli.json("claim", self.url, "--otp", "000000")
        self.assertEqual(out["error"]["code"], "otp_invalid")

    def test_email_required_register_claim_then_use(self):
        r = self.cli.run("register", self.url, "--email", "ivy@example.test",
                         "--credential-type", "access_token")
        self.assertEqual(r.returncode, 5)  # consent: not a terminal and no --yes
        rc, reg = self.cli.json("register", self.url, "--email", "ivy@example.test", "--yes",
                                "--credential-type", "access_token")
        self.assertEqual(rc, 0)
        self.assertFalse(reg["has_credential"])
        rc, out = self.cli.json("curl", self.url)
        self.assertEqual(rc, 5)
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        rc, done = self.cli.json("claim", self.url, "--otp", otp)
        self.assertEqual(rc, 0, done)
        self.assertTrue(done["has_credential"])
        self.assertEqual(done["credential_type"], "access_token")
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200))
        self.assertEqual(got["body"]["email"], "ivy@example.test")
        rc, st = self.cli.json("status")
        self.assertEqual(st["credentials"][0]["claim_state"], "claimed")
        rc, _ = self.cli.json("forget", self.url)
        self.assertEqual(rc, 0)
        self.assertEqual(self.cli.json("status")[1]["credentials"], [])

    def test_the_prompt_takes_one_line_of_a_paste_only(self):
        """A terminal without bracketed paste delivers a pasted block line by
        line: only its first line answers the prompt, the rest is dropped."""
        self.cli.json("register", self.url, "--email", "kim@example.test", "--yes")
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        wrong = "000000" if otp != "000000" else "111111"
        rc, out = self.cli.at_pty_steps(
            ["claim", self.url],
            [(b"6-digit code", lambda: ("%s\n%s\n" % (wrong, otp)).encode()),
             (b"6-digit code", lambda: b"\x04")])  # then Ctrl-D at the next prompt
        self.assertEqual(rc, 5, out)
        self.assertIn("That code didn't work", out)
        self.assertIn("no code was given", out)
        self.assertNotIn("claimed", out)
        self.assertEqual(self.server.db_query("select status from registrations"),
                         [("pending_claim",)])
        rc, done = self.cli.json("claim", self.url, "--otp", otp)  # --otp stays for scripts
        self.assertEqual(rc, 0, done)

    def test_the_prompt_refuses_what_is_not_a_code(self):
        self.cli.json("register", self.url, "--email", "lee@example.test", "--yes")
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        rc, out = self.cli.at_pty_steps(
            ["claim", self.url],
            [(b"6-digit code", lambda: b"cd ~/projects && ls\n"),
             (b"6-digit code", lambda: b"12345\n"),
             (b"6-digit code", lambda: (" %s \n" % otp).encode())])
        self.assertEqual(rc, 0, out)
        self.assertEqual(out.count("That is not a code: type the 6 digits"), 2, out)
        self.assertIn("claimed", out)
        # Neither refused line reached the server as a wrong code.
        self.assertEqual(self.server.db_query("select sum(otp_failures) from claim_attempts"),
                         [(0,)])

    def test_three_lines_that_are_not_codes_end_the_prompt(self):
        self.cli.json("register", self.url, "--email", "max@example.test", "--yes")
        rc, out = self.cli.at_pty_steps(["claim", self.url],
                                        [(b"6-digit code", lambda: b"abc\n")] * 3)
        self.assertEqual(rc, 5, out)
        self.assertIn("that is not a code: a code is 6 digits", out)
        r = self.cli.run("claim", self.url, stdin="one two\n")  # a line of stdin, checked too
        self.assertEqual(r.returncode, 5)
        self.assertIn("that is not a code", r.stderr)

    def test_the_code_can_come_on_stdin(self):
        self.cli.json("register", self.url, "--email", "joy@example.test", "--yes")
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        r = self.cli.run("claim", self.url, stdin=otp + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_corrupt_and_world_readable_credential_files_are_refused(self):
        self.cli.json("register", self.url, "--anonymous")
        os.chmod(self.cli.store, 0o644)
        r = self.cli.run("curl", self.url)
        self.assertEqual(r.returncode, 6)
        self.assertIn("can be read by other users", r.stderr)
        os.chmod(self.cli.store, 0o600)
        with open(self.cli.store, "w") as f:
            f.write("{not json")
        r = self.cli.run("status")
        self.assertEqual(r.returncode, 6)
        self.assertIn("not a valid credentials file", r.stderr)
        r = self.cli.run("register", self.url, "--anonymous")
        self.assertEqual(r.returncode, 6)
        with open(self.cli.store) as f:
            self.assertEqual(f.read(), "{not json")  # left untouched

    def test_usage_and_help(self):
        self.assertEqual(self.cli.run("--help").returncode, 0)
        self.assertEqual(self.cli.run("register").returncode, 2)
        self.assertEqual(self.cli.run("frobnicate", self.url).returncode, 2)
        self.assertEqual(self.cli.run("register", self.url, "--anonymous", "--email", "a@b.c")
                         .returncode, 2)
        self.assertEqual(self.cli.run("curl", self.url).returncode, 5)  # nothing stored
        self.assertEqual(self.cli.run("discover", "http://127.0.0.1:9/x").returncode, 3)


def wait_for(fn, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    return fn()


class IdJagCliTest(unittest.TestCase):
    def setUp(self):
        self.provider = RealProvider()
        self.session = self.provider.add_user("kai@example.test")
        self.provider.start()
        self.server = Server(dict(provider_overrides(self.provider),
                                  limits={"jwks_refetch_interval": "1"})).start()
        self.cli = Cli()
        self.url = self.server.url + "/api/resource"

    def tearDown(self):
        self.server.cleanup()
        self.provider.cleanup()

    def register(self):
        rc, reg = self.cli.json("register", self.url, "--provider", self.provider.url, "--yes",
                                "--consent", "always", env={"AUTHMD_SESSION": self.session})
        self.assertEqual(rc, 0, reg)
        return reg

    def revoke(self, grant_id):
        r = self.provider.request("DELETE", "/grants/" + grant_id, session=self.session)
        self.assertEqual(r.status, 200)
        wait_for(lambda: self.provider.grants(self.session)[0].get("revocation", {})
                 .get("status") == "delivered")

    def test_register_use_revoke_and_re_register_by_itself(self):
        reg = self.register()
        self.assertEqual(reg["method"], "id_jag")
        self.assertEqual(self.cli.json("curl", self.url)[1]["status"], 200)
        first = self.cli.json("curl", self.url)[1]["body"]["credential_id"]
        # Another grant for the same service, e.g. from an earlier "once"
        # consent, is revoked: the service drops every credential of this
        # user from this provider, but this agent's consent still stands.
        other = self.provider.grant(self.session, self.server.url, "once",
                                    self.server.url + "/agent/auth/revoke").json
        self.revoke(other["id"])
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200), got)
        self.assertNotEqual(got["body"]["credential_id"], first)

    def test_withdrawn_consent_is_not_renewed_behind_the_users_back(self):
        self.register()
        self.assertEqual(self.cli.json("curl", self.url)[1]["status"], 200)
        grant = self.provider.grants(self.session)[0]
        self.revoke(grant["id"])
        r = self.cli.run("curl", self.url)
        self.assertEqual(r.returncode, 5, r.stderr)
        self.assertIn("without the user's consent", r.stderr)
        self.assertEqual([g["status"] for g in self.provider.grants(self.session)], ["revoked"])
        self.assertEqual(self.cli.json("status")[1]["credentials"], [])  # dropped

    def test_without_a_session_there_is_no_id_jag_registration(self):
        r = self.cli.run("register", self.url, "--provider", self.provider.url)
        self.assertEqual(r.returncode, 2)


class _Flaky(http.server.BaseHTTPRequestHandler):
    plan = []
    seen = []

    def do_GET(self):
        status, extra = self.plan.pop(0) if self.plan else (200, {})
        self.seen.append((time.time(), self.headers.get("Authorization")))
        body = json.dumps({"status": status}).encode()
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class RetryPolicyTest(unittest.TestCase):
    def setUp(self):
        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _Flaky)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.cli = Cli()
        base = "http://127.0.0.1:%d/" % self.port
        os.makedirs(os.path.dirname(self.cli.store), mode=0o700)
        with open(self.cli.store, "w") as f:
            json.dump({"version": 1, "credentials": {base: {
                "resource": base, "method": "anonymous", "credential": "sk_test",
                "credential_type": "api_key", "registration_id": "reg_x"}}}, f)
        os.chmod(self.cli.store, 0o600)
        self.url = base + "thing"
        _Flaky.seen = []

    def tearDown(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def test_5xx_is_retried_with_backoff(self):
        _Flaky.plan = [(503, {}), (502, {}), (200, {})]
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200))
        self.assertEqual(len(_Flaky.seen), 3)
        self.assertEqual(_Flaky.seen[0][1], "Bearer sk_test")

    def test_5xx_gives_up_after_the_bound(self):
        _Flaky.plan = [(500, {})] * 10
        r = self.cli.run("curl", self.url)
        self.assertEqual(r.returncode, 3)
        self.assertEqual(len(_Flaky.seen), 4)  # one try and three retries

    def test_429_waits_for_retry_after(self):
        _Flaky.plan = [(429, {"Retry-After": "1"}), (200, {})]
        rc, got = self.cli.json("curl", self.url)
        self.assertEqual((rc, got["status"]), (0, 200))
        self.assertEqual(len(_Flaky.seen), 2)
        self.assertGreaterEqual(_Flaky.seen[1][0] - _Flaky.seen[0][0], 0.95)

    def test_other_4xx_is_not_retried(self):
        _Flaky.plan = [(400, {}), (200, {})]
        r = self.cli.run("curl", self.url)
        self.assertEqual(r.returncode, 4)
        self.assertEqual(len(_Flaky.seen), 1)


class DiscoveryGuardTest(unittest.TestCase):
    def test_metadata_naming_another_origin_is_refused(self):
        port = free_port()

        class Forged(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/.well-known/oauth-protected-resource"):
                    body = json.dumps({"resource": "https://bank.example/",
                                       "authorization_servers": ["https://evil.example"]})
                    self.send_response(200)
                else:
                    body = "{}"
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer resource_metadata="http://'
                                     '127.0.0.1:%d/.well-known/oauth-protected-resource"' % port)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *a):
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Forged)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            r = Cli().run("discover", "http://127.0.0.1:%d/api" % port)
            self.assertEqual(r.returncode, 7, r.stderr)
            self.assertIn("which is not on", r.stderr)
        finally:
            httpd.shutdown()
            httpd.server_close()


class _StubService(http.server.BaseHTTPRequestHandler):
    """A service whose authorization server metadata is under the test's
    control: `issuer` is what the AS metadata says (absent when MISSING)."""
    MISSING = object()
    issuer = MISSING
    registrations = 0

    def do_GET(self):
        base = "http://127.0.0.1:%d" % self.server.server_port
        if self.path == "/.well-known/oauth-protected-resource":
            doc = {"resource": base + "/", "authorization_servers": [base]}
        elif self.path == "/.well-known/oauth-authorization-server":
            doc = {"agent_auth": {"register_uri": base + "/agent/auth",
                                  "claim_uri": base + "/agent/auth/claim",
                                  "identity_types_supported": ["anonymous"]}}
            if self.issuer is not _StubService.MISSING:
                doc["issuer"] = self.issuer
        else:
            self.reply(401, {"error": "invalid_token"})
            return
        self.reply(200, doc)

    def do_POST(self):
        type(self).registrations += 1
        self.reply(200, {"registration_id": "reg_stub", "credential_type": "api_key",
                         "credential": "sk_stub", "scopes": ["api.read"]})

    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class StrictIssuerTest(unittest.TestCase):
    """Issue 15 item 4: AS metadata without an issuer, or with another one,
    is refused unless --allow-missing-issuer (which forgives only absence)."""

    def setUp(self):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _StubService)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        _StubService.registrations = 0
        self.cli = Cli()
        self.url = self.base + "/api"

    def tearDown(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def test_metadata_without_issuer_is_refused_by_default(self):
        _StubService.issuer = _StubService.MISSING
        r = self.cli.run("discover", self.url)
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertIn("has no issuer", r.stderr)
        self.assertIn("--allow-missing-issuer", r.stderr)
        r = self.cli.run("register", self.url, "--anonymous")
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertEqual(_StubService.registrations, 0)  # nothing was sent there
        self.assertFalse(os.path.exists(self.cli.store))

    def test_a_null_issuer_is_missing_too(self):
        _StubService.issuer = None
        r = self.cli.run("discover", self.url)
        self.assertEqual(r.returncode, 7, r.stderr)
        self.assertIn("has no issuer", r.stderr)

    def test_another_issuer_is_refused_even_when_missing_ones_are_allowed(self):
        for other in ("https://evil.example", self.base + "/", self.base.upper()):
            _StubService.issuer = other
            for extra in ([], ["--allow-missing-issuer"]):
                r = self.cli.run(*extra, "discover", self.url)
                self.assertEqual(r.returncode, 7, (other, extra, r.stderr))
                self.assertIn("names issuer", r.stderr)

    def test_allow_missing_issuer_lets_an_old_service_through_with_a_warning(self):
        _StubService.issuer = _StubService.MISSING
        r = self.cli.run("--allow-missing-issuer", "discover", self.url, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(json.loads(r.stdout)["issuer_missing"])
        self.assertIn("publishes no issuer", r.stderr)
        rc, reg = self.cli.json("register", self.url, "--anonymous", "--allow-missing-issuer")
        self.assertEqual(rc, 0, reg)
        self.assertEqual(_StubService.registrations, 1)

    def test_the_matching_issuer_is_accepted(self):
        _StubService.issuer = self.base
        rc, d = self.cli.json("discover", self.url)
        self.assertEqual(rc, 0, d)
        self.assertFalse(d["issuer_missing"])


if __name__ == "__main__":
    unittest.main()
