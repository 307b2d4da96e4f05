/* The splice relay engine (splice_engine.c, its relays in splice_relay.c): POSIX only, no N-API; splice.c is its face to JavaScript. */
#ifndef AMBIT_SPLICE_ENGINE_H
#define AMBIT_SPLICE_ENGINE_H

#include <stdint.h>

/* How one relay ended. */
struct splice_outcome {
	void *owner;	   /* what splice_engine_add() was given */
	uint64_t bytes[2]; /* [0]: downstream to upstream, [1]: upstream to downstream */
	int err;	   /* errno of the first failure, 0 if none */
	int err_end;	   /* the end it happened on: 0 downstream, 1 upstream */
	const char *err_op; /* "read", "write", "socket", "register" (epoll would not take it) or "idle" */
};

/* Called on the relay thread once per relay; it owns the outcome (free() it) and must not drop it. */
typedef void (*splice_done_fn)(struct splice_outcome *outcome);

/* Starts the relay thread and its epoll, once per process: 0 or an errno. Later calls return 0. */
int splice_engine_start(splice_done_fn done);

/*
 * Relays dups of two connected, non-blocking TCP sockets until both directions have ended or one
 * fails, then reports with `owner`. shutdown(2) on either socket ends it early, and so does `idle_ms`
 * (when not 0) without a byte moving either way: ETIMEDOUT, op "idle".
 *
 * Never waits for the relay thread (it may be in a long round of bulk bytes): it dups the fds, makes
 * the pipes, hands the relay over and returns. An errno means nothing was handed over: no dup is kept
 * and `done` never comes. 0 means `done` comes exactly once, also when the thread cannot register an
 * end with epoll (op "register", e.g. EPERM for a regular file). Either way the caller's own fds stay
 * the caller's: the engine only ever closes its dups. Closing the caller's fds does not end the relay
 * (shutdown(2) does).
 */
int splice_engine_add(int downstream_fd, int upstream_fd, uint32_t idle_ms, void *owner);

#endif
