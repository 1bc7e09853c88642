/* Supervision (issue 13 point 5, docs/cms.md "Supervision and
 * notifications"): the payment system's events in (POST /events, POST
 * /events/batch as NDJSON), the rules (GET /rules, PUT/DELETE
 * /rules/{name}) and the decisions (GET /decisions).
 *
 * Each node keeps, in memory, the rules and per card a bounded window of
 * its last SV_RING events (superv.h), so an event costs a hash lookup and
 * the rules' loops; the card behind an event reference is read from the
 * database once per superv_card_ttl_ms (its state: a card reported lost or
 * stolen). Events are not stored; decisions are: a hit starts the rule's
 * lock or destroy through cms_card_act (cause supervision, reason
 * fraudulent, the explanation in the card's history) with a decision row
 * and the subscriber's notification, all in one transaction. A card gets
 * one decision per severity (a lock, then perhaps a destroy) until it is
 * active again. Windows are per node: a payment system sends one card's
 * events to one node (or accepts that a window spans what one node saw).
 *
 * Memory stays bounded by activity: the references and the cards are kept
 * in least-recently-used order, and those without an event for
 * cms.superv_keep_s (or the longest window of the rules, if longer) are
 * dropped as events come in, a bounded number per event; a card that comes
 * back is read again and starts an empty window. */
#define OT_LOG_COMPONENT "cms.superv"
#include "cms/superv.h"

#include "cms/cms_priv.h"
#include "core/buf.h"
#include "core/log.h"
#include "db/db.h"
#include "svc/kit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SV_BUCKETS       (1u << 16)
#define SV_RULES_RELOAD  1000  /* ms between reloads of the rules from the database */
#define SV_DECISIONS_OUT 100u  /* decisions listed in one intake answer */
#define SV_LAT_N         4096u /* decision latencies kept for the metrics */
#define SV_EVICT_MAX     64u   /* idle entries dropped per event at the most */

/* A place in a least-recently-used order (first member of what it orders). */
struct sv_lru {
    struct sv_lru *older;
    struct sv_lru *newer;
    int64_t used_ms;
};

struct sv_lru_list {
    struct sv_lru *oldest;
    struct sv_lru *newest;
};

struct sv_ident {
    struct sv_lru lru;
    struct sv_ident *next;
    uint32_t hash;
    int64_t row; /* 0: no such card (remembered too) */
    int64_t loaded_ms;
    char key[SV_REF_MAX + 3]; /* "<by>:<ref>" */
};

struct sv_card {
    struct sv_lru lru;
    struct sv_card *next;
    int64_t row;
    char card_id[CMS_CARD_ID_MAX + 1];
    bool reported; /* not active, after a lost or stolen report */
    int decided;   /* 0 none, 1 lock, 2 destroy: decisions made since it was active */
    int64_t loaded_ms;
    struct sv_window w;
};

struct cms_superv {
    pthread_mutex_t mu;
    struct sv_rule *rules;
    size_t n_rules;
    int64_t rules_ms; /* when loaded */
    struct sv_ident **idents;
    struct sv_card **cards;
    struct sv_lru_list id_lru;
    struct sv_lru_list card_lru;
    size_t n_idents;
    size_t n_cards;
    int64_t keep_ms;       /* cms.superv_keep_s */
    int64_t max_window_ms; /* the longest window of the rules */
    int64_t card_ttl_ms;
    int64_t batch_max;
    char sources[1024]; /* ",name,name," of the service providers that may post events */
    atomic_uint_fast64_t m_events;
    atomic_uint_fast64_t m_decisions;
    /* the last SV_LAT_N decisions' latency: the event read to its decision
     * committed, microseconds (guarded by mu) */
    uint32_t lat_us[SV_LAT_N];
    size_t lat_n;
    size_t lat_i;
};

static int64_t sv_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t sv_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t sv_row_hash(int64_t row)
{
    uint64_t x = (uint64_t)row * UINT64_C(0x9E3779B97F4A7C15);
    return (uint32_t)(x >> 32);
}

static void sv_rules_free(struct sv_rule *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sv_rule_clear(&r[i]);
    }
    free(r);
}

/* ---- rules from the database --------------------------------------------------- */

static ot_err sv_rules_load(struct cms *s)
{
    struct cms_superv *v = s->superv;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct sv_rule *rules = calloc(SV_RULES_MAX, sizeof(*rules));
    size_t n = 0;
    bool row = false;
    ot_err err = OT_OK;

    if (rules == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_prepare(c, "SELECT name, body FROM cms_superv_rules ORDER BY name LIMIT $1", &st));
    OT_TRY(db_bind_int64(st, 1, SV_RULES_MAX));
    for (;;) {
        const char *name = NULL;
        const char *body = NULL;
        json_t *doc = NULL;
        struct json_err je;

        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_text(st, 0, &name));
        OT_TRY(db_col_text(st, 1, &body));
        memset(&je, 0, sizeof(je));
        if (json_parse(body, strlen(body), 65536 * 16, &doc, &je) != OT_OK
            || sv_rule_parse(name, doc, &rules[n], &je) != OT_OK) {
            json_free(doc);
            OT_LOG_ERROR("rule %s does not parse (%s): skipped", name, je.field);
            continue;
        }
        json_free(doc);
        n++;
    }
out:
    db_reset(st);
    db_release(c);
    if (err != OT_OK) {
        sv_rules_free(rules, n);
        return err;
    }
    pthread_mutex_lock(&v->mu);
    sv_rules_free(v->rules, v->n_rules);
    v->rules = rules;
    v->n_rules = n;
    v->max_window_ms = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t w = rules[i].window_ms > rules[i].min_ms ? rules[i].window_ms : rules[i].min_ms;
        if (w > v->max_window_ms) {
            v->max_window_ms = w;
        }
    }
    v->rules_ms = sv_mono_ms();
    pthread_mutex_unlock(&v->mu);
    return OT_OK;
}

static void sv_rules_fresh(struct cms *s)
{
    struct cms_superv *v = s->superv;
    int64_t now = sv_mono_ms();
    bool stale;

    pthread_mutex_lock(&v->mu);
    stale = now - v->rules_ms >= SV_RULES_RELOAD;
    if (stale) {
        v->rules_ms = now; /* one reload at a time */
    }
    pthread_mutex_unlock(&v->mu);
    if (stale && sv_rules_load(s) != OT_OK) {
        OT_LOG_WARN("rules not reloaded: the last ones stay");
    }
}

/* ---- the card cache -------------------------------------------------------------- */

static struct sv_ident *sv_ident_find(struct cms_superv *v, const char *key, uint32_t h)
{
    for (struct sv_ident *i = v->idents[h & (SV_BUCKETS - 1)]; i != NULL; i = i->next) {
        if (strcmp(i->key, key) == 0) {
            return i;
        }
    }
    return NULL;
}

static struct sv_card *sv_card_find(struct cms_superv *v, int64_t row)
{
    for (struct sv_card *k = v->cards[sv_row_hash(row) & (SV_BUCKETS - 1)]; k != NULL;
         k = k->next) {
        if (k->row == row) {
            return k;
        }
    }
    return NULL;
}

/* Least-recently-used order (v->mu held): the newest at one end, the idle
 * ones dropped from the other. */
static void sv_lru_unlink(struct sv_lru_list *l, struct sv_lru *e)
{
    if (e->older != NULL) {
        e->older->newer = e->newer;
    } else if (l->oldest == e) {
        l->oldest = e->newer;
    }
    if (e->newer != NULL) {
        e->newer->older = e->older;
    } else if (l->newest == e) {
        l->newest = e->older;
    }
    e->older = NULL;
    e->newer = NULL;
}

static void sv_lru_touch(struct sv_lru_list *l, struct sv_lru *e, int64_t now)
{
    e->used_ms = now;
    if (l->newest == e) {
        return;
    }
    sv_lru_unlink(l, e);
    e->older = l->newest;
    if (l->newest != NULL) {
        l->newest->newer = e;
    }
    l->newest = e;
    if (l->oldest == NULL) {
        l->oldest = e;
    }
}

/* Drops up to SV_EVICT_MAX references and cards idle for longer than the
 * keep time (v->mu held). */
static void sv_evict(struct cms_superv *v, int64_t now)
{
    int64_t keep = v->keep_ms > v->max_window_ms ? v->keep_ms : v->max_window_ms;
    unsigned n = 0;

    while (v->id_lru.oldest != NULL && now - v->id_lru.oldest->used_ms > keep && n < SV_EVICT_MAX) {
        struct sv_ident *i = (struct sv_ident *)(void *)v->id_lru.oldest; /* lru: first member */
        struct sv_ident **pp = &v->idents[i->hash & (SV_BUCKETS - 1)];
        while (*pp != NULL && *pp != i) {
            pp = &(*pp)->next;
        }
        if (*pp == i) {
            *pp = i->next;
        }
        sv_lru_unlink(&v->id_lru, &i->lru);
        free(i);
        v->n_idents--;
        n++;
    }
    while (v->card_lru.oldest != NULL && now - v->card_lru.oldest->used_ms > keep
           && n < SV_EVICT_MAX) {
        struct sv_card *k = (struct sv_card *)(void *)v->card_lru.oldest;
        struct sv_card **pp = &v->cards[sv_row_hash(k->row) & (SV_BUCKETS - 1)];
        while (*pp != NULL && *pp != k) {
            pp = &(*pp)->next;
        }
        if (*pp == k) {
            *pp = k->next;
        }
        sv_lru_unlink(&v->card_lru, &k->lru);
        sv_window_free(&k->w);
        free(k);
        v->n_cards--;
        n++;
    }
}

/* Whether the card's last action was asked for as lost or stolen. */
static ot_err sv_last_reason_lost(struct db_conn *c, int64_t row, bool *lost)
{
    struct db_stmt *st = NULL;
    const char *r = NULL;
    bool found = false;
    ot_err err = OT_OK;

    *lost = false;
    OT_TRY(db_prepare(c, "SELECT reason FROM cms_actions WHERE card = $1 ORDER BY id DESC LIMIT 1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, row));
    OT_TRY(db_step(st, &found));
    if (found) {
        OT_TRY(db_col_text(st, 0, &r));
        *lost = strcmp(r, "lost") == 0 || strcmp(r, "stolen") == 0;
    }
out:
    db_reset(st);
    return err;
}

/* The card row behind ev (0: none), read through the cache; *c is a
 * connection acquired on the first miss (the caller releases it). */
static ot_err sv_resolve(struct cms *s, struct db_conn **c, const struct sv_event *ev,
                         int64_t *row_out)
{
    static const enum cms_by bys[] = {CMS_BY_CARD_ID, CMS_BY_PAN_TOKEN, CMS_BY_CIN};
    struct cms_superv *v = s->superv;
    char key[SV_REF_MAX + 3];
    uint32_t h;
    int64_t now = sv_mono_ms();
    int64_t row = -1;
    struct cms_card card;
    bool lost = false;
    ot_err err;

    snprintf(key, sizeof(key), "%d:%s", (int)ev->by, ev->ref);
    h = ot_str_hash32(key);
    pthread_mutex_lock(&v->mu);
    {
        struct sv_ident *id;
        sv_evict(v, now); /* first: it may free the entry looked up next */
        id = sv_ident_find(v, key, h);
        if (id != NULL && now - id->loaded_ms < v->card_ttl_ms) {
            struct sv_card *k = id->row != 0 ? sv_card_find(v, id->row) : NULL;
            if (id->row == 0 || (k != NULL && now - k->loaded_ms < v->card_ttl_ms)) {
                row = id->row;
                sv_lru_touch(&v->id_lru, &id->lru, now);
                if (k != NULL) {
                    sv_lru_touch(&v->card_lru, &k->lru, now);
                }
            }
        }
    }
    pthread_mutex_unlock(&v->mu);
    if (row >= 0) {
        *row_out = row;
        return OT_OK;
    }
    if (*c == NULL) {
        err = db_acquire(s->db, c);
        if (err != OT_OK) {
            return err;
        }
    }
    err = cms_card_find(s, *c, bys[ev->by], ev->ref, &card);
    if (err == OT_E_NOT_FOUND || err == OT_E_CONFLICT) {
        card.id = 0;
        err = OT_OK;
    }
    if (err == OT_OK && card.id != 0 && card.state != CMS_S_ACTIVE) {
        err = sv_last_reason_lost(*c, card.id, &lost);
    }
    if (err != OT_OK) {
        return err;
    }
    pthread_mutex_lock(&v->mu);
    {
        struct sv_ident *id = sv_ident_find(v, key, h);
        if (id == NULL) {
            id = calloc(1, sizeof(*id));
            if (id != NULL) {
                memcpy(id->key, key, sizeof(id->key));
                id->hash = h;
                id->next = v->idents[h & (SV_BUCKETS - 1)];
                v->idents[h & (SV_BUCKETS - 1)] = id;
                v->n_idents++;
            }
        }
        if (id != NULL) {
            id->row = card.id;
            id->loaded_ms = now;
            sv_lru_touch(&v->id_lru, &id->lru, now);
        }
        if (card.id != 0) {
            struct sv_card *k = sv_card_find(v, card.id);
            if (k == NULL) {
                k = calloc(1, sizeof(*k));
                if (k != NULL) {
                    uint32_t b = sv_row_hash(card.id) & (SV_BUCKETS - 1);
                    k->row = card.id;
                    k->next = v->cards[b];
                    v->cards[b] = k;
                    v->n_cards++;
                }
            }
            if (k != NULL) {
                sv_lru_touch(&v->card_lru, &k->lru, now);
                memcpy(k->card_id, card.card_id, sizeof(k->card_id));
                k->reported = card.state != CMS_S_ACTIVE && lost;
                if (card.state == CMS_S_ACTIVE) {
                    k->decided = 0;
                }
                k->loaded_ms = now;
            }
        }
    }
    pthread_mutex_unlock(&v->mu);
    *row_out = card.id;
    return OT_OK;
}

/* ---- decisions ------------------------------------------------------------------- */

struct sv_decision {
    int64_t row;
    char card_id[CMS_CARD_ID_MAX + 1];
    char rule[SV_RULE_NAME_MAX + 1];
    enum cms_action action;
    char *why;
    /* outcome */
    char outcome[48];
    int64_t action_id;
};

/* Starts the decision's action with its decision row, history and the
 * subscriber's notification in one transaction. */
static ot_err sv_decide(struct cms *s, const struct net_req *req, struct sv_decision *d)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct cms_card card;
    enum cms_state state = CMS_S_N;
    bool row = false;
    bool moved = false;
    ot_err err = OT_OK;

    OT_TRY(svc_tx_begin(s->kit, &c));
    err = cms_card_act(s, c, req, d->card_id, d->action, CMS_R_FRAUDULENT, CMS_C_SUPERVISION, 0,
                       d->why, &d->action_id, &state);
    if (err == OT_E_STATE) {
        /* nothing to move (already on its way or gone): the hit is kept */
        OT_TRY(cms_card_get(s, c, d->row, &card));
        OT_TRY(cms_history_add(s, c, d->row, "supervision.hit", card.state, "supervision",
                               "fraudulent", d->why));
        snprintf(d->outcome, sizeof(d->outcome), "no_move:%s", cms_state_name(card.state));
        err = OT_OK;
    } else {
        OT_TRY(err);
        moved = true;
        snprintf(d->outcome, sizeof(d->outcome), "%s", cms_state_name(state));
        OT_TRY(cms_card_get(s, c, d->row, &card));
    }
    OT_TRY(db_prepare(c,
                      "INSERT INTO cms_superv_decisions (card, rule, action, outcome, action_id,"
                      " why, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                      &st));
    OT_TRY(db_bind_int64(st, 1, d->row));
    OT_TRY(db_bind_text(st, 2, d->rule));
    OT_TRY(db_bind_text(st, 3, cms_action_name(d->action)));
    OT_TRY(db_bind_text(st, 4, d->outcome));
    OT_TRY(db_bind_int64(st, 5, d->action_id));
    OT_TRY(db_bind_text(st, 6, d->why));
    OT_TRY(db_bind_int64(st, 7, cms_now()));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(cms_notify(s, c, &card, "supervision.hit", d->why));
    OT_TRY(db_commit(c));
    if (moved) {
        cms_driver_kick(s);
    }
    cms_notify_kick(s);
    atomic_fetch_add(&s->superv->m_decisions, 1);
    OT_LOG_INFO("decision card=%s rule=%s action=%s outcome=%s", d->card_id, d->rule,
                cms_action_name(d->action), d->outcome);
out:
    db_reset(st);
    svc_tx_abort(&c);
    return err;
}

/* ---- intake ------------------------------------------------------------------------ */

struct sv_batch {
    struct sv_event *ev;
    size_t n;
    size_t cap;
    struct json_err je;
    /* outcome */
    size_t unknown;
    size_t duplicates;
    json_t *decisions;
};

/* Evaluates one event; a hit becomes a decision (d->why set) for the
 * caller to persist. */
static ot_err sv_take(struct cms *s, struct db_conn **c, const struct sv_event *ev,
                      struct sv_batch *b, struct sv_decision *d, bool *decided)
{
    struct cms_superv *v = s->superv;
    struct sv_card *k;
    struct sv_hit hit;
    int64_t row = 0;
    ot_err err = OT_OK;

    *decided = false;
    OT_TRY(sv_resolve(s, c, ev, &row));
    atomic_fetch_add(&v->m_events, 1);
    if (row == 0) {
        b->unknown++;
        return OT_OK;
    }
    pthread_mutex_lock(&v->mu);
    k = sv_card_find(v, row);
    if (k == NULL) {
        pthread_mutex_unlock(&v->mu);
        b->unknown++;
        return OT_OK;
    }
    if (!sv_window_add(&k->w, ev)) {
        pthread_mutex_unlock(&v->mu);
        b->duplicates++;
        return OT_OK;
    }
    if (sv_eval(v->rules, v->n_rules, &k->w, ev, k->reported, &hit)) {
        const struct sv_rule *r = &v->rules[hit.rule];
        int sev = r->action == CMS_ACT_DESTROY ? 2 : 1;
        if (sev > k->decided) {
            err = sv_why_json(r, &hit, &d->why);
            if (err == OT_OK) {
                k->decided = sev;
                d->row = row;
                memcpy(d->card_id, k->card_id, sizeof(d->card_id));
                memcpy(d->rule, r->name, sizeof(d->rule));
                d->action = r->action;
                *decided = true;
            }
        }
    }
    pthread_mutex_unlock(&v->mu);
out:
    return err;
}

static ot_err sv_decision_json(const struct sv_decision *d, json_t *arr)
{
    json_t *o = json_obj_new();
    char id[24];
    ot_err err = OT_OK;

    if (o == NULL) {
        return OT_E_NOMEM;
    }
    snprintf(id, sizeof(id), "%lld", (long long)d->action_id);
    OT_TRY(json_put_str(o, "card_id", d->card_id));
    OT_TRY(json_put_str(o, "rule", d->rule));
    OT_TRY(json_put_str(o, "action", cms_action_name(d->action)));
    OT_TRY(json_put_str(o, "outcome", d->outcome));
    if (d->action_id != 0) {
        OT_TRY(json_put_str(o, "action_id", id));
    }
    OT_TRY(json_push(arr, o));
    o = NULL;
out:
    json_free(o);
    return err;
}

static void sv_lat_add(struct cms_superv *v, int64_t us)
{
    pthread_mutex_lock(&v->mu);
    v->lat_us[v->lat_i] = us > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    v->lat_i = (v->lat_i + 1) % SV_LAT_N;
    if (v->lat_n < SV_LAT_N) {
        v->lat_n++;
    }
    pthread_mutex_unlock(&v->mu);
}

/* Runs the parsed events and answers. t0: when the first event was read
 * (a single event: the request's start). */
static void sv_run(struct cms *s, struct net_req *req, struct net_resp *resp, struct sv_batch *b,
                   int64_t t0)
{
    struct db_conn *c = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    sv_rules_fresh(s);
    b->decisions = json_arr_new();
    if (b->decisions == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (size_t i = 0; i < b->n; i++) {
        struct sv_decision d;
        bool decided = false;

        memset(&d, 0, sizeof(d));
        if (i > 0) {
            t0 = sv_mono_us();
        }
        OT_TRY(sv_take(s, &c, &b->ev[i], b, &d, &decided));
        if (decided) {
            /* sv_decide writes on a connection of its own: the lookups'
             * one is given back first (with db.pool 1 it would starve). */
            db_release(c);
            c = NULL;
            err = sv_decide(s, req, &d);
            if (err == OT_OK) {
                sv_lat_add(s->superv, sv_mono_us() - t0);
            }
            if (err == OT_OK && json_array_size(b->decisions) < SV_DECISIONS_OUT) {
                err = sv_decision_json(&d, b->decisions);
            }
            free(d.why);
            OT_TRY(err);
        }
    }
    db_release(c);
    c = NULL;
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "events", (int64_t)b->n) != OT_OK
        || json_put_int(o, "unknown_cards", (int64_t)b->unknown) != OT_OK
        || json_put_int(o, "duplicates", (int64_t)b->duplicates) != OT_OK
        || json_put(o, "decisions", b->decisions) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    b->decisions = NULL;
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    db_release(c);
    json_free(o);
    json_free(b->decisions);
    b->decisions = NULL;
    if (err != OT_OK) {
        OT_LOG_ERROR("intake failed after %zu events: %s", b->n, ot_strerror(err));
        svc_fail(resp, err);
    }
}

/* Operators, and the service providers named in superv_sources. */
static bool sv_source_ok(struct cms *s, const struct net_req *req, struct net_resp *resp)
{
    const struct net_principal *p = net_req_principal(req);
    char key[sizeof(p->name) + 3];

    if (p != NULL && p->kind == NET_P_OPERATOR) {
        return true;
    }
    if (p != NULL && p->name[0] != '\0' && strchr(p->name, ',') == NULL) {
        snprintf(key, sizeof(key), ",%s,", p->name);
        if (strstr(s->superv->sources, key) != NULL) {
            return true;
        }
    }
    net_resp_error(resp, OT_E_FORBIDDEN, NULL,
                   "not a payment system of this platform (cms.superv_sources)", NULL);
    return false;
}

void cms_h_events(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    struct sv_batch b;
    struct sv_event ev;
    size_t n = 0;
    const uint8_t *body = net_req_body(req, &n);
    int64_t t0 = sv_mono_us();
    ot_err err;

    if (!sv_source_ok(s, req, resp)) {
        return;
    }
    memset(&b, 0, sizeof(b));
    err = sv_event_parse((const char *)body, n, &ev, &b.je);
    if (err != OT_OK) {
        net_resp_json_error(resp, err, &b.je);
        return;
    }
    b.ev = &ev;
    b.n = 1;
    sv_run(s, req, resp, &b, t0);
}

static ot_err sv_batch_line(void *ctx, const char *line, size_t len, size_t no)
{
    struct sv_batch *b = ctx;

    if (b->n == b->cap) {
        return OT_E_LIMIT;
    }
    json_err_scope(&b->je, "lines[%zu]", no);
    ot_err err = sv_event_parse(line, len, &b->ev[b->n], &b->je);
    if (err == OT_OK) {
        b->n++;
    }
    return err;
}

void cms_h_events_batch(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    struct sv_batch b;
    size_t n = 0;
    size_t line = 0;
    const uint8_t *body = net_req_body(req, &n);
    size_t lines = 1;
    ot_err err;

    if (!sv_source_ok(s, req, resp)) {
        return;
    }
    memset(&b, 0, sizeof(b));
    for (size_t i = 0; i < n; i++) {
        lines += body[i] == '\n';
    }
    b.cap = lines < (size_t)s->superv->batch_max ? lines : (size_t)s->superv->batch_max;
    b.ev = malloc(b.cap * sizeof(*b.ev));
    if (b.ev == NULL) {
        svc_fail(resp, OT_E_NOMEM);
        return;
    }
    err = sv_ndjson_each((const char *)body, n, (size_t)s->superv->batch_max, sv_batch_line, &b,
                         &line);
    if (err == OT_E_LIMIT) {
        char f[40];
        snprintf(f, sizeof(f), "lines[%zu]", line);
        net_resp_error(resp, OT_E_LIMIT, NULL,
                       "a line over 4096 bytes, or more events than superv_batch_max", f);
    } else if (err != OT_OK) {
        net_resp_json_error(resp, err, &b.je);
    } else if (b.n == 0) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "no event", "lines[1]");
    } else {
        sv_run(s, req, resp, &b, sv_mono_us());
    }
    free(b.ev);
}

/* ---- rules API ------------------------------------------------------------------- */

static ot_err sv_rules_json(struct cms *s, json_t **out)
{
    struct cms_superv *v = s->superv;
    json_t *items = json_arr_new();
    json_t *o = json_obj_new();
    ot_err err = OT_OK;

    *out = NULL;
    if (items == NULL || o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->n_rules && err == OT_OK; i++) {
        json_t *r = NULL;
        struct json_err je;
        memset(&je, 0, sizeof(je));
        err = json_parse(v->rules[i].json, strlen(v->rules[i].json), 65536 * 16, &r, &je);
        if (err == OT_OK) {
            err = json_push(items, r);
        }
    }
    pthread_mutex_unlock(&v->mu);
    OT_TRY(err);
    OT_TRY(json_put(o, "items", items));
    items = NULL;
    *out = o;
    o = NULL;
out:
    json_free(items);
    json_free(o);
    return err;
}

void cms_h_rules_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    json_t *o = NULL;
    ot_err err;

    (void)req;
    err = sv_rules_load(s);
    if (err == OT_OK) {
        err = sv_rules_json(s, &o);
    }
    if (err != OT_OK) {
        svc_fail(resp, err);
        return;
    }
    net_resp_json(resp, 200, o);
}

void cms_h_rule_put(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    const char *name = net_req_param(req, "name");
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct sv_rule r;
    struct json_err je;
    json_t *doc = NULL;
    json_t *o = NULL;
    char res[160];
    bool row = false;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    memset(&r, 0, sizeof(r));
    static const char *const allowed[] = {"name",     "kind",  "action",    "enabled", "max",
                                          "window_s", "min_s", "merchants", NULL};

    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    err = sv_rule_parse(name, doc, &r, &je);
    if (err != OT_OK) {
        net_resp_json_error(resp, err, &je);
        goto done;
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    OT_TRY(db_prepare(c,
                      "INSERT INTO cms_superv_rules (name, body, updated_at) VALUES ($1, $2, $3)"
                      " ON CONFLICT (name) DO UPDATE SET body = excluded.body,"
                      " updated_at = excluded.updated_at",
                      &st));
    OT_TRY(db_bind_text(st, 1, r.name));
    OT_TRY(db_bind_text(st, 2, r.json));
    OT_TRY(db_bind_int64(st, 3, cms_now()));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/rules/%s", s->prefix, r.name);
    OT_TRY(svc_audit(s->kit, c, req, "cms.rule.put", res, "ok"));
    OT_TRY(json_parse(r.json, strlen(r.json), 65536 * 16, &o, &je));
    if (svc_tx_commit(&c, req, resp, 200, o) == OT_OK) {
        (void)sv_rules_load(s);
    }
    o = NULL;
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    sv_rule_clear(&r);
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

void cms_h_rule_delete(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    const char *name = net_req_param(req, "name");
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    json_t *o = NULL;
    char res[160];
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(svc_tx_begin(s->kit, &c));
    OT_TRY(db_prepare(c, "DELETE FROM cms_superv_rules WHERE name = $1", &st));
    OT_TRY(db_bind_text(st, 1, name));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        db_reset(st);
        st = NULL;
        svc_tx_abort(&c);
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such rule", NULL);
        return;
    }
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/rules/%.40s", s->prefix, name);
    OT_TRY(svc_audit(s->kit, c, req, "cms.rule.delete", res, "ok"));
    o = json_obj_new();
    if (o == NULL || json_put_bool(o, "deleted", true) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (svc_tx_commit(&c, req, resp, 200, o) == OT_OK) {
        (void)sv_rules_load(s);
    }
    o = NULL;
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
    json_free(o);
    svc_tx_abort(&c);
}

/* GET /decisions: newest last, keyset pages. */
static const struct svc_col sv_decision_cols[] = {
    {"id", SVC_COL_ID, 0},       {"card_id", SVC_COL_TEXT, 0}, {"rule", SVC_COL_TEXT, 0},
    {"action", SVC_COL_TEXT, 0}, {"outcome", SVC_COL_TEXT, 0}, {"why", SVC_COL_JSON, 0},
    {"at", SVC_COL_INT, 0},
};

void cms_h_decisions(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    const struct svc_list l = {
        .sql = "SELECT d.id, c.card_id, d.rule, d.action, d.outcome, d.why, d.at"
               " FROM cms_superv_decisions d JOIN cms_cards c ON c.id = d.card"
               " WHERE d.id > $1 ORDER BY d.id LIMIT $2",
        .cols = sv_decision_cols,
        .ncols = SVC_NCOLS(sv_decision_cols),
    };

    svc_list_page(s->db, req, resp, &l);
}

/* ---- life ----------------------------------------------------------------------------- */

ot_err cms_superv_open(struct cms *s, const struct svc_env *env)
{
    struct cms_superv *v = calloc(1, sizeof(*v));

    if (v == NULL) {
        return OT_E_NOMEM;
    }
    v->idents = calloc(SV_BUCKETS, sizeof(*v->idents));
    v->cards = calloc(SV_BUCKETS, sizeof(*v->cards));
    if (v->idents == NULL || v->cards == NULL) {
        free(v->idents);
        free(v->cards);
        free(v);
        return OT_E_NOMEM;
    }
    pthread_mutex_init(&v->mu, NULL);
    v->card_ttl_ms = svc_cfg_int(env, "superv_card_ttl_ms");
    v->keep_ms = svc_cfg_int(env, "superv_keep_s") * 1000;
    v->batch_max = svc_cfg_int(env, "superv_batch_max");
    {
        /* ",a,b," without blanks: a name matches as ",name," */
        const char *src = svc_cfg_str(env, "superv_sources");
        size_t o = 0;
        v->sources[o++] = ',';
        for (; src != NULL && *src != '\0' && o + 2 < sizeof(v->sources); src++) {
            if (*src != ' ' && *src != '\t') {
                v->sources[o++] = *src;
            }
        }
        v->sources[o++] = ',';
        v->sources[o] = '\0';
    }
    s->superv = v;
    if (sv_rules_load(s) != OT_OK) {
        OT_LOG_WARN("rules not loaded at start: loaded with the first events");
        v->rules_ms = 0;
    }
    return OT_OK;
}

void cms_superv_close(struct cms *s)
{
    struct cms_superv *v = s->superv;

    if (v == NULL) {
        return;
    }
    for (size_t b = 0; b < SV_BUCKETS; b++) {
        while (v->idents[b] != NULL) {
            struct sv_ident *n = v->idents[b]->next;
            free(v->idents[b]);
            v->idents[b] = n;
        }
        while (v->cards[b] != NULL) {
            struct sv_card *n = v->cards[b]->next;
            sv_window_free(&v->cards[b]->w);
            free(v->cards[b]);
            v->cards[b] = n;
        }
    }
    free(v->idents);
    free(v->cards);
    sv_rules_free(v->rules, v->n_rules);
    pthread_mutex_destroy(&v->mu);
    free(v);
    s->superv = NULL;
}

static double sv_m_events(void *ctx)
{
    return (double)atomic_load(&((struct cms *)ctx)->superv->m_events);
}

static double sv_m_decisions(void *ctx)
{
    return (double)atomic_load(&((struct cms *)ctx)->superv->m_decisions);
}

static double sv_m_gauge(struct cms *s, bool cards)
{
    struct cms_superv *v = s->superv;
    size_t n;

    pthread_mutex_lock(&v->mu);
    n = cards ? v->n_cards : v->n_idents;
    pthread_mutex_unlock(&v->mu);
    return (double)n;
}

static double sv_m_cards(void *ctx)
{
    return sv_m_gauge(ctx, true);
}

static double sv_m_refs(void *ctx)
{
    return sv_m_gauge(ctx, false);
}

static int sv_u32cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of the kept decision latencies, in ms (0: none). */
static double sv_lat_q(struct cms *s, double q)
{
    struct cms_superv *v = s->superv;
    uint32_t *tmp = malloc(SV_LAT_N * sizeof(uint32_t));
    size_t n;
    double r = 0;

    if (tmp == NULL) {
        return 0;
    }
    pthread_mutex_lock(&v->mu);
    n = v->lat_n;
    memcpy(tmp, v->lat_us, n * sizeof(uint32_t));
    pthread_mutex_unlock(&v->mu);
    if (n > 0) {
        size_t i = (size_t)(q * (double)n);
        qsort(tmp, n, sizeof(uint32_t), sv_u32cmp);
        r = (double)tmp[i < n ? i : n - 1] / 1000.0;
    }
    free(tmp);
    return r;
}

static double sv_m_p50(void *ctx)
{
    return sv_lat_q(ctx, 0.50);
}

static double sv_m_p99(void *ctx)
{
    return sv_lat_q(ctx, 0.99);
}

ot_err cms_superv_metrics(struct cms *s, struct net_metrics *nm)
{
    ot_err err = OT_OK;

    OT_TRY(net_metrics_register(nm, "cms_superv_events_total",
                                "Payment events taken in by supervision.", NET_METRIC_COUNTER,
                                sv_m_events, s));
    OT_TRY(net_metrics_register(nm, "cms_superv_decisions_total",
                                "Supervision decisions (a rule's hit that started an action).",
                                NET_METRIC_COUNTER, sv_m_decisions, s));
    OT_TRY(net_metrics_register(nm, "cms_superv_cards",
                                "Cards whose event window supervision holds in memory (idle ones "
                                "are dropped after cms.superv_keep_s).",
                                NET_METRIC_GAUGE, sv_m_cards, s));
    OT_TRY(net_metrics_register(nm, "cms_superv_refs",
                                "Event references (card id, PAN token, CIN) supervision remembers, "
                                "unknown ones included.",
                                NET_METRIC_GAUGE, sv_m_refs, s));
    OT_TRY(net_metrics_register(nm, "cms_superv_decision_p50_ms",
                                "Median of the last 4096 decisions' latency (event read to "
                                "decision committed), ms.",
                                NET_METRIC_GAUGE, sv_m_p50, s));
    OT_TRY(net_metrics_register(nm, "cms_superv_decision_p99_ms",
                                "99th percentile of the last 4096 decisions' latency (event read "
                                "to decision committed), ms.",
                                NET_METRIC_GAUGE, sv_m_p99, s));
out:
    return err;
}
