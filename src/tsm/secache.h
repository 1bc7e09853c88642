/* In-memory cache of secure-element records for the lookups (by CIN, MSISDN
 * or IMSI), the hot path of every service provider (DESIGN.md 5).
 *
 * The cache holds copies of registry rows within a byte budget (entries,
 * the allocator's overhead and the index tables all count); a full cache
 * evicts with the CLOCK algorithm (an entry read since the hand last passed
 * survives one more turn). It is never the source of truth: a miss is read
 * from storage and offered back with tsm_secache_put.
 *
 * Staleness. A writer that changes or deletes a row calls
 * tsm_secache_invalidate after its commit; on PostgreSQL every node also
 * hears other nodes' changes through LISTEN/NOTIFY and invalidates the same
 * way. The race between a reader that read storage before a change and puts
 * its (old) copy after the invalidation is closed by the generation: read
 * tsm_secache_gen() BEFORE reading storage and pass it to tsm_secache_put;
 * any invalidation in between bumps the generation and the put is dropped.
 * While the cache is offline (tsm_secache_set_online(false), e.g. the
 * notification channel is down) every get misses and every put is dropped.
 *
 * Thread-safe: lookups share a read lock; puts, invalidations and eviction
 * take the write lock.
 */
#ifndef OT_TSM_SECACHE_H
#define OT_TSM_SECACHE_H

#include "core/err.h"
#include "tsm/registry.h"
#include "tsm/serec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tsm_secache;

/* Smallest budget accepted (bytes); 0 means "no cache" to the caller. */
#define TSM_SECACHE_MIN_BYTES ((size_t)1 << 16)

struct tsm_secache_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions;
    uint64_t invalidations; /* entries dropped by invalidate/clear */
    uint64_t entries;
    uint64_t bytes; /* charged against the budget: entries and index tables */
};

/* A cache of at most budget bytes (>= TSM_SECACHE_MIN_BYTES, else OT_E_ARG),
 * online. */
ot_err tsm_secache_new(size_t budget, struct tsm_secache **out);
void tsm_secache_free(struct tsm_secache *c); /* NULL-safe */

/* The current generation: read it before reading storage for a put. */
uint64_t tsm_secache_gen(const struct tsm_secache *c);

/* Copies the record whose key (normalised CIN, MSISDN or IMSI) matches into
 * *out. OT_E_NOT_FOUND on a miss (also when offline). */
ot_err tsm_secache_get(struct tsm_secache *c, enum tsm_by by, const char *key, struct tsm_se *out);

/* Offers a copy of se as read from (or just committed to) storage when the
 * generation was gen. Dropped when the generation moved on, when offline, or
 * when se alone is larger than the budget. An entry with the same CIN, or
 * holding se's MSISDN or IMSI, is replaced. */
void tsm_secache_put(struct tsm_secache *c, const struct tsm_se *se, uint64_t gen);

/* Drops the entry of this CIN (if any) and bumps the generation. */
void tsm_secache_invalidate(struct tsm_secache *c, const char *cin);

/* Drops every entry and bumps the generation. */
void tsm_secache_clear(struct tsm_secache *c);

/* Offline: drops every entry, gets miss and puts are dropped until set
 * online again (which bumps the generation once more). */
void tsm_secache_set_online(struct tsm_secache *c, bool online);

bool tsm_secache_online(const struct tsm_secache *c);

void tsm_secache_stats(struct tsm_secache *c, struct tsm_secache_stats *out);

#endif
