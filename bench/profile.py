#!/usr/bin/env python3
"""Per-request cost of one bench row, counted rather than timed.

    python3 bench/profile.py --build build ROW [--tool callgrind|strace|cpu] [--seconds N]

ROW is one of: metadata, bearer-key, bearer-token, anonymous, idjag-same, idjag-distinct,
gate. The server runs exactly as in `make bench` (bench/bench.py's setup),
but under valgrind's callgrind (instructions, with call graph) or under
`strace -c -f` (system calls), or sampled by `perf record -g` at full
speed (`--tool perf`: the top symbols per thread). The counters are zeroed once the row's
credentials exist, so only the row's own requests are counted; the output is
the instructions (or system calls) per answered request, and for callgrind
the file to read with `callgrind_annotate --inclusive=yes`. wrk runs with
8 connections: under valgrind the server is about 50 times slower, and the
figure wanted is a count per request, not a rate. Loopback only, like the
bench. `--tool cpu` runs the plain server at full speed with the bench's 64
connections and reads its CPU time (user + system, from /proc) over the row:
CPU microseconds per request, per thread name, which is what the poll loop,
the writer and the workers cost under the bench's real concurrency. See
docs/performance.md.
"""
import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  the bench's processes, credentials and wrk driver

ROWS = {
    "metadata": (bench.AS_METADATA, ["get"], None),
    "bearer-key": ("/api/resource", ["get"], "api_key"),
    "bearer-token": ("/api/resource", ["get"], "access_token"),
    "gate": ("/api/resource", ["get"], "api_key"),
    "anonymous": ("/agent/auth", ["anonymous"], None),
    "idjag-same": ("/agent/auth", None, "same"),
    "idjag-distinct": ("/agent/auth", None, "distinct"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("row", choices=sorted(ROWS))
    ap.add_argument("--build", default=os.path.join(bench.ROOT, "build"))
    ap.add_argument("--tool", choices=("callgrind", "strace", "cpu", "perf"),
                    default="callgrind")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--out", default=None, help="where the callgrind/strace file goes")
    args = ap.parse_args()
    if args.tool not in ("cpu", "perf"):  # BENCH_CONNS set in the environment wins
        os.environ.setdefault("BENCH_CONNS", "8")
    b = bench.Bench(args.build)
    out = args.out or os.path.join(b.tmp, "profile.out")
    try:
        b.start()  # the plain server: setup at full speed, then restart under the tool
        creds = {"api_key": b.claimed_api_key(), "access_token": b.access_token()}
        if args.tool == "callgrind":  # restart under valgrind
            b.server.stop()
            plain_argv = b.server.argv
            wrap = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                    "--dump-instr=no"]
            b.server.argv = lambda: wrap + plain_argv()
            b.launch()
        path, wrk_args, cred = ROWS[args.row]
        warm_args = wrk_args
        if wrk_args is None:  # own tokens for the warm-up: the row's must not be replays
            warm_args = ["idjag", b.mint(4000, cred), "access_token"]
            # No openssl row here: 10 k/s stands in for the verify rate.
            n = b.token_count(args.seconds, 10000)
            wrk_args = ["idjag", b.mint(n, cred), "access_token"]
            cred = None
        bearer = creds[cred] if cred in creds else None
        url = b.nginx.gate_url if args.row == "gate" else b.server.url
        vg = b.server.proc.pid
        if args.tool == "callgrind":
            b.wrk(url, path, warm_args, seconds=1, bearer=bearer)  # warm: caches, first pages
            subprocess.run(["callgrind_control", "-z", str(vg)], check=True,
                           stdout=subprocess.DEVNULL)
            r = b.wrk(url, path, wrk_args, seconds=args.seconds, bearer=bearer)
            subprocess.run(["callgrind_control", "-d", str(vg)], check=True,
                           stdout=subprocess.DEVNULL)
        elif args.tool == "cpu":
            b.wrk(url, path, warm_args, seconds=1, bearer=bearer)
            before, io0, commits0 = thread_cpu(vg), proc_io(vg), commits(b.server.url)
            r = b.wrk(url, path, wrk_args, seconds=args.seconds, bearer=bearer)
            after, io1, commits1 = thread_cpu(vg), proc_io(vg), commits(b.server.url)
            rss = bench.rss_mib(vg)
        elif args.tool == "perf":  # sampled at full speed, every thread, with call graphs
            b.wrk(url, path, warm_args, seconds=1, bearer=bearer)
            st = subprocess.Popen(["perf", "record", "-q", "--call-graph",
                                   os.environ.get("PERF_CALLGRAPH", "fp"), "-F", "999", "-o", out,
                                   "-p", str(vg)], stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            r = b.wrk(url, path, wrk_args, seconds=args.seconds, bearer=bearer)
            st.send_signal(signal.SIGINT)
            st.wait(timeout=120)
        else:  # attach to every thread of the running server for the row only
            st = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p", str(vg)],
                                  stderr=subprocess.DEVNULL)
            time.sleep(1)
            r = b.wrk(url, path, wrk_args, seconds=args.seconds, bearer=bearer)
            st.send_signal(signal.SIGINT)
            st.wait(timeout=60)
        n = r["requests"]
        b.server.stop()
        b.server.proc = None
        if args.tool == "callgrind":
            parts = sorted(glob.glob(out + "*"), key=os.path.getmtime)
            total = 0
            for p in parts:
                with open(p) as f:
                    txt = f.read()
                if "Trigger: dump" not in txt:  # the -d after the row
                    continue
                m = re.search(r"^summary:\s+(\d+)", txt, re.M) or \
                    re.search(r"^totals:\s+(\d+)", txt, re.M)
                total += int(m.group(1)) if m else 0
            print("%s: %d requests (%d non-2xx), %.0f instructions per request; %s" % (
                args.row, n, r["status_errors"], total / max(n, 1), " ".join(parts)))
        elif args.tool == "cpu":
            names = {}
            for tid, (name, t) in after.items():
                names[name] = names.get(name, 0.0) + t - before.get(tid, (name, 0.0))[1]
            total = sum(names.values())
            print("%s: %d requests (%d non-2xx), %.1f req/s, %.1f CPU us per request, "
                  "RSS %s MiB" % (args.row, n, r["status_errors"], n / args.seconds,
                                  1e6 * total / max(n, 1), rss))
            for name, t in sorted(names.items(), key=lambda kv: -kv[1]):
                print("  %-16s %8.1f us per request" % (name, 1e6 * t / max(n, 1)))
            nc = commits1[0] - commits0[0]
            print("  written: %.0f bytes in %.1f write calls per request (database, WAL, "
                  "logs); %d commits, %.1f requests per commit" % (
                      (io1["wchar"] - io0["wchar"]) / max(n, 1),
                      (io1["syscw"] - io0["syscw"]) / max(n, 1), nc, n / max(nc, 1)))
            # The writer is one thread: held + idle = the row's wall time.
            # Held near 100 % means the writer, not the workers, sets the rate.
            print("  store writer busy %.0f %% of the row (COMMIT with its fsync %.0f %%)" % (
                100 * (commits1[2] - commits0[2]) / args.seconds,
                100 * (commits1[1] - commits0[1]) / args.seconds))
        elif args.tool == "perf":
            print("%s: %d requests (%d non-2xx), %.1f req/s; perf report -i %s" % (
                args.row, n, r["status_errors"], n / args.seconds, out))
            rep = subprocess.run(["perf", "report", "-i", out, "--no-children", "--stdio",
                                  "-g", "none", "--percent-limit", "0.7",
                                  "--sort", "comm,dso,sym"],
                                 capture_output=True, text=True)
            print("\n".join(ln for ln in rep.stdout.splitlines()
                            if ln.strip() and not ln.startswith("#")))
        else:
            with open(out) as f:
                txt = f.read()
            m = re.search(r"^100.00\s+[\d.]+\s+\d+\s+(\d+)", txt,
                          re.M)
            calls = int(m.group(1)) if m else 0
            print("%s: %d requests (%d non-2xx), %.2f system calls per request "
                  "(all threads); %s" % (args.row, n, r["status_errors"],
                                                           calls / max(n, 1), out))
            print(txt)
    finally:
        b.keep = b.keep or os.path.dirname(os.path.abspath(out)) == b.tmp  # the output is there
        b.stop()
    return 0


def proc_io(pid):
    """The process's /proc/PID/io counters (wchar: bytes passed to write calls)."""
    with open("/proc/%d/io" % pid) as f:
        return {k: int(v) for k, v in (ln.split(":") for ln in f if ":" in ln)}


def commits(url):
    """(commits so far, seconds spent in COMMIT, seconds the writer held its
    batches): from the commit-time and batch-hold histograms."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        txt = r.read().decode()

    def metric(name):
        m = re.search(r"^%s(?:\{[^}]*\})? (\S+)" % name, txt, re.M)
        return float(m.group(1)) if m else 0.0
    return (int(metric("authmd_store_commit_duration_seconds_count")),
            metric("authmd_store_commit_duration_seconds_sum"),
            metric("authmd_store_writer_batch_duration_seconds_sum"))


def thread_cpu(pid):
    """{tid: (thread name, user + system seconds)} of every thread of pid."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read()
        except OSError:
            continue  # the thread ended
        name = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


if __name__ == "__main__":
    sys.exit(main())
