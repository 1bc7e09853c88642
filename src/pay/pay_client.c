/* pay_client: the payment client's side of pay's API (pay_client.h). */
#include "pay/pay_client.h"

#include "core/hex.h"
#include "net/client.h"
#include "net/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pay_client {
    struct net_client *nc;
};

ot_err pay_client_new(const struct pay_client_cfg *cfg, struct pay_client **out)
{
    struct net_client_cfg cc;
    struct pay_client *c;
    ot_err err;

    *out = NULL;
    if (cfg == NULL || cfg->url == NULL) {
        return OT_E_ARG;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    memset(&cc, 0, sizeof(cc));
    cc.base_url = cfg->url;
    cc.token = cfg->token;
    cc.ca_file = cfg->ca_file;
    cc.insecure = cfg->insecure;
    cc.timeout_ms = cfg->timeout_ms;
    err = net_client_new(&cc, &c->nc);
    if (err != OT_OK) {
        free(c);
        return err;
    }
    *out = c;
    return OT_OK;
}

void pay_client_free(struct pay_client *c)
{
    if (c != NULL) {
        net_client_free(c->nc);
        free(c);
    }
}

static ot_err pay_client_status_err(long status)
{
    switch (status) {
    case 400:
        return OT_E_FORMAT;
    case 401:
        return OT_E_AUTH;
    case 403:
        return OT_E_FORBIDDEN;
    case 404:
        return OT_E_NOT_FOUND;
    case 409:
        return OT_E_CONFLICT;
    case 413:
        return OT_E_LIMIT;
    case 422:
        return OT_E_IDEM_MISMATCH;
    default:
        return OT_E_IO;
    }
}

/* One request; fills e; OT_OK for 2xx (r kept for the caller). */
static ot_err pay_client_call(struct pay_client *c, const char *method, const char *path,
                              const char *body, const char *idem, struct net_client_resp *r,
                              struct pay_client_err *e)
{
    char h[192];
    const char *hdrs[2] = {NULL, NULL};
    ot_err err;

    memset(e, 0, sizeof(*e));
    if (idem != NULL) {
        snprintf(h, sizeof(h), "Idempotency-Key: %s", idem);
        hdrs[0] = h;
    }
    err = net_client_request_raw(c->nc, method, path, body != NULL ? "application/json" : NULL,
                                 body, body != NULL ? strlen(body) : 0, hdrs, r);
    if (err != OT_OK) {
        snprintf(e->message, sizeof(e->message), "%s", r->transport_error);
        return err;
    }
    e->status = r->status;
    if (r->status >= 200 && r->status < 300) {
        return OT_OK;
    }
    snprintf(e->code, sizeof(e->code), "%s", r->error_code);
    snprintf(e->field, sizeof(e->field), "%s", r->error_field);
    snprintf(e->message, sizeof(e->message), "%s", r->error_message);
    return pay_client_status_err(r->status);
}

ot_err pay_client_enrol(struct pay_client *c, const char *name,
                        const uint8_t dongle_pub[EC_P256_PUB_LEN], struct pay_client_err *e)
{
    struct net_client_resp r;
    char pub[2 * EC_P256_PUB_LEN + 1];
    char body[PAY_NAME_MAX + sizeof(pub) + 64];
    char idem[PAY_NAME_MAX + 40];
    ot_err err;

    memset(&r, 0, sizeof(r));
    if (c == NULL || name == NULL || strlen(name) > PAY_NAME_MAX) {
        return OT_E_ARG;
    }
    err = hex_encode(dongle_pub, EC_P256_PUB_LEN, pub, sizeof(pub));
    if (err != OT_OK) {
        return err;
    }
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"dongle_pub\":\"%s\"}", name, pub);
    /* the same enrolment again is the same request */
    snprintf(idem, sizeof(idem), "enrol-%s-%.16s", name, pub + 2);
    err = pay_client_call(c, "POST", "/pay/v1/clients", body, idem, &r, e);
    net_client_resp_clear(&r);
    return err;
}

static ot_err pay_client_key_of(const json_t *it, bool revoked, struct pay_client_key *k)
{
    static const char *const kts[] = {"emv_imk", "transit_imk", "pin"};
    const char *sp = NULL;
    size_t kt = 0;
    int64_t v = 0;
    int64_t floor = 0;
    size_t bl = sizeof(k->blob);
    ot_err err = OT_OK;

    memset(k, 0, sizeof(*k));
    if ((err = json_get_str(it, "sp", 1, PAY_NAME_MAX, &sp, NULL)) != OT_OK
        || (err = json_get_enum(it, "key_type", kts, 3, &kt, NULL)) != OT_OK
        || (err = json_get_int(it, "floor", 1, UINT32_MAX, &floor, NULL)) != OT_OK) {
        return err;
    }
    if (!revoked
        && ((err = json_get_int(it, "version", 1, UINT32_MAX, &v, NULL)) != OT_OK
            || (err = json_get_hex(it, "blob", 1, ECWRAP_MAX_BLOB, k->blob, &bl, NULL)) != OT_OK)) {
        return err;
    }
    snprintf(k->sp, sizeof(k->sp), "%s", sp);
    k->key_type = (uint8_t)(kt + 1);
    k->version = (uint32_t)v;
    k->floor = (uint32_t)floor;
    k->blob_len = revoked ? 0 : bl;
    return OT_OK;
}

ot_err pay_client_keys(struct pay_client *c, const char *name, struct pay_client_key *keys,
                       size_t cap, size_t *n, struct pay_client_err *e)
{
    struct net_client_resp r;
    char path[PAY_NAME_MAX + 32];
    const json_t *arr[2] = {NULL, NULL};
    size_t cnt[2] = {0, 0};
    json_t *j = NULL;
    ot_err err;

    *n = 0;
    memset(&r, 0, sizeof(r));
    snprintf(path, sizeof(path), "/pay/v1/clients/%s/keys", name);
    err = pay_client_call(c, "GET", path, NULL, NULL, &r, e);
    if (err != OT_OK) {
        goto out;
    }
    err = json_parse(r.body, r.body_len, r.body_len + 1, &j, NULL);
    if (err == OT_OK) {
        err = json_get_array(j, "keys", 0, PAY_CLIENT_KEYS_MAX, &arr[0], &cnt[0], NULL);
    }
    if (err == OT_OK) {
        err = json_get_array(j, "revoked", 0, PAY_CLIENT_KEYS_MAX, &arr[1], &cnt[1], NULL);
    }
    if (err != OT_OK) {
        err = OT_E_PROTOCOL;
        goto out;
    }
    if (cnt[0] + cnt[1] > cap) {
        err = OT_E_LIMIT;
        goto out;
    }
    for (size_t a = 0; a < 2 && err == OT_OK; a++) {
        for (size_t i = 0; i < cnt[a] && err == OT_OK; i++) {
            err = pay_client_key_of(json_at(arr[a], i), a == 1, &keys[*n]);
            if (err == OT_OK) {
                (*n)++;
            } else {
                err = OT_E_PROTOCOL;
            }
        }
    }
out:
    json_free(j);
    net_client_resp_clear(&r);
    return err;
}

ot_err pay_client_send_raw(struct pay_client *c, enum pay_msg_type t, const char *body,
                           struct pay_msg *res, struct pay_client_err *e)
{
    struct net_client_resp r;
    const char *path;
    ot_err err;

    switch (t) {
    case PAY_MSG_PAYMENT:
        path = "/pay/v1/payments";
        break;
    case PAY_MSG_TOPUP_AUTHORISE:
        path = "/pay/v1/topups";
        break;
    case PAY_MSG_TOPUP_CONFIRM:
        path = "/pay/v1/topups/confirm";
        break;
    default:
        return OT_E_ARG;
    }
    memset(&r, 0, sizeof(r));
    err = pay_client_call(c, "POST", path, body, NULL, &r, e);
    if (err == OT_OK && pay_msg_parse(r.body, r.body_len, res, NULL) != OT_OK) {
        err = OT_E_PROTOCOL;
    }
    net_client_resp_clear(&r);
    return err;
}

ot_err pay_client_send(struct pay_client *c, const struct pay_msg *m, struct pay_msg *res,
                       struct pay_client_err *e)
{
    char *body = NULL;
    size_t n = 0;
    ot_err err = pay_msg_encode(m, &body, &n);

    if (err == OT_OK) {
        err = pay_client_send_raw(c, m->type, body, res, e);
    }
    free(body);
    return err;
}

ot_err pay_client_install(struct pay_client *c, const char *relay, const char *body,
                          struct pay_client_relay *out, struct pay_client_err *e)
{
    struct net_client_resp r;
    char path[96];
    const char *rel = NULL;
    const char *res = NULL;
    const char *sw = NULL;
    const json_t *apps = NULL;
    size_t napps = 0;
    bool has_capdu = false;
    ot_err err;

    memset(&r, 0, sizeof(r));
    memset(out, 0, sizeof(*out));
    if (relay != NULL && strlen(relay) > 64) {
        return OT_E_ARG;
    }
    snprintf(path, sizeof(path), "/pay/v1/installs%s%s", relay != NULL ? "/" : "",
             relay != NULL ? relay : "");
    err = pay_client_call(c, "POST", path, body, NULL, &r, e);
    if (err == OT_OK && r.json == NULL) {
        err = OT_E_PROTOCOL;
    }
    if (err == OT_OK) {
        out->capdu_len = sizeof(out->capdu);
        err = json_get_str(r.json, "relay", 32, 32, &rel, NULL);
        if (err == OT_OK) {
            err = json_opt_hex(r.json, "capdu", 4, sizeof(out->capdu), out->capdu, &out->capdu_len,
                               &has_capdu, NULL);
        }
        if (err == OT_OK && has_capdu) {
            err = json_get_int(r.json, "step", 1, INT32_MAX, &out->step, NULL);
        }
        if (err == OT_OK && !has_capdu) {
            err = json_get_str(r.json, "result", 1, sizeof(out->result) - 1, &res, NULL);
            if (err == OT_OK) {
                err = json_get_str(r.json, "sw", 4, 4, &sw, NULL);
            }
            if (err == OT_OK && strcmp(res, "installed") == 0) {
                err = json_get_array(r.json, "applications", 0, 64, &apps, &napps, NULL);
            }
        }
    }
    if (err == OT_OK) {
        snprintf(out->relay, sizeof(out->relay), "%s", rel);
        if (!has_capdu) {
            out->capdu_len = 0;
            snprintf(out->result, sizeof(out->result), "%s", res);
            snprintf(out->sw, sizeof(out->sw), "%s", sw);
            for (size_t i = 0; i < napps; i++) {
                const char *aid = NULL;
                size_t used = strlen(out->apps);
                if (json_get_str(json_at(apps, i), "aid", 10, 32, &aid, NULL) != OT_OK) {
                    err = OT_E_PROTOCOL;
                    break;
                }
                snprintf(out->apps + used, sizeof(out->apps) - used, "%s%s", used > 0 ? "," : "",
                         aid);
            }
        }
    } else if (e->status >= 200 && e->status < 300) {
        err = OT_E_PROTOCOL;
    }
    net_client_resp_clear(&r);
    return err;
}
