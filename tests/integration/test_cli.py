#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`mailkeep` as a user runs it, against the private Dovecot fixture.

usage: test_cli.py MAILKEEP    (MK_FIX_ENV names the fixture's env file)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import Tally, read_env, write_private  # noqa: E402

MAILKEEP = sys.argv[1]
TALLY = Tally()
check = TALLY.check


def write(tmp, name, text, mode=0o600):
    return write_private(os.path.join(tmp, name), text, mode)


def mk(*args):
    r = subprocess.run([MAILKEEP, *args], capture_output=True, text=True, timeout=120)
    print(f"  $ mailkeep {' '.join(args)} -> {r.returncode} {r.stderr.strip()[-200:]}")
    return r


def main():
    fx = read_env(os.environ["MK_FIX_ENV"])
    tmp = tempfile.mkdtemp(prefix="mk-cli-")
    secret = write(tmp, "secret", fx["MK_PASS"] + "\n")
    base = (f"[defaults]\nstore = {tmp}/store\ntls_ca_file = {fx['MK_CA_FILE']}\n"
            f"[account imaps]\nemail = {fx['MK_USER']}\nauth = plain\npassword = {fx['MK_PASS']}\n"
            f"imap_host = 127.0.0.1\nimap_port = {fx['MK_IMAPS_PORT']}\n"
            f"[account starttls]\nemail = {fx['MK_USER']}\nauth = login\n"
            f"pass_cmd = cat {secret}\n"
            f"imap_host = localhost\nimap_port = {fx['MK_IMAP_PORT']}\nimap_tls = starttls\n"
            f"[account wrongpass]\nemail = {fx['MK_USER']}\nauth = plain\npassword = not-the-password\n"
            f"imap_host = 127.0.0.1\nimap_port = {fx['MK_IMAPS_PORT']}\n"
            f"[account failcmd]\nemail = {fx['MK_USER']}\nauth = plain\npass_cmd = exit 3\n"
            f"imap_host = 127.0.0.1\nimap_port = {fx['MK_IMAPS_PORT']}\n")
    cfg = write(tmp, "config", base)

    r = mk("-c", cfg, "check-config")
    check(r.returncode == 0 and "account starttls" in r.stdout and fx["MK_PASS"] not in r.stdout
          and "password (set, hidden)" in r.stdout, "check-config prints accounts, secrets masked")

    r = mk("-c", cfg, "folders", "imaps")
    want = ["INBOX", "Sent Items", "Deleted Items", "Junk Email", "Archive", "Archive/2025", "Drafts", "Données"]
    check(r.returncode == 0 and all(f"  {w} " in r.stdout for w in want),
          "folders over implicit TLS: every seeded folder, UTF-7 name decoded")

    r = mk("-c", cfg, "folders", "--json", "imaps")
    try:
        names = {f["name"] for f in json.loads(r.stdout)}
    except ValueError:
        names = set()
    check(r.returncode == 0 and set(want) <= names, "folders --json is valid JSON with the folders")

    r = mk("-c", cfg, "folders", "--trace", "starttls")
    err = r.stderr
    check(r.returncode == 0 and "certificate verified for localhost" in r.stdout, "Dovecot STARTTLS verified")
    check(err.find("C: A1 STARTTLS") != -1 and err.find("STARTTLS") < err.find("LOGIN <hidden"),
          "STARTTLS happens before LOGIN")
    check(fx["MK_PASS"] not in err and fx["MK_PASS"] not in r.stdout, "password never in the trace")

    r = mk("-c", cfg, "folders", "wrongpass")
    check(r.returncode == 77 and "login as alice@example.test failed: NO" in r.stderr, "wrong password: exit 77")

    r = mk("-c", cfg, "folders", "failcmd")
    check(r.returncode == 69 and "pass_cmd" in r.stderr and "status 3" in r.stderr, "failing pass_cmd: exit 69")

    r = mk("-c", cfg, "folders", "nosuch")
    check(r.returncode == 78 and 'no account named "nosuch"' in r.stderr, "unknown account: exit 78")

    loose = write(tmp, "loose", base, 0o644)
    r = mk("-c", loose, "check-config")
    check(r.returncode == 77 and f"chmod 600 {loose}" in r.stderr, "password in a 0644 file refused with the chmod")

    broken = write(tmp, "broken", "[account x]\nemail = a@b.c\nimap_hots = h\n")
    r = mk("-c", broken, "check-config")
    check(r.returncode == 78 and f"{broken}:3:" in r.stderr and 'did you mean "imap_host"' in r.stderr,
          "config error: FILE:LINE and a did-you-mean, exit 78")

    r = mk("-c", os.path.join(tmp, "missing"), "check-config")
    check(r.returncode == 78, "missing config: exit 78")

    r = mk("frobnicate")
    check(r.returncode == 64, "unknown command: exit 64")
    r = mk("--version")
    check(r.returncode == 0 and r.stdout.startswith("mailkeep "), "--version")

    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{TALLY.failures} failed" if TALLY.failures else "all CLI checks passed")
    return 1 if TALLY.failures else 0


sys.exit(main())
