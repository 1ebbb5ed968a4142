/* SPDX-License-Identifier: MIT */
/*
 * test_store.c - unit tests of storage/: open/create (modes, reopen, a newer
 * schema refused), accounts and mailboxes, bodies of every shape read back
 * byte-exact (empty, small, 5 MB random, 5 MB text), dedupe and refcounts
 * across mailboxes and accounts, record replacement, spilled bodies that
 * never commit, map growth from a tiny map, corruption detection, bounded
 * batch memory for a 50 MB body, and crashes at every commit of a scenario
 * (MK_TEST_HOOKS builds use MK_TEST_CRASH_AT/BEFORE; other builds _exit in
 * the child at the same points), and the compression threads: the same
 * stored bytes with 0 or 2 threads, commits while jobs run, back-pressure
 * of a full queue, close with jobs pending, crashes with jobs queued.
 * Stores live under one mkdtemp() directory removed at the end.
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_str.h"
#include "store_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];
static unsigned dir_seq;

/* ---- helpers ---- */

/* xorshift64*: deterministic bodies (rand() is banned). */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ull;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t s = seed | 1;
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rng_next(&s) >> 56);
}

/* Mail-like text: words from a small vocabulary, lines of ~70 chars. */
static void fill_text(uint8_t *p, size_t n, uint64_t seed)
{
	static const char *words[] = {"the",     "meeting", "Outlook", "invoice", "please", "regards",
				      "tomorrow", "report",  "attached", "project", "budget", "review",
				      "thanks",   "Subject:", "quarter", "numbers", "team",   "update"};
	uint64_t s = seed | 1;
	size_t i = 0, col = 0;
	while (i < n) {
		const char *w = words[rng_next(&s) % (sizeof(words) / sizeof(words[0]))];
		for (const char *c = w; *c != '\0' && i < n; c++, col++)
			p[i++] = (uint8_t)*c;
		if (i < n) {
			p[i++] = col > 70 ? '\n' : ' ';
			col = col > 70 ? 0 : col + 1;
		}
	}
}

static char *new_dir(const char *what)
{
	return mk_xasprintf("%s/%s-%u", tmpdir, what, ++dir_seq);
}

static struct mk_store *open_ok(const char *dir, int zlevel)
{
	struct mk_store *st = NULL;
	char *error = NULL;
	int r = mk_store_open(dir, zlevel, &st, &error);
	if (r != 0)
		print_error("open %s: %s\n", dir, error ? error : "?");
	assert_int_equal(r, 0);
	assert_null(error);
	assert_non_null(st);
	return st;
}

/* Streams a body into the batch in `piece`-byte writes. */
static void put_body(struct mk_store_batch *b, const uint8_t *p, size_t n, size_t piece, uint8_t sha[32],
		     uint64_t *raw_r)
{
	struct mk_store_body *w = mk_store_body_begin(b);
	for (size_t off = 0; off < n; off += piece)
		assert_int_equal(mk_store_body_write(w, p + off, n - off < piece ? n - off : piece), 0);
	uint64_t raw = 0;
	assert_int_equal(mk_store_body_finish(w, sha, &raw), 0);
	assert_int_equal(raw, n);
	if (raw_r != NULL)
		*raw_r = raw;
}

static void msg_init(struct mk_store_msg *m, uint32_t acc, uint32_t mb, uint32_t uv, uint32_t uid, const uint8_t *sha,
		     uint64_t raw)
{
	memset(m, 0, sizeof(*m));
	m->account = acc;
	m->mailbox = mb;
	m->uidvalidity = uv;
	m->uid = uid;
	memcpy(m->sha, sha, 32);
	m->raw_size = raw;
	m->server_size = (uint32_t)raw;
	m->internaldate = 1732790000 + uid;
	m->internaldate_tz = -300;
	m->flags = MK_STORE_FLAG_SEEN;
}

struct collect {
	uint8_t *p;
	size_t n, cap;
};

static int collect_cb(void *ud, const uint8_t *p, size_t n)
{
	struct collect *c = ud;
	if (c->n + n > c->cap) {
		c->cap = (c->n + n) * 2;
		c->p = mk_xrealloc(c->p, c->cap);
	}
	memcpy(c->p + c->n, p, n);
	c->n += n;
	return 0;
}

static void assert_body(struct mk_store *st, const uint8_t *sha, const uint8_t *want, size_t n)
{
	struct collect c = {NULL, 0, 0};
	assert_int_equal(mk_store_body_read(st, sha, collect_cb, &c), 0);
	assert_int_equal(c.n, n);
	if (n > 0)
		assert_memory_equal(c.p, want, n);
	mk_free(c.p);
}

static void problem_cb(void *ud, const char *line)
{
	char *last = ud;
	if (last != NULL)
		mk_strlcpy(last, line, 256);
	print_message("verify: %s\n", line);
}

static void assert_clean(struct mk_store *st)
{
	struct mk_store_verify_report rep;
	assert_int_equal(mk_store_verify(st, &rep, problem_cb, NULL), 0);
	assert_int_equal(rep.blobs_bad, 0);
	assert_int_equal(rep.records_missing_body, 0);
	assert_int_equal(rep.refcount_errors, 0);
	assert_int_equal(rep.orphan_blobs, 0);
	assert_int_equal(rep.orphan_chunks, 0);
	uint64_t n = 1;
	assert_int_equal(mk__store_test_staging_count(st, &n), 0);
	assert_int_equal(n, 0);
}

static uint64_t refcount(struct mk_store *st, const uint8_t *sha)
{
	uint64_t r = 0;
	assert_int_equal(mk__store_test_refcount(st, sha, &r), 0);
	return r;
}

/* ---- open ---- */

static void test_open_create(void **state)
{
	char *base = new_dir("open");
	char *dir = mk_xasprintf("%s/a/b/store", base);
	struct mk_store *st = open_ok(dir, 6);
	struct stat sb;
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	char *sub = mk_xasprintf("%s/a", base);
	assert_int_equal(stat(sub, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	mk_free(sub);
	char *data = mk_xasprintf("%s/data.mdb", dir);
	char *lock = mk_xasprintf("%s/lock.mdb", dir);
	assert_int_equal(stat(data, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(stat(lock, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	uint32_t id = 0;
	assert_int_equal(mk_store_account(st, "work", true, &id), 0);
	assert_int_equal(id, 1);
	mk_store_close(&st);
	assert_null(st);

	/* reopen: the account is still there */
	st = open_ok(dir, 0);
	assert_int_equal(mk_store_account(st, "work", false, &id), 0);
	assert_int_equal(id, 1);
	/* a newer schema is refused, naming the path and the version */
	assert_int_equal(mk__store_test_set_schema(st, 2), 0);
	mk_store_close(&st);
	char *error = NULL;
	assert_int_equal(mk_store_open(dir, 6, &st, &error), MK_ECONFIG);
	assert_null(st);
	assert_non_null(error);
	assert_non_null(strstr(error, dir));
	assert_non_null(strstr(error, "newer mailkeep (schema 2"));
	mk_free(error);

	/* a file where the directory should be */
	char *file = mk_xasprintf("%s/file", base);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	error = NULL;
	assert_int_not_equal(mk_store_open(file, 6, &st, &error), 0);
	assert_non_null(error);
	assert_non_null(strstr(error, file));
	mk_free(error);
	mk_free(file);
	mk_free(data);
	mk_free(lock);
	mk_free(dir);
	mk_free(base);
}

/* ---- accounts and mailboxes ---- */

static int acc_cb(void *ud, const char *name, uint32_t id)
{
	char *out = ud;
	size_t len = strlen(out);
	snprintf(out + len, 256 - len, "%s=%u;", name, id);
	return 0;
}

static int mb_cb(void *ud, const struct mk_store_mailbox *mb)
{
	char *out = ud;
	size_t len = strlen(out);
	snprintf(out + len, 512 - len, "%u:%.20s;", mb->id, mb->name);
	return 0;
}

static void test_accounts_mailboxes(void **state)
{
	char *dir = new_dir("acc");
	struct mk_store *st = open_ok(dir, 6);
	uint32_t a = 0, b = 0, x = 0;
	assert_int_equal(mk_store_account(st, "personal", false, &x), MK_ENOTFOUND);
	assert_int_equal(mk_store_account(st, "personal", true, &a), 0);
	assert_int_equal(mk_store_account(st, "work", true, &b), 0);
	assert_int_equal(mk_store_account(st, "personal", true, &x), 0);
	assert_int_equal(a, 1);
	assert_int_equal(b, 2);
	assert_int_equal(x, 1);
	assert_int_equal(mk_store_account(st, "", true, &x), MK_EINVAL);
	char list[256] = "";
	assert_int_equal(mk_store_accounts(st, acc_cb, list), 0);
	assert_string_equal(list, "personal=1;work=2;");

	struct mk_store_mailbox mb, mb2;
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", false, &mb), MK_ENOTFOUND);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);
	assert_int_equal(mb.id, 1);
	assert_int_equal(mb.account, a);
	assert_int_equal(mk_store_mailbox_get(st, a, "Sent Items", true, &mb), 0);
	assert_int_equal(mb.id, 2);
	assert_int_equal(mk_store_mailbox_get(st, b, "INBOX", true, &mb), 0);
	assert_int_equal(mb.id, 1);
	assert_int_equal(mk_store_mailbox_get(st, 99, "INBOX", true, &mb), MK_ENOTFOUND);
	/* UTF-8 names and a name longer than an LMDB key */
	assert_int_equal(mk_store_mailbox_get(st, a, "Entw\xc3\xbc" "rfe", true, &mb), 0);
	assert_int_equal(mb.id, 3);
	char longname[1001];
	memset(longname, 'x', 1000);
	longname[1000] = '\0';
	assert_int_equal(mk_store_mailbox_get(st, a, longname, true, &mb), 0);
	assert_int_equal(mb.id, 4);
	longname[999] = 'y';
	assert_int_equal(mk_store_mailbox_get(st, a, longname, true, &mb), 0);
	assert_int_equal(mb.id, 5);
	longname[999] = 'x';
	assert_int_equal(mk_store_mailbox_get(st, a, longname, false, &mb), 0);
	assert_int_equal(mb.id, 4);
	assert_string_equal(mb.name, longname);

	/* progress is written through a batch */
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", false, &mb), 0);
	mb.delimiter = '/';
	mb.uidvalidity = 1234;
	mb.uidnext = 77;
	mb.highest_uid = 76;
	mb.last_sync = 1732790000;
	mb.last_flag_scan = 1732790001;
	mb.gone = true;
	struct mk_store_batch *bt = mk_store_batch_new(st);
	assert_int_equal(mk_store_batch_put_mailbox(bt, &mb), 0);
	assert_int_equal(mk_store_batch_count(bt), 1);
	assert_int_equal(mk_store_batch_commit(bt), 0);
	assert_int_equal(mk_store_batch_count(bt), 0);
	assert_int_equal(mk_store_mailbox_by_id(st, a, 1, &mb2), 0);
	assert_memory_equal(&mb, &mb2, offsetof(struct mk_store_mailbox, name));
	assert_string_equal(mb2.name, "INBOX");
	assert_int_equal(mb2.delimiter, '/');
	assert_int_equal(mb2.uidvalidity, 1234);
	assert_int_equal(mb2.uidnext, 77);
	assert_int_equal(mb2.highest_uid, 76);
	assert_int_equal(mb2.last_sync, 1732790000);
	assert_int_equal(mb2.last_flag_scan, 1732790001);
	assert_true(mb2.gone);
	assert_int_equal(mk_store_mailbox_by_id(st, a, 42, &mb2), MK_ENOTFOUND);

	/* rename moves the name index */
	mk_strlcpy(mb.name, "Inbox-renamed", sizeof(mb.name));
	assert_int_equal(mk_store_batch_put_mailbox(bt, &mb), 0);
	assert_int_equal(mk_store_batch_commit(bt), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", false, &mb2), MK_ENOTFOUND);
	assert_int_equal(mk_store_mailbox_get(st, a, "Inbox-renamed", false, &mb2), 0);
	assert_int_equal(mb2.id, 1);
	mk_store_batch_free(&bt);

	char mbl[512] = "";
	assert_int_equal(mk_store_mailboxes(st, a, mb_cb, mbl), 0);
	assert_string_equal(mbl, "1:Inbox-renamed;2:Sent Items;3:Entw\xc3\xbc" "rfe;4:xxxxxxxxxxxxxxxxxxxx;5:xxxxxxxxxxxxxxxxxxxx;");
	mbl[0] = '\0';
	assert_int_equal(mk_store_mailboxes(st, b, mb_cb, mbl), 0);
	assert_string_equal(mbl, "1:INBOX;");

	struct mk_store_stats s;
	assert_int_equal(mk_store_stats(st, &s), 0);
	assert_int_equal(s.accounts, 2);
	assert_int_equal(s.mailboxes, 6);
	mk_store_close(&st);
	mk_free(dir);
}

/* ---- bodies ---- */

struct uidlist {
	uint32_t uids[16];
	size_t n;
};

static int uid_cb(void *ud, const struct mk_store_msg *m)
{
	struct uidlist *l = ud;
	if (l->n < 16)
		l->uids[l->n++] = m->uid;
	return 0;
}

static void test_bodies_roundtrip(void **state)
{
	char *dir = new_dir("bodies");
	struct mk_store *st = open_ok(dir, 6);
	uint32_t acc;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &acc), 0);
	assert_int_equal(mk_store_mailbox_get(st, acc, "INBOX", true, &mb), 0);

	const size_t big = 5 * 1000 * 1000;
	uint8_t *rnd = mk_xmalloc(big), *txt = mk_xmalloc(big);
	fill_random(rnd, big, 1);
	fill_text(txt, big, 2);
	const char *small = "From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n";

	struct mk_store_batch *b = mk_store_batch_new(st);
	uint8_t sha[4][32];
	uint64_t raw;
	put_body(b, (const uint8_t *)small, strlen(small), 7, sha[0], &raw);
	put_body(b, (const uint8_t *)"", 0, 1, sha[1], &raw);
	put_body(b, rnd, big, 65536, sha[2], &raw);
	put_body(b, txt, big, 100000, sha[3], &raw);
	const size_t sizes[4] = {strlen(small), 0, big, big};
	struct mk_store_msg m;
	for (uint32_t i = 0; i < 4; i++) {
		msg_init(&m, acc, mb.id, 7, 10 + i, sha[i], sizes[i]);
		if (i == 1)
			mk_strlcpy(m.keywords, "$Forwarded Junk", sizeof(m.keywords));
		assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	}
	/* a record naming an unknown body is refused */
	uint8_t nosha[32] = {1};
	msg_init(&m, acc, mb.id, 7, 99, nosha, 1);
	assert_int_equal(mk_store_batch_put_message(b, &m), MK_ENOTFOUND);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(mk_store_batch_bytes(b) < 64 * 1024, true);
	mk_store_batch_free(&b);

	assert_body(st, sha[0], (const uint8_t *)small, sizes[0]);
	assert_body(st, sha[1], NULL, 0);
	assert_body(st, sha[2], rnd, big);
	assert_body(st, sha[3], txt, big);
	assert_true(mk_store_have_body(st, sha[2]));
	assert_false(mk_store_have_body(st, nosha));
	assert_int_equal(mk_store_body_read(st, nosha, collect_cb, NULL), MK_ENOTFOUND);

	int codec;
	uint32_t nch;
	assert_int_equal(mk__store_test_blob_info(st, sha[1], &codec, &nch), 0);
	assert_int_equal(codec, MK__STORE_CODEC_STORED);
	assert_int_equal(nch, 0);
	assert_int_equal(mk__store_test_blob_info(st, sha[0], &codec, &nch), 0);
	/* tiny, but its header lines are in the preset dictionary */
	assert_int_equal(codec, MK__STORE_CODEC_MZ1);
	assert_int_equal(mk__store_test_blob_info(st, sha[2], &codec, &nch), 0);
	assert_int_equal(codec, MK__STORE_CODEC_MZ1); /* spilled: kept compressed */
	assert_true(nch >= 5);
	assert_int_equal(mk__store_test_blob_info(st, sha[3], &codec, &nch), 0);
	assert_int_equal(codec, MK__STORE_CODEC_MZ1);

	struct mk_store_msg got;
	assert_int_equal(mk_store_message_get(st, acc, mb.id, 7, 11, &got), 0);
	assert_string_equal(got.keywords, "$Forwarded Junk");
	assert_int_equal(got.internaldate, 1732790011);
	assert_int_equal(got.internaldate_tz, -300);
	assert_int_equal(got.flags, MK_STORE_FLAG_SEEN);
	assert_memory_equal(got.sha, sha[1], 32);
	/* generated Maildir unique: "<time>.M<usec>P<pid>Q<n>.<host>" */
	assert_non_null(strstr(got.unique, ".M"));
	assert_non_null(strstr(got.unique, "Q"));
	char pidpart[32];
	snprintf(pidpart, sizeof(pidpart), "P%ldQ", (long)getpid());
	assert_non_null(strstr(got.unique, pidpart));
	assert_int_equal(mk_store_message_get(st, acc, mb.id, 7, 99, &got), MK_ENOTFOUND);

	struct uidlist l = {{0}, 0};
	assert_int_equal(mk_store_messages(st, acc, mb.id, 0, uid_cb, &l), 0);
	assert_int_equal(l.n, 4);
	assert_int_equal(l.uids[0], 10);
	assert_int_equal(l.uids[3], 13);
	l.n = 0;
	assert_int_equal(mk_store_messages(st, acc, mb.id, 8, uid_cb, &l), 0);
	assert_int_equal(l.n, 0);

	struct mk_store_stats s;
	assert_int_equal(mk_store_stats(st, &s), 0);
	assert_int_equal(s.messages, 4);
	assert_int_equal(s.blobs, 4);
	assert_int_equal(s.raw_bytes, 2 * big + strlen(small));
	assert_true(s.blob_stored_bytes < big + big / 2); /* text compresses */
	assert_true(s.file_bytes > 0);
	assert_clean(st);
	mk_store_close(&st);
	mk_free(rnd);
	mk_free(txt);
	mk_free(dir);
}

/* ---- dedupe and refcounts ---- */

static void test_dedupe(void **state)
{
	char *dir = new_dir("dedupe");
	struct mk_store *st = open_ok(dir, 6);
	uint32_t a1, a2;
	struct mk_store_mailbox in1, arch1, in2;
	assert_int_equal(mk_store_account(st, "one", true, &a1), 0);
	assert_int_equal(mk_store_account(st, "two", true, &a2), 0);
	assert_int_equal(mk_store_mailbox_get(st, a1, "INBOX", true, &in1), 0);
	assert_int_equal(mk_store_mailbox_get(st, a1, "Archive", true, &arch1), 0);
	assert_int_equal(mk_store_mailbox_get(st, a2, "INBOX", true, &in2), 0);

	const size_t n = 40000;
	uint8_t *body = mk_xmalloc(n);
	fill_text(body, n, 3);
	uint8_t sha[32], sha2[32];
	struct mk_store_msg m;

	/* twice within one batch (two mailboxes of one account) */
	struct mk_store_batch *b = mk_store_batch_new(st);
	put_body(b, body, n, 4096, sha, NULL);
	msg_init(&m, a1, in1.id, 1, 1, sha, n);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	put_body(b, body, n, 999, sha2, NULL);
	assert_memory_equal(sha, sha2, 32);
	msg_init(&m, a1, arch1.id, 1, 5, sha, n);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(refcount(st, sha), 2);

	/* then in another account, in a later batch */
	put_body(b, body, n, n, sha2, NULL);
	msg_init(&m, a2, in2.id, 9, 3, sha, n);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(refcount(st, sha), 3);
	/* a record may also name a stored body without a new copy */
	msg_init(&m, a2, in2.id, 9, 4, sha, n);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(refcount(st, sha), 4);
	mk_store_batch_free(&b);

	struct mk_store_stats s;
	assert_int_equal(mk_store_stats(st, &s), 0);
	assert_int_equal(s.messages, 4);
	assert_int_equal(s.blobs, 1);
	assert_int_equal(s.raw_bytes, 4 * n);
	assert_int_equal(s.blob_raw_bytes, n);
	assert_true(s.blob_stored_bytes < n / 2);
	uint64_t chunks = 0;
	assert_int_equal(mk__store_test_chunk_count(st, &chunks), 0);
	assert_int_equal(chunks, 1);
	assert_body(st, sha, body, n);
	assert_clean(st);
	mk_store_close(&st);
	mk_free(body);
	mk_free(dir);
}

static void test_replace(void **state)
{
	char *dir = new_dir("replace");
	struct mk_store *st = open_ok(dir, 6);
	uint32_t a;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &a), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);
	uint8_t b1[3000], b2[3000], s1[32], s2[32];
	fill_text(b1, sizeof(b1), 10);
	fill_text(b2, sizeof(b2), 12);
	struct mk_store_batch *b = mk_store_batch_new(st);
	struct mk_store_msg m;
	put_body(b, b1, sizeof(b1), 512, s1, NULL);
	msg_init(&m, a, mb.id, 1, 1, s1, sizeof(b1));
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	msg_init(&m, a, mb.id, 1, 2, s1, sizeof(b1));
	mk_strlcpy(m.unique, "1700000000.M1P2Q3.host", sizeof(m.unique));
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(refcount(st, s1), 2);
	struct mk_store_msg before;
	assert_int_equal(mk_store_message_get(st, a, mb.id, 1, 1, &before), 0);

	/* uid 1 now names b2: s1 down to 1, s2 at 1, unique kept */
	put_body(b, b2, sizeof(b2), 512, s2, NULL);
	msg_init(&m, a, mb.id, 1, 1, s2, sizeof(b2));
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(refcount(st, s1), 1);
	assert_int_equal(refcount(st, s2), 1);
	struct mk_store_msg after;
	assert_int_equal(mk_store_message_get(st, a, mb.id, 1, 1, &after), 0);
	assert_string_equal(after.unique, before.unique);
	assert_memory_equal(after.sha, s2, 32);

	/* same sha again: no refcount change */
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(refcount(st, s2), 1);

	/* flags only */
	m.flags = MK_STORE_FLAG_FLAGGED | MK_STORE_FLAG_ANSWERED;
	m.state = MK_STORE_MSG_GONE;
	m.gone_at = 1800000000;
	memset(m.sha, 0, 32); /* ignored by an update */
	assert_int_equal(mk_store_batch_update_message(b, &m), 0);
	m.uid = 55;
	assert_int_equal(mk_store_batch_update_message(b, &m), MK_ENOTFOUND);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(mk_store_message_get(st, a, mb.id, 1, 1, &after), 0);
	assert_int_equal(after.flags, MK_STORE_FLAG_FLAGGED | MK_STORE_FLAG_ANSWERED);
	assert_int_equal(after.state, MK_STORE_MSG_GONE);
	assert_memory_equal(after.sha, s2, 32);
	struct mk_store_stats s;
	assert_int_equal(mk_store_stats(st, &s), 0);
	assert_int_equal(s.messages_gone, 1);

	/* uid 2 (explicit unique) moves to s2: s1 reaches 0 and is deleted with its chunks */
	msg_init(&m, a, mb.id, 1, 2, s2, sizeof(b2));
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	uint64_t r;
	assert_int_equal(mk__store_test_refcount(st, s1, &r), MK_ENOTFOUND);
	assert_false(mk_store_have_body(st, s1));
	assert_int_equal(refcount(st, s2), 2);
	assert_int_equal(mk_store_message_get(st, a, mb.id, 1, 2, &after), 0);
	assert_string_equal(after.unique, "1700000000.M1P2Q3.host");
	uint64_t chunks = 0;
	assert_int_equal(mk__store_test_chunk_count(st, &chunks), 0);
	assert_int_equal(chunks, 1);

	/* a body finished but never referenced is dropped by the commit */
	uint8_t s3[32];
	put_body(b, b1, 100, 100, s3, NULL);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_false(mk_store_have_body(st, s3));
	mk_store_batch_free(&b);
	assert_clean(st);
	mk_store_close(&st);
	mk_free(dir);
}

/* ---- spilled bodies that never commit ---- */

static void test_spill_abort(void **state)
{
	char *dir = new_dir("spill");
	struct mk_store *st = open_ok(dir, 1);
	uint32_t a;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &a), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);
	const size_t n = 3 * 1024 * 1024;
	uint8_t *rnd = mk_xmalloc(n);
	fill_random(rnd, n, 5);
	uint64_t cnt = 0;

	/* aborted body */
	struct mk_store_batch *b = mk_store_batch_new(st);
	struct mk_store_body *w = mk_store_body_begin(b);
	assert_int_equal(mk_store_body_write(w, rnd, n), 0);
	assert_int_equal(mk__store_test_staging_count(st, &cnt), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(mk__store_test_chunk_count(st, &cnt), 0);
	assert_true(cnt >= 2);
	mk_store_body_abort(w);
	assert_int_equal(mk__store_test_staging_count(st, &cnt), 0);
	assert_int_equal(cnt, 0);
	assert_int_equal(mk__store_test_chunk_count(st, &cnt), 0);
	assert_int_equal(cnt, 0);

	/* finished, spilled, batch freed without commit */
	uint8_t sha[32];
	put_body(b, rnd, n, 65536, sha, NULL);
	struct mk_store_msg m;
	msg_init(&m, a, mb.id, 1, 1, sha, n);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk__store_test_staging_count(st, &cnt), 0);
	assert_int_equal(cnt, 1);
	mk_store_batch_free(&b);
	mk_store_close(&st);

	/* a process that dies with a spilled body in its batch */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct mk_store *cst = open_ok(dir, 1);
		struct mk_store_batch *cb = mk_store_batch_new(cst);
		struct mk_store_body *cw = mk_store_body_begin(cb);
		if (mk_store_body_write(cw, rnd, n) != 0)
			_exit(1);
		_exit(42);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 42);

	st = open_ok(dir, 1); /* frees the staging chunks */
	assert_false(mk_store_have_body(st, sha));
	assert_int_equal(mk_store_message_get(st, a, mb.id, 1, 1, &m), MK_ENOTFOUND);
	assert_int_equal(mk__store_test_chunk_count(st, &cnt), 0);
	assert_int_equal(cnt, 0);
	assert_clean(st);
	mk_store_close(&st);
	mk_free(rnd);
	mk_free(dir);
}

/* ---- map growth ---- */

static void test_map_growth(void **state)
{
	char *dir = new_dir("grow");
	mk__store_test_set_initial_map(256 * 1024);
	struct mk_store *st = open_ok(dir, 1);
	mk__store_test_set_initial_map(0);
	uint32_t a;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &a), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);

	/* 20 MB of incompressible bodies: 10 batches of 10 x 200 KB, then a
	 * 3 MB body whose staging chunks also hit the map limit */
	const size_t n = 200 * 1000;
	uint8_t *body = mk_xmalloc(3 * 1000 * 1000);
	struct mk_store_batch *b = mk_store_batch_new(st);
	uint8_t shas[101][32];
	uint32_t uid = 1;
	for (int batch = 0; batch < 10; batch++) {
		for (int i = 0; i < 10; i++, uid++) {
			fill_random(body, n, (uint64_t)uid * 2);
			put_body(b, body, n, 65536, shas[uid], NULL);
			struct mk_store_msg m;
			msg_init(&m, a, mb.id, 1, uid, shas[uid], n);
			assert_int_equal(mk_store_batch_put_message(b, &m), 0);
		}
		assert_int_equal(mk_store_batch_commit(b), 0);
	}
	uint64_t g1 = mk__store_test_growths(st);
	print_message("map growths for 20 MB: %llu\n", (unsigned long long)g1);
	assert_true(g1 >= 5); /* 256 KiB -> >= 32 MiB */
	fill_random(body, 3000000, 999);
	uint8_t bigsha[32];
	put_body(b, body, 3000000, 65536, bigsha, NULL);
	struct mk_store_msg m;
	msg_init(&m, a, mb.id, 1, 1000, bigsha, 3000000);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	mk_store_batch_free(&b);
	assert_body(st, bigsha, body, 3000000);
	for (uint32_t i = 1; i <= 100; i += 33) {
		fill_random(body, n, (uint64_t)i * 2);
		assert_body(st, shas[i], body, n);
	}
	assert_clean(st);
	mk_store_close(&st);

	/* a big store reopens with its size, whatever the initial map */
	mk__store_test_set_initial_map(256 * 1024);
	st = open_ok(dir, 1);
	mk__store_test_set_initial_map(0);
	fill_random(body, 3000000, 999);
	assert_body(st, bigsha, body, 3000000);
	struct mk_store_stats s;
	assert_int_equal(mk_store_stats(st, &s), 0);
	assert_int_equal(s.messages, 101);
	mk_store_close(&st);
	mk_free(body);
	mk_free(dir);
}

/* ---- corruption ---- */

static void test_corruption(void **state)
{
	char *dir = new_dir("corrupt");
	struct mk_store *st = open_ok(dir, 6);
	uint32_t a;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &a), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);
	const size_t n = 300000;
	uint8_t *txt = mk_xmalloc(n), *rnd = mk_xmalloc(n);
	fill_text(txt, n, 21);
	fill_random(rnd, n, 22);
	uint8_t st_sha[32], z_sha[32];
	struct mk_store_batch *b = mk_store_batch_new(st);
	put_body(b, txt, n, 65536, z_sha, NULL);
	put_body(b, rnd, n, 65536, st_sha, NULL);
	struct mk_store_msg m;
	msg_init(&m, a, mb.id, 1, 1, z_sha, n);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	msg_init(&m, a, mb.id, 1, 2, st_sha, n);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	mk_store_batch_free(&b);
	assert_clean(st);

	/* a flipped byte in the zlib stream and one in a stored body */
	assert_int_equal(mk__store_test_corrupt_chunk(st, z_sha, 0, 5000), 0);
	assert_int_equal(mk__store_test_corrupt_chunk(st, st_sha, 0, 12345), 0);
	struct collect c = {NULL, 0, 0};
	assert_int_equal(mk_store_body_read(st, z_sha, collect_cb, &c), MK_ECORRUPT);
	c.n = 0;
	assert_int_equal(mk_store_body_read(st, st_sha, collect_cb, &c), MK_ECORRUPT);
	mk_free(c.p);
	struct mk_store_verify_report rep;
	char last[256] = "";
	assert_int_equal(mk_store_verify(st, &rep, problem_cb, last), 0);
	assert_int_equal(rep.blobs_bad, 2);
	assert_int_equal(rep.blobs_ok, 0);
	assert_int_equal(rep.records_ok, 2);
	assert_int_equal(rep.refcount_errors, 0);
	assert_non_null(strstr(last, "blob "));
	assert_non_null(strstr(last, "(300000 bytes)"));
	mk_store_close(&st);
	mk_free(txt);
	mk_free(rnd);
	mk_free(dir);
}

/* ---- bounded memory ---- */

struct regen {
	uint64_t seed;
	uint64_t off;
	bool same;
};

static int regen_cb(void *ud, const uint8_t *p, size_t n)
{
	struct regen *r = ud;
	for (size_t i = 0; i < n; i++, r->off++) {
		uint8_t want = (uint8_t)(rng_next(&r->seed) >> 56);
		if (p[i] != want)
			r->same = false;
	}
	return 0;
}

static void test_memory_bound(void **state)
{
	char *dir = new_dir("mem");
	struct mk_store *st = open_ok(dir, 1);
	uint32_t a;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &a), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);
	struct mk_store_batch *b = mk_store_batch_new(st);
	struct mk_store_body *w = mk_store_body_begin(b);
	const size_t total = 50u * 1000 * 1000;
	uint8_t buf[65536];
	uint64_t s = 77 | 1;
	size_t peak = 0;
	for (size_t off = 0; off < total; off += sizeof(buf)) {
		size_t k = total - off < sizeof(buf) ? total - off : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = (uint8_t)(rng_next(&s) >> 56);
		assert_int_equal(mk_store_body_write(w, buf, k), 0);
		size_t bytes = mk_store_batch_bytes(b);
		if (bytes > peak)
			peak = bytes;
		assert_true(bytes < 2u * 1024 * 1024);
	}
	uint8_t sha[32];
	uint64_t raw;
	assert_int_equal(mk_store_body_finish(w, sha, &raw), 0);
	assert_int_equal(raw, total);
	assert_true(mk_store_batch_bytes(b) < 2u * 1024 * 1024);
	print_message("batch peak for a 50 MB body: %zu bytes\n", peak);
	struct mk_store_msg m;
	msg_init(&m, a, mb.id, 1, 1, sha, total);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	mk_store_batch_free(&b);
	struct regen r = {77 | 1, 0, true};
	assert_int_equal(mk_store_body_read(st, sha, regen_cb, &r), 0);
	assert_int_equal(r.off, total);
	assert_true(r.same);
	mk_store_close(&st);
	mk_free(dir);
}

/* ---- crashes ---- */

/* The scenario: 5 batches; batch i puts 3 records (uid 10i+1..3), one with
 * a body spilled past 1 MiB, one re-using the previous batch's body, plus
 * mailbox progress; batch 4 replaces a record. A last, uncommitted batch
 * holds a spilled body. Returns the number of commits done. */
#define SCENARIO_COMMITS 5

static int scenario(const char *dir, int die_after, int die_before)
{
	struct mk_store *st = NULL;
	char *error = NULL;
	if (mk_store_open(dir, 1, &st, &error) != 0)
		return -1;
	uint32_t a;
	struct mk_store_mailbox mb;
	if (mk_store_account(st, "a", true, &a) != 0 || mk_store_mailbox_get(st, a, "INBOX", true, &mb) != 0)
		return -1;
	const size_t big = 1500 * 1000;
	uint8_t *body = mk_xmalloc(big);
	uint8_t prev[32] = {0};
	struct mk_store_batch *b = mk_store_batch_new(st);
	for (int i = 1; i <= SCENARIO_COMMITS; i++) {
		uint8_t sha[32];
		uint64_t raw;
		struct mk_store_msg m;
		for (int j = 1; j <= 3; j++) {
			size_t n = j == 1 ? big : 5000;
			fill_random(body, n, (uint64_t)(i * 10 + j));
			struct mk_store_body *w = mk_store_body_begin(b);
			if (mk_store_body_write(w, body, n) != 0 || mk_store_body_finish(w, sha, &raw) != 0)
				return -1;
			msg_init(&m, a, mb.id, 1, (uint32_t)(i * 10 + j), j == 3 && i > 1 ? prev : sha, raw);
			if (mk_store_batch_put_message(b, &m) != 0)
				return -1;
			if (j == 2)
				memcpy(prev, sha, 32);
		}
		if (i == 4) {
			/* uid 11 now names the latest small body */
			msg_init(&m, a, mb.id, 1, 11, prev, 5000);
			if (mk_store_batch_put_message(b, &m) != 0)
				return -1;
		}
		mb.uidvalidity = 1;
		mb.highest_uid = (uint32_t)(i * 10 + 3);
		if (mk_store_batch_put_mailbox(b, &mb) != 0)
			return -1;
		if (i == die_before)
			_exit(99); /* with this batch's spilled body in staging */
		if (mk_store_batch_commit(b) != 0)
			return -1;
		if (i == die_after)
			_exit(99);
	}
	struct mk_store_body *w = mk_store_body_begin(b);
	fill_random(body, big, 1234);
	if (mk_store_body_write(w, body, big) != 0)
		return -1;
	if (die_after >= 0)
		_exit(0); /* a crash test that never crashed: still leave staging */
	mk_store_batch_free(&b);
	mk_free(body);
	mk_store_close(&st);
	return SCENARIO_COMMITS;
}

struct shalist {
	uint8_t sha[64][32];
	uint64_t raw[64];
	size_t n;
};

static int sha_cb(void *ud, const struct mk_store_msg *m)
{
	struct shalist *l = ud;
	if (l->n < 64) {
		memcpy(l->sha[l->n], m->sha, 32);
		l->raw[l->n++] = m->raw_size;
	}
	return 0;
}

static void check_after_crash(const char *dir, int commits_done)
{
	struct mk_store *st = open_ok(dir, 1);
	uint32_t a = 0;
	struct mk_store_mailbox mb;
	if (commits_done == 0) {
		/* the account and mailbox have their own transactions */
		assert_int_equal(mk_store_account(st, "a", false, &a), 0);
	} else {
		assert_int_equal(mk_store_account(st, "a", false, &a), 0);
		assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", false, &mb), 0);
		/* progress never runs ahead of the records */
		assert_int_equal(mb.highest_uid, (uint32_t)(commits_done * 10 + 3));
		/* the callback runs in a read txn: collect, then read bodies */
		struct shalist l;
		l.n = 0;
		assert_int_equal(mk_store_messages(st, a, mb.id, 0, sha_cb, &l), 0);
		assert_int_equal(l.n, (size_t)commits_done * 3);
		for (size_t i = 0; i < l.n; i++) {
			struct collect c = {NULL, 0, 0};
			assert_int_equal(mk_store_body_read(st, l.sha[i], collect_cb, &c), 0);
			assert_int_equal(c.n, l.raw[i]);
			mk_free(c.p);
		}
	}
	assert_clean(st);
	uint64_t staging = 1;
	assert_int_equal(mk__store_test_staging_count(st, &staging), 0);
	assert_int_equal(staging, 0);
	mk_store_close(&st);
}

static void run_crash(const char *env, int k, int expect_commits)
{
	char *dir = new_dir("crash");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
#ifdef MK_TEST_HOOKS
		char num[16];
		snprintf(num, sizeof(num), "%d", k);
		setenv(env, num, 1);
		scenario(dir, 0, 0);
#else
		/* Without hooks the child stops itself at the same points. */
		bool at = strcmp(env, "MK_TEST_CRASH_AT") == 0;
		scenario(dir, at ? k : 0, at ? 0 : k);
#endif
		_exit(3);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	print_message("%s=%d: child exit %d\n", env, k, WEXITSTATUS(status));
	assert_int_equal(WEXITSTATUS(status), 99);
	check_after_crash(dir, expect_commits);
	mk_free(dir);
}

static void test_crash(void **state)
{
	for (int k = 1; k <= SCENARIO_COMMITS; k++)
		run_crash("MK_TEST_CRASH_AT", k, k);
	for (int k = 1; k <= SCENARIO_COMMITS; k++)
		run_crash("MK_TEST_CRASH_BEFORE", k, k - 1);
	/* a full run for comparison */
	char *dir = new_dir("nocrash");
	assert_int_equal(scenario(dir, -1, -1), SCENARIO_COMMITS);
	check_after_crash(dir, SCENARIO_COMMITS);
	mk_free(dir);
}

/* ---- compression threads ---- */

/* Bodies of every shape the pool sees or skips: empty, tiny, text,
 * random (stored codec), just under and over the spill size, duplicates. */
#define POOL_BODIES 40

static size_t pool_body(uint8_t *p, int i)
{
	static const size_t sizes[] = {0, 1, 300, 5000, 20000, 85000, 200000, 1024 * 1024 - 1, 1024 * 1024,
				       1500 * 1000};
	size_t n = sizes[i % 10];
	if (i % 3 == 0)
		fill_random(p, n, (uint64_t)(i % 17) + 100); /* i % 17: some repeat */
	else
		fill_text(p, n, (uint64_t)(i % 17) + 200);
	return n;
}

/* Stores POOL_BODIES bodies with `threads` compression threads, committing
 * every 7; returns the store (still open) and fills shas. */
static struct mk_store *pool_fill(const char *dir, unsigned threads, uint8_t shas[POOL_BODIES][32])
{
	struct mk_store *st = open_ok(dir, 6);
	assert_int_equal(mk_store_set_threads(st, threads), 0);
	assert_int_equal(mk_store_threads(st), threads);
	uint32_t a;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &a), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);
	uint8_t *body = mk_xmalloc(1500 * 1000);
	struct mk_store_batch *b = mk_store_batch_new(st);
	for (int i = 0; i < POOL_BODIES; i++) {
		size_t n = pool_body(body, i);
		uint64_t raw;
		put_body(b, body, n, 4096 + (size_t)i * 997, shas[i], &raw);
		struct mk_store_msg m;
		msg_init(&m, a, mb.id, 1, (uint32_t)i + 1, shas[i], raw);
		assert_int_equal(mk_store_batch_put_message(b, &m), 0);
		if (i % 7 == 6)
			assert_int_equal(mk_store_batch_commit(b), 0);
	}
	assert_int_equal(mk_store_batch_commit(b), 0);
	mk_store_batch_free(&b);
	mk_free(body);
	return st;
}

static void test_threads_identical(void **state)
{
	uint8_t sha0[POOL_BODIES][32], sha2[POOL_BODIES][32];
	char *d0 = new_dir("thr0"), *d2 = new_dir("thr2");
	struct mk_store *s0 = pool_fill(d0, 0, sha0);
	struct mk_store *s2 = pool_fill(d2, 2, sha2);
	assert_int_equal(mk_store_set_threads(s2, MK__STORE_MAX_THREADS + 1), MK_EINVAL);
	uint8_t *body = mk_xmalloc(1500 * 1000);
	int codecs[2] = {0, 0};
	for (int i = 0; i < POOL_BODIES; i++) {
		assert_memory_equal(sha0[i], sha2[i], 32);
		int c0, c2;
		uint32_t n0, n2;
		assert_int_equal(mk__store_test_blob_info(s0, sha0[i], &c0, &n0), 0);
		assert_int_equal(mk__store_test_blob_info(s2, sha2[i], &c2, &n2), 0);
		assert_int_equal(c0, c2);
		assert_int_equal(n0, n2);
		codecs[c0 == MK__STORE_CODEC_MZ1]++;
		uint8_t g0[32], g2[32];
		uint64_t z0, z2;
		assert_int_equal(mk__store_test_stored_digest(s0, sha0[i], g0, &z0), 0);
		assert_int_equal(mk__store_test_stored_digest(s2, sha2[i], g2, &z2), 0);
		assert_int_equal(z0, z2);
		assert_memory_equal(g0, g2, 32);
		size_t n = pool_body(body, i);
		assert_body(s2, sha2[i], body, n);
	}
	assert_true(codecs[0] > 0 && codecs[1] > 0); /* both codecs seen */
	struct mk_store_stats a0, a2;
	assert_int_equal(mk_store_stats(s0, &a0), 0);
	assert_int_equal(mk_store_stats(s2, &a2), 0);
	assert_int_equal(a0.blobs, a2.blobs);
	assert_int_equal(a0.blob_stored_bytes, a2.blob_stored_bytes);
	assert_true(a0.blobs < POOL_BODIES); /* duplicates were deduped */
	uint64_t jobs, helped, waits;
	mk__store_test_pool_stats(s2, &jobs, &helped, &waits);
	print_message("2 threads: %llu jobs, %llu helped, %llu waits\n", (unsigned long long)jobs,
		      (unsigned long long)helped, (unsigned long long)waits);
	assert_true(jobs > 0);
	mk__store_test_pool_stats(s0, &jobs, &helped, &waits);
	assert_int_equal(jobs, 0);
	assert_clean(s0);
	assert_clean(s2);
	mk_store_close(&s0);
	mk_store_close(&s2);
	mk_free(body);
	mk_free(d0);
	mk_free(d2);
}

/* Many bodies queued, then committed while the workers are still at them
 * (and once with the workers held, so the commit runs every job itself). */
static void commit_running(bool hold)
{
	char *dir = new_dir("running");
	struct mk_store *st = open_ok(dir, 6);
	uint32_t a;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &a), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);
	const int count = 200;
	uint8_t(*shas)[32] = mk_xmalloc((size_t)count * 32);
	uint8_t *body = mk_xmalloc(40000);
	struct mk_store_batch *b = mk_store_batch_new(st);
	/* room for every job: they stay queued until released */
	mk__store_test_set_queue_max(st, 64u * 1024 * 1024);
	mk__store_test_pause(st, true);
	for (int i = 0; i < count; i++) {
		size_t n = 10000 + (size_t)(i % 10) * 3000;
		fill_text(body, n, (uint64_t)i * 2 + 1);
		put_body(b, body, n, 65536, shas[i], NULL);
		struct mk_store_msg m;
		msg_init(&m, a, mb.id, 1, (uint32_t)i + 1, shas[i], n);
		assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	}
	mb.highest_uid = (uint32_t)count;
	mb.uidvalidity = 1;
	assert_int_equal(mk_store_batch_put_mailbox(b, &mb), 0);
	/* still queued: counted at half their raw size, not lost */
	assert_true(mk_store_batch_bytes(b) > (size_t)count * 5000);
	if (!hold)
		mk__store_test_pause(st, false);
	assert_int_equal(mk_store_batch_commit(b), 0);
	uint64_t jobs, helped, waits;
	mk__store_test_pool_stats(st, &jobs, &helped, &waits);
	print_message("hold=%d: %llu jobs, %llu on the caller's thread, %llu waits\n", hold, (unsigned long long)jobs,
		      (unsigned long long)helped, (unsigned long long)waits);
	assert_int_equal(jobs, (uint64_t)count);
	assert_int_equal(waits, 0);
	if (hold)
		assert_int_equal(helped, (uint64_t)count);
	mk__store_test_pause(st, false);
	mk_store_batch_free(&b);
	for (int i = 0; i < count; i++) {
		size_t n = 10000 + (size_t)(i % 10) * 3000;
		fill_text(body, n, (uint64_t)i * 2 + 1);
		assert_body(st, shas[i], body, n);
		assert_int_equal(refcount(st, shas[i]), 1);
	}
	struct mk_store_mailbox got;
	assert_int_equal(mk_store_mailbox_by_id(st, a, mb.id, &got), 0);
	assert_int_equal(got.highest_uid, (uint32_t)count);
	assert_clean(st);
	mk_store_close(&st);
	mk_free(body);
	mk_free(shas);
	mk_free(dir);
}

static void test_commit_while_running(void **state)
{
	commit_running(false);
	commit_running(true);
}

/* A tiny queue with the workers held: every finish over the limit runs
 * the oldest queued job itself; then with the workers running. */
static void test_backpressure(void **state)
{
	char *dir = new_dir("bp");
	struct mk_store *st = open_ok(dir, 6);
	uint32_t a;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &a), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);
	mk__store_test_set_queue_max(st, 100 * 1000);
	const int count = 120;
	uint8_t(*shas)[32] = mk_xmalloc((size_t)count * 32);
	uint8_t *body = mk_xmalloc(30000);
	struct mk_store_batch *b = mk_store_batch_new(st);
	for (int round = 0; round < 2; round++) {
		mk__store_test_pause(st, round == 0);
		for (int i = round * count / 2; i < (round + 1) * count / 2; i++) {
			fill_text(body, 30000, (uint64_t)i * 2 + 7);
			put_body(b, body, 30000, 8192, shas[i], NULL);
			struct mk_store_msg m;
			msg_init(&m, a, mb.id, 1, (uint32_t)i + 1, shas[i], 30000);
			assert_int_equal(mk_store_batch_put_message(b, &m), 0);
		}
		uint64_t jobs, helped, waits;
		mk__store_test_pool_stats(st, &jobs, &helped, &waits);
		print_message("round %d: %llu jobs, %llu helped, %llu waits\n", round, (unsigned long long)jobs,
			      (unsigned long long)helped, (unsigned long long)waits);
		if (round == 0) {
			/* held workers: only a queue's worth may wait */
			assert_true(waits >= (uint64_t)count / 2 - 4);
			assert_true(helped >= (uint64_t)count / 2 - 4);
		}
	}
	mk__store_test_pause(st, false);
	assert_int_equal(mk_store_batch_commit(b), 0);
	mk_store_batch_free(&b);
	for (int i = 0; i < count; i++) {
		fill_text(body, 30000, (uint64_t)i * 2 + 7);
		assert_body(st, shas[i], body, 30000);
	}
	struct mk_store_stats s;
	assert_int_equal(mk_store_stats(st, &s), 0);
	assert_int_equal(s.messages, (uint64_t)count);
	assert_clean(st);
	mk_store_close(&st);
	mk_free(body);
	mk_free(shas);
	mk_free(dir);
}

/* Closing (or freeing the batch) with jobs queued: the threads finish and
 * are joined, nothing is committed, the store stays clean. */
static void test_close_pending(void **state)
{
	char *dir = new_dir("closepend");
	uint8_t *body = mk_xmalloc(50000);
	for (int order = 0; order < 3; order++) {
		struct mk_store *st = open_ok(dir, 6);
		uint32_t a;
		struct mk_store_mailbox mb;
		assert_int_equal(mk_store_account(st, "a", true, &a), 0);
		assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", true, &mb), 0);
		struct mk_store_batch *b = mk_store_batch_new(st);
		if (order != 2)
			mk__store_test_pause(st, true);
		for (int i = 0; i < 30; i++) {
			uint8_t sha[32];
			fill_text(body, 50000, (uint64_t)(order * 100 + i) * 2 + 1);
			put_body(b, body, 50000, 50000, sha, NULL);
			struct mk_store_msg m;
			msg_init(&m, a, mb.id, 1, (uint32_t)i + 1, sha, 50000);
			assert_int_equal(mk_store_batch_put_message(b, &m), 0);
		}
		/* an unfinished body too */
		struct mk_store_body *w = mk_store_body_begin(b);
		assert_int_equal(mk_store_body_write(w, body, 1000), 0);
		if (order == 0) {
			mk_store_batch_free(&b); /* waits for (or runs) its jobs */
			mk_store_close(&st);
		} else {
			mk_store_close(&st); /* drains the queue, joins the threads */
			mk_store_batch_free(&b);
		}
		st = open_ok(dir, 6);
		struct mk_store_stats s;
		assert_int_equal(mk_store_stats(st, &s), 0);
		assert_int_equal(s.messages, 0);
		assert_int_equal(s.blobs, 0);
		assert_clean(st);
		mk_store_close(&st);
	}
	mk_free(body);
	mk_free(dir);
}

/* A child killed with jobs queued (workers held) and, with the hooks, one
 * whose commit crashes while another batch's jobs are queued: what was
 * committed is whole, the rest is absent. */
static void crash_queued(bool at_commit)
{
	char *dir = new_dir("crashq");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct mk_store *st = NULL;
		char *error = NULL;
		if (mk_store_open(dir, 6, &st, &error) != 0)
			_exit(1);
		uint32_t a;
		struct mk_store_mailbox mb;
		if (mk_store_account(st, "a", true, &a) != 0 || mk_store_mailbox_get(st, a, "INBOX", true, &mb) != 0)
			_exit(1);
		uint8_t *body = mk_xmalloc(60000);
		struct mk_store_batch *b1 = mk_store_batch_new(st), *b2 = mk_store_batch_new(st);
		for (int i = 0; i < 40; i++) {
			struct mk_store_batch *b = i < 20 ? b1 : b2;
			if (i == 20) {
				if (mk_store_batch_commit(b1) != 0) /* commit 1 */
					_exit(1);
				mk__store_test_pause(st, true);
			}
			fill_text(body, 60000, (uint64_t)i * 2 + 101);
			struct mk_store_body *w = mk_store_body_begin(b);
			uint8_t sha[32];
			uint64_t raw;
			if (mk_store_body_write(w, body, 60000) != 0 || mk_store_body_finish(w, sha, &raw) != 0)
				_exit(1);
			struct mk_store_msg m;
			msg_init(&m, a, mb.id, 1, (uint32_t)i + 1, sha, raw);
			if (mk_store_batch_put_message(b, &m) != 0)
				_exit(1);
		}
		if (at_commit) {
			/* b1 is empty but for progress; b2's 20 jobs stay queued */
			mb.highest_uid = 20;
			if (mk_store_batch_put_mailbox(b1, &mb) != 0)
				_exit(1);
			setenv("MK_TEST_CRASH_AT", "2", 1);
			(void)mk_store_batch_commit(b1);
#ifdef MK_TEST_HOOKS
			_exit(1); /* the hook should have ended the process */
#endif
		}
		_exit(99);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 99);
	struct mk_store *st = open_ok(dir, 6);
	uint32_t a;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", false, &a), 0);
	assert_int_equal(mk_store_mailbox_get(st, a, "INBOX", false, &mb), 0);
	struct shalist l;
	l.n = 0;
	assert_int_equal(mk_store_messages(st, a, mb.id, 0, sha_cb, &l), 0);
	assert_int_equal(l.n, 20);
	uint8_t *body = mk_xmalloc(60000);
	for (size_t i = 0; i < l.n; i++) {
		fill_text(body, 60000, (uint64_t)i * 2 + 101);
		assert_body(st, l.sha[i], body, 60000);
	}
#ifdef MK_TEST_HOOKS
	if (at_commit)
		assert_int_equal(mb.highest_uid, 20);
#endif
	struct mk_store_stats s;
	assert_int_equal(mk_store_stats(st, &s), 0);
	assert_int_equal(s.blobs, 20);
	assert_clean(st);
	mk_store_close(&st);
	mk_free(body);
	mk_free(dir);
}

static void test_crash_queued(void **state)
{
	crash_queued(false);
	crash_queued(true);
}

/* ---- codecs ---- */

static void test_codecs(void **state)
{
	struct mk_store_msg m, d;
	memset(&m, 0, sizeof(m));
	m.raw_size = 123456789012ull;
	m.server_size = 42;
	m.internaldate = -5;
	m.internaldate_tz = -480;
	m.flags = 0x3f;
	m.state = MK_STORE_MSG_UNFETCHABLE;
	m.gone_at = 99;
	memset(m.sha, 0xab, 32);
	mk_strlcpy(m.keywords, "$Junk NonJunk", sizeof(m.keywords));
	mk_strlcpy(m.unique, "1.M2P3Q4.h", sizeof(m.unique));
	uint8_t buf[MK__STORE_MSG_VAL_MAX];
	size_t n = mk__store_encode_msg(buf, sizeof(buf), &m);
	memset(&d, 0, sizeof(d));
	assert_int_equal(mk__store_decode_msg(buf, n, &d), 0);
	assert_memory_equal(&m, &d, sizeof(m));
	/* every truncation and a trailing byte are corrupt */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(mk__store_decode_msg(buf, i, &d), MK_ECORRUPT);
	buf[n] = 0;
	assert_int_equal(mk__store_decode_msg(buf, n + 1, &d), MK_ECORRUPT);
	buf[0] = 2;
	assert_int_equal(mk__store_decode_msg(buf, n, &d), MK_ECORRUPT);

	struct mk__store_blob bl, bd;
	memset(&bl, 0, sizeof(bl));
	memset(&bd, 0, sizeof(bd));
	bl.refcount = 3;
	bl.raw_size = 5000000;
	bl.stored_size = 2200000;
	bl.owner = 17;
	bl.n_chunks = 3;
	bl.codec = MK__STORE_CODEC_ZLIB;
	n = mk__store_encode_blob(buf, sizeof(buf), &bl);
	assert_int_equal(mk__store_decode_blob(buf, n, &bd), 0);
	assert_memory_equal(&bl, &bd, sizeof(bl));
	bl.n_chunks = 2; /* inconsistent with the stored size */
	n = mk__store_encode_blob(buf, sizeof(buf), &bl);
	assert_int_equal(mk__store_decode_blob(buf, n, &bd), MK_ECORRUPT);

	uint8_t k1[16], k2[16];
	mk__store_key_msg(k1, 1, 2, 3, 255);
	mk__store_key_msg(k2, 1, 2, 3, 256);
	assert_true(memcmp(k1, k2, 16) < 0); /* numeric order */
}



/* Pull-style reads give the same bytes as the push-style ones, at any
 * piece size, for small (one chunk), spilled (many chunks) and stored
 * (incompressible) bodies, and catch a damaged chunk. */
static void reader_check(struct mk_store *st, const uint8_t *sha, const uint8_t *want, size_t n, size_t cap)
{
	struct mk_store_body_reader *r = NULL;
	assert_int_equal(mk_store_body_open(st, sha, &r), 0);
	uint8_t *buf = mk_xmalloc(cap);
	size_t got = 0, k;
	for (;;) {
		assert_int_equal(mk_store_body_next(r, buf, cap, &k), 0);
		if (k == 0)
			break;
		assert_true(got + k <= n);
		assert_memory_equal(buf, want + got, k);
		got += k;
	}
	assert_int_equal(got, n);
	assert_int_equal(mk_store_body_next(r, buf, cap, &k), 0);
	assert_int_equal(k, 0);
	mk_free(buf);
	mk_store_body_close(&r);
	assert_null(r);
}

static void test_body_reader(void **state)
{
	(void)state;
	char *dir = new_dir("reader");
	struct mk_store *st = open_ok(dir, 0);
	size_t big = 3 * 1024 * 1024 + 17;
	uint8_t *text = mk_xmalloc(big), *rnd = mk_xmalloc(200000), sha1[32], sha2[32], sha3[32];
	fill_text(text, big, 11);
	fill_random(rnd, 200000, 12);
	struct mk_store_batch *b = mk_store_batch_new(st);
	put_body(b, text, 5000, 5000, sha1, NULL);
	put_body(b, text, big, 65536, sha2, NULL);
	put_body(b, rnd, 200000, 4096, sha3, NULL);
	struct mk_store_msg m;
	msg_init(&m, 1, 1, 1, 1, sha1, 5000);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	msg_init(&m, 1, 1, 1, 2, sha2, big);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	msg_init(&m, 1, 1, 1, 3, sha3, 200000);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	mk_store_batch_free(&b);
	static const size_t caps[] = {1, 7, 4096, 1 << 20};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		reader_check(st, sha1, text, 5000, caps[i]);
		if (caps[i] > 1) {
			reader_check(st, sha2, text, big, caps[i]);
			reader_check(st, sha3, rnd, 200000, caps[i]);
		}
	}
	uint8_t none[32] = {0};
	struct mk_store_body_reader *r = NULL;
	assert_int_equal(mk_store_body_open(st, none, &r), MK_ENOTFOUND);
	mk_store_close(&st);
	mk_free(text);
	mk_free(rnd);
	mk_free(dir);
}


/* Another process opening the store (a command while the agent runs)
 * must not free the chunks of a body the agent is still writing; the
 * chunks of a writer that died (or whose pid was reused) are freed, and
 * so are our own once no other handle of ours is open. */
static void test_staging_other_process(void **state)
{
	(void)state;
	char *dir = new_dir("staging-proc");
	struct mk_store *st = open_ok(dir, 0);
	pid_t dead = fork();
	assert_true(dead >= 0);
	if (dead == 0)
		_exit(0);
	assert_int_equal(waitpid(dead, NULL, 0), dead);
	pid_t parent = getppid(); /* alive: the test runner's parent */
	assert_int_equal(mk__store_test_put_foreign_staging(st, 900001, parent, 0), 0);        /* alive */
	assert_int_equal(mk__store_test_put_foreign_staging(st, 900002, dead, 12345), 0);     /* gone */
	assert_int_equal(mk__store_test_put_foreign_staging(st, 900003, parent, 1), 0);       /* pid reused */
	assert_int_equal(mk__store_test_put_foreign_staging(st, 900004, getpid(), 0), 0);     /* ours */
	struct mk_store *st2 = open_ok(dir, 0); /* st still open: our mark is in progress */
	uint64_t n = 0;
	assert_int_equal(mk__store_test_staging_count(st2, &n), 0);
	assert_int_equal(n, 2); /* the live writer's and ours */
	mk_store_close(&st2);
	mk_store_close(&st);
	st = open_ok(dir, 0); /* alone now: our old mark is from a closed handle */
	assert_int_equal(mk__store_test_staging_count(st, &n), 0);
	assert_int_equal(n, 1);
	mk_store_close(&st);
	mk_free(dir);
}

/* ---- codec MZ1: preset dictionary + base64 lines decoded (codec.c) ---- */

/* Appends base64 of n bytes of p in lines of `l` characters + eol. */
static size_t put_b64(uint8_t *o, const uint8_t *p, size_t n, size_t l, const char *eol)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t k = 0, col = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		o[k++] = (uint8_t)a[v >> 18];
		o[k++] = (uint8_t)a[(v >> 12) & 63];
		o[k++] = i + 1 < n ? (uint8_t)a[(v >> 6) & 63] : '=';
		o[k++] = i + 2 < n ? (uint8_t)a[v & 63] : '=';
		col += 4;
		if (col >= l || i + 3 >= n) {
			for (const char *e = eol; *e != '\0'; e++)
				o[k++] = (uint8_t)*e;
			col = 0;
		}
	}
	return k;
}

/* A MIME message (CRLF) with a text part and base64 attachments: random
 * bytes (incompressible), text-like bytes, 72-column lines. About n bytes. */
static size_t make_mime(uint8_t *o, size_t n, uint64_t seed)
{
	size_t k = (size_t)snprintf((char *)o, n,
				    "Received: from mx.example.com by mail.example.org (Postfix) with ESMTPS id %llx\r\n"
				    "From: Carol <carol@example.com>\r\nTo: bob@example.org\r\nSubject: scan %llu\r\n"
				    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n"
				    "Content-Type: text/plain; charset=\"utf-8\"\r\n\r\nSee the attached files.\r\n\r\n",
				    (unsigned long long)seed, (unsigned long long)seed);
	size_t part = (n - k) / 4;
	uint8_t *bin = mk_xmalloc(part);
	for (int i = 0; i < 3 && k + part * 4 / 3 + 4096 < n; i++) {
		if (i == 1)
			fill_text(bin, part, seed + 1);
		else
			fill_random(bin, part - (size_t)i, seed + (uint64_t)i);
		k += (size_t)snprintf((char *)o + k, n - k,
				      "--b1\r\nContent-Type: application/octet-stream; name=\"f%d\"\r\n"
				      "Content-Transfer-Encoding: base64\r\n\r\n",
				      i);
		k += put_b64(o + k, bin, part - (size_t)i, i == 2 ? 72 : 76, "\r\n");
	}
	k += (size_t)snprintf((char *)o + k, n - k, "--b1--\r\n");
	mk_free(bin);
	return k;
}

/* Every level, pool (small) and streaming (spilled) bodies: byte-exact
 * with push and pull reads, verify clean, written as MZ1. */
static void test_mz1_levels(void **state)
{
	(void)state;
	size_t big = 2600 * 1000;
	uint8_t *mail = mk_xmalloc(big), *small = mk_xmalloc(300 * 1000);
	size_t n_big = make_mime(mail, big, 7);
	size_t n_small = make_mime(small, 300 * 1000, 8);
	const char *tiny = "From: a@example.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\r\nhello\r\n";
	for (int level = 1; level <= 9; level++) {
		char *dir = new_dir("mz1-level");
		struct mk_store *st = open_ok(dir, level);
		uint32_t acc;
		struct mk_store_mailbox mb;
		assert_int_equal(mk_store_account(st, "a", true, &acc), 0);
		assert_int_equal(mk_store_mailbox_get(st, acc, "INBOX", true, &mb), 0);
		struct mk_store_batch *b = mk_store_batch_new(st);
		uint8_t sha[3][32];
		put_body(b, (const uint8_t *)tiny, strlen(tiny), 5, sha[0], NULL);
		put_body(b, small, n_small, 999, sha[1], NULL);
		put_body(b, mail, n_big, level % 2 ? 65537 : 1000, sha[2], NULL);
		const uint8_t *want[3] = {(const uint8_t *)tiny, small, mail};
		size_t len[3] = {strlen(tiny), n_small, n_big};
		for (uint32_t i = 0; i < 3; i++) {
			struct mk_store_msg m;
			msg_init(&m, acc, mb.id, 1, i + 1, sha[i], len[i]);
			assert_int_equal(mk_store_batch_put_message(b, &m), 0);
		}
		assert_int_equal(mk_store_batch_commit(b), 0);
		mk_store_batch_free(&b);
		for (int i = 0; i < 3; i++) {
			int codec;
			uint32_t nch;
			assert_int_equal(mk__store_test_blob_info(st, sha[i], &codec, &nch), 0);
			assert_int_equal(codec, MK__STORE_CODEC_MZ1);
			assert_body(st, sha[i], want[i], len[i]);
			reader_check(st, sha[i], want[i], len[i], i == 0 ? 1 : 4093);
		}
		/* 2/3 of the base64 is random: stored, at 3/4 of its size. */
		struct mk_store_stats s;
		assert_int_equal(mk_store_stats(st, &s), 0);
		assert_true(s.blob_stored_bytes < (n_big + n_small) * 62 / 100);
		assert_clean(st);
		mk_store_close(&st);
		mk_free(dir);
	}
	mk_free(mail);
	mk_free(small);
}

static int cap_level(void *ud, int level)
{
	(void)ud;
	(void)level;
	return 0;
}

/* Encodes in random pieces; decodes with random input and output sizes. */
static void mz_roundtrip(struct mk__store_mzenc *e, const uint8_t *p, size_t n, uint64_t *s, struct collect *whole)
{
	struct collect c = {NULL, 0, 0};
	struct mk__store_zsink sink = {collect_cb, cap_level, &c};
	mk__store_mzenc_begin(e, 6, &sink);
	for (size_t off = 0; off < n;) {
		size_t k = 1 + rng_next(s) % 1500;
		if (k > n - off)
			k = n - off;
		assert_int_equal(mk__store_mzenc_write(e, p + off, k), 0);
		off += k;
	}
	assert_int_equal(mk__store_mzenc_finish(e), 0);
	if (whole != NULL) { /* the same records whatever the pieces */
		assert_int_equal(c.n, whole->n);
		assert_memory_equal(c.p, whole->p, c.n);
	}
	struct mk__store_mzdec d;
	mk__store_mzdec_init(&d);
	uint8_t *out = mk_xmalloc(n + 1);
	size_t in_off = 0, got = 0;
	for (int guard = 0; guard < 10000000; guard++) {
		size_t in_k = 1 + rng_next(s) % 97, cap = 1 + rng_next(s) % 200;
		if (in_k > c.n - in_off)
			in_k = c.n - in_off;
		if (cap > n + 1 - got)
			cap = n + 1 - got;
		size_t used = 0, made = 0;
		assert_int_equal(mk__store_mzdec_run(&d, c.p + in_off, in_k, &used, out + got, cap, &made), 0);
		in_off += used;
		got += made;
		if (in_off == c.n && made == 0)
			break;
	}
	assert_true(mk__store_mzdec_idle(&d));
	assert_int_equal(got, n);
	assert_memory_equal(out, p, n);
	mk_free(out);
	mk_free(c.p);
}

static void test_mz1_transform(void **state)
{
	(void)state;
	struct mk__store_mzenc *e = mk__store_mzenc_new();
	uint64_t s = 99;
	size_t cap = 400 * 1000;
	uint8_t *p = mk_xmalloc(cap), *bin = mk_xmalloc(8192);
	/* Awkward lines: every base64 line length around the limits, padding,
	 * LF only, '=' inside, CR alone, long and empty lines, no final LF. */
	static const size_t lens[] = {0, 3, 12, 16, 20, 64, 72, 76, 77, 78, 1016, 1020, 1024, 3000};
	static const char *eols[] = {"\r\n", "\n", "\r", "\r\r\n", ""};
	for (int iter = 0; iter < 300; iter++) {
		size_t n = 0;
		while (n + 40000 < cap && rng_next(&s) % 40 != 0) {
			size_t kind = rng_next(&s) % 6;
			if (kind == 0) {
				fill_text(p + n, 200, rng_next(&s));
				n += 200;
				continue;
			}
			size_t nb = rng_next(&s) % 8192;
			if (kind == 1)
				fill_text(bin, nb, rng_next(&s));
			else
				fill_random(bin, nb, rng_next(&s));
			size_t l = lens[rng_next(&s) % (sizeof(lens) / sizeof(lens[0]))];
			if (l == 0)
				l = 4;
			n += put_b64(p + n, bin, nb, l, eols[rng_next(&s) % (kind == 2 ? 5 : 1)]);
			if (kind == 3 && n > 0)
				p[n - 1 - rng_next(&s) % (n > 50 ? 50 : n)] = (uint8_t)"=\r\n -"[rng_next(&s) % 5];
		}
		if (iter % 3 == 0 && n > 0)
			n -= rng_next(&s) % (n < 80 ? n : 80); /* cut anywhere */
		/* Reference: the whole input in one write. */
		struct collect whole = {NULL, 0, 0};
		struct mk__store_zsink sink = {collect_cb, cap_level, &whole};
		mk__store_mzenc_begin(e, 6, &sink);
		assert_int_equal(mk__store_mzenc_write(e, p, n), 0);
		assert_int_equal(mk__store_mzenc_finish(e), 0);
		mz_roundtrip(e, p, n, &s, &whole);
		mk_free(whole.p);
	}
	uint64_t runs = 0, stored = 0;
	mk__store_mzenc_stats(e, &runs, &stored);
	assert_true(runs > 100 && stored > 10 && stored < runs);
	mk__store_mzenc_free(&e);
	assert_null(e);

	/* Garbage never crashes the decoder and never yields more than asked. */
	for (int iter = 0; iter < 3000; iter++) {
		uint8_t in[64], out[300];
		size_t in_n = rng_next(&s) % sizeof(in);
		fill_random(in, in_n, rng_next(&s));
		if (in_n > 0 && rng_next(&s) % 2)
			in[0] = (uint8_t)(rng_next(&s) % 3);
		struct mk__store_mzdec d;
		mk__store_mzdec_init(&d);
		size_t used = 0, made = 0, cap2 = rng_next(&s) % sizeof(out);
		int r = mk__store_mzdec_run(&d, in, in_n, &used, out, cap2, &made);
		assert_true(r == 0 || r == MK_ECORRUPT);
		assert_true(used <= in_n && made <= cap2);
	}
	/* Limits are checked: a literal of 0 or over MZ_LIT_MAX, a run line
	 * length not a multiple of 4, a run over MZ_RUN_MAX, a 4-byte varint. */
	static const uint8_t bad[][6] = {{0x00, 0x00}, {0x00, 0x81, 0x80, 0x01}, {0x01, 76 + 1, 1},
					 {0x01, 8, 1},  {0x01, 76, 0x81, 0x08},  {0x00, 0x80, 0x80, 0x80, 0x01}, {0x02}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mk__store_mzdec d;
		mk__store_mzdec_init(&d);
		uint8_t out[16];
		size_t used, made;
		assert_int_equal(mk__store_mzdec_run(&d, bad[i], sizeof(bad[i]), &used, out, sizeof(out), &made),
				 MK_ECORRUPT);
	}
	mk_free(p);
	mk_free(bin);
}

/* Dictionary 1 is pinned: changing it would make every MZ1 blob unreadable. */
static void test_mz1_dictionary_pinned(void **state)
{
	(void)state;
	assert_int_equal(mk__store_zdict1_len, MK__STORE_ZDICT1_LEN);
	assert_true(mk__store_zdict1_len <= 32768);
	uLong a = adler32(0L, Z_NULL, 0);
	a = adler32(a, mk__store_zdict1, (uInt)mk__store_zdict1_len);
	assert_int_equal(a, MK__STORE_ZDICT1_ADLER);
}

static void put_raw_msg(struct mk_store *st, uint32_t acc, uint32_t mbid, uint32_t uid, int codec, const uint8_t *stored,
			size_t stored_n, const uint8_t *raw, size_t raw_n, uint8_t sha[32])
{
	struct mk_sha256 h;
	mk_sha256_init(&h);
	mk_sha256_update(&h, raw, raw_n);
	mk_sha256_final(&h, sha);
	assert_int_equal(mk__store_test_put_raw_blob(st, sha, codec, stored, stored_n, raw_n), 0);
	struct mk_store_batch *b = mk_store_batch_new(st);
	struct mk_store_msg m;
	msg_init(&m, acc, mbid, 1, uid, sha, raw_n);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	mk_store_batch_free(&b);
}

/* Blobs of older versions (codec ZLIB without dictionary, STORED) still
 * read and verify; a wrong dictionary id, or a dictionary stream labelled
 * ZLIB, is corruption. */
static void test_mz1_old_codecs(void **state)
{
	(void)state;
	char *dir = new_dir("mz1-old");
	struct mk_store *st = open_ok(dir, 0);
	uint32_t acc;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &acc), 0);
	assert_int_equal(mk_store_mailbox_get(st, acc, "INBOX", true, &mb), 0);
	size_t n = 200 * 1000;
	uint8_t *raw = mk_xmalloc(n);
	size_t rn = make_mime(raw, n, 3);
	uLongf zn = compressBound(rn);
	uint8_t *z = mk_xmalloc(zn);
	assert_int_equal(compress2(z, &zn, raw, rn, 6), Z_OK);
	uint8_t sha_z[32], sha_s[32];
	put_raw_msg(st, acc, mb.id, 1, MK__STORE_CODEC_ZLIB, z, zn, raw, rn, sha_z);
	put_raw_msg(st, acc, mb.id, 2, MK__STORE_CODEC_STORED, raw, 5000, raw, 5000, sha_s);
	assert_body(st, sha_z, raw, rn);
	reader_check(st, sha_z, raw, rn, 777);
	assert_body(st, sha_s, raw, 5000);
	assert_clean(st);

	/* An MZ1 stream (small, so it fits one deflate call) labelled ZLIB. */
	const char *txt = "From: x@example.com\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\nhi there\r\n";
	struct mk_store_batch *b = mk_store_batch_new(st);
	uint8_t sha_m[32];
	put_body(b, (const uint8_t *)txt, strlen(txt), 1000, sha_m, NULL);
	struct mk_store_msg m;
	msg_init(&m, acc, mb.id, 1, 3, sha_m, strlen(txt));
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	mk_store_batch_free(&b);
	assert_body(st, sha_m, (const uint8_t *)txt, strlen(txt));
	struct mk_store_body_reader *r = NULL;
	assert_int_equal(mk_store_body_open(st, sha_m, &r), 0);
	uint8_t buf[256];
	size_t k = 0;
	assert_int_equal(mk_store_body_next(r, buf, sizeof(buf), &k), 0);
	mk_store_body_close(&r);
	/* Its bytes again as codec ZLIB: inflate asks for a dictionary. */
	uint8_t zz[256];
	struct collect c = {NULL, 0, 0};
	{
		z_stream zs;
		memset(&zs, 0, sizeof(zs));
		assert_int_equal(deflateInit2(&zs, 4, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY), Z_OK);
		assert_int_equal(deflateSetDictionary(&zs, mk__store_zdict1, (uInt)mk__store_zdict1_len), Z_OK);
		zs.next_in = (Bytef *)(uintptr_t)txt;
		zs.avail_in = (uInt)strlen(txt);
		zs.next_out = zz;
		zs.avail_out = sizeof(zz);
		assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
		size_t zl = sizeof(zz) - zs.avail_out;
		deflateEnd(&zs);
		uint8_t sha_x[32];
		char *t2 = mk_xasprintf("%sX", txt); /* another sha */
		struct mk_sha256 h;
		mk_sha256_init(&h);
		mk_sha256_update(&h, (const uint8_t *)t2, strlen(t2));
		mk_sha256_final(&h, sha_x);
		assert_int_equal(mk__store_test_put_raw_blob(st, sha_x, MK__STORE_CODEC_ZLIB, zz, zl, strlen(t2)), 0);
		assert_int_equal(mk_store_body_read(st, sha_x, collect_cb, &c), MK_ECORRUPT);
		mk_free(t2);
	}
	/* The MZ1 blob with a flipped byte in its dictionary id (bytes 2-5 of
	 * the zlib stream), read both ways, and by verify. */
	assert_int_equal(mk__store_test_corrupt_chunk(st, sha_m, 0, 3), 0);
	c.n = 0;
	assert_int_equal(mk_store_body_read(st, sha_m, collect_cb, &c), MK_ECORRUPT);
	assert_int_equal(mk_store_body_open(st, sha_m, &r), 0);
	assert_int_equal(mk_store_body_next(r, buf, sizeof(buf), &k), MK_ECORRUPT);
	mk_store_body_close(&r);
	struct mk_store_verify_report rep;
	char last[256] = "";
	assert_int_equal(mk_store_verify(st, &rep, problem_cb, last), 0);
	assert_int_equal(rep.blobs_bad, 2); /* sha_x (no record: also an orphan) and sha_m */
	assert_non_null(strstr(last, "dictionary"));
	mk_free(c.p);
	mk_free(raw);
	mk_free(z);
	mk_store_close(&st);
	mk_free(dir);
}

/* Bodies that do not compress are stored raw (the pool path), and
 * base64 of random bytes costs 3/4 of its size, not a deflate pass. */
static void test_mz1_incompressible(void **state)
{
	(void)state;
	char *dir = new_dir("mz1-inc");
	struct mk_store *st = open_ok(dir, 6);
	uint32_t acc;
	struct mk_store_mailbox mb;
	assert_int_equal(mk_store_account(st, "a", true, &acc), 0);
	assert_int_equal(mk_store_mailbox_get(st, acc, "INBOX", true, &mb), 0);
	size_t n = 300 * 1000;
	uint8_t *rnd = mk_xmalloc(n), *b64 = mk_xmalloc(n * 2);
	fill_random(rnd, n, 5);
	size_t bn = put_b64(b64, rnd, n, 76, "\r\n");
	struct mk_store_batch *b = mk_store_batch_new(st);
	uint8_t sha[2][32];
	put_body(b, rnd, n, 4096, sha[0], NULL);
	put_body(b, b64, bn, 4096, sha[1], NULL);
	struct mk_store_msg m;
	msg_init(&m, acc, mb.id, 1, 1, sha[0], n);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	msg_init(&m, acc, mb.id, 1, 2, sha[1], bn);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	mk_store_batch_free(&b);
	int codec;
	uint32_t nch;
	assert_int_equal(mk__store_test_blob_info(st, sha[0], &codec, &nch), 0);
	assert_int_equal(codec, MK__STORE_CODEC_STORED);
	assert_int_equal(mk__store_test_blob_info(st, sha[1], &codec, &nch), 0);
	assert_int_equal(codec, MK__STORE_CODEC_MZ1);
	struct mk_store_stats s;
	assert_int_equal(mk_store_stats(st, &s), 0);
	/* n raw + the base64 at ~n + a little framing */
	assert_true(s.blob_stored_bytes < n + n / 100 + n);
	assert_body(st, sha[1], b64, bn);
	assert_clean(st);
	mk_store_close(&st);
	mk_free(rnd);
	mk_free(b64);
	mk_free(dir);
}

/* ---- the outbox (issue 5) ---- */

static int ob_count_cb(void *ud, const struct mk_store_outbox *o)
{
	unsigned *n = ud;
	(*n)++;
	assert_true(o->id > 0);
	return 0;
}

static void ob_fill(struct mk_store_outbox *o, uint64_t id, const uint8_t *sha, uint64_t size)
{
	mk_store_outbox_init(o);
	o->id = id;
	o->account = 1;
	o->created = o->send_at = 1765000000;
	memcpy(o->sha, sha, 32);
	o->size = size;
	mk_strlcpy(o->from, "me@example.org", sizeof(o->from));
	mk_strlcpy(o->message_id, "<x@y>", sizeof(o->message_id));
	assert_int_equal(mk_store_outbox_add_rcpt(o, "a@example.org"), 0);
	assert_int_equal(mk_store_outbox_add_rcpt(o, "b@example.org"), 0);
}

static void test_outbox(void **state)
{
	(void)state;
	char *dir = new_dir("outbox");
	struct mk_store *st = open_ok(dir, 0);
	uint8_t body[3000], sha[32], sha2[32];
	fill_text(body, sizeof(body), 7);
	uint64_t raw = 0;

	/* A message that is also a backed-up record: one body, two references. */
	struct mk_store_batch *b = mk_store_batch_new(st);
	put_body(b, body, sizeof(body), 1000, sha, &raw);
	struct mk_store_msg m;
	msg_init(&m, 1, 1, 1, 1, sha, raw);
	assert_int_equal(mk_store_batch_put_message(b, &m), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);

	uint64_t id1 = 0, id2 = 0;
	assert_int_equal(mk_store_outbox_new_id(st, &id1), 0);
	assert_int_equal(mk_store_outbox_new_id(st, &id2), 0);
	assert_true(id2 == id1 + 1);
	struct mk_store_outbox o1, o2, got;
	ob_fill(&o1, id1, sha, raw);
	put_body(b, body, sizeof(body), 3000, sha, &raw); /* same body again: deduplicated */
	assert_int_equal(mk_store_batch_put_outbox(b, &o1), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(refcount(st, sha), 2);
	body[0] ^= 1;
	put_body(b, body, sizeof(body), 777, sha2, &raw);
	ob_fill(&o2, id2, sha2, raw);
	o2.flags = MK_STORE_OUTBOX_8BIT;
	assert_int_equal(mk_store_batch_put_outbox(b, &o2), 0);
	assert_int_equal(mk_store_batch_commit(b), 0);
	assert_int_equal(refcount(st, sha2), 1);
	assert_clean(st);

	/* Round trip. */
	mk_store_outbox_init(&got);
	assert_int_equal(mk_store_outbox_get(st, id2, &got), 0);
	assert_int_equal(got.n_rcpt, 2);
	assert_string_equal(got.rcpt[1].addr, "b@example.org");
	assert_string_equal(got.from, "me@example.org");
	assert_int_equal(got.flags, MK_STORE_OUTBOX_8BIT);
	assert_memory_equal(got.sha, sha2, 32);
	assert_int_equal(mk_store_outbox_get(st, 999, &got), MK_ENOTFOUND);
	unsigned n = 0;
	assert_int_equal(mk_store_outbox_list(st, 0, ob_count_cb, &n), 0);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(mk_store_outbox_list(st, 2, ob_count_cb, &n), 0);
	assert_int_equal(n, 0);

	/* Compare-and-set transitions. */
	o1.state = MK_STORE_OUTBOX_SENDING;
	assert_int_equal(mk_store_outbox_update(st, &o1, MK_STORE_OUTBOX_QUEUED), 0);
	o1.state = MK_STORE_OUTBOX_CANCELED;
	assert_int_equal(mk_store_outbox_update(st, &o1, MK_STORE_OUTBOX_QUEUED), MK_ESTATE);
	o1.state = MK_STORE_OUTBOX_SENDING;
	o1.phase = MK_STORE_OUTBOX_PHASE_DOT_SENT;
	assert_int_equal(mk_store_outbox_update(st, &o1, MK_STORE_OUTBOX_SENDING), 0);
	o2.state = MK_STORE_OUTBOX_SENDING;
	assert_int_equal(mk_store_outbox_update(st, &o2, MK_STORE_OUTBOX_QUEUED), 0);
	/* A deletion of an entry not in a final state is refused. */
	assert_int_equal(mk_store_outbox_delete(st, id1), MK_ESTATE);

	/* Crash recovery: dot sent -> uncertain, else -> queued. */
	unsigned rq = 9, unc = 9;
	assert_int_equal(mk_store_outbox_recover(st, &rq, &unc), 0);
	assert_int_equal(rq, 1);
	assert_int_equal(unc, 1);
	assert_int_equal(mk_store_outbox_get(st, id1, &got), 0);
	assert_int_equal(got.state, MK_STORE_OUTBOX_UNCERTAIN);
	assert_int_equal(mk_store_outbox_get(st, id2, &got), 0);
	assert_int_equal(got.state, MK_STORE_OUTBOX_QUEUED);
	assert_string_equal(mk_store_outbox_state_name(got.state), "queued");

	/* Reopen: all durable. */
	mk_store_close(&st);
	st = open_ok(dir, 0);
	assert_int_equal(mk_store_outbox_get(st, id1, &got), 0);
	assert_int_equal(got.state, MK_STORE_OUTBOX_UNCERTAIN);

	/* Deleting a final entry drops its reference; the last one drops the body. */
	got.state = MK_STORE_OUTBOX_CANCELED;
	assert_int_equal(mk_store_outbox_update(st, &got, MK_STORE_OUTBOX_UNCERTAIN), 0);
	assert_int_equal(mk_store_outbox_delete(st, id1), 0);
	assert_int_equal(refcount(st, sha), 1);
	assert_int_equal(mk_store_outbox_get(st, id2, &got), 0);
	got.state = MK_STORE_OUTBOX_SENT;
	assert_int_equal(mk_store_outbox_update(st, &got, MK_STORE_OUTBOX_QUEUED), 0);
	assert_int_equal(mk_store_outbox_delete(st, id2), 0);
	assert_false(mk_store_have_body(st, sha2));
	assert_true(mk_store_have_body(st, sha));
	assert_clean(st);

	/* Invalid entries. */
	struct mk_store_outbox bad;
	mk_store_outbox_init(&bad);
	assert_int_equal(mk_store_batch_put_outbox(b, &bad), MK_EINVAL); /* id 0, no recipient */
	assert_int_equal(mk_store_outbox_add_rcpt(&bad, "a b@c"), MK_EINVAL);
	assert_int_equal(mk_store_outbox_add_rcpt(&bad, ""), MK_EINVAL);
	assert_int_equal(mk_store_outbox_add_rcpt(&bad, "<a@b>"), MK_EINVAL);
	for (unsigned i = 0; i < MK_STORE_OUTBOX_RCPT_MAX; i++)
		assert_int_equal(mk_store_outbox_add_rcpt(&bad, "r@example.org"), 0);
	assert_int_equal(mk_store_outbox_add_rcpt(&bad, "r@example.org"), MK_ETOOBIG);

	mk_store_outbox_cleanup(&bad);
	mk_store_outbox_cleanup(&got);
	mk_store_outbox_cleanup(&o1);
	mk_store_outbox_cleanup(&o2);
	mk_store_batch_free(&b);
	mk_store_close(&st);
	mk_free(dir);
}

static int group_setup(void **state)
{
	mk_strlcpy(tmpdir, "/tmp/mk-test-store-XXXXXX", sizeof(tmpdir));
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int group_teardown(void **state)
{
	return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codecs),
		cmocka_unit_test(test_open_create),
		cmocka_unit_test(test_accounts_mailboxes),
		cmocka_unit_test(test_bodies_roundtrip),
		cmocka_unit_test(test_mz1_levels),
		cmocka_unit_test(test_mz1_transform),
		cmocka_unit_test(test_mz1_dictionary_pinned),
		cmocka_unit_test(test_mz1_old_codecs),
		cmocka_unit_test(test_mz1_incompressible),
		cmocka_unit_test(test_dedupe),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_spill_abort),
		cmocka_unit_test(test_map_growth),
		cmocka_unit_test(test_corruption),
		cmocka_unit_test(test_memory_bound),
		cmocka_unit_test(test_crash),
		cmocka_unit_test(test_threads_identical),
		cmocka_unit_test(test_commit_while_running),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_close_pending),
		cmocka_unit_test(test_crash_queued),
		cmocka_unit_test(test_outbox),
		cmocka_unit_test(test_body_reader),
		cmocka_unit_test(test_staging_other_process),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
