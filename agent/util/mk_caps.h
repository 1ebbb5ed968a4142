/* SPDX-License-Identifier: MIT */
/*
 * mk_caps.h - a server's capability set, as the IMAP and POP3 cores keep it.
 *
 * A bounded list of strings, compared without regard to case: IMAP's
 * CAPABILITY atoms (mk_caps_set_words splits a response on spaces), or
 * POP3's CAPA lines, one entry per line, whose first word is the keyword
 * (mk_caps_has_keyword). Entries beyond the owner's bound are dropped, so a
 * hostile server cannot grow it. `known` says the set was received since it
 * was last forgotten (both protocols forget it after STARTTLS/STLS and
 * login). Pure memory: libc and mk_alloc only.
 */
#ifndef MK_CAPS_H
#define MK_CAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MK_CAPS_MAX 64

struct mk_caps {
	char *item[MK_CAPS_MAX];
	unsigned n;
	unsigned max; /* at most this many entries (<= MK_CAPS_MAX) */
	bool known;
};

/* An empty, unknown set keeping at most `max` entries. */
void mk_caps_init(struct mk_caps *caps, unsigned max);
/* Frees every entry; the set becomes empty and unknown. */
void mk_caps_clear(struct mk_caps *caps);
/* Adds p[0..n) as one entry; empty entries and those beyond the bound are dropped. */
void mk_caps_add(struct mk_caps *caps, const uint8_t *p, size_t n);
/* Replaces the set by the space-separated words of p[0..n); it is then known. */
void mk_caps_set_words(struct mk_caps *caps, const uint8_t *p, size_t n);
/* True when an entry equals `cap` (case-insensitive). */
bool mk_caps_has(const struct mk_caps *caps, const char *cap);
/* True when an entry's first word equals `keyword` (case-insensitive). */
bool mk_caps_has_keyword(const struct mk_caps *caps, const char *keyword);

#endif
