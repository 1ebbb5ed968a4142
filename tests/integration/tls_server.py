#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A deliberately broken or hostile IMAP server for mailkeep's TLS tests.

Modes (one connection at a time, until killed):
  good        implicit TLS with the test CA's server certificate
  wronghost   implicit TLS, certificate for wrong.example only
  untrusted   implicit TLS, certificate from a CA the client does not trust
  tls10       implicit TLS limited to TLS 1.0
  inject      STARTTLS port that sends "* OK injected" in clear right after
              the go-ahead, in the same segment (the classic injection)
  nostarttls  STARTTLS port that does not offer STARTTLS (stripping)
  plain       a plaintext server on an implicit-TLS port
  silent      accepts TCP and never answers (handshake timeout)
  mute        completes TLS, then never sends the greeting (read timeout)

Every line the server receives is appended to LOG (so a test can prove a
password never arrived). Standard library only; Debian's python3.
"""
import socket
import ssl
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

mode, port_file, tls_dir, log_path = sys.argv[1:5]


def ctx_for(cert, key, tls10=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{tls_dir}/{cert}", f"{tls_dir}/{key}")
    if tls10:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    return ctx


def log(line):
    with open(log_path, "ab") as f:
        f.write(line + b"\n")


def serve_imap(f, sock):
    """Minimal post-TLS IMAP: enough for `mailkeep folders`."""
    sock.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] test server ready\r\n")
    while True:
        line = f.readline()
        if not line:
            return
        log(line.rstrip(b"\r\n"))
        parts = line.split(b" ", 2)
        tag, cmd = parts[0], parts[1].strip().upper() if len(parts) > 1 else b""
        if cmd == b"CAPABILITY":
            sock.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n" + tag + b" OK done\r\n")
        elif cmd in (b"LOGIN", b"AUTHENTICATE"):
            sock.sendall(tag + b" OK logged in\r\n")
        elif cmd == b"LIST":
            sock.sendall(b'* LIST (\\HasNoChildren) "/" INBOX\r\n' + tag + b" OK done\r\n")
        elif cmd == b"LOGOUT":
            sock.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
            return
        else:
            sock.sendall(tag + b" BAD unknown\r\n")


def handle(conn):
    if mode in ("good", "wronghost", "untrusted", "tls10"):
        cert, key = {
            "good": ("server.pem", "server.key"),
            "wronghost": ("wronghost.pem", "wronghost.key"),
            "untrusted": ("untrusted.pem", "untrusted.key"),
            "tls10": ("server.pem", "server.key"),
        }[mode]
        try:
            tls = ctx_for(cert, key, mode == "tls10").wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log(b"handshake failed: " + str(e).encode())
            return
        with tls:
            serve_imap(tls.makefile("rb"), tls)
        return
    if mode == "silent":
        conn.recv(65536)
        time.sleep(30)
        return
    if mode == "mute":
        tls = ctx_for("server.pem", "server.key").wrap_socket(conn, server_side=True)
        time.sleep(30)
        tls.close()
        return
    if mode == "plain":
        conn.sendall(b"* OK plaintext server\r\n")
        data = conn.recv(4096)
        log(b"received %d bytes" % len(data))
        return
    f = conn.makefile("rb")
    caps = b"IMAP4rev1 AUTH=PLAIN" + (b" STARTTLS" if mode == "inject" else b"")
    conn.sendall(b"* OK [CAPABILITY " + caps + b"] hostile server ready\r\n")
    while True:
        line = f.readline()
        if not line:
            return
        log(line.rstrip(b"\r\n"))
        tag, _, rest = line.partition(b" ")
        cmd = rest.strip().upper()
        if cmd == b"CAPABILITY":
            conn.sendall(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
        elif cmd == b"STARTTLS" and mode == "inject":
            # go-ahead and the injected response in ONE segment
            conn.sendall(tag + b" OK Begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n")
            try:
                tls = ctx_for("server.pem", "server.key").wrap_socket(conn, server_side=True)
                serve_imap(tls.makefile("rb"), tls)
            except (ssl.SSLError, OSError) as e:
                log(b"handshake failed: " + str(e).encode())
            return
        else:
            conn.sendall(tag + b" OK whatever\r\n")


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.getsockname()[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    while True:
        conn, _ = srv.accept()
        conn.settimeout(40)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def serve(conn):
    try:
        handle(conn)
    except OSError as e:
        log(b"error: " + str(e).encode())
    finally:
        try:
            conn.close()
        except OSError:
            pass


main()
