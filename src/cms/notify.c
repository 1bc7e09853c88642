/* Subscriber notifications (issue 13 point 6, cms_priv.h: cms_notify, docs/
 * cms.md "Supervision and notifications"): each subscriber's settings
 * (GET/PUT /subscribers/{id}/notifications) and the channels that turn an
 * event of one of their cards into outbox rows of the kit (svc/webhook.h),
 * in the transaction of the change. The channels are a table: a channel
 * says whether a subscriber's settings ask for it and writes its message. */
#define OT_LOG_COMPONENT "cms.notify"
#include "cms/cms_priv.h"

#include "core/buf.h"
#include "core/log.h"
#include "db/db.h"
#include "db/keystore.h"
#include "svc/kit.h"
#include "svc/webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The events cms tells of (cms_notify's callers). */
static const char *const cms_notify_events[] = {
    "lock.accepted", "unlock.accepted", "destroy.accepted", "locked",          "unlocked",
    "destroyed",     "lock.failed",     "unlock.failed",    "destroy.delayed", "supervision.hit",
};
#define CMS_NOTIFY_EVENTS_N (sizeof(cms_notify_events) / sizeof(cms_notify_events[0]))
#define CMS_EVENTS_TEXT_MAX 256u

/* A subscriber's settings. */
struct cms_nset {
    int64_t subscriber;
    char webhook_url[SVC_OUTBOX_TARGET_MAX + 1]; /* "" = none */
    int64_t key_version;                         /* the secret's version, 0 = none */
    char email[SVC_OUTBOX_TARGET_MAX + 1];       /* "" = none */
    char events[CMS_EVENTS_TEXT_MAX];            /* "a,b,c" or "" = every event */
};

static void cms_nkey_name(int64_t subscriber, char *out, size_t cap)
{
    snprintf(out, cap, "notify.%lld.webhook", (long long)subscriber);
}

/* ---- channels ---------------------------------------------------------------- */

struct cms_note {
    const char *ref; /* "subscriber:<id>" */
    const struct cms_card *card;
    const char *event;
    const char *json; /* the webhook body */
};

struct cms_channel {
    const char *name;
    bool (*wanted)(const struct cms_nset *n);
    ot_err (*write)(struct cms *s, struct db_conn *c, const struct cms_nset *n,
                    const struct cms_note *note);
};

static bool cms_ch_webhook_wanted(const struct cms_nset *n)
{
    return n->webhook_url[0] != '\0' && n->key_version > 0;
}

static ot_err cms_ch_webhook_write(struct cms *s, struct db_conn *c, const struct cms_nset *n,
                                   const struct cms_note *note)
{
    char key[64];
    char ev[48];
    struct svc_outbox_msg m;

    cms_nkey_name(n->subscriber, key, sizeof(key));
    snprintf(ev, sizeof(ev), "card.%s", note->event);
    memset(&m, 0, sizeof(m));
    m.channel = SVC_CH_WEBHOOK;
    m.target = n->webhook_url;
    m.key_owner = CMS_KEYSTORE_OWNER;
    m.key_name = key;
    m.event = ev;
    m.body = note->json;
    m.ref = note->ref;
    return svc_outbox_add(s->outbox, c, &m, NULL);
}

static bool cms_ch_email_wanted(const struct cms_nset *n)
{
    return n->email[0] != '\0';
}

static const char *cms_event_text(const char *ev)
{
    static const struct {
        const char *ev;
        const char *text;
    } t[] = {
        {"lock.accepted", "a lock of your card was requested"},
        {"unlock.accepted", "an unlock of your card was requested"},
        {"destroy.accepted", "the destruction of your card was requested"},
        {"locked", "your card is locked"},
        {"unlocked", "your card is unlocked"},
        {"destroyed", "your card is destroyed"},
        {"lock.failed", "the lock of your card failed"},
        {"unlock.failed", "the unlock of your card failed"},
        {"destroy.delayed", "the destruction of your card is delayed; it will go on"},
        {"supervision.hit", "suspicious use of your card was detected"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcmp(t[i].ev, ev) == 0) {
            return t[i].text;
        }
    }
    return ev;
}

static ot_err cms_ch_email_write(struct cms *s, struct db_conn *c, const struct cms_nset *n,
                                 const struct cms_note *note)
{
    char subject[160];
    char ev[48];
    char *text = NULL;
    size_t cap = strlen(note->json) + 512;
    struct svc_outbox_msg m;
    ot_err err;

    text = malloc(cap);
    if (text == NULL) {
        return OT_E_NOMEM;
    }
    snprintf(subject, sizeof(subject), "Card %s: %s", note->card->card_id,
             cms_event_text(note->event));
    snprintf(text, cap,
             "Card %s (issuer %s): %s.\n\nEvent: card.%s\nDetails: %s\n\n"
             "If you did not ask for this, contact your bank.\n",
             note->card->card_id, note->card->issuer, cms_event_text(note->event), note->event,
             note->json);
    snprintf(ev, sizeof(ev), "card.%s", note->event);
    memset(&m, 0, sizeof(m));
    m.channel = SVC_CH_EMAIL;
    m.target = n->email;
    m.event = ev;
    m.subject = subject;
    m.body = text;
    m.ref = note->ref;
    err = svc_outbox_add(s->outbox, c, &m, NULL);
    free(text);
    return err;
}

static const struct cms_channel cms_channels[] = {
    {"webhook", cms_ch_webhook_wanted, cms_ch_webhook_write},
    {"email", cms_ch_email_wanted, cms_ch_email_write},
};

/* ---- settings ------------------------------------------------------------------ */

static ot_err cms_nset_get(struct db_conn *c, int64_t subscriber, struct cms_nset *n, bool *found)
{
    struct db_stmt *st = NULL;
    bool row = false;
    size_t len;
    ot_err err = OT_OK;

    memset(n, 0, sizeof(*n));
    n->subscriber = subscriber;
    *found = false;
    OT_TRY(db_prepare(c,
                      "SELECT webhook_url, key_version, email, events FROM cms_notify_settings"
                      " WHERE subscriber = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, subscriber));
    OT_TRY(db_step(st, &row));
    if (row) {
        *found = true;
        if (!db_col_is_null(st, 0)) {
            len = sizeof(n->webhook_url);
            OT_TRY(db_col_text_copy(st, 0, n->webhook_url, &len));
        }
        OT_TRY(db_col_int64(st, 1, &n->key_version));
        if (!db_col_is_null(st, 2)) {
            len = sizeof(n->email);
            OT_TRY(db_col_text_copy(st, 2, n->email, &len));
        }
        len = sizeof(n->events);
        OT_TRY(db_col_text_copy(st, 3, n->events, &len));
    }
out:
    db_reset(st);
    return err;
}

static bool cms_nset_wants(const struct cms_nset *n, const char *event)
{
    size_t el = strlen(event);
    const char *p = n->events;

    if (p[0] == '\0') {
        return true;
    }
    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l == el && strncmp(p, event, l) == 0) {
            return true;
        }
        p += l + (e != NULL ? 1 : 0);
    }
    return false;
}

static void cms_wr(struct buf_wr *w, const char *t)
{
    buf_wr_bytes(w, t, strlen(t));
}

ot_err cms_notify(struct cms *s, struct db_conn *c, const struct cms_card *card, const char *event,
                  const char *detail)
{
    struct cms_nset n;
    struct cms_note note;
    char ref[40];
    struct buf_wr w;
    char *json = NULL;
    size_t cap;
    bool found = false;
    ot_err err = OT_OK;

    if (s->outbox == NULL || card == NULL || event == NULL) {
        return OT_OK;
    }
    OT_TRY(cms_nset_get(c, card->subscriber, &n, &found));
    if (!found || !cms_nset_wants(&n, event)) {
        return OT_OK;
    }
    /* {"event":"card.<event>","card_id":...,"issuer":...,"at":...,"detail":{...}} */
    cap = 256 + 2 * strlen(card->card_id) + 2 * strlen(card->issuer) + strlen(event)
          + (detail != NULL ? strlen(detail) : 4);
    json = malloc(cap);
    if (json == NULL) {
        return OT_E_NOMEM;
    }
    buf_wr_init(&w, (uint8_t *)json, cap - 1);
    cms_wr(&w, "{\"event\":\"card.");
    cms_wr(&w, event);
    cms_wr(&w, "\",\"card_id\":");
    (void)json_write_ascii_str(&w, card->card_id);
    cms_wr(&w, ",\"issuer\":");
    (void)json_write_ascii_str(&w, card->issuer);
    {
        char at[48];
        snprintf(at, sizeof(at), ",\"at\":%lld,\"detail\":", (long long)cms_now());
        cms_wr(&w, at);
    }
    cms_wr(&w, detail != NULL ? detail : "null");
    cms_wr(&w, "}");
    if (w.err != OT_OK) {
        OT_FAIL(w.err);
    }
    json[w.len] = '\0';
    snprintf(ref, sizeof(ref), "subscriber:%lld", (long long)card->subscriber);
    note.ref = ref;
    note.card = card;
    note.event = event;
    note.json = json;
    for (size_t i = 0; i < sizeof(cms_channels) / sizeof(cms_channels[0]); i++) {
        if (cms_channels[i].wanted(&n)) {
            err = cms_channels[i].write(s, c, &n, &note);
            if (err == OT_E_ARG) {
                /* settings that no longer make a message: logged, the change goes on */
                OT_LOG_WARN("notification dropped subscriber=%lld channel=%s event=%s",
                            (long long)card->subscriber, cms_channels[i].name, event);
                err = OT_OK;
            }
            OT_TRY(err);
        }
    }
out:
    free(json);
    return err;
}

/* ---- the API -------------------------------------------------------------------- */

static ot_err cms_nset_json(const struct cms_nset *n, json_t **out)
{
    json_t *o = json_obj_new();
    json_t *ev = json_arr_new();
    ot_err err = OT_OK;

    *out = NULL;
    if (o == NULL || ev == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_put_int(o, "subscriber", n->subscriber));
    OT_TRY(json_put_str(o, "webhook_url", n->webhook_url[0] ? n->webhook_url : NULL));
    OT_TRY(json_put_bool(o, "webhook_secret_set", n->key_version > 0));
    OT_TRY(json_put_str(o, "email", n->email[0] ? n->email : NULL));
    for (const char *p = n->events; *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        json_t *x = json_stringn(p, l);
        if (x == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(ev, x));
        p += l + (e != NULL ? 1 : 0);
    }
    OT_TRY(json_put(o, "events", ev));
    ev = NULL;
    *out = o;
    o = NULL;
out:
    json_free(ev);
    json_free(o);
    return err;
}

/* The subscriber named by the path, checked against the caller (404 for
 * another's: the kit's one ownership check). */
static bool cms_nset_subject(struct cms *s, struct net_req *req, struct net_resp *resp,
                             const char *action, int64_t *id)
{
    if (!svc_id_of_path(req, resp, "id", id)) {
        return false;
    }
    if (svc_authz(s->kit, req, SVC_ACC_OWNED, *id, action) != OT_OK) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such subscriber", NULL);
        return false;
    }
    return true;
}

/* GET /subscribers/{id}/notifications/deliveries: what was sent to the
 * subscriber, each message's state and attempts (the kit's outbox). */
void cms_h_notify_deliveries(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    char ref[40];
    int64_t id = 0;

    if (!cms_nset_subject(s, req, resp, "cms.notify.deliveries", &id)) {
        return;
    }
    snprintf(ref, sizeof(ref), "subscriber:%lld", (long long)id);
    svc_outbox_list(s->outbox, req, resp, ref);
}

void cms_h_notify_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    struct db_conn *c = NULL;
    struct cms_nset n;
    json_t *o = NULL;
    bool found = false;
    int64_t id = 0;
    ot_err err = OT_OK;

    if (!cms_nset_subject(s, req, resp, "cms.notify.get", &id)) {
        return;
    }
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(cms_nset_get(c, id, &n, &found));
    OT_TRY(cms_nset_json(&n, &o));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    db_release(c);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* Reads "events" (absent or [] = every event) into text "a,b". */
static bool cms_nset_events(const json_t *doc, char *out, size_t cap, struct json_err *je)
{
    const json_t *arr = json_object_get(doc, "events");
    size_t len = 0;

    out[0] = '\0';
    if (arr == NULL || json_is_null(arr)) {
        return true;
    }
    if (!json_is_array(arr) || json_array_size(arr) > CMS_NOTIFY_EVENTS_N) {
        (void)json_err_set(je, OT_E_FORMAT, "events", "a list of at most %zu event names",
                           CMS_NOTIFY_EVENTS_N);
        return false;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *v = json_string_value(json_array_get(arr, i));
        bool known = false;
        for (size_t k = 0; v != NULL && k < CMS_NOTIFY_EVENTS_N; k++) {
            known = known || strcmp(v, cms_notify_events[k]) == 0;
        }
        if (!known) {
            char f[32];
            snprintf(f, sizeof(f), "events[%zu]", i);
            (void)json_err_set(je, OT_E_FORMAT, f, "not an event cms tells of");
            return false;
        }
        size_t vl = strlen(v);
        if (len + vl + 2 > cap) {
            (void)json_err_set(je, OT_E_RANGE, "events", "too many events");
            return false;
        }
        if (len > 0) {
            out[len++] = ',';
        }
        memcpy(out + len, v, vl + 1);
        len += vl;
    }
    return true;
}

/* PUT /subscribers/{id}/notifications {"webhook_url", "webhook_secret",
 * "email", "events"}: replaces the settings (an absent channel is off). A
 * new secret is a new key version; a webhook without any secret is 400. */
void cms_h_notify_put(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"webhook_url", "webhook_secret", "email", "events", NULL};
    struct cms *s = ctx;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct cms_nset n;
    struct cms_nset old;
    struct json_err je;
    const char *url = NULL;
    const char *secret = NULL;
    const char *email = NULL;
    char keyname[64];
    char res[160];
    bool found = false;
    bool row = false;
    int64_t id = 0;
    json_t *doc = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    if (!cms_nset_subject(s, req, resp, "cms.notify.put", &id)) {
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_opt_str(doc, "webhook_url", 1, SVC_OUTBOX_TARGET_MAX, &url, &je) != OT_OK
        || json_opt_str(doc, "webhook_secret", SVC_WEBHOOK_SECRET_MIN, SVC_WEBHOOK_SECRET_MAX,
                        &secret, &je)
               != OT_OK
        || json_opt_str(doc, "email", 3, SVC_OUTBOX_TARGET_MAX, &email, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    memset(&n, 0, sizeof(n));
    n.subscriber = id;
    if (!cms_nset_events(doc, n.events, sizeof(n.events), &je)) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    if (url != NULL) {
        if (!svc_outbox_target_ok(SVC_CH_WEBHOOK, url)) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "an http(s) URL without spaces", "webhook_url");
            goto done;
        }
        snprintf(n.webhook_url, sizeof(n.webhook_url), "%s", url);
    }
    if (email != NULL) {
        if (!svc_outbox_target_ok(SVC_CH_EMAIL, email)) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "one address (local@domain)", "email");
            goto done;
        }
        snprintf(n.email, sizeof(n.email), "%s", email);
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    OT_TRY(cms_nset_get(c, id, &old, &found));
    n.key_version = old.key_version;
    if (secret != NULL) {
        struct keystore_item it;
        cms_nkey_name(id, keyname, sizeof(keyname));
        memset(&it, 0, sizeof(it));
        it.owner = CMS_KEYSTORE_OWNER;
        it.name = keyname;
        it.version = (uint32_t)(n.key_version + 1);
        it.key = (const uint8_t *)secret;
        it.key_len = strlen(secret);
        OT_TRY(keystore_put_tx(s->ks, c, &it, 1, NULL));
        n.key_version++;
    }
    if (n.webhook_url[0] != '\0' && n.key_version == 0) {
        svc_tx_abort(&c);
        net_resp_error(resp, OT_E_FORMAT, NULL, "a webhook needs a secret (16..128 bytes)",
                       "webhook_secret");
        goto done;
    }
    OT_TRY(
        db_prepare(c,
                   "INSERT INTO cms_notify_settings (subscriber, webhook_url, key_version, email,"
                   " events, updated_at) VALUES ($1, $2, $3, $4, $5, $6)"
                   " ON CONFLICT (subscriber) DO UPDATE SET webhook_url = excluded.webhook_url,"
                   " key_version = excluded.key_version, email = excluded.email,"
                   " events = excluded.events, updated_at = excluded.updated_at",
                   &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_bind_text(st, 2, n.webhook_url[0] ? n.webhook_url : NULL));
    OT_TRY(db_bind_int64(st, 3, n.key_version));
    OT_TRY(db_bind_text(st, 4, n.email[0] ? n.email : NULL));
    OT_TRY(db_bind_text(st, 5, n.events));
    OT_TRY(db_bind_int64(st, 6, cms_now()));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/subscribers/%lld/notifications", s->prefix, (long long)id);
    OT_TRY(svc_audit(s->kit, c, req, "cms.notify.put", res, "ok"));
    OT_TRY(cms_nset_json(&n, &o));
    (void)svc_tx_commit(&c, req, resp, 200, o);
    o = NULL;
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

ot_err cms_notify_open(struct cms *s, const struct svc_env *env)
{
    struct svc_outbox_cfg oc;

    memset(&oc, 0, sizeof(oc));
    oc.owner = "cms";
    oc.ks = s->ks;
    oc.tick_ms = svc_cfg_int(env, "notify_tick_ms");
    oc.max_attempts = svc_cfg_int(env, "notify_attempts");
    oc.backoff_ms = svc_cfg_int(env, "notify_backoff_ms");
    oc.ca_file = svc_cfg_str(env, "notify_ca");
    oc.smtp_url = svc_cfg_str(env, "smtp_url");
    oc.smtp_from = svc_cfg_str(env, "smtp_from");
    oc.keep_s = svc_cfg_int(env, "notify_keep_days") * 86400;
    oc.start = true;
    return svc_outbox_new(s->db, &oc, &s->outbox);
}

void cms_notify_close(struct cms *s)
{
    svc_outbox_free(s->outbox);
    s->outbox = NULL;
}

void cms_notify_kick(struct cms *s)
{
    svc_outbox_kick(s->outbox);
}
