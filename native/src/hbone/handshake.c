/*
 * A connection's TLS and who is at the other end: the SSL set up for its role (ALPN h2, no SNI), the
 * handshake, then the checks that follow it (ALPN agreed, a SPIFFE id in the peer's certificate, and
 * the identity a client expects, or a server's per-identity cap and JavaScript's word on the chain).
 */
#define _GNU_SOURCE
#include "engine.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool hb_conn_tls_init(struct hb_conn *c, SSL_CTX *ssl_ctx)
{
	static const unsigned char alpn[] = { 2, 'h', '2' };
	BIO *bio;

	c->ssl = SSL_new(ssl_ctx);
	bio = c->ssl ? hb_socket_bio(c) : NULL;
	if (!bio || (c->role == HB_CLIENT && SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn)))) {
		BIO_free(bio);
		SSL_free(c->ssl);
		c->ssl = NULL;
		return false;
	}
	/* One BIO both ways: the SSL takes its one reference. */
	SSL_set_bio(c->ssl, bio, bio);
	/*
	 * Read ahead: OpenSSL reads what the socket holds into its buffer instead of a record's
	 * header and then its body, two reads per record (context.c sizes the buffer).
	 */
	SSL_set_read_ahead(c->ssl, 1);
	/* No SNI: Istio servers pick the certificate by the address dialled. */
	if (c->role == HB_SERVER)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	return true;
}

static void emit_peer(struct hb_conn *c, X509 *leaf)
{
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c->ssl);
	int n = chain ? sk_X509_num(chain) : 0;
	struct hb_event *ev = hb_event_new(HB_E_PEER, c->id, 0);

	ev->tag = c->tag;
	ev->text = hb_strdup(c->peer_identity);
	ev->text2 = hb_strdup(c->peer_address);
	ev->blobs = calloc((size_t)n + 1, sizeof(*ev->blobs));
	ev->blob_len = calloc((size_t)n + 1, sizeof(*ev->blob_len));
	if (!ev->blobs || !ev->blob_len)
		HB_FATAL("out of memory for a peer chain");
	/* Leaf first; a server's view of the chain leaves the leaf out, a client's includes it. */
	for (int i = -1; i < n; i++) {
		X509 *x = i < 0 ? leaf : sk_X509_value(chain, i);
		unsigned char *der = NULL;
		int len;

		if (i >= 0 && X509_cmp(x, leaf) == 0)
			continue;
		len = i2d_X509(x, &der);
		if (len <= 0)
			continue;
		/* OpenSSL's allocation: copy into ours so that hb_event_free can use free(). */
		ev->blobs[ev->nblobs] = malloc((size_t)len);
		if (!ev->blobs[ev->nblobs])
			HB_FATAL("out of memory for a peer certificate");
		memcpy(ev->blobs[ev->nblobs], der, (size_t)len);
		ev->blob_len[ev->nblobs++] = (size_t)len;
		OPENSSL_free(der);
	}
	hb_emit(c->w->e, ev);
}

static void handshake_failed(struct hb_conn *c)
{
	long verify = SSL_get_verify_result(c->ssl);
	unsigned long e = ERR_peek_error();
	char detail[256] = "the peer closed the connection";

	bool no_certificate = ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE;

	if (verify != X509_V_OK)
		snprintf(detail, sizeof(detail), "certificate verification failed: %s", X509_verify_cert_error_string(verify));
	else if (no_certificate)
		snprintf(detail, sizeof(detail), "the client sent no certificate");
	else if (e)
		ERR_error_string_n(e, detail, sizeof(detail));
	ERR_clear_error();
	hb_count(c->w->e, HB_C_HANDSHAKE_FAILED, 1);
	/* A chain that does not lead to our roots, or none at all, is a peer we cannot trust, not a broken handshake. */
	if (verify != X509_V_OK || no_certificate)
		hb_conn_close(c, "untrusted", "%s", detail);
	else
		hb_conn_close(c, "handshake", "TLS handshake with %s failed: %s", c->peer_address, detail);
}

/* After the handshake: ALPN, then the client checks the server's identity, the server asks JavaScript. */
static void secured(struct hb_conn *c)
{
	const unsigned char *proto = NULL;
	unsigned int plen = 0;
	X509 *leaf = SSL_get0_peer_certificate(c->ssl);
	struct hb_engine *e = c->w->e;
	size_t i;

	SSL_get0_alpn_selected(c->ssl, &proto, &plen);
	if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
		hb_count(e, HB_C_HANDSHAKE_FAILED, 1);
		hb_conn_close(c, "handshake", "%s did not agree to ALPN h2: is it an HBONE port?", c->peer_address);
		return;
	}
	if (!leaf || !hb_cert_spiffe_id(leaf, c->peer_identity, sizeof(c->peer_identity))) {
		hb_conn_close(c, "identity", "the certificate of %s has no spiffe:// URI SAN", c->peer_address);
		return;
	}
	if (c->role == HB_CLIENT) {
		for (i = 0; i < c->nexpected && strcmp(c->expected[i], c->peer_identity) != 0; i++)
			;
		if (i == c->nexpected) {
			hb_conn_close(c, "identity", "%s presented %s, not %s%s", c->peer_address, c->peer_identity,
				      c->nexpected ? c->expected[0] : "(no identity expected)", c->nexpected > 1 ? " or the other identities expected" : "");
			return;
		}
		c->state = HB_C_LIVE;
		struct hb_event *ev = hb_event_new(HB_E_CONNECTED, c->id, 0);

		ev->text = hb_strdup(c->peer_identity);
		hb_emit(e, ev);
		return;
	}
	if (!hb_limit_take(e, true, c->peer_identity, e->opt.max_conns_per_identity)) {
		hb_limit_hit(e, HB_C_LIMIT_IDENTITY, c->id, "maxConnectionsPerIdentity", c->peer_identity, e->opt.max_conns_per_identity);
		hb_conn_close(c, "limit", "%s already holds %u connections (maxConnectionsPerIdentity)", c->peer_identity, e->opt.max_conns_per_identity);
		return;
	}
	c->counted_identity = true;
	c->state = HB_C_AWAIT_PEER;
	emit_peer(c, leaf);
}

void hb_conn_handshake(struct hb_conn *c)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		secured(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->readable = false;
		break;
	case SSL_ERROR_WANT_WRITE:
		c->writable = false;
		break;
	default:
		handshake_failed(c);
	}
}

void hb_conn_accept_peer(struct hb_conn *c, bool ok)
{
	if (c->state != HB_C_AWAIT_PEER)
		return;
	if (!ok) {
		hb_conn_close(c, "peer-refused", "the agent refused the peer %s (%s)", c->peer_identity, c->peer_address);
		return;
	}
	c->state = HB_C_LIVE;
	/* Not read while JavaScript decided: whatever arrived meanwhile is read now. */
	c->readable = true;
	hb_conn_queue(c);
}
