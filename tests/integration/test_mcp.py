"""`authmd mcp` driven as an MCP host drives it (JSON-RPC 2.0 over stdio, one
message a line, MCP revision 2025-06-18) against a live authmd-server and
authmd-provider: issue 15 item 5."""
import http.server
import json
import os
import queue
import subprocess
import threading
import unittest

from harness import RealProvider, Server, claim_link, free_port, provider_overrides
from test_agent_cli import AUTHMD, Cli, wait_for

TOOLS = {"authmd_discover", "authmd_register", "authmd_claim", "authmd_fetch", "authmd_status"}


class McpClient:
    """The host side: starts `authmd mcp`, writes requests, reads answers."""

    def __init__(self, cli, env=None):
        self.cli = cli
        self.stderr = open(os.path.join(cli.home, "mcp.stderr"), "w+")
        self.proc = subprocess.Popen([AUTHMD, *cli.pre, "mcp"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr,
                                     env=dict(cli.env, **(env or {})), bufsize=0)
        self.lines = queue.Queue()
        self.raw = []  # every line the server wrote, as text
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.raw.append(line.decode())
            self.lines.put(json.loads(line))  # every line must be JSON
        self.lines.put(None)

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg):
        self.send_raw(json.dumps(msg).encode() + b"\n")

    def recv(self, timeout=60):
        return self.lines.get(timeout=timeout)

    def request(self, method, params=None):
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        got = self.recv()
        assert got["id"] == self.next_id, got
        return got

    def initialize(self):
        got = self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                          "clientInfo": {"name": "test-host", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return got

    def tool(self, name, **arguments):
        got = self.request("tools/call", {"name": name, "arguments": arguments})
        assert "result" in got, got
        return got["result"]

    def close(self):
        """Ends the input, as a host that quits does; (exit code, stderr)."""
        if not self.stderr.closed:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            while self.lines.get(timeout=30) is not None:  # the reader saw the end
                pass
            self.proc.stdout.close()
            self.stderr.seek(0)
            self.err = self.stderr.read()
            self.stderr.close()
        return self.proc.returncode, self.err


def stored(cli):
    with open(cli.store) as f:
        return json.load(f)["credentials"]


class McpServiceTest(unittest.TestCase):
    def setUp(self):
        self.server = Server().start()
        self.cli = Cli(protocol="v0.1")  # the v0.1 claim ceremony
        self.url = self.server.url + "/api/resource"
        self.mcp = McpClient(self.cli)

    def tearDown(self):
        self.mcp.close()
        self.server.cleanup()

    def test_register_fetch_claim_fetch_a_write_route_and_never_show_the_credential(self):
        init = self.mcp.initialize()["result"]
        self.assertEqual(init["protocolVersion"], "2025-06-18")
        self.assertIn("tools", init["capabilities"])
        self.assertEqual(init["serverInfo"]["name"], "authmd")
        self.assertTrue(init["serverInfo"]["version"])

        tools = self.mcp.request("tools/list")["result"]["tools"]
        self.assertEqual({t["name"] for t in tools}, TOOLS)
        for t in tools:
            schema = t["inputSchema"]
            self.assertEqual(schema["type"], "object")
            self.assertFalse(schema["additionalProperties"])
            self.assertGreater(len(t["description"]), 40)
            for name, prop in schema["properties"].items():
                self.assertGreater(len(prop["description"]), 20, (t["name"], name))
        reg_schema = next(t for t in tools if t["name"] == "authmd_register")["inputSchema"]
        self.assertEqual(reg_schema["properties"]["method"]["enum"],
                         ["anonymous", "email", "provider"])
        self.assertEqual(reg_schema["required"], ["url", "method"])

        found = self.mcp.tool("authmd_discover", url=self.url)
        self.assertFalse(found["isError"])
        self.assertTrue(found["structuredContent"]["methods"]["anonymous"])

        reg = self.mcp.tool("authmd_register", url=self.url, method="anonymous")
        self.assertFalse(reg["isError"], reg)
        self.assertEqual(reg["structuredContent"]["scopes"], ["api.read"])
        self.assertTrue(reg["structuredContent"]["has_credential"])
        entry = stored(self.cli)[self.server.url + "/api/"]
        secrets = [entry["credential"], entry["claim_token"]]

        got = self.mcp.tool("authmd_fetch", url=self.url)
        self.assertFalse(got["isError"], got)
        self.assertEqual(got["structuredContent"]["status"], 200)
        self.assertEqual(got["structuredContent"]["body"]["scopes"], ["api.read"])

        # The write route: POST /api/resource needs api.write, which only a claim grants.
        got = self.mcp.tool("authmd_fetch", url=self.url, method="POST", body="{}")
        self.assertTrue(got["isError"])
        self.assertEqual(got["structuredContent"]["status"], 403)
        self.assertEqual(got["structuredContent"]["error"]["code"], "insufficient_scope")

        started = self.mcp.tool("authmd_claim", url=self.url, email="mo@example.test")
        self.assertFalse(started["isError"], started)
        self.assertIn("6-digit code", started["content"][0]["text"])
        mail = wait_for(lambda: self.server.outbox_messages())
        code = self.server.code_from_link(claim_link(mail[-1]))

        wrong = self.mcp.tool("authmd_claim", url=self.url, otp="000000" if code != "000000"
                              else "111111")
        self.assertTrue(wrong["isError"])
        self.assertEqual(wrong["structuredContent"]["error"]["code"], "otp_invalid")
        self.assertIn("That code didn't work", wrong["structuredContent"]["error"]["advice"])

        done = self.mcp.tool("authmd_claim", url=self.url, otp=code)
        self.assertFalse(done["isError"], done)
        self.assertEqual(done["structuredContent"]["claim_state"], "claimed")
        self.assertIn("api.write", done["structuredContent"]["scopes"])

        got = self.mcp.tool("authmd_fetch", url=self.url, method="POST", body="{}")
        self.assertFalse(got["isError"], got)
        self.assertEqual(got["structuredContent"]["status"], 200)
        self.assertEqual(got["structuredContent"]["body"]["scopes"], ["api.read", "api.write"])

        st = self.mcp.tool("authmd_status")
        self.assertEqual([c["claim_state"] for c in st["structuredContent"]["credentials"]],
                         ["claimed"])

        secrets.append(stored(self.cli)[self.server.url + "/api/"]["credential"])
        rc, err = self.mcp.close()
        self.assertEqual(rc, 0, err)
        out = "".join(self.mcp.raw)
        for secret in secrets:
            self.assertGreater(len(secret), 16)
            self.assertNotIn(secret, out)
            self.assertNotIn(secret, err)

    def test_email_registration_then_claim_with_the_code(self):
        self.mcp.initialize()
        reg = self.mcp.tool("authmd_register", url=self.url, method="email",
                            email="una@example.test")
        self.assertFalse(reg["isError"], reg)
        self.assertFalse(reg["structuredContent"]["has_credential"])
        got = self.mcp.tool("authmd_fetch", url=self.url)
        self.assertTrue(got["isError"])
        self.assertTrue(got["structuredContent"]["error"]["person_must_act"])
        code = self.server.code_from_link(claim_link(self.server.outbox_messages()[-1]))
        done = self.mcp.tool("authmd_claim", url=self.url, otp=code)
        self.assertTrue(done["structuredContent"]["has_credential"], done)
        got = self.mcp.tool("authmd_fetch", url=self.url)
        self.assertEqual(got["structuredContent"]["body"]["email"], "una@example.test")
        credential = stored(self.cli)[self.server.url + "/api/"]["credential"]
        self.assertNotIn(credential, "".join(self.mcp.raw))

    def test_protocol_faults_are_json_rpc_errors(self):
        m = self.mcp
        m.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        self.assertEqual(m.recv()["error"]["code"], -32600)  # before initialize
        m.initialize()
        m.send_raw(b"{not json\n")
        got = m.recv()
        self.assertEqual((got["id"], got["error"]["code"]), (None, -32700))
        m.send_raw(b'[{"jsonrpc":"2.0","id":5,"method":"ping"}]\n')
        self.assertEqual(m.recv()["error"]["code"], -32600)  # no batches in 2025-06-18
        m.send({"id": 6, "method": "ping"})
        self.assertEqual(m.recv()["error"]["code"], -32600)  # no "jsonrpc"
        m.send({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"})
        self.assertEqual(m.recv()["error"]["code"], -32600)
        m.send({"jsonrpc": "2.0", "method": "notifications/whatever"})  # never answered
        m.send({"jsonrpc": "2.0", "id": 99, "result": {}})  # a response: never answered
        m.send_raw(b"\n")
        self.assertEqual(m.request("ping")["result"], {})
        self.assertEqual(m.request("resources/list")["error"]["code"], -32601)
        for params in ({"name": "authmd_nope", "arguments": {}},
                       {"name": "authmd_fetch", "arguments": {}},
                       {"name": "authmd_fetch", "arguments": {"url": 7}},
                       {"name": "authmd_fetch", "arguments": {"url": self.url, "x": "y"}},
                       {"name": "authmd_fetch", "arguments": {"url": self.url,
                                                              "method": "BREW"}},
                       {"name": "authmd_fetch", "arguments": {"url": self.url, "headers":
                                                              {"Authorization": "Bearer x"}}},
                       {"name": "authmd_fetch", "arguments": {"url": self.url, "headers":
                                                              {"X-A": "1\r\nX-B: 2"}}},
                       {"name": "authmd_register", "arguments": {"url": self.url,
                                                                 "method": "email"}},
                       {"name": "authmd_register", "arguments": {"url": self.url,
                                                                 "method": "anonymous",
                                                                 "consent": "always"}},
                       {"name": "authmd_claim", "arguments": {"url": self.url}},
                       {"name": "authmd_status", "arguments": "all"},
                       {"arguments": {}}):
            got = m.request("tools/call", params)
            self.assertEqual(got.get("error", {}).get("code"), -32602, (params, got))
        self.assertEqual(m.request("initialize", {})["error"]["code"], -32602)

    def test_an_oversized_message_is_refused_and_the_server_goes_on(self):
        self.mcp.initialize()
        self.mcp.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"p":"'
                          + b"x" * (1024 * 1024) + b'"}}\n')
        got = self.mcp.recv()
        self.assertEqual((got["id"], got["error"]["code"]), (None, -32600))
        self.assertIn("too large", got["error"]["message"])
        self.assertEqual(self.mcp.request("ping")["result"], {})

    def test_tool_errors_carry_the_protocol_code(self):
        self.mcp.initialize()
        got = self.mcp.tool("authmd_fetch", url=self.url)
        self.assertTrue(got["isError"])
        self.assertTrue(got["structuredContent"]["error"]["person_must_act"])  # not registered
        got = self.mcp.tool("authmd_discover", url="http://127.0.0.1:9/x")
        self.assertTrue(got["isError"])
        self.assertEqual(got["structuredContent"]["error"]["code"], "temporarily_unavailable")
        got = self.mcp.tool("authmd_register", url=self.url, method="provider",
                            provider="http://127.0.0.1:9")
        self.assertTrue(got["isError"])
        self.assertEqual(got["structuredContent"]["error"]["code"], "provider_session_missing")


class _Echo(http.server.BaseHTTPRequestHandler):
    """An API that echoes the request's Authorization header back."""

    def do_GET(self):
        body = json.dumps({"you_sent": self.headers.get("Authorization"),
                           "header": {"Authorization": self.headers.get("Authorization")}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *a):
        pass


class McpRedactionTest(unittest.TestCase):
    def test_a_credential_echoed_by_the_api_is_redacted(self):
        port = free_port()
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Echo)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        cli = Cli()
        base = "http://127.0.0.1:%d/" % port
        secret = "sk_live_echoed_back_0123456789"
        os.makedirs(os.path.dirname(cli.store), mode=0o700)
        with open(cli.store, "w") as f:
            json.dump({"version": 1, "credentials": {base: {
                "resource": base, "method": "anonymous", "credential": secret,
                "credential_type": "api_key", "registration_id": "reg_x"}}}, f)
        os.chmod(cli.store, 0o600)
        mcp = McpClient(cli)
        try:
            mcp.initialize()
            got = mcp.tool("authmd_fetch", url=base + "thing")
            self.assertFalse(got["isError"], got)
            self.assertEqual(got["structuredContent"]["body"]["you_sent"], "Bearer [redacted]")
            self.assertNotIn(secret, "".join(mcp.raw))
        finally:
            mcp.close()
            httpd.shutdown()
            httpd.server_close()


class McpProviderTest(unittest.TestCase):
    def setUp(self):
        self.provider = RealProvider()
        self.session = self.provider.add_user("nia@example.test")
        self.provider.start()
        self.server = Server(dict(provider_overrides(self.provider),
                                  limits={"jwks_refetch_interval": "1"})).start()
        self.cli = Cli()
        self.url = self.server.url + "/api/resource"
        self.mcp = McpClient(self.cli, env={"AUTHMD_SESSION": self.session})
        self.mcp.initialize()

    def tearDown(self):
        self.mcp.close()
        self.server.cleanup()
        self.provider.cleanup()

    def test_consent_only_when_asked_and_fetch_recovers_from_a_revoked_credential(self):
        got = self.mcp.tool("authmd_register", url=self.url, method="provider",
                            provider=self.provider.url)
        self.assertTrue(got["isError"])
        self.assertEqual(got["structuredContent"]["error"]["code"], "consent_required")
        self.assertEqual(self.provider.grants(self.session), [])  # nothing made unasked

        got = self.mcp.tool("authmd_register", url=self.url, method="provider",
                            provider=self.provider.url, consent="always")
        self.assertFalse(got["isError"], got)
        self.assertTrue(got["structuredContent"]["consent"]["created"])
        first = self.mcp.tool("authmd_fetch", url=self.url)["structuredContent"]
        self.assertEqual(first["status"], 200)
        # Another grant for the service is revoked: the service drops this
        # user's credentials from the provider; the agent's consent stands.
        other = self.provider.grant(self.session, self.server.url, "once",
                                    self.server.url + "/agent/auth/revoke").json
        self.assertEqual(self.provider.request("DELETE", "/grants/" + other["id"],
                                               session=self.session).status, 200)
        wait_for(lambda: any(g.get("revocation", {}).get("status") == "delivered"
                             for g in self.provider.grants(self.session)))
        again = self.mcp.tool("authmd_fetch", url=self.url)
        self.assertFalse(again["isError"], again)
        self.assertEqual(again["structuredContent"]["status"], 200)
        self.assertNotEqual(again["structuredContent"]["body"]["credential_id"],
                            first["body"]["credential_id"])
        out = "".join(self.mcp.raw)
        self.assertNotIn(self.session, out)
        self.assertNotIn(stored(self.cli)[self.server.url + "/api/"]["credential"], out)


if __name__ == "__main__":
    unittest.main()
