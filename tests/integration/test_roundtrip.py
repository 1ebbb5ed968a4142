#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Round trip through the private test servers (tests/fixtures/mailserver.sh):
submit a message with a unique Message-ID to Postfix's submission port
(STARTTLS + AUTH, verified against the test CA) from MK_USER to MK_USER2,
then poll IMAP (bounded, 20 s) until it is in MK_USER2's INBOX and compare
the body bytes with what was sent. The body has 8-bit UTF-8, a lone ".",
lines starting with "." and a 900-octet line, so SMTP dot-stuffing and
8BITMIME are exercised on the way through Postfix and LMTP.

Run with MK_FIX_ENV=<fixture dir>/env; exit 0 on pass.
"""

import imaplib
import os
import smtplib
import ssl
import sys
import time
import uuid
from datetime import datetime, timezone
from email.utils import format_datetime

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import check, fail, load_env, tls_context  # noqa: E402

HOST = "127.0.0.1"
WAIT = 20.0

env = load_env()
ctx = tls_context(env)
sender, recipient = env["MK_USER"], env["MK_USER2"]
mid = "<roundtrip-%s@example.test>" % uuid.uuid4().hex
body = (
    "Hello Bob,\r\n"
    "\r\n"
    "Grüße — this body is 8-bit UTF-8: 日本語, Ελληνικά.\r\n"
    ".\r\n"
    ".. two dots\r\n"
    ".leading dot\r\n"
    + "x" * 900 + "\r\n"
    "\r\n"
    "-- \r\n"
    "Alice\r\n"
).encode("utf-8")
headers = (
    "From: Alice <%s>\r\n"
    "To: Bob <%s>\r\n"
    "Subject: mailkeep round trip %s\r\n"
    "Date: %s\r\n"
    "Message-ID: %s\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    % (sender, recipient, mid[1:13], format_datetime(datetime.now(timezone.utc)), mid)
).encode("ascii")
message = headers + b"\r\n" + body

print("== submit %s via %s:%s (STARTTLS + AUTH) from %s to %s"
      % (mid, HOST, env["MK_SUBMISSION_PORT"], sender, recipient))
with smtplib.SMTP(HOST, int(env["MK_SUBMISSION_PORT"]), local_hostname="client.example.test", timeout=30) as s:
    s.starttls(context=ctx)
    check(isinstance(s.sock, ssl.SSLSocket), "STARTTLS (%s, certificate verified against the test CA)"
          % s.sock.version())
    s.login(sender, env["MK_PASS"])
    check(True, "AUTH as %s" % sender)
    s.ehlo()
    opts = ["BODY=8BITMIME"] if s.has_extn("8bitmime") else []
    check(bool(opts), "server offers 8BITMIME")
    refused = s.sendmail(sender, [recipient], message, mail_options=opts)
    check(not refused, "message accepted for %s" % recipient, repr(refused))

print("== wait (at most %.0f s) for it in %s's INBOX over IMAPS" % (WAIT, recipient))
deadline = time.monotonic() + WAIT
found = None
with imaplib.IMAP4_SSL(HOST, int(env["MK_IMAPS_PORT"]), ssl_context=ctx, timeout=30) as im:
    im.login(recipient, env["MK_PASS2"])
    while True:
        typ, data = im.select("INBOX", readonly=True)
        if typ != "OK":
            fail("SELECT INBOX failed: %r" % data)
        typ, data = im.uid("SEARCH", None, "HEADER", "Message-ID", '"%s"' % mid)
        uids = data[0].split() if typ == "OK" and data and data[0] else []
        if uids:
            found = uids[-1]
            break
        if time.monotonic() > deadline:
            log = env.get("MK_POSTFIX_LOG", "")
            fail("%s did not reach %s's INBOX within %.0f s (see %s and %s)"
                 % (mid, recipient, WAIT, log, env.get("MK_DOVECOT_LOG", "")))
        time.sleep(0.2)
    check(True, "delivered: UID %s" % found.decode())
    typ, data = im.uid("FETCH", found, "(BODY.PEEK[TEXT] BODY.PEEK[HEADER])")
    parts = {}
    for d in data:
        if isinstance(d, tuple):
            parts["TEXT" if b"[TEXT]" in d[0] else "HEADER"] = d[1]
    got = parts.get("TEXT")
    if got != body:
        fail("body differs:\n sent %r\n  got %r" % (body, got))
    check(True, "body is byte-identical (%d octets, dot-stuffing and 8-bit intact)" % len(body))
    hdr = parts.get("HEADER", b"")
    check(mid.encode() in hdr, "Message-ID kept")
    check(b"Received:" in hdr and b"Delivered-To: " + recipient.encode() in hdr,
          "Postfix Received: and Dovecot Delivered-To: added")

print("PASS: round trip")
