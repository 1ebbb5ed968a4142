#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench_scale.sh -- one `mailkeep run` agent holding N accounts (default 500),
# each with one IMAP IDLE connection on INBOX, against a private Dovecot over
# verified TLS. A benchmark, not a test: ctest never runs it and nothing here
# passes or fails on timing (DESIGN.md §12). See README.md here.
#
# usage: bench_scale.sh [--users N] [--idle-secs S] [--mailkeep PATH]
#                       [--workdir DIR] [--keep]
#
# One run: start tests/fixtures/mailserver.sh (MK_FIX_NO_SEED=1, Dovecot
# only), append N users (bench001@example.test ...) to the passwd-file it
# generated, restart its Dovecot on a copy of its dovecot.conf with limits
# raised for N+ connections (mailserver.sh and its files are untouched
# otherwise), then twice -- with 1 account and with N accounts in one config
# (max_connections = 1, idle = INBOX, folders = INBOX, poll_interval = 6h):
# time from start to "mailkeep: ready", wait until `mailkeep status --json`
# shows every connection idle, VmRSS/VmHWM of the agent, CPU (utime+stime
# from /proc/PID/stat) and context switches over S idle seconds (default
# 30), and, with N accounts, a message delivered over LMTP to user N/2
# (LMTP reply -> the agent's "stored" log line). Then, as a diagnosis, the
# N accounts again with MK_TLS_SYSTEM_CA=none (RSS only). mailkeep accepts
# at most 256 accounts per configuration (MK_LIMIT_ACCOUNTS): a larger N
# stops at once with its message. Prints a table; every process started
# here is stopped by PID.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON3=/usr/bin/python3
[ -x "$PYTHON3" ] || PYTHON3=python3

users=500
idle_secs=30
mailkeep=$root/build/agent/mailkeep
workdir=
keep=0

usage() {
	sed -n '9,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 64
}
while [ $# -gt 0 ]; do
	case $1 in
	--users) users=$2; shift 2 ;;
	--idle-secs) idle_secs=$2; shift 2 ;;
	--mailkeep) mailkeep=$2; shift 2 ;;
	--workdir) workdir=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage ;;
	*) echo "bench: unknown argument $1" >&2; usage ;;
	esac
done
case $users$idle_secs in '' | *[!0-9]*) echo "bench: --users and --idle-secs must be numbers" >&2; exit 64 ;; esac
[ "$users" -ge 2 ] || { echo "bench: --users must be >= 2" >&2; exit 64; }

. "$root/tests/bench/lib.sh"
PATH=$PATH:/usr/sbin:/sbin
command -v dovecot >/dev/null 2>&1 || die "dovecot not found (packaging/deps.sh --test)"
[ -x "$mailkeep" ] || die "no executable at $mailkeep (build it, or pass --mailkeep PATH)"

# N TLS connections on each side (agent and Dovecot's login processes) plus
# Dovecot's own fds: raise the soft limit; Dovecot inherits it from here.
want_fds=$((users * 4 + 1024))
[ "$want_fds" -ge 65536 ] || want_fds=65536
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "ulimit -n $(ulimit -n)"

bench_workdir mkscale
agent_pid=

stop_agent() {
	if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
		kill -TERM "$agent_pid" 2>/dev/null || true
		n=0
		while kill -0 "$agent_pid" 2>/dev/null && [ $n -lt 300 ]; do
			n=$((n + 1))
			sleep 0.1
		done
		kill -0 "$agent_pid" 2>/dev/null && kill -KILL "$agent_pid" 2>/dev/null || true
		wait "$agent_pid" 2>/dev/null || true
	fi
	agent_pid=
}

cleanup() {
	rc=$?
	stop_agent
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

# ---- N more users, in the passwd-file mailserver.sh generated ----
# Same format as its lines (user:{PLAIN}password::::::; uid/gid come from
# the global mail_uid/mail_gid). Passwords: random per run.
ufile=$fix/dovecot/users
[ -f "$ufile" ] || die "no passwd-file at $ufile"
pwbase=$(openssl rand -hex 8)
i=1
while [ $i -le "$users" ]; do
	printf 'bench%03d@example.test:{PLAIN}%s-%03d::::::\n' "$i" "$pwbase" "$i"
	i=$((i + 1))
done >>"$ufile"
say "$(wc -l <"$ufile") users in $ufile"

# ---- Dovecot limits for N+ connections: a copy of its config ----
conf2=$workdir/dovecot-scale.conf
cp "$MK_DOVECOT_CONF" "$conf2"
cat >>"$conf2" <<EOF

# bench_scale.sh: room for $users IMAP connections from 127.0.0.1
default_process_limit = $((users + 100))
default_client_limit = $((users * 4 + 1000))
service imap-login {
  # performance mode: a few login processes proxy every TLS session
  service_count = 0
  client_limit = $((users + 200))
  process_min_avail = 2
  process_limit = 8
}
service imap {
  process_limit = $((users + 100))
}
# Every imap process runs as the same uid; past fs.inotify.max_user_instances
# (128 by default) Dovecot logs "Inotify instance limit ... exceeded" and that
# process only looks for new mail every mailbox_idle_check_interval (30 s by
# default). 1 s keeps those mailboxes' IDLE pushes within about a second.
mailbox_idle_check_interval = 1 secs
EOF
dovecot -c "$conf2" -n >"$workdir/doveconf-scale.out" 2>&1 ||
	{ cat "$workdir/doveconf-scale.out" >&2; die "dovecot rejected $conf2"; }
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
dovecot -c "$conf2" >"$workdir/dovecot-restart.out" 2>&1 ||
	{ cat "$workdir/dovecot-restart.out" >&2; die "dovecot did not start on $conf2"; }
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
dpid=$(tr -dc '0-9' <"$pidf")
say "dovecot $(dovecot --version | cut -d' ' -f1) restarted with raised limits (pid $dpid), imaps 127.0.0.1:$MK_IMAPS_PORT"

# ---- helpers ----
now() { date +%s.%N; }
tck=$(getconf CLK_TCK)
# cpu_ticks PID: utime+stime (fields 14, 15 of /proc/PID/stat; comm may hold spaces)
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
ctxsw() { awk '/^voluntary_ctxt_switches:|^nonvoluntary_ctxt_switches:/ { s += $2 } END { print s }' "/proc/$1/status"; }

# write_cfg FILE STORE N
write_cfg() {
	umask 077
	{
		echo "; Written by tests/bench/bench_scale.sh"
		echo "[defaults]"
		echo "store = $2"
		echo "tls_ca_file = $MK_CA_FILE"
		echo "poll_interval = 6h"
		echo "idle = INBOX"
		echo "folders = INBOX"
		echo "max_connections = 1"
		echo "timeout = 120"
		echo "imap_host = 127.0.0.1"
		echo "imap_port = $MK_IMAPS_PORT"
		echo "imap_tls = implicit"
		echo "auth = plain"
		j=1
		while [ $j -le "$3" ]; do
			printf '\n[account b%03d]\nemail = bench%03d@example.test\npassword = %s-%03d\n' "$j" "$j" "$pwbase" "$j"
			j=$((j + 1))
		done
	} >"$1"
	chmod 600 "$1"
	umask 022
}

# idle_count CFG: connections in state "idle" per `mailkeep status --json`
idle_count() {
	"$mailkeep" -c "$1" status --json 2>/dev/null | "$PYTHON3" -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    print(-1); sys.exit()
print(sum(1 for a in d["accounts"] for c in a["connections"] if c["state"] == "idle"))' 2>/dev/null || echo -1
}

# dovecot_imap: "count rss_mb" of Dovecot's imap processes (children of its master)
dovecot_imap() {
	n=0 kb=0
	for p in $(pgrep -P "$dpid" -x imap 2>/dev/null || true); do
		r=$(status_kb "$p" VmRSS 2>/dev/null || echo 0)
		n=$((n + 1))
		kb=$((kb + ${r:-0}))
	done
	echo "$n $((kb / 1024))"
}

# run_agent NAME N IDLE_SECS [VAR=VALUE...]: sets ready_s rss_kb rss2_kb hwm_kb
# cpu_s ctx idle_n fds (and leaves the agent running)
run_agent() {
	name=$1
	n_acc=$2
	isecs=$3
	shift 3
	cfg=$workdir/$name.conf
	store=$workdir/store-$name
	rm -rf "$store"
	write_cfg "$cfg" "$store" "$n_acc"
	: >"$workdir/$name.out"
	t0=$(now)
	env -u SSL_CERT_FILE -u SSL_CERT_DIR -u NOTIFY_SOCKET "$@" "$mailkeep" -c "$cfg" run \
		>"$workdir/$name.out" 2>"$workdir/$name.log" &
	agent_pid=$!
	while ! grep -q '^mailkeep: ready' "$workdir/$name.out"; do
		kill -0 "$agent_pid" 2>/dev/null || { tail -n 20 "$workdir/$name.log" >&2; die "$name: agent exited before ready"; }
		awk -v a="$(now)" -v b="$t0" 'BEGIN { exit !(a - b > 900) }' && die "$name: not ready after 900 s"
		sleep 0.05
	done
	t1=$(now)
	ready_s=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
	say "$name: ready after $ready_s s; waiting until all $n_acc connections are idle"
	idle_n=$(idle_count "$cfg")
	w=0
	while [ "$idle_n" -lt "$n_acc" ] && [ $w -lt 120 ]; do
		sleep 0.5
		w=$((w + 1))
		idle_n=$(idle_count "$cfg")
	done
	[ "$idle_n" = "$n_acc" ] || say "WARNING: $name: only $idle_n of $n_acc connections idle"
	sleep 2 # let allocations settle
	rss_kb=$(status_kb "$agent_pid" VmRSS)
	hwm_kb=$(status_kb "$agent_pid" VmHWM)
	fds=$(ls "/proc/$agent_pid/fd" | wc -l)
	c0=$(cpu_ticks "$agent_pid")
	x0=$(ctxsw "$agent_pid")
	say "$name: RSS $rss_kb KiB; measuring CPU over $isecs s of idling"
	sleep "$isecs"
	c1=$(cpu_ticks "$agent_pid")
	x1=$(ctxsw "$agent_pid")
	cpu_s=$(awk -v a="$c1" -v b="$c0" -v t="$tck" 'BEGIN { printf "%.2f", (a - b) / t }')
	ctx=$((x1 - x0))
	rss2_kb=$(status_kb "$agent_pid" VmRSS)
}

# ---- the configurations first: mailkeep may refuse N accounts ----
write_cfg "$workdir/check.conf" "$workdir/store-check" "$users"
if ! "$mailkeep" -c "$workdir/check.conf" check-config >"$workdir/check-config.out" 2>&1; then
	grep -v '^ ' "$workdir/check-config.out" | tail -n 5 >&2
	die "mailkeep refuses a configuration with $users accounts (see above); try a smaller --users"
fi

# ---- 1 account ----
run_agent one 1 "$idle_secs"
one_ready=$ready_s one_rss=$rss_kb one_rss2=$rss2_kb one_hwm=$hwm_kb one_cpu=$cpu_s one_ctx=$ctx one_idle=$idle_n one_fds=$fds
stop_agent

# ---- N accounts ----
run_agent many "$users" "$idle_secs"
many_ready=$ready_s many_rss=$rss_kb many_rss2=$rss2_kb many_hwm=$hwm_kb many_cpu=$cpu_s many_ctx=$ctx many_idle=$idle_n many_fds=$fds
set -- $(dovecot_imap)
dv_imap_n=$1 dv_imap_mb=$2

# ---- a message to user N/2 ----
target=$((users / 2))
tname=$(printf 'b%03d' "$target")
taddr=$(printf 'bench%03d@example.test' "$target")
lines0=$(wc -l <"$workdir/many.log")
push=$("$PYTHON3" - "$MK_LMTP_SOCKET" "$taddr" "$workdir/many.log" "$tname" "$lines0" <<'EOF'
import re, smtplib, sys, time
sock, rcpt, log, acct, skip = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
msg = (f"From: Bench <bench@example.test>\r\nTo: {rcpt}\r\nSubject: scale bench\r\n"
       f"Message-ID: <scale-bench@example.test>\r\n\r\nhello\r\n").encode()
with smtplib.LMTP(sock) as l:
    l.sendmail("bench@example.test", [rcpt], msg)
t0 = time.monotonic()
pat = re.compile(r"account %s, folder INBOX: (\d+) new message\(s\) stored ([0-9.]+) ms" % re.escape(acct))
while time.monotonic() - t0 < 60:
    with open(log, errors="replace") as f:
        lines = f.readlines()[skip:]
    for line in lines:
        m = pat.search(line)
        if m:
            print("%.1f %s" % ((time.monotonic() - t0) * 1000, m.group(2)))
            sys.exit(0)
    time.sleep(0.01)
print("- -")
EOF
)
set -- $push
push_e2e=$1 push_ours=$2
in_store=$("$mailkeep" -c "$workdir/many.conf" ls --json "$tname/INBOX" 2>/dev/null |
	"$PYTHON3" -c 'import json,sys; print(sum(1 for m in json.load(sys.stdin) if m["subject"] == "scale bench"))' 2>/dev/null || echo 0)
errors=$(grep -c -i ' error\| warn' "$workdir/many.log" || true)
stop_agent

# ---- diagnosis: the same N accounts without the system CA store ----
# Each account has its own TLS context, and each context loads the system
# trust store (MK_TLS_SYSTEM_CA_FILE, ~140 certificates) besides
# tls_ca_file. MK_TLS_SYSTEM_CA=none (mailkeep's switch to skip the system
# store; the test CA still verifies Dovecot) shows what that costs per account.
run_agent nosys "$users" 0 MK_TLS_SYSTEM_CA=none
nosys_ready=$ready_s nosys_rss=$rss_kb nosys_hwm=$hwm_kb nosys_idle=$idle_n
stop_agent
inotify_warn=$(grep -c 'Inotify instance limit' "$fix/dovecot/dovecot.log" || true)

# ---- report ----
per_conn=$(awk -v a="$many_rss" -v b="$one_rss" -v n="$users" 'BEGIN { printf "%.1f", (a - b) / (n - 1) }')
per_conn_nosys=$(awk -v a="$nosys_rss" -v b="$one_rss" -v n="$users" 'BEGIN { printf "%.1f", (a - b) / (n - 1) }')
{
	echo
	echo "== mailkeep run: $users accounts, one IDLE connection each (INBOX), one agent =="
	echo "   dovecot $(dovecot --version | cut -d' ' -f1) (imap-login performance mode); $(uname -m); $(nproc) CPUs; ulimit -n $(ulimit -n)"
	printf '%-40s %14s %14s\n' "" "1 account" "$users accounts"
	printf '%-40s %14s %14s\n' "start -> \"mailkeep: ready\" (s)" "$one_ready" "$many_ready"
	printf '%-40s %14s %14s\n' "connections idle (status --json)" "$one_idle" "$many_idle"
	printf '%-40s %14s %14s\n' "VmRSS once idle (KiB)" "$one_rss" "$many_rss"
	printf '%-40s %14s %14s\n' "VmRSS after the idle window (KiB)" "$one_rss2" "$many_rss2"
	printf '%-40s %14s %14s\n' "VmHWM, peak during start (KiB)" "$one_hwm" "$many_hwm"
	printf '%-40s %14s %14s\n' "open fds" "$one_fds" "$many_fds"
	printf '%-40s %14s %14s\n' "CPU over ${idle_secs} s idle (s, utime+stime)" "$one_cpu" "$many_cpu"
	printf '%-40s %14s %14s\n' "context switches over ${idle_secs} s idle" "$one_ctx" "$many_ctx"
	echo
	echo "RSS per additional connection: ($many_rss - $one_rss) / ($users - 1) = $per_conn KiB (target <= 100 KiB + a fixed base)"
	echo "diagnosis, $users accounts with MK_TLS_SYSTEM_CA=none (no system CA store per TLS context):"
	echo "  ready in $nosys_ready s, $nosys_idle idle, VmRSS $nosys_rss KiB, VmHWM $nosys_hwm KiB;" \
		"per additional connection vs the 1-account run (which has the system store): $per_conn_nosys KiB"
	echo "message to $taddr ($tname): stored ${push_ours} ms after EXISTS, ${push_e2e} ms after the LMTP reply; in store: $in_store"
	echo "dovecot side: $dv_imap_n imap processes, $dv_imap_mb MB RSS in total;" \
		"'Inotify instance limit' warnings over all runs: $inotify_warn (fs.inotify.max_user_instances = $(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo '?'))"
	echo "warnings/errors in the $users-account agent log: $errors"
} | tee "$workdir/results.txt"
if [ "$keep" = 1 ]; then
	say "results in $workdir/results.txt"
fi
