#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""fake_idp.py - a fake Microsoft identity platform for mailkeep's tests
(OUTLOOK.md §1.3, §1.6, §5.3). Python standard library only, written
independently of mailkeep's C code so that a misunderstanding cannot cancel
itself out on both sides.

Serves HTTPS on 127.0.0.1 (certificate from tests/fixtures/mkca.sh):

  POST /{tenant}/oauth2/v2.0/devicecode   client_id, scope
      -> 200 {user_code, device_code, verification_uri, expires_in, interval, message}
  POST /{tenant}/oauth2/v2.0/token
      grant_type=urn:ietf:params:oauth:grant-type:device_code  client_id, device_code
      grant_type=refresh_token                                 client_id, refresh_token[, scope]
      -> 200 {token_type, scope, expires_in, ext_expires_in, access_token, refresh_token, id_token}
      -> 400 {error, error_description "AADSTSnnnn: ...", error_codes [n], timestamp, trace_id,
              correlation_id, error_uri}  (Microsoft's shape)
  POST /introspect   token=...   (RFC 7662; also GET ?token=)
      -> {"active": true, "user": ..., "username": ..., "scope": ..., "client_id": ..., "exp": ...}
         or {"active": false}.  For other fixtures (Dovecot's oauth2 passdb,
         introspection_mode = post, username_attribute = username, active_attribute = active,
         active_value = true) and the Outlook simulator: an access token is valid
         until it expires or "revoke all".

Control (the test plays the user and the tenant admin), POST JSON to /control/<op>:
  approve   {"user_code": C?, "user": U?}   approve C (default: the newest pending code)
  decline   {"user_code": C?}               the user declines
  script    {"polls": ["authorization_pending", "slow_down", ...]}
            answers for the next polls of the next device code, one per poll, before the
            normal behaviour (pending until approved or declined)
  config    {"expires_in": N, "refresh_idle_s": N, "device_expires_in": N, "interval": N,
             "chunked": bool, "token_len": [min, max]}
  revoke_all {}                             every refresh and access token dies
  state     {} (or GET /control/state)      codes, counters (polls, too_fast, refreshes), config
Counters: "too_fast" counts polls that came before the interval the server asked for
(that poll is answered slow_down, as RFC 8628 §3.5 allows).

Known clients: --client ID (repeatable); any other client_id gets AADSTS700016.
Known tenants: consumers, organizations, common, and --tenant NAME; others get AADSTS90002.

Time: --second-ms N makes one protocol second N ms of real time (expires_in, interval,
idle refresh lifetime), the same factor mailkeep takes from MK_TEST_OAUTH_SECOND_MS.
Deterministic: tokens and codes come from random.Random(--seed).

usage: fake_idp.py serve --cert C --key K --port-file F [--client ID]... [--seed N]
                         [--second-ms N] [--log FILE]
       fake_idp.py ctl --url https://127.0.0.1:PORT --ca CA OP [JSON]
"""
import argparse
import base64
import http.server
import json
import os
import random
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
AADSTS = {
    70016: ("authorization_pending", "OAuth 2.0 device flow error. Authorization is pending. Continue polling."),
    70019: ("expired_token", "Verification code expired."),
    70000: ("invalid_grant", "Provided grant is invalid or malformed."),
    700082: ("invalid_grant", "The refresh token has expired due to inactivity. The token was issued on {issued} and "
             "was inactive for 90.00:00:00."),
    700016: ("unauthorized_client", "Application with identifier '{client}' was not found in the directory "
             "'{tenant}'. This can happen if the application has not been installed by the administrator of the "
             "tenant or consented to by any user in the tenant."),
    90002: ("invalid_request", "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."),
    9002313: ("invalid_request", "Invalid request. Request is malformed or invalid."),
}


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.second_ms = args.second_ms
        self.clients = set(args.client)
        self.tenants = {"consumers", "organizations", "common", *args.tenant}
        self.cfg = {"expires_in": 3599, "refresh_idle_s": 90 * 86400, "device_expires_in": 900,
                    "interval": 5, "chunked": False, "token_len": [1500, 6000]}
        self.devices = {}      # device_code -> dict
        self.next_script = []
        self.refresh = {}      # refresh token -> dict(user, client, scope, expires_mono)
        self.access = {}       # access token -> dict(user, client, scope, expires_mono, exp)
        self.stats = {"polls": 0, "too_fast": 0, "refreshes": 0, "issued": 0, "devicecodes": 0}
        self.log = open(args.log, "a", buffering=1) if args.log else None

    def say(self, msg):
        if self.log:
            self.log.write(time.strftime("%H:%M:%S ") + msg + "\n")

    def secs(self, n):
        """n protocol seconds in real seconds"""
        return n * self.second_ms / 1000.0

    def token(self, prefix):
        lo, hi = self.cfg["token_len"]
        n = self.rng.randint(lo, hi)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return prefix + "".join(self.rng.choice(alphabet) for _ in range(n - len(prefix)))


def error_body(code, **fmt):
    err, text = AADSTS[code]
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace = "0f5c8a9e-0000-4000-8000-%012d" % code
    return {"error": err,
            "error_description": "AADSTS%d: %s Trace ID: %s Correlation ID: 3b1c0d2e-1111-4222-8333-444455556666 "
                                 "Timestamp: %s" % (code, text.format(**fmt), trace, now),
            "error_codes": [code], "timestamp": now, "trace_id": trace,
            "correlation_id": "3b1c0d2e-1111-4222-8333-444455556666",
            "error_uri": "https://login.microsoftonline.com/error?code=%d" % code}


def plain_error(err, code, text):
    b = {"error": err, "error_description": "AADSTS%d: %s" % (code, text), "error_codes": [code]}
    return b


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-idp"

    def log_message(self, fmt, *a):
        self.server.st.say("%s %s" % (self.address_string(), fmt % a))

    def reply(self, status, obj):
        st = self.server.st
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Cache-Control", "no-store, no-cache")
        self.send_header("Connection", "close")
        if st.cfg["chunked"]:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = max(1, len(body) // 3)
            for i in range(0, len(body), step):
                part = body[i:i + step]
                self.wfile.write(b"%x;ext=1\r\n" % len(part) + part + b"\r\n")
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.close_connection = True

    def form(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode()
        if self.headers.get("Content-Type", "").split(";")[0].strip() == "application/json":
            return json.loads(raw or "{}")
        return {k: v[-1] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path == "/control/state":
            return self.control("state", {})
        if u.path == "/introspect":
            q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()}
            return self.introspect(q.get("token", ""))
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        u = urllib.parse.urlparse(self.path)
        parts = u.path.strip("/").split("/")
        try:
            f = self.form()
        except (ValueError, UnicodeDecodeError):
            return self.reply(400, error_body(9002313))
        if parts[0] == "control" and len(parts) == 2:
            return self.control(parts[1], f)
        if u.path == "/introspect":
            return self.introspect(f.get("token", ""))
        if len(parts) == 4 and parts[1:3] == ["oauth2", "v2.0"] and parts[3] in ("devicecode", "token"):
            with self.server.st.lock:
                status, body = (self.devicecode if parts[3] == "devicecode" else self.tokenep)(parts[0], f)
            return self.reply(status, body)
        self.reply(404, {"error": "not_found"})

    # ---- the identity endpoints ----

    def check_client(self, st, tenant, f):
        if tenant not in st.tenants:
            return 400, error_body(90002, tenant=tenant)
        client = f.get("client_id", "")
        if not client:
            return 400, error_body(9002313)
        if client not in st.clients:
            return 400, error_body(700016, client=client, tenant=tenant)
        return None

    def devicecode(self, tenant, f):
        st = self.server.st
        bad = self.check_client(st, tenant, f)
        if bad:
            return bad
        if not f.get("scope"):
            return 400, error_body(9002313)
        st.stats["devicecodes"] += 1
        user_code = "".join(st.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        dc = st.token("DAQABAAEAAAD")[:300]
        uri = "https://www.microsoft.com/link" if tenant == "consumers" else "https://microsoft.com/devicelogin"
        exp = st.cfg["device_expires_in"]
        st.devices[dc] = {"user_code": user_code, "client": f["client_id"], "scope": f["scope"],
                          "expires": time.monotonic() + st.secs(exp), "status": "pending",
                          "user": None, "script": st.next_script, "interval": st.cfg["interval"],
                          "last_poll": None, "used": False}
        st.next_script = []
        st.say("devicecode %s for %s" % (user_code, f["client_id"]))
        return 200, {"user_code": user_code, "device_code": dc, "verification_uri": uri,
                     "expires_in": exp, "interval": st.cfg["interval"],
                     "message": "To sign in, use a web browser to open the page %s and enter the code %s to "
                                "authenticate." % (uri, user_code)}

    def issue(self, st, user, client, scope):
        now = time.monotonic()
        exp = st.cfg["expires_in"]
        at = st.token("EwB")
        rt = st.token("M.C5")
        st.access[at] = {"user": user, "client": client, "scope": scope, "expires": now + st.secs(exp),
                         "exp": int(time.time() + st.secs(exp))}
        st.refresh[rt] = {"user": user, "client": client, "scope": scope,
                          "expires": now + st.secs(st.cfg["refresh_idle_s"]),
                          "issued": time.strftime("%m/%d/%Y %H:%M:%S")}
        st.stats["issued"] += 1
        idt = base64.urlsafe_b64encode(json.dumps({"preferred_username": user}).encode()).decode().rstrip("=")
        return 200, {"token_type": "Bearer", "scope": scope, "expires_in": exp, "ext_expires_in": exp,
                     "access_token": at, "refresh_token": rt, "id_token": "eyJhbGciOiJub25lIn0." + idt + "."}

    def tokenep(self, tenant, f):
        st = self.server.st
        bad = self.check_client(st, tenant, f)
        if bad:
            return bad
        grant = f.get("grant_type")
        if grant == DEVICE_GRANT:
            st.stats["polls"] += 1
            d = st.devices.get(f.get("device_code", ""))
            if d is None or d["used"]:
                return 400, plain_error("bad_verification_code", 70000, "The provided value for the input "
                                        "parameter 'device_code' is not valid.")
            now = time.monotonic()
            if now > d["expires"]:
                return 400, error_body(70019)
            too_fast = d["last_poll"] is not None and now - d["last_poll"] < 0.8 * st.secs(d["interval"])
            d["last_poll"] = now
            if too_fast:
                st.stats["too_fast"] += 1
                d["interval"] += 5
                return 400, plain_error("slow_down", 70016, "OAuth 2.0 device flow error. Slow down.")
            if d["script"]:
                what = d["script"].pop(0)
                if what == "slow_down":
                    d["interval"] += 5
                    return 400, plain_error("slow_down", 70016, "OAuth 2.0 device flow error. Slow down.")
                if what == "authorization_pending":
                    return 400, error_body(70016)
                if what == "expired_token":
                    return 400, error_body(70019)
                if what == "bad_verification_code":
                    return 400, plain_error("bad_verification_code", 70000, "The provided value for the "
                                            "input parameter 'device_code' is not valid.")
                if what == "authorization_declined":
                    return 400, plain_error("authorization_declined", 70000, "The end user denied the "
                                            "authorization request.")
                return 400, plain_error(what, 70000, "Scripted error.")
            if d["status"] == "declined":
                return 400, plain_error("authorization_declined", 70000, "The end user denied the "
                                        "authorization request.")
            if d["status"] != "approved":
                return 400, error_body(70016)
            d["used"] = True
            st.say("device code %s redeemed by %s" % (d["user_code"], d["user"]))
            return self.issue(st, d["user"], d["client"], d["scope"])
        if grant == "refresh_token":
            rt = f.get("refresh_token", "")
            r = st.refresh.get(rt)
            if r is None or r["client"] != f["client_id"]:
                return 400, error_body(70000)
            if time.monotonic() > r["expires"]:
                return 400, error_body(700082, issued=r["issued"])
            # Rotation: a new refresh token every time; the old one stays
            # valid until it expires (Microsoft does not revoke it).
            st.stats["refreshes"] += 1
            return self.issue(st, r["user"], r["client"], f.get("scope") or r["scope"])
        return 400, plain_error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.")

    def introspect(self, token):
        st = self.server.st
        with st.lock:
            a = st.access.get(token)
            if a is None or time.monotonic() > a["expires"]:
                return self.reply(200, {"active": False})
            return self.reply(200, {"active": True, "user": a["user"], "username": a["user"],
                                    "scope": a["scope"], "client_id": a["client"], "exp": a["exp"]})

    # ---- control ----

    def control(self, op, f):
        st = self.server.st
        with st.lock:
            if op in ("approve", "decline"):
                pend = [d for d in st.devices.values() if d["status"] == "pending" and not d["used"]]
                code = f.get("user_code")
                pick = [d for d in pend if d["user_code"] == code] if code else pend[-1:]
                if not pick:
                    return self.reply(404, {"error": "no such pending code"})
                pick[0]["status"] = "approved" if op == "approve" else "declined"
                pick[0]["user"] = f.get("user", "alice@outlook.test")
                return self.reply(200, {"ok": True, "user_code": pick[0]["user_code"]})
            if op == "script":
                st.next_script = list(f.get("polls", []))
                return self.reply(200, {"ok": True})
            if op == "config":
                for k, v in f.items():
                    if k not in st.cfg:
                        return self.reply(400, {"error": "unknown key " + k})
                    st.cfg[k] = v
                return self.reply(200, {"ok": True, "config": st.cfg})
            if op == "revoke_all":
                st.refresh.clear()
                st.access.clear()
                return self.reply(200, {"ok": True})
            if op == "state":
                return self.reply(200, {"stats": st.stats, "config": st.cfg,
                                        "codes": [{"user_code": d["user_code"], "status": d["status"],
                                                   "used": d["used"]} for d in st.devices.values()],
                                        "refresh_tokens": len(st.refresh), "access_tokens": len(st.access)})
        self.reply(404, {"error": "unknown control op"})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def serve(args):
    st = State(args)
    srv = Server(("127.0.0.1", 0), Handler)
    srv.st = st
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    port = srv.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("%d\n" % port)
    os.rename(tmp, args.port_file)
    st.say("listening on 127.0.0.1:%d" % port)
    srv.serve_forever()


def ctl(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    data = (args.json or "{}").encode()
    req = urllib.request.Request(args.url.rstrip("/") + "/control/" + args.op, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            print(r.read().decode())
    except urllib.error.HTTPError as e:
        print(e.read().decode())
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--port-file", required=True)
    s.add_argument("--client", action="append", default=[])
    s.add_argument("--tenant", action="append", default=[])
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--second-ms", type=int, default=1000)
    s.add_argument("--log")
    c = sub.add_parser("ctl")
    c.add_argument("--url", required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("op")
    c.add_argument("json", nargs="?")
    args = ap.parse_args()
    serve(args) if args.cmd == "serve" else ctl(args)


if __name__ == "__main__":
    main()
