/* Shared by the pay service's files (pay_svc.c, pay_fwd.c) only. */
#ifndef OT_PAY_PAY_SVC_PRIV_H
#define OT_PAY_PAY_SVC_PRIV_H

#include "crypto/ec.h"
#include "net/http.h"
#include "pay/msg.h"
#include "svc/svc.h"

#include <stdbool.h>
#include <stdint.h>

struct db_conn;
struct pay_rf;

/* Key types of pay_sp_keys (1-based, pay_kt_names): the first three are
 * delivered to the clients' dongles, the ISD keys never leave pay. */
#define PAY_KT_TRANSIT_IMK 2
#define PAY_KT_DONGLE_MAX  3
#define PAY_KT_ISD_ENC     4 /* isd_enc, isd_mac, isd_dek: 4, 5, 6 */

#define PAY_SIGNER       "pay" /* the "signer" of what pay forwards */
#define PAY_DISPLAY_MAX  64u
#define PAY_ENDPOINT_MAX 255u

struct pay_svc {
    struct svc_kit *kit;
    struct db *db;
    struct authstore *auth;
    struct keystore *ks;
    char instance[SVC_NAME_MAX + 1];
    char prefix[SVC_PREFIX_MAX + 1];
    char ks_owner[SVC_NAME_MAX + 8]; /* "pay:" + instance: key store owner of pay's keys */
    int64_t window_ms;
    int64_t forward_timeout_ms;
    uint8_t priv[EC_P256_PRIV_LEN]; /* pay's signing key (key store "pay:<inst>" "signing") */
    uint8_t pub[EC_P256_PUB_LEN];
    struct pay_rf *rf; /* open card content management relays (pay_rf.c) */
};

struct pay_sp_row {
    int64_t id;
    char name[PAY_NAME_MAX + 1];
    char display_name[PAY_DISPLAY_MAX + 1];
    char endpoint[PAY_ENDPOINT_MAX + 1];
    char kind[16];                /* "bank" | "transit" */
    uint8_t pub[EC_P256_PUB_LEN]; /* the back end's signing key */
    int64_t owner;                /* SP principal that may deposit keys; 0: operators only */
    bool revoked;
};

struct pay_client_row {
    int64_t id;
    char name[PAY_NAME_MAX + 1]; /* also the dongle id of its wraps */
    int64_t principal_id;
    uint8_t dongle_pub[EC_P256_PUB_LEN];
    bool revoked;
    int64_t last_seq;
};

bool pay_name_ok(const char *s); /* [A-Za-z0-9._-]{1,32} */
int64_t pay_now_ms(void);
ot_err pay_sp_load(struct db_conn *c, const char *instance, const char *name, struct pay_sp_row *r);
/* By name, or (name NULL) by principal id. OT_E_NOT_FOUND when none. */
ot_err pay_client_load(struct db_conn *c, const char *instance, const char *name, int64_t principal,
                       struct pay_client_row *r);

/* Forwarding handlers (pay_fwd.c). */
void pay_h_payment(struct net_req *req, struct net_resp *resp, void *ctx);
void pay_h_topup(struct net_req *req, struct net_resp *resp, void *ctx);
void pay_h_topup_confirm(struct net_req *req, struct net_resp *resp, void *ctx);

/* Card content management relayed by a client (pay_rf.c). */
ot_err pay_rf_new(struct pay_rf **out);
void pay_rf_free(struct pay_rf *r); /* NULL-safe */
void pay_h_install_open(struct net_req *req, struct net_resp *resp, void *ctx);
void pay_h_install_step(struct net_req *req, struct net_resp *resp, void *ctx);

#endif
