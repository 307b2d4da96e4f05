/*
 * The HBONE engine's internals: connections (TLS + HTTP/2), streams (one plain fd each), data threads.
 * Its files, in the order a connection meets them:
 *   binding.c, calls.c  JavaScript's face: contexts, the engine handle, calls that become commands
 *   engine.c, worker.c  the engine and its data threads: command queues, the epoll loop, id tables
 *   events.c            the queue of events for JavaScript
 *   context.c           TLS contexts as ztunnel sets them up
 *   socket_bio.c        a connection's socket as OpenSSL's BIO
 *   handshake.c         a connection's TLS set-up, its handshake and the identity checks after it
 *   conn.c              a connection's transport loop (TLS records in and out), timers and end
 *   session.c           its nghttp2 session: settings and defences, bytes in, frames out
 *   frames.c            nghttp2's callbacks: what the peer's frames do (the CONNECT checks among them)
 *   stream_open.c       a stream's beginning and the server's answer
 *   stream_pump.c       a stream's bytes between the peer and its fd, under end-to-end flow control
 *   stream_end.c        a stream's reset or end, its release and its one report
 *   limits.c            per-peer caps and per-connection memory
 *   fuzz.c              libFuzzer's harness over the HTTP/2 glue without TLS (make fuzz), not in the addon
 */
#ifndef AMBIT_HBONE_ENGINE_H
#define AMBIT_HBONE_ENGINE_H

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * An impossible state ends the process: a data thread that cannot trust its own bookkeeping must not
 * go on carrying traffic half-alive (the DaemonSet restarts the agent). Never reachable from a peer.
 */
#define HB_FATAL(...) hb_fatal(__FILE__, __LINE__, __VA_ARGS__)
void hb_fatal(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));

/* What JavaScript may tune; hb_options_default() gives ztunnel's values and the limits' defaults. */
struct hb_options {
	uint32_t threads;
	uint32_t stream_window, conn_window, max_frame_size;
	uint32_t server_max_streams, client_max_streams;
	uint32_t server_max_header_list, client_max_header_list;
	uint32_t ping_interval_ms, ping_timeout_ms, handshake_timeout_ms, idle_timeout_ms, response_timeout_ms;
	uint32_t max_pending_connects, max_conns_per_identity, max_conns_per_address, max_connections;
	uint32_t max_conn_memory;
	uint32_t stream_idle_timeout_ms; /* 0: none */
};
void hb_options_default(struct hb_options *o);

/* Engine-wide counters, readable from JavaScript at any time (relaxed atomics). */
enum hb_counter {
	HB_C_CONNS_OPENED, HB_C_CONNS_OPEN, HB_C_STREAMS_OPENED, HB_C_STREAMS_OPEN,
	HB_C_HANDSHAKE_FAILED, HB_C_PROTOCOL_ERRORS, HB_C_RESET_BEFORE_ANSWER, HB_C_LATE_ANSWERS,
	HB_C_LIMIT_PENDING, HB_C_LIMIT_IDENTITY, HB_C_LIMIT_ADDRESS, HB_C_LIMIT_CONNECTIONS, HB_C_LIMIT_MEMORY,
	HB_C_IDLE_CLOSED, HB_C_PING_TIMEOUTS, HB_C_BYTES_IN, HB_C_BYTES_OUT, HB_C_STREAMS_IDLE_CLOSED,
	HB_C_COUNT
};
extern const char *const hb_counter_names[HB_C_COUNT];

/* A refcounted TLS context: rotation makes a new one, connections keep theirs through SSL's own ref. */
struct hb_ctx {
	SSL_CTX *ssl_ctx;
};
/* Builds a context from PEM text; NULL with a message in `err` on failure. */
struct hb_ctx *hb_ctx_new(const char *chain_pem, const char *key_pem, const char *roots_pem, char *err, size_t errlen);
void hb_ctx_free(struct hb_ctx *ctx);
/* The first spiffe:// URI SAN of a certificate, in `out`; false if there is none. */
bool hb_cert_spiffe_id(X509 *cert, char *out, size_t len);

enum hb_kind { HB_K_WAKE = 1, HB_K_CONN, HB_K_STREAM };

/* Owned bytes with a read offset. */
struct hb_buf {
	uint8_t *data;
	size_t off, len, cap;
};

/* Bytes received from the peer that the plain fd has not taken yet (each still holds flow-control window). */
struct hb_chunk {
	struct hb_chunk *next;
	size_t off, len;
	uint8_t data[];
};

enum hb_stream_state {
	HB_S_HEADERS,	    /* server: request headers arriving */
	HB_S_NEW,	    /* server: a valid CONNECT, announced to JavaScript after this read */
	HB_S_PENDING,	    /* server: JavaScript has it and has not answered */
	HB_S_REQUESTED,	    /* client: CONNECT sent, no response yet */
	HB_S_OPEN,	    /* 200 either way: bytes flow */
	HB_S_REFUSED,	    /* a non-200 answer sent or received: ends without bytes */
};

struct hb_conn;

/*
 * DATA of one read batch for a stream, not yet written: pointers into the bytes being parsed (the
 * worker's read buffer), gathered into one writev when the batch is parsed, instead of a write per
 * DATA chunk. Full before then, it is written early.
 */
#define HB_PENDING_IOV 32

struct hb_stream {
	uint8_t kind; /* HB_K_STREAM: first, for epoll */
	struct hb_conn *c;
	uint64_t id;
	int32_t sid;
	int fd;
	enum hb_stream_state state;
	int status;
	bool fd_eof, fd_shut, peer_ended, h2_closed, deferred, released, announced, fd_error, reset_sent;
	bool fd_drained, fd_hup; /* the last read emptied the fd; the fd reported its peer's end */
	uint32_t header_bytes;
	struct hb_chunk *in_head, *in_tail;
	size_t buffered; /* in chunks and pending, all holding the peer's window */
	struct iovec pending[HB_PENDING_IOV];
	int npending_iov;
	size_t pending_bytes;
	bool dirty; /* on its connection's list of streams with pending DATA */
	uint64_t active_ms; /* when bytes last moved either way: the stream idle timeout counts from it */
	uint64_t bytes_in, bytes_out; /* peer to fd, fd to peer */
	const char *cause;	      /* why it ended; NULL while it runs */
	uint32_t code;		      /* an HTTP/2 error code or an errno, with the cause */
	uint64_t deadline_ms;	      /* client: the response is due */
	/* Request headers collected for JavaScript (server): name, value, name, value... */
	char *method, *authority;
	bool bad_pseudo;
	char **hdrs;
	size_t nhdrs, cap_hdrs;
	struct hb_stream *next, *prev;	   /* the connection's streams */
	struct hb_stream *hnext;	   /* the worker's id table */
	struct hb_stream *next_announce; /* the connection's new CONNECTs of this read */
	struct hb_stream *next_dead;
	struct hb_stream *next_dirty;
};

enum hb_role { HB_SERVER, HB_CLIENT };
enum hb_conn_state { HB_C_HANDSHAKE, HB_C_AWAIT_PEER, HB_C_LIVE, HB_C_DEAD };

struct hb_worker;

struct hb_conn {
	uint8_t kind; /* HB_K_CONN */
	struct hb_worker *w;
	uint64_t id;
	double tag;
	enum hb_role role;
	enum hb_conn_state state;
	int fd;
	SSL *ssl;
	nghttp2_session *h2;
	struct hb_buf out;	/* HTTP/2 frames waiting for SSL_write */
	bool readable, writable, read_wants_write, queued, goaway_sent, heard, resets_pending;
	bool rx_drained, rx_hup, rx_eof; /* socket_bio.c: the last read emptied the socket; its peer ended */
	const char *closing_cause; /* set when the session is being wound down: the cause once it is done */
	struct hb_stream *streams;
	uint32_t nstreams, npending;
	struct hb_stream *announce; /* NEW streams of the current read */
	struct hb_stream *dirty;    /* streams with pending DATA of the current read */
	bool over_memory;	    /* a stream could not keep what its fd did not take */
	uint64_t opened_ms, idle_since_ms, last_ping_ms, ping_sent_ms;
	uint64_t drain_deadline_ms;
	bool draining;
	char peer_identity[256];
	char peer_address[64];
	bool counted_identity, counted_address;
	char **expected;	/* client: the URI SANs the server may present */
	size_t nexpected;
	size_t mem;		/* nghttp2's allocations and our buffers */
	uint64_t bytes_in, bytes_out;
	const char *cause;
	char message[256];
	struct hb_conn *next, *prev; /* the worker's connections */
	struct hb_conn *hnext;	     /* the worker's id table */
	struct hb_conn *next_ready, *next_dead;
};

/* Events for JavaScript, queued by the data threads and delivered in batches. */
enum hb_event_type {
	HB_E_PEER, HB_E_CONNECTED, HB_E_CONNECT, HB_E_RESPONSE, HB_E_STREAM_END, HB_E_CONN_END,
	HB_E_GOAWAY, HB_E_LIMIT, HB_E_CONN_STATS, HB_E_DRAINED,
};

struct hb_event {
	struct hb_event *next;
	enum hb_event_type type;
	uint64_t conn, stream;
	double tag;
	int status;
	uint32_t code;
	uint64_t n[6];
	const char *cause; /* static text */
	char *text, *text2; /* owned */
	char **strv;	    /* owned: headers (name, value...) */
	size_t strc;
	uint8_t **blobs; /* owned: DER certificates */
	size_t *blob_len, nblobs;
};

enum hb_cmd_type {
	HB_CMD_SERVE, HB_CMD_DIAL, HB_CMD_ACCEPT_PEER, HB_CMD_ANSWER, HB_CMD_OPEN_STREAM, HB_CMD_RESET,
	HB_CMD_CLOSE, HB_CMD_DRAIN, HB_CMD_STATS, HB_CMD_STOP,
};

/* A call from JavaScript, run on the data thread that owns the connection. */
struct hb_cmd {
	struct hb_cmd *next;
	enum hb_cmd_type type;
	uint64_t conn, stream;
	int fd;
	int status;
	bool ok;
	double tag;
	SSL_CTX *ssl_ctx; /* SERVE, DIAL: a reference of the command's own */
	char *authority;
	char **strv; /* OPEN_STREAM headers, DIAL expected SANs */
	size_t strc;
	uint64_t deadline_ms, request;
};

#define HB_TABLE 4096

struct hb_engine;

struct hb_worker {
	uint8_t kind; /* HB_K_WAKE */
	struct hb_engine *e;
	int index;
	int epfd, wakefd, init_err;
	pthread_t thread;
	bool started, stop;
	pthread_mutex_t lock;
	struct hb_cmd *cmd_head, **cmd_tail;
	struct hb_conn *conns;
	uint32_t nconns;
	struct hb_conn *conn_table[HB_TABLE];
	struct hb_stream *stream_table[HB_TABLE];
	struct hb_conn *ready_head, **ready_tail;
	struct hb_conn *dead_conns;
	struct hb_stream *dead_streams;
	uint64_t now_ms, next_tick_ms;
	/* Plaintext of several TLS records, parsed in one go: the pod's writes gather a batch (stream_pump.c). */
	uint8_t rbuf[256 * 1024];
};

/* One peer's count of live connections, for the per-identity and per-address caps. */
struct hb_peer_count {
	struct hb_peer_count *next;
	uint32_t count;
	char key[];
};

struct hb_engine {
	struct hb_options opt;
	uint32_t nworkers;
	struct hb_worker *workers;
	atomic_uint_fast64_t next_id;
	_Atomic uint64_t counters[HB_C_COUNT];
	atomic_bool draining, drained_reported;
	/* Events for JavaScript. */
	pthread_mutex_t ev_lock;
	struct hb_event *ev_head, **ev_tail;
	void (*notify)(struct hb_engine *e); /* called when the queue turns non-empty */
	void *notify_data;
	/* Per-peer counts (identity and address tables), shared by the workers. */
	pthread_mutex_t peer_lock;
	struct hb_peer_count *by_identity[256], *by_address[256];
	/* (limit, peer) pairs already reported, so that each limit event goes out once per peer. */
	char **reported;
	size_t nreported;
};

/* engine.c: the engine and its data threads. */
struct hb_engine *hb_engine_new(const struct hb_options *opt, char *err, size_t errlen);
int hb_engine_start(struct hb_engine *e);
void hb_engine_stop(struct hb_engine *e);
void hb_engine_free(struct hb_engine *e);
uint64_t hb_next_id(struct hb_engine *e);
/* Hands a command to the worker that owns `conn` (SERVE/DIAL: the one the id maps to). */
void hb_post(struct hb_engine *e, struct hb_cmd *cmd);
void hb_post_all(struct hb_engine *e, enum hb_cmd_type type, uint64_t deadline_ms);
void hb_cmd_free(struct hb_cmd *cmd);
uint64_t hb_now_ms(void);
void hb_count(struct hb_engine *e, enum hb_counter c, int64_t delta);

/* events.c */
struct hb_event *hb_event_new(enum hb_event_type type, uint64_t conn, uint64_t stream);
void hb_emit(struct hb_engine *e, struct hb_event *ev);
struct hb_event *hb_events_take(struct hb_engine *e);
void hb_event_free(struct hb_event *ev);
char *hb_strdup(const char *s);

/* worker.c: one data thread's loop, lookup tables and command handling. */
void hb_worker_init(struct hb_worker *w, struct hb_engine *e, int index);
void *hb_worker_main(void *arg);
void hb_worker_run_cmd(struct hb_worker *w, struct hb_cmd *cmd);
void hb_worker_reap(struct hb_worker *w);
struct hb_conn *hb_conn_find(struct hb_worker *w, uint64_t id);
struct hb_stream *hb_stream_find(struct hb_worker *w, uint64_t id);
void hb_stream_index(struct hb_worker *w, struct hb_stream *s);
void hb_watch(struct hb_worker *w, int fd, void *obj);
void hb_unwatch(struct hb_worker *w, int fd);
void hb_conn_queue(struct hb_conn *c);

/* socket_bio.c: the connection's socket as OpenSSL's BIO, skipping reads that could only say EAGAIN. */
BIO *hb_socket_bio(struct hb_conn *c);

/* conn.c: a connection's transport (TLS records in and out of its session), timers and end. */
struct hb_conn *hb_conn_new(struct hb_worker *w, uint64_t id, enum hb_role role, int fd, SSL_CTX *ssl_ctx);
void hb_conn_run(struct hb_conn *c);
void hb_conn_close(struct hb_conn *c, const char *cause, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void hb_conn_tick(struct hb_conn *c, uint64_t now);
void hb_conn_free(struct hb_conn *c);
void hb_conn_drain(struct hb_conn *c, uint64_t deadline_ms);

/* handshake.c: a connection's TLS set-up, its handshake and the identity checks after it. */
/* Sets up c->ssl for the connection's role; false (and no SSL) when OpenSSL could not. */
bool hb_conn_tls_init(struct hb_conn *c, SSL_CTX *ssl_ctx);
void hb_conn_handshake(struct hb_conn *c);
void hb_conn_accept_peer(struct hb_conn *c, bool ok);

/* session.c: the nghttp2 glue, callable without TLS (the fuzzer feeds it frames directly). */
int hb_session_init(struct hb_conn *c);
/* Counts and reports the memory limit's hit and sets the connection's cause and message to it. */
void hb_session_over_memory(struct hb_conn *c);
/* Feeds received bytes: false when the connection must end (its cause is set). */
bool hb_session_recv(struct hb_conn *c, const uint8_t *data, size_t len);
/* Moves frames into c->out up to its high-water mark: false when the connection must end. */
bool hb_session_fill(struct hb_conn *c);
bool hb_session_done(struct hb_conn *c);
#define HB_OUT_HIGH (128 * 1024)

/* frames.c: nghttp2's callbacks, one set for every session: what the peer's frames do. */
const nghttp2_session_callbacks *hb_session_callbacks(void);

/* stream_open.c: a stream's beginning (a peer's HEADERS or our CONNECT) and the server's answer. */
struct hb_stream *hb_stream_new(struct hb_conn *c, uint64_t id, int32_t sid);
void hb_streams_announce(struct hb_conn *c);
void hb_stream_answer(struct hb_stream *s, int status, int fd);
bool hb_stream_open(struct hb_conn *c, uint64_t id, const char *authority, char **hdrs, size_t nhdrs, int fd);

/* stream_pump.c: bytes between the peer and a stream's fd, under end-to-end flow control. */
void hb_stream_fd_event(struct hb_stream *s, uint32_t events);
bool hb_stream_deliver(struct hb_stream *s, const uint8_t *data, size_t len);
void hb_stream_flush(struct hb_stream *s);
/* Writes every stream's pending DATA of this batch (one writev each); false when the memory cap is hit. */
bool hb_streams_write_pending(struct hb_conn *c);
void hb_stream_drop_input(struct hb_stream *s);
ssize_t hb_data_read(nghttp2_session *session, int32_t sid, uint8_t *buf, size_t length, uint32_t *flags,
		     nghttp2_data_source *source, void *user_data);

/* stream_end.c: a stream's reset or end, its release (closing its fd) and its one report. */
void hb_stream_reset(struct hb_stream *s, uint32_t code, const char *cause);
void hb_stream_end(struct hb_stream *s, const char *cause, uint32_t code);
void hb_stream_try_release(struct hb_stream *s);
void hb_stream_free(struct hb_stream *s);

/* limits.c: per-peer caps shared by the data threads. */
bool hb_limit_take(struct hb_engine *e, bool identity, const char *key, uint32_t cap);
void hb_limit_give(struct hb_engine *e, bool identity, const char *key);
/* Counts a limit hit, and tells JavaScript the first time this peer hits this limit. */
void hb_limit_hit(struct hb_engine *e, enum hb_counter counter, uint64_t conn, const char *limit, const char *peer, uint32_t cap);
/* Accounts memory to a connection; false when over its cap (nothing is counted then). */
bool hb_mem_take(struct hb_conn *c, size_t n);
void hb_mem_give(struct hb_conn *c, size_t n);
extern nghttp2_mem hb_nghttp2_mem_template;

#endif
