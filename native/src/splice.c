/*
 * Plain TCP relays in the kernel: bytes move between two connected sockets by splice(2) through a
 * pipe per direction, in one thread of this addon, and never enter JavaScript. TCP's own flow control
 * is the backpressure (a full destination stops its source being read: EAGAIN, then EPOLLOUT), a FIN
 * becomes shutdown(SHUT_WR) on the other side, an error ends both. JavaScript hands over two sockets
 * it has stopped reading and hears once, with the byte counts, when the relay is over.
 *
 * Why not sockmap's sk_skb redirect: it has no backpressure on this kernel (bench/README.md).
 */
#define _GNU_SOURCE
#include "glue.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Each direction's pipe is grown to this (it holds 64 KiB by default): a splice moves at most a pipe's
 * worth, so a larger pipe halves the splices per byte; on loopback a bulk relay ran 25-40 % faster on
 * 30-40 % less CPU with 256 KiB (bench/README.md). Bytes in a pipe have left the source socket's
 * receive buffer, so this is also how much more than TCP's own buffers a relay may hold per direction.
 */
#define PIPE_BYTES (256 * 1024)
/* A pipe that cannot be grown (a user over /proc/sys/fs/pipe-user-pages-soft) keeps the default. */
#define PIPE_DEFAULT_BYTES (64 * 1024)

struct relay;

/* One socket of a relay, as epoll sees it. */
struct end {
	struct relay *relay;
	int fd;
};

struct relay {
	struct end ends[2];	  /* 0: downstream (the client), 1: upstream */
	int pipe_r[2], pipe_w[2]; /* pipe d carries bytes read from end d */
	size_t in_pipe[2];
	size_t capacity[2]; /* of each pipe */
	uint64_t bytes[2]; /* written to the other end */
	bool eof[2], shut[2];
	/* Readiness as epoll last reported it, cleared by EAGAIN: no splice is tried that would only fail. */
	bool readable[2], writable[2];
	bool done;
	bool queued; /* stopped by its budget with bytes still moving: pumped again without an event */
	struct relay *next_ready;
	bool finishing; /* on the list of relays released at the end of this round */
	struct relay *next_finishing;
	int err;     /* errno of the first failure */
	int err_end; /* the end it happened on */
	const char *err_op;
	napi_ref callback;
};

/* What the relay thread hands back to JavaScript. */
struct outcome {
	napi_ref callback;
	double bytes[2];
	int err, err_end;
	const char *err_op;
};

/* Rounds of both directions one relay may run before others get their turn. */
#define BUDGET 16

static int epoll_fd = -1;
static napi_threadsafe_function report;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
/*
 * Held by the relay thread while it handles a batch and by JavaScript while it registers a relay, so
 * that a relay is never pumped (and perhaps released) before both its ends are registered.
 */
static pthread_mutex_t relays_lock = PTHREAD_MUTEX_INITIALIZER;
/* Relays queued by pump(), in order; the thread owns the list. */
static struct relay *ready_head, **ready_tail = &ready_head;
/*
 * Relays that ended this round. They are released (freed) only once the round's events are all
 * handled: both ends of one relay can be in one batch of events.
 */
static struct relay *finishing;

/* Grows a new pipe to PIPE_BYTES if allowed; returns what it holds. */
static size_t pipe_capacity(int pipe_fd)
{
	int size = fcntl(pipe_fd, F_SETPIPE_SZ, PIPE_BYTES);

	if (size < 0)
		size = fcntl(pipe_fd, F_GETPIPE_SZ);
	return size > 0 ? (size_t)size : PIPE_DEFAULT_BYTES;
}

static void fail(struct relay *r, int err, int end, const char *op)
{
	if (!r->err) {
		r->err = err;
		r->err_end = end;
		r->err_op = op;
	}
}

/* Moves what it can from end d to the other end; true if anything changed. */
static bool step(struct relay *r, int d)
{
	int src = r->ends[d].fd, dst = r->ends[1 - d].fd;
	bool moved = false;
	ssize_t n;

	if (!r->eof[d] && r->readable[d] && r->in_pipe[d] < r->capacity[d]) {
		n = splice(src, NULL, r->pipe_w[d], NULL, r->capacity[d] - r->in_pipe[d], SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			r->in_pipe[d] += (size_t)n;
			moved = true;
		} else if (n == 0) {
			r->eof[d] = true;
			moved = true;
		} else if (errno == EAGAIN) {
			/* Nothing to read, or the pipe is full: writing it out below sets this again. */
			r->readable[d] = r->in_pipe[d] == 0 ? false : r->readable[d];
		} else if (errno != EINTR) {
			fail(r, errno, d, "read");
		}
	}
	if (r->in_pipe[d] > 0 && r->writable[1 - d]) {
		n = splice(r->pipe_r[d], NULL, dst, NULL, r->in_pipe[d], SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			r->in_pipe[d] -= (size_t)n;
			r->bytes[d] += (uint64_t)n;
			moved = true;
		} else if (n < 0 && errno == EAGAIN) {
			r->writable[1 - d] = false;
		} else if (n < 0 && errno != EINTR) {
			fail(r, errno, 1 - d, "write");
		}
	}
	if (r->eof[d] && r->in_pipe[d] == 0 && !r->shut[d]) {
		/* The other end may already be gone; its own direction reports that. */
		shutdown(dst, SHUT_WR);
		r->shut[d] = true;
		moved = true;
	}
	return moved;
}

/*
 * Runs both directions until neither can move, or its budget is spent (then it is queued to run again:
 * with edge-triggered epoll no new event comes for bytes already waiting); marks the relay done when
 * it is over.
 */
static void pump(struct relay *r)
{
	bool moved = true;
	int rounds = 0;

	while (moved && !r->err && rounds++ < BUDGET) {
		moved = step(r, 0);
		moved = step(r, 1) || moved;
	}
	if (r->err || (r->shut[0] && r->shut[1]))
		r->done = true;
	else if (moved && !r->queued) {
		r->queued = true;
		r->next_ready = NULL;
		*ready_tail = r;
		ready_tail = &r->next_ready;
	}
}

static void release(struct relay *r)
{
	struct outcome *o = calloc(1, sizeof(*o));

	for (int i = 0; i < 2; i++) {
		epoll_ctl(epoll_fd, EPOLL_CTL_DEL, r->ends[i].fd, NULL);
		close(r->ends[i].fd);
		close(r->pipe_r[i]);
		close(r->pipe_w[i]);
	}
	if (o) {
		o->callback = r->callback;
		o->bytes[0] = (double)r->bytes[0];
		o->bytes[1] = (double)r->bytes[1];
		o->err = r->err;
		o->err_end = r->err_end;
		o->err_op = r->err_op;
		/* Blocking: an outcome is never dropped (JavaScript frees the sockets on it). */
		napi_call_threadsafe_function(report, o, napi_tsfn_blocking);
	}
	free(r);
}

/* Pumps `r` for an event or its turn in the ready list; a relay that is over is released at the round's end. */
static void serve(struct relay *r)
{
	if (!r->done)
		pump(r);
	if (r->done && !r->finishing) {
		r->finishing = true;
		r->next_finishing = finishing;
		finishing = r;
	}
}

/* Releases the relays that ended this round, after taking them out of the ready list. */
static void release_finished(void)
{
	struct relay **link = &ready_head;

	ready_tail = &ready_head;
	while (*link) {
		if ((*link)->finishing) {
			*link = (*link)->next_ready;
		} else {
			ready_tail = &(*link)->next_ready;
			link = &(*link)->next_ready;
		}
	}
	while (finishing) {
		struct relay *r = finishing;

		finishing = r->next_finishing;
		release(r);
	}
}

static void *relay_thread(void *unused)
{
	struct epoll_event events[64];

	(void)unused;
	for (;;) {
		int n = epoll_wait(epoll_fd, events, 64, ready_head ? 0 : -1);
		struct relay *again;

		pthread_mutex_lock(&relays_lock);
		/* Relays that spent their budget last time go first; pump() may queue them again. */
		again = ready_head;
		ready_head = NULL;
		ready_tail = &ready_head;
		while (again) {
			struct relay *r = again;

			again = r->next_ready;
			r->queued = false;
			serve(r);
		}
		for (int i = 0; i < n; i++) {
			struct end *e = events[i].data.ptr;
			struct relay *r = e->relay;

			if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				r->readable[e - r->ends] = true;
			if (events[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
				r->writable[e - r->ends] = true;
			if (!r->done && (events[i].events & EPOLLERR)) {
				int err = 0;
				socklen_t len = sizeof(err);

				if (!getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len) && err)
					fail(r, err, (int)(e - r->ends), "socket");
			}
			serve(r);
		}
		release_finished();
		pthread_mutex_unlock(&relays_lock);
	}
	return NULL;
}

/* On the JavaScript thread: callback(bytesDownToUp, bytesUpToDown, error | null). */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data)
{
	struct outcome *o = data;
	napi_value cb, argv[3], global;

	(void)js_cb;
	(void)context;
	if (env && napi_get_reference_value(env, o->callback, &cb) == napi_ok) {
		napi_create_double(env, o->bytes[0], &argv[0]);
		napi_create_double(env, o->bytes[1], &argv[1]);
		if (o->err) {
			napi_create_object(env, &argv[2]);
			set_prop(env, argv[2], "side", make_string(env, o->err_end == 0 ? "downstream" : "upstream"));
			set_prop(env, argv[2], "message", make_string(env, strerror(o->err)));
			set_prop(env, argv[2], "operation", make_string(env, o->err_op));
		} else {
			napi_get_null(env, &argv[2]);
		}
		napi_get_global(env, &global);
		napi_call_function(env, global, cb, 3, argv, NULL);
		napi_delete_reference(env, o->callback);
	}
	free(o);
}

/* The thread and its epoll, once per process; false with an exception pending on failure. */
static bool start(napi_env env)
{
	napi_value name;
	pthread_t thread;
	bool ok = true;

	pthread_mutex_lock(&start_lock);
	if (epoll_fd >= 0)
		goto out;
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0) {
		throw_errno(env, errno, NULL, "splice relay: epoll_create1");
		ok = false;
		goto out;
	}
	napi_create_string_utf8(env, "ambit splice relay", NAPI_AUTO_LENGTH, &name);
	if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, call_js, &report) != napi_ok) {
		ok = false;
		goto fail;
	}
	/* Idle relays must not keep the agent alive: the sockets they carry do while they are open. */
	napi_unref_threadsafe_function(env, report);
	if (pthread_create(&thread, NULL, relay_thread, NULL)) {
		throw_errno(env, errno, NULL, "splice relay: pthread_create");
		ok = false;
		goto fail;
	}
	pthread_detach(thread);
	goto out;
fail:
	close(epoll_fd);
	epoll_fd = -1;
out:
	pthread_mutex_unlock(&start_lock);
	return ok;
}

/*
 * spliceRelay(downstreamFd, upstreamFd, callback): relays between the two sockets until both
 * directions have ended or one fails, then calls callback(bytesDownToUp, bytesUpToDown, error|null).
 * The fds are duplicated: the caller keeps its own, must not read from them meanwhile, and closes
 * them after the callback. shutdown(2) on either (JavaScript's socket.destroy does not reach a dup)
 * ends the relay early.
 */
static napi_value splice_relay(napi_env env, napi_callback_info info)
{
	napi_value argv[3], out;
	napi_valuetype type;
	uint32_t fds[2];
	struct relay *r;
	int i;

	if (!args(env, info, 3, argv) || !arg_u32(env, argv[0], &fds[0], "downstream fd") || !arg_u32(env, argv[1], &fds[1], "upstream fd"))
		return NULL;
	if (napi_typeof(env, argv[2], &type) != napi_ok || type != napi_function)
		return throw_type(env, "callback: expected a function");
	if (!start(env))
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return throw_errno(env, ENOMEM, NULL, "splice relay");
	for (i = 0; i < 2; i++) {
		r->ends[i].fd = r->pipe_r[i] = r->pipe_w[i] = -1;
		r->readable[i] = r->writable[i] = true;
	}
	for (i = 0; i < 2; i++) {
		int p[2];

		r->ends[i].relay = r;
		r->ends[i].fd = fcntl((int)fds[i], F_DUPFD_CLOEXEC, 0);
		if (r->ends[i].fd < 0 || pipe2(p, O_NONBLOCK | O_CLOEXEC))
			goto fail;
		r->pipe_r[i] = p[0];
		r->pipe_w[i] = p[1];
		r->capacity[i] = pipe_capacity(p[1]);
		/* The dup shares the caller's file description, and with it O_NONBLOCK: set, as libuv left it. */
	}
	if (napi_create_reference(env, argv[2], 1, &r->callback) != napi_ok)
		goto fail;
	pthread_mutex_lock(&relays_lock);
	for (i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &r->ends[i] };

		if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, r->ends[i].fd, &ev)) {
			int err = errno;

			if (i == 1)
				epoll_ctl(epoll_fd, EPOLL_CTL_DEL, r->ends[0].fd, NULL);
			pthread_mutex_unlock(&relays_lock);
			napi_delete_reference(env, r->callback);
			errno = err;
			goto fail;
		}
	}
	pthread_mutex_unlock(&relays_lock);
	/* Edge-triggered: the first events come at once (EPOLLOUT is ready), so bytes already queued move too. */
	napi_get_undefined(env, &out);
	return out;
fail: {
	int err = errno;

	for (i = 0; i < 2; i++) {
		if (r->ends[i].fd >= 0)
			close(r->ends[i].fd);
		if (r->pipe_r[i] >= 0)
			close(r->pipe_r[i]);
		if (r->pipe_w[i] >= 0)
			close(r->pipe_w[i]);
	}
	free(r);
	return throw_errno(env, err, NULL, "splice relay: setting up fds %u and %u", fds[0], fds[1]);
}
}

/* shutdownSocket(fd): shutdown(SHUT_RDWR), which ends a splice relay carrying that socket. */
static napi_value shutdown_socket(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	uint32_t fd;

	if (!args(env, info, 1, argv) || !arg_u32(env, argv[0], &fd, "fd"))
		return NULL;
	if (shutdown((int)fd, SHUT_RDWR) && errno != ENOTCONN)
		return throw_errno(env, errno, NULL, "shutdown of fd %u", fd);
	napi_get_undefined(env, &out);
	return out;
}

bool register_splice(napi_env env, napi_value exports)
{
	static const napi_property_descriptor props[] = {
		METHOD("spliceRelay", splice_relay),
		METHOD("shutdownSocket", shutdown_socket),
	};

	return define_methods(env, exports, props, sizeof(props) / sizeof(props[0]));
}
