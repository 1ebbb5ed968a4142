/* SPDX-License-Identifier: MIT */
/*
 * fuzz_imap.c - libFuzzer target for the IMAP client core: framing, the
 * lexer, status responses, LIST, continuation handling. The first byte
 * picks the split size, so split-dependent bugs are reachable; a few
 * commands (including a held LOGIN literal) are submitted once greeted.
 * With the first byte's top bit set, the login is a generic AUTHENTICATE
 * XOAUTH2 instead, whose challenges are answered (empty line) or, with
 * bit 6, cancelled.
 */
#include "mk_alloc.h"
#include "mk_imap.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = (size_t)(data[0] % 64) + 1;
	bool sasl = (data[0] & 0x80) != 0, cancel = (data[0] & 0x40) != 0;
	static const uint8_t ir[] = "user=u@example.com\x01auth=Bearer abc.def\x01\x01";
	data++;
	size--;
	struct mk_imap_client c;
	mk_imap_client_init(&c);
	mk_imap_client_tls_started(&c);
	bool submitted = false;
	for (size_t off = 0; off < size;) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (mk_imap_client_feed(&c, data + off, n) < 0)
			break;
		off += n;
		struct mk_imap_event ev;
		int r;
		while ((r = mk_imap_client_next_event(&c, &ev)) == 1) {
			if (ev.kind == MK_IMAP_EV_LIST && ev.list.name != NULL)
				(void)strlen(ev.list.name);
			if (ev.kind == MK_IMAP_EV_UNTAGGED && ev.args != NULL) {
				for (uint32_t i = 0; i < ev.args->n; i++) {
					char *s = mk_imap_arg_dup(&ev.args->a[i]);
					if (s != NULL) {
						char *dec = NULL;
						if (mk_imap_utf7_decode(s, &dec) == 0)
							mk_free(dec);
						mk_free(s);
					}
				}
			}
			if (ev.kind == MK_IMAP_EV_CONTINUATION && ev.cmd == MK_IMAP_CMD_AUTHENTICATE) {
				if (ev.chunk.n > 0)
					(void)ev.chunk.p[ev.chunk.n - 1];
				(void)(cancel ? mk_imap_client_auth_cancel(&c) : mk_imap_client_auth_respond(&c, NULL, 0));
			}
			if (!submitted && c.state == MK_IMAP_STATE_NOT_AUTH) {
				unsigned tag;
				struct mk_imap_cmd cmds[] = {
					{.kind = MK_IMAP_CMD_CAPABILITY},
					{.kind = MK_IMAP_CMD_LOGIN, .a = "user", .b = "p\xc3\xa4ss"},
					{.kind = MK_IMAP_CMD_LIST, .a = "", .b = "*"},
				};
				if (sasl) {
					cmds[1].kind = MK_IMAP_CMD_AUTHENTICATE;
					cmds[1].a = "XOAUTH2";
					cmds[1].ir.p = ir;
					cmds[1].ir.n = sizeof(ir) - 1;
				}
				for (size_t i = 0; i < 3; i++)
					(void)mk_imap_client_submit(&c, &cmds[i], &tag);
				submitted = true;
			}
			struct mk_slice o = mk_imap_client_output(&c);
			mk_imap_client_output_done(&c, o.n);
		}
		if (r < 0)
			break;
	}
	mk_imap_client_cleanup(&c);
	return 0;
}
