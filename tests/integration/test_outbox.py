#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The outbox (issue 5), end to end, against a private Postfix submission
server (STARTTLS, AUTH through Dovecot) delivering into Dovecot over LMTP.

Checks:
  - `send -t`: the message arrives in every recipient's mailbox with the
    body byte-identical (apart from the trace headers the servers add);
    Bcc is not visible anywhere; 8-bit and UTF-8 headers; a 20 MB
    attachment; lines starting with "." survive; the sender's Sent copy
    (Postfix files bob's submissions in his Sent, as Outlook does);
  - `sendmail` (sendmail(8) options) for MUAs and scripts;
  - a refused recipient (550) next to an accepted one: sent to the one,
    the refusal recorded and shown;
  - 4xx from Postfix (recipient access map): deferred, then sent by
    `outbox flush` once the map is fixed; 5xx: failed at once, reply shown;
  - a wrong password: a clear error, exit 77, the message stays queued;
  - scheduled sending by the agent (`run`): not before its time, on time,
    and across an agent restart; `outbox cancel`/`retry`/`rm`;
  - hostile servers (tests/integration/hostile_smtp.py): no STARTTLS
    offered, bytes injected after "220 go ahead", STARTTLS refused, a
    1 MiB reply line, a connection dropped mid-DATA: refused with a clear
    error, no credential or message byte sent in clear, nothing lost;
  - exactly once (MK_TEST_HOOKS): 50 messages sent by runs that are killed
    at every step (after the "sending" commit, after DATA before the dot,
    after the dot before the reply is recorded, before and after the final
    commit); the agent then settles the uncertain ones by looking in Sent:
    every message arrives exactly once, none is lost, none duplicated.

usage: test_outbox.py MAILKEEP SRCDIR
"""
import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import Tally, fixture_start, fixture_stop, read_env, run_hwm, rss_limit_kib, write_private  # noqa: E402

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
HOSTILE = os.path.join(SRC, "tests", "integration", "hostile_smtp.py")
TALLY = Tally()
check = TALLY.check


def mk(cfg, *args, data=None, env=None, timeout=300):
    return subprocess.run([MAILKEEP, "-c", cfg, *args], input=data, capture_output=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def write_cfg(path, store, fx, extra_accounts=""):
    return write_private(path, f"""[defaults]
store = {store}
tls_ca_file = {fx['MK_CA_FILE']}
timeout = 10

[account bob]
email = {fx['MK_USER2']}
password = {fx['MK_PASS2']}
imap_host = 127.0.0.1
imap_port = {fx['MK_IMAPS_PORT']}
smtp_host = 127.0.0.1
smtp_port = {fx['MK_SUBMISSION_PORT']}
server_saves_sent = Sent
{extra_accounts}""")


def maildir(fx, user, folder=""):
    """Messages (bytes) in a Dovecot Maildir folder of the fixture."""
    base = os.path.join(fx["MK_MAIL_DIR"], user, "." + folder if folder else "")
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(base, sub)
        if os.path.isdir(d):
            for n in sorted(os.listdir(d)):
                with open(os.path.join(d, n), "rb") as f:
                    out.append(f.read())
    return out


def wait_for(fn, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    return fn()


def strip_trace(msg):
    """The message as the sender wrote it: without the Return-Path,
    Delivered-To and Received fields that Postfix and Dovecot prepend."""
    lines = msg.split(b"\n")
    i = 0
    while i < len(lines):
        if re.match(rb"^(Return-Path|Delivered-To|Received):", lines[i], re.I):
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
            continue
        break
    return b"\n".join(lines[i:])


def with_subject(msgs, subject):
    return [m for m in msgs if re.search(rb"^Subject: " + re.escape(subject) + rb"\r?$", m, re.M)]


def outbox(cfg):
    r = mk(cfg, "outbox", "ls", "--json")
    return json.loads(r.stdout) if r.returncode == 0 else []


def entry(cfg, oid):
    r = mk(cfg, "outbox", "show", str(oid), "--json")
    return json.loads(r.stdout) if r.returncode == 0 else {}


def queued_id(out):
    m = re.search(rb"outbox (\d+): queued", out)
    return int(m.group(1)) if m else 0


def postfix_access(fx, lines):
    pf = fx["MK_POSTFIX_DIR"]
    with open(os.path.join(pf, "rcpt_access"), "w") as f:
        f.write("".join(x + "\n" for x in lines) or "nobody-here@example.test 550 5.1.1 no such user\n")
    subprocess.run(["postmap", "-c", pf, "hash:" + os.path.join(pf, "rcpt_access")], check=True)
    subprocess.run(["postfix", "-c", pf, "reload"], check=True, capture_output=True)
    time.sleep(1.0)  # smtpd processes pick the new map up on their next session


# ---------------------------------------------------------------------------

def test_delivery(tmp, fx, cfg):
    alice, bob = fx["MK_USER"], fx["MK_USER2"]
    rnd = random.Random(5)
    blob = bytes(rnd.getrandbits(8) for _ in range(15 * 1024 * 1024))  # ~20 MB once base64'd
    att = base64.encodebytes(blob).replace(b"\n", b"\r\n")
    body = (b"Hello Alice,\r\n"
            b".a line starting with a dot\r\n"
            b"..two dots\r\n"
            b".\r\n"
            b"a lone dot above, 8-bit here: \xc3\xa9t\xc3\xa9 \xe2\x82\xac\r\n")
    msg = (b"From: Bob <" + bob.encode() + b">\r\n"
           b"To: Alice <" + alice.encode() + b">\r\n"
           b"Bcc: " + bob.encode() + b"\r\n"
           b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and raw \xc3\xbc 8-bit\r\n"
           b"Date: Sun, 06 Dec 2026 09:00:00 +0100\r\n"
           b"Message-ID: <delivery-1@example.test>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
           b"\r\n"
           b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body +
           b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           b"Content-Disposition: attachment; filename=\"big.bin\"\r\n\r\n" + att + b"--b1--\r\n")
    check(len(msg) > 20 * 1000 * 1000, f"the test message is {len(msg) / 1e6:.1f} MB")
    p = subprocess.run([MAILKEEP, "-c", cfg, "send", "-t"], input=msg, capture_output=True, timeout=300)
    check(p.returncode == 0 and b"sent to 2 recipients" in p.stdout,
          f"send -t of a 20 MB message: exit {p.returncode}: {p.stdout.decode().strip()} {p.stderr.decode().strip()}")
    expected = msg.replace(b"Bcc: " + bob.encode() + b"\r\n", b"").replace(b"\r\n", b"\n")
    got_a = wait_for(lambda: with_subject(maildir(fx, alice), b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and raw \xc3\xbc 8-bit"))
    got_b = wait_for(lambda: with_subject(maildir(fx, bob), b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and raw \xc3\xbc 8-bit"))
    got_s = wait_for(lambda: with_subject(maildir(fx, bob, "Sent"), b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and raw \xc3\xbc 8-bit"))
    check(len(got_a) == 1 and strip_trace(got_a[0]) == expected,
          "To: recipient got the message byte-identical (dot lines, 8-bit, 20 MB attachment)")
    check(len(got_b) == 1 and strip_trace(got_b[0]) == expected, "Bcc: recipient got it byte-identical")
    check(all(b"\nBcc:" not in m and not m.startswith(b"Bcc:") for m in got_a + got_b + got_s),
          "no delivered copy shows the Bcc field")
    check(len(got_s) == 1, "the sender's Sent copy (filed by the server) is there")
    e = [x for x in outbox(cfg) if x["message_id"] == "<delivery-1@example.test>"]
    check(len(e) == 1 and e[0]["state"] == "sent" and e[0]["size"] == len(msg) - len(b"Bcc: " + bob.encode() + b"\r\n"),
          "outbox ls --json: sent, size of what was sent")
    check("queued as" in e[0]["server_id"] if e else False, "the server's queue id is recorded: " +
          (e[0]["server_id"] if e else "?"))
    r = mk(cfg, "verify")
    check(r.returncode == 0, "verify: the outbox copy counts as a reference (clean)")

    # Date and Message-ID added when missing; a recipient given as an argument
    r = mk(cfg, "send", alice, data=b"From: " + bob.encode() + b"\nSubject: no date\n\nplain LF text\n")
    got = wait_for(lambda: with_subject(maildir(fx, alice), b"no date"))
    check(r.returncode == 0 and len(got) == 1 and re.search(rb"^Date: ", got[0], re.M) and
          re.search(rb"^Message-ID: <[0-9a-f]{32}@example\.test>$", got[0], re.M) is not None,
          "Date and Message-ID (account's domain) added when missing")

    # sendmail(8) as mutt and git send-email call it
    r = mk(cfg, "sendmail", "-oi", "-f", bob, "-t", data=b"From: " + bob.encode() + b"\nTo: " + alice.encode() +
           b"\nSubject: via sendmail\n\n.\n..\nend\n")
    got = wait_for(lambda: with_subject(maildir(fx, alice), b"via sendmail"))
    check(r.returncode == 0 and r.stdout == b"" and len(got) == 1 and got[0].endswith(b"\n.\n..\nend\n"),
          "sendmail -oi -f -t: silent, delivered, dot lines intact")
    r = mk(cfg, "sendmail", "-X", data=b"x")
    check(r.returncode == 64, "sendmail: an unknown option is refused (exit 64)")

    # a foreign From is sent (custom server); no recipients is a usage error
    r = mk(cfg, "send", data=b"From: " + bob.encode() + b"\nSubject: nobody\n\nx\n")
    check(r.returncode == 64 and b"no recipients" in r.stderr, "no recipients: exit 64 with a clear message")
    r = mk(cfg, "send", "-t", data=b"Subject: no from\nTo: " + alice.encode() + b"\n\nx\n")
    check(r.returncode == 65 and b"From" in r.stderr, "a message without From: exit 65, says why: " +
          r.stderr.decode().strip())


def test_refusals(tmp, fx, cfg):
    alice = fx["MK_USER"]
    # one refused (550 from the access map), one accepted
    r = mk(cfg, "send", "-t", data=b"From: " + fx["MK_USER2"].encode() + b"\nTo: " + alice.encode() +
           b", nobody-here@example.test\nSubject: partly\n\nx\n")
    got = wait_for(lambda: with_subject(maildir(fx, alice), b"partly"))
    oid = queued_id(r.stdout)
    e = entry(cfg, oid)
    refused = [x for x in e.get("recipients", []) if x["state"] == "refused"]
    check(r.returncode == 0 and len(got) == 1 and e.get("state") == "sent" and len(refused) == 1 and
          "550 5.1.1" in refused[0]["reply"] and b"nobody-here@example.test refused: 550 5.1.1" in r.stderr,
          "a 550 recipient is refused and recorded, the other one gets the message")

    # 4xx: deferred, retried once the server accepts
    postfix_access(fx, ["alice+defer@example.test 450 4.2.0 try again later"])
    r = mk(cfg, "send", "alice+defer@example.test", data=b"From: " + fx["MK_USER2"].encode() +
           b"\nSubject: deferred one\n\nx\n")
    oid = queued_id(r.stdout)
    e = entry(cfg, oid)
    check(r.returncode == 0 and e.get("state") == "queued" and e.get("attempts") == 1 and
          "450 4.2.0" in e.get("last_reply", "") and e.get("next_attempt", 0) > time.time(),
          f"4xx: queued again with a retry time: {e.get('last_reply')}")
    check(b"deferred" in r.stderr and b"stays queued" not in r.stdout, "the user is told it was deferred")
    r = mk(cfg, "outbox", "flush")
    e = entry(cfg, oid)
    check(e.get("state") == "queued" and e.get("attempts") == 2, "flush retries at once (still 4xx): attempt 2")
    postfix_access(fx, [])
    r = mk(cfg, "outbox", "flush")
    got = wait_for(lambda: with_subject(maildir(fx, alice, "defer"), b"deferred one"))
    e = entry(cfg, oid)
    check(r.returncode == 0 and e.get("state") == "sent" and len(got) == 1,
          "after the map is fixed, flush sends it: " + r.stdout.decode().strip())

    # 5xx: failed at once, the reply shown
    postfix_access(fx, ["alice+reject@example.test 550 5.7.1 refused by policy"])
    r = mk(cfg, "send", "alice+reject@example.test", data=b"From: " + fx["MK_USER2"].encode() +
           b"\nSubject: rejected one\n\nx\n")
    oid = queued_id(r.stdout)
    e = entry(cfg, oid)
    check(r.returncode == 65 and e.get("state") == "failed" and b"550 5.7.1" in r.stderr,
          "5xx: failed at once, exit 65, reply shown: " + r.stderr.decode().strip().splitlines()[-1])
    r = mk(cfg, "outbox", "retry", str(oid))
    e = entry(cfg, oid)
    check(r.returncode == 0 and e.get("state") == "queued", "outbox retry queues a failed message again")
    r = mk(cfg, "outbox", "cancel", str(oid))
    check(r.returncode == 0 and entry(cfg, oid).get("state") == "canceled", "outbox cancel")
    r = mk(cfg, "outbox", "rm", str(oid))
    check(r.returncode == 0 and entry(cfg, oid) == {}, "outbox rm deletes a canceled entry")
    postfix_access(fx, [])
    check(mk(cfg, "verify").returncode == 0, "verify clean after rm (its body reference dropped)")

    # wrong password: clear error, exit 77, the message stays queued
    bad = write_cfg(os.path.join(tmp, "cfg-bad"), os.path.join(tmp, "store-bad"), fx)
    with open(bad) as f:
        text = f.read().replace(fx["MK_PASS2"], "wrong-password")
    write_private(bad, text)
    r = mk(bad, "send", alice, data=b"From: " + fx["MK_USER2"].encode() + b"\nSubject: never\n\nx\n")
    err = r.stderr.decode()
    ls = outbox(bad)
    check(r.returncode == 77 and "authentication failed" in err and "535" in err and "wrong-password" not in err,
          "wrong password: exit 77, the server's 535 shown, no password: " + err.strip().splitlines()[-1])
    check(len(ls) == 1 and ls[0]["state"] == "queued" and ls[0]["attempts"] == 0,
          "the message stays queued, untouched by the failed login")


def test_save_sent(tmp, fx):
    """save_sent: mailkeep APPENDs the sent message (\\Seen) when the server keeps no copy."""
    cfg = write_cfg(os.path.join(tmp, "cfg-save"), os.path.join(tmp, "store-save"), fx)
    with open(cfg) as f:
        text = f.read().replace("server_saves_sent = Sent\n", "server_saves_sent = no\nsave_sent = Sent Items\n")
    write_private(cfg, text)
    line = b"saved copy line " * 6 + b"\r\n"
    msg = (b"From: " + fx["MK_USER2"].encode() + b"\r\nTo: " + fx["MK_USER"].encode() +
           b"\r\nSubject: keep a copy\r\nMessage-ID: <save-1@example.test>\r\n"
           b"Date: Sun, 06 Dec 2026 09:00:00 +0000\r\n\r\n" + line * 30000)
    r = mk(cfg, "send", "-t", data=msg)
    check(r.returncode == 0 and b"1 copy saved in \"Sent Items\"" in r.stdout,
          "save_sent: the copy is saved after sending: " + r.stdout.decode().strip().replace("\n", " / "))
    base = os.path.join(fx["MK_MAIL_DIR"], fx["MK_USER2"], ".Sent Items")
    files = [os.path.join(base, d, n) for d in ("new", "cur") if os.path.isdir(os.path.join(base, d))
             for n in os.listdir(os.path.join(base, d))]
    copies = [f for f in files if b"<save-1@example.test>" in open(f, "rb").read()]
    check(len(copies) == 1 and open(copies[0], "rb").read() == msg.replace(b"\r\n", b"\n"),
          f"one byte-exact copy of the {len(msg) / 1e6:.1f} MB message in Sent Items")
    check(len(copies) == 1 and copies[0].endswith(":2,S"), "the copy is marked \\Seen")
    r = mk(cfg, "outbox", "flush")
    files2 = [n for d in ("new", "cur") if os.path.isdir(os.path.join(base, d)) for n in os.listdir(os.path.join(base, d))]
    check(len(files2) == len(files), "a second flush saves nothing again")
    check(mk(cfg, "verify").returncode == 0, "verify clean")


def test_rate_limit(tmp, fx):
    """max_per_minute holds messages back (never drops them)."""
    cfg = write_cfg(os.path.join(tmp, "cfg-rate"), os.path.join(tmp, "store-rate"), fx)
    with open(cfg) as f:
        text = f.read().replace("server_saves_sent = Sent\n", "server_saves_sent = Sent\nmax_per_minute = 2\n")
    write_private(cfg, text)
    for i in range(3):
        mk(cfg, "send", "--queue-only", "alice+rate@example.test",
           data=f"From: {fx['MK_USER2']}\nSubject: rate {i}\n\nx\n".encode())
    r = mk(cfg, "outbox", "flush")
    states = sorted(e["state"] for e in outbox(cfg))
    check(r.returncode == 0 and states == ["queued", "sent", "sent"] and b"held back by the max_per_minute" in r.stderr,
          f"max_per_minute = 2: two sent, one held back ({states}): {r.stderr.decode().strip()}")
    r = mk(cfg, "outbox", "flush")
    check(sorted(e["state"] for e in outbox(cfg)) == ["queued", "sent", "sent"], "still held back within the minute")


def test_agent(tmp, fx, cfg):
    alice = fx["MK_USER"]
    agent = subprocess.Popen([MAILKEEP, "-c", cfg, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = agent.stdout.readline()
        check(b"ready" in line, "agent ready")
        t0 = time.time()
        r = mk(cfg, "send", "--in", "4s", alice, data=b"From: " + fx["MK_USER2"].encode() +
               b"\nSubject: scheduled 4s\n\nx\n")
        check(r.returncode == 0 and b"queued for" in r.stdout, "send --in 4s: queued for later")
        time.sleep(2)
        check(not with_subject(maildir(fx, alice), b"scheduled 4s"), "not sent before its time")
        got = wait_for(lambda: with_subject(maildir(fx, alice), b"scheduled 4s"), 15)
        dt = time.time() - t0
        check(len(got) == 1, f"sent by the agent on time (arrived after {dt:.1f} s)")
        r = mk(cfg, "send", alice, data=b"From: " + fx["MK_USER2"].encode() + b"\nSubject: via agent\n\nx\n")
        got = wait_for(lambda: with_subject(maildir(fx, alice), b"via agent"), 15)
        check(r.returncode == 0 and b"the agent" in r.stdout and len(got) == 1,
              "with an agent running, send hands the message to it: " + r.stdout.decode().strip())
        r = mk(cfg, "send", "--now", alice, data=b"From: " + fx["MK_USER2"].encode() + b"\nSubject: now via agent\n\nx\n")
        check(r.returncode == 0 and b"sent to 1 recipient" in r.stdout,
              "send --now with the agent running reports the agent's result: " + r.stdout.decode().strip())
        r = mk(cfg, "status")
        check(b"outbox:" in r.stdout, "status shows the outbox")
        # a message scheduled while the agent is down goes out when it is back
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        r = mk(cfg, "send", "--in", "2s", alice, data=b"From: " + fx["MK_USER2"].encode() +
               b"\nSubject: across restart\n\nx\n")
        check(r.returncode == 0 and b"no agent is running" in r.stdout, "scheduled without an agent: told so")
        time.sleep(3)
        check(not with_subject(maildir(fx, alice), b"across restart"), "nothing sends it while no agent runs")
        agent = subprocess.Popen([MAILKEEP, "-c", cfg, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        got = wait_for(lambda: with_subject(maildir(fx, alice), b"across restart"), 20)
        check(len(got) == 1, "the restarted agent sends the overdue message")
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
    check(agent.returncode == 0, f"agent stopped cleanly (exit {agent.returncode})")


def test_hostile(tmp, fx):
    for mode, want in (("nostarttls", "does not offer STARTTLS"),
                       ("inject", "possible injection attack"),
                       ("refuse", "refused STARTTLS: 454 4.7.0"),
                       ("hugeline", "longer than 2048 bytes"),
                       ("drop_data", "")):
        d = os.path.join(tmp, "hostile-" + mode)
        os.makedirs(d)
        portf, logf = os.path.join(d, "port"), os.path.join(d, "log")
        srv = subprocess.Popen([sys.executable, HOSTILE, mode, portf, fx["MK_TLS_DIR"], logf])
        try:
            if not wait_for(lambda: os.path.exists(portf), 10):
                check(False, f"{mode}: hostile server started")
                continue
            port = open(portf).read().strip()
            cfg = write_private(os.path.join(d, "cfg"), f"""[defaults]
store = {d}/store
tls_ca_file = {fx['MK_CA_FILE']}
timeout = 5
[account h]
email = h@example.test
password = secret-password-123
smtp_host = 127.0.0.1
smtp_port = {port}
""")
            p = subprocess.Popen([MAILKEEP, "-c", cfg, "send", "r@example.test"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            # drop_data: 8 MB, so the server hangs up long before the final dot
            filler = b"x" * 998 + b"\n"
            body = b"body-line-xyz\n" + (filler * 8000 if mode == "drop_data" else b"")
            out, err = p.communicate(b"From: h@example.test\nSubject: hostile\n\n" + body, timeout=60)
            log = open(logf, "rb").read() if os.path.exists(logf) else b""
            e = outbox(cfg)
            state = e[0]["state"] if e else "?"
            text = err.decode(errors="replace").strip()
            check(want in text and b"secret-password" not in log and b"AUTH" not in log.split(b"STARTTLS")[0] and
                  b"body-line-xyz" not in log if mode != "drop_data" else b"secret" not in log,
                  f"{mode}: refused, no credential or content in clear: {text.splitlines()[-1] if text else '-'}")
            check(state == "queued" and p.returncode == 0 and b"stays queued" in err,
                  f"{mode}: the message stays queued for a retry ({state}), exit {p.returncode}")
            if mode in ("nostarttls", "inject", "refuse"):
                check(b"AUTH" not in log and b"MAIL" not in log, f"{mode}: no AUTH and no MAIL reached the server")
        finally:
            srv.terminate()
            srv.wait()


def test_crash(tmp, fx):
    """50 messages; every run dies at some step; nothing is lost or doubled."""
    cfg = write_cfg(os.path.join(tmp, "cfg-crash"), os.path.join(tmp, "store-crash"), fx)
    n = int(os.environ.get("MK_OUTBOX_CRASH_COUNT", "50"))
    ids = []
    for i in range(n):
        r = mk(cfg, "send", "--queue-only", "alice+crash@example.test",
               data=f"From: {fx['MK_USER2']}\nSubject: crash {i}\nMessage-ID: <crash-{i}@example.test>\n\n"
                    f"message {i}\n".encode())
        ids.append(queued_id(r.stdout))
    check(all(ids) and len(set(ids)) == n, f"{n} messages queued")
    rnd = random.Random(99)
    points = ["after sending commit", "after DATA, before the dot", "after the dot, before the reply is recorded",
              "before the final commit", "after the final commit"]
    runs = 0
    crashes = {p: 0 for p in points}
    while runs < 4 * n:
        left = [e for e in outbox(cfg) if e["state"] == "queued"]
        if not left:
            break
        j = rnd.randint(0, 2)
        k = runs % len(points)
        env = {}
        if k == 0:
            env["MK_TEST_CRASH_AT"] = str(3 * j + 1)
        elif k == 1:
            env["MK_TEST_CRASH_AT"] = str(3 * j + 2)
        elif k == 2:
            env["MK_TEST_OUTBOX_CRASH_REPLY"] = str(j + 1)
        elif k == 3:
            env["MK_TEST_CRASH_BEFORE"] = str(3 * j + 3)
        else:
            env["MK_TEST_CRASH_AT"] = str(3 * j + 3)
        r = mk(cfg, "outbox", "flush", env=env)
        runs += 1
        if r.returncode == 99:
            crashes[points[k]] += 1
        elif r.returncode != 0:
            check(False, f"flush run {runs}: exit {r.returncode}: {r.stderr.decode().strip()}")
            break
    check(all(v > 0 for v in crashes.values()), f"{runs} runs, killed at every step: {crashes}")
    states = {}
    for e in outbox(cfg):
        states[e["state"]] = states.get(e["state"], 0) + 1
    check(states.get("sending", 0) == 0 or True, f"states before the agent: {states}")
    # the agent settles uncertain entries from Sent, then sends the rest
    agent = subprocess.Popen([MAILKEEP, "-c", cfg, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, MK_TEST_SETTLE_S="0"))
    try:
        ok = wait_for(lambda: all(e["state"] == "sent" for e in outbox(cfg)), 60)
    finally:
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=30)
    states = {}
    for e in outbox(cfg):
        states[e["state"]] = states.get(e["state"], 0) + 1
    check(ok, f"every entry ends sent: {states}")
    settled = err.count(b": found in")
    check(settled > 0, f"the agent found {settled} uncertain send(s) in Sent and did not resend them")
    time.sleep(1)
    wait_for(lambda: len(maildir(fx, fx["MK_USER"], "crash")) >= n, 30)
    got = maildir(fx, fx["MK_USER"], "crash")
    counts = {}
    for m in got:
        s = re.search(rb"^Subject: crash (\d+)", m, re.M)
        if s:
            counts[int(s.group(1))] = counts.get(int(s.group(1)), 0) + 1
    dups = {k: v for k, v in counts.items() if v > 1}
    missing = [i for i in range(n) if i not in counts]
    check(not dups, f"no message delivered twice ({len(got)} delivered){': ' + str(dups) if dups else ''}")
    check(not missing, f"no message lost{': ' + str(missing) if missing else ''}")
    check(mk(cfg, "verify").returncode == 0, "verify clean after the crashes")


def main():
    tmp = tempfile.mkdtemp(prefix="mk-outbox-")
    os.chmod(tmp, 0o755)
    fixdir = os.path.join(tmp, "fix")
    if not fixture_start(fixdir, MK_FIX_NO_SEED="1"):
        return 1
    try:
        fx = read_env(os.path.join(fixdir, "env"))
        if not fx.get("MK_SUBMISSION_PORT"):
            print("FAIL the fixture has no Postfix submission port")
            return 1
        cfg = write_cfg(os.path.join(tmp, "cfg"), os.path.join(tmp, "store"), fx)
        test_delivery(tmp, fx, cfg)
        test_refusals(tmp, fx, cfg)
        test_rate_limit(tmp, fx)
        test_save_sent(tmp, fx)
        test_agent(tmp, fx, cfg)
        test_hostile(tmp, fx)
        if os.environ.get("MK_TEST_HOOKS_BUILD", "1") == "1":
            test_crash(tmp, fx)
    finally:
        fixture_stop(fixdir)
        if TALLY.failures == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("state kept in " + tmp)
    print(f"{TALLY.failures} failed" if TALLY.failures else "all outbox checks passed")
    return 1 if TALLY.failures else 0


if __name__ == "__main__":
    sys.exit(main())
