/* fleetsim's devices as phones for cms (fleet/fleet.h, docs/fleetsim.md
 * "cms"): their cards imported as cms cards, destroy requests as their
 * subscriber, and reads of the cards until cms says destroyed. The card
 * itself counts the DESTROY commands it receives (fleet_card.c). */
#define OT_LOG_COMPONENT "fleet"
#include "core/log.h"
#include "fleet/fleet.h"
#include "fleet/fleet_priv.h"
#include "net/json.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FLEET_IMPORT_BATCH 1000u /* cms takes up to 1,000 cards a request */
#define FLEET_CMS          "/cms/v1"
#define FLEET_KEYHEX       "404142434445464748494A4B4C4D4E4F"
#define FLEET_POLL_MS      50u /* bulk: a card is read again after this */
#define FLEET_SERIAL_POLL  1u  /* serial: as soon as the last read answered */

enum { SK_IDLE = 0, SK_DESTROY = 1, SK_POLL = 2 };

/* ---------------------------------------------------------------- import */

struct one {
    bool done;
    ot_err err;
    int status;
};

static void one_cb(void *ctx, struct fh_conn *c, ot_err err)
{
    struct one *o = ctx;
    o->done = true;
    o->err = err;
    o->status = err == OT_OK ? c->status : 0;
}

static ot_err import_batch(struct fleet *f, uint32_t lo, uint32_t hi, struct ot_buf *body)
{
    char imei[16], imsi[16], msisdn[16], cin[17], item[768], hdr[96];
    const char *issuer = f->cfg.issuer != NULL ? f->cfg.issuer : "bank1";
    struct one o;
    struct fh_conn *c = &f->sub[0];
    ot_err err = OT_OK;

    ot_buf_reset(body);
    OT_TRY(ot_buf_append(body, "{\"cards\":[", 10));
    for (uint32_t k = lo; k < hi; k++) {
        uint32_t i = f->devs[k].idx;
        fleet_dev_imei(i, imei);
        fleet_dev_imsi(i, imsi);
        fleet_dev_msisdn(i, msisdn);
        fleet_dev_cin(i, cin);
        int n =
            snprintf(item, sizeof item,
                     "%s{\"card_id\":\"fc%u\",\"subscriber\":%lld,\"cin\":\"%s\",\"mno\":\"%s\","
                     "\"msisdn\":\"%s\",\"imsi\":\"%s\",\"imei\":\"%s\",\"issuer\":\"%s\","
                     "\"aids\":[\"A0000000041010\"],\"sd_aid\":\"A000000151000000\",\"kvn\":48,"
                     "\"keys\":{\"enc\":\"" FLEET_KEYHEX "\",\"mac\":\"" FLEET_KEYHEX
                     "\",\"dek\":\"" FLEET_KEYHEX "\"}}",
                     k > lo ? "," : "", i, (long long)f->cfg.cms_subscriber, cin, f->cfg.instance,
                     msisdn, imsi, imei, issuer);
        if (n < 0 || (size_t)n >= sizeof item) {
            OT_FAIL(OT_E_TOO_LONG);
        }
        OT_TRY(ot_buf_append(body, item, (size_t)n));
    }
    OT_TRY(ot_buf_append(body, "]}", 2));
    (void)snprintf(hdr, sizeof hdr, "Idempotency-Key: fleet-c-%s%u-%u\r\n", f->run_tag,
                   f->devs[lo].idx, hi - lo);
    for (int tries = 0; tries < 2; tries++) {
        memset(&o, 0, sizeof o);
        OT_TRY(fh_send(c, "POST", FLEET_CMS "/cards", f->op_token, hdr, "application/json",
                       body->data, body->len, one_cb, &o));
        while (!o.done) {
            fleet_loop_once(f, 50);
        }
        if (o.err != OT_E_REPLAY) {
            break; /* else a kept-alive connection was gone: the same request again */
        }
    }
    if (o.err != OT_OK || (o.status != 201 && o.status != 200)) {
        size_t bl = 0;
        const uint8_t *b = o.err == OT_OK ? fh_body(c, &bl) : NULL;
        OT_LOG_WARN("event=cms_import_failed first=%u status=%d err=%s body=%.*s", f->devs[lo].idx,
                    o.status, ot_strerror(o.err), (int)(bl > 300 ? 300 : bl),
                    b != NULL ? (const char *)b : "");
        OT_FAIL(OT_E_PROTOCOL);
    }
    f->stats.imported += hi - lo;
out:
    return err;
}

ot_err fleet_cms_import(struct fleet *f, unsigned timeout_ms)
{
    struct ot_buf body;
    char marker[512];
    double end = fleet_now() + timeout_ms / 1e3;
    ot_err err = OT_OK;

    if (f->cfg.cms_subscriber == 0) {
        return OT_E_STATE;
    }
    if (f->cfg.state_dir != NULL) {
        /* imported by an earlier run (the marker is written after it) */
        (void)snprintf(marker, sizeof marker, "%s/imported.%u", f->cfg.state_dir, f->cfg.first);
        if (access(marker, F_OK) == 0) {
            f->stats.imported = f->cfg.n;
            return OT_OK;
        }
    }
    ot_buf_init(&body, (size_t)FLEET_IMPORT_BATCH * 1024);
    for (uint32_t lo = 0; lo < f->cfg.n; lo += FLEET_IMPORT_BATCH) {
        uint32_t hi = f->cfg.n - lo > FLEET_IMPORT_BATCH ? lo + FLEET_IMPORT_BATCH : f->cfg.n;
        OT_TRY(import_batch(f, lo, hi, &body));
        if (fleet_now() > end) {
            OT_FAIL(OT_E_TIMEOUT);
        }
    }
    if (f->cfg.state_dir != NULL) {
        int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
        }
    }
out:
    ot_buf_free(&body);
    fh_close(&f->sub[0]);
    return err;
}

/* ---------------------------------------------------------------- destroy requests, reads */

static void cms_cb(void *ctx, struct fh_conn *c, ot_err err);

/* The next device to ask a destroy for (UINT32_MAX: none now). */
static uint32_t next_request(struct fleet *f)
{
    if (f->c_open >= f->c_max_open || (f->c_serial && f->c_serial_left == 0)) {
        return UINT32_MAX;
    }
    while (f->c_cursor < f->cfg.n) {
        uint32_t k = f->c_cursor++;
        const struct fleet_dev *d = &f->devs[k];
        if (d->c_req != FC_NONE || (f->c_serial && (d->offline || d->state != DS_ONLINE))) {
            continue;
        }
        return k;
    }
    return UINT32_MAX;
}

static ot_err send_destroy(struct fleet *f, unsigned slot, uint32_t k)
{
    struct fleet_dev *d = &f->devs[k];
    char path[96], hdr[96];
    static const char body[] = "{\"reason\":\"lost\",\"note\":\"fleetsim\"}";

    (void)snprintf(path, sizeof path, FLEET_CMS "/cards/fc%u/destroy", d->idx);
    (void)snprintf(hdr, sizeof hdr, "Idempotency-Key: fleet-d-%s%u\r\n", f->run_tag, d->idx);
    if (d->c_req == FC_NONE) {
        d->t_req = fleet_now();
        f->c_open++;
        if (f->c_serial) {
            f->c_serial_left--;
        } else if (f->stats.req_start == 0) {
            f->stats.req_start = d->t_req;
        }
    }
    d->c_req = FC_OUT;
    f->sub_kind[slot] = SK_DESTROY;
    f->sub_dev[slot] = k;
    f->sub_busy++;
    return fh_send(&f->sub[slot], "POST", path, f->cfg.sub_token, hdr, "application/json", body,
                   sizeof body - 1, cms_cb, f);
}

static ot_err send_poll(struct fleet *f, unsigned slot, uint32_t k)
{
    char path[96];
    (void)snprintf(path, sizeof path, FLEET_CMS "/cards/fc%u", f->devs[k].idx);
    f->sub_kind[slot] = SK_POLL;
    f->sub_dev[slot] = k;
    f->sub_busy++;
    return fh_send(&f->sub[slot], "GET", path, f->cfg.sub_token, NULL, NULL, NULL, 0, cms_cb, f);
}

static void pollq_push(struct fleet *f, uint32_t k, double at)
{
    f->devs[k].poll_at = at;
    f->pollq[(f->pq_head + f->pq_len++) % f->cfg.n] = k;
}

void fleet_cms_pump(struct fleet *f)
{
    double now = fleet_now();
    for (unsigned slot = 0; slot < f->cfg.inflight; slot++) {
        uint32_t k;
        ot_err err;
        if (f->sub_kind[slot] != SK_IDLE) {
            continue;
        }
        if (f->pq_len > 0 && f->devs[f->pollq[f->pq_head]].poll_at <= now) {
            k = f->pollq[f->pq_head];
            f->pq_head = (f->pq_head + 1) % f->cfg.n;
            f->pq_len--;
            err = send_poll(f, slot, k);
        } else if ((k = next_request(f)) != UINT32_MAX) {
            err = send_destroy(f, slot, k);
        } else {
            break;
        }
        if (err != OT_OK) {
            /* nothing went out: the callback will not come */
            f->sub_busy--;
            f->sub_kind[slot] = SK_IDLE;
            fh_close(&f->sub[slot]);
            if (f->devs[k].c_req == FC_OUT) {
                f->devs[k].c_req = FC_NONE;
                f->c_open--;
                f->c_cursor = k < f->c_cursor ? k : f->c_cursor;
            } else {
                pollq_push(f, k, now + 0.1);
            }
        }
    }
}

static bool card_destroyed(const struct fh_conn *c)
{
    size_t n = 0;
    const uint8_t *b = fh_body(c, &n);
    json_t *doc = NULL;
    struct json_err je;
    const char *st = NULL;
    bool yes = false;
    memset(&je, 0, sizeof je);
    if (json_parse(b, n, 64 * 1024, &doc, &je) == OT_OK
        && json_get_str(doc, "state", 1, 32, &st, &je) == OT_OK) {
        yes = strcmp(st, "destroyed") == 0;
    }
    json_free(doc);
    return yes;
}

static void cms_cb(void *ctx, struct fh_conn *c, ot_err err)
{
    struct fleet *f = ctx;
    unsigned slot = (unsigned)(c - f->sub);
    uint32_t k = f->sub_dev[slot];
    struct fleet_dev *d = &f->devs[k];
    uint8_t kind = f->sub_kind[slot];
    double now = fleet_now();

    f->sub_busy--;
    f->sub_kind[slot] = SK_IDLE;
    if (err == OT_E_REPLAY) {
        fh_close(c); /* a kept-alive connection was gone: the same request again */
        if (kind == SK_DESTROY) {
            d->c_req = FC_NONE;
            f->c_open--;
            if (f->c_serial) {
                f->c_serial_left++;
            }
            f->c_cursor = k < f->c_cursor ? k : f->c_cursor;
        } else {
            pollq_push(f, k, now);
        }
        return;
    }
    if (kind == SK_DESTROY) {
        if (err == OT_OK && c->status == 202) {
            d->c_req = FC_ACCEPTED;
            f->stats.requested++;
        } else {
            fleet_dev_fail(d, "cms destroy", c, err);
            d->c_req = FC_REFUSED;
            f->stats.refused++;
            f->c_open--;
        }
        return;
    }
    if (err == OT_OK && c->status == 200 && card_destroyed(c)) {
        d->c_done = FD_DESTROYED;
        d->t_done = now;
        f->stats.destroyed++;
        if (d->offline) {
            f->stats.destroyed_off++;
            f->stats.done_off = now > f->stats.done_off ? now : f->stats.done_off;
        } else {
            f->stats.done_on = now > f->stats.done_on ? now : f->stats.done_on;
        }
        if (d->c_req == FC_ACCEPTED && f->c_open > 0) {
            f->c_open--;
        }
        if (f->c_serial && f->nlat < f->cfg.n) {
            f->lat[f->nlat++] = d->t_done - d->t_req;
        }
        return;
    }
    if (err != OT_OK || c->status != 200) {
        fleet_dev_fail(d, "cms card read", c, err);
    }
    pollq_push(f, k, now + (f->c_serial ? FLEET_SERIAL_POLL : f->poll_ms) / 1e3);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Every accepted request of the group (kept off or not) seen destroyed? */
static bool group_done(const struct fleet *f, bool kept_off)
{
    if (f->c_cursor < f->cfg.n && !f->c_serial) {
        return false;
    }
    for (uint32_t k = 0; k < f->cfg.n; k++) {
        const struct fleet_dev *d = &f->devs[k];
        if (d->c_req == FC_OUT
            || (d->offline == kept_off && d->c_req == FC_ACCEPTED && d->c_done != FD_DESTROYED
                && d->state == DS_ONLINE)) {
            return false;
        }
    }
    return true;
}

ot_err fleet_destroy(struct fleet *f, bool serial, uint32_t max, unsigned timeout_ms)
{
    double end = fleet_now() + timeout_ms / 1e3;
    ot_err err = OT_OK;

    if (f->cfg.cms_subscriber == 0) {
        return OT_E_STATE;
    }
    f->cms_live = true;
    f->c_cursor = 0;
    f->c_serial = serial;
    f->c_serial_left = serial ? max : 0;
    f->c_max_open = serial ? 1u : UINT32_MAX;
    f->poll_ms = serial ? FLEET_SERIAL_POLL : FLEET_POLL_MS;
    if (!serial) {
        f->stats.req_start = 0;
        f->stats.done_on = 0;
    }
    for (;;) {
        fleet_loop_once(f, serial ? 1 : 20);
        if (serial ? f->c_serial_left == 0 && f->c_open == 0 && f->sub_busy == 0
                   : group_done(f, false)) {
            break;
        }
        if (serial && f->c_cursor >= f->cfg.n && f->c_open == 0 && f->sub_busy == 0) {
            break; /* fewer online devices than max */
        }
        if (fleet_now() > end) {
            err = OT_E_TIMEOUT;
            break;
        }
    }
    if (serial && f->nlat > 0) {
        qsort(f->lat, f->nlat, sizeof *f->lat, cmp_double);
        f->stats.samples = f->nlat;
        f->stats.p50_s = f->lat[(f->nlat - 1) / 2];
        f->stats.p99_s = f->lat[(size_t)((f->nlat - 1) * 0.99 + 0.5)];
    }
    f->c_serial = false;
    f->c_max_open = UINT32_MAX;
    f->poll_ms = FLEET_POLL_MS;
    return err;
}

ot_err fleet_online_rest(struct fleet *f, unsigned timeout_ms)
{
    double end = fleet_now() + timeout_ms / 1e3;
    ot_err err;

    f->stats.rest_start = fleet_now();
    f->cms_live = f->cfg.cms_subscriber != 0;
    err = fleet_online_group(f, true, timeout_ms);
    if (err != OT_OK || f->cfg.cms_subscriber == 0) {
        return err;
    }
    while (!group_done(f, true)) {
        fleet_loop_once(f, 20);
        if (fleet_now() > end) {
            return OT_E_TIMEOUT;
        }
    }
    return OT_OK;
}
