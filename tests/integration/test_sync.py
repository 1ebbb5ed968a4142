#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`mailkeep sync` against a real Dovecot, end to end.

Starts its own private Dovecot (tests/fixtures/mailserver.sh, no seed),
loads a generated corpus (tests/fixtures/corpus.py) and checks:
  - a full sync stores every message byte for byte (compared with what
    Dovecot serves), with flags and INTERNALDATE;
  - incremental: new mail, flag changes, expunges (kept, marked gone);
  - UIDVALIDITY change (folder deleted and recreated): old copy kept, new
    one fetched, bodies not stored twice;
  - folder rename: new folder synced, old one kept and marked gone;
  - export --maildir read back by notmuch and by Python's mailbox module,
    export --mbox read back; a second export adds nothing;
  - verify: clean, and it detects a flipped byte in a copy of the store;
  - the server is never modified by a sync (read-only EXAMINE, BODY.PEEK).

usage: test_sync.py MAILKEEP SRCDIR
"""
import base64
import email.utils
import hashlib
import imaplib
import json
import mailbox
import os
import random
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import (Tally, rss_limit_kib, fixture_start, fixture_stop, imap_quote, read_env, run_hwm,  # noqa: E402
                   utf7_decode, utf7_encode, write_private)

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
FIX = os.path.join(SRC, "tests", "fixtures")
TALLY = Tally()
check = TALLY.check


def mk(cfg, *args, check_rc=None):
    r = subprocess.run([MAILKEEP, "-c", cfg, *args], capture_output=True, timeout=600)
    if check_rc is not None and r.returncode != check_rc:
        print(f"  $ mailkeep {' '.join(args)} -> {r.returncode}\n{r.stderr.decode(errors='replace')[-2000:]}")
    return r


class Server:
    def __init__(self, fx):
        self.fx = fx

    def conn(self):
        ctx = ssl.create_default_context(cafile=self.fx["MK_CA_FILE"])
        c = imaplib.IMAP4_SSL("127.0.0.1", int(self.fx["MK_IMAPS_PORT"]), ssl_context=ctx)
        c.login(self.fx["MK_USER"], self.fx["MK_PASS"])
        return c

    @staticmethod
    def q(name):
        return imap_quote(utf7_encode(name))

    def snapshot(self, folder):
        """uid -> (sha256, flags set) as Dovecot serves them."""
        c = self.conn()
        typ, _ = c.select(self.q(folder), readonly=True)
        out = {}
        if typ == "OK":
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            for item in data:
                if not isinstance(item, tuple):
                    continue
                meta = item[0].decode()
                uid = int(re.search(r"UID (\d+)", meta).group(1))
                flags = set(re.search(r"FLAGS \(([^)]*)\)", meta).group(1).split())
                flags.discard("\\Recent")
                out[uid] = (hashlib.sha256(item[1]).hexdigest(), flags)
        c.logout()
        return out

    def folders(self):
        c = self.conn()
        typ, data = c.list()
        c.logout()
        names = []
        for line in data:
            m = re.match(rb'\(([^)]*)\) "(.)" (.*)$', line)
            name = m.group(3).decode()
            if name.startswith('"'):
                name = name[1:-1]
            names.append(utf7_decode(name))
        return names


def flags_of(lsflags):
    """mailkeep ls flag string 'SRFDT kw...' -> IMAP flag set."""
    m = {"S": "\\Seen", "R": "\\Answered", "F": "\\Flagged", "D": "\\Draft", "T": "\\Deleted"}
    parts = lsflags.split(" ", 1)
    out = {m[c] for c in parts[0] if c in m}
    if len(parts) > 1:
        out |= set(parts[1].split())
    return out


def store_view(cfg, account, folder):
    r = mk(cfg, "ls", "--json", f"{account}/{folder}", check_rc=0)
    if r.returncode != 0:
        return {}
    view = {}
    for m in json.loads(r.stdout):
        view.setdefault((m["uidvalidity"], m["uid"]), m)
    return view


def compare_folder(srv, cfg, account, folder, what):
    """every server message is in the store, byte-exact, same flags"""
    snap = srv.snapshot(folder)
    view = store_view(cfg, account, folder)
    present = {uid: m for (uv, uid), m in view.items() if not m["gone"]}
    ok = set(present) == set(snap)
    bad = 0
    for uid, (sha, flags) in snap.items():
        if uid not in present:
            continue
        body = mk(cfg, "cat", f"{account}/{folder}/{uid}").stdout
        if hashlib.sha256(body).hexdigest() != sha or flags_of(present[uid]["flags"]) != flags:
            bad += 1
    check(ok and bad == 0, f"{what}: {folder}: {len(snap)} messages byte-exact with flags"
          + ("" if ok else f" (server {sorted(snap)[:5]}.. vs store {sorted(present)[:5]}..)")
          + (f" ({bad} differ)" if bad else ""))
    return snap


def main():
    tmp = tempfile.mkdtemp(prefix="mk-sync-")
    os.chmod(tmp, 0o755)  # Postfix's unprivileged user must reach its dirs in the fixture
    fixdir = os.path.join(tmp, "fix")
    if not fixture_start(fixdir, MK_FIX_NO_SEED="1"):
        return 1
    try:
        fx = read_env(os.path.join(fixdir, "env"))
        srv = Server(fx)
        count = int(os.environ.get("MK_SYNC_TEST_COUNT", "160"))
        subprocess.run(["/usr/bin/python3", os.path.join(FIX, "corpus.py"), "--count", str(count), "--seed",
                        "sync-test", "--append-imap", "--env", os.path.join(fixdir, "env"), "--quiet"],
                       check=True)
        store = os.path.join(tmp, "store")
        cfg = os.path.join(tmp, "config")
        write_private(cfg, f"[defaults]\nstore = {store}\ntls_ca_file = {fx['MK_CA_FILE']}\n"
                      f"[account a]\nemail = {fx['MK_USER']}\nauth = plain\npassword = {fx['MK_PASS']}\n"
                      f"imap_host = 127.0.0.1\nimap_port = {fx['MK_IMAPS_PORT']}\nmax_connections = 3\n")

        before = {f: srv.snapshot(f) for f in srv.folders()}
        r = mk(cfg, "sync", check_rc=0)
        check(r.returncode == 0, "full sync exits 0")
        for folder in srv.folders():
            compare_folder(srv, cfg, "a", folder, "full sync")
        after = {f: srv.snapshot(f) for f in srv.folders()}
        check(before == after, "the server is unchanged by a sync (flags, \\Seen, contents)")
        st = os.stat(store)
        check(st.st_mode & 0o777 == 0o700 and all(os.stat(os.path.join(store, n)).st_mode & 0o077 == 0
                                                 for n in os.listdir(store)),
              "store directory 0700, files 0600")

        r = mk(cfg, "sync", check_rc=0)
        check(r.returncode == 0 and b" 0 new messages" in r.stdout, "no-change re-sync fetches nothing")

        # incremental: new mail, flags, expunge
        c = srv.conn()
        for i in range(3):
            msg = (f"From: New <new{i}@example.test>\r\nTo: a@example.test\r\nSubject: new {i}\r\n"
                   f"Message-ID: <new{i}@example.test>\r\n\r\nfresh body {i}\r\n").encode()
            c.append("INBOX", None, None, msg)
        c.select("INBOX")
        typ, data = c.uid("SEARCH", "ALL")
        uids = [int(x) for x in data[0].split()]
        c.uid("STORE", str(uids[0]), "+FLAGS", "(\\Flagged $Label1)")
        c.uid("STORE", str(uids[1]), "-FLAGS", "(\\Seen)")
        gone_uid = uids[2]
        c.uid("STORE", str(gone_uid), "+FLAGS", "(\\Deleted)")
        c.expunge()
        c.logout()
        r = mk(cfg, "verify", "--server")
        out = r.stdout.decode()
        check(r.returncode == 65 and "a/INBOX: server" in out and "not in store 3" in out
              and "stale in store 1" in out and "flags differ 2" in out,
              "verify --server sees the server's changes before the sync (exit 65)")
        r = mk(cfg, "sync", "a", check_rc=0)
        out = r.stdout.decode()
        check(r.returncode == 0 and "a/INBOX: 3 new" in out and "1 gone" in out,
              "incremental sync: 3 new, flag changes, 1 gone: " + out.splitlines()[0])
        compare_folder(srv, cfg, "a", "INBOX", "incremental")
        view = store_view(cfg, "a", "INBOX")
        gone = [m for m in view.values() if m["uid"] == gone_uid]
        check(len(gone) == 1 and gone[0]["gone"], "expunged message kept, marked gone")
        body = mk(cfg, "cat", f"a/INBOX/{gone_uid}")
        check(body.returncode == 0 and len(body.stdout) > 0, "a gone message can still be read")

        # UIDVALIDITY change: delete and recreate a folder with the same mail
        stats0 = json.loads(mk(cfg, "stats", "--json").stdout)
        folder = "Archive/2025"
        c = srv.conn()
        c.select(srv.q(folder), readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
        bodies = [x[1] for x in data if isinstance(x, tuple)]
        c.close()
        c.delete(srv.q(folder))
        c.create(srv.q(folder))
        for b in bodies:
            c.append(srv.q(folder), None, None, b)
        c.logout()
        r = mk(cfg, "sync", check_rc=0)
        out = r.stdout.decode()
        check(r.returncode == 0 and "UIDVALIDITY changed" in out, "UIDVALIDITY change detected and handled")
        compare_folder(srv, cfg, "a", folder, "after UIDVALIDITY change")
        stats1 = json.loads(mk(cfg, "stats", "--json").stdout)
        check(stats1["bodies"] == stats0["bodies"] and stats1["messages"] == stats0["messages"] + len(bodies),
              f"new generation stored as records only ({len(bodies)} records, 0 new bodies)")
        view = store_view(cfg, "a", folder)
        gens = {uv for (uv, uid) in view}
        check(len(gens) == 2 and all(m["gone"] for (uv, u), m in view.items() if uv == min(gens)),
              "old generation kept and marked gone")

        # rename a folder
        c = srv.conn()
        c.rename(srv.q("Archive/2024"), srv.q("Archive/Old"))
        c.logout()
        r = mk(cfg, "sync", check_rc=0)
        compare_folder(srv, cfg, "a", "Archive/Old", "after rename")
        ls = json.loads(mk(cfg, "ls", "--json", "a").stdout)
        old = [x for x in ls if x["folder"] == "Archive/2024"]
        check(len(old) == 1 and not old[0]["on_server"] and old[0]["messages"] > 0,
              "renamed-away folder kept and marked gone from the server")

        # a 40 MB message: streamed, never held whole (peak RSS of mailkeep itself)
        big = (b"From: Big <big@example.test>\r\nTo: a@example.test\r\nSubject: big\r\n"
               b"Message-ID: <big@example.test>\r\nContent-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n")
        rnd = random.Random(7)
        line = bytes(rnd.getrandbits(8) for _ in range(57))
        import base64
        chunk = b"".join(base64.b64encode(bytes(rnd.getrandbits(8) for _ in range(57))) + b"\r\n"
                         for _ in range(2000))
        big += chunk * (40 * 1024 * 1024 // len(chunk))
        c = srv.conn()
        c.create("Big")
        c.append("Big", None, None, big)
        c.logout()
        rc, _, _, hwm = run_hwm([MAILKEEP, "-q", "-c", cfg, "sync"])
        body = mk(cfg, "cat", "a/Big/1").stdout
        check(rc == 0 and hashlib.sha256(body).digest() == hashlib.sha256(big).digest(),
              f"a {len(big) // 1048576} MiB message stored byte-exact")
        check(hwm < rss_limit_kib(32), f"peak RSS while syncing it: {hwm // 1024} MiB (< 32 MiB)")

        # verify
        r = mk(cfg, "verify")
        check(r.returncode == 0 and b": ok" in r.stdout, "verify: clean store")
        r = mk(cfg, "verify", "--server")
        check(r.returncode == 0, "verify --server: store and server agree after a sync")

        # export to Maildir, read back by real readers
        md = os.path.join(tmp, "maildir")
        r = mk(cfg, "export", "--maildir", md, "a", check_rc=0)
        check(r.returncode == 0, "export --maildir: " + r.stdout.decode().strip())
        want = {}
        for (folder_name, snap) in ((f, srv.snapshot(f)) for f in srv.folders()):
            want[folder_name] = sorted(sha for sha, _ in snap.values())
        inbox = mailbox.Maildir(md, factory=None, create=False)
        got_inbox = sorted(hashlib.sha256(inbox.get_bytes(k).replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n"))
                           .hexdigest() for k in inbox.keys())
        check(set(want["INBOX"]) <= set(got_inbox), f"Maildir INBOX holds every server message ({len(got_inbox)} files)")
        files = sum(len(fs) for d, _, fs in os.walk(md) if os.path.basename(d) in ("cur", "new"))
        r = mk(cfg, "export", "--maildir", md, "a", check_rc=0)
        check(b"exported 0 new" in r.stdout, "second export adds nothing: " + r.stdout.decode().strip())
        if shutil.which("notmuch"):
            nmcfg = os.path.join(tmp, "notmuch-config")
            with open(nmcfg, "w") as f:
                f.write(f"[database]\npath={md}\n[new]\ntags=new\n")
            nenv = dict(os.environ, NOTMUCH_CONFIG=nmcfg)
            subprocess.run(["notmuch", "new", "--quiet"], env=nenv, check=True, capture_output=True)
            cnt = subprocess.run(["notmuch", "count", "--output=files", "*"], env=nenv, capture_output=True,
                                 text=True).stdout.strip()
            check(cnt == str(files), f"notmuch indexes every exported file ({cnt} of {files})")
        else:
            check(False, "notmuch is installed (packaging/deps.sh --test)")
        mb = os.path.join(tmp, "inbox.mbox")
        r = mk(cfg, "export", "--mbox", mb, "a/INBOX", check_rc=0)
        msgs = list(mailbox.mbox(mb))
        check(r.returncode == 0 and len(msgs) == len([m for m in store_view(cfg, "a", "INBOX").values()]),
              f"export --mbox: {len(msgs)} messages read back by Python's mbox reader")

        # verify detects a corrupted body in a copy of the store
        bad = os.path.join(tmp, "store-bad")
        shutil.copytree(store, bad)
        data_mdb = os.path.join(bad, "data.mdb")
        blob = open(data_mdb, "rb").read()
        flipped = False
        for sha, _ in sorted(srv.snapshot("INBOX").values()):
            pass
        # find the stored bytes of a large body. New bodies are codec MZ1
        # (storage/codec.c): base64 lines decoded, and runs of
        # incompressible bytes (the random attachments here) kept as
        # deflate stored blocks, so their decoded bytes are in data.mdb
        # as they are. Older stores: zlib level 6 of the whole body.
        c = srv.conn()
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
        c.logout()
        for item in data:
            if not isinstance(item, tuple) or len(item[1]) < 20000:
                continue
            probes = []
            for part in re.findall(rb"\r\n\r\n((?:[A-Za-z0-9+/]{76}\r\n){200,})", item[1]):
                raw = base64.b64decode(part)
                probes.append(raw[len(raw) // 2: len(raw) // 2 + 48])
            for wbits in (15, -15):
                co = zlib.compressobj(6, zlib.DEFLATED, wbits)
                z = co.compress(item[1]) + co.flush()
                probes.append(z[len(z) // 2: len(z) // 2 + 48])
            for probe in probes:
                pos = blob.find(probe)
                if pos > 0:
                    with open(data_mdb, "r+b") as f:
                        f.seek(pos + 10)
                        b = f.read(1)
                        f.seek(pos + 10)
                        f.write(bytes([b[0] ^ 0x55]))
                    flipped = True
                    break
            if flipped:
                break
        badcfg = os.path.join(tmp, "config-bad")
        write_private(badcfg, open(cfg).read().replace(f"store = {store}", f"store = {bad}"))
        r = mk(badcfg, "verify")
        check(flipped and r.returncode == 65 and b"PROBLEMS FOUND" in r.stdout,
              "verify detects a flipped byte in a stored body (exit 65)")
    finally:
        fixture_stop(fixdir)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{TALLY.failures} failed" if TALLY.failures else "all sync checks passed")
    return 1 if TALLY.failures else 0


sys.exit(main())
