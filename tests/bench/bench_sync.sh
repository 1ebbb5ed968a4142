#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench_sync.sh -- mailkeep sync versus mbsync (isync) on the same private
# Dovecot over verified TLS. A benchmark, not a test: ctest never runs it and
# nothing here passes or fails on timing (DESIGN.md §12). See README.md here.
#
# usage: bench_sync.sh [--count N] [--seed S] [--proxy] [--delay-ms MS]
#                      [--rate-mbit R] [--mailkeep PATH] [--workdir DIR] [--keep]
#                      [--level N]   (mailkeep's compress_level; default: the config's)
#
# One run: start tests/fixtures/mailserver.sh (MK_FIX_NO_SEED=1, Dovecot
# only), load a corpus.py corpus (default 1000 messages) with APPEND, then
# time under /usr/bin/time -v: mbsync pulling everything into a Maildir, its
# no-change re-sync, `mailkeep sync` into a fresh store and its no-change
# re-sync; then sizes (mbsync Maildir, mailkeep store, raw corpus, gzip -6 of
# the concatenated corpus) and a table with the ratios mailkeep/mbsync. With
# --proxy both tools go through delay_proxy.py (default 20 ms each way,
# 8 Mbit/s per connection). A failing `mailkeep sync` (e.g. not built yet) is
# reported and mbsync's numbers are still printed. Every server started here
# is stopped by PID on exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON3=/usr/bin/python3
[ -x "$PYTHON3" ] || PYTHON3=python3

count=1000
seed=mailkeep-bench
proxy=0
delay_ms=20
rate_mbit=8
mailkeep=/work/main/build/agent/mailkeep
workdir=
keep=0
level=

usage() {
	sed -n '8,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 64
}
while [ $# -gt 0 ]; do
	case $1 in
	--count) count=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--proxy) proxy=1; shift ;;
	--delay-ms) delay_ms=$2; shift 2 ;;
	--rate-mbit) rate_mbit=$2; shift 2 ;;
	--mailkeep) mailkeep=$2; shift 2 ;;
	--workdir) workdir=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	--level) level=$2; shift 2 ;;
	-h | --help) usage ;;
	*) echo "bench: unknown argument $1" >&2; usage ;;
	esac
done
case $count in '' | *[!0-9]*) echo "bench: --count must be a number" >&2; exit 64 ;; esac

. "$root/tests/bench/lib.sh"

# ---- tools (the script may install isync and time) ----
PATH=$PATH:/usr/sbin:/sbin
bench_need_pkgs mbsync:isync /usr/bin/time:time
command -v gzip >/dev/null 2>&1 || die "gzip not found"

bench_workdir mkbench
proxy_pid=

cleanup() {
	rc=$?
	if [ -n "$proxy_pid" ] && kill -0 "$proxy_pid" 2>/dev/null; then
		kill -TERM "$proxy_pid" 2>/dev/null || true
		wait "$proxy_pid" 2>/dev/null || true
	fi
	bench_finish "$rc"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- fixture + corpus ----
say "work dir $workdir"
MK_FIX_NO_SEED=1 MK_FIX_NO_POSTFIX=1 PYTHON3=$PYTHON3 \
	sh "$root/tests/fixtures/mailserver.sh" start "$fix" >"$workdir/fixture.log" 2>&1 ||
	{ cat "$workdir/fixture.log" >&2; die "mailserver.sh start failed"; }
# shellcheck disable=SC1091
. "$fix/env"
say "dovecot on 127.0.0.1:$MK_IMAPS_PORT (pid $MK_DOVECOT_PID); loading $count messages (seed $seed)"
t0=$(date +%s.%N)
"$PYTHON3" "$root/tests/fixtures/corpus.py" --count "$count" --seed "$seed" --env "$fix/env" \
	--append-imap --out "$workdir/corpus" || die "corpus.py failed"
t1=$(date +%s.%N)
say "corpus loaded in $(echo "$t1 $t0" | awk '{printf "%.1f", $1 - $2}') s"

host=127.0.0.1
port=$MK_IMAPS_PORT
if [ "$proxy" = 1 ]; then
	"$PYTHON3" "$here/delay_proxy.py" --target-port "$MK_IMAPS_PORT" --delay-ms "$delay_ms" \
		--rate-mbit "$rate_mbit" --port-file "$workdir/proxy.port" --log "$workdir/proxy.log" &
	proxy_pid=$!
	n=0
	while [ ! -s "$workdir/proxy.port" ]; do
		n=$((n + 1))
		[ $n -le 100 ] && kill -0 "$proxy_pid" 2>/dev/null || die "delay_proxy.py did not start"
		sleep 0.1
	done
	port=$(cat "$workdir/proxy.port")
	say "proxy 127.0.0.1:$port (pid $proxy_pid): ${delay_ms} ms each way, ${rate_mbit} Mbit/s per connection"
fi


# ---- mbsync ----
mb=$workdir/mbsync
mkdir -p "$mb"
# isync 1.5 renamed SSLType to TLSType; Debian 12 ships 1.4.4.
tls_kw=TLSType
case $(mbsync --version 2>/dev/null) in
*" 1.3."* | *" 1.4."*) tls_kw=SSLType ;;
esac
# mbsync 1.4 matches the certificate against DNS names only (not IP SANs):
# use the name the test certificate carries (DNS:localhost), which resolves
# to 127.0.0.1 (an attempt on ::1, where nothing listens, fails at once).
mb_host=localhost
umask 077
cat >"$workdir/mbsyncrc" <<EOF
# Written by tests/bench/bench_sync.sh
IMAPAccount bench
Host $mb_host
Port $port
User $MK_USER
Pass "$MK_PASS"
$tls_kw IMAPS
CertificateFile $MK_CA_FILE

IMAPStore bench-far
Account bench

MaildirStore bench-near
Path $mb/
Inbox $mb/INBOX
SubFolders Verbatim

Channel bench
Far :bench-far:
Near :bench-near:
Patterns *
Create Near
Sync Pull
Expunge None
CopyArrivalDate yes
SyncState *
EOF
umask 022

say "mbsync: first sync"
mb_ok=1
# Each timed run starts with no dirty pages left by the one before (the
# corpus load writes the whole corpus into Dovecot's Maildir): otherwise
# whoever runs first pays for flushing them.
sync
run_timed mbsync1 mbsync -c "$workdir/mbsyncrc" bench || mb_ok=0
if [ "$mb_ok" = 1 ]; then
	say "mbsync: no-change re-sync"
	run_timed mbsync2 mbsync -c "$workdir/mbsyncrc" bench || mb_ok=0
fi
if [ "$mb_ok" = 0 ]; then
	tail -n 20 "$workdir"/mbsync*.out >&2 || true
	die "mbsync failed (output in $workdir)"
fi
mb_msgs=$(find "$mb" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
[ "$mb_msgs" = "$count" ] || say "WARNING: mbsync's Maildir holds $mb_msgs messages, expected $count"

# ---- mailkeep ----
store=$workdir/store
cfg=$workdir/mailkeep.conf
umask 077
cat >"$cfg" <<EOF
; Written by tests/bench/bench_sync.sh
[defaults]
store = $store
${level:+compress_level = $level}

[account bench]
email = $MK_USER
auth = plain
password = $MK_PASS
imap_host = $host
imap_port = $port
imap_tls = implicit
tls_ca_file = $MK_CA_FILE
max_connections = 4
folders = *
timeout = 60
EOF
chmod 600 "$cfg"
umask 022

mk_ok=0
mk_why=
if [ ! -x "$mailkeep" ]; then
	mk_why="no executable at $mailkeep (build it, or pass --mailkeep PATH)"
else
	say "mailkeep: first sync"
	sync
	if run_timed mailkeep1 env -u SSL_CERT_FILE -u SSL_CERT_DIR "$mailkeep" -c "$cfg" sync bench; then
		say "mailkeep: no-change re-sync"
		if run_timed mailkeep2 env -u SSL_CERT_FILE -u SSL_CERT_DIR "$mailkeep" -c "$cfg" sync bench; then
			mk_ok=1
		else
			mk_why="re-sync exited $st: $(tail -n 3 "$workdir/mailkeep2.out" | tr '\n' ' ')"
		fi
	else
		mk_why="sync exited $st: $(tail -n 3 "$workdir/mailkeep1.out" | tr '\n' ' ')"
	fi
fi
if [ "$mk_ok" = 1 ]; then
	env -u SSL_CERT_FILE -u SSL_CERT_DIR "$mailkeep" -c "$cfg" stats --json >"$workdir/mailkeep-stats.json" 2>&1 ||
		echo "(mailkeep stats --json failed)" >>"$workdir/mailkeep-stats.json"
fi

# ---- sizes ----
raw_bytes=$("$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_bytes"])' "$workdir/corpus/manifest.json")
gz_bytes=$(find "$workdir/corpus/messages" -name '*.eml' | sort | xargs cat | gzip -6 | wc -c)
mb_bytes=$(du -sb "$mb" | cut -f1)
mk_bytes=
[ "$mk_ok" = 1 ] && [ -d "$store" ] && mk_bytes=$(du -sb "$store" | cut -f1)

# ---- report ----
set -- $(metric mbsync1)
mb1_wall=$1 mb1_cpu=$2 mb1_rss=$3
set -- $(metric mbsync2)
mb2_wall=$1 mb2_cpu=$2 mb2_rss=$3
mk1_wall= mk1_cpu= mk1_rss= mk2_wall= mk2_cpu= mk2_rss=
if [ "$mk_ok" = 1 ]; then
	set -- $(metric mailkeep1)
	mk1_wall=$1 mk1_cpu=$2 mk1_rss=$3
	set -- $(metric mailkeep2)
	mk2_wall=$1 mk2_cpu=$2 mk2_rss=$3
fi

row() { # LABEL MBSYNC MAILKEEP
	awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN {
		r = (a != "" && b != "" && a + 0 > 0) ? sprintf("%.2f", b / a) : "-"
		if (b == "") b = "-"
		printf "%-28s %14s %14s %10s\n", l, a, b, r }'
}
mode="direct"
[ "$proxy" = 1 ] && mode="proxy ${delay_ms} ms each way, ${rate_mbit} Mbit/s per connection"
{
	echo
	echo "== mailkeep vs mbsync: $count messages, $raw_bytes bytes, seed $seed; $mode =="
	echo "   $(mbsync --version 2>/dev/null | head -n 1); $(uname -m); $(nproc) CPUs"
	printf '%-28s %14s %14s %10s\n' "" "mbsync" "mailkeep" "mk/mbsync"
	row "first sync wall (s)" "$mb1_wall" "$mk1_wall"
	row "first sync user+sys CPU (s)" "$mb1_cpu" "$mk1_cpu"
	row "first sync peak RSS (MB)" "$mb1_rss" "$mk1_rss"
	row "re-sync wall (s)" "$mb2_wall" "$mk2_wall"
	row "re-sync user+sys CPU (s)" "$mb2_cpu" "$mk2_cpu"
	row "re-sync peak RSS (MB)" "$mb2_rss" "$mk2_rss"
	row "on disk (bytes, du -sb)" "$mb_bytes" "$mk_bytes"
	echo
	awk -v r="$raw_bytes" -v g="$gz_bytes" -v m="$mb_bytes" -v k="$mk_bytes" 'BEGIN {
		printf "corpus raw bytes             %14d\n", r
		printf "gzip -6 of the concatenation %14d  (%.1f %% of raw)\n", g, 100 * g / r
		printf "mbsync Maildir               %14d  (%.1f %% of raw)\n", m, 100 * m / r
		if (k != "") printf "mailkeep store               %14d  (%.1f %% of raw, %.2f x gzip -6)\n", k, 100 * k / r, k / g
	}'
	echo "mbsync messages in Maildir: $mb_msgs of $count"
	if [ "$mk_ok" = 1 ]; then
		echo "mailkeep stats: $(tr -d '\n' <"$workdir/mailkeep-stats.json" | cut -c1-400)"
	else
		echo "mailkeep: FAILED or unavailable: $mk_why"
	fi
} | tee "$workdir/results.txt"
if [ "$keep" = 1 ]; then
	say "results in $workdir/results.txt"
fi
