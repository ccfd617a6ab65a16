"""/healthz, /readyz and /metrics on the real server. The metrics are read
with a strict parser of the Prometheus text exposition format (0.0.4)
written here from the format's spec, and the counters must move with the
traffic each test sends."""
import math
import time
import re
import unittest
import urllib.parse

from harness import (Provider, Server, ServerTest, claim_link, free_port, provider_overrides,
                     register_idjag)

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r'"((?:[^"\\\n]|\\\\|\\"|\\n)*)"'
SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$" % NAME)
LABEL_PAIR = re.compile(r"(%s)=%s(,|$)" % (LABEL, VALUE))


def parse_float(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$", text):
        raise ValueError("bad sample value %r" % text)
    return float(text)


def parse_exposition(text):
    """{family: {"type", "help", "samples": {(name, ((label, value), ...)): float}}};
    raises ValueError on anything the format does not allow."""
    if not text.endswith("\n"):
        raise ValueError("the exposition must end with a newline")
    families, current = {}, None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            continue
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % NAME, line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    raise ValueError("line %d: malformed %r" % (n, line))
                continue  # a plain comment
            kind, name, rest = m.groups()
            fam = families.setdefault(name, {"type": "untyped", "help": None, "samples": {}})
            if kind == "TYPE":
                if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError("line %d: unknown type %r" % (n, rest))
                if fam["samples"] or fam.get("typed"):
                    raise ValueError("line %d: TYPE after samples or twice" % n)
                fam["type"], fam["typed"] = rest, True
            else:
                if fam["help"] is not None:
                    raise ValueError("line %d: second HELP" % n)
                fam["help"] = rest
            current = name
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError("line %d: not a sample: %r" % (n, line))
        name, labels_text, value, _ts = m.groups()
        labels = []
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = LABEL_PAIR.match(labels_text, pos)
                if not lm:
                    raise ValueError("line %d: bad labels %r" % (n, labels_text))
                labels.append((lm.group(1), lm.group(2)))
                pos = lm.end()
            if len({k for k, _ in labels}) != len(labels):
                raise ValueError("line %d: a label twice" % n)
        base = name
        fam = families.get(current)
        if fam is not None and fam["type"] == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                if name == current + suffix:
                    base = current
        if fam is None or base != current:
            raise ValueError("line %d: sample %s outside its family" % (n, name))
        key = (name, tuple(labels))
        if key in fam["samples"]:
            raise ValueError("line %d: duplicate sample %r" % (n, key))
        v = parse_float(value)
        if fam["type"] == "counter" and (v < 0 or math.isnan(v)):
            raise ValueError("line %d: a counter must be >= 0" % n)
        fam["samples"][key] = v
    for name, fam in families.items():
        if fam["type"] == "histogram":
            check_histogram(name, fam)
    return families


def check_histogram(name, fam):
    series = {}
    for (sname, labels), v in fam["samples"].items():
        rest = tuple(kv for kv in labels if kv[0] != "le")
        s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if sname == name + "_bucket":
            le = dict(labels)["le"]
            s["buckets"].append((parse_float(le), v))
        elif sname == name + "_sum":
            s["sum"] = v
        elif sname == name + "_count":
            s["count"] = v
    for rest, s in series.items():
        b = sorted(s["buckets"])
        if not b or b[-1][0] != float("inf"):
            raise ValueError("%s%r: no +Inf bucket" % (name, rest))
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            raise ValueError("%s%r: buckets are not cumulative" % (name, rest))
        if s["count"] != b[-1][1] or s["sum"] is None:
            raise ValueError("%s%r: _count differs from the +Inf bucket" % (name, rest))


class ParserSelfTest(unittest.TestCase):
    """The parser refuses what the format forbids (so passing it means
    something)."""

    def test_refusals(self):
        for text in ("x 1", "# TYPE x counter\nx -1\n", "# TYPE x counter\nx{a=\"1\",a=\"2\"} 1\n",
                     "# TYPE x counter\nx{a=1} 1\n", "# TYPE x bogus\n", "x one\n",
                     "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                     "h_sum 1\nh_count 1\n", "# TYPE x counter\nx 1\nx 2\n"):
            with self.assertRaises(ValueError, msg=text):
                parse_exposition(text)
        fams = parse_exposition('# HELP x h\n# TYPE x counter\nx{a="q\\"z"} 3\n')
        self.assertEqual(fams["x"]["samples"], {("x", (("a", 'q\\"z'),)): 3.0})


class MetricsTest(ServerTest):
    OVERRIDES = {"limits": {"anonymous_per_ip": "2"}}

    def metrics(self):
        r = self.server.get("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return parse_exposition(r.body.decode())

    @staticmethod
    def value(fams, family, sample=None, **labels):
        fam = fams.get(family)
        if fam is None:
            raise AssertionError("no family %s" % family)
        want = tuple(sorted(labels.items()))
        for (name, ls), v in fam["samples"].items():
            if name == (sample or family) and tuple(sorted(ls)) == want:
                return v
        return 0.0

    def test_the_exposition_parses_and_counters_follow_the_traffic(self):
        before = self.metrics()
        for fam in ("authmd_http_requests_total", "authmd_http_request_duration_seconds",
                    "authmd_registrations_total", "authmd_claims_total",
                    "authmd_revocations_total", "authmd_gate_decisions_total",
                    "authmd_rate_limit_refusals_total", "authmd_jwks_fetches_total",
                    "authmd_store_commit_duration_seconds", "authmd_mail_queue_depth",
                    "authmd_store_writer_batch_duration_seconds",
                    "authmd_introspections_total"):
            self.assertIn(fam, before)
            self.assertTrue(before[fam]["help"], fam)
        self.assertEqual(before["authmd_mail_queue_depth"]["type"], "gauge")
        self.assertEqual(self.value(before, "authmd_mail_queue_depth"), 0)
        commits0 = self.value(before, "authmd_store_commit_duration_seconds",
                              "authmd_store_commit_duration_seconds_count")
        batches0 = self.value(before, "authmd_store_writer_batch_duration_seconds",
                              "authmd_store_writer_batch_duration_seconds_count")

        reg = self.server.register_anonymous()
        self.server.register_anonymous()
        self.assertEqual(self.server.post("/agent/auth", {"type": "anonymous"}).status, 429)
        self.assertEqual(self.server.get("/api/resource").status, 401)
        self.assertEqual(self.server.bearer("GET", "/api/resource", reg["credential"]).status,
                         200)
        self.assertEqual(self.server.bearer("POST", "/api/resource", reg["credential"],
                                            body={}).status, 403)
        self.assertEqual(self.server.start_claim(reg["claim_token"], "m@example.test").status,
                         200)
        otp = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        self.assertEqual(self.server.complete(reg["claim_token"], otp).status, 200)
        revoke = urllib.parse.urlencode({"token": reg["credential"]}).encode()
        self.assertEqual(self.server.request("POST", "/oauth2/revoke", raw=revoke,
                                             content_type="application/x-www-form-"
                                             "urlencoded").status, 200)
        self.assertEqual(self.server.get("/nowhere").status, 404)

        after = self.metrics()

        def moved(family, sample=None, **labels):
            return (self.value(after, family, sample, **labels) -
                    self.value(before, family, sample, **labels))
        self.assertEqual(moved("authmd_registrations_total", kind="anonymous"), 2)
        self.assertEqual(moved("authmd_rate_limit_refusals_total", limit="anonymous"), 1)
        self.assertEqual(moved("authmd_claims_total"), 1)
        self.assertEqual(moved("authmd_revocations_total", reason="agent"), 1)
        self.assertEqual(moved("authmd_gate_decisions_total", decision="no_credential"), 1)
        self.assertEqual(moved("authmd_gate_decisions_total", decision="allow"), 1)
        self.assertEqual(moved("authmd_gate_decisions_total", decision="insufficient_scope"), 1)
        self.assertEqual(moved("authmd_http_requests_total", route="/agent/auth",
                               status="200"), 2)
        self.assertEqual(moved("authmd_http_requests_total", route="/agent/auth",
                               status="429"), 1)
        self.assertEqual(moved("authmd_http_requests_total", route="unmatched",
                               status="404"), 1)
        self.assertEqual(moved("authmd_http_request_duration_seconds",
                               "authmd_http_request_duration_seconds_count",
                               route="/api/resource"), 3)
        self.assertGreaterEqual(
            self.value(after, "authmd_store_commit_duration_seconds",
                       "authmd_store_commit_duration_seconds_count") - commits0, 5)
        # the registrations, the claim and the revocation went through the
        # store writer: each of its batches is timed, jobs and commit
        batches = self.value(after, "authmd_store_writer_batch_duration_seconds",
                             "authmd_store_writer_batch_duration_seconds_count") - batches0
        self.assertGreaterEqual(batches, 3)
        self.assertEqual(after["authmd_store_writer_batch_duration_seconds"]["type"],
                         "histogram")
        self.assertGreater(self.value(after, "authmd_store_writer_batch_duration_seconds",
                                      "authmd_store_writer_batch_duration_seconds_sum"), 0)

    def test_health_and_readiness(self):
        r = self.server.get("/healthz")
        self.assertEqual((r.status, r.json["status"]), (200, "ok"))
        r = self.server.get("/readyz")
        self.assertEqual((r.status, r.json["status"], r.json["store"]), (200, "ready", "ok"))
        self.assertEqual(r.json["mail_queue"], {"depth": 0, "oldest_age_s": 0})


class MetricsAccessTest(ServerTest):
    OVERRIDES = {"metrics": {"allow": "10.0.0.0/8"}}

    def test_metrics_are_refused_outside_the_allow_list(self):
        self.assertError(self.server.get("/metrics"), 403, "access_denied")
        # Claiming to be forwarded from an allowed address changes nothing.
        r = self.server.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"})
        self.assertError(r, 403, "access_denied")
        self.assertEqual(self.server.get("/healthz").status, 200)


class JwksMetricsTest(unittest.TestCase):
    def test_jwks_fetches_are_counted_by_result(self):
        provider = Provider().start()
        self.addCleanup(provider.stop)
        server = Server(dict(provider_overrides(provider),
                             **{"provider dead": {"issuer": "http://127.0.0.1:9"}})).start()
        self.addCleanup(server.cleanup)
        tok = provider.sign(provider.claims(server))
        self.assertEqual(register_idjag(server, tok).status, 200)
        dead = provider.sign(provider.claims(server, iss="http://127.0.0.1:9"))
        self.assertNotEqual(register_idjag(server, dead).status, 200)
        fams = parse_exposition(server.get("/metrics").body.decode())
        self.assertGreaterEqual(MetricsTest.value(fams, "authmd_jwks_fetches_total",
                                                  result="ok"), 1)
        self.assertGreaterEqual(MetricsTest.value(fams, "authmd_jwks_fetches_total",
                                                  result="failed"), 1)


class StuckMailQueueTest(unittest.TestCase):
    """A relay that takes no mail: the queue holds the claim mail, /metrics
    shows its depth, and /readyz says not ready once the oldest mail is
    older than [mail] stuck_after."""

    def test_readyz_reports_a_stuck_mail_queue(self):
        closed = free_port()  # nothing listens: every send fails, temporarily
        server = Server({"mail": {"smtp_url": "smtp://127.0.0.1:%d" % closed,
                                  "starttls": "off", "stuck_after": "1"}}).start()
        self.addCleanup(server.cleanup)
        reg = server.register_anonymous()
        r = server.start_claim(reg["claim_token"], "stuck@example.test")
        self.assertEqual(r.status, 200, r)
        fams = parse_exposition(server.get("/metrics").body.decode())
        self.assertEqual(MetricsTest.value(fams, "authmd_mail_queue_depth"), 1)
        deadline = time.time() + 15
        while True:
            r = server.get("/readyz")
            if r.status != 200 or time.time() > deadline:
                break
            self.assertEqual(r.json["mail_queue"]["depth"], 1)
            time.sleep(0.2)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json["error"], "temporarily_unavailable")
        self.assertIn("mail queue is stuck", r.json["message"])
        self.assertIsNotNone(r.header("Retry-After"))
        self.assertEqual(server.get("/healthz").status, 200)  # alive, only not ready


if __name__ == "__main__":
    unittest.main()
