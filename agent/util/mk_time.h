/* SPDX-License-Identifier: MIT */
/*
 * mk_time.h - the clocks the engines and commands read (never the protocol
 * cores, which are given the time).
 */
#ifndef MK_TIME_H
#define MK_TIME_H

#include <stdint.h>

/* Monotonic milliseconds: for durations and deadlines. */
int64_t mk_time_mono_ms(void);
/* Wall clock, for timestamps stored or shown. */
int64_t mk_time_wall_ms(void);
int64_t mk_time_wall_s(void);

#endif
