/*
 * spliceRelay and shutdownSocket for JavaScript, over the relay engine of splice_engine.c: the engine's
 * outcomes cross to the JavaScript thread through one thread-safe function.
 */
#define _GNU_SOURCE
#include "glue.h"
#include "splice_engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static napi_threadsafe_function report;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

/* On the relay thread. Blocking: an outcome is never dropped (JavaScript frees the sockets on it). */
static void report_outcome(struct splice_outcome *outcome)
{
	napi_call_threadsafe_function(report, outcome, napi_tsfn_blocking);
}

/* On the JavaScript thread: callback(bytesDownToUp, bytesUpToDown, error | null). */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data)
{
	struct splice_outcome *o = data;
	napi_ref callback = o->owner;
	napi_value cb, argv[3], global;

	(void)js_cb;
	(void)context;
	if (env && napi_get_reference_value(env, callback, &cb) == napi_ok) {
		napi_create_double(env, (double)o->bytes[0], &argv[0]);
		napi_create_double(env, (double)o->bytes[1], &argv[1]);
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
		napi_delete_reference(env, callback);
	}
	free(o);
}

/* The thread-safe function and the engine, once per process; false with an exception pending on failure. */
static bool start(napi_env env)
{
	napi_value name;
	bool ok = true;
	int err;

	pthread_mutex_lock(&start_lock);
	if (!report) {
		napi_create_string_utf8(env, "ambit splice relay", NAPI_AUTO_LENGTH, &name);
		if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, call_js, &report) != napi_ok) {
			report = NULL;
			ok = false;
			goto out;
		}
		/* Idle relays must not keep the agent alive: the sockets they carry do while they are open. */
		napi_unref_threadsafe_function(env, report);
	}
	err = splice_engine_start(report_outcome);
	if (err) {
		throw_errno(env, err, NULL, "splice relay: starting its thread");
		ok = false;
	}
out:
	pthread_mutex_unlock(&start_lock);
	return ok;
}

/*
 * spliceRelay(downstreamFd, upstreamFd, idleMs, callback): relays between the two sockets until both
 * directions have ended or one fails, or no byte has moved either way for idleMs (0: no limit; the
 * error's operation is then "idle"), then calls callback(bytesDownToUp, bytesUpToDown, error|null).
 * The fds are duplicated: the caller keeps its own, must not read from them meanwhile, and closes
 * them after the callback. shutdown(2) on either (JavaScript's socket.destroy does not reach a dup)
 * ends the relay early. Never waits for the relay thread: it throws only if the dups or pipes cannot
 * be made; anything later (epoll refusing a socket: operation "register") comes to the callback.
 */
static napi_value splice_relay(napi_env env, napi_callback_info info)
{
	napi_value argv[4], out;
	napi_valuetype type;
	uint32_t fds[2], idle_ms;
	napi_ref callback;
	int err;

	if (!args(env, info, 4, argv) || !arg_u32(env, argv[0], &fds[0], "downstream fd") || !arg_u32(env, argv[1], &fds[1], "upstream fd") ||
	    !arg_u32(env, argv[2], &idle_ms, "idle timeout (ms)"))
		return NULL;
	if (napi_typeof(env, argv[3], &type) != napi_ok || type != napi_function)
		return throw_type(env, "callback: expected a function");
	if (!start(env))
		return NULL;
	if (napi_create_reference(env, argv[3], 1, &callback) != napi_ok)
		return throw_errno(env, ENOMEM, NULL, "splice relay: keeping the callback");
	err = splice_engine_add((int)fds[0], (int)fds[1], idle_ms, callback);
	if (err) {
		napi_delete_reference(env, callback);
		return throw_errno(env, err, NULL, "splice relay: setting up fds %u and %u", fds[0], fds[1]);
	}
	napi_get_undefined(env, &out);
	return out;
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
