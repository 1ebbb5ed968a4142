#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`mailkeep run` (the agent) against a private Dovecot.

- a message delivered over LMTP to an IDLE'd INBOX reaches the store with
  no poll (poll_interval is hours);
- several accounts at once; one with a wrong password stops alone, with a
  clear error, and does not disturb the others;
- a connection that turns into a black hole (proxy stops forwarding,
  no FIN) is detected by the IDLE refresh + timeout and replaced, and
  the mail delivered meanwhile is fetched;
- the server restarts: the agent reconnects with backoff and catches up;
- SIGHUP adds an account without disturbing the running ones;
- SIGTERM: exit 0, store verified clean.
Timings appear only as generous deadlines, never as assertions of speed.

usage: test_run.py MAILKEEP SRCDIR
"""
import json
import os
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import Tally, fixture_start, fixture_stop, read_env, write_private  # noqa: E402

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
FIX = os.path.join(SRC, "tests", "fixtures")
HERE = os.path.join(SRC, "tests", "integration")
TALLY = Tally()
check = TALLY.check


def deliver(fx, rcpt, subject):
    msg = (f"From: Sender <sender@example.test>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\nbody of {subject}\r\n")
    with smtplib.LMTP(fx["MK_LMTP_SOCKET"]) as l:
        l.sendmail("sender@example.test", [rcpt], msg.encode())


def subjects(cfg, account, folder="INBOX"):
    r = subprocess.run([MAILKEEP, "-c", cfg, "ls", "--json", f"{account}/{folder}"], capture_output=True)
    if r.returncode != 0:
        return set()
    return {m["subject"] for m in json.loads(r.stdout)}


def wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


class Agent:
    def __init__(self, cfg, log):
        self.log = open(log, "w")
        self.logpath = log
        self.p = subprocess.Popen([MAILKEEP, "-c", cfg, "run"], stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            if "ready" in line:
                self.ready.set()

    def text(self):
        self.log.flush()
        return open(self.logpath).read()


def account(name, fx, user, password, port, extra=""):
    return (f"[account {name}]\nemail = {user}\nauth = plain\npassword = {password}\n"
            f"imap_host = 127.0.0.1\nimap_port = {port}\n{extra}")


def main():
    tmp = tempfile.mkdtemp(prefix="mk-run-")
    os.chmod(tmp, 0o755)
    fixdir = os.path.join(tmp, "fix")
    base = 20000 + random.Random(os.getpid()).randrange(0, 2000) * 10
    fenv = dict(MK_FIX_NO_SEED="1", MK_FIX_NO_POSTFIX="1", MK_TEST_PORT_BASE=str(base))
    if not fixture_start(fixdir, **fenv):
        return 1
    agent = None
    proxy = None
    try:
        fx = read_env(os.path.join(fixdir, "env"))
        deliver(fx, fx["MK_USER"], "before start")
        port_file = os.path.join(tmp, "proxy.port")
        proxy = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "blackhole_proxy.py"), "--target",
                                  fx["MK_IMAPS_PORT"], "--port-file", port_file])
        wait_for(lambda: os.path.exists(port_file), 10)
        pport = open(port_file).read().strip()

        store = os.path.join(tmp, "store")
        head = (f"[defaults]\nstore = {store}\ntls_ca_file = {fx['MK_CA_FILE']}\npoll_interval = 6h\n"
                f"idle_refresh = 3s\ntimeout = 2\n")
        cfg = os.path.join(tmp, "config")
        alice = account("alice", fx, fx["MK_USER"], fx["MK_PASS"], pport, 'idle = INBOX "Sent Items"\n')
        bad = account("wrong", fx, fx["MK_USER2"], "not-the-password", fx["MK_IMAPS_PORT"])
        # the same mailbox over POP3, polled by the agent every 2 s
        pop = (f"[account alicepop]\nemail = {fx['MK_USER']}\nauth = plain\npassword = {fx['MK_PASS']}\n"
               f"fetch = pop3\npop3_host = 127.0.0.1\npop3_port = {fx['MK_POP3S_PORT']}\npop3_tls = implicit\n"
               f"poll_interval = 2s\n")
        write_private(cfg, head + alice + bad + pop)

        # a fake systemd notify socket
        import socket as socketmod
        nsock = os.path.join(tmp, "notify.sock")
        notify = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_DGRAM)
        notify.bind(nsock)
        notify.settimeout(60)
        os.environ["NOTIFY_SOCKET"] = nsock
        agent = Agent(cfg, os.path.join(tmp, "agent.log"))
        del os.environ["NOTIFY_SOCKET"]
        check(agent.ready.wait(60), "agent: initial backup done, ready")
        try:
            msg = notify.recv(4096).decode()
        except OSError:
            msg = ""
        check(msg.startswith("READY=1") and "STATUS=" in msg, f"sd_notify: {msg.splitlines()[:2]}")
        r = subprocess.run([MAILKEEP, "-c", cfg, "run"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 75 and "another mailkeep agent" in r.stderr,
              "a second agent on the same store refuses: " + r.stderr.strip()[:120])
        r = subprocess.run([MAILKEEP, "-c", cfg, "sync"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 75 and "is running on" in r.stderr, "sync while the agent runs fails clearly")
        check("before start" in subjects(cfg, "alice"), "initial sync stored the existing mail")
        check(wait_for(lambda: "account wrong" in agent.text() and "login" in agent.text(), 20),
              "wrong password: that account stops with a clear error")

        deliver(fx, fx["MK_USER"], "pushed one")
        check(wait_for(lambda: "pushed one" in subjects(cfg, "alice"), 20),
              "push: delivered mail is in the store with no poll (poll_interval 6h)")
        check(wait_for(lambda: "pushed one" in subjects(cfg, "alicepop", "POP3"), 20),
              "POP3 account: polled by the agent every poll_interval")
        import imaplib
        import ssl
        ctx = ssl.create_default_context(cafile=fx["MK_CA_FILE"])
        c = imaplib.IMAP4_SSL("127.0.0.1", int(fx["MK_IMAPS_PORT"]), ssl_context=ctx)
        c.login(fx["MK_USER"], fx["MK_PASS"])
        c.append('"Sent Items"', None, None, b"From: a@example.test\r\nSubject: sent one\r\n\r\nx\r\n")
        c.logout()
        check(wait_for(lambda: "sent one" in subjects(cfg, "alice", "Sent Items"), 20),
              "a second IDLE folder (Sent Items) of the same account is pushed too")
        st = subprocess.run([MAILKEEP, "-c", cfg, "status", "--json"], capture_output=True, text=True, timeout=30)
        try:
            sj = json.loads(st.stdout)
            states = [c["state"] for a in sj["accounts"] if a["name"] == "alice" for c in a["connections"]]
        except (ValueError, KeyError):
            states = []
        check(st.returncode == 0 and states.count("idle") >= 2, f"mailkeep status --json: alice connections {states}")
        st = subprocess.run([MAILKEEP, "-c", cfg, "status"], capture_output=True, text=True, timeout=30)
        check("account wrong: stopped: login as" in st.stdout, "mailkeep status names the stopped account and why")
        mt = subprocess.run([MAILKEEP, "-c", cfg, "metrics"], capture_output=True, text=True, timeout=30)
        check(re.search(r'mailkeep_push_latency_seconds_count\{account="alice"\} [1-9]', mt.stdout) is not None
              and mt.stdout.rstrip().endswith("# EOF"),
              "mailkeep metrics: OpenMetrics text with the push latency histogram")

        # black hole: the proxy swallows everything on the open connections
        proxy.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        deliver(fx, fx["MK_USER"], "during black hole")
        check(wait_for(lambda: "during black hole" in subjects(cfg, "alice"), 40),
              "black-holed IDLE connection detected (refresh + timeout), replaced, mail fetched")

        # server restart: Dovecot stopped and started again (same config, ports, users)
        pid = int(fx["MK_DOVECOT_PID"])
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 20)
        time.sleep(2)  # the agent sees refused connections and backs off
        # (no captured output: the daemon would hold the pipes open)
        r = subprocess.run(["dovecot", "-c", fx["MK_DOVECOT_CONF"]], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        check(r.returncode == 0, "Dovecot restarted")
        wait_for(lambda: os.path.exists(fx["MK_LMTP_SOCKET"]), 20)
        time.sleep(0.5)
        deliver(fx, fx["MK_USER"], "after restart")
        check(wait_for(lambda: "after restart" in subjects(cfg, "alice"), 60),
              "server restart: the agent reconnects with backoff and catches up")

        # SIGHUP: add bob (the wrong-password account is dropped)
        deliver(fx, fx["MK_USER2"], "bob mail")
        write_private(cfg, head + alice + pop + account("bob", fx, fx["MK_USER2"], fx["MK_PASS2"], fx["MK_IMAPS_PORT"]))
        agent.p.send_signal(signal.SIGHUP)
        check(wait_for(lambda: "bob mail" in subjects(cfg, "bob"), 30), "SIGHUP: an added account is synced")
        print("  " + (re.findall(r"configuration reloaded: .*", agent.text()) or ["(no reload line)"])[-1])
        check("2 accounts kept" in agent.text(),
              "SIGHUP: the unchanged account kept its connections")
        deliver(fx, fx["MK_USER"], "after reload")
        check(wait_for(lambda: "after reload" in subjects(cfg, "alice"), 20), "push still works after the reload")

        # SIGTERM in the middle of a large fetch
        big = "x" * 76 + "\r\n"
        import imaplib
        import ssl
        ctx = ssl.create_default_context(cafile=fx["MK_CA_FILE"])
        c = imaplib.IMAP4_SSL("127.0.0.1", int(fx["MK_IMAPS_PORT"]), ssl_context=ctx)
        c.login(fx["MK_USER"], fx["MK_PASS"])
        for i in range(30):
            c.append("INBOX", None, None, (f"From: big@example.test\r\nSubject: big {i}\r\n\r\n" +
                                          big * 8000 + f"{i}\r\n").encode())
        c.logout()
        time.sleep(0.3)
        agent.p.send_signal(signal.SIGTERM)
        try:
            rc = agent.p.wait(30)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 0, f"SIGTERM during a large fetch: exit 0 (got {rc})")
        v = subprocess.run([MAILKEEP, "-c", cfg, "verify"], capture_output=True)
        check(v.returncode == 0, "store verified clean after the agent stopped")
        r = subprocess.run([MAILKEEP, "-c", cfg, "sync", "alice"], capture_output=True, timeout=120)
        got = subjects(cfg, "alice")
        check(r.returncode == 0 and all(f"big {i}" in got for i in range(30)),
              "nothing lost: the next run completes the interrupted fetch")
        if TALLY.failures:
            print(agent.text()[-3000:])
    finally:
        if agent is not None and agent.p.poll() is None:
            agent.p.kill()
            agent.p.wait()
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        fixture_stop(fixdir, **fenv)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{TALLY.failures} failed" if TALLY.failures else "all agent checks passed")
    return 1 if TALLY.failures else 0


sys.exit(main())
