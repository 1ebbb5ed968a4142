/* SPDX-License-Identifier: MIT */
/*
 * when.c - mk_when: the times and durations typed after `send --at` and
 * `send --in`. A small hand tokenizer (no sscanf) over a NUL-terminated
 * string; every number is bounded by its digit count before it is
 * multiplied. Calendar arithmetic (next day, weekday, zone offsets) is done
 * here on proleptic Gregorian day numbers, so the clock's from_local is only
 * ever asked about a normalised, valid calendar date; it alone decides
 * whether that wall-clock time exists (DST gaps) in the local zone. Only
 * mk_when_clock_system touches the process time zone.
 */
#include "mk_when.h"
#include "mk_err.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define WHEN_YEAR_MIN 1970
#define WHEN_YEAR_MAX 9999
#define WHEN_DURATION_MAX (366 * 86400LL)

/* Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's
 * days_from_civil); valid for any year in int range used here. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y_r, int *m_r, int *d_r)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int d = (int)(doy - (153 * mp + 2) / 5 + 1);
	int m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y_r = yoe + era * 400 + (m <= 2);
	*m_r = m;
	*d_r = d;
}

static bool leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
	static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && leap(y) ? 29 : dm[m - 1];
}

/* ---- errors ---- */

/* "--at INPUT: problem", the input cut and made printable. */
static int fail(char *error, size_t errsz, const char *flag, const char *s, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int fail(char *error, size_t errsz, const char *flag, const char *s, const char *fmt, ...)
{
	if (error == NULL || errsz == 0)
		return MK_EINVAL;
	char shown[64];
	size_t i = 0;
	for (; s[i] != '\0' && i < sizeof(shown) - 4; i++)
		shown[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	if (s[i] != '\0') {
		memcpy(shown + i, "...", 3);
		i += 3;
	}
	shown[i] = '\0';
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *q = msg; *q; q++) /* the rest of the input may be quoted */
		if ((unsigned char)*q < 0x20 || *q == 0x7f)
			*q = '?';
	snprintf(error, errsz, "%s %s: %s", flag, shown, msg);
	return MK_EINVAL;
}

/* ---- tokenizer ---- */

struct cur {
	const char *s; /* whole input, for errors */
	const char *p;
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static void skip_space(struct cur *c)
{
	while (is_space(*c->p))
		c->p++;
}

/* Exactly `min`..`max` digits; returns the count read (0: none). */
static int digits(struct cur *c, int min, int max, int64_t *v_r)
{
	int64_t v = 0;
	int n = 0;
	while (n < max && is_digit(c->p[n])) {
		v = v * 10 + (c->p[n] - '0');
		n++;
	}
	if (n < min || is_digit(c->p[n]))
		return 0;
	c->p += n;
	*v_r = v;
	return n;
}

/* Exactly n digits, whatever follows. */
static bool digits_exact(struct cur *c, int n, int64_t *v_r)
{
	int64_t v = 0;
	for (int i = 0; i < n; i++) {
		if (!is_digit(c->p[i]))
			return false;
		v = v * 10 + (c->p[i] - '0');
	}
	c->p += n;
	*v_r = v;
	return true;
}

/* A run of letters, lowercased into w (truncated words never match). */
static size_t word(struct cur *c, char *w, size_t wsz)
{
	size_t n = 0;
	while (is_alpha(c->p[n])) {
		if (n + 1 < wsz)
			w[n] = lower(c->p[n]);
		n++;
	}
	w[n < wsz ? n : wsz - 1] = '\0';
	if (n >= wsz)
		w[0] = '\0';
	c->p += n;
	return n;
}

/* HH:MM[:SS] with a one- or two-digit hour. */
static int parse_hms(struct cur *c, const char *flag, int *h_r, int *m_r, int *s_r, char *error, size_t errsz)
{
	int64_t h, m, sec = 0;
	if (!digits(c, 1, 2, &h) || *c->p != ':')
		return fail(error, errsz, flag, c->s, "expected a time HH:MM");
	c->p++;
	if (!digits(c, 2, 2, &m))
		return fail(error, errsz, flag, c->s, "expected two digits for the minutes");
	if (*c->p == ':') {
		c->p++;
		if (!digits(c, 2, 2, &sec))
			return fail(error, errsz, flag, c->s, "expected two digits for the seconds");
	}
	if (h > 23)
		return fail(error, errsz, flag, c->s, "hour out of range");
	if (m > 59)
		return fail(error, errsz, flag, c->s, "minute out of range");
	if (sec > 59)
		return fail(error, errsz, flag, c->s, "second out of range");
	*h_r = (int)h;
	*m_r = (int)m;
	*s_r = (int)sec;
	return 0;
}

/* ---- local time ---- */

struct ymd {
	int64_t y;
	int m, d;
};

/* Unix seconds for a local wall-clock time, or MK_EINVAL naming the time
 * when it does not exist (clocks skip it). */
static int local_to_unix(const struct mk_when_clock *c, struct ymd day, int h, int mi, int sec, const char *flag,
			 const char *s, int64_t *t_r, char *error, size_t errsz)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = (int)(day.y - 1900);
	tm.tm_mon = day.m - 1;
	tm.tm_mday = day.d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	tm.tm_isdst = -1;
	int64_t dn = days_from_civil(day.y, day.m, day.d);
	tm.tm_wday = (int)(((dn % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
	tm.tm_yday = (int)(dn - days_from_civil(day.y, 1, 1));
	int64_t t = c->from_local(&tm, c->ud);
	if (t == -1)
		return fail(error, errsz, flag, s,
			    "%04lld-%02d-%02d %02d:%02d does not exist in local time (the clocks skip it)",
			    (long long)day.y, day.m, day.d, h, mi);
	*t_r = t;
	return 0;
}

static int today_local(const struct mk_when_clock *c, const char *flag, const char *s, struct tm *tm_r, char *error,
		       size_t errsz)
{
	if (c->to_local(c->now, tm_r, c->ud) != 0)
		return fail(error, errsz, flag, s, "cannot convert the current time to local time");
	return 0;
}

static struct ymd ymd_of_tm(const struct tm *tm, int64_t add_days)
{
	struct ymd r;
	int64_t dn = days_from_civil((int64_t)tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday) + add_days;
	civil_from_days(dn, &r.y, &r.m, &r.d);
	return r;
}

static int weekday_of(const char *w)
{
	static const char *const names[7] = {"sunday",	 "monday", "tuesday", "wednesday",
					     "thursday", "friday", "saturday"};
	size_t n = strlen(w);
	if (n < 3)
		return -1;
	for (int i = 0; i < 7; i++)
		if (n <= strlen(names[i]) && memcmp(w, names[i], n) == 0)
			return i;
	return -1;
}

/* ---- absolute ISO 8601 / RFC 3339 ---- */

static int parse_iso(struct cur *c, const struct mk_when_clock *clk, const char *flag, int64_t *t_r, char *error,
		     size_t errsz)
{
	int64_t y, mo, d;
	if (!digits(c, 4, 4, &y) || *c->p != '-')
		return fail(error, errsz, flag, c->s, "expected a date YYYY-MM-DD");
	c->p++;
	if (!digits(c, 2, 2, &mo) || *c->p != '-')
		return fail(error, errsz, flag, c->s, "expected a date YYYY-MM-DD");
	c->p++;
	if (!digits(c, 2, 2, &d))
		return fail(error, errsz, flag, c->s, "expected a date YYYY-MM-DD");
	if (y < WHEN_YEAR_MIN || y > WHEN_YEAR_MAX)
		return fail(error, errsz, flag, c->s, "year out of range (%d..%d)", WHEN_YEAR_MIN, WHEN_YEAR_MAX);
	if (mo < 1 || mo > 12)
		return fail(error, errsz, flag, c->s, "month out of range");
	if (d < 1 || d > days_in_month(y, (int)mo))
		return fail(error, errsz, flag, c->s, "day out of range for %04lld-%02lld", (long long)y,
			    (long long)mo);
	const char *after_date = c->p;
	skip_space(c);
	if (*c->p == '\0')
		/* midnight of which day is ambiguous: the user must say */
		return fail(error, errsz, flag, c->s, "a date needs a time, e.g. \"%04lld-%02lld-%02lld 00:00\"",
			    (long long)y, (long long)mo, (long long)d);
	if (c->p == after_date) {
		if (*c->p != 'T' && *c->p != 't')
			return fail(error, errsz, flag, c->s, "expected 'T' or a space between date and time");
		c->p++;
	}
	int h, mi, sec;
	int r = parse_hms(c, flag, &h, &mi, &sec, error, errsz);
	if (r < 0)
		return r;
	if (*c->p == '.' || *c->p == ',') { /* fractional seconds: ignored */
		c->p++;
		int64_t frac;
		if (!digits(c, 1, 9, &frac))
			return fail(error, errsz, flag, c->s, "expected digits after the decimal point");
	}
	skip_space(c);
	if (*c->p == '\0') {
		struct ymd day = {y, (int)mo, (int)d};
		return local_to_unix(clk, day, h, mi, sec, flag, c->s, t_r, error, errsz);
	}
	int64_t off = 0;
	if (*c->p == 'Z' || *c->p == 'z') {
		c->p++;
	} else if (*c->p == '+' || *c->p == '-') {
		int sign = *c->p == '-' ? -1 : 1;
		c->p++;
		int64_t oh, om = 0;
		if (!digits_exact(c, 2, &oh))
			return fail(error, errsz, flag, c->s, "expected a zone offset +HH:MM");
		if (*c->p == ':') {
			c->p++;
			if (!digits(c, 2, 2, &om))
				return fail(error, errsz, flag, c->s, "expected a zone offset +HH:MM");
		} else if (is_digit(*c->p)) {
			if (!digits(c, 2, 2, &om))
				return fail(error, errsz, flag, c->s, "expected a zone offset +HHMM");
		}
		if (oh > 23 || om > 59)
			return fail(error, errsz, flag, c->s, "zone offset out of range");
		off = sign * (oh * 3600 + om * 60);
	} else {
		return fail(error, errsz, flag, c->s, "unexpected \"%s\" after the time", c->p);
	}
	skip_space(c);
	if (*c->p != '\0')
		return fail(error, errsz, flag, c->s, "unexpected \"%s\" after the zone", c->p);
	*t_r = days_from_civil(y, (int)mo, (int)d) * 86400 + h * 3600 + mi * 60 + sec - off;
	return 0;
}

/* ---- public ---- */

int mk_when_parse_time(const char *s, const struct mk_when_clock *c, int64_t *t_r, char *error, size_t errsz)
{
	static const char flag[] = "--at";
	if (error != NULL && errsz > 0)
		error[0] = '\0';
	if (s == NULL)
		s = "";
	struct cur cur = {s, s};
	skip_space(&cur);
	if (*cur.p == '\0')
		return fail(error, errsz, flag, s, "empty time");

	if (*cur.p == '@') {
		cur.p++;
		int64_t v;
		if (!digits(&cur, 1, 12, &v))
			return fail(error, errsz, flag, s, "expected unix seconds after '@'");
		skip_space(&cur);
		if (*cur.p != '\0')
			return fail(error, errsz, flag, s, "unexpected \"%s\" after the unix time", cur.p);
		if (v > days_from_civil(WHEN_YEAR_MAX + 1, 1, 1) * 86400 - 1)
			return fail(error, errsz, flag, s, "unix time out of range");
		*t_r = v;
		return 0;
	}

	/* a date starts with four digits and '-' */
	if (is_digit(cur.p[0]) && is_digit(cur.p[1]) && is_digit(cur.p[2]) && is_digit(cur.p[3]) && cur.p[4] == '-')
		return parse_iso(&cur, c, flag, t_r, error, errsz);

	struct tm now_tm;
	int r;
	if (is_digit(*cur.p)) {
		/* HH:MM: today, or tomorrow when already past */
		int h, mi, sec;
		if ((r = parse_hms(&cur, flag, &h, &mi, &sec, error, errsz)) < 0)
			return r;
		skip_space(&cur);
		if (*cur.p != '\0')
			return fail(error, errsz, flag, s, "unexpected \"%s\" after the time", cur.p);
		if ((r = today_local(c, flag, s, &now_tm, error, errsz)) < 0)
			return r;
		int64_t t;
		char scratch[8];
		r = local_to_unix(c, ymd_of_tm(&now_tm, 0), h, mi, sec, flag, s, &t, scratch, 0);
		if (r == 0 && t >= c->now) {
			*t_r = t;
			return 0;
		}
		if (r < 0) {
			/* today's wall time does not exist: if it is still ahead
			 * on the wall clock the user meant today, say so */
			int want = h * 3600 + mi * 60 + sec;
			int have = now_tm.tm_hour * 3600 + now_tm.tm_min * 60 + now_tm.tm_sec;
			if (want > have)
				return local_to_unix(c, ymd_of_tm(&now_tm, 0), h, mi, sec, flag, s, t_r, error, errsz);
		}
		return local_to_unix(c, ymd_of_tm(&now_tm, 1), h, mi, sec, flag, s, t_r, error, errsz);
	}

	char w[16];
	if (word(&cur, w, sizeof(w)) == 0)
		return fail(error, errsz, flag, s,
			    "expected a time: HH:MM, YYYY-MM-DD HH:MM, tomorrow HH:MM, now, @SECONDS");
	if (strcmp(w, "now") == 0) {
		skip_space(&cur);
		if (*cur.p != '\0')
			return fail(error, errsz, flag, s, "unexpected \"%s\" after \"now\"", cur.p);
		*t_r = c->now;
		return 0;
	}
	int64_t add;
	int wd = -1;
	if (strcmp(w, "today") == 0)
		add = 0;
	else if (strcmp(w, "tomorrow") == 0)
		add = 1;
	else if ((wd = weekday_of(w)) >= 0)
		add = -1; /* decided below */
	else
		return fail(error, errsz, flag, s, "unknown word \"%s\" (expected today, tomorrow, a weekday or now)",
			    w);
	if (!is_space(*cur.p) && *cur.p != '\0')
		return fail(error, errsz, flag, s, "expected a space and HH:MM after \"%s\"", w);
	skip_space(&cur);
	if (*cur.p == '\0')
		return fail(error, errsz, flag, s, "\"%s\" needs a time, e.g. \"%s 09:00\"", w, w);
	int h, mi, sec;
	if ((r = parse_hms(&cur, flag, &h, &mi, &sec, error, errsz)) < 0)
		return r;
	skip_space(&cur);
	if (*cur.p != '\0')
		return fail(error, errsz, flag, s, "unexpected \"%s\" after the time", cur.p);
	if ((r = today_local(c, flag, s, &now_tm, error, errsz)) < 0)
		return r;
	if (wd < 0)
		return local_to_unix(c, ymd_of_tm(&now_tm, add), h, mi, sec, flag, s, t_r, error, errsz);
	add = (wd - now_tm.tm_wday + 7) % 7;
	if (add == 0) {
		/* today is that weekday: today when still ahead, else next week */
		int want = h * 3600 + mi * 60 + sec;
		int have = now_tm.tm_hour * 3600 + now_tm.tm_min * 60 + now_tm.tm_sec;
		int64_t t;
		char scratch[8];
		if (local_to_unix(c, ymd_of_tm(&now_tm, 0), h, mi, sec, flag, s, &t, scratch, 0) == 0) {
			if (t < c->now)
				add = 7;
		} else if (want <= have) {
			add = 7;
		}
	}
	return local_to_unix(c, ymd_of_tm(&now_tm, add), h, mi, sec, flag, s, t_r, error, errsz);
}

static int64_t unit_seconds(const char *u)
{
	static const struct {
		const char *name;
		int64_t secs;
	} units[] = {
		{"s", 1},	  {"sec", 1},	       {"secs", 1},
		{"second", 1},	  {"seconds", 1},      {"m", 60},
		{"min", 60},	  {"mins", 60},	       {"minute", 60},
		{"minutes", 60},  {"h", 3600},	       {"hr", 3600},
		{"hrs", 3600},	  {"hour", 3600},      {"hours", 3600},
		{"d", 86400},	  {"day", 86400},      {"days", 86400},
		{"w", 7 * 86400}, {"week", 7 * 86400}, {"weeks", 7 * 86400},
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(u, units[i].name) == 0)
			return units[i].secs;
	return 0;
}

int mk_when_parse_duration(const char *s, int64_t *secs_r, char *error, size_t errsz)
{
	static const char flag[] = "--in";
	if (error != NULL && errsz > 0)
		error[0] = '\0';
	if (s == NULL)
		s = "";
	struct cur c = {s, s};
	int64_t total = 0;
	int terms = 0;
	skip_space(&c);
	while (*c.p != '\0') {
		if (*c.p == '-')
			return fail(error, errsz, flag, s, "a duration cannot be negative");
		int64_t v;
		if (!is_digit(*c.p))
			return fail(error, errsz, flag, s, "expected a number at \"%s\"", c.p);
		/* 9 digits bound the product: 999999999 weeks fits in int64 */
		if (!digits(&c, 1, 9, &v))
			return fail(error, errsz, flag, s, "number too large");
		skip_space(&c);
		char w[16];
		if (word(&c, w, sizeof(w)) == 0) {
			if (*c.p == '\0')
				return fail(error, errsz, flag, s, "a unit is needed after %lld (s, m, h, d, w)",
					    (long long)v);
			return fail(error, errsz, flag, s, "expected a unit at \"%s\"", c.p);
		}
		int64_t u = unit_seconds(w);
		if (u == 0)
			return fail(error, errsz, flag, s, "unknown unit \"%s\" (s, m, h, d, w)", w);
		total += v * u;
		if (total > WHEN_DURATION_MAX)
			return fail(error, errsz, flag, s, "longer than 366 days");
		terms++;
		skip_space(&c);
	}
	if (terms == 0)
		return fail(error, errsz, flag, s, "empty duration");
	*secs_r = total;
	return 0;
}

void mk_when_format_local(int64_t t, const struct mk_when_clock *c, char *buf, size_t n)
{
	if (n == 0)
		return;
	struct tm tm;
	if (c->to_local(t, &tm, c->ud) != 0) {
		snprintf(buf, n, "@%lld", (long long)t);
		return;
	}
	int64_t y = (int64_t)tm.tm_year + 1900;
	/* the offset from the fields themselves: to_local need not set
	 * tm_gmtoff */
	int64_t local =
		days_from_civil(y, tm.tm_mon + 1, tm.tm_mday) * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
	int64_t off = (local - t) / 60;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	snprintf(buf, n, "%04lld-%02d-%02d %02d:%02d:%02d %c%02lld%02lld", (long long)y, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, sign, (long long)(off / 60), (long long)(off % 60));
}

/* ---- the system clock ---- */

static int sys_to_local(int64_t t, struct tm *tm, void *ud)
{
	(void)ud;
	time_t tt = (time_t)t;
	return localtime_r(&tt, tm) == NULL ? -1 : 0;
}

/* mktime normalises a wall time inside a DST gap (02:30 becomes 03:30)
 * instead of failing, so every guess is checked by its round trip. In the
 * repeated hour after the clocks go back both readings round-trip: the
 * earlier one is taken (the first time the clock shows it). */
static int64_t sys_from_local(struct tm *want, void *ud)
{
	(void)ud;
	int64_t best = -1;
	bool found = false;
	static const int guesses[3] = {-1, 0, 1};
	for (int i = 0; i < 3; i++) {
		struct tm x = *want;
		x.tm_isdst = guesses[i];
		time_t t = mktime(&x);
		if (t == (time_t)-1 && x.tm_year != 69)
			continue;
		if (x.tm_year != want->tm_year || x.tm_mon != want->tm_mon || x.tm_mday != want->tm_mday ||
		    x.tm_hour != want->tm_hour || x.tm_min != want->tm_min || x.tm_sec != want->tm_sec)
			continue;
		if (!found || (int64_t)t < best)
			best = (int64_t)t;
		found = true;
	}
	return found ? best : -1;
}

void mk_when_clock_system(struct mk_when_clock *c)
{
	c->now = (int64_t)time(NULL);
	c->to_local = sys_to_local;
	c->from_local = sys_from_local;
	c->ud = NULL;
}
