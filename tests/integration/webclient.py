"""A small browser for the service's pages, without a browser: a cookie
jar, the page forms' CSRF field, and sign-in by the code or link read from
the mail outbox. For HTTP-level tests of the pages (test_login.py and the
claim ceremony's); the real-browser tests are tests/browser/.

Cookies are kept by name and sent back on every request, as a browser on
one origin would; Set-Cookie with Max-Age=0 deletes one. Form posts carry
Origin: <public URL> and Sec-Fetch-Site: same-origin unless told not to.
"""
import re
import urllib.parse

from harness import text_part

CSRF_RE = re.compile(rb'name="csrf" value="([0-9a-f]{64})"')


def csrf_of(body):
    """The CSRF field of the (first) form on a page, or None."""
    m = CSRF_RE.search(body)
    return m.group(1).decode() if m else None


def hidden(body, name):
    """The value of a page's hidden input name, or None."""
    m = re.search(rb'name="' + re.escape(name.encode()) + rb'" value="([^"]*)"', body)
    return m.group(1).decode() if m else None


def login_code(msg):
    m = re.search(r"Your code: (\d{6})", text_part(msg))
    assert m, text_part(msg)
    return m.group(1)


def login_link(msg):
    m = re.search(r"(http://\S+/login/verify\?token=\S+)", text_part(msg))
    assert m, text_part(msg)
    return m.group(1)


class WebClient:
    def __init__(self, server, origin=None):
        self.server = server
        self.origin = origin or server.url
        self.cookies = {}
        self.set_cookie_lines = []  # every Set-Cookie seen, in order

    def _cookie_header(self):
        return "; ".join("%s=%s" % kv for kv in self.cookies.items())

    def _keep(self, r):
        for k, v in r.headers:
            if k.lower() != "set-cookie":
                continue
            self.set_cookie_lines.append(v)
            name, _, rest = v.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in v.lower().replace(" ", ""):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r

    def request(self, method, path, raw=None, headers=None, content_type=None):
        hdrs = dict(headers or {})
        if self.cookies and "Cookie" not in hdrs:
            hdrs["Cookie"] = self._cookie_header()
        return self._keep(self.server.request(method, path, raw=raw, headers=hdrs,
                                              content_type=content_type))

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def post_form(self, path, fields, csrf=None, same_origin=True, headers=None):
        """POSTs fields urlencoded; csrf is added as the form's token when
        given (pass the value from the page: csrf_of(page.body))."""
        fields = dict(fields)
        if csrf is not None:
            fields["csrf"] = csrf
        hdrs = dict(headers or {})
        if same_origin:
            hdrs.setdefault("Origin", self.origin)
            hdrs.setdefault("Sec-Fetch-Site", "same-origin")
        return self.request("POST", path, raw=urllib.parse.urlencode(fields).encode(),
                            headers=hdrs, content_type="application/x-www-form-urlencoded")

    def cookie(self, suffix):
        """The value of the cookie whose name ends with suffix (so both
        authmd_session and __Host-authmd_session match "authmd_session")."""
        for k, v in self.cookies.items():
            if k.endswith(suffix):
                return v
        return None

    # --- sign-in ---
    def ask_code(self, email, return_to=None):
        """GET /login, POST the email: the "check your email" page."""
        page = self.get("/login" + ("?" + urllib.parse.urlencode({"return_to": return_to})
                                    if return_to else ""))
        assert page.status == 200, page
        fields = {"email": email}
        if return_to:
            fields["return_to"] = return_to
        r = self.post_form("/login", fields, csrf=csrf_of(page.body))
        assert r.status == 200, r
        return r

    def sign_in(self, email, return_to=None):
        """The whole sign-in by the mailed code; returns the 303."""
        before = len(self.server.outbox_messages())
        page = self.ask_code(email, return_to)
        msgs = self.server.outbox_messages()
        assert len(msgs) == before + 1, msgs
        r = self.post_form("/login/verify", {"attempt": hidden(page.body, "attempt"),
                                             "code": login_code(msgs[-1])},
                           csrf=csrf_of(page.body))
        assert r.status == 303, r
        return r

    def sign_in_by_link(self, link):
        """Opens a mailed link and presses its button; returns the 303."""
        parts = urllib.parse.urlsplit(link)
        page = self.get(parts.path + "?" + parts.query)
        assert page.status == 200, page
        return self.post_form("/login/verify", {"token": hidden(page.body, "token")},
                              csrf=csrf_of(page.body))

    def signed_in_as(self):
        """The address GET /login says this browser is signed in as, or None."""
        r = self.get("/login")
        m = re.search(rb"Signed in as <strong>([^<]+)</strong>", r.body)
        return m.group(1).decode() if m else None

    def logout(self):
        page = self.get("/login")
        return self.post_form("/logout", {}, csrf=csrf_of(page.body))
