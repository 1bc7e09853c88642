/* Shared by the .c files of src/pay only. */
#ifndef OT_PAY_PAY_PRIV_H
#define OT_PAY_PAY_PRIV_H

#include "crypto/ec.h"
#include "db/db.h"
#include "net/http.h"
#include "pay/msg.h"
#include "pay/spsim.h"

struct spsim {
    char name[PAY_NAME_MAX + 1];
    enum spsim_kind kind;
    struct db *db;
    struct net_server *srv;
    char host[64];
    uint16_t port;
    unsigned threads;
    uint8_t imk[32];
    size_t imk_len;
    uint8_t pin_key[32];
    size_t pin_key_len;
    uint8_t pay_pub[EC_P256_PUB_LEN];
    uint8_t priv[EC_P256_PRIV_LEN]; /* spsim's signing key */
    uint8_t pub[EC_P256_PUB_LEN];
    int64_t window_ms;
};

/* The outcome of one message: err OT_OK and body (malloc'd, the signed
 * answer) for 200; else the error answer's code, field and message. */
struct spsim_ans {
    ot_err err;
    const char *code; /* error slug; NULL: the code's default */
    char field[128];  /* "" when none */
    char message[160];
    char *body;
    size_t len;
};

/* Runs one request of type want (spsim_ledger.c). */
void spsim_handle(struct spsim *s, enum pay_msg_type want, const uint8_t *p, size_t n,
                  int64_t now_ms, struct spsim_ans *ans);

/* Wall clock in Unix milliseconds. */
int64_t spsim_now_ms(void);

#endif
