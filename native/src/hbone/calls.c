/* The calls JavaScript makes about connections and streams: each becomes a command for a data thread. */
#define _GNU_SOURCE
#include "binding.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int dup_fd(napi_env env, napi_value v, const char *what)
{
	uint32_t fd;
	int copy;

	if (!arg_u32(env, v, &fd, what))
		return -1;
	copy = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
	if (copy < 0)
		throw_errno(env, errno, NULL, "HBONE engine: duplicating %s %u", what, fd);
	return copy;
}

static bool string_array(napi_env env, napi_value v, char ***out, size_t *count, const char *what)
{
	uint32_t n;
	bool is_array = false;

	*out = NULL;
	*count = 0;
	if (napi_is_array(env, v, &is_array) != napi_ok || !is_array || napi_get_array_length(env, v, &n) != napi_ok) {
		throw_type(env, "%s: expected an array of strings", what);
		return false;
	}
	if (n > 512) {
		throw_type(env, "%s: more than 512 entries", what);
		return false;
	}
	*out = calloc(n ? n : 1, sizeof(char *));
	if (!*out) {
		throw_errno(env, ENOMEM, NULL, "%s", what);
		return false;
	}
	for (uint32_t i = 0; i < n; i++) {
		napi_value item;
		char buf[8192];

		napi_get_element(env, v, i, &item);
		if (!arg_string(env, item, buf, sizeof(buf), what))
			return false;
		(*out)[i] = hb_strdup(buf);
		*count = i + 1;
	}
	return true;
}

static struct hb_cmd *new_cmd(napi_env env, enum hb_cmd_type type)
{
	struct hb_cmd *cmd = calloc(1, sizeof(*cmd));

	if (!cmd) {
		throw_errno(env, ENOMEM, NULL, "HBONE engine command");
		return NULL;
	}
	cmd->type = type;
	cmd->fd = -1;
	return cmd;
}

/* serve(engine, fd, context, tag) and dial(engine, fd, context, expectedSans): the new connection's id. */
static napi_value start(napi_env env, napi_callback_info info, enum hb_cmd_type type)
{
	napi_value argv[4];
	struct holder *h;
	struct hb_ctx *ctx;
	struct hb_cmd *cmd;
	uint64_t conn;

	if (!args(env, info, 4, argv) || !(h = engine_arg(env, argv[0])) || !(ctx = unwrap_handle(env, argv[2], &CONTEXT_TAG, "a TLS context")) ||
	    !(cmd = new_cmd(env, type)))
		return NULL;
	cmd->type = type;
	if (type == HB_CMD_SERVE ? napi_get_value_double(env, argv[3], &cmd->tag) != napi_ok
				 : !string_array(env, argv[3], &cmd->strv, &cmd->strc, "expectedSans")) {
		if (type == HB_CMD_SERVE)
			throw_type(env, "tag: expected a number");
		hb_cmd_free(cmd);
		return NULL;
	}
	if ((cmd->fd = dup_fd(env, argv[1], "fd")) < 0) {
		hb_cmd_free(cmd);
		return NULL;
	}
	SSL_CTX_up_ref(ctx->ssl_ctx);
	cmd->ssl_ctx = ctx->ssl_ctx;
	conn = cmd->conn = hb_next_id(h->e);
	/* The command belongs to the data thread from here. */
	hb_post(h->e, cmd);
	return make_num(env, (double)conn);
}

static napi_value serve(napi_env env, napi_callback_info info)
{
	return start(env, info, HB_CMD_SERVE);
}

static napi_value dial(napi_env env, napi_callback_info info)
{
	return start(env, info, HB_CMD_DIAL);
}

static bool id_arg(napi_env env, napi_value v, uint64_t *out, const char *what)
{
	double d;

	if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 9007199254740991.0) {
		throw_type(env, "%s: expected an id", what);
		return false;
	}
	*out = (uint64_t)d;
	return true;
}

/* Runs a command about one connection (and stream), with what `fill` adds; undefined or an exception. */
static napi_value conn_call(napi_env env, napi_callback_info info, size_t argc, enum hb_cmd_type type,
			    bool (*fill)(napi_env env, napi_value *argv, struct hb_cmd *cmd))
{
	napi_value argv[6];
	struct holder *h;
	struct hb_cmd *cmd;

	if (!args(env, info, argc, argv) || !(h = engine_arg(env, argv[0])) || !(cmd = new_cmd(env, type)))
		return NULL;
	if (!id_arg(env, argv[1], &cmd->conn, "conn") || (fill && !fill(env, argv, cmd))) {
		hb_cmd_free(cmd);
		return NULL;
	}
	hb_post(h->e, cmd);
	return undefined(env);
}

static bool fill_accept(napi_env env, napi_value *argv, struct hb_cmd *cmd)
{
	return arg_bool(env, argv[2], &cmd->ok, "ok");
}

/* answer(engine, conn, stream, status, fd | -1) */
static bool fill_answer(napi_env env, napi_value *argv, struct hb_cmd *cmd)
{
	int32_t fd;
	uint32_t status;

	if (!id_arg(env, argv[2], &cmd->stream, "stream") || !arg_u32(env, argv[3], &status, "status") ||
	    napi_get_value_int32(env, argv[4], &fd) != napi_ok)
		return false;
	if (status < 200 || status > 599)
		return throw_type(env, "status: %u is not a final HTTP status", status), false;
	if (status == 200 && fd < 0)
		return throw_type(env, "a 200 answer needs the fd of the connection to the destination"), false;
	cmd->status = (int)status;
	if (fd >= 0 && (cmd->fd = dup_fd(env, argv[4], "fd")) < 0)
		return false;
	return true;
}

static bool fill_stream(napi_env env, napi_value *argv, struct hb_cmd *cmd)
{
	return id_arg(env, argv[2], &cmd->stream, "stream");
}

static bool fill_stats(napi_env env, napi_value *argv, struct hb_cmd *cmd)
{
	return id_arg(env, argv[2], &cmd->request, "request");
}

static napi_value accept_peer(napi_env env, napi_callback_info info)
{
	return conn_call(env, info, 3, HB_CMD_ACCEPT_PEER, fill_accept);
}

static napi_value answer(napi_env env, napi_callback_info info)
{
	return conn_call(env, info, 5, HB_CMD_ANSWER, fill_answer);
}

static napi_value reset_stream(napi_env env, napi_callback_info info)
{
	return conn_call(env, info, 3, HB_CMD_RESET, fill_stream);
}

static napi_value close_conn(napi_env env, napi_callback_info info)
{
	return conn_call(env, info, 2, HB_CMD_CLOSE, NULL);
}

static napi_value conn_stats(napi_env env, napi_callback_info info)
{
	return conn_call(env, info, 3, HB_CMD_STATS, fill_stats);
}

/* openStream(engine, conn, authority, headers [name, value, ...], fd): the stream's id. */
static napi_value open_stream(napi_env env, napi_callback_info info)
{
	napi_value argv[5];
	struct holder *h;
	struct hb_cmd *cmd;
	char authority[512];
	uint64_t stream;

	if (!args(env, info, 5, argv) || !(h = engine_arg(env, argv[0])) || !(cmd = new_cmd(env, HB_CMD_OPEN_STREAM)))
		return NULL;
	if (!id_arg(env, argv[1], &cmd->conn, "conn") || !arg_string(env, argv[2], authority, sizeof(authority), "authority") ||
	    !string_array(env, argv[3], &cmd->strv, &cmd->strc, "headers") || (cmd->fd = dup_fd(env, argv[4], "fd")) < 0) {
		hb_cmd_free(cmd);
		return NULL;
	}
	if (cmd->strc % 2) {
		hb_cmd_free(cmd);
		return throw_type(env, "headers: expected name, value pairs");
	}
	cmd->authority = hb_strdup(authority);
	stream = cmd->stream = hb_next_id(h->e);
	hb_post(h->e, cmd);
	return make_num(env, (double)stream);
}

/* drain(engine, deadlineMs): GOAWAY everywhere; what is still open at the deadline is reset. */
static napi_value drain(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct holder *h;
	uint32_t ms;

	if (!args(env, info, 2, argv) || !(h = engine_arg(env, argv[0])) || !arg_u32(env, argv[1], &ms, "deadlineMs"))
		return NULL;
	atomic_store(&h->e->draining, true);
	hb_post_all(h->e, HB_CMD_DRAIN, hb_now_ms() + ms);
	return undefined(env);
}

/* counters(engine): the engine-wide counters, read now. */
static napi_value counters(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	struct holder *h;

	if (!args(env, info, 1, argv) || !(h = engine_arg(env, argv[0])))
		return NULL;
	napi_create_object(env, &out);
	for (int i = 0; i < HB_C_COUNT; i++)
		set_prop(env, out, hb_counter_names[i], make_num(env, (double)atomic_load_explicit(&h->e->counters[i], memory_order_relaxed)));
	return out;
}

/* options(engine): the options in effect, defaults filled in. */
static napi_value options(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	struct holder *h;
	const struct hb_options *o;

	if (!args(env, info, 1, argv) || !(h = engine_arg(env, argv[0])))
		return NULL;
	o = &h->e->opt;
	napi_create_object(env, &out);
#define OPT(name, field) set_prop(env, out, name, make_num(env, o->field))
	OPT("threads", threads);
	OPT("streamWindow", stream_window);
	OPT("connectionWindow", conn_window);
	OPT("maxFrameSize", max_frame_size);
	OPT("serverMaxStreams", server_max_streams);
	OPT("clientMaxStreams", client_max_streams);
	OPT("serverMaxHeaderList", server_max_header_list);
	OPT("clientMaxHeaderList", client_max_header_list);
	OPT("pingIntervalMs", ping_interval_ms);
	OPT("pingTimeoutMs", ping_timeout_ms);
	OPT("handshakeTimeoutMs", handshake_timeout_ms);
	OPT("idleTimeoutMs", idle_timeout_ms);
	OPT("responseTimeoutMs", response_timeout_ms);
	OPT("maxPendingConnects", max_pending_connects);
	OPT("maxConnectionsPerIdentity", max_conns_per_identity);
	OPT("maxConnectionsPerAddress", max_conns_per_address);
	OPT("maxConnections", max_connections);
	OPT("maxConnectionMemory", max_conn_memory);
	OPT("streamIdleTimeoutMs", stream_idle_timeout_ms);
#undef OPT
	return out;
}

bool register_calls(napi_env env, napi_value exports)
{
	static const napi_property_descriptor props[] = {
		METHOD("serve", serve),
		METHOD("dial", dial),
		METHOD("acceptPeer", accept_peer),
		METHOD("answer", answer),
		METHOD("openStream", open_stream),
		METHOD("resetStream", reset_stream),
		METHOD("closeConn", close_conn),
		METHOD("connStats", conn_stats),
		METHOD("drain", drain),
		METHOD("counters", counters),
		METHOD("options", options),
	};

	return define_methods(env, exports, props, sizeof(props) / sizeof(props[0]));
}
