/* SPDX-License-Identifier: MIT */
/*
 * mk_alloc.c - the one file that calls malloc/free (tests/lint checks it).
 */
#include "mk_alloc.h"
#include "mk_err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long failalloc_at = -1; /* -1: not read yet, 0: off */
static long alloc_count;

static void count_alloc(size_t n)
{
	if (failalloc_at < 0) {
		const char *s = getenv("MK_TEST_FAILALLOC");
		failalloc_at = s ? strtol(s, NULL, 10) : 0;
		if (failalloc_at < 0)
			failalloc_at = 0;
	}
	alloc_count++;
	if (failalloc_at > 0 && alloc_count == failalloc_at)
		mk_fatal("out of memory allocating %zu bytes (MK_TEST_FAILALLOC=%ld)", n, failalloc_at);
}

void *mk_xmalloc(size_t n)
{
	count_alloc(n);
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		mk_fatal("out of memory allocating %zu bytes", n);
	return p;
}

void *mk_xcalloc(size_t count, size_t size)
{
	if (size != 0 && count > SIZE_MAX / size)
		mk_fatal("allocation overflow (%zu x %zu)", count, size);
	count_alloc(count * size);
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (p == NULL)
		mk_fatal("out of memory allocating %zu x %zu bytes", count, size);
	return p;
}

void *mk_xrealloc(void *p, size_t n)
{
	count_alloc(n);
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		mk_fatal("out of memory reallocating %zu bytes", n);
	return q;
}

char *mk_xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = mk_xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *mk_xstrdup(const char *s)
{
	return mk_xstrndup(s, SIZE_MAX);
}

char *mk_xasprintf(const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		mk_panic("mk_xasprintf: bad format");
	char *p = mk_xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return p;
}

void mk_free(void *p)
{
	free(p);
}
