#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench_push.sh -- IMAP IDLE push latency of `mailkeep run` against a private
# Dovecot over verified TLS. A benchmark, not a test: ctest never runs it and
# nothing here passes or fails on timing (DESIGN.md §12). See README.md here.
#
# usage: bench_push.sh [--count N] [--warmup W] [--small] [--seed S]
#                      [--mailkeep PATH] [--workdir DIR] [--keep]
#
# One run: start tests/fixtures/mailserver.sh (MK_FIX_NO_SEED=1, Dovecot
# only), start `mailkeep run` (poll_interval = 6h, idle = INBOX), wait for
# "mailkeep: ready", then push_latency.py delivers N messages (default 200,
# after W warm-up ones) one at a time over LMTP to alice's INBOX, each only
# after the previous one is in the store. Measured per message: mailkeep's
# part (IMAP EXISTS received -> durable commit, from the agent's info log
# line, cross-checked with the mailkeep_push_latency_seconds histogram of
# `mailkeep metrics`) and end to end (LMTP reply -> stored). Twice: with the
# generated dovecot.conf, then with a copy adding imap_idle_notify_interval
# = 0 (Dovecot restarted on it; mailserver.sh and its config are untouched).
# Messages are corpus.py messages (realistic sizes), or tiny ones (--small).
# Prints a table of p50/p95/p99/max; everything started is stopped by PID.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON3=/usr/bin/python3
[ -x "$PYTHON3" ] || PYTHON3=python3

count=200
warmup=3
small=0
seed=mailkeep-bench
mailkeep=$root/build/agent/mailkeep
workdir=
keep=0

usage() {
	sed -n '8,9p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 64
}
while [ $# -gt 0 ]; do
	case $1 in
	--count) count=$2; shift 2 ;;
	--warmup) warmup=$2; shift 2 ;;
	--small) small=1; shift ;;
	--seed) seed=$2; shift 2 ;;
	--mailkeep) mailkeep=$2; shift 2 ;;
	--workdir) workdir=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage ;;
	*) echo "bench: unknown argument $1" >&2; usage ;;
	esac
done
case $count$warmup in '' | *[!0-9]*) echo "bench: --count and --warmup must be numbers" >&2; exit 64 ;; esac
[ "$count" -gt 0 ] || { echo "bench: --count must be > 0" >&2; exit 64; }

. "$root/tests/bench/lib.sh"
PATH=$PATH:/usr/sbin:/sbin
command -v dovecot >/dev/null 2>&1 || die "dovecot not found (packaging/deps.sh --test)"
[ -x "$mailkeep" ] || die "no executable at $mailkeep (build it, or pass --mailkeep PATH)"

bench_workdir mkpush

cleanup() {
	rc=$?
	# push_latency.py stops its agent itself (SIGTERM to its PID, in a finally)
	bench_finish "$rc"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- fixture ----
say "work dir $workdir"
MK_FIX_NO_SEED=1 MK_FIX_NO_POSTFIX=1 PYTHON3=$PYTHON3 \
	sh "$root/tests/fixtures/mailserver.sh" start "$fix" >"$workdir/fixture.log" 2>&1 ||
	{ cat "$workdir/fixture.log" >&2; die "mailserver.sh start failed"; }
# shellcheck disable=SC1091
. "$fix/env"
say "dovecot on 127.0.0.1:$MK_IMAPS_PORT (pid $MK_DOVECOT_PID), lmtp $MK_LMTP_SOCKET"

corpus_arg=
msgkind="small generated messages (~1.7 KB)"
if [ "$small" = 0 ]; then
	total=$((count + warmup))
	"$PYTHON3" "$root/tests/fixtures/corpus.py" --count "$total" --seed "$seed" --out "$workdir/corpus" --quiet ||
		die "corpus.py failed"
	corpus_arg="--corpus $workdir/corpus/messages"
	msgkind="corpus.py messages (seed $seed)"
fi

# restart_dovecot CONF: stop the fixture's Dovecot by its PID, start it on
# CONF (same base_dir, so mailserver.sh stop still finds its pid file).
restart_dovecot() {
	pidf=$(cat "$fix/runroot")/dovecot-run/master.pid
	pid=$(tr -dc '0-9' <"$pidf")
	if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dovecot ]; then
		kill -TERM "$pid"
		n=0
		while [ -d "/proc/$pid" ]; do
			n=$((n + 1))
			[ $n -le 300 ] || die "dovecot $pid did not stop"
			sleep 0.1
		done
	fi
	dovecot -c "$1" >"$workdir/dovecot-restart.out" 2>&1 ||
		{ cat "$workdir/dovecot-restart.out" >&2; die "dovecot did not start on $1"; }
	"$PYTHON3" - "$MK_IMAPS_PORT" "$MK_LMTP_SOCKET" <<'EOF' || die "dovecot did not come back"
import socket, sys, time
end = time.monotonic() + 20
for addr in (("127.0.0.1", int(sys.argv[1])), sys.argv[2]):
    while True:
        s = socket.socket(socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET)
        try:
            s.connect(addr)
            break
        except OSError:
            if time.monotonic() > end:
                sys.exit(1)
            time.sleep(0.05)
        finally:
            s.close()
EOF
	MK_DOVECOT_PID=$(tr -dc '0-9' <"$pidf")
}

# run_row NAME: fresh store + config, push_latency.py -> $workdir/NAME.json
run_row() {
	name=$1
	store=$workdir/store-$name
	cfg=$workdir/mailkeep-$name.conf
	rm -rf "$store"
	umask 077
	cat >"$cfg" <<EOF
; Written by tests/bench/bench_push.sh
[defaults]
store = $store
tls_ca_file = $MK_CA_FILE
poll_interval = 6h
idle = INBOX

[account alice]
email = $MK_USER
auth = plain
password = $MK_PASS
imap_host = 127.0.0.1
imap_port = $MK_IMAPS_PORT
imap_tls = implicit
folders = INBOX
EOF
	chmod 600 "$cfg"
	umask 022
	# shellcheck disable=SC2086
	"$PYTHON3" "$here/push_latency.py" --mailkeep "$mailkeep" --config "$cfg" --env "$fix/env" \
		--account alice --rcpt "$MK_USER" --count "$count" --warmup "$warmup" $corpus_arg \
		--log "$workdir/agent-$name.log" --out "$workdir/$name.json" --label "$name" ||
		die "push_latency.py failed for $name (agent log: $workdir/agent-$name.log)"
}

say "row 1: generated dovecot.conf (defaults); $count messages + $warmup warm-up"
run_row default

# Row 2: a copy of the generated config with imap_idle_notify_interval = 0
# (Dovecot accepts 0: no "OK Still here" keepalives during IDLE).
conf2=$workdir/dovecot-notify0.conf
cp "$MK_DOVECOT_CONF" "$conf2"
printf '\n# bench_push.sh\nimap_idle_notify_interval = 0\n' >>"$conf2"
dovecot -c "$conf2" -n >"$workdir/doveconf-notify0.out" 2>&1 ||
	{ cat "$workdir/doveconf-notify0.out" >&2; die "dovecot rejected $conf2"; }
say "restarting dovecot with imap_idle_notify_interval = 0"
restart_dovecot "$conf2"
say "row 2: imap_idle_notify_interval = 0 (dovecot pid $MK_DOVECOT_PID)"
run_row notify0

# ---- report ----
"$PYTHON3" - "$workdir" "$count" "$msgkind" "$(dovecot --version)" <<'EOF' | tee "$workdir/results.txt"
import json, os, sys
wd, count, kind, dv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [("default", "generated dovecot.conf (defaults)"), ("notify0", "same + imap_idle_notify_interval = 0")]
data = {n: json.load(open(os.path.join(wd, n + ".json"))) for n, _ in rows}
b = data["default"]["bytes"]
print()
print(f"== mailkeep run: IDLE push latency, {count} messages one at a time, {kind}; "
      f"median {b['median'] / 1024:.1f} KiB, max {b['max'] / 1e6:.2f} MB ==")
print(f"   dovecot {dv}; {os.uname().machine}; {os.cpu_count()} CPUs; times in ms")
fmt = "%-42s %8s %8s %8s %8s %8s"
def f(v):
    return "-" if v is None else (v if isinstance(v, str) else "%.1f" % v)
for n, label in rows:
    d = data[n]
    o, e, l = d["ours_ms"], d["e2e_ms"], d["lmtp_ms"]
    print()
    print(fmt % ("[" + label + "]", "p50", "p95", "p99", "max", "mean"))
    print(fmt % ("mailkeep: EXISTS -> commit (log line)", f(o["p50"]), f(o["p95"]), f(o["p99"]), f(o["max"]), f(o["mean"])))
    print(fmt % ("mailkeep: histogram (bucket upper bound)", f(d["hist_p50_le_ms"]), f(d["hist_p95_le_ms"]),
                 f(d["hist_p99_le_ms"]), "-", f(d["hist_mean_ms"])))
    print(fmt % ("end to end: LMTP reply -> stored", f(e["p50"]), f(e["p95"]), f(e["p99"]), f(e["max"]), f(e["mean"])))
    print(fmt % ("(LMTP delivery itself)", f(l["p50"]), f(l["p95"]), f(l["p99"]), f(l["max"]), f(l["mean"])))
print()
print("target (issue): mailkeep's part p50 <= 20 ms, p99 <= 100 ms")
for n, label in rows:
    d = data[n]
    o = d["ours_ms"]
    h = d["hist"] or {"count": 0}
    print(f"[{n}] p50/20 ms = {o['p50'] / 20:.2f}, p99/100 ms = {o['p99'] / 100:.2f}; "
          f"samples {o['n']}, histogram count {h['count']} (after warm-up), "
          f"push lines missing {d['missing_push_lines']}, not yet in `ls` at the push line {d['not_visible_at_push_line']}, "
          f"agent ready in {d['ready_s']:.2f} s, agent exit {d['agent_exit']}")
EOF
if [ "$keep" = 1 ]; then
	say "results in $workdir/results.txt"
fi
