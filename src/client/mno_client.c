/* Client of one mno instance (mno_client.h). */
#include "client/mno_client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MNO_CLIENT_PATH_MAX 256

struct mno_client {
    struct tsm_client *c;
    char prefix[64]; /* "/mno/orange/v1" */
};

static bool mno_client_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n > 15 || (n > 0 && !(s[0] >= 'a' && s[0] <= 'z'))) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9'))) {
            return false;
        }
    }
    return true;
}

ot_err mno_client_new(struct tsm_client *c, const char *instance, struct mno_client **out)
{
    struct mno_client *m;

    *out = NULL;
    if (c == NULL || instance == NULL || !mno_client_name_ok(instance)) {
        return OT_E_ARG;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return OT_E_NOMEM;
    }
    m->c = c;
    if (instance[0] != '\0') {
        (void)snprintf(m->prefix, sizeof(m->prefix), "/mno/%s/v1", instance);
    } else {
        (void)snprintf(m->prefix, sizeof(m->prefix), "/mno/v1");
    }
    *out = m;
    return OT_OK;
}

void mno_client_free(struct mno_client *m)
{
    free(m);
}

static ot_err mno_client_fail(struct tsm_client_err *e, enum tsm_client_fail fail, ot_err err,
                              const char *text)
{
    memset(e, 0, sizeof(*e));
    e->fail = fail;
    e->err = err;
    e->retry_after = -1;
    (void)snprintf(e->text, sizeof(e->text), "%s", text);
    return err;
}

/* A path segment or query value: 1..172 of [A-Za-z0-9._-] (ids, digits,
 * cursors: nothing to escape). */
static bool mno_client_seg_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > JSON_CURSOR_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
              || ch == '.' || ch == '_' || ch == '-')) {
            return false;
        }
    }
    return true;
}

/* prefix head [seg tail] into path (seg checked). */
static ot_err mno_client_path(const struct mno_client *m, char *path, const char *head,
                              const char *seg, const char *tail, struct tsm_client_err *e)
{
    int n;

    if (seg != NULL && !mno_client_seg_ok(seg)) {
        return mno_client_fail(e, TSM_CLIENT_USAGE, OT_E_ARG, "a malformed id or value");
    }
    n = snprintf(path, MNO_CLIENT_PATH_MAX, "%s%s%s%s", m->prefix, head, seg != NULL ? seg : "",
                 tail != NULL ? tail : "");
    if (n < 0 || n >= MNO_CLIENT_PATH_MAX) {
        return mno_client_fail(e, TSM_CLIENT_USAGE, OT_E_ARG, "an argument is too long");
    }
    return OT_OK;
}

static ot_err mno_client_get(struct mno_client *m, const char *head, const char *seg,
                             const char *tail, json_t **out, struct tsm_client_err *e)
{
    char path[MNO_CLIENT_PATH_MAX];
    ot_err err = mno_client_path(m, path, head, seg, tail, e);

    return err != OT_OK ? err : tsm_client_json(m->c, "GET", path, NULL, NULL, out, e);
}

static ot_err mno_client_list(struct mno_client *m, const char *head,
                              const struct tsm_client_pg *pg, struct tsm_client_page *out,
                              struct tsm_client_err *e)
{
    char path[MNO_CLIENT_PATH_MAX];
    char q[JSON_CURSOR_MAX + 40] = "";
    ot_err err;

    memset(out, 0, sizeof(*out));
    if (pg != NULL && pg->cursor != NULL && pg->cursor[0] != '\0') {
        if (!mno_client_seg_ok(pg->cursor)) {
            return mno_client_fail(e, TSM_CLIENT_USAGE, OT_E_ARG, "a malformed cursor");
        }
        (void)snprintf(q, sizeof(q), "?cursor=%s", pg->cursor);
    }
    if (pg != NULL && pg->limit > 0) {
        size_t o = strlen(q);
        (void)snprintf(q + o, sizeof(q) - o, "%slimit=%u", o ? "&" : "?", pg->limit);
    }
    err = mno_client_path(m, path, head, NULL, q, e);
    return err != OT_OK ? err : tsm_client_json_page(m->c, path, out, e);
}

/* POST of body (taken) to head [seg tail]. */
static ot_err mno_client_post(struct mno_client *m, const char *head, const char *seg,
                              const char *tail, json_t *body, const char *idem_key, json_t **out,
                              struct tsm_client_err *e)
{
    char path[MNO_CLIENT_PATH_MAX];
    ot_err err;

    *out = NULL;
    if (body == NULL) {
        return mno_client_fail(e, TSM_CLIENT_LOCAL, OT_E_NOMEM, "out of memory");
    }
    err = mno_client_path(m, path, head, seg, tail, e);
    if (err == OT_OK) {
        err = tsm_client_json(m->c, "POST", path, body, idem_key, out, e);
    }
    json_decref(body);
    return err;
}

ot_err mno_client_status(struct mno_client *m, const char *by, const char *value, json_t **out,
                         struct tsm_client_err *e)
{
    char tail[32];

    *out = NULL;
    if (by == NULL
        || (strcmp(by, "msisdn") != 0 && strcmp(by, "imsi") != 0 && strcmp(by, "imei") != 0)) {
        return mno_client_fail(e, TSM_CLIENT_USAGE, OT_E_ARG, "by is msisdn, imsi or imei");
    }
    (void)snprintf(tail, sizeof(tail), "/status?%s=", by);
    return mno_client_get(m, tail, value, NULL, out, e);
}

ot_err mno_client_enrol(struct mno_client *m, int64_t principal_id, const char *msisdn,
                        const json_t *cins, const char *idem_key, json_t **out,
                        struct tsm_client_err *e)
{
    json_t *b = json_pack("{s:I, s:s}", "principal_id", (json_int_t)principal_id, "msisdn",
                          msisdn != NULL ? msisdn : "");

    if (b != NULL && cins != NULL && json_object_set(b, "cins", (json_t *)cins) != 0) {
        json_decref(b);
        b = NULL;
    }
    return mno_client_post(m, "/devices", NULL, NULL, b, idem_key, out, e);
}

ot_err mno_client_devices(struct mno_client *m, const struct tsm_client_pg *pg,
                          struct tsm_client_page *out, struct tsm_client_err *e)
{
    return mno_client_list(m, "/devices", pg, out, e);
}

ot_err mno_client_device(struct mno_client *m, const char *id, json_t **out,
                         struct tsm_client_err *e)
{
    return mno_client_get(m, "/devices/", id, NULL, out, e);
}

ot_err mno_client_job_submit(struct mno_client *m, const json_t *job, const char *idem_key,
                             json_t **out, struct tsm_client_err *e)
{
    return mno_client_post(m, "/jobs", NULL, NULL, job != NULL ? json_incref((json_t *)job) : NULL,
                           idem_key, out, e);
}

ot_err mno_client_job(struct mno_client *m, const char *id, json_t **out, struct tsm_client_err *e)
{
    return mno_client_get(m, "/jobs/", id, NULL, out, e);
}

ot_err mno_client_job_wait(struct mno_client *m, const char *id, unsigned wait_s, int64_t seq,
                           json_t **out, struct tsm_client_err *e)
{
    char tail[64];

    *out = NULL;
    if (wait_s < 1 || wait_s > 60 || seq < 0) {
        return mno_client_fail(e, TSM_CLIENT_USAGE, OT_E_ARG, "wait is 1..60 s, seq >= 0");
    }
    if (seq > 0) {
        (void)snprintf(tail, sizeof(tail), "?wait=%u&seq=%lld", wait_s, (long long)seq);
    } else {
        (void)snprintf(tail, sizeof(tail), "?wait=%u", wait_s);
    }
    return mno_client_get(m, "/jobs/", id, tail, out, e);
}

ot_err mno_client_jobs(struct mno_client *m, const struct tsm_client_pg *pg,
                       struct tsm_client_page *out, struct tsm_client_err *e)
{
    return mno_client_list(m, "/jobs", pg, out, e);
}

ot_err mno_client_job_cancel(struct mno_client *m, const char *id, json_t **out,
                             struct tsm_client_err *e)
{
    return mno_client_post(m, "/jobs/", id, "/cancel", json_object(), NULL, out, e);
}

ot_err mno_client_job_batch(struct mno_client *m, const char *id, const json_t *batch,
                            const char *idem_key, json_t **out, struct tsm_client_err *e)
{
    return mno_client_post(m, "/jobs/", id, "/batches",
                           batch != NULL ? json_incref((json_t *)batch) : NULL, idem_key, out, e);
}

ot_err mno_client_job_close(struct mno_client *m, const char *id, json_t **out,
                            struct tsm_client_err *e)
{
    return mno_client_post(m, "/jobs/", id, "/close", json_object(), NULL, out, e);
}

ot_err mno_client_job_resolve(struct mno_client *m, const char *id, const char *action,
                              json_t **out, struct tsm_client_err *e)
{
    return mno_client_post(m, "/jobs/", id, "/resolve",
                           json_pack("{s:s}", "action", action != NULL ? action : ""), NULL, out,
                           e);
}

ot_err mno_client_alerts(struct mno_client *m, const struct tsm_client_pg *pg,
                         struct tsm_client_page *out, struct tsm_client_err *e)
{
    return mno_client_list(m, "/alerts", pg, out, e);
}

ot_err mno_client_alert_clear(struct mno_client *m, const char *id, json_t **out,
                              struct tsm_client_err *e)
{
    return mno_client_post(m, "/alerts/", id, "/clear", json_object(), NULL, out, e);
}

ot_err mno_client_backstage(struct mno_client *m, const char *device, const char *op,
                            const char *cin, const char *reader, const char *idem_key, json_t **out,
                            struct tsm_client_err *e)
{
    json_t *b = json_pack("{s:s}", "op", op != NULL ? op : "");
    json_t *se = NULL;

    if (b != NULL && (cin != NULL || reader != NULL)) {
        se = json_object();
        if (se == NULL || (cin != NULL && json_object_set_new(se, "cin", json_string(cin)) != 0)
            || (reader != NULL && json_object_set_new(se, "reader", json_string(reader)) != 0)
            || json_object_set_new(b, "se", se) != 0) {
            json_decref(b);
            b = NULL;
        }
    }
    return mno_client_post(m, "/devices/", device, "/backstage", b, idem_key, out, e);
}

ot_err mno_client_backstage_get(struct mno_client *m, const char *id, json_t **out,
                                struct tsm_client_err *e)
{
    return mno_client_get(m, "/backstage/", id, NULL, out, e);
}
