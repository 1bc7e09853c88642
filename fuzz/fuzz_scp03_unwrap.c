/* libFuzzer target for SCP03 unwrapping (src/crypto/scp03.c).
 *
 * Each input opens a fresh host and card session deterministically (fixed
 * keys, pseudo-random card challenge with a fixed counter, fixed host
 * challenge), so a crash reproduces from the input alone. The first byte
 * picks the options: b0 S16, b3..b1 the security level (index into
 * fuzz_levels), b5..b4 the key length. The rest is fed:
 *   1. to scp03_card_unwrap as a secured C-APDU, and to scp03_host_unwrap as
 *      an R-APDU (any result is fine; crashes and UB are findings);
 *   2. to scp03_host_on_initialize_update as an INITIALIZE UPDATE answer;
 *   3. in a second session, as a plain command: if the host wraps it, the
 *      card must unwrap it to the same fields; and as response data: the
 *      host must get back exactly what the card wrapped (abort otherwise).
 */
#include "core/apdu.h"
#include "crypto/scp03.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_levels[] = {0x00, 0x01, 0x03, 0x11, 0x13, 0x33, 0x33, 0x13};
static const uint8_t fuzz_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

struct fuzz_sess {
    struct scp03_keyset keys;
    struct scp03_host *h;
    struct scp03_card *c;
};

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

static void fuzz_close(struct fuzz_sess *f)
{
    scp03_host_free(f->h);
    scp03_card_free(f->c);
    f->h = NULL;
    f->c = NULL;
}

/* Handshake between the two objects; everything here must succeed. */
static void fuzz_open(struct fuzz_sess *f, uint8_t opt)
{
    static const size_t key_lens[] = {16, 24, 32, 16};
    bool s16 = (opt & 1) != 0;
    uint8_t level = fuzz_levels[(opt >> 1) & 7];
    uint8_t cmd[64], resp[64], hc[16];
    size_t n = sizeof cmd, rn = sizeof resp - 2;
    uint32_t seq = 0x000100;

    memset(f, 0, sizeof *f);
    f->keys.kvn = 0x30;
    f->keys.key_len = key_lens[(opt >> 4) & 3];
    for (size_t k = 0; k < f->keys.key_len; k++) {
        f->keys.enc[k] = (uint8_t)(0x40 + k);
        f->keys.mac[k] = (uint8_t)(0x60 + k);
        f->keys.dek[k] = (uint8_t)(0x80 + k);
    }
    for (size_t k = 0; k < sizeof hc; k++) {
        hc[k] = (uint8_t)(0xA5 ^ k);
    }
    struct scp03_card_cfg cfg = {.i_param = (uint8_t)(0x70 | (s16 ? SCP03_I_S16 : 0)),
                                 .sd_aid = fuzz_aid,
                                 .sd_aid_len = sizeof fuzz_aid};
    check(scp03_host_new(&f->keys, &f->h) == OT_OK);
    check(scp03_card_new(&cfg, &f->c) == OT_OK);
    check(scp03_host_initialize_update(f->h, 0, s16, hc, cmd, &n) == OT_OK);
    check(scp03_card_initialize_update(f->c, &f->keys, &seq, cmd, n, resp, &rn) == OT_OK);
    resp[rn++] = 0x90;
    resp[rn++] = 0x00;
    check(scp03_host_on_initialize_update(f->h, resp, rn) == OT_OK);
    n = sizeof cmd;
    check(scp03_host_external_authenticate(f->h, level, cmd, &n) == OT_OK);
    check(scp03_card_external_authenticate(f->c, cmd, n) == OT_OK);
    check(scp03_host_on_external_authenticate(f->h, (const uint8_t *)"\x90\x00", 2) == OT_OK);
}

static void fuzz_round_trip(struct fuzz_sess *f, const uint8_t *p, size_t n, uint8_t *a, uint8_t *b,
                            size_t cap)
{
    struct apdu plain, got;
    size_t an = cap, bn = cap;

    if (apdu_parse(p, n, &plain) == OT_OK && !apdu_cla_has_sm(plain.cla)
        && scp03_host_wrap(f->h, p, n, a, &an) == OT_OK) {
        check(an <= n + SCP03_WRAP_OVERHEAD);
        check(scp03_card_unwrap(f->c, a, an, b, &bn) == OT_OK);
        check(apdu_parse(b, bn, &got) == OT_OK);
        check(got.ins == plain.ins && got.p1 == plain.p1 && got.p2 == plain.p2);
        check(got.nc == plain.nc && (got.ne != 0) == (plain.ne != 0));
        check(got.nc == 0 || memcmp(got.data, plain.data, got.nc) == 0);
        /* the command's data back as response data */
        an = cap;
        check(scp03_card_wrap(f->c, p, n, 0x9000, a, &an) == OT_OK);
        check(an <= n + 2 + SCP03_RESP_OVERHEAD);
        bn = cap;
        check(scp03_host_unwrap(f->h, a, an, b, &bn) == OT_OK);
        check(bn == n + 2 && memcmp(b, p, n) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_sess f;
    size_t cap, n;
    uint8_t *a = NULL, *b = NULL;

    if (size < 1 || size > APDU_MAX_CMD_SIZE) {
        return 0;
    }
    const uint8_t opt = data[0];
    const uint8_t *p = data + 1;
    size_t pn = size - 1;
    cap = pn + SCP03_WRAP_OVERHEAD + SCP03_RESP_OVERHEAD + 2;
    a = malloc(cap);
    b = malloc(cap);
    check(a && b);

    /* 1. the input as a secured command and as a secured response */
    fuzz_open(&f, opt);
    n = cap;
    (void)scp03_card_unwrap(f.c, p, pn, a, &n);
    n = cap;
    (void)scp03_host_unwrap(f.h, p, pn, a, &n);
    /* an aborted card never accepts anything again */
    if (!scp03_card_is_open(f.c)) {
        n = cap;
        check(scp03_card_unwrap(f.c, p, pn, a, &n) == OT_E_NO_CHANNEL);
    }

    /* 2. the input as an INITIALIZE UPDATE answer */
    n = cap;
    check(scp03_host_initialize_update(f.h, 0, (opt & 1) != 0, NULL, a, &n) == OT_OK);
    (void)scp03_host_on_initialize_update(f.h, p, pn);
    fuzz_close(&f);

    /* 3. round trips */
    fuzz_open(&f, opt);
    fuzz_round_trip(&f, p, pn, a, b, cap);
    fuzz_close(&f);

    free(a);
    free(b);
    return 0;
}
