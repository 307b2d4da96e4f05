/* The handles the addon gives JavaScript: a loaded BPF object and an open map, both type-tagged. */
#ifndef AMBIT_HANDLES_H
#define AMBIT_HANDLES_H

#include "glue.h"
#include <linux/types.h>

struct ambit_object {
	struct bpf_object *obj;	/* NULL once closed */
};

struct ambit_map {
	int fd;			/* -1 once closed */
	__u32 type, key_size, value_size, max_entries;
	__u32 value_bytes;	/* what a lookup or update moves: value_size, or per-CPU slots */
};

extern const napi_type_tag OBJECT_TAG;
extern const napi_type_tag MAP_TAG;

/* The open object behind a handle, or NULL with an exception pending. */
struct ambit_object *object_arg(napi_env env, napi_value v);
/* The fd of a program of an open object, or -1 with an exception pending. */
int program_fd(napi_env env, struct ambit_object *o, const char *name);
struct ambit_map *map_arg(napi_env env, napi_value v);

#endif
