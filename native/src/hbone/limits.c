/*
 * The engine's limits on what one peer may hold: connections per peer identity and per source address
 * (tables shared by the data threads), and memory per connection (nghttp2's allocations go through an
 * allocator that charges the connection, so HPACK tables and stream state count as well as our buffers).
 */
#define _GNU_SOURCE
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned bucket(const char *key)
{
	unsigned h = 2166136261u;

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h & 255;
}

bool hb_limit_take(struct hb_engine *e, bool identity, const char *key, uint32_t cap)
{
	struct hb_peer_count **table = identity ? e->by_identity : e->by_address, **link, *p;
	bool ok = true;

	pthread_mutex_lock(&e->peer_lock);
	link = &table[bucket(key)];
	for (p = *link; p && strcmp(p->key, key) != 0; p = p->next)
		;
	if (!p) {
		p = calloc(1, sizeof(*p) + strlen(key) + 1);
		if (!p)
			HB_FATAL("out of memory counting a peer's connections");
		strcpy(p->key, key);
		p->next = *link;
		*link = p;
	}
	if (p->count >= cap)
		ok = false;
	else
		p->count++;
	if (p->count == 0) {
		*link = p->next;
		free(p);
	}
	pthread_mutex_unlock(&e->peer_lock);
	return ok;
}

void hb_limit_give(struct hb_engine *e, bool identity, const char *key)
{
	struct hb_peer_count **table = identity ? e->by_identity : e->by_address, **link;

	pthread_mutex_lock(&e->peer_lock);
	for (link = &table[bucket(key)]; *link && strcmp((*link)->key, key) != 0; link = &(*link)->next)
		;
	if (!*link || (*link)->count == 0)
		HB_FATAL("releasing a connection of %s that was never counted", key);
	if (--(*link)->count == 0) {
		struct hb_peer_count *gone = *link;

		*link = gone->next;
		free(gone);
	}
	pthread_mutex_unlock(&e->peer_lock);
}

/* At most this many (limit, peer) pairs are remembered; past it, limits are still counted, not reported. */
#define MAX_REPORTED 4096

void hb_limit_hit(struct hb_engine *e, enum hb_counter counter, uint64_t conn, const char *limit, const char *peer, uint32_t cap)
{
	struct hb_event *ev;
	char key[320];
	size_t i;

	hb_count(e, counter, 1);
	snprintf(key, sizeof(key), "%s %s", limit, peer);
	pthread_mutex_lock(&e->peer_lock);
	for (i = 0; i < e->nreported && strcmp(e->reported[i], key) != 0; i++)
		;
	if (i < e->nreported || e->nreported >= MAX_REPORTED) {
		pthread_mutex_unlock(&e->peer_lock);
		return;
	}
	if (e->nreported % 64 == 0) {
		char **grown = realloc(e->reported, (e->nreported + 64) * sizeof(*grown));

		if (!grown)
			HB_FATAL("out of memory remembering a reported limit");
		e->reported = grown;
	}
	e->reported[e->nreported++] = hb_strdup(key);
	pthread_mutex_unlock(&e->peer_lock);
	ev = hb_event_new(HB_E_LIMIT, conn, 0);

	ev->cause = limit;
	ev->text = hb_strdup(peer);
	ev->n[0] = cap;
	hb_emit(e, ev);
}

bool hb_mem_take(struct hb_conn *c, size_t n)
{
	if (c->mem + n > c->w->e->opt.max_conn_memory)
		return false;
	c->mem += n;
	return true;
}

void hb_mem_give(struct hb_conn *c, size_t n)
{
	if (n > c->mem)
		HB_FATAL("connection %llu gives back %zu bytes of memory, holds %zu", (unsigned long long)c->id, n, c->mem);
	c->mem -= n;
}

/* nghttp2's allocator: a 16-byte header keeps the size (and malloc's alignment) for the accounting. */
#define HDR 16

static void *mem_malloc(size_t size, void *user)
{
	struct hb_conn *c = user;
	uint8_t *p;

	if (!hb_mem_take(c, size + HDR))
		return NULL;
	p = malloc(size + HDR);
	if (!p) {
		hb_mem_give(c, size + HDR);
		return NULL;
	}
	memcpy(p, &size, sizeof(size));
	return p + HDR;
}

static void mem_free(void *ptr, void *user)
{
	struct hb_conn *c = user;
	size_t size;

	if (!ptr)
		return;
	memcpy(&size, (uint8_t *)ptr - HDR, sizeof(size));
	hb_mem_give(c, size + HDR);
	free((uint8_t *)ptr - HDR);
}

static void *mem_calloc(size_t n, size_t size, void *user)
{
	void *p;

	if (size && n > SIZE_MAX / size)
		return NULL;
	p = mem_malloc(n * size, user);
	if (p)
		memset(p, 0, n * size);
	return p;
}

static void *mem_realloc(void *ptr, size_t size, void *user)
{
	size_t old = 0;
	void *p;

	if (!ptr)
		return mem_malloc(size, user);
	memcpy(&old, (uint8_t *)ptr - HDR, sizeof(old));
	p = mem_malloc(size, user);
	if (!p)
		return NULL;
	memcpy(p, ptr, old < size ? old : size);
	mem_free(ptr, user);
	return p;
}

nghttp2_mem hb_nghttp2_mem_template = { NULL, mem_malloc, mem_free, mem_calloc, mem_realloc };
