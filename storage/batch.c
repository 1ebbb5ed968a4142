/* SPDX-License-Identifier: MIT */
/*
 * batch.c - the write batch: pending records, flag updates, mailbox
 * progress and finished bodies, applied by mk_store_batch_commit() in ONE
 * durable LMDB write transaction. The commit is a pure function of the
 * batch (nothing in the batch changes until it succeeds), so on
 * MDB_MAP_FULL it can be aborted and replayed after the map grows
 * (mk__store_write does that).
 *
 * Refcounts: a blob's refcount is the number of records naming its sha.
 * Bodies are linked first (a sha already stored, or linked earlier in the
 * same batch, just drops the new chunks), then records adjust refcounts in
 * order, and only at the end are blobs left at 0 deleted, so the order of
 * ops within a batch cannot delete a body a later op needs.
 */
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_str.h"
#include "store_int.h"

#include <string.h>

struct mk_store_batch *mk_store_batch_new(struct mk_store *st)
{
	struct mk_store_batch *b = mk_xcalloc(1, sizeof(*b));
	b->st = st;
	b->bodies_tail = &b->bodies;
	return b;
}

size_t mk_store_batch_bytes(const struct mk_store_batch *b)
{
	size_t n = sizeof(*b) + b->cap_ops * sizeof(struct mk__store_op);
	/* A body still in the compression queue counts as its expected
	 * compressed size (half its raw bytes): the queue's memory is bounded
	 * per store (MK__STORE_QUEUE_MAX), and counting it here would make
	 * callers commit (and so wait for the pool) far more often. */
	for (const struct mk_store_body *w = b->bodies; w != NULL; w = w->next)
		n += sizeof(*w) + w->mem_cap + (w->in_pool ? w->raw_len / 2 : w->raw_cap);
	return n;
}

size_t mk_store_batch_count(const struct mk_store_batch *b)
{
	return b->n_ops;
}

static struct mk__store_op *op_add(struct mk_store_batch *b, uint8_t kind)
{
	if (b->n_ops == b->cap_ops) {
		b->cap_ops = b->cap_ops ? b->cap_ops * 2 : 16;
		b->ops = mk_xrealloc(b->ops, b->cap_ops * sizeof(*b->ops));
	}
	struct mk__store_op *op = &b->ops[b->n_ops++];
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	return op;
}

/* issue 7: lets pop3.c queue its op (declared in store_int.h). */
struct mk__store_op *mk__store_batch_op(struct mk_store_batch *b, uint8_t kind)
{
	return op_add(b, kind);
}

static bool batch_has_body(const struct mk_store_batch *b, const uint8_t *sha)
{
	for (const struct mk_store_body *w = b->bodies; w != NULL; w = w->next)
		if (w->finished && memcmp(w->sha, sha, MK_STORE_SHA_LEN) == 0)
			return true;
	return false;
}

static bool batch_has_record(const struct mk_store_batch *b, const struct mk_store_msg *m)
{
	for (size_t i = 0; i < b->n_ops; i++) {
		const struct mk__store_op *op = &b->ops[i];
		if (op->kind == MK__STORE_OP_PUT && op->u.msg.account == m->account &&
		    op->u.msg.mailbox == m->mailbox && op->u.msg.uidvalidity == m->uidvalidity &&
		    op->u.msg.uid == m->uid)
			return true;
	}
	return false;
}

static bool strings_ok(const struct mk_store_msg *m)
{
	return strnlen(m->keywords, sizeof(m->keywords)) < sizeof(m->keywords) &&
	       strnlen(m->unique, sizeof(m->unique)) < sizeof(m->unique) && m->state <= MK_STORE_MSG_UNFETCHABLE;
}

int mk_store_batch_put_message(struct mk_store_batch *b, const struct mk_store_msg *m)
{
	if (!strings_ok(m))
		return MK_EINVAL;
	/* Checked now so the error reaches the caller of this record, not a
	 * whole failed commit. */
	if (!batch_has_body(b, m->sha)) {
		MDB_txn *txn;
		int ret = mk__store_rtxn(b->st, &txn);
		if (ret < 0)
			return ret;
		struct mk__store_blob blob;
		ret = mk__store_get_blob(b->st, txn, m->sha, &blob);
		mk__store_txn_abort(b->st, txn);
		if (ret < 0)
			return ret;
	}
	struct mk__store_op *op = op_add(b, MK__STORE_OP_PUT);
	op->u.msg = *m;
	if (m->unique[0] == '\0') {
		/* Generated now, not in the commit, so a replay writes the same. */
		mk__store_unique(b->st, op->u.msg.unique, sizeof(op->u.msg.unique));
		op->unique_generated = true;
	}
	b->n_msgs++;
	return 0;
}

int mk_store_batch_update_message(struct mk_store_batch *b, const struct mk_store_msg *m)
{
	if (!strings_ok(m))
		return MK_EINVAL;
	if (!batch_has_record(b, m)) {
		struct mk_store_msg *old = mk_xmalloc(sizeof(*old));
		int ret = mk_store_message_get(b->st, m->account, m->mailbox, m->uidvalidity, m->uid, old);
		mk_free(old);
		if (ret < 0)
			return ret;
	}
	struct mk__store_op *op = op_add(b, MK__STORE_OP_UPDATE);
	op->u.msg = *m;
	return 0;
}

int mk_store_batch_put_mailbox(struct mk_store_batch *b, const struct mk_store_mailbox *mb)
{
	size_t len = strnlen(mb->name, sizeof(mb->name));
	if (len == 0 || len >= sizeof(mb->name) || mb->id == 0)
		return MK_EINVAL;
	struct mk__store_op *op = op_add(b, MK__STORE_OP_MAILBOX);
	op->u.mb = *mb;
	return 0;
}

/* ---- commit ---- */

struct commit_ctx {
	struct mk_store_batch *b;
	/* shas whose refcount went down or that were linked: checked for 0 */
	uint8_t (*touched)[MK_STORE_SHA_LEN];
	size_t n_touched, cap_touched;
};

static void touch(struct commit_ctx *cc, const uint8_t *sha)
{
	if (cc->n_touched == cc->cap_touched) {
		cc->cap_touched = cc->cap_touched ? cc->cap_touched * 2 : 64;
		cc->touched = mk_xrealloc(cc->touched, cc->cap_touched * MK_STORE_SHA_LEN);
	}
	memcpy(cc->touched[cc->n_touched++], sha, MK_STORE_SHA_LEN);
}

/* Links one finished body: a new blob (refcount 0 for now) or, if the sha
 * is already stored, drops this copy's chunks. */
static int link_body(struct mk_store *st, MDB_txn *txn, struct commit_ctx *cc, const struct mk_store_body *w)
{
	struct mk__store_blob blob;
	int ret = mk__store_get_blob(st, txn, w->sha, &blob);
	if (ret == 0)
		return w->owner != 0 ? mk__store_drop_owner(st, txn, w->owner) : 0;
	if (ret != MK_ENOTFOUND)
		return ret;
	memset(&blob, 0, sizeof(blob));
	blob.raw_size = w->raw_size;
	blob.stored_size = w->stored_size;
	blob.codec = w->codec;
	blob.owner = w->owner;
	if (blob.stored_size > 0 && blob.owner == 0) {
		ret = mk__store_alloc_owner(st, txn, &blob.owner);
		if (ret < 0)
			return ret;
	}
	uint32_t no = w->spilled_chunks;
	for (size_t off = 0; off < w->mem_len; off += MK__STORE_CHUNK) {
		size_t n = w->mem_len - off < MK__STORE_CHUNK ? w->mem_len - off : MK__STORE_CHUNK;
		ret = mk__store_put_chunk(st, txn, blob.owner, no++, w->mem + off, n);
		if (ret < 0)
			return ret;
	}
	blob.n_chunks = no;
	if (w->owner != 0) {
		/* The body's chunks now belong to a blob: no longer staging. */
		uint8_t sk[8];
		mk__store_be64(sk, w->owner);
		MDB_val key = {sizeof(sk), sk};
		int rc = mdb_del(txn, st->staging, &key, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return mk__store_err(rc);
	}
	touch(cc, w->sha);
	return mk__store_put_blob(st, txn, w->sha, &blob);
}

static int refcount_add(struct mk_store *st, MDB_txn *txn, struct commit_ctx *cc, const uint8_t *sha, int delta)
{
	struct mk__store_blob blob;
	int ret = mk__store_get_blob(st, txn, sha, &blob);
	if (ret < 0)
		return ret;
	if (delta < 0) {
		if (blob.refcount == 0)
			return MK_ECORRUPT;
		blob.refcount--;
		touch(cc, sha);
	} else {
		blob.refcount++;
	}
	return mk__store_put_blob(st, txn, sha, &blob);
}

static int apply_put(struct mk_store *st, MDB_txn *txn, struct commit_ctx *cc, const struct mk__store_op *op)
{
	const struct mk_store_msg *m = &op->u.msg;
	uint8_t k[16];
	mk__store_key_msg(k, m->account, m->mailbox, m->uidvalidity, m->uid);
	MDB_val key = {sizeof(k), k}, val;
	struct mk_store_msg rec = *m;
	int rc = mdb_get(txn, st->messages, &key, &val);
	int ret;
	if (rc == 0) {
		struct mk_store_msg old;
		memset(&old, 0, sizeof(old));
		ret = mk__store_decode_msg(val.mv_data, val.mv_size, &old);
		if (ret < 0)
			return ret;
		if (memcmp(old.sha, m->sha, MK_STORE_SHA_LEN) != 0) {
			ret = refcount_add(st, txn, cc, old.sha, -1);
			/* A record naming a missing blob: repair by not counting it. */
			if (ret < 0 && ret != MK_ENOTFOUND)
				return ret;
			ret = refcount_add(st, txn, cc, m->sha, +1);
			if (ret < 0)
				return ret;
		}
		/* The unique name is the message's identity in a Maildir export:
		 * stable once stored. */
		if (op->unique_generated && old.unique[0] != '\0')
			mk_strlcpy(rec.unique, old.unique, sizeof(rec.unique));
	} else if (rc == MDB_NOTFOUND) {
		ret = refcount_add(st, txn, cc, m->sha, +1);
		if (ret < 0)
			return ret;
	} else {
		return mk__store_err(rc);
	}
	uint8_t b[MK__STORE_MSG_VAL_MAX];
	size_t n = mk__store_encode_msg(b, sizeof(b), &rec);
	val.mv_size = n;
	val.mv_data = b;
	return mk__store_err(mdb_put(txn, st->messages, &key, &val, 0));
}

static int apply_update(struct mk_store *st, MDB_txn *txn, const struct mk__store_op *op)
{
	const struct mk_store_msg *m = &op->u.msg;
	uint8_t k[16];
	mk__store_key_msg(k, m->account, m->mailbox, m->uidvalidity, m->uid);
	MDB_val key = {sizeof(k), k}, val;
	int rc = mdb_get(txn, st->messages, &key, &val);
	if (rc == MDB_NOTFOUND)
		return 0; /* checked when queued; nothing to update */
	if (rc != 0)
		return mk__store_err(rc);
	struct mk_store_msg rec;
	memset(&rec, 0, sizeof(rec));
	int ret = mk__store_decode_msg(val.mv_data, val.mv_size, &rec);
	if (ret < 0)
		return ret;
	rec.flags = m->flags;
	memcpy(rec.keywords, m->keywords, sizeof(rec.keywords));
	rec.state = m->state;
	rec.gone_at = m->gone_at;
	uint8_t b[MK__STORE_MSG_VAL_MAX];
	val.mv_size = mk__store_encode_msg(b, sizeof(b), &rec);
	val.mv_data = b;
	return mk__store_err(mdb_put(txn, st->messages, &key, &val, 0));
}

static int apply_mailbox(struct mk_store *st, MDB_txn *txn, const struct mk__store_op *op)
{
	const struct mk_store_mailbox *mb = &op->u.mb;
	uint8_t k[8];
	mk__store_key_mailbox(k, mb->account, mb->id);
	MDB_val key = {sizeof(k), k}, val;
	int rc = mdb_get(txn, st->mailboxes, &key, &val);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mk__store_err(rc);
	if (rc == 0) {
		struct mk_store_mailbox *old = mk_xmalloc(sizeof(*old));
		memset(old, 0, sizeof(*old));
		int ret = mk__store_decode_mailbox(val.mv_data, val.mv_size, old);
		if (ret == 0 && strcmp(old->name, mb->name) != 0) {
			/* Renamed: move the name index (only if it still points here). */
			uint8_t nk[MK__STORE_MBNAME_KEY_MAX];
			size_t kn = mk__store_key_mbname(nk, mb->account, old->name);
			MDB_val nkey = {kn, nk}, nval;
			uint32_t id = 0;
			rc = mdb_get(txn, st->mailbox_names, &nkey, &nval);
			if (rc == 0 && mk__store_decode_u32(nval.mv_data, nval.mv_size, &id) == 0 && id == mb->id)
				rc = mdb_del(txn, st->mailbox_names, &nkey, NULL);
			if (rc != 0 && rc != MDB_NOTFOUND)
				ret = mk__store_err(rc);
		}
		mk_free(old);
		if (ret < 0)
			return ret;
	}
	uint8_t b[MK__STORE_MBOX_VAL_MAX];
	val.mv_size = mk__store_encode_mailbox(b, sizeof(b), mb);
	val.mv_data = b;
	int ret = mk__store_err(mdb_put(txn, st->mailboxes, &key, &val, 0));
	if (ret < 0)
		return ret;
	uint8_t nk[MK__STORE_MBNAME_KEY_MAX], idv[5];
	size_t kn = mk__store_key_mbname(nk, mb->account, mb->name);
	MDB_val nkey = {kn, nk}, nval = {mk__store_encode_u32(idv, mb->id), idv};
	return mk__store_err(mdb_put(txn, st->mailbox_names, &nkey, &nval, 0));
}

/* Deletes touched blobs left without references, with their chunks. */
static int sweep(struct mk_store *st, MDB_txn *txn, struct commit_ctx *cc)
{
	for (size_t i = 0; i < cc->n_touched; i++) {
		struct mk__store_blob blob;
		int ret = mk__store_get_blob(st, txn, cc->touched[i], &blob);
		if (ret == MK_ENOTFOUND)
			continue; /* touched twice, already deleted */
		if (ret < 0)
			return ret;
		if (blob.refcount != 0)
			continue;
		if (blob.owner != 0) {
			ret = mk__store_drop_owner(st, txn, blob.owner);
			if (ret < 0)
				return ret;
		}
		MDB_val key = {MK_STORE_SHA_LEN, cc->touched[i]};
		int rc = mdb_del(txn, st->blobs, &key, NULL);
		if (rc != 0)
			return mk__store_err(rc);
	}
	return 0;
}

static int commit_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	struct commit_ctx *cc = ud;
	struct mk_store_batch *b = cc->b;
	cc->n_touched = 0;
	int ret = 0;
	unsigned since_release = 0;
	for (struct mk_store_body *w = b->bodies; w != NULL && ret == 0; w = w->next) {
		if (w->finished)
			ret = link_body(st, txn, cc, w);
		else if (w->failed && w->owner != 0)
			ret = mk__store_drop_owner(st, txn, w->owner);
		/* Each B-tree lookup faults the map in 64 KiB at a time (the
		 * kernel's fault-around): drop those pages as we go, or a batch
		 * of a few hundred bodies leaves ~20 MB of the file resident
		 * until the commit ends. The map is read-only, so this only
		 * costs refaults. */
		if (++since_release == 8) {
			since_release = 0;
			mk__store_release_map(st);
		}
	}
	for (size_t i = 0; i < b->n_ops && ret == 0; i++) {
		if (++since_release == 32) {
			since_release = 0;
			mk__store_release_map(st);
		}
		const struct mk__store_op *op = &b->ops[i];
		switch (op->kind) {
		case MK__STORE_OP_PUT:
			ret = apply_put(st, txn, cc, op);
			break;
		case MK__STORE_OP_UPDATE:
			ret = apply_update(st, txn, op);
			break;
		case MK__STORE_OP_MAILBOX:
			ret = apply_mailbox(st, txn, op);
			break;
		case MK__STORE_OP_POP3: /* issue 7: POP3 UIDL entry, same transaction */
			ret = mk__store_pop3_apply(st, txn, &op->u.pop3);
			break;
		case MK__STORE_OP_OUTBOX: /* issue 5: an outbox entry references its body */
			ret = mk__store_outbox_apply(st, txn, op->u.outbox);
			if (ret == 0)
				ret = refcount_add(st, txn, cc, op->u.outbox->sha, +1);
			break;
		default:
			MK_ASSERT(!"unknown batch op");
		}
	}
	/* MK_ENOTFOUND here: a record names a body neither stored nor in the
	 * batch (put_message checks, so only if something deleted it since). */
	if (ret == 0)
		ret = sweep(st, txn, cc);
	return ret;
}

/* Forgets what the commit applied; unfinished bodies stay for the next. */
static void batch_reset(struct mk_store_batch *b, bool keep_unfinished)
{
	struct mk_store_body **pp = &b->bodies;
	while (*pp != NULL) {
		struct mk_store_body *w = *pp;
		if (keep_unfinished && !w->finished && !w->failed) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		mk__store_body_release(w);
	}
	b->bodies_tail = pp;
	b->n_ops = 0;
	b->n_msgs = 0;
	if (b->cap_ops > 256) {
		/* Do not keep a huge op array after an unusually big batch. */
		MK_FREE(&b->ops);
		b->cap_ops = 0;
	}
}

int mk_store_batch_commit(struct mk_store_batch *b)
{
	/* Every body final (compressed by the pool, helped along if still
	 * queued) before the transaction, so a MAP_FULL replay sees the same. */
	for (struct mk_store_body *w = b->bodies; w != NULL; w = w->next)
		mk__store_pool_wait(w);
	struct commit_ctx cc = {b, NULL, 0, 0};
	int ret = mk__store_write(b->st, commit_txn, &cc, true);
	mk_free(cc.touched);
	if (ret == 0)
		batch_reset(b, true);
	return ret;
}

int mk__store_blob_ref(struct mk_store *st, MDB_txn *txn, const uint8_t sha[MK_STORE_SHA_LEN], int delta)
{
	struct commit_ctx cc = {NULL, NULL, 0, 0};
	int ret = refcount_add(st, txn, &cc, sha, delta);
	if (ret == 0)
		ret = sweep(st, txn, &cc);
	mk_free(cc.touched);
	return ret;
}

static int drop_owner_txn(struct mk_store *st, MDB_txn *txn, void *ud)
{
	return mk__store_drop_owner(st, txn, *(const uint64_t *)ud);
}

void mk_store_batch_free(struct mk_store_batch **bp)
{
	struct mk_store_batch *b = *bp;
	if (b == NULL)
		return;
	/* Spilled chunks of uncommitted bodies: free them now (best effort;
	 * their staging marks let the next open do it otherwise). */
	for (struct mk_store_body *w = b->bodies; w != NULL; w = w->next)
		if (w->owner != 0)
			(void)mk__store_write(b->st, drop_owner_txn, &w->owner, false);
	batch_reset(b, false);
	mk_free(b->ops);
	mk_free(b);
	*bp = NULL;
}
