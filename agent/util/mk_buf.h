/* SPDX-License-Identifier: MIT */
/*
 * mk_buf.h - a bounded, growable byte buffer with a stable address.
 *
 * A buffer is embedded in its owner and never returned by value.
 * mk_buf_init(&b, max) cannot fail; appending past `max` returns MK_ETOOBIG
 * and leaves the buffer unchanged. Data is kept NUL-terminated (one spare
 * byte beyond len) so line-oriented callers can use string functions.
 */
#ifndef MK_BUF_H
#define MK_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mk_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
};

/* A borrowed view; each API says how long it stays valid. */
struct mk_slice {
	const uint8_t *p;
	size_t n;
};

void mk_buf_init(struct mk_buf *b, size_t max);
/* Frees the storage; idempotent. */
void mk_buf_cleanup(struct mk_buf *b);
/* Like cleanup, but overwrites the bytes first (for secrets). */
void mk_buf_cleanup_wipe(struct mk_buf *b);
/* Ensure room for `n` more bytes; *space_r points at them.
 * Returns: 0, MK_ETOOBIG. */
int mk_buf_reserve(struct mk_buf *b, size_t n, uint8_t **space_r);
/* Mark `n` reserved bytes as used. */
void mk_buf_commit(struct mk_buf *b, size_t n);
/* Returns: 0, MK_ETOOBIG. */
int mk_buf_append(struct mk_buf *b, const void *p, size_t n);
int mk_buf_append_str(struct mk_buf *b, const char *s);
int mk_buf_printf(struct mk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop `n` bytes from the front. */
/* Appends s as a JSON string: quoted, with '"' and '\\' escaped and
 * control characters as \\u00XX (NULL is ""). Returns: 0, MK_ETOOBIG. */
int mk_buf_append_json_str(struct mk_buf *b, const char *s);
void mk_buf_consume(struct mk_buf *b, size_t n);
/* An input buffer whose first *off bytes were already parsed: drops them
 * when they are all consumed or the new bytes would not fit beside them
 * (*off becomes 0), then appends p[0..n). Parsers use it to take network
 * input without growing past b->max. Returns: 0, MK_ETOOBIG. */
int mk_buf_feed(struct mk_buf *b, size_t *off, const void *p, size_t n);
void mk_buf_reset(struct mk_buf *b);
/* Shortens to `len` bytes (<= b->len), overwriting the dropped tail when
 * `wipe` (it may have held a secret). */
void mk_buf_truncate(struct mk_buf *b, size_t len, bool wipe);
/* Hand the storage (NUL-terminated) to the caller; the buffer is emptied.
 * Never NULL. */
char *mk_buf_take(struct mk_buf *b, size_t *len_r);
static inline struct mk_slice mk_buf_slice(const struct mk_buf *b)
{
	struct mk_slice s = {b->data, b->len};
	return s;
}

#endif
