# SPDX-License-Identifier: MIT
# OAuth2 (issue 6): the token endpoint JSON.
mk_fuzz_target(token SOURCES token/fuzz_token.c LIBS mk_oauth)
