# SPDX-License-Identifier: MIT
# SMTP message preparation for the outbox: headers, envelope, Bcc, limits.
mk_unit_test(test_smtp_msg SOURCES test_smtp_msg.c LIBS mk_smtp_msg)
