/* spsim over loopback: a bank and a transit operator, driven with signed
 * messages as pay sends them (this test holds "pay"'s key), through the
 * real HTTP server and client. Checks the ledger after each step: declines
 * and refused requests change nothing, money is conserved. */
#include "pay/spsim.h"

#include "core/testutil.h"
#include "crypto/paycard.h"
#include "crypto/pinblock.h"
#include "net/client.h"
#include "pay/msg.h"
#include "pay/pay_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define IMK    "000102030405060708090A0B0C0D0E0F"
#define PINKEY "00112233445566778899AABBCCDDEEFF"
#define PAN1   "5413330089010434"
#define PAN2   "4000123456789010"
#define PURSE  "0102030405060708"

struct env {
    char dir[64];
    char url[128];
    struct spsim *sp;
    struct net_client *cl;
    uint8_t pay_priv[32], pay_pub[65];
    uint8_t sp_pub[65];
    int64_t seq;
    unsigned nonce_ctr;
    enum spsim_kind kind;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void env_open(struct env *e)
{
    uint8_t imk[16], pk[16];
    struct spsim_cfg cfg;
    char db[128], base[64];
    testutil_unhex(IMK, imk, sizeof imk);
    testutil_unhex(PINKEY, pk, sizeof pk);
    snprintf(db, sizeof db, "sqlite:%s/spsim.db", e->dir);
    memset(&cfg, 0, sizeof cfg);
    cfg.name = e->kind == SPSIM_BANK ? "bank-a" : "metro";
    cfg.kind = e->kind;
    cfg.db_url = db;
    cfg.imk = imk;
    cfg.imk_len = 16;
    cfg.pin_key = pk;
    cfg.pin_key_len = 16;
    cfg.pay_pub = e->pay_pub;
    cfg.threads = 2;
    assert_int_equal(spsim_new(&cfg, &e->sp), OT_OK);
    assert_int_equal(spsim_start(e->sp), OT_OK);
    spsim_pub(e->sp, e->sp_pub);
    snprintf(base, sizeof base, "http://127.0.0.1:%u", spsim_port(e->sp));
    struct net_client_cfg cc = {.base_url = base};
    assert_int_equal(net_client_new(&cc, &e->cl), OT_OK);
}

static void env_close(struct env *e)
{
    net_client_free(e->cl);
    e->cl = NULL;
    spsim_free(e->sp);
    e->sp = NULL;
}

static struct env *env_new(enum spsim_kind kind)
{
    struct env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->kind = kind;
    snprintf(e->dir, sizeof e->dir, "/tmp/spsim_test_XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    assert_int_equal(ec_p256_keygen(e->pay_priv, e->pay_pub), OT_OK);
    env_open(e);
    return e;
}

static void env_free(struct env *e)
{
    char p[160];
    env_close(e);
    snprintf(p, sizeof p, "%s/spsim.db", e->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/spsim.db-wal", e->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/spsim.db-shm", e->dir);
    unlink(p);
    rmdir(e->dir);
    free(e);
}

/* POST raw text; the answer in r (caller clears). */
static long post(struct env *e, const char *path, const char *body, struct net_client_resp *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(net_client_request_raw(e->cl, "POST", path, "application/json", body,
                                            strlen(body), NULL, r),
                     OT_OK);
    return r->status;
}

static json_t *get_json(struct env *e, const char *path)
{
    struct net_client_resp r;
    memset(&r, 0, sizeof r);
    assert_int_equal(net_client_request(e->cl, "GET", path, NULL, NULL, &r), OT_OK);
    assert_int_equal(r.status, 200);
    json_t *j = r.json;
    r.json = NULL;
    net_client_resp_clear(&r);
    return j;
}

static int64_t jint(const json_t *j, const char *k)
{
    int64_t v = 0;
    assert_int_equal(json_get_int(j, k, INT64_MIN, INT64_MAX, &v, NULL), OT_OK);
    return v;
}

static void check_conserved(struct env *e, int64_t want_cleared)
{
    struct spsim_totals t;
    assert_int_equal(spsim_totals(e->sp, &t), OT_OK);
    assert_int_equal(t.initial, t.balance + t.pending + t.cleared);
    assert_int_equal(t.cleared, want_cleared);
    json_t *j = get_json(e, "/spsim/v1/settlement");
    assert_int_equal(jint(j, "cleared"), want_cleared);
    assert_int_equal(jint(j, "initial"), t.initial);
    json_free(j);
}

static void add_card(struct env *e, const char *pan, const char *pin, int64_t balance)
{
    char body[256];
    struct net_client_resp r;
    snprintf(body, sizeof body,
             "{\"pan\":\"%s\",\"pin\":\"%s\",\"balance\":%lld,\"currency\":\"EUR\"}", pan, pin,
             (long long)balance);
    assert_int_equal(post(e, "/spsim/v1/cards", body, &r), 201);
    net_client_resp_clear(&r);
    assert_int_equal(post(e, "/spsim/v1/cards", body, &r), 409); /* exists */
    net_client_resp_clear(&r);
}

static void fill_req(struct env *e, struct pay_msg *m, enum pay_msg_type t, const char *id)
{
    uint8_t nonce[16] = {0};
    pay_msg_init(m, t);
    e->nonce_ctr++;
    ot_put_u32be(nonce, e->nonce_ctr);
    nonce[15] = (uint8_t)e->kind;
    nonce[8] = (uint8_t)(now_ms() & 0xFF);
    nonce[9] = (uint8_t)getpid();
    assert_int_equal(pay_msg_set_str(m, PAY_F_ID, id), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_CLIENT, "term-1"), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_SP, e->kind == SPSIM_BANK ? "bank-a" : "metro"),
                     OT_OK);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_NONCE, nonce, 16), OT_OK);
    pay_msg_set_int(m, PAY_F_TS, now_ms());
    pay_msg_set_int(m, PAY_F_SEQ, ++e->seq);
}

/* A payment as the card and the dongle make it: the AC over CDOL1 data
 * starting with the amount (n12 BCD), the PIN block under the bank's key. */
static void payment(struct env *e, struct pay_msg *m, const char *id, const char *pan,
                    const char *pin, int64_t amount, uint16_t atc)
{
    uint8_t imk[16], pk[16], bcd[10], mk[16], ac[8], pb[16], cdol[33];
    size_t bn = 0;
    int64_t a = amount;
    fill_req(e, m, PAY_MSG_PAYMENT, id);
    testutil_unhex(IMK, imk, sizeof imk);
    testutil_unhex(PINKEY, pk, sizeof pk);
    memset(cdol, 0x11, sizeof cdol);
    for (int i = 5; i >= 0; i--) {
        cdol[i] = (uint8_t)(((a / 10) % 10) << 4 | (a % 10));
        a /= 100;
    }
    ot_put_u16be(cdol + 31, atc);
    assert_int_equal(paycard_pan_bcd(pan, bcd, &bn), OT_OK);
    assert_int_equal(paycard_derive(imk, 16, PAYCARD_DC_EMV_AC, bcd, bn, mk), OT_OK);
    assert_int_equal(paycard_emv_ac(mk, atc, cdol, sizeof cdol, ac), OT_OK);
    assert_int_equal(pinblock4_encipher(pk, 16, pin, pan, pb), OT_OK);
    pay_msg_set_int(m, PAY_F_AMOUNT, amount);
    assert_int_equal(pay_msg_set_str(m, PAY_F_CURRENCY, "EUR"), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_MERCHANT, "Shop"), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_PAN, pan), OT_OK);
    pay_msg_set_int(m, PAY_F_ATC, atc);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_CDOL, cdol, sizeof cdol), OT_OK);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_AC, ac, 8), OT_OK);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_PIN_BLOCK, pb, 16), OT_OK);
}

static char *signed_text(struct env *e, struct pay_msg *m)
{
    char *s = NULL;
    size_t n = 0;
    assert_int_equal(pay_msg_sign(m, "pay", e->pay_priv, e->pay_pub), OT_OK);
    assert_int_equal(pay_msg_encode(m, &s, &n), OT_OK);
    return s;
}

/* Sends a signed message; on 200 the answer must verify with spsim's key. */
static long send_msg(struct env *e, const char *path, struct pay_msg *m, struct pay_msg *res,
                     struct net_client_resp *raw)
{
    char *s = signed_text(e, m);
    struct net_client_resp r;
    long st = post(e, path, s, &r);
    free(s);
    if (st == 200) {
        assert_int_equal(pay_msg_parse(r.body, r.body_len, res, NULL), OT_OK);
        assert_int_equal(pay_msg_verify(res, e->sp_pub), OT_OK);
    }
    if (raw != NULL) {
        *raw = r;
    } else {
        net_client_resp_clear(&r);
    }
    return st;
}

static enum pay_reason pay1(struct env *e, const char *id, const char *pan, const char *pin,
                            int64_t amount, uint16_t atc, struct pay_msg *res)
{
    struct pay_msg m;
    payment(e, &m, id, pan, pin, amount, atc);
    assert_int_equal(send_msg(e, "/spsim/v1/payments", &m, res, NULL), 200);
    assert_string_equal(res->id, id);
    return res->reason;
}

static int64_t card_field(struct env *e, const char *pan, const char *k)
{
    char path[64];
    snprintf(path, sizeof path, "/spsim/v1/cards/%s", pan);
    json_t *j = get_json(e, path);
    int64_t v = jint(j, k);
    json_free(j);
    return v;
}

static void test_payments(void **state)
{
    (void)state;
    struct env *e = env_new(SPSIM_BANK);
    struct pay_msg res;
    add_card(e, PAN1, "1234", 10000);
    add_card(e, PAN2, "987654", 500);
    check_conserved(e, 0);
    assert_int_equal(pay1(e, "p-1", PAN1, "1234", 1250, 1, &res), PAY_R_OK);
    assert_int_equal(res.status, PAY_APPROVED);
    assert_int_equal(strlen(res.auth_code), 6);
    assert_int_equal(card_field(e, PAN1, "balance"), 8750);
    check_conserved(e, 1250);
    assert_int_equal(pay1(e, "p-2", PAN2, "987654", 400, 7, &res), PAY_R_OK);
    assert_int_equal(pay1(e, "p-3", PAN2, "987654", 200, 8, &res), PAY_R_INSUFFICIENT_FUNDS);
    assert_int_equal(card_field(e, PAN2, "balance"), 100);
    check_conserved(e, 1650);
    assert_int_equal(pay1(e, "p-4", "5413330089010442", "1234", 1, 1, &res), PAY_R_UNKNOWN_CARD);
    check_conserved(e, 1650);
    /* the ledger and the signing key survive a restart */
    env_close(e);
    env_open(e);
    assert_int_equal(card_field(e, PAN1, "balance"), 8750);
    check_conserved(e, 1650);
    assert_int_equal(pay1(e, "p-5", PAN1, "1234", 50, 2, &res), PAY_R_OK);
    check_conserved(e, 1700);
    env_free(e);
}

static void test_pin(void **state)
{
    (void)state;
    struct env *e = env_new(SPSIM_BANK);
    struct pay_msg res;
    add_card(e, PAN1, "1234", 10000);
    assert_int_equal(pay1(e, "a", PAN1, "1111", 100, 1, &res), PAY_R_WRONG_PIN);
    assert_int_equal(res.pin_tries, 2);
    assert_int_equal(card_field(e, PAN1, "pin_tries"), 2);
    assert_int_equal(pay1(e, "b", PAN1, "1234", 100, 2, &res), PAY_R_OK); /* resets */
    assert_int_equal(card_field(e, PAN1, "pin_tries"), 3);
    assert_int_equal(pay1(e, "c", PAN1, "0000", 100, 3, &res), PAY_R_WRONG_PIN);
    assert_int_equal(pay1(e, "d", PAN1, "12345", 100, 4, &res), PAY_R_WRONG_PIN);
    assert_int_equal(res.pin_tries, 1);
    assert_int_equal(pay1(e, "e", PAN1, "9999", 100, 5, &res), PAY_R_PIN_BLOCKED);
    assert_int_equal(res.pin_tries, 0);
    assert_int_equal(pay1(e, "f", PAN1, "1234", 100, 6, &res), PAY_R_PIN_BLOCKED);
    assert_int_equal(card_field(e, PAN1, "balance"), 9900);
    check_conserved(e, 100);
    env_free(e);
}

static void test_cryptogram(void **state)
{
    (void)state;
    struct env *e = env_new(SPSIM_BANK);
    struct pay_msg m, res;
    add_card(e, PAN1, "1234", 10000);
    payment(e, &m, "x-1", PAN1, "1234", 100, 5);
    m.ac[0] ^= 1;
    assert_int_equal(send_msg(e, "/spsim/v1/payments", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_BAD_CRYPTOGRAM);
    /* a genuine AC for another amount than the one asked */
    payment(e, &m, "x-2", PAN1, "1234", 100, 5);
    m.amount = 9000;
    assert_int_equal(send_msg(e, "/spsim/v1/payments", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_BAD_CRYPTOGRAM);
    assert_int_equal(pay1(e, "x-3", PAN1, "1234", 100, 5, &res), PAY_R_OK);
    /* the card's ATC 5 again: a replayed cryptogram */
    assert_int_equal(pay1(e, "x-4", PAN1, "1234", 100, 5, &res), PAY_R_REPLAY);
    assert_int_equal(pay1(e, "x-5", PAN1, "1234", 100, 4, &res), PAY_R_REPLAY);
    assert_int_equal(card_field(e, PAN1, "pin_tries"), 3); /* untouched by those */
    check_conserved(e, 100);
    env_free(e);
}

static void expect_error(struct env *e, const char *path, const char *body, long status,
                         const char *code, const char *field)
{
    struct net_client_resp r;
    long st = post(e, path, body, &r);
    if (st != status || (code != NULL && strcmp(r.error_code, code) != 0)
        || (field != NULL && strcmp(r.error_field, field) != 0)) {
        print_error("%s -> %ld %s %s (%s)\n", body, st, r.error_code, r.error_field,
                    r.error_message);
        fail();
    }
    net_client_resp_clear(&r);
}

static void test_refused(void **state)
{
    (void)state;
    struct env *e = env_new(SPSIM_BANK);
    struct pay_msg m, res, first;
    struct net_client_resp r1, r2;
    uint8_t other_priv[32], other_pub[65];
    add_card(e, PAN1, "1234", 10000);
    assert_int_equal(ec_p256_keygen(other_priv, other_pub), OT_OK);

    /* the same request twice (a retry after a cut): one debit, one answer */
    payment(e, &m, "r-1", PAN1, "1234", 300, 1);
    char *text = signed_text(e, &m);
    assert_int_equal(post(e, "/spsim/v1/payments", text, &r1), 200);
    assert_int_equal(post(e, "/spsim/v1/payments", text, &r2), 200);
    assert_string_equal(r1.body, r2.body);
    net_client_resp_clear(&r1);
    net_client_resp_clear(&r2);
    assert_int_equal(card_field(e, PAN1, "balance"), 9700);
    check_conserved(e, 300);
    first = m;

    /* the same id with another body */
    struct pay_msg m2 = first;
    m2.amount = 301;
    char *t2 = signed_text(e, &m2);
    expect_error(e, "/spsim/v1/payments", t2, 422, NULL, "id");
    free(t2);
    /* a new id with a nonce seen before, or an old sequence number, or stale */
    m2 = first;
    snprintf(m2.id, sizeof m2.id, "r-2");
    m2.seq = ++e->seq;
    t2 = signed_text(e, &m2);
    expect_error(e, "/spsim/v1/payments", t2, 409, "replay", "nonce");
    free(t2);
    payment(e, &m2, "r-3", PAN1, "1234", 300, 2);
    m2.seq = 1;
    t2 = signed_text(e, &m2);
    expect_error(e, "/spsim/v1/payments", t2, 409, "replay", "seq");
    free(t2);
    payment(e, &m2, "r-4", PAN1, "1234", 300, 2);
    m2.ts -= 600000;
    t2 = signed_text(e, &m2);
    expect_error(e, "/spsim/v1/payments", t2, 409, "replay", "ts");
    free(t2);

    /* forged: unsigned, signed by someone else, changed after signing */
    payment(e, &m2, "f-1", PAN1, "1234", 300, 3);
    char *plain = NULL;
    size_t pn = 0;
    assert_int_equal(pay_msg_encode(&m2, &plain, &pn), OT_OK);
    expect_error(e, "/spsim/v1/payments", plain, 401, "unsigned", "sig");
    free(plain);
    assert_int_equal(pay_msg_sign(&m2, "pay", other_priv, other_pub), OT_OK);
    assert_int_equal(pay_msg_encode(&m2, &plain, &pn), OT_OK);
    expect_error(e, "/spsim/v1/payments", plain, 401, "bad_signature", "sig");
    free(plain);
    t2 = signed_text(e, &m2);
    char *at = strstr(t2, "\"amount\":300");
    assert_non_null(at);
    at[10] = '9'; /* 390 */
    expect_error(e, "/spsim/v1/payments", t2, 401, "bad_signature", "sig");
    free(t2);

    /* malformed, another SP, another route's message */
    expect_error(e, "/spsim/v1/payments", "{\"v\":1", 400, "invalid_field", NULL);
    expect_error(e, "/spsim/v1/payments", "{\"v\":1,\"type\":\"payment\",\"id\":\"x\"}", 400,
                 "invalid_field", "client");
    payment(e, &m2, "o-1", PAN1, "1234", 300, 3);
    snprintf(m2.sp, sizeof m2.sp, "bank-b");
    t2 = signed_text(e, &m2);
    expect_error(e, "/spsim/v1/payments", t2, 404, NULL, "sp");
    free(t2);
    payment(e, &m2, "o-2", PAN1, "1234", 300, 3);
    t2 = signed_text(e, &m2);
    expect_error(e, "/spsim/v1/topups", t2, 400, NULL, "type");
    free(t2);

    /* none of that changed the ledger; the original still replays */
    assert_int_equal(card_field(e, PAN1, "balance"), 9700);
    assert_int_equal(card_field(e, PAN1, "pin_tries"), 3);
    check_conserved(e, 300);
    assert_int_equal(post(e, "/spsim/v1/payments", text, &r1), 200);
    assert_int_equal(pay_msg_parse(r1.body, r1.body_len, &res, NULL), OT_OK);
    assert_int_equal(res.reason, PAY_R_OK);
    net_client_resp_clear(&r1);
    free(text);
    env_free(e);
}

static void topup_req(struct env *e, struct pay_msg *m, const char *id, int64_t amount,
                      int64_t counter, int64_t balance)
{
    uint8_t pid[8];
    testutil_unhex(PURSE, pid, sizeof pid);
    fill_req(e, m, PAY_MSG_TOPUP_AUTHORISE, id);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_PURSE_ID, pid, 8), OT_OK);
    pay_msg_set_int(m, PAY_F_AMOUNT, amount);
    pay_msg_set_int(m, PAY_F_COUNTER, counter);
    pay_msg_set_int(m, PAY_F_BALANCE, balance);
}

static void confirm_req(struct env *e, struct pay_msg *m, const char *id, int64_t counter,
                        int64_t balance, bool proof)
{
    uint8_t pid[8], imk[16], k[16], mac[8];
    testutil_unhex(PURSE, pid, sizeof pid);
    fill_req(e, m, PAY_MSG_TOPUP_CONFIRM, id);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_PURSE_ID, pid, 8), OT_OK);
    pay_msg_set_int(m, PAY_F_COUNTER, counter);
    pay_msg_set_int(m, PAY_F_BALANCE, balance);
    if (proof) {
        testutil_unhex(IMK, imk, sizeof imk);
        assert_int_equal(paycard_derive(imk, 16, PAYCARD_DC_TRANSIT, pid, 8, k), OT_OK);
        assert_int_equal(paycard_transit_mac(k, PAYCARD_TAG_PROOF, (uint32_t)balance,
                                             (uint32_t)counter, pid, mac),
                         OT_OK);
        assert_int_equal(pay_msg_set_bytes(m, PAY_F_MAC, mac, 8), OT_OK);
    }
}

static void test_topup(void **state)
{
    (void)state;
    struct env *e = env_new(SPSIM_TRANSIT);
    struct pay_msg m, res, auth;
    struct net_client_resp r;
    uint8_t pid[8], imk[16], k[16], mac[8];
    testutil_unhex(PURSE, pid, sizeof pid);
    testutil_unhex(IMK, imk, sizeof imk);
    assert_int_equal(paycard_derive(imk, 16, PAYCARD_DC_TRANSIT, pid, 8, k), OT_OK);
    assert_int_equal(post(e, "/spsim/v1/purses", "{\"purse_id\":\"" PURSE "\",\"funds\":5000}", &r),
                     201);
    net_client_resp_clear(&r);
    check_conserved(e, 0);

    /* authorise 5.00: the credit command for counter 1 */
    topup_req(e, &m, "t-1", 500, 0, 1000);
    assert_int_equal(send_msg(e, "/spsim/v1/topups", &m, &auth, NULL), 200);
    assert_int_equal(auth.reason, PAY_R_OK);
    assert_int_equal(auth.counter, 1);
    assert_int_equal(paycard_transit_mac(k, PAYCARD_TAG_CREDIT, 500, 1, pid, mac), OT_OK);
    assert_memory_equal(auth.mac, mac, 8);
    check_conserved(e, 0);
    json_t *j = get_json(e, "/spsim/v1/purses/" PURSE);
    assert_int_equal(jint(j, "funds"), 4500);
    assert_int_equal(jint(j, "pending_amount"), 500);
    json_free(j);

    /* interrupted before the card took it: asking again gives the same command */
    topup_req(e, &m, "t-2", 500, 0, 1000);
    assert_int_equal(send_msg(e, "/spsim/v1/topups", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_OK);
    assert_int_equal(res.counter, 1);
    assert_memory_equal(res.mac, auth.mac, 8);
    topup_req(e, &m, "t-3", 700, 0, 1000); /* another amount while one is pending */
    assert_int_equal(send_msg(e, "/spsim/v1/topups", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_CONFLICT);
    /* "not credited": the card's counter is still 0; it stays pending */
    confirm_req(e, &m, "c-1", 0, 1000, false);
    assert_int_equal(send_msg(e, "/spsim/v1/topups/confirm", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_NOT_CREDITED);
    check_conserved(e, 0);
    /* a proof that does not verify */
    confirm_req(e, &m, "c-2", 1, 1500, true);
    m.mac[0] ^= 1;
    assert_int_equal(send_msg(e, "/spsim/v1/topups/confirm", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_BAD_PROOF);
    check_conserved(e, 0);
    /* the card's proof: cleared */
    confirm_req(e, &m, "c-3", 1, 1500, true);
    assert_int_equal(send_msg(e, "/spsim/v1/topups/confirm", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_OK);
    check_conserved(e, 500);
    j = get_json(e, "/spsim/v1/purses/" PURSE);
    assert_int_equal(jint(j, "counter"), 1);
    assert_int_equal(jint(j, "pending_amount"), 0);
    json_free(j);

    /* second top-up, confirmed without proof by a counter past it (the proof
     * was lost with the client): only that command can have moved it */
    topup_req(e, &m, "t-4", 1000, 1, 1500);
    assert_int_equal(send_msg(e, "/spsim/v1/topups", &m, &auth, NULL), 200);
    assert_int_equal(auth.counter, 2);
    check_conserved(e, 500);
    confirm_req(e, &m, "c-4", 2, 2500, false);
    assert_int_equal(send_msg(e, "/spsim/v1/topups/confirm", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_OK);
    check_conserved(e, 1500);
    /* nothing pending, a counter going back, over the limit, no funds */
    confirm_req(e, &m, "c-5", 2, 2500, true);
    assert_int_equal(send_msg(e, "/spsim/v1/topups/confirm", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_CONFLICT);
    topup_req(e, &m, "t-5", 100, 1, 2500);
    assert_int_equal(send_msg(e, "/spsim/v1/topups", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_CONFLICT);
    topup_req(e, &m, "t-6", 1000, 2, 99500);
    assert_int_equal(send_msg(e, "/spsim/v1/topups", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_LIMIT);
    topup_req(e, &m, "t-7", 3600, 2, 2500);
    assert_int_equal(send_msg(e, "/spsim/v1/topups", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_INSUFFICIENT_FUNDS);
    check_conserved(e, 1500);
    /* a payment to the transit back end */
    payment(e, &m, "p-1", PAN1, "1234", 100, 1);
    char *t = signed_text(e, &m);
    expect_error(e, "/spsim/v1/payments", t, 404, "wrong_back_end", "type");
    free(t);
    env_free(e);
}

static int64_t nonce_rows(struct env *e)
{
    char url[128];
    struct db *db = NULL;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t n = -1;
    snprintf(url, sizeof url, "sqlite:%s/spsim.db", e->dir);
    assert_int_equal(db_open(url, NULL, &db), OT_OK);
    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_prepare(c, "SELECT COUNT(*) FROM spsim_nonces", &st), OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    assert_int_equal(db_col_int64(st, 0, &n), OT_OK);
    db_reset(st);
    db_release(c);
    db_close(db);
    return n;
}

/* Nonces are dropped once no fresh request can carry them (twice the
 * window); a replay that old is refused by its timestamp anyway. */
static void test_nonce_purge(void **state)
{
    (void)state;
    struct env *e = env_new(SPSIM_BANK);
    struct pay_msg m;
    struct spsim_ans ans;
    int64_t t0 = now_ms(), w = SPSIM_WINDOW_DEFAULT_MS;
    add_card(e, PAN1, "1234", 10000);
    payment(e, &m, "n-1", PAN1, "1234", 100, 1);
    char *old = signed_text(e, &m);
    spsim_handle(e->sp, PAY_MSG_PAYMENT, (const uint8_t *)old, strlen(old), t0, &ans);
    assert_int_equal(ans.err, OT_OK);
    free(ans.body);
    assert_int_equal(nonce_rows(e), 1);
    /* within twice the window it stays */
    payment(e, &m, "n-2", PAN1, "1234", 100, 2);
    m.ts = t0 + 2 * w;
    char *t = signed_text(e, &m);
    spsim_handle(e->sp, PAY_MSG_PAYMENT, (const uint8_t *)t, strlen(t), t0 + 2 * w, &ans);
    assert_int_equal(ans.err, OT_OK);
    free(ans.body);
    free(t);
    assert_int_equal(nonce_rows(e), 2);
    /* past it the first one goes */
    payment(e, &m, "n-3", PAN1, "1234", 100, 3);
    m.ts = t0 + 2 * w + 1;
    t = signed_text(e, &m);
    spsim_handle(e->sp, PAY_MSG_PAYMENT, (const uint8_t *)t, strlen(t), t0 + 2 * w + 1, &ans);
    assert_int_equal(ans.err, OT_OK);
    free(ans.body);
    free(t);
    assert_int_equal(nonce_rows(e), 2);
    spsim_handle(e->sp, PAY_MSG_PAYMENT, (const uint8_t *)old, strlen(old), t0 + 2 * w + 1, &ans);
    assert_int_equal(ans.err, OT_E_CONFLICT);
    assert_string_equal(ans.field, "ts");
    assert_null(ans.body);
    free(old);
    check_conserved(e, 300);
    env_free(e);
}

/* A top-up cut at each point of figure 4 ends consistent: the back end
 * restarted after the authorisation, the answer lost (the same request sent
 * again), the client restarted and asking afresh, the card's answer lost
 * (confirmed by its counter). At every step initial = funds + pending +
 * cleared, and the card is credited once. */
static void test_topup_interrupted(void **state)
{
    (void)state;
    struct env *e = env_new(SPSIM_TRANSIT);
    struct pay_msg m, auth, res;
    struct net_client_resp r1, r2;
    uint8_t pid[8];
    testutil_unhex(PURSE, pid, sizeof pid);
    assert_int_equal(spsim_add_purse(e->sp, pid, 1000), OT_OK);
    /* authorised, then the answer is lost: the same request again */
    topup_req(e, &m, "i-1", 400, 0, 0);
    char *text = signed_text(e, &m);
    assert_int_equal(post(e, "/spsim/v1/topups", text, &r1), 200);
    check_conserved(e, 0);
    /* the back end restarts */
    env_close(e);
    env_open(e);
    assert_int_equal(post(e, "/spsim/v1/topups", text, &r2), 200);
    assert_string_equal(r1.body, r2.body);
    assert_int_equal(pay_msg_parse(r2.body, r2.body_len, &auth, NULL), OT_OK);
    net_client_resp_clear(&r1);
    net_client_resp_clear(&r2);
    free(text);
    check_conserved(e, 0);
    /* the client restarts and asks afresh (new id): the same command */
    topup_req(e, &m, "i-2", 400, 0, 0);
    assert_int_equal(send_msg(e, "/spsim/v1/topups", &m, &res, NULL), 200);
    assert_int_equal(res.counter, auth.counter);
    assert_memory_equal(res.mac, auth.mac, 8);
    check_conserved(e, 0);
    /* the card took it but its answer was lost: confirmed by the counter */
    confirm_req(e, &m, "i-3", 1, 400, false);
    assert_int_equal(send_msg(e, "/spsim/v1/topups/confirm", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_OK);
    check_conserved(e, 400);
    /* a late duplicate of the confirmation changes nothing */
    confirm_req(e, &m, "i-4", 1, 400, false);
    assert_int_equal(send_msg(e, "/spsim/v1/topups/confirm", &m, &res, NULL), 200);
    assert_int_equal(res.reason, PAY_R_CONFLICT);
    check_conserved(e, 400);
    json_t *j = get_json(e, "/spsim/v1/purses/" PURSE);
    assert_int_equal(jint(j, "funds"), 600);
    assert_int_equal(jint(j, "counter"), 1);
    json_free(j);
    env_free(e);
}

static void test_config(void **state)
{
    (void)state;
    uint8_t imk[16] = {0}, pub[65], priv[32];
    struct spsim *s = NULL;
    struct spsim_cfg cfg;
    assert_int_equal(ec_p256_keygen(priv, pub), OT_OK);
    memset(&cfg, 0, sizeof cfg);
    cfg.name = "bank a";
    cfg.kind = SPSIM_TRANSIT;
    cfg.db_url = "sqlite::memory:";
    cfg.imk = imk;
    cfg.imk_len = 16;
    cfg.pay_pub = pub;
    assert_int_equal(spsim_new(&cfg, &s), OT_E_ARG);
    cfg.name = "metro";
    cfg.imk_len = 15;
    assert_int_equal(spsim_new(&cfg, &s), OT_E_KEY);
    cfg.imk_len = 16;
    cfg.kind = SPSIM_BANK; /* a bank needs a PIN key */
    assert_int_equal(spsim_new(&cfg, &s), OT_E_KEY);
    cfg.kind = SPSIM_TRANSIT;
    assert_int_equal(spsim_new(&cfg, &s), OT_OK);
    assert_int_equal(spsim_add_card(s, PAN1, "1234", 1, "EUR", 3), OT_E_STATE);
    uint8_t pid[8] = {1};
    assert_int_equal(spsim_add_purse(s, pid, -1), OT_E_RANGE);
    assert_int_equal(spsim_add_purse(s, pid, 1), OT_OK);
    assert_int_equal(spsim_add_purse(s, pid, 1), OT_E_CONFLICT);
    spsim_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payments),    cmocka_unit_test(test_pin),
        cmocka_unit_test(test_cryptogram),  cmocka_unit_test(test_refused),
        cmocka_unit_test(test_topup),       cmocka_unit_test(test_config),
        cmocka_unit_test(test_nonce_purge), cmocka_unit_test(test_topup_interrupted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
