"""Runs one headless-Chromium scenario file (tests/browser/*.mjs) against a
real authmd-server started by the integration harness on 127.0.0.1.

    python3 run_browser.py login.mjs

The server's URL and outbox go to the script in AUTHMD_URL and
AUTHMD_OUTBOX; screenshots to AUTHMD_SCREENSHOT_DIR/<script> (default: the build
folder's screenshots/, i.e. build/screenshots/login/ for login.mjs). The browser runs with a
temporary HOME, so nothing outside the temporary folder is written, and
needs `npm ci` done in this folder (scripts/deps.sh does it) and Debian's
chromium."""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import BIN_DIR, Provider, Server, provider_overrides  # noqa: E402

CHROMIUM = os.environ.get("AUTHMD_CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node") or "/usr/bin/node"
# Scenario files that need a trusted agent provider (the C test double, its
# users linked by email): its URL goes to the script in AUTHMD_PROVIDER.
WITH_PROVIDER = {"firstlink.mjs"}


def main(script, overrides=None):
    missing = [what for what, ok in (
        ("node", os.path.exists(NODE)),
        ("chromium (" + CHROMIUM + ")", os.path.exists(CHROMIUM)),
        ("playwright-core (npm ci in tests/browser)",
         os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core"))),
    ) if not ok]
    if missing:
        print("browser tests need: %s; run scripts/deps.sh" % ", ".join(missing))
        return 1
    shots = os.environ.get("AUTHMD_SCREENSHOT_DIR",
                           os.path.join(os.path.abspath(BIN_DIR), "screenshots"))
    # One folder per scenario file, emptied first: what it holds is this run's.
    shots = os.path.join(shots, os.path.splitext(os.path.basename(script))[0])
    shutil.rmtree(shots, ignore_errors=True)
    os.makedirs(shots)
    home = tempfile.mkdtemp(prefix="authmd-browser-")
    provider = None
    if os.path.basename(script) in WITH_PROVIDER:
        provider = Provider().start()
        overrides = dict(overrides or {})
        overrides.update(provider_overrides(provider, link_by_email="on"))
    server = Server(overrides).start()
    try:
        env = dict(os.environ, AUTHMD_URL=server.url, AUTHMD_OUTBOX=server.outbox,
                   AUTHMD_PROVIDER=provider.url if provider is not None else "",
                   AUTHMD_SCREENSHOT_DIR=shots, AUTHMD_CHROMIUM=CHROMIUM, HOME=home,
                   XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   XDG_CACHE_HOME=os.path.join(home, ".cache"), TMPDIR=home)
        rc = subprocess.call([NODE, os.path.join(HERE, script)], cwd=HERE, env=env,
                             timeout=600)
        print("screenshots in %s" % shots)
    finally:
        status = server.stop()
        if rc != 0 or status not in (0, None):
            print(server.read_log()[-6000:])
        shutil.rmtree(server.tmp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
        if provider is not None:
            provider.stop()
    if status not in (0, None):
        print("the server did not exit cleanly: %r" % status)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
