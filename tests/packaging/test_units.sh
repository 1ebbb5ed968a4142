#!/bin/sh
# SPDX-License-Identifier: MIT
# The systemd units as installed: `cmake --install` into a temporary
# prefix (so ExecStart names a binary that exists), then
# `systemd-analyze verify` on the user unit (--user) and on an instance of
# the system template, with the man pages of Documentation= found through
# MANPATH. Any message from verify is a failure (it only warns about a bad
# value). Also: the directives the agent relies on, and a broken copy that
# verify must refuse (so that a verify that checks nothing cannot pass).
#
# usage: test_units.sh BUILDDIR
set -u
build=$1
tmp=$(mktemp -d /tmp/mk-units.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

command -v systemd-analyze >/dev/null || { echo "FAIL systemd-analyze is missing (packaging/deps.sh --test installs systemd)"; exit 1; }
command -v man >/dev/null || { echo "FAIL man is missing (packaging/deps.sh --test installs man-db)"; exit 1; }

cmake --install "$build" --prefix "$tmp/usr" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; echo "FAIL cmake --install"; exit 1; }
user_unit=$tmp/usr/lib/systemd/user/mailkeep.service
tmpl=$tmp/usr/lib/systemd/system/mailkeep@.service
[ -f "$user_unit" ] && ok "user unit installed" || bad "no $user_unit"
[ -f "$tmpl" ] && ok "system template installed" || bad "no $tmpl"
grep -qx "ExecStart=$tmp/usr/bin/mailkeep run" "$user_unit" && [ -x "$tmp/usr/bin/mailkeep" ] &&
	ok "ExecStart names the installed binary" || bad "ExecStart: $(grep ExecStart "$user_unit")"

mkdir -m 700 "$tmp/rt"
export XDG_RUNTIME_DIR="$tmp/rt" MANPATH="$tmp/usr/share/man" SYSTEMD_LOG_COLOR=0

# verify UNIT [--user]: exit 0 and not a word of output
verify()
{
	out=$(systemd-analyze verify "$@" 2>&1)
	rc=$?
	if [ $rc = 0 ] && [ -z "$out" ]; then
		return 0
	fi
	echo "$out" | sed 's/^/    /'
	return 1
}
verify --user "$user_unit" && ok "systemd-analyze verify --user mailkeep.service: clean" ||
	bad "systemd-analyze verify --user mailkeep.service"
cp "$tmpl" "$tmp/mailkeep@root.service"
verify "$tmp/mailkeep@root.service" && ok "systemd-analyze verify mailkeep@root.service: clean" ||
	bad "systemd-analyze verify mailkeep@root.service"

for unit in "$user_unit" "$tmpl"; do
	n=$(basename "$unit")
	for d in "Type=notify" "NotifyAccess=main" "WatchdogSec=2min" "Restart=on-failure" \
		'ExecReload=kill -HUP $MAINPID' "RestartPreventExitStatus=64 77 78" "NoNewPrivileges=yes" \
		"SystemCallFilter=@system-service" "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
		"Documentation=man:mailkeep(1) man:mailkeep.conf(5)"; do
		grep -qxF "$d" "$unit" && ok "$n: $d" || bad "$n lacks $d"
	done
done
grep -qx "User=%i" "$tmpl" && grep -qx "ProtectSystem=full" "$tmpl" && grep -qx "WantedBy=multi-user.target" "$tmpl" &&
	ok "template: User=%i, ProtectSystem=full, multi-user.target" || bad "template: User/ProtectSystem/WantedBy"
grep -qx "WantedBy=default.target" "$user_unit" && ok "user unit: WantedBy=default.target" || bad "user unit: WantedBy"
# namespacing options fail in a user manager without user namespaces
if grep -Eq "^(ProtectSystem|ProtectHome|PrivateTmp|PrivateDevices|ProtectKernel[A-Za-z]*|CapabilityBoundingSet)=" "$user_unit"; then
	bad "user unit uses options a user manager cannot apply"
else
	ok "user unit: only options a user manager can apply"
fi

# the negative controls: verify must notice a missing binary, a bad value
sed "s|^ExecStart=.*|ExecStart=$tmp/nonexistent run|" "$user_unit" >"$tmp/broken.service"
verify --user "$tmp/broken.service" >/dev/null && bad "verify accepted a missing ExecStart binary" ||
	ok "verify refuses a unit whose binary is missing"
sed "s|^WatchdogSec=.*|WatchdogSec=banana|" "$user_unit" >"$tmp/broken2.service"
verify --user "$tmp/broken2.service" >/dev/null && bad "verify (as run here) missed a bad value" ||
	ok "a bad value makes verify speak (and the test fail)"
exit $fail
