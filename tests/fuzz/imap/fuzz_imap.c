/* SPDX-License-Identifier: MIT */
/*
 * fuzz_imap.c - libFuzzer target for the IMAP client core: framing, the
 * lexer, status responses, LIST, continuation handling. The first byte
 * picks the split size, so split-dependent bugs are reachable; a few
 * commands (including a held LOGIN literal) are submitted once greeted.
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
			if (!submitted && c.state == MK_IMAP_STATE_NOT_AUTH) {
				unsigned tag;
				struct mk_imap_cmd cmds[] = {
					{.kind = MK_IMAP_CMD_CAPABILITY},
					{.kind = MK_IMAP_CMD_LOGIN, .a = "user", .b = "p\xc3\xa4ss"},
					{.kind = MK_IMAP_CMD_LIST, .a = "", .b = "*"},
				};
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
