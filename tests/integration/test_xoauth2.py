#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""XOAUTH2 end to end (issue 6): a private Dovecot + Postfix whose Dovecot
also accepts XOAUTH2/OAUTHBEARER, each bearer token checked at
tests/sim/fake_idp.py's RFC 7662 /introspect endpoint
(MK_FIX_OAUTH_INTROSPECT), and mailkeep signed in with `mailkeep login`
(the test approves the device code as the user).

Checks:
  - `folders` and `sync` over IMAP with AUTHENTICATE XOAUTH2 (the token is
    never traced);
  - POP3 (`fetch = pop3`) with AUTH XOAUTH2 in two steps;
  - `send` through Postfix submission (its EHLO lists XOAUTH2, from
    Dovecot SASL);
  - 16 KiB access tokens over IMAP, POP3 and SMTP (the largest length each
    server takes is reported when 16 KiB is refused);
  - a token for another user (login as alice, user = bob): a clear error;
  - the agent (`run`, IDLE) with tokens that expire every few seconds:
    sessions re-authenticate before expiry, every message delivered
    meanwhile arrives in the store;
  - "* BYE Session invalidated - AccessTokenExpired" mid-IDLE from a
    scripted IMAP server: the agent reconnects at once with a new token
    and loses no message;
  - revoked refresh tokens: the account stops with "run `mailkeep login
    NAME`" in `mailkeep status` and the log; the other account goes on.

usage: test_xoauth2.py MAILKEEP SRCDIR
"""
import asyncio
import base64
import json
import os
import random
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
from mkfix import Tally, fixture_start, fixture_stop, read_env, write_private  # noqa: E402

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
IDP = os.path.join(SRC, "tests", "sim", "fake_idp.py")
PY = "/usr/bin/python3"
CID = "00000000-aaaa-bbbb-cccc-00000000000d"
TALLY = Tally()
check = TALLY.check


def mk(cfg, *args, data=None, timeout=120):
    return subprocess.run([MAILKEEP, "-c", cfg, *args], input=data, capture_output=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")})


def wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


class Idp:
    def __init__(self, tmp, tls):
        self.ca = os.path.join(tls, "ca.pem")
        pf = os.path.join(tmp, "idp.port")
        self.p = subprocess.Popen([PY, IDP, "serve", "--cert", os.path.join(tls, "server.pem"), "--key",
                                   os.path.join(tls, "server.key"), "--port-file", pf, "--client", CID,
                                   "--seed", "11", "--log", os.path.join(tmp, "idp.log")])
        if not wait_for(lambda: os.path.exists(pf), 10):
            raise RuntimeError("fake_idp did not start")
        self.url = "https://127.0.0.1:%s" % open(pf).read().strip()

    def ctl(self, op, obj=None):
        r = subprocess.run([PY, IDP, "ctl", "--url", self.url, "--ca", self.ca, op, json.dumps(obj or {})],
                           capture_output=True, text=True, timeout=30)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {}

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


def login(cfg, idp, name, user):
    """`mailkeep login NAME`, approved as `user`; returns the exit code."""
    p = subprocess.Popen([MAILKEEP, "-c", cfg, "login", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    code = None
    for line in p.stdout:
        if line.startswith("  and enter "):
            code = line.split()[-1]
            break
    if code:
        idp.ctl("approve", {"user_code": code, "user": user})
    p.stdout.read()
    err = p.stderr.read()
    rc = p.wait(60)
    if rc != 0:
        print("  login %s: exit %d: %s" % (name, rc, err.strip()[-300:]))
    return rc


def deliver(fx, rcpt, subject):
    msg = "From: sender@example.test\r\nTo: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n" % (rcpt, subject, subject)
    with smtplib.LMTP(fx["MK_LMTP_SOCKET"]) as l:
        l.sendmail("sender@example.test", [rcpt], msg.encode())


def subjects(cfg, account, folder="INBOX"):
    r = mk(cfg, "ls", "--json", "%s/%s" % (account, folder), timeout=30)
    if r.returncode != 0:
        return set()
    return {m["subject"] for m in json.loads(r.stdout)}


def maildir_subjects(fx, user):
    out = set()
    for sub in ("new", "cur"):
        d = os.path.join(fx["MK_MAIL_DIR"], user, sub)
        for n in os.listdir(d) if os.path.isdir(d) else []:
            for line in open(os.path.join(d, n), "rb").read().split(b"\n"):
                if line.lower().startswith(b"subject: "):
                    out.add(line[9:].strip().decode(errors="replace"))
    return out


class Agent:
    def __init__(self, cfg, log):
        self.logpath = log
        self.log = open(log, "w")
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

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        return self.p.returncode


# ---- a scripted IMAP server for the token-expiry BYE (Dovecot cannot send it) ----

class ByeServer:
    """IMAPS on 127.0.0.1: AUTHENTICATE XOAUTH2 checked against the fake
    IdP's /introspect; one INBOX with messages added by add(); during IDLE,
    once bye_next is set, "* BYE Session invalidated - AccessTokenExpired"
    is sent and the connection closed (Outlook, OUTLOOK.md §1.6). Records
    every token it accepted."""

    def __init__(self, tls, idp, user):
        self.idp, self.user = idp, user
        self.msgs = []  # (uid, bytes)
        self.tokens = []
        self.byes = 0
        self.bye_next = False
        self.idlers = []
        self.selected = []
        self.loop = asyncio.new_event_loop()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(tls, "server.pem"), os.path.join(tls, "server.key"))
        self.cctx = ssl.create_default_context(cafile=os.path.join(tls, "ca.pem"))
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.srv = self.loop.run_until_complete(asyncio.start_server(self.client, "127.0.0.1", 0, ssl=ctx))
            self.port = self.srv.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        started.wait(10)

    def add(self, subject):
        def go():
            uid = len(self.msgs) + 1
            self.msgs.append((uid, ("From: s@example.test\r\nSubject: %s\r\n\r\nx\r\n" % subject).encode()))
            for w in list(self.selected):
                w.write(b"* %d EXISTS\r\n" % len(self.msgs))
        self.loop.call_soon_threadsafe(go)

    def introspect(self, token):
        import urllib.parse
        import urllib.request
        data = urllib.parse.urlencode({"token": token}).encode()
        with urllib.request.urlopen(self.idp.url + "/introspect", data=data, context=self.cctx, timeout=10) as r:
            return json.loads(r.read())

    async def client(self, rd, wr):
        def send(s):
            wr.write(s.encode() if isinstance(s, str) else s)
        send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 IDLE] scripted Outlook\r\n")
        authed = False
        try:
            while True:
                line = await rd.readline()
                if not line:
                    return
                parts = line.decode(errors="replace").rstrip("\r\n").split(" ")
                tag, cmd = parts[0], (parts[1].upper() if len(parts) > 1 else "")
                args = parts[2:]
                if cmd == "UID" and args:
                    cmd, args = "UID " + args[0].upper(), args[1:]
                if cmd == "CAPABILITY":
                    send("* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 IDLE\r\n%s OK CAPABILITY completed.\r\n" % tag)
                elif cmd == "AUTHENTICATE" and args and args[0].upper() == "XOAUTH2":
                    b64 = args[1] if len(args) > 1 else None
                    if b64 is None:
                        send("+ \r\n")
                        b64 = (await rd.readline()).decode().strip()
                    raw = base64.b64decode(b64).decode()
                    f = dict(kv.split("=", 1) for kv in raw.split("\x01") if "=" in kv)
                    tok = f.get("auth", "")[len("Bearer "):]
                    info = await asyncio.get_running_loop().run_in_executor(None, self.introspect, tok)
                    if info.get("active") and info.get("username") == self.user and f.get("user") == self.user:
                        self.tokens.append(tok)
                        authed = True
                        send("%s OK AUTHENTICATE completed.\r\n" % tag)
                    else:
                        send("%s NO AUTHENTICATE failed.\r\n" % tag)
                elif cmd == "LOGOUT":
                    send("* BYE Microsoft Exchange Server IMAP4 server signing off.\r\n%s OK LOGOUT completed.\r\n" % tag)
                    await wr.drain()
                    return
                elif not authed:
                    send("%s BAD Command received in Invalid state.\r\n" % tag)
                elif cmd == "LIST":
                    send('* LIST (\\HasNoChildren) "/" INBOX\r\n%s OK LIST completed.\r\n' % tag)
                elif cmd in ("EXAMINE", "SELECT"):
                    if wr not in self.selected:
                        self.selected.append(wr)
                    n = len(self.msgs)
                    send("* %d EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 14] UIDVALIDITY value\r\n"
                         "* OK [UIDNEXT %d] The next unique identifier value\r\n%s OK [READ-ONLY] %s completed.\r\n"
                         % (n, n + 1, tag, cmd))
                elif cmd == "UID FETCH":
                    lo, _, hi = args[0].partition(":")
                    lo = int(lo)
                    hi = len(self.msgs) if hi in ("*", "") else int(hi)
                    items = " ".join(args[1:]).upper()
                    for seq, (uid, body) in enumerate(self.msgs, 1):
                        if not (min(lo, hi) <= uid <= max(lo, hi)) and not (hi < lo and uid >= hi):
                            continue
                        if "BODY" in items:
                            send(b"* %d FETCH (UID %d FLAGS () INTERNALDATE \"17-Jul-2025 02:44:25 +0000\" "
                                 b"RFC822.SIZE %d BODY[] {%d}\r\n" % (seq, uid, len(body), len(body)) + body + b")\r\n")
                        else:
                            send("* %d FETCH (UID %d FLAGS ())\r\n" % (seq, uid))
                    send("%s OK FETCH completed.\r\n" % tag)
                elif cmd == "IDLE":
                    send("+ IDLE accepted, awaiting DONE command.\r\n")
                    self.idlers.append(wr)
                    try:
                        while True:
                            try:
                                l2 = await asyncio.wait_for(rd.readline(), 0.2)
                            except asyncio.TimeoutError:
                                if self.bye_next:
                                    self.bye_next = False
                                    self.byes += 1
                                    send("* BYE Session invalidated - AccessTokenExpired\r\n")
                                    await wr.drain()
                                    wr.close()
                                    return
                                continue
                            if not l2 or l2.strip().upper() == b"DONE":
                                break
                    finally:
                        self.idlers.remove(wr)
                    send("%s OK IDLE completed.\r\n" % tag)
                elif cmd == "NOOP":
                    send("%s OK NOOP completed.\r\n" % tag)
                else:
                    send("%s BAD Command Error. 10\r\n" % tag)
                await wr.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            if wr in self.selected:
                self.selected.remove(wr)
            try:
                wr.close()
            except Exception:
                pass


def main():
    tmp = tempfile.mkdtemp(prefix="mk-xoauth2-")
    os.chmod(tmp, 0o755)
    fixdir = os.path.join(tmp, "fix")
    os.makedirs(fixdir)
    os.chmod(fixdir, 0o755)
    subprocess.run(["sh", os.path.join(SRC, "tests", "fixtures", "mkca.sh"), fixdir], check=True,
                   capture_output=True)
    tls = os.path.join(fixdir, "tls")
    idp = Idp(tmp, tls)
    base = 23000 + random.Random(os.getpid()).randrange(0, 1500) * 10
    if not fixture_start(fixdir, MK_FIX_OAUTH_INTROSPECT=idp.url + "/introspect", MK_TEST_PORT_BASE=str(base)):
        idp.stop()
        return 1
    agent = None
    bye = None
    try:
        fx = read_env(os.path.join(fixdir, "env"))
        alice, bob = fx["MK_USER1"] if "MK_USER1" in fx else fx["MK_USER"], fx["MK_USER2"]
        store = os.path.join(tmp, "store")
        head = ("[defaults]\nstore = %s\ntls_ca_file = %s\noauth_authority = %s\ntimeout = 10\n"
                % (store, fx["MK_CA_FILE"], idp.url))
        ox = "auth = xoauth2\noauth_client_id = %s\n" % CID
        imap = "imap_host = 127.0.0.1\nimap_port = %s\n" % fx["MK_IMAPS_PORT"]
        cfg = os.path.join(tmp, "config")
        write_private(cfg, head
                      + "[account a]\nemail = %s\n%s%ssmtp_host = 127.0.0.1\nsmtp_port = %s\n"
                      % (alice, ox, imap, fx["MK_SUBMISSION_PORT"])
                      + "[account p]\nemail = %s\n%sfetch = pop3\npop3_host = 127.0.0.1\npop3_port = %s\n"
                        "pop3_tls = implicit\n" % (alice, ox, fx["MK_POP3S_PORT"])
                      + "[account w]\nemail = %s\n%s%s" % (bob, ox, imap))
        for name, user in (("a", alice), ("p", alice), ("w", alice)):
            check(login(cfg, idp, name, user) == 0, "mailkeep login %s (approved as %s)" % (name, user))

        # ---- IMAP ----
        r = mk(cfg, "-vv", "folders", "--trace", "a")
        out, err = r.stdout.decode(), r.stderr.decode()
        check(r.returncode == 0 and "logged in as %s" % alice in out and "INBOX" in out,
              "folders over IMAP with XOAUTH2: exit %d %s" % (r.returncode, err.strip()[-200:]))
        check("AUTHENTICATE XOAUTH2 <hidden" in err and "dXNlcj" not in err and "Bearer" not in err,
              "the trace shows AUTHENTICATE XOAUTH2 with the response hidden")
        r = mk(cfg, "sync", "a")
        check(r.returncode == 0 and b"a: " in r.stdout, "sync over IMAP with XOAUTH2: exit %d %s"
              % (r.returncode, r.stderr.decode().strip()[-200:]))
        # ---- POP3 ----
        deliver(fx, alice, "for pop3")
        r = mk(cfg, "sync", "p")
        check(r.returncode == 0 and b"p (POP3)" in r.stdout and "for pop3" in subjects(cfg, "p", "POP3"),
              "POP3 with AUTH XOAUTH2 (two steps): exit %d %s" % (r.returncode, r.stderr.decode().strip()[-200:]))
        # ---- SMTP ----
        ctx = ssl.create_default_context(cafile=fx["MK_CA_FILE"])
        with smtplib.SMTP("127.0.0.1", int(fx["MK_SUBMISSION_PORT"]), timeout=20) as s:
            s.starttls(context=ctx)
            s.ehlo()
            mechs = s.esmtp_features.get("auth", "")
        check("XOAUTH2" in mechs.split(), "Postfix submission's EHLO offers AUTH %s" % mechs)
        r = mk(cfg, "send", "-t", data=("From: %s\nTo: %s\nSubject: sent with xoauth2\n\nhello\n"
                                        % (alice, bob)).encode())
        check(r.returncode == 0 and wait_for(lambda: "sent with xoauth2" in maildir_subjects(fx, bob), 30),
              "send through Postfix with XOAUTH2: exit %d %s" % (r.returncode, r.stderr.decode().strip()[-200:]))

        # ---- wrong user ----
        r = mk(cfg, "folders", "w")
        err = r.stderr.decode()
        check(r.returncode == 77 and "account w" in err and "login as %s (XOAUTH2) failed" % bob in err,
              "a token for another user: clear error, exit 77: %s" % err.strip()[-200:])

        # ---- big tokens ----
        def try_len(n, protos=("imap", "pop3", "smtp")):
            idp.ctl("config", {"token_len": [n, n]})
            res = {}
            if "imap" in protos:
                res["imap"] = mk(cfg, "sync", "a").returncode == 0
            if "pop3" in protos:
                res["pop3"] = mk(cfg, "sync", "p").returncode == 0
            if "smtp" in protos:
                r = mk(cfg, "send", "-t", data=("From: %s\nTo: %s\nSubject: big %d\n\nx\n" % (alice, bob, n)).encode())
                res["smtp"] = r.returncode == 0 and wait_for(lambda: "big %d" % n in maildir_subjects(fx, bob), 30)
            print("  access token of %d characters: %s" % (n, res))
            return res
        # Both servers cap the SASL response below 16 KiB tokens (Outlook
        # does not): mailkeep sends them whole (unit tests; the scripted
        # server below takes 16 KiB over IMAP), the servers refuse them.
        res = try_len(16384)
        dlog = open(os.path.join(fixdir, "dovecot", "dovecot-info.log"), errors="replace").read()
        dlog += open(os.path.join(fixdir, "dovecot", "dovecot.log"), errors="replace").read()
        check(not res["imap"] and not res["pop3"] and "Authentication response too large" in dlog,
              "Dovecot 2.3's login processes refuse a 16 KiB token over IMAP and POP3 (LOGIN_MAX_AUTH_BUF_SIZE: "
              "8192 bytes of response line)")
        check(not res["smtp"] and "sent us more than 16384 bytes" in dlog,
              "Dovecot's auth service refuses a 16 KiB token coming through Postfix (16384-byte auth protocol lines)")
        # the largest Dovecot's auth service takes through Postfix (whose own
        # smtpd_sasl_response_limit the fixture raises from 12288)
        res = try_len(12200, ("smtp",))
        check(res["smtp"], "a 12200-character token over SMTP (16320 bytes of base64)")
        # the largest the login processes take: base64 + CRLF <= 8192,
        # i.e. 4 * ceil((T + len("user=U\x01auth=Bearer \x01\x01")) / 3) <= 8188
        tmax = 3 * 2047 - (len(alice) + 20)
        res = try_len(tmax, ("imap", "pop3"))
        check(res["imap"] and res["pop3"], "the largest token Dovecot takes (%d characters) over IMAP and POP3" % tmax)
        res = try_len(tmax + 1, ("imap",))
        check(not res["imap"], "one character more (%d) is over Dovecot's limit" % (tmax + 1))
        idp.ctl("config", {"token_len": [1500, 6000]})

        # ---- the agent with tokens expiring every 8 s ----
        idp.ctl("config", {"expires_in": 8})
        cfg2 = os.path.join(tmp, "config2")
        write_private(cfg2, head.replace("timeout = 10", "timeout = 5") + "idle_refresh = 2s\npoll_interval = 6h\n"
                      + "[account a]\nemail = %s\n%s%s" % (alice, ox, imap)
                      + "[account bob]\nemail = %s\nauth = plain\npassword = %s\n%s" % (bob, fx["MK_PASS2"], imap))
        agent = Agent(cfg2, os.path.join(tmp, "agent.log"))
        check(agent.ready.wait(60), "agent ready with an xoauth2 and a password account")
        refreshes0 = idp.ctl("state").get("stats", {}).get("refreshes", 0)
        want = []
        for i in range(25):
            deliver(fx, alice, "expiring %d" % i)
            want.append("expiring %d" % i)
            time.sleep(1)
        check(wait_for(lambda: set(want) <= subjects(cfg2, "a"), 30),
              "IDLE across token expiries: all %d messages delivered over 25 s arrived" % len(want))
        refreshes = idp.ctl("state").get("stats", {}).get("refreshes", 0) - refreshes0
        log = agent.text()
        check(refreshes >= 2 and "re-authenticating before the access token expires" in log,
              "sessions re-authenticated before expiry (%d refreshes)" % refreshes)
        # ---- revoked: this account stops, the other goes on ----
        idp.ctl("revoke_all")
        check(wait_for(lambda: "run `mailkeep login a`" in mk(cfg2, "status").stdout.decode(), 40),
              "revoked sign-in: `mailkeep status` says run `mailkeep login a`")
        check("run `mailkeep login a`" in agent.text(), "... and so does the log")
        deliver(fx, bob, "bob goes on")
        check(wait_for(lambda: "bob goes on" in subjects(cfg2, "bob"), 20), "the other account keeps working")
        st = mk(cfg2, "status").stdout.decode()
        print("  " + st.replace("\n", "\n  ").rstrip())
        check(agent.stop() == 0, "agent stops cleanly")
        agent = None
        log = open(os.path.join(tmp, "agent.log")).read()
        check("Bearer" not in log and "dXNlcj" not in log, "no token in the agent's log")

        # ---- "* BYE Session invalidated - AccessTokenExpired" mid-IDLE ----
        idp.ctl("config", {"expires_in": 3600, "token_len": [16384, 16384]})
        check(login(cfg, idp, "a", alice) == 0, "signed in again after the revocation")
        store3 = os.path.join(tmp, "store3")
        os.makedirs(os.path.join(store3, "oauth"), mode=0o700)
        shutil.copy2(os.path.join(store, "oauth", "a.token"), os.path.join(store3, "oauth", "a.token"))
        bye = ByeServer(tls, idp, alice)
        for i in range(3):
            bye.add("bye-before %d" % i)
        cfg3 = os.path.join(tmp, "config3")
        write_private(cfg3, head.replace(store, store3) + "idle_refresh = 60s\npoll_interval = 6h\n"
                      + "[account a]\nemail = %s\n%simap_host = 127.0.0.1\nimap_port = %d\n" % (alice, ox, bye.port))
        agent = Agent(cfg3, os.path.join(tmp, "agent3.log"))
        check(agent.ready.wait(60), "agent ready against the scripted Outlook server")
        want = ["bye-before %d" % i for i in range(3)]
        for i in range(3):
            check(wait_for(lambda: len(bye.idlers) > 0, 20), "IDLE running (round %d)" % i)
            bye.bye_next = True
            wait_for(lambda: not bye.bye_next, 10)
            bye.add("bye-after %d" % i)  # arrives while the session is being re-established
            want.append("bye-after %d" % i)
            check(wait_for(lambda: set(want) <= subjects(cfg3, "a"), 20),
                  "after BYE AccessTokenExpired #%d: reconnected, nothing lost" % (i + 1))
        toks = bye.tokens
        check(bye.byes == 3 and len(toks) >= 4 and len(set(toks)) == len(toks),
              "each reconnect after the BYE used a new token (%d logins, %d distinct)" % (len(toks), len(set(toks))))
        check(all(len(t) == 16384 for t in toks), "16 KiB tokens over IMAP (AUTHENTICATE with SASL-IR, one line)")
        log = agent.text()
        check("the access token expired" in log and "reconnecting in 0.0 s" in log,
              "the log says why, and the reconnect was immediate")
        check(agent.stop() == 0, "agent stops cleanly")
        agent = None
    finally:
        if agent is not None:
            agent.stop()
        fixture_stop(fixdir)
        idp.stop()
    if TALLY.failures == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        print("all checks passed")
        return 0
    print("%d check(s) FAILED; kept %s" % (TALLY.failures, tmp))
    return 1


if __name__ == "__main__":
    sys.exit(main())
