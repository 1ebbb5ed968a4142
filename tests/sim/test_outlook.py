#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""mailkeep against the Outlook.com / Microsoft 365 simulator (issue 8).

usage: test_outlook.py MAILKEEP SRCDIR [GROUP...]

Starts tests/sim/outlook_sim.py (--second-ms 20: one protocol second is
20 ms; mailkeep's OAuth clock is scaled the same way with
MK_TEST_OAUTH_SECOND_MS=20, so tokens live 72-108 s of real time) in a
temporary directory, signs in with `mailkeep login` (the device code
approved through the simulator's control API), and runs one check group
per behaviour of tests/sim/COMPATIBILITY.md. Every group has its own store
(the token file is copied in), so groups do not depend on each other
beyond the sign-in. Checks never time mailkeep beyond generous bounds that
prove a behaviour ("did not reconnect before the suggested backoff").

Needs a build with MK_TEST_HOOKS (OAuth time scale, outbox crash point).
"""
import base64
import json
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
from mkfix import Tally, write_private  # noqa: E402

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
ONLY = set(sys.argv[3:])
SIM = os.path.join(SRC, "tests", "sim", "outlook_sim.py")
PY = "/usr/bin/python3"
SECOND_MS = 20
ALICE, BOB, CAROL = "alice@outlook.test", "bob@contoso.test", "carol@outlook.test"
TALLY = Tally()
check = TALLY.check
TMP = None
P = None
ENV = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
ENV["MK_TEST_OAUTH_SECOND_MS"] = str(SECOND_MS)
MAIL_FOLDERS = ["INBOX", "Archive", "Deleted Items", "Drafts", "Junk Email", "Outbox", "Sent Items", "Old\tMail"]
NON_MAIL = ["Calendar", "Calendar/Birthdays", "Contacts", "Conversation History", "Files", "Journal", "Notes",
            "RSS Feeds", "Sync Issues", "Tasks"]


def wait_for(pred, timeout, step=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ---- the simulator ----

def ctl(op, body=None, query=""):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(P["control_url"] + "/sim/" + op + query, data=data,
                                 method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def sim_log(**q):
    qs = "&".join("%s=%s" % (k, urllib.request.quote(str(v))) for k, v in q.items())
    return ctl("log", query="?" + qs)["log"]


def last_seq():
    lg = sim_log(since=0)
    return lg[-1]["seq"] if lg else 0


def mailbox(user, folder=None, raw=False):
    q = "?user=" + urllib.request.quote(user)
    if folder is not None:
        q += "&folder=" + urllib.request.quote(folder)
    if raw:
        q += "&raw=1"
    return ctl("mailbox", query=q)["folders"]


def start_sim(tls, state, config=None):
    global P
    pf = os.path.join(TMP, "sim.ports")
    args = [PY, SIM, "serve", "--tls-dir", tls, "--state-dir", state, "--port-file", pf, "--seed", "8",
            "--second-ms", str(SECOND_MS)]
    if config is not None:
        cf = os.path.join(TMP, "sim.json")
        with open(cf, "w") as fh:
            json.dump(config, fh)
        args += ["--config", cf]
    proc = subprocess.Popen(args, stdout=open(os.path.join(TMP, "sim.out"), "w"), stderr=subprocess.STDOUT)
    if not wait_for(lambda: os.path.exists(pf), 20):
        proc.terminate()
        raise RuntimeError("the simulator did not start")
    P = json.load(open(pf))
    return proc


# ---- mailkeep ----

def conf(name, accounts, extra=""):
    """a config with its own store; accounts: [(name, email, keys)]"""
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    store = os.path.join(d, "store")
    os.makedirs(store, mode=0o700, exist_ok=True)
    text = ("[defaults]\nstore = %s\ntls_ca_file = %s\noauth_authority = %s\noauth_client_id = %s\ntimeout = 10\n"
            "imap_host = 127.0.0.1\nimap_port = %d\npop3_host = 127.0.0.1\npop3_port = %d\n"
            "smtp_host = 127.0.0.1\nsmtp_port = %d\n%s"
            % (store, os.path.join(TMP, "tls", "ca.pem"), P["idp_url"], P["client_id"], P["imaps"], P["pop3s"],
               P["submission"], extra))
    for acct, email, keys in accounts:
        text += "[account %s]\nprovider = outlook\nemail = %s\n%s" % (acct, email, keys)
        tok = os.path.join(TMP, "tokens", email)
        if os.path.exists(tok):
            os.makedirs(os.path.join(store, "oauth"), mode=0o700, exist_ok=True)
            shutil.copy2(tok, os.path.join(store, "oauth", acct + ".token"))
    path = os.path.join(d, "config")
    write_private(path, text)
    return path


def mk(cfg, *args, data=None, timeout=120, env=None):
    e = dict(ENV)
    e.update(env or {})
    return subprocess.run([MAILKEEP, "-c", cfg, *args], input=data, capture_output=True, timeout=timeout, env=e)


def out(r):
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def ls(cfg, path):
    r = mk(cfg, "ls", "--json", path, timeout=30)
    return json.loads(r.stdout) if r.returncode == 0 else []


def subjects(cfg, path):
    return [m["subject"] for m in ls(cfg, path) if not m.get("gone")]


def outbox(cfg):
    r = mk(cfg, "outbox", "ls", "--json", timeout=30)
    return json.loads(r.stdout) if r.returncode == 0 else []


class Agent:
    def __init__(self, cfg, name, env=None):
        self.logpath = os.path.join(TMP, name + ".agent.log")
        self.log = open(self.logpath, "w")
        e = dict(ENV)
        e.update(env or {})
        self.p = subprocess.Popen([MAILKEEP, "-c", cfg, "-v", "run"], stdout=subprocess.PIPE, stderr=self.log,
                                  text=True, env=e)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            if "ready" in line:
                self.ready.set()

    def text(self):
        self.log.flush()
        return open(self.logpath, errors="replace").read()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def raw_msg(subject, frm="sender@example.test", to=ALICE, body="hello", extra=""):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@sim.test>\r\n%s\r\n%s\r\n"
            % (frm, to, subject, subject.replace(" ", "."), extra, body))


def deliver(user, subject, folder="INBOX"):
    return ctl("deliver", {"user": user, "folder": folder, "raw": raw_msg(subject, to=user)})["uids"][0]


def imap_cmds(since, user=None):
    return [r.get("cmd", "") for r in sim_log(since=since, proto="imap", ev="cmd")
            if user is None or r.get("user") in (user, None)]


# ---- groups ----

def g_login():
    """device login against the simulator's identity provider"""
    cfg = conf("login", [("alice", ALICE, ""), ("bob", BOB, ""), ("carol", CAROL, "")])
    os.makedirs(os.path.join(TMP, "tokens"), exist_ok=True)
    for name, user in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        p = subprocess.Popen([MAILKEEP, "-c", cfg, "login", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=ENV)
        code = None
        for line in p.stdout:
            if line.startswith("  and enter "):
                code = line.split()[-1]
                break
        ok = code is not None and ctl("approve", {"user_code": code, "user": user}).get("ok")
        rest = p.stdout.read()
        err = p.stderr.read()
        rc = p.wait(60)
        check(ok and rc == 0 and "Signed in" in rest, "login %s: device code %s approved through the control API "
              "as %s, exit %d %s" % (name, code, user, rc, err.strip()[-200:]))
        tok = os.path.join(TMP, "login", "store", "oauth", name + ".token")
        if os.path.exists(tok):
            shutil.copy2(tok, os.path.join(TMP, "tokens", user))


def g_folders():
    """golden backup: mail folders with Outlook's names; non-mail skipped; Files; TAB name"""
    cfg = conf("folders", [("alice", ALICE, "")])
    seq = last_seq()
    r = mk(cfg, "sync")
    o = out(r)
    print("  " + o.strip().replace("\n", "\n  "))
    check(r.returncode == 0, "sync of a whole Outlook mailbox exits 0 (exit %d)" % r.returncode)
    check("FAILED" not in o and "EXAMINE failed" not in o, "no folder is reported as failed")
    server = {f["name"]: len(f["messages"]) for f in mailbox(ALICE)}
    stored = {f["folder"]: f["messages"] for f in ls(cfg, "alice")}
    want = {n: server[n] for n in MAIL_FOLDERS if n in server}
    check(all(stored.get(n) == c for n, c in want.items()),
          "every mail folder is backed up under Outlook's name, all its messages: %s" % want)
    check("Old\tMail" in stored, "the folder with a TAB in its name (listed unquoted) is backed up")
    check(not any(n in stored for n in NON_MAIL), "no non-mail folder is in the store (%s)"
          % sorted(set(stored) & set(NON_MAIL)))
    lines = [l for l in o.splitlines() if "not backed up" in l]
    check(len(lines) == 1 and all(n in lines[0] for n in ("Calendar", "Contacts", "Tasks", "Files")),
          "one line names the skipped non-mail folders")
    cmds = imap_cmds(seq)
    check(not any(("EXAMINE" in c or "SELECT" in c) and ("Calendar" in c or "Files" in c) for c in cmds),
          "non-mail folders are never opened")
    check(any(c.endswith('EXAMINE "Old\tMail"') for c in cmds), "EXAMINE sends the TAB name back as listed")
    # bodies byte for byte
    srv = mailbox(ALICE, "INBOX", raw=True)[0]["messages"]
    same = 0
    for m in srv[:5]:
        r = mk(cfg, "cat", "alice/INBOX/%d" % m["uid"])
        same += r.stdout == m["raw"].encode("utf-8", "surrogateescape")
    check(same == min(5, len(srv)), "stored bodies are the server's bytes (%d of 5)" % same)
    r = mk(cfg, "verify")
    check(r.returncode == 0, "verify: ok")
    # explicit folders = * takes the non-mail folders too; Files is skipped, not failed
    cfg2 = conf("folders-all", [("alice", ALICE, "folders = *\n")])
    r = mk(cfg2, "sync")
    o = out(r)
    check(r.returncode == 0 and "alice/Files: skipped, not a mail folder (server: NO Folder name is reserved)" in o,
          "folders = *: Calendar & co. backed up, Files skipped with its reason, exit %d" % r.returncode)


def g_caps2026():
    """2026 greeting/capabilities, LOGINDISABLED, ENABLE IMAP4rev2 offered"""
    ctl("set", {"imap_greeting": "2026", "imap_capability": "2026",
                "capability_extra": ["ENABLE", "IMAP4rev2", "BACKENDAUTHENTICATE-IR"]})
    try:
        cfg = conf("caps", [("alice", ALICE, "")])
        seq = last_seq()
        r = mk(cfg, "sync")
        check(r.returncode == 0 and "alice: 8 folders" in out(r),
              "sync with the 2026 greeting and capabilities: exit %d" % r.returncode)
        cmds = imap_cmds(seq)
        check(not any(" LOGIN " in c for c in cmds), "LOGINDISABLED: no LOGIN attempted")
        check(not any("ENABLE" in c for c in cmds), "ENABLE IMAP4rev2 never sent")
        check(any("AUTHENTICATE XOAUTH2" in c for c in cmds), "AUTHENTICATE XOAUTH2 used")
    finally:
        ctl("reset", {})


def g_fetch_quirks():
    """FETCH item order, RFC822.SIZE skew, empty FETCH on the first request"""
    cfg = conf("fetchq", [("carol", CAROL, "folders = INBOX\n")])
    r = mk(cfg, "sync")
    check(r.returncode == 0, "first sync (clean)")
    ctl("set", {"fetch_order": "exchange", "size_skew": 37, "empty_fetch_first": 1})
    try:
        uids = [deliver(CAROL, "quirk %d" % i) for i in range(3)]
        r = mk(cfg, "sync")
        o = out(r)
        got = subjects(cfg, "carol/INBOX")
        check(r.returncode == 0 and "retried next run" in o and not any(s.startswith("quirk") for s in got),
              "empty FETCH: nothing stored for those messages, said so, exit %d" % r.returncode)
        r = mk(cfg, "sync")
        got = subjects(cfg, "carol/INBOX")
        check(r.returncode == 0 and all("quirk %d" % i in got for i in range(3)),
              "the next run stores them")
        srv = {m["uid"]: m for m in mailbox(CAROL, "INBOX", raw=True)[0]["messages"]}
        same = sum(mk(cfg, "cat", "carol/INBOX/%d" % u).stdout == srv[u]["raw"].encode() for u in uids)
        check(same == 3, "with RFC822.SIZE skewed by 37 and items reordered, the stored bytes are the "
              "literal's (%d of 3 equal)" % same)
        r = mk(cfg, "verify")
        check(r.returncode == 0, "verify: ok")
    finally:
        ctl("reset", {})


def g_unavailable():
    """NO Server Unavailable. 15 at login: a clear temporary failure, then retried with backoff by the agent"""
    cfg = conf("unavail", [("carol", CAROL, "folders = INBOX\nidle = INBOX\nidle_refresh = 30s\n")])
    ctl("set", {"unavailable_p": 1.0, "unavailable_on": ["login"]})
    try:
        r = mk(cfg, "sync")
        check(r.returncode == 75 and "Server Unavailable" in out(r),
              "sync: exit 75 (temporary) naming the server's reply: %s" % out(r).strip()[-150:])
        seq = last_seq()
        ag = Agent(cfg, "unavail")
        time.sleep(8)
        ev = [e for e in sim_log(since=seq, proto="imap") if e["ev"] == "unavailable"]
        check(1 <= len(ev) <= 6, "agent: %d refused logins in 8 s (backoff, no tight loop)" % len(ev))
        ctl("set", {"unavailable_p": 0.0})
        deliver(CAROL, "after unavailable")
        check(wait_for(lambda: "after unavailable" in subjects(cfg, "carol/INBOX"), 90),
              "agent resumes once the server is available again")
        check(ag.stop() == 0, "agent stops cleanly")
    finally:
        ctl("reset", {})


def g_throttle():
    """throttling: waits the suggested time, per account, resumes, no tight loop"""
    backoff_ms = 4000
    cfg = conf("throttle", [("alice", ALICE, "folders = INBOX Archive\nidle = INBOX\nidle_refresh = 60s\n"),
                            ("bob", BOB, "folders = INBOX\nidle = INBOX\nidle_refresh = 60s\n")])
    r = mk(cfg, "sync")
    check(r.returncode == 0, "first sync")
    ag = Agent(cfg, "throttle")
    try:
        check(ag.ready.wait(60), "agent ready")
        seq = last_seq()
        ctl("set", {"throttle": {"after_commands": 0, "backoff_ms": backoff_ms, "form": "NO", "user": ALICE}})
        deliver(ALICE, "while throttled")
        check(wait_for(lambda: any(e["ev"] == "throttled" for e in sim_log(since=seq, user=ALICE)), 20),
              "the server throttles alice")
        deliver(BOB, "bob not throttled")
        check(wait_for(lambda: "bob not throttled" in subjects(cfg, "bob/INBOX"), 20),
              "bob's account goes on meanwhile (backoff is per account)")
        check(wait_for(lambda: "while throttled" in subjects(cfg, "alice/INBOX"), 60),
              "alice resumes and gets the message")
        ev = sim_log(since=seq, user=ALICE)
        thr = [e for e in ev if e["ev"] == "throttled"]
        t0 = thr[0]["real"] if thr else 0
        logins = [e for e in ev if e["ev"] in ("auth_ok", "throttled_login", "auth_fail") and e["real"] > t0]
        check(logins and logins[0]["real"] - t0 >= backoff_ms / 1000.0 * 0.95,
              "no login before the suggested backoff (%d ms): first after %.1f s"
              % (backoff_ms, (logins[0]["real"] - t0) if logins else -1))
        check(len([e for e in ev if e["ev"] in ("throttled", "throttled_login")]) <= 3,
              "no tight retry loop (%d throttled replies)" % len([e for e in ev if e["ev"].startswith("throttled")]))
        check("Suggested Backoff Time" in ag.text(), "the log says why it waits")
    finally:
        ctl("reset", {})
        check(ag.stop() == 0, "agent stops cleanly")


def g_silent_idle():
    """silent IDLE death recovered within idle_refresh"""
    cfg = conf("silent", [("carol", CAROL, "folders = INBOX\nidle = INBOX\nidle_refresh = 3s\ntimeout = 3\n")])
    r = mk(cfg, "sync")
    check(r.returncode == 0, "first sync")
    ag = Agent(cfg, "silent")
    try:
        check(ag.ready.wait(60), "agent ready")
        ctl("set", {"idle_death_s": 25, "idle_death_mode": "dead"})  # 0.5 s after IDLE began
        seq = last_seq()
        check(wait_for(lambda: any(e["ev"] == "idle_death" for e in sim_log(since=seq)), 20),
              "the simulator's IDLE went silent (no BYE, no FIN)")
        ctl("set", {"idle_death_s": None})
        deliver(CAROL, "after silent death")
        check(wait_for(lambda: "after silent death" in subjects(cfg, "carol/INBOX"), 3 + 3 + 15),
              "the message arrives within idle_refresh + timeout (+ slack)")
    finally:
        ctl("reset", {})
        check(ag.stop() == 0, "agent stops cleanly")


def g_token_expiry():
    """token expiry mid-IDLE and mid-FETCH: reconnect with a new token, nothing lost"""
    n = 1200
    ctl("deliver", {"user": BOB, "folder": "Archive", "count": n, "size": 2000})
    cfg = conf("expiry", [("bob", BOB, "folders = INBOX Archive\nidle = INBOX\nidle_refresh = 60s\n")])
    seq = last_seq()
    ag = Agent(cfg, "expiry")
    try:
        # mid-FETCH: expire while the initial sync fetches Archive (chunks of 250)
        check(wait_for(lambda: any("BODY.PEEK" in c for c in imap_cmds(seq)), 60, 0.05),
              "agent fetching bodies")
        ctl("expire", {"user": BOB})
        check(ag.ready.wait(120), "agent ready after the initial sync")
        ev = sim_log(since=seq, user=BOB)
        check(any(e["ev"] == "token_expired" for e in ev), "the simulator ended a session with "
              "'* BYE Session invalidated - AccessTokenExpired' mid-sync")
        total = len(mailbox(BOB, "Archive")[0]["messages"])
        # ("ready" means the IDLE folders are synced; Archive is the poll
        # engine's, resumed at once after the new login, not at the next poll)
        wait_for(lambda: len(ls(cfg, "bob/Archive")) >= total, 60, 0.5)
        got = ls(cfg, "bob/Archive")
        check(len(got) == total and len({m["uid"] for m in got}) == total,
              "mid-FETCH expiry: all %d Archive messages stored, each once (%d)" % (total, len(got)))
        # mid-IDLE
        seq = last_seq()
        ctl("expire", {"user": BOB})
        deliver(BOB, "after idle expiry")
        check(wait_for(lambda: "after idle expiry" in subjects(cfg, "bob/INBOX"), 30),
              "mid-IDLE expiry: the message delivered meanwhile arrives")
        ev = sim_log(since=seq, user=BOB)
        check(any(e["ev"] == "token_expired" for e in ev) and any(e["ev"] == "auth_ok" for e in ev),
              "BYE AccessTokenExpired during IDLE, then a new login")
        check("the access token expired" in ag.text(), "the log says why")
    finally:
        check(ag.stop() == 0, "agent stops cleanly")
    log = open(ag.logpath).read()
    check("Bearer" not in log and "dXNlcj" not in log, "no token in the agent's log")


def g_conn_cap():
    """never more IMAP connections than max_connections"""
    cfg = conf("cap", [("alice", ALICE, "max_connections = 2\n")])
    before = ctl("state")["max_concurrent"].get("imap " + ALICE, 0)
    r = mk(cfg, "sync")
    check(r.returncode == 0, "sync with max_connections = 2")
    st = ctl("state")
    peak = st["max_concurrent"].get("imap " + ALICE, 0)
    # the counter is a high-water mark over the whole run: compare with a fresh one
    check(peak <= max(2, before), "at most 2 authenticated connections at once (peak %d)" % peak)


def g_uidvalidity():
    """UIDVALIDITY bump: no loss, no re-stored bodies"""
    cfg = conf("uidv", [("carol", CAROL, "folders = INBOX\n")])
    r = mk(cfg, "sync")
    check(r.returncode == 0, "first sync")
    before = json.loads(mk(cfg, "stats", "--json").stdout)
    n = len(mailbox(CAROL, "INBOX")[0]["messages"])
    res = ctl("uidvalidity", {"user": CAROL, "folder": "INBOX"})
    seq = last_seq()
    r = mk(cfg, "sync")
    o = out(r)
    check(r.returncode == 0 and "UIDVALIDITY changed" in o, "sync after the bump: exit %d, said so" % r.returncode)
    after = json.loads(mk(cfg, "stats", "--json").stdout)
    cur = [m for m in ls(cfg, "carol/INBOX") if m["uidvalidity"] == res["uidvalidity"]]
    check(len(cur) == n and sorted(m["uid"] for m in cur) == sorted(res["uids"]),
          "every message is present under the new UIDVALIDITY with its new UID (%d of %d)" % (len(cur), n))
    check(after["bodies"] == before["bodies"] and after["body_stored_bytes"] == before["body_stored_bytes"],
          "no body stored twice (bodies %d -> %d)" % (before["bodies"], after["bodies"]))
    # (the bodies are downloaded again and deduplicated by content; re-matching
    # by Message-ID, date and size before downloading is not done yet)
    print("  %d UID FETCH of bodies after the bump" % len([c for c in imap_cmds(seq) if "BODY.PEEK[]" in c]))
    check(mk(cfg, "verify").returncode == 0, "verify: ok")


def g_pop3():
    """POP3 AUTH XOAUTH2 in two steps"""
    cfg = conf("pop3", [("carol", CAROL, "fetch = pop3\n")])
    seq = last_seq()
    r = mk(cfg, "sync")
    o = out(r)
    check(r.returncode == 0 and "carol (POP3)" in o, "POP3 sync with XOAUTH2: exit %d %s" % (r.returncode,
                                                                                            o.strip()[-150:]))
    cmds = [e.get("cmd", "") for e in sim_log(since=seq, proto="pop", ev="cmd")]
    check(any(c.strip().upper() == "AUTH XOAUTH2" for c in cmds), "AUTH XOAUTH2 sent alone, the token on the next "
          "line (the one-line form gets '-ERR Protocol error. Connection is closed. 10')")
    check(not any(e["ev"] == "auth_fail" for e in sim_log(since=seq, proto="pop")), "no failed POP3 login")


def g_mismatch():
    """a token for another user: Outlook's OK-then-BAD false login, a clear error"""
    cfg = conf("mismatch", [("m", BOB, "")])
    shutil.copy2(os.path.join(TMP, "tokens", ALICE), os.path.join(TMP, "mismatch", "store", "oauth", "m.token"))
    r = mk(cfg, "sync")
    o = out(r)
    print("  " + o.strip().replace("\n", "\n  ")[-400:])
    check(r.returncode == 77, "exit 77 (login failed), got %d" % r.returncode)
    check("User is authenticated but not connected" in o and BOB in o,
          "the error names the user and quotes the server")
    check(o.count("\n") < 6, "one clear error, not a retry storm")


def send(cfg, subject, frm=ALICE, to=BOB, extra_args=(), env=None, mid=None):
    msg = "From: %s\nTo: %s\nSubject: %s\n%s\nbody of %s\n" % (
        frm, to, subject, ("Message-ID: <%s>\n" % mid) if mid else "", subject)
    return mk(cfg, "send", *extra_args, "-t", data=msg.encode(), env=env)


def find_sent(user, subject):
    return [m for m in mailbox(user, "Sent Items")[0]["messages"] if m["subject"] == subject]


def g_smtp():
    """SMTP: golden path, Sent Items copy with the Message-ID rewritten, server_saves_sent"""
    cfg = conf("smtp", [("alice", ALICE, "")])
    r = send(cfg, "golden send", mid="golden@mk.test")
    check(r.returncode == 0, "send: exit %d %s" % (r.returncode, out(r).strip()[-200:]))
    copies = find_sent(ALICE, "golden send")
    check(len(copies) == 1 and copies[0]["original_message_id"] == "<golden@mk.test>"
          and copies[0]["message_id"] != "<golden@mk.test>",
          "one copy in Sent Items, Message-ID rewritten, ours in X-Microsoft-Original-Message-ID")
    e = [x for x in outbox(cfg) if x["subject"] == "golden send"]
    check(e and e[0]["state"] == "sent" and copies and copies[0]["message_id"].strip("<>") in e[0]["server_id"],
          "the outbox records the server's new id")
    inbox = [m for m in mailbox(BOB, "INBOX")[0]["messages"] if m["subject"] == "golden send"]
    check(len(inbox) == 1, "delivered once to bob")
    sent_cmds = [c for c in sim_log(since=0, proto="imap", ev="cmd") if "APPEND" in c.get("cmd", "")]
    check(not sent_cmds, "never APPENDs to Sent Items (server_saves_sent = Sent Items)")
    # crash after the dot: uncertain, then settled from Sent Items, never resent
    r = send(cfg, "crash after dot", mid="crash@mk.test", env={"MK_TEST_OUTBOX_CRASH_REPLY": "1"})
    check(r.returncode == 99, "sender killed after the final dot (exit %d)" % r.returncode)
    r = mk(cfg, "outbox", "flush", env={"MK_TEST_SETTLE_S": "0"})
    e = [x for x in outbox(cfg) if x["subject"] == "crash after dot"]
    print("  flush: %s" % out(r).strip()[-200:])
    if e and e[0]["state"] != "sent":
        ag = Agent(cfg, "settle", env={"MK_TEST_SETTLE_S": "0"})
        wait_for(lambda: [x for x in outbox(cfg) if x["subject"] == "crash after dot"][0]["state"] == "sent", 30)
        ag.stop()
        e = [x for x in outbox(cfg) if x["subject"] == "crash after dot"]
    check(e and e[0]["state"] == "sent", "the uncertain send is settled as sent (state %s)"
          % (e[0]["state"] if e else None))
    n = len([m for m in mailbox(BOB, "INBOX")[0]["messages"] if m["subject"] == "crash after dot"])
    check(n == 1 and len(find_sent(ALICE, "crash after dot")) == 1,
          "found by X-Microsoft-Original-Message-ID in Sent Items, never resent (%d delivered)" % n)


def g_smtp_errors():
    """SendAsDenied, daily quota, 432 concurrent connections, the 30/minute limit"""
    cfg = conf("smtperr", [("alice", ALICE, ""), ("carol", CAROL, "")])
    r = send(cfg, "send as", frm="boss@outlook.test", extra_args=("-a", "alice", "--allow-foreign-from"))
    o = out(r)
    e = [x for x in outbox(cfg) if x["subject"] == "send as"]
    check(e and e[0]["state"] == "failed" and r.returncode != 0, "SendAsDenied: failed at once (permanent)")
    check("boss@outlook.test" in o and "SendAsDenied" in o, "the failure names the From: %s" % o.strip()[-200:])
    # daily recipient quota (consumer: 300)
    ctl("user", {"user": CAROL, "recipients_today": 300})
    r = mk(cfg, "send", "-a", "carol", "-t", data=("From: %s\nTo: %s\nSubject: over quota\n\nx\n" % (CAROL, BOB)).encode())
    o = out(r)
    e = [x for x in outbox(cfg) if x["subject"] == "over quota"]
    check(e and e[0]["state"] in ("failed", "queued"), "daily quota: state %s" % (e[0]["state"] if e else None))
    check("RefuseQuota" in o or "OutboundSpamException" in o or "recipients" in o,
          "daily quota: a clear reply: %s" % o.strip()[-200:])
    ctl("user", {"user": CAROL, "recipients_today": 0})
    # 432: three connections already authenticated as alice
    tok = ctl("mint", {"user": ALICE})["access_token"]
    ctx = ssl.create_default_context(cafile=os.path.join(TMP, "tls", "ca.pem"))
    ctx.check_hostname = False
    held = []
    for _ in range(3):
        s = smtplib.SMTP("127.0.0.1", P["submission"], timeout=20)
        s.starttls(context=ctx)
        s.ehlo()
        code, _ = s.docmd("AUTH", "XOAUTH2 " + base64.b64encode(
            ("user=%s\x01auth=Bearer %s\x01\x01" % (ALICE, tok)).encode()).decode())
        held.append(s)
    r = send(cfg, "over the cap")
    o = out(r)
    print("  " + o.strip()[-300:])
    e = [x for x in outbox(cfg) if x["subject"] == "over the cap"]
    check(e and e[0]["state"] == "queued" and "432 4.3.2 Concurrent connections limit exceeded" in o
          and "will be retried" in o, "432 concurrent connections: kept in the queue for a retry")
    for s in held:
        try:
            s.quit()
        except Exception:
            pass
    r = mk(cfg, "outbox", "retry", str(e[0]["id"])) if e else None
    r = mk(cfg, "outbox", "flush")
    e = [x for x in outbox(cfg) if x["subject"] == "over the cap"]
    check(e and e[0]["state"] == "sent", "sent once the other connections are gone")
    # the 30/minute limit: 8 messages while the server takes 3 a minute (delay mode)
    ctl("set", {"rate_per_minute": 3, "rate_mode": "delay"})
    try:
        seq = last_seq()
        for i in range(8):
            r = mk(cfg, "send", "--queue-only", "-t",
                   data=("From: %s\nTo: %s\nSubject: paced %d\n\nx\n" % (ALICE, BOB, i)).encode())
        r = mk(cfg, "outbox", "flush", timeout=180)
        st = [x["state"] for x in outbox(cfg) if x["subject"].startswith("paced")]
        check(st.count("sent") == 8, "over the server's rate: all 8 sent, none failed (%s)" % st)
        delays = [e for e in sim_log(since=seq, proto="smtp") if e["ev"] == "rate_delay"]
        check(len(delays) >= 1, "... the server delayed %d of them (carried over, not refused)" % len(delays))
    finally:
        ctl("reset", {})


def g_agent_e2e():
    """the agent: IDLE push, scheduled send landing in Sent Items"""
    cfg = conf("e2e", [("alice", ALICE, "folders = INBOX \"Sent Items\"\nidle = INBOX \"Sent Items\"\n")])
    ag = Agent(cfg, "e2e")
    try:
        check(ag.ready.wait(60), "agent ready")
        deliver(ALICE, "pushed by idle")
        check(wait_for(lambda: "pushed by idle" in subjects(cfg, "alice/INBOX"), 15), "IDLE push stored")
        r = mk(cfg, "send", "--in", "3s", "-t",
               data=("From: %s\nTo: %s\nSubject: scheduled e2e\n\nx\n" % (ALICE, CAROL)).encode())
        check(r.returncode == 0, "send --in 3s queued")
        check(wait_for(lambda: "scheduled e2e" in subjects(cfg, "alice/Sent Items"), 40),
              "the server's Sent Items copy of the scheduled send arrives in the store by IDLE")
    finally:
        check(ag.stop() == 0, "agent stops cleanly")


GROUPS = [("login", g_login), ("folders", g_folders), ("caps2026", g_caps2026), ("fetch", g_fetch_quirks),
          ("pop3", g_pop3), ("mismatch", g_mismatch), ("uidvalidity", g_uidvalidity), ("conncap", g_conn_cap),
          ("smtp", g_smtp), ("smtp_errors", g_smtp_errors), ("unavailable", g_unavailable),
          ("throttle", g_throttle), ("silent_idle", g_silent_idle), ("token_expiry", g_token_expiry),
          ("agent", g_agent_e2e)]


def main():
    global TMP
    TMP = tempfile.mkdtemp(prefix="mk-outlook-")
    subprocess.run(["sh", os.path.join(SRC, "tests", "fixtures", "mkca.sh"), TMP], check=True, capture_output=True)
    sim = start_sim(os.path.join(TMP, "tls"), os.path.join(TMP, "sim"))
    t0 = time.monotonic()
    try:
        for name, fn in GROUPS:
            if ONLY and name not in ONLY and name != "login":
                continue
            print("== %s: %s" % (name, fn.__doc__.strip().splitlines()[0]), flush=True)
            t = time.monotonic()
            try:
                fn()
            except Exception as e:  # a crashed group is a failure, the others still run
                import traceback
                traceback.print_exc()
                check(False, "%s raised %r" % (name, e))
            print("   (%.1f s)" % (time.monotonic() - t), flush=True)
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    print("total %.1f s" % (time.monotonic() - t0))
    if TALLY.failures == 0:
        shutil.rmtree(TMP, ignore_errors=True)
        print("all checks passed")
        return 0
    print("%d check(s) FAILED; kept %s" % (TALLY.failures, TMP))
    return 1


if __name__ == "__main__":
    sys.exit(main())
