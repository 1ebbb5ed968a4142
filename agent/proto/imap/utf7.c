/* SPDX-License-Identifier: MIT */
/*
 * utf7.c - modified UTF-7 for mailbox names (RFC 3501 §5.1.3): "&" starts
 * a base64 (with ',' for '/') run of UTF-16BE, "-" ends it, "&-" is "&".
 * Decoding is strict (malformed input is MK_EINVAL, never guessed).
 */
#include "mk_imap.h"
#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"

#include <string.h>

static int b64v(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

static const char b64c[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int put_utf8(struct mk_buf *b, uint32_t cp)
{
	uint8_t u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xc0 | (cp >> 6));
		u[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xe0 | (cp >> 12));
		u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | (cp >> 18));
		u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return mk_buf_append(b, u, n);
}

int mk_imap_utf7_decode(const char *in, char **out_r)
{
	struct mk_buf b;
	mk_buf_init(&b, strlen(in) * 4 + 16);
	const unsigned char *p = (const unsigned char *)in;
	while (*p) {
		if (*p >= 0x80) /* raw 8-bit is not modified UTF-7 */
			goto bad;
		if (*p != '&') {
			if (mk_buf_append(&b, p, 1) < 0)
				goto bad;
			p++;
			continue;
		}
		p++;
		if (*p == '-') {
			if (mk_buf_append(&b, "&", 1) < 0)
				goto bad;
			p++;
			continue;
		}
		uint32_t bits = 0;
		int nbits = 0;
		uint32_t hi = 0; /* pending high surrogate */
		size_t units = 0;
		while (*p && *p != '-') {
			int v = b64v(*p++);
			if (v < 0)
				goto bad;
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			if (nbits >= 16) {
				nbits -= 16;
				uint32_t u = (bits >> nbits) & 0xffff;
				units++;
				if (hi != 0) {
					if (u < 0xdc00 || u > 0xdfff)
						goto bad;
					uint32_t cp = 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00);
					hi = 0;
					if (put_utf8(&b, cp) < 0)
						goto bad;
				} else if (u >= 0xd800 && u <= 0xdbff) {
					hi = u;
				} else if (u >= 0xdc00 && u <= 0xdfff) {
					goto bad;
				} else {
					/* printable ASCII must not be encoded */
					if (u >= 0x20 && u <= 0x7e)
						goto bad;
					if (put_utf8(&b, u) < 0)
						goto bad;
				}
			}
		}
		if (*p != '-' || hi != 0 || units == 0 || (bits & ((1u << nbits) - 1)) != 0)
			goto bad;
		p++;
	}
	*out_r = mk_buf_take(&b, NULL);
	return 0;
bad:
	mk_buf_cleanup(&b);
	return MK_EINVAL;
}

/* Reads one UTF-8 code point; returns bytes used or 0 if invalid. */
static size_t get_utf8(const unsigned char *p, uint32_t *cp_r)
{
	if (p[0] < 0x80) {
		*cp_r = p[0];
		return 1;
	}
	size_t n;
	uint32_t cp;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n;
}

int mk_imap_utf7_encode(const char *utf8, char **out_r)
{
	struct mk_buf b;
	mk_buf_init(&b, strlen(utf8) * 4 + 16);
	const unsigned char *p = (const unsigned char *)utf8;
	while (*p) {
		if (*p >= 0x20 && *p <= 0x7e) {
			if (mk_buf_append(&b, *p == '&' ? "&-" : (const char *)p, *p == '&' ? 2 : 1) < 0)
				goto bad;
			p++;
			continue;
		}
		if (mk_buf_append(&b, "&", 1) < 0)
			goto bad;
		uint32_t bits = 0;
		int nbits = 0;
		while (*p && !(*p >= 0x20 && *p <= 0x7e)) {
			uint32_t cp;
			size_t n = get_utf8(p, &cp);
			if (n == 0)
				goto bad;
			p += n;
			uint16_t units[2];
			int nu = 1;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				units[0] = (uint16_t)(0xd800 + (cp >> 10));
				units[1] = (uint16_t)(0xdc00 + (cp & 0x3ff));
				nu = 2;
			} else {
				units[0] = (uint16_t)cp;
			}
			for (int k = 0; k < nu; k++) {
				bits = (bits << 16) | units[k];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					char ch = b64c[(bits >> nbits) & 63];
					if (mk_buf_append(&b, &ch, 1) < 0)
						goto bad;
				}
			}
		}
		if (nbits > 0) {
			char ch = b64c[(bits << (6 - nbits)) & 63];
			if (mk_buf_append(&b, &ch, 1) < 0)
				goto bad;
		}
		if (mk_buf_append(&b, "-", 1) < 0)
			goto bad;
	}
	*out_r = mk_buf_take(&b, NULL);
	return 0;
bad:
	mk_buf_cleanup(&b);
	return MK_EINVAL;
}
