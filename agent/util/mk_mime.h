/* SPDX-License-Identifier: MIT */
/*
 * mk_mime.h - header display helpers (never used to change stored mail).
 */
#ifndef MK_MIME_H
#define MK_MIME_H

#include <stddef.h>

/* Decodes RFC 2047 encoded words (Q and B; UTF-8, US-ASCII, ISO-8859-1/15
 * and windows-1252; others are left as they are) into UTF-8 for display.
 * Control characters become spaces. out is always NUL-terminated. */
void mk_mime_decode_header(const char *in, char *out, size_t outsz);
/* Truncates or pads UTF-8 text to `width` characters. */
void mk_mime_fit(const char *in, size_t width, char *out, size_t outsz);

#endif
