#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Crash safety of `mailkeep sync` (needs a build with MK_TEST_HOOKS=ON).

For every commit point N of a sync (MK_TEST_CRASH_AT=N: _exit(99) right
after the Nth commit; MK_TEST_CRASH_BEFORE=N: right before it), and for
kill -9 at random moments: crash, check `verify` is clean, rerun to the
end, and compare the store with a clean run's: the same records with the
same bodies and flags, the same number of bodies (no duplicates), verify
clean.

usage: test_crash.py MAILKEEP SRCDIR
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import Tally, fixture_start, fixture_stop, read_env, write_private  # noqa: E402

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
FIX = os.path.join(SRC, "tests", "fixtures")
TALLY = Tally()
check = TALLY.check


def write_cfg(tmp, name, fx, store):
    return write_private(os.path.join(tmp, name),
                         f"[defaults]\nstore = {store}\ntls_ca_file = {fx['MK_CA_FILE']}\n"
                         f"[account a]\nemail = {fx['MK_USER']}\nauth = plain\npassword = {fx['MK_PASS']}\n"
                         f"imap_host = 127.0.0.1\nimap_port = {fx['MK_IMAPS_PORT']}\nmax_connections = 2\n")


def run(cfg, *args, env=None):
    e = dict(os.environ, MK_TEST_BATCH_COUNT="7")
    if env:
        e.update(env)
    return subprocess.run([MAILKEEP, "-q", "-c", cfg, *args], capture_output=True, env=e, timeout=300)


def snapshot(cfg):
    """(folder, uidvalidity, uid) -> (size, flags, gone), bodies count"""
    out = {}
    for f in json.loads(run(cfg, "ls", "--json", "a").stdout):
        for m in json.loads(run(cfg, "ls", "--json", f"a/{f['folder']}").stdout):
            out[(f["folder"], m["uidvalidity"], m["uid"])] = (m["size"], m["flags"], m["gone"])
    stats = json.loads(run(cfg, "stats", "--json").stdout)
    return out, stats["bodies"], stats["messages"]


def main():
    tmp = tempfile.mkdtemp(prefix="mk-crash-")
    os.chmod(tmp, 0o755)
    fixdir = os.path.join(tmp, "fix")
    if not fixture_start(fixdir, MK_FIX_NO_SEED="1"):
        return 1
    try:
        fx = read_env(os.path.join(fixdir, "env"))
        subprocess.run(["/usr/bin/python3", os.path.join(FIX, "corpus.py"), "--count", "90", "--seed", "crash",
                        "--append-imap", "--env", os.path.join(fixdir, "env"), "--quiet"], check=True)
        ref_cfg = write_cfg(tmp, "ref.conf", fx, os.path.join(tmp, "ref"))
        r = run(ref_cfg, "sync")
        check(r.returncode == 0, "reference sync")
        ref = snapshot(ref_cfg)
        check(len(ref[0]) > 0, f"reference: {ref[2]} records, {ref[1]} bodies")

        points = 0
        n = 1
        while n < 200:
            store = os.path.join(tmp, f"s{n}")
            cfg = write_cfg(tmp, f"c{n}.conf", fx, store)
            r = run(cfg, "sync", env={"MK_TEST_CRASH_AT": str(n)})
            if r.returncode == 0:
                break  # fewer than n commits: every point covered
            if r.returncode != 99:
                check(False, f"crash at commit {n}: unexpected exit {r.returncode}: {r.stderr[-300:]}")
                break
            v = run(cfg, "verify")
            ok_verify = v.returncode == 0
            r2 = run(cfg, "sync")
            snap = snapshot(cfg)
            v2 = run(cfg, "verify")
            if not (ok_verify and r2.returncode == 0 and snap == ref and v2.returncode == 0):
                check(False, f"crash after commit {n}: verify {v.returncode}, rerun {r2.returncode}, "
                             f"same as clean run: {snap == ref}")
            points += 1
            shutil.rmtree(store)
            n += 1
        check(points >= 5, f"crash after each of {points} commits, then rerun: store equals the clean run's, "
                           "verify clean")
        if points == 0:
            check(False, "the binary honours MK_TEST_CRASH_AT (build with -DMK_TEST_HOOKS=ON)")

        before_points = 0
        for n in (1, 2, 3, points // 2 + 1, max(points, 1)):
            store = os.path.join(tmp, f"b{n}")
            cfg = write_cfg(tmp, f"b{n}.conf", fx, store)
            r = run(cfg, "sync", env={"MK_TEST_CRASH_BEFORE": str(n)})
            if r.returncode not in (0, 99):
                check(False, f"crash before commit {n}: exit {r.returncode}")
                continue
            v = run(cfg, "verify")
            r2 = run(cfg, "sync")
            if v.returncode == 0 and r2.returncode == 0 and snapshot(cfg) == ref:
                before_points += 1
            else:
                check(False, f"crash before commit {n}: verify {v.returncode} rerun {r2.returncode}")
            shutil.rmtree(store)
        check(before_points == 5, "crash just before a commit (5 points): nothing half-written, rerun completes")

        # kill -9 at random moments (seeded) within a full sync's duration
        rnd = random.Random(1234)
        t0 = time.monotonic()
        run(write_cfg(tmp, "t.conf", fx, os.path.join(tmp, "t")), "sync")
        span = time.monotonic() - t0
        kills = good = 0
        for i in range(8):
            store = os.path.join(tmp, f"k{i}")
            cfg = write_cfg(tmp, f"k{i}.conf", fx, store)
            p = subprocess.Popen([MAILKEEP, "-q", "-c", cfg, "sync"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=dict(os.environ, MK_TEST_BATCH_COUNT="7"))
            time.sleep(rnd.uniform(0.0, span))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait()
            v = run(cfg, "verify")
            r = run(cfg, "sync")
            if v.returncode == 0 and r.returncode == 0 and snapshot(cfg) == ref and run(cfg, "verify").returncode == 0:
                good += 1
            else:
                check(False, f"kill -9 #{i}: verify {v.returncode}, rerun {r.returncode}")
            shutil.rmtree(store)
        check(good == 8, f"kill -9 at random moments ({kills} of 8 runs killed mid-way): verify clean, "
                         "rerun equals the clean run")
    finally:
        fixture_stop(fixdir)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{TALLY.failures} failed" if TALLY.failures else "all crash checks passed")
    return 1 if TALLY.failures else 0


sys.exit(main())
