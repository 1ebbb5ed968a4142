# SPDX-License-Identifier: MIT
#
# What the benchmark scripts share: messages, installing the tools they
# compare with, a short work dir for the private Dovecot, and stopping it.
# Sourced (POSIX sh) after `root` (the repository) is set.

say() { echo "bench: $*"; }
die() {
	echo "bench: $*" >&2
	exit 1
}

# bench_need_pkgs "COMMAND:PACKAGE" ... - apt-get installs the packages
# whose command is missing (a path like /usr/bin/time works as COMMAND).
bench_need_pkgs() {
	need=
	for cp in "$@"; do
		c=${cp%%:*}
		p=${cp#*:}
		case $c in
		/*) [ -x "$c" ] || need="$need $p" ;;
		*) command -v "$c" >/dev/null 2>&1 || need="$need $p" ;;
		esac
	done
	[ -n "$need" ] || return 0
	[ "$(id -u)" = 0 ] || die "missing packages:$need (apt-get install$need, as root)"
	say "installing$need"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y $need >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y $need >/dev/null; } ||
		die "apt-get install$need failed"
}

# bench_workdir PREFIX - sets workdir (given, or a new /tmp/PREFIX.XXXXXX:
# short, since the fixture keeps unix sockets in it) and fix.
bench_workdir() {
	if [ -z "${workdir:-}" ]; then
		workdir=$(mktemp -d "/tmp/$1.XXXXXX")
	else
		mkdir -p "$workdir"
		workdir=$(cd "$workdir" && pwd)
	fi
	# Dovecot's unprivileged processes must reach the fixture under it.
	chmod 755 "$workdir"
	fix=$workdir/fix
}

# bench_finish RC - stops the fixture; removes the work dir unless --keep
# or a failure.
bench_finish() {
	if [ -f "$fix/env" ] || [ -f "$fix/runroot" ]; then
		sh "$root/tests/fixtures/mailserver.sh" stop "$fix" >/dev/null 2>&1 || true
	fi
	if [ "${keep:-0}" = 1 ] || [ "$1" != 0 ]; then
		echo "bench: work dir kept: $workdir"
	else
		rm -rf "$workdir"
	fi
}

# run_timed NAME CMD...: runs CMD under /usr/bin/time -v, writes
# $workdir/NAME.{time,out}; prints nothing; returns CMD's status (also in $st).
run_timed() {
	name=$1
	shift
	set +e
	/usr/bin/time -v -o "$workdir/$name.time" "$@" >"$workdir/$name.out" 2>&1
	st=$?
	set -e
	return $st
}

# metric NAME -> "wall cpu rss_mb" from $workdir/NAME.time
metric() {
	awk -F': ' '
		/Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
		/User time \(seconds\)/ { u = $2 }
		/System time \(seconds\)/ { s = $2 }
		/Maximum resident set size/ { r = $2 / 1024 }
		END { printf "%.2f %.2f %.1f\n", w, u + s, r }' "$workdir/$1.time"
}
