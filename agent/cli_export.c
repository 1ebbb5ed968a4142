/* SPDX-License-Identifier: MIT */
/*
 * cli_export.c - `mailkeep export`: the store as a real Maildir tree
 * (Maildir++ or a plain directory tree) or an mboxrd file, for any mail
 * reader. Maildir export is incremental: files already there (matched by
 * their unique name) are kept, renamed when the flags changed; new ones
 * are delivered the Maildir way (write to tmp/, fsync, rename into cur/).
 */
#include "cli.h"
#include "mk_alloc.h"
#include "mk_buf.h"
#include "mk_err.h"
#include "mk_imap.h"
#include "mk_store.h"
#include "mk_str.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


enum layout { LAYOUT_MAILDIRPP = 0, LAYOUT_FS };

struct exp {
	struct mk_store *st;
	enum layout layout;
	const char *root;
	FILE *mbox;
	uint64_t written, renamed, kept, failed;
	bool one_account;
};

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[4096];
	if (mk_strlcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, mode) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Directory of a folder. Maildir++: INBOX is the root, others ".A.B" with
 * names in modified UTF-7 and '.' (the separator) written as "&AC4-", the
 * way Dovecot reads it. fs: the UTF-8 path; INBOX is "INBOX". */
static int folder_dir(const struct exp *e, const char *account, const char *folder, char delim, char *out,
		      size_t outsz)
{
	char base[2048];
	if (e->one_account)
		snprintf(base, sizeof(base), "%s", e->root);
	else
		snprintf(base, sizeof(base), "%s/%s", e->root, account);
	if (e->layout == LAYOUT_FS) {
		if (strstr(folder, "..") != NULL || folder[0] == '/')
			return MK_EINVAL;
		if ((size_t)snprintf(out, outsz, "%s/%s", base, folder) >= outsz)
			return MK_ETOOBIG;
		return 0;
	}
	if (strcasecmp(folder, "INBOX") == 0) {
		snprintf(out, outsz, "%s", base);
		return 0;
	}
	char *enc = NULL;
	if (mk_imap_utf7_encode(folder, &enc) < 0)
		return MK_EINVAL;
	struct mk_buf b;
	mk_buf_init(&b, 4096);
	(void)mk_buf_printf(&b, "%s/.", base);
	for (const char *p = enc; *p; p++) {
		if (*p == '.')
			(void)mk_buf_append_str(&b, "&AC4-");
		else if (*p == (delim ? delim : '/'))
			(void)mk_buf_append_str(&b, ".");
		else if (*p == '/')
			(void)mk_buf_append_str(&b, "&AC8-");
		else
			(void)mk_buf_append(&b, p, 1);
	}
	mk_free(enc);
	size_t n;
	char *s = mk_buf_take(&b, &n);
	mk_strlcpy(out, s, outsz);
	mk_free(s);
	return n < outsz ? 0 : MK_ETOOBIG;
}

static void maildir_flags(const struct mk_store_msg *m, char *out)
{
	/* letters in ASCII order, as the Maildir spec asks */
	size_t o = 0;
	if (m->flags & MK_STORE_FLAG_DRAFT)
		out[o++] = 'D';
	if (m->flags & MK_STORE_FLAG_FLAGGED)
		out[o++] = 'F';
	if (strstr(m->keywords, "$Forwarded") != NULL)
		out[o++] = 'P';
	if (m->flags & MK_STORE_FLAG_ANSWERED)
		out[o++] = 'R';
	if (m->flags & MK_STORE_FLAG_SEEN)
		out[o++] = 'S';
	if (m->flags & MK_STORE_FLAG_DELETED)
		out[o++] = 'T';
	out[o] = '\0';
}

struct file_ctx {
	int fd;
	int err;
};

static int fd_write_cb(void *ud, const uint8_t *p, size_t n)
{
	struct file_ctx *f = ud;
	while (n > 0) {
		ssize_t w = write(f->fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			f->err = -errno;
			return MK_EIO;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* mboxrd: LF line ends, ">"-quote lines matching ^>*From  */
struct mbox_ctx {
	FILE *f;
	bool bol;      /* at the beginning of a line */
	char pend[8];  /* a line start that may turn out to be ">*From " */
	size_t npend;
	bool last_nl;
};

static int mbox_flush_pending(struct mbox_ctx *m, bool quote)
{
	if (quote)
		fputc('>', m->f);
	fwrite(m->pend, 1, m->npend, m->f);
	m->npend = 0;
	return 0;
}

static int mbox_cb(void *ud, const uint8_t *p, size_t n)
{
	struct mbox_ctx *m = ud;
	for (size_t i = 0; i < n; i++) {
		char c = (char)p[i];
		if (c == '\r')
			continue; /* CRLF -> LF; a lone CR in a body is dropped too */
		if (m->bol || m->npend > 0) {
			/* collecting ">*From " at the start of a line */
			if (m->npend < sizeof(m->pend)) {
				m->pend[m->npend++] = c;
				m->bol = false;
				size_t k = 0;
				while (k < m->npend && m->pend[k] == '>')
					k++;
				const char *from = "From ";
				size_t fl = m->npend - k;
				if (fl <= 5 && strncmp(m->pend + k, from, fl) == 0) {
					if (fl == 5)
						mbox_flush_pending(m, true);
					else if (c == '\n')
						mbox_flush_pending(m, false);
					if (c == '\n')
						m->bol = true;
					m->last_nl = c == '\n';
					continue;
				}
				mbox_flush_pending(m, false);
				m->bol = c == '\n';
				m->last_nl = c == '\n';
				continue;
			}
		}
		fputc(c, m->f);
		m->bol = c == '\n';
		m->last_nl = c == '\n';
	}
	return ferror(m->f) ? MK_EIO : 0;
}

struct index {
	char **names; /* existing file names in cur/ and new/ */
	size_t n;
};

static void index_dir(struct index *ix, const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		ix->names = mk_xrealloc(ix->names, (ix->n + 1) * sizeof(*ix->names));
		ix->names[ix->n++] = mk_xasprintf("%s/%s", dir, de->d_name);
	}
	closedir(d);
}

static const char *index_find(const struct index *ix, const char *unique)
{
	size_t ul = strlen(unique);
	for (size_t i = 0; i < ix->n; i++) {
		const char *base = strrchr(ix->names[i], '/') + 1;
		if (strncmp(base, unique, ul) == 0 && (base[ul] == ':' || base[ul] == '\0'))
			return ix->names[i];
	}
	return NULL;
}

static bool seen_sha(const struct mk_cli_msgs *v, size_t upto, const uint8_t *sha)
{
	for (size_t i = 0; i < upto; i++)
		if (memcmp(v->m[i].sha, sha, MK_STORE_SHA_LEN) == 0)
			return true;
	return false;
}

static int export_folder(struct exp *e, const char *account, uint32_t aid, const struct mk_store_mailbox *mb)
{
	struct mk_cli_msgs v = {0};
	int r = mk_cli_load_messages(e->st, aid, mb->id, 0, &v);
	if (r < 0) {
		mk_free(v.m);
		return r;
	}
	/* newest generation first, so older copies of the same body (after a
	 * UIDVALIDITY change) are skipped, not duplicated */
	for (size_t i = 0; i < v.n / 2; i++) {
		struct mk_store_msg t = v.m[i];
		v.m[i] = v.m[v.n - 1 - i];
		v.m[v.n - 1 - i] = t;
	}
	char dir[4096];
	if (e->mbox == NULL) {
		r = folder_dir(e, account, mb->name, mb->delimiter, dir, sizeof(dir));
		if (r < 0) {
			fprintf(stderr, "mailkeep: export: %s/%s: cannot make a directory name\n", account, mb->name);
			mk_free(v.m);
			return r;
		}
		char sub[4200];
		static const char *const subs[] = {"cur", "new", "tmp"};
		for (int k = 0; k < 3; k++) {
			snprintf(sub, sizeof(sub), "%s/%s", dir, subs[k]);
			if ((r = mkdir_p(sub, 0700)) < 0) {
				fprintf(stderr, "mailkeep: export: %s: %s\n", sub, strerror(-r));
				mk_free(v.m);
				return r;
			}
		}
		if (e->layout == LAYOUT_MAILDIRPP && strcasecmp(mb->name, "INBOX") != 0) {
			snprintf(sub, sizeof(sub), "%s/maildirfolder", dir);
			int fd = open(sub, O_WRONLY | O_CREAT, 0600);
			if (fd >= 0)
				close(fd);
		}
	}
	struct index ix = {0};
	if (e->mbox == NULL) {
		char sub[4200];
		snprintf(sub, sizeof(sub), "%s/cur", dir);
		index_dir(&ix, sub);
		snprintf(sub, sizeof(sub), "%s/new", dir);
		index_dir(&ix, sub);
	}
	for (size_t i = 0; i < v.n; i++) {
		const struct mk_store_msg *m = &v.m[i];
		if (seen_sha(&v, i, m->sha))
			continue;
		if (e->mbox != NULL) {
			char date[64];
			time_t t = (time_t)m->internaldate;
			struct tm tm;
			strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", gmtime_r(&t, &tm));
			fprintf(e->mbox, "From MAILER-DAEMON %s\n", date);
			struct mbox_ctx mc = {e->mbox, true, {0}, 0, true};
			r = mk_store_body_read(e->st, m->sha, mbox_cb, &mc);
			if (mc.npend)
				mbox_flush_pending(&mc, false);
			if (!mc.last_nl)
				fputc('\n', e->mbox);
			fputc('\n', e->mbox);
			if (r < 0) {
				fprintf(stderr, "mailkeep: export: %s/%s UID %u: %s\n", account, mb->name, m->uid,
					mk_strerror(r));
				e->failed++;
				continue;
			}
			e->written++;
			continue;
		}
		char fl[8], want[4400];
		maildir_flags(m, fl);
		snprintf(want, sizeof(want), "%s/cur/%s:2,%s", dir, m->unique, fl);
		const char *have = index_find(&ix, m->unique);
		if (have != NULL) {
			if (strcmp(have, want) == 0) {
				e->kept++;
			} else if (rename(have, want) == 0) {
				e->renamed++;
			} else {
				fprintf(stderr, "mailkeep: export: rename %s: %s\n", have, strerror(errno));
				e->failed++;
			}
			continue;
		}
		char tmp[4400];
		snprintf(tmp, sizeof(tmp), "%s/tmp/%s", dir, m->unique);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0) {
			fprintf(stderr, "mailkeep: export: %s: %s\n", tmp, strerror(errno));
			e->failed++;
			continue;
		}
		struct file_ctx fc = {fd, 0};
		r = mk_store_body_read(e->st, m->sha, fd_write_cb, &fc);
		if (r == 0 && fsync(fd) < 0)
			r = -errno;
		close(fd);
		if (r < 0) {
			fprintf(stderr, "mailkeep: export: %s/%s UID %u: %s\n", account, mb->name, m->uid,
				fc.err ? strerror(-fc.err) : mk_strerror(r));
			unlink(tmp);
			e->failed++;
			continue;
		}
		/* mtime = INTERNALDATE, as Dovecot and mbsync do */
		struct timespec ts[2] = {{(time_t)m->internaldate, 0}, {(time_t)m->internaldate, 0}};
		(void)utimensat(AT_FDCWD, tmp, ts, 0);
		if (rename(tmp, want) < 0) {
			fprintf(stderr, "mailkeep: export: %s: %s\n", want, strerror(errno));
			unlink(tmp);
			e->failed++;
			continue;
		}
		e->written++;
	}
	for (size_t i = 0; i < ix.n; i++)
		mk_free(ix.names[i]);
	mk_free(ix.names);
	mk_free(v.m);
	return 0;
}

static void usage_export(FILE *f)
{
	fprintf(f, "usage: mailkeep [-c FILE] export (--maildir DIR [--layout maildir++|fs] | --mbox FILE)\n"
		   "                          [ACCOUNT[/FOLDER]]\n"
		   "Writes the stored mail as a Maildir tree (again: only what is new; files whose\n"
		   "flags changed are renamed) or as one mboxrd file. With several accounts and no\n"
		   "ACCOUNT, each account gets a subdirectory.\n");
}

int mk_cli_export(const struct mk_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"maildir", required_argument, NULL, 'm'}, {"mbox", required_argument, NULL, 'b'},
		{"layout", required_argument, NULL, 'l'},  {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct exp e;
	memset(&e, 0, sizeof(e));
	const char *maildir = NULL, *mbox = NULL;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			maildir = optarg;
			break;
		case 'b':
			mbox = optarg;
			break;
		case 'l':
			if (strcmp(optarg, "fs") == 0)
				e.layout = LAYOUT_FS;
			else if (strcmp(optarg, "maildir++") == 0)
				e.layout = LAYOUT_MAILDIRPP;
			else {
				fprintf(stderr, "mailkeep: export: --layout is maildir++ or fs\n");
				return MK_EXIT_USAGE;
			}
			break;
		case 'h':
			usage_export(stdout);
			return MK_EXIT_OK;
		default:
			usage_export(stderr);
			return MK_EXIT_USAGE;
		}
	}
	if ((maildir == NULL) == (mbox == NULL) || argc - optind > 1) {
		usage_export(stderr);
		return MK_EXIT_USAGE;
	}
	char acct[128] = "";
	const char *folder = NULL;
	if (optind < argc && mk_cli_split_path(argv[optind], acct, sizeof(acct), &folder) < 0) {
		fprintf(stderr, "mailkeep: bad path \"%s\"\n", argv[optind]);
		return MK_EXIT_USAGE;
	}
	struct mk_config *cfg = NULL;
	int ex = mk_cli_open_store(cli, &cfg, &e.st);
	if (ex != 0)
		return ex;
	e.root = maildir;
	e.one_account = acct[0] != '\0' || cfg->n_accounts <= 1;
	if (mbox != NULL) {
		e.mbox = fopen(mbox, "w");
		if (e.mbox == NULL) {
			fprintf(stderr, "mailkeep: export: %s: %s\n", mbox, strerror(errno));
			mk_store_close(&e.st);
			mk_config_free(&cfg);
			return MK_EXIT_CANTCREAT;
		}
	} else if (mkdir_p(maildir, 0700) < 0) {
		fprintf(stderr, "mailkeep: export: %s: %s\n", maildir, strerror(errno));
		mk_store_close(&e.st);
		mk_config_free(&cfg);
		return MK_EXIT_CANTCREAT;
	}
	int r = 0;
	bool found = false;
	for (size_t i = 0; i < cfg->n_accounts && r == 0; i++) {
		const char *name = cfg->accounts[i].name;
		if (acct[0] && strcmp(name, acct) != 0)
			continue;
		uint32_t aid;
		if (mk_store_account(e.st, name, false, &aid) < 0)
			continue;
		struct mk_cli_mailboxes mv = {0};
		r = mk_cli_load_mailboxes(e.st, aid, &mv);
		for (size_t k = 0; r == 0 && k < mv.n; k++) {
			if (folder != NULL && strcmp(mv.m[k].name, folder) != 0)
				continue;
			found = true;
			r = export_folder(&e, name, aid, &mv.m[k]);
		}
		mk_free(mv.m);
	}
	if (e.mbox != NULL && fclose(e.mbox) != 0 && r == 0)
		r = MK_EIO;
	if (r < 0) {
		fprintf(stderr, "mailkeep: export: %s\n", mk_strerror(r));
		ex = MK_EXIT_IOERR;
	} else if (!found && (acct[0] || folder)) {
		fprintf(stderr, "mailkeep: export: nothing in the store matches \"%s\"\n", argv[optind]);
		ex = MK_EXIT_DATAERR;
	} else {
		printf("exported %llu new messages, %llu renamed for new flags, %llu already there%s\n",
		       (unsigned long long)e.written, (unsigned long long)e.renamed, (unsigned long long)e.kept,
		       e.failed ? ", SOME FAILED" : "");
		ex = e.failed ? MK_EXIT_IOERR : MK_EXIT_OK;
	}
	mk_store_close(&e.st);
	mk_config_free(&cfg);
	return ex;
}
