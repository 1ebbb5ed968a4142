#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""16 KiB XOAUTH2 tokens over POP3 and SMTP (issue 6), against the Outlook
simulator: Dovecot (8 KiB login buffer) and Postfix's Dovecot SASL link (16 KiB
protocol lines) cannot take them, Exchange does (tokens exceed 4 KiB since
2025, OUTLOOK.md §1.6). The token comes from the simulator's identity
provider, handed to mailkeep through `token_cmd`; the simulator checks it (and
its scope) at AUTH and logs the length it received.

usage: test_bigtoken.py MAILKEEP SRCDIR
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import Tally, write_private  # noqa: E402

MAILKEEP, SRC = sys.argv[1], sys.argv[2]
SIM = os.path.join(SRC, "tests", "sim", "outlook_sim.py")
TALLY = Tally()
check = TALLY.check
USER = "alice@outlook.test"
TOKEN_LEN = 16 * 1024


def post(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def main():
    tmp = tempfile.mkdtemp(prefix="mk-bigtoken-")
    subprocess.run(["sh", os.path.join(SRC, "tests", "fixtures", "mkca.sh"), tmp], check=True, capture_output=True,
                   env=dict(os.environ, OPENSSL=os.environ.get("OPENSSL", "openssl")))
    tls = os.path.join(tmp, "tls")
    cfgj = os.path.join(tmp, "sim.json")
    with open(cfgj, "w") as f:
        json.dump({"idp": {"token_len": [TOKEN_LEN, TOKEN_LEN]}}, f)
    portf = os.path.join(tmp, "ports.json")
    sim = subprocess.Popen([sys.executable, SIM, "serve", "--tls-dir", tls, "--state-dir", os.path.join(tmp, "state"),
                            "--port-file", portf, "--seed", "16", "--config", cfgj],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "sim.log"), "w"))
    try:
        for _ in range(200):
            if os.path.exists(portf):
                break
            time.sleep(0.05)
        ports = json.load(open(portf))
        ctl = ports["control_url"]
        tok = post(ctl, "/sim/mint", {"user": USER})["access_token"]
        check(len(tok) == TOKEN_LEN, f"the identity provider issued a {len(tok)}-byte access token")
        tokf = write_private(os.path.join(tmp, "token"), tok + "\n")
        cfg = write_private(os.path.join(tmp, "cfg"), f"""[defaults]
store = {tmp}/store
tls_ca_file = {tls}/ca.pem

[account a]
provider = outlook
email = {USER}
token_cmd = cat {tokf}
fetch = pop3
pop3_host = 127.0.0.1
pop3_port = {ports['pop3s']}
smtp_host = 127.0.0.1
smtp_port = {ports['submission']}
imap_host = 127.0.0.1
imap_port = {ports['imaps']}
""")
        r = subprocess.run([MAILKEEP, "-c", cfg, "sync"], capture_output=True, timeout=120)
        out = (r.stdout + r.stderr).decode(errors="replace")
        check(r.returncode == 0 and "a/POP3:" in out, "POP3 sync with a 16 KiB token (AUTH XOAUTH2 in two steps): "
              + out.strip().splitlines()[-1] if out.strip() else "-")
        r = subprocess.run([MAILKEEP, "-c", cfg, "send", "carol@outlook.test"], capture_output=True, timeout=120,
                           input=f"From: {USER}\nSubject: big token\n\nhello\n".encode())
        out = (r.stdout + r.stderr).decode(errors="replace")
        check(r.returncode == 0 and "sent to 1 recipient" in out, "SMTP submission with a 16 KiB token: "
              + out.strip().replace("\n", " / "))
        # The simulator accepts only tokens its identity provider issued,
        # whole: an auth_ok is proof the 16 KiB arrived intact.
        by_proto = {}
        with open(os.path.join(tmp, "state", "log.jsonl")) as f:
            for line in f:
                e = json.loads(line)
                if e.get("ev") == "auth_ok":
                    by_proto.setdefault(e.get("proto"), []).append(e.get("token_len", "ok"))
        check(TOKEN_LEN in by_proto.get("pop", []), f"the POP3 server accepted the whole token: {by_proto.get('pop')}")
        check(bool(by_proto.get("smtp")), f"the SMTP server accepted the token: {by_proto.get('smtp')}")
        check(tok[:64] not in out, "the token never appears in mailkeep's output")
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
        if TALLY.failures == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("state kept in " + tmp)
    print(f"{TALLY.failures} failed" if TALLY.failures else "all 16 KiB token checks passed")
    return 1 if TALLY.failures else 0


if __name__ == "__main__":
    sys.exit(main())
