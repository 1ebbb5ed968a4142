# SPDX-License-Identifier: MIT
mk_fuzz_target(imap SOURCES imap/fuzz_imap.c LIBS mk_imap)
