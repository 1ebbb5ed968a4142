#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""hostile_imap.py -- a small scriptable IMAP4rev1 server (implicit TLS) that
behaves like Exchange Online, with optional fault injection, for testing
mailkeep's sync against what Dovecot never does (OUTLOOK.md §2).

  hostile_imap.py --tls-dir DIR --port-file FILE [--log FILE]
                  [--corpus DIR | --generate N [--seed S]]
                  [--fault NAME [--fault-after K] [--fault-every N] [--fault-once]]
                  [--capability "..."] [--item-order request|reorder|ITEM,ITEM,...]
                  [--user U] [--password P] [--uidvalidity N] [--uid-step N]

TLS: DIR/server.pem + DIR/server.key (tests/fixtures/mkca.sh makes them; the
certificate covers IP:127.0.0.1). Listens on 127.0.0.1:0 (or --port), writes
the port to --port-file once listening, and serves until SIGTERM/SIGINT.

Mailbox model (in memory; bodies of a corpus are read from disk on demand):
folders with UIDVALIDITY (default 14, like Exchange), UIDs (1, 1+step, ...),
flags, INTERNALDATE and raw bytes, loaded from a tests/fixtures/corpus.py
--out DIR (its manifest.json), or --generate N messages with corpus.py in
memory (default: 12). Folders Drafts, Sent Items, Deleted Items, Junk Email
and Archive always exist (LIST shows \\Sent, \\Trash, ... as Exchange does).

Commands: CAPABILITY, NOOP, LOGOUT, ID, NAMESPACE, LOGIN, AUTHENTICATE PLAIN
(with SASL-IR or a "+" round trip), LIST/LSUB (* and % patterns, \\HasChildren
/ \\HasNoChildren), STATUS, SELECT/EXAMINE (EXISTS, RECENT, FLAGS,
PERMANENTFLAGS, UNSEEN, UIDVALIDITY, UIDNEXT, [READ-WRITE]/[READ-ONLY]),
UNSELECT, CLOSE, [UID] SEARCH (ALL, UID set, set), [UID] FETCH with sequence
sets (1:*, 5:9, 3,7,9:12, *) and items UID FLAGS INTERNALDATE RFC822.SIZE
BODY[] BODY.PEEK[] RFC822 BODY[HEADER] BODY.PEEK[HEADER] RFC822.HEADER (and
the ALL/FAST macros), IDLE/DONE. BODY[] on a SELECTed folder sets \\Seen.
Synchronising and LITERAL+ literals are accepted in commands. Anything else
gets Exchange's "BAD Command Error. 12".

--item-order: "request" (default: the order the client asked), "reorder"
(RFC822.SIZE UID FLAGS BODY[] INTERNALDATE ...), or a comma list.

Faults (one per run; K = --fault-after, default 3; "once" = only the first
time it can fire in this server's life, later connections behave normally):
  garbage           a line of binary junk after message K of a FETCH response
  truncate-literal  message K's literal is announced {N}, N/2 bytes follow,
                    then the connection is closed
  huge-line         after message K, 10 MB without CRLF (then waits for the
                    client to hang up, at most 60 s)
  huge-literal      message K is announced as {9999999999} (a few bytes
                    follow, then it waits for the client to hang up)
  drop-mid-fetch    the connection closes after K messages of a UID FETCH;
                    always once, so a rerun resumes against a normal server
  empty-fetch       every N-th UID (--fault-every, default 4) gets no FETCH
                    data, and the command still ends "OK FETCH completed."
  size-skew         RFC822.SIZE is the literal length + 17 (+- alternately)
  reorder           same as --item-order reorder
  throttle          the first SELECT/EXAMINE gets Outlook's "NO Request is throttled.
                    Suggested Backoff Time: 1500 milliseconds"; once
  bye-mid           "* BYE Connection closed. 14" after message K of a FETCH,
                    then close; once
--fault-once makes every fault one-shot.

Every command received (and connection events, faults fired) is logged to
--log, one line each, prefixed with the connection number. Standard library
only; Debian's /usr/bin/python3.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import ssl
import sys
import time
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
from mkfix import imap_quote, utf7_decode, utf7_encode  # noqa: E402  (tests/fixtures/mkfix.py)

EXCHANGE_CAPS = "IMAP4 IMAP4rev1 AUTH=PLAIN SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+"
FAULTS = ["garbage", "truncate-literal", "huge-line", "huge-literal", "drop-mid-fetch", "empty-fetch",
          "size-skew", "reorder", "bye-mid", "throttle"]
ONE_SHOT = {"drop-mid-fetch", "bye-mid", "throttle"}
SPECIAL_USE = {"Drafts": "\\Drafts", "Sent Items": "\\Sent", "Deleted Items": "\\Trash",
               "Junk Email": "\\Junk", "Archive": "\\Archive"}
ALWAYS = ["INBOX", "Drafts", "Sent Items", "Deleted Items", "Junk Email", "Archive"]
REORDER = ["RFC822.SIZE", "UID", "FLAGS", "BODY[]", "RFC822", "INTERNALDATE", "BODY[HEADER]", "RFC822.HEADER"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
MAX_COMMAND = 64 * 1024


class ProtocolError(Exception):
    pass


class Message:
    __slots__ = ("uid", "flags", "internaldate", "_body", "path", "size")

    def __init__(self, uid, flags, internaldate, body=None, path=None, size=None):
        self.uid = uid
        self.flags = list(flags)
        self.internaldate = internaldate
        self._body = body
        self.path = path
        self.size = len(body) if body is not None else size

    def body(self):
        if self._body is not None:
            return self._body
        with open(self.path, "rb") as f:
            return f.read()


class Folder:
    def __init__(self, name, uidvalidity):
        self.name = name
        self.uidvalidity = uidvalidity
        self.msgs = []
        self.uidnext = 1


class Model:
    def __init__(self, uidvalidity, uid_step):
        self.folders = {}
        self.uidvalidity = uidvalidity
        self.uid_step = max(1, uid_step)
        for f in ALWAYS:
            self.folder(f)

    def folder(self, name):
        if name.upper() == "INBOX":
            name = "INBOX"
        if name not in self.folders:
            self.folders[name] = Folder(name, self.uidvalidity + len(self.folders))
            # Parents exist implicitly ("Archive/2024" -> "Archive").
            if "/" in name:
                self.folder(name.rsplit("/", 1)[0])
        return self.folders[name]

    def add(self, folder, flags, internaldate, body=None, path=None, size=None):
        f = self.folder(folder)
        m = Message(f.uidnext, flags, internaldate, body, path, size)
        f.msgs.append(m)
        f.uidnext += self.uid_step
        return m

    def find(self, name):
        if name.upper() == "INBOX":
            return self.folders.get("INBOX")
        return self.folders.get(name)


def load_corpus(model, d):
    with open(os.path.join(d, "manifest.json"), encoding="utf-8") as f:
        man = json.load(f)
    for e in man["messages"]:
        model.add(e["folder"], e["flags"], e["internaldate"], path=os.path.join(d, e["file"]), size=e["size"])
    return len(man["messages"])


def generate(model, n, seed):
    import corpus  # noqa: E402  (tests/fixtures/corpus.py)
    gen = corpus.Corpus(seed, "alice@example.test", corpus.Sources(True))
    for i in range(n):
        msg, e = gen.build(i)
        model.add(e["folder"], e["flags"], e["internaldate"], body=msg)
    return n


# ---------------------------------------------------------------------------
# Command parsing
# ---------------------------------------------------------------------------

def tokenize(data):
    """Parse an assembled command (literals already inlined as ('lit', bytes)) into nested lists."""
    pos = 0
    stack = [[]]
    n = len(data)
    while pos < n:
        c = data[pos:pos + 1]
        if c == b" ":
            pos += 1
        elif c == b"(":
            stack.append([])
            pos += 1
        elif c == b")":
            if len(stack) < 2:
                raise ProtocolError("unbalanced )")
            lst = stack.pop()
            stack[-1].append(lst)
            pos += 1
        elif c == b'"':
            out = bytearray()
            pos += 1
            while True:
                if pos >= n:
                    raise ProtocolError("unterminated string")
                ch = data[pos]
                if ch == 0x5C:
                    out.append(data[pos + 1])
                    pos += 2
                elif ch == 0x22:
                    pos += 1
                    break
                else:
                    out.append(ch)
                    pos += 1
            stack[-1].append(("str", bytes(out)))
        elif c == b"\x00":
            # Literal marker inserted by the reader: \x00<len>\x00<bytes>
            end = data.index(b"\x00", pos + 1)
            ln = int(data[pos + 1:end])
            stack[-1].append(("str", data[end + 1:end + 1 + ln]))
            pos = end + 1 + ln
        else:
            m = re.compile(rb"[^ ()\"\x00]+").match(data, pos)
            tok = m.group(0)
            # Keep BODY[...]<..> with its bracket contents (which may hold spaces and parens).
            if b"[" in tok and b"]" not in tok:
                end = data.index(b"]", pos) + 1
                m2 = re.compile(rb"<[0-9.]+>").match(data, end)
                if m2:
                    end = m2.end()
                tok = data[pos:end]
            stack[-1].append(tok.decode("utf-8", "replace"))
            pos += len(tok)
    if len(stack) != 1:
        raise ProtocolError("unbalanced (")
    return stack[0]


def astring(tok):
    if isinstance(tok, tuple):
        return tok[1].decode("utf-8", "replace")
    if isinstance(tok, str):
        return tok
    raise ProtocolError("expected a string")


def parse_set(s, maxval, values):
    """Sequence set -> sorted list of the VALUES (UIDs or seqnos) it covers."""
    want = []
    for part in s.split(","):
        if not part:
            raise ProtocolError("bad set")
        if ":" in part:
            a, b = part.split(":", 1)
        else:
            a = b = part
        def num(x):
            if x == "*":
                return maxval
            if not x.isdigit() or int(x) == 0:
                raise ProtocolError("bad set")
            return int(x)
        lo, hi = sorted((num(a), num(b)))
        want.append((lo, hi))
    return [v for v in values if any(lo <= v <= hi for lo, hi in want)]


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------

class Server:
    def __init__(self, args, model):
        self.a = args
        self.model = model
        self.caps = args.capability.split()
        self.conn_no = 0
        self.fired = set()
        self.logf = open(args.log, "ab", buffering=0) if args.log else None
        if args.fault == "reorder":
            self.order = REORDER
        elif args.item_order == "request":
            self.order = None
        elif args.item_order == "reorder":
            self.order = REORDER
        else:
            self.order = [x.strip().upper() for x in args.item_order.split(",")]

    def log(self, cid, text):
        if self.logf:
            if isinstance(text, bytes):
                text = text.decode("utf-8", "backslashreplace")
            self.logf.write(("%.3f c%d %s\n" % (time.time(), cid, text)).encode("utf-8"))

    def fault_active(self, name):
        if self.a.fault != name:
            return False
        if (name in ONE_SHOT or self.a.fault_once) and name in self.fired:
            return False
        return True

    def fire(self, cid, name, what=""):
        self.fired.add(name)
        self.log(cid, "FAULT %s %s" % (name, what))

    async def handle(self, reader, writer):
        self.conn_no += 1
        cid = self.conn_no
        sess = Session(self, cid, reader, writer)
        self.log(cid, "CONNECT")
        try:
            await sess.run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            self.log(cid, "DISCONNECT %s" % type(e).__name__)
        except Exception as e:  # keep serving other connections
            self.log(cid, "ERROR %r" % e)
        finally:
            try:
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 5)
            except Exception:
                pass
            self.log(cid, "CLOSED")


class Hangup(Exception):
    """Close this connection now (fault or LOGOUT)."""


class Session:
    def __init__(self, server, cid, reader, writer):
        self.s = server
        self.cid = cid
        self.r = reader
        self.w = writer
        self.authed = False
        self.sel = None
        self.readonly = True

    async def send(self, data):
        self.w.write(data)
        await self.w.drain()

    async def readline(self):
        try:
            line = await self.r.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise ProtocolError("line too long")
        except asyncio.IncompleteReadError as e:
            if e.partial:
                self.s.log(self.cid, b"PARTIAL " + e.partial[:200])
            raise ConnectionResetError("eof")
        return line

    async def read_command(self):
        """Read one command, inlining literals. Returns raw bytes (CRLF stripped)."""
        parts = []
        total = 0
        while True:
            line = await self.readline()
            total += len(line)
            if total > MAX_COMMAND:
                raise ProtocolError("command too long")
            body = line.rstrip(b"\r\n")
            m = re.search(rb"\{(\d+)(\+?)\}$", body)
            if not m:
                parts.append(body)
                return b"".join(parts)
            n = int(m.group(1))
            if n > MAX_COMMAND:
                raise ProtocolError("literal too large")
            parts.append(body[:m.start()])
            if not m.group(2):
                await self.send(b"+ Ready for additional command text.\r\n")
            lit = await self.r.readexactly(n)
            parts.append(b"\x00%d\x00" % n + lit)

    async def run(self):
        if self.s.a.greeting_delay:
            await asyncio.sleep(self.s.a.greeting_delay)
        await self.send(b"* OK The Microsoft Exchange IMAP4 service is ready. "
                        b"[RgBSADIAUAAyADgAMQBDAEEAMAAxADIAMgAuAEQARQBVAFAAMgA4ADEALgBQAFIATwBEAC4ATwBVAFQATABPAE8ASwAuAEMATwBNAA==]\r\n")
        errors = 0
        while True:
            try:
                raw = await self.read_command()
            except ProtocolError as e:
                self.s.log(self.cid, "PROTOCOL-ERROR %s" % e)
                await self.send(b"* BYE Connection closed. 14\r\n")
                return
            self.s.log(self.cid, raw.replace(b"\x00", b"~"))
            try:
                toks = tokenize(raw)
            except (ProtocolError, ValueError):
                toks = []
            if len(toks) < 2 or not isinstance(toks[0], str) or not isinstance(toks[1], str):
                tag = toks[0] if toks and isinstance(toks[0], str) else "*"
                await self.send(b"%s BAD Command Error. 10\r\n" % tag.encode())
                errors += 1
            else:
                tag, cmd, args = toks[0], toks[1].upper(), toks[2:]
                try:
                    ok = await self.dispatch(tag, cmd, args)
                except Hangup:
                    return
                except (ProtocolError, IndexError, ValueError) as e:
                    self.s.log(self.cid, "BAD %s" % e)
                    await self.send(b"%s BAD Command Argument Error. 11\r\n" % tag.encode())
                    ok = False
                if ok is False:
                    errors += 1
            if errors >= 10:
                await self.send(b"* BYE Connection closed. 14\r\n")
                return

    # -- dispatch ------------------------------------------------------------

    async def dispatch(self, tag, cmd, args):
        t = tag.encode()
        if cmd == "CAPABILITY":
            await self.send(b"* CAPABILITY " + " ".join(self.s.caps).encode() + b"\r\n" + t + b" OK CAPABILITY completed.\r\n")
        elif cmd == "NOOP":
            await self.send(t + b" OK NOOP completed.\r\n")
        elif cmd == "LOGOUT":
            await self.send(b"* BYE Microsoft Exchange Server 2016 IMAP4 server signing off.\r\n" + t + b" OK LOGOUT completed.\r\n")
            raise Hangup()
        elif cmd == "ID":
            await self.send(b'* ID ("name" "Microsoft.Exchange.Imap4.Imap4Server" "version" "15.20")\r\n' + t + b" OK ID completed.\r\n")
        elif cmd == "LOGIN":
            if "LOGINDISABLED" in self.s.caps:
                await self.send(t + b" NO LOGIN failed.\r\n")
                return False
            return await self.login(t, astring(args[0]), astring(args[1]))
        elif cmd == "AUTHENTICATE":
            return await self.authenticate(t, args)
        elif not self.authed:
            await self.send(t + b" BAD Command received in Invalid state.\r\n")
            return False
        elif cmd == "NAMESPACE":
            await self.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n' + t + b" OK NAMESPACE completed.\r\n")
        elif cmd in ("LIST", "LSUB"):
            await self.list(t, cmd, astring(args[0]), astring(args[1]))
        elif cmd == "STATUS":
            await self.status(t, astring(args[0]), args[1])
        elif cmd in ("SELECT", "EXAMINE"):
            return await self.select(t, cmd, astring(args[0]))
        elif cmd in ("UNSELECT", "CLOSE"):
            self.sel = None
            await self.send(t + b" OK %s completed.\r\n" % cmd.encode())
        elif cmd == "IDLE":
            await self.idle(t)
        elif cmd == "UID" and args and isinstance(args[0], str) and args[0].upper() in ("FETCH", "SEARCH"):
            sub = args[0].upper()
            return await (self.fetch(t, args[1:], True) if sub == "FETCH" else self.search(t, args[1:], True))
        elif cmd == "FETCH":
            return await self.fetch(t, args, False)
        elif cmd == "SEARCH":
            return await self.search(t, args, False)
        else:
            await self.send(t + b" BAD Command Error. 12\r\n")
            return False
        return True

    async def login(self, t, user, password):
        if user == self.s.a.user and password == self.s.a.password:
            self.authed = True
            await self.send(t + b" OK LOGIN completed.\r\n")
            return True
        await self.send(t + b" NO LOGIN failed.\r\n")
        return False

    async def authenticate(self, t, args):
        mech = astring(args[0]).upper()
        if mech != "PLAIN" or "AUTH=PLAIN" not in self.s.caps:
            await self.send(t + b" NO AUTHENTICATE failed.\r\n")
            return False
        if len(args) > 1:
            resp = astring(args[1])
            if "SASL-IR" not in self.s.caps:
                await self.send(t + b" BAD Command Argument Error. 11\r\n")
                return False
        else:
            await self.send(b"+ \r\n")
            resp = (await self.readline()).rstrip(b"\r\n").decode("ascii", "replace")
            self.s.log(self.cid, "(SASL response)")
            if resp == "*":
                await self.send(t + b" BAD AUTHENTICATE cancelled.\r\n")
                return False
        try:
            parts = base64.b64decode(resp, validate=True).split(b"\x00")
            _, user, password = parts
            user, password = user.decode(), password.decode()
        except Exception:
            await self.send(t + b" NO AUTHENTICATE failed.\r\n")
            return False
        if user == self.s.a.user and password == self.s.a.password:
            self.authed = True
            await self.send(t + b" OK AUTHENTICATE completed.\r\n")
            return True
        await self.send(t + b" NO AUTHENTICATE failed.\r\n")
        return False

    # -- folders -------------------------------------------------------------

    async def list(self, t, cmd, ref, pattern):
        pat = utf7_decode(ref + pattern)
        rx = re.compile("^" + "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pat) + "$",
                        re.IGNORECASE if pat.upper().startswith("INBOX") else 0)
        out = []
        names = sorted(self.s.model.folders, key=lambda n: (n != "INBOX", n))
        if pattern == "":
            out.append(b'* %s (\\Noselect) "/" ""\r\n' % cmd.encode())
        for name in names:
            if not rx.match(name):
                continue
            kids = any(o.startswith(name + "/") for o in names)
            attrs = ["\\HasChildren" if kids else "\\HasNoChildren"]
            if name in SPECIAL_USE:
                attrs.append(SPECIAL_USE[name])
            out.append(b'* %s (%s) "/" %s\r\n' % (cmd.encode(), " ".join(attrs).encode(),
                                                  imap_quote(utf7_encode(name)).encode()))
        await self.send(b"".join(out) + t + b" OK %s completed.\r\n" % cmd.encode())

    async def status(self, t, name, items):
        f = self.s.model.find(utf7_decode(name))
        if not f:
            await self.send(t + b" NO The requested item could not be found.\r\n")
            return
        vals = []
        for it in items if isinstance(items, list) else [items]:
            it = it.upper()
            v = {"MESSAGES": len(f.msgs), "RECENT": 0, "UIDNEXT": f.uidnext, "UIDVALIDITY": f.uidvalidity,
                 "UNSEEN": sum(1 for m in f.msgs if "\\Seen" not in m.flags)}.get(it)
            if v is None:
                raise ProtocolError("bad STATUS item")
            vals.append("%s %d" % (it, v))
        await self.send(b"* STATUS %s (%s)\r\n" % (imap_quote(name).encode(), " ".join(vals).encode()) +
                        t + b" OK STATUS completed.\r\n")

    async def select(self, t, cmd, name):
        if self.s.fault_active("throttle"):
            self.s.fire(self.cid, "throttle", name)
            await self.send(t + b" NO Request is throttled. Suggested Backoff Time: 1500 milliseconds\r\n")
            return False
        f = self.s.model.find(utf7_decode(name))
        self.sel = None
        if not f:
            await self.send(t + b" NO %s doesn't exist.\r\n" % name.encode())
            return False
        self.sel = f
        self.readonly = cmd == "EXAMINE"
        flags = b"(\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)"
        out = [b"* %d EXISTS\r\n" % len(f.msgs), b"* 0 RECENT\r\n", b"* FLAGS " + flags + b"\r\n",
               b"* OK [PERMANENTFLAGS " + flags + b"] Permanent flags\r\n"]
        unseen = next((k + 1 for k, m in enumerate(f.msgs) if "\\Seen" not in m.flags), None)
        if unseen:
            out.append(b"* OK [UNSEEN %d] Is the first unseen message\r\n" % unseen)
        out += [b"* OK [UIDVALIDITY %d] UIDVALIDITY value\r\n" % f.uidvalidity,
                b"* OK [UIDNEXT %d] The next unique identifier value\r\n" % f.uidnext,
                t + b" OK [%s] %s completed.\r\n" % (b"READ-ONLY" if self.readonly else b"READ-WRITE", cmd.encode())]
        await self.send(b"".join(out))
        return True

    # -- SEARCH / FETCH --------------------------------------------------------

    def need_selected(self):
        if self.sel is None:
            raise ProtocolError("no mailbox selected")
        return self.sel

    def resolve(self, setstr, by_uid):
        f = self.need_selected()
        if by_uid:
            uids = [m.uid for m in f.msgs]
            maxv = uids[-1] if uids else 0
            if not uids:
                return []
            chosen = set(parse_set(setstr, maxv, uids))
            return [(k + 1, m) for k, m in enumerate(f.msgs) if m.uid in chosen]
        n = len(f.msgs)
        chosen = set(parse_set(setstr, n, range(1, n + 1)))
        return [(k + 1, m) for k, m in enumerate(f.msgs) if (k + 1) in chosen]

    async def search(self, t, args, by_uid):
        f = self.need_selected()
        hits = [(k + 1, m) for k, m in enumerate(f.msgs)]
        k = 0
        while k < len(args):
            a = args[k].upper() if isinstance(args[k], str) else ""
            if a == "ALL":
                k += 1
            elif a == "UID":
                sel = {m.uid for _, m in self.resolve(args[k + 1], True)}
                hits = [h for h in hits if h[1].uid in sel]
                k += 2
            elif a and (a[0].isdigit() or a[0] == "*"):
                sel = {id(m) for _, m in self.resolve(args[k], False)}
                hits = [h for h in hits if id(h[1]) in sel]
                k += 1
            elif a in ("SEEN", "UNSEEN", "FLAGGED"):
                want = "\\" + a.replace("UN", "").capitalize()
                neg = a.startswith("UN")
                hits = [h for h in hits if (want in h[1].flags) != neg]
                k += 1
            else:
                await self.send(t + b" BAD Command Argument Error. 11\r\n")
                return False
        nums = [str(m.uid if by_uid else seq) for seq, m in hits]
        await self.send(b"* SEARCH" + b"".join(b" " + x.encode() for x in nums) + b"\r\n" +
                        t + b" OK SEARCH completed.\r\n")
        return True

    async def fetch(self, t, args, by_uid):
        self.need_selected()
        setstr = args[0]
        items = args[1] if isinstance(args[1], list) else [args[1]]
        items = [i.upper() for i in items]
        expand = {"ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"], "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]}
        its = []
        for i in items:
            its.extend(expand.get(i, [i]))
        names = []  # response item names in request order
        for i in its:
            if i in ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "RFC822", "RFC822.HEADER"):
                names.append(i)
            elif i in ("BODY[]", "BODY.PEEK[]"):
                names.append(("BODY[]", i == "BODY[]"))
            elif i in ("BODY[HEADER]", "BODY.PEEK[HEADER]"):
                names.append(("BODY[HEADER]", i == "BODY[HEADER]"))
            else:
                await self.send(t + b" BAD Command Argument Error. 11\r\n")
                return False
        if by_uid and "UID" not in names:
            names.insert(0, "UID")
        a = self.s.a
        fault = a.fault
        k_after = a.fault_after
        sent = 0
        for seq, m in self.resolve(setstr, by_uid):
            if self.s.fault_active("empty-fetch") and (m.uid % a.fault_every == 0):
                self.s.fire(self.cid, "empty-fetch", "uid %d" % m.uid)
                continue
            sent += 1
            # Faults that strike at message K of a FETCH.
            if sent == k_after:
                if self.s.fault_active("truncate-literal"):
                    body = m.body()
                    self.s.fire(self.cid, "truncate-literal", "uid %d" % m.uid)
                    await self.send(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (seq, m.uid, len(body)) + body[:len(body) // 2])
                    raise Hangup()
                if self.s.fault_active("huge-literal"):
                    self.s.fire(self.cid, "huge-literal", "uid %d" % m.uid)
                    await self.send(b"* %d FETCH (UID %d BODY[] {9999999999}\r\n" % (seq, m.uid) + m.body()[:4096])
                    await self.wait_hangup()
            sets_seen = False
            parts = []
            body = None
            for n in names:
                if isinstance(n, tuple):
                    name, setseen = n
                    if body is None:
                        body = m.body()
                    data = body if name == "BODY[]" else body.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                    parts.append((name, b"%s {%d}\r\n" % (name.encode(), len(data)) + data))
                    sets_seen |= setseen
                elif n == "UID":
                    parts.append((n, b"UID %d" % m.uid))
                elif n == "FLAGS":
                    parts.append((n, None))  # filled in below (BODY[] may set \Seen)
                elif n == "INTERNALDATE":
                    parts.append((n, b'INTERNALDATE "%s"' % m.internaldate.encode()))
                elif n == "RFC822.SIZE":
                    size = m.size
                    if self.s.fault_active("size-skew"):
                        size += 17 if (m.uid % 2 or size < 17) else -17
                    parts.append((n, b"RFC822.SIZE %d" % size))
                elif n in ("RFC822", "RFC822.HEADER"):
                    if body is None:
                        body = m.body()
                    data = body if n == "RFC822" else body.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                    parts.append((n, b"%s {%d}\r\n" % (n.encode(), len(data)) + data))
                    sets_seen |= n == "RFC822"
            if sets_seen and not self.readonly and "\\Seen" not in m.flags:
                m.flags.append("\\Seen")
                if "FLAGS" not in names:
                    parts.append(("FLAGS", None))
            parts = [(n, v if v is not None else b"FLAGS (%s)" % " ".join(m.flags).encode()) for n, v in parts]
            if self.s.order:
                rank = {x: k for k, x in enumerate(self.s.order)}
                parts.sort(key=lambda p: rank.get(p[0], len(rank)))
            await self.send(b"* %d FETCH (" % seq + b" ".join(v for _, v in parts) + b")\r\n")
            if sent == k_after:
                if self.s.fault_active("garbage"):
                    self.s.fire(self.cid, "garbage", "after uid %d" % m.uid)
                    junk = bytes((x * 73 + 11) % 256 for x in range(300)).replace(b"\n", b"\x01")
                    await self.send(b"\x00\xff\xfe" + junk + b"\r\n")
                if self.s.fault_active("huge-line"):
                    self.s.fire(self.cid, "huge-line", "after uid %d" % m.uid)
                    chunk = b"A" * 65536
                    for _ in range(160):  # 10 MiB
                        await self.send(chunk)
                    await self.wait_hangup()
                if self.s.fault_active("drop-mid-fetch") and by_uid:
                    self.s.fire(self.cid, "drop-mid-fetch", "after uid %d" % m.uid)
                    raise Hangup()
                if self.s.fault_active("bye-mid"):
                    self.s.fire(self.cid, "bye-mid", "after uid %d" % m.uid)
                    await self.send(b"* BYE Connection closed. 14\r\n")
                    raise Hangup()
        await self.send(t + b" OK FETCH completed.\r\n")
        return True

    async def wait_hangup(self):
        try:
            await asyncio.wait_for(self.r.read(), 60)
        except Exception:
            pass
        raise Hangup()

    async def idle(self, t):
        await self.send(b"+ IDLE accepted, awaiting DONE command.\r\n")
        while True:
            line = await self.readline()
            self.s.log(self.cid, line.rstrip(b"\r\n"))
            if line.rstrip(b"\r\n").upper() == b"DONE":
                break
            # Anything else during IDLE is an error; Exchange answers BAD.
            await self.send(t + b" BAD Command Error. 10\r\n")
            return
        await self.send(t + b" OK IDLE completed.\r\n")


async def amain(a):
    model = Model(a.uidvalidity, a.uid_step)
    if a.corpus:
        n = load_corpus(model, a.corpus)
    else:
        n = generate(model, a.generate, a.seed)
    srv = Server(a, model)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(a.tls_dir, "server.pem"), os.path.join(a.tls_dir, "server.key"))
    server = await asyncio.start_server(srv.handle, "127.0.0.1", a.port, ssl=ctx, limit=MAX_COMMAND,
                                        ssl_handshake_timeout=30)
    port = server.sockets[0].getsockname()[1]
    srv.log(0, "LISTEN 127.0.0.1:%d messages=%d fault=%s" % (port, n, a.fault or "none"))
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, a.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    srv.log(0, "STOP")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tls-dir", required=True, help="directory with server.pem and server.key")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ap.add_argument("--corpus", help="a corpus.py --out DIR")
    ap.add_argument("--generate", type=int, default=12, help="messages to generate when no --corpus (default 12)")
    ap.add_argument("--seed", default="hostile")
    ap.add_argument("--fault", choices=FAULTS)
    ap.add_argument("--fault-after", type=int, default=3, help="K for message-position faults (default 3)")
    ap.add_argument("--fault-every", type=int, default=4, help="N for empty-fetch (default 4)")
    ap.add_argument("--fault-once", action="store_true")
    ap.add_argument("--capability", default=EXCHANGE_CAPS)
    ap.add_argument("--item-order", default="request")
    ap.add_argument("--user", default="alice@example.test")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--uidvalidity", type=int, default=14)
    ap.add_argument("--uid-step", type=int, default=1, help="UID gap between messages (default 1)")
    ap.add_argument("--greeting-delay", type=float, default=0.0)
    a = ap.parse_args()
    if a.fault_after < 1 or a.fault_every < 1:
        ap.error("--fault-after and --fault-every must be >= 1")
    asyncio.run(amain(a))


if __name__ == "__main__":
    main()
