"""The Debian packages (issue 12): `dpkg-buildpackage -us -uc -b` on a copy
of the tree, lintian without errors, the packages' contents, and the
packaged server started from its own /etc/authmd/authmd.ini.

Slow (a full package build), so it runs only with AUTHMD_PACKAGE_TEST=1,
which `make check-package` sets; ctest skips it otherwise.

How the packages are "installed": `dpkg -x` into a temporary root, not
`dpkg -i` into this machine (a shared one, and the CI machine's packages
should not change under the other tests) nor a debootstrap chroot (it needs
the network and minutes). The packaged /etc/authmd/authmd.ini is used as
shipped except that its /var/lib/authmd paths and the port are moved into
the temporary root; the unmodified file must pass --check-config."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import Process, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
VERSION = "0.1.0"
PACKAGES = ["authmd-server", "authmd-provider", "authmd", "libauthmd-client0",
            "libauthmd-client-dev"]
ENABLED = os.environ.get("AUTHMD_PACKAGE_TEST") == "1"


def run(argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 1200)
    return subprocess.run(argv, **kw)


def deb(name):
    return "%s_%s_%s.deb" % (name, VERSION, run(["dpkg", "--print-architecture"]).stdout.strip())


def copy_tree(dest):
    """The tracked and new (not ignored) files of the work tree, so that the
    build sees uncommitted changes but no build directories."""
    r = run(["git", "-C", SOURCE_DIR, "ls-files", "-z", "-co", "--exclude-standard"])
    if r.returncode != 0:
        raise RuntimeError("git ls-files: " + r.stderr)
    for rel in filter(None, r.stdout.split("\0")):
        src = os.path.join(SOURCE_DIR, rel)
        if not os.path.isfile(src):
            continue  # deleted but not yet committed
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))


class PackagedServer(Process):
    def __init__(self, root, config, port):
        self.tmp = root
        self.root = root
        self.config = config
        self.port = port
        self.log_path = os.path.join(root, "server.log")

    def argv(self):
        return [os.path.join(self.root, "usr/sbin/authmd-server"), "--config", self.config]

    def ready(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/.well-known/oauth-protected-resource")
            return conn.getresponse().status == 200
        finally:
            conn.close()


@unittest.skipUnless(ENABLED, "the package build is slow: run `make check-package`")
class Packaging(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ["dpkg-buildpackage", "lintian", "dh"]:
            if shutil.which(tool) is None:
                raise unittest.SkipTest("%s is absent: `make deps-package` installs it" % tool)
        cls.tmp = tempfile.mkdtemp(prefix="authmd-deb-")
        src = os.path.join(cls.tmp, "authmd")
        copy_tree(src)
        env = dict(os.environ, DEB_BUILD_OPTIONS="parallel=2 nocheck")
        r = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env)
        if r.returncode != 0:
            raise RuntimeError("dpkg-buildpackage failed:\n%s\n%s" % (r.stdout[-6000:],
                                                                     r.stderr[-6000:]))
        cls.build_log = r.stdout + r.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def extract(self, *names):
        root = tempfile.mkdtemp(prefix="root-", dir=self.tmp)
        for name in names:
            r = run(["dpkg-deb", "-x", os.path.join(self.tmp, deb(name)), root])
            self.assertEqual(r.returncode, 0, r.stderr)
        return root

    def test_every_package_is_built(self):
        for name in PACKAGES:
            path = os.path.join(self.tmp, deb(name))
            self.assertTrue(os.path.exists(path), name)
            r = run(["dpkg-deb", "-f", path, "Package"])
            self.assertEqual(r.stdout.strip(), name)
        self.assertNotRegex(self.build_log, r"warning: ")  # the compiler's, or dh_missing's

    def test_lintian_reports_no_errors(self):
        changes = [f for f in os.listdir(self.tmp) if f.endswith(".changes")]
        self.assertEqual(len(changes), 1, changes)
        r = run(["lintian", "--fail-on", "error", os.path.join(self.tmp, changes[0])])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual([l for l in r.stdout.splitlines() if l.startswith("E:")], [])

    def test_server_package_layout_and_user(self):
        root = self.extract("authmd-server")
        for rel in ["etc/authmd/authmd.ini", "usr/sbin/authmd-server",
                    "lib/systemd/system/authmd-server.service", "usr/share/man/man8/authmd-server.8.gz",
                    "usr/share/man/man5/authmd.ini.5.gz", "usr/share/authmd/auth.md.tmpl"]:
            self.assertTrue(os.path.exists(os.path.join(root, rel)), rel)
        with open(os.path.join(root, "etc/authmd/authmd.ini")) as f:
            ini = f.read()
        self.assertIn("url = sqlite:/var/lib/authmd/authmd.db", ini)
        self.assertIn("outbox = /var/lib/authmd/outbox", ini)
        with open(os.path.join(root, "lib/systemd/system/authmd-server.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/sbin/authmd-server --config /etc/authmd/authmd.ini", unit)
        ctl = os.path.join(self.tmp, "ctl-server")
        run(["dpkg-deb", "-e", os.path.join(self.tmp, deb("authmd-server")), ctl])
        with open(os.path.join(ctl, "conffiles")) as f:
            self.assertIn("/etc/authmd/authmd.ini", f.read().split())
        with open(os.path.join(ctl, "postinst")) as f:
            postinst = f.read()
        self.assertRegex(postinst, r"adduser --system --group --home /var/lib/authmd")
        self.assertIn("deb-systemd-helper enable 'authmd-server.service'", postinst)

    def test_library_packages(self):
        root = self.extract("libauthmd-client0", "libauthmd-client-dev")
        pcs = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
               if f == "authmd-client.pc"]
        self.assertEqual(len(pcs), 1)
        with open(pcs[0]) as f:
            self.assertIn("prefix=/usr\n", f.read())
        self.assertTrue(os.path.exists(os.path.join(root, "usr/include/authmd/client.h")))
        r = run(["dpkg-deb", "-f", os.path.join(self.tmp, deb("authmd")), "Depends"])
        self.assertIn("libauthmd-client0 (>= %s)" % VERSION, r.stdout)

    def test_packaged_configs_pass_check_config_as_shipped(self):
        root = self.extract("authmd-server", "authmd-provider")
        for prog, ini in [("authmd-server", "authmd.ini"), ("authmd-provider", "provider.ini")]:
            r = run([os.path.join(root, "usr/sbin", prog), "--check-config",
                     os.path.join(root, "etc/authmd", ini)])
            self.assertEqual(r.returncode, 0, r.stderr)

    def test_packaged_server_starts_from_etc_authmd(self):
        root = self.extract("authmd-server", "authmd", "libauthmd-client0")
        state = os.path.join(root, "var/lib/authmd")
        os.makedirs(state)
        config = os.path.join(root, "etc/authmd/authmd.ini")
        port = free_port()
        with open(config) as f:
            ini = f.read()
        ini = ini.replace("/var/lib/authmd", state)
        ini = re.sub(r"(?m)^listen = .*$", "listen = 127.0.0.1:%d" % port, ini)
        ini = re.sub(r"(?m)^public_url = .*$", "public_url = http://127.0.0.1:%d" % port, ini)
        with open(config, "w") as f:
            f.write(ini)
        server = PackagedServer(root, config, port).start()
        try:
            self.assertTrue(os.path.exists(os.path.join(state, "authmd.db")))
            # The packaged CLI, on the packaged shared library.
            libdir = os.path.dirname([os.path.join(d, f) for d, _, fs in os.walk(root)
                                      for f in fs if f.startswith("libauthmd-client.so")][0])
            env = dict(os.environ, LD_LIBRARY_PATH=libdir,
                       AUTHMD_CREDENTIALS=os.path.join(root, "credentials.json"))
            r = run([os.path.join(root, "usr/bin/authmd"), "register",
                     "http://127.0.0.1:%d/api" % port, "--anonymous", "--json"], env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn('"method":"anonymous"', r.stdout.replace(" ", ""))
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
