# SPDX-License-Identifier: MIT
mk_fuzz_target(store SOURCES store/fuzz_store.c LIBS mk_storage)
# store_int.h embeds struct mk_sha256: the header only, not the library.
target_include_directories(fuzz_store PRIVATE $<TARGET_PROPERTY:mk_crypto,INTERFACE_INCLUDE_DIRECTORIES>)
