/*
 * TLS contexts as ztunnel configures them: TLS 1.3 only with its two AES-GCM suites, ALPN h2, a peer
 * certificate required both ways and verified against the given roots, no session resumption. One
 * context serves both roles; OpenSSL's own reference counting keeps it alive for its connections.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char ALPN_H2[] = { 2, 'h', '2' };

static void ssl_error(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char detail[256] = "no detail from OpenSSL";

	if (e)
		ERR_error_string_n(e, detail, sizeof(detail));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s", what, detail);
}

/* The server picks h2 or refuses the handshake: an HBONE port speaks nothing else. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	unsigned char *selected;

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto(&selected, outlen, ALPN_H2, sizeof(ALPN_H2), in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = selected;
	return SSL_TLSEXT_ERR_OK;
}

/* Loads every certificate of a PEM text, in order; 0 if it holds none or one is malformed. */
static int read_certs(const char *pem, X509 **out, int max)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	int n = 0;
	X509 *x;

	if (!bio)
		return 0;
	while (n < max && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
		out[n++] = x;
	BIO_free(bio);
	/* The loop ends on the PEM reader's "no start line": expected at the end of the text. */
	ERR_clear_error();
	return n;
}

struct hb_ctx *hb_ctx_new(const char *chain_pem, const char *key_pem, const char *roots_pem, char *err, size_t errlen)
{
	X509 *chain[16], *roots[64];
	int nchain = read_certs(chain_pem, chain, 16), nroots = read_certs(roots_pem, roots, 64), i;
	struct hb_ctx *ctx = calloc(1, sizeof(*ctx));
	BIO *kbio = BIO_new_mem_buf(key_pem, -1);
	EVP_PKEY *key = kbio ? PEM_read_bio_PrivateKey(kbio, NULL, NULL, NULL) : NULL;
	SSL_CTX *s = NULL;
	X509_STORE *store;

	if (!ctx || !kbio) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (nchain == 0) {
		snprintf(err, errlen, "chainPem holds no certificate (expected the leaf, then any intermediates)");
		goto fail;
	}
	if (nroots == 0) {
		snprintf(err, errlen, "rootsPem holds no certificate (expected the trust bundle)");
		goto fail;
	}
	if (!key) {
		ssl_error(err, errlen, "keyPem is not a PEM private key");
		goto fail;
	}
	s = SSL_CTX_new(TLS_method());
	if (!s) {
		ssl_error(err, errlen, "SSL_CTX_new");
		goto fail;
	}
	if (!SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) || !SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(s, "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256")) {
		ssl_error(err, errlen, "setting TLS 1.3 and its suites");
		goto fail;
	}
	if (SSL_CTX_use_certificate(s, chain[0]) != 1) {
		ssl_error(err, errlen, "the leaf certificate");
		goto fail;
	}
	for (i = 1; i < nchain; i++) {
		/* add1 takes its own reference. */
		if (SSL_CTX_add1_chain_cert(s, chain[i]) != 1) {
			ssl_error(err, errlen, "an intermediate certificate");
			goto fail;
		}
	}
	if (SSL_CTX_use_PrivateKey(s, key) != 1 || SSL_CTX_check_private_key(s) != 1) {
		ssl_error(err, errlen, "keyPem does not match the leaf certificate");
		goto fail;
	}
	store = SSL_CTX_get_cert_store(s);
	for (i = 0; i < nroots; i++) {
		if (X509_STORE_add_cert(store, roots[i]) != 1) {
			ssl_error(err, errlen, "a root certificate");
			goto fail;
		}
	}
	/* Both roles demand the peer's chain; the server asks the client for it. */
	SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_alpn_select_cb(s, select_alpn, NULL);
	/* ztunnel disables resumption: every connection proves its identity anew. */
	SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(s, 0);
	SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	/* With read-ahead (conn.c), one read takes several records of a bulk transfer, not one. */
	SSL_CTX_set_default_read_buffer_len(s, 64 * 1024);
	ctx->ssl_ctx = s;
	s = NULL;
	goto done;
fail:
	free(ctx);
	ctx = NULL;
done:
	SSL_CTX_free(s);
	EVP_PKEY_free(key);
	BIO_free(kbio);
	for (i = 0; i < nchain; i++)
		X509_free(chain[i]);
	for (i = 0; i < nroots; i++)
		X509_free(roots[i]);
	return ctx;
}

void hb_ctx_free(struct hb_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

bool hb_cert_spiffe_id(X509 *cert, char *out, size_t len)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	bool found = false;

	if (!names)
		return false;
	for (int i = 0; i < sk_GENERAL_NAME_num(names) && !found; i++) {
		GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
		const unsigned char *uri;
		int n;

		if (name->type != GEN_URI)
			continue;
		uri = ASN1_STRING_get0_data(name->d.uniformResourceIdentifier);
		n = ASN1_STRING_length(name->d.uniformResourceIdentifier);
		if (n < 9 || (size_t)n >= len || strncmp((const char *)uri, "spiffe://", 9) != 0 || memchr(uri, 0, (size_t)n))
			continue;
		memcpy(out, uri, (size_t)n);
		out[n] = '\0';
		found = true;
	}
	GENERAL_NAMES_free(names);
	return found;
}
