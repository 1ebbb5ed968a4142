#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""test_outlook_sim.py SRCDIR - self-test of tests/sim/outlook_sim.py.

Makes the test CA (tests/fixtures/mkca.sh) in a temporary directory, starts
the simulator (--second-ms 20: one protocol second is 20 ms), and checks with
imaplib / poplib / smtplib and raw sockets (where the library hides the wire)
that the canned texts of OUTLOOK.md and every switchable behaviour of §5.2 come
out exactly. Tokens: one device flow played against the embedded fake IdP
(devicecode -> /control/approve -> token), then the test-only mint
(POST /sim/mint {"user": U, "scope": S?, "expires_in": N?}).
Exit 0 when every check passes.
"""
import base64
import imaplib
import json
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import urllib.request

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
SIM = os.path.join(SRC, "tests", "sim", "outlook_sim.py")
MKCA = os.path.join(SRC, "tests", "fixtures", "mkca.sh")
SECOND_MS = 20
IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
ALL_SCOPES = ("offline_access https://outlook.office.com/IMAP.AccessAsUser.All "
              "https://outlook.office.com/POP.AccessAsUser.All https://outlook.office.com/SMTP.Send")
ALICE, BOB, CAROL = "alice@outlook.test", "bob@contoso.test", "carol@outlook.test"
HOST_RE = r"[A-Z]{2}[0-9]P?R?[0-9]{2,3}CA[0-9]{4}\.[A-Z]{3}P(RD)?[0-9]{2,3}\.PROD\.OUTLOOK\.COM"

P = None
CTX = None


def ctl(op, body=None, query=""):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(P["control_url"] + "/sim/" + op + query, data=data,
                                 method="GET" if data is None else "POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def idp(path, form=None, js=None):
    data = urllib.parse.urlencode(form).encode() if form is not None else json.dumps(js or {}).encode()
    hdr = {"Content-Type": "application/x-www-form-urlencoded" if form is not None else "application/json"}
    req = urllib.request.Request(P["idp_url"] + path, data=data, headers=hdr, method="POST")
    try:
        with urllib.request.urlopen(req, context=CTX, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def mint(user, **kw):
    return ctl("mint", dict(user=user, **kw))["access_token"]


def xoauth2(user, tok):
    return base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (user, tok)).encode()).decode()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eq(got, want, what=""):
    if got != want:
        raise AssertionError("%s\n   got: %r\n  want: %r" % (what, got, want))


def match(rx, got, what=""):
    if not re.fullmatch(rx, got):
        raise AssertionError("%s\n   got: %r\n  want: /%s/" % (what, got, rx))


class Raw:
    """a line client that shows the wire"""

    def __init__(self, port, tls=True):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s = CTX.wrap_socket(s, server_hostname="localhost") if tls else s
        self.buf = b""

    def starttls(self):
        self.s = CTX.wrap_socket(self.s, server_hostname="localhost")

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode("utf-8", "surrogateescape")

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def send(self, text):
        self.s.sendall(text.encode() + b"\r\n")

    def cmd(self, tag, text):
        """IMAP: send, read to the tagged line; literals become ('LIT', bytes) entries"""
        self.send("%s %s" % (tag, text))
        return self.until(tag)

    def until(self, tag):
        out = []
        while True:
            l = self.line()
            out.append(l)
            m = re.search(r"\{(\d+)\}$", l)
            if m:
                out.append(("LIT", self.take(int(m.group(1)))))
            if l.startswith(tag + " "):
                return out

    def quiet(self, secs):
        """True when nothing arrives for SECS (connection still open)"""
        self.s.settimeout(secs)
        try:
            d = self.s.recv(65536)
            self.buf += d
            return False if d else "eof"
        except (socket.timeout, TimeoutError):
            return True
        finally:
            self.s.settimeout(10)

    def eof(self, secs=3):
        self.s.settimeout(secs)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionError, ssl.SSLError):
            return True
        finally:
            self.s.settimeout(10)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def imap_login(user=ALICE, tok=None):
    tok = tok or mint(user)
    c = Raw(P["imaps"])
    c.line()
    r = c.cmd("L1", "AUTHENTICATE XOAUTH2 " + xoauth2(user, tok))
    eq(r, ["L1 OK AUTHENTICATE completed."], "AUTHENTICATE with SASL-IR")
    return c


def pop_login(user=ALICE):
    c = Raw(P["pop3s"])
    c.line()
    c.send("AUTH XOAUTH2")
    eq(c.line(), "+ ", "POP3 AUTH continuation")
    c.send(xoauth2(user, mint(user)))
    eq(c.line(), "+OK User successfully authenticated.")
    return c


def smtp_login(user=ALICE, tok=None):
    c = Raw(P["submission"], tls=False)
    c.line()
    c.send("EHLO client.example")
    while not c.line().startswith("250 "):
        pass
    c.send("STARTTLS")
    c.line()
    c.starttls()
    c.send("EHLO client.example")
    while not c.line().startswith("250 "):
        pass
    c.send("AUTH XOAUTH2")
    c.line()
    c.send(xoauth2(user, tok or mint(user)))
    return c, c.line()


def msg(frm, to, subject, mid, body="Hello.\r\n", extra=""):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n%sDate: Sun, 23 Nov 2025 11:12:20 +0000\r\n"
            "\r\n%s" % (frm, to, subject, mid, extra, body))


def send_mail(c, frm, rcpts, data):
    c.send("MAIL FROM:<%s>" % frm)
    r = c.line()
    if not r.startswith("250"):
        return r
    for x in rcpts:
        c.send("RCPT TO:<%s>" % x)
        c.line()
    c.send("DATA")
    eq(c.line(), "354 Start mail input; end with <CRLF>.<CRLF>")
    stuffed = re.sub(r"(?m)^\.", "..", data)
    c.s.sendall(stuffed.encode() + b".\r\n")
    return c.line()


def mailbox(user, folder):
    return ctl("mailbox", query="?user=%s&folder=%s&raw=1" % (user, urllib.parse.quote(folder)))["folders"][0]


# --------------------------------------------------------------------------

def t_device_flow_and_imap_texts():
    st, dc = idp("/consumers/oauth2/v2.0/devicecode", {"client_id": P["client_id"], "scope": ALL_SCOPES})
    eq(st, 200, "devicecode")
    st, _ = idp("/control/approve", js={"user_code": dc["user_code"], "user": ALICE})
    eq(st, 200, "approve")
    time.sleep(dc["interval"] * SECOND_MS / 1000.0 + 0.05)
    st, tok = idp("/consumers/oauth2/v2.0/token", {"client_id": P["client_id"], "device_code": dc["device_code"],
                                                   "grant_type": "urn:ietf:params:oauth:grant-type:device_code"})
    eq(st, 200, "device token: %r" % tok)
    at = tok["access_token"]
    check(1500 <= len(at) <= 6000, "token length %d" % len(at))

    c = Raw(P["imaps"])
    g = c.line()
    m = re.fullmatch(r"\* OK The Microsoft Exchange IMAP4 service is ready\. \[([A-Za-z0-9+/=]+)\]", g)
    check(m, "greeting %r" % g)
    match(HOST_RE, base64.b64decode(m.group(1)).decode("utf-16-le"), "greeting host")
    eq(c.cmd("a1", "CAPABILITY"), ["* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT "
                                   "CHILDREN IDLE NAMESPACE LITERAL+", "a1 OK CAPABILITY completed."])
    eq(c.cmd("a2", "LOGIN alice@outlook.test secret"), ["a2 NO LOGIN failed."])
    eq(c.cmd("a3", "SELECT INBOX"), ["a3 BAD Command received in Invalid state."])
    c.send("a4 AUTHENTICATE XOAUTH2")
    eq(c.line(), "+ ", "bare continuation")
    c.send(xoauth2(ALICE, at))
    eq(c.until("a4"), ["a4 OK AUTHENTICATE completed."])
    eq(c.cmd("a5", "CAPABILITY"), [
        "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CLIENTACCESSRULES "
        "CLIENTNETWORKPRESENCELOCATION BACKENDAUTHENTICATE CHILDREN IDLE NAMESPACE LITERAL+",
        "a5 OK CAPABILITY completed."])
    eq(c.cmd("a6", "NAMESPACE"), ['* NAMESPACE (("" "/")) NIL NIL', "a6 OK NAMESPACE completed."])
    lst = c.cmd("a7", 'LIST "" "*"')
    for want in ['* LIST (\\HasNoChildren \\Junk) "/" "Junk Email"', '* LIST (\\HasNoChildren \\Sent) "/" "Sent Items"',
                 '* LIST (\\HasNoChildren \\Trash) "/" "Deleted Items"', '* LIST (\\HasNoChildren) "/" "INBOX"',
                 '* LIST (\\HasChildren) "/" "Calendar"', '* LIST (\\HasNoChildren) "/" "Calendar/Birthdays"',
                 '* LIST (\\HasNoChildren) "/" Old\tMail', '* LIST (\\HasNoChildren) "/" "Files"',
                 '* LIST (\\HasNoChildren) "/" "Sync Issues/Conflicts"', "a7 OK LIST completed."]:
        check(want in lst, "LIST lacks %r" % want)
    eq(c.cmd("a8", "SELECT Files"), ["a8 NO Folder name is reserved"])
    eq(c.cmd("a9", "EXAMINE Files"), ["a9 NO Folder name is reserved"])
    sel = c.cmd("b1", "SELECT INBOX")
    inbox = mailbox(ALICE, "INBOX")
    unseen = [i + 1 for i, m in enumerate(inbox["messages"]) if "\\Seen" not in m["flags"]]
    eq(sel, ["* %d EXISTS" % len(inbox["messages"]), "* 0 RECENT",
             "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)",
             "* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)] Permanent flags"]
       + (["* OK [UNSEEN %d] Is the first unseen message" % unseen[0]] if unseen else [])
       + ["* OK [UIDVALIDITY %d] UIDVALIDITY value" % inbox["uidvalidity"],
          "* OK [UIDNEXT %d] The next unique identifier value" % inbox["uidnext"],
          "b1 OK [READ-WRITE] SELECT completed."], "SELECT")
    check(inbox["uidvalidity"] < 1000, "small UIDVALIDITY")
    eq(c.cmd("b2", "EXAMINE INBOX")[-1], "b2 OK [READ-ONLY] EXAMINE completed.")
    eq(c.cmd("b3", "FROB"), ["b3 BAD Command Error. 12"])
    eq(c.cmd("b4", "LOGOUT"), ["* BYE Microsoft Exchange Server 2016 IMAP4 server signing off.",
                               "b4 OK LOGOUT completed."])
    check(c.eof(), "closed after LOGOUT")

    ctl("set", {"imap_greeting": "2026", "imap_capability": "2026", "inbox_shadow": "list",
                "special_use": False, "files_folder": False})
    c = Raw(P["imaps"])
    match(r"\* OK Microsoft Exchange IMAP4 service ready\. [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
          r"[0-9a-f]{12} \(tcpproxy/15\.21\.0406\.000 BACKENDAUTHENTICATE\) \[[A-Za-z0-9+/=]+\]", c.line(), "2026")
    eq(c.cmd("a1", "CAPABILITY")[0], "* CAPABILITY IMAP4 IMAP4rev1 AUTH=XOAUTH2 LOGINDISABLED SASL-IR UIDPLUS MOVE "
                                     "ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+")
    eq(c.cmd("a2", "AUTHENTICATE XOAUTH2 " + xoauth2(ALICE, at)), ["a2 OK AUTHENTICATE completed."])
    lst = c.cmd("a3", 'LIST "" "*"')
    check('* LIST (\\HasNoChildren) "/" "Inbox"' in lst and '* LIST (\\HasNoChildren) "/" "Junk Email"' in lst
          and not any('"Files"' in l for l in lst), "LIST variant: %r" % lst)
    eq(c.cmd("a4", 'SELECT "Inbox"'), ["a4 NO INBOX doesn't exist."])
    eq(c.cmd("a5", "SELECT Files"), ["a5 NO Files doesn't exist."])
    c.close()


def t_imap_fetch_search_store_append():
    c = imap_login()
    c.cmd("s", "SELECT INBOX")
    inbox = mailbox(ALICE, "INBOX")
    m1 = inbox["messages"][0]
    raw1 = m1["raw"].encode("utf-8", "surrogateescape")
    r = c.cmd("f1", "UID FETCH %d (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])" % m1["uid"])
    match(r'\* 1 FETCH \(UID %d FLAGS \([^)]*\) INTERNALDATE "\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d \+0000" '
          r"RFC822.SIZE %d BODY\[\] \{%d\}" % (m1["uid"], len(raw1), len(raw1)), r[0], "UID FETCH")
    eq(r[1], ("LIT", raw1), "BODY.PEEK[] bytes")
    eq(r[2:], [")", "f1 OK FETCH completed."])
    r = c.cmd("f2", "UID FETCH 1:* (UID FLAGS)")
    eq(len(r), len(inbox["messages"]) + 1, "FLAGS-only fetch of all")
    r = c.cmd("f3", "FETCH 2 (BODY.PEEK[HEADER.FIELDS (Subject Message-ID)])")
    m2 = inbox["messages"][1]
    want = "Subject: %s\r\nMessage-ID: %s\r\n\r\n" % (re.search(r"(?m)^Subject: (.*)\r$", m2["raw"]).group(1),
                                                      m2["message_id"])
    eq(r[0], "* 2 FETCH (BODY[HEADER.FIELDS (SUBJECT MESSAGE-ID)] {%d}" % len(want.encode()))
    eq(r[1], ("LIT", want.encode("utf-8", "surrogateescape")))
    # STORE, SEARCH
    eq(c.cmd("g1", "UID STORE %d +FLAGS (\\Flagged \\Deleted)" % m1["uid"])[-1], "g1 OK STORE completed.")
    r = c.cmd("g2", "UID SEARCH DELETED")
    eq(r, ["* SEARCH %d" % m1["uid"], "g2 OK SEARCH completed."])
    eq(c.cmd("g3", "UID SEARCH CHARSET UTF-8 SUBJECT hello"),
       ["g3 NO [BADCHARSET (US-ASCII)] The specified charset is not supported."])
    eq(c.cmd("g4", 'UID SEARCH SUBJECT "Grüße"'), ["g4 BAD Command Error. 11"])
    eq(c.cmd("g5", "UID SEARCH RETURN (MIN) ALL"), ['* ESEARCH (TAG "g5") UID', "g5 OK SEARCH completed."])
    r = c.cmd("g6", "SEARCH UNDELETED SINCE 1-Jan-2000")
    eq(len(r[0].split()) - 2, len(inbox["messages"]) - 1, "SEARCH UNDELETED")
    # EXPUNGE
    eq(c.cmd("h1", "EXPUNGE"), ["* 1 EXPUNGE", "h1 OK EXPUNGE completed."])
    # APPEND, with the size limit
    body = msg(ALICE, ALICE, "appended", "<app1@example.org>")
    c.send("h2 APPEND Drafts (\\Draft) {%d}" % len(body))
    eq(c.line(), "+ Ready for additional command text.")
    c.s.sendall(body.encode() + b"\r\n")
    drafts = mailbox(ALICE, "Drafts")
    eq(c.until("h2"), ["h2 OK [APPENDUID %d %d] APPEND completed." % (drafts["uidvalidity"], drafts["uidnext"] - 1)])
    ctl("set", {"append_max_bytes": 100})
    c.send("h3 APPEND Drafts {%d}" % len(body))
    eq(c.line(), "h3 NO Maximum size of appendable message has been exceeded", "APPEND over the limit")
    c.send("h4 APPEND Drafts {%d+}" % len(body))
    c.s.sendall(body.encode() + b"\r\n")
    eq(c.until("h4"), ["h4 NO Maximum size of appendable message has been exceeded"], "LITERAL+ over the limit")
    eq(c.cmd("h5", "APPEND Drafts (%s) {1}" % ("\\Seen " * 1800)), ["h5 BAD Command Argument Error. 11"],
       "APPEND line limit")
    # COPY / MOVE
    arch = mailbox(ALICE, "Archive")
    m = mailbox(ALICE, "INBOX")["messages"]
    r = c.cmd("i1", "UID COPY %d Archive" % m[0]["uid"])
    eq(r, ["i1 OK [COPYUID %d %d %d] COPY completed." % (arch["uidvalidity"], m[0]["uid"], arch["uidnext"])])
    r = c.cmd("i2", "UID MOVE %d:%d Archive" % (m[0]["uid"], m[1]["uid"]))
    eq(r, ["* OK [COPYUID %d %d:%d %d:%d]" % (arch["uidvalidity"], m[0]["uid"], m[1]["uid"], arch["uidnext"] + 1,
                                              arch["uidnext"] + 2),
           "* 2 EXPUNGE", "* 1 EXPUNGE", "* %d EXISTS" % (len(m) - 2), "i2 OK MOVE completed."])
    ctl("set", {"bare_copyuid": True})
    r = c.cmd("i3", "UID MOVE %d Archive" % m[2]["uid"])
    eq(r, ["[COPYUID %d %d %d]" % (arch["uidvalidity"], m[2]["uid"], arch["uidnext"] + 3), "* 1 EXPUNGE",
           "* %d EXISTS" % (len(m) - 3), "i3 OK MOVE completed."], "bare COPYUID")
    # FETCH quirks
    m = mailbox(ALICE, "INBOX")["messages"]
    ctl("set", {"fetch_order": "exchange", "size_skew": 17, "empty_fetch_first": 1})
    r = c.cmd("j1", "UID FETCH %d (UID RFC822.SIZE)" % m[0]["uid"])
    eq(r, ["* 1 FETCH (RFC822.SIZE %d UID %d)" % (m[0]["size"] + 17, m[0]["uid"]), "j1 OK FETCH completed."])
    eq(c.cmd("j2", "UID FETCH %d (BODY.PEEK[])" % m[0]["uid"]), ["j2 OK FETCH completed."], "empty FETCH")
    r = c.cmd("j3", "UID FETCH %d (BODY.PEEK[])" % m[0]["uid"])
    eq(r[0], "* 1 FETCH (UID %d BODY[] {%d}" % (m[0]["uid"], m[0]["size"]), "second FETCH has data")
    # BODY[] (not PEEK) sets \Seen and reports FLAGS
    c.cmd("j4", "UID STORE %d -FLAGS.SILENT (\\Seen)" % m[0]["uid"])
    r = c.cmd("j5", "UID FETCH %d BODY[]" % m[0]["uid"])
    check(r[2].endswith("FLAGS (\\Seen))") or "FLAGS (\\Seen" in r[2], "BODY[] sets \\Seen: %r" % r[2])
    c.close()


def t_idle():
    c = imap_login()
    c.cmd("s", "SELECT INBOX")
    n = len(mailbox(ALICE, "INBOX")["messages"])
    c.send("i1 IDLE")
    eq(c.line(), "+ IDLE accepted, awaiting DONE command.")
    ctl("deliver", {"user": ALICE, "folder": "INBOX", "count": 1})
    eq(c.line(), "* %d EXISTS" % (n + 1), "EXISTS pushed during IDLE")
    c.send("DONE")
    eq(c.until("i1"), ["i1 OK IDLE completed."])
    ctl("deliver", {"user": ALICE, "folder": "INBOX", "count": 1})
    ctl("set", {"idle_exists_before_plus": True})
    c.send("i2 IDLE")
    eq(c.line(), "* %d EXISTS" % (n + 2), "EXISTS before +")
    eq(c.line(), "* %d EXISTS" % (n + 2))
    eq(c.line(), "+ IDLE accepted, awaiting DONE command.")
    c.send("DONE")
    eq(c.until("i2"), ["i2 OK IDLE completed."])
    # silent death: nothing more, no BYE, no FIN
    ctl("set", {"idle_death_s": 2, "idle_death_mode": "dead", "idle_exists_before_plus": False})
    c.send("i3 IDLE")
    eq(c.line(), "+ IDLE accepted, awaiting DONE command.")
    time.sleep(2 * SECOND_MS / 1000.0 + 0.1)
    ctl("deliver", {"user": ALICE, "folder": "INBOX", "count": 1})
    eq(c.quiet(0.3), True, "no EXISTS after death")
    c.send("DONE")
    eq(c.quiet(0.3), True, "DONE unanswered, connection open")
    c.close()
    ctl("set", {"idle_death_mode": "dead_fin"})
    c = imap_login()
    c.cmd("s", "SELECT INBOX")
    c.send("i4 IDLE")
    eq(c.line(), "+ IDLE accepted, awaiting DONE command.")
    check(c.eof(2), "dead_fin closes")
    eq(c.buf, b"", "no BYE on dead_fin")


def t_token_checks():
    c = Raw(P["imaps"])
    c.line()
    eq(c.cmd("a", "AUTHENTICATE XOAUTH2 " + xoauth2(ALICE, "EwBnotatoken" * 200)), ["a NO AUTHENTICATE failed."])
    eq(c.cmd("b", "AUTHENTICATE XOAUTH2 " + xoauth2(ALICE, mint(ALICE, scope="https://outlook.office.com/SMTP.Send"))),
       ["b NO AUTHENTICATE failed."], "wrong scope")
    eq(c.cmd("c", "AUTHENTICATE XOAUTH2 bm90IHhvYXV0aDI="), ["c NO AUTHENTICATE failed."], "malformed")
    # mismatch: OK, then BAD + BYE
    eq(c.cmd("d", "AUTHENTICATE XOAUTH2 " + xoauth2(ALICE, mint(BOB))), ["d OK AUTHENTICATE completed."])
    c.send("e SELECT INBOX")
    eq([c.line(), c.line()], ["e BAD User is authenticated but not connected.", "* BYE Connection closed. 14"])
    check(c.eof(), "closed after mismatch")
    # shared mailbox: delegated token, shared address in user=
    c = imap_login("shared@contoso.test", mint(BOB))
    c.close()
    # M365 .default scope
    imap_login(BOB, mint(BOB, scope="https://outlook.office365.com/.default")).close()
    # expiry at the next command
    c = imap_login(ALICE, mint(ALICE, expires_in=15))
    time.sleep(15 * SECOND_MS / 1000.0 + 0.1)
    c.send("x NOOP")
    eq(c.line(), "* BYE Session invalidated - AccessTokenExpired")
    check(c.eof(), "closed after expiry BYE")
    # expiry during IDLE
    c = imap_login()
    c.cmd("s", "SELECT INBOX")
    c.send("i IDLE")
    c.line()
    ctl("expire", {"user": ALICE})
    eq(c.line(), "* BYE Session invalidated - AccessTokenExpired", "BYE during IDLE")
    check(c.eof(), "closed")
    # linger variant
    ctl("set", {"token_expiry_after_bye": "linger"})
    c = imap_login(ALICE, mint(ALICE, expires_in=5))
    time.sleep(5 * SECOND_MS / 1000.0 + 0.1)
    eq(c.cmd("y", "NOOP"), ["* BYE Session invalidated - AccessTokenExpired", "y BAD Command received in Invalid state."])
    c.close()


def t_throttle_unavailable_caps_errors():
    ctl("set", {"throttle": {"after_commands": 3, "backoff_ms": 3000}})
    c = imap_login()
    for i in range(3):
        c.cmd("n%d" % i, "NOOP")
    c.send("n3 NOOP")
    eq([c.line(), c.line()], ["n3 NO Request is throttled. Suggested Backoff Time: 3000 milliseconds",
                              "* BYE Connection closed. 14"])
    check(c.eof(), "closed after throttling")
    c = Raw(P["imaps"])
    c.line()
    r = c.cmd("a", "AUTHENTICATE XOAUTH2 " + xoauth2(ALICE, mint(ALICE)))
    match(r"a NO Request is throttled\. Suggested Backoff Time: \d+ milliseconds", r[0], "login during backoff")
    time.sleep(3 * SECOND_MS / 1000.0 + 0.05)
    eq(c.cmd("b", "AUTHENTICATE XOAUTH2 " + xoauth2(ALICE, mint(ALICE))), ["b OK AUTHENTICATE completed."],
       "login after backoff")
    c.close()
    log = ctl("log", query="?user=%s&ev=throttled_login" % ALICE)["log"]
    check(len(log) == 1, "throttled login logged once")
    ctl("reset", {})
    # unavailability
    ctl("set", {"unavailable_p": 1.0})
    c = Raw(P["imaps"])
    c.line()
    eq(c.cmd("a", "AUTHENTICATE XOAUTH2 " + xoauth2(BOB, mint(BOB))), ["a NO Server Unavailable. 15"])
    c.close()
    ctl("set", {"unavailable_on": ["select", "pop_login"]})
    c = imap_login(BOB)
    eq(c.cmd("s", "SELECT INBOX"), ["s NO Server Unavailable. 15"])
    c.close()
    c = Raw(P["pop3s"])
    c.line()
    c.send("AUTH XOAUTH2")
    c.line()
    c.send(xoauth2(BOB, mint(BOB)))
    eq(c.line(), "-ERR Server Unavailable. 21")
    c.close()
    ctl("reset", {})
    # IMAP connection cap
    ctl("set", {"imap_max_connections": 2})
    a, b = imap_login(CAROL), imap_login(CAROL)
    c = Raw(P["imaps"])
    c.line()
    eq(c.cmd("x", "AUTHENTICATE XOAUTH2 " + xoauth2(CAROL, mint(CAROL))), ["x NO Server Unavailable. 15"])
    st = ctl("state")
    eq(st["max_concurrent"].get("imap " + CAROL), 2, "max concurrent recorded")
    for x in (a, b, c):
        x.close()
    # ten errors end the session
    c = imap_login(CAROL)
    for i in range(9):
        eq(c.cmd("e%d" % i, "FROB"), ["e%d BAD Command Error. 12" % i])
    c.send("e9 FROB")
    eq([c.line(), c.line()], ["e9 BAD Command Error. 12", "* BYE Connection closed. 14"])
    check(c.eof(), "closed after ten errors")
    # pre-login idle timeout: 60 protocol seconds -> scaled
    ctl("set", {"preauth_timeout_s": 10})
    c = Raw(P["imaps"])
    c.line()
    time.sleep(10 * SECOND_MS / 1000.0 + 0.1)
    eq(c.line(), "* BYE Connection is closed. 13")
    check(c.eof(), "closed on autologout")


def t_uidvalidity_bump():
    c = imap_login(CAROL)
    c.cmd("s", "SELECT INBOX")
    before = mailbox(CAROL, "INBOX")
    r = ctl("uidvalidity", {"user": CAROL, "folder": "INBOX"})
    eq(c.line(), "* BYE Connection closed. 14", "selected session dropped")
    eq(r["uidvalidity"], before["uidvalidity"] + 1)
    c = imap_login(CAROL)
    sel = c.cmd("s", "SELECT INBOX")
    check("* OK [UIDVALIDITY %d] UIDVALIDITY value" % (before["uidvalidity"] + 1) in sel, "new UIDVALIDITY")
    r2 = c.cmd("f", "UID FETCH 1:* (UID)")
    uids = [int(re.search(r"UID (\d+)", l).group(1)) for l in r2[:-1]]
    eq(uids, r["uids"], "renumbered UIDs")
    check(min(uids) > max(m["uid"] for m in before["messages"]), "new UIDs differ")
    c.close()


def t_pop3():
    c = Raw(P["pop3s"])
    g = c.line()
    m = re.fullmatch(r"\+OK The Microsoft Exchange POP3 service is ready\. \[([A-Za-z0-9+/=]+)\]", g)
    check(m, "POP3 greeting %r" % g)
    match(HOST_RE, base64.b64decode(m.group(1)).decode("utf-16-le"))
    c.send("CAPA")
    eq([c.line() for _ in range(6)], ["+OK", "TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER", "."])
    c.send("USER alice@outlook.test")
    eq(c.line(), "+OK")
    c.send("PASS secret")
    eq(c.line(), "-ERR Authentication failure: unknown user name or bad password.")
    c.send("STAT")
    eq(c.line(), "-ERR Command is not valid in this state.")
    c.send("AUTH XOAUTH2 " + xoauth2(ALICE, mint(ALICE)))
    eq(c.line(), "-ERR Protocol error. Connection is closed. 10", "one-line AUTH over 255 octets")
    check(c.eof(), "closed after one-line AUTH")
    # poplib, two-step AUTH
    p = poplib.POP3_SSL("127.0.0.1", P["pop3s"], context=CTX)
    eq(p.getwelcome()[:3], b"+OK")
    eq(p._shortcmd("AUTH XOAUTH2"), b"+ ")
    eq(p._shortcmd(xoauth2(CAROL, mint(CAROL))), b"+OK User successfully authenticated.")
    inbox = mailbox(CAROL, "INBOX")
    n, size = p.stat()
    eq((n, size), (len(inbox["messages"]), sum(m["size"] for m in inbox["messages"])), "STAT")
    uidl = p.uidl()[1]
    eq(len(uidl), n)
    check(all(1 <= len(u.split()[1]) <= 70 for u in uidl), "UIDL 1..70 chars")
    for i, mm in enumerate(inbox["messages"], 1):
        lines = p.retr(i)[1]
        eq(b"\r\n".join(lines) + b"\r\n", mm["raw"].encode("utf-8", "surrogateescape"), "RETR %d" % i)
    top = p.top(1, 2)[1]
    hdr_lines = inbox["messages"][0]["raw"].split("\r\n\r\n")[0].count("\r\n") + 1
    eq(len(top), hdr_lines + 1 + 2, "TOP 1 2")
    p.dele(1)
    p.rset()
    p.dele(2)
    eq(p.quit()[:3], b"+OK")
    after = mailbox(CAROL, "INBOX")["messages"]
    eq([m["uid"] for m in after], [m["uid"] for m in inbox["messages"]][0:1] + [m["uid"] for m in inbox["messages"]][2:],
       "DELE at QUIT")
    # move_to_pop_folder
    ctl("user", {"user": CAROL, "pop_delete_mode": "move_to_pop_folder"})
    c = pop_login(CAROL)
    c.send("DELE 1")
    eq(c.line(), "+OK")
    c.send("QUIT")
    eq(c.line()[:3], "+OK")
    pf = mailbox(CAROL, "POP")
    eq([m["message_id"] for m in pf["messages"]], [after[0]["message_id"]], "moved to POP")
    # a dropped connection deletes nothing
    c = pop_login(CAROL)
    c.send("DELE 1")
    c.line()
    c.close()
    time.sleep(0.2)
    eq(len(mailbox(CAROL, "INBOX")["messages"]), len(after) - 1, "no QUIT, no deletion")
    ctl("set", {"pop_greeting": "2025"})
    c = Raw(P["pop3s"])
    match(r"\+OK Microsoft Exchange POP3 server ready \(tcpproxy/15\.20\.9137\.005\)\. \[[A-Za-z0-9+/=]+\]", c.line())
    c.close()


def t_smtp_golden():
    c = Raw(P["submission"], tls=False)
    banner = c.line()
    m = re.fullmatch(r"220 ([A-Z]{2}[0-9]P?R?[0-9]{2,3}CA[0-9]{4})\.outlook\.office365\.com Microsoft ESMTP MAIL Service "
                     r"ready at [A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000 \[[0-9A-F]{16}\]",
                     banner)
    check(m, "banner %r" % banner)
    fe = m.group(1) + ".outlook.office365.com"
    c.send("MAIL FROM:<%s>" % ALICE)
    eq(c.line(), "503 5.5.2 Send hello first")
    c.send("EHLO client.example")
    ehlo = ["250-%s Hello [127.0.0.1]" % fe, "250-SIZE 157286400", "250-PIPELINING", "250-DSN",
            "250-ENHANCEDSTATUSCODES", "250-STARTTLS", "250-8BITMIME", "250-BINARYMIME", "250-CHUNKING",
            "250 SMTPUTF8"]
    eq([c.line() for _ in ehlo], ehlo, "EHLO before TLS")
    c.send("MAIL FROM:<%s>" % ALICE)
    eq(c.line(), "530 5.7.57 Client not authenticated to send mail")
    c.send("STARTTLS")
    eq(c.line(), "220 2.0.0 SMTP server ready")
    c.starttls()
    c.send("EHLO client.example")
    ehlo[5] = "250-AUTH LOGIN XOAUTH2"
    eq([c.line() for _ in ehlo], ehlo, "EHLO after TLS")
    c.send("MAIL FROM:<%s>" % ALICE)
    eq(c.line(), "530 5.7.57 Client not authenticated to send mail")
    c.send("AUTH XOAUTH2")
    eq(c.line(), "334 ")
    c.send(xoauth2(ALICE, "EwBbogus" * 300))
    match(r"535 5\.7\.3 Authentication unsuccessful \[[A-Z0-9]+\.[a-z0-9]+\.prod\.outlook\.com\]", c.line())
    c.send("AUTH XOAUTH2")
    c.line()
    c.send("bm90IHhvYXV0aDI=")
    eq(c.line(), "501 5.5.124 Invalid XOAUTH2 auth data")
    c.send("AUTH XOAUTH2")
    eq(c.line(), "334 ")
    c.send(xoauth2(ALICE, mint(ALICE)))
    eq(c.line(), "235 2.7.0 Authentication successful")
    # the Sent Items copy raises EXISTS for an IDLE client
    w = imap_login()
    w.cmd("s", 'SELECT "Sent Items"')
    nsent = len(mailbox(ALICE, "Sent Items")["messages"])
    w.send("i IDLE")
    w.line()
    data = msg(ALICE, CAROL + ", someone@example.org", "golden", "<orig-1@client.example>",
               body="line one\r\n.starts with a dot\r\n..two dots\r\nend\r\n", extra="Bcc: hidden@example.org\r\n")
    stuffed = re.sub(r"(?m)^\.", "..", data)
    # pipelined in one write: replies come in order
    c.s.sendall(("MAIL FROM:<%s> SIZE=%d BODY=8BITMIME\r\nRCPT TO:<%s>\r\nRCPT TO:<someone@example.org>\r\n"
                 "RCPT TO:<hidden@example.org>\r\nDATA\r\n" % (ALICE, len(data), CAROL)).encode())
    eq([c.line() for _ in range(5)], ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK", "250 2.1.5 Recipient OK",
                                      "250 2.1.5 Recipient OK", "354 Start mail input; end with <CRLF>.<CRLF>"])
    c.s.sendall(stuffed.encode() + b".\r\n")
    final = c.line()
    m = re.fullmatch(r"250 2\.0\.0 OK (<[^>]+>) \[Hostname=([A-Z0-9]+MB[0-9]{4}\.[A-Z0-9]+\.PROD\.OUTLOOK\.COM)\]", final)
    check(m, "final reply %r" % final)
    newid = m.group(1)
    check(newid != "<orig-1@client.example>", "consumer Message-ID rewritten")
    eq(w.line(), "* %d EXISTS" % (nsent + 1), "EXISTS from the Sent Items copy")
    w.send("DONE")
    w.until("i")
    w.close()
    c.send("RSET")
    eq(c.line(), "250 2.0.0 Resetting")
    c.send("QUIT")
    eq(c.line(), "221 2.0.0 Service closing transmission channel")
    check(c.eof(), "closed after QUIT")
    sent = mailbox(ALICE, "Sent Items")["messages"][-1]
    eq(sent["message_id"], newid)
    eq(sent["original_message_id"], "<orig-1@client.example>")
    check("\\Seen" in sent["flags"] and "Bcc: hidden@example.org" in sent["raw"], "Sent copy keeps Bcc, is \\Seen")
    got = mailbox(CAROL, "INBOX")["messages"][-1]
    eq(got["message_id"], newid)
    check(got["raw"].endswith("\r\n\r\nline one\r\n.starts with a dot\r\n..two dots\r\nend\r\n"), "dot-unstuffed")
    check("Bcc:" not in got["raw"], "Bcc removed from delivered copy")
    out = [json.loads(l) for l in open(os.path.join(STATE, "outbound.jsonl"))]
    eq(sorted(out[-1]["rcpts"]), ["hidden@example.org", "someone@example.org"], "outbound record")
    # M365: Message-ID kept; smtplib with XOAUTH2 in two steps
    s = smtplib.SMTP("127.0.0.1", P["submission"], timeout=10)
    s.starttls(context=CTX)
    s.ehlo()
    check("auth" in s.esmtp_features and s.esmtp_features["auth"].strip() == "LOGIN XOAUTH2", "AUTH after TLS")
    tok = mint(BOB)
    code, _ = s.auth("XOAUTH2", lambda challenge=None: "user=%s\x01auth=Bearer %s\x01\x01" % (BOB, tok),
                     initial_response_ok=False)
    eq(code, 235)
    s.sendmail(BOB, [ALICE], msg(BOB, ALICE, "m365", "<m365-1@client.example>"))
    s.quit()
    eq(mailbox(BOB, "Sent Items")["messages"][-1]["message_id"], "<m365-1@client.example>", "M365 keeps Message-ID")
    eq(mailbox(ALICE, "INBOX")["messages"][-1]["message_id"], "<m365-1@client.example>")


def t_smtp_limits():
    # SendAs after the final dot
    c, r = smtp_login()
    eq(r, "235 2.7.0 Authentication successful")
    r = send_mail(c, ALICE, [CAROL], msg("Mallory <mallory@example.org>", CAROL, "x", "<sa@x>"))
    match(r"554 5\.2\.252 SendAsDenied; alice@outlook\.test not allowed to send as mallory@example\.org; "
          r"STOREDRV\.Submission\.Exception:SendAsDeniedException\.MapiExceptionSendAsDenied; .*", r, "SendAs")
    ctl("user", {"user": ALICE, "send_as": ["alias@outlook.test"]})
    eq(send_mail(c, ALICE, [CAROL], msg("alias@outlook.test", CAROL, "x", "<sa2@x>"))[:3], "250", "send_as allowed")
    # size
    ctl("set", {"smtp_max_bytes": 500})
    eq(send_mail(c, ALICE, [CAROL], msg(ALICE, CAROL, "big", "<big@x>", body="x" * 600 + "\r\n")),
       "552 5.3.4 Message size exceeds fixed maximum message size")
    c.send("MAIL FROM:<%s> SIZE=100000" % ALICE)
    eq(c.line(), "552 5.3.4 Message size exceeds fixed maximum message size", "SIZE= at MAIL")
    ctl("reset", {})
    # daily recipients
    ctl("user", {"user": ALICE, "recipients_today": 299})
    r = send_mail(c, ALICE, [CAROL, "x@example.org"], msg(ALICE, CAROL, "q", "<q@x>"))
    match(r"554 5\.2\.0 STOREDRV\.Submission\.Exception:OutboundSpamException; .*Actual verdict is RefuseQuota, "
          r"ShowTierUpgrade\..*", r, "consumer quota")
    eq(send_mail(c, ALICE, [CAROL], msg(ALICE, CAROL, "q", "<q2@x>"))[:3], "250", "the 300th recipient passes")
    c.close()
    ctl("user", {"user": BOB, "recipients_today": 10000})
    c, r = smtp_login(BOB)
    r = send_mail(c, BOB, [CAROL], msg(BOB, CAROL, "q", "<q3@x>"))
    match(r"554 5\.2\.0 STOREDRV\.Submission\.Exception:SubmissionQuotaExceededException; .*", r, "M365 quota")
    c.close()
    ctl("user", {"user": BOB, "recipients_today": 0})
    # connection cap: the fourth authenticated connection
    conns = [smtp_login(BOB) for _ in range(3)]
    check(all(r == "235 2.7.0 Authentication successful" for _, r in conns), "three connections")
    c4, r = smtp_login(BOB)
    match(r"432 4\.3\.2 Concurrent connections limit exceeded\. Visit https://aka\.ms/concurrent_sending for more "
          r"information\. \[Hostname=[A-Z0-9.]+\]", r)
    for c, _ in conns + [(c4, None)]:
        c.close()
    # message rate: reject, then delay
    ctl("set", {"rate_per_minute": 2, "rate_mode": "reject"})
    c, _ = smtp_login(CAROL)
    for i in range(2):
        eq(send_mail(c, CAROL, [ALICE], msg(CAROL, ALICE, "r", "<r%d@x>" % i))[:3], "250")
    eq(send_mail(c, CAROL, [ALICE], msg(CAROL, ALICE, "r", "<r9@x>")),
       "421 4.4.2 Message submission rate for this client has exceeded the configured limit")
    check(c.eof(), "closed after 421")
    ctl("reset", {})
    ctl("set", {"rate_per_minute": 1, "rate_mode": "delay"})
    c, _ = smtp_login(CAROL)
    t0 = time.monotonic()
    eq(send_mail(c, CAROL, [ALICE], msg(CAROL, ALICE, "d", "<d1@x>"))[:3], "250")
    eq(send_mail(c, CAROL, [ALICE], msg(CAROL, ALICE, "d", "<d2@x>"))[:3], "250")
    check(time.monotonic() - t0 >= 60 * SECOND_MS / 1000.0 * 0.9, "second message delayed a protocol minute")
    check(ctl("log", query="?ev=rate_delay")["log"], "rate_delay logged")
    c.close()
    # basic auth refused
    c = Raw(P["submission"], tls=False)
    c.line()
    c.send("EHLO x")
    while not c.line().startswith("250 "):
        pass
    c.send("STARTTLS")
    c.line()
    c.starttls()
    c.send("EHLO x")
    while not c.line().startswith("250 "):
        pass
    c.send("AUTH LOGIN")
    eq(c.line(), "334 VXNlcm5hbWU6")
    c.send(base64.b64encode(ALICE.encode()).decode())
    eq(c.line(), "334 UGFzc3dvcmQ6")
    c.send(base64.b64encode(b"pw").decode())
    match(r"535 5\.7\.139 Authentication unsuccessful, basic authentication is disabled\. \[.*\]", c.line())
    c.close()


def t_log_and_determinism():
    log = ctl("log")["log"]
    check(any(r["ev"] == "cmd" and r["proto"] == "imap" for r in log), "IMAP commands logged")
    check(all("auth=Bearer" not in json.dumps(r) for r in log), "tokens redacted")
    check(os.path.getsize(os.path.join(STATE, "log.jsonl")) > 0, "log.jsonl written")
    st = json.load(open(os.path.join(STATE, "mailboxes", ALICE, "state.json")))
    check(st["folders"] and os.path.exists(os.path.join(STATE, "mailboxes", ALICE, st["folders"][0]["messages"][0]["file"]
                                                        if st["folders"][0]["messages"] else "state.json")), "eml files")
    # same seed -> same generated mailboxes
    d2 = os.path.join(TMP, "second")
    p2 = start(d2, 7)
    try:
        for u in (ALICE, BOB):
            a = json.load(open(os.path.join(TMP, "gen", "mailboxes", u, "state.json")))
            b = json.load(open(os.path.join(d2, "mailboxes", u, "state.json")))
            eq(a, b, "seeded generation of %s" % u)
    finally:
        stop(p2)
    # a restart loads the state dir instead of generating
    before = open(os.path.join(d2, "mailboxes", ALICE, "state.json")).read()
    stop(start(d2, 99))
    eq(open(os.path.join(d2, "mailboxes", ALICE, "state.json")).read(), before, "state reloaded")


def t_more_switches():
    c = imap_login(CAROL)
    r = c.cmd("a", 'SELECT "Old\tMail"')
    eq(r[-1], "a OK [READ-WRITE] SELECT completed.", "SELECT of the TAB folder")
    c.cmd("b", "SELECT INBOX")
    m = mailbox(CAROL, "INBOX")["messages"]
    c.cmd("c", "UID STORE %d,%d +FLAGS.SILENT (\\Deleted)" % (m[0]["uid"], m[1]["uid"]))
    eq(c.cmd("d", "UID EXPUNGE %d" % m[1]["uid"]), ["* 2 EXPUNGE", "d OK EXPUNGE completed."], "UID EXPUNGE")
    ctl("set", {"inbox_shadow": "break"})
    eq(c.cmd("e", "SELECT INBOX"), ["e NO INBOX doesn't exist."])
    ctl("set", {"inbox_shadow": False, "idle_death_s": 2, "idle_death_mode": "mute"})
    c.cmd("f", "SELECT INBOX")
    n = len(mailbox(CAROL, "INBOX")["messages"])
    c.send("g IDLE")
    c.line()
    time.sleep(2 * SECOND_MS / 1000.0 + 0.1)
    ctl("deliver", {"user": CAROL, "folder": "INBOX", "count": 1})
    eq(c.quiet(0.3), True, "muted IDLE pushes nothing")
    c.send("DONE")
    eq(c.until("g"), ["* %d EXISTS" % (n + 1), "g OK IDLE completed."], "muted IDLE still answers DONE")
    # post-login autologout (30 min, scaled)
    ctl("set", {"auth_timeout_s": 10, "idle_death_s": None})
    c.cmd("h", "NOOP")    # the timer starts with the next read
    time.sleep(10 * SECOND_MS / 1000.0 + 0.15)
    eq(c.line(), "* BYE Connection is closed. 13", "autologout after login")
    check(c.eof(), "closed")
    ctl("reset", {})
    # throttling by bytes sent
    ctl("set", {"throttle": {"after_bytes": 20000, "backoff_ms": 1000, "form": "BAD"}})
    c = imap_login(CAROL)
    c.cmd("s", "SELECT INBOX")
    c.cmd("f", "UID FETCH 1:* (BODY.PEEK[])")
    c.send("n NOOP")
    eq([c.line(), c.line()], ["n BAD Request is throttled. Suggested Backoff Time: 1000 milliseconds",
                              "* BYE Connection closed. 14"], "throttled by bytes")
    c.close()
    # the ctl subcommand
    out = subprocess.run([sys.executable, SIM, "ctl", "--port-file", STATE + ".ports", "set",
                          '{"size_skew": 3}'], capture_output=True, text=True, check=True).stdout
    eq(json.loads(out)["behaviours"]["size_skew"], 3, "ctl subcommand")


TESTS = [t_device_flow_and_imap_texts, t_imap_fetch_search_store_append, t_idle, t_token_checks,
         t_throttle_unavailable_caps_errors, t_uidvalidity_bump, t_pop3, t_smtp_golden, t_smtp_limits,
         t_more_switches, t_log_and_determinism]


def start(state, seed):
    pf = state + ".ports"
    if os.path.exists(pf):
        os.unlink(pf)
    cfg = state + ".json"
    with open(cfg, "w") as fh:   # 60 s before login would be 1.2 s: too tight on a loaded machine
        json.dump({"behaviours": {"preauth_timeout_s": 600}}, fh)
    proc = subprocess.Popen([sys.executable, SIM, "serve", "--tls-dir", TLS, "--state-dir", state, "--port-file", pf,
                             "--seed", str(seed), "--second-ms", str(SECOND_MS), "--config", cfg])
    for _ in range(200):
        if os.path.exists(pf):
            break
        if proc.poll() is not None:
            raise SystemExit("simulator exited with %d" % proc.returncode)
        time.sleep(0.05)
    else:
        proc.kill()
        raise SystemExit("simulator did not write its port file")
    proc.ports = json.load(open(pf))
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    global P, CTX, TMP, TLS, STATE
    TMP = tempfile.mkdtemp(prefix="outlook-sim-test.")
    subprocess.run(["sh", MKCA, TMP], check=True)
    TLS = os.path.join(TMP, "tls")
    CTX = ssl.create_default_context(cafile=os.path.join(TLS, "ca.pem"))
    STATE = os.path.join(TMP, "state")
    stop(start(os.path.join(TMP, "gen"), 7))   # untouched seed-7 generation, for the determinism check
    proc = start(STATE, 7)
    P = proc.ports
    failed = []
    t0 = time.monotonic()
    try:
        for t in TESTS:
            ctl("reset", {})
            t1 = time.monotonic()
            try:
                t()
                print("ok   %-40s %.2fs" % (t.__name__, time.monotonic() - t1))
            except Exception:
                failed.append(t.__name__)
                print("FAIL %s" % t.__name__)
                traceback.print_exc()
    finally:
        stop(proc)
    print("%d/%d passed in %.1fs (state in %s)" % (len(TESTS) - len(failed), len(TESTS), time.monotonic() - t0, TMP))
    if failed:
        sys.exit(1)
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
