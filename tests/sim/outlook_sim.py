#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""outlook_sim.py - a scriptable simulator of Outlook.com / Microsoft 365 IMAP,
POP3 and SMTP submission (OUTLOOK.md §5), for mailkeep's tests. Python 3.11
standard library only (asyncio + ssl), written from OUTLOOK.md, independently
of mailkeep's C code (DESIGN.md §12). Deterministic: every random choice comes
from random.Random streams derived from --seed; protocol time is scaled by
--second-ms (one protocol second = N ms of real time).

usage:
  outlook_sim.py serve --tls-dir DIR --state-dir DIR --port-file F [--seed N]
                       [--second-ms N] [--config JSON-FILE] [--client ID]... [--env-file F]
  outlook_sim.py ctl --port-file F OP [JSON]     (GET /sim/OP without JSON, POST with it)

TLS: DIR/server.pem + DIR/server.key (tests/fixtures/mkca.sh DIR0 makes them in
DIR0/tls). Everything listens on 127.0.0.1, ports chosen by the kernel.

Port file (JSON, written atomically once everything listens):
  {"imaps": P, "pop3s": P, "submission": P, "idp": P, "control": P,
   "idp_url": "https://127.0.0.1:P", "control_url": "http://127.0.0.1:P",
   "client_id": "...", "tenant": "consumers", "pid": N}
--env-file F also writes the same as shell lines MK_SIM_IMAPS_PORT=P, MK_SIM_POP3S_PORT,
MK_SIM_SUBMISSION_PORT, MK_SIM_IDP_PORT, MK_SIM_CONTROL_PORT, MK_SIM_IDP_URL,
MK_SIM_CONTROL_URL, MK_SIM_CLIENT_ID, MK_SIM_PID.

Identity: tests/sim/fake_idp.py runs inside this process (same token state) on
the "idp" port: /{tenant}/oauth2/v2.0/{devicecode,token}, /introspect and its
/control/* (approve, decline, script, config, revoke_all, state); see that file.
Known client: --client (default 11111111-2222-3333-4444-555555555555).
Only access tokens issued by it are accepted, with the protocol's scope
(https://outlook.office.com/{IMAP.AccessAsUser.All,POP.AccessAsUser.All,SMTP.Send};
also accepted: the outlook.office365.com spelling, and https://outlook.office365.com/.default
for m365 mailboxes). user= must be the token's user, or a mailbox that lists
the token's user in "delegates" (shared mailbox).

State dir: mailboxes/<address>/state.json (folders, UIDVALIDITY, UIDNEXT, and per
message uid, flags, internaldate, size, message_id, file) and
mailboxes/<address>/<quoted folder>/<uid>.eml; outbound.jsonl + outbound/N.eml
(submissions to addresses that are not simulated mailboxes); log.jsonl (every
event, see GET /sim/log). If mailboxes/ exists at start it is loaded, otherwise
generated from --config and the seed.

Control API: plain HTTP on 127.0.0.1:<control>, JSON in and out.
  GET  /sim/state                  behaviours, users, live connections, counters
  GET  /sim/log?since=N&proto=P&user=U&conn=C   events (each has "seq", "t" protocol
                                   seconds since start, "real" unix time, "conn", "proto",
                                   "user", "ev", and "cmd"/"reply"/...; XOAUTH2 data redacted)
  GET  /sim/mailbox?user=U[&folder=F][&raw=1]   folders and messages
  POST /sim/set {"behaviour": value, ...}       switch behaviours (keys below)
  POST /sim/<behaviour> VALUE                   the same for one key (a bare JSON value,
                                                or {"value": VALUE})
  POST /sim/reset {}               behaviours back to the start configuration; counters,
                                   backoffs and fetch quirk counters cleared
  POST /sim/mint {"user": U, "scope": S?, "expires_in": N?, "client_id": C?}
                                   test-only token mint (no device flow): returns the
                                   IdP's token response (access_token, refresh_token, ...)
  POST /sim/approve {"user_code": C?, "user": U?}   the user approves device code C (default:
                                   the newest pending one) as U; /sim/decline likewise
  POST /sim/expire {"user": U?}    every access token (of U) expires now; sessions react
                                   (IDLE at once, others at their next command)
  POST /sim/user {"user": U, ...settings}   imap_enabled, pop_enabled, smtp_auth_enabled,
                                   basic_auth_allowed, password, pop_delete_mode
                                   ("delete" | "move_to_pop_folder"), kind ("consumer" |
                                   "m365"), send_as [addr], delegates [addr],
                                   recipient_quota N, recipients_today N (sets the 24 h count)
  POST /sim/deliver {"user": U, "folder": "INBOX", "raw": "...", "count": N, "flags": [..],
                     "size": N}    new mail (raw, or generated); IDLE clients get EXISTS
  POST /sim/store {"user","folder","uid","flags":[..]}   another client changes flags
  POST /sim/expunge {"user","folder","uids":[..]}       another client expunges
  POST /sim/uidvalidity {"user", "folder", "value"?: N, "uid_start"?: N}
                                   bump UIDVALIDITY (+1 or to N) and renumber every UID from
                                   uid_start (default: old UIDNEXT + 100); sessions that have
                                   the folder selected get "* BYE Connection closed. 14"
  POST /sim/disconnect {"user"?: U, "proto"?: P, "bye"?: bool}   drop live connections

Behaviours (config JSON {"behaviours": {...}} at start, /sim/set at run time):
  imap_greeting "classic"|"2026"   "* OK The Microsoft Exchange IMAP4 service is ready. [b64]" or
                                   "* OK Microsoft Exchange IMAP4 service ready. <guid> (tcpproxy/...) [b64]"
  imap_capability "classic"|"2026" the §2.2 lists (2026: LOGINDISABLED, MOVE before login)
  capability_extra [..]            appended after login (e.g. ["ENABLE", "IMAP4rev2",
                                   "BACKENDAUTHENTICATE-IR"]); ENABLE works when listed
  sasl_continuation "+ "           the empty continuation of AUTHENTICATE / POP3 AUTH ("+" or "+ ")
  pop_greeting "classic"|"2025"
  check_tokens true, check_scope true
  mismatch "ok_then_bad"|"fail"    user= not the token's user: OK then, at the next command,
                                   "BAD User is authenticated but not connected." +
                                   "* BYE Connection closed. 14" (IMAP); "fail" = NO at once
  token_expiry true                the session's token expired: "* BYE Session invalidated -
                                   AccessTokenExpired" at the next command or during IDLE
  token_expiry_after_bye "close"|"linger"   linger: stay connected, the command gets
                                   "BAD Command received in Invalid state.", state = not authenticated
  preauth_timeout_s 60, auth_timeout_s 1800 (protocol seconds; IMAP "* BYE Connection is closed. 13")
  connect_delay_s 0, auth_stall_s 0   delay before the greeting / before an AUTH answer
  idle_exists_before_plus false    "* N EXISTS" before "+ IDLE accepted, awaiting DONE command."
  idle_death_s null                silent IDLE death T protocol seconds after IDLE began:
  idle_death_mode "dead"           "mute" (no pushes, DONE still answered), "dead" (nothing
                                   is ever sent again, no FIN), "dead_fin" (closed, no BYE)
  throttle null | {"after_commands": N, "after_bytes": B, "backoff_ms": M, "form": "NO"|"BAD",
                   "user": U?, "repeat": false}
                                   IMAP: the command after N commands (or B bytes sent) of a
                                   mailbox gets "<tag> NO Request is throttled. Suggested Backoff
                                   Time: M milliseconds", "* BYE Connection closed. 14", close;
                                   logins (and commands) of that mailbox get the same with the
                                   remaining time until M protocol ms have passed
  unavailable_p 0.0, unavailable_on ["login", "select", "pop_login"]
                                   "NO Server Unavailable. 15" / "-ERR Server Unavailable. 21"
  imap_max_connections 20          more authenticated IMAP connections per mailbox: login gets
                                   "NO Server Unavailable. 15"
  smtp_max_connections 3           more authenticated SMTP connections: "432 4.3.2 Concurrent
                                   connections limit exceeded. ..." in reply to AUTH
  error_limit 10                   the 10th NO/BAD of an IMAP session is followed by
                                   "* BYE Connection closed. 14"
  special_use true, files_folder true, tab_folder "Old\\tMail" (null: none, at generation),
  inbox_shadow false|"list"|"break"   a root "Inbox" in LIST; SELECT "Inbox" ("list") or any
                                   INBOX ("break") gets "NO INBOX doesn't exist."
  fetch_order "request"|"exchange" exchange: RFC822.SIZE UID FLAGS INTERNALDATE, then sections
  size_skew 0                      RFC822.SIZE = real size + N
  empty_fetch_first 0, empty_fetch_items "body"|"all"   each UID's first N FETCHes (of a body
                                   section, or any) return no data; still "OK FETCH completed."
  bare_copyuid false               MOVE sends "[COPYUID v a b]" bare instead of "* OK [COPYUID ..]"
  append_max_bytes 36700160        "NO Maximum size of appendable message has been exceeded"
  append_line_max 10500            "BAD Command Argument Error. 11"
  smtp_max_bytes 36700160          "552 5.3.4 Message size exceeds fixed maximum message size"
  rate_per_minute 30, rate_mode "delay"|"reject"   delay the final reply, or "421 4.4.2 Message
                                   submission rate for this client has exceeded the configured limit"
  recipient_quota {"consumer": 300, "m365": 10000}  per 24 protocol hours, checked after the dot
  max_rcpt_per_message 500
  sendas "data"|"mail"|"off"       From/Sender not the user (nor in send_as): 554 5.2.252 after
                                   the dot, or 550 5.7.60 at MAIL FROM
  sent_items_copy true, rewrite_message_id "consumer"|"always"|"never"
  uidvalidity_bump_bye true

Config file (--config, all keys optional):
  {"behaviours": {...},                 the start values (also what /sim/reset restores)
   "users": [{"address": A, "kind": "consumer"|"m365", "folders": {"INBOX": N |
              {"count": N, "size": [MIN, MAX]}, ...}, <user settings as in /sim/user>}],
   "folders": {...},                    generation for users without their own "folders"
                                        (default INBOX 12 of 600-6000 bytes, Sent Items 3,
                                        Archive 2, Drafts 1, Deleted Items 1, Junk Email 1)
   "idp": {"expires_in": N, "token_len": [MIN, MAX], ...},   fake_idp.py's /control/config keys
   "clients": ["client-id", ...]}
Default users: alice@outlook.test (consumer), bob@contoso.test (m365), carol@outlook.test
(consumer) and shared@contoso.test (m365, delegates [bob@contoso.test]). Every mailbox has the
Outlook folder set of OUTLOOK.md §2.3 (mail and non-mail folders, Files, the TAB folder);
"POP" appears when POP3 first moves mail there.

Assumed texts (not captured from the live service; OUTLOOK.md gives none): "+ Ready for
additional command text." (literal continuation), "NO <name> doesn't exist.", the POP3 QUIT
"+OK Microsoft Exchange Server 2016 POP3 server signing off.", POP3 LIST/RETR first lines,
SMTP "421 4.4.1 Connection timed out", 5xx texts for bad sequences, "* ID NIL".
"""
import argparse
import asyncio
import base64
import collections
import copy
import hashlib
import json
import os
import random
import re
import shutil
import ssl
import sys
import threading
import time
import types
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fake_idp  # noqa: E402

DEFAULT_CLIENT = "11111111-2222-3333-4444-555555555555"
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
SCOPE = {"imap": "IMAP.AccessAsUser.All", "pop": "POP.AccessAsUser.All", "smtp": "SMTP.Send"}

CAPS_PRE = {
    "classic": "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+",
    "2026": "IMAP4 IMAP4rev1 AUTH=XOAUTH2 LOGINDISABLED SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE "
            "LITERAL+",
}
CAPS_POST = ("IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CLIENTACCESSRULES "
             "CLIENTNETWORKPRESENCELOCATION BACKENDAUTHENTICATE CHILDREN IDLE NAMESPACE LITERAL+")
PERM_FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$MDNSent"]
FLAGS_LINE = "(" + " ".join(PERM_FLAGS) + ")"

FOLDERS = ["Archive", "Calendar", "Calendar/Birthdays", "Contacts", "Conversation History", "Deleted Items",
           "Drafts", "Files", "INBOX", "Journal", "Junk Email", "Notes", "Outbox", "RSS Feeds", "Sent Items",
           "Sync Issues", "Sync Issues/Conflicts", "Sync Issues/Local Failures", "Sync Issues/Server Failures",
           "Tasks"]
MAIL_FOLDERS = {"INBOX", "Drafts", "Sent Items", "Deleted Items", "Junk Email", "Archive", "Outbox"}
SPECIAL = {"Sent Items": "\\Sent", "Deleted Items": "\\Trash", "Junk Email": "\\Junk", "Drafts": "\\Drafts",
           "Archive": "\\Archive"}

DEFAULTS = {
    "imap_greeting": "classic", "imap_capability": "classic", "capability_extra": [],
    "sasl_continuation": "+ ", "pop_greeting": "classic",
    "check_tokens": True, "check_scope": True, "mismatch": "ok_then_bad",
    "token_expiry": True, "token_expiry_after_bye": "close",
    "preauth_timeout_s": 60, "auth_timeout_s": 1800, "connect_delay_s": 0, "auth_stall_s": 0,
    "idle_exists_before_plus": False, "idle_death_s": None, "idle_death_mode": "dead",
    "throttle": None, "unavailable_p": 0.0, "unavailable_on": ["login", "select", "pop_login"],
    "imap_max_connections": 20, "smtp_max_connections": 3, "error_limit": 10,
    "special_use": True, "files_folder": True, "tab_folder": "Old\tMail", "inbox_shadow": False,
    "fetch_order": "request", "size_skew": 0, "empty_fetch_first": 0, "empty_fetch_items": "body",
    "bare_copyuid": False, "append_max_bytes": 36700160, "append_line_max": 10500,
    "smtp_max_bytes": 36700160, "rate_per_minute": 30, "rate_mode": "delay",
    "recipient_quota": {"consumer": 300, "m365": 10000}, "max_rcpt_per_message": 500,
    "sendas": "data", "sent_items_copy": True, "rewrite_message_id": "consumer",
    "uidvalidity_bump_bye": True,
}
USER_SETTINGS = {"imap_enabled": True, "pop_enabled": True, "smtp_auth_enabled": True,
                 "basic_auth_allowed": False, "password": None, "pop_delete_mode": "delete",
                 "send_as": [], "delegates": [], "recipient_quota": None}
DEFAULT_USERS = [
    {"address": "alice@outlook.test", "kind": "consumer"},
    {"address": "bob@contoso.test", "kind": "m365"},
    {"address": "carol@outlook.test", "kind": "consumer"},
    {"address": "shared@contoso.test", "kind": "m365", "delegates": ["bob@contoso.test"]},
]
DEFAULT_GEN = {"INBOX": {"count": 12, "size": [600, 6000]}, "Sent Items": 3, "Archive": 2, "Drafts": 1,
               "Deleted Items": 1, "Junk Email": 1}
# Exchange Online front ends: (location, pod, region); names like
# FR2P281CA0122.DEUP281.PROD.OUTLOOK.COM
PODS = [("SY5", "P282", "AUSP282"), ("FR2", "P281", "DEUP281"), ("BN6", "PR11", "NAMPRD11"),
        ("XX1", "PR01", "NAMPRD01"), ("AM0", "PR02", "EURPRD02"), ("SN2", "PR00", "NAMPRD00")]


class Closed(Exception):
    """the session is over (EOF, BYE sent, or killed)"""


def imap_date(ts):
    t = time.gmtime(ts)
    return '"%02d-%s-%04d %02d:%02d:%02d +0000"' % (t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour,
                                                    t.tm_min, t.tm_sec)


def rfc822_date(ts):
    t = time.gmtime(ts)
    return "%s, %d %s %04d %02d:%02d:%02d +0000" % (DAYS[t.tm_wday], t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year,
                                                   t.tm_hour, t.tm_min, t.tm_sec)


def b64_host(host):
    return base64.b64encode(host.encode("utf-16-le")).decode()


def header_block(raw):
    i = raw.find(b"\r\n\r\n")
    return raw[:i + 4] if i >= 0 else raw


def header_fields(raw):
    """[(name-lower, full-field-bytes)] of the header, unfolded logically"""
    hdr = header_block(raw)
    out = []
    for line in hdr.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + b"\r\n" + line)
        elif b":" in line:
            out.append((line.split(b":", 1)[0].strip().lower().decode("latin-1"), line))
    return out


def header_value(raw, name):
    for n, f in header_fields(raw):
        if n == name.lower():
            v = f.split(b":", 1)[1]
            return re.sub(rb"\r\n[ \t]+", b" ", v).strip().decode("utf-8", "replace")
    return None


def addr_of(value):
    if not value:
        return ""
    m = re.search(r"<([^<>]*)>", value)
    return (m.group(1) if m else value).strip().strip('"').lower()


def set_header(raw, name, value, keep_old_as=None):
    """replace (or add) header NAME; optionally keep the old value as header KEEP_OLD_AS"""
    hdr = header_block(raw)
    body = raw[len(hdr):]
    lines = hdr[:-4].split(b"\r\n") if hdr.endswith(b"\r\n\r\n") else hdr.split(b"\r\n")
    out, skip, old = [], False, None
    for line in lines:
        if skip and line[:1] in (b" ", b"\t"):
            old += b" " + line.strip()
            continue
        skip = False
        if b":" in line and line.split(b":", 1)[0].strip().lower() == name.lower().encode():
            old = line.split(b":", 1)[1].strip()
            skip = True
            continue
        out.append(line)
    new = [("%s: %s" % (name, value)).encode()]
    if keep_old_as and old is not None:
        new.append(("%s: " % keep_old_as).encode() + old)
    return b"\r\n".join(new + out) + b"\r\n\r\n" + body


def drop_header(raw, name):
    hdr = header_block(raw)
    body = raw[len(hdr):]
    out, skip = [], False
    for line in hdr.split(b"\r\n"):
        if skip and line[:1] in (b" ", b"\t"):
            continue
        skip = b":" in line and line.split(b":", 1)[0].strip().lower() == name.lower().encode()
        if not skip:
            out.append(line)
    return b"\r\n".join(out) + body


# --------------------------------------------------------------------------
# mailbox model
# --------------------------------------------------------------------------

class Msg:
    __slots__ = ("uid", "flags", "idate", "raw")

    def __init__(self, uid, flags, idate, raw):
        self.uid, self.flags, self.idate, self.raw = uid, set(flags), int(idate), raw


class Folder:
    def __init__(self, name, uidvalidity, uidnext=1):
        self.name = name
        self.uidvalidity = uidvalidity
        self.uidnext = uidnext
        self.msgs = []
        self.by_uid = {}
        self.watchers = set()

    def add(self, raw, flags=(), idate=None, uid=None):
        if uid is None:
            uid = self.uidnext
        m = Msg(uid, flags, idate if idate is not None else time.time(), raw)
        self.msgs.append(m)
        self.by_uid[uid] = m
        self.uidnext = max(self.uidnext, uid + 1)
        return m

    def remove(self, uids):
        uids = set(uids)
        self.msgs = [m for m in self.msgs if m.uid not in uids]
        for u in uids:
            self.by_uid.pop(u, None)

    def notify(self):
        for s in list(self.watchers):
            s.wake.set()


class Mailbox:
    def __init__(self, address, kind, settings):
        self.address = address.lower()
        self.kind = kind
        self.settings = dict(USER_SETTINGS)
        self.settings.update({k: v for k, v in settings.items() if k in USER_SETTINGS})
        self.folders = {}          # lower name -> Folder
        self.mb_host = None        # backend host of the DATA reply
        self.reset_counters()

    def reset_counters(self):
        self.backoff_until = 0.0   # real monotonic
        self.thr_cmds = 0
        self.thr_bytes = 0
        self.thr_fired = False
        self.rcpt_log = collections.deque()    # (protocol time, n)
        self.sent_times = collections.deque()  # protocol times of accepted messages
        self.empty_fetch = {}                  # (folder, uid) -> requests seen

    def folder(self, name):
        if name.upper() == "INBOX":
            name = "INBOX"
        return self.folders.get(name.lower())

    def make_folder(self, name, uidvalidity):
        f = Folder(name, uidvalidity)
        self.folders[name.lower()] = f
        return f


class Sim:
    def __init__(self, args, config):
        self.args = args
        self.second_ms = args.second_ms
        self.seed = args.seed
        self.t0 = time.monotonic()
        self.state_dir = args.state_dir
        self.start_behaviours = copy.deepcopy(DEFAULTS)
        self.start_behaviours.update(config.get("behaviours", {}))
        self.b = copy.deepcopy(self.start_behaviours)
        self.rngs = {}
        self.conn_seq = 0
        self.conns = {}
        self.log_seq = 0
        self.log_mem = []
        self.max_conc = collections.Counter()   # (proto, user) -> max concurrent authenticated
        self.conc = collections.Counter()
        self.outbound_n = 0
        os.makedirs(self.state_dir, exist_ok=True)
        self.logf = open(os.path.join(self.state_dir, "log.jsonl"), "a", buffering=1)
        self.mailboxes = {}
        self.save_pending = set()
        self.idp = None
        self.config = config
        self.load_or_generate(config)

    # ---- time and randomness ----

    def secs(self, n):
        """n protocol seconds in real seconds"""
        return n * self.second_ms / 1000.0

    def now_p(self):
        """protocol seconds since start"""
        return (time.monotonic() - self.t0) * 1000.0 / self.second_ms

    def rng(self, name):
        r = self.rngs.get(name)
        if r is None:
            r = self.rngs[name] = random.Random("%s:%s" % (self.seed, name))
        return r

    def front_end(self):
        r = self.rng("hosts")
        loc, pod, reg = r.choice(PODS)
        name = "%s%sCA%04d" % (loc, pod, r.randint(1, 9999))
        return name, "%s.%s.PROD.OUTLOOK.COM" % (name, reg)

    # ---- log ----

    def log(self, conn, ev, **kw):
        self.log_seq += 1
        rec = {"seq": self.log_seq, "t": round(self.now_p(), 3), "real": round(time.time(), 3),
               "conn": conn.id if conn else None, "proto": conn.proto if conn else None,
               "user": conn.user if conn else kw.pop("user", None), "ev": ev}
        rec.update(kw)
        self.log_mem.append(rec)
        self.logf.write(json.dumps(rec) + "\n")

    # ---- tokens ----

    def token_info(self, tok):
        st = self.idp
        with st.lock:
            a = st.access.get(tok)
            if a is None or time.monotonic() > a["expires"]:
                return None
            return dict(a)

    def check_xoauth2(self, proto, data):
        """-> (status, mailbox, token, info); status: ok | malformed | bad | mismatch | disabled"""
        try:
            s = base64.b64decode(data, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return "malformed", None, None, None
        m = re.fullmatch(r"user=([^\x01]*)\x01auth=Bearer ([^\x01]+)\x01\x01", s)
        if not m:
            return "malformed", None, None, None
        user, tok = m.group(1).lower(), m.group(2)
        mb = self.mailboxes.get(user)
        if not self.b["check_tokens"]:
            return ("ok" if mb else "bad"), mb, tok, {"user": user, "expires": float("inf")}
        info = self.token_info(tok)
        if info is None:
            return "bad", mb, tok, None
        if self.b["check_scope"]:
            scopes = info["scope"].split()
            want = SCOPE[proto]
            ok = any(sc in ("https://outlook.office.com/" + want, "https://outlook.office365.com/" + want)
                     for sc in scopes)
            tk = self.mailboxes.get(info["user"].lower())
            if not ok and "https://outlook.office365.com/.default" in scopes and tk and tk.kind == "m365":
                ok = True
            if not ok:
                return "bad", mb, tok, info
        if mb is None:
            return "bad", None, tok, info
        tu = info["user"].lower()
        if tu != user and tu not in [d.lower() for d in mb.settings["delegates"]]:
            return "mismatch", mb, tok, info
        key = {"imap": "imap_enabled", "pop": "pop_enabled", "smtp": "smtp_auth_enabled"}[proto]
        if not mb.settings[key]:
            return "disabled", mb, tok, info
        return "ok", mb, tok, info

    def mint(self, user, scope=None, expires_in=None, client=None):
        st = self.idp
        scope = scope or ("offline_access https://outlook.office.com/IMAP.AccessAsUser.All "
                          "https://outlook.office.com/POP.AccessAsUser.All https://outlook.office.com/SMTP.Send")
        with st.lock:
            old = st.cfg["expires_in"]
            if expires_in is not None:
                st.cfg["expires_in"] = expires_in
            try:
                _, body = fake_idp.Handler.issue(None, st, user, client or self.args.client[0], scope)
            finally:
                st.cfg["expires_in"] = old
        return body

    def expire(self, user=None):
        st = self.idp
        n = 0
        with st.lock:
            for a in st.access.values():
                if user is None or a["user"].lower() == user.lower():
                    a["expires"] = time.monotonic() - 1
                    n += 1
        for c in list(self.conns.values()):
            c.wake.set()
        return n

    # ---- connections ----

    def register(self, conn):
        self.conn_seq += 1
        conn.id = self.conn_seq
        self.conns[conn.id] = conn

    def authed(self, conn, on):
        key = (conn.proto, conn.user)
        if on:
            self.conc[key] += 1
            self.max_conc[key] = max(self.max_conc[key], self.conc[key])
        else:
            self.conc[key] -= 1

    def unavailable(self, where):
        p = self.b["unavailable_p"]
        if p and where in self.b["unavailable_on"]:
            return self.rng("unavailable").random() < p
        return False

    # ---- persistence ----

    def mbdir(self, mb):
        return os.path.join(self.state_dir, "mailboxes", mb.address)

    def fdir(self, mb, f):
        return os.path.join(self.mbdir(mb), urllib.parse.quote(f.name, safe=" "))

    def write_msg(self, mb, f, m):
        d = self.fdir(mb, f)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "%d.eml" % m.uid), "wb") as fh:
            fh.write(m.raw)

    def unlink_msg(self, mb, f, uid):
        try:
            os.unlink(os.path.join(self.fdir(mb, f), "%d.eml" % uid))
        except FileNotFoundError:
            pass

    def save(self, mb):
        if mb.address in self.save_pending:
            return
        self.save_pending.add(mb.address)
        asyncio.get_running_loop().call_soon(self.save_now, mb)

    def save_now(self, mb):
        self.save_pending.discard(mb.address)
        folders = []
        for f in mb.folders.values():
            folders.append({"name": f.name, "uidvalidity": f.uidvalidity, "uidnext": f.uidnext,
                            "messages": [{"uid": m.uid, "flags": sorted(m.flags), "internaldate": m.idate,
                                          "size": len(m.raw), "message_id": header_value(m.raw, "message-id"),
                                          "file": os.path.join(os.path.basename(self.fdir(mb, f)),
                                                               "%d.eml" % m.uid)}
                                         for m in f.msgs]})
        st = {"address": mb.address, "kind": mb.kind, "settings": mb.settings, "mb_host": mb.mb_host,
              "folders": folders}
        os.makedirs(self.mbdir(mb), exist_ok=True)
        p = os.path.join(self.mbdir(mb), "state.json")
        with open(p + ".tmp", "w") as fh:
            json.dump(st, fh, indent=1)
        os.rename(p + ".tmp", p)

    def load_or_generate(self, config):
        root = os.path.join(self.state_dir, "mailboxes")
        if os.path.isdir(root):
            for a in sorted(os.listdir(root)):
                p = os.path.join(root, a, "state.json")
                if not os.path.exists(p):
                    continue
                with open(p) as fh:
                    st = json.load(fh)
                mb = Mailbox(st["address"], st["kind"], st["settings"])
                mb.mb_host = st["mb_host"]
                for fd in st["folders"]:
                    f = mb.make_folder(fd["name"], fd["uidvalidity"])
                    f.uidnext = fd["uidnext"]
                    for md in fd["messages"]:
                        with open(os.path.join(root, a, md["file"]), "rb") as fh:
                            raw = fh.read()
                        f.add(raw, md["flags"], md["internaldate"], md["uid"])
                    f.uidnext = fd["uidnext"]
                self.mailboxes[mb.address] = mb
            if self.mailboxes:
                return
        for u in config.get("users", DEFAULT_USERS):
            mb = Mailbox(u["address"], u.get("kind", "consumer"), u)
            r = self.rng("gen:" + mb.address)
            loc, pod, reg = r.choice(PODS)
            mb.mb_host = "%s%sMB%04d.%s.PROD.OUTLOOK.COM" % (loc[:2] + "B", pod, r.randint(1, 9999), reg)
            names = list(FOLDERS)
            if self.b["tab_folder"]:
                names.append(self.b["tab_folder"])
            for name in sorted(names, key=str.lower):
                mb.make_folder(name, r.randint(1, 99))
            gen = u.get("folders", config.get("folders", DEFAULT_GEN))
            for fname, spec in gen.items():
                f = mb.folder(fname) or mb.make_folder(fname, r.randint(1, 99))
                if isinstance(spec, int):
                    spec = {"count": spec}
                lo, hi = spec.get("size", [600, 6000])
                for i in range(spec.get("count", 0)):
                    raw = self.gen_message(r, mb, f.name, i, r.randint(lo, hi))
                    flags = {"\\Seen"} if r.random() < 0.6 else set()
                    if r.random() < 0.1:
                        flags.add("\\Flagged")
                    if f.name == "Sent Items":
                        flags = {"\\Seen"}
                    idate = 1704067200 + r.randint(0, 86400 * 900)
                    f.add(raw, flags, idate)
            self.mailboxes[mb.address] = mb
            for f in mb.folders.values():
                for m in f.msgs:
                    self.write_msg(mb, f, m)
            self.save_now(mb)

    WORDS = ("the mail backup agent keeps every message safe while outlook throttles clients and tokens expire "
             "after an hour so reconnect politely meeting report invoice project lunch tomorrow budget draft "
             "review").split()

    def gen_message(self, r, mb, folder, i, size):
        other = "%s%d@example.org" % (r.choice(["dave", "erin", "frank", "grace", "heidi"]), r.randint(1, 9))
        frm, to = (mb.address, other) if folder == "Sent Items" else (other, mb.address)
        date = 1704067200 + r.randint(0, 86400 * 900)
        subj = " ".join(r.choice(self.WORDS) for _ in range(r.randint(2, 6))).capitalize()
        if r.random() < 0.15:
            subj = "=?UTF-8?B?%s?=" % base64.b64encode(("Grüße " + subj).encode()).decode()
        mid = "<gen.%d.%s@example.org>" % (r.getrandbits(48), hashlib.sha1(
            ("%s/%s/%d" % (mb.address, folder, i)).encode()).hexdigest()[:12])
        hdr = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\nMIME-Version: 1.0\r\n"
               % (frm, to, subj, rfc822_date(date), mid))
        body = []
        n = len(hdr) + 60
        while n < size:
            line = " ".join(r.choice(self.WORDS) for _ in range(r.randint(5, 12)))
            if r.random() < 0.05:
                line = "." + line      # dot-stuffing material
            body.append(line)
            n += len(line) + 2
        raw = hdr + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        return (raw + "\r\n".join(body) + "\r\n").encode()

    # ---- mail operations used by all protocols ----

    def append(self, mb, f, raw, flags=(), idate=None):
        m = f.add(raw, flags, idate)
        self.write_msg(mb, f, m)
        self.save(mb)
        f.notify()
        return m

    def expunge(self, mb, f, uids):
        f.remove(uids)
        for u in uids:
            self.unlink_msg(mb, f, u)
        self.save(mb)
        f.notify()

    def set_flags(self, mb, f, m, flags):
        m.flags = set(flags)
        self.save(mb)
        f.notify()

    def bump_uidvalidity(self, mb, f, value=None, uid_start=None):
        f.uidvalidity = value if value is not None else f.uidvalidity + 1
        start = uid_start if uid_start is not None else f.uidnext + 100
        for m in f.msgs:
            self.unlink_msg(mb, f, m.uid)
        old = f.msgs
        f.msgs, f.by_uid = [], {}
        f.uidnext = start
        for i, m in enumerate(old):
            m.uid = start + i
            f.msgs.append(m)
            f.by_uid[m.uid] = m
            self.write_msg(mb, f, m)
        f.uidnext = start + len(old)
        self.save(mb)
        for s in list(f.watchers):
            if self.b["uidvalidity_bump_bye"]:
                s.kill(b"* BYE Connection closed. 14\r\n", "uidvalidity_bump")


# --------------------------------------------------------------------------
# connections
# --------------------------------------------------------------------------

class Conn:
    proto = "?"

    def __init__(self, sim, reader, writer):
        self.sim, self.r, self.w = sim, reader, writer
        self.buf = bytearray()
        self.out = bytearray()
        self.user = None
        self.mb = None
        self.is_authed = False
        self.closed = False
        self.wake = asyncio.Event()
        self.fe_name, self.fe_fqdn = sim.front_end()
        sim.register(self)

    @property
    def b(self):
        return self.sim.b

    async def fill(self):
        await self.flush()
        if self.closed:
            raise Closed("closed")
        data = await self.r.read(65536)
        if not data:
            raise Closed("eof")
        self.buf += data

    async def readline(self, maxlen=1 << 20):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > maxlen:
                raise Closed("line too long")
            await self.fill()

    async def readexactly(self, n):
        while len(self.buf) < n:
            await self.fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def read_timed(self, coro):
        t = self.b["auth_timeout_s"] if self.is_authed else self.b["preauth_timeout_s"]
        return await asyncio.wait_for(coro, self.sim.secs(t))

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape") + b"\r\n"
        self.out += data

    async def flush(self):
        if not self.out:
            return
        data = bytes(self.out)
        self.out.clear()
        if self.closed:
            return
        self.w.write(data)
        if self.mb is not None:
            self.mb.thr_bytes += len(data)
        await self.w.drain()

    def kill(self, data, why):
        if self.closed:
            return
        self.sim.log(self, "kill", why=why)
        try:
            if data:
                self.w.write(data)
            self.w.close()
        except Exception:
            pass
        self.closed = True

    def set_auth(self, mb):
        self.mb = mb
        self.user = mb.address
        self.is_authed = True
        self.sim.authed(self, True)

    def drop_auth(self):
        if self.is_authed:
            self.sim.authed(self, False)
        self.is_authed = False

    def cleanup(self):
        pass

    async def serve(self):
        self.sim.log(self, "connect")
        why = "end"
        try:
            if self.b["connect_delay_s"]:
                await asyncio.sleep(self.sim.secs(self.b["connect_delay_s"]))
            await self.run()
        except Closed as e:
            why = str(e) or "closed"
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError) as e:
            why = type(e).__name__
        finally:
            self.drop_auth()
            self.cleanup()
            self.sim.conns.pop(self.id, None)
            try:
                if not self.closed:
                    await self.flush()
            except Exception:
                pass
            if not self.closed:
                self.closed = True
                try:
                    self.w.close()
                except Exception:
                    pass
            self.sim.log(self, "close", why=why)


# --------------------------------------------------------------------------
# IMAP
# --------------------------------------------------------------------------

class Lit(bytes):
    pass


class Atom(str):
    pass


class Str(str):
    pass


class BadArgs(Exception):
    pass


def tokenize(segs):
    top = []
    stack = [top]
    for seg in segs:
        if isinstance(seg, Lit):
            stack[-1].append(seg)
            continue
        s, i, n = seg, 0, len(seg)
        while i < n:
            c = s[i]
            if c == 0x20:
                i += 1
            elif c == 0x28:
                lst = []
                stack[-1].append(lst)
                stack.append(lst)
                i += 1
            elif c == 0x29:
                if len(stack) == 1:
                    raise BadArgs("unbalanced )")
                stack.pop()
                i += 1
            elif c == 0x22:
                j, out = i + 1, bytearray()
                while True:
                    if j >= n:
                        raise BadArgs("unterminated string")
                    if s[j] == 0x5C and j + 1 < n:
                        out.append(s[j + 1])
                        j += 2
                        continue
                    if s[j] == 0x22:
                        break
                    out.append(s[j])
                    j += 1
                stack[-1].append(Str(out.decode("utf-8", "surrogateescape")))
                i = j + 1
            else:
                j, depth = i, 0
                while j < n:
                    cj = s[j]
                    if cj == 0x5B:
                        depth += 1
                    elif cj == 0x5D:
                        depth -= 1
                    elif depth <= 0 and cj in (0x20, 0x28, 0x29):
                        break
                    j += 1
                stack[-1].append(Atom(s[i:j].decode("utf-8", "surrogateescape")))
                i = j
    if len(stack) != 1:
        raise BadArgs("unbalanced (")
    return top


def astr(tok):
    if isinstance(tok, Lit):
        return bytes(tok).decode("utf-8", "surrogateescape")
    if isinstance(tok, str):
        return str(tok)
    raise BadArgs("string expected")


def imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_set(s, values, star):
    """the members of VALUES (sorted ints) named by sequence set S; * is STAR"""
    want = []
    for part in str(s).split(","):
        if not part:
            raise BadArgs("empty set")
        ends = part.split(":")
        if len(ends) > 2:
            raise BadArgs("bad range")
        nums = []
        for e in ends:
            if e == "*":
                nums.append(star)
            elif e.isdigit() and int(e) > 0:
                nums.append(int(e))
            else:
                raise BadArgs("bad number")
        want.append((min(nums), max(nums)))
    return [v for v in values if any(a <= v <= b for a, b in want)]


def compact_set(nums):
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else "%d:%d" % (nums[i], nums[j]))
        i = j + 1
    return ",".join(out)


def norm_flags(toks):
    out = set()
    for t in toks:
        for p in PERM_FLAGS:
            if str(t).lower() == p.lower():
                out.add(p)
    return out


def flags_str(flags):
    return "(" + " ".join(f for f in PERM_FLAGS if f in flags) + ")"


def parse_imap_date(s):
    m = re.fullmatch(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})", s)
    if not m:
        raise BadArgs("bad date")
    mon = [x.lower() for x in MONTHS].index(m.group(2).lower()) + 1
    import calendar
    return calendar.timegm((int(m.group(3)), mon, int(m.group(1)), 0, 0, 0))


class Imap(Conn):
    proto = "imap"

    STATES = {
        "nonauth": {"CAPABILITY", "NOOP", "LOGOUT", "AUTHENTICATE", "LOGIN", "ID"},
        "auth": {"CAPABILITY", "NOOP", "LOGOUT", "ID", "SELECT", "EXAMINE", "LIST", "LSUB", "STATUS", "APPEND",
                 "NAMESPACE", "CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "ENABLE", "IDLE"},
    }
    SELECTED_ONLY = {"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "CLOSE", "UNSELECT", "CHECK"}
    KNOWN = STATES["nonauth"] | STATES["auth"] | SELECTED_ONLY

    def __init__(self, *a):
        super().__init__(*a)
        self.state = "nonauth"
        self.sel = None
        self.readonly = False
        self.view = []
        self.vflags = {}
        self.errors = 0
        self.tok = None
        self.false_login = False

    def cleanup(self):
        self.deselect()

    # ---- I/O ----

    async def read_command(self):
        segs = []
        line = await self.readline()
        while True:
            body = line.rstrip(b"\r\n")
            m = re.search(rb"\{(\d+)(\+?)\}$", body)
            if not m:
                segs.append(body)
                return segs, None
            n, nonsync = int(m.group(1)), m.group(2) == b"+"
            segs.append(body[:m.start()])
            err = self.literal_check(segs, n)
            if err:
                if nonsync:
                    await self.readexactly(n)
                    await self.readline()
                return segs, err
            if not nonsync:
                self.send("+ Ready for additional command text.")
                await self.flush()
            segs.append(Lit(await self.readexactly(n)))
            line = await self.readline()

    def literal_check(self, segs, n):
        words = segs[0].split(None, 2)
        if len(words) >= 2 and words[1].upper() == b"APPEND":
            if sum(len(s) for s in segs if not isinstance(s, Lit)) > self.b["append_line_max"]:
                return ("BAD", "Command Argument Error. 11")
            if n > self.b["append_max_bytes"]:
                return ("NO", "Maximum size of appendable message has been exceeded")
        return None

    def tagged(self, tag, status, text):
        self.send("%s %s %s" % (tag, status, text))
        if status in ("NO", "BAD"):
            self.errors += 1
            self.sim.log(self, "reply", reply="%s %s" % (status, text), errors=self.errors)
            if self.errors >= self.b["error_limit"]:
                self.send("* BYE Connection closed. 14")
                raise Closed("error_limit")

    def bye(self, text, why):
        self.send("* BYE " + text)
        raise Closed(why)

    # ---- main loop ----

    async def run(self):
        host = b64_host(self.fe_fqdn)
        if self.b["imap_greeting"] == "2026":
            g = self.sim.rng("guid")
            guid = "%08x-%04x-%04x-%04x-%012x" % (g.getrandbits(32), g.getrandbits(16), g.getrandbits(16),
                                                   g.getrandbits(16), g.getrandbits(48))
            self.send("* OK Microsoft Exchange IMAP4 service ready. %s (tcpproxy/15.21.0406.000 "
                      "BACKENDAUTHENTICATE) [%s]" % (guid, host))
        else:
            self.send("* OK The Microsoft Exchange IMAP4 service is ready. [%s]" % host)
        while True:
            try:
                segs, err = await self.read_timed(self.read_command())
            except asyncio.TimeoutError:
                self.sim.log(self, "timeout")
                self.bye("Connection is closed. 13", "autologout")
            await self.handle(segs, err)

    async def handle(self, segs, err):
        first = segs[0].split(None, 1)
        tag = first[0].decode("utf-8", "replace") if first else "*"
        if err:
            self.sim.log(self, "cmd", cmd=segs[0][:200].decode("utf-8", "replace"))
            return self.tagged(tag, *err)
        try:
            toks = tokenize(segs)
        except BadArgs:
            self.sim.log(self, "cmd", cmd=segs[0][:200].decode("utf-8", "replace"))
            return self.tagged(tag, "BAD", "Command Argument Error. 11")
        if not toks:
            return
        if len(toks) < 2 or not isinstance(toks[1], Atom):
            return self.tagged(tag, "BAD", "Command Error. 12")
        cmd = toks[1].upper()
        args = toks[2:]
        uid = False
        if cmd == "UID" and args and isinstance(args[0], Atom):
            uid, cmd, args = True, args[0].upper(), args[1:]
        text = segs[0].decode("utf-8", "replace")
        if cmd == "AUTHENTICATE":
            text = " ".join(text.split()[:3]) + (" <%d bytes>" % len(text.split()[3]) if len(text.split()) > 3
                                                  else "")
        self.sim.log(self, "cmd", cmd=text[:300], state=self.state)
        if self.state != "nonauth":
            if self.false_login:
                self.tagged(tag, "BAD", "User is authenticated but not connected.")
                self.bye("Connection closed. 14", "false_login")
            if self.token_expired():
                self.sim.log(self, "token_expired")
                self.send("* BYE Session invalidated - AccessTokenExpired")
                if self.b["token_expiry_after_bye"] != "linger":
                    raise Closed("token_expired")
                self.deselect()
                self.drop_auth()
                self.state, self.tok = "nonauth", None
                return self.tagged(tag, "BAD", "Command received in Invalid state.")
            self.throttle_check(tag)
        if cmd not in self.KNOWN or (uid and cmd not in ("FETCH", "STORE", "SEARCH", "COPY", "MOVE",
                                                          "EXPUNGE")):
            return self.tagged(tag, "BAD", "Command Error. 12")
        allowed = self.STATES["nonauth"] if self.state == "nonauth" else (
            self.STATES["auth"] | (self.SELECTED_ONLY if self.state == "selected" else set()))
        if cmd == "ENABLE" and "ENABLE" not in self.b["capability_extra"]:
            return self.tagged(tag, "BAD", "Command Error. 12")
        if cmd not in allowed or (cmd in ("AUTHENTICATE", "LOGIN") and self.state != "nonauth"):
            return self.tagged(tag, "BAD", "Command received in Invalid state.")
        if cmd == "APPEND" and sum(len(s) for s in segs if not isinstance(s, Lit)) > self.b["append_line_max"]:
            return self.tagged(tag, "BAD", "Command Argument Error. 11")
        try:
            await getattr(self, "c_" + cmd.lower())(tag, args, uid, segs)
        except (BadArgs, IndexError, ValueError):
            self.tagged(tag, "BAD", "Command Argument Error. 11")

    def token_expired(self):
        return (self.b["token_expiry"] and self.b["check_tokens"] and self.tok is not None
                and self.sim.token_info(self.tok) is None)

    def backoff_left_ms(self, mb):
        left = mb.backoff_until - time.monotonic()
        return int(left * 1000.0 / self.sim.second_ms * 1000) + 1 if left > 0 else 0

    def throttle_check(self, tag):
        mb = self.mb
        cfg = self.b["throttle"]
        form = (cfg or {}).get("form", "NO")
        left = self.backoff_left_ms(mb)
        if not left and cfg and cfg.get("user") in (None, mb.address) and (cfg.get("repeat") or not mb.thr_fired):
            mb.thr_cmds += 1
            n, nb = cfg.get("after_commands"), cfg.get("after_bytes")
            if (n is not None and mb.thr_cmds > n) or (nb is not None and mb.thr_bytes >= nb):
                ms = int(cfg.get("backoff_ms", 90000))
                mb.backoff_until = time.monotonic() + self.sim.secs(ms / 1000.0)
                mb.thr_fired = True
                mb.thr_cmds = mb.thr_bytes = 0
                left = ms
                self.sim.log(self, "throttled", backoff_ms=ms)
        if left:
            self.send("%s %s Request is throttled. Suggested Backoff Time: %d milliseconds" % (tag, form, left))
            self.sim.log(self, "throttled_reply", backoff_left_ms=left)
            self.bye("Connection closed. 14", "throttled")

    # ---- selection and updates ----

    def deselect(self):
        if self.sel is not None:
            self.sel.watchers.discard(self)
        self.sel = None
        self.view, self.vflags = [], {}
        if self.state == "selected":
            self.state = "auth"

    def sync_updates(self, expunge=True):
        f = self.sel
        if f is None:
            return
        if expunge:
            for i in range(len(self.view) - 1, -1, -1):
                if self.view[i] not in f.by_uid:
                    self.send("* %d EXPUNGE" % (i + 1))
                    self.vflags.pop(self.view[i], None)
                    del self.view[i]
        for i, u in enumerate(self.view):
            m = f.by_uid.get(u)
            if m is not None and frozenset(m.flags) != self.vflags.get(u):
                self.vflags[u] = frozenset(m.flags)
                self.send("* %d FETCH (FLAGS %s)" % (i + 1, flags_str(m.flags)))
        known = set(self.view)
        new = [m.uid for m in f.msgs if m.uid not in known]
        if new:
            for u in new:
                self.view.append(u)
                self.vflags[u] = frozenset(f.by_uid[u].flags)
            self.send("* %d EXISTS" % len(self.view))

    def find(self, name):
        """-> (folder, None) or (None, (status, text))"""
        sh = self.b["inbox_shadow"]
        if (sh == "list" and name == "Inbox") or (sh == "break" and name.upper() == "INBOX"):
            return None, ("NO", "INBOX doesn't exist.")
        f = self.mb.folder(name)
        if f is None or (f.name == "Files" and not self.b["files_folder"]):
            return None, ("NO", "%s doesn't exist." % name)
        return f, None

    # ---- commands: any state ----

    async def c_capability(self, tag, args, uid, segs):
        if self.state == "nonauth":
            caps = CAPS_PRE.get(self.b["imap_capability"], CAPS_PRE["classic"])
        else:
            caps = " ".join([CAPS_POST] + list(self.b["capability_extra"]))
        self.send("* CAPABILITY " + caps)
        self.tagged(tag, "OK", "CAPABILITY completed.")

    async def c_noop(self, tag, args, uid, segs):
        self.sync_updates(True)
        self.tagged(tag, "OK", "NOOP completed.")

    async def c_check(self, tag, args, uid, segs):
        self.sync_updates(True)
        self.tagged(tag, "OK", "CHECK completed.")

    async def c_logout(self, tag, args, uid, segs):
        self.send("* BYE Microsoft Exchange Server 2016 IMAP4 server signing off.")
        self.tagged(tag, "OK", "LOGOUT completed.")
        raise Closed("logout")

    async def c_id(self, tag, args, uid, segs):
        self.send("* ID NIL")
        self.tagged(tag, "OK", "ID completed.")

    async def c_login(self, tag, args, uid, segs):
        self.sim.log(self, "auth_fail", why="login_refused")
        self.tagged(tag, "NO", "LOGIN failed.")

    async def c_authenticate(self, tag, args, uid, segs):
        mech = astr(args[0]).upper()
        if len(args) > 1:
            data = astr(args[1])
        else:
            self.send(self.b["sasl_continuation"].encode() + b"\r\n")
            await self.flush()
            data = (await self.readline()).strip().decode("latin-1")
        if data == "*":
            return self.tagged(tag, "BAD", "AUTHENTICATE aborted.")
        if self.b["auth_stall_s"]:
            await asyncio.sleep(self.sim.secs(self.b["auth_stall_s"]))
        if mech != "XOAUTH2":
            self.sim.log(self, "auth_fail", why="mechanism " + mech)
            return self.tagged(tag, "NO", "AUTHENTICATE failed.")
        status, mb, tok, info = self.sim.check_xoauth2("imap", data)
        if status == "mismatch" and self.b["mismatch"] == "ok_then_bad":
            self.sim.log(self, "false_login", user=mb.address, token_user=info["user"])
            self.user, self.state, self.false_login = mb.address, "auth", True
            return self.tagged(tag, "OK", "AUTHENTICATE completed.")
        if status != "ok":
            self.sim.log(self, "auth_fail", why=status)
            return self.tagged(tag, "NO", "AUTHENTICATE failed.")
        left = self.backoff_left_ms(mb)
        if left:
            self.sim.log(self, "throttled_login", user=mb.address, backoff_left_ms=left)
            form = (self.b["throttle"] or {}).get("form", "NO")
            return self.tagged(tag, form, "Request is throttled. Suggested Backoff Time: %d milliseconds" % left)
        if self.sim.conc[("imap", mb.address)] >= self.b["imap_max_connections"]:
            self.sim.log(self, "cap_refused", user=mb.address)
            return self.tagged(tag, "NO", "Server Unavailable. 15")
        if self.sim.unavailable("login"):
            self.sim.log(self, "unavailable", user=mb.address)
            return self.tagged(tag, "NO", "Server Unavailable. 15")
        self.set_auth(mb)
        self.tok = tok
        self.state = "auth"
        self.sim.log(self, "auth_ok", token_len=len(tok))
        self.tagged(tag, "OK", "AUTHENTICATE completed.")

    # ---- authenticated state ----

    async def c_namespace(self, tag, args, uid, segs):
        self.send('* NAMESPACE (("" "/")) NIL NIL')
        self.tagged(tag, "OK", "NAMESPACE completed.")

    async def c_enable(self, tag, args, uid, segs):
        got = [astr(a) for a in args if astr(a).upper() in [x.upper() for x in self.b["capability_extra"]]]
        self.send("* ENABLED" + "".join(" " + g for g in got))
        self.tagged(tag, "OK", "ENABLE completed.")

    def visible_folders(self):
        out = []
        for f in sorted(self.mb.folders.values(), key=lambda f: f.name.lower()):
            if f.name == "Files" and not self.b["files_folder"]:
                continue
            out.append(f.name)
        return out

    async def c_list(self, tag, args, uid, segs, word="LIST"):
        ref, pat = astr(args[0]), astr(args[1])
        if pat == "":
            self.send('* %s (\\Noselect) "/" ""' % word)
            return self.tagged(tag, "OK", "%s completed." % word)
        rx = re.compile("".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c)
                                for c in ref + pat) + r"\Z", re.I | re.S)
        names = self.visible_folders()
        if self.b["inbox_shadow"]:
            names.insert(names.index("INBOX") + 1, "Inbox")
        for name in names:
            if not rx.match(name):
                continue
            kids = any(n.startswith(name + "/") for n in names)
            attrs = ["\\HasChildren" if kids else "\\HasNoChildren"]
            if self.b["special_use"] and name in SPECIAL:
                attrs.append(SPECIAL[name])
            shown = name if re.search(r"[\x00-\x1f]", name) else imap_quote(name)
            self.send('* %s (%s) "/" %s' % (word, " ".join(attrs), shown))
        self.tagged(tag, "OK", "%s completed." % word)

    async def c_lsub(self, tag, args, uid, segs):
        await self.c_list(tag, args, uid, segs, "LSUB")

    async def c_status(self, tag, args, uid, segs):
        name = astr(args[0])
        f, err = self.find(name)
        if err:
            return self.tagged(tag, *err)
        if f.name == "Files":
            return self.tagged(tag, "NO", "Folder name is reserved")
        vals = {"MESSAGES": len(f.msgs), "RECENT": 0, "UIDNEXT": f.uidnext, "UIDVALIDITY": f.uidvalidity,
                "UNSEEN": sum(1 for m in f.msgs if "\\Seen" not in m.flags)}
        items = [astr(x).upper() for x in args[1]]
        if any(i not in vals for i in items):
            raise BadArgs("status item")
        shown = f.name if re.search(r"[\x00-\x1f]", f.name) else imap_quote(f.name)
        self.send("* STATUS %s (%s)" % (shown, " ".join("%s %d" % (i, vals[i]) for i in items)))
        self.tagged(tag, "OK", "STATUS completed.")

    async def c_select(self, tag, args, uid, segs, examine=False):
        word = "EXAMINE" if examine else "SELECT"
        self.deselect()
        f, err = self.find(astr(args[0]))
        if err:
            return self.tagged(tag, *err)
        if f.name == "Files":
            return self.tagged(tag, "NO", "Folder name is reserved")
        if self.sim.unavailable("select"):
            self.sim.log(self, "unavailable")
            return self.tagged(tag, "NO", "Server Unavailable. 15")
        self.sel, self.readonly, self.state = f, examine, "selected"
        f.watchers.add(self)
        self.view = [m.uid for m in f.msgs]
        self.vflags = {m.uid: frozenset(m.flags) for m in f.msgs}
        self.send("* %d EXISTS" % len(self.view))
        self.send("* 0 RECENT")
        self.send("* FLAGS " + FLAGS_LINE)
        self.send("* OK [PERMANENTFLAGS %s] Permanent flags" % FLAGS_LINE)
        unseen = [i + 1 for i, m in enumerate(f.msgs) if "\\Seen" not in m.flags]
        if unseen:
            self.send("* OK [UNSEEN %d] Is the first unseen message" % unseen[0])
        self.send("* OK [UIDVALIDITY %d] UIDVALIDITY value" % f.uidvalidity)
        self.send("* OK [UIDNEXT %d] The next unique identifier value" % f.uidnext)
        self.tagged(tag, "OK", "[%s] %s completed." % ("READ-ONLY" if examine else "READ-WRITE", word))

    async def c_examine(self, tag, args, uid, segs):
        await self.c_select(tag, args, uid, segs, examine=True)

    async def c_create(self, tag, args, uid, segs):
        name = astr(args[0])
        if self.mb.folder(name):
            return self.tagged(tag, "NO", "Mailbox already exists.")
        self.mb.make_folder(name, self.sim.rng("uidvalidity").randint(1, 99))
        self.sim.save(self.mb)
        self.tagged(tag, "OK", "CREATE completed.")

    async def c_delete(self, tag, args, uid, segs):
        f, err = self.find(astr(args[0]))
        if err:
            return self.tagged(tag, *err)
        if f.name == "INBOX" or f.name in MAIL_FOLDERS:
            return self.tagged(tag, "NO", "Special folders cannot be deleted.")
        self.sim.expunge(self.mb, f, [m.uid for m in f.msgs])
        del self.mb.folders[f.name.lower()]
        self.sim.save(self.mb)
        self.tagged(tag, "OK", "DELETE completed.")

    async def c_subscribe(self, tag, args, uid, segs):
        self.tagged(tag, "OK", "SUBSCRIBE completed.")

    async def c_unsubscribe(self, tag, args, uid, segs):
        self.tagged(tag, "OK", "UNSUBSCRIBE completed.")

    async def c_append(self, tag, args, uid, segs):
        f, err = self.find(astr(args[0]))
        if err:
            return self.tagged(tag, "NO", "[TRYCREATE] " + err[1])
        rest = args[1:]
        flags, idate = set(), None
        if rest and isinstance(rest[0], list):
            flags = norm_flags(rest[0])
            rest = rest[1:]
        if rest and isinstance(rest[0], Str):
            import email.utils
            d = email.utils.parsedate_to_datetime(
                re.sub(r"^(\d+)-(\w+)-(\d+)", r"\1 \2 \3", rest[0].strip()))
            idate = d.timestamp()
            rest = rest[1:]
        if len(rest) != 1 or not isinstance(rest[0], Lit):
            raise BadArgs("literal expected")
        m = self.sim.append(self.mb, f, bytes(rest[0]), flags, idate)
        if self.sel is f:
            self.sync_updates(True)
        self.tagged(tag, "OK", "[APPENDUID %d %d] APPEND completed." % (f.uidvalidity, m.uid))

    async def c_idle(self, tag, args, uid, segs):
        if self.b["idle_exists_before_plus"] and self.sel is not None:
            self.sync_updates(True)
            self.send("* %d EXISTS" % len(self.view))
        self.send("+ IDLE accepted, awaiting DONE command.")
        await self.flush()
        start = time.monotonic()
        autologout = start + self.sim.secs(self.b["auth_timeout_s"])
        muted = False
        read_task = asyncio.ensure_future(self.readline())
        try:
            while True:
                now = time.monotonic()
                death = self.b["idle_death_s"]
                death_at = start + self.sim.secs(death) if death is not None else None
                if death_at is not None and now >= death_at and not muted:
                    mode = self.b["idle_death_mode"]
                    self.sim.log(self, "idle_death", mode=mode)
                    if mode == "dead_fin":
                        self.kill(None, "idle_death")
                        raise Closed("idle_death")
                    if mode == "dead":
                        read_task.cancel()
                        try:
                            await read_task
                        except (asyncio.CancelledError, Closed):
                            pass
                        self.out.clear()
                        while True:      # never answer again, never close
                            if not await self.r.read(65536):
                                raise Closed("eof")
                    muted = True
                self.wake.clear()
                if not muted:
                    if self.token_expired():
                        self.sim.log(self, "token_expired", during="idle")
                        self.bye("Session invalidated - AccessTokenExpired", "token_expired")
                    self.sync_updates(True)
                    await self.flush()
                if now >= autologout:
                    if muted:
                        raise Closed("autologout")
                    self.bye("Connection is closed. 13", "autologout")
                deadlines = [autologout]
                if not muted:
                    if death_at is not None:
                        deadlines.append(death_at)
                    if self.tok is not None and self.b["token_expiry"] and self.b["check_tokens"]:
                        info = self.sim.token_info(self.tok)
                        if info:
                            deadlines.append(info["expires"] + 0.001)
                wt = asyncio.ensure_future(self.wake.wait())
                done, _ = await asyncio.wait({read_task, wt}, timeout=max(0.0, min(deadlines) - time.monotonic()),
                                             return_when=asyncio.FIRST_COMPLETED)
                wt.cancel()
                if read_task in done:
                    line = read_task.result()
                    break
        finally:
            if not read_task.done():
                read_task.cancel()
        self.sim.log(self, "cmd", cmd=line.strip().decode("utf-8", "replace")[:100], state="idle")
        if line.strip().upper() != b"DONE":
            return self.tagged(tag, "BAD", "Command Error. 12")
        self.sync_updates(True)
        self.tagged(tag, "OK", "IDLE completed.")

    # ---- selected state ----

    def targets(self, setstr, uid):
        """[(msn, uid)] of the session's view"""
        if uid:
            star = self.view[-1] if self.view else 0
            chosen = set(parse_set(setstr, sorted(self.view), star))
            return [(i + 1, u) for i, u in enumerate(self.view) if u in chosen]
        msns = parse_set(setstr, list(range(1, len(self.view) + 1)), len(self.view))
        return [(n, self.view[n - 1]) for n in msns]

    async def c_unselect(self, tag, args, uid, segs):
        self.deselect()
        self.tagged(tag, "OK", "UNSELECT completed.")

    async def c_close(self, tag, args, uid, segs):
        f = self.sel
        if not self.readonly:
            gone = [m.uid for m in f.msgs if "\\Deleted" in m.flags]
            if gone:
                self.sim.expunge(self.mb, f, gone)
        self.deselect()
        self.tagged(tag, "OK", "CLOSE completed.")

    def parse_items(self, spec):
        if isinstance(spec, Atom):
            u = spec.upper()
            macros = {"FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
                      "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]}
            spec = macros.get(u, [spec])
        if not isinstance(spec, list) or not spec:
            raise BadArgs("empty item list")
        items = []
        for it in spec:
            if not isinstance(it, Atom):
                raise BadArgs("item")
            u = it.upper()
            if u in ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE"):
                items.append((u, None, None, False, u))
                continue
            if u == "RFC822":
                items.append(("BODY", "", None, True, "RFC822"))
                continue
            if u == "RFC822.HEADER":
                items.append(("BODY", "HEADER", None, False, "RFC822.HEADER"))
                continue
            if u == "RFC822.TEXT":
                items.append(("BODY", "TEXT", None, True, "RFC822.TEXT"))
                continue
            m = re.fullmatch(r"(BODY(?:\.PEEK)?)\[([^\]]*)\](?:<(\d+)\.(\d+)>)?", str(it), re.I | re.S)
            if not m:
                raise BadArgs("item " + u)
            sec = m.group(2).strip()
            su = sec.upper()
            if su in ("", "HEADER", "TEXT", "1"):
                sec = su
            else:
                hm = re.fullmatch(r"(HEADER\.FIELDS(?:\.NOT)?)\s*\(([^)]*)\)", sec, re.I)
                if not hm:
                    raise BadArgs("section")
                sec = "%s (%s)" % (hm.group(1).upper(), " ".join(hm.group(2).split()).upper())
            part = (int(m.group(3)), int(m.group(4))) if m.group(3) else None
            items.append(("BODY", sec, part, m.group(1).upper() == "BODY", None))
        return items

    def section_data(self, raw, sec):
        if sec == "":
            return raw
        hdr = header_block(raw)
        if sec == "HEADER":
            return hdr
        if sec in ("TEXT", "1"):
            return raw[len(hdr):]
        kind, names = sec.split(" ", 1)
        want = set(n.lower() for n in names.strip("()").split())
        keep = [f for n, f in header_fields(raw) if (n in want) != kind.endswith(".NOT")]
        return b"".join(f + b"\r\n" for f in keep) + b"\r\n"

    async def c_fetch(self, tag, args, uid, segs):
        if len(args) != 2:
            raise BadArgs("fetch args")
        items = self.parse_items(args[1])
        if uid:
            self.sync_updates(True)
            if not any(i[0] == "UID" for i in items):
                items.insert(0, ("UID", None, None, False, "UID"))
        if self.b["fetch_order"] == "exchange":
            rank = {"RFC822.SIZE": 0, "UID": 1, "FLAGS": 2, "INTERNALDATE": 3}
            items = sorted(items, key=lambda i: rank.get(i[0], 9))
        has_body = any(i[0] == "BODY" for i in items)
        f = self.sel
        nq = self.b["empty_fetch_first"]
        for msn, u in self.targets(args[0], uid):
            m = f.by_uid.get(u)
            if m is None:
                continue
            if nq and (has_body or self.b["empty_fetch_items"] == "all"):
                key = (f.name, u)
                c = self.mb.empty_fetch.get(key, 0)
                if c < nq:
                    self.mb.empty_fetch[key] = c + 1
                    self.sim.log(self, "empty_fetch", uid=u, n=c + 1)
                    continue
            parts = []
            set_seen = any(i[0] == "BODY" and i[3] for i in items) and not self.readonly \
                and "\\Seen" not in m.flags
            if set_seen:
                self.sim.set_flags(self.mb, f, m, m.flags | {"\\Seen"})
                self.vflags[u] = frozenset(m.flags)
            for kind, sec, part, _nopeek, name in items:
                if kind == "UID":
                    parts.append(b"UID %d" % m.uid)
                elif kind == "FLAGS":
                    parts.append(b"FLAGS " + flags_str(m.flags).encode())
                elif kind == "INTERNALDATE":
                    parts.append(b"INTERNALDATE " + imap_date(m.idate).encode())
                elif kind == "RFC822.SIZE":
                    parts.append(b"RFC822.SIZE %d" % (len(m.raw) + self.b["size_skew"]))
                else:
                    data = self.section_data(m.raw, sec)
                    label = name or "BODY[%s]" % sec
                    if part:
                        data = data[part[0]:part[0] + part[1]]
                        label += "<%d>" % part[0]
                    parts.append(label.encode() + b" {%d}\r\n" % len(data) + data)
            if set_seen and not any(i[0] == "FLAGS" for i in items):
                parts.append(b"FLAGS " + flags_str(m.flags).encode())
            self.send(b"* %d FETCH (" % msn + b" ".join(parts) + b")\r\n")
        if not uid:
            self.sync_updates(False)
        self.tagged(tag, "OK", "FETCH completed.")

    async def c_store(self, tag, args, uid, segs):
        if len(args) < 3:
            raise BadArgs("store args")
        op = astr(args[1]).upper()
        silent = op.endswith(".SILENT")
        op = op[:-7] if silent else op
        if op not in ("FLAGS", "+FLAGS", "-FLAGS"):
            raise BadArgs("store op")
        fl = norm_flags(args[2] if isinstance(args[2], list) else args[2:])
        if uid:
            self.sync_updates(True)
        f = self.sel
        for msn, u in self.targets(args[0], uid):
            m = f.by_uid.get(u)
            if m is None:
                continue
            new = fl if op == "FLAGS" else (m.flags | fl if op == "+FLAGS" else m.flags - fl)
            if not self.readonly and new != m.flags:
                self.sim.set_flags(self.mb, f, m, new)
            self.vflags[u] = frozenset(m.flags)
            if not silent:
                self.send("* %d FETCH (FLAGS %s%s)" % (msn, flags_str(m.flags), " UID %d" % u if uid else ""))
        self.sync_updates(uid)
        self.tagged(tag, "OK", "STORE completed.")

    def parse_crit(self, toks, i):
        t = toks[i]
        if isinstance(t, list):
            preds = []
            j = 0
            while j < len(t):
                p, j = self.parse_crit(t, j)
                preds.append(p)
            return (lambda n, m: all(p(n, m) for p in preds)), i + 1
        k = astr(t).upper()
        flagmap = {"ANSWERED": "\\Answered", "DELETED": "\\Deleted", "DRAFT": "\\Draft", "FLAGGED": "\\Flagged",
                   "SEEN": "\\Seen"}
        if k == "ALL":
            return (lambda n, m: True), i + 1
        if k in flagmap:
            return (lambda n, m, f=flagmap[k]: f in m.flags), i + 1
        if k.startswith("UN") and k[2:] in flagmap:
            return (lambda n, m, f=flagmap[k[2:]]: f not in m.flags), i + 1
        if k in ("NEW", "RECENT"):
            return (lambda n, m: False), i + 1
        if k == "OLD":
            return (lambda n, m: True), i + 1
        if k in ("KEYWORD", "UNKEYWORD"):
            kw = astr(toks[i + 1]).lower()
            has = (lambda m: any(x.lower() == kw for x in m.flags))
            return ((lambda n, m: has(m)) if k == "KEYWORD" else (lambda n, m: not has(m))), i + 2
        if k == "NOT":
            p, j = self.parse_crit(toks, i + 1)
            return (lambda n, m: not p(n, m)), j
        if k == "OR":
            p1, j = self.parse_crit(toks, i + 1)
            p2, j = self.parse_crit(toks, j)
            return (lambda n, m: p1(n, m) or p2(n, m)), j
        if k in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
            s = astr(toks[i + 1]).lower()
            return (lambda n, m, h=k.lower(): s in (header_value(m.raw, h) or "").lower()), i + 2
        if k == "HEADER":
            h, s = astr(toks[i + 1]).lower(), astr(toks[i + 2]).lower()
            return (lambda n, m: (header_value(m.raw, h) is not None and s in header_value(m.raw, h).lower())), i + 3
        if k in ("BODY", "TEXT"):
            s = astr(toks[i + 1]).lower().encode()
            return (lambda n, m: s in (m.raw if k == "TEXT" else m.raw[len(header_block(m.raw)):]).lower()), i + 2
        if k in ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"):
            d = parse_imap_date(astr(toks[i + 1]))

            def day(m, sent=k.startswith("SENT")):
                ts = m.idate
                if sent:
                    import email.utils
                    try:
                        ts = email.utils.parsedate_to_datetime(header_value(m.raw, "date")).timestamp()
                    except (TypeError, ValueError):
                        pass
                return ts - ts % 86400
            base = k[4:] if k.startswith("SENT") else k
            cmp = {"BEFORE": lambda a: a < d, "ON": lambda a: a == d, "SINCE": lambda a: a >= d}[base]
            return (lambda n, m: cmp(day(m))), i + 2
        if k in ("LARGER", "SMALLER"):
            v = int(astr(toks[i + 1]))
            return ((lambda n, m: len(m.raw) > v) if k == "LARGER" else (lambda n, m: len(m.raw) < v)), i + 2
        if k == "UID":
            chosen = set(parse_set(astr(toks[i + 1]), sorted(self.view), self.view[-1] if self.view else 0))
            return (lambda n, m: m.uid in chosen), i + 2
        if re.fullmatch(r"[0-9*:,]+", k):
            chosen = set(parse_set(k, list(range(1, len(self.view) + 1)), len(self.view)))
            return (lambda n, m: n in chosen), i + 1
        raise BadArgs("search key " + k)

    async def c_search(self, tag, args, uid, segs):
        if any(b >= 0x80 for s in segs for b in s):
            return self.tagged(tag, "BAD", "Command Error. 11")
        if args and astr(args[0]).upper() == "RETURN":
            self.send('* ESEARCH (TAG "%s")%s' % (tag, " UID" if uid else ""))
            return self.tagged(tag, "OK", "SEARCH completed.")
        if args and astr(args[0]).upper() == "CHARSET":
            if astr(args[1]).upper() != "US-ASCII":
                return self.tagged(tag, "NO", "[BADCHARSET (US-ASCII)] The specified charset is not supported.")
            args = args[2:]
        if not args:
            raise BadArgs("no criteria")
        if uid:
            self.sync_updates(True)
        preds, i = [], 0
        while i < len(args):
            p, i = self.parse_crit(args, i)
            preds.append(p)
        f = self.sel
        hits = []
        for n, u in enumerate(self.view, 1):
            m = f.by_uid.get(u)
            if m is not None and all(p(n, m) for p in preds):
                hits.append(u if uid else n)
        self.send("* SEARCH" + "".join(" %d" % h for h in hits))
        if not uid:
            self.sync_updates(False)
        self.tagged(tag, "OK", "SEARCH completed.")

    async def c_expunge(self, tag, args, uid, segs):
        f = self.sel
        if self.readonly:
            return self.tagged(tag, "NO", "EXPUNGE failed. The folder is read-only.")
        chosen = set(u for _, u in self.targets(astr(args[0]), True)) if uid else None
        gone = [m.uid for m in f.msgs if "\\Deleted" in m.flags and (chosen is None or m.uid in chosen)
                and m.uid in self.vflags]
        if gone:
            self.sim.expunge(self.mb, f, gone)
        self.sync_updates(True)
        self.tagged(tag, "OK", "EXPUNGE completed.")

    async def c_copy(self, tag, args, uid, segs, move=False):
        word = "MOVE" if move else "COPY"
        if uid:
            self.sync_updates(True)
        dest, err = self.find(astr(args[1]))
        if err:
            return self.tagged(tag, "NO", "[TRYCREATE] " + err[1])
        f = self.sel
        src, dst = [], []
        for _, u in self.targets(astr(args[0]), uid):
            m = f.by_uid.get(u)
            if m is None:
                continue
            n = self.sim.append(self.mb, dest, m.raw, m.flags, m.idate)
            src.append(u)
            dst.append(n.uid)
        code = "[COPYUID %d %s %s]" % (dest.uidvalidity, compact_set(src), compact_set(dst)) if src else None
        if not move:
            return self.tagged(tag, "OK", (code + " " if code else "") + "COPY completed.")
        if code:
            self.send(code if self.b["bare_copyuid"] else "* OK " + code)
            self.sim.expunge(self.mb, f, src)
            self.sync_updates(True)
            self.send("* %d EXISTS" % len(self.view))
        self.tagged(tag, "OK", "MOVE completed.")

    async def c_move(self, tag, args, uid, segs):
        await self.c_copy(tag, args, uid, segs, move=True)


# --------------------------------------------------------------------------
# POP3
# --------------------------------------------------------------------------

def pop_uidl(mb, f, m):
    h = hashlib.sha256(("%s/%d/%d" % (mb.address, f.uidvalidity, m.uid)).encode()).digest()
    return "AAQkA" + base64.b64encode(h).decode().rstrip("=")[:40]


class Pop(Conn):
    proto = "pop"
    AUTH_FAIL = "-ERR Authentication failure: unknown user name or bad password."

    async def run(self):
        host = b64_host(self.fe_fqdn)
        if self.b["pop_greeting"] == "2025":
            self.send("+OK Microsoft Exchange POP3 server ready (tcpproxy/15.20.9137.005). [%s]" % host)
        else:
            self.send("+OK The Microsoft Exchange POP3 service is ready. [%s]" % host)
        self.snap = None
        self.deleted = set()
        while True:
            try:
                line = await self.read_timed(self.readline())
            except asyncio.TimeoutError:
                self.sim.log(self, "timeout")
                raise Closed("autologout")
            words = line.strip().split(b" ")
            cmd = words[0].decode("latin-1").upper()
            args = [w.decode("latin-1") for w in words[1:]]
            shown = line.strip().decode("latin-1")
            if cmd in ("AUTH", "PASS") and len(args) > (1 if cmd == "AUTH" else 0):
                shown = "%s %s <%d bytes>" % (cmd, args[0] if cmd == "AUTH" else "", len(line))
            self.sim.log(self, "cmd", cmd=shown[:200])
            fn = getattr(self, "p_" + cmd.lower(), None)
            if fn is None:
                self.send("-ERR Protocol error. 14")
                continue
            ok = ({"CAPA", "AUTH", "USER", "PASS", "QUIT"} if self.snap is None else
                  {"CAPA", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP", "QUIT"})
            if cmd not in ok:
                self.send("-ERR Command is not valid in this state.")
                continue
            try:
                await fn(args, line)
            except (ValueError, IndexError):
                self.send("-ERR Protocol error. 14")

    async def p_capa(self, args, line):
        self.send("+OK")
        for c in ("TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER", "."):
            self.send(c)

    async def p_noop(self, args, line):
        self.send("+OK")

    async def p_user(self, args, line):
        self.send("+OK")

    async def p_pass(self, args, line):
        self.sim.log(self, "auth_fail", why="basic")
        self.send(self.AUTH_FAIL)

    async def p_auth(self, args, line):
        if not args:
            self.send("-ERR Protocol error. 14")
            return
        mech = args[0].upper()
        if len(args) > 1:
            if len(line.rstrip(b"\r\n")) > 255:
                self.sim.log(self, "oneline_auth_too_long", length=len(line.rstrip(b"\r\n")))
                self.send("-ERR Protocol error. Connection is closed. 10")
                raise Closed("protocol_error")
            data = args[1]
        else:
            self.send(self.b["sasl_continuation"].encode() + b"\r\n")
            await self.flush()
            data = (await self.readline()).strip().decode("latin-1")
        if data == "*":
            self.send("-ERR Authentication canceled.")
            return
        if self.b["auth_stall_s"]:
            await asyncio.sleep(self.sim.secs(self.b["auth_stall_s"]))
        if mech != "XOAUTH2":
            self.sim.log(self, "auth_fail", why="mechanism " + mech)
            self.send(self.AUTH_FAIL)
            return
        status, mb, tok, info = self.sim.check_xoauth2("pop", data)
        if status != "ok":
            self.sim.log(self, "auth_fail", why=status)
            self.send(self.AUTH_FAIL)
            return
        if self.sim.unavailable("pop_login"):
            self.sim.log(self, "unavailable", user=mb.address)
            self.send("-ERR Server Unavailable. 21")
            return
        self.set_auth(mb)
        self.tok = tok
        inbox = mb.folder("INBOX")
        self.snap = list(inbox.msgs)
        self.sim.log(self, "auth_ok", token_len=len(tok), messages=len(self.snap))
        self.send("+OK User successfully authenticated.")

    def msg(self, args):
        n = int(args[0])
        if n < 1 or n > len(self.snap):
            self.send("-ERR The specified message is out of range.")
            return None
        if n in self.deleted:
            self.send("-ERR The specified message has been deleted.")
            return None
        return self.snap[n - 1]

    async def p_stat(self, args, line):
        live = [m for i, m in enumerate(self.snap, 1) if i not in self.deleted]
        self.send("+OK %d %d" % (len(live), sum(len(m.raw) for m in live)))

    async def p_list(self, args, line, uidl=False):
        f = self.mb.folder("INBOX")
        val = (lambda m: pop_uidl(self.mb, f, m)) if uidl else (lambda m: str(len(m.raw)))
        if args:
            m = self.msg(args)
            if m:
                self.send("+OK %s %s" % (args[0], val(m)))
            return
        live = [(i, m) for i, m in enumerate(self.snap, 1) if i not in self.deleted]
        self.send("+OK" if uidl else "+OK %d messages (%d octets)" % (len(live), sum(len(m.raw) for _, m in live)))
        for i, m in live:
            self.send("%d %s" % (i, val(m)))
        self.send(".")

    async def p_uidl(self, args, line):
        await self.p_list(args, line, uidl=True)

    def send_stuffed(self, data):
        if data and not data.endswith(b"\r\n"):
            data += b"\r\n"
        data = re.sub(rb"(?m)^\.", b"..", data)
        self.send(data + b".\r\n")

    async def p_retr(self, args, line):
        m = self.msg(args)
        if m:
            self.send("+OK")
            self.send_stuffed(m.raw)

    async def p_top(self, args, line):
        m = self.msg(args)
        if m:
            n = int(args[1])
            hdr = header_block(m.raw)
            body = m.raw[len(hdr):].split(b"\r\n")
            self.send("+OK")
            self.send_stuffed(hdr + b"\r\n".join(body[:n]) + (b"\r\n" if n and body[:n] else b""))

    async def p_dele(self, args, line):
        m = self.msg(args)
        if m:
            self.deleted.add(int(args[0]))
            self.send("+OK")

    async def p_rset(self, args, line):
        self.deleted.clear()
        self.send("+OK")

    async def p_quit(self, args, line):
        if self.snap is not None and self.deleted:
            mb = self.mb
            inbox = mb.folder("INBOX")
            uids = [self.snap[i - 1].uid for i in sorted(self.deleted) if self.snap[i - 1].uid in inbox.by_uid]
            mode = mb.settings["pop_delete_mode"]
            if mode == "move_to_pop_folder":
                pf = mb.folder("POP") or mb.make_folder("POP", self.sim.rng("uidvalidity").randint(1, 99))
                for u in uids:
                    m = inbox.by_uid[u]
                    self.sim.append(mb, pf, m.raw, m.flags, m.idate)
            self.sim.expunge(mb, inbox, uids)
            self.sim.log(self, "pop_deleted", uids=uids, mode=mode)
        self.send("+OK Microsoft Exchange Server 2016 POP3 server signing off.")
        raise Closed("quit")


# --------------------------------------------------------------------------
# SMTP submission
# --------------------------------------------------------------------------

class Smtp(Conn):
    proto = "smtp"

    def __init__(self, sim, reader, writer, tls_ctx):
        super().__init__(sim, reader, writer)
        self.tls_ctx = tls_ctx
        self.tls = False
        self.ehlo = False
        self.reset_tx()

    def reset_tx(self):
        self.mail_from = None
        self.rcpts = []
        self.bdat = None

    @property
    def fe_smtp(self):
        return self.fe_name + ".outlook.office365.com"

    def fe_lower(self):
        n, rest = self.fe_fqdn.split(".", 1)
        return n + "." + rest.lower()

    async def run(self):
        r = self.sim.rng("smtp-ids")
        self.send("220 %s Microsoft ESMTP MAIL Service ready at %s [%016X]"
                  % (self.fe_smtp, rfc822_date(time.time()), r.getrandbits(64)))
        while True:
            try:
                line = await self.read_timed(self.readline())
            except asyncio.TimeoutError:
                self.sim.log(self, "timeout")
                self.send("421 4.4.1 Connection timed out")
                raise Closed("timeout")
            text = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            cmd = text.split(" ", 1)[0].upper()
            self.sim.log(self, "cmd", cmd=(text if cmd != "AUTH" or len(text) < 20 else text[:13] + " <%d bytes>"
                                           % len(text))[:300])
            fn = getattr(self, "s_" + cmd.lower(), None) if re.fullmatch(r"[A-Z]+", cmd) else None
            if fn is None:
                self.send("500 5.3.3 Unrecognized command '%s'" % text[:20])
                continue
            await fn(text[len(cmd):].strip())

    async def s_ehlo(self, arg, helo=False):
        if not arg:
            self.send("501 5.5.4 Invalid domain name")
            return
        self.ehlo = True
        self.reset_tx()
        if helo:
            self.send("250 %s Hello [127.0.0.1]" % self.fe_smtp)
            return
        lines = ["%s Hello [127.0.0.1]" % self.fe_smtp, "SIZE 157286400", "PIPELINING", "DSN",
                 "ENHANCEDSTATUSCODES", "AUTH LOGIN XOAUTH2" if self.tls else "STARTTLS", "8BITMIME",
                 "BINARYMIME", "CHUNKING", "SMTPUTF8"]
        for i, l in enumerate(lines):
            self.send("250%s%s" % (" " if i == len(lines) - 1 else "-", l))

    async def s_helo(self, arg):
        await self.s_ehlo(arg, helo=True)

    async def s_starttls(self, arg):
        if self.tls:
            self.send("503 5.5.2 Only one STARTTLS command can be used")
            return
        self.send("220 2.0.0 SMTP server ready")
        await self.flush()
        self.buf.clear()
        try:
            self.r._buffer.clear()   # RFC 3207: discard what the client pipelined after STARTTLS
        except AttributeError:
            pass
        await self.w.start_tls(self.tls_ctx)
        self.tls, self.ehlo = True, False
        self.reset_tx()
        self.sim.log(self, "tls")

    async def s_auth(self, arg):
        parts = arg.split()
        if not self.tls or not parts:
            self.send("504 5.7.4 Unrecognized authentication type")
            return
        if self.is_authed:
            self.send("503 5.5.2 Already authenticated")
            return
        mech = parts[0]
        if mech.upper() == "LOGIN":
            self.send("334 VXNlcm5hbWU6")
            await self.flush()
            u = (await self.readline()).strip()
            self.send("334 UGFzc3dvcmQ6")
            await self.flush()
            p = (await self.readline()).strip()
            try:
                u, p = base64.b64decode(u).decode().lower(), base64.b64decode(p).decode()
            except (ValueError, UnicodeDecodeError):
                u, p = None, None
            mb = self.sim.mailboxes.get(u or "")
            if mb and mb.settings["basic_auth_allowed"] and mb.settings["password"] == p:
                return await self.auth_ok(mb)
            self.sim.log(self, "auth_fail", why="basic")
            self.send("535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [%s %s %016X]"
                      % (self.fe_name, time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                         self.sim.rng("smtp-ids").getrandbits(64)))
            return
        if mech != "XOAUTH2":
            self.send("504 5.7.4 Unrecognized authentication type")
            return
        if len(parts) > 1:
            data = parts[1]
        else:
            self.send("334 ")
            await self.flush()
            data = (await self.readline(maxlen=64 * 1024)).strip().decode("latin-1")
        if self.b["auth_stall_s"]:
            await asyncio.sleep(self.sim.secs(self.b["auth_stall_s"]))
        if data == "*":
            self.send("535 5.7.3 Authentication unsuccessful [%s]" % self.fe_lower())
            return
        status, mb, tok, info = self.sim.check_xoauth2("smtp", data)
        if status == "malformed":
            self.sim.log(self, "auth_fail", why=status)
            self.send("501 5.5.124 Invalid XOAUTH2 auth data")
        elif status == "disabled":
            self.sim.log(self, "auth_fail", why=status)
            self.send("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
                      "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [%s]"
                      % self.fe_lower())
        elif status != "ok":
            self.sim.log(self, "auth_fail", why=status)
            self.send("535 5.7.3 Authentication unsuccessful [%s]" % self.fe_lower())
        else:
            self.tok = tok
            await self.auth_ok(mb)

    async def auth_ok(self, mb):
        if self.sim.conc[("smtp", mb.address)] >= self.b["smtp_max_connections"]:
            self.sim.log(self, "cap_refused", user=mb.address)
            self.send("432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
                      "for more information. [Hostname=%s]" % mb.mb_host)
            return
        self.set_auth(mb)
        self.sim.log(self, "auth_ok")
        self.send("235 2.7.0 Authentication successful")

    def recent(self, mb):
        now = self.sim.now_p()
        while mb.sent_times and mb.sent_times[0] <= now - 60:
            mb.sent_times.popleft()
        while mb.rcpt_log and mb.rcpt_log[0][0] <= now - 86400:
            mb.rcpt_log.popleft()
        return now

    async def s_mail(self, arg):
        if not self.ehlo:
            self.send("503 5.5.2 Send hello first")
            return
        if not self.is_authed:
            self.send("530 5.7.57 Client not authenticated to send mail")
            return
        if self.mail_from is not None:
            self.send("503 5.5.2 Sender already specified")
            return
        m = re.fullmatch(r"FROM:\s*<([^>]*)>(.*)", arg, re.I)
        if not m:
            self.send("501 5.5.4 Invalid arguments")
            return
        params = dict((p.split("=", 1) + [""])[:2] for p in m.group(2).split())
        size = params.get("SIZE") or params.get("size")
        if size and size.isdigit() and int(size) > self.b["smtp_max_bytes"]:
            self.send("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        mb = self.mb
        self.recent(mb)
        if self.b["rate_mode"] == "reject" and len(mb.sent_times) >= self.b["rate_per_minute"]:
            self.sim.log(self, "rate_reject")
            self.send("421 4.4.2 Message submission rate for this client has exceeded the configured limit")
            raise Closed("rate")
        addr = m.group(1).lower()
        if self.b["sendas"] == "mail" and addr and addr != mb.address and addr not in \
                [a.lower() for a in mb.settings["send_as"]]:
            self.sim.log(self, "sendas_denied", at="mail", addr=addr)
            self.send("550 5.7.60 SMTP; Client does not have permissions to send as this sender")
            return
        self.mail_from = m.group(1)
        self.send("250 2.1.0 Sender OK")

    async def s_rcpt(self, arg):
        if self.mail_from is None:
            self.send("503 5.5.2 Need mail command")
            return
        m = re.fullmatch(r"TO:\s*<([^>]+)>.*", arg, re.I)
        if not m:
            self.send("501 5.5.4 Invalid arguments")
            return
        if len(self.rcpts) >= self.b["max_rcpt_per_message"]:
            self.send("452 4.5.3 Too many recipients")
            return
        self.rcpts.append(m.group(1))
        self.send("250 2.1.5 Recipient OK")

    async def s_data(self, arg):
        if self.mail_from is None:
            self.send("503 5.5.2 Need mail command")
            return
        if not self.rcpts:
            self.send("503 5.5.2 Need rcpt command")
            return
        self.send("354 Start mail input; end with <CRLF>.<CRLF>")
        chunks, size, limit = [], 0, self.b["smtp_max_bytes"]
        while True:
            line = await self.readline(maxlen=1 << 20)
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size <= limit:
                chunks.append(line)
        await self.finish(b"".join(chunks), size)

    async def s_bdat(self, arg):
        parts = arg.split()
        if not parts or not parts[0].isdigit():
            self.send("501 5.5.4 Invalid arguments")
            return
        n = int(parts[0])
        data = await self.readexactly(n)
        if self.mail_from is None or not self.rcpts:
            self.send("503 5.5.2 Need rcpt command")
            return
        if self.bdat is None:
            self.bdat = bytearray()
        if len(self.bdat) <= self.b["smtp_max_bytes"]:
            self.bdat += data
        if len(parts) > 1 and parts[1].upper() == "LAST":
            raw = bytes(self.bdat)
            await self.finish(raw, len(raw))
        else:
            self.send("250 2.0.0 %d bytes received" % n)

    def new_message_id(self, mb):
        r = self.sim.rng("msgid")
        name, rest = mb.mb_host.split(".", 1)
        return "<%s%032X@%s.%s>" % (name, r.getrandbits(128), name, rest.lower())

    async def finish(self, raw, size):
        mb, rcpts, frm = self.mb, self.rcpts, self.mail_from
        self.reset_tx()
        if size > self.b["smtp_max_bytes"]:
            self.sim.log(self, "too_big", size=size)
            self.send("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        if self.b["sendas"] == "data":
            allowed = [mb.address] + [a.lower() for a in mb.settings["send_as"]]
            for h in ("from", "sender"):
                a = addr_of(header_value(raw, h))
                if a and a not in allowed:
                    self.sim.log(self, "sendas_denied", at="data", addr=a)
                    self.send("554 5.2.252 SendAsDenied; %s not allowed to send as %s; STOREDRV.Submission.Exception:"
                              "SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a "
                              "permanent exception with message [BeginDiagnosticData]Cannot submit message. "
                              "0.35250:0A00B784, 1.36674:0A000000, 1.61250:00000000[EndDiagnosticData] "
                              "[Hostname=%s]" % (mb.address, a, mb.mb_host))
                    return
        now = self.recent(mb)
        quota = mb.settings["recipient_quota"] or self.b["recipient_quota"].get(mb.kind, 10000)
        used = sum(n for _, n in mb.rcpt_log)
        if used + len(rcpts) > quota:
            self.sim.log(self, "quota", used=used, quota=quota)
            if mb.kind == "consumer":
                self.send("554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message "
                          "due to a permanent exception with message [BeginDiagnosticData]WASCL UserAction verdict "
                          "is not None. Actual verdict is RefuseQuota, ShowTierUpgrade. OutboundSpamException: WASCL "
                          "UserAction verdict is not None. Actual verdict is RefuseQuota, ShowTierUpgrade."
                          "[EndDiagnosticData] [Hostname=%s]" % mb.mb_host)
            else:
                self.send("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
                          "process message due to a permanent exception with message [BeginDiagnosticData]Cannot "
                          "submit message. 0.35250:0A000000[EndDiagnosticData] [Hostname=%s]" % mb.mb_host)
            return
        if self.b["rate_mode"] == "delay" and len(mb.sent_times) >= self.b["rate_per_minute"]:
            wait = mb.sent_times[len(mb.sent_times) - self.b["rate_per_minute"]] + 60 - now
            self.sim.log(self, "rate_delay", wait_s=round(wait, 3))
            await self.flush()
            await asyncio.sleep(self.sim.secs(max(0.0, wait)))
            now = self.recent(mb)
        mid = header_value(raw, "message-id")
        rw = self.b["rewrite_message_id"]
        if rw == "always" or (rw == "consumer" and mb.kind == "consumer"):
            new = self.new_message_id(mb)
            raw2 = set_header(raw, "Message-ID", new, keep_old_as="X-Microsoft-Original-Message-ID")
        elif not mid:
            new = self.new_message_id(mb)
            raw2 = set_header(raw, "Message-ID", new)
        else:
            new, raw2 = mid, raw
        delivered = drop_header(raw2, "Bcc")
        local, remote = [], []
        for r in rcpts:
            rb = self.sim.mailboxes.get(r.lower())
            if rb is not None:
                self.sim.append(rb, rb.folder("INBOX"), delivered)
                local.append(r)
            else:
                remote.append(r)
        if remote:
            self.sim.outbound_n += 1
            d = os.path.join(self.sim.state_dir, "outbound")
            os.makedirs(d, exist_ok=True)
            fn = os.path.join(d, "%d.eml" % self.sim.outbound_n)
            with open(fn, "wb") as fh:
                fh.write(delivered)
            with open(os.path.join(self.sim.state_dir, "outbound.jsonl"), "a") as fh:
                fh.write(json.dumps({"from": frm, "user": mb.address, "rcpts": remote, "message_id": new,
                                     "file": fn, "size": len(delivered)}) + "\n")
        sent_uid = None
        if self.b["sent_items_copy"]:
            sent_uid = self.sim.append(mb, mb.folder("Sent Items"), raw2, {"\\Seen"}).uid
        mb.sent_times.append(now)
        mb.rcpt_log.append((now, len(rcpts)))
        self.sim.log(self, "accepted", mail_from=frm, rcpts=rcpts, local=local, remote=remote, size=len(raw),
                     message_id=new, original_message_id=mid, sent_uid=sent_uid)
        self.send("250 2.0.0 OK %s [Hostname=%s]" % (new, mb.mb_host))

    async def s_rset(self, arg):
        self.reset_tx()
        self.send("250 2.0.0 Resetting")

    async def s_noop(self, arg):
        self.send("250 2.0.0 OK")

    async def s_vrfy(self, arg):
        self.send("252 2.1.5 Cannot VRFY user, but will accept message for delivery")

    async def s_quit(self, arg):
        self.send("221 2.0.0 Service closing transmission channel")
        raise Closed("quit")


# --------------------------------------------------------------------------
# control API
# --------------------------------------------------------------------------

class Control:
    def __init__(self, sim):
        self.sim = sim

    async def handle(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
            n = int(hdrs.get("content-length", "0"))
            body = await reader.readexactly(n) if n else b""
            try:
                status, obj = await self.route(method, path, body)
            except (KeyError, ValueError, TypeError, AttributeError) as e:
                status, obj = 400, {"error": "%s: %s" % (type(e).__name__, e)}
            data = json.dumps(obj, default=str).encode()
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % (status, len(data)) + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def mbox(self, f):
        mb = self.sim.mailboxes.get(str(f.get("user", "")).lower())
        if mb is None:
            raise KeyError("no such user")
        return mb

    def folder(self, mb, f):
        fo = mb.folder(f.get("folder", "INBOX"))
        if fo is None:
            raise KeyError("no such folder")
        return fo

    async def route(self, method, path, body):
        sim = self.sim
        u = urllib.parse.urlparse(path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()}
        parts = u.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "sim":
            return 404, {"error": "not found"}
        op = parts[1]
        f = json.loads(body or b"null") if method == "POST" else None
        if method == "GET" or op in ("state", "log", "mailbox"):
            if op == "state":
                return 200, {"behaviours": sim.b, "now": sim.now_p(), "second_ms": sim.second_ms,
                             "users": {a: {"kind": mb.kind, "settings": mb.settings,
                                           "backoff_left_s": max(0.0, mb.backoff_until - time.monotonic()),
                                           "recipients_24h": sum(n for _, n in mb.rcpt_log),
                                           "folders": {fo.name: len(fo.msgs) for fo in mb.folders.values()}}
                                       for a, mb in sim.mailboxes.items()},
                             "connections": [{"conn": c.id, "proto": c.proto, "user": c.user,
                                              "authenticated": c.is_authed} for c in sim.conns.values()],
                             "concurrent": {"%s %s" % k: v for k, v in sim.conc.items() if k[1]},
                             "max_concurrent": {"%s %s" % k: v for k, v in sim.max_conc.items() if k[1]}}
            if op == "log":
                since = int(q.get("since", 0))
                out = [r for r in sim.log_mem if r["seq"] > since
                       and all(str(r.get(k)) == q[k] for k in ("proto", "user", "conn", "ev") if k in q)]
                return 200, {"log": out}
            if op == "mailbox":
                mb = self.mbox(q)
                raw = q.get("raw") == "1"
                fl = [fo for fo in mb.folders.values() if "folder" not in q or fo.name == mb.folder(q["folder"]).name]
                return 200, {"address": mb.address, "kind": mb.kind, "folders": [
                    {"name": fo.name, "uidvalidity": fo.uidvalidity, "uidnext": fo.uidnext,
                     "messages": [dict({"uid": m.uid, "flags": sorted(m.flags), "internaldate": m.idate,
                                        "size": len(m.raw), "message_id": header_value(m.raw, "message-id"),
                                        "original_message_id": header_value(m.raw, "x-microsoft-original-message-id"),
                                        "subject": header_value(m.raw, "subject")},
                                       **({"raw": m.raw.decode("utf-8", "surrogateescape")} if raw else {}))
                                  for m in fo.msgs]} for fo in fl]}
            return 404, {"error": "unknown GET op"}
        if f is None:
            f = {}
        if op == "set" or op in sim.b:
            upd = f if op == "set" else {op: f["value"] if isinstance(f, dict) and set(f) == {"value"} else f}
            for k, v in upd.items():
                if k not in sim.b:
                    return 400, {"error": "unknown behaviour " + k}
                sim.b[k] = v
                if k == "throttle":
                    for mb in sim.mailboxes.values():
                        mb.thr_cmds = mb.thr_bytes = 0
                        mb.thr_fired = False
            sim.log(None, "control", op="set", values=upd)
            return 200, {"ok": True, "behaviours": sim.b}
        if op == "reset":
            sim.b = copy.deepcopy(sim.start_behaviours)
            for mb in sim.mailboxes.values():
                mb.reset_counters()
            sim.log(None, "control", op="reset")
            return 200, {"ok": True}
        if op == "mint":
            tok = sim.mint(f["user"], f.get("scope"), f.get("expires_in"), f.get("client_id"))
            sim.log(None, "control", op="mint", user=f["user"])
            return 200, tok
        if op in ("approve", "decline"):
            # the user approves (declines) a device code, as fake_idp's
            # /control/approve does, but on the plain-HTTP control port
            st = sim.idp
            with st.lock:
                pend = [d for d in st.devices.values() if d["status"] == "pending" and not d["used"]]
                code = f.get("user_code")
                pick = [d for d in pend if d["user_code"] == code] if code else pend[-1:]
                if not pick:
                    return 404, {"error": "no such pending code"}
                pick[0]["status"] = "approved" if op == "approve" else "declined"
                pick[0]["user"] = f.get("user", "alice@outlook.test")
            sim.log(None, "control", op=op, user=pick[0]["user"])
            return 200, {"ok": True, "user_code": pick[0]["user_code"]}
        if op == "expire":
            n = sim.expire(f.get("user"))
            sim.log(None, "control", op="expire", user=f.get("user"))
            return 200, {"ok": True, "expired": n}
        if op == "user":
            mb = self.mbox(f)
            for k, v in f.items():
                if k == "user":
                    continue
                if k == "kind":
                    mb.kind = v
                elif k == "recipients_today":
                    mb.rcpt_log.clear()
                    mb.rcpt_log.append((sim.now_p(), int(v)))
                elif k in USER_SETTINGS:
                    mb.settings[k] = v
                else:
                    return 400, {"error": "unknown setting " + k}
            sim.save(mb)
            return 200, {"ok": True, "settings": mb.settings, "kind": mb.kind}
        if op == "deliver":
            mb = self.mbox(f)
            fo = self.folder(mb, f)
            uids = []
            for i in range(int(f.get("count", 1))):
                if f.get("raw") is not None:
                    raw = f["raw"].encode("utf-8", "surrogateescape")
                    raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
                else:
                    r = sim.rng("deliver")
                    raw = sim.gen_message(r, mb, fo.name, r.randint(0, 1 << 30), int(f.get("size", 1500)))
                uids.append(sim.append(mb, fo, raw, norm_flags(f.get("flags", []))).uid)
            sim.log(None, "control", op="deliver", user=mb.address, folder=fo.name, uids=uids)
            return 200, {"ok": True, "uids": uids}
        if op == "store":
            mb = self.mbox(f)
            fo = self.folder(mb, f)
            sim.set_flags(mb, fo, fo.by_uid[int(f["uid"])], norm_flags(f.get("flags", [])))
            return 200, {"ok": True}
        if op == "expunge":
            mb = self.mbox(f)
            fo = self.folder(mb, f)
            sim.expunge(mb, fo, [int(x) for x in f["uids"] if int(x) in fo.by_uid])
            return 200, {"ok": True}
        if op == "uidvalidity":
            mb = self.mbox(f)
            fo = self.folder(mb, f)
            sim.bump_uidvalidity(mb, fo, f.get("value"), f.get("uid_start"))
            sim.log(None, "control", op="uidvalidity", user=mb.address, folder=fo.name, value=fo.uidvalidity)
            return 200, {"ok": True, "uidvalidity": fo.uidvalidity, "uids": [m.uid for m in fo.msgs]}
        if op == "disconnect":
            n = 0
            for c in list(sim.conns.values()):
                if f.get("user") not in (None, c.user) or f.get("proto") not in (None, c.proto):
                    continue
                bye = {"imap": b"* BYE Connection closed. 14\r\n", "pop": b"-ERR Server Unavailable. 21\r\n",
                       "smtp": b"421 4.3.2 Service not available, closing transmission channel\r\n"}[c.proto]
                c.kill(bye if f.get("bye", True) else None, "control")
                n += 1
            return 200, {"ok": True, "closed": n}
        return 404, {"error": "unknown op " + op}


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def tls_context(tls_dir):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(tls_dir, "server.pem"), os.path.join(tls_dir, "server.key"))
    return ctx


def start_idp(args, sim, config):
    ns = types.SimpleNamespace(seed=args.seed, second_ms=args.second_ms, client=args.client, tenant=[],
                               log=os.path.join(args.state_dir, "idp.log"))
    st = fake_idp.State(ns)
    st.cfg.update(config.get("idp", {}))
    srv = fake_idp.Server(("127.0.0.1", 0), fake_idp.Handler)
    srv.st = st
    srv.socket = tls_context(args.tls_dir).wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sim.idp = st
    return srv.server_address[1]


async def amain(args):
    config = {}
    if args.config:
        with open(args.config) as fh:
            config = json.load(fh)
    if not args.client:
        args.client = config.get("clients", [DEFAULT_CLIENT])
    sim = Sim(args, config)
    idp_port = start_idp(args, sim, config)
    ctx = tls_context(args.tls_dir)

    def spawn(cls, *extra):
        async def cb(reader, writer):
            await cls(sim, reader, writer, *extra).serve()
        return cb

    imap = await asyncio.start_server(spawn(Imap), "127.0.0.1", 0, ssl=ctx, limit=1 << 22)
    pop = await asyncio.start_server(spawn(Pop), "127.0.0.1", 0, ssl=ctx, limit=1 << 22)
    smtp = await asyncio.start_server(spawn(Smtp, ctx), "127.0.0.1", 0, limit=1 << 22)
    ctl = await asyncio.start_server(Control(sim).handle, "127.0.0.1", 0)
    port = lambda s: s.sockets[0].getsockname()[1]  # noqa: E731
    info = {"imaps": port(imap), "pop3s": port(pop), "submission": port(smtp), "idp": idp_port,
            "control": port(ctl), "idp_url": "https://127.0.0.1:%d" % idp_port,
            "control_url": "http://127.0.0.1:%d" % port(ctl), "client_id": args.client[0],
            "tenant": "consumers", "pid": os.getpid()}
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(info, fh)
    os.rename(tmp, args.port_file)
    if args.env_file:
        with open(args.env_file + ".tmp", "w") as fh:
            for k in ("imaps", "pop3s", "submission", "idp", "control"):
                fh.write("MK_SIM_%s_PORT=%d\n" % (k.upper(), info[k]))
            fh.write("MK_SIM_IDP_URL=%s\nMK_SIM_CONTROL_URL=%s\nMK_SIM_CLIENT_ID=%s\nMK_SIM_PID=%d\n"
                     % (info["idp_url"], info["control_url"], info["client_id"], info["pid"]))
        os.rename(args.env_file + ".tmp", args.env_file)
    sim.log(None, "listening", ports=info)
    stop = asyncio.Event()
    import signal
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for mb in sim.mailboxes.values():
        sim.save_now(mb)


def ctl(args):
    url = args.url
    if not url:
        with open(args.port_file) as fh:
            url = json.load(fh)["control_url"]
    data = args.json.encode() if args.json is not None else None
    req = urllib.request.Request(url.rstrip("/") + "/sim/" + args.op, data=data,
                                 method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            print(r.read().decode())
    except urllib.error.HTTPError as e:
        print(e.read().decode())
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description="Outlook.com / Microsoft 365 IMAP, POP3, SMTP simulator")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--tls-dir", required=True)
    s.add_argument("--state-dir", required=True)
    s.add_argument("--port-file", required=True)
    s.add_argument("--env-file")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--second-ms", type=int, default=1000)
    s.add_argument("--config")
    s.add_argument("--client", action="append", default=[])
    c = sub.add_parser("ctl")
    c.add_argument("--port-file")
    c.add_argument("--url")
    c.add_argument("op")
    c.add_argument("json", nargs="?")
    args = ap.parse_args()
    if args.cmd == "serve":
        asyncio.run(amain(args))
    else:
        ctl(args)


if __name__ == "__main__":
    main()
