/*
 * A stream's plain side: one fd (the pod's socket, or a socketpair end for L7). Flow control is end to
 * end: bytes from the peer are consumed (and so open the peer's window) only once the fd took them, and
 * the fd is read only when nghttp2 asks for DATA, which it does only while the stream has window and
 * the connection's output is under its high-water mark. Nothing is buffered beyond what the peer's
 * window allows, and a stream's end is reported once, with its byte counts and why.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
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

/* Gives the peer back window for bytes the fd took (or that were dropped). */
static void consume(struct hb_stream *s, size_t n)
{
	if (n && s->c->h2 && s->c->state != HB_C_DEAD)
		nghttp2_session_consume(s->c->h2, s->sid, n);
	hb_conn_queue(s->c);
}

static void fd_failed(struct hb_stream *s, int err)
{
	if (!s->cause) {
		s->cause = "fd-error";
		s->code = (uint32_t)err;
	}
	s->fd_error = true;
	if (s->npending_iov) {
		/* Pending bytes point into the read buffer: they cannot outlive this batch. */
		s->buffered -= s->pending_bytes;
		consume(s, s->pending_bytes);
		s->npending_iov = 0;
		s->pending_bytes = 0;
	}
	s->c->resets_pending = true;
	hb_conn_queue(s->c);
}

static void drop_buffer(struct hb_stream *s)
{
	size_t dropped = s->buffered;

	while (s->in_head) {
		struct hb_chunk *ch = s->in_head;

		s->in_head = ch->next;
		hb_mem_give(s->c, sizeof(*ch) + ch->len);
		free(ch);
	}
	s->in_tail = NULL;
	s->npending_iov = 0;
	s->pending_bytes = 0;
	s->buffered = 0;
	consume(s, dropped);
}

/* Keeps bytes the fd did not take, in one chunk: the peer's window (not given back yet) bounds them. */
static bool keep(struct hb_stream *s, const uint8_t *data, size_t len)
{
	struct hb_chunk *ch;

	if (!hb_mem_take(s->c, sizeof(*ch) + len))
		return false;
	ch = malloc(sizeof(*ch) + len);
	if (!ch) {
		hb_mem_give(s->c, sizeof(*ch) + len);
		return false;
	}
	ch->next = NULL;
	ch->off = 0;
	ch->len = len;
	memcpy(ch->data, data, len);
	if (s->in_tail)
		s->in_tail->next = ch;
	else
		s->in_head = ch;
	s->in_tail = ch;
	return true;
}

/* Bytes the fd took: the peer gets their window back, and the stream is not idle. */
static void wrote(struct hb_stream *s, size_t n)
{
	s->buffered -= n;
	s->bytes_in += (uint64_t)n;
	s->active_ms = s->c->w->now_ms;
	hb_count(s->c->w->e, HB_C_BYTES_IN, (int64_t)n);
	consume(s, n);
}

/*
 * One writev for the DATA of this batch; what the fd does not take is copied into a chunk (the only
 * copy on this path) before the read buffer is reused. False when the memory cap forbids keeping it.
 */
static bool write_pending(struct hb_stream *s)
{
	size_t total = s->pending_bytes, done, rest;
	ssize_t n;
	int i;

	if (!s->npending_iov)
		return true;
	n = writev(s->fd, s->pending, s->npending_iov);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		s->npending_iov = 0;
		s->pending_bytes = 0;
		s->buffered -= total;
		fd_failed(s, errno);
		consume(s, total);
		return true;
	}
	done = n < 0 ? 0 : (size_t)n;
	if (done)
		wrote(s, done);
	rest = total - done;
	for (i = 0; i < s->npending_iov && rest; i++) {
		struct iovec *v = &s->pending[i];
		size_t skip = done < v->iov_len ? done : v->iov_len;

		done -= skip;
		if (skip == v->iov_len)
			continue;
		if (!keep(s, (const uint8_t *)v->iov_base + skip, v->iov_len - skip)) {
			s->npending_iov = 0;
			s->pending_bytes = 0;
			return false;
		}
		rest -= v->iov_len - skip;
	}
	s->npending_iov = 0;
	s->pending_bytes = 0;
	return true;
}

bool hb_stream_deliver(struct hb_stream *s, const uint8_t *data, size_t len)
{
	if (s->state == HB_S_REFUSED || s->fd_error || s->cause) {
		consume(s, len);
		return true;
	}
	if (s->state == HB_S_OPEN && s->fd >= 0 && !s->in_head) {
		/* Written with the rest of the batch (hb_streams_write_pending), or now if the list is full. */
		if (s->npending_iov == HB_PENDING_IOV && !write_pending(s))
			return false;
		if (!s->in_head) {
			s->pending[s->npending_iov++] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
			s->pending_bytes += len;
			s->buffered += len;
			if (!s->dirty) {
				s->dirty = true;
				s->next_dirty = s->c->dirty;
				s->c->dirty = s;
			}
			return true;
		}
	}
	if (!keep(s, data, len))
		return false;
	s->buffered += len;
	return true;
}

bool hb_streams_write_pending(struct hb_conn *c)
{
	while (c->dirty) {
		struct hb_stream *s = c->dirty;

		c->dirty = s->next_dirty;
		s->dirty = false;
		s->next_dirty = NULL;
		/* A stream released or reset in this batch dropped its pending bytes already. */
		if (!s->released)
			hb_stream_flush(s);
	}
	return !c->over_memory;
}

void hb_stream_flush(struct hb_stream *s)
{
	if (s->fd < 0 || s->state != HB_S_OPEN || s->fd_error)
		return;
	/* The peer's END_STREAM can arrive in the batch that carried its last DATA: those bytes go first. */
	if (!write_pending(s)) {
		s->c->over_memory = true;
		return;
	}
	while (s->in_head) {
		struct hb_chunk *ch = s->in_head;
		ssize_t n = write(s->fd, ch->data + ch->off, ch->len - ch->off);

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				fd_failed(s, errno);
			return;
		}
		ch->off += (size_t)n;
		wrote(s, (size_t)n);
		if (ch->off < ch->len)
			return;
		s->in_head = ch->next;
		if (!s->in_head)
			s->in_tail = NULL;
		hb_mem_give(s->c, sizeof(*ch) + ch->len);
		free(ch);
	}
	if (s->peer_ended && !s->fd_shut) {
		/* The peer's END_STREAM is the pod's FIN; the other direction runs on. */
		shutdown(s->fd, SHUT_WR);
		s->fd_shut = true;
	}
	hb_stream_try_release(s);
}

void hb_stream_fd_event(struct hb_stream *s, uint32_t events)
{
	if (events & EPOLLERR) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (!getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) && err) {
			fd_failed(s, err);
			return;
		}
	}
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		hb_stream_flush(s);
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->fd_drained = false;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->fd_hup = true;
	if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && s->deferred && s->state == HB_S_OPEN && !s->released) {
		s->deferred = false;
		nghttp2_session_resume_data(s->c->h2, s->sid);
		hb_conn_queue(s->c);
	}
}

ssize_t hb_data_read(nghttp2_session *session, int32_t sid, uint8_t *buf, size_t length, uint32_t *flags,
		     nghttp2_data_source *source, void *user_data)
{
	struct hb_stream *s = source->ptr;
	ssize_t n;

	(void)session;
	(void)sid;
	(void)user_data;
	/* A client sends nothing before the 200 (RFC 9113 §8.5); a failed fd waits for its reset. */
	if (s->state != HB_S_OPEN || s->fd_error) {
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	/*
	 * A read shorter than asked emptied the socket: the next would only say EAGAIN. Edge-triggered
	 * epoll reports the next bytes (or the FIN) as a new event, which clears fd_drained.
	 */
	if (s->fd_drained && !s->fd_hup) {
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	n = read(s->fd, buf, length);
	if (n > 0) {
		s->fd_drained = (size_t)n < length;
		s->bytes_out += (uint64_t)n;
		s->active_ms = s->c->w->now_ms;
		hb_count(s->c->w->e, HB_C_BYTES_OUT, n);
		return n;
	}
	if (n == 0) {
		/* The pod's FIN is our END_STREAM. */
		s->fd_eof = true;
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	if (errno != EAGAIN && errno != EINTR)
		fd_failed(s, errno);
	s->deferred = true;
	return NGHTTP2_ERR_DEFERRED;
}

void hb_stream_reset(struct hb_stream *s, uint32_t code, const char *cause)
{
	if (!s->cause) {
		s->cause = cause;
		s->code = code;
	}
	drop_buffer(s);
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
	drop_buffer(s);
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

void hb_stream_try_release(struct hb_stream *s)
{
	struct hb_conn *c = s->c;
	struct hb_worker *w = c->w;
	struct hb_stream **slot;
	bool silent = s->state == HB_S_HEADERS || s->state == HB_S_NEW || (c->role == HB_SERVER && !s->announced);

	if (s->released || !s->h2_closed)
		return;
	/* Bytes the peer sent before its END_STREAM still go to the fd. */
	if (s->buffered && s->fd >= 0 && !s->cause && s->state == HB_S_OPEN)
		return;
	s->released = true;
	drop_buffer(s);
	if (s->fd >= 0) {
		hb_unwatch(w, s->fd);
		if (s->cause)
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
	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	for (slot = &w->stream_table[s->id % HB_TABLE]; *slot && *slot != s; slot = &(*slot)->hnext)
		;
	if (!*slot)
		HB_FATAL("stream %llu is not in its thread's table", (unsigned long long)s->id);
	*slot = s->hnext;
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
		drop_buffer(s);
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
