/* Attaching programs to cgroups, tcx and classic tc idempotently, with links pinned on bpffs. */
#define _GNU_SOURCE
#include "handles.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * tcx arrived in Linux 6.6, after the UAPI headers Debian 12 ships (6.1). These are the kernel's
 * ABI values; the link info of a tcx link starts its union with { ifindex, attach_type }.
 */
#define AMBIT_TCX_INGRESS 46
#define AMBIT_LINK_TYPE_TCX 11
struct tcx_link_info {
	__u32 ifindex;
	__u32 attach_type;
};

#define HINT_TCX "tcx links need Linux 6.6 or later; attach with classic tc instead"
#define HINT_NO_DEVICE "no such interface in the agent's network namespace"

/* What a pinned link must be attached to for attachX() to treat it as ours. */
struct link_target {
	__u32 link_type;
	__u32 attach_type;
	__u64 cgroup_id;	/* cgroup links */
	__u32 ifindex;		/* tcx links */
};

enum outcome { ATTACHED, UNCHANGED, UPDATED, REATTACHED };
static const char *const outcome_names[] = { "attached", "unchanged", "updated", "reattached" };

/* A program's identity for "is this already attached?": its tag (a hash of its code) and its maps. */
struct prog_identity {
	__u8 tag[BPF_TAG_SIZE];
	__u32 nr_maps;
	__u32 maps[16];
};

static int prog_identity(int prog_fd, struct prog_identity *id)
{
	struct bpf_prog_info pi = {};
	__u32 len = sizeof(pi);

	memset(id, 0, sizeof(*id));
	pi.nr_map_ids = sizeof(id->maps) / sizeof(id->maps[0]);
	pi.map_ids = (__u64)(unsigned long)id->maps;
	if (bpf_obj_get_info_by_fd(prog_fd, &pi, &len))
		return -errno;
	memcpy(id->tag, pi.tag, sizeof(id->tag));
	id->nr_maps = pi.nr_map_ids;
	return 0;
}

/*
 * Same code and same maps. Comparing the maps too matters: if the map pins were removed and the
 * object reloaded, an old program with the same code would still feed the orphaned maps.
 */
static int same_program(__u32 attached_id, int prog_fd, bool *same)
{
	struct prog_identity a, b;
	int fd = bpf_prog_get_fd_by_id(attached_id);
	int err;

	if (fd < 0)
		return -errno;
	err = prog_identity(fd, &a);
	close(fd);
	if (!err)
		err = prog_identity(prog_fd, &b);
	if (!err)
		*same = a.nr_maps == b.nr_maps && !memcmp(a.tag, b.tag, sizeof(a.tag)) &&
			!memcmp(a.maps, b.maps, sizeof(a.maps[0]) * (a.nr_maps < 16 ? a.nr_maps : 16));
	return err;
}

/* Does the pinned link still hold the target? A link whose cgroup or device is gone is defunct. */
static bool link_matches(const struct bpf_link_info *li, const struct link_target *want)
{
	struct tcx_link_info tcx;

	if (li->type != want->link_type)
		return false;
	if (want->link_type == BPF_LINK_TYPE_CGROUP)
		return li->cgroup.cgroup_id == want->cgroup_id && li->cgroup.attach_type == want->attach_type;
	memcpy(&tcx, &li->raw_tracepoint, sizeof(tcx));
	return tcx.ifindex == want->ifindex && tcx.attach_type == want->attach_type;
}

static napi_value attach_result(napi_env env, enum outcome outcome, __u32 id, const char *id_name)
{
	napi_value out;

	if (napi_create_object(env, &out) != napi_ok)
		return NULL;
	set_prop(env, out, "outcome", make_string(env, outcome_names[outcome]));
	set_prop(env, out, id_name, make_u32(env, id));
	return out;
}

/*
 * The pinned-link protocol shared by cgroup and tcx attachments:
 *   no pin                      -> create a link, pin it                  ("attached")
 *   pin for the same target and
 *     the same program          -> nothing                                ("unchanged")
 *     another program           -> bpf_link_update(), atomically in place ("updated")
 *   pin for a defunct target    -> drop the pin, create and pin anew      ("reattached")
 * bpf_link_update() swaps the program with no window in which the hook is empty, which is what
 * makes an agent upgrade safe for live traffic.
 */
static napi_value attach_pinned(napi_env env, int prog_fd, int target_fd, const struct link_target *want,
				const char *pin, const char *what, const char *hint)
{
	enum outcome outcome = ATTACHED;
	struct bpf_link_info li = {};
	__u32 len = sizeof(li);
	bool same = false;
	int link_fd, err;

	link_fd = bpf_obj_get(pin);
	if (link_fd < 0 && errno != ENOENT)
		return throw_errno(env, errno, NULL, "open link pin %s", pin);
	if (link_fd >= 0) {
		if (bpf_obj_get_info_by_fd(link_fd, &li, &len)) {
			err = errno;
			close(link_fd);
			return throw_errno(env, err, NULL, "read link %s", pin);
		}
		if (link_matches(&li, want)) {
			err = same_program(li.prog_id, prog_fd, &same);
			if (!err && !same && bpf_link_update(link_fd, prog_fd, NULL))
				err = -errno;
			close(link_fd);
			if (err)
				return throw_errno(env, -err, hint, "update %s (link %s)", what, pin);
			return attach_result(env, same ? UNCHANGED : UPDATED, li.id, "linkId");
		}
		close(link_fd);
		if (unlink(pin))
			return throw_errno(env, errno, NULL, "remove defunct link pin %s", pin);
		outcome = REATTACHED;
	}

	link_fd = bpf_link_create(prog_fd, target_fd, want->attach_type, NULL);
	if (link_fd < 0)
		return throw_errno(env, -link_fd, hint, "attach %s", what);
	/* Until pinned, the link lives only as long as this fd: a failed pin leaves nothing attached. */
	err = bpf_obj_pin(link_fd, pin) ? -errno : 0;
	if (!err)
		err = bpf_obj_get_info_by_fd(link_fd, &li, &len) ? -errno : 0;
	close(link_fd);
	if (err)
		return throw_errno(env, -err, NULL, "pin link of %s at %s", what, pin);
	return attach_result(env, outcome, li.id, "linkId");
}

/* attachCgroup(obj, program, cgroupPath, linkPin) -> { outcome, linkId } */
static napi_value attach_cgroup(napi_env env, napi_callback_info info)
{
	char prog_name[128], cgroup[512], pin[512], what[768];
	struct ambit_object *o;
	struct link_target want = { .link_type = BPF_LINK_TYPE_CGROUP };
	struct stat st;
	napi_value argv[4], out;
	int prog_fd, cg_fd;

	if (!args(env, info, 4, argv) || !(o = object_arg(env, argv[0])) ||
	    !arg_string(env, argv[1], prog_name, sizeof(prog_name), "program") ||
	    !arg_string(env, argv[2], cgroup, sizeof(cgroup), "cgroupPath") ||
	    !arg_string(env, argv[3], pin, sizeof(pin), "linkPin"))
		return NULL;
	prog_fd = program_fd(env, o, prog_name);
	if (prog_fd < 0)
		return NULL;
	snprintf(what, sizeof(what), "%s to cgroup %s", prog_name, cgroup);
	cg_fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg_fd < 0)
		return throw_errno(env, errno, errno == ENOENT ? "the cgroup does not exist (is the pod running?)" : NULL,
				   "attach %s", what);
	/* On cgroup2 the id the kernel reports for a cgroup is its directory's inode number. */
	if (fstat(cg_fd, &st)) {
		close(cg_fd);
		return throw_errno(env, errno, NULL, "attach %s", what);
	}
	want.cgroup_id = st.st_ino;
	want.attach_type = bpf_program__expected_attach_type(bpf_object__find_program_by_name(o->obj, prog_name));
	out = attach_pinned(env, prog_fd, cg_fd, &want, pin, what,
			    "the agent needs CAP_BPF and CAP_NET_ADMIN, and the path must be on cgroup2");
	close(cg_fd);
	return out;
}

static bool ifindex_arg(napi_env env, napi_value v, char *ifname, size_t len, unsigned int *ifindex)
{
	if (!arg_string(env, v, ifname, len, "ifname"))
		return false;
	*ifindex = if_nametoindex(ifname);
	if (!*ifindex) {
		throw_errno(env, errno, HINT_NO_DEVICE, "find interface %s", ifname);
		return false;
	}
	return true;
}

/* attachTcxIngress(obj, program, ifname, linkPin) -> { outcome, linkId } */
static napi_value attach_tcx_ingress(napi_env env, napi_callback_info info)
{
	char prog_name[128], ifname[IF_NAMESIZE + 1], pin[512], what[256];
	struct link_target want = { .link_type = AMBIT_LINK_TYPE_TCX, .attach_type = AMBIT_TCX_INGRESS };
	struct ambit_object *o;
	napi_value argv[4];
	int prog_fd;

	if (!args(env, info, 4, argv) || !(o = object_arg(env, argv[0])) ||
	    !arg_string(env, argv[1], prog_name, sizeof(prog_name), "program") ||
	    !ifindex_arg(env, argv[2], ifname, sizeof(ifname), &want.ifindex) ||
	    !arg_string(env, argv[3], pin, sizeof(pin), "linkPin"))
		return NULL;
	prog_fd = program_fd(env, o, prog_name);
	if (prog_fd < 0)
		return NULL;
	snprintf(what, sizeof(what), "%s to tcx ingress of %s", prog_name, ifname);
	return attach_pinned(env, prog_fd, (int)want.ifindex, &want, pin, what, HINT_TCX);
}

/* detachLink(linkPin) -> whether a pin was there. Removing the last reference detaches the link. */
static napi_value detach_link(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	char pin[512];
	int err;

	if (!args(env, info, 1, argv) || !arg_string(env, argv[0], pin, sizeof(pin), "linkPin"))
		return NULL;
	err = unlink(pin) ? errno : 0;
	if (err && err != ENOENT)
		return throw_errno(env, err, NULL, "remove link pin %s", pin);
	napi_get_boolean(env, err == 0, &out);
	return out;
}

/*
 * attachTcIngress(obj, program, ifname, handle, priority) -> { outcome, progId }
 * Classic cls_bpf in direct-action mode on a clsact qdisc, for kernels without tcx. The filter is
 * owned by the qdisc, not by a pin: (handle, priority) names it, and BPF_TC_F_REPLACE swaps the
 * program in place.
 */
static napi_value attach_tc_ingress(napi_env env, napi_callback_info info)
{
	char prog_name[128], ifname[IF_NAMESIZE + 1];
	enum outcome outcome = ATTACHED;
	struct ambit_object *o;
	unsigned int ifindex;
	uint32_t handle, priority;
	bool same = false;
	napi_value argv[5];
	int prog_fd, err;

	if (!args(env, info, 5, argv) || !(o = object_arg(env, argv[0])) ||
	    !arg_string(env, argv[1], prog_name, sizeof(prog_name), "program") ||
	    !ifindex_arg(env, argv[2], ifname, sizeof(ifname), &ifindex) ||
	    !arg_u32(env, argv[3], &handle, "handle") || !arg_u32(env, argv[4], &priority, "priority"))
		return NULL;
	if (!handle || !priority || priority > 0xffff)
		return throw_type(env, "handle must be > 0 and priority in 1..65535");
	prog_fd = program_fd(env, o, prog_name);
	if (prog_fd < 0)
		return NULL;

	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex, .attach_point = BPF_TC_INGRESS);
	err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return throw_errno(env, -err, HINT_NET_ADMIN, "create clsact qdisc on %s", ifname);

	LIBBPF_OPTS(bpf_tc_opts, query, .handle = handle, .priority = priority);
	err = bpf_tc_query(&hook, &query);
	if (!err) {
		err = same_program(query.prog_id, prog_fd, &same);
		if (err)
			return throw_errno(env, -err, NULL, "inspect tc filter on %s", ifname);
		if (same)
			return attach_result(env, UNCHANGED, query.prog_id, "progId");
		outcome = UPDATED;
	} else if (err != -ENOENT && err != -EINVAL) {
		/* EINVAL: the qdisc has no filter chain yet (tc_get_tfilter), so no filter either. */
		return throw_errno(env, -err, HINT_NET_ADMIN, "query tc filter on %s", ifname);
	}

	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority, .prog_fd = prog_fd,
		    .flags = BPF_TC_F_REPLACE);
	err = bpf_tc_attach(&hook, &opts);
	if (err)
		return throw_errno(env, -err, HINT_NET_ADMIN, "attach %s to tc ingress of %s", prog_name, ifname);
	return attach_result(env, outcome, opts.prog_id, "progId");
}

/*
 * detachTcIngress(ifname, handle, priority, removeQdisc) -> whether the filter was there.
 * removeQdisc deletes the whole clsact qdisc, other users' filters included: only for devices
 * Ambit owns. A device that is gone has nothing left to detach.
 */
static napi_value detach_tc_ingress(napi_env env, napi_callback_info info)
{
	char ifname[IF_NAMESIZE + 1];
	uint32_t handle, priority;
	bool remove_qdisc;
	unsigned int ifindex;
	napi_value argv[4], out;
	int err;

	if (!args(env, info, 4, argv) || !arg_string(env, argv[0], ifname, sizeof(ifname), "ifname") ||
	    !arg_u32(env, argv[1], &handle, "handle") || !arg_u32(env, argv[2], &priority, "priority") ||
	    !arg_bool(env, argv[3], &remove_qdisc, "removeQdisc"))
		return NULL;
	ifindex = if_nametoindex(ifname);
	if (!ifindex) {
		napi_get_boolean(env, false, &out);
		return out;
	}
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
	err = bpf_tc_detach(&hook, &opts);
	/* EINVAL: no clsact qdisc at all, so no filter either. */
	if (err && err != -ENOENT && err != -EINVAL)
		return throw_errno(env, -err, HINT_NET_ADMIN, "detach tc filter from %s", ifname);
	if (remove_qdisc) {
		int gone;

		hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
		gone = bpf_tc_hook_destroy(&hook);
		if (gone && gone != -ENOENT && gone != -EINVAL)
			return throw_errno(env, -gone, HINT_NET_ADMIN, "remove clsact qdisc of %s", ifname);
	}
	napi_get_boolean(env, err == 0, &out);
	return out;
}

bool register_attach(napi_env env, napi_value exports)
{
	static const napi_property_descriptor props[] = {
		METHOD("attachCgroup", attach_cgroup),
		METHOD("attachTcxIngress", attach_tcx_ingress),
		METHOD("detachLink", detach_link),
		METHOD("attachTcIngress", attach_tc_ingress),
		METHOD("detachTcIngress", detach_tc_ingress),
	};

	return define_methods(env, exports, props, sizeof(props) / sizeof(props[0]));
}
