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
 *   store_bench files DIR EMLDIR [LEVEL [THREADS [BATCH]]]
 *                                        every regular file of EMLDIR (e.g. the
 *                                        .eml files of tests/fixtures/corpus.py),
 *                                        in name order, in 64 KiB writes, BATCH
 *                                        (100) per commit, zlib LEVEL (6),
 *                                        THREADS compression threads (2; 0 =
 *                                        inline): wall, CPU, data.mdb size vs
 *                                        raw and vs gzip -6 of the
 *                                        concatenation (zlib, in process)
 *   store_bench zlab EMLDIR LEVEL MODE [MEMLEVEL [WBITS [STRATEGY]]]
 *                                        no store: compresses every file of
 *                                        EMLDIR on its own, on this thread,
 *                                        and reports CPU s/MB (compression
 *                                        only; median of 3 passes), output
 *                                        bytes vs gzip -6 of the
 *                                        concatenation, and the decode speed.
 *                                        MODE: zlib (codec ZLIB), dict (zlib
 *                                        + dictionary 1), mz1 (codec MZ1:
 *                                        dictionary, base64 decoded,
 *                                        incompressible runs stored),
 *                                        mz1-nodetect, mz1-nodict;
 *                                        STRATEGY 0 default, 1 filtered,
 *                                        2 huffman-only, 3 rle
 * DIR must not exist yet (a fresh store each run).
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "store_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads a whole file into *buf (grown as needed). */
static size_t read_file(const char *path, uint8_t **buf, size_t *cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	size_t n = 0;
	for (;;) {
		if (*cap - n < 65536) {
			*cap = *cap ? *cap * 2 : 1 << 20;
			*buf = mk_xrealloc(*buf, *cap);
		}
		ssize_t k = read(fd, *buf + n, *cap - n);
		if (k < 0) {
			perror(path);
			exit(1);
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	return n;
}

/* gzip -6 of the concatenation, in process (the 10-byte gzip header
 * without a file name: `gzip -6 <cat` would add none either). */
struct gz {
	z_stream zs;
	uint8_t out[65536];
	uint64_t total;
};

static void gz_feed(struct gz *g, const uint8_t *p, size_t n, int flush)
{
	g->zs.next_in = (Bytef *)(uintptr_t)p;
	g->zs.avail_in = (uInt)n;
	int zr;
	do {
		g->zs.next_out = g->out;
		g->zs.avail_out = sizeof(g->out);
		zr = deflate(&g->zs, flush);
		g->total += sizeof(g->out) - g->zs.avail_out;
	} while (g->zs.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
}

/* Names of the regular files of dir, sorted; contents loaded. */
static size_t load_dir(const char *emldir, uint8_t ***data_r, size_t **lens_r, uint64_t *raw_r)
{
	DIR *d = opendir(emldir);
	if (d == NULL) {
		perror(emldir);
		exit(1);
	}
	char **names = NULL;
	size_t n_names = 0, cap_names = 0;
	for (struct dirent *de; (de = readdir(d)) != NULL;) {
		if (de->d_name[0] == '.')
			continue;
		char *path = mk_xasprintf("%s/%s", emldir, de->d_name);
		struct stat sb;
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			mk_free(path);
			continue;
		}
		if (n_names == cap_names) {
			cap_names = cap_names ? cap_names * 2 : 256;
			names = mk_xrealloc(names, cap_names * sizeof(*names));
		}
		names[n_names++] = path;
	}
	closedir(d);
	if (n_names > 0)
		qsort(names, n_names, sizeof(*names), name_cmp);
	uint8_t **data = mk_xcalloc(n_names ? n_names : 1, sizeof(*data));
	size_t *lens = mk_xcalloc(n_names ? n_names : 1, sizeof(*lens));
	*raw_r = 0;
	for (size_t i = 0; i < n_names; i++) {
		size_t cap = 0;
		lens[i] = read_file(names[i], &data[i], &cap);
		*raw_r += lens[i];
		mk_free(names[i]);
	}
	mk_free(names);
	*data_r = data;
	*lens_r = lens;
	return n_names;
}

struct zlab_sink {
	z_stream zs;
	uint8_t *out;
	size_t cap;
	uint64_t total;
};

/* Output goes to a scratch buffer; only its size counts. */
static void zlab_drain(struct zlab_sink *k)
{
	k->total += k->cap - k->zs.avail_out;
	k->zs.next_out = k->out;
	k->zs.avail_out = (uInt)k->cap;
}

static int zlab_feed(void *ud, const uint8_t *p, size_t n)
{
	struct zlab_sink *k = ud;
	k->zs.next_in = (Bytef *)(uintptr_t)p;
	k->zs.avail_in = (uInt)n;
	do {
		if (deflate(&k->zs, Z_NO_FLUSH) == Z_STREAM_ERROR)
			return MK_EIO;
		zlab_drain(k);
	} while (k->zs.avail_in != 0);
	return 0;
}

static int zlab_level(void *ud, int level)
{
	struct zlab_sink *k = ud;
	int zr;
	while ((zr = deflateParams(&k->zs, level, Z_DEFAULT_STRATEGY)) == Z_BUF_ERROR)
		zlab_drain(k);
	zlab_drain(k);
	return zr == Z_OK ? 0 : MK_EIO;
}

/* Appends (the buffer is big enough for the whole body). */
static int grow_feed(void *ud, const uint8_t *p, size_t n)
{
	struct zlab_sink *k = ud;
	k->zs.next_in = (Bytef *)(uintptr_t)p;
	k->zs.avail_in = (uInt)n;
	int zr = deflate(&k->zs, Z_NO_FLUSH);
	return zr != Z_STREAM_ERROR && k->zs.avail_in == 0 ? 0 : MK_EIO;
}

static int grow_level(void *ud, int level)
{
	struct zlab_sink *k = ud;
	return deflateParams(&k->zs, level, Z_DEFAULT_STRATEGY) == Z_OK ? 0 : MK_EIO;
}

static int bench_zlab(int argc, char **argv)
{
	const char *emldir = argv[2];
	int level = (int)strtol(argv[3], NULL, 10);
	const char *mode = argv[4];
	int memlevel = argc > 5 ? (int)strtol(argv[5], NULL, 10) : 8;
	int wbits = argc > 6 ? (int)strtol(argv[6], NULL, 10) : 15;
	int strategy = argc > 7 ? (int)strtol(argv[7], NULL, 10) : 0;
	bool mz = strncmp(mode, "mz1", 3) == 0;
	bool dict = strcmp(mode, "dict") == 0 || strcmp(mode, "mz1") == 0 || strcmp(mode, "mz1-nodetect") == 0;
	if (!mz && strcmp(mode, "zlib") != 0 && strcmp(mode, "dict") != 0) {
		fprintf(stderr, "store_bench: unknown mode %s\n", mode);
		return 2;
	}
	mk__store_test_mz_detect(strcmp(mode, "mz1-nodetect") != 0);
	uint8_t **data;
	size_t *lens;
	uint64_t raw;
	size_t n = load_dir(emldir, &data, &lens, &raw);
	struct zlab_sink k;
	memset(&k, 0, sizeof(k));
	k.zs.zalloc = mk__store_zalloc;
	k.zs.zfree = mk__store_zfree;
	if (deflateInit2(&k.zs, level, Z_DEFLATED, wbits, memlevel, strategy) != Z_OK)
		die("deflateInit2", MK_EINVAL);
	k.cap = 256 * 1024;
	k.out = mk_xmalloc(k.cap);
	struct mk__store_mzenc *enc = mk__store_mzenc_new();
	struct mk__store_zsink sink = {zlab_feed, zlab_level, &k};
	double cpus[3];
	for (int pass = 0; pass < 3; pass++) {
		k.total = 0;
		double c0 = cpu_s();
		for (size_t i = 0; i < n; i++) {
			if (deflateReset(&k.zs) != Z_OK || deflateParams(&k.zs, level, strategy) != Z_OK)
				die("reset", MK_EIO);
			if (dict && deflateSetDictionary(&k.zs, mk__store_zdict1, (uInt)mk__store_zdict1_len) != Z_OK)
				die("dict", MK_EIO);
			k.zs.next_out = k.out;
			k.zs.avail_out = (uInt)k.cap;
			if (mz) {
				mk__store_mzenc_begin(enc, level, &sink);
				if (mk__store_mzenc_write(enc, data[i], lens[i]) != 0 || mk__store_mzenc_finish(enc) != 0)
					die("mz1", MK_EIO);
			} else if (zlab_feed(&k, data[i], lens[i]) != 0) {
				die("deflate", MK_EIO);
			}
			k.zs.avail_in = 0;
			int zr;
			while ((zr = deflate(&k.zs, Z_FINISH)) == Z_OK)
				zlab_drain(&k);
			if (zr != Z_STREAM_END)
				die("finish", MK_EIO);
			zlab_drain(&k);
		}
		cpus[pass] = cpu_s() - c0;
	}
	double c = cpus[0];
	/* median of 3 */
	if ((cpus[1] <= cpus[0] && cpus[0] <= cpus[2]) || (cpus[2] <= cpus[0] && cpus[0] <= cpus[1]))
		c = cpus[0];
	else if ((cpus[0] <= cpus[1] && cpus[1] <= cpus[2]) || (cpus[2] <= cpus[1] && cpus[1] <= cpus[0]))
		c = cpus[1];
	else
		c = cpus[2];
	uint64_t runs = 0, stored_runs = 0;
	mk__store_mzenc_stats(enc, &runs, &stored_runs);
	/* Round trip (not timed) and decode speed: each body compressed into
	 * one buffer (output appended, never rewound), then decoded. */
	double dec_s = 0;
	bool rt_ok = true;
	if (mz) {
		size_t zcap = 0, ocap = 0;
		uint8_t *zb = NULL, *ob = NULL;
		for (size_t i = 0; i < n && rt_ok; i++) {
			size_t need = lens[i] + lens[i] / 4 + 65536;
			if (zcap < need) {
				zb = mk_xrealloc(zb, need);
				zcap = need;
			}
			if (ocap < lens[i] + 1) {
				ob = mk_xrealloc(ob, lens[i] + 1);
				ocap = lens[i] + 1;
			}
			struct zlab_sink kk;
			memset(&kk, 0, sizeof(kk));
			kk.zs.zalloc = mk__store_zalloc;
			kk.zs.zfree = mk__store_zfree;
			if (deflateInit2(&kk.zs, level, Z_DEFLATED, wbits, memlevel, strategy) != Z_OK ||
			    (dict ? mk__store_zstart(&kk.zs, level) : 0) != 0)
				die("init", MK_EIO);
			kk.out = zb;
			kk.cap = zcap;
			kk.zs.next_out = zb;
			kk.zs.avail_out = (uInt)zcap;
			/* cap is huge: zlab_drain would rewind, so feed directly. */
			struct mk__store_zsink s3 = {grow_feed, grow_level, &kk};
			mk__store_mzenc_begin(enc, level, &s3);
			if (mk__store_mzenc_write(enc, data[i], lens[i]) != 0 || mk__store_mzenc_finish(enc) != 0 ||
			    deflate(&kk.zs, Z_FINISH) != Z_STREAM_END)
				die("roundtrip deflate", MK_EIO);
			size_t zlen = zcap - kk.zs.avail_out;
			deflateEnd(&kk.zs);
			double c1 = cpu_s();
			struct mk__store_dec dec;
			if (mk__store_dec_init(&dec, MK__STORE_CODEC_MZ1) != 0)
				die("dec", MK_EIO);
			mk__store_dec_input(&dec, zb, zlen);
			size_t got = 0, k1 = 0;
			const char *why = NULL;
			do {
				if (mk__store_dec_out(&dec, ob + got, ocap - got, &k1, &why) != 0) {
					fprintf(stderr, "zlab: file %zu: %s\n", i, why);
					rt_ok = false;
					break;
				}
				got += k1;
			} while (k1 > 0);
			rt_ok = rt_ok && dec.done && got == lens[i] && memcmp(ob, data[i], got) == 0;
			mk__store_dec_end(&dec);
			dec_s += cpu_s() - c1;
		}
		mk_free(zb);
		mk_free(ob);
	}
	printf("zlab: %zu files, %.1f MB, level %d, %s, memLevel %d, windowBits %d, strategy %d\n", n, (double)raw / 1e6,
	       level, mode, memlevel, wbits, strategy);
	printf("zlab: cpu %.3f s (passes %.3f %.3f %.3f) = %.4f s/MB; out %llu bytes (%.2f %% of raw)", c, cpus[0],
	       cpus[1], cpus[2], c / ((double)raw / 1e6), (unsigned long long)k.total,
	       100.0 * (double)k.total / (double)raw);
	if (mz)
		printf("; base64 runs %llu, stored %llu", (unsigned long long)runs / 3, (unsigned long long)stored_runs / 3);
	printf("\n");
	if (mz)
		printf("zlab: round trip %s; decode (inflate + mz1) %.4f s/MB\n", rt_ok ? "byte-exact" : "FAILED",
		       dec_s / ((double)raw / 1e6));
	struct gz g;
	memset(&g, 0, sizeof(g));
	g.zs.zalloc = mk__store_zalloc;
	g.zs.zfree = mk__store_zfree;
	if (deflateInit2(&g.zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		die("gzip", MK_EIO);
	for (size_t i = 0; i < n; i++)
		gz_feed(&g, data[i], lens[i], Z_NO_FLUSH);
	gz_feed(&g, NULL, 0, Z_FINISH);
	deflateEnd(&g.zs);
	printf("zlab: gzip -6 of the concatenation %llu bytes; out / gzip -6 = %.3f\n", (unsigned long long)g.total,
	       (double)k.total / (double)g.total);
	mk__store_mzenc_free(&enc);
	deflateEnd(&k.zs);
	mk_free(k.out);
	for (size_t i = 0; i < n; i++)
		mk_free(data[i]);
	mk_free(data);
	mk_free(lens);
	return 0;
}

static int bench_files(struct mk_store *st, struct mk_store_batch *b, uint32_t acc, uint32_t mbid,
		       const char *storedir, int argc, char **argv)
{
	const char *emldir = argv[3];
	int level = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 6;
	long threads = argc > 5 ? strtol(argv[5], NULL, 10) : 2;
	long per = argc > 6 ? strtol(argv[6], NULL, 10) : 100;
	int r = mk_store_set_threads(st, (unsigned)threads);
	if (r != 0)
		die("threads", r);
	/* Files are read (page cache) before the clock starts: store cost only. */
	uint8_t **data = NULL;
	size_t *lens = NULL;
	uint64_t raw = 0;
	size_t n_names = load_dir(emldir, &data, &lens, &raw);
	double t0 = now(), c0 = cpu_s(), tcommit = 0;
	for (size_t i = 0; i < n_names; i++) {
		struct mk_store_body *w = mk_store_body_begin(b);
		struct mk_store_msg m;
		memset(&m, 0, sizeof(m));
		for (size_t off = 0; off < lens[i]; off += 65536) {
			size_t k = lens[i] - off < 65536 ? lens[i] - off : 65536;
			if ((r = mk_store_body_write(w, data[i] + off, k)) != 0)
				die("write", r);
		}
		if ((r = mk_store_body_finish(w, m.sha, &m.raw_size)) != 0)
			die("finish", r);
		m.account = acc;
		m.mailbox = mbid;
		m.uidvalidity = 1;
		m.uid = (uint32_t)i + 1;
		if ((r = mk_store_batch_put_message(b, &m)) != 0)
			die("put", r);
		if ((long)(i + 1) % per == 0 || i + 1 == n_names) {
			double tc = now();
			if ((r = mk_store_batch_commit(b)) != 0)
				die("commit", r);
			tcommit += now() - tc;
		}
	}
	double wall = now() - t0, cpu = cpu_s() - c0;
	struct gz g;
	memset(&g, 0, sizeof(g));
	g.zs.zalloc = mk__store_zalloc;
	g.zs.zfree = mk__store_zfree;
	if (deflateInit2(&g.zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		die("gzip", MK_EIO);
	for (size_t i = 0; i < n_names; i++)
		gz_feed(&g, data[i], lens[i], Z_NO_FLUSH);
	gz_feed(&g, NULL, 0, Z_FINISH);
	deflateEnd(&g.zs);
	struct mk_store_stats s;
	if ((r = mk_store_stats(st, &s)) != 0)
		die("stats", r);
	uint64_t jobs, helped, waits;
	mk__store_test_pool_stats(st, &jobs, &helped, &waits);
	printf("files: %zu files, %.1f MB raw, level %d, %ld threads, batches of %ld\n", n_names, (double)raw / 1e6,
	       level, threads, per);
	printf("time: wall %.3f s (%.3f s in commits), cpu %.3f s, %.1f MB/s raw\n", wall, tcommit, cpu,
	       (double)raw / 1e6 / wall);
	printf("size: stored %llu (%.2f%% of raw), data.mdb %llu (%.2f%% of raw, +%.1f%% over stored), "
	       "gzip -6 %llu (%.2f%%); data.mdb / gzip -6 = %.3f\n",
	       (unsigned long long)s.blob_stored_bytes, 100.0 * (double)s.blob_stored_bytes / (double)raw,
	       (unsigned long long)s.file_bytes, 100.0 * (double)s.file_bytes / (double)raw,
	       100.0 * ((double)s.file_bytes / (double)s.blob_stored_bytes - 1), (unsigned long long)g.total,
	       100.0 * (double)g.total / (double)raw, (double)s.file_bytes / (double)g.total);
	printf("pool: %llu jobs (%llu on the caller's thread), %llu back-pressure waits\n",
	       (unsigned long long)jobs, (unsigned long long)helped, (unsigned long long)waits);
	(void)storedir;
	for (size_t i = 0; i < n_names; i++)
		mk_free(data[i]);
	mk_free(data);
	mk_free(lens);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && strcmp(argv[1], "zlab") == 0)
		return bench_zlab(argc, argv);
	if (argc < 3 || (strcmp(argv[1], "files") == 0 && argc < 4)) {
		fprintf(stderr, "usage: store_bench commit|stream DIR [N [BATCH] | MB]\n"
				"       store_bench files DIR EMLDIR [LEVEL [THREADS [BATCH]]]\n"
				"       store_bench zlab EMLDIR LEVEL zlib|dict|mz1|mz1-nodetect|mz1-nodict "
				"[MEMLEVEL [WBITS [STRATEGY]]]\n");
		return 2;
	}
	int zlevel = 6;
	if (strcmp(argv[1], "files") == 0 && argc > 4)
		zlevel = (int)strtol(argv[4], NULL, 10);
	struct mk_store *st;
	char *error = NULL;
	int r = mk_store_open(argv[2], zlevel, &st, &error);
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
	if (strcmp(argv[1], "files") == 0) {
		r = bench_files(st, b, acc, mb.id, argv[2], argc, argv);
		mk_store_batch_free(&b);
		mk_store_close(&st);
		return r;
	}
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
