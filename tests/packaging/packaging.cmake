# SPDX-License-Identifier: MIT
# Included from tests/CMakeLists.txt (issue 9): log output forms, the
# systemd units, sd_notify, man pages, bash completion, `mailkeep init`,
# cmake --install and the .deb. Every tool these tests use is installed by
# packaging/deps.sh --test; a missing one is a failure, never a skip.

mk_unit_test(test_log_output SOURCES packaging/test_log_output.c LIBS mk_util)
set_tests_properties(test_log_output PROPERTIES LABELS "unit;packaging")

# bash completion: sourced in bash, COMP_WORDS/COMP_CWORD -> COMPREPLY
add_test(NAME packaging_completion
         COMMAND /bin/bash ${MK_TEST_SRC}/packaging/test_completion.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(packaging_completion PROPERTIES LABELS "unit;packaging" TIMEOUT 60)

# man pages: every accepted key and every command, option and exit code
# documented; groff, man and mandoc render them without a warning
add_test(NAME packaging_man
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/packaging/test_man.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR}
                 ${CMAKE_BINARY_DIR})
set_tests_properties(packaging_man PROPERTIES LABELS packaging TIMEOUT 60)

# mailkeep init for each provider (then check-config), and mailkeep-sendmail
add_test(NAME packaging_init COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/packaging/test_init.py $<TARGET_FILE:mailkeep>)
set_tests_properties(packaging_init PROPERTIES LABELS packaging TIMEOUT 60)

# the units: cmake --install into a temporary prefix, systemd-analyze verify.
# cmake --install and cpack both write the build's install_manifest.txt.
add_test(NAME packaging_units COMMAND sh ${MK_TEST_SRC}/packaging/test_units.sh ${CMAKE_BINARY_DIR})
set_tests_properties(packaging_units PROPERTIES LABELS packaging TIMEOUT 60 RESOURCE_LOCK mk_install)

# the .deb: cpack -G DEB, Depends, dpkg --root install, run from there
add_test(NAME packaging_deb COMMAND sh ${MK_TEST_SRC}/packaging/test_deb.sh ${CMAKE_BINARY_DIR})
set_tests_properties(packaging_deb PROPERTIES LABELS packaging TIMEOUT 120 RESOURCE_LOCK mk_install)

# sd_notify from `mailkeep run` against the private Dovecot
add_test(NAME packaging_notify
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/packaging/test_notify.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
set_tests_properties(packaging_notify PROPERTIES LABELS "packaging;integration" FIXTURES_REQUIRED mail TIMEOUT 120
  ENVIRONMENT "MK_FIX_ENV=${MK_FIX_DIR_MAIL}/env")
