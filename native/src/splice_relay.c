/*
 * One plain TCP relay: bytes move from each socket into its direction's pipe and out to the other
 * socket with splice(2), never copied into user space. TCP's own flow control is the backpressure (a
 * full destination stops its source being read: EAGAIN, then EPOLLOUT), and a FIN becomes
 * shutdown(SHUT_WR) on the other side. splice_engine.c runs the relays in its thread.
 */
#define _GNU_SOURCE
#include "splice_relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
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

/* Rounds of both directions one relay may run before others get their turn. */
#define BUDGET 16

/* Grows a new pipe to PIPE_BYTES if allowed; returns what it holds. */
static size_t pipe_capacity(int pipe_fd)
{
	int size = fcntl(pipe_fd, F_SETPIPE_SZ, PIPE_BYTES);

	if (size < 0)
		size = fcntl(pipe_fd, F_GETPIPE_SZ);
	return size > 0 ? (size_t)size : PIPE_DEFAULT_BYTES;
}

struct relay *relay_new(int downstream_fd, int upstream_fd, uint32_t idle_ms, void *owner, int *err)
{
	int fds[2] = { downstream_fd, upstream_fd };
	struct relay *r = calloc(1, sizeof(*r));
	int i;

	if (!r) {
		*err = ENOMEM;
		return NULL;
	}
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
		if (r->ends[i].fd < 0 || pipe2(p, O_NONBLOCK | O_CLOEXEC)) {
			*err = errno;
			relay_close_fds(r);
			free(r);
			return NULL;
		}
		r->pipe_r[i] = p[0];
		r->pipe_w[i] = p[1];
		r->capacity[i] = pipe_capacity(p[1]);
	}
	return r;
}

void relay_close_fds(struct relay *r)
{
	for (int i = 0; i < 2; i++) {
		if (r->ends[i].fd >= 0)
			close(r->ends[i].fd);
		if (r->pipe_r[i] >= 0)
			close(r->pipe_r[i]);
		if (r->pipe_w[i] >= 0)
			close(r->pipe_w[i]);
		r->ends[i].fd = r->pipe_r[i] = r->pipe_w[i] = -1;
	}
}

void relay_fail(struct relay *r, int err, int end, const char *op)
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
			relay_fail(r, errno, d, "read");
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
			relay_fail(r, errno, 1 - d, "write");
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

bool relay_pump(struct relay *r, uint64_t now_ns)
{
	bool moved = true;
	int rounds = 0;

	while (moved && !r->err && rounds++ < BUDGET) {
		moved = step(r, 0);
		moved = step(r, 1) || moved;
		if (moved)
			r->active_ns = now_ns;
	}
	if (r->err || (r->shut[0] && r->shut[1]))
		r->done = true;
	return !r->done && moved;
}
