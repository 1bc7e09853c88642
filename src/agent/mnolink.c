/* The agent's calls to mno (agent/mnolink.h). */
#define OT_LOG_COMPONENT "agent.mno"
#include "agent/mnolink.h"

#include "agent/agent_priv.h"

#include "core/hex.h"
#include "core/log.h"
#include "net/client.h"
#include "net/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MNO_MAX_BODY (256u * 1024u)

struct agent_mno {
    struct net_client *c; /* on the origin (scheme://host:port) */
    char prefix[256];     /* the instance's path prefix, "/mno/orange/v1" */
};

ot_err agent_mno_new(const struct agent_mno_cfg *cfg, struct agent_mno **out)
{
    struct net_client_cfg nc;
    struct agent_mno *m;
    ot_err err;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (cfg == NULL || cfg->base_url == NULL || (cfg->token == NULL && cfg->cert_file == NULL)
        || (cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
        return OT_E_ARG;
    }
    m = calloc(1, sizeof *m);
    if (m == NULL) {
        return OT_E_NOMEM;
    }
    /* base_url = origin + prefix: X-Admin-Next-URI values are absolute
     * paths, so requests go to the origin with the prefix in the path. */
    const char *sch = strstr(cfg->base_url, "://");
    const char *path = sch != NULL ? strchr(sch + 3, '/') : NULL;
    char origin[256];
    size_t ol = path != NULL ? (size_t)(path - cfg->base_url) : strlen(cfg->base_url);
    if (sch == NULL || ol >= sizeof origin || (path != NULL && strlen(path) >= sizeof m->prefix)) {
        free(m);
        return OT_E_FORMAT;
    }
    memcpy(origin, cfg->base_url, ol);
    origin[ol] = '\0';
    if (path != NULL) {
        size_t pl = strlen(path);
        while (pl > 0 && path[pl - 1] == '/') {
            pl--;
        }
        memcpy(m->prefix, path, pl);
        m->prefix[pl] = '\0';
    }
    memset(&nc, 0, sizeof nc);
    nc.base_url = origin;
    nc.token = cfg->token;
    nc.ca_file = cfg->ca_file;
    nc.client_cert = cfg->cert_file;
    nc.client_key = cfg->key_file;
    nc.timeout_ms = cfg->timeout_ms;
    nc.cancel = cfg->cancel;
    nc.max_body = MNO_MAX_BODY;
    err = net_client_new(&nc, &m->c);
    if (err != OT_OK) {
        free(m);
        return err;
    }
    *out = m;
    return OT_OK;
}

void agent_mno_free(struct agent_mno *m)
{
    if (m == NULL) {
        return;
    }
    net_client_free(m->c);
    free(m);
}

ot_err agent_mno_call(struct agent_mno *m, const char *method, const char *rel, const json_t *body,
                      struct net_client_resp *r)
{
    char path[512];
    int n = snprintf(path, sizeof path, "%s%s", m->prefix, rel);

    if (n < 0 || (size_t)n >= sizeof path) {
        memset(r, 0, sizeof *r);
        return OT_E_TOO_LONG;
    }
    return net_client_request(m->c, method, path, body, NULL, r);
}

ot_err agent_mno_post_raw(struct agent_mno *m, const char *abs_path, const char *const *headers,
                          const char *ctype, const uint8_t *body, size_t len,
                          struct net_client_resp *r)
{
    return net_client_request_raw(m->c, "POST", abs_path, ctype, body, len, headers, r);
}

const char *agent_mno_prefix(const struct agent_mno *m)
{
    return m->prefix;
}

/* An answer that is not the expected status: the error for it, the reason in why. */
static ot_err refused(const struct net_client_resp *r, const char *what, char *why, size_t cap)
{
    agent_why(why, cap, "mno %s: HTTP %ld %s%s%s", what, r->status, r->error_code,
              r->error_field[0] != '\0' ? " field " : "", r->error_field);
    if (r->status == 401 || r->status == 403) {
        return OT_E_AUTH;
    }
    if (r->status == 400 || r->status == 409) {
        return OT_E_FORBIDDEN;
    }
    return OT_E_PROTOCOL;
}

static ot_err transport(ot_err err, const struct net_client_resp *r, const char *what, char *why,
                        size_t cap)
{
    agent_why(why, cap, "mno %s: %s", what,
              r->transport_error[0] != '\0' ? r->transport_error : ot_strerror(err));
    return err;
}

ot_err agent_mno_known_cins(struct agent_mno *m, struct agent_known_cins *out, char *imei,
                            size_t imei_cap, char *why, size_t why_cap)
{
    const char *im = NULL;
    struct net_client_resp r;
    struct json_err je;
    const json_t *arr = NULL;
    size_t n = 0;
    size_t i;
    ot_err err;

    memset(&r, 0, sizeof r);
    memset(&je, 0, sizeof je);
    memset(out, 0, sizeof *out);
    err = agent_mno_call(m, "GET", "/device", NULL, &r);
    if (err != OT_OK) {
        err = transport(err, &r, "GET device", why, why_cap);
        goto out;
    }
    if (r.status != 200) {
        err = refused(&r, "GET device", why, why_cap);
        goto out;
    }
    err = r.json == NULL ? json_err_set(&je, OT_E_FORMAT, NULL, "body is not JSON")
                         : json_get_array(r.json, "known_cins", 0,
                                          sizeof out->cin / sizeof out->cin[0], &arr, &n, &je);
    for (i = 0; err == OT_OK && i < n; i++) {
        const json_t *s = json_at(arr, i);
        const char *hex = json_string_value(s);
        out->cin[i].len = sizeof out->cin[i].b;
        if (hex == NULL || strlen(hex) < 2
            || hex_decode(hex, strlen(hex), out->cin[i].b, &out->cin[i].len) != OT_OK) {
            err =
                json_err_set(&je, OT_E_FORMAT, "", "known_cins[%zu]: not a hex CIN of 1..%zu bytes",
                             i, sizeof out->cin[i].b);
        }
    }
    if (err != OT_OK) {
        agent_why(why, why_cap, "mno GET device: malformed answer (known_cins) %s", je.message);
        memset(out, 0, sizeof *out);
        err = OT_E_PROTOCOL;
        goto out;
    }
    out->n = n;
    if (imei != NULL && imei_cap > 0) {
        if (json_get_str(r.json, "imei", 1, imei_cap - 1, &im, &je) != OT_OK) {
            agent_why(why, why_cap, "mno GET device: no usable imei");
            err = OT_E_PROTOCOL;
            goto out;
        }
        memcpy(imei, im, strlen(im) + 1);
    }
out:
    net_client_resp_clear(&r);
    return err;
}

ot_err agent_mno_mirror(struct agent_mno *m, const struct agent_selist *l, char *why,
                        size_t why_cap)
{
    struct net_client_resp r;
    json_t *body = json_obj_new();
    json_t *arr = json_arr_new();
    size_t i;
    ot_err err = OT_OK;

    memset(&r, 0, sizeof r);
    if (body == NULL || arr == NULL) {
        json_free(arr);
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_put(body, "items", arr));
    for (i = 0; i < l->n; i++) {
        json_t *o = agent_se_to_json(&l->se[i]);
        if (o == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(arr, o));
    }
    err = agent_mno_call(m, "PUT", "/device/secure-elements", body, &r);
    if (err != OT_OK) {
        err = transport(err, &r, "PUT device/secure-elements", why, why_cap);
        goto out;
    }
    if (r.status != 200) {
        err = refused(&r, "PUT device/secure-elements", why, why_cap);
        goto out;
    }
    OT_LOG_INFO("event=selist_mirrored count=%zu", l->n);
out:
    net_client_resp_clear(&r);
    json_free(body);
    return err;
}

ot_err agent_mno_register(struct agent_mno *m, const char *location_area, int *heartbeat_s,
                          int *lease_s, char *why, size_t why_cap)
{
    struct net_client_resp r;
    struct json_err je;
    json_t *body = json_obj_new();
    int64_t hb = 0;
    int64_t lease = 0;
    ot_err err = OT_OK;

    memset(&r, 0, sizeof r);
    memset(&je, 0, sizeof je);
    if (body == NULL) {
        return OT_E_NOMEM;
    }
    if (location_area != NULL) {
        OT_TRY(json_put_str(body, "location_area", location_area));
    }
    err = agent_mno_call(m, "POST", "/device/register", body, &r);
    if (err != OT_OK) {
        err = transport(err, &r, "register", why, why_cap);
        goto out;
    }
    if (r.status != 200) {
        err = refused(&r, "register", why, why_cap);
        goto out;
    }
    if (r.json == NULL || json_get_int(r.json, "heartbeat_s", 1, 86400, &hb, &je) != OT_OK
        || json_get_int(r.json, "lease_s", 1, 86400 * 7, &lease, &je) != OT_OK) {
        agent_why(why, why_cap, "mno register: malformed answer %s %s", je.field, je.message);
        OT_FAIL(OT_E_PROTOCOL);
    }
    *heartbeat_s = (int)hb;
    *lease_s = (int)lease;
    OT_LOG_INFO("event=registered heartbeat_s=%d lease_s=%d", *heartbeat_s, *lease_s);
out:
    net_client_resp_clear(&r);
    json_free(body);
    return err;
}

/* POST P/device/<what> {} (heartbeat, detach). */
static ot_err device_post(struct agent_mno *m, const char *what, char *why, size_t why_cap)
{
    struct net_client_resp r;
    char rel[64];
    json_t *body = json_obj_new();
    ot_err err;

    memset(&r, 0, sizeof r);
    if (body == NULL) {
        return OT_E_NOMEM;
    }
    (void)snprintf(rel, sizeof rel, "/device/%s", what);
    err = agent_mno_call(m, "POST", rel, body, &r);
    if (err != OT_OK) {
        err = transport(err, &r, what, why, why_cap);
    } else if (r.status == 409 && strcmp(r.error_code, "not_registered") == 0) {
        agent_why(why, why_cap, "mno %s: not registered", what);
        err = OT_E_STATE;
    } else if (r.status != 200) {
        err = refused(&r, what, why, why_cap);
    }
    net_client_resp_clear(&r);
    json_free(body);
    return err;
}

ot_err agent_mno_heartbeat(struct agent_mno *m, char *why, size_t why_cap)
{
    return device_post(m, "heartbeat", why, why_cap);
}

ot_err agent_mno_detach(struct agent_mno *m, char *why, size_t why_cap)
{
    return device_post(m, "detach", why, why_cap);
}

unsigned agent_backoff_next(unsigned cur_ms, unsigned min_ms, unsigned max_ms, uint32_t rnd)
{
    unsigned next = cur_ms < min_ms ? min_ms : (cur_ms > max_ms / 2 ? max_ms : cur_ms * 2);
    unsigned half = next / 2;

    /* Full jitter on the upper half: next/2 .. next, never 0. */
    return half + (half == 0 ? 0 : rnd % (half + 1)) + (next == 0 ? 1 : 0);
}

ot_err agent_mno_backstage_answer(struct agent_mno *m, const char *request, const char *error,
                                  const struct agent_selist *l, char *why, size_t why_cap)
{
    struct net_client_resp r;
    char rel[96];
    json_t *body = json_obj_new();
    json_t *arr = json_arr_new();
    size_t i;
    ot_err err = OT_OK;

    memset(&r, 0, sizeof r);
    if (body == NULL || arr == NULL) {
        json_free(arr);
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_put_str(body, "status", error == NULL ? "ok" : "failed"));
    OT_TRY(json_put_str(body, "error", error));
    OT_TRY(json_put(body, "secure_elements", arr));
    for (i = 0; i < l->n; i++) {
        json_t *o = agent_se_to_json(&l->se[i]);
        if (o == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(arr, o));
    }
    if (snprintf(rel, sizeof rel, "/device/backstage/%s", request) >= (int)sizeof rel) {
        OT_FAIL(OT_E_TOO_LONG);
    }
    err = agent_mno_call(m, "POST", rel, body, &r);
    if (err != OT_OK) {
        err = transport(err, &r, "backstage answer", why, why_cap);
        goto out;
    }
    if (r.status != 200) {
        err = refused(&r, "backstage answer", why, why_cap);
        goto out;
    }
    OT_LOG_INFO("event=backstage_answered request=%s status=%s count=%zu", request,
                error == NULL ? "ok" : "failed", l->n);
out:
    net_client_resp_clear(&r);
    json_free(body);
    return err;
}

ot_err agent_mno_stream(struct agent_mno *m, const char *last_event_id,
                        const struct net_sse_opts *opts, net_sse_fn fn, void *ctx, char *last_out,
                        size_t last_cap)
{
    char path[512];
    int n = snprintf(path, sizeof path, "%s/device/stream", m->prefix);

    if (n < 0 || (size_t)n >= sizeof path) {
        return OT_E_TOO_LONG;
    }
    return net_client_sse(m->c, path, last_event_id, opts, fn, ctx, last_out, last_cap);
}
