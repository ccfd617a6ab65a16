"""A real SMTP server on 127.0.0.1 (Debian's python3-aiosmtpd) that keeps
every message it receives, for tests of the SMTP mail path."""
import email
import email.policy
import threading

from aiosmtpd.controller import Controller

from harness import free_port


class _Handler:
    def __init__(self):
        self.messages = []
        self.envelopes = []
        self.cv = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        with self.cv:
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.messages.append(email.message_from_bytes(envelope.content,
                                                          policy=email.policy.default))
            self.cv.notify_all()
        return "250 OK"


class SmtpSink:
    def __init__(self):
        self.handler = _Handler()
        self.port = free_port()
        # server_hostname: without it aiosmtpd asks DNS for this host's FQDN,
        # which stalls on a machine without a resolver.
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="sink.test")

    @property
    def url(self):
        return "smtp://127.0.0.1:%d" % self.port

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def wait_for(self, count, timeout=10):
        with self.handler.cv:
            self.handler.cv.wait_for(lambda: len(self.handler.messages) >= count, timeout)
            return list(self.handler.messages)
