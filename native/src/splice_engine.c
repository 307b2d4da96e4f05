/*
 * Plain TCP relays in the kernel: bytes move between two connected sockets by splice(2) through a
 * pipe per direction, in one thread, and never enter JavaScript. TCP's own flow control is the
 * backpressure (a full destination stops its source being read: EAGAIN, then EPOLLOUT), a FIN becomes
 * shutdown(SHUT_WR) on the other side, an error ends both, and so does an idle timeout: a sweep, at
 * most about eight times per shortest idle time, ends the relays no byte crossed for theirs (Envoy's
 * tcp_proxy idle_timeout). The caller hands over two sockets it has
 * stopped reading and hears once, with the byte counts, when the relay is over. POSIX only: splice.c
 * is its face to JavaScript.
 *
 * Why not sockmap's sk_skb redirect: it has no backpressure on this kernel (bench/README.md).
 */
#define _GNU_SOURCE
#include "splice_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <limits.h>
#include <time.h>
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
	uint64_t idle_ns;   /* 0: no idle timeout */
	uint64_t active_ns; /* when a byte last moved (CLOCK_MONOTONIC), or when it was added */
	struct relay *prev_live, *next_live; /* every relay not yet released, for the idle sweep */
	int err;     /* errno of the first failure */
	int err_end; /* the end it happened on */
	const char *err_op;
	void *owner; /* the caller's, handed back with the outcome */
};

/* Rounds of both directions one relay may run before others get their turn. */
#define BUDGET 16

static int epoll_fd = -1;
static splice_done_fn report;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
/*
 * Held by the relay thread while it handles a batch and by the caller while it registers a relay, so
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
/* Every relay added and not yet released (added under relays_lock, released by the thread). */
static struct relay *live;
/* When the idle sweep next runs: UINT64_MAX while no relay has an idle timeout. Under relays_lock. */
static uint64_t next_sweep_ns = UINT64_MAX;
/* CLOCK_MONOTONIC as the thread's current round began: the activity stamp of what it pumps. */
static uint64_t round_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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
		if (moved)
			r->active_ns = round_ns;
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
	struct splice_outcome *o = calloc(1, sizeof(*o));

	if (r->prev_live)
		r->prev_live->next_live = r->next_live;
	else
		live = r->next_live;
	if (r->next_live)
		r->next_live->prev_live = r->prev_live;
	for (int i = 0; i < 2; i++) {
		epoll_ctl(epoll_fd, EPOLL_CTL_DEL, r->ends[i].fd, NULL);
		close(r->ends[i].fd);
		close(r->pipe_r[i]);
		close(r->pipe_w[i]);
	}
	if (o) {
		o->owner = r->owner;
		o->bytes[0] = r->bytes[0];
		o->bytes[1] = r->bytes[1];
		o->err = r->err;
		o->err_end = r->err_end;
		o->err_op = r->err_op;
		/* The callback must take it: the caller frees its sockets on it. */
		report(o);
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

/*
 * Ends the relays whose idle time has passed and sets the next sweep: at their earliest deadline, but
 * no sooner than an eighth of the shortest idle time from now, so that a sweep over every relay runs
 * a bounded number of times per idle period however the deadlines fall (a relay may so outlive its
 * idle time by an eighth of the shortest one).
 */
static void sweep(void)
{
	uint64_t next = UINT64_MAX, gap = UINT64_MAX;

	for (struct relay *r = live; r; r = r->next_live) {
		if (!r->idle_ns || r->done)
			continue;
		if (r->active_ns + r->idle_ns <= round_ns) {
			fail(r, ETIMEDOUT, 0, "idle");
			r->done = true;
			serve(r);
			continue;
		}
		next = next < r->active_ns + r->idle_ns ? next : r->active_ns + r->idle_ns;
		gap = gap < r->idle_ns / 8 ? gap : r->idle_ns / 8;
	}
	next_sweep_ns = next == UINT64_MAX || next > round_ns + gap ? next : round_ns + gap;
}

/* epoll_wait's timeout: 0 with relays queued, else until the next sweep (rounded up), or forever. */
static int wait_ms(void)
{
	uint64_t now, ms;

	if (ready_head)
		return 0;
	if (next_sweep_ns == UINT64_MAX)
		return -1;
	now = now_ns();
	if (next_sweep_ns <= now)
		return 0;
	ms = (next_sweep_ns - now + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void *relay_thread(void *unused)
{
	struct epoll_event events[64];
	int timeout = -1;

	(void)unused;
	for (;;) {
		/* A relay added meanwhile wakes this at once: its sockets' first events come with it. */
		int n = epoll_wait(epoll_fd, events, 64, timeout);
		struct relay *again;

		pthread_mutex_lock(&relays_lock);
		round_ns = now_ns();
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
		if (round_ns >= next_sweep_ns)
			sweep();
		release_finished();
		timeout = wait_ms();
		pthread_mutex_unlock(&relays_lock);
	}
	return NULL;
}

int splice_engine_start(splice_done_fn done)
{
	pthread_t thread;
	int err = 0;

	pthread_mutex_lock(&start_lock);
	if (epoll_fd >= 0)
		goto out;
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0) {
		err = errno;
		goto out;
	}
	report = done;
	err = pthread_create(&thread, NULL, relay_thread, NULL);
	if (err) {
		close(epoll_fd);
		epoll_fd = -1;
		goto out;
	}
	pthread_detach(thread);
out:
	pthread_mutex_unlock(&start_lock);
	return err;
}

int splice_engine_add(int downstream_fd, int upstream_fd, uint32_t idle_ms, void *owner)
{
	int fds[2] = { downstream_fd, upstream_fd };
	struct relay *r = calloc(1, sizeof(*r));
	int i, err;

	if (!r)
		return ENOMEM;
	r->owner = owner;
	r->idle_ns = (uint64_t)idle_ms * 1000000u;
	for (i = 0; i < 2; i++) {
		r->ends[i].fd = r->pipe_r[i] = r->pipe_w[i] = -1;
		r->readable[i] = r->writable[i] = true;
	}
	for (i = 0; i < 2; i++) {
		int p[2];

		r->ends[i].relay = r;
		/* The dup shares the caller's file description, and with it O_NONBLOCK: set, as libuv left it. */
		r->ends[i].fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
		if (r->ends[i].fd < 0 || pipe2(p, O_NONBLOCK | O_CLOEXEC))
			goto fail;
		r->pipe_r[i] = p[0];
		r->pipe_w[i] = p[1];
		r->capacity[i] = pipe_capacity(p[1]);
	}
	pthread_mutex_lock(&relays_lock);
	for (i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &r->ends[i] };

		if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, r->ends[i].fd, &ev)) {
			err = errno;
			if (i == 0) {
				pthread_mutex_unlock(&relays_lock);
				errno = err;
				goto fail;
			}
			/*
			 * The downstream end is registered, and the thread may already hold an event that points
			 * at this relay: only the thread may free it. Ended with the error, it is released (and
			 * reported) on the thread's next round, which that same event starts.
			 */
			fail(r, err, 1, "register");
			r->done = true;
			r->queued = true;
			*ready_tail = r;
			ready_tail = &r->next_ready;
			break;
		}
	}
	/* From here only the thread frees it (release() unlinks it); the thread is not in a round now. */
	r->active_ns = now_ns();
	r->next_live = live;
	if (live)
		live->prev_live = r;
	live = r;
	if (r->idle_ns && r->active_ns + r->idle_ns < next_sweep_ns)
		next_sweep_ns = r->active_ns + r->idle_ns;
	pthread_mutex_unlock(&relays_lock);
	/* Edge-triggered: the first events come at once (EPOLLOUT is ready), so bytes already queued move too. */
	return 0;
fail:
	err = errno;
	for (i = 0; i < 2; i++) {
		if (r->ends[i].fd >= 0)
			close(r->ends[i].fd);
		if (r->pipe_r[i] >= 0)
			close(r->pipe_r[i]);
		if (r->pipe_w[i] >= 0)
			close(r->pipe_w[i]);
	}
	free(r);
	return err;
}
