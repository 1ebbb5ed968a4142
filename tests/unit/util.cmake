# SPDX-License-Identifier: MIT
mk_unit_test(test_util SOURCES test_util.c LIBS mk_util)
