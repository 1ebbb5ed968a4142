#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`mailkeep sync` of POP3 accounts (issue 7), end to end.

Starts its own private Dovecot (tests/fixtures/mailserver.sh, no seed),
loads a generated corpus and checks:
  - full then incremental download, byte-exact against what Dovecot serves
    over POP3 (Python's poplib), over implicit TLS and over STLS;
  - the same mailbox over IMAP and POP3 into one store: bodies stored once;
  - crash safety: MK_TEST_CRASH_AT / MK_TEST_CRASH_BEFORE at every commit,
    and kill -9: the rerun gives the same final store, no duplicates, and
    `verify` is clean;
  - pop3_delete = never / after_days N (fake clock MK_TEST_NOW) /
    after_store really delete (or not) on the server;
and against tests/integration/hostile_pop3.py:
  - a server without UIDL is refused clearly;
  - connection cut before QUIT deletes nothing and the next run neither
    duplicates nor loses; cut during / after RETR; no terminating dot;
    1 MB line; garbage; invalid UIDL: a clear error naming the account,
    bounded memory, nothing stored half.

usage: test_pop3.py MAILKEEP SRCDIR
"""
import hashlib
import json
import os
import poplib
poplib._MAXLINE = 64 * 1024 * 1024  # corpus messages have long lines
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import rss_limit_kib, Tally, fixture_start, fixture_stop, read_env, run_hwm, write_private  # noqa: E402

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
FIX = os.path.join(SRC, "tests", "fixtures")
HOSTILE = os.path.join(SRC, "tests", "integration", "hostile_pop3.py")
TALLY = Tally()
check = TALLY.check


def mk(cfg, *args, env=None, timeout=600):
    return subprocess.run([MAILKEEP, "-c", cfg, *args], capture_output=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def write_cfg(path, store, fx, user, pw, port, extra="", tls=None, imap=False):
    write_private(path, f"[defaults]\nstore = {store}\ntls_ca_file = {fx['MK_CA_FILE']}\n"
                  f"[account a]\nemail = {user}\nauth = plain\npassword = {pw}\n"
                  f"pop3_host = 127.0.0.1\npop3_port = {port}\n"
                  + (f"pop3_tls = {tls}\n" if tls else "")
                  + (f"imap_host = 127.0.0.1\nimap_port = {fx['MK_IMAPS_PORT']}\n" if imap else "")
                  + extra)


def pop_snapshot(fx, user, pw):
    """UIDL -> sha256 of the message as Dovecot serves it over POP3."""
    ctx = ssl.create_default_context(cafile=fx["MK_CA_FILE"])
    p = poplib.POP3_SSL("127.0.0.1", int(fx["MK_POP3S_PORT"]), context=ctx)
    p.user(user)
    p.pass_(pw)
    out = {}
    for line in p.uidl()[1]:
        n, u = line.decode().split(" ", 1)
        lines = p.retr(int(n))[1]
        out[u] = hashlib.sha256(b"".join(x + b"\r\n" for x in lines)).hexdigest()
    p.quit()
    return out


def store_pop3(cfg):
    """sha256 of every message in the store's POP3 folder (list, with repeats)."""
    r = mk(cfg, "ls", "--json", "a/POP3")
    if r.returncode != 0:
        return []
    shas = []
    for m in json.loads(r.stdout):
        body = mk(cfg, "cat", f"a/POP3/{m['uid']}").stdout
        shas.append(hashlib.sha256(body).hexdigest())
    return sorted(shas)


def stats(cfg):
    return json.loads(mk(cfg, "stats", "--json").stdout)


def corpus(fx_env_path, count, seed, user=None, pw=None):
    args = ["/usr/bin/python3", os.path.join(FIX, "corpus.py"), "--count", str(count), "--seed", seed,
            "--append-imap", "--env", fx_env_path, "--quiet"]
    if user:
        args += ["--user", user, "--password", pw]
    subprocess.run(args, check=True)


def test_dovecot(tmp, fx, envp):
    user, pw = fx["MK_USER"], fx["MK_PASS"]
    corpus(envp, int(os.environ.get("MK_POP3_TEST_COUNT", "120")), "pop3-test")
    snap = pop_snapshot(fx, user, pw)
    store = os.path.join(tmp, "store")
    cfg = os.path.join(tmp, "cfg")
    write_cfg(cfg, store, fx, user, pw, fx["MK_POP3S_PORT"], "fetch = pop3\n")
    r = mk(cfg, "sync")
    out = r.stdout.decode()
    check(r.returncode == 0 and f"a/POP3: {len(snap)} new" in out, f"full POP3 download: {out.strip()}")
    check(store_pop3(cfg) == sorted(snap.values()), f"{len(snap)} messages byte-exact against poplib")
    r = mk(cfg, "sync")
    check(r.returncode == 0 and b"a/POP3: up to date" in r.stdout, "second run downloads nothing")
    # incremental: three new messages
    import imaplib
    ctx = ssl.create_default_context(cafile=fx["MK_CA_FILE"])
    c = imaplib.IMAP4_SSL("127.0.0.1", int(fx["MK_IMAPS_PORT"]), ssl_context=ctx)
    c.login(user, pw)
    for i in range(3):
        c.append("INBOX", None, None, (f"From: n{i}@example.test\r\nSubject: new {i}\r\n\r\n.dot line {i}\r\n"
                                       f"..two dots\r\n.\r\nend\r\n").encode())
    c.logout()
    snap = pop_snapshot(fx, user, pw)
    r = mk(cfg, "sync")
    check(r.returncode == 0 and b"a/POP3: 3 new" in r.stdout, "incremental: 3 new: " + r.stdout.decode().strip())
    check(store_pop3(cfg) == sorted(snap.values()), "incremental: byte-exact (dot-stuffed lines included)")
    r = mk(cfg, "verify")
    check(r.returncode == 0, "verify: clean")
    ex = os.path.join(tmp, "export")
    r = mk(cfg, "export", "--maildir", ex, "a")
    check(r.returncode == 0 and sum(len(fs) for d, _, fs in os.walk(ex) if os.path.basename(d) in ("cur", "new")) == len(snap),
          "export --maildir writes the POP3 folder")

    # STLS on the plain port, into a new store
    cfg2 = os.path.join(tmp, "cfg-stls")
    write_cfg(cfg2, os.path.join(tmp, "store-stls"), fx, user, pw, fx["MK_POP3_PORT"], "fetch = pop3\n",
              tls="starttls")
    r = mk(cfg2, "sync", "--trace")
    err = r.stderr.decode(errors="replace")
    check(r.returncode == 0 and store_pop3(cfg2) == sorted(snap.values()), "STLS: full download byte-exact")
    check("STLS" in err and pw not in err, "trace shows STLS and never the password")

    # IMAP and POP3 into one store: bodies stored once
    cfg3 = os.path.join(tmp, "cfg-both")
    store3 = os.path.join(tmp, "store-both")
    write_cfg(cfg3, store3, fx, user, pw, fx["MK_POP3S_PORT"], "fetch = imap\n", imap=True)
    r = mk(cfg3, "sync")
    s0 = stats(cfg3)
    write_cfg(cfg3, store3, fx, user, pw, fx["MK_POP3S_PORT"], "fetch = both\n", imap=True)
    r = mk(cfg3, "sync")
    s1 = stats(cfg3)
    check(r.returncode == 0 and b"a/POP3:" in r.stdout and b"a/INBOX" in r.stdout,
          "fetch = both runs IMAP and POP3 in one sync")
    check(s1["bodies"] == s0["bodies"] and s1["messages"] == s0["messages"] + len(snap),
          f"same mailbox over IMAP and POP3: {len(snap)} POP3 records, 0 new bodies "
          f"(bodies {s0['bodies']} -> {s1['bodies']})")
    check(mk(cfg3, "verify").returncode == 0, "verify clean with shared bodies")
    return snap


def test_crash(tmp, fx, snap):
    user, pw = fx["MK_USER"], fx["MK_PASS"]
    want = sorted(snap.values())
    base = os.path.join(tmp, "cfg-crash")
    n_commits = None
    ok_all = True
    for mode in ("MK_TEST_CRASH_AT", "MK_TEST_CRASH_BEFORE"):
        k = 1
        while True:
            store = os.path.join(tmp, f"store-crash-{mode}-{k}")
            write_cfg(base, store, fx, user, pw, fx["MK_POP3S_PORT"], "fetch = pop3\npop3_delete = never\n")
            env = {"MK_TEST_BATCH_COUNT": "10", mode: str(k)}
            r = mk(base, "-q", "sync", env=env)
            crashed = r.returncode == 99
            r2 = mk(base, "-q", "sync")
            got = store_pop3(base)
            v = mk(base, "verify")
            if not (r2.returncode == 0 and got == want and v.returncode == 0):
                ok_all = False
                print(f"  {mode}={k}: rc {r.returncode}/{r2.returncode}, {len(got)} vs {len(want)}, verify {v.returncode}")
            shutil.rmtree(store, ignore_errors=True)
            if not crashed:
                n_commits = k - 1
                break
            k += 1
            if k > 60:
                break
    check(ok_all and n_commits and n_commits > 2,
          f"crash after/before each of {n_commits} commits: rerun gives the same store, no duplicates, verify clean")
    # kill -9 at several moments
    ok_all = True
    for delay in (0.02, 0.05, 0.1, 0.2):
        store = os.path.join(tmp, f"store-kill-{delay}")
        write_cfg(base, store, fx, user, pw, fx["MK_POP3S_PORT"], "fetch = pop3\n")
        p = subprocess.Popen([MAILKEEP, "-q", "-c", base, "sync"], env=dict(os.environ, MK_TEST_BATCH_COUNT="5"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        r2 = mk(base, "-q", "sync")
        got = store_pop3(base)
        if not (r2.returncode == 0 and got == want and mk(base, "verify").returncode == 0):
            ok_all = False
            print(f"  kill -9 after {delay}s: {len(got)} vs {len(want)}")
        shutil.rmtree(store, ignore_errors=True)
    check(ok_all, "kill -9 at 4 moments: rerun complete, no duplicates, verify clean")


def pop_count(fx, user, pw):
    ctx = ssl.create_default_context(cafile=fx["MK_CA_FILE"])
    p = poplib.POP3_SSL("127.0.0.1", int(fx["MK_POP3S_PORT"]), context=ctx)
    p.user(user)
    p.pass_(pw)
    n = p.stat()[0]
    p.quit()
    return n


def test_delete(tmp, fx, envp):
    user, pw = fx["MK_USER2"], fx["MK_PASS2"]
    corpus(envp, 40, "pop3-del", user, pw)
    n0 = pop_count(fx, user, pw)
    snap = pop_snapshot(fx, user, pw)
    store = os.path.join(tmp, "store-del")
    cfg = os.path.join(tmp, "cfg-del")
    write_cfg(cfg, store, fx, user, pw, fx["MK_POP3S_PORT"], "fetch = pop3\npop3_delete = never\n")
    r = mk(cfg, "sync")
    check(r.returncode == 0 and pop_count(fx, user, pw) == n0 and n0 > 0,
          f"pop3_delete = never: all {n0} messages stay on the server")
    now = int(time.time())
    write_cfg(cfg, store, fx, user, pw, fx["MK_POP3S_PORT"], "fetch = pop3\npop3_delete = after_days 3\n")
    r = mk(cfg, "sync", env={"MK_TEST_NOW": str(now + 2 * 86400)})
    check(r.returncode == 0 and pop_count(fx, user, pw) == n0, "after_days 3, 2 days later: nothing deleted")
    r = mk(cfg, "sync", env={"MK_TEST_NOW": str(now + 4 * 86400)})
    check(r.returncode == 0 and pop_count(fx, user, pw) == 0 and f"{n0} deleted on the server".encode() in r.stdout,
          "after_days 3, 4 days later: every stored message deleted on the server: " + r.stdout.decode().strip())
    check(store_pop3(cfg) == sorted(snap.values()) and mk(cfg, "verify").returncode == 0,
          "the store keeps every deleted message, byte-exact, verify clean")
    corpus(envp, 50, "pop3-del", user, pw)  # re-appends; same bytes as before plus 10 more
    snap2 = pop_snapshot(fx, user, pw)
    write_cfg(cfg, store, fx, user, pw, fx["MK_POP3S_PORT"], "fetch = pop3\npop3_delete = after_store\n")
    r = mk(cfg, "sync")
    check(r.returncode == 0 and pop_count(fx, user, pw) == 0, "after_store: server emptied after storing")
    s = stats(cfg)
    check(s["messages"] == n0 + len(snap2) and s["bodies"] == len(set(snap.values()) | set(snap2.values())),
          "re-appended identical messages get new UIDLs: new records, bodies deduplicated")


def start_hostile(tmp, fx, name, fault, once=False, n=6, caps=None):
    d = os.path.join(tmp, "h-" + name)
    os.makedirs(d, exist_ok=True)
    pf = os.path.join(d, "port")
    args = [sys.executable, HOSTILE, "--tls-dir", fx["MK_TLS_DIR"], "--port-file", pf, "--state",
            os.path.join(d, "state.json"), "--log", os.path.join(d, "log"), "--generate", str(n),
            "--password", "secret"]
    if fault:
        args += ["--fault", fault]
    if once:
        args.append("--once")
    if caps:
        args += ["--caps", caps]
    p = subprocess.Popen(args)
    for _ in range(200):
        if os.path.exists(pf):
            break
        time.sleep(0.05)
    port = open(pf).read().strip()
    cfg = os.path.join(d, "cfg")
    write_cfg(cfg, os.path.join(d, "store"), fx, "alice@example.test", "secret", port, "fetch = pop3\n")
    return p, d, cfg


def maildrop(d):
    return json.load(open(os.path.join(d, "state.json")))["messages"]


def test_hostile(tmp, fx):
    procs = []
    try:
        p, d, cfg = start_hostile(tmp, fx, "nouidl", "no-uidl")
        procs.append(p)
        r = mk(cfg, "sync")
        err = r.stderr.decode(errors="replace")
        check(r.returncode != 0 and "does not support UIDL" in err and "account a" in err
              and stats(cfg)["messages"] == 0, "server without UIDL refused clearly: " + err.strip()[:200])

        p, d, cfg = start_hostile(tmp, fx, "quit", "drop-before-quit", once=True)
        procs.append(p)
        with open(cfg, "a") as f:
            f.write("pop3_delete = after_store\n")
        r = mk(cfg, "sync")
        check(r.returncode != 0 and len(maildrop(d)) == 6 and stats(cfg)["messages"] == 6,
              "connection cut before QUIT: error, nothing deleted on the server, all 6 stored")
        r = mk(cfg, "sync")
        check(r.returncode == 0 and b"0 new" in r.stdout and len(maildrop(d)) == 0 and stats(cfg)["messages"] == 6
              and mk(cfg, "verify").returncode == 0,
              "next run: no duplicates, deletes now (QUIT confirmed): " + r.stdout.decode().strip().splitlines()[-1])

        for fault, stored_first in (("drop-during-retr", 1), ("drop-after-retr", 2), ("no-dot", 1)):
            p, d, cfg = start_hostile(tmp, fx, fault, fault, once=True)
            procs.append(p)
            rc, out, err, hwm = run_hwm([MAILKEEP, "-c", cfg, "sync"])
            err = err.decode(errors="replace")
            n1 = stats(cfg)["messages"]
            check(rc != 0 and "account a" in err and n1 == stored_first and mk(cfg, "verify").returncode == 0,
                  f"{fault}: clear error, {n1} complete message(s) kept, nothing half: {err.strip()[:160]}")
            r = mk(cfg, "sync")
            want = sorted(hashlib.sha256(m["body"].encode()).hexdigest() for m in maildrop(d))
            check(r.returncode == 0 and store_pop3(cfg) == want, f"{fault}: rerun completes, no duplicates")

        for fault, words in (("huge-line", "longer than"), ("garbage", "malformed"), ("bad-uidl", "invalid UIDL")):
            p, d, cfg = start_hostile(tmp, fx, fault, fault)
            procs.append(p)
            rc, out, err, hwm = run_hwm([MAILKEEP, "-c", cfg, "sync"])
            err = err.decode(errors="replace")
            check(rc != 0 and words in err and "account a" in err and stats(cfg)["messages"] == 0
                  and hwm < rss_limit_kib(32), f"{fault}: clear error ({err.strip()[:120]}), peak RSS {hwm // 1024} MiB")
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def main():
    tmp = tempfile.mkdtemp(prefix="mk-pop3-")
    os.chmod(tmp, 0o755)  # Dovecot's and Postfix's users must reach the fixture
    fixdir = os.path.join(tmp, "fix")
    if not fixture_start(fixdir, MK_FIX_NO_SEED="1"):
        return 1
    try:
        envp = os.path.join(fixdir, "env")
        fx = read_env(envp)
        snap = test_dovecot(tmp, fx, envp)
        test_crash(tmp, fx, snap)
        test_delete(tmp, fx, envp)
        test_hostile(tmp, fx)
    finally:
        fixture_stop(fixdir)
        if TALLY.failures == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("state kept in " + tmp)
    print(f"{TALLY.failures} failed" if TALLY.failures else "all POP3 checks passed")
    return 1 if TALLY.failures else 0


sys.exit(main())
