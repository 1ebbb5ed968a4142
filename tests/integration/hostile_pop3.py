#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""hostile_pop3.py -- a small scriptable POP3 server (implicit TLS) for
testing mailkeep's POP3 fetch against what Dovecot never does.

  hostile_pop3.py --tls-dir DIR --port-file FILE --state FILE
                  [--generate N] [--fault NAME] [--fault-after K] [--once]
                  [--caps "TOP UIDL USER ..."] [--user U] [--password P]

TLS: DIR/server.pem + DIR/server.key (the fixture's certificate covers
IP:127.0.0.1). Listens on 127.0.0.1:0, writes the port to --port-file.

Maildrop: --state is a JSON file {"messages": [{"uidl": .., "body": ..}]},
created with --generate N messages when missing. RFC 1939 semantics: DELE
marks, QUIT's UPDATE removes and rewrites the file; a connection lost before
QUIT deletes nothing.

Faults (K = --fault-after, default 2; message numbers from 1):
  no-uidl          UIDL answers -ERR, CAPA does not list it
  no-dot           RETR K sends the text without the terminating "." and closes
  huge-line        the UIDL listing is followed by 1 MB without CRLF (then
                   waits for the client to hang up)
  garbage          LIST answers binary junk instead of +OK
  drop-after-retr  the connection closes right after RETR K completed
  drop-during-retr the connection closes in the middle of RETR K's text
  drop-before-quit QUIT closes the connection without +OK (nothing deleted)
  bad-uidl         message K's UIDL contains a space-free control character
--once: the fault fires only on the first connection.
Every command is logged (PASS hidden) to --log.
"""
import argparse
import json
import os
import random
import socket
import ssl
import sys
import threading

ap = argparse.ArgumentParser()
ap.add_argument("--tls-dir", required=True)
ap.add_argument("--port-file", required=True)
ap.add_argument("--state", required=True)
ap.add_argument("--log")
ap.add_argument("--generate", type=int, default=6)
ap.add_argument("--fault", default="")
ap.add_argument("--fault-after", type=int, default=2)
ap.add_argument("--once", action="store_true")
ap.add_argument("--caps", default="TOP UIDL USER SASL PLAIN")
ap.add_argument("--user", default="alice@example.test")
ap.add_argument("--password", default="secret")
A = ap.parse_args()

lock = threading.Lock()
conns = [0]


def log(n, s):
    if A.log:
        with lock, open(A.log, "a") as f:
            f.write(f"{n} {s}\n")


def gen(n):
    rnd = random.Random("hostile-pop3")
    msgs = []
    for i in range(n):
        lines = [f"From: S{i} <s{i}@example.test>", "To: alice@example.test", f"Subject: pop message {i}",
                 f"Message-ID: <hp{i}@example.test>", ""]
        for k in range(rnd.randint(3, 40)):
            line = "".join(rnd.choice("abcdefghij .") for _ in range(rnd.randint(0, 70)))
            if k % 7 == 0:
                line = "." + line  # needs dot-stuffing
            lines.append(line)
        msgs.append({"uidl": f"UID{i:04d}-{rnd.randint(0, 10**6)}", "body": "\r\n".join(lines) + "\r\n"})
    return msgs


def load():
    if not os.path.exists(A.state):
        json.dump({"messages": gen(A.generate)}, open(A.state, "w"))
    return json.load(open(A.state))["messages"]


def save(msgs):
    tmp = A.state + ".tmp"
    json.dump({"messages": msgs}, open(tmp, "w"))
    os.replace(tmp, A.state)


def stuff(body):
    out = []
    for line in body.split("\r\n")[:-1]:
        out.append(("." + line) if line.startswith(".") else line)
    return ("\r\n".join(out) + "\r\n").encode()


def serve(sock, n):
    fault = A.fault if (not A.once or n == 1) else ""
    K = A.fault_after
    f = sock.makefile("rwb", buffering=0)

    def send(b):
        sock.sendall(b if isinstance(b, bytes) else b.encode())

    with lock:
        msgs = load()
    deleted = set()
    authed = False
    send("+OK hostile POP3 ready\r\n")
    try:
        while True:
            line = f.readline(4096)
            if not line:
                log(n, "EOF")
                return
            cmd = line.decode(errors="replace").strip()
            word = cmd.split(" ")[0].upper()
            log(n, "PASS ***" if word == "PASS" else cmd)
            arg = cmd.split(" ")[1:] if " " in cmd else []
            if word == "CAPA":
                caps = A.caps.split(" SASL ")[0].split()
                if fault == "no-uidl":
                    caps = [c for c in caps if c != "UIDL"]
                send("+OK\r\n" + "".join(c + "\r\n" for c in caps) + ("SASL PLAIN\r\n" if "SASL" in A.caps else "") + ".\r\n")
            elif word == "USER":
                send("+OK\r\n")
            elif word == "PASS":
                authed = arg and arg[0] == A.password
                send("+OK logged in\r\n" if authed else "-ERR [AUTH] bad password\r\n")
            elif word == "AUTH":
                send("+ \r\n")
                resp = f.readline(8192)
                import base64
                try:
                    parts = base64.b64decode(resp.strip()).split(b"\0")
                    authed = parts[2].decode() == A.password
                except Exception:
                    authed = False
                send("+OK logged in\r\n" if authed else "-ERR [AUTH] failed\r\n")
            elif not authed and word not in ("QUIT",):
                send("-ERR not authenticated\r\n")
            elif word == "STAT":
                live = [m for i, m in enumerate(msgs) if i not in deleted]
                send(f"+OK {len(live)} {sum(len(stuff(m['body'])) for m in live)}\r\n")
            elif word == "UIDL":
                if fault == "no-uidl":
                    send("-ERR unknown command\r\n")
                    continue
                out = "+OK\r\n"
                for i, m in enumerate(msgs):
                    if i in deleted:
                        continue
                    u = m["uidl"]
                    if fault == "bad-uidl" and i + 1 == K:
                        u = u[:3] + "\x01" + u[3:]
                    out += f"{i + 1} {u}\r\n"
                if fault == "huge-line":
                    send(out.encode() + b"x" * (1024 * 1024))
                    f.readline()  # wait for the client to hang up
                    return
                send(out + ".\r\n")
            elif word == "LIST":
                if fault == "garbage":
                    send(bytes(range(256)) * 4 + b"\r\n")
                    continue
                out = "+OK\r\n"
                for i, m in enumerate(msgs):
                    if i not in deleted:
                        out += f"{i + 1} {len(m['body'])}\r\n"
                send(out + ".\r\n")
            elif word in ("RETR", "TOP"):
                k = int(arg[0])
                if k < 1 or k > len(msgs) or (k - 1) in deleted:
                    send("-ERR no such message\r\n")
                    continue
                data = stuff(msgs[k - 1]["body"])
                if fault == "no-dot" and k == K:
                    send(b"+OK\r\n" + data)
                    log(n, "fault no-dot")
                    return
                if fault == "drop-during-retr" and k == K:
                    send(b"+OK\r\n" + data[: len(data) // 2])
                    log(n, "fault drop-during-retr")
                    return
                send(b"+OK " + str(len(data)).encode() + b" octets\r\n" + data + b".\r\n")
                if fault == "drop-after-retr" and k == K:
                    log(n, "fault drop-after-retr")
                    return
            elif word == "DELE":
                k = int(arg[0])
                deleted.add(k - 1)
                send(f"+OK message {k} deleted\r\n")
            elif word == "RSET":
                deleted.clear()
                send("+OK\r\n")
            elif word == "NOOP":
                send("+OK\r\n")
            elif word == "QUIT":
                if fault == "drop-before-quit":
                    log(n, "fault drop-before-quit")
                    return
                with lock:
                    save([m for i, m in enumerate(msgs) if i not in deleted])
                log(n, f"UPDATE deleted {len(deleted)}")
                send("+OK bye\r\n")
                return
            else:
                send("-ERR unknown command\r\n")
    except (OSError, ssl.SSLError, ValueError, IndexError) as e:
        log(n, f"error {e}")
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(A.tls_dir, "server.pem"), os.path.join(A.tls_dir, "server.key"))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    with open(A.port_file + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.replace(A.port_file + ".tmp", A.port_file)
    while True:
        c, _ = ls.accept()
        conns[0] += 1
        try:
            s = ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            c.close()
            continue
        threading.Thread(target=serve, args=(s, conns[0]), daemon=True).start()


if __name__ == "__main__":
    main()
