#!/bin/bash
# SPDX-License-Identifier: MIT
#
# test_login.sh MAILKEEP SOURCE_DIR -- OAuth2 end to end against
# tests/sim/fake_idp.py (HTTPS with the test CA, own temporary directory,
# stopped by PID at the end): `mailkeep login` with the test playing the
# user (approve, decline), authorization_pending and slow_down, an expired
# code, an unknown client id (AADSTS700016), refresh-token rotation written
# atomically with mode 0600 (`mailkeep token`), revocation and inactivity
# expiry ("run `mailkeep login NAME`"), chunked replies, unsafe file modes,
# token_cmd, and that no token ever reaches stdout, stderr or a log.
# Time runs 20x faster on both sides (MK_TEST_OAUTH_SECOND_MS=50,
# --second-ms 50): a 5 s poll interval takes 250 ms. Needs MK_TEST_HOOKS.
set -u
MK=$1
SRC=$2
PY=/usr/bin/python3
IDP=$SRC/tests/sim/fake_idp.py
tmp=$(mktemp -d /tmp/mk-login.XXXXXX)
idp_pid=""
fails=0
cleanup() {
	[ -n "$idp_pid" ] && kill "$idp_pid" 2>/dev/null && wait "$idp_pid" 2>/dev/null
	if [ "$fails" = 0 ]; then rm -rf "$tmp"; else echo "kept $tmp for inspection"; fi
}
trap cleanup EXIT
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
check() { # DESCRIPTION COMMAND...
	local d=$1
	shift
	if "$@"; then ok "$d"; else bad "$d"; fi
}

export MK_TEST_OAUTH_SECOND_MS=50
sh "$SRC/tests/fixtures/mkca.sh" "$tmp" >/dev/null || { echo "mkca failed"; exit 1; }
"$PY" "$IDP" serve --cert "$tmp/tls/server.pem" --key "$tmp/tls/server.key" --port-file "$tmp/port" \
	--client 00000000-aaaa-bbbb-cccc-000000000001 --seed 7 --second-ms 50 --log "$tmp/idp.log" &
idp_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { echo "fake_idp did not start"; exit 1; }
PORT=$(cat "$tmp/port")
URL=https://127.0.0.1:$PORT
ctl() { "$PY" "$IDP" ctl --url "$URL" --ca "$tmp/tls/ca.pem" "$@"; }

cat >"$tmp/conf" <<CONF
[defaults]
store = $tmp/store
oauth_authority = $URL
tls_ca_file = $tmp/tls/ca.pem
[account a]
provider = outlook
email = alice@outlook.test
oauth_client_id = 00000000-aaaa-bbbb-cccc-000000000001
[account wrongid]
provider = office365
email = bob@contoso.test
oauth_client_id = 99999999-0000-0000-0000-000000000000
[account cmd]
provider = outlook
email = carol@outlook.test
token_cmd = printf 'EwB-from-token-cmd\n'
CONF
chmod 600 "$tmp/conf"
env -u SSL_CERT_FILE -u SSL_CERT_DIR true # default trust is never used here: ca via tls_ca_file
run() { env -u SSL_CERT_FILE -u SSL_CERT_DIR "$MK" -vv -c "$tmp/conf" "$@"; }

# login_as NAME ACTION: runs `mailkeep login NAME` in the background, waits
# for the code on its stdout, then plays the user (approve|decline|none).
login_as() {
	local name=$1 action=$2
	: >"$tmp/out"
	run login "$name" >"$tmp/out" 2>"$tmp/err" &
	local pid=$!
	local code=""
	for _ in $(seq 200); do
		code=$(sed -n 's/^  and enter //p' "$tmp/out")
		[ -n "$code" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if [ -n "$code" ] && [ "$action" != none ]; then
		sleep 0.4 # let it poll a few times first
		ctl "$action" "{\"user_code\": \"$code\", \"user\": \"alice@outlook.test\"}" >/dev/null
	fi
	wait "$pid"
	rc=$?
	echo "  [login $name/$action] exit $rc: $(tail -c 400 "$tmp/err" | grep -v ' debug \| info ' | tr '\n' ' ')"
}

# 1. device login, with authorization_pending and slow_down scripted first
ctl script '{"polls": ["authorization_pending", "slow_down", "authorization_pending"]}' >/dev/null
login_as a approve
check "login exits 0" [ "$rc" = 0 ]
check "login prints the verification URL and code" grep -q "open      https://www.microsoft.com/link" "$tmp/out"
check "login says where the token went" grep -q "Refresh token saved in $tmp/store/oauth/a.token (mode 0600)" "$tmp/out"
tf=$tmp/store/oauth/a.token
check "token file is 0600" [ "$(stat -c %a "$tf")" = 600 ]
check "token directory is 0700" [ "$(stat -c %a "$tmp/store/oauth")" = 700 ]
check "slow_down logged" grep -q "poll more slowly: every 10 s" "$tmp/err"
state=$(ctl state)
check "no poll came before the interval" grep -q '"too_fast": 0' <<<"$state"
check "polled through pending and slow_down" "$PY" -c "import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s['stats']['polls'] >= 4 else 1)" "$state"
rt1=$(sed -n 's/^refresh_token=//p' "$tf")
check "refresh token stored (1.5-6 KB)" [ "${#rt1}" -ge 1500 ]

# 2. refresh: rotation, atomic replace, mode kept; `login --refresh-only` is the same
ino1=$(stat -c %i "$tf")
run token a >"$tmp/out" 2>"$tmp/err"
rc=$?
echo "  [token a] exit $rc: $(cat "$tmp/out")"
check "token exits 0" [ "$rc" = 0 ]
check "token reports validity" grep -q "access token valid for 179 s" "$tmp/out"
rt2=$(sed -n 's/^refresh_token=//p' "$tf")
check "refresh token rotated" [ -n "$rt2" ] && [ "$rt1" != "$rt2" ]
check "token file replaced by rename (new inode)" [ "$(stat -c %i "$tf")" != "$ino1" ]
check "token file still 0600" [ "$(stat -c %a "$tf")" = 600 ]
check "no temporary files left" [ "$(ls -A "$tmp/store/oauth")" = a.token ]
run login --refresh-only a >"$tmp/out" 2>"$tmp/err"
check "login --refresh-only exits 0 and rotates" [ $? = 0 ] && [ "$(sed -n 's/^refresh_token=//p' "$tf")" != "$rt2" ]

# 3. chunked replies from the token endpoint
ctl config '{"chunked": true}' >/dev/null
run token a >"$tmp/out" 2>"$tmp/err"
check "refresh over chunked replies" [ $? = 0 ]
ctl config '{"chunked": false}' >/dev/null

# 4. the user declines
login_as a decline
check "declined exits 77" [ "$rc" = 77 ]
check "declined says so" grep -q "the sign-in was declined" "$tmp/err"

# 5. the code expires, and a bad code
ctl script '{"polls": ["authorization_pending", "expired_token"]}' >/dev/null
login_as a none
check "expired code exits 77" [ "$rc" = 77 ]
check "expired code says so" grep -q "code expired before it was entered.*mailkeep login a.*AADSTS70019" "$tmp/err"
ctl script '{"polls": ["bad_verification_code"]}' >/dev/null
login_as a none
check "bad_verification_code exits 77" [ "$rc" = 77 ]
check "bad_verification_code says so" grep -q "bad_verification_code" "$tmp/err"
ctl config '{"device_expires_in": 1}' >/dev/null
login_as a none
check "code expiring locally exits 77" [ "$rc" = 77 ]
ctl config '{"device_expires_in": 900}' >/dev/null

# 6. unknown client id
login_as wrongid none
check "unknown client id exits 78" [ "$rc" = 78 ]
check "unknown client id explained" grep -q "oauth_client_id) was not found in the directory.*AADSTS700016" "$tmp/err"

# 7. unsafe mode on the token file
chmod 644 "$tf"
run token a >"$tmp/out" 2>"$tmp/err"
rc=$?
check "0644 token file refused (77)" [ "$rc" = 77 ]
check "0644 token file: says chmod 600" grep -q "run: chmod 600 $tf" "$tmp/err"
chmod 600 "$tf"

# 8. revocation, then inactivity expiry: "run `mailkeep login a`"
ctl revoke_all >/dev/null
run token a >"$tmp/out" 2>"$tmp/err"
rc=$?
echo "  [token a after revoke] exit $rc: $(grep -v ' debug \| info ' "$tmp/err")"
check "revoked refresh token exits 77" [ "$rc" = 77 ]
check "revoked: run mailkeep login" grep -q 'run `mailkeep login a`.*invalid_grant, AADSTS70000' "$tmp/err"
ctl config '{"refresh_idle_s": 2}' >/dev/null
login_as a approve
check "login again after revocation" [ "$rc" = 0 ]
sleep 0.3
run token a >"$tmp/out" 2>"$tmp/err"
rc=$?
check "idle-expired refresh token exits 77" [ "$rc" = 77 ]
check "idle expiry explained (AADSTS700082)" grep -q 'not used for 90 days — run `mailkeep login a`' "$tmp/err"
ctl config '{"refresh_idle_s": 7776000}' >/dev/null

# 9. no account signed in
rm -f "$tf"
run token a >"$tmp/out" 2>"$tmp/err"
check "no token file: 77 and login hint" [ $? = 77 ] && grep -q 'not signed in.*run `mailkeep login a`' "$tmp/err"

# 10. token_cmd
run token cmd >"$tmp/out" 2>"$tmp/err"
check "token_cmd account" [ $? = 0 ] && grep -q "from token_cmd" "$tmp/out"
run login cmd >"$tmp/out" 2>"$tmp/err"
check "login refuses a token_cmd account (78)" [ $? = 78 ]

# 11. secrets: no token in any output or log
leak=0
for f in "$tmp"/out "$tmp"/err "$tmp"/idp.log; do
	for t in "$rt1" "$rt2" EwB-from-token-cmd; do
		grep -qF -- "$t" "$f" && leak=1
	done
done
check "no token in stdout, stderr or the IdP log" [ "$leak" = 0 ]

run login --help >"$tmp/out" 2>&1
check "login --help" grep -q "usage: mailkeep \[-c FILE\] login" "$tmp/out"

echo "$fails failure(s)"
[ "$fails" = 0 ]
