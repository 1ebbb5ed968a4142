/* SPDX-License-Identifier: MIT */
/*
 * folders.c - the `folders` key: which folders a sync takes. Patterns are
 * the IMAP LIST wildcards users know from mbsync's Patterns: `*` and `%`,
 * `!` to exclude, double quotes for names with spaces ("Sent Items" is an
 * Outlook folder). The last matching pattern wins, as in mbsync.
 */
#include "mk_config.h"
#include "mk_err.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Next pattern of the list into buf; returns false at the end. */
static bool next_pattern(const char **pp, char *buf, size_t bufsz, bool *neg_r, bool *bad_r)
{
	const char *p = *pp;
	*bad_r = false;
	while (*p == ' ' || *p == '\t' || *p == ',')
		p++;
	if (*p == '\0')
		return false;
	*neg_r = false;
	if (*p == '!') {
		*neg_r = true;
		p++;
	}
	size_t n = 0;
	if (*p == '"') {
		p++;
		while (*p && *p != '"') {
			if (n + 1 < bufsz)
				buf[n++] = *p;
			p++;
		}
		if (*p != '"')
			*bad_r = true;
		else
			p++;
	} else {
		while (*p && *p != ' ' && *p != '\t' && *p != ',') {
			if (n + 1 < bufsz)
				buf[n++] = *p;
			p++;
		}
	}
	buf[n] = '\0';
	if (n == 0)
		*bad_r = true;
	*pp = p;
	return true;
}

static bool wild(const char *pat, const char *s, char delim)
{
	if (*pat == '\0')
		return *s == '\0';
	if (*pat == '*') {
		for (const char *t = s;; t++) {
			if (wild(pat + 1, t, delim))
				return true;
			if (*t == '\0')
				return false;
		}
	}
	if (*pat == '%') {
		for (const char *t = s;; t++) {
			if (wild(pat + 1, t, delim))
				return true;
			if (*t == '\0' || (delim && *t == delim))
				return false;
		}
	}
	return *s != '\0' && *pat == *s && wild(pat + 1, s + 1, delim);
}

static bool match_one(const char *pat, const char *name, char delim)
{
	/* INBOX is case-insensitive (RFC 3501 §5.1) */
	if (strcasecmp(pat, "INBOX") == 0 && strcasecmp(name, "INBOX") == 0)
		return true;
	return wild(pat, name, delim);
}

bool mk_config_folder_match(const char *patterns, const char *name, char delimiter)
{
	const char *p = patterns;
	char pat[512];
	bool neg, bad, any_positive = false, result = false, decided = false;
	while (next_pattern(&p, pat, sizeof(pat), &neg, &bad)) {
		if (bad)
			continue;
		if (!neg)
			any_positive = true;
		if (match_one(pat, name, delimiter)) {
			result = !neg;
			decided = true;
		}
	}
	if (!decided)
		return !any_positive; /* only exclusions: everything else is in */
	return result;
}

int mk_config_folders_check(const char *patterns, char *msg, size_t msgsz)
{
	const char *p = patterns;
	char pat[512];
	bool neg, bad;
	int count = 0;
	while (next_pattern(&p, pat, sizeof(pat), &neg, &bad)) {
		if (bad) {
			snprintf(msg, msgsz,
				 "bad folders \"%s\": expected patterns like * or \"Sent Items\" or !Calendar* "
				 "(an empty pattern or an unclosed quote)",
				 patterns);
			return MK_ECONFIG;
		}
		count++;
	}
	if (count == 0) {
		snprintf(msg, msgsz, "bad folders \"%s\": no pattern", patterns);
		return MK_ECONFIG;
	}
	return 0;
}

int mk_config_duration(const char *s, unsigned min_s, unsigned max_s, unsigned *seconds_r)
{
	uint64_t v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return MK_EINVAL;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (uint64_t)(*p++ - '0');
		if (v > 100000000)
			return MK_EINVAL;
	}
	uint64_t mult = 1;
	if (*p == 's')
		p++;
	else if (*p == 'm')
		mult = 60, p++;
	else if (*p == 'h')
		mult = 3600, p++;
	else if (*p == 'd')
		mult = 86400, p++;
	if (*p != '\0')
		return MK_EINVAL;
	v *= mult;
	if (v < min_s || v > max_s)
		return MK_EINVAL;
	*seconds_r = (unsigned)v;
	return 0;
}
