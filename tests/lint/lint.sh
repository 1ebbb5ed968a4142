#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The layering and safety rules of DESIGN.md §2, checked on every test run:
#  - forbidden includes per layer (proto cores see no uv/openssl/lmdb/zlib/
#    inih/cJSON; only agent/net and agent/crypto include openssl/; only
#    storage/ includes lmdb.h; only config/ includes ini.h; only agent/oauth
#    includes cJSON.h, and it includes nothing above net/crypto/util/config);
#  - banned calls (strcpy strcat sprintf gets atoi strtok rand system popen),
#    raw malloc/free outside mk_alloc.c, assert() outside mk_err.h;
#  - the binary links no OpenSSL 3 and no libcurl (BoringSSL's symbols are
#    unversioned: OpenSSL users in the same process bind to them and crash).
#
# usage: lint.sh SOURCE_DIR MAILKEEP_BINARY
set -eu
src=$1
bin=$2
fail=0
bad() { echo "lint: $*"; fail=1; }

cd "$src"
code=$(find agent storage config -name '*.[ch]' | sort)

for f in $(echo "$code" | grep '^agent/proto/'); do
	grep -nE '#include *[<"](uv|lmdb|zlib|ini|cjson/cJSON|cJSON)\.h[>"]|#include *[<"]openssl/' "$f" &&
		bad "$f: a protocol core must not include I/O, TLS, storage or parser libraries"
done
for f in $code; do
	case "$f" in
	agent/net/* | agent/crypto/*) ;;
	*) grep -n '#include *<openssl/' "$f" && bad "$f: only agent/net and agent/crypto may include openssl/*" ;;
	esac
	case "$f" in
	storage/*) ;;
	*) grep -n '#include *<lmdb.h>' "$f" && bad "$f: only storage/ may include lmdb.h" ;;
	esac
	case "$f" in
	config/*) ;;
	*) grep -n '#include *<ini.h>' "$f" && bad "$f: only config/ may include ini.h" ;;
	esac
	case "$f" in
	agent/oauth/*) ;;
	*) grep -nE '#include *[<"](cjson/)?cJSON\.h[>"]' "$f" && bad "$f: only agent/oauth may include cJSON.h" ;;
	esac
	# agent/oauth (mk_oauth) sits below sched and the CLI: it may not reach
	# up into sessions, sync, sched or storage (DESIGN.md §2).
	case "$f" in
	agent/oauth/*)
		grep -nE '#include *"mk_(imap|pop3|smtp|sasl|store|sync|pop3_fetch|imap_session|pop3_session|session|control|lock|metrics|notify)[a-z_]*\.h"' "$f" &&
			bad "$f: agent/oauth may use only net, crypto, util, config types and cJSON"
		;;
	esac
	# strip comments and string literals crudely before looking for calls
	body=$(sed -e 's://.*$::' -e 's:/\*.*\*/::g' -e 's:"[^"]*"::g' "$f")
	hits=$(echo "$body" | grep -nE '(^|[^A-Za-z0-9_])(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok|rand|srand|system|popen)[[:space:]]*\(' || true)
	[ -n "$hits" ] && bad "$f: banned call: $hits"
	case "$f" in
	agent/util/mk_alloc.c) ;;
	*)
		hits=$(echo "$body" | grep -nE '(^|[^A-Za-z0-9_])(malloc|calloc|realloc|free|strdup|strndup)[[:space:]]*\(' || true)
		[ -n "$hits" ] && bad "$f: raw allocation outside mk_alloc.c: $hits"
		;;
	esac
	case "$f" in
	agent/util/mk_err.h) ;;
	*)
		hits=$(echo "$body" | grep -nE '(^|[^A-Za-z0-9_])assert[[:space:]]*\(' || true)
		[ -n "$hits" ] && bad "$f: use MK_ASSERT, not assert(): $hits"
		;;
	esac
done

needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "$needed" | grep -qE 'libssl\.so\.3|libcrypto\.so\.3|libcurl' && bad "$bin links OpenSSL 3 or libcurl: $needed"
echo "$needed" | grep -q 'libssl\.so\.0' || bad "$bin does not link BoringSSL's libssl.so.0"
# the rpath must find BoringSSL without LD_LIBRARY_PATH
env -u LD_LIBRARY_PATH ldd "$bin" | grep -q 'not found' && bad "$bin: unresolved libraries (rpath?)"
if [ "$fail" = 0 ]; then
	echo "lint: $(echo "$code" | wc -l) files clean; $(basename "$bin") links: $(echo $needed)"
fi
exit $fail
