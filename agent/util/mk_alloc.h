/* SPDX-License-Identifier: MIT */
/*
 * mk_alloc.h - the only allocator. Out of memory is fatal (mk_xmalloc never
 * returns NULL), so hard limits, not NULL checks, are the defence against
 * hostile input. With MK_TEST_FAILALLOC=N in the environment the Nth
 * allocation fails (and so the process dies through mk_fatal), which tests
 * use to prove an allocation is reached or not.
 */
#ifndef MK_ALLOC_H
#define MK_ALLOC_H

#include <stddef.h>

void *mk_xmalloc(size_t n);
void *mk_xcalloc(size_t count, size_t size);
void *mk_xrealloc(void *p, size_t n);
char *mk_xstrdup(const char *s);
char *mk_xstrndup(const char *s, size_t n);
/* printf into a new string. */
char *mk_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mk_free(void *p);
/* Frees *pp and sets it to NULL. */
#define MK_FREE(pp)                                                            \
	do {                                                                   \
		mk_free(*(pp));                                                \
		*(pp) = NULL;                                                  \
	} while (0)

#endif
