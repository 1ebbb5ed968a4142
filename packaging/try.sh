#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Try mailkeep with no account: install what is missing (Debian 12), build,
# start a throwaway private IMAP server (Dovecot on 127.0.0.1, with a test
# CA made just now and sample mail), and run mailkeep against it.
#
#   packaging/try.sh            run the demo, then stop the server
#   packaging/try.sh --keep     leave the server running and print how to use it
#   packaging/try.sh --outlook-sim
#                               the Outlook path instead: the Outlook.com simulator
#                               (tests/sim/outlook_sim.py), `mailkeep login` (device
#                               code approved for you), sync, the agent with IDLE push,
#                               and a scheduled send that lands in Sent Items
#
# Environment (for the test suite): MK_TRY_SKIP_DEPS=1 skips apt-get,
# MK_TRY_BUILD_DIR=DIR uses an existing build.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
keep=0
sim=0
case "${1:-}" in
--keep) keep=1 ;;
--outlook-sim) sim=1 ;;
"") ;;
-h | --help) sed -n '3,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) echo "usage: $0 [--keep | --outlook-sim]" >&2; exit 64 ;;
esac

if [ "${MK_TRY_SKIP_DEPS:-0}" != 1 ]; then
	"$here/packaging/deps.sh" --test
fi
build=${MK_TRY_BUILD_DIR:-$here/build}
if [ -z "${MK_TRY_BUILD_DIR:-}" ]; then
	echo "try: building in $build"
	cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMK_BUILD_TESTS=OFF >/dev/null
	cmake --build "$build" -j"$(nproc)" >/dev/null
fi
mailkeep=$build/agent/mailkeep

if [ "$sim" = 1 ]; then
	exec "$here/packaging/try_outlook.sh" "$mailkeep"
fi

dir=$(mktemp -d /tmp/mailkeep-try.XXXXXX)
stop() {
	if [ "$keep" = 0 ]; then
		"$here/tests/fixtures/mailserver.sh" stop "$dir" >/dev/null 2>&1 || true
		rm -rf "$dir"
	fi
}
trap stop EXIT
trap 'exit 130' INT TERM

echo "try: starting a private Dovecot with sample mail in $dir"
"$here/tests/fixtures/mailserver.sh" start "$dir" >"$dir.log" 2>&1 || {
	cat "$dir.log" >&2
	rm -f "$dir.log"
	exit 1
}
rm -f "$dir.log"
. "$dir/env"

cfg=$dir/mailkeep.conf
umask 077
cat >"$cfg" <<CONF
# A throwaway configuration for packaging/try.sh.
[defaults]
store = $dir/store

[account try]
provider = custom
email = $MK_USER
auth = plain
password = $MK_PASS
imap_host = 127.0.0.1
imap_port = $MK_IMAPS_PORT
imap_tls = implicit
tls_ca_file = $MK_CA_FILE
CONF

echo
echo "\$ mailkeep -c $cfg check-config"
"$mailkeep" -c "$cfg" check-config
echo
echo "\$ mailkeep -c $cfg folders try"
"$mailkeep" -c "$cfg" folders try
echo
echo "\$ mailkeep -c $cfg sync            # the backup: every folder into the store"
"$mailkeep" -c "$cfg" sync
echo
echo "\$ mailkeep -c $cfg sync            # again: only what changed"
"$mailkeep" -c "$cfg" sync
echo
echo "\$ mailkeep -c $cfg ls try/INBOX"
"$mailkeep" -c "$cfg" ls try/INBOX
echo
echo "\$ mailkeep -c $cfg stats"
"$mailkeep" -c "$cfg" stats
echo
echo "\$ mailkeep -c $cfg verify"
"$mailkeep" -c "$cfg" verify
echo
echo "\$ mailkeep -c $cfg export --maildir $dir/Maildir"
"$mailkeep" -c "$cfg" export --maildir "$dir/Maildir"
echo
if [ "$keep" = 1 ]; then
	echo "try: the server keeps running. Try:"
	echo "  $mailkeep -c $cfg folders --trace try"
	echo "  $mailkeep -c $cfg cat try/INBOX/1"
	echo "  mutt -f $dir/Maildir"
	echo "Stop it with: $here/tests/fixtures/mailserver.sh stop $dir"
else
	echo "try: done; the server is stopped and $dir removed (use --keep to keep them)."
fi
