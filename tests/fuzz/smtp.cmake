# SPDX-License-Identifier: MIT
mk_fuzz_target(smtp SOURCES smtp/fuzz_smtp.c LIBS mk_smtp)
