"""What `make install` ships (issue 12): a staged install into a temporary
DESTDIR, a program built against the installed header and library with
`pkg-config --cflags --libs authmd-client` run against the real server, the
library's exported symbols against client.h, the man pages rendered by
man -l and groff, the systemd units checked by systemd-analyze verify, the
units' sd_notify readiness, and the three programs' command lines."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

from harness import BIN_DIR, PROVIDER_BIN, SERVER, RealProvider, Server

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
CLI = os.path.join(BIN_DIR, "authmd")
PREFIX = "/opt/authmd"

PROGRAM = r"""
#include <authmd/client.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	struct authmd_options opt = {argv[2], 0, -1, 0};
	struct authmd_client *c = NULL;
	struct authmd_discovery d;
	struct authmd_credential cred;
	struct authmd_error e = {0};

	if (argc != 3 || authmd_client_new(&opt, &c, &e) != AUTHMD_OK)
		return 10;
	if (authmd_discover(c, argv[1], &d, &e) != AUTHMD_OK) {
		fprintf(stderr, "discover: %s\n", e.message);
		return 11;
	}
	if (authmd_register_anonymous(c, &d, &cred, &e) != AUTHMD_OK) {
		fprintf(stderr, "register: %s\n", e.message);
		return 12;
	}
	printf("%s %s %s %d\n", d.issuer, cred.method, cred.registration_id,
	       cred.credential[0] != '\0');
	authmd_client_free(c);
	return 0;
}
"""


def run(argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(argv, **kw)


def sanitized():
    """True when BIN_DIR is the ASan + UBSan build (its programs and library
    need the sanitizer runtime in whatever links them)."""
    with open(os.path.join(BIN_DIR, "CMakeCache.txt")) as f:
        return re.search(r"^AUTHMD_SANITIZE:BOOL=ON$", f.read(), re.M) is not None


def client_h_functions(path):
    """The names of the functions declared in a client.h."""
    with open(path) as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    return set(re.findall(r"\b(authmd_\w+)\s*\(", text))


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="authmd-install-")
        cls.destdir = os.path.join(cls.tmp, "dest")
        env = dict(os.environ, DESTDIR=cls.destdir)
        r = run(["cmake", "--install", BIN_DIR, "--prefix", PREFIX], env=env)
        if r.returncode != 0:
            raise RuntimeError("cmake --install: %s%s" % (r.stdout, r.stderr))
        cls.root = cls.destdir + PREFIX
        libdirs = [d for d in ("lib", "lib64") if os.path.isdir(os.path.join(cls.root, d))]
        cls.libdir = os.path.join(cls.root, libdirs[0])
        for dirpath, _, files in os.walk(cls.root):
            if "authmd-client.pc" in files:
                cls.pcdir = dirpath
                cls.libdir = os.path.dirname(dirpath)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, rel):
        return os.path.join(self.root, rel)

    def test_layout(self):
        for rel in ["sbin/authmd-server", "sbin/authmd-provider", "bin/authmd",
                    "include/authmd/client.h", "share/authmd/auth.md.tmpl",
                    "share/authmd/examples/authmd.ini", "share/authmd/examples/provider.ini",
                    "share/man/man1/authmd.1", "share/man/man5/authmd.ini.5",
                    "share/man/man8/authmd-server.8", "share/man/man8/authmd-provider.8",
                    "lib/systemd/system/authmd-server.service",
                    "lib/systemd/system/authmd-provider.service"]:
            self.assertTrue(os.path.exists(self.path(rel)), rel)
        for prog in ["sbin/authmd-server", "sbin/authmd-provider", "bin/authmd"]:
            self.assertTrue(os.access(self.path(prog), os.X_OK), prog)

    def test_library_soname_and_links(self):
        so = os.path.join(self.libdir, "libauthmd-client.so")
        self.assertEqual(os.readlink(so), "libauthmd-client.so.0")
        self.assertTrue(os.readlink(so + ".0").startswith("libauthmd-client.so.0."))
        r = run(["readelf", "-d", so])
        self.assertIn("Library soname: [libauthmd-client.so.0]", r.stdout)
        # The installed CLI uses the shared library, not a copy of it.
        r = run(["readelf", "-d", self.path("bin/authmd")])
        self.assertIn("Shared library: [libauthmd-client.so.0]", r.stdout)

    def test_only_client_h_symbols_are_exported(self):
        so = os.path.join(self.libdir, "libauthmd-client.so")
        r = run(["nm", "-D", "--defined-only", so])
        self.assertEqual(r.returncode, 0, r.stderr)
        exported = set()
        for line in r.stdout.splitlines():
            fields = line.split()
            name, kind = fields[-1].split("@")[0], fields[-2]
            if kind == "A":
                continue  # the version node AUTHMD_CLIENT_0
            exported.add(name)
        declared = client_h_functions(self.path("include/authmd/client.h"))
        self.assertEqual(len(declared), 22)  # the parse of client.h found them all
        self.assertEqual(exported, declared)
        # Every exported symbol is in the versioned ABI node.
        r = run(["objdump", "-T", so])
        for name in declared:
            self.assertRegex(r.stdout, r"AUTHMD_CLIENT_0\s+%s\n" % name)

    def test_program_built_with_pkg_config_registers_with_a_live_server(self):
        env = dict(os.environ, PKG_CONFIG_PATH=self.pcdir,
                   PKG_CONFIG_SYSROOT_DIR=self.destdir)
        r = run(["pkg-config", "--cflags", "--libs", "authmd-client"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        flags = r.stdout.split()
        self.assertIn("-I" + self.path("include"), flags)
        self.assertIn("-lauthmd-client", flags)
        src = os.path.join(self.tmp, "prog.c")
        exe = os.path.join(self.tmp, "prog")
        with open(src, "w") as f:
            f.write(PROGRAM)
        extra = ["-fsanitize=address,undefined"] if sanitized() else []
        r = run(["cc", "-std=c17", "-Wall", "-Werror", *extra, src, "-o", exe, *flags])
        self.assertEqual(r.returncode, 0, r.stderr)
        server = Server().start()
        try:
            store = os.path.join(self.tmp, "credentials.json")
            r = run([exe, server.url + "/api/ping", store],
                    env=dict(os.environ, LD_LIBRARY_PATH=self.libdir))
            self.assertEqual(r.returncode, 0, r.stderr)
            issuer, method, reg_id, has_cred = r.stdout.split()
            self.assertEqual(issuer, server.url)
            self.assertEqual(method, "anonymous")
            self.assertTrue(reg_id.startswith("reg_") or len(reg_id) > 8, reg_id)
            self.assertEqual(has_cred, "1")
            self.assertTrue(os.path.exists(store))
        finally:
            server.cleanup()

    def test_man_pages_render_without_warnings(self):
        pages = ["share/man/man1/authmd.1", "share/man/man5/authmd.ini.5",
                 "share/man/man8/authmd-server.8", "share/man/man8/authmd-provider.8"]
        for rel in pages:
            page = self.path(rel)
            r = run(["man", "--warnings", "-l", page],
                    env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
            self.assertEqual(r.returncode, 0, rel)
            self.assertEqual(r.stderr, "", rel)
            self.assertIn("EXIT STATUS" if "man5" not in rel else "KEYS", r.stdout)
            r = run(["groff", "-ww", "-z", "-man", page])
            self.assertEqual((r.returncode, r.stderr), (0, ""), rel)

    def test_ini_page_lists_the_keys_of_the_sample(self):
        """authmd.ini(5) is generated from the config table: every key of
        the sample file is there, with its default."""
        r = run(["man", "-l", self.path("share/man/man5/authmd.ini.5")],
                env=dict(os.environ, MANWIDTH="200", MANPAGER="cat", PAGER="cat"))
        page = r.stdout
        section = None
        with open(os.path.join(SOURCE_DIR, "etc", "authmd.ini")) as f:
            for line in f:
                line = line.strip()
                m = re.match(r"^\[(\w+)\]$", line)
                if m:
                    section = m.group(1)
                    self.assertIn("[%s]" % section, page)
                m = re.match(r"^(\w+)\s*=", line)
                if m:
                    self.assertRegex(page, r"(?m)^\s+%s(\s|$)" % m.group(1),
                                     (section, m.group(1)))
        self.assertIn("Default: 127.0.0.1:8000.", page)

    def test_units_pass_systemd_analyze_verify(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is absent (scripts/deps.sh installs systemd)")
        # A second install at a real prefix, so that ExecStart names files
        # that exist, and man: references resolve through MANPATH.
        prefix = os.path.join(self.tmp, "prefix")
        r = run(["cmake", "--install", BIN_DIR, "--prefix", prefix],
                env={k: v for k, v in os.environ.items() if k != "DESTDIR"})
        self.assertEqual(r.returncode, 0, r.stderr)
        units = [os.path.join(prefix, "lib/systemd/system", u)
                 for u in ("authmd-server.service", "authmd-provider.service")]
        env = dict(os.environ, MANPATH=os.path.join(prefix, "share/man"),
                   SYSTEMD_LOG_LEVEL="notice")
        r = run(["systemd-analyze", "verify", *units], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stderr.strip(), "", r.stderr)
        for unit in units:
            with open(unit) as f:
                text = f.read()
            prog = "authmd-server" if "server" in unit else "authmd-provider"
            self.assertIn("ExecStart=%s/sbin/%s --config " % (prefix, prog), text)
            for line in ["Type=notify", "ProtectSystem=strict", "NoNewPrivileges=yes",
                         "PrivateTmp=yes", "StateDirectory=authmd", "User=authmd",
                         "ProtectHome=yes", "CapabilityBoundingSet=\n"]:
                self.assertIn(line, text, unit)
            self.assertRegex(text, r"ExecReload=.*--check-config ")
            if prog == "authmd-server":  # the store writer's nice steps ([store] writer_priority)
                self.assertIn("LimitNICE=-5\n", text)
                self.assertIn("SystemCallFilter=setpriority\n", text)


    def test_units_under_usr_name_etc_authmd(self):
        """GNUInstallDirs: the sysconfdir of prefix /usr is /etc, not /usr/etc."""
        dest = os.path.join(self.tmp, "usr-dest")
        r = run(["cmake", "--install", BIN_DIR, "--prefix", "/usr"],
                env=dict(os.environ, DESTDIR=dest))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(dest, "usr/lib/systemd/system/authmd-server.service")) as f:
            self.assertIn("ExecStart=/usr/sbin/authmd-server --config /etc/authmd/authmd.ini\n",
                          f.read())
        with open(os.path.join(self.root, "lib/systemd/system/authmd-server.service")) as f:
            self.assertIn("--config %s/etc/authmd/authmd.ini\n" % PREFIX, f.read())


class Notify(unittest.TestCase):
    """The programs tell systemd when they are ready and when they stop
    (the units are Type=notify), through $NOTIFY_SOCKET."""

    def notify_socket(self, tmp):
        path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(60)
        self.addCleanup(sock.close)
        return sock, path

    def check(self, proc_obj):
        sock, path = self.notify_socket(proc_obj.tmp)
        os.environ["NOTIFY_SOCKET"] = path
        try:
            proc_obj.start()
        finally:
            del os.environ["NOTIFY_SOCKET"]
        msg = sock.recv(4096).decode()
        self.assertIn("READY=1", msg.split("\n"))
        self.assertEqual(proc_obj.stop(signal.SIGTERM), 0)
        msg = sock.recv(4096).decode()
        self.assertIn("STOPPING=1", msg.split("\n"))

    def test_server_notifies(self):
        s = Server()
        self.addCleanup(s.cleanup)
        self.check(s)

    def test_provider_notifies(self):
        p = RealProvider()
        self.addCleanup(p.cleanup)
        self.check(p)


class CommandLine(unittest.TestCase):
    """One getopt_long parser per program: --help, --version, exit 2 on
    usage errors, options anywhere for the provider and the CLI."""

    def test_help_and_version_everywhere(self):
        for prog, name in [(SERVER, "authmd-server"), (PROVIDER_BIN, "authmd-provider"),
                           (CLI, "authmd")]:
            for flag in ["--help", "-h"]:
                r = run([prog, flag])
                self.assertEqual(r.returncode, 0, (name, flag, r.stderr))
                self.assertIn("usage: " + name, r.stdout)
                self.assertIn("Exit codes", r.stdout)
            for flag in ["--version", "-V"]:
                r = run([prog, flag])
                self.assertEqual((r.returncode, r.stdout), (0, "%s 0.1.0\n" % name), flag)
            r = run([prog, "--no-such-option"])
            self.assertEqual(r.returncode, 2, name)
            self.assertIn("usage: " + name, r.stderr)

    def test_server_usage_errors(self):
        for args in [["--config"], ["--config", ""], ["frobnicate"], ["revoke"],
                     ["revoke", "--all", "--user", "u"], ["revoke", "--subject", "s"],
                     ["revoke", "--user", "a", "--registration", "b"],
                     ["revoke", "--issuer", "i", "--user", "u"], ["unblock", "--all"],
                     ["revoke", "--user", "a", "extra"], ["--config", "x", "revoke", "--all"]]:
            r = run([SERVER, *args])
            self.assertEqual(r.returncode, 2, args)

    def test_server_revoke_all_with_config_after_the_command(self):
        s = Server()
        self.addCleanup(s.cleanup)
        r = run([SERVER, "revoke", "--all", "--config", s.config])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("revoked 0 credentials", r.stdout)

    def test_provider_config_anywhere(self):
        """Issue 12: the provider saw --config only as the first argument."""
        p = RealProvider()
        self.addCleanup(p.cleanup)
        r = run([PROVIDER_BIN, "user", "add", "--email", "a@example.com", "--config", p.config])
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run([PROVIDER_BIN, "user", "list", "-c", p.config])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("a@example.com", r.stdout)
        for args in [["user"], ["user", "list", "extra"], ["user", "add", "--email"],
                     ["session", "revoke"]]:
            r = run([PROVIDER_BIN, "--config", p.config, *args])
            self.assertEqual(r.returncode, 2, args)

    def test_cli_options_anywhere(self):
        tmp = tempfile.mkdtemp(prefix="authmd-cli-")
        self.addCleanup(shutil.rmtree, tmp, True)
        store = os.path.join(tmp, "c.json")
        r = run([CLI, "status", "--store", store, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"credentials": []', r.stdout.replace('":[', '": ['))
        for args in [["status", "a", "b"], ["register"], ["curl", "http://x", "-H"]]:
            self.assertEqual(run([CLI, *args]).returncode, 2, args)


if __name__ == "__main__":
    unittest.main()
