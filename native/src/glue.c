/* N-API helpers shared by the addons' modules (ambit_bpf and ambit_hbone). */
#define _GNU_SOURCE
#include "glue.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static napi_value throw_with_code(napi_env env, const char *code, int err, const char *msg)
{
	napi_value js_code, js_msg, error;

	if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &js_code) != napi_ok ||
	    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &js_msg) != napi_ok ||
	    napi_create_error(env, js_code, js_msg, &error) != napi_ok) {
		napi_throw_error(env, code, msg);
		return NULL;
	}
	if (err)
		set_prop(env, error, "errno", make_u32(env, (uint32_t)err));
	napi_throw(env, error);
	return NULL;
}

napi_value throw_errno(napi_env env, int err, const char *hint, const char *fmt, ...)
{
	char context[4096], msg[4608];
	const char *name = err == AMBIT_ENOTSUPP ? "ENOTSUPP" : strerrorname_np(err);
	const char *text = err == AMBIT_ENOTSUPP ? "Operation not supported" : strerror(err);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(context, sizeof(context), fmt, ap);
	va_end(ap);
	if (!hint && (err == EPERM || err == EACCES))
		hint = HINT_CAPS;
	snprintf(msg, sizeof(msg), "%s: %s (%s)%s%s", context, text, name ? name : "?",
		 hint ? ": " : "", hint ? hint : "");
	return throw_with_code(env, name ? name : "EUNKNOWN", err, msg);
}

napi_value throw_type(napi_env env, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
	return NULL;
}

bool args(napi_env env, napi_callback_info info, size_t want, napi_value *argv)
{
	size_t argc = want;

	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
		return false;
	if (argc < want) {
		throw_type(env, "expected %zu arguments, got %zu", want, argc);
		return false;
	}
	return true;
}

bool arg_string(napi_env env, napi_value v, char *buf, size_t len, const char *what)
{
	size_t got;

	if (napi_get_value_string_utf8(env, v, buf, len, &got) != napi_ok) {
		throw_type(env, "%s: expected a string", what);
		return false;
	}
	if (got >= len - 1) {
		throw_type(env, "%s: longer than %zu bytes", what, len - 2);
		return false;
	}
	return true;
}

bool arg_u32(napi_env env, napi_value v, uint32_t *out, const char *what)
{
	if (napi_get_value_uint32(env, v, out) != napi_ok) {
		throw_type(env, "%s: expected a number", what);
		return false;
	}
	return true;
}

bool arg_bool(napi_env env, napi_value v, bool *out, const char *what)
{
	if (napi_get_value_bool(env, v, out) != napi_ok) {
		throw_type(env, "%s: expected a boolean", what);
		return false;
	}
	return true;
}

bool arg_buffer(napi_env env, napi_value v, void **data, size_t *len, const char *what)
{
	bool is_buffer = false;

	if (napi_is_buffer(env, v, &is_buffer) != napi_ok || !is_buffer ||
	    napi_get_buffer_info(env, v, data, len) != napi_ok) {
		throw_type(env, "%s: expected a Buffer", what);
		return false;
	}
	return true;
}

napi_value make_u32(napi_env env, uint32_t v)
{
	napi_value out = NULL;

	napi_create_uint32(env, v, &out);
	return out;
}

napi_value make_string(napi_env env, const char *s)
{
	napi_value out = NULL;

	napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
	return out;
}

bool set_prop(napi_env env, napi_value obj, const char *name, napi_value value)
{
	return value && napi_set_named_property(env, obj, name, value) == napi_ok;
}

napi_value wrap_handle(napi_env env, void *ptr, const napi_type_tag *tag, napi_finalize fin)
{
	napi_value out;

	if (napi_create_external(env, ptr, fin, NULL, &out) != napi_ok ||
	    napi_type_tag_object(env, out, tag) != napi_ok)
		return NULL;
	return out;
}

void *unwrap_handle(napi_env env, napi_value v, const napi_type_tag *tag, const char *what)
{
	bool tagged = false;
	void *ptr = NULL;

	if (napi_check_object_type_tag(env, v, tag, &tagged) != napi_ok || !tagged ||
	    napi_get_value_external(env, v, &ptr) != napi_ok) {
		throw_type(env, "expected %s handle", what);
		return NULL;
	}
	return ptr;
}

bool define_methods(napi_env env, napi_value exports, const napi_property_descriptor *props, size_t n)
{
	return napi_define_properties(env, exports, n, props) == napi_ok;
}
