# SPDX-License-Identifier: MIT
# SMTP submission core: split transcripts, dot-stuffing round trips.
mk_unit_test(test_smtp SOURCES test_smtp.c LIBS mk_smtp)
