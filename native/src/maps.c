/* Map element access for the agent: keys and values are Buffers laid out like the C structs. */
#define _GNU_SOURCE
#include "handles.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <stdlib.h>

static bool sized(napi_env env, size_t got, __u32 want, const char *what)
{
	if (got != want) {
		throw_type(env, "%s: expected %u bytes, got %zu", what, want, got);
		return false;
	}
	return true;
}

/* mapLookup(map, key) -> Buffer of valueBytes, or null when the key is absent. */
static napi_value map_lookup(napi_env env, napi_callback_info info)
{
	struct ambit_map *m;
	napi_value argv[2], out = NULL;
	void *key, *value;
	size_t key_len;

	if (!args(env, info, 2, argv) || !(m = map_arg(env, argv[0])) ||
	    !arg_buffer(env, argv[1], &key, &key_len, "key") || !sized(env, key_len, m->key_size, "key"))
		return NULL;
	if (napi_create_buffer(env, m->value_bytes, &value, &out) != napi_ok)
		return NULL;
	if (bpf_map_lookup_elem(m->fd, key, value)) {
		if (errno != ENOENT)
			return throw_errno(env, errno, NULL, "look up map element");
		napi_get_null(env, &out);
	}
	return out;
}

/* mapUpdate(map, key, value, flags): flags are BPF_ANY (0), BPF_NOEXIST (1), BPF_EXIST (2). */
static napi_value map_update(napi_env env, napi_callback_info info)
{
	struct ambit_map *m;
	napi_value argv[4];
	void *key, *value;
	size_t key_len, value_len;
	uint32_t flags;

	if (!args(env, info, 4, argv) || !(m = map_arg(env, argv[0])) ||
	    !arg_buffer(env, argv[1], &key, &key_len, "key") || !sized(env, key_len, m->key_size, "key") ||
	    !arg_buffer(env, argv[2], &value, &value_len, "value") ||
	    !sized(env, value_len, m->value_bytes, "value") || !arg_u32(env, argv[3], &flags, "flags"))
		return NULL;
	if (bpf_map_update_elem(m->fd, key, value, flags))
		return throw_errno(env, errno, errno == E2BIG ? "the map is full" : NULL, "update map element");
	return NULL;
}

/* mapDelete(map, key) -> whether the key was there. */
static napi_value map_delete(napi_env env, napi_callback_info info)
{
	struct ambit_map *m;
	napi_value argv[2], out;
	size_t key_len;
	void *key;
	int err;

	if (!args(env, info, 2, argv) || !(m = map_arg(env, argv[0])) ||
	    !arg_buffer(env, argv[1], &key, &key_len, "key") || !sized(env, key_len, m->key_size, "key"))
		return NULL;
	err = bpf_map_delete_elem(m->fd, key) ? errno : 0;
	if (err && err != ENOENT)
		return throw_errno(env, err, NULL, "delete map element");
	napi_get_boolean(env, err == 0, &out);
	return out;
}

/*
 * mapKeys(map) -> Buffer[]. A hash map being written while it is walked can restart the walk from
 * the first key (when the current key was deleted meanwhile), so the walk stops after max_entries
 * steps: a snapshot that may miss or repeat keys under churn, never an endless loop.
 */
static napi_value map_keys(napi_env env, napi_callback_info info)
{
	struct ambit_map *m;
	napi_value argv[1], out, buf;
	void *prev = NULL, *next;
	uint32_t n = 0;
	int err = 0;

	if (!args(env, info, 1, argv) || !(m = map_arg(env, argv[0])) || napi_create_array(env, &out) != napi_ok)
		return NULL;
	while (n < m->max_entries) {
		if (napi_create_buffer(env, m->key_size, &next, &buf) != napi_ok)
			return NULL;
		if (bpf_map_get_next_key(m->fd, prev, next)) {
			err = errno;
			break;
		}
		napi_set_element(env, out, n++, buf);
		prev = next;
	}
	if (err && err != ENOENT)
		return throw_errno(env, err, NULL, "walk map keys");
	return out;
}

bool register_maps(napi_env env, napi_value exports)
{
	static const napi_property_descriptor props[] = {
		METHOD("mapLookup", map_lookup),
		METHOD("mapUpdate", map_update),
		METHOD("mapDelete", map_delete),
		METHOD("mapKeys", map_keys),
	};

	return define_methods(env, exports, props, sizeof(props) / sizeof(props[0]));
}
