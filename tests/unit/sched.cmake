# SPDX-License-Identifier: MIT
mk_unit_test(test_sched SOURCES test_sched.c LIBS mk_sched)
