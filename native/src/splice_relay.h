/* One splice relay (splice_relay.c): two sockets, a pipe each way, and the steps that move bytes between them. */
#ifndef AMBIT_SPLICE_RELAY_H
#define AMBIT_SPLICE_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
	/* The relay thread's bookkeeping (splice_engine.c). */
	struct relay *next_added; /* handed over, not yet taken up by the thread */
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

/* A relay over dups of the two sockets, with a grown pipe each way; NULL with an errno in *err. */
struct relay *relay_new(int downstream_fd, int upstream_fd, uint32_t idle_ms, void *owner, int *err);
/* Closes the relay's dups and pipes (take them out of epoll first); the relay itself stays for its outcome. */
void relay_close_fds(struct relay *r);
/* Keeps the first failure: its errno, the end it happened on and the operation. */
void relay_fail(struct relay *r, int err, int end, const char *op);
/*
 * Runs both directions until neither can move or its budget is spent, stamping `now_ns` as its last
 * activity when bytes moved; marks the relay done when it is over. True when it stopped with bytes
 * still moving: with edge-triggered epoll no new event comes for them, so it must be run again.
 */
bool relay_pump(struct relay *r, uint64_t now_ns);

#endif
