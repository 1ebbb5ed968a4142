#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench_pop3.sh -- POP3 over implicit TLS: `mailkeep sync` (fetch = pop3)
# versus fetchmail and getmail6, on the same private Dovecot and the same
# mailbox. A benchmark, not a test: ctest never runs it and nothing here
# passes or fails on timing (DESIGN.md §12). See README.md here.
#
# usage: bench_pop3.sh [--count N] [--seed S] [--mailkeep PATH]
#                      [--workdir DIR] [--keep]
#
# One run: start tests/fixtures/mailserver.sh (MK_FIX_NO_SEED=1, Dovecot
# only), load a corpus.py corpus (default 1000 messages) with APPEND and move
# every message into INBOX (POP3 sees INBOX only), read the mailbox once with
# poplib (so no client pays for Dovecot building its POP3 size cache), then
# time under /usr/bin/time -v, each tool into its own fresh state: fetchmail
# (keep, fetchall, uidl + idfile, sslcertck with the test CA, delivering
# through maildir_mda.sh into a Maildir), then its no-change second run
# (without fetchall: the idfile says everything is old); getmail6
# (SimplePOP3SSLRetriever with ca_certs, Maildir destination, read_all =
# false, delete = false; its oldmail file tracks UIDLs; as nobody when run
# as root, since getmail will not deliver as root) twice; `mailkeep
# sync` into a fresh store, twice. Prints wall time, user+sys CPU and peak
# RSS for each, with the ratios mailkeep/fetchmail and mailkeep/getmail.
# The script may install fetchmail, getmail6 and time with apt-get (root).
# Every server started here is stopped by PID on exit.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON3=/usr/bin/python3
[ -x "$PYTHON3" ] || PYTHON3=python3

count=1000
seed=mailkeep-bench
mailkeep=$root/build/agent/mailkeep
workdir=
keep=0

usage() {
	sed -n '9,10p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 64
}
while [ $# -gt 0 ]; do
	case $1 in
	--count) count=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--mailkeep) mailkeep=$2; shift 2 ;;
	--workdir) workdir=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage ;;
	*) echo "bench: unknown argument $1" >&2; usage ;;
	esac
done
case $count in '' | *[!0-9]*) echo "bench: --count must be a number" >&2; exit 64 ;; esac

. "$root/tests/bench/lib.sh"

# ---- tools (the script may install fetchmail, getmail6 and time) ----
PATH=$PATH:/usr/sbin:/sbin
bench_need_pkgs fetchmail:fetchmail getmail:getmail6 /usr/bin/time:time
command -v dovecot >/dev/null 2>&1 || die "dovecot not found (packaging/deps.sh --test)"

bench_workdir mkpop3

cleanup() {
	rc=$?
	bench_finish "$rc"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- fixture + corpus, all of it in INBOX ----
say "work dir $workdir"
MK_FIX_NO_SEED=1 MK_FIX_NO_POSTFIX=1 PYTHON3=$PYTHON3 \
	sh "$root/tests/fixtures/mailserver.sh" start "$fix" >"$workdir/fixture.log" 2>&1 ||
	{ cat "$workdir/fixture.log" >&2; die "mailserver.sh start failed"; }
# shellcheck disable=SC1091
. "$fix/env"
say "dovecot on 127.0.0.1, pop3s $MK_POP3S_PORT (pid $MK_DOVECOT_PID); loading $count messages (seed $seed)"
"$PYTHON3" "$root/tests/fixtures/corpus.py" --count "$count" --seed "$seed" --env "$fix/env" \
	--append-imap --out "$workdir/corpus" --quiet || die "corpus.py failed"
# corpus.py spreads messages over 7 folders; POP3 serves INBOX only: move
# the rest there (IMAP MOVE), then read the mailbox once over POP3.
"$PYTHON3" - "$fix/env" "$count" <<'EOF' || die "could not move the corpus into INBOX"
import imaplib, poplib, shlex, ssl, sys
poplib._MAXLINE = 64 * 1024 * 1024
env = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if "=" in line and not line.startswith(("#", "export")):
        k, v = line.split("=", 1)
        env[k] = shlex.split(v)[0] if v else ""
ctx = ssl.create_default_context(cafile=env["MK_CA_FILE"])
c = imaplib.IMAP4_SSL("127.0.0.1", int(env["MK_IMAPS_PORT"]), ssl_context=ctx)
c.login(env["MK_USER"], env["MK_PASS"])
typ, data = c.list()
for line in data:
    name = line.decode().rsplit(' "/" ', 1)[1]
    if name.strip('"') == "INBOX":
        continue
    typ, d = c.select(name)
    if typ == "OK" and int(d[0]) > 0:
        typ, d = c.uid("MOVE", "1:*", "INBOX")
        if typ != "OK":
            sys.exit("MOVE from %s: %r" % (name, d))
typ, d = c.select("INBOX", readonly=True)
n = int(d[0])
c.logout()
p = poplib.POP3_SSL("127.0.0.1", int(env["MK_POP3S_PORT"]), context=ctx)
p.user(env["MK_USER"])
p.pass_(env["MK_PASS"])
cnt, size = p.stat()
p.list()
p.uidl()
p.quit()
print("bench: INBOX holds %d messages (IMAP), POP3 STAT %d messages, %d octets" % (n, cnt, size))
if n != int(sys.argv[2]) or cnt != n:
    sys.exit("expected %s messages" % sys.argv[2])
EOF

maildir_count() { find "$1/new" "$1/cur" -type f | wc -l; }
fail_tail() { tail -n 15 "$workdir/$1.out" >&2 || true; }

# ---- fetchmail ----
fm=$workdir/fetchmail
fmd=$fm/Maildir
mkdir -p "$fmd/tmp" "$fmd/new" "$fmd/cur" "$fm/home"
chmod 755 "$here/maildir_mda.sh" 2>/dev/null || true
umask 077
# Dovecot listens on 127.0.0.1 only: connect there ("via"), check the
# certificate against its DNS name (sslcommonname localhost).
cat >"$fm/fetchmailrc" <<EOF
# Written by tests/bench/bench_pop3.sh
set no syslog
set no bouncemail
poll localhost via 127.0.0.1 with proto POP3 service $MK_POP3S_PORT uidl
  user "$MK_USER" there with password "$MK_PASS"
  ssl sslcertck sslcertfile "$MK_CA_FILE" sslcommonname localhost sslproto "TLS1.2+"
  keep
  mda "/bin/sh $here/maildir_mda.sh $fmd"
EOF
umask 022
fm_run() { # NAME [extra args]
	n=$1
	shift
	run_timed "$n" env FETCHMAILHOME="$fm/home" HOME="$fm/home" fetchmail -f "$fm/fetchmailrc" \
		-i "$fm/home/idfile" --nodetach --nosyslog "$@"
}
say "fetchmail: full download (fetchall)"
fm_ok=1
fm_run fetchmail1 --fetchall || { fm_ok=0; fail_tail fetchmail1; }
fm_n1=$(maildir_count "$fmd")
if [ "$fm_ok" = 1 ]; then
	say "fetchmail: no-change second run (uidl idfile)"
	# fetchmail exits 1 when there was no mail: that is the expected result here
	fm_run fetchmail2 || [ "$st" = 1 ] || { fm_ok=0; fail_tail fetchmail2; }
fi
fm_n2=$(maildir_count "$fmd")

# For reference: the MDA alone, once per message (what fetchmail spawns).
mda=$workdir/mda-alone
mkdir -p "$mda/tmp" "$mda/new" "$mda/cur"
run_timed mda_alone sh -c 'for f in "$1"/*.eml; do /bin/sh "$2" "$3" <"$f" || exit 1; done' sh \
	"$workdir/corpus/messages" "$here/maildir_mda.sh" "$mda" || say "WARNING: maildir_mda.sh alone failed"
rm -rf "$mda"

# ---- getmail6 ----
gm=$workdir/getmail
gmd=$gm/Maildir
mkdir -p "$gmd/tmp" "$gmd/new" "$gmd/cur" "$gm/state"
umask 077
cat >"$gm/getmailrc" <<EOF
# Written by tests/bench/bench_pop3.sh
[retriever]
type = SimplePOP3SSLRetriever
server = 127.0.0.1
port = $MK_POP3S_PORT
username = $MK_USER
password = $MK_PASS
ca_certs = $MK_CA_FILE

[destination]
type = Maildir
path = $gmd/

[options]
verbose = 0
read_all = false
delete = false
message_log_syslog = false
EOF
umask 022
# getmail refuses to deliver into a Maildir as root ("refuse to deliver mail
# as root"): as root, it runs as nobody, owning its own files.
gm_as=
if [ "$(id -u)" = 0 ]; then
	gm_as="runuser -u nobody --"
	chown -R nobody "$gm"
fi
gm_run() { # NAME
	run_timed "$1" $gm_as env HOME="$gm" getmail --rcfile "$gm/getmailrc" --getmaildir "$gm/state"
}
say "getmail: full download"
gm_ok=1
gm_run getmail1 || { gm_ok=0; fail_tail getmail1; }
gm_n1=$(maildir_count "$gmd")
if [ "$gm_ok" = 1 ]; then
	say "getmail: no-change second run (oldmail file)"
	gm_run getmail2 || { gm_ok=0; fail_tail getmail2; }
fi
gm_n2=$(maildir_count "$gmd")

# ---- mailkeep ----
store=$workdir/store
cfg=$workdir/mailkeep.conf
umask 077
cat >"$cfg" <<EOF
; Written by tests/bench/bench_pop3.sh
[defaults]
store = $store

[account bench]
email = $MK_USER
auth = plain
password = $MK_PASS
fetch = pop3
pop3_host = 127.0.0.1
pop3_port = $MK_POP3S_PORT
pop3_tls = implicit
tls_ca_file = $MK_CA_FILE
timeout = 60
EOF
chmod 600 "$cfg"
umask 022
mk_ok=0
mk_why=
mk_n=
if [ ! -x "$mailkeep" ]; then
	mk_why="no executable at $mailkeep (build it, or pass --mailkeep PATH)"
else
	say "mailkeep: full download"
	if run_timed mailkeep1 env -u SSL_CERT_FILE -u SSL_CERT_DIR "$mailkeep" -c "$cfg" sync bench; then
		say "mailkeep: no-change second run"
		if run_timed mailkeep2 env -u SSL_CERT_FILE -u SSL_CERT_DIR "$mailkeep" -c "$cfg" sync bench; then
			mk_ok=1
		else
			mk_why="second run exited $st: $(tail -n 3 "$workdir/mailkeep2.out" | tr '\n' ' ')"
		fi
	else
		mk_why="sync exited $st: $(tail -n 3 "$workdir/mailkeep1.out" | tr '\n' ' ')"
	fi
	mk_n=$("$mailkeep" -c "$cfg" ls --json bench/POP3 2>/dev/null |
		"$PYTHON3" -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "?")
fi

# ---- report ----
raw_bytes=$("$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_bytes"])' "$workdir/corpus/manifest.json")
fm1= fm2= gm1= gm2= mk1= mk2=
[ "$fm_ok" = 1 ] && fm1=$(metric fetchmail1) && fm2=$(metric fetchmail2)
[ "$gm_ok" = 1 ] && gm1=$(metric getmail1) && gm2=$(metric getmail2)
[ "$mk_ok" = 1 ] && mk1=$(metric mailkeep1) && mk2=$(metric mailkeep2)
col() { # "wall cpu rss" FIELD
	[ -n "$1" ] && echo "$1" | cut -d' ' -f"$2" || echo ""
}
row() { # LABEL FETCHMAIL GETMAIL MAILKEEP
	awk -v l="$1" -v f="$2" -v g="$3" -v k="$4" 'BEGIN {
		r1 = (f != "" && k != "" && f + 0 > 0) ? sprintf("%.2f", k / f) : "-"
		r2 = (g != "" && k != "" && g + 0 > 0) ? sprintf("%.2f", k / g) : "-"
		if (f == "") f = "-"
		if (g == "") g = "-"
		if (k == "") k = "-"
		printf "%-30s %11s %11s %11s %8s %8s\n", l, f, g, k, r1, r2 }'
}
dsz() { [ -d "$1" ] && du -sb "$1" | cut -f1 || echo ""; }
{
	echo
	echo "== POP3 over TLS: $count messages, $raw_bytes bytes, seed $seed, all in INBOX =="
	echo "   $(fetchmail --version 2>/dev/null | grep -m1 'release' | sed 's/^This is //'); getmail $(getmail --version 2>/dev/null | awk '{print $2}'); dovecot $(dovecot --version | cut -d' ' -f1); $(nproc) CPUs"
	printf '%-30s %11s %11s %11s %8s %8s\n' "" "fetchmail" "getmail" "mailkeep" "mk/fm" "mk/gm"
	row "full download wall (s)" "$(col "$fm1" 1)" "$(col "$gm1" 1)" "$(col "$mk1" 1)"
	row "full download user+sys (s)" "$(col "$fm1" 2)" "$(col "$gm1" 2)" "$(col "$mk1" 2)"
	row "full download peak RSS (MB)" "$(col "$fm1" 3)" "$(col "$gm1" 3)" "$(col "$mk1" 3)"
	row "no-change run wall (s)" "$(col "$fm2" 1)" "$(col "$gm2" 1)" "$(col "$mk2" 1)"
	row "no-change run user+sys (s)" "$(col "$fm2" 2)" "$(col "$gm2" 2)" "$(col "$mk2" 2)"
	row "no-change run peak RSS (MB)" "$(col "$fm2" 3)" "$(col "$gm2" 3)" "$(col "$mk2" 3)"
	row "on disk (bytes, du -sb)" "$(dsz "$fmd")" "$(dsz "$gmd")" "$(dsz "$store")"
	echo
	echo "messages after run 1 / run 2: fetchmail $fm_n1 / $fm_n2, getmail $gm_n1 / $gm_n2, mailkeep store ${mk_n:--}"
	set -- $(metric mda_alone)
	echo "fetchmail's MDA alone (maildir_mda.sh once per message, no network): $1 s wall, $2 s user+sys"
	echo "target (issue): full download wall <= 0.5 x fetchmail's"
	[ "$fm_ok" = 1 ] || echo "fetchmail: FAILED (output in $workdir/fetchmail*.out)"
	[ "$gm_ok" = 1 ] || echo "getmail: FAILED (output in $workdir/getmail*.out)"
	[ "$mk_ok" = 1 ] || echo "mailkeep: FAILED or unavailable: $mk_why"
	[ "$mk_ok" = 1 ] && echo "mailkeep: $(grep -h 'POP3' "$workdir/mailkeep1.out" | head -n 1) / $(grep -h 'POP3' "$workdir/mailkeep2.out" | head -n 1)"
} | tee "$workdir/results.txt"
if [ "$keep" = 1 ]; then
	say "results in $workdir/results.txt"
fi
