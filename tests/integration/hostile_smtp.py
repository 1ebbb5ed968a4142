#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A deliberately broken SMTP submission server for mailkeep's outbox tests.

usage: hostile_smtp.py MODE PORT_FILE TLS_DIR LOG

Modes (connections served one after another, until killed):
  nostarttls  EHLO without STARTTLS (a stripping attacker): the client must
              stop before AUTH and send nothing else
  inject      STARTTLS answered "220 go ahead" with "250 injected" in the
              same segment, before the handshake (the classic injection)
  refuse      STARTTLS answered "454 4.7.0 TLS not available"
  hugeline    after STARTTLS and EHLO, a 1 MiB reply line
  drop_data   a full server that drops the connection after "354", in the
              middle of the message (nothing was accepted)
Every line received is appended to LOG so a test can prove no credential
and no message byte arrived where they must not. Standard library only.
"""
import socket
import ssl
import sys

mode, port_file, tls_dir, log_path = sys.argv[1:5]


def log(line):
    with open(log_path, "ab") as f:
        f.write(line + b"\n")


def lines(f):
    while True:
        line = f.readline()
        if not line:
            return
        log(line.rstrip(b"\r\n"))
        yield line.rstrip(b"\r\n")


EHLO_CLEAR = (b"250-hostile.test Hello\r\n250-SIZE 157286400\r\n250-PIPELINING\r\n"
              b"250-8BITMIME\r\n%s250 SMTPUTF8\r\n")


def serve(conn, ctx):
    conn.sendall(b"220 hostile.test ESMTP ready\r\n")
    f = conn.makefile("rb")
    for line in lines(f):
        cmd = line.split(b" ")[0].upper()
        if cmd == b"EHLO":
            conn.sendall(EHLO_CLEAR % (b"" if mode == "nostarttls" else b"250-STARTTLS\r\n"))
        elif cmd == b"STARTTLS":
            if mode == "inject":
                conn.sendall(b"220 2.0.0 go ahead\r\n250 injected\r\n")
                return
            if mode == "refuse":
                conn.sendall(b"454 4.7.0 TLS not available\r\n")
                continue
            conn.sendall(b"220 2.0.0 go ahead\r\n")
            tls = ctx.wrap_socket(conn, server_side=True)
            serve_tls(tls)
            return
        elif cmd == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        else:
            conn.sendall(b"530 5.7.0 Must issue a STARTTLS command first\r\n")


def serve_tls(conn):
    f = conn.makefile("rb")
    for line in lines(f):
        cmd = line.split(b" ")[0].upper()
        if cmd == b"EHLO":
            if mode == "hugeline":
                conn.sendall(b"250 " + b"x" * (1024 * 1024) + b"\r\n")
                return
            conn.sendall(b"250-hostile.test Hello\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
        elif cmd == b"AUTH":
            conn.sendall(b"235 2.7.0 Authentication successful\r\n")
        elif cmd in (b"MAIL", b"RCPT"):
            conn.sendall(b"250 2.1.0 OK\r\n")
        elif cmd == b"DATA":
            conn.sendall(b"354 go on\r\n")
            if mode == "drop_data":
                f.readline()  # the first line of the message, then gone
                conn.close()
                return
        elif cmd == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return


def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{tls_dir}/server.pem", f"{tls_dir}/server.key")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(s.getsockname()[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    while True:
        conn, _ = s.accept()
        try:
            serve(conn, ctx)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


main()
