/*
 * The socket operations Node cannot do: transparent listeners, SO_ORIGINAL_DST, marked upstream
 * sockets, listeners inside another network namespace, and socket pairs for native relays.
 */
#define _GNU_SOURCE
#include "glue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HINT_TRANSPARENT "IP_TRANSPARENT and SO_MARK need CAP_NET_ADMIN"

static bool ipv4_arg(napi_env env, napi_value v, struct in_addr *addr, char *text, size_t len, const char *what)
{
	if (!arg_string(env, v, text, len, what))
		return false;
	if (inet_pton(AF_INET, text, addr) != 1) {
		throw_type(env, "%s: %s is not an IPv4 address", what, text);
		return false;
	}
	return true;
}

static int set_int(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value)) ? errno : 0;
}

/*
 * A non-blocking TCP socket with IP_TRANSPARENT, which lets it accept connections for, and send
 * from, addresses that are not local: tc's bpf_sk_assign hands it SYNs for pod IPs. Returns the
 * fd, or throws; on failure nothing is left open.
 */
static int transparent_socket(napi_env env, const char *what)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int err;

	if (fd < 0) {
		throw_errno(env, errno, NULL, "%s: socket", what);
		return -1;
	}
	err = set_int(fd, SOL_IP, IP_TRANSPARENT, 1);
	if (err) {
		close(fd);
		throw_errno(env, err, HINT_TRANSPARENT, "%s: set IP_TRANSPARENT", what);
		return -1;
	}
	return fd;
}

/* The arguments both transparent calls take, (address, port, a number), and what errors call the socket. */
struct transparent_args {
	struct sockaddr_in addr;
	uint32_t port, number;
	char what[128]; /* "<role> <ip>:<port>" */
};

/* Reads (address, port, number) under their names, then opens the transparent socket; -1 after throwing. */
static int transparent_args_socket(napi_env env, napi_callback_info info, const char *const names[3], const char *role,
				   struct transparent_args *a)
{
	napi_value argv[3];
	char ip[64];

	a->addr = (struct sockaddr_in){ .sin_family = AF_INET };
	if (!args(env, info, 3, argv) || !ipv4_arg(env, argv[0], &a->addr.sin_addr, ip, sizeof(ip), names[0]) ||
	    !arg_u32(env, argv[1], &a->port, names[1]) || !arg_u32(env, argv[2], &a->number, names[2]))
		return -1;
	if (a->port > 0xffff) {
		throw_type(env, "port %u is out of range", a->port);
		return -1;
	}
	a->addr.sin_port = htons((uint16_t)a->port);
	snprintf(a->what, sizeof(a->what), "%s %s:%u", role, ip, a->port);
	return transparent_socket(env, a->what);
}

/* transparentListen(ip, port, backlog) -> fd, for net.Server#listen({ fd }). */
static napi_value transparent_listen(napi_env env, napi_callback_info info)
{
	static const char *const names[3] = { "ip", "port", "backlog" };
	struct transparent_args a;
	int fd = transparent_args_socket(env, info, names, "transparent listener", &a), err;

	if (fd < 0)
		return NULL;
	/* REUSEPORT lets a new agent bind while the old one drains its listener during an upgrade. */
	err = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (!err)
		err = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
	if (!err && bind(fd, (struct sockaddr *)&a.addr, sizeof(a.addr)))
		err = errno;
	if (!err && listen(fd, (int)a.number))
		err = errno;
	if (err) {
		close(fd);
		return throw_errno(env, err, err == EADDRINUSE ? "another socket without SO_REUSEPORT holds the port" : NULL,
				   "%s", a.what);
	}
	return make_u32(env, (uint32_t)fd);
}

/*
 * transparentSocket(sourceIp, sourcePort, mark) -> fd of an unconnected, non-blocking socket bound
 * to sourceIp, for an upstream connection that keeps the client's address. Node connects it:
 * new net.Socket({ fd }).connect(port, host).
 */
static napi_value transparent_upstream(napi_env env, napi_callback_info info)
{
	static const char *const names[3] = { "sourceIp", "sourcePort", "mark" };
	struct transparent_args a;
	int fd = transparent_args_socket(env, info, names, "transparent upstream socket from", &a), err = 0;

	if (fd < 0)
		return NULL;
	if (a.number)
		err = set_int(fd, SOL_SOCKET, SO_MARK, (int)a.number);
	/*
	 * With port 0, defer the choice of source port to connect(), which can then reuse a port
	 * towards different destinations instead of reserving one for the socket's lifetime.
	 */
	if (!err && !a.port)
		err = set_int(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1);
	if (!err && bind(fd, (struct sockaddr *)&a.addr, sizeof(a.addr)))
		err = errno;
	if (err) {
		close(fd);
		return throw_errno(env, err, err == EPERM ? HINT_TRANSPARENT : NULL, "%s", a.what);
	}
	return make_u32(env, (uint32_t)fd);
}

/*
 * originalDst(fd) -> { address, port } or null. Answered by Ambit's cgroup/getsockopt program for
 * redirected pod connections, else by conntrack (iptables REDIRECT). null: nobody knows one
 * (ENOENT from conntrack, ENOPROTOOPT without nf_conntrack).
 */
static napi_value original_dst(napi_env env, napi_callback_info info)
{
	struct sockaddr_in sa = {};
	socklen_t len = sizeof(sa);
	char text[INET_ADDRSTRLEN];
	napi_value argv[1], out;
	uint32_t fd;

	if (!args(env, info, 1, argv) || !arg_u32(env, argv[0], &fd, "fd"))
		return NULL;
	if (getsockopt((int)fd, SOL_IP, SO_ORIGINAL_DST, &sa, &len)) {
		if (errno != ENOENT && errno != ENOPROTOOPT)
			return throw_errno(env, errno, NULL, "getsockopt(SO_ORIGINAL_DST) on fd %u", fd);
		napi_get_null(env, &out);
		return out;
	}
	if (napi_create_object(env, &out) != napi_ok)
		return NULL;
	inet_ntop(AF_INET, &sa.sin_addr, text, sizeof(text));
	set_prop(env, out, "address", make_string(env, text));
	set_prop(env, out, "port", make_u32(env, ntohs(sa.sin_port)));
	return out;
}

/*
 * netnsListen(netnsPath, ip, port, backlog) -> fd of a listening socket created inside the network
 * namespace at netnsPath (a /proc/<pid>/ns/net or /run/netns file), for net.Server#listen({ fd }). A
 * socket belongs to the namespace it was created in, so this thread enters that namespace for the
 * socket() call only and returns to its own before anything else runs on it; the listener then
 * serves that pod's loopback from the agent's process.
 */
static napi_value netns_listen(napi_env env, napi_callback_info info)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	uint32_t port, backlog;
	napi_value argv[4];
	char path[4096], ip[64], what[4300];
	int own, target, fd = -1, err = 0;

	if (!args(env, info, 4, argv) || !arg_string(env, argv[0], path, sizeof(path), "netnsPath") ||
	    !ipv4_arg(env, argv[1], &sa.sin_addr, ip, sizeof(ip), "ip") || !arg_u32(env, argv[2], &port, "port") ||
	    !arg_u32(env, argv[3], &backlog, "backlog"))
		return NULL;
	if (port > 0xffff)
		return throw_type(env, "port %u is out of range", port);
	sa.sin_port = htons((uint16_t)port);
	snprintf(what, sizeof(what), "listener %s:%u in network namespace %s", ip, port, path);
	own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (own < 0)
		return throw_errno(env, errno, NULL, "%s: open this thread's namespace", what);
	target = open(path, O_RDONLY | O_CLOEXEC);
	if (target < 0) {
		err = errno;
		close(own);
		return throw_errno(env, err, err == ENOENT ? "the pod's sandbox is gone" : NULL, "%s: open", what);
	}
	if (setns(target, CLONE_NEWNET)) {
		err = errno;
		close(target);
		close(own);
		return throw_errno(env, err, err == EPERM ? "entering a network namespace needs CAP_SYS_ADMIN" : NULL, "%s: setns", what);
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		err = errno;
	/* Back before anything else: Node's main thread must not stay in a pod's namespace. */
	if (setns(own, CLONE_NEWNET)) {
		fprintf(stderr, "ambit: %s: cannot return to the agent's own network namespace: %s\n", what, strerror(errno));
		abort();
	}
	close(target);
	close(own);
	if (fd < 0)
		return throw_errno(env, err, NULL, "%s: socket", what);
	if (set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) == 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    listen(fd, (int)backlog) == 0)
		return make_u32(env, (uint32_t)fd);
	err = errno;
	close(fd);
	return throw_errno(env, err, err == EADDRINUSE ? "something in the pod already listens there" : NULL, "%s", what);
}

/*
 * socketPair() -> [fd, fd]: a connected, non-blocking AF_UNIX stream pair. One end goes to a native
 * relay (an HBONE stream of the engine), the other becomes a net.Socket that Node's HTTP server parses:
 * the way an L7 proxy sits on a tunnel without JavaScript copying its bytes twice.
 */
static napi_value socket_pair(napi_env env, napi_callback_info info)
{
	napi_value argv[1], out;
	int fds[2];

	if (!args(env, info, 0, argv))
		return NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds))
		return throw_errno(env, errno, "the agent may be out of file descriptors (ulimit -n)", "socketpair");
	if (napi_create_array_with_length(env, 2, &out) != napi_ok ||
	    napi_set_element(env, out, 0, make_u32(env, (uint32_t)fds[0])) != napi_ok ||
	    napi_set_element(env, out, 1, make_u32(env, (uint32_t)fds[1])) != napi_ok) {
		close(fds[0]);
		close(fds[1]);
		return NULL;
	}
	return out;
}

bool register_sockets(napi_env env, napi_value exports)
{
	static const napi_property_descriptor props[] = {
		METHOD("transparentListen", transparent_listen),
		METHOD("transparentSocket", transparent_upstream),
		METHOD("originalDst", original_dst),
		METHOD("netnsListen", netns_listen),
		METHOD("socketPair", socket_pair),
	};

	return define_methods(env, exports, props, sizeof(props) / sizeof(props[0]));
}
