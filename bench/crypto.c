/* SCP03 per-APDU cost against the raw AES work it needs.
 *
 * One iteration = host wraps a 32-byte command at level 33 (C-MAC + C-DEC),
 * the card unwraps it, the card wraps a 32-byte response (R-ENC + R-MAC) and
 * the host unwraps it (R-MAC check + decryption). S8, AES-128.
 *
 * The floor is the same number of AES block operations, each issued as one
 * 16-byte EVP_EncryptUpdate through one preallocated AES-128-ECB context,
 * chained in place (each block depends on the previous, as in CBC/CMAC).
 * Both are measured in the same process, interleaved run by run, after a
 * warm-up; each figure is the median over BENCH_RUNS runs.
 *
 * Last line: scp03_apdu_ns=<n> aes_floor_ns=<n> ratio=<x.xx>
 */
#include "crypto/scp03.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_RUNS       9
#define BENCH_ITERS      100000
#define BENCH_WARMUP     20000
#define BENCH_DATA       32u
#define BENCH_BLOCK      16u
#define BENCH_LEVEL      0x33u
#define BENCH_MAC_LEN    8u /* S8 */
#define BENCH_CMD_HEADER 5u /* CLA' INS P1 P2 Lc' in the MAC input */

struct bench {
    struct scp03_keyset keys;
    struct scp03_host *h;
    struct scp03_card *c;
    uint8_t cmd[4 + 1 + BENCH_DATA + 1];
    uint8_t rdata[BENCH_DATA];
};

static void die(const char *what)
{
    fprintf(stderr, "bench_crypto: %s failed\n", what);
    exit(1);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static size_t blocks(size_t n)
{
    return (n + BENCH_BLOCK - 1) / BENCH_BLOCK;
}

/* AES block operations of one iteration, step by step (see
 * docs/internals/scp03.md for the layouts):
 *   ICV: 1 block; CBC: padded length / 16; CMAC: ceil(input / 16) blocks
 *   (an empty or partial last block is still one block; subkeys are
 *   computed at key time, not per message). */
static size_t bench_block_count(void)
{
    size_t padded = (size_t)(BENCH_DATA / BENCH_BLOCK + 1) * BENCH_BLOCK;
    size_t cmac_cmd = blocks(BENCH_BLOCK + BENCH_CMD_HEADER + padded);
    size_t rmac = blocks(BENCH_BLOCK + padded + 2);
    size_t cbc = padded / BENCH_BLOCK;
    size_t host_wrap = 1 + cbc + cmac_cmd;
    size_t card_unwrap = cmac_cmd + 1 + cbc;
    size_t card_wrap = 1 + cbc + rmac;
    size_t host_unwrap = rmac + 1 + cbc;
    return host_wrap + card_unwrap + card_wrap + host_unwrap;
}

static void bench_open(struct bench *b)
{
    static const uint8_t aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
    uint8_t cmd[64], resp[64];
    size_t n = sizeof cmd, rn = sizeof resp - 2;
    uint32_t seq = 0;

    memset(b, 0, sizeof *b);
    b->keys.kvn = 0x30;
    b->keys.key_len = 16;
    for (size_t k = 0; k < 16; k++) {
        b->keys.enc[k] = (uint8_t)(0x40 + k);
        b->keys.mac[k] = (uint8_t)(0x50 + k);
        b->keys.dek[k] = (uint8_t)(0x60 + k);
    }
    struct scp03_card_cfg cfg = {.i_param = 0x70, .sd_aid = aid, .sd_aid_len = sizeof aid};
    if (scp03_host_new(&b->keys, &b->h) != OT_OK || scp03_card_new(&cfg, &b->c) != OT_OK) {
        die("session objects");
    }
    if (scp03_host_initialize_update(b->h, 0, false, NULL, cmd, &n) != OT_OK
        || scp03_card_initialize_update(b->c, &b->keys, &seq, cmd, n, resp, &rn) != OT_OK) {
        die("INITIALIZE UPDATE");
    }
    resp[rn++] = 0x90;
    resp[rn++] = 0x00;
    n = sizeof cmd;
    if (scp03_host_on_initialize_update(b->h, resp, rn) != OT_OK
        || scp03_host_external_authenticate(b->h, BENCH_LEVEL, cmd, &n) != OT_OK
        || scp03_card_external_authenticate(b->c, cmd, n) != OT_OK
        || scp03_host_on_external_authenticate(b->h, (const uint8_t *)"\x90\x00", 2) != OT_OK) {
        die("EXTERNAL AUTHENTICATE");
    }
    /* STORE DATA-like case 4 command with 32 data bytes */
    b->cmd[0] = 0x80;
    b->cmd[1] = 0xE2;
    b->cmd[2] = 0x90;
    b->cmd[3] = 0x00;
    b->cmd[4] = BENCH_DATA;
    for (size_t k = 0; k < BENCH_DATA; k++) {
        b->cmd[5 + k] = (uint8_t)k;
        b->rdata[k] = (uint8_t)(0xFF - k);
    }
    b->cmd[5 + BENCH_DATA] = 0x00;
}

/* One full exchange; returns nonzero on any failure. */
static int bench_exchange(struct bench *b)
{
    uint8_t wire[128], plain[128], rwire[128], rplain[128];
    size_t wn = sizeof wire, pn = sizeof plain, rn = sizeof rwire, rpn = sizeof rplain;

    if (scp03_host_wrap(b->h, b->cmd, sizeof b->cmd, wire, &wn) != OT_OK
        || scp03_card_unwrap(b->c, wire, wn, plain, &pn) != OT_OK
        || scp03_card_wrap(b->c, b->rdata, sizeof b->rdata, 0x9000, rwire, &rn) != OT_OK
        || scp03_host_unwrap(b->h, rwire, rn, rplain, &rpn) != OT_OK) {
        return 1;
    }
    return rpn != BENCH_DATA + 2;
}

static double run_scp03(struct bench *b, unsigned iters)
{
    double t0 = now_ns();
    for (unsigned k = 0; k < iters; k++) {
        if (bench_exchange(b) != 0) {
            die("exchange");
        }
    }
    return (now_ns() - t0) / iters;
}

static double run_floor(EVP_CIPHER_CTX *ctx, size_t nblocks, unsigned iters, uint8_t blk[16])
{
    int outl = 0;
    double t0 = now_ns();
    for (unsigned k = 0; k < iters; k++) {
        for (size_t j = 0; j < nblocks; j++) {
            if (EVP_EncryptUpdate(ctx, blk, &outl, blk, (int)BENCH_BLOCK) != 1) {
                die("EVP_EncryptUpdate");
            }
        }
    }
    return (now_ns() - t0) / iters;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    struct bench b;
    static const uint8_t key[16] = {0x2B, 0x7E, 0x15, 0x16, 0x28, 0xAE, 0xD2, 0xA6,
                                    0xAB, 0xF7, 0x15, 0x88, 0x09, 0xCF, 0x4F, 0x3C};
    uint8_t blk[16] = {0};
    double apdu[BENCH_RUNS], floor_ns[BENCH_RUNS];
    size_t nblocks = bench_block_count();

    bench_open(&b);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), NULL, key, NULL) != 1
        || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1) {
        die("AES context");
    }

    printf("SCP03 exchange: host wrap + card unwrap (32-byte command, level 33), "
           "card wrap + host unwrap (32-byte response), S8, AES-128\n");
    printf("AES block operations per exchange: %zu "
           "(per step: 1 ICV + 3 CBC + 5 CMAC = 9, four steps)\n",
           nblocks);
    (void)run_scp03(&b, BENCH_WARMUP);
    (void)run_floor(ctx, nblocks, BENCH_WARMUP, blk);
    for (int r = 0; r < BENCH_RUNS; r++) {
        apdu[r] = run_scp03(&b, BENCH_ITERS);
        floor_ns[r] = run_floor(ctx, nblocks, BENCH_ITERS, blk);
    }
    qsort(apdu, BENCH_RUNS, sizeof apdu[0], cmp_double);
    qsort(floor_ns, BENCH_RUNS, sizeof floor_ns[0], cmp_double);
    double a = apdu[BENCH_RUNS / 2], f = floor_ns[BENCH_RUNS / 2];
    printf("runs: %d x %d iterations; scp03 min %.0f max %.0f ns; floor min %.0f max %.0f ns\n",
           BENCH_RUNS, BENCH_ITERS, apdu[0], apdu[BENCH_RUNS - 1], floor_ns[0],
           floor_ns[BENCH_RUNS - 1]);
    printf("per AES block: floor %.1f ns, scp03 %.1f ns\n", f / (double)nblocks,
           a / (double)nblocks);

    EVP_CIPHER_CTX_free(ctx);
    scp03_host_free(b.h);
    scp03_card_free(b.c);
    printf("scp03_apdu_ns=%.0f aes_floor_ns=%.0f ratio=%.2f\n", a, f, a / f);
    return 0;
}
