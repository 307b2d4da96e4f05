/*
 * What a peer's frames do to a connection, as nghttp2 reports them: a server's CONNECT checks before
 * JavaScript hears of a request (only the classic CONNECT with an :authority, else 400), a client's
 * response, the peer's END_STREAM, PING acks, GOAWAY, DATA handed to its stream, a stream's close.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADERS 128

static nghttp2_session_callbacks *callbacks;
static pthread_once_t callbacks_once = PTHREAD_ONCE_INIT;

static struct hb_stream *stream_of(nghttp2_session *session, int32_t sid)
{
	return sid > 0 ? nghttp2_session_get_stream_user_data(session, sid) : NULL;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
	struct hb_conn *c = user;
	struct hb_stream *s;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST || c->role != HB_SERVER)
		return 0;
	s = hb_stream_new(c, hb_next_id(c->w->e), frame->hd.stream_id);
	if (!s) {
		hb_limit_hit(c->w->e, HB_C_LIMIT_MEMORY, c->id, "maxConnectionMemory", c->peer_identity, c->w->e->opt.max_conn_memory);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	s->state = HB_S_HEADERS;
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
	return 0;
}

static bool is(const uint8_t *name, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
		     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
	struct hb_conn *c = user;
	struct hb_stream *s = stream_of(session, frame->hd.stream_id);
	uint32_t cap = c->role == HB_SERVER ? c->w->e->opt.server_max_header_list : c->w->e->opt.client_max_header_list;

	(void)flags;
	if (!s)
		return 0;
	/* RFC 9113's accounting of SETTINGS_MAX_HEADER_LIST_SIZE: name, value and 32 bytes per field. */
	s->header_bytes += (uint32_t)(namelen + valuelen + 32);
	if (s->header_bytes > cap)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (c->role == HB_CLIENT) {
		if (is(name, namelen, ":status") && valuelen == 3)
			s->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
		return 0;
	}
	if (s->state != HB_S_HEADERS)
		return 0; /* trailers: nothing for us */
	if (is(name, namelen, ":method")) {
		free(s->method);
		s->method = strndup((const char *)value, valuelen);
	} else if (is(name, namelen, ":authority")) {
		free(s->authority);
		s->authority = strndup((const char *)value, valuelen);
	} else if (is(name, namelen, ":path") || is(name, namelen, ":scheme") || is(name, namelen, ":protocol")) {
		s->bad_pseudo = true;
	} else if (namelen > 0 && name[0] != ':' && s->nhdrs + 2 <= 2 * MAX_HEADERS) {
		if (s->nhdrs + 2 > s->cap_hdrs) {
			size_t cap_new = s->cap_hdrs ? s->cap_hdrs * 2 : 16;
			char **grown = realloc(s->hdrs, cap_new * sizeof(*grown));

			if (!grown)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
			s->hdrs = grown;
			s->cap_hdrs = cap_new;
		}
		s->hdrs[s->nhdrs] = strndup((const char *)name, namelen);
		s->hdrs[s->nhdrs + 1] = strndup((const char *)value, valuelen);
		if (!s->hdrs[s->nhdrs] || !s->hdrs[s->nhdrs + 1]) {
			free(s->hdrs[s->nhdrs]);
			free(s->hdrs[s->nhdrs + 1]);
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
		s->nhdrs += 2;
	}
	return 0;
}

/* Answers a request that is not HBONE's classic CONNECT; JavaScript never hears of it. */
static void bad_request(struct hb_conn *c, struct hb_stream *s)
{
	static const nghttp2_nv nv[] = { { (uint8_t *)":status", (uint8_t *)"400", 7, 3, NGHTTP2_NV_FLAG_NONE } };

	s->state = HB_S_REFUSED;
	s->status = 400;
	s->cause = "bad-request";
	s->code = 400;
	nghttp2_submit_response(c->h2, s->sid, nv, 1, NULL);
}

static void on_request(struct hb_conn *c, struct hb_stream *s)
{
	if (!s->method || strcmp(s->method, "CONNECT") != 0 || s->bad_pseudo || !s->authority || !*s->authority) {
		bad_request(c, s);
		return;
	}
	s->state = HB_S_NEW;
	s->next_announce = c->announce;
	c->announce = s;
}

static void on_response(struct hb_conn *c, struct hb_stream *s)
{
	struct hb_event *ev;

	if (s->state != HB_S_REQUESTED || s->status < 200)
		return; /* an interim response: wait for the final one */
	ev = hb_event_new(HB_E_RESPONSE, c->id, s->id);
	ev->status = s->status;
	hb_emit(c->w->e, ev);
	if (s->status == 200) {
		s->state = HB_S_OPEN;
		if (s->deferred) {
			s->deferred = false;
			nghttp2_session_resume_data(c->h2, s->sid);
		}
		return;
	}
	s->state = HB_S_REFUSED;
	hb_stream_reset(s, NGHTTP2_CANCEL, "refused");
	s->code = (uint32_t)s->status;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
	struct hb_conn *c = user;
	struct hb_stream *s = stream_of(session, frame->hd.stream_id);

	c->heard = true;
	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		if (!s)
			break;
		if (c->role == HB_SERVER && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			on_request(c, s);
		else if (c->role == HB_CLIENT && frame->headers.cat == NGHTTP2_HCAT_RESPONSE)
			on_response(c, s);
		/* fallthrough: END_STREAM on HEADERS ends the peer's side as on DATA */
		__attribute__((fallthrough));
	case NGHTTP2_DATA:
		if (s && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
			s->peer_ended = true;
			hb_stream_flush(s);
		}
		break;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
			c->ping_sent_ms = 0;
			c->last_ping_ms = c->w->now_ms;
		}
		break;
	case NGHTTP2_GOAWAY:
		if (!c->closing_cause)
			c->closing_cause = frame->goaway.error_code == NGHTTP2_NO_ERROR ? "goaway" : "peer-goaway-error";
		if (c->role == HB_CLIENT) {
			struct hb_event *ev = hb_event_new(HB_E_GOAWAY, c->id, 0);

			ev->code = frame->goaway.error_code;
			hb_emit(c->w->e, ev);
		}
		break;
	default:
		break;
	}
	return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
	struct hb_conn *c = user;

	/*
	 * A refusal's HEADERS carried END_STREAM, but the client's side is still open (a CONNECT has no
	 * END_STREAM): RST_STREAM NO_ERROR ends it, only now, since a reset queued with the HEADERS would
	 * go out first and the refusal would never be seen.
	 */
	if (frame->hd.type == NGHTTP2_HEADERS && c->role == HB_SERVER) {
		struct hb_stream *s = stream_of(session, frame->hd.stream_id);

		if (s && s->state == HB_S_REFUSED && !s->reset_sent) {
			nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->sid, NGHTTP2_NO_ERROR);
			s->reset_sent = true;
		}
	}
	/* nghttp2 ends a session that broke the protocol (or flooded us) with a GOAWAY carrying the error. */
	if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
		hb_count(c->w->e, HB_C_PROTOCOL_ERRORS, 1);
		c->closing_cause = "protocol";
		snprintf(c->message, sizeof(c->message), "HTTP/2 protocol error by %s: %s", c->peer_address,
			 nghttp2_http2_strerror(frame->goaway.error_code));
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *user)
{
	struct hb_conn *c = user;
	struct hb_stream *s = stream_of(session, sid);

	(void)flags;
	c->bytes_in += len;
	if (!s || s->released) {
		nghttp2_session_consume(session, sid, len);
		return 0;
	}
	if (!hb_stream_deliver(s, data, len)) {
		hb_session_over_memory(c);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t sid, uint32_t error_code, void *user)
{
	struct hb_stream *s = stream_of(session, sid);

	(void)user;
	if (!s)
		return 0;
	nghttp2_session_set_stream_user_data(session, sid, NULL);
	s->h2_closed = true;
	if (error_code != NGHTTP2_NO_ERROR && !s->cause) {
		s->cause = "peer-reset";
		s->code = error_code;
	}
	hb_stream_try_release(s);
	return 0;
}

static void make_callbacks(void)
{
	if (nghttp2_session_callbacks_new(&callbacks))
		HB_FATAL("out of memory for nghttp2's callbacks");
	nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
}

const nghttp2_session_callbacks *hb_session_callbacks(void)
{
	pthread_once(&callbacks_once, make_callbacks);
	return callbacks;
}
