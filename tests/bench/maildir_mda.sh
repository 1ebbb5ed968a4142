#!/bin/sh
# SPDX-License-Identifier: MIT
#
# maildir_mda.sh DIR -- the smallest MDA for bench_pop3.sh's fetchmail: one
# message on stdin becomes a file in the Maildir DIR (written in DIR/tmp,
# renamed into DIR/new). No locking, no fsync, no header rewriting: it
# should cost fetchmail as little as an MDA can (a shell, date, cat, mv).
set -eu
n=$(date +%s.%N).$$.bench
cat >"$1/tmp/$n"
mv "$1/tmp/$n" "$1/new/$n"
