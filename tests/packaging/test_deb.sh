#!/bin/sh
# SPDX-License-Identifier: MIT
# The .deb: `cpack -G DEB` from the build, then
# - its Depends names the Debian package of every library the binary
#   links (readelf -d NEEDED, resolved through ldd, owner from dpkg -S),
#   with dpkg-shlibdeps' minimum versions, plus ca-certificates;
# - it installs into a fresh root with dpkg --root (no dependency check:
#   the root is empty), and the installed mailkeep runs from there with no
#   LD_LIBRARY_PATH: its RUNPATH is exactly the system's BoringSSL dir;
# - the file list: binary, mailkeep-sendmail symlink, man pages, units in
#   /lib/systemd/system and /usr/lib/systemd/user naming /usr/bin/mailkeep,
#   the example config, bash completion, the copyright file.
#
# usage: test_deb.sh BUILDDIR
set -u
build=$1
tmp=$(mktemp -d /tmp/mk-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
for t in cpack dpkg dpkg-deb dpkg-shlibdeps readelf man; do
	command -v $t >/dev/null || { echo "FAIL $t is missing (packaging/deps.sh --test installs it)"; exit 1; }
done
android=/usr/lib/x86_64-linux-gnu/android

(cd "$build" && cpack -G DEB -B "$tmp/out") >"$tmp/cpack.log" 2>&1 || { cat "$tmp/cpack.log"; echo "FAIL cpack"; exit 1; }
deb=$(ls "$tmp"/out/mailkeep_*_amd64.deb 2>/dev/null | head -1)
[ -n "$deb" ] && ok "cpack -G DEB: $(basename "$deb")" || { bad "no .deb in $tmp/out"; exit 1; }
dpkg-deb -I "$deb" >/dev/null && ok "dpkg-deb reads it" || bad "dpkg-deb -I"
depends=$(dpkg-deb -f "$deb" Depends)
echo "     Depends: $depends"
[ "$(dpkg-deb -f "$deb" Package)" = mailkeep ] && ok "Package: mailkeep" || bad "Package"
[ "$(dpkg-deb -f "$deb" Architecture)" = amd64 ] && ok "Architecture: amd64" || bad "Architecture"

# every NEEDED library -> its package -> in Depends with a version
bin=$build/agent/mailkeep
for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
	path=$(ldd "$bin" | awk -v l="$lib" '$1 == l { print $3 }')
	[ -n "$path" ] || { bad "ldd does not resolve $lib"; continue; }
	pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1)
	[ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)
	[ -n "$pkg" ] || { bad "no package owns $path ($lib)"; continue; }
	if echo "$depends" | grep -Eq "(^|, )$pkg( \(>= [^)]+\))?(,|$)"; then
		ok "$lib ($pkg) is in Depends"
	else
		bad "$lib comes from $pkg, which Depends lacks"
	fi
done
for p in android-libboringssl libuv1 zlib1g liblmdb0 libinih1 libcjson1 libc6; do
	echo "$depends" | grep -Eq "(^|, )$p \(>= [^)]+\)" && ok "Depends: $p with a minimum version" ||
		bad "Depends lacks $p (>= VERSION)"
done
echo "$depends" | grep -Eq "(^|, )libuv1 \(>= 1\.44\.2-1\+deb12u1\)" && ok "Depends: libuv1 with the CVE-2024-24806 fix" ||
	bad "Depends lacks libuv1 (>= 1.44.2-1+deb12u1)"
echo "$depends" | grep -Eq "(^|, )ca-certificates(,|$)" && ok "Depends: ca-certificates" || bad "Depends lacks ca-certificates"

# install into a fresh root
root=$tmp/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
# --path-include: minimal images exclude /usr/share/man and doc in dpkg.cfg.d
if dpkg --root="$root" --force-depends --force-not-root --log=/dev/null --path-include="/*" -i "$deb" >"$tmp/dpkg.log" 2>&1; then
	ok "dpkg --root=DIR --force-depends -i"
else
	cat "$tmp/dpkg.log"
	bad "dpkg --root -i"
fi
dpkg --root="$root" -s mailkeep 2>/dev/null | grep -q "^Status: install ok installed" &&
	ok "dpkg --root: mailkeep is installed" || bad "dpkg --root -s mailkeep"

for f in /usr/bin/mailkeep /usr/share/man/man1/mailkeep.1 /usr/share/man/man5/mailkeep.conf.5 \
	/usr/lib/systemd/user/mailkeep.service /lib/systemd/system/mailkeep@.service \
	/usr/share/doc/mailkeep/examples/config /usr/share/doc/mailkeep/copyright \
	/usr/share/bash-completion/completions/mailkeep; do
	[ -f "$root$f" ] && ok "installed $f" || bad "missing $f"
done
[ -L "$root/usr/bin/mailkeep-sendmail" ] && [ "$(readlink "$root/usr/bin/mailkeep-sendmail")" = mailkeep ] &&
	ok "/usr/bin/mailkeep-sendmail -> mailkeep" || bad "mailkeep-sendmail symlink"
extra=$(dpkg-deb -c "$deb" | awk '{print $6}' | grep -v '/$' | sed 's|^\./|/|' | grep -Ev \
	'^/usr/bin/mailkeep(-sendmail)?$|^/usr/share/man/man[15]/mailkeep|^/usr/lib/systemd/user/mailkeep.service$|^/lib/systemd/system/mailkeep@.service$|^/usr/share/doc/mailkeep/|^/usr/share/bash-completion/completions/mailkeep$')
[ -z "$extra" ] && ok "nothing else in the package" || bad "unexpected files: $extra"
for u in "$root/usr/lib/systemd/user/mailkeep.service" "$root/lib/systemd/system/mailkeep@.service"; do
	grep -qx "ExecStart=/usr/bin/mailkeep run" "$u" && ok "$(basename "$u"): ExecStart=/usr/bin/mailkeep run" ||
		bad "$(basename "$u"): $(grep ExecStart "$u")"
done

# the installed binary runs, with no LD_LIBRARY_PATH
rp=$(readelf -d "$root/usr/bin/mailkeep" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
[ "$rp" = "$android" ] && ok "RUNPATH is exactly $android" || bad "RUNPATH is '$rp'"
readelf -d "$root/usr/bin/mailkeep" | grep -q "(RPATH)" && bad "an old-style RPATH too" || ok "no DT_RPATH"
v=$(env -u LD_LIBRARY_PATH "$root/usr/bin/mailkeep" --version 2>&1)
echo "$v" | grep -Eq '^mailkeep [0-9]+\.[0-9]+\.[0-9]+$' && ok "installed mailkeep --version: $v" || bad "--version: $v"
h=$(env -u LD_LIBRARY_PATH "$root/usr/bin/mailkeep" help 2>&1)
echo "$h" | grep -q "^  init " && echo "$h" | grep -q "^  sendmail " && ok "installed mailkeep help lists init and sendmail" ||
	bad "mailkeep help: $h"
s=$(env -u LD_LIBRARY_PATH "$root/usr/bin/mailkeep-sendmail" --help 2>&1)
echo "$s" | grep -q "^usage: mailkeep sendmail" && ok "installed mailkeep-sendmail is sendmail" || bad "mailkeep-sendmail --help: $s"
env -u LD_LIBRARY_PATH ldd "$root/usr/bin/mailkeep" | grep -q "libssl.so.0 => $android/libssl.so.0" &&
	ok "libssl.so.0 found in $android" || bad "ldd: $(ldd "$root/usr/bin/mailkeep" | grep ssl)"
readelf -S "$root/usr/bin/mailkeep" | grep -q "\.debug_info" && bad "the binary is not stripped" || ok "stripped"
MANWIDTH=80 man --warnings -l "$root/usr/share/man/man1/mailkeep.1" 2>&1 >/dev/null | grep . && bad "man warns" ||
	ok "the packaged mailkeep(1) renders without a warning"
exit $fail
