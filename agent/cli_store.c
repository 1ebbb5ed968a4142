/* SPDX-License-Identifier: MIT */
/*
 * cli_store.c - reading the store back: `ls`, `cat`, `stats`, `verify`.
 * None of these touches the network.
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_control.h"
#include "mk_mime.h"
#include "mk_store.h"
#include "mk_str.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int mk_cli_open_store(const struct mk_cli *cli, struct mk_config **cfg_r, struct mk_store **st_r)
{
	int ex = mk_cli_load_config(cli, cfg_r);
	if (ex != 0)
		return ex;
	char *error = NULL;
	int r = mk_store_open((*cfg_r)->store, (*cfg_r)->compress_level, st_r, &error);
	if (r < 0) {
		fprintf(stderr, "mailkeep: %s\n", error ? error : mk_strerror(r));
		mk_free(error);
		mk_config_free(cfg_r);
		return r == MK_ECONFIG ? MK_EXIT_CONFIG : MK_EXIT_CANTCREAT;
	}
	return 0;
}

/* "ACCOUNT", "ACCOUNT/FOLDER" (folder may contain '/'). */
int mk_cli_split_path(const char *path, char *acct, size_t acctsz, const char **folder_r)
{
	const char *slash = strchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : strlen(path);
	if (n == 0 || n >= acctsz)
		return MK_EINVAL;
	memcpy(acct, path, n);
	acct[n] = '\0';
	*folder_r = slash ? slash + 1 : NULL;
	if (*folder_r != NULL && **folder_r == '\0')
		*folder_r = NULL;
	return 0;
}

/* ---- ls ---- */

struct count_ctx {
	uint64_t present, gone, bytes;
};

static int count_cb(void *ud, const struct mk_store_msg *m)
{
	struct count_ctx *c = ud;
	if (m->state == MK_STORE_MSG_GONE)
		c->gone++;
	else
		c->present++;
	c->bytes += m->raw_size;
	return 0;
}

struct ls_ctx {
	struct mk_store *st;
	uint32_t account;
	const char *account_name;
	bool json;
	unsigned n;
};

static int ls_mailbox_one(struct ls_ctx *l, const struct mk_store_mailbox *mb)
{
	struct count_ctx c = {0};
	int r = mk_store_messages(l->st, l->account, mb->id, 0, count_cb, &c);
	if (r < 0)
		return r;
	if (l->json) {
		fprintf(stdout, "%s{\"account\":", l->n++ ? ",\n " : "[");
		mk_cli_json_str(stdout, l->account_name);
		fprintf(stdout, ",\"folder\":");
		mk_cli_json_str(stdout, mb->name);
		fprintf(stdout,
			",\"messages\":%llu,\"gone\":%llu,\"bytes\":%llu,\"uidvalidity\":%u,\"on_server\":%s,"
			"\"last_sync\":%lld}",
			(unsigned long long)c.present, (unsigned long long)c.gone, (unsigned long long)c.bytes,
			mb->uidvalidity, mb->gone ? "false" : "true", (long long)mb->last_sync);
	} else {
		char when[32] = "never";
		if (mb->last_sync) {
			time_t t = (time_t)mb->last_sync;
			struct tm tm;
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", localtime_r(&t, &tm));
		}
		printf("%-12s %-30s %8llu msgs %10.1f MB  %s%s", l->account_name, mb->name,
		       (unsigned long long)c.present, (double)c.bytes / 1e6, when,
		       mb->gone ? "  (gone from server)" : "");
		if (c.gone)
			printf("  +%llu gone", (unsigned long long)c.gone);
		printf("\n");
	}
	return 0;
}

/* From/Subject/Date of a message: read the header only. */
struct hdr_ctx {
	struct mk_buf b;
};

static int hdr_cb(void *ud, const uint8_t *p, size_t n)
{
	struct hdr_ctx *h = ud;
	size_t room = h->b.max - h->b.len;
	(void)mk_buf_append(&h->b, p, n < room ? n : room);
	if (h->b.len >= h->b.max || (h->b.data != NULL && strstr((char *)h->b.data, "\r\n\r\n") != NULL) ||
	    (h->b.data != NULL && strstr((char *)h->b.data, "\n\n") != NULL))
		return MK_ECANCELED; /* enough */
	return 0;
}

static void header_value(const char *hdr, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name);
	out[0] = '\0';
	const char *p = hdr;
	while (*p) {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			size_t o = 0;
			while (*p && o + 1 < outsz) {
				if (*p == '\r' || *p == '\n') {
					/* unfold continuation lines */
					const char *q = p;
					while (*q == '\r' || *q == '\n')
						q++;
					if (*q != ' ' && *q != '\t')
						break;
					p = q;
					continue;
				}
				out[o++] = (*p == '\t') ? ' ' : *p;
				p++;
			}
			out[o] = '\0';
			char *t = mk_str_trim(out);
			memmove(out, t, strlen(t) + 1);
			return;
		}
		const char *nl2 = strchr(p, '\n');
		if (nl2 == NULL)
			break;
		p = nl2 + 1;
		if (*p == '\r' || *p == '\n')
			break; /* end of header */
	}
}

static void flags_str(uint32_t flags, const char *kw, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s%s%s%s%s%s%s", flags & MK_STORE_FLAG_SEEN ? "S" : "-",
		 flags & MK_STORE_FLAG_ANSWERED ? "R" : "-", flags & MK_STORE_FLAG_FLAGGED ? "F" : "-",
		 flags & MK_STORE_FLAG_DRAFT ? "D" : "-", flags & MK_STORE_FLAG_DELETED ? "T" : "-", kw[0] ? " " : "",
		 kw);
}

int mk_cli_ls(const struct mk_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	bool json = false;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (ch == 'j') {
			json = true;
		} else {
			FILE *f = ch == 'h' ? stdout : stderr;
			fprintf(f, "usage: mailkeep [-c FILE] ls [--json] [ACCOUNT[/FOLDER]]\n"
				   "Lists accounts and folders of the store, or the messages of one folder.\n");
			return ch == 'h' ? MK_EXIT_OK : MK_EXIT_USAGE;
		}
	}
	struct mk_config *cfg = NULL;
	struct mk_store *st = NULL;
	int ex = mk_cli_open_store(cli, &cfg, &st);
	if (ex != 0)
		return ex;
	char acct[128];
	const char *folder = NULL;
	int r = 0;
	ex = MK_EXIT_OK;
	if (optind < argc && mk_cli_split_path(argv[optind], acct, sizeof(acct), &folder) < 0) {
		fprintf(stderr, "mailkeep: bad path \"%s\" (expected ACCOUNT or ACCOUNT/FOLDER)\n", argv[optind]);
		ex = MK_EXIT_USAGE;
		goto out;
	}
	if (optind >= argc || folder == NULL) {
		struct ls_ctx l = {st, 0, NULL, json, 0};
		for (size_t i = 0; i < cfg->n_accounts; i++) {
			const char *name = cfg->accounts[i].name;
			if (optind < argc && strcmp(name, acct) != 0)
				continue;
			uint32_t id;
			if (mk_store_account(st, name, false, &id) < 0)
				continue;
			l.account = id;
			l.account_name = name;
			/* collect first: a callback runs inside a read transaction */
			struct mk_cli_mailboxes mbl = {0};
			r = mk_cli_load_mailboxes(st, id, &mbl);
			for (size_t k = 0; r == 0 && k < mbl.n; k++)
				r = ls_mailbox_one(&l, &mbl.m[k]);
			mk_free(mbl.m);
			if (r < 0)
				break;
		}
		if (json)
			printf("%s]\n", l.n ? "" : "[");
		if (optind < argc && l.n == 0 && !json && mk_config_find_account(cfg, acct) == NULL) {
			fprintf(stderr, "mailkeep: no account \"%s\"\n", acct);
			ex = MK_EXIT_USAGE;
		}
		goto out;
	}
	uint32_t aid;
	struct mk_store_mailbox mb;
	if (mk_store_account(st, acct, false, &aid) < 0 || mk_store_mailbox_get(st, aid, folder, false, &mb) < 0) {
		fprintf(stderr, "mailkeep: no folder \"%s\" for account \"%s\" in the store\n", folder, acct);
		ex = MK_EXIT_USAGE;
		goto out;
	}
	struct mk_cli_msgs ml = {0};
	r = mk_cli_load_messages(st, aid, mb.id, 0, &ml);
	for (size_t i = 0; r == 0 && i < ml.n; i++) {
		const struct mk_store_msg *m = &ml.m[i];
		struct hdr_ctx h;
		mk_buf_init(&h.b, 16384);
		(void)mk_store_body_read(st, m->sha, hdr_cb, &h);
		char from_raw[400], subj_raw[600], from[400], subj[600], fl[600];
		const char *hdr = h.b.data ? (const char *)h.b.data : "";
		header_value(hdr, "From", from_raw, sizeof(from_raw));
		header_value(hdr, "Subject", subj_raw, sizeof(subj_raw));
		mk_mime_decode_header(from_raw, from, sizeof(from));
		mk_mime_decode_header(subj_raw, subj, sizeof(subj));
		mk_buf_cleanup(&h.b);
		flags_str(m->flags, m->keywords, fl, sizeof(fl));
		char date[32];
		time_t t = (time_t)m->internaldate;
		struct tm tm;
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M", gmtime_r(&t, &tm));
		if (json) {
			printf("%s{\"uid\":%u,\"uidvalidity\":%u,\"date\":%lld,\"size\":%llu,\"flags\":", i ? ",\n " : "[",
			       m->uid, m->uidvalidity, (long long)m->internaldate, (unsigned long long)m->raw_size);
			mk_cli_json_str(stdout, fl);
			printf(",\"from\":");
			mk_cli_json_str(stdout, from);
			printf(",\"subject\":");
			mk_cli_json_str(stdout, subj);
			printf(",\"gone\":%s}", m->state == MK_STORE_MSG_GONE ? "true" : "false");
		} else {
			char fromf[200], subjf[300];
			mk_mime_fit(from, 28, fromf, sizeof(fromf));
			mk_mime_fit(subj, 60, subjf, sizeof(subjf));
			size_t sl = strlen(subjf);
			while (sl > 0 && subjf[sl - 1] == ' ')
				subjf[--sl] = '\0'; /* the last column is not padded */
			printf("%8u  %s  %-7s %8llu  %s  %s%s\n", m->uid, date, fl, (unsigned long long)m->raw_size, fromf,
			       subjf, m->state == MK_STORE_MSG_GONE ? "  (gone)" : "");
		}
	}
	if (json)
		printf("%s]\n", ml.n ? "" : "[");
	mk_free(ml.m);
out:
	if (r < 0) {
		fprintf(stderr, "mailkeep: reading the store: %s\n", mk_strerror(r));
		ex = MK_EXIT_IOERR;
	}
	mk_store_close(&st);
	mk_config_free(&cfg);
	return ex;
}

/* ---- cat ---- */

static int write_cb(void *ud, const uint8_t *p, size_t n)
{
	FILE *f = ud;
	return fwrite(p, 1, n, f) == n ? 0 : MK_EIO;
}

struct latest_ctx {
	uint32_t uid;
	struct mk_store_msg m;
	bool found;
};

static int latest_cb(void *ud, const struct mk_store_msg *m)
{
	struct latest_ctx *l = ud;
	if (m->uid == l->uid) {
		l->m = *m; /* later generations come later: keep the newest */
		l->found = true;
	}
	return 0;
}

int mk_cli_cat(const struct mk_cli *cli, int argc, char **argv)
{
	if (argc != 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		FILE *f = argc == 2 ? stdout : stderr;
		fprintf(f, "usage: mailkeep [-c FILE] cat ACCOUNT/FOLDER/UID\n"
			   "Writes the stored message, byte for byte, to standard output.\n");
		return argc == 2 ? MK_EXIT_OK : MK_EXIT_USAGE;
	}
	char acct[128];
	const char *rest;
	const char *last = strrchr(argv[1], '/');
	uint64_t uid;
	if (mk_cli_split_path(argv[1], acct, sizeof(acct), &rest) < 0 || rest == NULL || last == NULL ||
	    last < rest || mk_str_to_u64(last + 1, 1, UINT32_MAX, &uid) < 0) {
		fprintf(stderr, "mailkeep: bad message path \"%s\" (expected ACCOUNT/FOLDER/UID)\n", argv[1]);
		return MK_EXIT_USAGE;
	}
	char *folder = mk_xstrndup(rest, (size_t)(last - rest));
	struct mk_config *cfg = NULL;
	struct mk_store *st = NULL;
	int ex = mk_cli_open_store(cli, &cfg, &st);
	if (ex != 0) {
		mk_free(folder);
		return ex;
	}
	uint32_t aid;
	struct mk_store_mailbox mb;
	struct latest_ctx l = {(uint32_t)uid, {0}, false};
	if (mk_store_account(st, acct, false, &aid) < 0 || mk_store_mailbox_get(st, aid, folder, false, &mb) < 0 ||
	    mk_store_messages(st, aid, mb.id, 0, latest_cb, &l) < 0 || !l.found) {
		fprintf(stderr, "mailkeep: no message %s in the store\n", argv[1]);
		ex = MK_EXIT_DATAERR;
	} else {
		int r = mk_store_body_read(st, l.m.sha, write_cb, stdout);
		if (fflush(stdout) != 0 && r == 0)
			r = MK_EIO;
		if (r < 0) {
			fprintf(stderr, "mailkeep: %s: %s\n", argv[1],
				r == MK_ECORRUPT ? "the stored copy is corrupt (hash mismatch); run `mailkeep verify`"
						 : mk_strerror(r));
			ex = r == MK_ECORRUPT ? MK_EXIT_DATAERR : MK_EXIT_IOERR;
		}
	}
	mk_free(folder);
	mk_store_close(&st);
	mk_config_free(&cfg);
	return ex;
}

/* ---- stats ---- */

int mk_cli_stats(const struct mk_cli *cli, int argc, char **argv)
{
	bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
	if (argc > 2 || (argc == 2 && !json)) {
		bool help = strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0;
		fprintf(help ? stdout : stderr, "usage: mailkeep [-c FILE] stats [--json]\n");
		return help ? MK_EXIT_OK : MK_EXIT_USAGE;
	}
	struct mk_config *cfg = NULL;
	struct mk_store *st = NULL;
	int ex = mk_cli_open_store(cli, &cfg, &st);
	if (ex != 0)
		return ex;
	struct mk_store_stats s;
	int r = mk_store_stats(st, &s);
	if (r < 0) {
		fprintf(stderr, "mailkeep: reading the store: %s\n", mk_strerror(r));
		ex = MK_EXIT_IOERR;
	} else if (json) {
		printf("{\"accounts\":%llu,\"folders\":%llu,\"messages\":%llu,\"messages_gone\":%llu,\"bodies\":%llu,"
		       "\"raw_bytes\":%llu,\"body_raw_bytes\":%llu,\"body_stored_bytes\":%llu,\"file_bytes\":%llu,"
		       "\"compression_ratio\":%.4f,\"dedupe_ratio\":%.4f}\n",
		       (unsigned long long)s.accounts, (unsigned long long)s.mailboxes, (unsigned long long)s.messages,
		       (unsigned long long)s.messages_gone, (unsigned long long)s.blobs, (unsigned long long)s.raw_bytes,
		       (unsigned long long)s.blob_raw_bytes, (unsigned long long)s.blob_stored_bytes,
		       (unsigned long long)s.file_bytes,
		       s.blob_raw_bytes ? (double)s.blob_stored_bytes / (double)s.blob_raw_bytes : 0.0,
		       s.raw_bytes ? (double)s.blob_raw_bytes / (double)s.raw_bytes : 0.0);
	} else {
		printf("store:        %s\n", cfg->store);
		printf("accounts:     %llu\nfolders:      %llu\n", (unsigned long long)s.accounts,
		       (unsigned long long)s.mailboxes);
		printf("messages:     %llu (%llu gone from the server, kept)\n", (unsigned long long)s.messages,
		       (unsigned long long)s.messages_gone);
		printf("bodies:       %llu distinct\n", (unsigned long long)s.blobs);
		printf("raw size:     %.1f MB (what a Maildir would hold)\n", (double)s.raw_bytes / 1e6);
		printf("after dedupe: %.1f MB (%.1f%%)\n", (double)s.blob_raw_bytes / 1e6,
		       s.raw_bytes ? 100.0 * (double)s.blob_raw_bytes / (double)s.raw_bytes : 0.0);
		printf("compressed:   %.1f MB (%.1f%% of the bodies)\n", (double)s.blob_stored_bytes / 1e6,
		       s.blob_raw_bytes ? 100.0 * (double)s.blob_stored_bytes / (double)s.blob_raw_bytes : 0.0);
		printf("store file:   %.1f MB\n", (double)s.file_bytes / 1e6);
	}
	mk_store_close(&st);
	mk_config_free(&cfg);
	return ex;
}

/* ---- verify ---- */

static void verify_problem(void *ud, const char *problem)
{
	unsigned *n = ud;
	(*n)++;
	fprintf(stderr, "mailkeep: verify: %s\n", problem);
}

int mk_cli_verify(const struct mk_cli *cli, int argc, char **argv)
{
	bool server = false;
	int first = 1;
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		printf("usage: mailkeep [-c FILE] verify [--server [ACCOUNT...]]\n"
		       "Decompresses every stored body and checks its SHA-256, every record's body,\n"
		       "and the reference counts. With --server, also compares each folder's UID list,\n"
		       "flags and sizes with the server (read-only). Exit 0 when all is well, 65 on any\n"
		       "problem or difference.\n");
		return MK_EXIT_OK;
	}
	if (argc > 1 && strcmp(argv[1], "--server") == 0) {
		server = true;
		first = 2;
	}
	if (!server && argc > 1) {
		fprintf(stderr, "usage: mailkeep [-c FILE] verify [--server [ACCOUNT...]]\n");
		return MK_EXIT_USAGE;
	}
	struct mk_config *cfg = NULL;
	struct mk_store *st = NULL;
	int ex = mk_cli_open_store(cli, &cfg, &st);
	if (ex != 0)
		return ex;
	struct mk_store_verify_report rep;
	memset(&rep, 0, sizeof(rep));
	unsigned problems = 0;
	int r = mk_store_verify(st, &rep, verify_problem, &problems);
	if (r < 0) {
		fprintf(stderr, "mailkeep: verify: %s\n", mk_strerror(r));
		ex = MK_EXIT_IOERR;
	} else {
		bool bad = rep.blobs_bad || rep.records_missing_body || rep.refcount_errors || rep.orphan_blobs ||
			   rep.orphan_chunks;
		printf("%llu bodies checked (%llu bad), %llu records (%llu without body), %llu refcount errors, "
		       "%llu orphans: %s\n",
		       (unsigned long long)(rep.blobs_ok + rep.blobs_bad), (unsigned long long)rep.blobs_bad,
		       (unsigned long long)(rep.records_ok + rep.records_missing_body),
		       (unsigned long long)rep.records_missing_body, (unsigned long long)rep.refcount_errors,
		       (unsigned long long)(rep.orphan_blobs + rep.orphan_chunks), bad ? "PROBLEMS FOUND" : "ok");
		ex = bad ? MK_EXIT_DATAERR : MK_EXIT_OK;
	}
	if (server && r >= 0) {
		int sx = mk_cli_verify_server(cli, cfg, st, argc - first, argv + first);
		if (sx != MK_EXIT_OK && (ex == MK_EXIT_OK || sx != MK_EXIT_DATAERR))
			ex = sx;
	}
	mk_store_close(&st);
	mk_config_free(&cfg);
	return ex;
}

/* ---- status / metrics: ask the running agent ---- */

static int ask_agent(const struct mk_cli *cli, const char *request)
{
	struct mk_config *cfg = NULL;
	int ex = mk_cli_load_config(cli, &cfg);
	if (ex != 0)
		return ex;
	char *path = mk_control_default_path(cfg->store);
	struct mk_buf reply;
	mk_buf_init(&reply, 16u * 1024 * 1024);
	char *error = NULL;
	int r = mk_control_request(path, request, &reply, &error);
	if (r < 0) {
		fprintf(stderr, "mailkeep: %s\n", error ? error : mk_strerror(r));
		ex = MK_EXIT_UNAVAILABLE;
	} else {
		fwrite(reply.data ? reply.data : (uint8_t *)"", 1, reply.len, stdout);
	}
	mk_free(error);
	mk_buf_cleanup(&reply);
	mk_free(path);
	mk_config_free(&cfg);
	return ex;
}

int mk_cli_status(const struct mk_cli *cli, int argc, char **argv)
{
	bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
	if (argc > 2 || (argc == 2 && !json)) {
		bool help = strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0;
		fprintf(help ? stdout : stderr, "usage: mailkeep [-c FILE] status [--json]\n"
						"Asks the running agent (mailkeep run) for each account's connections.\n");
		return help ? MK_EXIT_OK : MK_EXIT_USAGE;
	}
	return ask_agent(cli, json ? "status json" : "status");
}

int mk_cli_metrics(const struct mk_cli *cli, int argc, char **argv)
{
	if (argc > 1) {
		bool help = strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0;
		fprintf(help ? stdout : stderr, "usage: mailkeep [-c FILE] metrics\n"
						"Prints the running agent's metrics (OpenMetrics text).\n");
		return help ? MK_EXIT_OK : MK_EXIT_USAGE;
	}
	return ask_agent(cli, "metrics");
}
