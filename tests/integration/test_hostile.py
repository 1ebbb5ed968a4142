#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`mailkeep sync` against a hostile or Exchange-quirky IMAP server.

For each fault of tests/integration/hostile_imap.py: a clear error naming
the account and the folder, bounded memory (peak RSS), nothing stored that
is wrong, and the next run (against a well-behaved server) completes with
every message byte-exact. Quirks that are not errors (items reordered,
RFC822.SIZE that differs from the body, empty FETCH responses) must give a
correct backup.

usage: test_hostile.py MAILKEEP SRCDIR
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import rss_limit_kib, Tally, run_hwm, write_private  # noqa: E402

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
HERE = os.path.join(SRC, "tests", "integration")
FIX = os.path.join(SRC, "tests", "fixtures")
COUNT = 40
SEED = "hostile-test"
TALLY = Tally()
check = TALLY.check


class Hostile:
    def __init__(self, tmp, corpus, fault=None, once=False, extra=()):
        self.port_file = os.path.join(tmp, f"port-{time.monotonic_ns()}")
        self.log = self.port_file + ".log"
        args = ["/usr/bin/python3", os.path.join(HERE, "hostile_imap.py"), "--tls-dir", os.path.join(tmp, "tls"),
                "--port-file", self.port_file, "--log", self.log, "--corpus", corpus, "--password", "pw"]
        if fault:
            args += ["--fault", fault]
        if once:
            args.append("--fault-once")
        args += list(extra)
        self.p = subprocess.Popen(args, stderr=open(self.log + ".stderr", "wb"))
        for _ in range(400):
            if os.path.exists(self.port_file) and open(self.port_file).read().strip():
                self.port = int(open(self.port_file).read())
                return
            time.sleep(0.05)
        self.p.kill()
        raise SystemExit("hostile_imap.py did not start")

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def config(tmp, name, port, store):
    return write_private(os.path.join(tmp, name),
                         f"[defaults]\nstore = {store}\ntls_ca_file = {tmp}/tls/ca.pem\n"
                         f"[account work]\nemail = alice@example.test\nauth = plain\npassword = pw\n"
                         f"imap_host = 127.0.0.1\nimap_port = {port}\nmax_connections = 2\ntimeout = 5\n")


def mk(cfg, *args):
    """runs mailkeep; returns (result, its own peak RSS in KiB)"""
    rc, out, err, hwm = run_hwm([MAILKEEP, "-c", cfg, *args])
    return subprocess.CompletedProcess([MAILKEEP], rc, out, err), hwm


def stored(cfg):
    """folder -> sorted sha256 of every present message (read back with cat)"""
    out = {}
    for f in json.loads(subprocess.run([MAILKEEP, "-c", cfg, "ls", "--json", "work"], capture_output=True).stdout):
        shas = []
        msgs = json.loads(subprocess.run([MAILKEEP, "-c", cfg, "ls", "--json", f"work/{f['folder']}"],
                                         capture_output=True).stdout)
        for m in msgs:
            if m["gone"]:
                continue
            body = subprocess.run([MAILKEEP, "-c", cfg, "cat", f"work/{f['folder']}/{m['uid']}"],
                                  capture_output=True).stdout
            shas.append(hashlib.sha256(body).hexdigest())
        if shas:
            out[f["folder"]] = sorted(shas)
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="mk-hostile-")
    servers = []
    try:
        subprocess.run([os.path.join(FIX, "mkca.sh"), tmp], check=True, stdout=subprocess.DEVNULL)
        corpus = os.path.join(tmp, "corpus")
        subprocess.run(["/usr/bin/python3", os.path.join(FIX, "corpus.py"), "--count", str(COUNT), "--seed", SEED,
                        "--no-system-files", "--out", corpus, "--quiet"], check=True)
        manifest = json.load(open(os.path.join(corpus, "manifest.json")))
        msgs = manifest["messages"] if isinstance(manifest, dict) else manifest
        want = {}
        for m in msgs:
            want.setdefault(m["folder"], []).append(m["sha256"])
        want = {k: sorted(v) for k, v in want.items()}

        # quirks that must still give a correct backup
        for fault, extra in (("reorder", ()), ("size-skew", ()), (None, ("--uid-step", "7"))):
            h = Hostile(tmp, corpus, fault, extra=extra)
            servers.append(h)
            store = os.path.join(tmp, f"store-{fault}")
            cfg = config(tmp, f"{fault}.conf", h.port, store)
            r, _ = mk(cfg, "sync")
            got = stored(cfg)
            check(r.returncode == 0 and got == want,
                  f"{fault or 'sparse UIDs'}: exit {r.returncode}, backup byte-exact "
                  f"({sum(len(v) for v in got.values())}/{COUNT} messages)")
            h.stop()

        # empty FETCH (Exchange): not stored, reported, fetched on a later run
        h = Hostile(tmp, corpus, "empty-fetch", once=True)
        servers.append(h)
        cfg = config(tmp, "empty.conf", h.port, os.path.join(tmp, "store-empty"))
        r, _ = mk(cfg, "sync")
        check(r.returncode == 0 and b"the server listed 16 of its 17 messages" in r.stderr,
              "empty FETCH: reported as retried next run: " + r.stderr.decode(errors="replace").strip()[:150])
        r, _ = mk(cfg, "sync")
        check(r.returncode == 0 and stored(cfg) == want, "empty FETCH: the next run completes the backup")
        h.stop()

        # Outlook throttling: a one-shot sync stops and says so; the next run completes
        h = Hostile(tmp, corpus, "throttle")
        servers.append(h)
        cfg = config(tmp, "throttle.conf", h.port, os.path.join(tmp, "store-throttle"))
        r, _ = mk(cfg, "sync")
        check(r.returncode != 0 and b"throttled by the server: Request is throttled. Suggested Backoff Time: 1500"
              in r.stderr, "throttling: the sync stops with the server's words")
        r, _ = mk(cfg, "sync")
        check(r.returncode == 0 and stored(cfg) == want, "throttling: the next run completes")
        h.stop()

        # the agent obeys the hint: waits, reconnects, completes
        h = Hostile(tmp, corpus, "throttle")
        servers.append(h)
        cfg = config(tmp, "throttle-run.conf", h.port, os.path.join(tmp, "store-throttle-run"))
        log = open(os.path.join(tmp, "agent.log"), "w+")
        p = subprocess.Popen([MAILKEEP, "-c", cfg, "run"], stdout=subprocess.PIPE, stderr=log, text=True)
        ready = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ready:
            line = p.stdout.readline()
            ready = "ready" in line
        complete = False
        while ready and time.monotonic() < deadline and not complete:
            complete = stored(cfg) == want
            time.sleep(0.3)
        p.send_signal(15)
        rc = p.wait(30)
        log.seek(0)
        text = log.read()
        check(ready and complete and rc == 0 and "the server asks to wait 1500 ms" in text,
              "throttling: the agent waits as asked, reconnects and completes the backup")
        h.stop()

        # hostile faults: clear error, bounded memory, nothing wrong stored, next run resumes
        for fault, words in (("garbage", b"unexpected response from the server"), ("truncate-literal", b"closed the connection"),
                             ("huge-line", b"line longer than"), ("huge-literal", b"literal of more than"),
                             ("drop-mid-fetch", b"closed the connection"), ("bye-mid", b"BYE Connection closed")):
            h = Hostile(tmp, corpus, fault, once=True)
            servers.append(h)
            store = os.path.join(tmp, f"store-{fault}")
            cfg = config(tmp, f"{fault}.conf", h.port, store)
            r, peak_kb = mk(cfg, "sync")
            err = r.stderr.decode(errors="replace")
            named = "account work" in err and "folder " in err
            check(r.returncode != 0 and words in r.stderr and named,
                  f"{fault}: exit {r.returncode}, error names account and folder: "
                  + (err.strip().splitlines() or [""])[0][:160])
            check(peak_kb < rss_limit_kib(64), f"{fault}: peak RSS {peak_kb // 1024} MiB (< 64 MiB)")
            v = subprocess.run([MAILKEEP, "-c", cfg, "verify"], capture_output=True)
            partial = stored(cfg)
            check(v.returncode == 0 and all(set(v2) <= set(want.get(k, [])) for k, v2 in partial.items()),
                  f"{fault}: what was stored is correct and verify is clean")
            r, _ = mk(cfg, "sync")
            check(r.returncode == 0 and stored(cfg) == want, f"{fault}: the next run resumes and completes")
            h.stop()
    finally:
        for h in servers:
            h.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{TALLY.failures} failed" if TALLY.failures else "all hostile-server checks passed")
    return 1 if TALLY.failures else 0


sys.exit(main())
