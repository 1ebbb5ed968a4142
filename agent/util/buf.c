/* SPDX-License-Identifier: MIT */
/*
 * buf.c - struct mk_buf. Growth doubles up to `max`; the byte after `len`
 * is always NUL once anything was allocated.
 */
#include "mk_buf.h"
#include "mk_alloc.h"
#include "mk_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mk_buf_init(struct mk_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void mk_buf_cleanup(struct mk_buf *b)
{
	mk_free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void mk_buf_cleanup_wipe(struct mk_buf *b)
{
	if (b->data != NULL) {
		volatile uint8_t *p = b->data;
		for (size_t i = 0; i < b->cap; i++)
			p[i] = 0;
	}
	mk_buf_cleanup(b);
}

int mk_buf_reserve(struct mk_buf *b, size_t n, uint8_t **space_r)
{
	if (n > b->max || b->len > b->max - n)
		return MK_ETOOBIG;
	size_t need = b->len + n + 1; /* + NUL */
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < need)
			cap *= 2;
		if (cap > b->max + 1)
			cap = b->max + 1;
		b->data = mk_xrealloc(b->data, cap);
		b->cap = cap;
	}
	if (space_r != NULL)
		*space_r = b->data + b->len;
	return 0;
}

void mk_buf_commit(struct mk_buf *b, size_t n)
{
	MK_ASSERT(b->len + n < b->cap);
	b->len += n;
	b->data[b->len] = '\0';
}

int mk_buf_append(struct mk_buf *b, const void *p, size_t n)
{
	uint8_t *dst;
	int ret = mk_buf_reserve(b, n, &dst);
	if (ret < 0)
		return ret;
	if (n > 0)
		memcpy(dst, p, n);
	mk_buf_commit(b, n);
	return 0;
}

int mk_buf_append_str(struct mk_buf *b, const char *s)
{
	return mk_buf_append(b, s, strlen(s));
}

int mk_buf_printf(struct mk_buf *b, const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		va_end(ap2);
		return MK_EINVAL;
	}
	uint8_t *dst;
	int ret = mk_buf_reserve(b, (size_t)n, &dst);
	if (ret == 0) {
		vsnprintf((char *)dst, (size_t)n + 1, fmt, ap2);
		mk_buf_commit(b, (size_t)n);
	}
	va_end(ap2);
	return ret;
}

void mk_buf_consume(struct mk_buf *b, size_t n)
{
	MK_ASSERT(n <= b->len);
	if (n == b->len) {
		b->len = 0;
	} else {
		memmove(b->data, b->data + n, b->len - n);
		b->len -= n;
	}
	if (b->data != NULL)
		b->data[b->len] = '\0';
}

void mk_buf_reset(struct mk_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

char *mk_buf_take(struct mk_buf *b, size_t *len_r)
{
	if (b->data == NULL)
		(void)mk_buf_reserve(b, 0, NULL);
	if (b->data == NULL) { /* max == 0 and nothing reserved */
		b->data = mk_xmalloc(1);
		b->data[0] = '\0';
	}
	char *p = (char *)b->data;
	if (len_r != NULL)
		*len_r = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

void mk_buf_truncate(struct mk_buf *b, size_t len, bool wipe)
{
	MK_ASSERT(len <= b->len);
	if (wipe && b->data != NULL) {
		volatile uint8_t *p = b->data + len;
		for (size_t i = 0; i < b->len - len; i++)
			p[i] = 0;
	}
	b->len = len;
	if (b->data != NULL)
		b->data[len] = '\0';
}

int mk_buf_append_json_str(struct mk_buf *b, const char *s)
{
	int r = mk_buf_append(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && r == 0; p++) {
		if (*p == '"' || *p == '\\')
			r = mk_buf_printf(b, "\\%c", *p);
		else if (*p < 0x20)
			r = mk_buf_printf(b, "\\u%04x", *p);
		else
			r = mk_buf_append(b, p, 1);
	}
	return r == 0 ? mk_buf_append(b, "\"", 1) : r;
}

int mk_buf_feed(struct mk_buf *b, size_t *off, const void *p, size_t n)
{
	if (*off > 0 && (*off >= b->len || b->len + n > b->cap)) {
		mk_buf_consume(b, *off);
		*off = 0;
	}
	return mk_buf_append(b, p, n);
}
