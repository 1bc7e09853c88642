/* In-memory SE record cache: three open-addressing indexes (CIN, MSISDN,
 * IMSI) over packed entries, CLOCK eviction within a byte budget, one
 * read-write lock. See secache.h for the staleness contract. */
#define OT_LOG_COMPONENT "tsm.cache"
#include "tsm/secache.h"

#include "core/buf.h"
#include "core/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The strings of a record, packed NUL-terminated in this order. */
enum tsm_secache_str {
    SC_CIN,
    SC_TYPE,
    SC_MNO,
    SC_MSISDN,
    SC_IMSI,
    SC_PROFILE,
    SC_GP,
    SC_JC,
    SC_CERT,
    SC_EXPIRY,
    SC_NSTR,
};

#define SC_NIDX       3u /* indexes: by CIN, MSISDN, IMSI (enum tsm_by order) */
#define SC_IDX_MIN    1024u
#define SC_ENT_CHARGE 16u /* the allocator's header and rounding, per entry */

struct tsm_secache_ent {
    atomic_uchar ref; /* CLOCK: read since the hand last passed */
    uint32_t slot;    /* position in c->slots */
    uint32_t hash[SC_NIDX];
    uint16_t off[SC_NSTR]; /* offset of each string in s */
    uint16_t len;          /* bytes of s */
    int64_t id;
    int64_t free_memory;
    int64_t master_key_index;
    int64_t created_at;
    char s[];
};

/* Linear probing over entry pointers; a power-of-two capacity. */
struct tsm_secache_idx {
    struct tsm_secache_ent **tab;
    size_t cap;
    size_t n;
};

struct tsm_secache {
    pthread_rwlock_t lock;
    size_t budget;
    size_t bytes;                   /* entries, as sc_charge counts them */
    size_t table_bytes;             /* the slot array and the three index tables */
    struct tsm_secache_ent **slots; /* dense: slots[0..nslots) */
    size_t nslots;
    size_t capslots;
    size_t hand;
    struct tsm_secache_idx idx[SC_NIDX];
    atomic_uint_fast64_t gen;
    atomic_bool online;
    atomic_uint_fast64_t hits;
    atomic_uint_fast64_t misses;
    uint64_t evictions;     /* under the write lock */
    uint64_t invalidations; /* under the write lock */
};

/* The string offset holding each index's key. */
static const enum tsm_secache_str sc_key_str[SC_NIDX] = {SC_CIN, SC_MSISDN, SC_IMSI};

static const char *sc_key(const struct tsm_secache_ent *e, unsigned i)
{
    return e->s + e->off[sc_key_str[i]];
}

static size_t sc_charge(const struct tsm_secache_ent *e)
{
    return sizeof(*e) + e->len + SC_ENT_CHARGE;
}

static ot_err sc_idx_init(struct tsm_secache_idx *x, size_t cap)
{
    x->tab = calloc(cap, sizeof(*x->tab));
    if (x->tab == NULL) {
        return OT_E_NOMEM;
    }
    x->cap = cap;
    x->n = 0;
    return OT_OK;
}

/* Bytes of the slot array and the index tables (they count against the
 * budget). */
static void sc_count_tables(struct tsm_secache *c)
{
    size_t cells = c->capslots;
    unsigned i;

    for (i = 0; i < SC_NIDX; i++) {
        cells += c->idx[i].cap;
    }
    c->table_bytes = cells * sizeof(void *);
}

/* Position of the entry whose key i is key, or x->cap when absent. */
static size_t sc_idx_find(const struct tsm_secache_idx *x, unsigned i, const char *key, uint32_t h)
{
    size_t mask = x->cap - 1;
    size_t p = h & mask;

    while (x->tab[p] != NULL) {
        const struct tsm_secache_ent *e = x->tab[p];
        if (e->hash[i] == h && strcmp(sc_key(e, i), key) == 0) {
            return p;
        }
        p = (p + 1) & mask;
    }
    return x->cap;
}

static void sc_idx_place(struct tsm_secache_idx *x, unsigned i, struct tsm_secache_ent *e)
{
    size_t mask = x->cap - 1;
    size_t p = e->hash[i] & mask;

    while (x->tab[p] != NULL) {
        p = (p + 1) & mask;
    }
    x->tab[p] = e;
    x->n++;
}

/* Doubles the table when it would pass half full (short probe chains). A
 * failed allocation keeps the old table: the caller then refuses the put. */
static ot_err sc_idx_reserve(struct tsm_secache_idx *x, unsigned i)
{
    struct tsm_secache_idx bigger;
    size_t k;

    if ((x->n + 1) * 2 <= x->cap) {
        return OT_OK;
    }
    if (sc_idx_init(&bigger, x->cap * 2) != OT_OK) {
        return OT_E_NOMEM;
    }
    for (k = 0; k < x->cap; k++) {
        if (x->tab[k] != NULL) {
            sc_idx_place(&bigger, i, x->tab[k]);
        }
    }
    free(x->tab);
    *x = bigger;
    return OT_OK;
}

/* Removes position p, shifting back the entries of its probe run so that
 * no tombstones are needed. */
static void sc_idx_remove_at(struct tsm_secache_idx *x, unsigned i, size_t p)
{
    size_t mask = x->cap - 1;
    size_t q = p;

    x->tab[p] = NULL;
    x->n--;
    for (;;) {
        q = (q + 1) & mask;
        if (x->tab[q] == NULL) {
            return;
        }
        size_t home = x->tab[q]->hash[i] & mask;
        /* Move q back into the hole at p unless its home lies cyclically
         * in (p, q]. */
        bool stays = p <= q ? (home > p && home <= q) : (home > p || home <= q);
        if (!stays) {
            x->tab[p] = x->tab[q];
            x->tab[q] = NULL;
            p = q;
        }
    }
}

static bool sc_indexed(const struct tsm_secache_ent *e, unsigned i)
{
    return sc_key(e, i)[0] != '\0';
}

/* Unlinks e from the indexes and the slots, and frees it. Write lock held. */
static void sc_drop(struct tsm_secache *c, struct tsm_secache_ent *e)
{
    unsigned i;

    for (i = 0; i < SC_NIDX; i++) {
        if (!sc_indexed(e, i)) {
            continue;
        }
        size_t p = sc_idx_find(&c->idx[i], i, sc_key(e, i), e->hash[i]);
        if (p < c->idx[i].cap && c->idx[i].tab[p] == e) {
            sc_idx_remove_at(&c->idx[i], i, p);
        }
    }
    c->nslots--;
    if (e->slot != c->nslots) {
        c->slots[e->slot] = c->slots[c->nslots];
        c->slots[e->slot]->slot = e->slot;
    }
    c->slots[c->nslots] = NULL;
    c->bytes -= sc_charge(e);
    free(e);
}

static void sc_drop_all(struct tsm_secache *c)
{
    size_t k;
    unsigned i;

    for (k = 0; k < c->nslots; k++) {
        free(c->slots[k]);
        c->slots[k] = NULL;
    }
    c->invalidations += c->nslots;
    c->nslots = 0;
    c->bytes = 0;
    c->hand = 0;
    for (i = 0; i < SC_NIDX; i++) {
        memset(c->idx[i].tab, 0, c->idx[i].cap * sizeof(*c->idx[i].tab));
        c->idx[i].n = 0;
    }
}

/* The entry whose key i is key (write or read lock held). */
static struct tsm_secache_ent *sc_lookup(const struct tsm_secache *c, unsigned i, const char *key)
{
    const struct tsm_secache_idx *x = &c->idx[i];
    size_t p = sc_idx_find(x, i, key, ot_str_hash32(key));

    return p < x->cap ? x->tab[p] : NULL;
}

/* CLOCK: evicts until the budget holds need more bytes. */
static void sc_evict(struct tsm_secache *c, size_t need)
{
    size_t turns = 2 * c->nslots + 1;

    while (c->nslots > 0 && c->bytes + c->table_bytes + need > c->budget && turns-- > 0) {
        if (c->hand >= c->nslots) {
            c->hand = 0;
        }
        struct tsm_secache_ent *e = c->slots[c->hand];
        if (atomic_load_explicit(&e->ref, memory_order_relaxed) != 0) {
            atomic_store_explicit(&e->ref, 0, memory_order_relaxed);
            c->hand++;
            continue;
        }
        sc_drop(c, e); /* the last slot moves into the hand's place */
        c->evictions++;
    }
    /* Every entry was referenced twice over: take the hand's. */
    while (c->nslots > 0 && c->bytes + c->table_bytes + need > c->budget) {
        if (c->hand >= c->nslots) {
            c->hand = 0;
        }
        sc_drop(c, c->slots[c->hand]);
        c->evictions++;
    }
}

static struct tsm_secache_ent *sc_pack(const struct tsm_se *se)
{
    const char *str[SC_NSTR] = {
        [SC_CIN] = se->cin,       [SC_TYPE] = se->se_type,  [SC_MNO] = se->mno,
        [SC_MSISDN] = se->msisdn, [SC_IMSI] = se->imsi,     [SC_PROFILE] = se->profile_id,
        [SC_GP] = se->gp_version, [SC_JC] = se->jc_version, [SC_CERT] = se->cert_level,
        [SC_EXPIRY] = se->expiry,
    };
    size_t sl[SC_NSTR];
    size_t total = 0;
    struct tsm_secache_ent *e;
    unsigned k;

    for (k = 0; k < SC_NSTR; k++) {
        sl[k] = strlen(str[k]);
        total += sl[k] + 1;
    }
    if (total > UINT16_MAX) {
        return NULL;
    }
    e = malloc(sizeof(*e) + total);
    if (e == NULL) {
        return NULL;
    }
    atomic_init(&e->ref, 0);
    e->slot = 0;
    e->len = (uint16_t)total;
    total = 0;
    for (k = 0; k < SC_NSTR; k++) {
        e->off[k] = (uint16_t)total;
        memcpy(e->s + total, str[k], sl[k] + 1);
        total += sl[k] + 1;
    }
    for (k = 0; k < SC_NIDX; k++) {
        e->hash[k] = ot_str_hash32(sc_key(e, k));
    }
    e->id = se->id;
    e->free_memory = se->free_memory;
    e->master_key_index = se->master_key_index;
    e->created_at = se->created_at;
    return e;
}

/* Copies string k of e into dst (capacity cap, which the record fitted). */
static void sc_unpack_str(const struct tsm_secache_ent *e, unsigned k, char *dst, size_t cap)
{
    const char *s = e->s + e->off[k];
    size_t n = strlen(s);

    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void sc_unpack(const struct tsm_secache_ent *e, struct tsm_se *out)
{
    out->id = e->id;
    sc_unpack_str(e, SC_CIN, out->cin, sizeof(out->cin));
    sc_unpack_str(e, SC_TYPE, out->se_type, sizeof(out->se_type));
    sc_unpack_str(e, SC_MNO, out->mno, sizeof(out->mno));
    sc_unpack_str(e, SC_MSISDN, out->msisdn, sizeof(out->msisdn));
    sc_unpack_str(e, SC_IMSI, out->imsi, sizeof(out->imsi));
    sc_unpack_str(e, SC_PROFILE, out->profile_id, sizeof(out->profile_id));
    sc_unpack_str(e, SC_GP, out->gp_version, sizeof(out->gp_version));
    sc_unpack_str(e, SC_JC, out->jc_version, sizeof(out->jc_version));
    sc_unpack_str(e, SC_CERT, out->cert_level, sizeof(out->cert_level));
    sc_unpack_str(e, SC_EXPIRY, out->expiry, sizeof(out->expiry));
    out->free_memory = e->free_memory;
    out->master_key_index = e->master_key_index;
    out->created_at = e->created_at;
}

ot_err tsm_secache_new(size_t budget, struct tsm_secache **out)
{
    ot_err err = OT_OK;
    struct tsm_secache *c = NULL;
    unsigned i;

    *out = NULL;
    if (budget < TSM_SECACHE_MIN_BYTES) {
        return OT_E_ARG;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    if (pthread_rwlock_init(&c->lock, NULL) != 0) {
        free(c);
        return OT_E_NOMEM;
    }
    c->budget = budget;
    atomic_init(&c->gen, 1);
    atomic_init(&c->online, true);
    atomic_init(&c->hits, 0);
    atomic_init(&c->misses, 0);
    for (i = 0; i < SC_NIDX; i++) {
        OT_TRY(sc_idx_init(&c->idx[i], SC_IDX_MIN));
    }
    sc_count_tables(c);
    *out = c;
    c = NULL;
out:
    tsm_secache_free(c);
    return err;
}

void tsm_secache_free(struct tsm_secache *c)
{
    unsigned i;

    if (c == NULL) {
        return;
    }
    for (size_t k = 0; k < c->nslots; k++) {
        free(c->slots[k]);
    }
    free(c->slots);
    for (i = 0; i < SC_NIDX; i++) {
        free(c->idx[i].tab);
    }
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

uint64_t tsm_secache_gen(const struct tsm_secache *c)
{
    return atomic_load(&c->gen);
}

ot_err tsm_secache_get(struct tsm_secache *c, enum tsm_by by, const char *key, struct tsm_se *out)
{
    struct tsm_secache_ent *e;

    if ((unsigned)by >= SC_NIDX || key == NULL || key[0] == '\0') {
        return OT_E_ARG;
    }
    if (!atomic_load_explicit(&c->online, memory_order_acquire)) {
        atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
        return OT_E_NOT_FOUND;
    }
    pthread_rwlock_rdlock(&c->lock);
    e = sc_lookup(c, (unsigned)by, key);
    if (e != NULL) {
        sc_unpack(e, out);
        if (atomic_load_explicit(&e->ref, memory_order_relaxed) == 0) {
            atomic_store_explicit(&e->ref, 1, memory_order_relaxed);
        }
    }
    pthread_rwlock_unlock(&c->lock);
    atomic_fetch_add_explicit(e != NULL ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return e != NULL ? OT_OK : OT_E_NOT_FOUND;
}

/* Makes room in the slot array and the indexes for one more entry; the
 * tables count against the budget too. */
static ot_err sc_reserve(struct tsm_secache *c)
{
    unsigned i;

    if (c->nslots == c->capslots) {
        size_t ncap = c->capslots != 0 ? c->capslots * 2 : 1024;
        struct tsm_secache_ent **ns = realloc(c->slots, ncap * sizeof(*ns));
        if (ns == NULL) {
            return OT_E_NOMEM;
        }
        c->slots = ns;
        c->capslots = ncap;
    }
    for (i = 0; i < SC_NIDX; i++) {
        if (sc_idx_reserve(&c->idx[i], i) != OT_OK) {
            sc_count_tables(c);
            return OT_E_NOMEM;
        }
    }
    sc_count_tables(c);
    return OT_OK;
}

void tsm_secache_put(struct tsm_secache *c, const struct tsm_se *se, uint64_t gen)
{
    struct tsm_secache_ent *e;
    unsigned i;

    if (se == NULL || se->cin[0] == '\0') {
        return;
    }
    e = sc_pack(se);
    if (e == NULL) {
        return;
    }
    if (sc_charge(e) > c->budget) {
        free(e);
        return;
    }
    pthread_rwlock_wrlock(&c->lock);
    if (!atomic_load(&c->online) || atomic_load(&c->gen) != gen) {
        goto drop;
    }
    /* The same SE, or an SE that (in a stale copy) still holds this
     * MSISDN or IMSI, goes: storage has just said otherwise. */
    for (i = 0; i < SC_NIDX; i++) {
        if (sc_indexed(e, i)) {
            struct tsm_secache_ent *old = sc_lookup(c, i, sc_key(e, i));
            if (old != NULL) {
                sc_drop(c, old);
            }
        }
    }
    sc_evict(c, sc_charge(e));
    if (sc_reserve(c) != OT_OK) {
        goto drop;
    }
    sc_evict(c, sc_charge(e)); /* the tables may have grown */
    if (c->bytes + c->table_bytes + sc_charge(e) > c->budget) {
        goto drop; /* the tables alone fill the budget */
    }
    e->slot = (uint32_t)c->nslots;
    c->slots[c->nslots++] = e;
    for (i = 0; i < SC_NIDX; i++) {
        if (sc_indexed(e, i)) {
            sc_idx_place(&c->idx[i], i, e);
        }
    }
    c->bytes += sc_charge(e);
    e = NULL;
drop:
    pthread_rwlock_unlock(&c->lock);
    free(e);
}

void tsm_secache_invalidate(struct tsm_secache *c, const char *cin)
{
    struct tsm_secache_ent *e;

    if (cin == NULL) {
        return;
    }
    pthread_rwlock_wrlock(&c->lock);
    atomic_fetch_add(&c->gen, 1);
    e = cin[0] != '\0' ? sc_lookup(c, TSM_BY_CIN, cin) : NULL;
    if (e != NULL) {
        sc_drop(c, e);
        c->invalidations++;
    }
    pthread_rwlock_unlock(&c->lock);
}

void tsm_secache_clear(struct tsm_secache *c)
{
    pthread_rwlock_wrlock(&c->lock);
    atomic_fetch_add(&c->gen, 1);
    sc_drop_all(c);
    pthread_rwlock_unlock(&c->lock);
}

void tsm_secache_set_online(struct tsm_secache *c, bool online)
{
    pthread_rwlock_wrlock(&c->lock);
    atomic_fetch_add(&c->gen, 1);
    atomic_store(&c->online, online);
    if (!online) {
        sc_drop_all(c);
    }
    pthread_rwlock_unlock(&c->lock);
    OT_LOG_INFO("SE cache %s", online ? "online" : "offline (entries dropped)");
}

bool tsm_secache_online(const struct tsm_secache *c)
{
    return atomic_load(&c->online);
}

void tsm_secache_stats(struct tsm_secache *c, struct tsm_secache_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
    pthread_rwlock_rdlock(&c->lock);
    out->evictions = c->evictions;
    out->invalidations = c->invalidations;
    out->entries = c->nslots;
    out->bytes = c->bytes + c->table_bytes;
    pthread_rwlock_unlock(&c->lock);
}
