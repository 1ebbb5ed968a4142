/* SPDX-License-Identifier: MIT */
/*
 * mk_str.h - small string helpers that replace the banned libc calls
 * (strcpy, strcat, sprintf, atoi, strtok).
 */
#ifndef MK_STR_H
#define MK_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Copies at most dstsz-1 bytes and NUL-terminates; returns strlen(src). */
size_t mk_strlcpy(char *dst, const char *src, size_t dstsz);
bool mk_str_has_prefix(const char *s, const char *prefix);
/* Strict unsigned parse of the whole string, in [min, max].
 * Returns: 0, MK_EINVAL. */
int mk_str_to_u64(const char *s, uint64_t min, uint64_t max, uint64_t *val_r);
/* Trims ASCII whitespace in place; returns s advanced past leading blanks. */
char *mk_str_trim(char *s);
/* Levenshtein distance, capped at `cap` (for did-you-mean hints). */
size_t mk_str_distance(const char *a, const char *b, size_t cap);

/* Base64 (RFC 4648, with padding). Encoded size for n bytes: */
#define MK_BASE64_ENCLEN(n) ((((n) + 2) / 3) * 4)
/* Writes MK_BASE64_ENCLEN(n) chars plus NUL into out (outsz must fit). */
void mk_base64_encode(const void *in, size_t n, char *out, size_t outsz);
/* Decodes; whitespace not allowed. Returns bytes written, or MK_EINVAL /
 * MK_ETOOBIG (out too small). */
long mk_base64_decode(const char *in, size_t n, void *out, size_t outsz);

#endif
