# SPDX-License-Identifier: MIT
# mk_when (part of mk_util): `send --at` times and `--in` durations.
mk_unit_test(test_when SOURCES test_when.c LIBS mk_util)
