/* SPDX-License-Identifier: MIT */
/*
 * mk_timer.h - a one-shot timer for engines that must not call libuv
 * themselves (agent/sync): the callback runs exactly once, either when the
 * time is up (cancelled = false) or after mk_timer_cancel() (cancelled =
 * true, from a later loop turn). The timer frees itself after the callback.
 */
#ifndef MK_TIMER_H
#define MK_TIMER_H

#include <stdbool.h>

struct mk_timer;
typedef struct uv_loop_s uv_loop_t;

/* Returns: 0, or a libuv error (no callback then). */
int mk_timer_start(uv_loop_t *loop, unsigned ms, void (*cb)(void *ud, bool cancelled), void *ud,
		   struct mk_timer **t_r);
/* Cancels *t if it has not fired yet; *t is set to NULL. The callback still
 * runs once, with cancelled = true. */
void mk_timer_cancel(struct mk_timer **t);

#endif
