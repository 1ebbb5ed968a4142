/* SPDX-License-Identifier: MIT */
/*
 * mk_limits.h - every hard limit in one place. Hostile input is bounded by
 * these, not by the allocator (which aborts on failure).
 */
#ifndef MK_LIMITS_H
#define MK_LIMITS_H

/* Config: libinih's own line buffer is 200 bytes and silently splits longer
 * lines, so longer lines are rejected before inih sees them. */
#define MK_LIMIT_CONFIG_LINE 190
#define MK_LIMIT_CONFIG_FILE (1024 * 1024)
#define MK_LIMIT_ACCOUNTS 4096

/* Output of pass_cmd / token_cmd: first line only; Microsoft tokens can
 * exceed 4,096 characters, so leave room for 16 KiB and then some. */
#define MK_LIMIT_SECRET (64 * 1024)
#define MK_LIMIT_CMD_TIMEOUT_MS 30000

/* SASL lines: at least 16 KiB (Microsoft tokens exceed 4 KiB). */
#define MK_LIMIT_SASL_LINE (32 * 1024)

/* IMAP: a response line (outside literals) and the in-memory literal size. */
#define MK_LIMIT_IMAP_LINE (64 * 1024)
#define MK_LIMIT_IMAP_LITERAL_INLINE (64 * 1024)
/* A streamed message body (never held in memory): Microsoft allows up to
 * 150 MB messages; anything near 1 GiB announced is hostile. */
#define MK_LIMIT_IMAP_LITERAL_STREAM (1024ull * 1024 * 1024)
#define MK_LIMIT_IMAP_LIST_DEPTH 16
#define MK_LIMIT_IMAP_ITEMS 4096
#define MK_LIMIT_FOLDERS 100000

/* Network: one TLS/TCP read buffer, and the queued-output ceiling. */
#define MK_LIMIT_NET_READ (64 * 1024)
#define MK_LIMIT_NET_WRITE_QUEUE (8 * 1024 * 1024)

/* Default timeouts (ms). */
#define MK_TIMEOUT_CONNECT_MS 30000
#define MK_TIMEOUT_HANDSHAKE_MS 30000
#define MK_TIMEOUT_IDLE_MS 120000

#endif
