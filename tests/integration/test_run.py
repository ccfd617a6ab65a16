"""`make run`'s script end to end: scripts/run.sh with the built programs,
each run in its own temporary data folder (--var), so a developer's var/ is
never touched. The script is called directly, never through make, so no
test rebuilds anything or runs apt."""
import errno
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from harness import BIN_DIR, START_TIMEOUT, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "..", "..", "scripts", "run.sh")
BANNER_END = "Then try:"


def listening(port):
    """True if something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            return True
        except ConnectionRefusedError:
            return False


def hold(port):
    """A socket listening on 127.0.0.1:port, as another program would, or
    None if another program already holds it (which is the same case)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as e:
        s.close()
        if e.errno != errno.EADDRINUSE:
            raise
        return None
    s.listen(1)
    return s


def processes_using(path):
    """Pids of live processes whose command line mentions path."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if path.encode() in cmd:
            found.append(int(pid))
    return found


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return "(gone)"


# Loopback only: never through a proxy named in the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class RunScript(unittest.TestCase):
    def setUp(self):
        self.var = tempfile.mkdtemp(prefix="authmd-run-")
        fd, self.out_path = tempfile.mkstemp(prefix="authmd-run-", suffix=".out")
        os.close(fd)
        self.proc = None
        self.held = []

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        for s in self.held:
            s.close()
        for pid in processes_using(self.var):  # a test that failed half-way
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.var, ignore_errors=True)
        os.unlink(self.out_path)

    def argv(self, port=None, provider_port=None):
        a = [RUN, "--build", BIN_DIR, "--var", self.var]
        if port is not None:
            a += ["--port", str(port)]
        if provider_port is not None:
            a += ["--provider-port", str(provider_port)]
        return a

    def start(self, *args, **kw):
        """Starts the script without a terminal, its output in a file; in a
        session of its own, so no signal of a test reaches ctest."""
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(self.argv(*args, **kw), stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.addCleanup(self.out.close)

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_banner(self):
        deadline = time.time() + 2 * START_TIMEOUT
        while time.time() < deadline:
            if BANNER_END in self.output():
                return self.output()
            if self.proc.poll() is not None:
                self.fail("run.sh exited %d before the banner:\n%s" %
                          (self.proc.returncode, self.output()))
            time.sleep(0.1)
        self.fail("no banner:\n" + self.output())

    def finish(self, timeout=2 * START_TIMEOUT):
        rc = self.proc.wait(timeout=timeout)
        self.proc = None
        return rc

    def assertNothingLeft(self, *ports):
        for p in ports:
            self.assertFalse(listening(p), "something still listens on %d" % p)
        left = processes_using(self.var)
        self.assertEqual(left, [], "programs of the run still alive: %s\n%s" % (
            [cmdline(pid) for pid in left], self.output()))


class StartFailureTest(RunScript):
    def test_a_held_default_provider_port_fails_with_the_reason(self):
        s = hold(4000)
        if s is not None:
            self.held.append(s)
        port = free_port()
        self.start(port=port)  # the provider on its default port, 4000
        rc = self.finish()
        out = self.output()
        self.assertEqual(rc, 1, out)
        self.assertIn("authmd-provider could not start: cannot listen on 127.0.0.1:4000 "
                      "(see %s/provider.log)" % self.var, out)
        self.assertNotIn(BANNER_END, out)
        self.assertNothingLeft(port)

    def test_a_held_server_port_fails_and_stops_the_provider(self):
        port, pport = free_port(), free_port()
        self.held.append(hold(port))
        self.start(port=port, provider_port=pport)
        rc = self.finish()
        out = self.output()
        self.assertEqual(rc, 1, out)
        self.assertIn("authmd-server could not start: cannot listen on 127.0.0.1:%d "
                      "(see %s/server.log)" % (port, self.var), out)
        self.assertNotIn(BANNER_END, out)
        self.held.pop().close()
        self.assertNothingLeft(port, pport)

    def test_bad_ports_are_refused_before_anything_starts(self):
        for args, says in (((0, None), "--port (make run PORT=) must be a number from 1 to "
                                        "65535, not '0'"),
                           ((None, "4x"), "--provider-port (make run PROVIDER_PORT=) must be"),
                           ((5000, 5000), "two different ports")):
            r = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 2, r)
            self.assertIn(says, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.var, "server.ini")))


class MovedPortsTest(RunScript):
    def test_the_walkthrough_discovery_anonymous_and_verified_steps_on_moved_ports(self):
        port, pport = free_port(), free_port()
        self.start(port=port, provider_port=pport)
        banner = self.wait_banner()
        m = re.search(r"^  S=(\S+) P=(\S+) V=(\S+)$", banner, re.M)
        self.assertIsNotNone(m, banner)
        S, P, V = m.groups()
        self.assertEqual((S, P, V), ("http://127.0.0.1:%d" % port,
                                     "http://127.0.0.1:%d" % pport, self.var))
        self.assertNotRegex(banner, r":(8000|4000)\b")

        # 1. Discover
        st, h, _ = http("GET", S + "/api/resource")
        self.assertEqual(st, 401)
        self.assertEqual(h["WWW-Authenticate"], 'Bearer resource_metadata="%s/.well-known/'
                         'oauth-protected-resource/api/"' % S)
        st, _, body = http("GET", S + "/.well-known/oauth-protected-resource/api/")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["authorization_servers"], [S])
        st, _, body = http("GET", S + "/.well-known/oauth-authorization-server")
        self.assertEqual(st, 200)
        meta = json.loads(body)
        self.assertEqual(meta["issuer"], S)
        self.assertTrue(meta["agent_auth"]["register_uri"].startswith(S + "/"), meta)
        st, _, body = http("GET", S + "/auth.md")
        self.assertEqual(st, 200)
        self.assertIn((S + "/agent/auth").encode(), body)

        # 2. Anonymous start
        st, _, body = http("POST", S + "/agent/auth",
                           {"type": "anonymous", "requested_credential_type": "api_key"})
        self.assertEqual(st, 200, body)
        reg = json.loads(body)
        self.assertTrue(reg["claim_token"])
        auth = {"Authorization": "Bearer " + reg["credential"]}
        st, _, body = http("GET", S + "/api/resource", headers=auth)
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["scopes"], ["api.read"])
        st, _, body = http("POST", S + "/api/resource", headers=auth)
        self.assertEqual(st, 403, body)
        self.assertEqual(json.loads(body)["error"], "insufficient_scope")

        # 4. Agent verified: the server trusts the provider on its moved port,
        # with the walkthrough's provider commands on the generated config.
        prov = [os.path.join(BIN_DIR, "authmd-provider"), "--config",
                os.path.join(V, "provider.ini")]
        subprocess.run(prov + ["user", "add", "--email", "ann@example.test",
                               "--email-verified"], check=True, capture_output=True, timeout=60)
        session = subprocess.run(prov + ["session", "create", "--user", "ann@example.test"],
                                 check=True, capture_output=True, text=True,
                                 timeout=60).stdout.strip()
        bearer = {"Authorization": "Bearer " + session}
        st, _, body = http("POST", P + "/grants", {"audience": S, "mode": "always"}, bearer)
        self.assertEqual(st, 201, body)
        st, _, body = http("POST", P + "/id-jag", {"audience": S}, bearer)
        self.assertEqual(st, 200, body)
        st, _, body = http("POST", S + "/agent/auth", {
            "type": "identity_assertion",
            "assertion_type": "urn:ietf:params:oauth:token-type:id-jag",
            "assertion": json.loads(body)["assertion"],
            "requested_credential_type": "access_token"})
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["registration_type"], "agent-provider")
        self.assertTrue(os.path.exists(os.path.join(self.var, "authmd.db")))

        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.finish(), 0, self.output())
        self.assertNothingLeft(port, pport)


class CtrlCTest(RunScript):
    def test_sigint_to_the_script_stops_both_with_status_0(self):
        port, pport = free_port(), free_port()
        self.start(port=port, provider_port=pport)
        self.wait_banner()
        self.proc.send_signal(signal.SIGINT)
        rc = self.finish()
        self.assertEqual(rc, 0, self.output())
        self.assertIn("run: stopped", self.output(), self.output())
        self.assertNothingLeft(port, pport)

    def test_sigint_to_the_whole_process_group_stops_both_with_status_0(self):
        """What Ctrl-C does when the output is not a terminal (make run | tee)."""
        port, pport = free_port(), free_port()
        self.start(port=port, provider_port=pport)
        self.wait_banner()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.assertEqual(self.finish(), 0, self.output())
        self.assertNothingLeft(port, pport)

    def test_ctrl_c_at_a_terminal_stops_both_with_status_0(self):
        port, pport = free_port(), free_port()
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execv(RUN, self.argv(port=port, provider_port=pport))
            finally:
                os._exit(127)
        out = b""
        sent = False
        deadline = time.time() + 2 * START_TIMEOUT
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and BANNER_END.encode() in out:
                os.write(fd, b"\x03")  # the terminal turns it into SIGINT
                sent = True
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        text = out.decode("utf-8", "replace")
        self.assertTrue(sent, text)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, text)
        self.assertIn("run: stopped", text)
        self.assertNothingLeft(port, pport)


if __name__ == "__main__":
    unittest.main()
