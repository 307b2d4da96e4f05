/*
 * A stream's byte pump between the peer and its plain fd (the pod's socket, or a socketpair end for
 * L7). Flow control is end to end: bytes from the peer are consumed (and so open the peer's window)
 * only once the fd took them, and the fd is read only when nghttp2 asks for DATA, which it does only
 * while the stream has window and the connection's output is under its high-water mark. Nothing is
 * buffered beyond what the peer's window allows.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * Gives the peer back window for bytes the fd took (or that were dropped). The connection runs again
 * only when that queued a WINDOW_UPDATE (once per half window): re-queueing it after every write to the
 * pod cost each delivered DATA an empty run of the connection and an epoll_wait(0).
 */
static void consume(struct hb_stream *s, size_t n)
{
	struct hb_conn *c = s->c;

	if (!n || !c->h2 || c->state == HB_C_DEAD)
		return;
	nghttp2_session_consume(c->h2, s->sid, n);
	if (nghttp2_session_want_write(c->h2))
		hb_conn_queue(c);
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

/* Drops what the peer sent that the fd has not taken, and gives the peer its window back. */
void hb_stream_drop_input(struct hb_stream *s)
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
