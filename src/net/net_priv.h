/* Private to src/net: rate limiting and metrics used by http.c. */
#ifndef OT_NET_NET_PRIV_H
#define OT_NET_NET_PRIV_H

#include "core/buf.h"
#include "core/err.h"
#include "net/http.h"

#include <stdbool.h>
#include <stdint.h>

/* Bounded keyed counters (sharded, each shard under its own mutex). When a
 * shard is full the stalest of the probed entries is replaced, so memory stays
 * fixed whatever the number of keys (client IPs are attacker-controlled). */
struct net_rl;
ot_err net_rl_new(struct net_rl **out);
void net_rl_free(struct net_rl *rl);
/* Token bucket: takes one token for key at time now_s. false: empty bucket and
 * *retry_after_s = seconds until one token is back (>= 1). */
bool net_rl_take(struct net_rl *rl, uint64_t key, double rate_per_s, double burst, double now_s,
                 unsigned *retry_after_s);
/* Fixed window counter: number of events recorded for key in the current
 * window (without recording); *retry_after_s = seconds to the window's end. */
unsigned net_rl_window_count(struct net_rl *rl, uint64_t key, double window_s, double now_s,
                             unsigned *retry_after_s);
/* Records one event for key in its current window. */
void net_rl_window_add(struct net_rl *rl, uint64_t key, double window_s, double now_s);
/* 64-bit FNV-1a of a string, for keys. */
uint64_t net_rl_hash(const char *s);

/* HTTP metrics: per route request counters by status and a latency histogram. */
ot_err net_metrics_new(struct net_metrics **out);
void net_metrics_free(struct net_metrics *m);
/* A route label (pattern) and method; returns its index via *idx. */
ot_err net_metrics_add_route(struct net_metrics *m, const char *method, const char *route,
                             size_t *idx);
/* Records one request: route idx, status, seconds. Thread-safe. */
void net_metrics_observe(struct net_metrics *m, size_t idx, int status, double seconds);
/* Appends the Prometheus text exposition (format 0.0.4) to out. Thread-safe. */
ot_err net_metrics_render(struct net_metrics *m, struct ot_buf *out);

#endif
