# SPDX-License-Identifier: MIT
mk_unit_test(test_config SOURCES test_config.c LIBS mk_config)
