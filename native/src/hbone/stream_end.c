/*
 * A stream's end: a reset (ours), the end nghttp2 reports, and the release that closes its fd (with a
 * TCP reset when it was cut short) and reports the end once, with its byte counts and why.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void hb_stream_reset(struct hb_stream *s, uint32_t code, const char *cause)
{
	if (!s->cause) {
		s->cause = cause;
		s->code = code;
	}
	hb_stream_drop_input(s);
	if (!s->h2_closed && !s->reset_sent && s->c->state != HB_C_DEAD) {
		nghttp2_submit_rst_stream(s->c->h2, NGHTTP2_FLAG_NONE, s->sid, code);
		s->reset_sent = true;
	}
	hb_conn_queue(s->c);
}

void hb_stream_end(struct hb_stream *s, const char *cause, uint32_t code)
{
	if (!s->cause) {
		s->cause = cause;
		s->code = code;
	}
	s->h2_closed = true;
	hb_stream_drop_input(s);
	hb_stream_try_release(s);
}

/*
 * A stream that did not end cleanly (the peer reset it, its connection died, a deadline or a limit cut it)
 * closes the pod's socket with a TCP reset, not a FIN: a client reading a download must see that it was
 * cut short, as it would had it talked to the server directly, instead of a clean end of a truncated
 * transfer. A socket-pair end (the L7 proxy's) has no reset; setting the option there is harmless.
 */
static void abort_on_close(int fd)
{
	struct linger abort_linger = { .l_onoff = 1, .l_linger = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_linger, sizeof(abort_linger));
}

/*
 * A CONNECT the server refused unprocessed (RST_STREAM REFUSED_STREAM before any answer, as a draining
 * server does to a stream that crossed its GOAWAY): RFC 9113 §8.7 makes it safe to send again, so the
 * pod's socket is left as it was, for JavaScript to carry on another connection or close.
 */
static bool refused_unprocessed(const struct hb_stream *s)
{
	return s->c->role == HB_CLIENT && s->state == HB_S_REQUESTED && s->cause && strcmp(s->cause, "peer-reset") == 0 &&
	       s->code == NGHTTP2_REFUSED_STREAM;
}

/* Takes a stream off its connection's list and its thread's id table: no command finds it any more. */
static void unlink_from_conn(struct hb_stream *s)
{
	struct hb_stream **slot;

	if (s->prev)
		s->prev->next = s->next;
	else
		s->c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	for (slot = &s->c->w->stream_table[s->id % HB_TABLE]; *slot && *slot != s; slot = &(*slot)->hnext)
		;
	if (!*slot)
		HB_FATAL("stream %llu is not in its thread's table", (unsigned long long)s->id);
	*slot = s->hnext;
}

void hb_stream_try_release(struct hb_stream *s)
{
	struct hb_conn *c = s->c;
	struct hb_worker *w = c->w;
	bool silent = s->state == HB_S_HEADERS || s->state == HB_S_NEW || (c->role == HB_SERVER && !s->announced);

	if (s->released || !s->h2_closed)
		return;
	/* Bytes the peer sent before its END_STREAM still go to the fd. */
	if (s->buffered && s->fd >= 0 && !s->cause && s->state == HB_S_OPEN)
		return;
	s->released = true;
	hb_stream_drop_input(s);
	if (s->fd >= 0) {
		hb_unwatch(w, s->fd);
		if (s->cause && !refused_unprocessed(s))
			abort_on_close(s->fd);
		close(s->fd);
		s->fd = -1;
	}
	if (s->state == HB_S_PENDING || (s->state == HB_S_NEW && s->cause)) {
		hb_count(w->e, HB_C_RESET_BEFORE_ANSWER, 1);
		if (s->state == HB_S_PENDING)
			c->npending--;
	}
	if (!silent) {
		struct hb_event *ev = hb_event_new(HB_E_STREAM_END, c->id, s->id);

		ev->cause = s->cause ? s->cause : "done";
		ev->code = s->code;
		ev->n[0] = s->bytes_in;
		ev->n[1] = s->bytes_out;
		hb_emit(w->e, ev);
	}
	unlink_from_conn(s);
	if (--c->nstreams == 0)
		c->idle_since_ms = w->now_ms;
	hb_count(w->e, HB_C_STREAMS_OPEN, -1);
	s->next_dead = w->dead_streams;
	w->dead_streams = s;
	hb_conn_queue(c);
}

void hb_stream_free(struct hb_stream *s)
{
	free(s->method);
	free(s->authority);
	for (size_t i = 0; i < s->nhdrs; i++)
		free(s->hdrs[i]);
	free(s->hdrs);
	hb_mem_give(s->c, sizeof(*s));
	free(s);
}
