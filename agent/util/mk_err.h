/* SPDX-License-Identifier: MIT */
/*
 * mk_err.h - error codes, checks and panics shared by every layer.
 *
 * 0 is success and negative values are errors. Our own codes live in
 * -31000..-31999 (the MK_ERR_MAP X-macro), clear of libuv (-errno, UV_EAI_*)
 * and LMDB (-30799..-30780), so one int can carry any of them and
 * mk_strerror() dispatches by range. This header is the only place where
 * assert-like macros are defined.
 */
#ifndef MK_ERR_H
#define MK_ERR_H

#include <stdbool.h>
#include <stddef.h>

/* X(name, value, message) */
#define MK_ERR_MAP(X)                                                          \
	X(EAGAIN_MORE, -31000, "need more input")                              \
	X(EPROTO, -31001, "protocol error")                                    \
	X(ETOOBIG, -31002, "size limit exceeded")                              \
	X(ETLS, -31003, "TLS error")                                           \
	X(ECERT, -31004, "certificate verification failed")                    \
	X(ECANCELED, -31005, "operation canceled")                             \
	X(ETIMEDOUT, -31006, "timed out")                                      \
	X(ECONFIG, -31007, "configuration error")                              \
	X(EINVAL, -31008, "invalid argument")                                  \
	X(ENOTFOUND, -31009, "not found")                                      \
	X(ESTATE, -31010, "operation not valid in this state")                 \
	X(EAUTH, -31011, "authentication failed")                              \
	X(ESERVER, -31012, "server refused the command")                       \
	X(EEOF, -31013, "connection closed by peer")                           \
	X(ETRUNC, -31014, "connection truncated (no TLS close_notify)")        \
	X(ECMD, -31015, "external command failed")                             \
	X(EPERM, -31016, "permission denied")                                  \
	X(EIO, -31017, "input/output error")                                   \
	X(ECORRUPT, -31018, "stored data is corrupt")                          \
	X(ENOTSUP, -31019, "not supported by the server")                      \
	X(EUNAVAIL, -31020, "server temporarily unavailable")

enum mk_err_code {
#define MK__ERR_ENUM(name, value, msg) MK_##name = (value),
	MK_ERR_MAP(MK__ERR_ENUM)
#undef MK__ERR_ENUM
};

#define MK_ERR_MIN (-31999)
#define MK_ERR_MAX (-31000)

/* Message for any error code: ours, libuv's (-errno, UV_EAI_*), or LMDB's.
 * Returns a static string; never NULL. */
const char *mk_strerror(int err);
/* Symbolic name ("MK_EPROTO", "ECONNREFUSED") or "unknown". */
const char *mk_err_name(int err);

/* Always-on assertion: a failed one is a bug. */
#define MK_ASSERT(expr)                                                        \
	do {                                                                   \
		if (!(expr))                                                   \
			mk_panic("%s:%d: assertion failed: %s", __FILE__,      \
				 __LINE__, #expr);                             \
	} while (0)

/* MK_ALWAYS/MK_NEVER: abort in debug builds, take the defensive branch in
 * release builds. Use as `if (MK_NEVER(x == NULL)) return MK_EINVAL;`. */
#ifdef NDEBUG
#define MK_ALWAYS(expr) (!!(expr))
#define MK_NEVER(expr) (!!(expr))
#else
#define MK_ALWAYS(expr) ((expr) ? true : (mk_panic("%s:%d: expected: %s", __FILE__, __LINE__, #expr), false))
#define MK_NEVER(expr) ((expr) ? (mk_panic("%s:%d: unexpected: %s", __FILE__, __LINE__, #expr), true) : false)
#endif

/* A bug: prints and aborts. */
_Noreturn void mk_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The environment failed beyond repair (e.g. out of memory): prints, exits 71. */
_Noreturn void mk_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
