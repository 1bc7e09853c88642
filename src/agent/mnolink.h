/* The agent's calls to its mno (docs/ota.md sections 3 and 7) over the net
 * client: what the platform knows about this device (known_cins, for the
 * SE identity check) and the mirror of the SE list.
 *
 * base_url is the instance's prefix, e.g. https://mno.example:8443/mno/orange/v1;
 * the device authenticates with its bearer token (ota.md section 2).
 */
#ifndef OT_AGENT_MNOLINK_H
#define OT_AGENT_MNOLINK_H

#include "agent/selist.h"
#include "core/err.h"
#include "net/client.h"

#include <stdint.h>

struct agent_mno;

struct agent_mno_cfg {
    const char *base_url;
    const char *token; /* copied; wiped at free; NULL with a client certificate */
    const char *ca_file;
    unsigned timeout_ms;
    const char *cert_file; /* the device's client certificate (PEM) for mutual TLS, or NULL */
    const char *key_file;  /* its private key (PEM) */
    /* NULL, or a flag that ends a wait for an answer when set (the agent
     * is stopping: net_client_cfg.cancel) */
    const volatile sig_atomic_t *cancel;
};

ot_err agent_mno_new(const struct agent_mno_cfg *cfg, struct agent_mno **out);
void agent_mno_free(struct agent_mno *m); /* NULL: no-op */

/* GET P/device: the CINs the operator enrolled for this device, and the
 * device's IMEI (imei may be NULL) for X-Admin-From. A refusal
 * (401/403/404) or a malformed answer: OT_E_AUTH / OT_E_PROTOCOL with the
 * reason in why; unreachable: OT_E_IO / OT_E_TIMEOUT. */
ot_err agent_mno_known_cins(struct agent_mno *m, struct agent_known_cins *out, char *imei,
                            size_t imei_cap, char *why, size_t why_cap);
/* PUT P/device/secure-elements with the whole list. Refused (e.g. a CIN the
 * platform does not know): OT_E_FORBIDDEN / OT_E_PROTOCOL, why says so. */
ot_err agent_mno_mirror(struct agent_mno *m, const struct agent_selist *l, char *why,
                        size_t why_cap);

/* method + P/rel (rel: "/device/register"), JSON body or NULL. Release r
 * with net_client_resp_clear. */
ot_err agent_mno_call(struct agent_mno *m, const char *method, const char *rel, const json_t *body,
                      struct net_client_resp *r);
/* POST to an absolute path on mno's origin (an X-Admin-Next-URI) with raw
 * body (len 0: none), extra headers (NULL-terminated). */
ot_err agent_mno_post_raw(struct agent_mno *m, const char *abs_path, const char *const *headers,
                          const char *ctype, const uint8_t *body, size_t len,
                          struct net_client_resp *r);
/* The instance prefix of base_url ("/mno/orange/v1"). */
const char *agent_mno_prefix(const struct agent_mno *m);

/* POST P/device/register (power-on, back in coverage); location_area may be
 * NULL. The heartbeat period and the lease mno answers. */
ot_err agent_mno_register(struct agent_mno *m, const char *location_area, int *heartbeat_s,
                          int *lease_s, char *why, size_t why_cap);
/* POST P/device/heartbeat: OT_E_STATE when mno says not_registered (the
 * lease ran out: register again). */
ot_err agent_mno_heartbeat(struct agent_mno *m, char *why, size_t why_cap);
/* POST P/device/detach (power-off). */
ot_err agent_mno_detach(struct agent_mno *m, char *why, size_t why_cap);

/* POST P/device/backstage/<request> (ota.md 7): status ok (error NULL) or
 * failed with the error text, and the whole SE list after the operation. */
ot_err agent_mno_backstage_answer(struct agent_mno *m, const char *request, const char *error,
                                  const struct agent_selist *l, char *why, size_t why_cap);

/* GET P/device/stream (ota.md 4) through net_client_sse: blocks, calling fn
 * for each event, until fn returns false or the stream is given up. */
ot_err agent_mno_stream(struct agent_mno *m, const char *last_event_id,
                        const struct net_sse_opts *opts, net_sse_fn fn, void *ctx, char *last_out,
                        size_t last_cap);

/* The next wait of a doubling backoff between min_ms and max_ms with
 * jitter: a value in [next/2, next] where next = min(2 * cur_ms, max_ms)
 * (cur_ms < min_ms: min_ms); rnd is a random number. */
unsigned agent_backoff_next(unsigned cur_ms, unsigned min_ms, unsigned max_ms, uint32_t rnd);

#endif
