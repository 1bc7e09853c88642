/* bench/pay_clients: the whole payment chain on loopback (bench/pay.sh starts tsmd
 * with pay and two spsim back ends): payterm-like clients, each with its own
 * dongle and customer card (vse cards in process, tests/pay/paycards.c),
 * enrol, load their keys, then pay (card GENERATE AC, dongle VERIFY AC and
 * PIN block, pay's checks and signature, the bank's verification and
 * clearing) as fast as they can; then one client tops a transit card up
 * (authorise, dongle check, CREDIT, proof check, confirm).
 *
 * usage: bench_pay_clients PAY_URL PAYMENTS TOPUPS TOKEN...   (one client per token)
 * Last line: payments_per_s= p99_ms= topups_per_s=
 */
#include "../tests/pay/paycards.h"
#include "core/buf.h"
#include "pay/pay_client.h"

#include <openssl/rand.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IMK_A "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"
#define IMK_T "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF"
#define MAXT  16

struct worker {
    int idx;
    const char *url;
    const char *token;
    long n;
    long topups;
    double *lat_ms;
    int64_t seq;
    char name[32];
    char pan[20];
    struct pc_card dongle, card;
    struct pay_client *pay;
    double topup_s;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void req(struct worker *w, struct pay_msg *m, enum pay_msg_type t, const char *id,
                const char *sp)
{
    struct timespec ts;
    uint8_t nonce[16];
    clock_gettime(CLOCK_REALTIME, &ts);
    pay_msg_init(m, t);
    PC_CHECK(RAND_bytes(nonce, sizeof nonce) == 1);
    PC_CHECK(pay_msg_set_str(m, PAY_F_ID, id) == OT_OK);
    PC_CHECK(pay_msg_set_str(m, PAY_F_CLIENT, w->name) == OT_OK);
    PC_CHECK(pay_msg_set_str(m, PAY_F_SP, sp) == OT_OK);
    PC_CHECK(pay_msg_set_bytes(m, PAY_F_NONCE, nonce, 16) == OT_OK);
    pay_msg_set_int(m, PAY_F_TS, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    pay_msg_set_int(m, PAY_F_SEQ, ++w->seq);
}

static void setup(struct worker *w)
{
    struct pay_client_cfg cc;
    struct pay_client_err e;
    struct pay_client_key *keys = calloc(PAY_CLIENT_KEYS_MAX, sizeof *keys);
    uint8_t pub[65];
    size_t n = 0;

    PC_CHECK(keys != NULL);
    snprintf(w->name, sizeof w->name, "bench-%d", w->idx);
    snprintf(w->pan, sizeof w->pan, "54133300890100%02d", w->idx);
    pc_dongle_new(&w->dongle, w->name);
    pc_customer_new(&w->card, w->pan, IMK_A, IMK_T);
    memset(&cc, 0, sizeof cc);
    cc.url = w->url;
    cc.token = w->token;
    PC_CHECK(pay_client_new(&cc, &w->pay) == OT_OK);
    pc_sam_pub(&w->dongle, pub);
    PC_CHECK(pay_client_enrol(w->pay, w->name, pub, &e) == OT_OK);
    PC_CHECK(pay_client_keys(w->pay, w->name, keys, PAY_CLIENT_KEYS_MAX, &n, &e) == OT_OK);
    for (size_t i = 0; i < n; i++) {
        PC_CHECK(pc_sam_load(&w->dongle, keys[i].blob, keys[i].blob_len) == 0x9000);
    }
    free(keys);
}

static void *run(void *arg)
{
    struct worker *w = arg;
    struct pay_client_err e;
    struct pay_msg m, res;
    char id[64];
    for (long i = 0; i < w->n; i++) {
        double t0 = now_s();
        snprintf(id, sizeof id, "%s-p%ld", w->name, i);
        req(w, &m, PAY_MSG_PAYMENT, id, "bank-a");
        pc_payment(&w->dongle, &w->card, "bank-a", w->pan, "1234", 1, &m);
        PC_CHECK(pay_client_send(w->pay, &m, &res, &e) == OT_OK);
        PC_CHECK(res.reason == PAY_R_OK);
        w->lat_ms[i] = (now_s() - t0) * 1000.0;
    }
    return NULL;
}

static void topups(struct worker *w)
{
    struct pay_client_err e;
    struct pay_msg m, auth, res;
    uint8_t pid[8], credit[5 + 16 + 1] = {0x80, 0x52, 0x00, 0x00, 0x10}, rq[24];
    char id[64];
    double t0 = now_s();
    pc_unhex(PC_PURSE, pid, sizeof pid);
    for (long i = 0; i < w->topups; i++) {
        snprintf(id, sizeof id, "%s-t%ld", w->name, i);
        req(w, &m, PAY_MSG_TOPUP_AUTHORISE, id, "metro");
        PC_CHECK(pay_msg_set_bytes(&m, PAY_F_PURSE_ID, pid, 8) == OT_OK);
        PC_CHECK(pc_select(&w->card, PC_PURSEA) == 0x9000);
        PC_CHECK(pc_tx(&w->card, "805C010010") == 0x9000);
        pay_msg_set_int(&m, PAY_F_BALANCE, ot_get_u32be(w->card.resp));
        pay_msg_set_int(&m, PAY_F_COUNTER, ot_get_u32be(w->card.resp + 4));
        pay_msg_set_int(&m, PAY_F_AMOUNT, 1);
        PC_CHECK(pay_client_send(w->pay, &m, &auth, &e) == OT_OK && auth.reason == PAY_R_OK);
        memcpy(rq, pid, 8);
        ot_put_u32be(rq + 8, (uint32_t)auth.amount);
        ot_put_u32be(rq + 12, (uint32_t)auth.counter);
        memcpy(rq + 16, auth.mac, 8);
        PC_CHECK(pc_sam(&w->dongle, 0xA4, 0, "metro", rq, 24) == 0x9000);
        memcpy(credit + 5, rq + 8, 16);
        PC_CHECK(pc_select(&w->card, PC_PURSEA) == 0x9000);
        PC_CHECK(pc_txb(&w->card, credit, sizeof credit) == 0x9000);
        memcpy(rq + 8, w->card.resp, 16);
        PC_CHECK(pc_sam(&w->dongle, 0xA4, 1, "metro", rq, 24) == 0x9000);
        snprintf(id, sizeof id, "%s-c%ld", w->name, i);
        req(w, &m, PAY_MSG_TOPUP_CONFIRM, id, "metro");
        PC_CHECK(pay_msg_set_bytes(&m, PAY_F_PURSE_ID, pid, 8) == OT_OK);
        pay_msg_set_int(&m, PAY_F_BALANCE, ot_get_u32be(rq + 8));
        pay_msg_set_int(&m, PAY_F_COUNTER, ot_get_u32be(rq + 12));
        PC_CHECK(pay_msg_set_bytes(&m, PAY_F_MAC, rq + 16, 8) == OT_OK);
        PC_CHECK(pay_client_send(w->pay, &m, &res, &e) == OT_OK && res.reason == PAY_R_OK);
    }
    w->topup_s = now_s() - t0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    struct worker w[MAXT];
    pthread_t th[MAXT];
    int nt = argc - 4;
    long total, per;
    double *all;
    double t0, el;

    if (argc < 5 || nt > MAXT) {
        fprintf(stderr, "usage: bench_pay_clients PAY_URL PAYMENTS TOPUPS TOKEN...\n");
        return 2;
    }
    total = atol(argv[2]);
    per = total / nt;
    all = calloc((size_t)(per * nt) + 1, sizeof *all);
    PC_CHECK(per > 0 && all != NULL);
    memset(w, 0, sizeof w);
    for (int i = 0; i < nt; i++) {
        w[i].idx = i;
        w[i].url = argv[1];
        w[i].token = argv[4 + i];
        w[i].n = per;
        w[i].lat_ms = all + per * i;
        setup(&w[i]);
    }
    t0 = now_s();
    for (int i = 0; i < nt; i++) {
        PC_CHECK(pthread_create(&th[i], NULL, run, &w[i]) == 0);
    }
    for (int i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
    }
    el = now_s() - t0;
    w[0].topups = atol(argv[3]);
    topups(&w[0]);
    qsort(all, (size_t)(per * nt), sizeof *all, cmp);
    printf("clients=%d payments=%ld topups=%ld\n", nt, per * nt, w[0].topups);
    printf("payments_per_s=%.0f p99_ms=%.2f topups_per_s=%.0f\n", (double)(per * nt) / el,
           all[(size_t)((double)(per * nt) * 0.99)], (double)w[0].topups / w[0].topup_s);
    for (int i = 0; i < nt; i++) {
        pc_card_free(&w[i].dongle);
        pc_card_free(&w[i].card);
        pay_client_free(w[i].pay);
    }
    free(all);
    return 0;
}
