/* SPDX-License-Identifier: MIT */
/*
 * outbox.c - the outbox table of the store (see mk_store.h, "the outbox").
 *
 * Key: the queue id (u64 big-endian), so a cursor walks entries in the
 * order they were queued. Value (version 1), written field by field:
 *   version u8, account u32, state u8, phase u8, flags u32, created i64,
 *   send_at i64, next_attempt i64, last_attempt i64, done_at i64,
 *   attempts u32, sha[32], size u64, then the strings from, message_id,
 *   server_id, last_reply (u16 length + bytes each), then n_rcpt u32 and
 *   per recipient: state u8, addr, reply (strings as above).
 * Decoding checks every length against the value and the struct's
 * buffers: a damaged value is MK_ECORRUPT, never a read past the end.
 *
 * The entry holds a reference on its body blob: +1 when the batch that
 * wrote body and entry commits, -1 when the entry is deleted (the blob goes
 * with its last reference). State changes never touch the reference.
 */
#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_str.h"
#include "store_int.h"

#include <string.h>

#define FIXED_LEN (1 + 4 + 1 + 1 + 4 + 8 * 5 + 4 + MK_STORE_SHA_LEN + 8)
/* 4 header strings (<= 2,071 bytes) + 1,000 recipients of <= 580 bytes. */
#define VAL_MAX ((size_t)FIXED_LEN + 4 * 1024 + 4 + MK_STORE_OUTBOX_RCPT_MAX * 600)

void mk_store_outbox_init(struct mk_store_outbox *o)
{
	memset(o, 0, sizeof(*o));
}

void mk_store_outbox_cleanup(struct mk_store_outbox *o)
{
	MK_FREE(&o->rcpt);
	o->n_rcpt = 0;
}

void mk_store_outbox_copy(struct mk_store_outbox *dst, const struct mk_store_outbox *src)
{
	if (dst == src)
		return;
	mk_store_outbox_cleanup(dst);
	*dst = *src;
	dst->rcpt = NULL;
	if (src->n_rcpt > 0) {
		dst->rcpt = mk_xmalloc(src->n_rcpt * sizeof(*src->rcpt));
		memcpy(dst->rcpt, src->rcpt, src->n_rcpt * sizeof(*src->rcpt));
	}
}

static bool addr_ok(const char *a)
{
	size_t n = strlen(a);
	if (n == 0 || n > MK_STORE_OUTBOX_ADDR_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)a[i] < 0x21 || a[i] == 0x7f || a[i] == '<' || a[i] == '>')
			return false;
	return true;
}

int mk_store_outbox_add_rcpt(struct mk_store_outbox *o, const char *addr)
{
	if (!addr_ok(addr))
		return MK_EINVAL;
	if (o->n_rcpt >= MK_STORE_OUTBOX_RCPT_MAX)
		return MK_ETOOBIG;
	o->rcpt = mk_xrealloc(o->rcpt, (o->n_rcpt + 1) * sizeof(*o->rcpt));
	struct mk_store_outbox_rcpt *r = &o->rcpt[o->n_rcpt++];
	memset(r, 0, sizeof(*r));
	mk_strlcpy(r->addr, addr, sizeof(r->addr));
	return 0;
}

void mk_store_outbox_rcpt_retry(struct mk_store_outbox *o)
{
	for (unsigned i = 0; i < o->n_rcpt; i++)
		if (o->rcpt[i].state == MK_STORE_RCPT_SENT)
			o->rcpt[i].state = MK_STORE_RCPT_PENDING;
}

const char *mk_store_outbox_state_name(uint8_t state)
{
	switch (state) {
	case MK_STORE_OUTBOX_QUEUED:
		return "queued";
	case MK_STORE_OUTBOX_SENDING:
		return "sending";
	case MK_STORE_OUTBOX_SENT:
		return "sent";
	case MK_STORE_OUTBOX_FAILED:
		return "failed";
	case MK_STORE_OUTBOX_UNCERTAIN:
		return "uncertain";
	case MK_STORE_OUTBOX_CANCELED:
		return "canceled";
	}
	return "unknown";
}

/* ---- codec ---- */

static void put8(struct mk_buf *b, uint8_t v)
{
	(void)mk_buf_append(b, &v, 1);
}

static void put32(struct mk_buf *b, uint32_t v)
{
	uint8_t t[4];
	mk__store_be32(t, v);
	(void)mk_buf_append(b, t, 4);
}

static void put64(struct mk_buf *b, uint64_t v)
{
	uint8_t t[8];
	mk__store_be64(t, v);
	(void)mk_buf_append(b, t, 8);
}

static void putstr(struct mk_buf *b, const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);
	uint8_t t[2] = {(uint8_t)(n >> 8), (uint8_t)n};
	(void)mk_buf_append(b, t, 2);
	(void)mk_buf_append(b, s, n);
}

static void encode(struct mk_buf *b, const struct mk_store_outbox *o)
{
	put8(b, MK__STORE_VALUE_V1);
	put32(b, o->account);
	put8(b, o->state);
	put8(b, o->phase);
	put32(b, o->flags);
	put64(b, (uint64_t)o->created);
	put64(b, (uint64_t)o->send_at);
	put64(b, (uint64_t)o->next_attempt);
	put64(b, (uint64_t)o->last_attempt);
	put64(b, (uint64_t)o->done_at);
	put32(b, o->attempts);
	(void)mk_buf_append(b, o->sha, MK_STORE_SHA_LEN);
	put64(b, o->size);
	putstr(b, o->from, sizeof(o->from));
	putstr(b, o->message_id, sizeof(o->message_id));
	putstr(b, o->server_id, sizeof(o->server_id));
	putstr(b, o->last_reply, sizeof(o->last_reply));
	put32(b, o->n_rcpt);
	for (unsigned i = 0; i < o->n_rcpt; i++) {
		put8(b, o->rcpt[i].state);
		putstr(b, o->rcpt[i].addr, sizeof(o->rcpt[i].addr));
		putstr(b, o->rcpt[i].reply, sizeof(o->rcpt[i].reply));
	}
}

struct rd {
	const uint8_t *p;
	size_t n;
	bool bad;
};

static const uint8_t *take(struct rd *r, size_t n)
{
	if (r->bad || r->n < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->n -= n;
	return p;
}

static uint8_t get8(struct rd *r)
{
	const uint8_t *p = take(r, 1);
	return p ? p[0] : 0;
}

static uint32_t get32(struct rd *r)
{
	const uint8_t *p = take(r, 4);
	return p ? mk__store_rd32(p) : 0;
}

static uint64_t get64(struct rd *r)
{
	const uint8_t *p = take(r, 8);
	return p ? mk__store_rd64(p) : 0;
}

static void getstr(struct rd *r, char *out, size_t cap)
{
	out[0] = '\0';
	const uint8_t *l = take(r, 2);
	if (l == NULL)
		return;
	size_t n = (size_t)l[0] << 8 | l[1];
	const uint8_t *p = take(r, n);
	if (p == NULL || n >= cap || memchr(p, '\0', n) != NULL) {
		r->bad = true;
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

static int decode(const MDB_val *key, const MDB_val *val, struct mk_store_outbox *o)
{
	mk_store_outbox_cleanup(o);
	memset(o, 0, sizeof(*o));
	if (key->mv_size != 8)
		return MK_ECORRUPT;
	o->id = mk__store_rd64(key->mv_data);
	struct rd r = {val->mv_data, val->mv_size, false};
	if (get8(&r) != MK__STORE_VALUE_V1)
		return MK_ECORRUPT;
	o->account = get32(&r);
	o->state = get8(&r);
	o->phase = get8(&r);
	o->flags = get32(&r);
	o->created = (int64_t)get64(&r);
	o->send_at = (int64_t)get64(&r);
	o->next_attempt = (int64_t)get64(&r);
	o->last_attempt = (int64_t)get64(&r);
	o->done_at = (int64_t)get64(&r);
	o->attempts = get32(&r);
	const uint8_t *sha = take(&r, MK_STORE_SHA_LEN);
	if (sha != NULL)
		memcpy(o->sha, sha, MK_STORE_SHA_LEN);
	o->size = get64(&r);
	getstr(&r, o->from, sizeof(o->from));
	getstr(&r, o->message_id, sizeof(o->message_id));
	getstr(&r, o->server_id, sizeof(o->server_id));
	getstr(&r, o->last_reply, sizeof(o->last_reply));
	uint32_t n = get32(&r);
	if (r.bad || n > MK_STORE_OUTBOX_RCPT_MAX || o->state > MK_STORE_OUTBOX_CANCELED)
		return MK_ECORRUPT;
	if (n > 0)
		o->rcpt = mk_xcalloc(n, sizeof(*o->rcpt));
	o->n_rcpt = n;
	for (uint32_t i = 0; i < n && !r.bad; i++) {
		o->rcpt[i].state = get8(&r);
		getstr(&r, o->rcpt[i].addr, sizeof(o->rcpt[i].addr));
		getstr(&r, o->rcpt[i].reply, sizeof(o->rcpt[i].reply));
	}
	if (r.bad || r.n != 0) {
		mk_store_outbox_cleanup(o);
		return MK_ECORRUPT;
	}
	return 0;
}

static int put_entry(struct mk_store *st, MDB_txn *txn, const struct mk_store_outbox *o)
{
	struct mk_buf b;
	mk_buf_init(&b, VAL_MAX);
	encode(&b, o);
	uint8_t k[8];
	mk__store_be64(k, o->id);
	MDB_val key = {sizeof(k), k}, val = {b.len, b.data};
	int ret = mk__store_err(mdb_put(txn, st->outbox, &key, &val, 0));
	mk_buf_cleanup(&b);
	return ret;
}

static int get_entry(struct mk_store *st, MDB_txn *txn, uint64_t id, struct mk_store_outbox *o)
{
	uint8_t k[8];
	mk__store_be64(k, id);
	MDB_val key = {sizeof(k), k}, val;
	int rc = mdb_get(txn, st->outbox, &key, &val);
	if (rc == MDB_NOTFOUND)
		return MK_ENOTFOUND;
	if (rc != 0)
		return mk__store_err(rc);
	return decode(&key, &val, o);
}

static bool entry_ok(const struct mk_store_outbox *o)
{
	if (o->id == 0 || o->n_rcpt == 0 || o->n_rcpt > MK_STORE_OUTBOX_RCPT_MAX ||
	    o->state > MK_STORE_OUTBOX_CANCELED)
		return false;
	for (unsigned i = 0; i < o->n_rcpt; i++)
		if (!addr_ok(o->rcpt[i].addr))
			return false;
	return true;
}

/* Calls fn for every entry, in id order, inside txn (a write txn may
 * put_entry the one it was given: the cursor is not disturbed by
 * replacing the current value). Returns 0, fn's error, MK_ECORRUPT. */
static int each_entry(struct mk_store *st, MDB_txn *txn, int (*fn)(struct mk_store *st, MDB_txn *txn,
								   struct mk_store_outbox *o, void *ud),
		      void *ud)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, st->outbox, &c);
	if (rc != 0)
		return mk__store_err(rc);
	struct mk_store_outbox o;
	mk_store_outbox_init(&o);
	MDB_val key, val;
	int ret = 0;
	for (rc = mdb_cursor_get(c, &key, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
		ret = decode(&key, &val, &o);
		if (ret == 0)
			ret = fn(st, txn, &o, ud);
		if (ret != 0)
			break;
	}
	if (ret == 0 && rc != MDB_NOTFOUND)
		ret = mk__store_err(rc);
	mk_store_outbox_cleanup(&o);
	mdb_cursor_close(c);
	return ret;
}

/* ---- API ---- */

static int new_id_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	return mk__store_meta_next(st, txn, "outbox_seq", ud);
}

int mk_store_outbox_new_id(struct mk_store *st, uint64_t *id_r)
{
	return mk__store_write(st, new_id_txn, id_r, false);
}

int mk_store_batch_put_outbox(struct mk_store_batch *b, const struct mk_store_outbox *o)
{
	if (!entry_ok(o))
		return MK_EINVAL;
	struct mk__store_op *op = mk__store_batch_op(b, MK__STORE_OP_OUTBOX);
	op->u.outbox = o;
	return 0;
}

int mk__store_outbox_apply(struct mk_store *st, MDB_txn *txn, const struct mk_store_outbox *o)
{
	return put_entry(st, txn, o);
}

int mk_store_outbox_get(struct mk_store *st, uint64_t id, struct mk_store_outbox *o)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	ret = get_entry(st, txn, id, o);
	mk__store_txn_abort(st, txn);
	return ret;
}

struct list_ctx {
	uint32_t account;
	int (*cb)(void *ud, const struct mk_store_outbox *o);
	void *ud;
};

static int list_one(struct mk_store *st, MDB_txn *txn, struct mk_store_outbox *o, void *ud)
{
	(void)st;
	(void)txn;
	struct list_ctx *lc = ud;
	if (lc->account != 0 && o->account != lc->account)
		return 0;
	return lc->cb(lc->ud, o);
}

int mk_store_outbox_list(struct mk_store *st, uint32_t account,
			 int (*cb)(void *ud, const struct mk_store_outbox *o), void *ud)
{
	MDB_txn *txn;
	int ret = mk__store_rtxn(st, &txn);
	if (ret < 0)
		return ret;
	struct list_ctx lc = {account, cb, ud};
	ret = each_entry(st, txn, list_one, &lc);
	mk__store_txn_abort(st, txn);
	return ret > 0 ? 0 : ret;
}

struct update_ctx {
	const struct mk_store_outbox *o;
	uint8_t expect;
};

static int update_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct update_ctx *uc = ud;
	struct mk_store_outbox cur;
	mk_store_outbox_init(&cur);
	int ret = get_entry(st, txn, uc->o->id, &cur);
	if (ret == 0 && cur.state != uc->expect)
		ret = MK_ESTATE;
	if (ret == 0) {
		/* The body reference is the stored one, whatever the caller has. */
		struct mk_store_outbox o = *uc->o;
		memcpy(o.sha, cur.sha, MK_STORE_SHA_LEN);
		o.size = cur.size;
		ret = put_entry(st, txn, &o);
	}
	mk_store_outbox_cleanup(&cur);
	return ret;
}

int mk_store_outbox_update(struct mk_store *st, const struct mk_store_outbox *o, uint8_t expect_state)
{
	if (!entry_ok(o))
		return MK_EINVAL;
	struct update_ctx uc = {o, expect_state};
	return mk__store_write(st, update_txn, &uc, true);
}

static int delete_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	uint64_t id = *(const uint64_t *)ud;
	struct mk_store_outbox cur;
	mk_store_outbox_init(&cur);
	int ret = get_entry(st, txn, id, &cur);
	if (ret == 0 && cur.state != MK_STORE_OUTBOX_SENT && cur.state != MK_STORE_OUTBOX_FAILED &&
	    cur.state != MK_STORE_OUTBOX_CANCELED)
		ret = MK_ESTATE;
	if (ret == 0) {
		uint8_t k[8];
		mk__store_be64(k, id);
		MDB_val key = {sizeof(k), k};
		ret = mk__store_err(mdb_del(txn, st->outbox, &key, NULL));
	}
	if (ret == 0) {
		ret = mk__store_blob_ref(st, txn, cur.sha, -1);
		if (ret == MK_ENOTFOUND) /* its body was already missing: nothing to drop */
			ret = 0;
	}
	mk_store_outbox_cleanup(&cur);
	return ret;
}

int mk_store_outbox_delete(struct mk_store *st, uint64_t id)
{
	return mk__store_write(st, delete_txn, &id, false);
}

struct recover_ctx {
	unsigned requeued, uncertain;
};

static int recover_one(struct mk_store *st, MDB_txn *txn, struct mk_store_outbox *o, void *ud)
{
	struct recover_ctx *rc = ud;
	if (o->state != MK_STORE_OUTBOX_SENDING)
		return 0;
	if (o->phase == MK_STORE_OUTBOX_PHASE_DOT_SENT) {
		o->state = MK_STORE_OUTBOX_UNCERTAIN;
		mk_strlcpy(o->last_reply, "interrupted after the message was sent, before the server's reply was recorded",
			   sizeof(o->last_reply));
		rc->uncertain++;
	} else {
		o->state = MK_STORE_OUTBOX_QUEUED;
		rc->requeued++;
		mk_store_outbox_rcpt_retry(o);
	}
	return put_entry(st, txn, o);
}

static int recover_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct recover_ctx *rc = ud;
	rc->requeued = rc->uncertain = 0;
	return each_entry(st, txn, recover_one, rc);
}

int mk_store_outbox_recover(struct mk_store *st, unsigned *requeued_r, unsigned *uncertain_r)
{
	struct recover_ctx rc = {0, 0};
	int ret = mk__store_write(st, recover_txn, &rc, false);
	if (requeued_r != NULL)
		*requeued_r = ret == 0 ? rc.requeued : 0;
	if (uncertain_r != NULL)
		*uncertain_r = ret == 0 ? rc.uncertain : 0;
	return ret;
}

struct shas_ctx {
	void (*add)(void *ud, const uint8_t sha[MK_STORE_SHA_LEN]);
	void *ud;
};

static int sha_one(struct mk_store *st, MDB_txn *txn, struct mk_store_outbox *o, void *ud)
{
	(void)st;
	(void)txn;
	struct shas_ctx *sc = ud;
	sc->add(sc->ud, o->sha);
	return 0;
}

int mk__store_outbox_shas(struct mk_store *st, MDB_txn *txn,
			  void (*add)(void *ud, const uint8_t sha[MK_STORE_SHA_LEN]), void *ud)
{
	struct shas_ctx sc = {add, ud};
	return each_entry(st, txn, sha_one, &sc);
}
