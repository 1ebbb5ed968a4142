#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench_outbox.sh -- sending a queue: `mailkeep outbox flush` (one process,
# one SMTP connection, PIPELINING of MAIL/RCPT/DATA, bodies streamed out of
# the store) versus msmtp run once per message, as msmtpq flushes its queue,
# both submitting to the same private Postfix (STARTTLS + AUTH on the
# submission port, delivering into Dovecot). A benchmark, not a test: ctest
# never runs it and nothing here passes or fails on timing (DESIGN.md §12).
#
# usage: bench_outbox.sh [--count N] [--size BYTES] [--mailkeep PATH]
#                        [--workdir DIR] [--keep]
#
# One run: start tests/fixtures/mailserver.sh (Dovecot + Postfix, no seed;
# needs root for Postfix), write N messages (default 500) of about SIZE
# bytes (default 4000: text with a few long lines), queue them all with
# `mailkeep send --queue-only` (timed on its own: that is the cost of
# `mailkeep send` when an agent does the sending), then time, each under
# /usr/bin/time -v: `mailkeep outbox flush`, and a shell loop running
# `msmtp -t` once per message (TLS verified against the test CA, AUTH
# PLAIN, the same account). Waits until Dovecot has every copy (2N), then
# prints wall time, user+sys CPU and peak RSS, and the ratio
# msmtp / mailkeep. The script may install msmtp and time with apt-get.
# Every server started here is stopped by PID on exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON3=/usr/bin/python3
[ -x "$PYTHON3" ] || PYTHON3=python3

count=500
size=4000
mailkeep=$root/build/agent/mailkeep
workdir=
keep=0

usage() {
	sed -n '11,12p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 64
}
while [ $# -gt 0 ]; do
	case $1 in
	--count) count=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--mailkeep) mailkeep=$2; shift 2 ;;
	--workdir) workdir=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage ;;
	*) echo "bench: unknown argument $1" >&2; usage ;;
	esac
done
case $count$size in '' | *[!0-9]*) echo "bench: --count and --size must be numbers" >&2; exit 64 ;; esac

. "$root/tests/bench/lib.sh"

PATH=$PATH:/usr/sbin:/sbin
bench_need_pkgs msmtp:msmtp /usr/bin/time:time
[ "$(id -u)" = 0 ] || die "Postfix needs root (its master runs as root)"
[ -x "$mailkeep" ] || die "no mailkeep at $mailkeep (build first, or --mailkeep PATH)"

bench_workdir mkout
cleanup() {
	rc=$?
	bench_finish "$rc"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "work dir $workdir"
MK_FIX_NO_SEED=1 PYTHON3=$PYTHON3 sh "$root/tests/fixtures/mailserver.sh" start "$fix" >"$workdir/fixture.log" 2>&1 ||
	{ cat "$workdir/fixture.log" >&2; die "mailserver.sh start failed"; }
# shellcheck disable=SC1091
. "$fix/env"
say "postfix submission on 127.0.0.1:$MK_SUBMISSION_PORT (pid $MK_POSTFIX_PID), dovecot pid $MK_DOVECOT_PID"

# ---- messages: from bob (the sender) to alice ----
msgs=$workdir/msgs
mkdir -p "$msgs"
"$PYTHON3" - "$msgs" "$count" "$size" "$MK_USER2" "$MK_USER" <<'EOF'
import os, random, sys
d, n, size, frm, to = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rnd = random.Random(1)
words = "the quick brown fox jumps over a lazy dog mail backup outbox queue server message".split()
for i in range(n):
    body, line = [], []
    while sum(len(x) + 1 for x in body) < size:
        line.append(rnd.choice(words))
        if len(" ".join(line)) > rnd.choice((60, 72, 200)):
            body.append(" ".join(line))
            line = []
    with open(os.path.join(d, "%05d.eml" % i), "w") as f:
        f.write("From: Bob <%s>\nTo: Alice <%s>\nSubject: bench %d\nMessage-ID: <bench-%d@example.test>\n"
                "Date: Sun, 06 Dec 2026 09:00:00 +0000\n\n%s\n" % (frm, to, i, i, "\n".join(body)))
EOF
bytes=$(cat "$msgs"/*.eml | wc -c)
say "$count messages, $bytes bytes"

delivered() { find "$MK_MAIL_DIR/$MK_USER/new" "$MK_MAIL_DIR/$MK_USER/cur" -type f 2>/dev/null | wc -l; }
wait_delivered() { # N
	i=0
	while [ "$(delivered)" -lt "$1" ] && [ $i -lt 600 ]; do
		sleep 0.2
		i=$((i + 1))
	done
}

# ---- mailkeep ----
umask 077
cfg=$workdir/mailkeep.conf
cat >"$cfg" <<EOF
; Written by tests/bench/bench_outbox.sh
[defaults]
store = $workdir/store
tls_ca_file = $MK_CA_FILE

[account bob]
email = $MK_USER2
password = $MK_PASS2
smtp_host = 127.0.0.1
smtp_port = $MK_SUBMISSION_PORT
EOF
umask 022
say "mailkeep: queueing $count messages (send --queue-only, one process each)"
run_timed mk_queue sh -c 'for f in "$1"/*.eml; do "$2" -q -c "$3" send --queue-only -t <"$f" || exit 1; done' sh \
	"$msgs" "$mailkeep" "$cfg" || { tail "$workdir/mk_queue.out" >&2; die "queueing failed"; }
say "mailkeep: outbox flush"
run_timed mk_flush "$mailkeep" -c "$cfg" outbox flush || { tail "$workdir/mk_flush.out" >&2; die "flush failed"; }
grep -q "outbox: $count sent" "$workdir/mk_flush.out" || { tail "$workdir/mk_flush.out" >&2; die "mailkeep did not send all $count"; }
wait_delivered "$count"
mk_delivered=$(delivered)

# ---- msmtp, once per message (what msmtpq does) ----
umask 077
mrc=$workdir/msmtprc
cat >"$mrc" <<EOF
# Written by tests/bench/bench_outbox.sh
account bob
host 127.0.0.1
port $MK_SUBMISSION_PORT
tls on
tls_starttls on
tls_trust_file $MK_CA_FILE
tls_host_override localhost
auth plain
user $MK_USER2
password $MK_PASS2
from $MK_USER2
account default : bob
EOF
umask 022
say "msmtp: $count runs of msmtp -t"
run_timed msmtp sh -c 'for f in "$1"/*.eml; do msmtp -C "$2" -t <"$f" || exit 1; done' sh "$msgs" "$mrc" ||
	{ tail "$workdir/msmtp.out" >&2; die "msmtp failed"; }
wait_delivered $((count * 2))
all_delivered=$(delivered)

# ---- report ----
set -- $(metric mk_flush)
mk_w=$1 mk_c=$2 mk_r=$3
set -- $(metric mk_queue)
mq_w=$1 mq_c=$2 mq_r=$3
set -- $(metric msmtp)
ms_w=$1 ms_c=$2 ms_r=$3
echo
echo "outbox benchmark: $count messages, $bytes bytes, Postfix submission (STARTTLS + AUTH) on loopback"
printf '%-34s %9s %9s %10s\n' "" "wall s" "cpu s" "peak MB"
printf '%-34s %9s %9s %10s\n' "mailkeep outbox flush (1 process)" "$mk_w" "$mk_c" "$mk_r"
printf '%-34s %9s %9s %10s\n' "msmtp, once per message" "$ms_w" "$ms_c" "$ms_r"
printf '%-34s %9s %9s %10s\n' "(mailkeep send --queue-only x$count)" "$mq_w" "$mq_c" "$mq_r"
awk -v a="$mk_w" -v b="$ms_w" -v c="$mk_c" -v d="$ms_c" -v q="$mq_w" 'BEGIN {
	printf "msmtp / mailkeep: wall %.1fx, cpu %.1fx; mailkeep queue+flush vs msmtp: %.1fx\n",
		b / (a > 0 ? a : 0.01), d / (c > 0 ? c : 0.01), b / (a + q > 0 ? a + q : 0.01) }'
echo "delivered into Dovecot: $mk_delivered after mailkeep, $all_delivered after both (expected $((count * 2)))"
[ "$all_delivered" -eq $((count * 2)) ] || die "not every message arrived"
