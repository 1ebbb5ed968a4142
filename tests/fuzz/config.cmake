# SPDX-License-Identifier: MIT
mk_fuzz_target(config SOURCES config/fuzz_config.c LIBS mk_config)
