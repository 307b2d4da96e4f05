/*
 * One HBONE connection's transport once TLS is set up (handshake.c): a loop that moves TLS records in
 * and out of the HTTP/2 session without blocking, its timers (PING, idle, handshake and drain
 * deadlines) and its end, which ends its streams and reports once.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rounds of read, frame, write a connection runs before the others get their turn. */
#define BUDGET 16

struct hb_conn *hb_conn_new(struct hb_worker *w, uint64_t id, enum hb_role role, int fd, SSL_CTX *ssl_ctx)
{
	struct hb_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->kind = HB_K_CONN;
	c->w = w;
	c->id = id;
	c->role = role;
	c->fd = fd;
	c->opened_ms = c->idle_since_ms = c->last_ping_ms = w->now_ms;
	c->state = ssl_ctx ? HB_C_HANDSHAKE : HB_C_LIVE;
	c->readable = c->writable = true;
	if ((ssl_ctx && !hb_conn_tls_init(c, ssl_ctx)) || hb_session_init(c)) {
		SSL_free(c->ssl);
		free(c);
		return NULL;
	}
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	c->hnext = w->conn_table[id % HB_TABLE];
	w->conn_table[id % HB_TABLE] = c;
	w->nconns++;
	hb_count(w->e, HB_C_CONNS_OPENED, 1);
	hb_count(w->e, HB_C_CONNS_OPEN, 1);
	return c;
}

/* A failed SSL_read or SSL_write: the connection ends, with what the peer did if we can tell. */
static void io_failed(struct hb_conn *c, int r, const char *op)
{
	int err = SSL_get_error(c->ssl, r);
	int sys = errno;

	ERR_clear_error();
	/* A reset is how a server that refused us usually hangs up (it closed with our bytes unread). */
	if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && (sys == 0 || (sys == ECONNRESET && c->role == HB_CLIENT && !c->heard))) ||
	    err == SSL_ERROR_SSL) {
		if (c->role == HB_CLIENT && !c->heard)
			hb_conn_close(c, "refused-by-server", "%s closed the connection before HTTP/2 started: it most likely refused our certificate (another root or trust domain; see its log)", c->peer_address);
		else
			hb_conn_close(c, "peer-closed", "%s closed the connection", c->peer_address);
	} else {
		hb_conn_close(c, "io-error", "%s on the connection to %s failed: %s", op, c->peer_address, strerror(sys));
	}
}

/* Writes what is queued for the peer until the socket is full. */
static bool write_out(struct hb_conn *c)
{
	bool moved = false;

	while (c->out.len > c->out.off && c->writable) {
		int n = SSL_write(c->ssl, c->out.data + c->out.off, (int)(c->out.len - c->out.off));

		if (n > 0) {
			c->out.off += (size_t)n;
			moved = true;
			continue;
		}
		if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_WRITE) {
			c->writable = false;
		} else if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ) {
			c->readable = true;
			break;
		} else {
			io_failed(c, n, "writing");
			return false;
		}
	}
	if (c->out.off == c->out.len)
		c->out.off = c->out.len = 0;
	return moved;
}

/*
 * What the socket holds, up to the read buffer, in one batch: several TLS records decrypted, then
 * parsed at once, so that a stream's DATA of the batch reaches its pod in one writev (stream_pump.c).
 * False when nothing came (or the connection ended).
 */
static bool read_in(struct hb_conn *c)
{
	uint8_t *buf = c->w->rbuf;
	size_t got = 0;
	int failed = 1, failed_errno = 0;

	while (c->readable && got < sizeof(c->w->rbuf)) {
		int n = SSL_read(c->ssl, buf + got, (int)(sizeof(c->w->rbuf) - got));

		if (n > 0) {
			got += (size_t)n;
			c->read_wants_write = false;
			continue;
		}
		int err = SSL_get_error(c->ssl, n);

		if (err == SSL_ERROR_WANT_READ) {
			c->readable = false;
		} else if (err == SSL_ERROR_WANT_WRITE) {
			c->readable = false;
			c->read_wants_write = true;
		} else {
			/* Bytes already in hand are parsed first (the peer's last DATA before its close). */
			failed = n;
			failed_errno = errno;
		}
		break;
	}
	if (got && !hb_session_recv(c, buf, got))
		return false;
	if (got)
		hb_streams_announce(c);
	if (failed <= 0 && c->state == HB_C_LIVE) {
		errno = failed_errno;
		io_failed(c, failed, "reading");
		return false;
	}
	return got > 0;
}

void hb_conn_run(struct hb_conn *c)
{
	bool moved = true;
	int rounds = 0;

	if (c->state == HB_C_HANDSHAKE)
		hb_conn_handshake(c);
	if (c->state != HB_C_LIVE)
		return;
	while (moved && rounds++ < BUDGET && c->state == HB_C_LIVE) {
		moved = read_in(c);
		if (c->state != HB_C_LIVE)
			return;
		if (!hb_session_fill(c))
			break;
		moved = write_out(c) || moved;
	}
	if (c->state != HB_C_LIVE)
		return;
	if (c->state == HB_C_LIVE && hb_session_done(c)) {
		hb_conn_close(c, c->closing_cause ? c->closing_cause : "closed", "the HTTP/2 session with %s ended", c->peer_address);
		return;
	}
	if (moved)
		hb_conn_queue(c);
}

/* Sends GOAWAY and lets the session wind down: it closes once no stream is left. */
static void wind_down(struct hb_conn *c, const char *cause)
{
	if (!c->closing_cause)
		c->closing_cause = cause;
	if (!c->goaway_sent && c->state == HB_C_LIVE) {
		int32_t last = c->role == HB_SERVER ? nghttp2_session_get_last_proc_stream_id(c->h2) : 0;

		nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
		c->goaway_sent = true;
	}
	hb_conn_queue(c);
}

void hb_conn_drain(struct hb_conn *c, uint64_t deadline_ms)
{
	c->draining = true;
	c->drain_deadline_ms = deadline_ms;
	if (c->state != HB_C_LIVE)
		hb_conn_close(c, "drain", "the agent is draining");
	else
		wind_down(c, "drain");
}

void hb_conn_tick(struct hb_conn *c, uint64_t now)
{
	const struct hb_options *o = &c->w->e->opt;

	if (c->state == HB_C_DEAD)
		return;
	if (c->state != HB_C_LIVE) {
		if (now - c->opened_ms >= o->handshake_timeout_ms)
			hb_conn_close(c, "handshake-timeout", "%s did not complete the handshake within %u ms%s", c->peer_address,
				      o->handshake_timeout_ms, c->state == HB_C_AWAIT_PEER ? " (the agent did not decide on its identity)" : "");
		return;
	}
	if (c->draining && now >= c->drain_deadline_ms) {
		hb_conn_close(c, "drain", "the drain deadline passed with %u streams open; they were reset", c->nstreams);
		return;
	}
	if (c->ping_sent_ms && now - c->ping_sent_ms >= o->ping_timeout_ms) {
		hb_count(c->w->e, HB_C_PING_TIMEOUTS, 1);
		hb_conn_close(c, "ping-timeout", "%s did not answer a PING within %u ms", c->peer_address, o->ping_timeout_ms);
		return;
	}
	if (!c->ping_sent_ms && now - c->last_ping_ms >= o->ping_interval_ms) {
		nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
		c->ping_sent_ms = now;
		hb_conn_queue(c);
	}
	if (c->nstreams == 0 && !c->closing_cause && now - c->idle_since_ms >= o->idle_timeout_ms) {
		hb_count(c->w->e, HB_C_IDLE_CLOSED, 1);
		wind_down(c, "idle");
	}
	for (struct hb_stream *s = c->streams, *next; s; s = next) {
		next = s->next;
		if (s->state == HB_S_REQUESTED && now >= s->deadline_ms)
			hb_stream_reset(s, NGHTTP2_CANCEL, "timeout");
		/* No byte either way for that long: both sides are closed, as the relays' --tcp-idle-timeout. */
		else if (o->stream_idle_timeout_ms && s->state == HB_S_OPEN && !s->cause && now - s->active_ms >= o->stream_idle_timeout_ms) {
			hb_count(c->w->e, HB_C_STREAMS_IDLE_CLOSED, 1);
			hb_stream_reset(s, NGHTTP2_CANCEL, "idle-timeout");
		}
	}
}

/* Takes a connection off its thread's list and id table: no command finds it any more. */
static void unlink_from_worker(struct hb_conn *c)
{
	struct hb_worker *w = c->w;
	struct hb_conn **slot;

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	for (slot = &w->conn_table[c->id % HB_TABLE]; *slot && *slot != c; slot = &(*slot)->hnext)
		;
	if (!*slot)
		HB_FATAL("connection %llu is not in its thread's table", (unsigned long long)c->id);
	*slot = c->hnext;
	w->nconns--;
}

void hb_conn_close(struct hb_conn *c, const char *cause, const char *fmt, ...)
{
	struct hb_worker *w = c->w;
	struct hb_event *ev;
	char message[sizeof(c->message)];
	va_list ap;

	if (c->state == HB_C_DEAD)
		return;
	if (c->state == HB_C_LIVE && c->ssl) {
		/* Best effort: a GOAWAY and close_notify if the socket takes them now. */
		hb_session_fill(c);
		/* Dead before the flush: a write that fails in it must not close the connection again. */
		c->state = HB_C_DEAD;
		c->writable = true;
		write_out(c);
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	c->state = HB_C_DEAD;
	c->cause = cause;
	/* Through a copy: callers pass c->message itself as an argument, and vsnprintf must not overlap. */
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	memcpy(c->message, message, sizeof(message));
	while (c->streams)
		hb_stream_end(c->streams, "conn-closed", 0);
	if (c->fd >= 0) {
		hb_unwatch(w, c->fd);
		close(c->fd);
		c->fd = -1;
	}
	unlink_from_worker(c);
	if (c->counted_identity)
		hb_limit_give(w->e, true, c->peer_identity);
	if (c->counted_address)
		hb_limit_give(w->e, false, c->peer_address);
	hb_count(w->e, HB_C_CONNS_OPEN, -1);
	ev = hb_event_new(HB_E_CONN_END, c->id, 0);
	ev->cause = cause;
	ev->text = hb_strdup(c->message);
	ev->n[0] = c->bytes_in;
	ev->n[1] = c->bytes_out;
	hb_emit(w->e, ev);
	c->next_dead = w->dead_conns;
	w->dead_conns = c;
}

void hb_conn_free(struct hb_conn *c)
{
	/* The session's allocator charges the connection: delete it first. */
	nghttp2_session_del(c->h2);
	if (c->out.data) {
		hb_mem_give(c, c->out.cap);
		free(c->out.data);
	}
	SSL_free(c->ssl);
	for (size_t i = 0; i < c->nexpected; i++)
		free(c->expected[i]);
	free(c->expected);
	if (c->mem)
		HB_FATAL("connection %llu ends holding %zu bytes it never gave back", (unsigned long long)c->id, c->mem);
	free(c);
}
