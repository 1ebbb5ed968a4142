/* SPDX-License-Identifier: MIT */
/*
 * mk_sasl.h - SASL mechanisms as pure step functions, shared by the IMAP,
 * POP3 and SMTP cores' owners: PLAIN (RFC 4616), LOGIN (draft, the
 * "Username:"/"Password:" dance), XOAUTH2 (Microsoft/Google, no RFC:
 * base64("user=" U "\x01auth=Bearer " T "\x01\x01"), OUTLOOK.md §1.2) and
 * OAUTHBEARER (RFC 7628 GS2 header "n,a=U," ...).
 *
 * The module produces RAW response bytes; each protocol core does the
 * base64 and the line framing. No I/O, no clock, libc + mk_util only.
 * Secrets live in buffers that are wiped (mk_buf with wipe on cleanup).
 *
 * Failure challenges: for XOAUTH2 and OAUTHBEARER a failed token makes the
 * server send a challenge holding JSON ({"status":"401","schemes":"bearer",
 * "scope":"..."}); mk_sasl_step() then returns the answer the mechanism
 * requires (XOAUTH2: an empty response; OAUTHBEARER: "\x01", i.e. "AQ=="
 * once base64'd), sets the session to FAILED and fills mk_sasl_error() with
 * a plain-words summary of the JSON ("token refused: status 401, scope
 * https://outlook.office.com/IMAP.AccessAsUser.All"); the server's final
 * NO/-ERR/535 follows.
 */
#ifndef MK_SASL_H
#define MK_SASL_H

#include "mk_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mk_sasl_mech {
	MK_SASL_PLAIN = 1,
	MK_SASL_LOGIN,
	MK_SASL_XOAUTH2,
	MK_SASL_OAUTHBEARER,
};

struct mk_sasl {
	enum mk_sasl_mech mech;
	unsigned step;
	bool failed;
	struct mk_buf user;   /* wiped */
	struct mk_buf secret; /* password or access token: wiped */
	char host[256];       /* OAUTHBEARER host= */
	unsigned port;        /* OAUTHBEARER port= (0: omitted) */
	char error[512];
};

/* Canonical upper-case name ("XOAUTH2"). */
const char *mk_sasl_mech_name(enum mk_sasl_mech mech);
/* By name, case-insensitive. Returns 0 or MK_ENOTSUP. */
int mk_sasl_mech_parse(const char *name, enum mk_sasl_mech *mech_r);

/* Copies user and secret (the caller wipes its own copies). host/port are
 * for OAUTHBEARER (may be NULL/0). Returns 0, MK_EINVAL (NUL or \x01 in the
 * user, a token with characters outside RFC 6750 b64token, empty secret),
 * MK_ETOOBIG (over MK_LIMIT_SASL_LINE once encoded). */
int mk_sasl_init(struct mk_sasl *s, enum mk_sasl_mech mech, const char *user, const uint8_t *secret,
		 size_t secret_len, const char *host, unsigned port);
/* Wipes and frees; idempotent. */
void mk_sasl_cleanup(struct mk_sasl *s);

/* True when the mechanism has an initial response (all but LOGIN). */
bool mk_sasl_has_initial(const struct mk_sasl *s);
/* Appends the raw initial response to out. Returns 0, MK_ESTATE (none). */
int mk_sasl_initial(struct mk_sasl *s, struct mk_buf *out);
/* Answers a (decoded) challenge; appends the raw response to out.
 * Returns 0; MK_EAUTH after a failure challenge (the response to send is
 * still in out, see above); MK_EPROTO (a challenge the mechanism does not
 * expect, e.g. a third LOGIN prompt). */
int mk_sasl_step(struct mk_sasl *s, const uint8_t *challenge, size_t n, struct mk_buf *out);
/* Plain-words reason after MK_EAUTH ("" otherwise). */
const char *mk_sasl_error(const struct mk_sasl *s);

#endif
