/* SPDX-License-Identifier: MIT */
/*
 * mk_trace.h - protocol-line tracing for the session glue (--trace).
 *
 * The IMAP and POP3 sessions log what they send ("C:") and receive ("S:")
 * one line at a time at MK_LOG_TRACE, each line cut to 200 bytes and passed
 * through mk_log_redact_line(), which hides credentials by command. What
 * only the protocol knows - which lines are SASL responses or literals of a
 * LOGIN, to be hidden whole - the session says through a `hide` callback.
 */
#ifndef MK_TRACE_H
#define MK_TRACE_H

#include "mk_log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when line number `index` (from 0) of a chunk, line[0..n) with its
 * line end, is to be hidden whole. */
typedef bool (*mk_trace_hide_fn)(const uint8_t *line, size_t n, unsigned index, const void *ud);

/* Logs p[0..n) line by line as "DIR LINE" with `log`'s context, if trace
 * logging is enabled. `hide` NULL: no line is hidden whole. */
void mk_trace_log(const struct mk_log_ctx *log, const char *dir, const uint8_t *p, size_t n,
		  mk_trace_hide_fn hide, const void *ud);

#endif
