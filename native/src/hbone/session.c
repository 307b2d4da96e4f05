/*
 * The HTTP/2 glue: one nghttp2 session per connection with ztunnel's settings, the received bytes fed
 * to it and the frames it sends gathered for TLS. It sees only bytes: TLS lives in conn.c, so the
 * fuzzer drives this file (and frames.c, its callbacks) with raw frames. nghttp2's own defences stay
 * on and are set explicitly (flood of control frames, rapid reset, CONTINUATION floods, SETTINGS floods).
 *
 * Which nghttp2: the node process's own, compiled against Debian's libnghttp2-dev 1.52 headers (the ABI
 * is stable under soname 14). Measured 2026-12-07 with a probe loaded into node 20.20.2 and 24.22.3:
 * both export every nghttp2 function the engine calls (nghttp2 1.61 and 1.70, newer than Debian's
 * 1.52; the addon links with -z now, so a node without them refuses to load it, naming the symbol).
 * Debian's libnghttp2.so.14 through dlmopen(LM_ID_NEWLM) loads (0.3 ms) but brings a second libc into
 * the process (+1 MiB RSS, its own malloc and TLS state); through RTLD_DEEPBIND it loads (+128 KiB)
 * but AddressSanitizer refuses RTLD_DEEPBIND outright, which would leave `make native-asan` without
 * the engine. Both would also ship nghttp2 fixes on Debian's schedule instead of node's.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The connection went over maxConnectionMemory: counted, reported once per peer; the caller closes it. */
void hb_session_over_memory(struct hb_conn *c)
{
	hb_limit_hit(c->w->e, HB_C_LIMIT_MEMORY, c->id, "maxConnectionMemory", c->peer_identity, c->w->e->opt.max_conn_memory);
	c->closing_cause = "memory-limit";
	snprintf(c->message, sizeof(c->message), "the connection %s %s went over %u bytes of memory (maxConnectionMemory)",
		 c->role == HB_SERVER ? "from" : "to", c->peer_address, c->w->e->opt.max_conn_memory);
}

int hb_session_init(struct hb_conn *c)
{
	const struct hb_options *o = &c->w->e->opt;
	nghttp2_mem mem = hb_nghttp2_mem_template;
	nghttp2_settings_entry server[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o->server_max_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, o->stream_window },
		{ NGHTTP2_SETTINGS_MAX_FRAME_SIZE, o->max_frame_size },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, o->server_max_header_list },
	};
	nghttp2_settings_entry client[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, o->stream_window },
		{ NGHTTP2_SETTINGS_MAX_FRAME_SIZE, o->max_frame_size },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, o->client_max_header_list },
	};
	nghttp2_option *opt;
	int rv;

	if (nghttp2_option_new(&opt))
		return -1;
	/* Window updates only once bytes reached the plain fd (stream_pump.c calls nghttp2_session_consume). */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	/* The defences, set to nghttp2's own defaults so that they hold whatever a build defaults to. */
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_max_settings(opt, 32);
	nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
	nghttp2_option_set_max_continuations(opt, 8);
	if (c->role == HB_CLIENT)
		nghttp2_option_set_peer_max_concurrent_streams(opt, o->client_max_streams);
	mem.mem_user_data = c;
	rv = c->role == HB_SERVER ? nghttp2_session_server_new3(&c->h2, hb_session_callbacks(), c, opt, &mem)
				  : nghttp2_session_client_new3(&c->h2, hb_session_callbacks(), c, opt, &mem);
	nghttp2_option_del(opt);
	if (rv)
		return rv;
	rv = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, c->role == HB_SERVER ? server : client, 4);
	if (!rv)
		rv = nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, (int32_t)o->conn_window);
	if (rv) {
		nghttp2_session_del(c->h2);
		c->h2 = NULL;
	}
	return rv;
}

bool hb_session_recv(struct hb_conn *c, const uint8_t *data, size_t len)
{
	ssize_t rv = nghttp2_session_mem_recv(c->h2, data, len);

	/* The DATA of this batch points into `data`: it reaches the pods' fds before `data` is reused. */
	if (!hb_streams_write_pending(c) && rv >= 0) {
		hb_session_over_memory(c);
		hb_conn_close(c, c->closing_cause, "%s", c->message);
		return false;
	}
	if (rv >= 0)
		return true;
	if (!c->closing_cause || strcmp(c->closing_cause, "memory-limit") != 0) {
		hb_count(c->w->e, HB_C_PROTOCOL_ERRORS, 1);
		c->closing_cause = rv == NGHTTP2_ERR_NOMEM ? "memory-limit" : "protocol";
		snprintf(c->message, sizeof(c->message), "HTTP/2 from %s: %s", c->peer_address, nghttp2_strerror((int)rv));
	}
	hb_conn_close(c, c->closing_cause, "%s", c->message);
	return false;
}

/* Appends to the connection's output, compacting first; false when the memory cap forbids it. */
static bool out_append(struct hb_conn *c, const uint8_t *data, size_t len)
{
	struct hb_buf *b = &c->out;

	if (b->off > 0 && b->len + len > b->cap) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		uint8_t *grown;

		while (cap < b->len + len)
			cap *= 2;
		if (!hb_mem_take(c, cap - b->cap))
			return false;
		grown = realloc(b->data, cap);
		if (!grown) {
			hb_mem_give(c, cap - b->cap);
			return false;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return true;
}

bool hb_session_fill(struct hb_conn *c)
{
	if (c->state != HB_C_LIVE)
		return false;
	for (int again = 0; again < 2; again++) {
		while (c->out.len - c->out.off < HB_OUT_HIGH) {
			const uint8_t *p;
			ssize_t n = nghttp2_session_mem_send(c->h2, &p);

			if (n < 0) {
				hb_conn_close(c, "protocol", "HTTP/2 to %s: %s", c->peer_address, nghttp2_strerror((int)n));
				return false;
			}
			if (n == 0)
				break;
			c->bytes_out += (uint64_t)n;
			if (!out_append(c, p, (size_t)n)) {
				hb_session_over_memory(c);
				hb_conn_close(c, c->closing_cause, "%s", c->message);
				return false;
			}
		}
		/* A plain fd that failed while nghttp2 read it: RST_STREAM CONNECT_ERROR (RFC 9113 §8.5). */
		if (!c->resets_pending)
			break;
		c->resets_pending = false;
		for (struct hb_stream *s = c->streams; s; s = s->next)
			if (s->fd_error && !s->reset_sent)
				hb_stream_reset(s, NGHTTP2_CONNECT_ERROR, "fd-error");
	}
	return true;
}

bool hb_session_done(struct hb_conn *c)
{
	return !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) && c->out.len == c->out.off &&
	       c->nstreams == 0;
}
