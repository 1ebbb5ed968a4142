#!/bin/sh
# SPDX-License-Identifier: MIT
#
# packaging/try.sh --outlook-sim: watch mailkeep's Outlook path work, with no
# account. Starts the Outlook.com / Microsoft 365 simulator
# (tests/sim/outlook_sim.py: Exchange's IMAP, POP3 and SMTP texts, XOAUTH2 with
# real token checks, and a fake Microsoft identity platform) on 127.0.0.1 with a
# test CA made just now, then runs mailkeep against it: `login` (device code,
# approved here through the simulator's control API, as a user would in a
# browser), `sync`, the agent (`run`) receiving a new message by IDLE push, and
# a send scheduled a few seconds ahead that lands in Sent Items. Everything it
# starts is stopped at the end.
#
# usage: packaging/try_outlook.sh MAILKEEP   (try.sh passes the binary it built)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
mailkeep=$1
py=python3
sim=$here/tests/sim/outlook_sim.py
dir=$(mktemp -d /tmp/mailkeep-try-outlook.XXXXXX)
sim_pid=
agent_pid=
login_pid=
stop() {
	[ -n "$login_pid" ] && kill "$login_pid" 2>/dev/null && wait "$login_pid" 2>/dev/null
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	[ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
	rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

sh "$here/tests/fixtures/mkca.sh" "$dir" >/dev/null 2>&1
echo "try: starting the Outlook simulator in $dir (alice@outlook.test, bob@contoso.test, ...)"
"$py" "$sim" serve --tls-dir "$dir/tls" --state-dir "$dir/sim" --port-file "$dir/ports" \
	--env-file "$dir/sim.env" --seed 8 >"$dir/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do [ -s "$dir/sim.env" ] && break; sleep 0.1; done
[ -s "$dir/sim.env" ] || { echo "try: the simulator did not start" >&2; cat "$dir/sim.log" >&2; exit 1; }
. "$dir/sim.env"
ctl() { "$py" "$sim" ctl --port-file "$dir/ports" "$@"; }

cfg=$dir/mailkeep.conf
umask 077
cat >"$cfg" <<CONF
# A throwaway configuration for packaging/try.sh --outlook-sim: the outlook
# preset, with the hosts pointed at the simulator.
[defaults]
store = $dir/store

[account outlook]
provider = outlook
email = alice@outlook.test
oauth_client_id = $MK_SIM_CLIENT_ID
oauth_authority = $MK_SIM_IDP_URL
tls_ca_file = $dir/tls/ca.pem
imap_host = 127.0.0.1
imap_port = $MK_SIM_IMAPS_PORT
pop3_host = 127.0.0.1
pop3_port = $MK_SIM_POP3S_PORT
smtp_host = 127.0.0.1
smtp_port = $MK_SIM_SUBMISSION_PORT
CONF
mk() { env -u SSL_CERT_FILE -u SSL_CERT_DIR "$mailkeep" -c "$cfg" "$@"; }

echo
echo "\$ mailkeep -c $cfg check-config"
mk check-config
echo
echo "\$ mailkeep -c $cfg login outlook"
: >"$dir/login.out"
env -u SSL_CERT_FILE -u SSL_CERT_DIR "$mailkeep" -c "$cfg" login outlook >>"$dir/login.out" 2>&1 &
login_pid=$!
code=
for _ in $(seq 100); do
	code=$(sed -n 's/^  and enter //p' "$dir/login.out" 2>/dev/null || true)
	[ -n "$code" ] && break
	sleep 0.1
done
cat "$dir/login.out"
[ -n "$code" ] || { wait "$login_pid" || true; echo "try: no device code" >&2; exit 1; }
echo "try: playing the user: approving code $code as alice@outlook.test through the simulator's control API"
ctl approve "{\"user_code\": \"$code\", \"user\": \"alice@outlook.test\"}" >/dev/null
wait "$login_pid"
login_pid=
sed -n '/^Signed in/,$p' "$dir/login.out"
echo
echo "\$ mailkeep -c $cfg sync            # every mail folder; Calendar, Contacts... are not mail"
mk sync
echo
echo "\$ mailkeep -c $cfg run &           # the agent: IDLE on INBOX and Sent Items"
cat >>"$cfg" <<CONF
idle = INBOX "Sent Items"
CONF
# Not through mk(): a backgrounded shell function is a subshell, and $!
# would be the subshell, leaving the agent running after `kill`.
env -u SSL_CERT_FILE -u SSL_CERT_DIR "$mailkeep" -c "$cfg" -v run >"$dir/agent.out" 2>"$dir/agent.log" &
agent_pid=$!
for _ in $(seq 300); do grep -q "ready" "$dir/agent.out" 2>/dev/null && break; sleep 0.1; done
grep -q "ready" "$dir/agent.out" || { echo "try: the agent did not get ready" >&2; cat "$dir/agent.log" >&2; exit 1; }
echo "try: agent ready"
echo "try: the simulator delivers a new message to alice's INBOX"
ctl deliver '{"user": "alice@outlook.test", "folder": "INBOX", "raw": "From: bob@contoso.test\r\nTo: alice@outlook.test\r\nSubject: Hello from the simulator\r\nMessage-ID: <try-push@sim.test>\r\n\r\nPushed by IMAP IDLE.\r\n"}' >/dev/null
for _ in $(seq 100); do grep -q "new message(s) stored" "$dir/agent.log" 2>/dev/null && break; sleep 0.1; done
grep "new message(s) stored" "$dir/agent.log" | sed 's/^/  /' | head -n 1
echo "\$ mailkeep -c $cfg ls outlook/INBOX | tail -n 1"
mk ls outlook/INBOX | tail -n 1
echo
echo "\$ mailkeep -c $cfg send --in 5s -t < message     # scheduled; the agent sends it"
printf 'From: alice@outlook.test\nTo: bob@contoso.test\nSubject: Scheduled by mailkeep\n\nSent on time.\n' | mk send --in 5s -t
echo "try: waiting for the server's copy in Sent Items (Outlook files every submission there)"
sent=0
for _ in $(seq 300); do
	if mk ls "outlook/Sent Items" 2>/dev/null | grep -q "Scheduled by mailkeep"; then sent=1; break; fi
	sleep 0.1
done
echo "\$ mailkeep -c $cfg outbox ls"
mk outbox ls
echo "\$ mailkeep -c $cfg ls \"outlook/Sent Items\" | tail -n 1"
mk ls "outlook/Sent Items" | tail -n 1
[ "$sent" = 1 ] || { echo "try: the sent message did not arrive in Sent Items" >&2; exit 1; }
echo
kill "$agent_pid"
wait "$agent_pid" || true
agent_pid=
echo "try: outlook-sim done; the agent and the simulator are stopped and $dir removed."
