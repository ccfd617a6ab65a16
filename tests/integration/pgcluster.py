"""A private PostgreSQL cluster for the tests: Debian's server binaries
(/usr/lib/postgresql/*/bin), initdb and pg_ctl in a temporary folder, listening
on a free 127.0.0.1 port only, run as an unprivileged user (`nobody` when the
tests run as root, which PostgreSQL refuses to be), stopped at the end.

As a program it is the ctest fixture that gives the whole PostgreSQL run one
cluster:  pgcluster.py start STATE_DIR  (prints and writes STATE_DIR/url)
          pgcluster.py stop STATE_DIR
As a module, tests that need a cluster of their own (to stop it mid-run) use
PgCluster directly.
"""
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

SUPERUSER = "authmd"


def pg_bin_dir():
    """The newest installed server's bin folder, or None."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                  key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(dirs[-1]) if dirs else None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user():
    """The argv prefix that runs a command as the unprivileged user."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


class PgCluster:
    def __init__(self, root=None):
        self.bin = pg_bin_dir()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server found (scripts/deps.sh installs it)")
        self.root = root or tempfile.mkdtemp(prefix="authmd-pg-")
        os.makedirs(self.root, exist_ok=True)
        self.data = os.path.join(self.root, "data")
        self.sock = os.path.join(self.root, "sock")
        self.log = os.path.join(self.root, "postgres.log")
        self.port = None

    def _run(self, *argv, check=True):
        return subprocess.run(_as_user() + list(argv), check=check, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, cwd=self.root)

    def _chown(self):
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "nobody:nogroup", self.root], check=True)
        os.chmod(self.root, 0o755)

    def init(self):
        os.makedirs(self.sock, exist_ok=True)
        self._chown()
        # trust on loopback: the cluster lives for the test run only and
        # listens on 127.0.0.1 alone
        self._run(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", SUPERUSER,
                  "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C")
        return self

    def start(self, port=None, durable=False):
        """durable=True (make bench) keeps fsync and full page writes on, as
        a production server would, so its commits are measured honestly."""
        self.port = port or self.port or free_port()
        # fsync off and little WAL kept: the tests kill authmd, never this
        # server, and a small data folder starts, stops and is removed fast
        sync = "on" if durable else "off"
        opts = ("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=%s "
                "-c synchronous_commit=on -c full_page_writes=%s -c max_connections=300 "
                "-c shared_buffers=32MB -c wal_level=minimal -c max_wal_senders=0 "
                "-c max_wal_size=64MB -c min_wal_size=32MB" % (self.port, self.sock, sync, sync))
        r = self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.log,
                      "-o", opts, "-w", "-t", "60", "start", check=False)
        if r.returncode != 0:
            raise RuntimeError("pg_ctl start failed:\n%s\n%s" % (r.stdout.decode(),
                                                                 self.read_log()))
        return self

    def stop(self, mode="fast"):
        self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", mode, "-w",
                  "stop", check=False)

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def url(self, dbname="postgres"):
        return "postgresql://%s@127.0.0.1:%d/%s" % (SUPERUSER, self.port, dbname)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def base_url_parts(url):
    """(host, port, user) of a postgresql:// URL."""
    u = urllib.parse.urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 5432, u.username or SUPERUSER


def psql(url, sql, dbname=None):
    """Runs sql with psql against url (or its server's dbname); the rows as
    lists of strings (None for NULL)."""
    host, port, user = base_url_parts(url)
    db = dbname or urllib.parse.urlsplit(url).path.lstrip("/") or "postgres"
    r = subprocess.run([os.path.join(pg_bin_dir(), "psql"), "-X", "-q", "-At", "-v",
                        "ON_ERROR_STOP=1", "-F", "\x1f", "-R", "\x1e", "-P", "null=\x1d",
                        "-h", host, "-p", str(port), "-U", user, "-d", db, "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("psql failed: %s" % r.stderr.decode())
    out = r.stdout.decode()
    if out.endswith("\n"):
        out = out[:-1]
    if out == "":
        return []
    return [[None if c == "\x1d" else c for c in row.split("\x1f")]
            for row in out.split("\x1e")]


def create_database(url, name):
    """CREATE DATABASE name on url's server; the new database's URL."""
    psql(url, 'CREATE DATABASE "%s"' % name, dbname="postgres")
    host, port, user = base_url_parts(url)
    return "postgresql://%s@%s:%d/%s" % (user, host, port, name)


def _fixture_cluster(state):
    """The fixture's cluster, wherever its start put it (STATE_DIR/root)."""
    try:
        with open(os.path.join(state, "root")) as f:
            return PgCluster(f.read().strip())
    except OSError:
        return None


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print("usage: pgcluster.py start|stop STATE_DIR", file=sys.stderr)
        return 2
    state = os.path.abspath(argv[2])
    stale = _fixture_cluster(state)
    if stale is not None:  # the stop itself, or a start after a stop that never ran
        stale.stop("fast" if argv[1] == "stop" else "immediate")
        shutil.rmtree(stale.root, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    if argv[1] == "start":
        os.makedirs(state)
        # The data lives in a temporary folder of its own, not under
        # STATE_DIR: the unprivileged user must reach it, and a checkout
        # (with its build folder) may sit below a folder only root enters.
        c = PgCluster().init().start()
        with open(os.path.join(state, "root"), "w") as f:
            f.write(c.root)
        with open(os.path.join(state, "url"), "w") as f:
            f.write(c.url())
        print(c.url())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
