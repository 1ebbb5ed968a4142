#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`mailkeep run` speaks sd_notify as the units expect (Type=notify,
WatchdogSec=, ExecReload=kill -HUP), against the private Dovecot of the
`mail` fixture, with a fake NOTIFY_SOCKET (a Unix datagram socket):

- READY=1 with a STATUS= line once the first backup is done (and not
  before: the store then holds the INBOX);
- WATCHDOG=1 about every half of WATCHDOG_USEC (set to 1 s here), and none
  when WATCHDOG_PID names another process;
- SIGHUP: RELOADING=1 with MONOTONIC_USEC=, then READY=1 with a STATUS=;
- SIGTERM: STOPPING=1, exit 0;
- with JOURNAL_STREAM naming its stderr, every log line carries a "<N>"
  priority; without it, none does;
- the bash completion offers the folders of the store the agent filled,
  through the real `mailkeep ls ACCOUNT --json`.

usage: test_notify.py MAILKEEP SRCDIR   (MK_FIX_ENV: the fixture's env file)
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(SRC, "tests", "fixtures"))
from mkfix import load_env, write_private  # noqa: E402

failures = 0


def check(cond, what, detail=""):
    global failures
    print(("ok   " if cond else "FAIL ") + what + (": " + str(detail) if detail and not cond else ""), flush=True)
    if not cond:
        failures += 1


def recv_all(sock, until, timeout):
    """Datagrams until one satisfies until(msg) or the timeout; returns all."""
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sock.settimeout(max(0.05, end - time.monotonic()))
        try:
            m = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(m)
        if until(m):
            break
    return got


def agent(cfg, nsock, log, extra_env):
    env = dict(os.environ, NOTIFY_SOCKET=nsock, **extra_env)
    for k in ("WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        if k not in extra_env:
            env.pop(k, None)
    return subprocess.Popen([MAILKEEP, "-c", cfg, "run"], stdout=subprocess.DEVNULL, stderr=log, env=env)


def main():
    fx = load_env()
    tmp = tempfile.mkdtemp(prefix="mk-notify-")
    cfg = os.path.join(tmp, "config")
    write_private(cfg, f"[defaults]\nstore = {tmp}/store\ntls_ca_file = {fx['MK_CA_FILE']}\n"
                       f"poll_interval = 6h\n\n[account alice]\nemail = {fx['MK_USER']}\nauth = plain\n"
                       f"password = {fx['MK_PASS']}\nimap_host = 127.0.0.1\nimap_port = {fx['MK_IMAPS_PORT']}\n"
                       f"idle = INBOX\n")
    nsock = os.path.join(tmp, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(nsock)
    logpath = os.path.join(tmp, "agent.log")
    log = open(logpath, "w")
    st = os.fstat(log.fileno())
    p = agent(cfg, nsock, log, {"WATCHDOG_USEC": "1000000", "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    try:
        msgs = recv_all(sock, lambda m: "READY=1" in m, 60)
        ready = [m for m in msgs if "READY=1" in m]
        check(bool(ready), "READY=1 after the first backup", msgs)
        if ready:
            check(re.search(r"(^|\n)STATUS=1 account\(s\) backed up and watched", ready[0]) is not None,
                  "READY=1 comes with STATUS=", ready[0])
        ls = subprocess.run([MAILKEEP, "-c", cfg, "ls", "--json", "alice"], capture_output=True, text=True)
        check('"folder":"INBOX"' in ls.stdout, "when READY=1 arrives the store holds the INBOX", ls.stdout[:200])

        t0 = time.monotonic()
        msgs = recv_all(sock, lambda m: False, 2.6)
        wd = [m for m in msgs if m == "WATCHDOG=1"]
        check(2 <= len(wd) <= 20, f"WATCHDOG=1 repeatedly with WATCHDOG_USEC=1000000 ({len(wd)} in "
                                 f"{time.monotonic() - t0:.1f} s)", msgs)

        p.send_signal(signal.SIGHUP)
        msgs = recv_all(sock, lambda m: "READY=1" in m, 20)
        rel = [i for i, m in enumerate(msgs) if m.startswith("RELOADING=1")]
        rdy = [i for i, m in enumerate(msgs) if "READY=1" in m]
        check(bool(rel) and re.search(r"\nMONOTONIC_USEC=\d+$", msgs[rel[0]]) is not None,
              "SIGHUP: RELOADING=1 with MONOTONIC_USEC=", msgs)
        check(bool(rel) and bool(rdy) and rdy[0] > rel[0] and "STATUS=configuration reloaded" in msgs[rdy[0]],
              "then READY=1 with STATUS=configuration reloaded", msgs)

        # the completion, on the store the agent filled
        out = subprocess.run(
            ["bash", "-c", '. "$1/packaging/completion/mailkeep.bash"; COMP_WORDS=("$2" -c "$3" ls alice/); '
             'COMP_CWORD=4; _mailkeep 2>/dev/null; printf "%s\\n" "${COMPREPLY[@]}"', "-", SRC, MAILKEEP, cfg],
            capture_output=True, text=True).stdout.split()
        check("alice/INBOX" in out and len(out) >= 2, "bash completion: folders from the real store", out)

        p.send_signal(signal.SIGTERM)
        msgs = recv_all(sock, lambda m: m.startswith("STOPPING=1"), 20)
        check(any(m.startswith("STOPPING=1") for m in msgs), "SIGTERM: STOPPING=1", msgs)
        rc = p.wait(30)
        check(rc == 0, "SIGTERM: exit 0", rc)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()
    text = open(logpath).read()
    lines = [l for l in text.splitlines() if l]
    check(bool(lines) and all(re.match(r"<[3-7]>mailkeep", l) for l in lines),
          f"JOURNAL_STREAM = its stderr: all {len(lines)} log lines start with <N>",
          [l for l in lines if not l.startswith("<")][:3])
    check(any(l.startswith("<6>mailkeep") for l in lines), "info lines carry <6>")

    # a watchdog meant for another process, and no JOURNAL_STREAM
    log2path = os.path.join(tmp, "agent2.log")
    log2 = open(log2path, "w")
    p = agent(cfg, nsock, log2, {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    try:
        msgs = recv_all(sock, lambda m: "READY=1" in m, 60)
        msgs += recv_all(sock, lambda m: False, 1.5)
        check(any("READY=1" in m for m in msgs) and "WATCHDOG=1" not in msgs,
              "WATCHDOG_PID of another process: READY, and no WATCHDOG=1", msgs)
        p.send_signal(signal.SIGTERM)
        check(p.wait(30) == 0, "second agent: exit 0 on SIGTERM")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        log2.close()
    text2 = open(log2path).read()
    check(text2.strip() != "" and not re.search(r"^<\d>", text2, re.M), "without JOURNAL_STREAM: no <N> prefixes",
          text2[:200])
    sock.close()
    if failures == 0:
        subprocess.run(["rm", "-rf", tmp])
    else:
        print(f"kept {tmp}")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


sys.exit(main())
