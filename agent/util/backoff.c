/* SPDX-License-Identifier: MIT */
/*
 * backoff.c - the delays of mk_backoff.h.
 *
 * All arithmetic saturates: the doubling stops at the cap long before
 * 2^attempt could overflow, and random ranges are reduced with a 128-bit
 * multiply (Lemire) rather than '%', so no bias worth mentioning and no
 * division by zero.
 */
#include "mk_backoff.h"
#include "mk_err.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t backoff_default_rand(void *ud)
{
	(void)ud;
	uint64_t v = 0;
	ssize_t n;
	do {
		n = getrandom(&v, sizeof(v), GRND_NONBLOCK);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(v)) {
		/* entropy pool not ready (early boot): jitter only needs to
		 * differ between processes, not to be secret */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		v = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
		v ^= v >> 33;
		v *= 0xff51afd7ed558ccdull;
		v ^= v >> 33;
	}
	return v;
}

/* Uniform in [lo, hi] (inclusive). */
static uint64_t backoff_uniform(struct mk_backoff *b, uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	uint64_t span = hi - lo;
	uint64_t r = b->rand(b->rand_ud);
	if (span == UINT64_MAX)
		return lo + r;
	unsigned __int128 m = (unsigned __int128)r * (span + 1);
	return lo + (uint64_t)(m >> 64);
}

void mk_backoff_init(struct mk_backoff *b, uint64_t base_ms, uint64_t cap_ms, enum mk_backoff_jitter jitter,
		     mk_backoff_rand_fn *rnd, void *rnd_ud)
{
	memset(b, 0, sizeof(*b));
	b->base_ms = base_ms > 0 ? base_ms : 1;
	b->cap_ms = cap_ms >= b->base_ms ? cap_ms : b->base_ms;
	b->jitter = jitter;
	b->rand = rnd != NULL ? rnd : backoff_default_rand;
	b->rand_ud = rnd_ud;
}

void mk_backoff_reset(struct mk_backoff *b)
{
	b->attempt = 0;
	b->prev_ms = 0;
	b->hint_ms = 0;
}

void mk_backoff_server_hint_ms(struct mk_backoff *b, uint64_t ms)
{
	if (ms > MK_BACKOFF_HINT_MAX_MS)
		ms = MK_BACKOFF_HINT_MAX_MS;
	if (ms > b->hint_ms)
		b->hint_ms = ms;
}

/* base * 2^attempt, capped. */
static uint64_t backoff_exp(const struct mk_backoff *b)
{
	uint64_t d = b->base_ms;
	for (unsigned i = 0; i < b->attempt && d < b->cap_ms; i++)
		d = d > b->cap_ms / 2 ? b->cap_ms : d * 2;
	return d < b->cap_ms ? d : b->cap_ms;
}

uint64_t mk_backoff_next_ms(struct mk_backoff *b)
{
	uint64_t d;
	switch (b->jitter) {
	case MK_BACKOFF_JITTER_FULL:
		d = backoff_uniform(b, 0, backoff_exp(b));
		break;
	case MK_BACKOFF_JITTER_EQUAL: {
		uint64_t e = backoff_exp(b);
		d = backoff_uniform(b, e - e / 2, e);
		break;
	}
	case MK_BACKOFF_JITTER_DECORRELATED: {
		uint64_t prev = b->prev_ms > 0 ? b->prev_ms : b->base_ms;
		uint64_t hi = prev > UINT64_MAX / 3 ? UINT64_MAX : prev * 3;
		if (hi > b->cap_ms)
			hi = b->cap_ms;
		d = backoff_uniform(b, b->base_ms, hi);
		break;
	}
	case MK_BACKOFF_JITTER_NONE:
	default:
		d = backoff_exp(b);
		break;
	}
	b->prev_ms = d;
	if (b->attempt < 64)
		b->attempt++;
	if (b->hint_ms > d)
		d = b->hint_ms;
	b->hint_ms = 0;
	return d;
}

/* Case-insensitive strstr for ASCII. */
static const char *backoff_find(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; *hay != '\0'; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return hay;
	return NULL;
}

/* True if `p` starts with the word `w` (case-insensitively) not followed
 * by another letter. */
static bool backoff_word(const char *p, const char *w)
{
	size_t n = strlen(w);
	return strncasecmp(p, w, n) == 0 && !isalpha((unsigned char)p[n]);
}

int mk_backoff_parse_outlook_hint(const char *text, uint64_t *ms_r)
{
	const char *p = backoff_find(text, "Suggested Backoff Time");
	if (p == NULL)
		return MK_ENOTFOUND;
	p += strlen("Suggested Backoff Time");
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == ':')
		p++;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!isdigit((unsigned char)*p))
		return MK_EINVAL;
	uint64_t v = 0;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned digit = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - digit) / 10)
			return MK_EINVAL;
		v = v * 10 + digit;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (backoff_word(p, "seconds") || backoff_word(p, "second") || backoff_word(p, "s") ||
	    backoff_word(p, "sec")) {
		if (v > UINT64_MAX / 1000)
			return MK_EINVAL;
		v *= 1000;
	}
	/* "milliseconds", "ms", or nothing: milliseconds */
	*ms_r = v;
	return 0;
}
