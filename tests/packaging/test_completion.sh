#!/bin/bash
# SPDX-License-Identifier: MIT
# packaging/completion/mailkeep.bash in a real bash: commands, options,
# option values, account names from the configuration file (given with -c
# or found through MAILKEEP_CONFIG), folders from `mailkeep ls ACCOUNT
# --json` (a stub printing that command's JSON, with a space and a quote in
# folder names), and ACCOUNT/FOLDER/ for cat.
#
# usage: test_completion.sh SRCDIR
set -u
export LC_ALL=C
src=$1
tmp=$(mktemp -d /tmp/mk-compl.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0

# shellcheck source=/dev/null
. "$src/packaging/completion/mailkeep.bash" || { echo "FAIL sourcing the completion"; exit 1; }
complete -p mailkeep | grep -q -- '-F _mailkeep' || { echo "FAIL complete -F _mailkeep not registered"; exit 1; }

cat >"$tmp/config" <<'CFG'
[defaults]
store = ~/store
[account personal]
email = me@outlook.com
  [ account work.x ]
email = me@contoso.com
; [account commented]
CFG
# the stub stands for mailkeep: `mailkeep -c CFG ls --json ACCOUNT`
cat >"$tmp/mailkeep" <<STUB
#!/bin/sh
echo "\$*" >>"$tmp/stub.log"
[ "\$1" = -c ] && [ "\$3" = ls ] && [ "\$4" = --json ] || exit 64
echo '[{"account":"'"\$5"'","folder":"INBOX","messages":1,"gone":0,"bytes":10,"uidvalidity":1,"on_server":true,"last_sync":0},'
echo ' {"account":"'"\$5"'","folder":"Sent Items","messages":1,"gone":0,"bytes":10,"uidvalidity":1,"on_server":true,"last_sync":0},'
echo ' {"account":"'"\$5"'","folder":"Say \\"hi\\"","messages":1,"gone":0,"bytes":10,"uidvalidity":1,"on_server":true,"last_sync":0}]'
STUB
chmod +x "$tmp/mailkeep"

# expect WANT WORD... : completes the last word; WANT is the sorted
# COMPREPLY joined by |
expect()
{
	local want=$1
	shift
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_mailkeep 2>/dev/null
	local got
	got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | paste -sd'|')
	if [ "$got" = "$want" ]; then
		echo "ok   [$*] -> $got"
	else
		echo "FAIL [$*] -> '$got', expected '$want'"
		fail=1
	fi
}

M=$tmp/mailkeep
expect "send|sendmail|stats|status|sync" mailkeep s
expect "init" mailkeep in
expect "--config|--help|--quiet|--verbose|--version" mailkeep --
expect "check-config" mailkeep -c "$tmp/config" check
expect "--help|--json|--trace" mailkeep folders --
expect "office365|outlook" mailkeep init --provider o
expect "--client-id" mailkeep init --email a@b.c --cl
expect "personal|work.x" mailkeep -c "$tmp/config" sync ""
expect "work.x" mailkeep -c "$tmp/config" login w
expect "personal" mailkeep --config "$tmp/config" send -a p
expect "cancel|flush|ls|retry|rm|show" mailkeep outbox ""
expect "maildir++" mailkeep export --layout m
expect "--refresh-only" mailkeep login --re
expect "config" mailkeep help con
# accounts through MAILKEEP_CONFIG
MAILKEEP_CONFIG=$tmp/config expect "personal|work.x" mailkeep verify --server ""
# folders, from the store through `ls --json`
expect 'personal/INBOX|personal/Say\ \"hi\"|personal/Sent\ Items' "$M" -c "$tmp/config" ls personal/
expect 'personal/Sent\ Items' "$M" -c "$tmp/config" ls 'personal/Sent\ I'
expect 'work.x/INBOX' "$M" -c "$tmp/config" export --maildir /tmp work.x/IN
# cat: ACCOUNT/ then ACCOUNT/FOLDER/
expect "personal/" "$M" -c "$tmp/config" cat pers
expect "personal/INBOX/" "$M" -c "$tmp/config" cat personal/I
grep -q -- "-c $tmp/config ls --json personal" "$tmp/stub.log" ||
	{ echo "FAIL the folders were not asked of the program with -c"; fail=1; }
# a configuration that does not exist: nothing, and no error
expect "" mailkeep -c "$tmp/nonexistent" sync ""
exit $fail
