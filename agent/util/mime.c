/* SPDX-License-Identifier: MIT */
/*
 * mime.c - header display helpers: RFC 2047 encoded-word decoding (for
 * showing From/Subject in `ls`), and UTF-8-aware truncation and padding.
 * Display only: the stored message is never changed.
 */
#include "mk_mime.h"
#include "mk_str.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static int hexv(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* windows-1252 0x80..0x9f (others are Latin-1) */
static const uint16_t cp1252[32] = {0x20ac, 0xfffd, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
				    0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0xfffd, 0x017d, 0xfffd,
				    0xfffd, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
				    0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0xfffd, 0x017e, 0x0178};

static size_t put_cp(char *out, size_t o, size_t outsz, uint32_t cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	}
	if (o + n >= outsz)
		return o;
	memcpy(out + o, u, n);
	return o + n;
}

/* Decodes one encoded word's payload into out; false if unsupported. */
static bool decode_word(const char *cs, char enc, const char *p, size_t n, char *out, size_t *o, size_t outsz)
{
	enum { UTF8, LATIN1, CP1252 } kind;
	if (strcasecmp(cs, "utf-8") == 0 || strcasecmp(cs, "us-ascii") == 0)
		kind = UTF8;
	else if (strcasecmp(cs, "iso-8859-1") == 0 || strcasecmp(cs, "iso-8859-15") == 0)
		kind = LATIN1;
	else if (strcasecmp(cs, "windows-1252") == 0)
		kind = CP1252;
	else
		return false;
	uint8_t raw[512];
	size_t rn = 0;
	if (enc == 'Q' || enc == 'q') {
		for (size_t i = 0; i < n && rn < sizeof(raw); i++) {
			if (p[i] == '_') {
				raw[rn++] = ' ';
			} else if (p[i] == '=' && i + 2 < n + 0 && hexv(p[i + 1]) >= 0 && hexv(p[i + 2]) >= 0) {
				raw[rn++] = (uint8_t)(hexv(p[i + 1]) * 16 + hexv(p[i + 2]));
				i += 2;
			} else {
				raw[rn++] = (uint8_t)p[i];
			}
		}
	} else if (enc == 'B' || enc == 'b') {
		long r = mk_base64_decode(p, n, raw, sizeof(raw));
		if (r < 0)
			return false;
		rn = (size_t)r;
	} else {
		return false;
	}
	for (size_t i = 0; i < rn; i++) {
		uint8_t c = raw[i];
		if (c < 0x20 || c == 0x7f)
			c = ' ';
		if (kind == UTF8 || c < 0x80) {
			if (*o + 1 < outsz)
				out[(*o)++] = (char)c;
		} else if (kind == CP1252 && c >= 0x80 && c < 0xa0) {
			*o = put_cp(out, *o, outsz, cp1252[c - 0x80]);
		} else {
			*o = put_cp(out, *o, outsz, c);
		}
	}
	return true;
}

void mk_mime_decode_header(const char *in, char *out, size_t outsz)
{
	size_t o = 0;
	const char *p = in;
	bool last_was_word = false;
	while (*p && o + 1 < outsz) {
		if (p[0] == '=' && p[1] == '?') {
			/* =?charset?E?text?= */
			const char *q1 = strchr(p + 2, '?');
			const char *q2 = q1 ? strchr(q1 + 1, '?') : NULL;
			const char *end = q2 ? strstr(q2 + 1, "?=") : NULL;
			if (q1 && q2 && end && q2 == q1 + 2 && (size_t)(q1 - p - 2) < 40) {
				char cs[40];
				memcpy(cs, p + 2, (size_t)(q1 - p - 2));
				cs[q1 - p - 2] = '\0';
				char *star = strchr(cs, '*'); /* RFC 2231 language */
				if (star)
					*star = '\0';
				size_t save = o;
				if (decode_word(cs, q1[1], q2 + 1, (size_t)(end - q2 - 1), out, &o, outsz)) {
					p = end + 2;
					last_was_word = true;
					continue;
				}
				o = save;
			}
		}
		if (last_was_word && (*p == ' ' || *p == '\t')) {
			/* whitespace between two encoded words is dropped */
			const char *q = p;
			while (*q == ' ' || *q == '\t')
				q++;
			if (q[0] == '=' && q[1] == '?') {
				p = q;
				continue;
			}
		}
		last_was_word = false;
		out[o++] = (*p == '\t') ? ' ' : *p;
		p++;
	}
	out[o] = '\0';
}

void mk_mime_fit(const char *in, size_t width, char *out, size_t outsz)
{
	size_t o = 0, w = 0;
	const unsigned char *p = (const unsigned char *)in;
	while (*p && w < width) {
		size_t n = 1;
		if (*p >= 0xf0)
			n = 4;
		else if (*p >= 0xe0)
			n = 3;
		else if (*p >= 0xc0)
			n = 2;
		if (o + n + 1 >= outsz)
			break;
		for (size_t k = 0; k < n && p[k]; k++)
			out[o++] = (char)p[k];
		p += n;
		w++;
	}
	while (w < width && o + 1 < outsz) {
		out[o++] = ' ';
		w++;
	}
	out[o] = '\0';
}
