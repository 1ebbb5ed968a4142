#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Self-test of hostile_imap.py (the scriptable Exchange-like IMAP server).

Makes its own TLS material (tests/fixtures/mkca.sh) and a 40-message corpus
(tests/fixtures/corpus.py) in a temporary directory, then starts
hostile_imap.py once per mode and talks to it with Python's imaplib (normal
mode: LOGIN, AUTHENTICATE PLAIN, LIST, EXAMINE/SELECT, UID SEARCH, UID FETCH
of whole folders compared byte for byte with the corpus, sequence sets,
FETCH by sequence number, IDLE, NOOP, LOGOUT) or a raw TLS socket (faults:
drop-mid-fetch and its resume, empty-fetch, size-skew, reorder, garbage,
truncate-literal, huge-literal, bye-mid). Every server is stopped by its PID.
Exits 0 on success. Standard library only; Debian's /usr/bin/python3.
"""

import base64
import hashlib
import imaplib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
sys.path.insert(0, FIXTURES)
from mkfix import Tally, imap_quote, utf7_encode  # noqa: E402  (tests/fixtures/mkfix.py)
PY = sys.executable or "/usr/bin/python3"
USER, PASSWORD = "alice@example.test", "s3cret pw"
FETCH_ITEMS = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"

TALLY = Tally()
check = TALLY.check


class Hostile:
    """One hostile_imap.py process."""

    def __init__(self, work, tls, corpus, *extra):
        self.work = work
        n = len(os.listdir(work))
        self.port_file = os.path.join(work, "port.%d" % n)
        self.log = os.path.join(work, "log.%d" % n)
        cmd = [PY, os.path.join(HERE, "hostile_imap.py"), "--tls-dir", tls, "--port-file", self.port_file,
               "--log", self.log, "--corpus", corpus, "--user", USER, "--password", PASSWORD] + list(extra)
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("hostile_imap.py did not start: %s" % " ".join(cmd))
            time.sleep(0.05)
        with open(self.port_file) as f:
            self.port = int(f.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()


def ctx_for(tls):
    return ssl.create_default_context(cafile=os.path.join(tls, "ca.pem"))


class Raw:
    """A raw TLS IMAP connection for looking at exact bytes."""

    def __init__(self, port, ctx):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError
        self.buf += d

    def line(self, limit=1 << 20):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise OverflowError
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln + b"\r\n"

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def cmd(self, text):
        self.n += 1
        tag = b"R%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        return tag

    def response(self, tag):
        """All lines (with literals inlined) up to and including TAG's completion."""
        out = []
        while True:
            ln = self.line()
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            if m:
                ln += self.exactly(int(m.group(1)))
                ln += self.line()
            out.append(ln)
            if ln.startswith(tag + b" "):
                return out

    def run(self, text):
        return self.response(self.cmd(text))

    def login(self):
        r = self.run('LOGIN "%s" "%s"' % (USER, PASSWORD))
        assert r[-1].split()[1] == b"OK", r

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def parse_fetch(lines):
    """[(uid, items dict, body bytes)] from raw FETCH responses."""
    out = []
    for ln in lines:
        if not re.match(rb"\* \d+ FETCH", ln):
            continue
        uid = int(re.search(rb"UID (\d+)", ln).group(1))
        size = re.search(rb"RFC822\.SIZE (\d+)", ln)
        m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", ln)
        body = ln[m.end():m.end() + int(m.group(1))] if m else None
        out.append((uid, int(size.group(1)) if size else None, body, ln))
    return out


def main():
    work = tempfile.mkdtemp(prefix="mk-hostile-")
    servers = []
    try:
        r = subprocess.run(["sh", os.path.join(FIXTURES, "mkca.sh"), work], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("mkca.sh failed: %s" % r.stderr)
        tls = os.path.join(work, "tls")
        corpus = os.path.join(work, "corpus")
        subprocess.run([PY, os.path.join(FIXTURES, "corpus.py"), "--count", "40", "--seed", "hostile-test",
                        "--out", corpus, "--quiet"], check=True)
        with open(os.path.join(corpus, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        by_folder = {}
        for e in manifest["messages"]:
            by_folder.setdefault(e["folder"], []).append(e)
        ctx = ctx_for(tls)
        srvdir = os.path.join(work, "srv")
        os.mkdir(srvdir)

        def start(*extra):
            h = Hostile(srvdir, tls, corpus, *extra)
            servers.append(h)
            return h

        # ---- normal mode, imaplib ----
        h = start()
        im = imaplib.IMAP4_SSL("127.0.0.1", h.port, ssl_context=ctx, timeout=20)
        check("AUTH=PLAIN" in im.capabilities and "SASL-IR" in im.capabilities and "IDLE" in im.capabilities
              and "CONDSTORE" not in im.capabilities, "Exchange-like CAPABILITY")
        try:
            im.login(USER, "wrong")
            check(False, "wrong password refused")
        except imaplib.IMAP4.error:
            check(True, "wrong password refused")
        typ, _ = im.login(USER, PASSWORD)
        check(typ == "OK", "LOGIN")
        typ, data = im.list('""', "*")
        names = {}
        for d in data:
            m = re.match(rb'\(([^)]*)\) "/" "(.*)"$', d)
            names[m.group(2).decode()] = m.group(1).decode()
        check(all(utf7_encode(f) in names for f in by_folder), "LIST shows every corpus folder")
        check("\\Sent" in names.get("Sent Items", "") and "\\HasNoChildren" in names.get("INBOX", ""),
              "LIST attributes (\\Sent, \\HasNoChildren)")
        check("\\HasChildren" in names.get("Archive", ""), "LIST \\HasChildren on Archive")
        check("Donn&AOk-es" in names, "LIST sends modified UTF-7 (Donn&AOk-es)")
        all_ok = True
        for folder, entries in by_folder.items():
            typ, data = im.select(imap_quote(utf7_encode(folder)), readonly=True)
            all_ok &= typ == "OK" and int(data[0]) == len(entries)
            typ, data = im.uid("SEARCH", None, "ALL")
            all_ok &= data[0].split() == [str(k + 1).encode() for k in range(len(entries))]
            typ, data = im.uid("FETCH", "1:*", FETCH_ITEMS)
            got = [d for d in data if isinstance(d, tuple)]
            all_ok &= len(got) == len(entries)
            for (meta, body), e in zip(got, entries):
                all_ok &= hashlib.sha256(body).hexdigest() == e["sha256"]
                all_ok &= b"RFC822.SIZE %d " % e["size"] in meta
                all_ok &= ('INTERNALDATE "%s"' % e["internaldate"]).encode() in meta
                all_ok &= set(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split()) == set(e["flags"])
        check(all_ok, "EXAMINE + UID SEARCH ALL + UID FETCH 1:* give the corpus byte for byte")
        inbox = by_folder["INBOX"]
        typ, data = im.select("INBOX", readonly=True)
        check(typ == "OK" and "READ-ONLY" in im.untagged_responses, "EXAMINE INBOX is [READ-ONLY]")
        typ, data = im.uid("FETCH", "3,5,7:9", "(UID RFC822.SIZE)")
        uids = [int(re.search(rb"UID (\d+)", d).group(1)) for d in data if d]
        check(uids == [3, 5, 7, 8, 9], "UID FETCH 3,5,7:9")
        typ, data = im.uid("FETCH", "9:5", "(UID)")
        check([int(re.search(rb"UID (\d+)", d).group(1)) for d in data if d] == [5, 6, 7, 8, 9], "UID FETCH 9:5")
        n = len(inbox)
        typ, data = im.uid("FETCH", "%d:*" % (n + 5), "(UID)")
        check([int(re.search(rb"UID (\d+)", d).group(1)) for d in data if d] == [n],
              "UID FETCH last+5:* returns the last UID (RFC 3501, as Exchange)")
        typ, data = im.fetch("2", "(RFC822.SIZE BODY.PEEK[])")
        check(hashlib.sha256(data[0][1]).hexdigest() == inbox[1]["sha256"], "FETCH by sequence number")
        typ, data = im.fetch("1:*", "(FLAGS)")
        check(typ == "OK" and len([d for d in data if d]) == n, "FETCH 1:* (FLAGS)")
        typ, data = im.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY)")
        check(b"MESSAGES %d" % n in data[0] and b"UIDVALIDITY 14" in data[0], "STATUS")
        typ, data = im.noop()
        check(typ == "OK", "NOOP")
        typ, _ = im.logout()
        check(typ == "BYE", "LOGOUT")

        # SELECT (read-write): BODY[] sets \Seen; AUTHENTICATE PLAIN without SASL-IR (imaplib's way).
        im = imaplib.IMAP4_SSL("127.0.0.1", h.port, ssl_context=ctx, timeout=20)
        typ, _ = im.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (USER, PASSWORD)).encode())
        check(typ == "OK", "AUTHENTICATE PLAIN with a + round trip")
        typ, data = im.select("INBOX")
        check(typ == "OK" and "READ-WRITE" in im.untagged_responses, "SELECT is [READ-WRITE]")
        unseen = [k + 1 for k, e in enumerate(inbox) if "\\Seen" not in e["flags"]]
        if unseen:
            typ, data = im.uid("FETCH", str(unseen[0]), "(BODY[])")
            typ, data = im.uid("FETCH", str(unseen[0]), "(FLAGS)")
            check(b"\\Seen" in data[0], "BODY[] on SELECT sets \\Seen")
        im.logout()

        # Raw: SASL-IR, IDLE, reversed item order in the request.
        raw = Raw(h.port, ctx)
        check(raw.greeting.startswith(b"* OK The Microsoft Exchange IMAP4 service is ready."), "Exchange greeting")
        ir = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
        r = raw.run("AUTHENTICATE PLAIN " + ir)
        check(r[-1].split()[1] == b"OK", "AUTHENTICATE PLAIN with SASL-IR")
        raw.run("EXAMINE INBOX")
        r = raw.run("UID FETCH 1 (BODY.PEEK[] RFC822.SIZE INTERNALDATE FLAGS)")
        check(re.match(rb"\* 1 FETCH \(UID 1 BODY\[\] \{", r[0]) is not None, "items in request order, UID first")
        tag = raw.cmd("IDLE")
        check(raw.line().startswith(b"+ IDLE accepted"), "IDLE continuation")
        raw.s.sendall(b"DONE\r\n")
        check(raw.line() == tag + b" OK IDLE completed.\r\n", "IDLE/DONE")
        r = raw.run("XYZZY")
        check(r[-1].endswith(b"BAD Command Error. 12\r\n"), "unknown command -> BAD Command Error. 12")
        raw.close()
        check("LOGIN alice@example.test" in h.log_text() and "UID FETCH 1:*" in h.log_text(), "commands logged")
        h.stop()

        # ---- faults ----
        k = 3
        # drop-mid-fetch: first connection dies after K messages, the next one is normal.
        h = start("--fault", "drop-mid-fetch", "--fault-after", str(k))
        im = imaplib.IMAP4_SSL("127.0.0.1", h.port, ssl_context=ctx, timeout=20)
        im.login(USER, PASSWORD)
        im.select("INBOX", readonly=True)
        try:
            im.uid("FETCH", "1:*", FETCH_ITEMS)
            check(False, "drop-mid-fetch drops the connection")
        except (imaplib.IMAP4.abort, OSError, EOFError):
            check(True, "drop-mid-fetch drops the connection")
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        got = parse_fetch(raw.run("UID FETCH %d:* %s" % (k + 1, FETCH_ITEMS)))
        check([u for u, _, _, _ in got] == list(range(k + 1, len(inbox) + 1)) and
              all(hashlib.sha256(b).hexdigest() == inbox[u - 1]["sha256"] for u, _, b, _ in got),
              "after drop-mid-fetch, a new connection resumes from UID K+1")
        raw.close()
        h.stop()

        # empty-fetch: every 4th UID answers nothing, still OK.
        h = start("--fault", "empty-fetch", "--fault-every", "4")
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        r = raw.run("UID FETCH 1:* " + FETCH_ITEMS)
        uids = [u for u, _, _, _ in parse_fetch(r)]
        check(r[-1].endswith(b"OK FETCH completed.\r\n") and uids == [u for u in range(1, len(inbox) + 1) if u % 4],
              "empty-fetch: UIDs 4, 8, ... missing, tagged OK")
        raw.close()
        h.stop()

        # size-skew: RFC822.SIZE != literal length.
        h = start("--fault", "size-skew")
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        got = parse_fetch(raw.run("UID FETCH 1:5 " + FETCH_ITEMS))
        check(len(got) == 5 and all(s != len(b) and abs(s - len(b)) == 17 for _, s, b, _ in got),
              "size-skew: RFC822.SIZE = literal +- 17")
        check(all(hashlib.sha256(b).hexdigest() == inbox[u - 1]["sha256"] for u, _, b, _ in got),
              "size-skew: literals still exact")
        raw.close()
        h.stop()

        # reorder: Exchange-style item order.
        h = start("--fault", "reorder")
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        got = parse_fetch(raw.run("UID FETCH 1:2 " + FETCH_ITEMS))
        check(len(got) == 2 and all(re.match(rb"\* \d+ FETCH \(RFC822\.SIZE \d+ UID \d+ FLAGS \([^)]*\) BODY\[\] \{", ln)
                                    and re.search(rb' INTERNALDATE "[^"]+"\)\r\n$', ln) for _, _, _, ln in got),
              "reorder: (RFC822.SIZE n UID n FLAGS (...) BODY[] {..} INTERNALDATE ...)")
        raw.close()
        h.stop()

        # garbage: a binary line in the middle of the FETCH response.
        h = start("--fault", "garbage", "--fault-after", "2")
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        r = raw.run("UID FETCH 1:4 " + FETCH_ITEMS)
        junk = [ln for ln in r if ln.startswith(b"\x00\xff\xfe")]
        check(len(junk) == 1 and r.index(junk[0]) == 2, "garbage: junk line after message 2")
        raw.close()
        h.stop()

        # truncate-literal: {N} then N/2 bytes and EOF.
        h = start("--fault", "truncate-literal", "--fault-after", "2")
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        raw.cmd("UID FETCH 1:4 " + FETCH_ITEMS)
        raw.line()
        raw.exactly(inbox[0]["size"])
        raw.line()
        hdr = raw.line()
        n = int(re.search(rb"\{(\d+)\}", hdr).group(1))
        got = b""
        try:
            while True:
                got += raw.exactly(1)
        except (EOFError, ssl.SSLError, OSError):
            pass
        check(n == inbox[1]["size"] and len(got) == n // 2, "truncate-literal: {N}, N/2 bytes, then EOF")
        raw.close()
        h.stop()

        # huge-literal: {9999999999}.
        h = start("--fault", "huge-literal", "--fault-after", "1")
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        raw.cmd("UID FETCH 1:* " + FETCH_ITEMS)
        check(raw.line().endswith(b"{9999999999}\r\n"), "huge-literal: announces {9999999999}")
        raw.close()
        h.stop()

        # huge-line: 10 MB without CRLF.
        h = start("--fault", "huge-line", "--fault-after", "1")
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        raw.cmd("UID FETCH 1:* " + FETCH_ITEMS)
        raw.line()
        raw.exactly(inbox[0]["size"])
        raw.line()
        try:
            raw.line(limit=(10 << 20) - 1)
            check(False, "huge-line: 10 MB without CRLF")
        except OverflowError:  # the client-side line limit tripped: 10 MiB and no CRLF yet
            check(b"\r\n" not in raw.buf, "huge-line: 10 MB without CRLF")
        except (EOFError, OSError):
            check(False, "huge-line: 10 MB without CRLF")
        raw.close()
        h.stop()

        # bye-mid: untagged BYE after K messages, once.
        h = start("--fault", "bye-mid", "--fault-after", "2")
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        raw.cmd("UID FETCH 1:* " + FETCH_ITEMS)
        lines = []
        try:
            while True:
                ln = raw.line()
                m = re.search(rb"\{(\d+)\}\r\n$", ln)
                if m:
                    raw.exactly(int(m.group(1)))
                lines.append(ln)
        except (EOFError, ssl.SSLError, OSError):
            pass
        check(lines and lines[-1] == b"* BYE Connection closed. 14\r\n" and
              len([x for x in lines if b" FETCH (" in x]) == 2, "bye-mid: * BYE Connection closed. 14 after 2")
        raw.close()
        raw = Raw(h.port, ctx)
        raw.login()
        raw.run("EXAMINE INBOX")
        check(len(parse_fetch(raw.run("UID FETCH 1:* " + FETCH_ITEMS))) == len(inbox), "bye-mid fires once")
        raw.close()
        h.stop()
    finally:
        for h in servers:
            h.stop()
        if not TALLY.failures:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept %s for inspection" % work)
    if TALLY.failures:
        print("%d check(s) failed" % TALLY.failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
