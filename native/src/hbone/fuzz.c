/*
 * libFuzzer harness for the engine's HTTP/2 glue with TLS bypassed: the input is what a peer sends
 * after the handshake, fed in pieces to a server connection (or, when the first byte is odd, to a
 * client connection with one CONNECT open). Every CONNECT is answered from the input (200 with a
 * socketpair end, or a refusal), timers run, and the connection ends; the sanitizers judge the rest.
 * Built by `make fuzz` with clang against Debian's libssl and libnghttp2 (no node in this process).
 */
#define _GNU_SOURCE
#include "engine.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PAIRS 64

static const uint8_t MAGIC[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static int peers[MAX_PAIRS];
static int npeers;

/* A socketpair end for the engine; the other end stays open (so writes succeed) until the run ends. */
static int plain_fd(void)
{
	int sv[2];

	if (npeers >= MAX_PAIRS || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		return -1;
	peers[npeers++] = sv[1];
	return sv[0];
}

/* Takes the events; answers CONNECTs with what the input says. */
static void answer_events(struct hb_worker *w, uint8_t choice)
{
	struct hb_event *ev = hb_events_take(w->e), *next;

	for (; ev; ev = next) {
		next = ev->next;
		if (ev->type == HB_E_CONNECT && (choice & 3) != 3) {
			struct hb_cmd *cmd = calloc(1, sizeof(*cmd));

			if (!cmd)
				abort();
			cmd->type = HB_CMD_ANSWER;
			cmd->conn = ev->conn;
			cmd->stream = ev->stream;
			cmd->status = (choice & 3) == 0 ? 200 : (choice & 3) == 1 ? 503 : 401;
			cmd->fd = cmd->status == 200 ? plain_fd() : -1;
			if (cmd->status == 200 && cmd->fd < 0)
				cmd->status = 503;
			hb_worker_run_cmd(w, cmd);
			hb_cmd_free(cmd);
		}
		hb_event_free(ev);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hb_engine *e;
	struct hb_worker *w;
	struct hb_conn *c;
	bool client;
	char err[128];

	if (!e) {
		struct hb_options o;

		signal(SIGPIPE, SIG_IGN);
		hb_options_default(&o);
		/* Small limits, so that the fuzzer reaches them. */
		o.max_pending_connects = 4;
		o.max_conn_memory = 4 * 1024 * 1024;
		e = hb_engine_new(&o, err, sizeof(err));
		if (!e)
			abort();
		/* No thread and no epoll: the harness is the loop. */
		close(e->workers[0].epfd);
		e->workers[0].epfd = -1;
	}
	if (size < 2)
		return 0;
	w = &e->workers[0];
	w->now_ms = hb_now_ms();
	client = data[0] & 1;
	c = hb_conn_new(w, hb_next_id(e), client ? HB_CLIENT : HB_SERVER, -1, NULL);
	if (!c)
		abort();
	snprintf(c->peer_address, sizeof(c->peer_address), "fuzz");
	snprintf(c->peer_identity, sizeof(c->peer_identity), "spiffe://fuzz/ns/a/sa/b");
	if (client) {
		char *hdrs[] = { "traceparent", "00-aa-bb-00" };

		hb_stream_open(c, hb_next_id(e), "10.0.0.1:80", hdrs, 2, plain_fd());
	} else if (!hb_session_recv(c, MAGIC, sizeof(MAGIC) - 1)) {
		goto end;
	}
	/* The input in pieces whose sizes the input picks, each followed by what a turn of the loop does. */
	for (size_t at = 1; at < size && c->state != HB_C_DEAD;) {
		size_t piece = 1 + data[at] % 64 * 16;

		at++;
		if (piece > size - at)
			piece = size - at;
		if (!hb_session_recv(c, data + at, piece))
			break;
		hb_streams_announce(c);
		answer_events(w, at < size ? data[at] : 0);
		if (!hb_session_fill(c))
			break;
		c->out.off = c->out.len = 0; /* the peer took everything */
		for (struct hb_stream *s = c->streams; s; s = s->next)
			hb_stream_flush(s);
		if (at % 7 == 0)
			hb_conn_tick(c, w->now_ms + 30000);
		at += piece;
	}
end:
	hb_conn_close(c, "closed", "fuzz run over");
	hb_worker_reap(w);
	answer_events(w, 3);
	while (npeers)
		close(peers[--npeers]);
	return 0;
}
