/* TSM service: the relay of a principal's own secure-channel APDUs to an SD
 * of an SE, unchanged, as the batches of one interactive OTA job on the
 * SE's mno instance (the agent selects the SD first). Used by the
 * communications of a service instance after the SP rotated its keys
 * (tsm_inst.c) and by the SD relay of Delegated Management SPs and
 * third-party TSMs (tsm_dm.c). */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm_priv.h"

#include "client/mno_client.h"
#include "client/otascp.h"
#include "client/tsm_client.h"
#include "core/log.h"
#include "net/http.h"
#include "net/json.h"

#include <stdio.h>
#include <string.h>

bool tsm_relay_batch(struct tsm *t, struct net_resp *resp, const struct tsm_se *se, const char *sd,
                     const char *idem, const json_t *apdus, char *job, size_t job_cap, int64_t *seq,
                     json_t **rapdus)
{
    struct tsm_client *tc = NULL;
    struct mno_client *mc = NULL;
    struct tsm_client_err e;
    json_t *body = NULL;
    json_t *ans = NULL;
    json_t *jb = NULL;
    const json_t *rap = NULL;
    int64_t s = 0;
    int64_t deadline;
    bool ok = false;

    memset(&e, 0, sizeof(e));
    *rapdus = NULL;
    if (tsm_mno_open(t, se->mno, &tc, &mc, NULL, 0) != OT_OK) {
        net_resp_error(resp, OT_E_STATE, "mno_unknown", "the SE's network is not configured", NULL);
        goto out;
    }
    body = json_obj_new();
    if (body == NULL || json_object_set(body, "apdus", (json_t *)apdus) != 0) {
        svc_fail(resp, OT_E_NOMEM);
        goto out;
    }
    if (job[0] == '\0') {
        json_t *sej = json_obj_new();
        const char *id;
        if (sej == NULL || json_put_str(sej, "cin", se->cin) != OT_OK
            || json_put(body, "se", sej) != OT_OK
            || json_put_str(body, "kind", "interactive") != OT_OK
            || json_put_str(body, "aid", sd) != OT_OK
            || (se->msisdn[0] && json_put_str(body, "msisdn", se->msisdn) != OT_OK)) {
            svc_fail(resp, OT_E_NOMEM);
            goto out;
        }
        if (mno_client_job_submit(mc, body, idem, &ans, &e) != OT_OK) {
            net_resp_error(resp, OT_E_IO, "upstream_failed", "the SE's network refused the job",
                           NULL);
            OT_LOG_WARN("relay %s: %s", idem, e.text);
            goto out;
        }
        id = json_string_value(json_object_get(ans, "id"));
        snprintf(job, job_cap, "%s", id != NULL ? id : "");
        s = 1;
    } else {
        const json_t *sv;
        if (mno_client_job_batch(mc, job, body, idem, &ans, &e) != OT_OK) {
            net_resp_error(resp, OT_E_IO, "upstream_failed",
                           "the relay's job does not take a batch (ended?)", NULL);
            OT_LOG_WARN("relay %s: %s", idem, e.text);
            goto out;
        }
        s = *seq + 1;
        sv = json_object_get(ans, "seq");
        if (json_is_integer(sv)) {
            s = json_integer_value(sv);
        }
    }
    *seq = s;
    deadline = tsm_mono_ms() + (t->wait_ms > 30000 ? t->wait_ms : 30000);
    for (;;) {
        int64_t left = deadline - tsm_mono_ms();
        const json_t *scripts;
        const char *js;
        unsigned ws;
        if (left <= 0) {
            break;
        }
        ws = left >= 10000 ? 10u : (unsigned)(left + 999) / 1000;
        json_free(jb);
        jb = NULL;
        if (mno_client_job_wait(mc, job, ws, s, &jb, &e) != OT_OK) {
            break;
        }
        scripts = json_object_get(jb, "scripts");
        for (size_t i = 0; i < json_array_size(scripts); i++) {
            const json_t *sc = json_array_get(scripts, i);
            if (json_integer_value(json_object_get(sc, "seq")) == s) {
                const json_t *r = json_object_get(sc, "rapdus");
                if (json_is_array(r)) {
                    rap = r;
                }
            }
        }
        if (rap != NULL) {
            break;
        }
        js = json_string_value(json_object_get(jb, "state"));
        if (js != NULL
            && (strcmp(js, "done") == 0 || strcmp(js, "failed") == 0 || strcmp(js, "expired") == 0
                || strcmp(js, "cancelled") == 0)) {
            break;
        }
    }
    if (rap == NULL) {
        net_resp_error(resp, OT_E_TIMEOUT, "timeout", "the card has not answered the batch", NULL);
        goto out;
    }
    *rapdus = json_incref((json_t *)rap);
    ok = true;
out:
    json_free(jb);
    json_free(ans);
    json_free(body);
    tsm_mno_close(t, tc, mc);
    return ok;
}

void tsm_relay_close(struct tsm *t, const struct tsm_se *se, const char *job)
{
    struct tsm_client *tc = NULL;
    struct mno_client *mc = NULL;
    struct tsm_client_err e;
    json_t *ans = NULL;

    if (job[0] == '\0') {
        return;
    }
    memset(&e, 0, sizeof(e));
    if (tsm_mno_open(t, se->mno, &tc, &mc, NULL, 0) == OT_OK) {
        (void)mno_client_job_close(mc, job, &ans, &e);
    }
    json_free(ans);
    tsm_mno_close(t, tc, mc);
}
