# SPDX-License-Identifier: MIT
# Included from tests/CMakeLists.txt: the Outlook.com / Microsoft 365
# simulator (tests/sim/outlook_sim.py, OUTLOOK.md §5) checks itself.
add_test(NAME outlook_simulator_selftest
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/sim/test_outlook_sim.py ${PROJECT_SOURCE_DIR})
set_tests_properties(outlook_simulator_selftest PROPERTIES LABELS "sim" TIMEOUT 300)

# mailkeep against the simulator (issue 8): one check group per behaviour of
# tests/sim/COMPATIBILITY.md. Needs MK_TEST_HOOKS (OAuth time scale, the
# outbox crash point).
if(MK_TEST_HOOKS)
  add_test(NAME outlook_compatibility
           COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/sim/test_outlook.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
  set_tests_properties(outlook_compatibility PROPERTIES LABELS "integration;sim" TIMEOUT 600)
endif()
