/* SPDX-License-Identifier: MIT */
/*
 * time.c - mk_time: clock_gettime in milliseconds.
 */
#include "mk_time.h"

#include <time.h>

static int64_t ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mk_time_mono_ms(void)
{
	return ms(CLOCK_MONOTONIC);
}

int64_t mk_time_wall_ms(void)
{
	return ms(CLOCK_REALTIME);
}

int64_t mk_time_wall_s(void)
{
	return (int64_t)time(NULL);
}
