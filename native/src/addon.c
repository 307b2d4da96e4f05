/* Entry point of ambit_bpf.node: libbpf and socket-option primitives for the agent's redirect layer. */
#include "glue.h"

static napi_value init(napi_env env, napi_value exports)
{
	log_capture_install();
	if (!register_objects(env, exports) || !register_attach(env, exports) || !register_maps(env, exports) ||
	    !register_sockets(env, exports) || !register_testrun(env, exports) || !register_splice(env, exports))
		return NULL;
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
