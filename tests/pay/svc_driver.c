/* The client side of tests/pay/svc_test.sh: a payment client with its
 * dongle (a vse card with the sam applet, in process) and customers' cards
 * (vse cards, in process) against the real tsmd with pay and three real
 * spsim back ends over loopback.
 *
 * usage: svc_driver PAY_URL OP_TOKEN DEV_TOKEN DEV2_TOKEN BANK_A_URL BANK_B_URL METRO_URL
 *        svc_driver derive IMK_HEX DC ID_HEX   (a card key, for card profiles)
 *
 * Exits 0 and prints "svc_driver: ok" when every check holds; else prints
 * the first failed check and exits 1. */
#include "core/buf.h"
#include "core/hex.h"
#include "crypto/ecwrap.h"
#include "crypto/paycard.h"
#include "net/client.h"
#include "net/json.h"
#include "pay/msg.h"
#include "paycards.h"

#include <openssl/rand.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(x) PC_CHECK(x)

#define IMK_A "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"
#define IMK_B "B0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF"
#define IMK_T "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF"
#define PAN_A "5413330089010434"
#define PAN_B "4000123456789010"

static struct net_client *g_op, *g_dev, *g_dev2, *g_bank_a, *g_bank_b, *g_metro;
static int64_t g_seq;

static uint16_t sam_load(struct pc_card *d, const char *blob_hex)
{
    uint8_t blob[ECWRAP_MAX_BLOB];
    return pc_sam_load(d, blob, pc_unhex(blob_hex, blob, sizeof blob));
}

/* One request; the status, the answer in *r (cleared by the caller). */
static long call(struct net_client *c, const char *method, const char *path, const char *body,
                 const char *idem, struct net_client_resp *r)
{
    char h[160];
    const char *hdrs[2] = {NULL, NULL};
    memset(r, 0, sizeof *r);
    if (idem != NULL) {
        snprintf(h, sizeof h, "Idempotency-Key: %s", idem);
        hdrs[0] = h;
    }
    CHECK(net_client_request_raw(c, method, path, body != NULL ? "application/json" : NULL, body,
                                 body != NULL ? strlen(body) : 0, hdrs, r)
          == OT_OK);
    return r->status;
}

/* status and error field of one request; the answer dropped. */
static long call_err(struct net_client *c, const char *method, const char *path, const char *body,
                     const char *field)
{
    struct net_client_resp r;
    long st = call(c, method, path, body, NULL, &r);
    if (field != NULL && strcmp(r.error_field, field) != 0) {
        fprintf(stderr, "field: want %s got %s (%ld %s)\n", field, r.error_field, st, r.body);
        st = -1;
    }
    net_client_resp_clear(&r);
    return st;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void req_hdr(struct pay_msg *m, enum pay_msg_type t, const char *id, const char *client,
                    const char *sp)
{
    uint8_t nonce[16];
    pay_msg_init(m, t);
    CHECK(RAND_bytes(nonce, sizeof nonce) == 1);
    CHECK(pay_msg_set_str(m, PAY_F_ID, id) == OT_OK);
    CHECK(pay_msg_set_str(m, PAY_F_CLIENT, client) == OT_OK);
    CHECK(pay_msg_set_str(m, PAY_F_SP, sp) == OT_OK);
    CHECK(pay_msg_set_bytes(m, PAY_F_NONCE, nonce, 16) == OT_OK);
    pay_msg_set_int(m, PAY_F_TS, now_ms());
    pay_msg_set_int(m, PAY_F_SEQ, ++g_seq);
}

/* Posts m to pay; status; *res the verified-shape answer when 200. */
static long send_msg(struct net_client *c, const char *path, const struct pay_msg *m,
                     struct pay_msg *res, char *field, size_t fcap)
{
    char *s = NULL;
    size_t n = 0;
    struct net_client_resp r;
    long st;
    CHECK(pay_msg_encode(m, &s, &n) == OT_OK);
    st = call(c, "POST", path, s, NULL, &r);
    free(s);
    if (st == 200 && res != NULL) {
        CHECK(pay_msg_parse(r.body, r.body_len, res, NULL) == OT_OK);
        CHECK((res->present & PAY_BIT(PAY_F_SIG)) != 0);
    }
    if (field != NULL) {
        snprintf(field, fcap, "%s", r.error_field);
    }
    net_client_resp_clear(&r);
    return st;
}

/* A payment request built with the card and the dongle (unsigned). */
static void payment(struct pc_card *d, struct pc_card *card, const char *sp, const char *pan,
                    const char *pin, int64_t amount, const char *id, struct pay_msg *m)
{
    req_hdr(m, PAY_MSG_PAYMENT, id, "term-1", sp);
    pc_payment(d, card, sp, pan, pin, amount, m);
}

/* The back end's totals: cleared; checks initial = balance + pending + cleared. */
static int64_t cleared(struct net_client *bank)
{
    struct net_client_resp r;
    json_t *j;
    int64_t v[4];
    const char *k[4] = {"cleared", "initial", "balance", "pending"};
    CHECK(call(bank, "GET", "/spsim/v1/settlement", NULL, NULL, &r) == 200);
    CHECK(json_parse(r.body, r.body_len, 4096, &j, NULL) == OT_OK);
    for (int i = 0; i < 4; i++) {
        CHECK(json_get_int(j, k[i], 0, INT64_MAX, &v[i], NULL) == OT_OK);
    }
    json_free(j);
    net_client_resp_clear(&r);
    CHECK(v[1] == v[2] + v[3] + v[0]);
    return v[0];
}

static struct net_client *client(const char *url, const char *token)
{
    struct net_client_cfg cc;
    struct net_client *c = NULL;
    memset(&cc, 0, sizeof cc);
    cc.base_url = url;
    cc.token = token;
    CHECK(net_client_new(&cc, &c) == OT_OK);
    return c;
}

/* The client's key delivery: loads every key into the dongle; returns the
 * number loaded; *revoked the number of revoked (SP, type) floors applied. */
static size_t load_keys(struct pc_card *d, const char *client, size_t *revoked, char *blob0,
                        size_t cap)
{
    struct net_client_resp r;
    char path[96];
    json_t *j;
    const json_t *keys, *gone;
    size_t nk = 0, ng = 0;
    snprintf(path, sizeof path, "/pay/v1/clients/%s/keys", client);
    CHECK(call(g_dev, "GET", path, NULL, NULL, &r) == 200);
    CHECK(json_parse(r.body, r.body_len, 1 << 20, &j, NULL) == OT_OK);
    CHECK(json_get_array(j, "keys", 0, 64, &keys, &nk, NULL) == OT_OK);
    CHECK(json_get_array(j, "revoked", 0, 64, &gone, &ng, NULL) == OT_OK);
    for (size_t i = 0; i < nk; i++) {
        const char *blob = NULL;
        CHECK(json_get_str(json_at(keys, i), "blob", 2, 2 * ECWRAP_MAX_BLOB, &blob, NULL) == OT_OK);
        CHECK(sam_load(d, blob) == 0x9000);
        if (i == 0 && blob0 != NULL) {
            snprintf(blob0, cap, "%s", blob);
        }
    }
    for (size_t i = 0; i < ng; i++) {
        const char *sp = NULL;
        size_t kt = 0;
        int64_t floor = 0;
        uint8_t f[4];
        static const char *const kts[] = {"emv_imk", "transit_imk", "pin"};
        CHECK(json_get_str(json_at(gone, i), "sp", 1, 32, &sp, NULL) == OT_OK);
        CHECK(json_get_enum(json_at(gone, i), "key_type", kts, 3, &kt, NULL) == OT_OK);
        CHECK(json_get_int(json_at(gone, i), "floor", 1, INT32_MAX, &floor, NULL) == OT_OK);
        ot_put_u32be(f, (uint32_t)floor);
        CHECK(pc_sam(d, 0xDA, (uint8_t)(kt + 1), sp, f, 4) == 0x9000);
    }
    json_free(j);
    net_client_resp_clear(&r);
    if (revoked != NULL) {
        *revoked = ng;
    }
    return nk;
}

static void enrol(struct pc_card *d, struct net_client *dev, const char *name, long want)
{
    struct net_client_resp r;
    char body[256], pub[131], idem[64];
    uint8_t q[65];
    pc_sam_pub(d, q);
    CHECK(hex_encode(q, 65, pub, sizeof pub) == OT_OK);
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"dongle_pub\":\"%s\"}", name, pub);
    snprintf(idem, sizeof idem, "enrol-%s-%ld", name, want);
    CHECK(call(dev, "POST", "/pay/v1/clients", body, idem, &r) == want);
    net_client_resp_clear(&r);
}

/* One top-up through pay, figure 4; returns the card's new balance. */
static int64_t topup(struct pc_card *d, struct pc_card *card, int64_t amount, const char *id)
{
    struct pay_msg m, auth, res;
    uint8_t req[64], pid[8];
    uint8_t credit[5 + 16 + 1] = {0x80, 0x52, 0x00, 0x00, 0x10};
    char idc[64];
    pc_unhex(PC_PURSE, pid, sizeof pid);
    req_hdr(&m, PAY_MSG_TOPUP_AUTHORISE, id, "term-1", "metro");
    CHECK(pay_msg_set_bytes(&m, PAY_F_PURSE_ID, pid, 8) == OT_OK);
    CHECK(pc_select(card, PC_PURSEA) == 0x9000);
    CHECK(pc_tx(card, "805C010010") == 0x9000);
    pay_msg_set_int(&m, PAY_F_BALANCE, ot_get_u32be(card->resp));
    pay_msg_set_int(&m, PAY_F_COUNTER, ot_get_u32be(card->resp + 4));
    pay_msg_set_int(&m, PAY_F_AMOUNT, amount);
    CHECK(send_msg(g_dev, "/pay/v1/topups", &m, &auth, NULL, 0) == 200);
    CHECK(auth.reason == PAY_R_OK);
    memcpy(req, pid, 8);
    ot_put_u32be(req + 8, (uint32_t)auth.amount);
    ot_put_u32be(req + 12, (uint32_t)auth.counter);
    memcpy(req + 16, auth.mac, 8);
    CHECK(pc_sam(d, 0xA4, 0, "metro", req, 24) == 0x9000);
    memcpy(credit + 5, req + 8, 16);
    CHECK(pc_select(card, PC_PURSEA) == 0x9000);
    CHECK(pc_txb(card, credit, sizeof credit) == 0x9000);
    memcpy(req + 8, card->resp, 16);
    CHECK(pc_sam(d, 0xA4, 1, "metro", req, 24) == 0x9000);
    snprintf(idc, sizeof idc, "%s:confirm", id);
    req_hdr(&m, PAY_MSG_TOPUP_CONFIRM, idc, "term-1", "metro");
    CHECK(pay_msg_set_bytes(&m, PAY_F_PURSE_ID, pid, 8) == OT_OK);
    pay_msg_set_int(&m, PAY_F_BALANCE, ot_get_u32be(req + 8));
    pay_msg_set_int(&m, PAY_F_COUNTER, ot_get_u32be(req + 12));
    CHECK(pay_msg_set_bytes(&m, PAY_F_MAC, req + 16, 8) == OT_OK);
    CHECK(send_msg(g_dev, "/pay/v1/topups/confirm", &m, &res, NULL, 0) == 200);
    CHECK(res.reason == PAY_R_OK);
    return ot_get_u32be(req + 8);
}

int main(int argc, char **argv)
{
    struct pc_card dongle, dongle_b, cust_a, cust_b;
    struct pay_msg m, res, m2;
    struct net_client_resp r;
    char field[128], blob0[2 * ECWRAP_MAX_BLOB + 1], *s = NULL;
    size_t n = 0, gone = 0;

    if (argc == 5 && strcmp(argv[1], "derive") == 0) {
        /* svc_driver derive IMK_HEX DC ID_HEX: a card key (for card profiles) */
        uint8_t imk[32], id[16], k[16];
        char hex[33];
        size_t il = pc_unhex(argv[2], imk, sizeof imk);
        size_t dl = pc_unhex(argv[4], id, sizeof id);
        CHECK(paycard_derive(imk, il, (uint8_t)strtoul(argv[3], NULL, 16), id, dl, k) == OT_OK);
        CHECK(hex_encode(k, 16, hex, sizeof hex) == OT_OK);
        printf("%s\n", hex);
        return 0;
    }
    if (argc != 8) {
        fprintf(stderr, "usage: svc_driver PAY_URL OP DEV DEV2 BANK_A BANK_B METRO\n");
        return 2;
    }
    g_op = client(argv[1], argv[2]);
    g_dev = client(argv[1], argv[3]);
    g_dev2 = client(argv[1], argv[4]);
    g_bank_a = client(argv[5], NULL);
    g_bank_b = client(argv[6], NULL);
    g_metro = client(argv[7], NULL);

    /* dongle id "term-1" (DF10); a second dongle with the same id, its own key pair */
    pc_dongle_new(&dongle, "term-1");
    pc_dongle_new(&dongle_b, "term-1");
    pc_customer_new(&cust_a, PAN_A, IMK_A, IMK_T);
    pc_customer_new(&cust_b, PAN_B, IMK_B, NULL);

    /* not enrolled: no keys, no payments */
    CHECK(call_err(g_dev, "GET", "/pay/v1/clients/term-1/keys", NULL, NULL) == 404);
    enrol(&dongle, g_dev, "term-1", 201);
    enrol(&dongle, g_dev, "term-9", 409); /* one client per device principal */
    CHECK(call_err(g_dev2, "GET", "/pay/v1/clients/term-1/keys", NULL, NULL) == 404);
    CHECK(call_err(g_dev2, "GET", "/pay/v1/clients/term-1", NULL, NULL) == 404);
    CHECK(call(g_dev2, "POST", "/pay/v1/clients", "{\"name\":\"x\",\"dongle_pub\":\"04\"}",
               "bad-pub", &r)
          == 400);
    CHECK(strcmp(r.error_field, "dongle_pub") == 0);
    net_client_resp_clear(&r);

    /* key delivery: wrapped for this dongle alone */
    CHECK(load_keys(&dongle, "term-1", &gone, blob0, sizeof blob0) == 5);
    CHECK(gone == 0);
    CHECK(sam_load(&dongle_b, blob0) == 0x6982);  /* another dongle's key pair */
    CHECK(strstr(blob0, "7465726D2D31") != NULL); /* bound to dongle id term-1 */

    /* two banks' cards: each clears at its own bank */
    payment(&dongle, &cust_a, "bank-a", PAN_A, "1234", 1250, "p-1", &m);
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m, &res, NULL, 0) == 200);
    CHECK(res.reason == PAY_R_OK && res.status == PAY_APPROVED);
    payment(&dongle, &cust_b, "bank-b", PAN_B, "4321", 700, "p-2", &m2);
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m2, &res, NULL, 0) == 200);
    CHECK(res.reason == PAY_R_OK);
    CHECK(cleared(g_bank_a) == 1250);
    CHECK(cleared(g_bank_b) == 700);

    /* the same request again: the first answer, no second debit */
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m, &res, NULL, 0) == 200);
    CHECK(res.reason == PAY_R_OK);
    CHECK(cleared(g_bank_a) == 1250);
    /* replays: the nonce again under another id, an old seq, a stale ts */
    CHECK(pay_msg_set_str(&m, PAY_F_ID, "p-1b") == OT_OK);
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m, NULL, field, sizeof field) == 409);
    CHECK(strcmp(field, "nonce") == 0);
    {
        uint8_t nonce[16];
        CHECK(RAND_bytes(nonce, 16) == 1);
        CHECK(pay_msg_set_bytes(&m, PAY_F_NONCE, nonce, 16) == OT_OK);
        CHECK(send_msg(g_dev, "/pay/v1/payments", &m, NULL, field, sizeof field) == 409);
        CHECK(strcmp(field, "seq") == 0);
        pay_msg_set_int(&m, PAY_F_SEQ, ++g_seq);
        pay_msg_set_int(&m, PAY_F_TS, now_ms() - 3600 * 1000);
        CHECK(send_msg(g_dev, "/pay/v1/payments", &m, NULL, field, sizeof field) == 409);
        CHECK(strcmp(field, "ts") == 0);
        /* the same id with another body */
        pay_msg_set_int(&m, PAY_F_TS, now_ms());
        CHECK(pay_msg_set_str(&m, PAY_F_ID, "p-1") == OT_OK);
        CHECK(send_msg(g_dev, "/pay/v1/payments", &m, NULL, field, sizeof field) == 422);
        CHECK(strcmp(field, "id") == 0);
    }
    CHECK(cleared(g_bank_a) == 1250);

    /* malformed and forged requests: precise errors, no ledger change */
    payment(&dongle, &cust_a, "bank-a", PAN_A, "1234", 100, "p-4", &m);
    CHECK(pay_msg_encode(&m, &s, &n) == OT_OK);
    {
        char bad[PAY_MSG_MAX + 64];
        snprintf(bad, sizeof bad, "%.*s,\"extra\":1}", (int)n - 1, s);
        CHECK(call_err(g_dev, "POST", "/pay/v1/payments", bad, "extra") == 400);
        CHECK(call_err(g_dev, "POST", "/pay/v1/payments", "{\"v\":1", "") == 400);
        CHECK(call_err(g_dev, "POST", "/pay/v1/topups", s, "type") == 400);
        CHECK(call_err(g_dev2, "POST", "/pay/v1/payments", s, NULL) == 403);
    }
    free(s);
    s = NULL;
    m2 = m;
    CHECK(pay_msg_set_str(&m2, PAY_F_CLIENT, "term-2") == OT_OK);
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m2, NULL, field, sizeof field) == 403);
    CHECK(strcmp(field, "client") == 0);
    m2 = m;
    CHECK(pay_msg_set_str(&m2, PAY_F_SP, "bank-z") == OT_OK);
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m2, NULL, field, sizeof field) == 404);
    CHECK(strcmp(field, "sp") == 0);
    m2 = m;
    CHECK(pay_msg_set_str(&m2, PAY_F_SP, "metro") == OT_OK);
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m2, NULL, field, sizeof field) == 400);
    CHECK(strcmp(field, "sp") == 0);
    {
        uint8_t kp[32], kq[65];
        m2 = m;
        CHECK(ec_p256_keygen(kp, kq) == OT_OK);
        CHECK(pay_msg_sign(&m2, "pay", kp, kq) == OT_OK); /* a client posing as pay */
        CHECK(send_msg(g_dev, "/pay/v1/payments", &m2, NULL, field, sizeof field) == 400);
        CHECK(strcmp(field, "signer") == 0);
    }
    /* a forged cryptogram reaches the bank and is declined there */
    m2 = m;
    m2.ac[0] ^= 1;
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m2, &res, NULL, 0) == 200);
    CHECK(res.reason == PAY_R_BAD_CRYPTOGRAM);
    CHECK(cleared(g_bank_a) == 1250);
    /* a wrong PIN: the bank refuses and counts it */
    payment(&dongle, &cust_b, "bank-b", PAN_B, "0000", 100, "p-5", &m);
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m, &res, NULL, 0) == 200);
    CHECK(res.reason == PAY_R_WRONG_PIN && res.pin_tries == 2);
    CHECK(cleared(g_bank_b) == 700);

    /* transit top-up through pay */
    CHECK(topup(&dongle, &cust_a, 2000, "t-1") == 3000);
    CHECK(cleared(g_metro) == 2000);

    /* rotation: bank-a's new master key version; the dongle takes it and
     * then refuses the old blob */
    CHECK(call(g_op, "POST", "/pay/v1/sps/bank-a/keys",
               "{\"key_type\":\"emv_imk\",\"key\":\"" IMK_A "\"}", "rot-1", &r)
          == 201);
    net_client_resp_clear(&r);
    {
        uint8_t f[4];
        CHECK(load_keys(&dongle, "term-1", NULL, NULL, 0) == 5);
        ot_put_u32be(f, 2);
        CHECK(pc_sam(&dongle, 0xDA, 1, "bank-a", f, 4) == 0x9000);
        CHECK(sam_load(&dongle, blob0) == 0x6985); /* version 1 is below the floor */
    }
    payment(&dongle, &cust_a, "bank-a", PAN_A, "1234", 50, "p-6", &m);
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m, &res, NULL, 0) == 200);
    CHECK(res.reason == PAY_R_OK);
    CHECK(cleared(g_bank_a) == 1300);

    /* SP revocation: its keys are erased from the dongle, no more forwarding */
    CHECK(call(g_op, "POST", "/pay/v1/sps/metro/revoke", NULL, "rev-metro", &r) == 200);
    net_client_resp_clear(&r);
    CHECK(load_keys(&dongle, "term-1", &gone, NULL, 0) == 4);
    CHECK(gone == 1);
    {
        uint8_t req[24] = {0};
        CHECK(pc_sam(&dongle, 0xA4, 0, "metro", req, 24) == 0x6A88);
    }
    req_hdr(&m, PAY_MSG_TOPUP_AUTHORISE, "t-2", "term-1", "metro");
    {
        uint8_t pid[8];
        pc_unhex(PC_PURSE, pid, sizeof pid);
        CHECK(pay_msg_set_bytes(&m, PAY_F_PURSE_ID, pid, 8) == OT_OK);
    }
    pay_msg_set_int(&m, PAY_F_BALANCE, 3000);
    pay_msg_set_int(&m, PAY_F_COUNTER, 1);
    pay_msg_set_int(&m, PAY_F_AMOUNT, 100);
    CHECK(send_msg(g_dev, "/pay/v1/topups", &m, NULL, field, sizeof field) == 403);
    CHECK(strcmp(field, "sp") == 0);
    CHECK(cleared(g_metro) == 2000);

    /* client revocation: nothing more */
    CHECK(call(g_op, "POST", "/pay/v1/clients/term-1/revoke", NULL, "rev-term-1", &r) == 200);
    net_client_resp_clear(&r);
    CHECK(call_err(g_dev, "GET", "/pay/v1/clients/term-1/keys", NULL, NULL) == 403);
    payment(&dongle, &cust_a, "bank-a", PAN_A, "1234", 50, "p-7", &m);
    CHECK(send_msg(g_dev, "/pay/v1/payments", &m, NULL, NULL, 0) == 403);
    CHECK(cleared(g_bank_a) == 1300);

    pc_card_free(&dongle);
    pc_card_free(&dongle_b);
    pc_card_free(&cust_a);
    pc_card_free(&cust_b);
    net_client_free(g_op);
    net_client_free(g_dev);
    net_client_free(g_dev2);
    net_client_free(g_bank_a);
    net_client_free(g_bank_b);
    net_client_free(g_metro);
    printf("svc_driver: ok\n");
    return 0;
}
