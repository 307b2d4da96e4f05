/*
 * The HBONE engine's face to JavaScript: contexts, engines and the calls that hand fds over, and the
 * events, which cross to the JavaScript thread in batches through one thread-safe function per engine.
 * An fd given to the engine is duplicated at the call: the caller may close its own at once.
 */
#define _GNU_SOURCE
#include "../glue.h"
#include "binding.h"
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const napi_type_tag ENGINE_TAG = { 0x616d626974686231ULL, 0x656e67696e650001ULL };
const napi_type_tag CONTEXT_TAG = { 0x616d626974686231ULL, 0x636f6e7465787401ULL };


napi_value throw_code(napi_env env, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	napi_throw_error(env, code, msg);
	return NULL;
}

napi_value make_num(napi_env env, double v)
{
	napi_value out = NULL;

	napi_create_double(env, v, &out);
	return out;
}

napi_value undefined(napi_env env)
{
	napi_value out = NULL;

	napi_get_undefined(env, &out);
	return out;
}

/* A stream's or a connection's end alike: why, and the bytes each way. */
static void set_end(napi_env env, napi_value o, const struct hb_event *ev)
{
	set_prop(env, o, "cause", make_string(env, ev->cause));
	set_prop(env, o, "bytesIn", make_num(env, (double)ev->n[0]));
	set_prop(env, o, "bytesOut", make_num(env, (double)ev->n[1]));
}

static napi_value event_object(napi_env env, struct hb_event *ev)
{
	static const char *const types[] = { "peer", "connected", "connect", "response", "streamEnd", "connEnd",
					     "goaway", "limit", "connStats", "drained" };
	napi_value o, arr, v;

	napi_create_object(env, &o);
	set_prop(env, o, "type", make_string(env, types[ev->type]));
	if (ev->type != HB_E_DRAINED)
		set_prop(env, o, "conn", make_num(env, (double)ev->conn));
	switch (ev->type) {
	case HB_E_PEER:
		set_prop(env, o, "tag", make_num(env, ev->tag));
		set_prop(env, o, "identity", make_string(env, ev->text));
		set_prop(env, o, "address", make_string(env, ev->text2));
		napi_create_array_with_length(env, ev->nblobs, &arr);
		for (size_t i = 0; i < ev->nblobs; i++) {
			napi_create_buffer_copy(env, ev->blob_len[i], ev->blobs[i], NULL, &v);
			napi_set_element(env, arr, (uint32_t)i, v);
		}
		set_prop(env, o, "chainDer", arr);
		break;
	case HB_E_CONNECTED:
		set_prop(env, o, "identity", make_string(env, ev->text));
		break;
	case HB_E_CONNECT:
		set_prop(env, o, "stream", make_num(env, (double)ev->stream));
		set_prop(env, o, "tag", make_num(env, ev->tag));
		set_prop(env, o, "authority", make_string(env, ev->text));
		napi_create_array_with_length(env, ev->strc, &arr);
		for (size_t i = 0; i < ev->strc; i++)
			napi_set_element(env, arr, (uint32_t)i, make_string(env, ev->strv[i]));
		set_prop(env, o, "headers", arr);
		break;
	case HB_E_RESPONSE:
		set_prop(env, o, "stream", make_num(env, (double)ev->stream));
		set_prop(env, o, "status", make_num(env, ev->status));
		break;
	case HB_E_STREAM_END:
		set_prop(env, o, "stream", make_num(env, (double)ev->stream));
		set_end(env, o, ev);
		set_prop(env, o, "code", make_num(env, ev->code));
		break;
	case HB_E_CONN_END:
		set_end(env, o, ev);
		set_prop(env, o, "message", make_string(env, ev->text));
		break;
	case HB_E_GOAWAY:
		set_prop(env, o, "code", make_num(env, ev->code));
		break;
	case HB_E_LIMIT:
		set_prop(env, o, "limit", make_string(env, ev->cause));
		set_prop(env, o, "peer", make_string(env, ev->text));
		set_prop(env, o, "cap", make_num(env, (double)ev->n[0]));
		break;
	case HB_E_CONN_STATS:
		set_prop(env, o, "request", make_num(env, (double)ev->n[5]));
		set_prop(env, o, "found", make_num(env, ev->cause ? 0 : 1));
		set_prop(env, o, "streams", make_num(env, (double)ev->n[0]));
		set_prop(env, o, "outBuffered", make_num(env, (double)ev->n[1]));
		set_prop(env, o, "inBuffered", make_num(env, (double)ev->n[2]));
		set_prop(env, o, "memory", make_num(env, (double)ev->n[3]));
		set_prop(env, o, "pendingConnects", make_num(env, (double)ev->n[4]));
		set_prop(env, o, "identity", make_string(env, ev->text ? ev->text : ""));
		break;
	case HB_E_DRAINED:
		break;
	}
	return o;
}

/* The queued events as an array, freed. */
static napi_value take_events(napi_env env, struct hb_engine *e)
{
	struct hb_event *ev = hb_events_take(e), *next;
	napi_value arr;
	uint32_t i = 0;

	napi_create_array(env, &arr);
	for (; ev; ev = next) {
		next = ev->next;
		napi_set_element(env, arr, i++, event_object(env, ev));
		hb_event_free(ev);
	}
	return arr;
}

static void call_js(napi_env env, napi_value cb, void *context, void *data)
{
	struct holder *h = context;
	napi_value batch, global;

	(void)data;
	if (!env || !h->e)
		return;
	batch = take_events(env, h->e);
	napi_get_global(env, &global);
	/* An exception in the handler surfaces as Node's uncaught exception, as any callback's would. */
	napi_call_function(env, global, cb, 1, &batch, NULL);
}

static void notify(struct hb_engine *e)
{
	struct holder *h = e->notify_data;

	napi_call_threadsafe_function(h->tsfn, NULL, napi_tsfn_nonblocking);
}

static void holder_release(struct holder *h)
{
	if (--h->refs == 0)
		free(h);
}

static void tsfn_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	holder_release(data);
}

/* The handle was collected without destroy(): stop the engine, as destroy() would, dropping its events. */
static void handle_finalize(napi_env env, void *data, void *hint)
{
	struct holder *h = data;

	(void)env;
	(void)hint;
	if (h->e) {
		hb_engine_stop(h->e);
		hb_engine_free(h->e);
		h->e = NULL;
		napi_release_threadsafe_function(h->tsfn, napi_tsfn_abort);
	}
	holder_release(h);
}

static bool opt_u32(napi_env env, napi_value obj, const char *name, uint32_t *out)
{
	napi_value v;
	napi_valuetype t;
	bool has = false;

	if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has)
		return true;
	napi_get_named_property(env, obj, name, &v);
	napi_typeof(env, v, &t);
	if (t == napi_undefined)
		return true;
	return arg_u32(env, v, out, name);
}

struct holder *engine_arg(napi_env env, napi_value v)
{
	struct holder *h = unwrap_handle(env, v, &ENGINE_TAG, "an HBONE engine");

	if (h && !h->e) {
		throw_code(env, "EHBONE_CLOSED", "the HBONE engine was destroyed");
		return NULL;
	}
	return h;
}

/* createEngine(options, onEvents): starts the data threads. */
static napi_value create_engine(napi_env env, napi_callback_info info)
{
	napi_value argv[2], name, out;
	struct hb_options o;
	struct holder *h;
	char err[256];
	int rc;

	if (!args(env, info, 2, argv))
		return NULL;
	hb_options_default(&o);
	if (!opt_u32(env, argv[0], "threads", &o.threads) || !opt_u32(env, argv[0], "streamWindow", &o.stream_window) ||
	    !opt_u32(env, argv[0], "connectionWindow", &o.conn_window) || !opt_u32(env, argv[0], "maxFrameSize", &o.max_frame_size) ||
	    !opt_u32(env, argv[0], "serverMaxStreams", &o.server_max_streams) || !opt_u32(env, argv[0], "clientMaxStreams", &o.client_max_streams) ||
	    !opt_u32(env, argv[0], "serverMaxHeaderList", &o.server_max_header_list) ||
	    !opt_u32(env, argv[0], "clientMaxHeaderList", &o.client_max_header_list) ||
	    !opt_u32(env, argv[0], "pingIntervalMs", &o.ping_interval_ms) || !opt_u32(env, argv[0], "pingTimeoutMs", &o.ping_timeout_ms) ||
	    !opt_u32(env, argv[0], "handshakeTimeoutMs", &o.handshake_timeout_ms) || !opt_u32(env, argv[0], "idleTimeoutMs", &o.idle_timeout_ms) ||
	    !opt_u32(env, argv[0], "responseTimeoutMs", &o.response_timeout_ms) ||
	    !opt_u32(env, argv[0], "maxPendingConnects", &o.max_pending_connects) ||
	    !opt_u32(env, argv[0], "maxConnectionsPerIdentity", &o.max_conns_per_identity) ||
	    !opt_u32(env, argv[0], "maxConnectionsPerAddress", &o.max_conns_per_address) ||
	    !opt_u32(env, argv[0], "maxConnections", &o.max_connections) || !opt_u32(env, argv[0], "maxConnectionMemory", &o.max_conn_memory) ||
	    !opt_u32(env, argv[0], "streamIdleTimeoutMs", &o.stream_idle_timeout_ms))
		return NULL;
	h = calloc(1, sizeof(*h));
	if (h)
		h->refs = 2;
	if (!h)
		return throw_errno(env, ENOMEM, NULL, "HBONE engine");
	h->e = hb_engine_new(&o, err, sizeof(err));
	if (!h->e) {
		free(h);
		return throw_code(env, "EHBONE_OPTIONS", "HBONE engine: %s", err);
	}
	h->e->notify = notify;
	h->e->notify_data = h;
	napi_create_string_utf8(env, "ambit hbone engine", NAPI_AUTO_LENGTH, &name);
	if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, h, tsfn_finalize, h, call_js, &h->tsfn) != napi_ok) {
		hb_engine_free(h->e);
		free(h);
		return throw_code(env, "EHBONE_START", "HBONE engine: cannot create its event channel (is onEvents a function?)");
	}
	rc = hb_engine_start(h->e);
	if (rc) {
		hb_engine_stop(h->e);
		hb_engine_free(h->e);
		h->e = NULL;
		napi_release_threadsafe_function(h->tsfn, napi_tsfn_abort);
		holder_release(h);
		return throw_errno(env, rc, NULL, "HBONE engine: starting its data threads");
	}
	out = wrap_handle(env, h, &ENGINE_TAG, handle_finalize);
	if (!out)
		HB_FATAL("cannot wrap the engine handle");
	return out;
}

/* destroy(engine): closes every connection, stops the threads; returns the last events. */
static napi_value destroy(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	struct holder *h;

	if (!args(env, info, 1, argv) || !(h = engine_arg(env, argv[0])))
		return NULL;
	hb_engine_stop(h->e);
	out = take_events(env, h->e);
	hb_engine_free(h->e);
	h->e = NULL;
	napi_release_threadsafe_function(h->tsfn, napi_tsfn_release);
	return out;
}

static void context_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	hb_ctx_free(data);
}

/* createContext(chainPem, keyPem, rootsPem) */
static napi_value create_context(napi_env env, napi_callback_info info)
{
	napi_value argv[3], out;
	char *pem[3] = { NULL, NULL, NULL }, err[320];
	const char *what[3] = { "chainPem", "keyPem", "rootsPem" };
	struct hb_ctx *ctx = NULL;
	size_t len;

	if (!args(env, info, 3, argv))
		return NULL;
	for (int i = 0; i < 3; i++) {
		if (napi_get_value_string_utf8(env, argv[i], NULL, 0, &len) != napi_ok) {
			throw_type(env, "%s: expected a string", what[i]);
			goto out;
		}
		pem[i] = malloc(len + 1);
		if (!pem[i] || napi_get_value_string_utf8(env, argv[i], pem[i], len + 1, &len) != napi_ok) {
			throw_errno(env, ENOMEM, NULL, "reading %s", what[i]);
			goto out;
		}
	}
	ctx = hb_ctx_new(pem[0], pem[1], pem[2], err, sizeof(err));
	if (!ctx)
		throw_code(env, "EHBONE_TLS", "HBONE TLS context: %s", err);
out:
	for (int i = 0; i < 3; i++)
		free(pem[i]);
	if (!ctx)
		return NULL;
	out = wrap_handle(env, ctx, &CONTEXT_TAG, context_finalize);
	return out;
}

bool register_calls(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports)
{
	static const napi_property_descriptor props[] = {
		METHOD("createEngine", create_engine),
		METHOD("destroy", destroy),
		METHOD("createContext", create_context),
	};

	if (!define_methods(env, exports, props, sizeof(props) / sizeof(props[0])) || !register_calls(env, exports))
		return NULL;
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
