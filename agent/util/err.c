/* SPDX-License-Identifier: MIT */
/*
 * err.c - error strings and the two ways to die (mk_panic for bugs,
 * mk_fatal for the environment). libc only: libuv's codes are -errno on
 * Linux, so strerror() covers them; the getaddrinfo codes (UV_EAI_*) are
 * mapped here by value so util does not need uv.h.
 */
#include "mk_err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libuv's UV_EAI_* values (uv/errno.h, Linux). */
static const struct {
	int code;
	const char *name;
	const char *msg;
} eai_map[] = {
	{-3000, "EAI_ADDRFAMILY", "address family not supported"},
	{-3001, "EAI_AGAIN", "temporary failure in name resolution"},
	{-3002, "EAI_BADFLAGS", "bad ai_flags value"},
	{-3003, "EAI_CANCELED", "name resolution canceled"},
	{-3004, "EAI_FAIL", "permanent failure in name resolution"},
	{-3005, "EAI_FAMILY", "ai_family not supported"},
	{-3006, "EAI_MEMORY", "out of memory in name resolution"},
	{-3007, "EAI_NODATA", "no address associated with host name"},
	{-3008, "EAI_NONAME", "unknown host name"},
	{-3009, "EAI_OVERFLOW", "argument buffer overflow"},
	{-3010, "EAI_SERVICE", "service not available for socket type"},
	{-3011, "EAI_SOCKTYPE", "socket type not supported"},
	{-3013, "EAI_BADHINTS", "invalid value for hints"},
	{-3014, "EAI_PROTOCOL", "resolved protocol is unknown"},
};

const char *mk_strerror(int err)
{
	if (err == 0)
		return "success";
	switch (err) {
#define MK__ERR_MSG(name, value, msg)                                          \
	case (value):                                                          \
		return (msg);
		MK_ERR_MAP(MK__ERR_MSG)
#undef MK__ERR_MSG
	default:
		break;
	}
	for (size_t i = 0; i < sizeof(eai_map) / sizeof(eai_map[0]); i++)
		if (eai_map[i].code == err)
			return eai_map[i].msg;
	if (err >= -30799 && err <= -30780)
		return "storage (LMDB) error";
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

const char *mk_err_name(int err)
{
	switch (err) {
#define MK__ERR_NAME(name, value, msg)                                         \
	case (value):                                                          \
		return "MK_" #name;
		MK_ERR_MAP(MK__ERR_NAME)
#undef MK__ERR_NAME
	case -ECONNREFUSED:
		return "ECONNREFUSED";
	case -ECONNRESET:
		return "ECONNRESET";
	case -ETIMEDOUT:
		return "ETIMEDOUT";
	case -ENOENT:
		return "ENOENT";
	case -EACCES:
		return "EACCES";
	case -ENOMEM:
		return "ENOMEM";
	default:
		break;
	}
	for (size_t i = 0; i < sizeof(eai_map) / sizeof(eai_map[0]); i++)
		if (eai_map[i].code == err)
			return eai_map[i].name;
	return "unknown";
}

_Noreturn void mk_panic(const char *fmt, ...)
{
	va_list ap;
	fputs("mailkeep: BUG: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

_Noreturn void mk_fatal(const char *fmt, ...)
{
	va_list ap;
	fputs("mailkeep: fatal: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(71); /* EX_OSERR */
}
