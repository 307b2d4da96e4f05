/* What binding.c and calls.c share: the engine handle and argument helpers. */
#ifndef AMBIT_HBONE_BINDING_H
#define AMBIT_HBONE_BINDING_H

#include "../glue.h"
#include "engine.h"

/* Outlives the engine: a batch already scheduled when the engine is destroyed finds it gone. */
struct holder {
	struct hb_engine *e;
	napi_threadsafe_function tsfn;
	int refs; /* the thread-safe function's and the JavaScript handle's: freed when both are gone */
};

extern const napi_type_tag CONTEXT_TAG;

napi_value throw_code(napi_env env, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
napi_value make_num(napi_env env, double v);
napi_value undefined(napi_env env);
/* The live engine behind a handle, or NULL with an exception pending. */
struct holder *engine_arg(napi_env env, napi_value v);

#endif
