#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Checks that the private test servers (tests/fixtures/mailserver.sh) are what
mailkeep's integration tests expect:

  * IMAP over implicit TLS, verified against the test CA with host name
    checks: login, CAPABILITY IDLE, the Outlook folders with their special-use
    flags, the non-ASCII folder in modified UTF-7 and the child folder; every
    folder holds the seeded count, and every seeded body is byte-exact;
  * a certificate from the test CA is not trusted without it;
  * IMAP IDLE reports a new message delivered over LMTP (to the scratch user);
  * IMAP on the STARTTLS port, POP3 over TLS and over STLS (STAT count and
    dot-unstuffed bodies match the seeded INBOX);
  * submission: no AUTH before STARTTLS (and AUTH refused), no relaying
    without AUTH, AUTH after STARTTLS; a bad password is refused.

Run with MK_FIX_ENV=<fixture dir>/env; exit 0 on pass.
"""

import hashlib
import imaplib
import json
import os
import poplib
import smtplib
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import check, fail, imap_quote, load_env, parse_list, tls_context, utf7_encode  # noqa: E402

poplib._MAXLINE = 1 << 20  # a seeded message has a ~4000-octet line
HOST = "127.0.0.1"
WAIT = 20.0

env = load_env()
ctx = tls_context(env)
user, password = env["MK_USER"], env["MK_PASS"]
n_inbox = int(env.get("MK_SEED_INBOX_COUNT") or 0)
manifest = {"messages": [], "counts": {}}
if env.get("MK_SEED_MANIFEST"):
    with open(env["MK_SEED_MANIFEST"], encoding="utf-8") as f:
        manifest = json.load(f)
by_id = {m["message_id"]: m for m in manifest["messages"]}
inbox_bodies = sorted(m["body_sha256"] for m in manifest["messages"] if m["folder"] == "INBOX")

EXPECT = {  # name -> special-use flag (None: plain folder)
    "INBOX": None,
    "Drafts": "\\Drafts",
    "Sent Items": "\\Sent",
    "Deleted Items": "\\Trash",
    "Junk Email": "\\Junk",
    "Archive": "\\Archive",
    "Archive/2025": None,
    "Données": None,
}


def header_value(raw, name):
    for line in raw.decode("utf-8", "replace").replace("\r\n ", " ").split("\r\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return None


def fetch_bodies(im, count):
    """{Message-ID: sha256 of BODY[TEXT]} of messages 1..count of the selected mailbox."""
    out = {}
    if count == 0:
        return out
    typ, data = im.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[TEXT])")
    if typ != "OK":
        fail("FETCH failed: %r" % data)
    parts = [d for d in data if isinstance(d, tuple)]
    for hdr, text in zip(parts[0::2], parts[1::2]):
        if b"HEADER.FIELDS" not in hdr[0]:  # the server may answer in the other order
            hdr, text = text, hdr
        out[header_value(hdr[1], "Message-ID")] = hashlib.sha256(text[1]).hexdigest()
    return out


# ---------------------------------------------------------------- IMAPS
print("== IMAP, implicit TLS on %s:%s" % (HOST, env["MK_IMAPS_PORT"]))
im = imaplib.IMAP4_SSL(HOST, int(env["MK_IMAPS_PORT"]), ssl_context=ctx, timeout=30)
peer = im.sock.getpeercert()
check(("IP Address", "127.0.0.1") in peer.get("subjectAltName", ()), "server certificate has SAN IP:127.0.0.1",
      repr(peer.get("subjectAltName")))
check(im.sock.version() in ("TLSv1.2", "TLSv1.3"), "TLS version %s" % im.sock.version())
im.login(user, password)
typ, caps = im.capability()
caps = caps[0].decode().upper().split()
check("IDLE" in caps, "CAPABILITY has IDLE", " ".join(caps))
for c in ("UIDPLUS", "SPECIAL-USE", "CONDSTORE", "MOVE", "ENABLE"):
    print("   capability %s: %s" % (c, "yes" if c in caps else "no"))

typ, data = im.list('""', "*")
check(typ == "OK", "LIST \"\" * answered OK")
boxes = parse_list(data)
delims = {d for _, d, _ in boxes}
check(delims == {"/"}, "hierarchy delimiter is /", repr(delims))
wire = {name: flags for flags, _, name in boxes}
print("   LIST: " + ", ".join(sorted(wire)))
for name, special in EXPECT.items():
    w = utf7_encode(name)
    check(w in wire, "folder %r is listed (as %r on the wire)" % (name, w))
    if special:
        check(special in wire[w], "folder %r has %s" % (name, special), repr(wire[w]))
check("Donn&AOk-es" in wire, "non-ASCII folder is modified UTF-7 on the wire (Donn&AOk-es)")
check("\\HasChildren" in wire["Archive"], "Archive has \\HasChildren", repr(wire["Archive"]))

typ, data = im.select("INBOX", readonly=True)
exists = int(data[0])
check(typ == "OK" and exists == n_inbox, "SELECT INBOX: %d messages (seeded %d)" % (exists, n_inbox))

for name, want in sorted(manifest.get("counts", {}).items()):
    typ, data = im.select(imap_quote(utf7_encode(name)), readonly=True)
    if typ != "OK":
        fail("EXAMINE %r failed: %r" % (name, data))
    got = int(data[0])
    check(got == want, "%s holds %d messages (seeded %d)" % (name, got, want))
    bodies = fetch_bodies(im, got)
    bad = [mid for mid, h in bodies.items() if mid not in by_id or by_id[mid]["body_sha256"] != h]
    check(not bad, "%s: all %d bodies byte-identical to the seeded ones" % (name, got), repr(bad[:3]))
im.logout()

# ------------------------------------------------------- untrusted chain
print("== the test CA is needed to trust the server")
bare = ssl.create_default_context()
bare.load_verify_locations(cafile=env.get("MK_UNTRUSTED_CA_FILE") or env["MK_CA_FILE"] + ".missing")
try:
    with socket.create_connection((HOST, int(env["MK_IMAPS_PORT"])), timeout=10) as s:
        with bare.wrap_socket(s, server_hostname=HOST):
            pass
    fail("TLS handshake succeeded while trusting only another CA")
except ssl.SSLCertVerificationError as e:
    check(True, "handshake against another CA fails verification (%s)" % e.verify_message)

# ---------------------------------------------------------------- IDLE
print("== IMAP IDLE (scratch user %s)" % env["MK_USER2"])
im = imaplib.IMAP4_SSL(HOST, int(env["MK_IMAPS_PORT"]), ssl_context=ctx, timeout=30)
im.login(env["MK_USER2"], env["MK_PASS2"])
typ, data = im.select("INBOX")
before = int(data[0])
tag = im._new_tag()
im.send(tag + b" IDLE\r\n")
line = im.readline()
check(line.startswith(b"+"), "IDLE continuation", repr(line))
mid = "<idle-%d-%d@example.test>" % (os.getpid(), int(time.time() * 1000))
msg = ("From: idle@example.test\r\nTo: %s\r\nSubject: idle probe\r\nMessage-ID: %s\r\n\r\nping\r\n"
       % (env["MK_USER2"], mid)).encode()
with smtplib.LMTP(env["MK_LMTP_SOCKET"]) as lm:
    lm.sendmail("idle@example.test", [env["MK_USER2"]], msg)
im.sock.settimeout(WAIT)
seen = None
deadline = time.monotonic() + WAIT
while time.monotonic() < deadline:
    try:
        line = im.readline()
    except (socket.timeout, TimeoutError):
        break
    if not line:
        break
    if line.startswith(b"* ") and line.rstrip().upper().endswith(b"EXISTS"):
        seen = int(line.split()[1])
        break
check(seen is not None and seen > before, "IDLE pushed '* %s EXISTS' after an LMTP delivery" % seen)
im.send(b"DONE\r\n")
while True:
    line = im.readline()
    if not line or line.startswith(tag):
        break
check(line.startswith(tag + b" OK"), "IDLE ended with OK after DONE", repr(line))
im.logout()

# ------------------------------------------------------------ STARTTLS
print("== IMAP, STARTTLS on %s:%s" % (HOST, env["MK_IMAP_PORT"]))
im = imaplib.IMAP4(HOST, int(env["MK_IMAP_PORT"]), timeout=30)
check("STARTTLS" in im.capabilities, "plain IMAP offers STARTTLS", repr(im.capabilities))
im.starttls(ssl_context=ctx)
check(isinstance(im.sock, ssl.SSLSocket), "STARTTLS upgraded the connection (%s)" % im.sock.version())
im.login(user, password)
typ, data = im.select("INBOX", readonly=True)
check(int(data[0]) == n_inbox, "SELECT INBOX after STARTTLS: %s messages" % int(data[0]))
im.logout()


# ---------------------------------------------------------------- POP3
def pop3_check(p, how):
    p.user(user)
    p.pass_(password)
    count, size = p.stat()
    check(count == n_inbox, "POP3 (%s) STAT: %d messages, %d octets (INBOX has %d)" % (how, count, size, n_inbox))
    bodies = []
    for i in range(1, count + 1):
        _, lines, _ = p.retr(i)  # poplib removes the dot-stuffing
        raw = b"\r\n".join(lines) + b"\r\n"
        bodies.append(hashlib.sha256(raw.split(b"\r\n\r\n", 1)[1]).hexdigest())
    check(sorted(bodies) == inbox_bodies, "POP3 (%s) RETR: every body byte-identical (dot-stuffing intact)" % how)
    p.quit()


print("== POP3, implicit TLS on %s:%s" % (HOST, env["MK_POP3S_PORT"]))
pop3_check(poplib.POP3_SSL(HOST, int(env["MK_POP3S_PORT"]), context=ctx, timeout=30), "TLS")
print("== POP3, STLS on %s:%s" % (HOST, env["MK_POP3_PORT"]))
p = poplib.POP3(HOST, int(env["MK_POP3_PORT"]), timeout=30)
check("STLS" in p.capa(), "plain POP3 offers STLS")
p.stls(context=ctx)
check(isinstance(p.sock, ssl.SSLSocket), "STLS upgraded the connection (%s)" % p.sock.version())
pop3_check(p, "STLS")

# ---------------------------------------------------------- submission
print("== submission on %s:%s" % (HOST, env["MK_SUBMISSION_PORT"]))
s = smtplib.SMTP(HOST, int(env["MK_SUBMISSION_PORT"]), local_hostname="client.example.test", timeout=30)
s.ehlo()
check(s.has_extn("starttls"), "EHLO before TLS offers STARTTLS")
check(not s.has_extn("auth"), "EHLO before TLS offers no AUTH", repr(s.esmtp_features.get("auth")))
code, resp = s.docmd("AUTH", "PLAIN")
check(code >= 500, "AUTH before STARTTLS is refused (%d %s)" % (code, resp.decode(errors="replace")))
s.starttls(context=ctx)
s.ehlo()
mechs = (s.esmtp_features.get("auth") or "").upper().split()
check("PLAIN" in mechs and "LOGIN" in mechs, "EHLO after STARTTLS offers AUTH %s" % " ".join(mechs))
code, _ = s.mail("intruder@example.test")
if code == 250:
    code, resp = s.rcpt(env["MK_USER2"])
    check(code >= 500, "RCPT without AUTH is refused (%d %s)" % (code, resp.decode(errors="replace")))
else:
    check(code >= 500, "MAIL without AUTH is refused (%d)" % code)
s.rset()
try:
    s.login(user, password + "x")
    fail("AUTH with a wrong password succeeded")
except smtplib.SMTPAuthenticationError as e:
    check(True, "AUTH with a wrong password is refused (%d)" % e.smtp_code)
code, resp = s.login(user, password)
check(code == 235, "AUTH after STARTTLS succeeds (%d)" % code)
s.quit()

print("PASS: fixture servers")
