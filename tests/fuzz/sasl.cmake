# SPDX-License-Identifier: MIT
mk_fuzz_target(sasl SOURCES sasl/fuzz_sasl.c LIBS mk_sasl)
