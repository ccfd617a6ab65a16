"""Client ID Metadata Documents (issue 15 item 1): an ID-JAG whose client_id
is a URL on the provider's origin is accepted when the document there
resolves, without a client_ids line; faulty documents, foreign origins and
redirects are refused; a CIMD host that hangs stalls only the requests that
name it. The test provider serves the documents (tests/tools/testprovider.c)."""
import os
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (SERVER, Provider, Server, claim_link, provider_overrides, register_idjag)


class CimdBase(unittest.TestCase):
    SERVER_OVERRIDES = {}
    PROVIDER_KEYS = {}

    def setUp(self):
        self.provider = Provider().start()
        self.others = []
        self.server = self.start_server()

    def start_server(self, **provider_keys):
        keys = dict(self.PROVIDER_KEYS)
        keys.update(provider_keys)
        overrides = provider_overrides(self.provider, **keys)
        for k, v in self.SERVER_OVERRIDES.items():
            overrides.setdefault(k, {}).update(v)
        return Server(overrides).start()

    def tearDown(self):
        try:
            self.provider._call("POST", "/release", {})
        except OSError:
            pass
        rc = self.server.stop()
        self.server.cleanup()
        self.provider.stop()
        for p in self.others:
            p.stop()
        self.assertEqual(rc, 0)

    def other_provider(self):
        p = Provider().start()
        self.others.append(p)
        return p

    def register(self, client_id, sub="user-1", server=None):
        server = server or self.server
        claims = self.provider.claims(server, client_id=client_id, sub=sub,
                                      email=sub + "@example.test")
        return register_idjag(server, self.provider.sign(claims))

    def fetches(self, provider=None):
        return (provider or self.provider).stats()["cimd_fetches"]

    def assertError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json["error"], code, r.json)
        self.assertTrue(r.json["message"])


class ResolutionTest(CimdBase):
    def test_a_cimd_url_registers_with_no_client_ids_line_and_is_cached(self):
        url = self.provider.url + "/agent-auth.json"
        r = self.register(url)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["registration_type"], "agent-provider")
        self.assertEqual(self.fetches(), 1)
        # The same document again comes from the cache (max-age 600).
        self.assertEqual(self.register(url, sub="user-2").status, 200)
        self.assertEqual(self.fetches(), 1)
        created = [e for e in self.server.audit_events() if e["event"] == "registration.created"]
        self.assertEqual(created[0]["client_id"], url)
        self.assertEqual(created[0]["client_name"], "Test Agent <b>&</b>")
        self.assertEqual(created[0]["client_logo_uri"], "https://agent.example.test/logo.png")

    def test_the_issuer_itself_still_needs_no_document(self):
        self.assertEqual(self.register(self.provider.url).status, 200)
        self.assertEqual(self.fetches(), 0)
        created = [e for e in self.server.audit_events() if e["event"] == "registration.created"]
        self.assertEqual(created[0]["client_id"], self.provider.url)
        self.assertIsNone(created[0].get("client_name"))

    def test_faulty_documents_are_refused(self):
        for path in ("/cimd/wrong-id", "/cimd/redirect", "/cimd/big", "/cimd/not-json"):
            before = self.fetches()
            self.assertError(self.register(self.provider.url + path), 400, "invalid_client_id")
            # One request each: the redirect's target was not fetched.
            self.assertEqual(self.fetches(), before + 1, path)
        # Refusals are remembered ([cimd] negative_cache): no second fetch.
        before = self.fetches()
        r = self.register(self.provider.url + "/cimd/redirect")
        self.assertIn("redirect", r.json["message"])
        r = self.register(self.provider.url + "/cimd/big")
        self.assertIn("larger than", r.json["message"])
        self.assertEqual(self.fetches(), before)

    def test_a_document_that_is_not_there_is_refused(self):
        self.assertError(self.register(self.provider.url + "/nothing-here.json"), 400,
                         "invalid_client_id")

    def test_urls_that_cannot_name_a_document_are_refused_without_a_fetch(self):
        base = self.provider.url
        for cid in (base + "/", base + "/a/../agent-auth.json", base + "/agent-auth.json?x=1",
                    base + "/agent-auth.json#f", "https://nope.test/agent-auth.json",
                    "not a url"):
            self.assertError(self.register(cid), 400, "invalid_client_id")
        self.assertEqual(self.fetches(), 0)

    def test_a_foreign_origin_is_refused_without_a_fetch(self):
        other = self.other_provider()
        r = self.register(other.url + "/agent-auth.json")
        self.assertError(r, 400, "invalid_client_id")
        self.assertIn("origin", r.json["message"])
        self.assertEqual(self.fetches(other), 0)

    def test_an_origin_the_operator_allows_is_accepted(self):
        other = self.other_provider()
        self.server.stop()
        self.server.cleanup()
        self.server = self.start_server(cimd_origins=other.url)
        url = other.url + "/agent-auth.json"
        # other's document names other's URL: it resolves for this provider.
        self.assertEqual(self.register(url).status, 200)
        self.assertEqual(self.fetches(other), 1)

    def test_widening_the_cimd_origins_is_a_trust_list_change(self):
        self.server.stop()
        with open(self.server.config, "a") as f:
            f.write("[provider test]\ncimd_origins = https://agents.example.test\n")
        self.server.start()
        self.assertIn("trust list changed provider=test changed", self.server.read_log())
        events = [e for e in self.server.audit_events() if e["event"] == "trust_list.changed"]
        self.assertEqual(events[-1]["providers"], {"test": "changed"})


class PinnedTest(CimdBase):
    PROVIDER_KEYS = {"client_ids": "urn:pinned:agent"}

    def test_client_ids_pins_exact_values(self):
        self.assertEqual(self.register("urn:pinned:agent").status, 200)
        self.assertError(self.register(self.provider.url + "/agent-auth.json"), 400,
                         "invalid_client_id")
        self.assertError(self.register(self.provider.url), 400, "invalid_client_id")
        self.assertEqual(self.fetches(), 0)


class SwitchedOffTest(CimdBase):
    PROVIDER_KEYS = {"cimd": "off"}

    def test_cimd_off_accepts_only_the_issuer(self):
        self.assertError(self.register(self.provider.url + "/agent-auth.json"), 400,
                         "invalid_client_id")
        self.assertEqual(self.register(self.provider.url).status, 200)
        self.assertEqual(self.fetches(), 0)


def wait_for(pred, what, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class HangingHostTest(CimdBase):
    # Two workers, and a fetch budget long enough that everything below
    # finishes well inside it.
    SERVER_OVERRIDES = {"server": {"threads": "2"}, "cimd": {"fetch_timeout": "20"}}

    def test_a_hanging_host_stalls_only_the_requests_that_name_it(self):
        hang = self.provider.url + "/cimd/hang"
        results = {}

        def call(name, sub):
            results[name] = self.register(hang, sub=sub)

        credential = self.server.register_anonymous()["credential"]
        first = threading.Thread(target=call, args=("hang-0", "hang-0"))
        first.start()
        wait_for(lambda: self.provider.stats()["cimd_hangs"] == 1, "the fetch to hang")
        # Five requests now wait for that one fetch, more than there are
        # workers: none of them holds one (they are parked).
        waiting = [first]
        for i in range(1, 5):
            t = threading.Thread(target=call, args=("hang-%d" % i, "hang-%d" % i))
            t.start()
            waiting.append(t)
        # While they wait: another document, discovery, the bearer check
        # and another flow all answer, on the same provider and cache.
        for _ in range(3):
            self.assertEqual(self.server.get("/.well-known/oauth-authorization-server").status,
                             200)
            b = self.server.bearer("GET", "/api/resource", credential)
            self.assertEqual(b.status, 200, b)
        self.assertEqual(self.register(self.provider.url + "/agent-auth.json",
                                       sub="other").status, 200)
        self.assertIn("credential", self.server.register_anonymous())
        self.assertEqual(sorted(results), [], "a request naming the hanging host was answered")
        self.assertTrue(all(t.is_alive() for t in waiting))
        self.provider._call("POST", "/release", {})
        for t in waiting:
            t.join(60)
        for i in range(5):
            r = results["hang-%d" % i]
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["registration_type"], "agent-provider")
        # One fetch of the hanging URL: the others waited for it.
        self.assertEqual(self.provider.stats()["cimd_hangs"], 1)

    def test_sigterm_while_requests_wait_for_a_document_answers_them_and_exits(self):
        hang = self.provider.url + "/cimd/hang"
        results = {}

        def call(name):
            try:
                results[name] = self.register(hang, sub=name)
            except OSError as exc:
                results[name] = exc

        threads = [threading.Thread(target=call, args=("s%d" % i,)) for i in range(3)]
        threads[0].start()
        wait_for(lambda: self.provider.stats()["cimd_hangs"] == 1, "the fetch to hang")
        for t in threads[1:]:
            t.start()
        time.sleep(0.2)  # let them park; not a speed check
        self.server.proc.terminate()
        for t in threads:
            t.join(60)
        self.provider._call("POST", "/release", {})
        self.assertEqual(self.server.stop(), 0)
        for name, r in results.items():
            if not isinstance(r, OSError):
                self.assertEqual(r.status, 503, (name, r))
        self.server.start()  # tearDown stops it again


class FetchCapTest(CimdBase):
    # Two workers: a hanging fetch takes none of them, so another document
    # is fetched and registers meanwhile.
    SERVER_OVERRIDES = {"server": {"threads": "2"}, "cimd": {"fetch_timeout": "20"}}

    def test_a_hanging_fetch_takes_no_worker(self):
        results = {}

        def call():
            results["hang"] = self.register(self.provider.url + "/cimd/hang", sub="hang-1")

        first = threading.Thread(target=call)
        first.start()
        wait_for(lambda: self.provider.stats()["cimd_hangs"] == 1, "the fetch to hang")
        r = self.register(self.provider.url + "/agent-auth.json", sub="other")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.server.get("/auth.md").status, 200)
        self.assertIn("credential", self.server.register_anonymous())
        self.assertTrue(first.is_alive())
        self.provider._call("POST", "/release", {})
        first.join(60)
        self.assertEqual(results["hang"].status, 200, results["hang"])


class FailedFetchTest(CimdBase):
    SERVER_OVERRIDES = {"cimd": {"fetch_timeout": "1", "negative_cache": "60"}}

    def test_a_fetch_that_times_out_is_503_and_briefly_cached(self):
        hang = self.provider.url + "/cimd/hang"
        r = self.register(hang)
        self.assertError(r, 503, "temporarily_unavailable")
        self.assertTrue(r.header("Retry-After"))
        # Cached: the next request is refused without a second fetch.
        self.assertError(self.register(hang, sub="user-2"), 503, "temporarily_unavailable")
        self.assertEqual(self.provider.stats()["cimd_hangs"], 1)


class ClaimPageTest(CimdBase):
    """Issue 15: what a resolved document says about the agent is kept with
    the registration and shown, escaped, on the claim pages of a first
    link; the page may load images from the logo's origin and no other."""
    PROVIDER_KEYS = {"link_by_email": "on"}

    def existing_user(self, address):
        s = self.server
        reg = s.register_anonymous()
        self.assertEqual(s.start_claim(reg["claim_token"], address).status, 200)
        otp = s.code_from_link(claim_link(s.outbox_messages()[-1]))
        self.assertEqual(s.complete(reg["claim_token"], otp).status, 200)

    def first_link(self, path, sub):
        s = self.server
        self.existing_user(sub + "@example.test")
        r = self.register(self.provider.url + path, sub=sub)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "interaction_required")
        return r.json, claim_link(s.outbox_messages()[-1])

    def test_the_claim_page_shows_the_escaped_client_name_and_allows_only_the_logo_origin(self):
        s = self.server
        body, link = self.first_link("/cimd/script", "cara")
        url = self.provider.url + "/cimd/script"
        self.assertEqual(s.db_query(
            "SELECT client_id, client_name, logo_uri FROM registration_clients "
            "WHERE registration_id = ?", (body["registration_id"],)),
            [(url, "<script>alert(1)</script> Agent", "https://agent.example.test/logo.png")])
        page = s.get(link[len(s.url):])
        self.assertEqual(page.status, 200, page)
        html = page.body.decode()
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt; Agent", html)
        self.assertNotIn("<script", html)
        self.assertIn('<img src="https://agent.example.test/logo.png"', html)
        csp = page.header("Content-Security-Policy")
        self.assertIn("img-src https://agent.example.test;", csp)
        self.assertEqual(csp.count("img-src"), 1)
        self.assertIn("default-src 'none'", csp)
        self.assertEqual(page.header("Referrer-Policy"), "no-referrer")
        # The code page names the agent the same way.
        token = link.split("token=", 1)[1]
        shown = s.challenge_form(token)
        self.assertEqual(shown.status, 200, shown)
        self.assertIn(b"&lt;script&gt;alert(1)&lt;/script&gt; Agent", shown.body)
        self.assertIn("img-src https://agent.example.test;",
                      shown.header("Content-Security-Policy"))
        # The registration's audit event carries the name and the logo.
        created = [e for e in s.audit_events() if e["event"] == "registration.created"
                   and e.get("registration_id") == body["registration_id"]]
        self.assertEqual(created[0]["client_name"], "<script>alert(1)</script> Agent")
        self.assertEqual(created[0]["client_logo_uri"], "https://agent.example.test/logo.png")

    def test_a_claim_page_without_a_document_loads_no_image(self):
        s = self.server
        reg = s.register_anonymous()
        self.assertEqual(s.start_claim(reg["claim_token"], "noimg@example.test").status, 200)
        link = claim_link(s.outbox_messages()[-1])
        page = s.get(link[len(s.url):])
        self.assertEqual(page.status, 200, page)
        self.assertNotIn(b"<img", page.body)
        self.assertNotIn("img-src", page.header("Content-Security-Policy"))
        self.assertEqual(s.db_query("SELECT COUNT(*) FROM registration_clients"), [(0,)])


class ConfigTest(unittest.TestCase):
    def test_bad_cimd_settings_stop_start_up(self):
        for text, key in (("[cimd]\ncache_min = 600\ncache_max = 60\n", "cache_min"),
                          ("[cimd]\nfetch_timeout = 0\n", "fetch_timeout"),
                          ("[provider p]\nissuer = https://p.test\n"
                           "cimd_origins = https://a.test/path\n", "cimd_origins")):
            with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
                f.write(text)
            try:
                r = subprocess.run([SERVER, "--check-config", f.name], capture_output=True,
                                   text=True, timeout=30)
                self.assertNotEqual(r.returncode, 0, text)
                self.assertIn(key, r.stderr, text)
            finally:
                os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
