# SPDX-License-Identifier: MIT
mk_unit_test(test_store SOURCES test_store.c LIBS mk_storage)
# store_int.h embeds struct mk_sha256: the header only, not the library.
target_include_directories(test_store PRIVATE $<TARGET_PROPERTY:mk_crypto,INTERFACE_INCLUDE_DIRECTORIES>)

# Benchmark (not a test): commit rate, compression ratio, streaming memory.
add_executable(store_bench ${MK_TEST_SRC}/bench/store_bench.c)
target_include_directories(store_bench PRIVATE $<TARGET_PROPERTY:mk_crypto,INTERFACE_INCLUDE_DIRECTORIES>)
target_link_libraries(store_bench PRIVATE mk_storage mk_util)
