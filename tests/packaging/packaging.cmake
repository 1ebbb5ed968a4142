# SPDX-License-Identifier: MIT
# Included from tests/CMakeLists.txt (issue 9): log output forms, the
# systemd units, sd_notify, man pages, bash completion, `mailkeep init`,
# cmake --install and the .deb. Every tool these tests use is installed by
# packaging/deps.sh --test; a missing one is a failure, never a skip.

mk_unit_test(test_log_output SOURCES packaging/test_log_output.c LIBS mk_util)
set_tests_properties(test_log_output PROPERTIES LABELS "unit;packaging")
