# SPDX-License-Identifier: MIT
"""Shared helpers of the Python integration tests (standard library only).

The tests get the test servers' description from the env file written by
tests/fixtures/mailserver.sh, whose path is in MK_FIX_ENV. check() prints
what was checked; fail() exits non-zero with a clear message.
"""

import base64
import os
import re
import shlex
import ssl
import sys


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def check(cond, what, detail=""):
    if not cond:
        fail(what + (": " + detail if detail else ""))
    print("ok: " + what, flush=True)


def load_env():
    path = os.environ.get("MK_FIX_ENV")
    if not path:
        fail("MK_FIX_ENV is not set (path of the env file written by tests/fixtures/mailserver.sh start)")
    if not os.path.exists(path):
        fail("%s does not exist: the mail fixture did not start (see fixture_mail_setup)" % path)
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^([A-Z0-9_]+)=(.*)$", line.strip())
            if m:
                env[m.group(1)] = (shlex.split(m.group(2)) or [""])[0]
    for k in ("MK_CA_FILE", "MK_USER", "MK_PASS", "MK_USER2", "MK_PASS2", "MK_IMAPS_PORT", "MK_IMAP_PORT",
              "MK_POP3S_PORT", "MK_POP3_PORT", "MK_SUBMISSION_PORT", "MK_LMTP_SOCKET"):
        if not env.get(k):
            fail("%s is missing from %s" % (k, path))
    return env


def tls_context(env):
    """Verifies against the test CA only, with host name checks (127.0.0.1 is an IP SAN)."""
    ctx = ssl.create_default_context(cafile=env["MK_CA_FILE"])
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def utf7_decode(s):
    """RFC 3501 modified UTF-7 to str."""
    def dec(m):
        b64 = m.group(1)
        if not b64:
            return "&"
        b64 = b64.replace(",", "/")
        return base64.b64decode(b64 + "=" * (-len(b64) % 4)).decode("utf-16-be")
    return re.sub(r"&([A-Za-z0-9+,]*)-", dec, s)


def utf7_encode(name):
    out, buf = [], []

    def flush():
        if buf:
            b = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


LIST_RE = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<delim>"[^"]*"|NIL) (?P<name>.+)$')


def parse_list(lines):
    """imaplib LIST data -> [(flags set, delimiter, wire name)]."""
    out = []
    for item in lines:
        if isinstance(item, tuple):  # name sent as a literal
            head, lit = item
            m = LIST_RE.match(head.rstrip() + b" x")
            name = lit.decode("ascii")
        else:
            m = LIST_RE.match(item)
            name = None
        if not m:
            fail("unparsable LIST response %r" % (item,))
        if name is None:
            name = m.group("name").decode("ascii")
            if name.startswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        flags = set(m.group("flags").decode().split())
        out.append((flags, m.group("delim").decode().strip('"'), name))
    return out
