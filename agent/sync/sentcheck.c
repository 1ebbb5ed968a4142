/* SPDX-License-Identifier: MIT */
/*
 * sentcheck.c - see mk_sentcheck.h. A small read-only IMAP job: nothing is
 * changed on the server (EXAMINE, BODY.PEEK).
 */
#include "mk_sentcheck.h"
#include "mk_login.h"

#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_imap_session.h"
#include "mk_store.h"
#include "mk_str.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HDR_MAX 2048

enum cstate { C_CAPA = 0, C_LOGIN, C_EXAMINE, C_FETCH, C_APPEND, C_LOGOUT, C_DONE };

#define PIECE (64 * 1024)

struct mk_sentcheck {
	struct mk_sentcheck_opts o;
	char *secret;
	char *folder;
	char **ids;
	struct mk_sentcheck_result res;
	void (*done)(void *ud, struct mk_sentcheck *c);
	void *ud;
	struct mk_imap_session *sess;
	enum cstate st;
	unsigned tag;
	char hdr[HDR_MAX + 1];
	size_t hdr_len;
	bool cancelled;
	/* save_sent */
	uint64_t *append_ids;
	size_t next_append;
	struct mk_store_outbox cur;
	struct mk_store_body_reader *reader;
	uint8_t *piece;
	size_t piece_len, piece_off;
	bool body_done;
};

static void fail(struct mk_sentcheck *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct mk_sentcheck *c, int err, const char *fmt, ...)
{
	if (c->res.err == 0) {
		c->res.err = err;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->res.error, sizeof(c->res.error), fmt, ap);
		va_end(ap);
	}
	if (c->sess != NULL)
		mk_imap_session_abort(c->sess, err, c->res.error);
}

static void submit(struct mk_sentcheck *c, const struct mk_imap_cmd *cmd)
{
	if (mk_imap_session_submit(c->sess, cmd, &c->tag) < 0)
		fail(c, MK_EPROTO, "account %s: cannot send an IMAP command", c->o.acct->name);
}

/* Every "<...>" in the unfolded header text is compared with the wanted
 * ids (case-sensitively on the local part is what RFC 5322 says, but
 * servers re-case nothing here: exact match). */
static void match_header(struct mk_sentcheck *c)
{
	c->res.scanned++;
	const char *p = c->hdr;
	while ((p = strchr(p, '<')) != NULL) {
		const char *e = strchr(p, '>');
		if (e == NULL)
			break;
		size_t n = (size_t)(e - p) + 1;
		for (size_t i = 0; i < c->res.n; i++)
			if (!c->res.found[i] && strlen(c->ids[i]) == n && strncmp(c->ids[i], p, n) == 0)
				c->res.found[i] = true;
		p = e + 1;
	}
}

static void logout(struct mk_sentcheck *c)
{
	struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_LOGOUT};
	c->st = C_LOGOUT;
	submit(c, &cmd);
}

static void pump(struct mk_sentcheck *c)
{
	while (c->st == C_APPEND && c->sess != NULL && c->reader != NULL) {
		if (c->piece_off == c->piece_len) {
			size_t n = 0;
			int r = mk_store_body_next(c->reader, c->piece, PIECE, &n);
			if (r < 0) {
				/* the literal cannot be completed: drop the connection */
				fail(c, r, "account %s: outbox %llu: the stored message cannot be read (%s)", c->o.acct->name,
				     (unsigned long long)c->cur.id, mk_strerror(r));
				return;
			}
			if (n == 0) {
				mk_store_body_close(&c->reader);
				return; /* all written: the tagged reply follows */
			}
			c->piece_len = n;
			c->piece_off = 0;
		}
		size_t taken = 0;
		if (mk_imap_session_append_write(c->sess, c->piece + c->piece_off, c->piece_len - c->piece_off, &taken) < 0) {
			fail(c, MK_EPROTO, "account %s: cannot send the copy", c->o.acct->name);
			return;
		}
		c->piece_off += taken;
		if (taken == 0)
			return; /* on_writable resumes */
	}
}

/* The next entry to save, or LOGOUT. */
static void next_append(struct mk_sentcheck *c)
{
	while (c->next_append < c->o.n_append) {
		uint64_t id = c->append_ids[c->next_append++];
		if (mk_store_outbox_get(c->o.store, id, &c->cur) < 0 || c->cur.state != MK_STORE_OUTBOX_SENT ||
		    (c->cur.flags & MK_STORE_OUTBOX_SAVED) != 0 || c->cur.size == 0)
			continue;
		int r = mk_store_body_open(c->o.store, c->cur.sha, &c->reader);
		if (r < 0)
			continue; /* verify reports it; nothing to save */
		if (c->piece == NULL)
			c->piece = mk_xmalloc(PIECE);
		c->piece_len = c->piece_off = 0;
		struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_APPEND, .a = c->folder, .b = "(\\Seen)", .size = c->cur.size};
		c->st = C_APPEND;
		submit(c, &cmd);
		if (c->sess != NULL && mk_imap_session_append_ready(c->sess))
			pump(c); /* LITERAL+: no "+" to wait for */
		return;
	}
	logout(c);
}

static void on_writable(struct mk_imap_session *s, void *ud)
{
	(void)s;
	pump(ud);
}

static void on_event(struct mk_imap_session *s, const struct mk_imap_event *ev, void *ud)
{
	struct mk_sentcheck *c = ud;
	(void)s;
	if (ev->kind == MK_IMAP_EV_BODY_BEGIN) {
		c->hdr_len = 0;
		return;
	}
	if (ev->kind == MK_IMAP_EV_BODY_CHUNK) {
		size_t n = ev->chunk.n;
		if (c->hdr_len + n > HDR_MAX)
			n = HDR_MAX - c->hdr_len;
		memcpy(c->hdr + c->hdr_len, ev->chunk.p, n);
		c->hdr_len += n;
		return;
	}
	if (ev->kind == MK_IMAP_EV_FETCH && c->st == C_FETCH) {
		c->hdr[c->hdr_len] = '\0';
		/* a NUL inside ends the comparison early: harmless */
		match_header(c);
		c->hdr_len = 0;
		return;
	}
	if (ev->kind == MK_IMAP_EV_CONTINUATION && ev->cmd == MK_IMAP_CMD_APPEND && c->st == C_APPEND) {
		pump(c);
		return;
	}
	if (ev->kind == MK_IMAP_EV_BYE && c->st != C_LOGOUT) {
		fail(c, MK_ESERVER, "account %s: server said BYE: %s", c->o.acct->name, ev->text ? ev->text : "");
		return;
	}
	if (ev->kind != MK_IMAP_EV_TAGGED || ev->tag != c->tag)
		return;
	const char *acc = c->o.acct->name;
	switch (c->st) {
	case C_CAPA: {
		c->st = C_LOGIN;
		if (mk_login_imap(c->sess, c->o.acct, c->secret, &c->tag) < 0)
			fail(c, MK_EAUTH, "account %s: cannot send the IMAP login", acc);
		return;
	}
	case C_LOGIN: {
		if (ev->status != MK_IMAP_OK) {
			char msg[600];
			mk_login_imap_failed(c->sess, c->o.acct, ev, msg, sizeof(msg));
			fail(c, MK_EAUTH, "account %s: IMAP %s", acc, msg);
			return;
		}
		if (c->res.n == 0) {
			next_append(c);
			return;
		}
		struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_EXAMINE, .a = c->folder};
		c->st = C_EXAMINE;
		submit(c, &cmd);
		return;
	}
	case C_EXAMINE: {
		if (ev->status != MK_IMAP_OK) {
			fail(c, MK_ENOTFOUND, "account %s: cannot open folder \"%s\": %s", acc, c->folder,
			     ev->text ? ev->text : "");
			return;
		}
		struct mk_imap_cmd cmd = {
			.kind = MK_IMAP_CMD_UID_FETCH,
			.a = "1:*",
			.b = "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID X-MICROSOFT-ORIGINAL-MESSAGE-ID)])",
		};
		c->st = C_FETCH;
		submit(c, &cmd);
		return;
	}
	case C_FETCH: {
		if (ev->status != MK_IMAP_OK) {
			fail(c, MK_ESERVER, "account %s: searching \"%s\" failed: %s", acc, c->folder,
			     ev->text ? ev->text : "");
			return;
		}
		next_append(c);
		return;
	}
	case C_APPEND: {
		mk_store_body_close(&c->reader);
		if (ev->status != MK_IMAP_OK) {
			fail(c, MK_ESERVER, "account %s: cannot save a copy of outbox %llu in \"%s\": %s%s%s", acc,
			     (unsigned long long)c->cur.id, c->folder, ev->code ? ev->code : "", ev->code ? " " : "",
			     ev->text ? ev->text : "");
			return;
		}
		c->cur.flags |= MK_STORE_OUTBOX_SAVED;
		int r = mk_store_outbox_update(c->o.store, &c->cur, MK_STORE_OUTBOX_SENT);
		if (r == 0)
			c->res.saved++;
		next_append(c);
		return;
	}
	case C_LOGOUT:
		c->st = C_DONE;
		mk_imap_session_close(c->sess);
		return;
	case C_DONE:
		return;
	}
}

static void on_ready(struct mk_imap_session *s, void *ud)
{
	struct mk_sentcheck *c = ud;
	(void)s;
	struct mk_imap_cmd cmd = {.kind = MK_IMAP_CMD_CAPABILITY};
	c->st = C_CAPA;
	submit(c, &cmd);
}

static void on_close(struct mk_imap_session *s, int err, const char *msg, void *ud)
{
	struct mk_sentcheck *c = ud;
	(void)s;
	c->sess = NULL;
	if (c->res.err == 0 && (err != 0 || c->st < C_LOGOUT)) {
		c->res.err = err != 0 ? err : MK_ECANCELED;
		snprintf(c->res.error, sizeof(c->res.error), "account %s: %s", c->o.acct->name,
			 err != 0 ? msg : "connection closed before the search ended");
	}
	if (c->done != NULL)
		c->done(c->ud, c);
}

int mk_sentcheck_start(const struct mk_sentcheck_opts *o, void (*done)(void *ud, struct mk_sentcheck *c), void *ud,
		       struct mk_sentcheck **c_r)
{
	const struct mk_config_account *a = o->acct;
	if (a->imap.host == NULL)
		return MK_ENOTFOUND;
	struct mk_sentcheck *c = mk_xcalloc(1, sizeof(*c));
	c->o = *o;
	c->secret = mk_xstrdup(o->secret ? o->secret : "");
	c->folder = mk_xstrdup(o->folder);
	c->ids = mk_xcalloc(o->n ? o->n : 1, sizeof(char *));
	for (size_t i = 0; i < o->n; i++)
		c->ids[i] = mk_xstrdup(o->msgids[i]);
	c->res.n = o->n;
	mk_store_outbox_init(&c->cur);
	c->append_ids = mk_xcalloc(o->n_append ? o->n_append : 1, sizeof(uint64_t));
	if (o->n_append)
		memcpy(c->append_ids, o->append_ids, o->n_append * sizeof(uint64_t));
	c->res.found = mk_xcalloc(o->n ? o->n : 1, sizeof(bool));
	c->done = done;
	c->ud = ud;
	struct mk_imap_session_opts so = {
		.conn =
			{
				.host = a->imap.host,
				.port = a->imap.port,
				.implicit_tls = a->imap.tls == MK_CONFIG_TLS_IMPLICIT,
				.tls_ctx = o->tls_ctx,
				.tls_fingerprint = a->tls_fingerprint,
				.connect_timeout_ms = a->timeout_s * 1000,
				.handshake_timeout_ms = a->timeout_s * 1000,
				.idle_timeout_ms = a->timeout_s * 1000 * 4,
				.id = 300,
				.log_account = a->name,
			},
		.trace = o->trace,
	};
	static const struct mk_imap_session_cbs cbs = {on_ready, on_event, on_close, on_writable};
	int r = mk_imap_session_start(o->loop, &so, &cbs, c, &c->sess);
	if (r < 0) {
		mk_sentcheck_free(&c);
		return r;
	}
	*c_r = c;
	return 0;
}

const struct mk_sentcheck_result *mk_sentcheck_result(const struct mk_sentcheck *c)
{
	return &c->res;
}

void mk_sentcheck_cancel(struct mk_sentcheck *c)
{
	if (c->cancelled || c->sess == NULL)
		return;
	c->cancelled = true;
	fail(c, MK_ECANCELED, "cancelled");
}

void mk_sentcheck_free(struct mk_sentcheck **cp)
{
	struct mk_sentcheck *c = *cp;
	if (c == NULL)
		return;
	MK_ASSERT(c->sess == NULL);
	for (size_t i = 0; i < c->res.n; i++)
		mk_free(c->ids[i]);
	mk_free(c->ids);
	mk_free(c->res.found);
	mk_free(c->folder);
	mk_store_body_close(&c->reader);
	mk_store_outbox_cleanup(&c->cur);
	mk_free(c->piece);
	mk_free(c->append_ids);
	if (c->secret != NULL) {
		explicit_bzero(c->secret, strlen(c->secret));
		mk_free(c->secret);
	}
	MK_FREE(cp);
}
