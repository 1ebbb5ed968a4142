/* SPDX-License-Identifier: MIT */
/*
 * dot.c - SMTP DATA encoding (RFC 5321 §4.5.2 transparency, §2.3.8 line
 * endings), streamed: every line end becomes CRLF (a bare LF or a bare CR
 * too, so a server never sees a lone CR or LF, RFC 5321 §2.3.8), and a
 * line starting with "." gets one more ".". Nothing is held back between
 * calls: the state is one small number, so a CR ending one call and the LF
 * starting the next still give a single CRLF (the CR already wrote it, the
 * LF is then swallowed).
 *
 * Pure: no I/O, no allocation beyond the output buffer.
 */
#include "mk_err.h"
#include "mk_smtp.h"
#include "smtp_int.h"

#include <string.h>

enum {
	DOT_BOL = 0, /* at the beginning of a line */
	DOT_MID = 1, /* inside a line */
	DOT_CR = 2,  /* a CR was written as CRLF: a following LF is its own */
};

size_t mk__smtp_dot_encode_some(unsigned *state, const uint8_t *p, size_t n, uint8_t *dst, size_t room,
				size_t *written_r)
{
	size_t i = 0, w = 0;
	unsigned st = *state;
	while (i < n) {
		uint8_t ch = p[i];
		if (ch == '\n' && st == DOT_CR) {
			st = DOT_BOL; /* the LF of a CRLF whose CR was written */
			i++;
			continue;
		}
		if (ch == '\n' || ch == '\r') {
			if (room - w < 2)
				break;
			dst[w++] = '\r';
			dst[w++] = '\n';
			st = ch == '\r' ? DOT_CR : DOT_BOL;
			i++;
			continue;
		}
		if (st != DOT_MID && ch == '.') {
			if (room - w < 2)
				break;
			dst[w++] = '.';
			dst[w++] = '.';
			st = DOT_MID;
			i++;
			continue;
		}
		/* a run of ordinary bytes inside the line */
		size_t j = i;
		while (j < n && p[j] != '\r' && p[j] != '\n' && j - i < room - w)
			j++;
		if (j == i)
			break; /* no room */
		memcpy(dst + w, p + i, j - i);
		w += j - i;
		i = j;
		st = DOT_MID;
	}
	*state = st;
	*written_r = w;
	return i;
}

int mk_smtp_dot_encode(unsigned *state, const uint8_t *p, size_t n, struct mk_buf *out)
{
	unsigned st0 = *state;
	size_t len0 = out->len, i = 0;
	while (i < n) {
		size_t room = out->max > out->len ? out->max - out->len : 0;
		size_t rest = n - i;
		/* at most two bytes out per byte in */
		size_t want = rest > room / 2 ? room : rest * 2;
		uint8_t *dst;
		size_t w = 0, took = 0;
		if (want > 0 && mk_buf_reserve(out, want, &dst) == 0)
			took = mk__smtp_dot_encode_some(state, p + i, rest, dst, want, &w);
		if (took == 0) {
			mk_buf_truncate(out, len0, false);
			*state = st0;
			return MK_ETOOBIG;
		}
		mk_buf_commit(out, w);
		i += took;
	}
	return 0;
}

int mk_smtp_dot_finish(unsigned *state, struct mk_buf *out)
{
	/* a body not ending in a line end gets one: the "." must start a line */
	int r = *state == DOT_MID ? mk_buf_append(out, "\r\n.\r\n", 5) : mk_buf_append(out, ".\r\n", 3);
	if (r == 0)
		*state = DOT_BOL;
	return r;
}
