/* SPDX-License-Identifier: MIT */
/*
 * fuzz_smtp_msg.c - libFuzzer target for mk_smtp_msg: arbitrary bytes as a
 * message. The first byte holds flags (bit 0: -t off; bits 1-6: the step
 * for feeding mk_smtp_msg_header_end growing prefixes). Checks, beyond
 * "no crash, no leak":
 *   - header_end on a prefix is -1 or the final answer (split-independent);
 *   - after a successful prepare the header has CRLF line ends only, ends
 *     with CRLFCRLF, holds no Bcc or Resent-Bcc field, and every collected
 *     address passes mk_smtp_msg_addr_valid with no two equal;
 *   - after a failed prepare there is an error text and no header.
 * The same bytes also go through mk_smtp_msg_parse_addresses directly.
 */
#include "mk_err.h"
#include "mk_smtp_msg.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_list(char **l, unsigned n)
{
	MK_ASSERT(n <= MK_SMTP_MSG_RCPT_MAX);
	for (unsigned i = 0; i < n; i++) {
		MK_ASSERT(mk_smtp_msg_addr_valid(l[i]));
		for (unsigned j = 0; j < i; j++)
			MK_ASSERT(!mk_smtp_msg_addr_equal(l[i], l[j]));
	}
}

static bool is_field(const uint8_t *line, size_t n, const char *name)
{
	size_t k = strlen(name);
	if (n < k || strncasecmp((const char *)line, name, k) != 0)
		return false;
	while (k < n && (line[k] == ' ' || line[k] == '\t'))
		k++;
	return k < n && line[k] == ':';
}

static void check_header(const struct mk_smtp_msg *m)
{
	const uint8_t *h = m->header.data;
	size_t n = m->header.len;
	MK_ASSERT(n >= 4 && memcmp(h + n - 4, "\r\n\r\n", 4) == 0);
	for (size_t s = 0; s < n;) {
		const uint8_t *nl = memchr(h + s, '\n', n - s);
		MK_ASSERT(nl != NULL);
		size_t le = (size_t)(nl - h);
		MK_ASSERT(le > s && h[le - 1] == '\r');
		for (size_t i = s; i + 1 < le; i++)
			MK_ASSERT(h[i] != '\r' && h[i] != '\0');
		MK_ASSERT(!is_field(h + s, le - s, "bcc"));
		MK_ASSERT(!is_field(h + s, le - s, "resent-bcc"));
		s = le + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool t = !(data[0] & 1);
	size_t step = (size_t)((data[0] >> 1) & 63) + 1;
	data++;
	size--;

	long end = mk_smtp_msg_header_end(data, size, false);
	for (size_t k = 0; k < size; k += step) {
		long r = mk_smtp_msg_header_end(data, k, false);
		MK_ASSERT(r == -1 || r == end);
	}
	long end_eof = mk_smtp_msg_header_end(data, size, true);
	MK_ASSERT(end < 0 || end_eof == end);
	MK_ASSERT(end_eof == MK_ETOOBIG || (end_eof >= 0 && (size_t)end_eof <= size));

	static const uint8_t rnd[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	struct mk_smtp_msg_opts o = {.rcpt_from_header = t,
				     .now = 1796544000,
				     .tz_minutes = 60,
				     .msgid_domain = "fuzz.example",
				     .random = rnd};
	struct mk_smtp_msg m;
	mk_smtp_msg_init(&m);
	int r = mk_smtp_msg_prepare(&m, data, size, &o);
	if (r == 0) {
		check_header(&m);
		check_list(m.rcpt, m.n_rcpt);
		check_list(m.from, m.n_from);
		MK_ASSERT(m.n_from > 0);
		MK_ASSERT(!t || m.n_rcpt > 0);
		MK_ASSERT(m.sender[0] == '\0' || mk_smtp_msg_addr_valid(m.sender));
		MK_ASSERT(m.message_id[0] == '<');
		MK_ASSERT(m.body_offset <= size);
	} else {
		MK_ASSERT(r == MK_EINVAL || r == MK_ETOOBIG);
		MK_ASSERT(m.error[0] != '\0');
		MK_ASSERT(m.header.len == 0 && m.n_rcpt == 0);
	}
	mk_smtp_msg_cleanup(&m);

	char **l = NULL;
	unsigned n = 0;
	char err[200];
	r = mk_smtp_msg_parse_addresses((const char *)data, size, &l, &n, err, sizeof(err));
	MK_ASSERT(r == 0 || r == MK_EINVAL || r == MK_ETOOBIG);
	check_list(l, n);
	mk_smtp_msg_free_list(&l, &n);
	return 0;
}
