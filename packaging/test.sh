#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The whole test suite: install what is missing (Debian 12), build with
# warnings as errors, and run every test with ctest (unit, fuzz-replay,
# lint, and integration tests against private Dovecot/Postfix instances
# and hostile TLS servers started on 127.0.0.1).
#
#   packaging/test.sh             normal build in build-test/
#   packaging/test.sh --sanitize  ASan+UBSan build in build-asan/
#
# Extra arguments after -- go to ctest (e.g. -- -L unit, -- -R tls).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
mode=normal
if [ "${1:-}" = "--sanitize" ]; then
	mode=sanitize
	shift
fi
[ "${1:-}" = "--" ] && shift

"$here/packaging/deps.sh" --test

if [ "$mode" = sanitize ]; then
	build=$here/build-asan
else
	build=$here/build-test
fi
flags=""
[ "$mode" = sanitize ] && flags="-DMK_ASAN=ON -DMK_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug"
# shellcheck disable=SC2086
cmake -S "$here" -B "$build" -DMK_WERROR=ON -DMK_BUILD_TESTS=ON -DMK_TEST_HOOKS=ON $flags >/dev/null
cmake --build "$build" -j"$(nproc)"
if [ "$mode" = sanitize ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	# ASan keeps freed memory in quarantine (256 MiB): the tests' memory
	# bounds are scaled by MK_RSS_FACTOR
	export MK_RSS_FACTOR=8
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
cd "$build"
exec ctest --output-on-failure -j"$(nproc)" --timeout 600 "$@"
