"""The HTTP edge: how replies are framed, and how an over-limit body is
answered so that a client which writes everything before reading still
reads the error."""
import json
import socket
import unittest

from harness import ServerTest


def read_reply(s):
    """Reads one HTTP/1.1 reply with a Content-Length; (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a reply: %r" % data)
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


class JsonFramingTest(ServerTest):
    def test_every_json_reply_ends_with_a_newline(self):
        # Handler JSON, rendered errors, and the pre-serialised discovery documents.
        replies = [
            self.server.post("/agent/auth", {"type": "anonymous"}),
            self.server.post("/agent/auth", {"type": "magic"}),
            self.server.get("/no/such/thing"),
            self.server.get("/.well-known/oauth-protected-resource"),
            self.server.get("/.well-known/oauth-authorization-server"),
        ]
        for r in replies:
            self.assertEqual(r.header("Content-Type"), "application/json", r)
            self.assertTrue(r.body.endswith(b"\n"), r)
            self.assertFalse(r.body.endswith(b"\n\n"), r)
            json.loads(r.body)  # still one JSON document


class HeaderSizeTest(ServerTest):
    """A connection's memory is 16 KiB (core/limits.h AM_CONN_MEMORY_BYTES,
    issue 8: libmicrohttpd zeroes it on every request): request line and
    headers up to 12 KiB are served, and one past the pool gets 431."""

    def get_with_header(self, pad):
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        try:
            s.sendall(b"GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: x\r\n"
                      b"X-Pad: " + b"a" * pad + b"\r\n\r\n")
            return read_reply(s)
        finally:
            s.close()

    def test_headers_of_12_kib_are_served(self):
        status, headers, body = self.get_with_header(12 * 1024)
        self.assertEqual(status, 200)
        self.assertIn("issuer", json.loads(body))

    def test_headers_past_the_connection_memory_get_431(self):
        status, _, _ = self.get_with_header(17 * 1024)
        self.assertEqual(status, 431)
        status, _, _ = self.get_with_header(100)  # and the server goes on
        self.assertEqual(status, 200)


class LargerConnectionMemoryTest(HeaderSizeTest):
    """[server] connection_memory raises the header room for proxies that pass
    large headers (cookies) on."""
    OVERRIDES = {"server": {"connection_memory": "65536"}}

    def test_headers_past_the_connection_memory_get_431(self):
        self.assertEqual(self.get_with_header(40 * 1024)[0], 200)
        self.assertEqual(self.get_with_header(70 * 1024)[0], 431)


class WriteAllThenReadTest(ServerTest):
    """The default body cap (64 KiB) and a 2 MB body: the client sends every
    byte before it reads, as a naive client or `curl --data-binary` does."""

    def send_all_then_read(self, head, body):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small send buffer, as over a real network: the body cannot all
        # sit in kernel buffers, so the server must read it for sendall to end.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.settimeout(30)
        s.connect(("127.0.0.1", self.server.port))
        try:
            s.sendall(head + body)  # raises BrokenPipe/ConnectionReset if the server hung up
            return read_reply(s)
        finally:
            s.close()

    def test_a_2mb_body_with_content_length_gets_a_readable_413(self):
        body = b'{"type":"anonymous","pad":"' + b"x" * (2 * 1024 * 1024) + b'"}'
        head = (b"POST /agent/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        status, headers, reply = self.send_all_then_read(head, body)
        self.assertEqual(status, 413)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(json.loads(reply)["error"], "payload_too_large")

    def test_a_2mb_chunked_body_gets_a_readable_413(self):
        chunk = b"x" * 65536
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(32)) + b"0\r\n\r\n"
        head = (b"POST /agent/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        status, _, reply = self.send_all_then_read(head, body)
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(reply)["error"], "payload_too_large")

    def test_a_client_that_waits_for_100_continue_is_refused_at_once(self):
        # With Expect: 100-continue the client sends nothing until told to,
        # so the 413 can go out before any of the body.
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        try:
            s.sendall(b"POST /agent/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n")
            status, _, reply = read_reply(s)
        finally:
            s.close()
        self.assertEqual(status, 413)
        self.assertEqual(json.loads(reply)["error"], "payload_too_large")

    def test_the_server_still_serves_after_the_refusals(self):
        self.test_a_2mb_body_with_content_length_gets_a_readable_413()
        self.assertEqual(self.server.register_anonymous()["registration_type"], "anonymous")


if __name__ == "__main__":
    unittest.main()
