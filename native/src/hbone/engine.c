/*
 * The HBONE engine: N data threads, each with its own epoll and its own connections. JavaScript's
 * calls reach a thread as commands (a queue and an eventfd); a connection's id names its thread, so
 * every later call about it lands where its state lives and no connection state is ever shared.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

const char *const hb_counter_names[HB_C_COUNT] = {
	"connectionsOpened", "connectionsOpen", "streamsOpened", "streamsOpen",
	"handshakesFailed", "protocolErrors", "resetBeforeAnswer", "lateAnswers",
	"limitPendingConnects", "limitConnectionsPerIdentity", "limitConnectionsPerAddress", "limitConnections",
	"limitConnectionMemory", "idleClosed", "pingTimeouts", "bytesIn", "bytesOut",
	"streamsIdleClosed",
};

void hb_fatal(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ambit HBONE engine: impossible state at %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; the agent exits rather than carry traffic on a broken data thread\n");
	abort();
}

void hb_options_default(struct hb_options *o)
{
	const uint32_t MiB = 1024 * 1024;

	/*
	 * ztunnel runs 2 workers. Here (2 cores shared with node's own thread) two 256 MiB echoes on two
	 * connections, both engines in one process, moved 179 and 346 MiB/s with 1 thread against 154 and
	 * 375 MiB/s with 2, in two runs: no gain within the noise, so 1 until the bench (agents in their own
	 * namespaces) says otherwise.
	 */
	o->threads = 1;
	o->stream_window = 4 * MiB;
	o->conn_window = 16 * MiB;
	o->max_frame_size = 1 * MiB;
	o->server_max_streams = 200;
	o->client_max_streams = 100;
	o->server_max_header_list = 64 * 1024;
	o->client_max_header_list = 16 * 1024;
	o->ping_interval_ms = 10000;
	o->ping_timeout_ms = 20000;
	o->handshake_timeout_ms = 10000;
	o->idle_timeout_ms = 5 * 60 * 1000;
	o->response_timeout_ms = 10000;
	o->max_pending_connects = 100;
	o->max_conns_per_identity = 1024;
	o->max_conns_per_address = 1024;
	o->max_connections = 16384;
	/* The connection window can be all buffered (a pod reading slowly), plus nghttp2's own state. */
	o->max_conn_memory = 24 * MiB;
	/* ztunnel has no stream idle timeout (TCP keepalive only): the agent passes its --tcp-idle-timeout. */
	o->stream_idle_timeout_ms = 0;
}

uint64_t hb_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void hb_count(struct hb_engine *e, enum hb_counter c, int64_t delta)
{
	atomic_fetch_add_explicit(&e->counters[c], (uint64_t)delta, memory_order_relaxed);
}

uint64_t hb_next_id(struct hb_engine *e)
{
	return atomic_fetch_add(&e->next_id, 1);
}

struct hb_engine *hb_engine_new(const struct hb_options *opt, char *err, size_t errlen)
{
	struct hb_engine *e;
	uint32_t i;

	if (opt->threads < 1 || opt->threads > 64) {
		snprintf(err, errlen, "threads must be 1 to 64, not %u", opt->threads);
		return NULL;
	}
	if (opt->stream_window < 65535 || opt->stream_window > 0x7fffffff || opt->conn_window < 65535 || opt->conn_window > 0x7fffffff) {
		snprintf(err, errlen, "flow-control windows must be 65535 to 2^31-1 bytes");
		return NULL;
	}
	if (opt->max_frame_size < 16384 || opt->max_frame_size > 16777215) {
		snprintf(err, errlen, "maxFrameSize must be 16384 to 16777215 (RFC 9113)");
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e || !(e->workers = calloc(opt->threads, sizeof(*e->workers)))) {
		free(e);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->opt = *opt;
	e->nworkers = opt->threads;
	atomic_init(&e->next_id, 1);
	pthread_mutex_init(&e->ev_lock, NULL);
	pthread_mutex_init(&e->peer_lock, NULL);
	e->ev_tail = &e->ev_head;
	for (i = 0; i < e->nworkers; i++)
		hb_worker_init(&e->workers[i], e, (int)i);
	return e;
}

int hb_engine_start(struct hb_engine *e)
{
	for (uint32_t i = 0; i < e->nworkers; i++) {
		struct hb_worker *w = &e->workers[i];
		int err;

		if (w->init_err)
			return w->init_err;
		err = pthread_create(&w->thread, NULL, hb_worker_main, w);
		if (err)
			return err;
		w->started = true;
	}
	return 0;
}

static void wake(struct hb_worker *w)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: the thread wakes anyway. */
	if (write(w->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		HB_FATAL("waking data thread %d: %s", w->index, strerror(errno));
}

void hb_post(struct hb_engine *e, struct hb_cmd *cmd)
{
	struct hb_worker *w = &e->workers[cmd->conn % e->nworkers];
	bool first;

	cmd->next = NULL;
	pthread_mutex_lock(&w->lock);
	first = w->cmd_head == NULL;
	*w->cmd_tail = cmd;
	w->cmd_tail = &cmd->next;
	pthread_mutex_unlock(&w->lock);
	if (first)
		wake(w);
}

void hb_post_all(struct hb_engine *e, enum hb_cmd_type type, uint64_t deadline_ms)
{
	for (uint32_t i = 0; i < e->nworkers; i++) {
		struct hb_cmd *cmd = calloc(1, sizeof(*cmd));

		if (!cmd)
			HB_FATAL("out of memory for a command");
		cmd->type = type;
		cmd->conn = i; /* routes to worker i */
		cmd->deadline_ms = deadline_ms;
		cmd->fd = -1;
		hb_post(e, cmd);
	}
}

void hb_cmd_free(struct hb_cmd *cmd)
{
	if (!cmd)
		return;
	if (cmd->fd >= 0)
		close(cmd->fd);
	SSL_CTX_free(cmd->ssl_ctx);
	free(cmd->authority);
	for (size_t i = 0; i < cmd->strc; i++)
		free(cmd->strv[i]);
	free(cmd->strv);
	free(cmd);
}

void hb_engine_stop(struct hb_engine *e)
{
	hb_post_all(e, HB_CMD_STOP, 0);
	for (uint32_t i = 0; i < e->nworkers; i++) {
		if (e->workers[i].started)
			pthread_join(e->workers[i].thread, NULL);
		e->workers[i].started = false;
	}
}

void hb_engine_free(struct hb_engine *e)
{
	struct hb_event *ev = hb_events_take(e), *next;

	for (; ev; ev = next) {
		next = ev->next;
		hb_event_free(ev);
	}
	for (uint32_t i = 0; i < e->nworkers; i++) {
		struct hb_worker *w = &e->workers[i];
		struct hb_cmd *cmd, *cnext;

		for (cmd = w->cmd_head; cmd; cmd = cnext) {
			cnext = cmd->next;
			hb_cmd_free(cmd);
		}
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->wakefd >= 0)
			close(w->wakefd);
	}
	for (int b = 0; b < 256; b++) {
		struct hb_peer_count *p, *next;

		for (p = e->by_identity[b]; p; p = next) {
			next = p->next;
			free(p);
		}
		for (p = e->by_address[b]; p; p = next) {
			next = p->next;
			free(p);
		}
	}
	for (size_t i = 0; i < e->nreported; i++)
		free(e->reported[i]);
	free(e->reported);
	free(e->workers);
	free(e);
}
