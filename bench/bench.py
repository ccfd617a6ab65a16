#!/usr/bin/env python3
"""`make bench`: authmd-server beside nginx `return 200` and `openssl speed`, in one run.

Starts, on 127.0.0.1 free ports and in one temporary folder:
  - nginx (2 workers, no access log, temp prefix): one server block that
    answers every request with `return 200` (the HTTP ceiling), and one
    that serves the bench provider's JWKS file (its jwks_uri);
  - authmd-server on the default durable on-disk SQLite store, with a
    config written here (tests/integration/harness.py's, so the bench runs
    the server exactly as the integration tests do) that trusts that
    provider and lifts the registration rate limits.
Then runs wrk against both, interleaved (the nginx row, then the authmd row
with the same requests), plus `openssl speed ecdsap256` as the ceiling of
the ID-JAG rows, and prints one table. BENCH_GROWTH=N then registers N
anonymous registrations through the API and measures every row again, and
the time from restart to the first answer.

Then, unless BENCH_PG=0 or no PostgreSQL server is installed (a line says
the rows were skipped and why), the PostgreSQL rows: a private cluster
(tests/integration/pgcluster.py, fsync on), one database, and two
authmd-server replicas on it. Anonymous registration, bearer GET (claimed
API key) and ID-JAG registration against replica 1 alone, each after its
nginx `return 200` row; then anonymous registration and bearer GET through
nginx as a round-robin load balancer (`upstream` of both replicas,
keepalive), each after its ceiling: the same nginx proxying to an
`upstream` of two nginx `return 200` servers.

Environment: BENCH_SECONDS (10) per row, BENCH_CONNS (64), BENCH_THREADS (2)
wrk threads, BENCH_ROUNDS (1) repetitions of the row sequence, BENCH_GROWTH
(0: off), BENCH_TOKENS (auto) ID-JAGs minted per ID-JAG row, BENCH_PG (1:
the PostgreSQL rows when its binaries are found; 0 skips them), BENCH_KEEP=1
keeps the temporary folder, BENCH_JSON=FILE also writes the figures as
JSON, BENCH_REQUEST_LOG=1 keeps authmd's line per request (off by default,
as nginx's access log is). Only loopback is ever a target. Every process started here is
stopped on exit, on Ctrl-C and on SIGTERM/SIGHUP, and dies with this script
if it is killed.
See docs/performance.md.
"""
import argparse
import ctypes
import datetime
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WRK_LUA = os.path.join(HERE, "wrk.lua")
PRM = "/.well-known/oauth-protected-resource"
AS_METADATA = "/.well-known/oauth-authorization-server"
START_TIMEOUT = 60.0

# The issue 8 targets ("Must hold when done"), as ratios.
TARGET = {"bearer": 0.80, "anonymous": 0.25, "idjag": 0.50, "p99": 3.0, "growth": 0.90,
          "rss_mib": 30.0, "restart_s": 1.0, "sweep_p99": 1.5}


def env_int(name, default, lo, hi):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        sys.exit("bench: %s=%r is not a whole number" % (name, raw))
    if not lo <= v <= hi:
        sys.exit("bench: %s=%d is outside %d..%d" % (name, v, lo, hi))
    return v


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """preexec_fn: the child gets SIGTERM if this script dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class Nginx:
    """nginx as an unprivileged child with its own prefix, config and ports."""

    def __init__(self, tmp, www):
        self.dir = os.path.join(tmp, "nginx")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.www = www
        self.port = free_port()
        self.jwks_port = free_port()
        self.direct_port = free_port()
        self.gate_port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.issuer = "http://127.0.0.1:%d" % self.jwks_port
        self.direct_url = "http://127.0.0.1:%d" % self.direct_port
        self.gate_url = "http://127.0.0.1:%d" % self.gate_port
        # The two-replica PostgreSQL rows: a load balancer and its ceiling.
        self.lb_port = free_port()
        self.lb_ceiling_port = free_port()
        self.lb_url = "http://127.0.0.1:%d" % self.lb_port
        self.lb_ceiling_url = "http://127.0.0.1:%d" % self.lb_ceiling_port
        self.log = os.path.join(self.dir, "error.log")
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(os.path.join(www, "upstream.txt"), "w") as f:
            f.write("ok\n")
        os.chmod(os.path.join(www, "upstream.txt"), 0o644)
        self.proc = None

    def configure(self, authmd_port, replica_ports=()):
        """Writes the config; the gate rows need authmd-server's port, the
        load-balancer rows the PostgreSQL replicas' ports (none: no such rows)."""
        www = self.www
        temp = os.path.join(self.dir, "temp")
        os.makedirs(temp, exist_ok=True)
        os.chmod(temp, 0o755)
        with open(self.conf, "w") as f:
            f.write("""worker_processes 2;
daemon off;
pid {d}/nginx.pid;
error_log {log} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    # The ceiling: every request answered 200, nothing else.
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200; }}
    }}
    # The bench provider: its JWKS, cached a day.
    server {{
        listen 127.0.0.1:{jport};
        location = /jwks.json {{
            root {www};
            default_type application/json;
            add_header Cache-Control "public, max-age=86400";
        }}
    }}
    # The gate rows: an "upstream" (a static file) served directly, and the
    # same behind auth_request to authmd's /authz (docs/gate.md, with
    # keep-alive to authmd). `return` would run before auth_request.
    upstream authmd {{ server 127.0.0.1:{aport}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{dport};
        location / {{ root {www}; try_files /upstream.txt =404; }}
    }}
    server {{
        listen 127.0.0.1:{gport};
        location = /_authmd_authz {{
            internal;
            proxy_pass http://authmd/authz;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
        location / {{
            auth_request /_authmd_authz;
            root {www};
            try_files /upstream.txt =404;
        }}
    }}
{lb}}}
""".format(d=self.dir, log=self.log, t=temp, port=self.port, jport=self.jwks_port, www=www,
           aport=authmd_port, dport=self.direct_port, gport=self.gate_port,
           lb=self.lb_conf(replica_ports)))

    def lb_conf(self, replica_ports):
        """Round-robin over the replicas, and the same proxy over two `return 200`
        servers (the ceiling of the two-replica rows: nginx's proxy hop included)."""
        if not replica_ports:
            return ""
        ceil = [free_port() for _ in replica_ports]
        proxy = """        location / {{
            proxy_pass http://{up};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
"""
        out = "    # The two-replica PostgreSQL rows (round robin, keep-alive).\n"
        out += "    upstream pg_replicas {{ {s} keepalive 64; }}\n".format(
            s=" ".join("server 127.0.0.1:%d;" % p for p in replica_ports))
        out += "    upstream pg_ceiling {{ {s} keepalive 64; }}\n".format(
            s=" ".join("server 127.0.0.1:%d;" % p for p in ceil))
        for p in ceil:
            out += "    server { listen 127.0.0.1:%d; location / { return 200; } }\n" % p
        out += "    server {\n        listen 127.0.0.1:%d;\n" % self.lb_port
        out += proxy.format(up="pg_replicas")
        out += "    }\n    server {\n        listen 127.0.0.1:%d;\n" % self.lb_ceiling_port
        out += proxy.format(up="pg_ceiling")
        out += "    }\n"
        return out

    def start(self):
        # -e: the error log before the config is read (else /var/log/nginx).
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-c", self.conf, "-e", self.log],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited %d:\n%s" % (self.proc.returncode,
                                                             read_text(self.log)))
            try:
                if http_status(self.port, "/") == 200 and \
                        http_status(self.jwks_port, "/jwks.json") == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not start:\n" + read_text(self.log))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]
    except OSError:
        return ""


def http_status(port, path):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


class Bench:
    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.seconds = env_int("BENCH_SECONDS", 10, 1, 300)  # tokens live 600 s
        self.conns = env_int("BENCH_CONNS", 64, 1, 100000)
        self.threads = env_int("BENCH_THREADS", 2, 1, 64)
        self.rounds = env_int("BENCH_ROUNDS", 1, 1, 100)
        self.growth = env_int("BENCH_GROWTH", 0, 0, 100000000)
        self.sweep = env_int("BENCH_SWEEP", 100000, 0, 100000000)
        self.tokens = env_int("BENCH_TOKENS", 0, 0, 100000000)
        self.keep = os.environ.get("BENCH_KEEP", "") not in ("", "0")
        self.pg_wanted = os.environ.get("BENCH_PG", "") not in ("0",)
        self.pg = None  # the private PostgreSQL cluster
        self.replicas = []  # authmd-server replicas on it
        self.pg_skip = None  # why the PostgreSQL rows were skipped
        self.json_out = os.environ.get("BENCH_JSON", "")
        # Like for like: the nginx ceiling writes no access log.
        self.request_log = os.environ.get("BENCH_REQUEST_LOG", "") not in ("", "0")
        if self.conns < self.threads:
            sys.exit("bench: BENCH_CONNS must be at least BENCH_THREADS")
        self.mint_bin = os.path.join(self.build, "bench", "authmd-bench-mint")
        for prog in ("wrk", "nginx", "openssl"):
            if shutil.which(prog) is None:
                sys.exit("bench: %s is not installed (scripts/deps.sh --bench)" % prog)
        self.tmp = tempfile.mkdtemp(prefix="authmd-bench-")
        os.chmod(self.tmp, 0o711)  # nginx workers (nobody when run as root) reach www/
        self.www = os.path.join(self.tmp, "www")
        os.makedirs(self.www)
        os.chmod(self.www, 0o755)
        self.nginx = None
        self.server = None
        self.verify_s = None
        self.token_seq = 0

    # --- processes ---
    def start(self):
        os.environ["AUTHMD_BIN_DIR"] = self.build
        sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
        import harness  # the integration tests' server runner and claim helpers
        self.h = harness
        keys = os.path.join(self.tmp, "provider")
        os.makedirs(keys, mode=0o700)
        run([self.mint_bin, "keygen", keys])
        self.key = os.path.join(keys, "key.json")  # private: never under www/
        jwks = os.path.join(self.www, "jwks.json")
        shutil.copyfile(os.path.join(keys, "jwks.json"), jwks)
        os.chmod(jwks, 0o644)
        self.nginx = Nginx(self.tmp, self.www)
        sdir = os.path.join(self.tmp, "server")
        os.makedirs(sdir)
        overrides = {
            "provider bench": {"issuer": self.nginx.issuer,
                               "jwks_uri": self.nginx.issuer + "/jwks.json"},
            # The gate row's nginx is a trusted proxy, as docs/gate.md sets it
            # up: its upstream connections are not held to the per-IP cap.
            "server": {"trusted_proxies": "127.0.0.1/32"},
            "log": {"requests": "on" if self.request_log else "off"},
        }
        if os.environ.get("BENCH_SERVER_THREADS"):  # experiments; the default is the product's
            overrides["server"]["threads"] = os.environ["BENCH_SERVER_THREADS"]
        if self.sweep:
            # The sweep rows make registrations fall due and measure while the
            # sweeper expires them: it must look every second, not every 30.
            overrides["ttl"] = {"sweep_interval": "1"}
        self.server = harness.Server(overrides, tmp=sdir)
        self.start_pg(overrides)
        self.nginx.configure(self.server.port, [r.port for r in self.replicas])
        self.nginx.start()
        self.launch()
        say("nginx on %s, authmd-server on %s, files in %s" % (self.nginx.url, self.server.url,
                                                               self.tmp))

    def start_pg(self, overrides):
        """The private cluster, its database and two replicas' configs (each
        started when its rows come), or self.pg_skip saying why not."""
        if not self.pg_wanted:
            self.pg_skip = "BENCH_PG=0"
            return
        import pgcluster  # tests/integration/pgcluster.py, on the path set above
        if pgcluster.pg_bin_dir() is None:
            self.pg_skip = ("no PostgreSQL server in /usr/lib/postgresql/*/bin "
                            "(apt-get install postgresql)")
            return
        self.pg = pgcluster.PgCluster(os.path.join(self.tmp, "pg")).init().start(durable=True)
        url = pgcluster.create_database(self.pg.url(), "bench")
        for i in (1, 2):
            rdir = os.path.join(self.tmp, "replica%d" % i)
            os.makedirs(rdir)
            o = dict(overrides)
            o["store"] = {"url": url}  # pool_size: the default 32 >= threads + 4
            self.replicas.append(self.h.Server(o, tmp=rdir))

    def stop(self):
        for s in [self.server] + self.replicas:
            if s is None or getattr(s, "proc", None) is None:
                continue
            try:
                s.stop()
            except Exception as exc:  # keep cleaning up
                say("stopping authmd-server: %s" % exc)
        if self.pg is not None:
            self.pg.stop()
        if self.nginx is not None:
            self.nginx.stop()
        if self.keep:
            say("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def restart(self):
        """SIGTERM, then start again; returns (stop seconds, start-to-first-answer seconds)."""
        s = self.server
        t0 = time.monotonic()
        rc = s.stop()
        stopped = time.monotonic() - t0
        if rc != 0:
            raise RuntimeError("authmd-server exited %s on SIGTERM:\n%s" % (rc, s.read_log()))
        return stopped, self.launch()

    def launch(self, s=None):
        """Starts the server (self.server unless given; it dies with this script) and
        returns the seconds from exec to its first answer."""
        s = s or self.server
        s.log = open(s.log_path, "ab")
        t0 = time.monotonic()
        s.proc = subprocess.Popen(s.argv(), stdout=s.log, stderr=subprocess.STDOUT, cwd=s.tmp,
                                  preexec_fn=die_with_parent)
        while True:
            if s.proc.poll() is not None:
                raise RuntimeError("authmd-server exited at start:\n" + s.read_log())
            try:
                if s.get(PRM).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > START_TIMEOUT:
                raise RuntimeError("authmd-server did not answer after its start")
            time.sleep(0.002)
        return time.monotonic() - t0

    # --- credentials for the bearer rows ---
    def claimed_api_key(self, s=None):
        """An anonymous registration claimed through the emailed code (the outbox)."""
        s, h = s or self.server, self.h
        reg = s.register_anonymous()
        # An address per claim: the claim mails per address and hour are
        # limited ([limits], 5 by default), and a run with rounds and growth
        # claims a key per round.
        self.claims = getattr(self, "claims", 0) + 1
        address = "bench-%d-%d@bench.example" % (os.getpid(), self.claims)
        before = len(s.outbox_messages())
        r = s.start_claim(reg["claim_token"], address)
        if r.status != 200:
            raise RuntimeError("claim start: %r" % r)
        deadline = time.monotonic() + 30
        while len(s.outbox_messages()) <= before:  # the mail may be queued
            if time.monotonic() > deadline:
                raise RuntimeError("no claim mail in the outbox")
            time.sleep(0.05)
        otp = s.code_from_link(h.claim_link(s.outbox_messages()[-1]))
        r = s.complete(reg["claim_token"], otp)
        if r.status != 200:
            raise RuntimeError("claim complete: %r" % r)
        return reg["credential"]

    def access_token(self):
        """An ID-JAG registration with credential_type access_token."""
        prefix = self.mint(1, "same")
        with open(prefix + ".0") as f:
            token = f.read().strip()
        r = self.h.register_idjag(self.server, token, "access_token")
        if r.status != 200 or r.json.get("credential_type") != "access_token":
            raise RuntimeError("ID-JAG registration: %r" % r)
        return r.json["credential"]

    def mint(self, count, mode, audience=None):
        self.token_seq += 1
        tokdir = os.path.join(self.tmp, "tokens")
        os.makedirs(tokdir, exist_ok=True)
        prefix = os.path.join(tokdir, "set%d" % self.token_seq)
        tag = "bench-%d-%d-%d" % (os.getpid(), int(time.time()), self.token_seq)
        run([self.mint_bin, "mint", self.key, self.nginx.issuer, audience or self.server.url,
             str(count),
             str(self.threads), prefix, mode, tag])
        return prefix

    def drop_tokens(self, prefix):
        for i in range(self.threads):
            try:
                os.unlink("%s.%d" % (prefix, i))
            except OSError:
                pass

    # --- measuring ---
    def wrk(self, base, path, args, seconds=None, bearer=None):
        cmd = ["wrk", "-t", str(self.threads), "-c", str(self.conns),
               "-d", "%ds" % (seconds or self.seconds), "--timeout", "30s", "-s", WRK_LUA,
               base + path, "--"] + args
        env = dict(os.environ)
        env.pop("BENCH_BEARER", None)
        if bearer is not None:
            env["BENCH_BEARER"] = bearer  # the environment, not argv: ps shows no credential
        out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                             preexec_fn=die_with_parent)
        m = re.search(r"^BENCH (\{.*\})$", out.stdout, re.M)
        if out.returncode != 0 or m is None:
            raise RuntimeError("wrk failed (%d):\n%s%s" % (out.returncode, out.stdout,
                                                           out.stderr))
        r = json.loads(m.group(1))
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
        r["sock_errors"] = (r["connect_errors"] + r["read_errors"] + r["write_errors"] +
                            r["timeouts"])
        return r

    def openssl_verify(self):
        out = subprocess.run(["openssl", "speed", "-seconds", "5", "ecdsap256"],
                             capture_output=True, text=True, preexec_fn=die_with_parent)
        for line in out.stdout.splitlines():
            if "nistp256" in line:
                nums = re.findall(r"\d+\.\d+", line)
                if len(nums) >= 4:
                    return float(nums[-2]), float(nums[-1])
        raise RuntimeError("cannot read openssl speed:\n%s%s" % (out.stdout, out.stderr))

    def rows(self):
        """The measured sequence; each entry makes its wrk args when it runs."""
        return [
            ("AS metadata GET", AS_METADATA, "metadata", lambda c: ["get"]),
            ("bearer GET, claimed API key", "/api/resource", "bearer", lambda c: ["get"]),
            ("bearer GET, access token", "/api/resource", "bearer", lambda c: ["get"]),
            ("gate: nginx auth_request, API key", "/api/resource", "gate", lambda c: ["get"]),
            ("anonymous registration", "/agent/auth", "anonymous", lambda c: ["anonymous"]),
            ("openssl speed ecdsap256", None, "openssl", None),
            ("ID-JAG registration, same user", "/agent/auth", "idjag",
             lambda c: ["idjag", c["tokens_same"], "access_token"]),
            ("ID-JAG registration, distinct users", "/agent/auth", "idjag",
             lambda c: ["idjag", c["tokens_distinct"], "access_token"]),
        ]

    def token_count(self, seconds=None, rate=None):
        """BENCH_TOKENS, else enough ID-JAGs for a row of `seconds` (the
        bench's) to outrun `rate` (the one-core verify rate) by half: a pool
        that runs out turns the rest of the row into replays (400)."""
        if self.tokens:
            return self.tokens
        seconds = self.seconds if seconds is None else seconds
        rate = self.verify_s if rate is None else rate
        return max(2000, int(math.ceil(1.5 * rate * seconds)))

    def measure_round(self, label):
        """One pass over every row: nginx, then authmd with the same requests."""
        out = []
        creds = {"api_key": self.claimed_api_key(), "access_token": self.access_token()}
        for name, path, kind, make_args in self.rows():
            if kind == "openssl":
                sign_s, self.verify_s = self.openssl_verify()
                say("  %-38s sign %.0f/s  verify %.0f/s (one core)" % (name, sign_s,
                                                                       self.verify_s))
                out.append({"name": name, "kind": kind, "rps": self.verify_s, "sign": sign_s})
                continue
            prefix = None
            if kind == "idjag":
                n = self.token_count()
                mode = "same" if "same" in name else "distinct"
                prefix = self.mint(n, mode)
                creds["tokens_" + mode] = prefix
            args = make_args(creds)
            bearer = None
            if kind in ("bearer", "gate"):
                bearer = creds["api_key" if "API key" in name else "access_token"]
            # The gate row's ceiling is nginx serving the upstream directly;
            # it is measured through nginx's auth_request to authmd.
            base_url, url = self.nginx.url, self.server.url
            if kind == "gate":
                base_url, url = self.nginx.direct_url, self.nginx.gate_url
            base = self.wrk(base_url, path, args, bearer=bearer)
            base.update(name="nginx, same requests" if kind != "gate" else
                        "nginx, upstream served directly", kind="nginx")
            say("  %-38s %9.0f req/s" % (base["name"], base["rps"]))
            r = self.wrk(url, path, args, bearer=bearer)
            r.update(name=name, kind=kind, rss=rss_mib(self.server.proc.pid), nginx=base)
            if kind == "idjag":
                self.drop_tokens(prefix)
                r["ceiling"] = self.verify_s
                r["tokens"] = n
            else:
                r["ceiling"] = base["rps"]
            rate_against(r, base)
            say("  %-38s %9.0f req/s  (%s)" % (name, r["rps"], label))
            out.append(base)
            out.append(r)
        return out

    def pg_pair(self, name, kind, ceiling_url, ceiling_name, url, path, args, servers,
                bearer=None):
        """One PostgreSQL row after its ceiling row, as measure_round does it."""
        base = self.wrk(ceiling_url, path, args, bearer=bearer)
        base.update(name=ceiling_name, kind="nginx")
        say("  %-38s %9.0f req/s" % (base["name"], base["rps"]))
        r = self.wrk(url, path, args, bearer=bearer)
        rss = [rss_mib(s.proc.pid) for s in servers]
        r.update(name=name, kind=kind, nginx=base,
                 rss=max(rss) if None not in rss else None)
        r["ceiling"] = self.verify_s if kind == "idjag" else base["rps"]
        rate_against(r, base)
        say("  %-38s %9.0f req/s  (PostgreSQL)" % (name, r["rps"]))
        return [base, r]

    def measure_pg(self):
        """The PostgreSQL rows: replica 1 alone, then both behind nginx round robin."""
        r1, r2 = self.replicas
        self.launch(r1)
        key = self.claimed_api_key(r1)  # before replica 2 runs: its mail lands in r1's outbox
        ng, same = self.nginx.url, "nginx, same requests"
        out = []
        say("PostgreSQL, one replica")
        out += self.pg_pair("PG 1 replica: anonymous registration", "anonymous", ng, same,
                            r1.url, "/agent/auth", ["anonymous"], [r1])
        out += self.pg_pair("PG 1 replica: bearer GET, API key", "bearer", ng, same, r1.url,
                            "/api/resource", ["get"], [r1], bearer=key)
        n = self.token_count()
        prefix = self.mint(n, "distinct", audience=r1.url)
        row = self.pg_pair("PG 1 replica: ID-JAG, distinct users", "idjag", ng, same, r1.url,
                           "/agent/auth", ["idjag", prefix, "access_token"], [r1])
        row[1]["tokens"] = n
        self.drop_tokens(prefix)
        out += row
        self.launch(r2)
        say("PostgreSQL, two replicas behind nginx round robin")
        lb, lbc = self.nginx.lb_url, self.nginx.lb_ceiling_url
        ceil = "nginx LB -> 2x nginx return 200"
        out += self.pg_pair("PG 2 replicas LB: anonymous reg.", "anonymous", lbc, ceil, lb,
                            "/agent/auth", ["anonymous"], [r1, r2])
        out += self.pg_pair("PG 2 replicas LB: bearer GET, API key", "bearer", lbc, ceil, lb,
                            "/api/resource", ["get"], [r1, r2], bearer=key)
        return out

    SWEEP_ROWS = (("bearer GET, claimed API key", "/api/resource", "bearer", ["get"]),
                  ("anonymous registration", "/agent/auth", "anonymous", ["anonymous"]))
    DUE = ("SELECT count(*) FROM registrations WHERE status IN ('unclaimed', 'pending_claim') "
           "AND expires_at <= ?")

    def measure_sweep(self, base_rows):
        """The sweeper at work during rows (issue 8: its pass never stalls
        requests): with the server stopped, up to BENCH_SWEEP unclaimed
        anonymous registrations get an expiry in the past; after the start
        the sweeper expires them (at most 10 000 per pass, a pass a second)
        while the bearer and the anonymous rows run again. Returns the rows
        and how many fell due."""
        now = int(time.time())
        self.server.stop()
        due = self.server.db_write(
            "UPDATE registrations SET expires_at = ? WHERE id IN (SELECT id FROM registrations "
            "WHERE status = 'unclaimed' AND kind = 'anonymous' AND expires_at > ? LIMIT ?) "
            "RETURNING id", (now - 1, now, self.sweep))
        self.launch()
        creds = {"api_key": self.claimed_api_key()}
        out = []
        for name, path, kind, args in self.SWEEP_ROWS:
            bearer = creds["api_key"] if kind == "bearer" else None
            base = self.wrk(self.nginx.url, path, args, bearer=bearer)
            base.update(name="nginx, same requests", kind="nginx")
            before = self.server.db_query(self.DUE, (int(time.time()),))[0][0]
            r = self.wrk(self.server.url, path, args, bearer=bearer)
            after = self.server.db_query(self.DUE, (int(time.time()),))[0][0]
            r.update(name=name, kind=kind, rss=rss_mib(self.server.proc.pid), nginx=base,
                     ceiling=base["rps"], swept=before - after, due_after=after)
            rate_against(r, base)
            quiet = [b["p99_ratio"] for b in base_rows if b["name"] == name]
            r["p99_vs_quiet"] = r["p99_ratio"] / statistics.median(quiet) if quiet else 0.0
            say("  %-38s %9.0f req/s, %d expired during the row" % (name, r["rps"],
                                                                    r["swept"]))
            out += [base, r]
        return out, len(due)

    def grow(self, target):
        """Anonymous registrations through the API until `target` were answered 200."""
        done, chunk, t0 = 0, 5, time.monotonic()
        while done < target:
            r = self.wrk(self.server.url, "/agent/auth", ["anonymous"], seconds=chunk)
            done += r["requests"] - r["status_errors"]
            rate = max(r["rps"], 1.0)
            say("  grown to %d of %d (%.0f req/s, %d non-2xx)" % (done, target, rate,
                                                                   r["status_errors"]))
            chunk = int(max(1, min(60, math.ceil((target - done) / rate))))
        return done, time.monotonic() - t0

    # --- the run ---
    def run(self):
        started = datetime.datetime.now(datetime.timezone.utc)
        self.start()
        say("wrk: %d threads, %d connections, %d s per row; %d round(s)" % (
            self.threads, self.conns, self.seconds, self.rounds))
        # Warm-up, not reported: first connections, page cache, lazy initialisation.
        self.wrk(self.nginx.url, AS_METADATA, ["get"], seconds=1)
        self.wrk(self.server.url, AS_METADATA, ["get"], seconds=1)
        base_rows = []
        for i in range(self.rounds):
            say("round %d" % (i + 1))
            base_rows += self.measure_round("round %d" % (i + 1))
        stop_s, first_s = self.restart()
        regs = self.count_registrations()
        print_header(started, self)
        print_table("at %s registrations" % fmt_count(regs), base_rows, None)
        print_summary(base_rows, self.rounds)
        print_restart(stop_s, first_s, regs)
        result = {"started": started.isoformat(), "seconds": self.seconds, "conns": self.conns,
                  "threads": self.threads, "load": os.getloadavg(),
                  "base": {"registrations": regs, "rows": base_rows, "restart_stop_s": stop_s,
                           "restart_first_answer_s": first_s}}
        self.save(result)
        if self.sweep:
            say("sweep: registrations fall due, rows run while the sweeper expires them")
            sweep_rows, due = self.measure_sweep(base_rows)
            print_sweep(sweep_rows, due)
            result["sweep"] = {"due": due, "rows": sweep_rows}
            self.save(result)
        if self.pg is None:
            print()
            print("PostgreSQL rows skipped: %s" % self.pg_skip)
        else:
            pg_rows = self.measure_pg()
            pg_regs = self.replicas[0].db_query("SELECT count(*) FROM registrations")[0][0]
            print_table("PostgreSQL %s (private cluster, fsync on), %s registrations; "
                        "[server] threads 4, [store] pool_size 32 per replica" % (
                            self.pg_version(), fmt_count(int(pg_regs))), pg_rows, None)
            print("PG 2 replicas rows: through nginx round robin (upstream of both, keepalive "
                  "64); their ceiling is the same proxy over two nginx `return 200` servers")
            print(self.pg_batches())
            result["postgresql"] = {"registrations": int(pg_regs), "rows": pg_rows}
            self.save(result)
        if self.growth:
            say("growth: registering %d anonymous registrations through the API" % self.growth)
            done, took = self.grow(self.growth)
            say("  %d registrations in %.0f s" % (done, took))
            grown = []
            for i in range(self.rounds):
                say("round %d at %s registrations" % (i + 1, fmt_count(done)))
                grown += self.measure_round("grown, round %d" % (i + 1))
            stop2, first2 = self.restart()
            regs2 = self.count_registrations()
            print_table("at %s registrations (growth)" % fmt_count(regs2), grown, base_rows)
            print_summary(grown, self.rounds, base_rows)
            print_restart(stop2, first2, regs2)
            result["growth"] = {"registrations": regs2, "rows": grown, "grow_seconds": took,
                                "restart_stop_s": stop2, "restart_first_answer_s": first2}
            self.save(result)

    def pg_batches(self):
        """Stops the replicas; their writers' group-commit counts (logged at stop)."""
        parts = []
        for i, s in enumerate(self.replicas, 1):
            s.stop()
            m = re.findall(r"store writer stopped batches=(\d+) jobs=(\d+)", s.read_log())
            if m:
                b, j = int(m[-1][0]), int(m[-1][1])
                parts.append("replica %d: %d writes in %d commits (%.1f per commit)" % (
                    i, j, b, j / b if b else 0.0))
        return "group commit on PostgreSQL: " + ("; ".join(parts) or "no writer counts logged")

    def pg_version(self):
        m = re.search(r"\d+(\.\d+)+", run([os.path.join(self.pg.bin, "postgres"), "--version"]))
        return m.group(0) if m else "?"

    def save(self, result):
        if self.json_out:
            with open(self.json_out, "w") as f:
                json.dump(result, f, indent=1)

    def count_registrations(self):
        try:
            return self.server.db_query("SELECT count(*) FROM registrations")[0][0]
        except Exception:
            return None


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=die_with_parent)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (cmd[0], r.returncode, r.stderr))
    return r.stdout


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def fmt_count(n):
    return "?" if n is None else "{:,}".format(n).replace(",", " ")


def print_header(started, b):
    load = os.getloadavg()
    print()
    print("authmd bench, %s, %s, %d CPUs, load %.1f %.1f %.1f" % (
        started.strftime("%Y-%m-%d %H:%M UTC"), os.uname().release, os.cpu_count(),
        load[0], load[1], load[2]))
    print("wrk %d threads, %d connections, %d s per row; nginx 2 workers `return 200`, "
          "no access log; authmd-server default durable SQLite store, [log] requests %s" % (
              b.threads, b.conns, b.seconds, "on" if b.request_log else "off"))
    print(tool_versions())


def fmt_ratio(x):
    return "%.2f" % x if x >= 0.1 else "%.3f" % x


def target_for(r):
    if r["kind"] in ("bearer", "anonymous", "idjag"):
        return TARGET[r["kind"]]
    return None


def print_table(title, rows, base_rows):
    print()
    print("== %s ==" % title)
    hdr = "%-38s %9s %8s %8s %8s %10s %6s %6s %7s %7s" % (
        "row", "req/s", "p50 ms", "p99 ms", "non-2xx", "ceiling", "ratio", "target",
        "p99/ng", "RSS MiB")
    if base_rows is not None:
        hdr += " %7s" % "vs base"
    print(hdr)
    print("-" * len(hdr))
    base_by_name = {}  # row name -> its ratios to the ceiling before the growth
    for r in base_rows or []:
        if r["kind"] not in ("nginx", "openssl"):
            base_by_name.setdefault(r["name"], []).append(r["ratio"])
    for r in rows:
        if r["kind"] == "openssl":
            line = "%-38s %9.0f %8s %8s %8s %10s %6s %6s %7s %7s" % (
                r["name"] + " verify/s", r["rps"], "", "", "", "", "", "", "", "")
            print(line.rstrip())
            continue
        bad = r["status_errors"] + r["sock_errors"]
        non2xx = fmt_non2xx(r)
        if r["kind"] == "nginx":
            line = "%-38s %9.0f %8.2f %8.2f %8s" % ("  " + r["name"], r["rps"],
                                                   r["p50_us"] / 1000.0, r["p99_us"] / 1000.0,
                                                   non2xx)
            print(line)
            continue
        t = target_for(r)
        ceiling = ("verify %.0f" if r["kind"] == "idjag" else "nginx %.0f") % r["ceiling"]
        mark = ""
        if t is not None:
            mark = ("%.2f" % t) + ("" if r["ratio"] >= t else "!")
        p99m = "%.1fx" % r["p99_ratio"] + ("" if r["p99_ratio"] <= TARGET["p99"] else "!")
        rss = "%.1f" % r["rss"] if r["rss"] is not None else "?"
        if base_rows is not None and r["rss"] is not None and r["rss"] >= TARGET["rss_mib"]:
            rss += "!"
        line = "%-38s %9.0f %8.2f %8.2f %8s %10s %6s %6s %7s %7s" % (
            r["name"], r["rps"], r["p50_us"] / 1000.0, r["p99_us"] / 1000.0,
            non2xx + ("!" if bad else ""), ceiling, fmt_ratio(r["ratio"]), mark, p99m, rss)
        if base_rows is not None and base_by_name.get(r["name"]):
            # Ratio over ratio: each rate taken against the ceiling measured beside it,
            # so a shared machine's load at the two times cancels out.
            b = statistics.median(base_by_name[r["name"]])
            g = r["ratio"] / b if b else 0.0
            line += " %6.2f%s" % (g, "" if g >= TARGET["growth"] else "!")
        print(line)
        if r.get("exhausted"):
            print("    (the tokens ran out %d time(s): replays answered 400; raise BENCH_TOKENS)"
                  % r["exhausted"])
    print("ratio: req/s over the ceiling (the nginx row just before it; for ID-JAG rows the "
          "one-core P-256 verify/s); target: issue 8's floor; p99/ng: p99 over that nginx "
          "row's p99 (floor %.0fx); '!' marks a missed target, 'Ns' socket errors" %
          TARGET["p99"])
    if base_rows is not None:
        print("vs base: this ratio over the same row's ratio before the growth (floor %.2f); "
              "RSS must stay under %.0f MiB" % (TARGET["growth"], TARGET["rss_mib"]))


def print_summary(rows, rounds, base_rows=None):
    """With several rounds: per row the median rate and ratio, the worst p99 ratio, all
    non-2xx and the largest RSS, so one load spike on a shared machine moves nothing; after
    the growth also the median ratio over the median ratio before it."""
    if rounds < 2:
        return
    by, base = {}, {}
    for r in rows:
        if r["kind"] not in ("nginx", "openssl"):
            by.setdefault(r["name"], []).append(r)
    for r in base_rows or []:
        if r["kind"] not in ("nginx", "openssl"):
            base.setdefault(r["name"], []).append(r["ratio"])
    print("median of %d rounds:" % rounds)
    for name, rs in by.items():
        bad = sum(r["status_errors"] + r["sock_errors"] for r in rs)
        t = target_for(rs[0])
        ratio = statistics.median(r["ratio"] for r in rs)
        worst = max(r["p99_ratio"] for r in rs)
        rss = max((r["rss"] or 0.0) for r in rs)
        line = ("  %-36s %9.0f req/s  ratio %s%s  worst p99/ng %.1fx%s  non-2xx %d%s  "
                "RSS max %.1f MiB" % (
                    name, statistics.median(r["rps"] for r in rs), fmt_ratio(ratio),
                    "" if t is None or ratio >= t else "!", worst,
                    "" if worst <= TARGET["p99"] else "!", bad, "!" if bad else "", rss))
        if base_rows is not None:
            if rss >= TARGET["rss_mib"]:
                line += "!"
            b = statistics.median(base.get(name) or [0.0])
            g = ratio / b if b else 0.0
            line += "  vs base %.2f%s" % (g, "" if g >= TARGET["growth"] else "!")
        print(line)


def rate_against(r, base):
    """The row's ratio to its ceiling (set in r) and its p99 over its nginx row's."""
    r["ratio"] = r["rps"] / r["ceiling"] if r["ceiling"] else 0.0
    r["p99_ratio"] = r["p99_us"] / base["p99_us"] if base["p99_us"] else 0.0


def fmt_non2xx(r):
    """wrk's count of answers >= 400, with '+Ns' for socket errors."""
    return "%d" % r["status_errors"] + ("+%ds" % r["sock_errors"] if r["sock_errors"] else "")


def print_sweep(rows, due):
    print()
    print("== while the sweeper expires %s registrations made due ([ttl] sweep_interval 1) =="
          % fmt_count(due))
    hdr = "%-38s %9s %8s %8s %8s %6s %7s %9s %8s" % (
        "row", "req/s", "p50 ms", "p99 ms", "non-2xx", "ratio", "p99/ng", "vs quiet", "expired")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        non2xx = fmt_non2xx(r)
        if r["kind"] == "nginx":
            print("%-38s %9.0f %8.2f %8.2f %8s" % ("  " + r["name"], r["rps"],
                                                  r["p50_us"] / 1000.0, r["p99_us"] / 1000.0,
                                                  non2xx))
            continue
        v = r["p99_vs_quiet"]
        print("%-38s %9.0f %8.2f %8.2f %8s %6s %6.1fx %8.2f%s %8d" % (
            r["name"], r["rps"], r["p50_us"] / 1000.0, r["p99_us"] / 1000.0, non2xx,
            fmt_ratio(r["ratio"]), r["p99_ratio"], v, "" if v <= TARGET["sweep_p99"] else "!",
            r["swept"]))
    print("vs quiet: the row's p99/ng over the same row's p99/ng before any registration was "
          "due (each against the nginx row beside it, so machine load cancels); '!' past "
          "%.1f; expired: registrations the sweeper expired while the row ran" %
          TARGET["sweep_p99"])
    left = rows[-1].get("due_after", 0) if rows else 0
    if left == 0:
        print("(no registration was still due at the end of the last row: raise BENCH_SWEEP "
              "so the sweep covers both rows)")


def print_restart(stop_s, first_s, regs):
    print("restart at %s registrations: SIGTERM to exit %.0f ms; start to first answer "
          "%.0f ms (target < %.0f ms)%s" % (fmt_count(regs), stop_s * 1000, first_s * 1000,
                                            TARGET["restart_s"] * 1000,
                                            "" if first_s < TARGET["restart_s"] else " !"))


def tool_versions():
    out = []
    for cmd in (["nginx", "-v"], ["wrk", "-v"], ["openssl", "version"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        line = (r.stdout + r.stderr).strip().splitlines()
        out.append(line[0] if line else cmd[0])
    return "; ".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the CMake build folder (configured with -DAUTHMD_BENCH=ON)")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise KeyboardInterrupt()

    # Set even where the parent ignores SIGINT (a background job), so Ctrl-C,
    # kill and a closed terminal all end in the cleanup below.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    b = Bench(args.build)
    try:
        b.run()
    except KeyboardInterrupt:
        say("bench: interrupted; stopping everything")
        return 130
    except RuntimeError as exc:
        say("bench: %s" % exc)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
