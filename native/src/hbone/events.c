/* The queue of events for JavaScript: data threads append, the JavaScript thread takes the whole batch. */
#define _GNU_SOURCE
#include "engine.h"

#include <stdlib.h>
#include <string.h>

struct hb_event *hb_event_new(enum hb_event_type type, uint64_t conn, uint64_t stream)
{
	struct hb_event *ev = calloc(1, sizeof(*ev));

	/* An event lost is a flow JavaScript never closes: out of memory here is not survivable. */
	if (!ev)
		HB_FATAL("out of memory for an event");
	ev->type = type;
	ev->conn = conn;
	ev->stream = stream;
	return ev;
}

char *hb_strdup(const char *s)
{
	char *copy = strdup(s ? s : "");

	if (!copy)
		HB_FATAL("out of memory copying a string for an event");
	return copy;
}

void hb_emit(struct hb_engine *e, struct hb_event *ev)
{
	bool first;

	pthread_mutex_lock(&e->ev_lock);
	first = e->ev_head == NULL;
	ev->next = NULL;
	*e->ev_tail = ev;
	e->ev_tail = &ev->next;
	pthread_mutex_unlock(&e->ev_lock);
	/* One wake-up per batch: the JavaScript side takes everything queued until then. */
	if (first && e->notify)
		e->notify(e);
}

struct hb_event *hb_events_take(struct hb_engine *e)
{
	struct hb_event *all;

	pthread_mutex_lock(&e->ev_lock);
	all = e->ev_head;
	e->ev_head = NULL;
	e->ev_tail = &e->ev_head;
	pthread_mutex_unlock(&e->ev_lock);
	return all;
}

void hb_event_free(struct hb_event *ev)
{
	size_t i;

	free(ev->text);
	free(ev->text2);
	for (i = 0; i < ev->strc; i++)
		free(ev->strv[i]);
	free(ev->strv);
	for (i = 0; i < ev->nblobs; i++)
		free(ev->blobs[i]);
	free(ev->blobs);
	free(ev->blob_len);
	free(ev);
}
