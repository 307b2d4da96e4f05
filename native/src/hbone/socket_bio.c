/*
 * A connection's socket as OpenSSL's BIO: a read shorter than asked emptied the socket's receive
 * queue, so the next read is skipped (it could only say EAGAIN) until edge-triggered epoll reports new
 * bytes or the peer's end (worker.c clears rx_drained). On a keep-alive connection that is one system
 * call saved per wake-up, on both agents.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <openssl/bio.h>
#include <unistd.h>

static BIO_METHOD *method;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

static int bio_read(BIO *b, char *buf, int len)
{
	struct hb_conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	if (c->rx_drained && !c->rx_hup) {
		BIO_set_retry_read(b);
		errno = EAGAIN;
		return -1;
	}
	n = read(c->fd, buf, (size_t)len);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR) {
			c->rx_drained = errno == EAGAIN;
			BIO_set_retry_read(b);
		}
		return -1;
	}
	if (n == 0)
		c->rx_eof = true;
	c->rx_drained = n < len;
	return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len)
{
	struct hb_conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = write(c->fd, buf, (size_t)len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		BIO_set_retry_write(b);
	return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct hb_conn *c = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* every write went to the socket already */
	case BIO_CTRL_EOF:
		/* OpenSSL tells a peer that closed without close_notify apart from a failed read by this. */
		return c && c->rx_eof;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int bio_destroy(BIO *b)
{
	/* conn.c owns the fd and closes it. */
	BIO_set_data(b, NULL);
	return 1;
}

static void make_method(void)
{
	method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "ambit hbone socket");
	if (!method || !BIO_meth_set_read(method, bio_read) || !BIO_meth_set_write(method, bio_write) ||
	    !BIO_meth_set_ctrl(method, bio_ctrl) || !BIO_meth_set_create(method, bio_create) || !BIO_meth_set_destroy(method, bio_destroy))
		HB_FATAL("OpenSSL would not make the socket BIO method");
}

BIO *hb_socket_bio(struct hb_conn *c)
{
	BIO *b;

	pthread_once(&method_once, make_method);
	b = BIO_new(method);
	if (b)
		BIO_set_data(b, c);
	return b;
}
