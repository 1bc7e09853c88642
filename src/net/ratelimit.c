#include "net/net_priv.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NET_RL_SHARDS 16
#define NET_RL_SLOTS  2048 /* per shard */
#define NET_RL_PROBE  8

struct net_rl_entry {
    uint64_t key; /* 0 = free */
    double value; /* tokens, or events in the window */
    double t;     /* last refill time, or window start */
};

struct net_rl_shard {
    pthread_mutex_t mu;
    struct net_rl_entry e[NET_RL_SLOTS];
};

struct net_rl {
    struct net_rl_shard shard[NET_RL_SHARDS];
};

ot_err net_rl_new(struct net_rl **out)
{
    *out = NULL;
    struct net_rl *rl = calloc(1, sizeof *rl);
    if (!rl) {
        return OT_E_NOMEM;
    }
    for (size_t i = 0; i < NET_RL_SHARDS; i++) {
        pthread_mutex_init(&rl->shard[i].mu, NULL);
    }
    *out = rl;
    return OT_OK;
}

void net_rl_free(struct net_rl *rl)
{
    if (!rl) {
        return;
    }
    for (size_t i = 0; i < NET_RL_SHARDS; i++) {
        pthread_mutex_destroy(&rl->shard[i].mu);
    }
    free(rl);
}

uint64_t net_rl_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

static uint64_t net_rl_mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

/* Finds key's entry in its shard (locked by the caller) or claims one: a free
 * slot, else the probed entry touched longest ago. *fresh tells which. */
static struct net_rl_entry *net_rl_slot(struct net_rl_shard *sh, uint64_t key, uint64_t h,
                                        bool *fresh)
{
    struct net_rl_entry *victim = NULL;
    size_t start = (size_t)(h >> 8) % NET_RL_SLOTS;
    for (size_t i = 0; i < NET_RL_PROBE; i++) {
        struct net_rl_entry *e = &sh->e[(start + i) % NET_RL_SLOTS];
        if (e->key == key) {
            *fresh = false;
            return e;
        }
        if (e->key == 0) {
            if (!victim || victim->key != 0) {
                victim = e;
            }
        } else if (!victim || (victim->key != 0 && e->t < victim->t)) {
            victim = e;
        }
    }
    victim->key = key;
    victim->value = 0;
    victim->t = 0;
    *fresh = true;
    return victim;
}

bool net_rl_take(struct net_rl *rl, uint64_t key, double rate_per_s, double burst, double now_s,
                 unsigned *retry_after_s)
{
    if (key == 0) {
        key = 1;
    }
    uint64_t h = net_rl_mix(key);
    struct net_rl_shard *sh = &rl->shard[h % NET_RL_SHARDS];
    bool ok;
    pthread_mutex_lock(&sh->mu);
    bool fresh;
    struct net_rl_entry *e = net_rl_slot(sh, key, h, &fresh);
    if (fresh) {
        e->value = burst;
        e->t = now_s;
    } else if (now_s > e->t) {
        e->value = fmin(burst, e->value + (now_s - e->t) * rate_per_s);
        e->t = now_s;
    }
    if (e->value >= 1.0) {
        e->value -= 1.0;
        ok = true;
        *retry_after_s = 0;
    } else {
        ok = false;
        double wait = (1.0 - e->value) / rate_per_s;
        *retry_after_s = (unsigned)ceil(wait < 1.0 ? 1.0 : wait);
    }
    pthread_mutex_unlock(&sh->mu);
    return ok;
}

unsigned net_rl_window_count(struct net_rl *rl, uint64_t key, double window_s, double now_s,
                             unsigned *retry_after_s)
{
    if (key == 0) {
        key = 1;
    }
    uint64_t h = net_rl_mix(key);
    struct net_rl_shard *sh = &rl->shard[h % NET_RL_SHARDS];
    unsigned n = 0;
    *retry_after_s = 0;
    pthread_mutex_lock(&sh->mu);
    size_t start = (size_t)(h >> 8) % NET_RL_SLOTS;
    for (size_t i = 0; i < NET_RL_PROBE; i++) {
        struct net_rl_entry *e = &sh->e[(start + i) % NET_RL_SLOTS];
        if (e->key == key) {
            if (now_s - e->t < window_s) {
                n = (unsigned)e->value;
                double left = window_s - (now_s - e->t);
                *retry_after_s = (unsigned)ceil(left < 1.0 ? 1.0 : left);
            }
            break;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return n;
}

void net_rl_window_add(struct net_rl *rl, uint64_t key, double window_s, double now_s)
{
    if (key == 0) {
        key = 1;
    }
    uint64_t h = net_rl_mix(key);
    struct net_rl_shard *sh = &rl->shard[h % NET_RL_SHARDS];
    pthread_mutex_lock(&sh->mu);
    bool fresh;
    struct net_rl_entry *e = net_rl_slot(sh, key, h, &fresh);
    if (fresh || now_s - e->t >= window_s) {
        e->value = 0;
        e->t = now_s;
    }
    e->value += 1.0;
    pthread_mutex_unlock(&sh->mu);
}
