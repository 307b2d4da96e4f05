/* Loading BPF objects with their maps pinned under one bpffs directory, and handing out map handles. */
#define _GNU_SOURCE
#include "handles.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

const napi_type_tag OBJECT_TAG = { 0x616d626974626f62ULL, 0x6a6563740000001ULL };
const napi_type_tag MAP_TAG = { 0x616d6269746d6170ULL, 0x68616e646c65001ULL };

#define HINT_BPFFS "bpffs must be mounted there (mount -t bpf bpf /sys/fs/bpf)"

static void object_finalize(napi_env env, void *data, void *hint)
{
	struct ambit_object *o = data;

	(void)env;
	(void)hint;
	bpf_object__close(o->obj);
	free(o);
}

struct ambit_object *object_arg(napi_env env, napi_value v)
{
	struct ambit_object *o = unwrap_handle(env, v, &OBJECT_TAG, "a BPF object");

	if (o && !o->obj) {
		throw_type(env, "the BPF object is closed");
		return NULL;
	}
	return o;
}

int program_fd(napi_env env, struct ambit_object *o, const char *name)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(o->obj, name);
	char names[512] = "";
	size_t used = 0;

	if (prog)
		return bpf_program__fd(prog);
	bpf_object__for_each_program(prog, o->obj) {
		if (used < sizeof(names))
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", used ? ", " : "",
						 bpf_program__name(prog));
	}
	throw_errno(env, ENOENT, NULL, "program %s is not in %s (it has: %s)", name, bpf_object__name(o->obj), names);
	return -1;
}

/* mkdir -p, for the pin root (bpffs allows directories). */
static int make_dirs(const char *path)
{
	char buf[512];

	if (strlen(path) >= sizeof(buf))
		return ENAMETOOLONG;
	strcpy(buf, path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return errno;
		*p = '/';
	}
	return mkdir(buf, 0700) && errno != EEXIST ? errno : 0;
}

/*
 * A pin whose map has another definition than this object declares (left by an agent version whose
 * map differed) cannot be reused, and libbpf would then refuse the whole object: every node's agent
 * would fail to start after such an upgrade. The pin is removed instead, so that loading creates the
 * map anew (its contents start over), and the map's name is appended to `replaced`. Programs still
 * attached with the old map keep it until the agent updates their links, which it does for every
 * link whose program differs in code or maps (attach.c). Returns 0 or a negative errno.
 */
static int drop_incompatible_pins(napi_env env, struct bpf_object *obj, napi_value replaced, char *failed, size_t len)
{
	struct bpf_map *map;
	uint32_t n = 0;

	bpf_object__for_each_map(map, obj) {
		const char *pin = bpf_map__pin_path(map);
		struct bpf_map_info info = {};
		__u32 info_len = sizeof(info);
		int fd, err;

		if (!pin)
			continue;
		snprintf(failed, len, "%s", pin);
		fd = bpf_obj_get(pin);
		if (fd < 0) {
			if (errno == ENOENT)
				continue;
			return -errno;
		}
		err = bpf_obj_get_info_by_fd(fd, &info, &info_len) ? -errno : 0;
		close(fd);
		if (err)
			return err;
		if (info.type == bpf_map__type(map) && info.key_size == bpf_map__key_size(map) &&
		    info.value_size == bpf_map__value_size(map) && info.max_entries == bpf_map__max_entries(map) &&
		    info.map_flags == bpf_map__map_flags(map))
			continue;
		if (unlink(pin))
			return -errno;
		napi_set_element(env, replaced, n++, make_string(env, bpf_map__name(map)));
	}
	return 0;
}

/*
 * loadObject(path, pinRoot) -> { handle, replacedPins }: opens and loads a BPF ELF object. Every map
 * declared with LIBBPF_PIN_BY_NAME is pinned as <pinRoot>/<map name>, or, if already pinned with the
 * same definition, reused: that is how map contents survive an agent restart or upgrade, and how two
 * objects loaded with the same pin root share their maps. replacedPins names the maps whose pins had
 * another definition and were replaced (drop_incompatible_pins).
 */
static napi_value load_object(napi_env env, napi_callback_info info)
{
	char path[512], pin_root[256], pin[512] = "";
	struct ambit_object *o;
	struct bpf_object *obj;
	struct statfs fs;
	napi_value argv[2], handle, replaced, out;
	int err;

	if (!args(env, info, 2, argv) || !arg_string(env, argv[0], path, sizeof(path), "path") ||
	    !arg_string(env, argv[1], pin_root, sizeof(pin_root), "pinRoot"))
		return NULL;
	err = make_dirs(pin_root);
	if (err)
		return throw_errno(env, err, err == EPERM || err == EACCES ? NULL : HINT_BPFFS,
				   "create pin directory %s", pin_root);
	if (statfs(pin_root, &fs) || fs.f_type != BPF_FS_MAGIC)
		return throw_errno(env, ENOTSUP, HINT_BPFFS, "pin directory %s is not on a bpf filesystem", pin_root);

	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root);
	log_reset();
	obj = bpf_object__open_file(path, &opts);
	if (!obj)
		return throw_errno(env, errno, errno == ENOENT ? "build it first (make bpf)" : NULL,
				   "open BPF object %s%s%s", path, *log_tail() ? ": " : "", log_tail());
	if (napi_create_array(env, &replaced) != napi_ok || napi_create_object(env, &out) != napi_ok) {
		bpf_object__close(obj);
		return NULL;
	}
	err = drop_incompatible_pins(env, obj, replaced, pin, sizeof(pin));
	if (err) {
		throw_errno(env, -err, NULL, "check the pinned map %s against %s", pin, path);
		bpf_object__close(obj);
		return NULL;
	}
	err = bpf_object__load(obj);
	if (err) {
		throw_errno(env, -err, NULL, "load BPF object %s (pins in %s)\n%s", path, pin_root, log_tail());
		bpf_object__close(obj);
		return NULL;
	}
	o = malloc(sizeof(*o));
	if (!o) {
		bpf_object__close(obj);
		return throw_errno(env, ENOMEM, NULL, "load BPF object %s", path);
	}
	o->obj = obj;
	handle = wrap_handle(env, o, &OBJECT_TAG, object_finalize);
	if (!handle) {
		bpf_object__close(obj);
		free(o);
		return NULL;
	}
	set_prop(env, out, "handle", handle);
	set_prop(env, out, "replacedPins", replaced);
	return out;
}

/* closeObject(obj): closes the object's fds now. Pinned maps and pinned links stay. */
static napi_value close_object(napi_env env, napi_callback_info info)
{
	struct ambit_object *o;
	napi_value argv[1];

	if (!args(env, info, 1, argv) || !(o = object_arg(env, argv[0])))
		return NULL;
	bpf_object__close(o->obj);
	o->obj = NULL;
	return NULL;
}

/* programNames(obj): the programs an object holds, to name in errors and tests. */
static napi_value program_names(napi_env env, napi_callback_info info)
{
	struct bpf_program *prog;
	struct ambit_object *o;
	napi_value argv[1], out;
	uint32_t i = 0;

	if (!args(env, info, 1, argv) || !(o = object_arg(env, argv[0])) || napi_create_array(env, &out) != napi_ok)
		return NULL;
	bpf_object__for_each_program(prog, o->obj)
		napi_set_element(env, out, i++, make_string(env, bpf_program__name(prog)));
	return out;
}

static void map_finalize(napi_env env, void *data, void *hint)
{
	struct ambit_map *m = data;

	(void)env;
	(void)hint;
	if (m->fd >= 0)
		close(m->fd);
	free(m);
}

struct ambit_map *map_arg(napi_env env, napi_value v)
{
	struct ambit_map *m = unwrap_handle(env, v, &MAP_TAG, "a BPF map");

	if (m && m->fd < 0) {
		throw_type(env, "the BPF map is closed");
		return NULL;
	}
	return m;
}

static bool is_per_cpu(__u32 type)
{
	return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

/* Takes ownership of fd. Returns { handle, name, type, keySize, valueSize, maxEntries, valueBytes, possibleCpus }. */
static napi_value map_handle(napi_env env, int fd, const char *what)
{
	struct bpf_map_info mi = {};
	__u32 len = sizeof(mi);
	struct ambit_map *m;
	napi_value out, handle;
	int cpus = libbpf_num_possible_cpus();

	if (bpf_obj_get_info_by_fd(fd, &mi, &len)) {
		int err = errno;

		close(fd);
		return throw_errno(env, err, NULL, "read map info of %s", what);
	}
	m = malloc(sizeof(*m));
	if (!m) {
		close(fd);
		return throw_errno(env, ENOMEM, NULL, "open map %s", what);
	}
	*m = (struct ambit_map){ .fd = fd, .type = mi.type, .key_size = mi.key_size,
				 .value_size = mi.value_size, .max_entries = mi.max_entries };
	/* Per-CPU maps move one 8-byte-aligned slot per possible CPU in every lookup and update. */
	m->value_bytes = is_per_cpu(mi.type) ? ((mi.value_size + 7) & ~7u) * (__u32)cpus : mi.value_size;
	handle = wrap_handle(env, m, &MAP_TAG, map_finalize);
	if (!handle || napi_create_object(env, &out) != napi_ok) {
		if (!handle)
			map_finalize(env, m, NULL);
		return NULL;
	}
	set_prop(env, out, "handle", handle);
	set_prop(env, out, "name", make_string(env, mi.name));
	set_prop(env, out, "type", make_u32(env, mi.type));
	set_prop(env, out, "keySize", make_u32(env, mi.key_size));
	set_prop(env, out, "valueSize", make_u32(env, mi.value_size));
	set_prop(env, out, "maxEntries", make_u32(env, mi.max_entries));
	set_prop(env, out, "valueBytes", make_u32(env, m->value_bytes));
	set_prop(env, out, "possibleCpus", make_u32(env, is_per_cpu(mi.type) ? (uint32_t)cpus : 1));
	return out;
}

/* objectMap(obj, name): a handle on one of a loaded object's maps, valid after the object closes. */
static napi_value object_map(napi_env env, napi_callback_info info)
{
	struct ambit_object *o;
	struct bpf_map *map;
	napi_value argv[2];
	char name[128];
	int fd;

	if (!args(env, info, 2, argv) || !(o = object_arg(env, argv[0])) ||
	    !arg_string(env, argv[1], name, sizeof(name), "name"))
		return NULL;
	map = bpf_object__find_map_by_name(o->obj, name);
	if (!map)
		return throw_errno(env, ENOENT, NULL, "map %s is not in %s", name, bpf_object__name(o->obj));
	fd = fcntl(bpf_map__fd(map), F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return throw_errno(env, errno, NULL, "duplicate fd of map %s", name);
	return map_handle(env, fd, name);
}

/* openPinnedMap(path): a handle on a pinned map, without loading any program. */
static napi_value open_pinned_map(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	char path[512];
	int fd;

	if (!args(env, info, 1, argv) || !arg_string(env, argv[0], path, sizeof(path), "path"))
		return NULL;
	fd = bpf_obj_get(path);
	if (fd < 0)
		return throw_errno(env, errno, errno == ENOENT ? "is the agent running (it pins its maps)?" : NULL,
				   "open pinned map %s", path);
	return map_handle(env, fd, path);
}

/* closeMap(map): closes the map's fd now rather than at garbage collection. */
static napi_value close_map(napi_env env, napi_callback_info info)
{
	struct ambit_map *m;
	napi_value argv[1];

	if (!args(env, info, 1, argv) || !(m = map_arg(env, argv[0])))
		return NULL;
	close(m->fd);
	m->fd = -1;
	return NULL;
}

bool register_objects(napi_env env, napi_value exports)
{
	static const napi_property_descriptor props[] = {
		METHOD("loadObject", load_object),	 METHOD("closeObject", close_object),
		METHOD("programNames", program_names), METHOD("objectMap", object_map),
		METHOD("openPinnedMap", open_pinned_map), METHOD("closeMap", close_map),
	};

	return define_methods(env, exports, props, sizeof(props) / sizeof(props[0]));
}
