/* SPDX-License-Identifier: MIT */
/*
 * imap_lexer.c - tokenises one framed IMAP response into a flat array of
 * arguments (pre-order; a LIST is followed by its children and `next`
 * skips them). Limits: MK_LIMIT_IMAP_LIST_DEPTH nesting and
 * MK_LIMIT_IMAP_ITEMS arguments. It is liberal where Exchange is sloppy:
 * atoms end only at SP, CR, LF, '(' or ')' (so unquoted names with control
 * characters, '%', '*' or ']' survive), and it never parses BODYSTRUCTURE
 * semantics, only syntax.
 */
#include "mk_imap.h"
#include "mk_alloc.h"
#include "mk_err.h"
#include "mk_limits.h"

#include <string.h>
#include <strings.h>

void mk_imap_args_init(struct mk_imap_args *args)
{
	args->a = NULL;
	args->n = 0;
	args->cap = 0;
	mk_buf_init(&args->strbuf, MK_LIMIT_IMAP_LINE + MK_LIMIT_IMAP_LITERAL_INLINE);
}

void mk_imap_args_cleanup(struct mk_imap_args *args)
{
	MK_FREE(&args->a);
	args->n = args->cap = 0;
	mk_buf_cleanup_wipe(&args->strbuf);
}

static int push(struct mk_imap_args *args, enum mk_imap_arg_kind kind, uint32_t *idx_r)
{
	if (args->n >= MK_LIMIT_IMAP_ITEMS)
		return MK_ETOOBIG;
	if (args->n == args->cap) {
		uint32_t cap = args->cap ? args->cap * 2 : 32;
		if (cap > MK_LIMIT_IMAP_ITEMS)
			cap = MK_LIMIT_IMAP_ITEMS;
		args->a = mk_xrealloc(args->a, cap * sizeof(*args->a));
		args->cap = cap;
	}
	struct mk_imap_arg *a = &args->a[args->n];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	*idx_r = args->n++;
	return 0;
}

static bool atom_char(uint8_t ch)
{
	return ch != ' ' && ch != '\r' && ch != '\n' && ch != '(' && ch != ')' && ch != '"' && ch != '{';
}

static int lex(struct mk_imap_args *args, const uint8_t *p, size_t n, bool stop_at_close, size_t *used_r,
	       const char **error_r)
{
	args->n = 0;
	mk_buf_reset(&args->strbuf);
	/* Quoted strings are unescaped into strbuf; reserve the worst case up
	 * front so slices into it stay valid (no realloc while parsing). */
	uint8_t *sb;
	if (mk_buf_reserve(&args->strbuf, n, &sb) < 0)
		return MK_ETOOBIG;
	size_t sblen = 0;

	uint32_t stack[MK_LIMIT_IMAP_LIST_DEPTH];
	unsigned depth = 0;
	size_t i = 0;

	while (i < n) {
		uint8_t ch = p[i];
		if (ch == ' ') {
			i++;
			continue;
		}
		uint32_t idx;
		int ret;
		if (ch == ')') {
			if (depth == 0 && stop_at_close)
				break;
			if (depth == 0) {
				*error_r = "unbalanced ')'";
				return MK_EPROTO;
			}
			uint32_t list = stack[--depth];
			args->a[list].next = args->n;
			i++;
			continue;
		}
		enum mk_imap_arg_kind kind;
		if (ch == '(')
			kind = MK_IMAP_ARG_LIST;
		else if (ch == '"')
			kind = MK_IMAP_ARG_STRING;
		else if (ch == '{')
			kind = MK_IMAP_ARG_LITERAL;
		else
			kind = MK_IMAP_ARG_ATOM;
		if ((ret = push(args, kind, &idx)) < 0) {
			*error_r = "too many items in one response";
			return ret;
		}
		if (depth > 0)
			args->a[stack[depth - 1]].n_children++;
		struct mk_imap_arg *a = &args->a[idx];
		a->next = idx + 1;
		switch (kind) {
		case MK_IMAP_ARG_LIST:
			if (depth >= MK_LIMIT_IMAP_LIST_DEPTH) {
				*error_r = "lists nested too deeply";
				return MK_ETOOBIG;
			}
			stack[depth++] = idx;
			i++;
			break;
		case MK_IMAP_ARG_STRING: {
			i++;
			size_t start = sblen;
			for (;;) {
				if (i >= n) {
					*error_r = "unterminated quoted string";
					return MK_EPROTO;
				}
				uint8_t q = p[i++];
				if (q == '"')
					break;
				if (q == '\\') {
					if (i >= n) {
						*error_r = "unterminated quoted string";
						return MK_EPROTO;
					}
					q = p[i++];
				} else if (q == '\r' || q == '\n') {
					*error_r = "line break in quoted string";
					return MK_EPROTO;
				}
				sb[sblen++] = q;
			}
			a = &args->a[idx];
			a->v.p = sb + start;
			a->v.n = sblen - start;
			break;
		}
		case MK_IMAP_ARG_LITERAL: {
			i++;
			uint64_t len = 0;
			size_t digits = 0;
			while (i < n && p[i] >= '0' && p[i] <= '9') {
				len = len * 10 + (uint64_t)(p[i] - '0');
				if (len > MK_LIMIT_IMAP_LITERAL_INLINE) {
					*error_r = "literal too large";
					return MK_ETOOBIG;
				}
				i++;
				digits++;
			}
			if (i < n && p[i] == '+')
				i++;
			if (digits == 0 || i + 3 > n || p[i] != '}' || p[i + 1] != '\r' || p[i + 2] != '\n') {
				*error_r = "malformed literal";
				return MK_EPROTO;
			}
			i += 3;
			if (len > n - i) {
				*error_r = "truncated literal";
				return MK_EPROTO;
			}
			a->v.p = p + i;
			a->v.n = (size_t)len;
			i += (size_t)len;
			break;
		}
		case MK_IMAP_ARG_ATOM: {
			size_t start = i;
			while (i < n && atom_char(p[i])) {
				/* "BODY[HEADER.FIELDS (A B)]": a '[' section may hold spaces
				 * and parentheses; keep it inside the atom. */
				if (p[i] == '[') {
					size_t j = i + 1;
					unsigned nest = 1;
					while (j < n && nest > 0 && p[j] != '\r' && p[j] != '\n') {
						if (p[j] == '[')
							nest++;
						else if (p[j] == ']')
							nest--;
						j++;
					}
					if (nest == 0) {
						i = j;
						continue;
					}
				}
				i++;
			}
			a->v.p = p + start;
			a->v.n = i - start;
			if (a->v.n == 3 && strncasecmp((const char *)a->v.p, "NIL", 3) == 0)
				a->kind = MK_IMAP_ARG_NIL;
			if (a->v.n == 0) {
				*error_r = "unexpected character";
				return MK_EPROTO;
			}
			break;
		}
		case MK_IMAP_ARG_NIL:
			break;
		}
	}
	if (depth != 0) {
		*error_r = "unbalanced '('";
		return MK_EPROTO;
	}
	mk_buf_commit(&args->strbuf, sblen);
	if (used_r != NULL)
		*used_r = i;
	return 0;
}

int mk_imap_lexer_parse(struct mk_imap_args *args, const uint8_t *p, size_t n, const char **error_r)
{
	return lex(args, p, n, false, NULL, error_r);
}

int mk_imap_lexer_parse_until_close(struct mk_imap_args *args, const uint8_t *p, size_t n, size_t *used_r,
				    const char **error_r)
{
	return lex(args, p, n, true, used_r, error_r);
}

bool mk_imap_arg_eq(const struct mk_imap_arg *arg, const char *s)
{
	if (arg->kind == MK_IMAP_ARG_LIST || arg->kind == MK_IMAP_ARG_NIL)
		return false;
	size_t l = strlen(s);
	return arg->v.n == l && strncasecmp((const char *)arg->v.p, s, l) == 0;
}

char *mk_imap_arg_dup(const struct mk_imap_arg *arg)
{
	if (arg->kind == MK_IMAP_ARG_NIL || arg->kind == MK_IMAP_ARG_LIST)
		return NULL;
	char *s = mk_xmalloc(arg->v.n + 1);
	if (arg->v.n)
		memcpy(s, arg->v.p, arg->v.n);
	s[arg->v.n] = '\0';
	return s;
}
