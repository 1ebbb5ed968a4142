# SPDX-License-Identifier: MIT
# SASL mechanisms: golden vectors, failure challenges, 16 KiB tokens.
mk_unit_test(test_sasl SOURCES test_sasl.c LIBS mk_sasl)
