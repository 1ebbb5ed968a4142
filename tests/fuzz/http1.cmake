# SPDX-License-Identifier: MIT
# OAuth2 (issue 6): the HTTP/1.1 client core.
mk_fuzz_target(http1 SOURCES http1/fuzz_http1.c LIBS mk_oauth)
