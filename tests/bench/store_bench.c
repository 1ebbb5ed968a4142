/* SPDX-License-Identifier: MIT */
/*
 * store_bench.c - measures the message store (not a test; no pass/fail):
 *   store_bench commit DIR [N] [BATCH]  N mail-like ~20 KB bodies (default
 *                                        10000) committed BATCH per txn (100):
 *                                        time, stored vs raw size, map growths
 *   store_bench stream DIR [MB [noread]] one MB-megabyte body in 64 KiB writes
 *                                        (run under /usr/bin/time -v for RSS;
 *                                        reading maps the file, so "noread"
 *                                        measures the write side alone)
 * DIR must not exist yet (a fresh store each run).
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ull;
}

/* Headers plus text from a vocabulary, with some random base64-looking
 * lines (signatures, ids), about what a plain mail looks like. */
static size_t make_mail(uint8_t *p, size_t cap, uint64_t seed)
{
	static const char *words[] = {"the",    "meeting", "Outlook", "invoice", "please",  "regards", "tomorrow",
				      "report", "attached", "project", "budget",  "review",  "thanks",  "quarter",
				      "numbers", "team",    "update",  "customer", "schedule", "call",   "Microsoft",
				      "office", "document", "following", "question", "answer", "deadline", "week"};
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint64_t s = seed * 7919 + 1;
	int n = snprintf((char *)p, cap,
			 "Received: from mail%llu.outlook.com by x.prod.outlook.com\r\nMessage-ID: <%llx@example.com>\r\n"
			 "From: Person %llu <p%llu@example.com>\r\nSubject: Report %llu\r\nMIME-Version: 1.0\r\n"
			 "Content-Type: text/plain; charset=utf-8\r\n\r\n",
			 (unsigned long long)(seed % 97), (unsigned long long)rng(&s), (unsigned long long)(seed % 50),
			 (unsigned long long)(seed % 50), (unsigned long long)seed);
	size_t i = (size_t)n;
	size_t target = 16000 + rng(&s) % 8000;
	size_t col = 0;
	while (i + 80 < cap && i < target) {
		if (rng(&s) % 40 == 0) {
			for (int k = 0; k < 76; k++)
				p[i++] = (uint8_t)b64[rng(&s) % 64];
			p[i++] = '\r';
			p[i++] = '\n';
			continue;
		}
		const char *w = words[rng(&s) % (sizeof(words) / sizeof(words[0]))];
		size_t wl = strlen(w);
		memcpy(p + i, w, wl);
		i += wl;
		col += wl + 1;
		if (col > 70) {
			p[i++] = '\r';
			p[i++] = '\n';
			col = 0;
		} else {
			p[i++] = ' ';
		}
	}
	return i;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int r)
{
	fprintf(stderr, "store_bench: %s: %s\n", what, mk_strerror(r));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: store_bench commit|stream DIR [N [BATCH] | MB]\n");
		return 2;
	}
	struct mk_store *st;
	char *error = NULL;
	int r = mk_store_open(argv[2], 6, &st, &error);
	if (r != 0) {
		fprintf(stderr, "store_bench: %s\n", error);
		return 1;
	}
	uint32_t acc;
	struct mk_store_mailbox mb;
	if ((r = mk_store_account(st, "bench", true, &acc)) != 0 ||
	    (r = mk_store_mailbox_get(st, acc, "INBOX", true, &mb)) != 0)
		die("setup", r);
	struct mk_store_batch *b = mk_store_batch_new(st);
	if (strcmp(argv[1], "commit") == 0) {
		long n = argc > 3 ? strtol(argv[3], NULL, 10) : 10000;
		long per = argc > 4 ? strtol(argv[4], NULL, 10) : 100;
		uint8_t *buf = mk_xmalloc(32 * 1024);
		double t0 = now(), tcommit = 0;
		for (long i = 1; i <= n; i++) {
			size_t len = make_mail(buf, 32 * 1024, (uint64_t)i);
			struct mk_store_body *w = mk_store_body_begin(b);
			struct mk_store_msg m;
			memset(&m, 0, sizeof(m));
			if ((r = mk_store_body_write(w, buf, len)) != 0 ||
			    (r = mk_store_body_finish(w, m.sha, &m.raw_size)) != 0)
				die("body", r);
			m.account = acc;
			m.mailbox = mb.id;
			m.uidvalidity = 1;
			m.uid = (uint32_t)i;
			if ((r = mk_store_batch_put_message(b, &m)) != 0)
				die("put", r);
			if (i % per == 0 || i == n) {
				double tc = now();
				if ((r = mk_store_batch_commit(b)) != 0)
					die("commit", r);
				tcommit += now() - tc;
			}
		}
		double t = now() - t0;
		struct mk_store_stats s;
		if ((r = mk_store_stats(st, &s)) != 0)
			die("stats", r);
		printf("commit: %ld messages in batches of %ld: %.2f s total (%.2f s in commits), %.0f msg/s\n", n,
		       per, t, tcommit, (double)n / t);
		printf("size: raw %.1f MB, stored (compressed) %.1f MB (%.1f%%), file %.1f MB (%.1f%% of raw), "
		       "map growths %llu\n",
		       (double)s.raw_bytes / 1e6, (double)s.blob_stored_bytes / 1e6,
		       100.0 * (double)s.blob_stored_bytes / (double)s.raw_bytes, (double)s.file_bytes / 1e6,
		       100.0 * (double)s.file_bytes / (double)s.raw_bytes,
		       (unsigned long long)mk__store_test_growths(st));
		mk_free(buf);
	} else {
		long mbytes = argc > 3 ? strtol(argv[3], NULL, 10) : 50;
		size_t total = (size_t)mbytes * 1000 * 1000;
		uint8_t *chunk = mk_xmalloc(65536);
		uint64_t s = 12345;
		struct mk_store_body *w = mk_store_body_begin(b);
		size_t peak = 0;
		double t0 = now();
		for (size_t off = 0; off < total; off += 65536) {
			size_t k = total - off < 65536 ? total - off : 65536;
			/* half random, half text-like: neither trivially compressible nor not */
			for (size_t i = 0; i < k; i++)
				chunk[i] = (i & 1) ? (uint8_t)('a' + rng(&s) % 26) : (uint8_t)(rng(&s) >> 56);
			if ((r = mk_store_body_write(w, chunk, k)) != 0)
				die("write", r);
			if (mk_store_batch_bytes(b) > peak)
				peak = mk_store_batch_bytes(b);
		}
		struct mk_store_msg m;
		memset(&m, 0, sizeof(m));
		if ((r = mk_store_body_finish(w, m.sha, &m.raw_size)) != 0)
			die("finish", r);
		m.account = acc;
		m.mailbox = mb.id;
		m.uidvalidity = 1;
		m.uid = 1;
		if ((r = mk_store_batch_put_message(b, &m)) != 0 || (r = mk_store_batch_commit(b)) != 0)
			die("commit", r);
		double tw = now() - t0;
		t0 = now();
		bool noread = argc > 4 && strcmp(argv[4], "noread") == 0;
		if (!noread && (r = mk_store_body_read(st, m.sha, NULL, NULL)) != 0)
			die("read", r);
		printf("stream: %ld MB body written in %.2f s, read+verified in %.2f s, batch peak %zu bytes\n", mbytes,
		       tw, now() - t0, peak);
		mk_free(chunk);
	}
	mk_store_batch_free(&b);
	mk_store_close(&st);
	return 0;
}
