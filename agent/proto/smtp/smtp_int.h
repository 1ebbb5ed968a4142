/* SPDX-License-Identifier: MIT */
/*
 * smtp_int.h - internals shared by the SMTP core's files.
 */
#ifndef MK_SMTP_INT_H
#define MK_SMTP_INT_H

#include <stddef.h>
#include <stdint.h>

/* Encodes (dot-stuffing + CRLF) as much of p[0..n) as fits in `room`
 * bytes at dst; *written_r gets the bytes written. Returns the input bytes
 * consumed (0: no room for the next one). */
size_t mk__smtp_dot_encode_some(unsigned *state, const uint8_t *p, size_t n, uint8_t *dst, size_t room,
				size_t *written_r);

#endif
