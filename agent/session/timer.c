/* SPDX-License-Identifier: MIT */
/*
 * timer.c - mk_timer over uv_timer_t. The handle is embedded; memory is
 * freed in the close callback, after the owner's callback ran.
 */
#include "mk_timer.h"
#include "mk_alloc.h"

#include <uv.h>

struct mk_timer {
	uv_timer_t h;
	void (*cb)(void *ud, bool cancelled);
	void *ud;
	bool cancelled;
	bool fired;
};

static void on_closed(uv_handle_t *h)
{
	struct mk_timer *t = h->data;
	if (!t->fired) {
		t->fired = true;
		t->cb(t->ud, t->cancelled);
	}
	mk_free(t);
}

static void on_timer(uv_timer_t *h)
{
	struct mk_timer *t = h->data;
	if (!t->fired && !t->cancelled) {
		t->fired = true;
		t->cb(t->ud, false);
	}
	if (!uv_is_closing((uv_handle_t *)h))
		uv_close((uv_handle_t *)h, on_closed);
}

int mk_timer_start(uv_loop_t *loop, unsigned ms, void (*cb)(void *ud, bool cancelled), void *ud,
		   struct mk_timer **t_r)
{
	struct mk_timer *t = mk_xcalloc(1, sizeof(*t));
	int r = uv_timer_init(loop, &t->h);
	if (r < 0) {
		mk_free(t);
		return r;
	}
	t->h.data = t;
	t->cb = cb;
	t->ud = ud;
	uv_timer_start(&t->h, on_timer, ms, 0);
	*t_r = t;
	return 0;
}

void mk_timer_cancel(struct mk_timer **tp)
{
	struct mk_timer *t = *tp;
	*tp = NULL;
	if (t == NULL || t->fired || t->cancelled)
		return;
	t->cancelled = true;
	uv_timer_stop(&t->h);
	if (!uv_is_closing((uv_handle_t *)&t->h))
		uv_close((uv_handle_t *)&t->h, on_closed);
}
