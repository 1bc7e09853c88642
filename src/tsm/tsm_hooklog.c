/* TSM service: a service provider's webhook delivery log (docs/tsm.md §6):
 * the kit's outbox rows of its completions, each with its attempts, on the
 * kit's paging. Only the caller's own: the rows are selected by the key
 * name of its secret. */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm_priv.h"

#include "core/log.h"
#include "db/db.h"
#include "net/http.h"
#include "svc/kit.h"
#include "svc/webhook.h"

#include <stdio.h>

struct tsm_hooklog {
    char key[64];
};

static ot_err tsm_hooklog_bind(struct db_stmt *st, void *ctx)
{
    const struct tsm_hooklog *h = ctx;
    ot_err err = OT_OK;

    OT_TRY(db_bind_text(st, 3, TSM_KS_OWNER));
    OT_TRY(db_bind_text(st, 4, h->key));
out:
    return err;
}

static ot_err tsm_hooklog_expand(struct db_conn *c, void *ctx, int64_t id, json_t **item)
{
    (void)ctx;
    return svc_outbox_delivery_json(c, id, item);
}

/* GET /webhook/deliveries?cursor=&limit=: oldest first. */
void tsm_h_webhook_deliveries(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct tsm_hooklog h;
    const struct svc_list l = {
        .sql = "SELECT id FROM svc_outbox WHERE id > $1 AND channel = 'webhook'"
               " AND key_owner = $3 AND key_name = $4 ORDER BY id LIMIT $2",
        .bind = tsm_hooklog_bind,
        .expand = tsm_hooklog_expand,
        .ctx = &h,
    };

    if (p == NULL) {
        net_resp_error(resp, OT_E_AUTH, NULL, NULL, NULL);
        return;
    }
    tsm_webhook_key(p->id, h.key, sizeof(h.key));
    svc_list_page(t->db, req, resp, &l);
}
