"""SIGTERM under load: the server drains and exits 0, never aborts.

libmicrohttpd 0.9.75's MHD_quiesce_daemon, on an epoll thread pool, removes
the listening socket from each worker's epoll set while the worker, seeing
was_quiesced, removes it too; the loser gets ENOENT and MHD_PANICs ("Failed
to remove listen FD from epoll set", exit -6). The server's pool now
uses poll(), where the quiesce only wakes each worker.

The window is a few instructions wide, so the test widens it with a small
LD_PRELOAD shim (compiled here with cc) that makes the main thread's
EPOLL_CTL_DEL calls wait 20 ms first: the real program then runs as is,
only slower at that one point. With the old shutdown nearly every round
aborted (10 of 20); with poll() no epoll set holds the listening socket.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness

ROUNDS = 20
CLIENTS = 60
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

int
epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	static int (*real)(int, int, int, struct epoll_event *);

	if (real == NULL)
		real = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
	if (op == EPOLL_CTL_DEL && gettid() == getpid()) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	return real(epfd, op, fd, ev);
}
"""
REQUEST = (b"GET /.well-known/oauth-protected-resource HTTP/1.1\r\n"
           b"Host: 127.0.0.1\r\n\r\n")


def read_reply(sock, buf):
    """Reads one HTTP/1.1 reply with a Content-Length body; returns
    (status, rest of buf) or raises OSError when the server goes away."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return status, buf[length:]


def client(port, stop, counts, idx):
    """Keeps one kept-alive connection busy; every odd client reconnects
    after each few requests, so connections also arrive during the drain."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                buf = b""
                for _ in range(1000 if idx % 2 == 0 else 3):
                    if stop.is_set():
                        return
                    s.sendall(REQUEST)
                    status, buf = read_reply(s, buf)
                    counts[idx] += 1
                    if status != 200:
                        break
        except OSError:
            if stop.is_set():
                return
            time.sleep(0.01)


class SigtermUnderLoadTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="authmd-shim-")
        src = os.path.join(self.dir, "slow_del.c")
        self.shim = os.path.join(self.dir, "slow_del.so")
        with open(src, "w") as f:
            f.write(SHIM)
        cc = shutil.which("cc") or shutil.which("gcc")
        self.assertIsNotNone(cc, "a C compiler builds the test's shim")
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", self.shim, src, "-ldl"],
                       check=True)
        # harness.Server starts the program with this process's environment.
        self.saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "ASAN_OPTIONS")}
        os.environ["LD_PRELOAD"] = self.shim
        # The ASan build's runtime would insist on coming first.
        os.environ["ASAN_OPTIONS"] = ":".join(
            x for x in [self.saved["ASAN_OPTIONS"] or "", "verify_asan_link_order=0"] if x)

    def tearDown(self):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_sigterm_with_busy_keep_alive_clients_exits_0_without_a_panic(self):
        failed = []
        for rnd in range(ROUNDS):
            # Odd rounds: a small max_connections keeps the workers at their
            # share of it, where each takes the listening socket out of its
            # epoll set and puts it back over and over.
            server = {"threads": "4"}
            if rnd % 2 == 1:
                server["max_connections"] = "8"
            srv = harness.Server({"server": server}).start()
            stop = threading.Event()
            counts = [0] * CLIENTS
            threads = [threading.Thread(target=client, args=(srv.port, stop, counts, i),
                                        daemon=True) for i in range(CLIENTS)]
            try:
                for t in threads:
                    t.start()
                # The clients have had answers: the workers are busy.
                deadline = time.time() + 20
                while time.time() < deadline and sum(counts) < 2 * CLIENTS:
                    time.sleep(0.01)
                self.assertGreaterEqual(sum(counts), 2 * CLIENTS, "round %d: too few answers" % rnd)
                rc = srv.stop()
                log = srv.read_log()
                if rc != 0 or "Failed to remove listen FD" in log or "stopped" not in log:
                    tail = [ln for ln in log.splitlines() if "level=info req=" not in ln][-5:]
                    failed.append("round %d: exit %s: %s" % (rnd, rc, " | ".join(tail)))
            finally:
                stop.set()
                for t in threads:
                    t.join(10)
                srv.cleanup()
        self.assertEqual(failed, [], "%d of %d rounds failed:\n%s"
                         % (len(failed), ROUNDS, "\n".join(failed)))

if __name__ == "__main__":
    unittest.main()
