# SPDX-License-Identifier: MIT
# OAuth2 (issue 6): HTTP/1.1 core, token JSON, authority URLs, token files.
mk_unit_test(test_oauth SOURCES test_oauth.c LIBS mk_oauth)
