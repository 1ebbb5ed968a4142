#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Install what mailkeep needs on Debian 12, and only what is missing.
#
#   packaging/deps.sh            build + runtime dependencies
#   packaging/deps.sh --test     ... plus the test servers (Dovecot, Postfix, openssl, python3)
#                                and the packaging tests' tools (systemd-analyze, man, groff,
#                                mandoc, dpkg-shlibdeps for cpack -G DEB)
#
# The mail servers are installed with their system daemons kept off: a
# policy-rc.d that refuses every start, and Postfix preseeded to "No
# configuration". The tests start private instances on 127.0.0.1 only.
set -eu

build_pkgs="cmake make gcc pkg-config libuv1-dev android-libboringssl-dev zlib1g-dev liblmdb-dev
libinih-dev libcjson-dev ca-certificates"
test_pkgs="libcmocka-dev dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix openssl python3 notmuch clang
libclang-rt-14-dev systemd procps man-db groff-base mandoc dpkg-dev file binutils bash"

want="$build_pkgs"
case "${1:-}" in
--test) want="$build_pkgs $test_pkgs" ;;
"") ;;
*) echo "usage: $0 [--test]" >&2; exit 64 ;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "deps: all present"
	exit 0
fi

echo "deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "deps: need root (or sudo) to install:$missing" >&2; exit 77; }
	SUDO=sudo
fi

# Keep the system's mail daemons from starting or being configured.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT INT TERM

echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections

export DEBIAN_FRONTEND=noninteractive
# apt-cache and apt-get need fresh lists on a new machine.
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: done"
