/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pop3.c - libFuzzer target for the POP3 client core: greeting,
 * status lines, CAPA/UIDL/LIST listings, streamed RETR text with
 * dot-unstuffing, the SASL continuation. The first byte picks the split
 * size; a login and a transaction are submitted as the states allow, so
 * every multi-line path is reachable.
 */
#include "mk_pop3.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = (size_t)(data[0] % 64) + 1;
	bool plain = data[0] & 0x80;
	bool xoauth2 = plain && (data[0] & 0x40); /* generic AUTH XOAUTH2 instead of AUTH PLAIN */
	static const uint8_t ir[] = "user=u@example.com\x01auth=Bearer abc.def\x01\x01";
	data++;
	size--;
	struct mk_pop3_client c;
	mk_pop3_client_init(&c);
	mk_pop3_client_tls_started(&c);
	bool greeted = false, trans = false;
	for (size_t off = 0; off < size;) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (mk_pop3_client_feed(&c, data + off, n) < 0)
			break;
		off += n;
		struct mk_pop3_event ev;
		int r;
		while ((r = mk_pop3_client_next_event(&c, &ev)) == 1) {
			if (ev.kind == MK_POP3_EV_REPLY || ev.kind == MK_POP3_EV_GREETING)
				(void)strlen(ev.text);
			if (ev.kind == MK_POP3_EV_REPLY && ev.challenge != NULL)
				(void)strlen(ev.challenge);
			if (ev.kind == MK_POP3_EV_UIDL)
				(void)strlen(ev.uidl);
			if (!greeted && c.state == MK_POP3_STATE_AUTH) {
				struct mk_pop3_cmd capa = {.kind = MK_POP3_CMD_CAPA};
				struct mk_pop3_cmd u = {.kind = MK_POP3_CMD_USER, .a = "user"};
				struct mk_pop3_cmd p = {.kind = MK_POP3_CMD_PASS, .a = "pass"};
				struct mk_pop3_cmd a = {.kind = MK_POP3_CMD_AUTH_PLAIN, .a = "user", .b = "pass"};
				if (xoauth2) {
					a.kind = MK_POP3_CMD_AUTH;
					a.a = "XOAUTH2";
					a.ir.p = ir;
					a.ir.n = sizeof(ir) - 1;
				}
				(void)mk_pop3_client_submit(&c, &capa);
				if (plain) {
					(void)mk_pop3_client_submit(&c, &a);
				} else {
					(void)mk_pop3_client_submit(&c, &u);
					(void)mk_pop3_client_submit(&c, &p);
				}
				greeted = true;
			}
			if (!trans && c.state == MK_POP3_STATE_TRANSACTION) {
				struct mk_pop3_cmd cmds[] = {
					{.kind = MK_POP3_CMD_STAT},        {.kind = MK_POP3_CMD_UIDL},
					{.kind = MK_POP3_CMD_LIST},        {.kind = MK_POP3_CMD_RETR, .msg = 1},
					{.kind = MK_POP3_CMD_TOP, .msg = 1, .lines = 3},
					{.kind = MK_POP3_CMD_UIDL, .msg = 2}, {.kind = MK_POP3_CMD_LIST, .msg = 2},
					{.kind = MK_POP3_CMD_DELE, .msg = 1}, {.kind = MK_POP3_CMD_QUIT},
				};
				for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
					(void)mk_pop3_client_submit(&c, &cmds[i]);
				trans = true;
			}
			struct mk_slice o = mk_pop3_client_output(&c);
			mk_pop3_client_output_done(&c, o.n);
		}
		if (r < 0)
			break;
	}
	mk_pop3_client_cleanup(&c);
	return 0;
}
