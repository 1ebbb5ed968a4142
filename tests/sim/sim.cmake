# SPDX-License-Identifier: MIT
# Included from tests/CMakeLists.txt: the Outlook.com / Microsoft 365
# simulator (tests/sim/outlook_sim.py, OUTLOOK.md §5) checks itself.
add_test(NAME outlook_simulator_selftest
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/sim/test_outlook_sim.py ${PROJECT_SOURCE_DIR})
set_tests_properties(outlook_simulator_selftest PROPERTIES LABELS "sim" TIMEOUT 300)

# 16 KiB XOAUTH2 tokens over POP3 and SMTP (issue 6): the simulator takes
# what Dovecot (8 KiB) and Postfix's Dovecot SASL link (16 KiB lines) cannot.
add_test(NAME xoauth2_16k_token
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/sim/test_bigtoken.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
set_tests_properties(xoauth2_16k_token PROPERTIES LABELS "integration;sim" TIMEOUT 300
  ENVIRONMENT "OPENSSL=${MK_OPENSSL}")
# mailkeep against the simulator (issue 8): one check group per behaviour of
# tests/sim/COMPATIBILITY.md. Needs MK_TEST_HOOKS (OAuth time scale, the
# outbox crash point).
if(MK_TEST_HOOKS)
  add_test(NAME outlook_compatibility
           COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/sim/test_outlook.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
  set_tests_properties(outlook_compatibility PROPERTIES LABELS "integration;sim" TIMEOUT 600)
endif()
