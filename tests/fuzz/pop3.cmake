# SPDX-License-Identifier: MIT
mk_fuzz_target(pop3 SOURCES pop3/fuzz_pop3.c LIBS mk_pop3)
