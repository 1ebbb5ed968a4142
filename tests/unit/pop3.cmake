# SPDX-License-Identifier: MIT
# POP3 (issue 7): the sans-I/O core with split transcripts.
mk_unit_test(test_pop3 SOURCES test_pop3.c LIBS mk_pop3)
