# SPDX-License-Identifier: MIT
mk_unit_test(test_imap SOURCES test_imap.c LIBS mk_imap)
