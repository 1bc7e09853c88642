/* Supervision's engine (superv.h): events, NDJSON, rules, windows. */
#define OT_LOG_COMPONENT "cms.superv"
#include "cms/superv.h"

#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SV_WHY_MAX 4096u

const char *const sv_kind_names[SV_K_N] = {"velocity", "wrong_pin", "travel", "blocklist",
                                           "lost_stolen"};

static bool sv_token_ok(const char *s, size_t max, const char *extra)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        char ch = s[n];
        if (n >= max
            || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                 || strchr(extra, ch) != NULL)) {
            return false;
        }
    }
    return n > 0;
}

/* ---- events ---------------------------------------------------------------- */

static ot_err sv_bad(struct json_err *je, ot_err e, const char *field, const char *msg)
{
    return json_err_set(je, e, field, "%s", msg);
}

ot_err sv_event_parse(const char *p, size_t n, struct sv_event *ev, struct json_err *je)
{
    static const char *const allowed[] = {"id",     "card_id",  "pan_token", "cin",           "at",
                                          "amount", "currency", "merchant",  "location_area", "pin",
                                          "type",   NULL};
    static const char *const pins[] = {"none", "ok", "wrong"};
    static const char *const types[] = {"purchase", "withdrawal", "refund", "pin_check"};
    static const char *const refs[] = {"card_id", "pan_token", "cin"};
    json_t *doc = NULL;
    const char *s = NULL;
    size_t k = 0;
    int nref = 0;
    ot_err err = OT_OK;

    memset(ev, 0, sizeof(*ev));
    err = json_parse(p, n, SV_LINE_MAX, &doc, je);
    if (err != OT_OK) {
        return err;
    }
    if (!json_is_obj(doc)) {
        err = sv_bad(je, OT_E_FORMAT, "", "an event is a JSON object");
        goto out;
    }
    OT_TRY(json_check_fields(doc, allowed, NULL, je));
    OT_TRY(json_get_str(doc, "id", 1, SV_ID_MAX, &s, je));
    if (!sv_token_ok(s, SV_ID_MAX, "._:-")) {
        OT_FAIL(sv_bad(je, OT_E_FORMAT, "id", "[A-Za-z0-9._:-]{1,48}"));
    }
    memcpy(ev->id, s, strlen(s) + 1);
    for (size_t i = 0; i < 3; i++) {
        const char *v = NULL;
        OT_TRY(json_opt_str(doc, refs[i], 1, SV_REF_MAX, &v, je));
        if (v == NULL) {
            continue;
        }
        nref++;
        if (i == 2) {
            uint8_t cin[SV_REF_MAX / 2];
            size_t cn = sizeof(cin);
            if (hex_decode(v, strlen(v), cin, &cn) != OT_OK || cn == 0) {
                OT_FAIL(sv_bad(je, OT_E_HEX, "cin", "the SE's CIN in hex"));
            }
        } else if (!sv_token_ok(v, SV_REF_MAX, "._-")) {
            OT_FAIL(sv_bad(je, OT_E_FORMAT, refs[i], "[A-Za-z0-9._-]{1,64}"));
        }
        ev->by = (enum sv_by)i;
        memcpy(ev->ref, v, strlen(v) + 1);
    }
    if (nref != 1) {
        OT_FAIL(sv_bad(je, OT_E_FORMAT, "card_id", "exactly one of card_id, pan_token, cin"));
    }
    OT_TRY(json_get_int(doc, "at", 0, INT64_C(253402300799999), &ev->at_ms, je));
    OT_TRY(json_opt_int(doc, "amount", 0, INT64_C(1000000000000), 0, &ev->amount, je));
    OT_TRY(json_opt_str(doc, "currency", 3, 3, &s, je));
    OT_TRY(json_opt_str(doc, "merchant", 1, SV_MERCHANT_MAX, &s, je));
    if (s != NULL) {
        if (!sv_token_ok(s, SV_MERCHANT_MAX, "._:-")) {
            OT_FAIL(sv_bad(je, OT_E_FORMAT, "merchant", "[A-Za-z0-9._:-]{1,64}"));
        }
        memcpy(ev->merchant, s, strlen(s) + 1);
    }
    OT_TRY(json_opt_str(doc, "location_area", 1, SV_AREA_MAX, &s, je));
    if (s != NULL) {
        if (!sv_token_ok(s, SV_AREA_MAX, "._:-")) {
            OT_FAIL(sv_bad(je, OT_E_FORMAT, "location_area", "[A-Za-z0-9._:-]{1,32}"));
        }
        memcpy(ev->area, s, strlen(s) + 1);
    }
    OT_TRY(json_opt_enum(doc, "pin", pins, 3, 0, &k, je));
    ev->pin = (enum sv_pin)k;
    OT_TRY(json_opt_enum(doc, "type", types, 4, 0, &k, je));
out:
    json_free(doc);
    return err;
}

ot_err sv_ndjson_each(const char *p, size_t n, size_t max_lines,
                      ot_err (*fn)(void *ctx, const char *line, size_t len, size_t no), void *ctx,
                      size_t *line)
{
    size_t no = 0;
    size_t events = 0;
    size_t i = 0;

    *line = 0;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t end = nl != NULL ? (size_t)(nl - p) : n;
        size_t len = end - i;
        ot_err err;

        no++;
        if (len > 0 && p[i + len - 1] == '\r') {
            len--;
        }
        if (len > SV_LINE_MAX) {
            *line = no;
            return OT_E_LIMIT;
        }
        if (len > 0) {
            if (++events > max_lines) {
                *line = no;
                return OT_E_LIMIT;
            }
            err = fn(ctx, p + i, len, no);
            if (err != OT_OK) {
                *line = no;
                return err;
            }
        }
        i = end + 1;
    }
    return OT_OK;
}

/* ---- rules ------------------------------------------------------------------ */

static int sv_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void sv_rule_clear(struct sv_rule *r)
{
    for (size_t i = 0; i < r->n_merchants; i++) {
        free(r->merchants[i]);
    }
    free(r->merchants);
    free(r->json);
    memset(r, 0, sizeof(*r));
}

ot_err sv_rule_parse(const char *name, const json_t *doc, struct sv_rule *out, struct json_err *je)
{
    static const char *const allowed[] = {"name",     "kind",  "action",    "enabled", "max",
                                          "window_s", "min_s", "merchants", NULL};
    static const char *const actions[] = {"lock", "destroy"};
    const json_t *arr = NULL;
    json_t *o = NULL;
    json_t *list = NULL;
    size_t k = 0;
    size_t a = 0;
    int64_t v = 0;
    char *txt = NULL;
    size_t len = 0;
    ot_err err = OT_OK;

    memset(out, 0, sizeof(*out));
    if (name == NULL || !sv_token_ok(name, SV_RULE_NAME_MAX, "_-")) {
        return sv_bad(je, OT_E_FORMAT, "name", "[A-Za-z0-9_-]{1,32}");
    }
    memcpy(out->name, name, strlen(name) + 1);
    if (!json_is_obj(doc)) {
        return sv_bad(je, OT_E_FORMAT, "", "a rule is a JSON object");
    }
    OT_TRY(json_check_fields(doc, allowed, NULL, je));
    {
        const char *nm = NULL;
        OT_TRY(json_opt_str(doc, "name", 1, SV_RULE_NAME_MAX, &nm, je));
        if (nm != NULL && strcmp(nm, name) != 0) {
            OT_FAIL(sv_bad(je, OT_E_FORMAT, "name", "not the name in the path"));
        }
    }
    OT_TRY(json_get_enum(doc, "kind", sv_kind_names, SV_K_N, &k, je));
    out->kind = (enum sv_kind)k;
    OT_TRY(json_get_enum(doc, "action", actions, 2, &a, je));
    out->action = a == 0 ? CMS_ACT_LOCK : CMS_ACT_DESTROY;
    OT_TRY(json_opt_bool(doc, "enabled", true, &out->enabled, je));
    o = json_obj_new();
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_put_str(o, "name", out->name));
    OT_TRY(json_put_str(o, "kind", sv_kind_names[k]));
    OT_TRY(json_put_str(o, "action", actions[a]));
    OT_TRY(json_put_bool(o, "enabled", out->enabled));
    /* what each kind takes, and only that */
    {
        bool wants_max = k == SV_K_VELOCITY || k == SV_K_WRONG_PIN;
        bool wants_min = k == SV_K_TRAVEL;
        bool wants_list = k == SV_K_BLOCKLIST;
        if (!wants_max && json_object_get(doc, "max") != NULL) {
            OT_FAIL(sv_bad(je, OT_E_FORMAT, "max", "not a parameter of this kind"));
        }
        if (!wants_max && json_object_get(doc, "window_s") != NULL) {
            OT_FAIL(sv_bad(je, OT_E_FORMAT, "window_s", "not a parameter of this kind"));
        }
        if (!wants_min && json_object_get(doc, "min_s") != NULL) {
            OT_FAIL(sv_bad(je, OT_E_FORMAT, "min_s", "not a parameter of this kind"));
        }
        if (!wants_list && json_object_get(doc, "merchants") != NULL) {
            OT_FAIL(sv_bad(je, OT_E_FORMAT, "merchants", "not a parameter of this kind"));
        }
        if (wants_max) {
            /* a velocity hit needs max + 1 events in the window */
            OT_TRY(json_get_int(doc, "max", 1,
                                k == SV_K_VELOCITY ? (int64_t)SV_RING - 1 : (int64_t)SV_RING,
                                &out->max, je));
            OT_TRY(json_get_int(doc, "window_s", 1, 86400 * 30, &v, je));
            out->window_ms = v * 1000;
            OT_TRY(json_put_int(o, "max", out->max));
            OT_TRY(json_put_int(o, "window_s", v));
        }
        if (wants_min) {
            OT_TRY(json_get_int(doc, "min_s", 1, 86400 * 7, &v, je));
            out->min_ms = v * 1000;
            OT_TRY(json_put_int(o, "min_s", v));
        }
        if (wants_list) {
            size_t cnt = 0;
            OT_TRY(json_get_array(doc, "merchants", 1, SV_BLOCKLIST_MAX, &arr, &cnt, je));
            out->merchants = calloc(json_array_size(arr), sizeof(char *));
            list = json_arr_new();
            if (out->merchants == NULL || list == NULL) {
                OT_FAIL(OT_E_NOMEM);
            }
            for (size_t i = 0; i < json_array_size(arr); i++) {
                const char *m = json_string_value(json_array_get(arr, i));
                if (m == NULL || !sv_token_ok(m, SV_MERCHANT_MAX, "._:-")) {
                    char f[40];
                    snprintf(f, sizeof(f), "merchants[%zu]", i);
                    OT_FAIL(sv_bad(je, OT_E_FORMAT, f, "[A-Za-z0-9._:-]{1,64}"));
                }
                out->merchants[i] = strdup(m);
                if (out->merchants[i] == NULL) {
                    OT_FAIL(OT_E_NOMEM);
                }
                out->n_merchants++;
            }
            qsort(out->merchants, out->n_merchants, sizeof(char *), sv_strcmp);
            for (size_t i = 0; i < out->n_merchants; i++) {
                if (i > 0 && strcmp(out->merchants[i - 1], out->merchants[i]) == 0) {
                    OT_FAIL(sv_bad(je, OT_E_FORMAT, "merchants", "a merchant twice"));
                }
                json_t *x = json_string(out->merchants[i]);
                if (x == NULL) {
                    OT_FAIL(OT_E_NOMEM);
                }
                OT_TRY(json_push(list, x));
            }
            OT_TRY(json_put(o, "merchants", list));
            list = NULL;
        }
    }
    OT_TRY(json_serialize(o, &txt, &len));
    out->json = txt;
out:
    json_free(list);
    json_free(o);
    if (err != OT_OK) {
        sv_rule_clear(out);
    }
    return err;
}

/* ---- windows and evaluation --------------------------------------------------- */

static uint32_t sv_area_hash(const char *a)
{
    uint32_t h;

    if (a[0] == '\0') {
        return 0;
    }
    h = ot_str_hash32(a);
    return h != 0 ? h : 1;
}

/* The i-th newest event (0 = the newest). */
static const struct sv_mem *sv_at(const struct sv_window *w, unsigned i)
{
    return &w->ring[(w->head + w->cap - 1 - i) % w->cap];
}

bool sv_window_add(struct sv_window *w, const struct sv_event *ev)
{
    struct sv_mem *m;

    for (unsigned i = 0; i < w->n; i++) {
        if (strcmp(sv_at(w, i)->id, ev->id) == 0) {
            return false;
        }
    }
    if (w->n == w->cap && w->cap < SV_RING) {
        unsigned ncap = w->cap == 0 ? 4 : w->cap * 2;
        struct sv_mem *r = calloc(ncap, sizeof(*r));
        if (r != NULL) {
            /* unroll oldest first */
            for (unsigned i = 0; i < w->n; i++) {
                r[i] = *sv_at(w, w->n - 1 - i);
            }
            free(w->ring);
            w->ring = r;
            w->cap = ncap;
            w->head = w->n;
        }
    }
    if (w->cap == 0) {
        return true; /* no memory: the event goes unremembered */
    }
    m = &w->ring[w->head];
    memcpy(m->id, ev->id, sizeof(m->id));
    m->at_ms = ev->at_ms;
    m->area = sv_area_hash(ev->area);
    m->pin = (uint8_t)ev->pin;
    w->head = (w->head + 1) % w->cap;
    if (w->n < w->cap) {
        w->n++;
    }
    return true;
}

void sv_window_free(struct sv_window *w)
{
    free(w->ring);
    memset(w, 0, sizeof(*w));
}

static bool sv_in_window(const struct sv_mem *m, const struct sv_event *ev, int64_t window_ms)
{
    return m->at_ms <= ev->at_ms && m->at_ms > ev->at_ms - window_ms;
}

static bool sv_rule_hits(const struct sv_rule *r, const struct sv_window *w,
                         const struct sv_event *ev, bool reported, struct sv_hit *hit)
{
    hit->n_ids = 0;
    switch (r->kind) {
    case SV_K_VELOCITY:
    case SV_K_WRONG_PIN: {
        int64_t need = r->kind == SV_K_VELOCITY ? r->max + 1 : r->max;
        if (r->kind == SV_K_WRONG_PIN && ev->pin != SV_PIN_WRONG) {
            return false;
        }
        for (unsigned i = 0; i < w->n; i++) {
            const struct sv_mem *m = sv_at(w, i);
            if (!sv_in_window(m, ev, r->window_ms)) {
                continue;
            }
            if (r->kind == SV_K_WRONG_PIN && m->pin != SV_PIN_WRONG) {
                continue;
            }
            hit->ids[hit->n_ids++] = m->id;
        }
        return (int64_t)hit->n_ids >= need;
    }
    case SV_K_TRAVEL: {
        uint32_t area = sv_area_hash(ev->area);
        if (area == 0) {
            return false;
        }
        for (unsigned i = 0; i < w->n; i++) {
            const struct sv_mem *m = sv_at(w, i);
            int64_t d = m->at_ms > ev->at_ms ? m->at_ms - ev->at_ms : ev->at_ms - m->at_ms;
            if (m->area != 0 && m->area != area && d < r->min_ms) {
                hit->ids[hit->n_ids++] = m->id;
                hit->ids[hit->n_ids++] = ev->id;
                return true;
            }
        }
        return false;
    }
    case SV_K_BLOCKLIST: {
        const char *key = ev->merchant;
        if (key[0] == '\0'
            || bsearch(&key, r->merchants, r->n_merchants, sizeof(char *), sv_strcmp) == NULL) {
            return false;
        }
        hit->ids[hit->n_ids++] = ev->id;
        return true;
    }
    case SV_K_LOST_STOLEN:
        if (!reported) {
            return false;
        }
        hit->ids[hit->n_ids++] = ev->id;
        return true;
    case SV_K_N:
        break;
    }
    return false;
}

bool sv_eval(const struct sv_rule *rules, size_t n, const struct sv_window *w,
             const struct sv_event *ev, bool reported, struct sv_hit *hit)
{
    struct sv_hit h;
    bool found = false;

    memset(hit, 0, sizeof(*hit));
    for (size_t i = 0; i < n; i++) {
        if (!rules[i].enabled) {
            continue;
        }
        if (found
            && (rules[hit->rule].action == CMS_ACT_DESTROY || rules[i].action != CMS_ACT_DESTROY)) {
            continue; /* nothing this rule decides would win */
        }
        if (sv_rule_hits(&rules[i], w, ev, reported, &h)) {
            h.rule = i;
            *hit = h;
            found = true;
        }
    }
    return found;
}

ot_err sv_why_json(const struct sv_rule *r, const struct sv_hit *hit, char **out)
{
    struct buf_wr w;
    char *p = malloc(SV_WHY_MAX + 1);
    size_t len = 0;
    ot_err err;

    *out = NULL;
    if (p == NULL) {
        return OT_E_NOMEM;
    }
    buf_wr_init(&w, (uint8_t *)p, SV_WHY_MAX);
    buf_wr_bytes(&w, "{\"rule\":\"", 9);
    buf_wr_bytes(&w, r->name, strlen(r->name));
    buf_wr_bytes(&w, "\",\"kind\":\"", 10);
    buf_wr_bytes(&w, sv_kind_names[r->kind], strlen(sv_kind_names[r->kind]));
    buf_wr_bytes(&w, "\",\"action\":\"", 12);
    buf_wr_bytes(&w, cms_action_name(r->action), strlen(cms_action_name(r->action)));
    buf_wr_bytes(&w, "\",\"params\":", 11);
    /* a blocklist's params can be long: the kind and the hit say enough then */
    if (strlen(r->json) < SV_WHY_MAX / 2) {
        buf_wr_bytes(&w, r->json, strlen(r->json));
    } else {
        buf_wr_bytes(&w, "null", 4);
    }
    buf_wr_bytes(&w, ",\"events\":[", 11);
    for (size_t i = 0; i < hit->n_ids; i++) {
        if (i > 0) {
            buf_wr_u8(&w, ',');
        }
        buf_wr_u8(&w, '"');
        buf_wr_bytes(&w, hit->ids[i], strlen(hit->ids[i]));
        buf_wr_u8(&w, '"');
    }
    buf_wr_bytes(&w, "]}", 2);
    err = buf_wr_finish(&w, &len);
    if (err != OT_OK) {
        free(p);
        return err;
    }
    p[len] = '\0';
    *out = p;
    return OT_OK;
}
