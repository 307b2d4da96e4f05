/*
 * One data thread: an epoll over its connections' sockets, their streams' plain fds and an eventfd for
 * JavaScript's commands. Events only mark what is ready and queue the connection; each queued
 * connection then runs once per round, with a budget, so a busy one cannot starve the rest. Objects
 * that end during a round are freed only after it: one epoll batch can name an object twice.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#define TICK_MS 250

void hb_worker_init(struct hb_worker *w, struct hb_engine *e, int index)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

	w->kind = HB_K_WAKE;
	w->e = e;
	w->index = index;
	pthread_mutex_init(&w->lock, NULL);
	w->cmd_tail = &w->cmd_head;
	w->ready_tail = &w->ready_head;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0) {
		w->init_err = errno;
		w->wakefd = -1;
		return;
	}
	w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wakefd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev))
		w->init_err = errno;
}

struct hb_conn *hb_conn_find(struct hb_worker *w, uint64_t id)
{
	struct hb_conn *c = w->conn_table[id % HB_TABLE];

	while (c && c->id != id)
		c = c->hnext;
	return c;
}

struct hb_stream *hb_stream_find(struct hb_worker *w, uint64_t id)
{
	struct hb_stream *s = w->stream_table[id % HB_TABLE];

	while (s && s->id != id)
		s = s->hnext;
	return s;
}

void hb_stream_index(struct hb_worker *w, struct hb_stream *s)
{
	s->hnext = w->stream_table[s->id % HB_TABLE];
	w->stream_table[s->id % HB_TABLE] = s;
}

void hb_watch(struct hb_worker *w, int fd, void *obj)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = obj };

	/* The fuzzer runs the glue without a loop; a real fd that epoll refuses is reported by the caller. */
	if (w->epfd >= 0 && epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev))
		HB_FATAL("epoll refused fd %d: %s", fd, strerror(errno));
}

void hb_unwatch(struct hb_worker *w, int fd)
{
	/* Before close: a dup held elsewhere (JavaScript's) would keep the registration, and its events. */
	if (w->epfd >= 0 && epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL) && errno != ENOENT && errno != EBADF)
		HB_FATAL("epoll would not drop fd %d: %s", fd, strerror(errno));
}

void hb_conn_queue(struct hb_conn *c)
{
	struct hb_worker *w = c->w;

	if (c->queued || c->state == HB_C_DEAD)
		return;
	c->queued = true;
	c->next_ready = NULL;
	*w->ready_tail = c;
	w->ready_tail = &c->next_ready;
}

/* The peer's address as text, for the per-address cap and for messages. */
static void peer_address(int fd, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	snprintf(out, len, "unknown");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl))
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)len);
	if (strncmp(out, "::ffff:", 7) == 0 && strchr(out, '.'))
		memmove(out, out + 7, strlen(out + 7) + 1);
}

static void refuse_conn(struct hb_worker *w, struct hb_cmd *cmd, const char *cause, const char *message)
{
	struct hb_event *ev = hb_event_new(HB_E_CONN_END, cmd->conn, 0);

	ev->cause = cause;
	ev->text = hb_strdup(message);
	hb_emit(w->e, ev);
}

static void start_conn(struct hb_worker *w, struct hb_cmd *cmd, enum hb_role role)
{
	struct hb_engine *e = w->e;
	char address[64], msg[256];
	struct hb_conn *c;
	int one = 1;

	peer_address(cmd->fd, address, sizeof(address));
	if (atomic_load(&e->draining)) {
		refuse_conn(w, cmd, "draining", "the engine is draining: no new connections");
		return;
	}
	if (atomic_load(&e->counters[HB_C_CONNS_OPEN]) >= e->opt.max_connections) {
		snprintf(msg, sizeof(msg), "%u connections open, the engine's cap (maxConnections)", e->opt.max_connections);
		hb_limit_hit(e, HB_C_LIMIT_CONNECTIONS, cmd->conn, "maxConnections", address, e->opt.max_connections);
		refuse_conn(w, cmd, "limit", msg);
		return;
	}
	if (role == HB_SERVER && !hb_limit_take(e, false, address, e->opt.max_conns_per_address)) {
		hb_limit_hit(e, HB_C_LIMIT_ADDRESS, cmd->conn, "maxConnectionsPerAddress", address, e->opt.max_conns_per_address);
		snprintf(msg, sizeof(msg), "%s already holds %u connections (maxConnectionsPerAddress)", address, e->opt.max_conns_per_address);
		refuse_conn(w, cmd, "limit", msg);
		return;
	}
	setsockopt(cmd->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = hb_conn_new(w, cmd->conn, role, cmd->fd, cmd->ssl_ctx);
	if (!c) {
		if (role == HB_SERVER)
			hb_limit_give(e, false, address);
		refuse_conn(w, cmd, "internal", "out of memory setting up the connection");
		return;
	}
	cmd->fd = -1;
	c->tag = cmd->tag;
	snprintf(c->peer_address, sizeof(c->peer_address), "%s", address);
	c->counted_address = role == HB_SERVER;
	c->expected = cmd->strv;
	c->nexpected = cmd->strc;
	cmd->strv = NULL;
	cmd->strc = 0;
	hb_watch(w, c->fd, c);
	hb_conn_queue(c);
}

static void end_unanswerable(struct hb_worker *w, struct hb_cmd *cmd, const char *cause)
{
	struct hb_event *ev = hb_event_new(HB_E_STREAM_END, cmd->conn, cmd->stream);

	ev->cause = cause;
	hb_emit(w->e, ev);
}

static void emit_stats(struct hb_worker *w, struct hb_cmd *cmd)
{
	struct hb_conn *c = hb_conn_find(w, cmd->conn);
	struct hb_event *ev = hb_event_new(HB_E_CONN_STATS, cmd->conn, 0);
	size_t buffered = 0;

	ev->n[5] = cmd->request;
	if (!c) {
		ev->cause = "unknown";
		hb_emit(w->e, ev);
		return;
	}
	for (struct hb_stream *s = c->streams; s; s = s->next)
		buffered += s->buffered;
	ev->n[0] = c->nstreams;
	ev->n[1] = c->out.len - c->out.off;
	ev->n[2] = buffered;
	ev->n[3] = c->mem;
	ev->n[4] = c->npending;
	ev->status = c->state == HB_C_LIVE ? 1 : 0;
	ev->text = hb_strdup(c->peer_identity);
	hb_emit(w->e, ev);
}

void hb_worker_run_cmd(struct hb_worker *w, struct hb_cmd *cmd)
{
	struct hb_conn *c;
	struct hb_stream *s;

	switch (cmd->type) {
	case HB_CMD_SERVE:
	case HB_CMD_DIAL:
		start_conn(w, cmd, cmd->type == HB_CMD_SERVE ? HB_SERVER : HB_CLIENT);
		break;
	case HB_CMD_ACCEPT_PEER:
		if ((c = hb_conn_find(w, cmd->conn)))
			hb_conn_accept_peer(c, cmd->ok);
		break;
	case HB_CMD_ANSWER:
		s = hb_stream_find(w, cmd->stream);
		if (!s || s->c->id != cmd->conn || s->state != HB_S_PENDING || s->released) {
			/* The stream ended before JavaScript answered: the pod connection it made goes unused. */
			if (cmd->fd >= 0)
				hb_count(w->e, HB_C_LATE_ANSWERS, 1);
			break;
		}
		hb_stream_answer(s, cmd->status, cmd->fd);
		cmd->fd = -1;
		break;
	case HB_CMD_OPEN_STREAM:
		c = hb_conn_find(w, cmd->conn);
		if (!c || c->state == HB_C_DEAD || c->draining || c->goaway_sent) {
			end_unanswerable(w, cmd, c ? "draining" : "conn-closed");
			break;
		}
		if (!hb_stream_open(c, cmd->stream, cmd->authority, cmd->strv, cmd->strc, cmd->fd)) {
			end_unanswerable(w, cmd, "refused-locally");
			break;
		}
		cmd->fd = -1;
		break;
	case HB_CMD_RESET:
		if ((s = hb_stream_find(w, cmd->stream)) && s->c->id == cmd->conn && !s->released)
			hb_stream_reset(s, NGHTTP2_CANCEL, "local-reset");
		break;
	case HB_CMD_CLOSE:
		if ((c = hb_conn_find(w, cmd->conn)) && c->state != HB_C_DEAD)
			hb_conn_close(c, "local-close", "closed by the agent");
		break;
	case HB_CMD_DRAIN:
		for (c = w->conns; c; c = c->next)
			hb_conn_drain(c, cmd->deadline_ms);
		break;
	case HB_CMD_STATS:
		emit_stats(w, cmd);
		break;
	case HB_CMD_STOP:
		w->stop = true;
		break;
	}
}

static void run_commands(struct hb_worker *w)
{
	struct hb_cmd *cmd, *next;
	uint64_t count;

	if (read(w->wakefd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		HB_FATAL("reading the wake-up eventfd: %s", strerror(errno));
	pthread_mutex_lock(&w->lock);
	cmd = w->cmd_head;
	w->cmd_head = NULL;
	w->cmd_tail = &w->cmd_head;
	pthread_mutex_unlock(&w->lock);
	for (; cmd; cmd = next) {
		next = cmd->next;
		hb_worker_run_cmd(w, cmd);
		hb_cmd_free(cmd);
	}
}

void hb_worker_reap(struct hb_worker *w)
{
	struct hb_engine *e = w->e;
	struct hb_conn **link = &w->ready_head;

	/* A connection that ended after being queued leaves the ready list before it is freed. */
	w->ready_tail = &w->ready_head;
	while (*link) {
		if ((*link)->state == HB_C_DEAD) {
			*link = (*link)->next_ready;
		} else {
			w->ready_tail = &(*link)->next_ready;
			link = &(*link)->next_ready;
		}
	}
	while (w->dead_streams) {
		struct hb_stream *s = w->dead_streams;

		w->dead_streams = s->next_dead;
		hb_stream_free(s);
	}
	while (w->dead_conns) {
		struct hb_conn *c = w->dead_conns;

		w->dead_conns = c->next_dead;
		hb_conn_free(c);
	}
	if (atomic_load(&e->draining) && atomic_load(&e->counters[HB_C_CONNS_OPEN]) == 0 &&
	    !atomic_exchange(&e->drained_reported, true))
		hb_emit(e, hb_event_new(HB_E_DRAINED, 0, 0));
}

static void run_ready(struct hb_worker *w)
{
	struct hb_conn *c = w->ready_head;

	w->ready_head = NULL;
	w->ready_tail = &w->ready_head;
	for (struct hb_conn *next; c; c = next) {
		next = c->next_ready;
		c->queued = false;
		if (c->state != HB_C_DEAD)
			hb_conn_run(c);
	}
}

void *hb_worker_main(void *arg)
{
	struct hb_worker *w = arg;
	struct epoll_event events[128];

	w->now_ms = hb_now_ms();
	w->next_tick_ms = w->now_ms + TICK_MS;
	while (!w->stop) {
		int timeout = w->ready_head ? 0 : w->conns ? (int)(w->next_tick_ms > w->now_ms ? w->next_tick_ms - w->now_ms : 0) : -1;
		int n = epoll_wait(w->epfd, events, 128, timeout);

		if (n < 0 && errno != EINTR)
			HB_FATAL("epoll_wait on data thread %d: %s", w->index, strerror(errno));
		w->now_ms = hb_now_ms();
		for (int i = 0; i < n; i++) {
			uint8_t kind = *(uint8_t *)events[i].data.ptr;
			uint32_t ev = events[i].events;

			if (kind == HB_K_WAKE) {
				run_commands(w);
			} else if (kind == HB_K_CONN) {
				struct hb_conn *c = events[i].data.ptr;

				if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
					c->readable = true;
					c->rx_drained = false;
				}
				if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					c->rx_hup = true;
				if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
					c->writable = true;
					if (c->read_wants_write)
						c->readable = true;
				}
				hb_conn_queue(c);
			} else if (kind == HB_K_STREAM) {
				struct hb_stream *s = events[i].data.ptr;

				if (!s->released)
					hb_stream_fd_event(s, ev);
			} else {
				HB_FATAL("epoll returned an object of unknown kind %u", kind);
			}
		}
		run_ready(w);
		if (w->now_ms >= w->next_tick_ms) {
			for (struct hb_conn *c = w->conns; c; c = c->next)
				hb_conn_tick(c, w->now_ms);
			w->next_tick_ms = w->now_ms + TICK_MS;
			run_ready(w);
		}
		hb_worker_reap(w);
	}
	while (w->conns)
		hb_conn_close(w->conns, "engine-closed", "the HBONE engine was closed");
	hb_worker_reap(w);
	return NULL;
}
