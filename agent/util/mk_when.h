/* SPDX-License-Identifier: MIT */
/*
 * mk_when.h - parsing the times and durations users type for scheduled
 * sending (`mailkeep send --at TIME | --in DURATION`). Pure: the current
 * time and the local-time conversion are passed in, so tests are
 * deterministic (the caller uses localtime_r/mktime; tests pass TZ-fixed
 * functions).
 *
 * TIME:
 *   ISO 8601 / RFC 3339: 2026-12-24T09:00, 2026-12-24T09:00:30,
 *     2026-12-24 09:00, with "Z" or "+01:00"/"-0500" (then absolute);
 *     without a zone it is local time;
 *   2026-12-24 (midnight local is ambiguous: refused, say "2026-12-24 00:00");
 *   HH:MM[:SS]          today at that local time, or tomorrow when already past;
 *   today HH:MM, tomorrow HH:MM, and a weekday name (mon..sun, monday..)
 *     followed by HH:MM: the next such day (today when still ahead);
 *   now;
 *   @UNIX-SECONDS.
 * DURATION: a sum of NUMBER UNIT terms, units s, m (minutes), h, d, w,
 *   also sec/min/hour/day/week with plural forms, optional spaces:
 *   "90s", "15m", "1h30m", "2 days", "1w". A bare number is refused (unit
 *   needed). Limit: 366 days.
 * Errors name the problem: "--at 25:00: hour out of range".
 */
#ifndef MK_WHEN_H
#define MK_WHEN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct mk_when_clock {
	int64_t now; /* unix seconds */
	/* local time <-> unix seconds; struct tm as in <time.h>.
	 * to_local fills *tm for t; from_local returns t for *tm (tm_isdst -1),
	 * or -1 when the time does not exist. */
	int (*to_local)(int64_t t, struct tm *tm, void *ud);
	int64_t (*from_local)(struct tm *tm, void *ud);
	void *ud;
};

/* The default clock: time(), localtime_r, mktime. */
void mk_when_clock_system(struct mk_when_clock *c);

/* Returns 0 and *t_r (unix seconds), or MK_EINVAL with error filled. A
 * time in the past is NOT an error here (the caller decides). */
int mk_when_parse_time(const char *s, const struct mk_when_clock *c, int64_t *t_r, char *error, size_t errsz);
/* Returns 0 and *secs_r, or MK_EINVAL with error filled. */
int mk_when_parse_duration(const char *s, int64_t *secs_r, char *error, size_t errsz);
/* "2026-12-24 09:00:00 +0100" in local time (for `outbox ls`). */
void mk_when_format_local(int64_t t, const struct mk_when_clock *c, char *buf, size_t n);

#endif
