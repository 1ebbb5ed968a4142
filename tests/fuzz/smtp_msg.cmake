# SPDX-License-Identifier: MIT
mk_fuzz_target(smtp_msg SOURCES smtp_msg/fuzz_smtp_msg.c LIBS mk_smtp_msg)
