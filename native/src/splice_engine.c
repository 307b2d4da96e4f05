/*
 * The splice relay thread: plain TCP relays (splice_relay.c) run in one thread over one edge-triggered
 * epoll, and never enter JavaScript. A relay that spends its budget is queued to run again before new
 * events, an error ends both directions, and so does an idle timeout: a sweep, at most about eight
 * times per shortest idle time, ends the relays no byte crossed for theirs (Envoy's tcp_proxy
 * idle_timeout). The caller hands over two sockets it has stopped reading and hears once, with the
 * byte counts, when the relay is over. POSIX only: splice.c is its face to JavaScript.
 *
 * The caller (Node's JavaScript thread, which decides for every connection of the node) never waits
 * for the thread: a new relay is pushed onto a lock-free list and the thread woken through an eventfd;
 * the thread takes it up at its next round. Everything else here is the thread's alone, with no lock.
 *
 * Why not sockmap's sk_skb redirect: it has no backpressure on this kernel (bench/README.md).
 */
#define _GNU_SOURCE
#include "splice_engine.h"
#include "splice_relay.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int epoll_fd = -1;
/* Written by splice_engine_add() after each push to `added`; in epoll (level-triggered, no relay) to wake the thread. */
static int wake_fd = -1;
static splice_done_fn report;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
/*
 * Relays handed over and not yet taken up, newest first: callers push (a compare-and-swap, never a
 * wait), the thread takes the whole list at once, so no node is ever popped alone (no ABA).
 */
static _Atomic(struct relay *) added;
/* Relays to run again without an event, in order. */
static struct relay *ready_head, **ready_tail = &ready_head;
/*
 * Relays that ended this round. They are released (freed) only once the round's events are all
 * handled: both ends of one relay can be in one batch of events.
 */
static struct relay *finishing;
/* Every relay taken up and not yet released, for the idle sweep. */
static struct relay *live;
/* When the idle sweep next runs: UINT64_MAX while no relay has an idle timeout. */
static uint64_t next_sweep_ns = UINT64_MAX;
/* CLOCK_MONOTONIC as the thread's current round began: the activity stamp of what it pumps. */
static uint64_t round_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void queue_ready(struct relay *r)
{
	r->queued = true;
	r->next_ready = NULL;
	*ready_tail = r;
	ready_tail = &r->next_ready;
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
	for (int i = 0; i < 2; i++)
		epoll_ctl(epoll_fd, EPOLL_CTL_DEL, r->ends[i].fd, NULL);
	relay_close_fds(r);
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
	if (!r->done && relay_pump(r, round_ns) && !r->queued)
		queue_ready(r);
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
			relay_fail(r, ETIMEDOUT, 0, "idle");
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

/*
 * Registers both ends of a relay just handed over and puts it on the live list. A relay is pumped only
 * after this, so never before both ends are in epoll; one epoll refuses ends at once with that error
 * (reported like any other), its other end taken out again by release().
 */
static void take_up(struct relay *r)
{
	r->active_ns = round_ns;
	r->prev_live = NULL;
	r->next_live = live;
	if (live)
		live->prev_live = r;
	live = r;
	for (int i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &r->ends[i] };

		if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, r->ends[i].fd, &ev)) {
			relay_fail(r, errno, i, "register");
			r->done = true;
			break;
		}
	}
	if (!r->done && r->idle_ns && r->active_ns + r->idle_ns < next_sweep_ns)
		next_sweep_ns = r->active_ns + r->idle_ns;
	/* Pumped at once: bytes already queued in its sockets raise no new edge before it reads them. */
	serve(r);
}

/* Takes up every relay handed over since the last round, oldest first. */
static void take_up_added(void)
{
	uint64_t count;
	struct relay *newest, *oldest = NULL;

	/*
	 * The wake-up is reset before the list is taken: a push after this writes it again, so none is
	 * missed. (Reading fails only when nothing was written since: EAGAIN.)
	 */
	(void)!read(wake_fd, &count, sizeof(count));
	newest = atomic_exchange_explicit(&added, NULL, memory_order_acquire);
	while (newest) {
		struct relay *r = newest;

		newest = r->next_added;
		r->next_added = oldest;
		oldest = r;
	}
	while (oldest) {
		struct relay *r = oldest;

		oldest = r->next_added;
		take_up(r);
	}
}

/*
 * One round: the relays queued last time first, then this batch's events, the relays handed over, the
 * sweep when due, the releases.
 */
static void run_round(const struct epoll_event *events, int n)
{
	struct relay *again = ready_head;
	bool woken = false;

	round_ns = now_ns();
	/* Relays that spent their budget last time go first; serve() may queue them again. */
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
		struct relay *r;

		if (!e) {
			woken = true;
			continue;
		}
		r = e->relay;
		if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			r->readable[e - r->ends] = true;
		if (events[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			r->writable[e - r->ends] = true;
		if (!r->done && (events[i].events & EPOLLERR)) {
			int err = 0;
			socklen_t len = sizeof(err);

			if (!getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len) && err)
				relay_fail(r, err, (int)(e - r->ends), "socket");
		}
		serve(r);
	}
	if (woken)
		take_up_added();
	if (round_ns >= next_sweep_ns)
		sweep();
	release_finished();
}

static void *relay_thread(void *unused)
{
	struct epoll_event events[64];
	int timeout = -1;

	(void)unused;
	for (;;) {
		int n = epoll_wait(epoll_fd, events, 64, timeout);

		run_round(events, n);
		timeout = wait_ms();
	}
	return NULL;
}

/* The epoll with the wake-up eventfd in it; 0 or an errno, and nothing left open on failure. */
static int open_epoll(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int err;

	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0)
		return errno;
	wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wake_fd >= 0 && !epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev))
		return 0;
	err = errno;
	if (wake_fd >= 0)
		close(wake_fd);
	close(epoll_fd);
	wake_fd = epoll_fd = -1;
	return err;
}

int splice_engine_start(splice_done_fn done)
{
	pthread_t thread;
	int err = 0;

	pthread_mutex_lock(&start_lock);
	if (epoll_fd >= 0)
		goto out;
	err = open_epoll();
	if (err)
		goto out;
	report = done;
	err = pthread_create(&thread, NULL, relay_thread, NULL);
	if (err) {
		close(wake_fd);
		close(epoll_fd);
		wake_fd = epoll_fd = -1;
		goto out;
	}
	pthread_detach(thread);
out:
	pthread_mutex_unlock(&start_lock);
	return err;
}

int splice_engine_add(int downstream_fd, int upstream_fd, uint32_t idle_ms, void *owner)
{
	static const uint64_t one = 1;
	int err = 0;
	struct relay *r = relay_new(downstream_fd, upstream_fd, idle_ms, owner, &err);

	if (!r)
		return err;
	/* From here the thread owns it. Release pairs with the thread's acquire: it sees the relay whole. */
	r->next_added = atomic_load_explicit(&added, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&added, &r->next_added, r, memory_order_release, memory_order_relaxed))
		;
	/*
	 * Fails only if the counter were about to overflow (the thread resets it every wake-up) or wake_fd
	 * were closed (it never is): the push stands either way.
	 */
	(void)!write(wake_fd, &one, sizeof(one));
	return 0;
}
