# SPDX-License-Identifier: MIT
# Included from tests/CMakeLists.txt: TLS verification against hostile
# servers, and the README's `try` path (private Dovecot + mailkeep folders).
add_test(NAME tls_verification
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/integration/test_tls.py $<TARGET_FILE:mailkeep>
                 ${MK_TEST_SRC}/fixtures/mkca.sh)
set_tests_properties(tls_verification PROPERTIES LABELS integration TIMEOUT 300)

add_test(NAME try_path COMMAND ${PROJECT_SOURCE_DIR}/packaging/try.sh)
set_tests_properties(try_path PROPERTIES LABELS integration TIMEOUT 300
  PASS_REGULAR_EXPRESSION "certificate verified for 127.0.0.1.*logged in as alice@example.test.*INBOX.*try: 8 folders, 25 new messages.*try: 8 folders, 0 new messages.*: ok.*exported 25 new messages.*try: done"
  ENVIRONMENT "MK_TRY_SKIP_DEPS=1;MK_TRY_BUILD_DIR=${CMAKE_BINARY_DIR}")

# the README's `try.sh --outlook-sim`: the Outlook simulator, login, sync,
# IDLE push, a scheduled send landing in Sent Items (packaging/try_outlook.sh)
add_test(NAME try_outlook_sim COMMAND ${PROJECT_SOURCE_DIR}/packaging/try.sh --outlook-sim)
set_tests_properties(try_outlook_sim PROPERTIES LABELS "integration;sim" TIMEOUT 300
  PASS_REGULAR_EXPRESSION "approving code [A-Z0-9]+ as alice@outlook.test.*Signed in.*outlook: 8 folders, 20 new messages.*agent ready.*new message.s. stored.*Hello from the simulator.*sent .*Scheduled by mailkeep.*Sent Items.*Scheduled by mailkeep.*try: outlook-sim done"
  ENVIRONMENT "MK_TRY_SKIP_DEPS=1;MK_TRY_BUILD_DIR=${CMAKE_BINARY_DIR}")

# mailkeep's CLI against the private Dovecot (FIXTURES_REQUIRED mail).
add_test(NAME cli_against_dovecot
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/integration/test_cli.py $<TARGET_FILE:mailkeep>)
set_tests_properties(cli_against_dovecot PROPERTIES LABELS integration FIXTURES_REQUIRED mail TIMEOUT 300
  ENVIRONMENT "MK_FIX_ENV=${MK_FIX_DIR_MAIL}/env")

# sync / export / verify against a private Dovecot loaded with a generated corpus
add_test(NAME sync_against_dovecot
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/integration/test_sync.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
set_tests_properties(sync_against_dovecot PROPERTIES LABELS integration TIMEOUT 600)

# crash safety: needs MK_TEST_HOOKS (packaging/test.sh turns it on)
if(MK_TEST_HOOKS)
  add_test(NAME sync_crash_safety
           COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/integration/test_crash.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
  set_tests_properties(sync_crash_safety PROPERTIES LABELS "integration;crash" TIMEOUT 900)
endif()

# hostile and Exchange-quirky servers (tests/integration/hostile_imap.py)
add_test(NAME sync_hostile_server
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/integration/test_hostile.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
set_tests_properties(sync_hostile_server PROPERTIES LABELS integration TIMEOUT 600)

# POP3 fetch (issue 7): Dovecot (implicit TLS and STLS), delete policies,
# crash points (MK_TEST_HOOKS), and tests/integration/hostile_pop3.py.
if(MK_TEST_HOOKS)
  add_test(NAME pop3_against_dovecot
           COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/integration/test_pop3.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
  set_tests_properties(pop3_against_dovecot PROPERTIES LABELS "integration;crash" TIMEOUT 900)
endif()

# the agent: IDLE push, black hole, server restart, SIGHUP, SIGTERM
add_test(NAME agent_run
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/integration/test_run.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
set_tests_properties(agent_run PROPERTIES LABELS integration TIMEOUT 600)

# the outbox (issue 5): Postfix submission + Dovecot delivery, refusals,
# scheduled sending by the agent, hostile SMTP servers, exactly once under
# crashes (MK_TEST_HOOKS)
add_test(NAME outbox_against_postfix
         COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/integration/test_outbox.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
set_tests_properties(outbox_against_postfix PROPERTIES LABELS "integration;crash" TIMEOUT 900
  ENVIRONMENT "MK_TEST_HOOKS_BUILD=$<IF:$<BOOL:${MK_TEST_HOOKS}>,1,0>")
# OAuth2 (issue 6): `mailkeep login` / `mailkeep token` against
# tests/sim/fake_idp.py (needs MK_TEST_HOOKS for the time scale).
if(MK_TEST_HOOKS)
  add_test(NAME oauth_login
           COMMAND /bin/bash ${MK_TEST_SRC}/integration/test_login.sh $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
  set_tests_properties(oauth_login PROPERTIES LABELS "integration;sim" TIMEOUT 300 ENVIRONMENT "OPENSSL=${MK_OPENSSL}")
endif()
# XOAUTH2 everywhere (issue 6): IMAP, POP3 and SMTP against Dovecot's oauth2
# passdb (tokens checked at tests/sim/fake_idp.py's /introspect), 16 KiB
# tokens, the agent across token expiries and the Outlook expiry BYE,
# revoked sign-ins.
if(MK_TEST_HOOKS)
  add_test(NAME xoauth2_end_to_end
           COMMAND ${MK_PYTHON3} ${MK_TEST_SRC}/integration/test_xoauth2.py $<TARGET_FILE:mailkeep> ${PROJECT_SOURCE_DIR})
  set_tests_properties(xoauth2_end_to_end PROPERTIES LABELS "integration;sim" TIMEOUT 900)
endif()
