/* SPDX-License-Identifier: MIT */
/*
 * test_when.c - mk_when: every `--at` form and `--in` duration against a
 * fixed clock in a fixed zone (UTC+1, no DST, written here), then the DST
 * cases (spring-forward gap, fall-back overlap, "tomorrow" across a
 * 23-hour day) with the system functions under TZ=Europe/Berlin.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mk_err.h"
#include "mk_when.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* 2026-12-06 08:00:00 UTC = Sunday 09:00 at UTC+1 */
#define NOW 1796544000LL
#define DAY 86400LL

/* ---- a fixed zone, UTC+1 without DST ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

static int fixed_to_local(int64_t t, struct tm *tm, void *ud)
{
	int64_t off = *(const int *)ud;
	time_t l = (time_t)(t + off);
	return gmtime_r(&l, tm) == NULL ? -1 : 0; /* gmtime of the shifted time: no TZ involved */
}

static int64_t fixed_from_local(struct tm *tm, void *ud)
{
	int64_t off = *(const int *)ud;
	return days_from_civil(tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday) * DAY + tm->tm_hour * 3600 +
	       tm->tm_min * 60 + tm->tm_sec - off;
}

static int g_off = 3600;

static struct mk_when_clock fixed(int64_t now)
{
	struct mk_when_clock c = {now, fixed_to_local, fixed_from_local, &g_off};
	return c;
}

static void ok_at(const struct mk_when_clock *c, const char *s, int64_t want)
{
	int64_t t = -12345;
	char err[200] = "";
	int r = mk_when_parse_time(s, c, &t, err, sizeof(err));
	if (r != 0 || t != want)
		print_error("\"%s\": r=%d t=%lld want %lld (%s)\n", s, r, (long long)t, (long long)want, err);
	assert_int_equal(r, 0);
	assert_int_equal(t, want);
}

static void bad_at(const struct mk_when_clock *c, const char *s, const char *want)
{
	int64_t t = -12345;
	char err[200] = "";
	int r = mk_when_parse_time(s, c, &t, err, sizeof(err));
	if (r != MK_EINVAL || strcmp(err, want) != 0)
		print_error("\"%s\": r=%d err \"%s\" want \"%s\"\n", s, r, err, want);
	assert_int_equal(r, MK_EINVAL);
	assert_string_equal(err, want);
	assert_int_equal(t, -12345);
}

static void test_absolute(void **state)
{
	(void)state;
	struct mk_when_clock c = fixed(NOW);
	ok_at(&c, "now", NOW);
	ok_at(&c, "  NOW  ", NOW);
	ok_at(&c, "@1800000000", 1800000000LL);
	ok_at(&c, "@0", 0);
	ok_at(&c, "2026-12-24T09:00", 1798099200LL);
	ok_at(&c, "2026-12-24T09:00:30", 1798099230LL);
	ok_at(&c, "2026-12-24 09:00", 1798099200LL);
	ok_at(&c, "2026-12-24   9:00", 1798099200LL);
	ok_at(&c, "2026-12-24T09:00Z", 1798102800LL);
	ok_at(&c, "2026-12-24t09:00:30.250z", 1798102830LL);
	ok_at(&c, "2026-12-24T09:00+01:00", 1798099200LL);
	ok_at(&c, "2026-12-24 09:00 +0100", 1798099200LL);
	ok_at(&c, "2026-12-24T09:00-05:00", 1798120800LL);
	ok_at(&c, "2026-12-24 09:00 -0500", 1798120800LL);
	ok_at(&c, "2026-12-24T09:00-05", 1798120800LL);
	ok_at(&c, "2028-02-29 12:00", 1835434800LL);
	ok_at(&c, "2020-01-01 00:00Z", 1577836800LL); /* the past is the caller's business */
}

static void test_relative(void **state)
{
	(void)state;
	struct mk_when_clock c = fixed(NOW); /* Sunday 09:00 local */
	ok_at(&c, "10:00", NOW + 3600);
	ok_at(&c, "9:00:01", NOW + 1);
	ok_at(&c, "09:00", NOW);	    /* not yet past */
	ok_at(&c, "08:59", NOW + DAY - 60); /* past: tomorrow */
	ok_at(&c, "00:00", NOW + DAY - 9 * 3600);
	ok_at(&c, "today 08:00", NOW - 3600); /* past, not an error */
	ok_at(&c, "today 23:59:59", NOW + 15 * 3600 - 1);
	ok_at(&c, "tomorrow 09:00", NOW + DAY);
	ok_at(&c, "TOMORROW   9:00", NOW + DAY);
	ok_at(&c, "sun 10:00", NOW + 3600);		 /* today, still ahead */
	ok_at(&c, "sunday 08:00", NOW + 7 * DAY - 3600); /* today but past: next week */
	ok_at(&c, "Sunday 09:00", NOW);
	ok_at(&c, "mon 09:00", NOW + DAY);
	ok_at(&c, "Monday 9:00", NOW + DAY);
	ok_at(&c, "tue 09:00", NOW + 2 * DAY);
	ok_at(&c, "wed 12:30", NOW + 3 * DAY + 12600);
	ok_at(&c, "thurs 09:00", NOW + 4 * DAY);
	ok_at(&c, "fri 09:00", NOW + 5 * DAY);
	ok_at(&c, "saturday 09:00", NOW + 6 * DAY);

	/* across the year: now 2026-12-31 23:30 local */
	c = fixed(1798756200LL);
	ok_at(&c, "tomorrow 00:10", 1798758600LL);
	ok_at(&c, "00:10", 1798758600LL);
	ok_at(&c, "23:45", 1798756200LL + 15 * 60);
	ok_at(&c, "fri 00:10", 1798758600LL); /* 2027-01-01 is a Friday */
}

static void test_time_errors(void **state)
{
	(void)state;
	struct mk_when_clock c = fixed(NOW);
	bad_at(&c, "25:00", "--at 25:00: hour out of range");
	bad_at(&c, "12:60", "--at 12:60: minute out of range");
	bad_at(&c, "12:00:60", "--at 12:00:60: second out of range");
	bad_at(&c, "", "--at : empty time");
	bad_at(&c, "   ", "--at    : empty time");
	bad_at(&c, "12", "--at 12: expected a time HH:MM");
	bad_at(&c, "123:00", "--at 123:00: expected a time HH:MM");
	bad_at(&c, "12:5", "--at 12:5: expected two digits for the minutes");
	bad_at(&c, "12:05:7", "--at 12:05:7: expected two digits for the seconds");
	bad_at(&c, "10:00 pm", "--at 10:00 pm: unexpected \"pm\" after the time");
	bad_at(&c, "2026-12-24", "--at 2026-12-24: a date needs a time, e.g. \"2026-12-24 00:00\"");
	bad_at(&c, "2026-13-01 10:00", "--at 2026-13-01 10:00: month out of range");
	bad_at(&c, "2026-02-29 10:00", "--at 2026-02-29 10:00: day out of range for 2026-02");
	bad_at(&c, "2026-04-31 10:00", "--at 2026-04-31 10:00: day out of range for 2026-04");
	bad_at(&c, "1969-12-31 10:00", "--at 1969-12-31 10:00: year out of range (1970..9999)");
	bad_at(&c, "2026-1-01 10:00", "--at 2026-1-01 10:00: expected a date YYYY-MM-DD");
	bad_at(&c, "2026-12-24X09:00", "--at 2026-12-24X09:00: expected 'T' or a space between date and time");
	bad_at(&c, "2026-12-24T09:00 +25:00", "--at 2026-12-24T09:00 +25:00: zone offset out of range");
	bad_at(&c, "2026-12-24T09:00+1", "--at 2026-12-24T09:00+1: expected a zone offset +HH:MM");
	bad_at(&c, "2026-12-24T09:00 UTC", "--at 2026-12-24T09:00 UTC: unexpected \"UTC\" after the time");
	bad_at(&c, "2026-12-24T09:00Z x", "--at 2026-12-24T09:00Z x: unexpected \"x\" after the zone");
	bad_at(&c, "2026-12-24T09:00:00.", "--at 2026-12-24T09:00:00.: expected digits after the decimal point");
	bad_at(&c, "@abc", "--at @abc: expected unix seconds after '@'");
	bad_at(&c, "@-5", "--at @-5: expected unix seconds after '@'");
	bad_at(&c, "@999999999999", "--at @999999999999: unix time out of range");
	bad_at(&c, "@1 2", "--at @1 2: unexpected \"2\" after the unix time");
	bad_at(&c, "now please", "--at now please: unexpected \"please\" after \"now\"");
	bad_at(&c, "tomorrow", "--at tomorrow: \"tomorrow\" needs a time, e.g. \"tomorrow 09:00\"");
	bad_at(&c, "friday", "--at friday: \"friday\" needs a time, e.g. \"friday 09:00\"");
	bad_at(&c, "tomorrow9:00", "--at tomorrow9:00: expected a space and HH:MM after \"tomorrow\"");
	bad_at(&c, "tomorrow 25:00", "--at tomorrow 25:00: hour out of range");
	bad_at(&c, "tu 09:00", "--at tu 09:00: unknown word \"tu\" (expected today, tomorrow, a weekday or now)");
	bad_at(&c, "next week", "--at next week: unknown word \"next\" (expected today, tomorrow, a weekday or now)");
	bad_at(&c, "-5", "--at -5: expected a time: HH:MM, YYYY-MM-DD HH:MM, tomorrow HH:MM, now, @SECONDS");
	bad_at(&c, "10:00\n", "--at 10:00?: unexpected \"?\" after the time");
	bad_at(&c, "saturdaysaturdaysaturday 1:00",
	       "--at saturdaysaturdaysaturday 1:00: unknown word \"\" (expected today, tomorrow, a weekday or now)");
	/* long input is cut in the message */
	char longs[200];
	memset(longs, 'x', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	int64_t t;
	char err[200];
	assert_int_equal(mk_when_parse_time(longs, &c, &t, err, sizeof(err)), MK_EINVAL);
	assert_non_null(strstr(err, "xxx...: unknown word"));
	/* a tiny or absent error buffer is fine */
	assert_int_equal(mk_when_parse_time("25:00", &c, &t, err, 5), MK_EINVAL);
	assert_string_equal(err, "--at");
	assert_int_equal(mk_when_parse_time("25:00", &c, &t, NULL, 0), MK_EINVAL);
	assert_int_equal(mk_when_parse_time(NULL, &c, &t, NULL, 0), MK_EINVAL);
}

static void ok_in(const char *s, int64_t want)
{
	int64_t v = -1;
	char err[200] = "";
	int r = mk_when_parse_duration(s, &v, err, sizeof(err));
	if (r != 0 || v != want)
		print_error("\"%s\": r=%d v=%lld want %lld (%s)\n", s, r, (long long)v, (long long)want, err);
	assert_int_equal(r, 0);
	assert_int_equal(v, want);
}

static void bad_in(const char *s, const char *want)
{
	int64_t v = -1;
	char err[200] = "";
	int r = mk_when_parse_duration(s, &v, err, sizeof(err));
	if (r != MK_EINVAL || strcmp(err, want) != 0)
		print_error("\"%s\": r=%d err \"%s\" want \"%s\"\n", s, r, err, want);
	assert_int_equal(r, MK_EINVAL);
	assert_string_equal(err, want);
	assert_int_equal(v, -1);
}

static void test_duration(void **state)
{
	(void)state;
	ok_in("90s", 90);
	ok_in("15m", 900);
	ok_in("1h30m", 5400);
	ok_in("1h 30 min", 5400);
	ok_in(" 2 days ", 2 * DAY);
	ok_in("1d", DAY);
	ok_in("1w", 7 * DAY);
	ok_in("1 week 2 days", 9 * DAY);
	ok_in("3 Hours", 3 * 3600);
	ok_in("45 seconds", 45);
	ok_in("1 second", 1);
	ok_in("10 mins 5 secs", 605);
	ok_in("2hr", 7200);
	ok_in("0s", 0);
	ok_in("366d", 366 * DAY);
	ok_in("52w2d", 366 * DAY);
	bad_in("90", "--in 90: a unit is needed after 90 (s, m, h, d, w)");
	bad_in("1h30", "--in 1h30: a unit is needed after 30 (s, m, h, d, w)");
	bad_in("5x", "--in 5x: unknown unit \"x\" (s, m, h, d, w)");
	bad_in("5 lightyears", "--in 5 lightyears: unknown unit \"lightyears\" (s, m, h, d, w)");
	bad_in("", "--in : empty duration");
	bad_in("  ", "--in   : empty duration");
	bad_in("-5m", "--in -5m: a duration cannot be negative");
	bad_in("h", "--in h: expected a number at \"h\"");
	bad_in("1.5h", "--in 1.5h: expected a unit at \".5h\"");
	bad_in("367d", "--in 367d: longer than 366 days");
	bad_in("53w", "--in 53w: longer than 366 days");
	bad_in("366d1s", "--in 366d1s: longer than 366 days");
	bad_in("9999999999s", "--in 9999999999s: number too large");
	bad_in("999999999w", "--in 999999999w: longer than 366 days");
	int64_t v;
	assert_int_equal(mk_when_parse_duration(NULL, &v, NULL, 0), MK_EINVAL);
}

static void test_format(void **state)
{
	(void)state;
	struct mk_when_clock c = fixed(NOW);
	char b[64];
	mk_when_format_local(NOW, &c, b, sizeof(b));
	assert_string_equal(b, "2026-12-06 09:00:00 +0100");
	g_off = -(5 * 3600 + 30 * 60);
	mk_when_format_local(0, &c, b, sizeof(b));
	assert_string_equal(b, "1969-12-31 18:30:00 -0530");
	g_off = 3600;
}

/* ---- DST: the system functions with TZ=Europe/Berlin ---- */

static int setup_berlin(void **state)
{
	(void)state;
	if (access("/usr/share/zoneinfo/Europe/Berlin", R_OK) != 0) {
		print_error("tzdata missing: /usr/share/zoneinfo/Europe/Berlin\n");
		return -1;
	}
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	return 0;
}

static int teardown_berlin(void **state)
{
	(void)state;
	unsetenv("TZ");
	tzset();
	return 0;
}

static struct mk_when_clock berlin(int64_t now)
{
	struct mk_when_clock c;
	mk_when_clock_system(&c);
	c.now = now;
	return c;
}

static void test_dst(void **state)
{
	(void)state;
	/* Saturday 2026-03-28 13:00 CET; the clocks go 02:00 -> 03:00 on the 29th */
	struct mk_when_clock c = berlin(1774699200LL);
	bad_at(&c, "tomorrow 02:30",
	       "--at tomorrow 02:30: 2026-03-29 02:30 does not exist in local time (the clocks skip it)");
	bad_at(&c, "2026-03-29 02:30",
	       "--at 2026-03-29 02:30: 2026-03-29 02:30 does not exist in local time (the clocks skip it)");
	bad_at(&c, "sun 02:00", "--at sun 02:00: 2026-03-29 02:00 does not exist in local time (the clocks skip it)");
	ok_at(&c, "tomorrow 03:30", 1774747800LL);    /* CEST, UTC+2 */
	ok_at(&c, "tomorrow 01:30", 1774744200LL);    /* still CET */
	ok_at(&c, "2026-03-29 02:30Z", 1774751400LL); /* absolute: no local time involved */
	ok_at(&c, "2026-07-01 12:00", 1782900000LL);
	/* "tomorrow" is the next calendar day, 23 hours away here */
	c.now = 1774731600LL; /* Saturday 22:00 CET */
	ok_at(&c, "09:00", 1774767600LL);
	ok_at(&c, "tomorrow 09:00", 1774767600LL);
	ok_at(&c, "sunday 09:00", 1774767600LL);
	/* 01:30 CET on the day itself: today's 02:30 is still ahead on the
	 * wall clock but does not exist */
	c.now = 1774744200LL;
	bad_at(&c, "02:30", "--at 02:30: 2026-03-29 02:30 does not exist in local time (the clocks skip it)");
	ok_at(&c, "01:00", 1774744200LL + DAY - 1800 - 3600); /* past: Monday 01:00 CEST */
	/* 2026-10-25: 02:00-03:00 happens twice; the first one is taken */
	c.now = 1792886400LL;
	ok_at(&c, "2026-10-25 02:30", 1792888200LL);
	ok_at(&c, "2026-10-25 03:30", 1792888200LL + 2 * 3600);
	char b[64];
	mk_when_format_local(1782900000LL, &c, b, sizeof(b));
	assert_string_equal(b, "2026-07-01 12:00:00 +0200");
	mk_when_format_local(1792888200LL, &c, b, sizeof(b));
	assert_string_equal(b, "2026-10-25 02:30:00 +0200");
	mk_when_format_local(1792888200LL + 3600, &c, b, sizeof(b));
	assert_string_equal(b, "2026-10-25 02:30:00 +0100");
}

static void test_system_clock(void **state)
{
	(void)state;
	struct mk_when_clock c;
	mk_when_clock_system(&c);
	int64_t before = (int64_t)time(NULL);
	int64_t t;
	char err[200];
	assert_int_equal(mk_when_parse_time("now", &c, &t, err, sizeof(err)), 0);
	assert_true(t >= before - 5 && t <= before + 5);
	assert_int_equal(mk_when_parse_time("23:59", &c, &t, err, sizeof(err)), 0);
	assert_true(t >= c.now && t <= c.now + DAY + 3600);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_absolute),
		cmocka_unit_test(test_relative),
		cmocka_unit_test(test_time_errors),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_format),
		cmocka_unit_test_setup_teardown(test_dst, setup_berlin, teardown_berlin),
		cmocka_unit_test(test_system_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
