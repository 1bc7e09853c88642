/* Client of one mno instance (docs/mno.md, docs/api/mno.yaml) for the other
 * services (tsm, cms) and tsmctl: one typed call per operation, over the
 * host's client (tsm_client.h: transport, TLS, errors, escaping), so every
 * call answers like the tsm_client calls do: OT_OK with the answer's JSON
 * document (caller's, json_free) or an error with *e filled.
 *
 * A struct mno_client borrows one tsm_client: one thread at a time.
 */
#ifndef OT_MNO_CLIENT_H
#define OT_MNO_CLIENT_H

#include "client/tsm_client.h"
#include "core/err.h"
#include "net/json.h"

#include <stdint.h>

struct mno_client;

/* instance: the mno instance name ("orange"; "" for an unnamed one). */
ot_err mno_client_new(struct tsm_client *c, const char *instance, struct mno_client **out);
void mno_client_free(struct mno_client *m); /* NULL-safe */

/* by: "msisdn", "imsi" or "imei". */
ot_err mno_client_status(struct mno_client *m, const char *by, const char *value, json_t **out,
                         struct tsm_client_err *e);
ot_err mno_client_enrol(struct mno_client *m, int64_t principal_id, const char *msisdn,
                        const json_t *cins, const char *idem_key, json_t **out,
                        struct tsm_client_err *e);
ot_err mno_client_devices(struct mno_client *m, const struct tsm_client_pg *pg,
                          struct tsm_client_page *out, struct tsm_client_err *e);
ot_err mno_client_device(struct mno_client *m, const char *id, json_t **out,
                         struct tsm_client_err *e);
/* job: the JobSubmit object of docs/api/mno.yaml. */
ot_err mno_client_job_submit(struct mno_client *m, const json_t *job, const char *idem_key,
                             json_t **out, struct tsm_client_err *e);
ot_err mno_client_job(struct mno_client *m, const char *id, json_t **out, struct tsm_client_err *e);
/* GET /jobs/{id}?wait=S[&seq=N]: answers once the job is no longer pending
 * (or script seq has its responses; seq 0: none), or after wait_s (1..60)
 * with the job as it is. The client's timeout must exceed wait_s. */
ot_err mno_client_job_wait(struct mno_client *m, const char *id, unsigned wait_s, int64_t seq,
                           json_t **out, struct tsm_client_err *e);
ot_err mno_client_jobs(struct mno_client *m, const struct tsm_client_pg *pg,
                       struct tsm_client_page *out, struct tsm_client_err *e);
ot_err mno_client_job_cancel(struct mno_client *m, const char *id, json_t **out,
                             struct tsm_client_err *e);
/* batch: {"apdus": [...], "continue_on_error"?}. */
ot_err mno_client_job_batch(struct mno_client *m, const char *id, const json_t *batch,
                            const char *idem_key, json_t **out, struct tsm_client_err *e);
ot_err mno_client_job_close(struct mno_client *m, const char *id, json_t **out,
                            struct tsm_client_err *e);
/* action: "requeue" or "fail" (a job whose outcome is unknown). */
ot_err mno_client_job_resolve(struct mno_client *m, const char *id, const char *action,
                              json_t **out, struct tsm_client_err *e);
ot_err mno_client_alerts(struct mno_client *m, const struct tsm_client_pg *pg,
                         struct tsm_client_page *out, struct tsm_client_err *e);
ot_err mno_client_alert_clear(struct mno_client *m, const char *id, json_t **out,
                              struct tsm_client_err *e);
/* op: "add", "verify", "query", "delete"; cin and reader may be NULL. */
ot_err mno_client_backstage(struct mno_client *m, const char *device, const char *op,
                            const char *cin, const char *reader, const char *idem_key, json_t **out,
                            struct tsm_client_err *e);
ot_err mno_client_backstage_get(struct mno_client *m, const char *id, json_t **out,
                                struct tsm_client_err *e);

#endif
