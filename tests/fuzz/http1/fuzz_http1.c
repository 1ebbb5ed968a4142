/* SPDX-License-Identifier: MIT */
/*
 * fuzz_http1.c - libFuzzer target for the HTTP/1.1 client core: status
 * line, headers, Content-Length, chunked bodies with extensions and
 * trailers, bodies read until close. The first byte picks the split size
 * and whether the peer closes at the end; the decoded body must never
 * exceed the limit and DONE must come at most once.
 */
#include "mk_err.h"
#include "mk_http1.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = (size_t)(data[0] % 64) + 1;
	bool eof = data[0] & 0x40;
	data++;
	size--;
	struct mk_http1_client c;
	mk_http1_client_init(&c);
	c.body_max = 4096; /* small, so the limit paths are reached */
	struct mk_http1_request req = {.host = "h", .path = "/t", .body = {(const uint8_t *)"a=b", 3}};
	if (mk_http1_client_request(&c, &req) != 0)
		abort();
	mk_http1_client_output_done(&c, mk_http1_client_output(&c).n);
	size_t body = 0;
	int dones = 0;
	for (size_t off = 0; off <= size;) {
		if (off < size) {
			size_t n = size - off < chunk ? size - off : chunk;
			int r = mk_http1_client_feed(&c, data + off, n);
			off += n;
			if (r < 0)
				break;
		} else {
			if (!eof)
				break;
			mk_http1_client_feed_eof(&c);
			off++;
		}
		struct mk_http1_event ev;
		int r;
		while ((r = mk_http1_client_next_event(&c, &ev)) == 1) {
			if (ev.kind == MK_HTTP1_EV_BODY)
				body += ev.chunk.n;
			if (ev.kind == MK_HTTP1_EV_DONE)
				dones++;
			if (ev.kind == MK_HTTP1_EV_HEADER)
				(void)(strlen(ev.name) + strlen(ev.text));
			if (ev.kind == MK_HTTP1_EV_STATUS && (ev.status < 100 || ev.status > 599))
				abort();
		}
		if (r < 0) {
			(void)strlen(mk_http1_client_error(&c));
			break;
		}
	}
	if (body > 4096 || dones > 1)
		abort();
	mk_http1_client_cleanup(&c);
	return 0;
}
