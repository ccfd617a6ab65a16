"""Runs the real authmd-server on 127.0.0.1 for integration tests.

Each test gets its own server process, temporary folder, SQLite file, outbox
and audit file. Nothing is mocked: requests go over loopback HTTP, mail goes
to the outbox folder or to a real SMTP server (aiosmtpd) started here.
"""
import email
import email.policy
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import unittest
import urllib.parse

import pgcluster

HERE = os.path.dirname(os.path.abspath(__file__))
BIN_DIR = os.environ.get("AUTHMD_BIN_DIR", os.path.join(HERE, "..", "..", "build"))
SERVER = os.path.join(BIN_DIR, "authmd-server")
START_TIMEOUT = 30.0


# Every test runs on loopback, which outbound fetches refuse by default: the
# test configurations opt in, as a local setup would.
LOOPBACK_TARGETS = "127.0.0.0/8 ::1/128"


def test_store_base():
    """The PostgreSQL server the suite runs against, or None for SQLite.
    AUTHMD_TEST_STORE=postgresql://... names it; AUTHMD_TEST_STORE_FILE
    names a file holding that URL (the ctest fixture writes one)."""
    url = os.environ.get("AUTHMD_TEST_STORE", "")
    path = os.environ.get("AUTHMD_TEST_STORE_FILE", "")
    if not url and path:
        with open(path) as f:
            url = f.read().strip()
    return url if url.startswith(("postgresql://", "postgres://")) else None


STORE_BASE = test_store_base()
ON_POSTGRES = STORE_BASE is not None


def pg_store_for(tmp):
    """The database of the server whose folder is tmp: made with CREATE
    DATABASE on first use, found again when a test restarts a server on the
    same folder (a kill -9 and restart must see its rows)."""
    marker = os.path.join(tmp, "pg-database")
    if os.path.exists(marker):
        with open(marker) as f:
            return f.read().strip()
    name = "it_%d_%s" % (os.getpid(), os.urandom(6).hex())
    url = pgcluster.create_database(STORE_BASE, name)
    with open(marker, "w") as f:
        f.write(url)
    return url


def _pg_literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return "'\\x%s'::bytea" % bytes(v).hex()
    return "'%s'" % str(v).replace("'", "''")


def _pg_value(v):
    if v is None:
        return None
    if re.fullmatch(r"-?[0-9]+", v):
        return int(v)
    if v in ("t", "f"):  # a boolean expression: sqlite3 gives 1 or 0
        return 1 if v == "t" else 0
    if v.startswith("\\x") and re.fullmatch(r"\\x[0-9a-f]*", v):
        return bytes.fromhex(v[2:])
    return v


def pg_query(url, sql, args=()):
    """db_query on PostgreSQL: ? parameters inlined as literals, rows as
    tuples typed as sqlite3 gives them (int, bytes, str, None)."""
    args = list(args)
    out, i = [], 0
    for ch in sql:
        if ch == "?":
            out.append(_pg_literal(args[i]))
            i += 1
        else:
            out.append(ch)
    return [tuple(_pg_value(c) for c in row) for row in pgcluster.psql(url, "".join(out))]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


def write_ini(path, cfg, overrides=None):
    """Writes cfg ({section: {key: value}}) with overrides merged over it."""
    for section, keys in (overrides or {}).items():
        cfg.setdefault(section, {}).update(keys)
    with open(path, "w") as f:
        for section, keys in cfg.items():
            f.write("[%s]\n" % section)
            for k, v in keys.items():
                f.write("%s = %s\n" % (k, v))


class Process:
    """A real program of ours run with --config, started and stopped by
    tests. Subclasses set argv(), log_path and ready()."""

    proc = None
    port_is_ours = False  # True: ready() asks self.port, which start() checks is ours

    def argv(self):
        raise NotImplementedError

    def ready(self):
        raise NotImplementedError

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.tmp)
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited %d:\n%s" % (self.argv()[0], self.proc.returncode,
                                                          self.read_log()))
            try:
                if self.ready() and self.listens_on_its_port():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s did not start:\n%s" % (self.argv()[0], self.read_log()))

    def listens_on_its_port(self):
        """Whether self.port's listening socket is this process's. free_port()
        only saw the port free: under ctest -j another test's process can
        take it first, ours then fails to bind, and ready() would have had
        its answer from the other one."""
        if not self.port_is_ours:
            return True
        inodes = set()
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == self.port:
                    inodes.add("socket:[%s]" % fields[9])
        fd_dir = "/proc/%d/fd" % self.proc.pid
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in inodes:
                    return True
            except OSError:
                pass  # closed meanwhile
        return False

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Server(Process):
    """One authmd-server process with a config written from `overrides`."""

    port_is_ours = True

    def __init__(self, overrides=None, tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="authmd-it-")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.db = os.path.join(self.tmp, "authmd.db")
        given = (overrides or {}).get("store", {}).get("url")
        if given:
            self.store_url = given  # a test's own store (replicas share one)
        elif ON_POSTGRES:
            self.store_url = pg_store_for(self.tmp)
        else:
            self.store_url = "sqlite:" + self.db
        self.on_postgres = self.store_url.startswith(("postgresql://", "postgres://"))
        self.outbox = os.path.join(self.tmp, "outbox")
        self.audit = os.path.join(self.tmp, "audit.jsonl")
        self.config = os.path.join(self.tmp, "authmd.ini")
        cfg = {
            "server": {"listen": "127.0.0.1:%d" % self.port, "public_url": self.url,
                       "threads": "4"},
            "store": {"url": self.store_url},
            "mail": {"outbox": self.outbox},
            "audit": {"sink": "file:" + self.audit},
            "limits": {"anonymous_per_ip": "0", "anonymous_global": "0",
                       "identity_per_ip": "0", "identity_global": "0"},
            "outbound": {"allow_private_targets": LOOPBACK_TARGETS},
            "v06": {"keys_dir": os.path.join(self.tmp, "keys")},
        }
        write_ini(self.config, cfg, overrides)
        self.log_path = os.path.join(self.tmp, "server.log")

    def argv(self):
        return [SERVER, "--config", self.config]

    def ready(self):
        return self.get("/.well-known/oauth-protected-resource").status == 200

    # --- HTTP ---
    def request(self, method, path, body=None, headers=None, raw=None, content_type=None):
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def bearer(self, method, path, credential, body=None):
        return self.request(method, path, body=body,
                            headers={"Authorization": "Bearer " + credential})

    # --- protocol helpers ---
    def register_anonymous(self):
        r = self.post("/agent/auth", {"type": "anonymous", "requested_credential_type": "api_key"})
        assert r.status == 200, r
        return r.json

    def register_email(self, address, cred_type="api_key"):
        r = self.post("/agent/auth", {"type": "identity_assertion",
                                      "assertion_type": "verified_email",
                                      "assertion": address,
                                      "requested_credential_type": cred_type})
        assert r.status == 200, r
        return r.json

    def start_claim(self, claim_token, address):
        return self.post("/agent/auth/claim", {"claim_token": claim_token, "email": address})

    def complete(self, claim_token, otp):
        return self.post("/agent/auth/claim/complete", {"claim_token": claim_token, "otp": otp})

    # --- mail and pages ---
    def wait_mail_queue(self, timeout=15):
        """Waits until the mail worker has sent every queued mail (the
        request only commits a queue row; the worker writes the outbox)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                rows = self.db_query("SELECT COUNT(*) FROM mail_queue WHERE status = 'queued'")
            except (sqlite3.OperationalError, RuntimeError):
                rows = [(1,)]  # not migrated yet, or locked for a moment
            if rows[0][0] == 0:
                return
            time.sleep(0.02)
        raise AssertionError("the mail queue did not drain in %ss" % timeout)

    def outbox_messages(self):
        if self.on_postgres or os.path.exists(self.db):
            self.wait_mail_queue()
        files = sorted(glob.glob(os.path.join(self.outbox, "*.eml")))
        out = []
        for path in files:
            with open(path, "rb") as f:
                out.append(email.message_from_bytes(f.read(), policy=email.policy.default))
        return out

    def challenge_form(self, attempt_token):
        form = urllib.parse.urlencode({"claim_attempt_token": attempt_token}).encode()
        return self.request("POST", "/agent/auth/claim/attempt/challenge", raw=form,
                            content_type="application/x-www-form-urlencoded")

    def code_from_link(self, link):
        """What a user does: open the link, press the button, read the code."""
        path = urllib.parse.urlsplit(link)
        page = self.get(path.path + "?" + path.query)
        assert page.status == 200, page
        token = urllib.parse.parse_qs(path.query)["token"][0]
        assert ('name="claim_attempt_token" value="%s"' % token).encode() in page.body
        shown = self.challenge_form(token)
        assert shown.status == 200, shown
        return otp_in_page(shown.body)

    def audit_events(self):
        if not os.path.exists(self.audit):
            return []
        with open(self.audit) as f:
            return [json.loads(line) for line in f if line.strip()]

    def db_query(self, sql, args=()):
        if self.on_postgres:
            return pg_query(self.store_url, sql, args)
        con = sqlite3.connect(self.db, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def db_write(self, sql, args=()):
        """A statement that changes rows, committed, on either store: the
        rows it returns (write it with RETURNING to count them)."""
        if self.on_postgres:
            return pg_query(self.store_url, sql, args)
        con = sqlite3.connect(self.db, timeout=10)
        try:
            with con:
                return con.execute(sql, args).fetchall()
        finally:
            con.close()


def text_part(msg):
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content()


def claim_link(msg):
    m = re.search(r"(http://\S+/agent/auth/claim/view\?token=\S+)", text_part(msg))
    assert m, text_part(msg)
    return m.group(1)


def otp_in_page(body):
    m = re.search(rb'class="code">(\d{6})<', body)
    assert m, body
    return m.group(1).decode()


class ServerTest(unittest.TestCase):
    """Base class: self.server is a started server with OVERRIDES applied."""
    OVERRIDES = None

    def setUp(self):
        self.server = Server(self.OVERRIDES).start()

    def tearDown(self):
        rc = self.server.stop()
        if rc not in (0, None):
            print(self.server.read_log())
        shutil.rmtree(self.server.tmp, ignore_errors=True)
        self.assertIn(rc, (0, None), "server did not exit cleanly on SIGTERM")

    def assertError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        body = r.json
        self.assertEqual(body["error"], code, body)
        self.assertTrue(body["message"], body)


TEST_PROVIDER = os.path.join(BIN_DIR, "tests", "testprovider")
ID_JAG_URN = "urn:ietf:params:oauth:token-type:id-jag"
REVOKED_EVENT = "https://schemas.workos.com/events/agent/auth/identity/assertion/revoked"


class Provider:
    """The C test provider: a JWKS with an ES256 and an RS256 key, and a
    /sign endpoint that signs whatever claims a test asks for."""

    def __init__(self):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([TEST_PROVIDER, str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("test provider did not start")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def _call(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            out = r.read()
            if r.status != 200:
                raise RuntimeError("provider %s %s: %d %r" % (method, path, r.status, out))
            return json.loads(out)
        finally:
            conn.close()

    def stats(self):
        return self._call("GET", "/stats")

    def sign(self, claims, key="es", typ="oauth-id-jag+jwt", kid=None):
        req = {"key": key, "typ": typ, "claims": claims}
        if kid is not None:
            req["kid"] = kid
        return self._call("POST", "/sign", req)["token"]

    def rotate(self, key="es", drop_old=False):
        return self._call("POST", "/rotate", {"key": key, "drop_old": drop_old})["kid"]

    def claims(self, server, **over):
        """A valid ID-JAG claim set for server, with overrides (None drops)."""
        now = int(time.time())
        c = {"iss": self.url, "sub": "user-1", "aud": server.url, "client_id": self.url,
             "jti": os.urandom(12).hex(), "iat": now, "exp": now + 300,
             "email": "ann@example.test", "email_verified": True,
             "agent_platform": "test-agent", "agent_context_id": "chat-1"}
        for k, v in over.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def logout_claims(self, server, **over):
        now = int(time.time())
        c = {"iss": self.url, "sub": "user-1", "aud": server.url,
             "jti": os.urandom(12).hex(), "iat": now,
             "events": {REVOKED_EVENT: {}}}
        for k, v in over.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c


def provider_overrides(provider, name="test", **keys):
    section = {"issuer": provider.url}
    section.update(keys)
    return {"provider " + name: section}


def register_idjag(server, token, cred_type="access_token"):
    return server.post("/agent/auth", {"type": "identity_assertion", "assertion_type": ID_JAG_URN,
                                       "assertion": token, "requested_credential_type": cred_type})


def send_logout(server, token, form=False):
    if form:
        body = urllib.parse.urlencode({"logout_token": token}).encode()
        return server.request("POST", "/agent/auth/revoke", raw=body,
                              content_type="application/x-www-form-urlencoded")
    return server.request("POST", "/agent/auth/revoke", raw=token.encode(),
                          content_type="application/logout+jwt")


PROVIDER_BIN = os.path.join(BIN_DIR, "authmd-provider")


class RealProvider(Process):
    """The real authmd-provider process, with its own store and keys."""

    port_is_ours = True

    def __init__(self, overrides=None, tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="authmd-prov-")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.config = os.path.join(self.tmp, "provider.ini")
        self.log_path = os.path.join(self.tmp, "provider.log")
        cfg = {
            "provider": {"listen": "127.0.0.1:%d" % self.port, "issuer": self.url},
            "store": {"url": "sqlite:" + os.path.join(self.tmp, "provider.db")},
            "keys": {"dir": os.path.join(self.tmp, "keys")},
            "revocation": {"retry_base": "1", "retry_max": "2"},
            "outbound": {"allow_private_targets": LOOPBACK_TARGETS},
        }
        write_ini(self.config, cfg, overrides)

    def argv(self):
        return [PROVIDER_BIN, "--config", self.config]

    def ready(self):
        return self.request("GET", "/.well-known/jwks.json").status == 200

    def cli(self, *args, check=True):
        r = subprocess.run([PROVIDER_BIN, "--config", self.config, *args], capture_output=True,
                           text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError("authmd-provider %s: %s" % (" ".join(args), r.stderr))
        return r

    def add_user(self, email, verified=True, phone=None):
        args = ["user", "add", "--email", email]
        if verified:
            args.append("--email-verified")
        if phone:
            args += ["--phone", phone, "--phone-verified"]
        self.cli(*args)
        return self.cli("session", "create", "--user", email).stdout.strip()

    def request(self, method, path, body=None, session=None):
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if session is not None:
            headers["Authorization"] = "Bearer " + session
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def grant(self, session, audience, mode="always", revocation_uri=None):
        body = {"audience": audience, "mode": mode}
        if revocation_uri:
            body["revocation_uri"] = revocation_uri
        return self.request("POST", "/grants", body, session)

    def mint(self, session, audience, **extra):
        body = {"audience": audience}
        body.update(extra)
        return self.request("POST", "/id-jag", body, session)

    def grants(self, session):
        return self.request("GET", "/grants", session=session).json["grants"]


# --- the gate (docs/gate.md): a real nginx in front of an echoing upstream ---

import http.server  # noqa: E402
import threading  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class EchoUpstream:
    """The protected API: a real HTTP server (Python's http.server) that
    answers every request with the method, path and headers it received."""

    def __init__(self):
        self.port = free_port()
        self.seen = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                got = {"method": self.command, "path": self.path,
                       "headers": {k.lower(): v for k, v in self.headers.items()}}
                upstream.seen.append(got)
                body = json.dumps(got).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


NGINX_CONF = """
worker_processes 1;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(tmp)s/client_body;
    proxy_temp_path %(tmp)s/proxy;
    fastcgi_temp_path %(tmp)s/fastcgi;
    uwsgi_temp_path %(tmp)s/uwsgi;
    scgi_temp_path %(tmp)s/scgi;
    %(http_extra)s
    include %(gate_conf)s;
}
"""


def gate_nginx_server_block(listen, authmd, api):
    """The server block of docs/gate.md with the test's addresses (the doc's
    block is the source: the test reads it from the doc, so the two cannot
    drift)."""
    doc = os.path.join(HERE, "..", "..", "docs", "gate.md")
    with open(doc) as f:
        text = f.read()
    m = re.search(r"```nginx\n(# nginx: authmd gate.*?)```", text, re.S)
    assert m, "docs/gate.md has no nginx block starting '# nginx: authmd gate'"
    return (m.group(1).replace("127.0.0.1:8080", listen).replace("127.0.0.1:8000", authmd)
            .replace("127.0.0.1:9000", api))


class Nginx(Process):
    """Debian's nginx run unprivileged from a config written here, on a free
    loopback port: authmd behind auth_request, the echo upstream as the API."""

    def __init__(self, authmd_port, api_port, http_extra=""):
        self.tmp = tempfile.mkdtemp(prefix="authmd-nginx-")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(self.tmp, "nginx.log")
        gate_conf = os.path.join(self.tmp, "gate.conf")
        with open(gate_conf, "w") as f:
            f.write(gate_nginx_server_block("127.0.0.1:%d" % self.port,
                                            "127.0.0.1:%d" % authmd_port,
                                            "127.0.0.1:%d" % api_port))
        self.config = os.path.join(self.tmp, "nginx.conf")
        with open(self.config, "w") as f:
            f.write(NGINX_CONF % {"tmp": self.tmp, "gate_conf": gate_conf,
                                  "http_extra": http_extra})

    def argv(self):
        return [NGINX, "-p", self.tmp, "-c", self.config, "-g",
                "daemon off; pid %s/nginx.pid; error_log stderr;"
                % self.tmp]

    def ready(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def request(self, method, path, body=None, headers=None, raw=None, content_type=None,
                source=None):
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()
