/*
 * A stream's beginning: made for a peer's HEADERS or our own CONNECT, a server's new CONNECTs announced
 * to JavaScript (past maxPendingConnects refused), the server's answer with the pod's fd, and the
 * client's CONNECT over a fd it was handed.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hb_stream *hb_stream_new(struct hb_conn *c, uint64_t id, int32_t sid)
{
	struct hb_stream *s;

	if (!hb_mem_take(c, sizeof(*s)))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		hb_mem_give(c, sizeof(*s));
		return NULL;
	}
	s->kind = HB_K_STREAM;
	s->c = c;
	s->id = id;
	s->sid = sid;
	s->fd = -1;
	s->active_ms = c->w->now_ms;
	s->next = c->streams;
	if (c->streams)
		c->streams->prev = s;
	c->streams = s;
	c->nstreams++;
	hb_stream_index(c->w, s);
	hb_count(c->w->e, HB_C_STREAMS_OPENED, 1);
	hb_count(c->w->e, HB_C_STREAMS_OPEN, 1);
	return s;
}

void hb_streams_announce(struct hb_conn *c)
{
	struct hb_engine *e = c->w->e;
	struct hb_stream *s = NULL, *rev = c->announce;

	c->announce = NULL;
	/* The list was built newest first: first come, first admitted. */
	while (rev) {
		struct hb_stream *next = rev->next_announce;

		rev->next_announce = s;
		s = rev;
		rev = next;
	}
	for (struct hb_stream *next; s; s = next) {
		struct hb_event *ev;

		next = s->next_announce;
		/* Opened and reset within one read: JavaScript never hears of it, no pod is dialled. */
		if (s->released || s->state != HB_S_NEW || s->cause)
			continue;
		if (c->npending >= e->opt.max_pending_connects) {
			hb_limit_hit(e, HB_C_LIMIT_PENDING, c->id, "maxPendingConnects", c->peer_identity, e->opt.max_pending_connects);
			s->state = HB_S_REFUSED;
			hb_stream_reset(s, NGHTTP2_REFUSED_STREAM, "limit");
			continue;
		}
		s->state = HB_S_PENDING;
		s->announced = true;
		c->npending++;
		ev = hb_event_new(HB_E_CONNECT, c->id, s->id);
		ev->tag = c->tag;
		ev->text = s->authority;
		s->authority = NULL;
		ev->strv = s->hdrs;
		ev->strc = s->nhdrs;
		s->hdrs = NULL;
		s->nhdrs = s->cap_hdrs = 0;
		hb_emit(e, ev);
	}
}

void hb_stream_answer(struct hb_stream *s, int status, int fd)
{
	struct hb_conn *c = s->c;
	char code[4];
	nghttp2_nv nv[] = { { (uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE } };
	nghttp2_data_provider prd = { .source.ptr = s, .read_callback = hb_data_read };

	snprintf(code, sizeof(code), "%03d", status < 100 || status > 599 ? 500 : status);
	c->npending--;
	if (status == 200 && fd >= 0) {
		s->fd = fd;
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		s->state = HB_S_OPEN;
		hb_watch(c->w, fd, s);
		nghttp2_submit_response(c->h2, s->sid, nv, 1, &prd);
		/* Bytes the client sent before the answer. */
		hb_stream_flush(s);
	} else {
		if (fd >= 0)
			close(fd);
		s->state = HB_S_REFUSED;
		s->status = status;
		s->cause = "refused";
		s->code = (uint32_t)status;
		/* session.c's on_frame_send follows it with RST_STREAM NO_ERROR. */
		nghttp2_submit_response(c->h2, s->sid, nv, 1, NULL);
		hb_stream_drop_input(s);
	}
	hb_conn_queue(c);
}

bool hb_stream_open(struct hb_conn *c, uint64_t id, const char *authority, char **hdrs, size_t nhdrs, int fd)
{
	nghttp2_data_provider prd = { .read_callback = hb_data_read };
	nghttp2_nv *nv;
	struct hb_stream *s;
	int32_t sid;
	size_t n = 0;

	/*
	 * Past the server's own MAX_CONCURRENT_STREAMS nghttp2 would queue the request until a stream ends,
	 * which for a long-lived tunnel may be never: refuse it here, so the pool opens another connection.
	 */
	if (c->role != HB_CLIENT || c->nstreams >= c->w->e->opt.client_max_streams ||
	    c->nstreams >= nghttp2_session_get_remote_settings(c->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
		return false;
	nv = calloc(nhdrs / 2 + 2, sizeof(*nv));
	s = nv ? hb_stream_new(c, id, 0) : NULL;
	if (!s) {
		free(nv);
		return false;
	}
	nv[n++] = (nghttp2_nv){ (uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, NGHTTP2_NV_FLAG_NONE };
	nv[n++] = (nghttp2_nv){ (uint8_t *)":authority", (uint8_t *)authority, 10, strlen(authority), NGHTTP2_NV_FLAG_NONE };
	for (size_t i = 0; i + 1 < nhdrs; i += 2)
		nv[n++] = (nghttp2_nv){ (uint8_t *)hdrs[i], (uint8_t *)hdrs[i + 1], strlen(hdrs[i]), strlen(hdrs[i + 1]), NGHTTP2_NV_FLAG_NONE };
	s->fd = fd;
	s->state = HB_S_REQUESTED;
	s->deadline_ms = c->w->now_ms + c->w->e->opt.response_timeout_ms;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	hb_watch(c->w, fd, s);
	prd.source.ptr = s;
	sid = nghttp2_submit_request(c->h2, NULL, nv, n, &prd, s);
	free(nv);
	if (sid < 0) {
		/* Out of stream ids or memory: the stream ends at once, reported like any other. */
		s->sid = 0;
		hb_stream_end(s, "refused-locally", (uint32_t)-sid);
		return true;
	}
	s->sid = sid;
	hb_conn_queue(c);
	return true;
}
