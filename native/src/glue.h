/* N-API plumbing shared by the addon's modules: arguments, errno errors with hints, typed handles. */
#ifndef AMBIT_GLUE_H
#define AMBIT_GLUE_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hints appended to errors, so an operator knows what to check. */
#define HINT_CAPS "the agent needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN"
#define HINT_NET_ADMIN "the agent needs CAP_NET_ADMIN"

/*
 * The kernel's internal ENOTSUPP (include/linux/errno.h), distinct from EOPNOTSUPP. Some BPF
 * commands return it to user space (BPF_PROG_RUN for a program type without test_run), but libc
 * has no name or text for it.
 */
#define AMBIT_ENOTSUPP 524

/*
 * Throws an Error whose message is "<context>: <strerror> (<ENAME>)[: <hint>]", with `code` set to
 * the errno name and `errno` to its number. A NULL hint picks a generic one for EPERM and EACCES.
 * Returns NULL so that callers can `return throw_errno(...)`.
 */
napi_value throw_errno(napi_env env, int err, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
napi_value throw_type(napi_env env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Each returns false with a TypeError pending when the argument has the wrong type. */
bool args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
bool arg_string(napi_env env, napi_value v, char *buf, size_t len, const char *what);
bool arg_u32(napi_env env, napi_value v, uint32_t *out, const char *what);
bool arg_bool(napi_env env, napi_value v, bool *out, const char *what);
bool arg_buffer(napi_env env, napi_value v, void **data, size_t *len, const char *what);

napi_value make_u32(napi_env env, uint32_t v);
napi_value make_string(napi_env env, const char *s);
/* Adds an enumerable property (napi_set_named_property makes them enumerable). */
bool set_prop(napi_env env, napi_value obj, const char *name, napi_value value);

/* Externals carrying a type tag, so a map handle can never be passed where an object is expected. */
napi_value wrap_handle(napi_env env, void *ptr, const napi_type_tag *tag, napi_finalize fin);
void *unwrap_handle(napi_env env, napi_value v, const napi_type_tag *tag, const char *what);

/* libbpf's warnings (the verifier log among them) since the last log_reset(), newest kept. */
void log_capture_install(void);
void log_reset(void);
const char *log_tail(void);

/* Module registration: each adds its functions to `exports` as enumerable methods. */
bool register_objects(napi_env env, napi_value exports);
bool register_attach(napi_env env, napi_value exports);
bool register_maps(napi_env env, napi_value exports);
bool register_sockets(napi_env env, napi_value exports);
bool register_testrun(napi_env env, napi_value exports);
bool register_splice(napi_env env, napi_value exports);
bool define_methods(napi_env env, napi_value exports, const napi_property_descriptor *props, size_t n);

/* napi_default_method alone is writable and configurable but not enumerable: Object.keys() would be empty. */
#define METHOD(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_default_method | napi_enumerable, NULL }

#endif
