#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""mailkeep's TLS verification, end to end, through `mailkeep folders`.

Starts tls_server.py in each mode on 127.0.0.1 and checks the exit code
and the exact complaint, and (for the STARTTLS attacks) that no credential
reached the server. Default trust is tested with SSL_CERT_FILE and
SSL_CERT_DIR removed from the environment, so only the system store and
tls_ca_file count.

usage: test_tls.py MAILKEEP MKCA_SH
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from mkfix import Tally, write_private  # noqa: E402

MAILKEEP, MKCA = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
PASSWORD = "s3cret-Pa55word-never-logged"
TALLY = Tally()
check = TALLY.check


def start_server(tmp, mode):
    port_file = os.path.join(tmp, f"{mode}.port")
    log = os.path.join(tmp, f"{mode}.log")
    open(log, "wb").close()
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "tls_server.py"), mode, port_file,
                          os.path.join(tmp, "tls"), log])
    for _ in range(200):
        if os.path.exists(port_file):
            return p, int(open(port_file).read()), log
        time.sleep(0.05)
    p.kill()
    raise SystemExit(f"tls_server.py {mode} did not start")


def run(tmp, name, port, tls="implicit", host="127.0.0.1", ca=True, extra="", args=()):
    cfg = os.path.join(tmp, f"{name}.conf")
    write_private(cfg, f"[defaults]\nstore = {tmp}/store\n[account {name}]\nemail = alice@example.test\n"
                  f"auth = plain\npassword = {PASSWORD}\nimap_host = {host}\nimap_port = {port}\n"
                  f"imap_tls = {tls}\n" + (f"tls_ca_file = {tmp}/tls/ca.pem\n" if ca else "") + extra)
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    r = subprocess.run([MAILKEEP, "-c", cfg, "folders", *args, name], capture_output=True, text=True,
                       env=env, timeout=120)
    print(f"  [{name}] exit {r.returncode}: {r.stderr.strip()[-300:]}")
    return r


def main():
    tmp = tempfile.mkdtemp(prefix="mk-tls-")
    servers = []
    try:
        subprocess.run([MKCA, tmp], check=True, stdout=subprocess.DEVNULL)
        ports, logs = {}, {}
        for mode in ("good", "wronghost", "untrusted", "tls10", "inject", "nostarttls", "plain", "silent", "mute"):
            p, ports[mode], logs[mode] = start_server(tmp, mode)
            servers.append(p)

        r = run(tmp, "good", ports["good"])
        check(r.returncode == 0 and "certificate verified for 127.0.0.1" in r.stdout and "INBOX" in r.stdout,
              "test CA via tls_ca_file: verified, logged in, folders listed")

        r = run(tmp, "goodname", ports["good"], host="localhost")
        check(r.returncode == 0 and "certificate verified for localhost" in r.stdout,
              "DNS name (SNI + host check) verified")

        r = run(tmp, "trace", ports["good"], args=("--trace",))
        check(r.returncode == 0 and PASSWORD not in r.stderr and PASSWORD not in r.stdout
              and "AUTHENTICATE PLAIN <hidden" in r.stderr,
              "protocol trace hides the credentials")

        r = run(tmp, "noca", ports["good"], ca=False)
        check(r.returncode == 76 and
              "certificate for 127.0.0.1 is not trusted (unable to get local issuer certificate)" in r.stderr,
              "no CA configured: system store refuses the test CA")

        r = run(tmp, "wronghost", ports["wronghost"])
        check(r.returncode == 76 and
              "host name mismatch: certificate is for wrong.example, connected to 127.0.0.1" in r.stderr,
              "wrong host name refused")

        r = run(tmp, "untrusted", ports["untrusted"])
        check(r.returncode == 76 and "certificate for 127.0.0.1 is not trusted" in r.stderr,
              "certificate from an untrusted CA refused")

        r = run(tmp, "tls10", ports["tls10"])
        check(r.returncode == 76 and "older than 1.2" in r.stderr, "TLS 1.0-only server refused")

        r = run(tmp, "plain", ports["plain"])
        check(r.returncode == 76 and "did not answer with TLS" in r.stderr,
              "plaintext server on an implicit-TLS port refused")

        r = run(tmp, "inject", ports["inject"], tls="starttls")
        seen = open(logs["inject"], "rb").read()
        check(r.returncode == 76 and "in clear after the STARTTLS go-ahead" in r.stderr,
              "cleartext injected after STARTTLS refused")
        check(PASSWORD.encode() not in seen and b"LOGIN" not in seen.upper().replace(b"STARTTLS", b""),
              "injection: no credential reached the server")

        r = run(tmp, "nostarttls", ports["nostarttls"], tls="starttls")
        seen = open(logs["nostarttls"], "rb").read()
        check(r.returncode == 76 and "does not offer STARTTLS" in r.stderr, "STARTTLS stripping refused")
        check(PASSWORD.encode() not in seen and b"LOGIN" not in seen.upper(),
              "stripping: no credential reached the server")

        # SPKI pin: learn the real one from a verified run, then a wrong one
        r = run(tmp, "pinlearn", ports["good"])
        pin = [w for w in r.stdout.split() if w.startswith("sha256/")]
        check(bool(pin), "server key pin printed")
        if pin:
            r = run(tmp, "pinok", ports["good"], extra=f"tls_fingerprint = {pin[0]}\n")
            check(r.returncode == 0, "matching tls_fingerprint accepted")
            bad = "sha256/" + "A" * 43 + "="
            r = run(tmp, "pinbad", ports["good"], extra=f"tls_fingerprint = {bad}\n")
            check(r.returncode == 76 and "does not match tls_fingerprint" in r.stderr,
                  "mismatching tls_fingerprint refused")

        r = run(tmp, "silent", ports["silent"], extra="timeout = 2\n")
        check(r.returncode == 75 and "timed out after 2 s in TLS handshake with 127.0.0.1" in r.stderr,
              "server that never answers: handshake timeout, exit 75")
        r = run(tmp, "mute", ports["mute"], extra="timeout = 2\n")
        check(r.returncode == 75 and f"no data from 127.0.0.1:{ports['mute']} for 2 s" in r.stderr,
              "server that goes quiet after TLS: read timeout, exit 75")

        # a port nobody listens on
        s = __import__("socket").socket()
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
        s.close()
        r = run(tmp, "refused", free)
        check(r.returncode == 75 and "refused" in r.stderr, "connection refused: temporary failure, exit 75")
    finally:
        for p in servers:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{TALLY.failures} failed" if TALLY.failures else "all TLS checks passed")
    return 1 if TALLY.failures else 0


sys.exit(main())
