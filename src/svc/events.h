/* The live audit stream (GET /admin/v1/events, events.c): SSE events of the
 * audit log in seq order, resumable with Last-Event-ID, ending when the
 * subscriber's token is revoked. One struct svc_events per host (the kit
 * holds it); its feeder thread starts with the first subscriber. */
#ifndef OT_SVC_EVENTS_H
#define OT_SVC_EVENTS_H

#include "core/err.h"
#include "net/http.h"

struct db;
struct authstore;
struct svc_events;

ot_err svc_events_new(struct db *db, struct authstore *auth, struct svc_events **out);
/* Stops the feeder and frees every subscriber; after the server is gone.
 * NULL-safe. */
void svc_events_free(struct svc_events *ev);
/* Wakes the feeder now (an audited change committed). NULL-safe. */
void svc_events_kick(struct svc_events *ev);
/* The handler's work: validates Last-Event-ID (400), turns the answer into
 * an SSE stream and hands it to the feeder. */
void svc_events_handle(struct svc_events *ev, struct net_req *req, struct net_resp *resp);

#endif
