/* SPDX-License-Identifier: MIT */
/*
 * caps.c - the capability sets of mk_caps.h.
 *
 * Entries are NUL-terminated copies made with mk_xstrndup, so a NUL byte a
 * server put in a capability merely shortens that entry. Nothing here
 * parses protocol framing: the cores hand in the bytes of one response (or
 * one CAPA line) they have already delimited.
 */
#include "mk_caps.h"
#include "mk_alloc.h"
#include "mk_err.h"

#include <string.h>
#include <strings.h>

void mk_caps_init(struct mk_caps *caps, unsigned max)
{
	MK_ASSERT(max <= MK_CAPS_MAX);
	memset(caps, 0, sizeof(*caps));
	caps->max = max;
}

void mk_caps_clear(struct mk_caps *caps)
{
	for (unsigned i = 0; i < caps->n; i++)
		MK_FREE(&caps->item[i]);
	caps->n = 0;
	caps->known = false;
}

void mk_caps_add(struct mk_caps *caps, const uint8_t *p, size_t n)
{
	if (caps->n < caps->max && n > 0)
		caps->item[caps->n++] = mk_xstrndup((const char *)p, n);
}

void mk_caps_set_words(struct mk_caps *caps, const uint8_t *p, size_t n)
{
	mk_caps_clear(caps);
	size_t i = 0;
	while (i < n && caps->n < caps->max) {
		while (i < n && p[i] == ' ')
			i++;
		size_t s = i;
		while (i < n && p[i] != ' ')
			i++;
		mk_caps_add(caps, p + s, i - s);
	}
	caps->known = true;
}

bool mk_caps_has(const struct mk_caps *caps, const char *cap)
{
	for (unsigned i = 0; i < caps->n; i++)
		if (strcasecmp(caps->item[i], cap) == 0)
			return true;
	return false;
}

bool mk_caps_has_keyword(const struct mk_caps *caps, const char *keyword)
{
	size_t l = strlen(keyword);
	for (unsigned i = 0; i < caps->n; i++)
		if (strncasecmp(caps->item[i], keyword, l) == 0 &&
		    (caps->item[i][l] == '\0' || caps->item[i][l] == ' '))
			return true;
	return false;
}
