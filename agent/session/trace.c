/* SPDX-License-Identifier: MIT */
/*
 * trace.c - the line-by-line protocol trace of mk_trace.h, shared by
 * imap_session.c and pop3_session.c.
 *
 * A chunk is split at each '\n' (a last line without one is traced as it
 * is); a line longer than 200 bytes is shown cut, followed by " ...". Only
 * the per-line decision to hide a line whole belongs to the caller.
 */
#include "mk_trace.h"

#include <string.h>

#define TRACE_LINE_MAX 200

void mk_trace_log(const struct mk_log_ctx *log, const char *dir, const uint8_t *p, size_t n,
		  mk_trace_hide_fn hide, const void *ud)
{
	if (!mk_log_enabled(MK_LOG_TRACE))
		return;
	for (unsigned index = 0; n > 0; index++) {
		const uint8_t *lf = memchr(p, '\n', n);
		size_t l = lf ? (size_t)(lf - p) + 1 : n;
		bool sasl = hide != NULL && hide(p, l, index, ud);
		char out[300];
		mk_log_redact_line((const char *)p, l > TRACE_LINE_MAX ? TRACE_LINE_MAX : l, sasl, out, sizeof(out));
		mk_log(MK_LOG_TRACE, MK_LOG_CAT_PROTO, log, "%s %s%s", dir, out, l > TRACE_LINE_MAX ? " ..." : "");
		p += l;
		n -= l;
	}
}
