/* SPDX-License-Identifier: MIT */
/*
 * mk_backoff.h - reconnect delays: exponential backoff with jitter, and the
 * server's own "Suggested Backoff Time".
 *
 * One struct mk_backoff per account (or job). The delay grows from `base_ms`
 * doubling to `cap_ms` (the agent uses 1 s to 5 min), randomised so that
 * many accounts knocked off together do not reconnect together. Randomness
 * comes from a caller-supplied function, so tests are deterministic; NULL
 * uses getrandom(). Pure computation: no clock, no I/O, no libuv.
 */
#ifndef MK_BACKOFF_H
#define MK_BACKOFF_H

#include <stdint.h>

#define MK_BACKOFF_BASE_MS 1000u
#define MK_BACKOFF_CAP_MS (5u * 60u * 1000u)
/* Outlook asks for 90,000..300,000 ms, reportedly up to 50 minutes; a hint
 * beyond this is clamped (a typo on the server must not park an account
 * for days). */
#define MK_BACKOFF_HINT_MAX_MS (2u * 60u * 60u * 1000u)

enum mk_backoff_jitter {
	/* exactly base * 2^n, capped (tests, or a single job) */
	MK_BACKOFF_JITTER_NONE = 0,
	/* uniform in [0, base * 2^n]: the most spread, may retry at once */
	MK_BACKOFF_JITTER_FULL,
	/* uniform in [d/2, d] with d = base * 2^n: spread, never too eager */
	MK_BACKOFF_JITTER_EQUAL,
	/* "decorrelated": uniform in [base, 3 * previous], capped */
	MK_BACKOFF_JITTER_DECORRELATED,
};

/* Returns 64 uniformly random bits. */
typedef uint64_t mk_backoff_rand_fn(void *ud);

struct mk_backoff {
	uint64_t base_ms, cap_ms;
	enum mk_backoff_jitter jitter;
	mk_backoff_rand_fn *rand;
	void *rand_ud;
	unsigned attempt;  /* delays handed out since the last reset */
	uint64_t prev_ms;  /* last delay (decorrelated jitter) */
	uint64_t hint_ms;  /* server's wish for the next delay; 0: none */
};

/* Cannot fail. base_ms >= 1 and cap_ms >= base_ms are enforced by raising
 * them. `rnd` NULL: getrandom(). */
void mk_backoff_init(struct mk_backoff *b, uint64_t base_ms, uint64_t cap_ms, enum mk_backoff_jitter jitter,
		     mk_backoff_rand_fn *rnd, void *rnd_ud);

/* The delay before the next attempt, in ms; advances the sequence. A
 * pending server hint is honoured once: the result is then at least the
 * hint (clamped to MK_BACKOFF_HINT_MAX_MS), even beyond cap_ms. */
uint64_t mk_backoff_next_ms(struct mk_backoff *b);

/* Back to the first delay (call after a connection has proved healthy,
 * e.g. logged in and selected). Also drops a pending hint. */
void mk_backoff_reset(struct mk_backoff *b);

/* Records a server's suggested delay for the next mk_backoff_next_ms(); the
 * larger of two hints wins. 0 is ignored. */
void mk_backoff_server_hint_ms(struct mk_backoff *b, uint64_t ms);

/* Finds Outlook's "Suggested Backoff Time: N milliseconds" in a response
 * text (the whole line or just the text after NO/BAD), case-insensitively,
 * e.g. "Request is throttled. Suggested Backoff Time: 299999 milliseconds".
 * The unit may be "milliseconds"/"ms" (also assumed when missing) or
 * "seconds"/"s". Returns: 0 (*ms_r set); MK_ENOTFOUND (no such phrase);
 * MK_EINVAL (phrase without a usable number, or one that overflows). */
int mk_backoff_parse_outlook_hint(const char *text, uint64_t *ms_r);

#endif
