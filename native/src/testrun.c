/* Running a loaded program on a crafted packet with BPF_PROG_RUN, so program logic is testable without traffic. */
#define _GNU_SOURCE
#include "handles.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The packet can grow (bpf_skb_change_tail, encapsulation); leave it room before ENOSPC. */
#define DATA_OUT_SLACK 512
/* Larger than any program type's context (struct __sk_buff is 192 bytes on 6.x). */
#define CTX_OUT_MAX 512

#define HINT_EINVAL                                                                                     \
	"a tc packet must hold an Ethernet header (14 bytes), then the whole IP header for IPv4 and IPv6 " \
	"frames (the kernel checks both before the program runs), and fit in one page; in a ctx, only "   \
	"the fields the kernel lets user space set may be non-zero"

/* An optional property of the options object: false with an exception pending on a wrong type. */
static bool opt_value(napi_env env, napi_value opts, const char *name, napi_value *out, bool *present)
{
	napi_valuetype type;

	*present = false;
	if (napi_get_named_property(env, opts, name, out) != napi_ok || napi_typeof(env, *out, &type) != napi_ok)
		return false;
	*present = type != napi_undefined && type != napi_null;
	return true;
}

static bool opt_u32(napi_env env, napi_value opts, const char *name, uint32_t *out)
{
	napi_value v;
	bool present;

	if (!opt_value(env, opts, name, &v, &present))
		return false;
	return !present || arg_u32(env, v, out, name);
}

static bool opt_buffer(napi_env env, napi_value opts, const char *name, void **data, size_t *len)
{
	napi_value v;
	bool present;

	*data = NULL;
	*len = 0;
	if (!opt_value(env, opts, name, &v, &present))
		return false;
	return !present || arg_buffer(env, v, data, len, name);
}

static napi_value copy_buffer(napi_env env, const void *data, size_t len)
{
	napi_value out = NULL;
	void *copy;

	if (napi_create_buffer_copy(env, len, data, &copy, &out) != napi_ok)
		return NULL;
	return out;
}

/*
 * progTestRun(obj, program, data, { repeat?, ctx?, dataOutSize? })
 *   -> { retval, dataOut, duration, ctxOut? }
 * Runs the program `repeat` times (at least once) in the caller's network namespace on a copy of
 * `data`; the kernel builds the skb on that netns' loopback device unless ctx.ifindex names another.
 * `ctx` is the program type's context (struct __sk_buff for tc), and ctxOut what the program left
 * in it (mark, priority, cb). `duration` is the mean time of one run in nanoseconds. Map side effects
 * (counters) are real: the program runs against the object's maps.
 */
static napi_value prog_test_run(napi_env env, napi_callback_info info)
{
	struct ambit_object *o;
	napi_value argv[4], out = NULL;
	char program[128];
	void *data, *ctx, *data_out = NULL, *ctx_out = NULL;
	size_t data_len, ctx_len;
	uint32_t repeat = 1, data_out_size = 0;
	int fd, err;

	if (!args(env, info, 4, argv) || !(o = object_arg(env, argv[0])) ||
	    !arg_string(env, argv[1], program, sizeof(program), "program") ||
	    !arg_buffer(env, argv[2], &data, &data_len, "data") || !opt_u32(env, argv[3], "repeat", &repeat) ||
	    !opt_u32(env, argv[3], "dataOutSize", &data_out_size) ||
	    !opt_buffer(env, argv[3], "ctx", &ctx, &ctx_len))
		return NULL;
	fd = program_fd(env, o, program);
	if (fd < 0)
		return NULL;
	if (!data_out_size)
		data_out_size = (uint32_t)data_len + DATA_OUT_SLACK;
	data_out = malloc(data_out_size);
	ctx_out = ctx ? calloc(1, CTX_OUT_MAX) : NULL;
	if (!data_out || (ctx && !ctx_out)) {
		free(data_out);
		free(ctx_out);
		return throw_errno(env, ENOMEM, NULL, "run program %s", program);
	}

	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data, .data_size_in = (__u32)data_len, .data_out = data_out,
		    .data_size_out = data_out_size, .ctx_in = ctx, .ctx_size_in = (__u32)ctx_len, .ctx_out = ctx_out,
		    .ctx_size_out = ctx ? CTX_OUT_MAX : 0, .repeat = (int)(repeat ? repeat : 1));
	err = bpf_prog_test_run_opts(fd, &opts) ? errno : 0;
	if (err == AMBIT_ENOTSUPP) {
		throw_errno(env, err,
			    "the kernel has no BPF_PROG_RUN for this program type (cgroup sock_addr, sockops and "
			    "cgroup sockopt programs among them); test it on a real socket instead",
			    "run program %s", program);
	} else if (err) {
		throw_errno(env, err,
			    err == EINVAL ? HINT_EINVAL
			    : err == ENOSPC ? "the program grew the packet beyond dataOutSize; pass a larger one"
					    : NULL,
			    "run program %s on a %zu-byte packet", program, data_len);
	} else if (napi_create_object(env, &out) == napi_ok) {
		set_prop(env, out, "retval", make_u32(env, opts.retval));
		set_prop(env, out, "dataOut", copy_buffer(env, data_out, opts.data_size_out));
		set_prop(env, out, "duration", make_u32(env, opts.duration));
		if (ctx)
			set_prop(env, out, "ctxOut", copy_buffer(env, ctx_out, opts.ctx_size_out));
	}
	free(data_out);
	free(ctx_out);
	return err ? NULL : out;
}

bool register_testrun(napi_env env, napi_value exports)
{
	static const napi_property_descriptor props[] = {
		METHOD("progTestRun", prog_test_run),
	};

	return define_methods(env, exports, props, sizeof(props) / sizeof(props[0]));
}
