/* Phase 1 end to end, in one process: the pieces fit. A dongle (a vse card
 * with the sam applet) gets three SPs' keys wrapped for it alone; two
 * customers' cards (vse cards with the emv-payment and transit applets,
 * their keys diversified from their SPs' master keys) pay at two banks and
 * top up at a transit operator (three spsim back ends over loopback). The
 * cryptogram is the card's own GENERATE AC answer, checked by the dongle
 * and then by the bank; the PIN leaves the dongle as a format 4 block; the
 * transit CREDIT is the operator's, checked by the dongle, taken by the
 * card, whose proof the dongle and the operator check. "pay" is this test:
 * it wraps the keys and signs the requests. */
#include "../../tests/pay/paycards.h"
#include "core/testutil.h"
#include "crypto/ecwrap.h"
#include "crypto/paycard.h"
#include "net/client.h"
#include "pay/msg.h"
#include "pay/spsim.h"
#include "se/card.h"

#include <openssl/rand.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define IMK_A "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"
#define PIN_A "A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1"
#define IMK_B "B0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF"
#define PIN_B "B1B1B1B1B1B1B1B1B1B1B1B1B1B1B1B1"
#define IMK_T "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF"
#define PAN_A "5413330089010434"
#define PAN_B "4000123456789010"

struct bank {
    struct spsim *sp;
    struct net_client *cl;
    const char *name;
};

struct chain {
    char dir[64];
    uint8_t pay_priv[32], pay_pub[65];
    struct pc_card dongle, cust_a, cust_b;
    struct bank a, b, t;
    int64_t seq;
};

static void bank_new(struct chain *ch, struct bank *b, const char *name, enum spsim_kind kind,
                     const char *imk_hex, const char *pin_hex)
{
    uint8_t imk[16], pk[16];
    char db[128], base[64];
    struct spsim_cfg cfg;
    testutil_unhex(imk_hex, imk, sizeof imk);
    if (pin_hex != NULL) {
        testutil_unhex(pin_hex, pk, sizeof pk);
    }
    snprintf(db, sizeof db, "sqlite:%s/%s.db", ch->dir, name);
    memset(&cfg, 0, sizeof cfg);
    cfg.name = name;
    cfg.kind = kind;
    cfg.db_url = db;
    cfg.imk = imk;
    cfg.imk_len = 16;
    cfg.pin_key = pin_hex != NULL ? pk : NULL;
    cfg.pin_key_len = pin_hex != NULL ? 16 : 0;
    cfg.pay_pub = ch->pay_pub;
    cfg.threads = 2;
    b->name = name;
    assert_int_equal(spsim_new(&cfg, &b->sp), OT_OK);
    assert_int_equal(spsim_start(b->sp), OT_OK);
    snprintf(base, sizeof base, "http://127.0.0.1:%u", spsim_port(b->sp));
    struct net_client_cfg cc = {.base_url = base};
    assert_int_equal(net_client_new(&cc, &b->cl), OT_OK);
}

/* pay's key delivery: the SP key wrapped for the dongle, loaded by its SAM. */
static void deliver(struct chain *ch, const uint8_t dongle_pub[65], uint8_t kt, const char *sp,
                    const char *key_hex)
{
    struct ecwrap_meta m;
    uint8_t key[16], blob[ECWRAP_MAX_BLOB];
    size_t n = sizeof blob;
    memset(&m, 0, sizeof m);
    m.key_type = kt;
    snprintf(m.sp_id, sizeof m.sp_id, "%s", sp);
    snprintf(m.dongle_id, sizeof m.dongle_id, "dongle-1");
    m.key_version = 1;
    pc_unhex(key_hex, key, sizeof key);
    assert_int_equal(ecwrap_wrap(dongle_pub, &m, key, 16, blob, &n), OT_OK);
    assert_int_equal(pc_sam_load(&ch->dongle, blob, n), 0x9000);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void req_hdr(struct chain *ch, struct pay_msg *m, enum pay_msg_type t, const char *id,
                    const char *sp)
{
    uint8_t nonce[16];
    pay_msg_init(m, t);
    assert_int_equal(RAND_bytes(nonce, sizeof nonce), 1);
    assert_int_equal(pay_msg_set_str(m, PAY_F_ID, id), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_CLIENT, "payterm-1"), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_SP, sp), OT_OK);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_NONCE, nonce, 16), OT_OK);
    pay_msg_set_int(m, PAY_F_TS, now_ms());
    pay_msg_set_int(m, PAY_F_SEQ, ++ch->seq);
}

/* Signs m as pay, posts it to the back end, parses and verifies the answer. */
static void forward(struct chain *ch, struct bank *b, const char *path, struct pay_msg *m,
                    struct pay_msg *res)
{
    char *s = NULL;
    size_t n = 0;
    uint8_t sp_pub[65];
    struct net_client_resp r;
    assert_int_equal(pay_msg_sign(m, "pay", ch->pay_priv, ch->pay_pub), OT_OK);
    assert_int_equal(pay_msg_encode(m, &s, &n), OT_OK);
    memset(&r, 0, sizeof r);
    assert_int_equal(
        net_client_request_raw(b->cl, "POST", path, "application/json", s, n, NULL, &r), OT_OK);
    free(s);
    assert_int_equal(r.status, 200);
    assert_int_equal(pay_msg_parse(r.body, r.body_len, res, NULL), OT_OK);
    spsim_pub(b->sp, sp_pub);
    assert_int_equal(pay_msg_verify(res, sp_pub), OT_OK);
    net_client_resp_clear(&r);
}

/* A payment of amount cents with the card on the RF reader and the PIN the
 * holder types; returns the bank's reason. */
static enum pay_reason pay(struct chain *ch, struct pc_card *card, struct bank *b, const char *pan,
                           const char *pin, int64_t amount, const char *id)
{
    struct pay_msg m, res;
    req_hdr(ch, &m, PAY_MSG_PAYMENT, id, b->name);
    pc_payment(&ch->dongle, card, b->name, pan, pin, amount, &m);
    forward(ch, b, "/spsim/v1/payments", &m, &res);
    return res.reason;
}

static void conserved(struct bank *b, int64_t cleared)
{
    struct spsim_totals t;
    assert_int_equal(spsim_totals(b->sp, &t), OT_OK);
    assert_int_equal(t.initial, t.balance + t.pending + t.cleared);
    assert_int_equal(t.cleared, cleared);
}

static void test_chain(void **state)
{
    (void)state;
    struct chain *ch = calloc(1, sizeof *ch);
    uint8_t dongle_pub[65];
    assert_non_null(ch);
    snprintf(ch->dir, sizeof ch->dir, "/tmp/pay_chain_XXXXXX");
    assert_non_null(mkdtemp(ch->dir));
    assert_int_equal(ec_p256_keygen(ch->pay_priv, ch->pay_pub), OT_OK);

    pc_dongle_new(&ch->dongle, "dongle-1");
    pc_customer_new(&ch->cust_a, PAN_A, IMK_A, IMK_T);
    pc_customer_new(&ch->cust_b, PAN_B, IMK_B, NULL);
    bank_new(ch, &ch->a, "bank-a", SPSIM_BANK, IMK_A, PIN_A);
    bank_new(ch, &ch->b, "bank-b", SPSIM_BANK, IMK_B, PIN_B);
    bank_new(ch, &ch->t, "metro", SPSIM_TRANSIT, IMK_T, NULL);
    assert_int_equal(spsim_add_card(ch->a.sp, PAN_A, "1234", 10000, "EUR", 3), OT_OK);
    assert_int_equal(spsim_add_card(ch->b.sp, PAN_B, "4321", 5000, "EUR", 3), OT_OK);
    uint8_t pid[8];
    pc_unhex(PC_PURSE, pid, sizeof pid);
    assert_int_equal(spsim_add_purse(ch->t.sp, pid, 3000), OT_OK);

    /* key delivery: every SP's keys wrapped for this dongle */
    pc_sam_pub(&ch->dongle, dongle_pub);
    deliver(ch, dongle_pub, ECWRAP_KT_EMV_IMK, "bank-a", IMK_A);
    deliver(ch, dongle_pub, ECWRAP_KT_PIN, "bank-a", PIN_A);
    deliver(ch, dongle_pub, ECWRAP_KT_EMV_IMK, "bank-b", IMK_B);
    deliver(ch, dongle_pub, ECWRAP_KT_PIN, "bank-b", PIN_B);
    deliver(ch, dongle_pub, ECWRAP_KT_TRANSIT_IMK, "metro", IMK_T);

    /* two banks' cards on one dongle: each clears at its own bank */
    assert_int_equal(pay(ch, &ch->cust_a, &ch->a, PAN_A, "1234", 1250, "p-1"), PAY_R_OK);
    assert_int_equal(pay(ch, &ch->cust_b, &ch->b, PAN_B, "4321", 700, "p-2"), PAY_R_OK);
    conserved(&ch->a, 1250);
    conserved(&ch->b, 700);
    /* a wrong PIN is the bank's refusal and costs a try */
    assert_int_equal(pay(ch, &ch->cust_b, &ch->b, PAN_B, "0000", 100, "p-3"), PAY_R_WRONG_PIN);
    conserved(&ch->b, 700);
    /* a card of bank b checked with bank a's key: the dongle refuses it */
    {
        uint8_t req[64] = {8};
        memset(req + 1, 0x11, 20);
        assert_int_equal(pc_sam(&ch->dongle, 0xA0, 0, "bank-a", req, 19), 0x6982);
    }

    /* top-up (figure 4): authorise, the dongle checks the command, the card
     * takes it, the dongle checks its proof, the operator confirms */
    struct pay_msg m, auth, res;
    uint8_t req[64];
    req_hdr(ch, &m, PAY_MSG_TOPUP_AUTHORISE, "t-1", "metro");
    assert_int_equal(pay_msg_set_bytes(&m, PAY_F_PURSE_ID, pid, 8), OT_OK);
    assert_int_equal(pc_select(&ch->cust_a, PC_PURSEA), 0x9000);
    assert_int_equal(pc_tx(&ch->cust_a, "805C010010"), 0x9000);
    pay_msg_set_int(&m, PAY_F_BALANCE, ot_get_u32be(ch->cust_a.resp));
    pay_msg_set_int(&m, PAY_F_COUNTER, ot_get_u32be(ch->cust_a.resp + 4));
    pay_msg_set_int(&m, PAY_F_AMOUNT, 2000);
    forward(ch, &ch->t, "/spsim/v1/topups", &m, &auth);
    assert_int_equal(auth.reason, PAY_R_OK);
    memcpy(req, pid, 8);
    ot_put_u32be(req + 8, (uint32_t)auth.amount);
    ot_put_u32be(req + 12, (uint32_t)auth.counter);
    memcpy(req + 16, auth.mac, 8);
    assert_int_equal(pc_select(&ch->dongle, PC_SAM), 0x9000);
    assert_int_equal(pc_sam(&ch->dongle, 0xA4, 0, "metro", req, 24), 0x9000);
    uint8_t credit[5 + 16 + 1] = {0x80, 0x52, 0x00, 0x00, 0x10};
    memcpy(credit + 5, req + 8, 16);
    assert_int_equal(pc_select(&ch->cust_a, PC_PURSEA), 0x9000);
    assert_int_equal(pc_txb(&ch->cust_a, credit, sizeof credit), 0x9000);
    assert_int_equal(ot_get_u32be(ch->cust_a.resp), 3000); /* 10.00 + 20.00 */
    memcpy(req + 8, ch->cust_a.resp, 16);                  /* balance, counter, proof */
    assert_int_equal(pc_select(&ch->dongle, PC_SAM), 0x9000);
    assert_int_equal(pc_sam(&ch->dongle, 0xA4, 1, "metro", req, 24), 0x9000);
    req_hdr(ch, &m, PAY_MSG_TOPUP_CONFIRM, "c-1", "metro");
    assert_int_equal(pay_msg_set_bytes(&m, PAY_F_PURSE_ID, pid, 8), OT_OK);
    pay_msg_set_int(&m, PAY_F_BALANCE, ot_get_u32be(req + 8));
    pay_msg_set_int(&m, PAY_F_COUNTER, ot_get_u32be(req + 12));
    assert_int_equal(pay_msg_set_bytes(&m, PAY_F_MAC, req + 16, 8), OT_OK);
    forward(ch, &ch->t, "/spsim/v1/topups/confirm", &m, &res);
    assert_int_equal(res.reason, PAY_R_OK);
    conserved(&ch->t, 2000);
    /* the same CREDIT again: the card refuses it (its counter moved on) */
    assert_int_equal(pc_select(&ch->cust_a, PC_PURSEA), 0x9000);
    assert_int_equal(pc_txb(&ch->cust_a, credit, sizeof credit), 0x6982);

    net_client_free(ch->a.cl);
    net_client_free(ch->b.cl);
    net_client_free(ch->t.cl);
    spsim_free(ch->a.sp);
    spsim_free(ch->b.sp);
    spsim_free(ch->t.sp);
    pc_card_free(&ch->dongle);
    pc_card_free(&ch->cust_a);
    pc_card_free(&ch->cust_b);
    const char *names[] = {"bank-a", "bank-b", "metro"};
    for (size_t i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s/%s.db", ch->dir, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s.db-wal", ch->dir, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s.db-shm", ch->dir, names[i]);
        unlink(p);
    }
    rmdir(ch->dir);
    free(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
