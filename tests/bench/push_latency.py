#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""push_latency.py -- drive `mailkeep run` and measure IDLE push latency.

Used by bench_push.sh (a benchmark, not a test: nothing here passes or fails
on timing). Starts `mailkeep -c CONFIG run`, waits for "mailkeep: ready" on
its stdout, then delivers messages one by one over LMTP to ACCOUNT's INBOX.
Each delivery waits until the agent's info line

    account A, folder INBOX: N new message(s) stored X ms after the server announced them

has been read from its stderr (the line is written after the durable
commit), then checks with `mailkeep ls --json A/INBOX` that the message is
visible in the store (not timed). Two latencies per message:

  ours  X from that line: IMAP EXISTS received -> commit done (mailkeep's part)
  e2e   LMTP DATA reply received -> that line read here (includes the server's
        own delay before it announces new mail to IDLE clients)

and, for reference, how long each LMTP delivery took (not part of either).

The agent's `mailkeep_push_latency_seconds` histogram (`mailkeep metrics`) is
read after the warm-up and at the end; the difference is reported next to
the log-line numbers as a cross-check. Results go to --out (JSON) and a
one-paragraph summary to stdout. The agent is stopped with SIGTERM (its PID
only) before exiting, whatever happens.

usage: push_latency.py --mailkeep PATH --config CFG --env FIXENV --account NAME
                       --rcpt ADDR --count N [--warmup W] [--corpus DIR]
                       [--log FILE] [--out FILE] [--label TEXT]
Standard library only; Debian's /usr/bin/python3.
"""
import argparse
import json
import os
import queue
import re
import shlex
import signal
import smtplib
import subprocess
import sys
import threading
import time

PUSH_RE = re.compile(r"account (\S+), folder (.+?): (\d+) new message\(s\) stored ([0-9.]+) ms after")


def load_env(path):
    env = {}
    for line in open(path):
        line = line.strip()
        if "=" in line and not line.startswith(("#", "export")):
            k, v = line.split("=", 1)
            env[k] = shlex.split(v)[0] if v else ""
    return env


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, -(-len(sorted_vals) * p // 100))  # ceil(n * p / 100)
    return sorted_vals[int(k) - 1]


def summary(vals):
    s = sorted(vals)
    if not s:
        return {"n": 0}
    return {"n": len(s), "p50": pct(s, 50), "p95": pct(s, 95), "p99": pct(s, 99), "max": s[-1],
            "min": s[0], "mean": sum(s) / len(s)}


class Agent:
    def __init__(self, mailkeep, cfg, logpath, account):
        self.account = account
        self.log = open(logpath, "w")
        self.ready = threading.Event()
        self.pushes = queue.Queue()
        self.lines = 0
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "NOTIFY_SOCKET")}
        self.p = subprocess.Popen([mailkeep, "-c", cfg, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env)
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self):
        for line in self.p.stdout:
            if b"mailkeep: ready" in line:
                self.ready.set()

    def _err(self):
        for raw in self.p.stderr:
            t = time.monotonic()
            line = raw.decode("utf-8", "replace")
            self.log.write(line)
            self.log.flush()
            m = PUSH_RE.search(line)
            if m and m.group(1) == self.account and m.group(2) == "INBOX":
                self.pushes.put((t, int(m.group(3)), float(m.group(4))))

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                return self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                return self.p.wait()
        return self.p.returncode


def read_metrics(mailkeep, cfg, account):
    """{'count': n, 'sum': s, 'buckets': [(le, cumulative)]} for the push histogram, or None."""
    r = subprocess.run([mailkeep, "-c", cfg, "metrics"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return None
    out = {"count": 0, "sum": 0.0, "buckets": []}
    lab = f'account="{account}"'
    for line in r.stdout.splitlines():
        if not line.startswith("mailkeep_push_latency_seconds") or lab not in line:
            continue
        name, val = line.rsplit(" ", 1)
        if name.startswith("mailkeep_push_latency_seconds_bucket"):
            le = re.search(r'le="([^"]+)"', name).group(1)
            out["buckets"].append((le, int(float(val))))
        elif name.startswith("mailkeep_push_latency_seconds_count"):
            out["count"] = int(float(val))
        elif name.startswith("mailkeep_push_latency_seconds_sum"):
            out["sum"] = float(val)
    return out


def hist_diff(a, b):
    """b - a (both from read_metrics), or b alone when a is None."""
    if b is None:
        return None
    if a is None:
        return b
    base = dict(a["buckets"])
    return {"count": b["count"] - a["count"], "sum": b["sum"] - a["sum"],
            "buckets": [(le, c - base.get(le, 0)) for le, c in b["buckets"]]}


def hist_quantile(h, q):
    """Upper bound (le) of the bucket holding quantile q, in ms; '+Inf' as is."""
    if h is None or h["count"] == 0:
        return None
    need = q * h["count"]
    for le, c in h["buckets"]:
        if c >= need:
            return le if le == "+Inf" else float(le) * 1000.0
    return "+Inf"


def message(i, corpus, rcpt):
    if corpus:
        files = sorted(f for f in os.listdir(corpus) if f.endswith(".eml"))
        with open(os.path.join(corpus, files[i % len(files)]), "rb") as f:
            return f.read()
    body = "".join("line %04d of push benchmark message %d, some filler text to look like mail\r\n" % (k, i)
                   for k in range(20))
    return (f"From: Bench <bench@example.test>\r\nTo: {rcpt}\r\nSubject: push bench {i}\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <push-bench-{i}@example.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}").encode()


def store_count(mailkeep, cfg, account):
    r = subprocess.run([mailkeep, "-c", cfg, "ls", "--json", f"{account}/INBOX"], capture_output=True, timeout=60)
    if r.returncode != 0:
        return -1
    return len(json.loads(r.stdout))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mailkeep", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--account", required=True)
    ap.add_argument("--rcpt", required=True)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--corpus", help="directory of .eml files to deliver (in name order), else small messages")
    ap.add_argument("--log", default="agent.log")
    ap.add_argument("--out")
    ap.add_argument("--label", default="")
    ap.add_argument("--timeout", type=float, default=60, help="seconds to wait for one message")
    a = ap.parse_args()
    fx = load_env(a.env)

    t_start = time.monotonic()
    agent = Agent(a.mailkeep, a.config, a.log, a.account)
    res = {"label": a.label, "count": a.count, "warmup": a.warmup, "agent_pid": agent.p.pid}
    try:
        if not agent.ready.wait(300):
            sys.exit(f"push: agent not ready after 300 s (exit {agent.p.poll()}), see {a.log}")
        res["ready_s"] = time.monotonic() - t_start
        base = store_count(a.mailkeep, a.config, a.account)
        lmtp = smtplib.LMTP(fx["MK_LMTP_SOCKET"])
        ours, e2e, sizes, lmtp_ms, missing, not_visible = [], [], [], [], 0, 0
        h0 = None
        for i in range(a.warmup + a.count):
            if i == a.warmup:
                h0 = read_metrics(a.mailkeep, a.config, a.account)
            msg = message(i, a.corpus, a.rcpt)
            while not agent.pushes.empty():  # nothing stale may count for this one
                agent.pushes.get_nowait()
            t_send = time.monotonic()
            lmtp.sendmail("bench@example.test", [a.rcpt], msg)
            t_ret = time.monotonic()
            got = 0
            first = None
            deadline = t_ret + a.timeout
            while got < 1:
                try:
                    t, n, ms = agent.pushes.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    break
                got += n
                first = first or (t, ms)
            if first is None:
                missing += 1
                print(f"push: message {i}: no push line within {a.timeout:.0f} s", file=sys.stderr)
            want = base + i + 1
            have = store_count(a.mailkeep, a.config, a.account)
            if have < want:
                not_visible += 1
                # it may have come another way (e.g. a full folder sync): wait for the store
                end = time.monotonic() + a.timeout
                while have < want and time.monotonic() < end:
                    time.sleep(0.05)
                    have = store_count(a.mailkeep, a.config, a.account)
                if have < want:
                    sys.exit(f"push: message {i} never reached the store ({have} of {want}); see {a.log}")
            if i >= a.warmup and first is not None:
                ours.append(first[1])
                e2e.append((first[0] - t_ret) * 1000.0)
                sizes.append(len(msg))
                lmtp_ms.append((t_ret - t_send) * 1000.0)
        lmtp.quit()
        h1 = read_metrics(a.mailkeep, a.config, a.account)
        h = hist_diff(h0, h1)
        res.update({"ours_ms": summary(ours), "e2e_ms": summary(e2e), "lmtp_ms": summary(lmtp_ms), "missing_push_lines": missing,
                    "not_visible_at_push_line": not_visible,
                    "bytes": {"total": sum(sizes), "max": max(sizes) if sizes else 0,
                              "median": sorted(sizes)[len(sizes) // 2] if sizes else 0},
                    "hist": h,
                    "hist_mean_ms": (h["sum"] / h["count"] * 1000.0) if h and h["count"] else None,
                    "hist_p50_le_ms": hist_quantile(h, 0.50), "hist_p95_le_ms": hist_quantile(h, 0.95),
                    "hist_p99_le_ms": hist_quantile(h, 0.99),
                    "samples_ours_ms": ours, "samples_e2e_ms": e2e})
    finally:
        res["agent_exit"] = agent.stop()
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    o, e = res["ours_ms"], res["e2e_ms"]
    print(f"push[{a.label}]: {o.get('n', 0)} messages; ours p50 {o.get('p50', 0):.1f} ms p99 {o.get('p99', 0):.1f} ms;"
          f" e2e p50 {e.get('p50', 0):.1f} ms; histogram count {res['hist']['count'] if res['hist'] else '-'};"
          f" agent exit {res['agent_exit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
