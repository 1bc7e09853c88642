/* Tests for se/store.c: image round trip, corruption, atomic writes with a
 * failure at every step, commit / rollback, and the power-cut test of
 * issue 3 point 7 (a failure injected at every write of a command sequence
 * run through the card). */
#include "se/se_priv.h"

#include "core/log.h"
#include "core/testutil.h"
#include "gp/cmd.h"
#include "gp/privs.h"
#include "gp/session.h"
#include "se/card.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* ---------------------------------------------------------------- state builders */

static uint32_t rnd_next(uint32_t *s)
{
    /* xorshift32: deterministic filler, not security relevant */
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

static void rnd_fill(uint32_t *s, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)rnd_next(s);
    }
}

static void rnd_aid(uint32_t *s, struct se_aid *a, bool may_be_empty)
{
    a->len = (uint8_t)(may_be_empty ? rnd_next(s) % (SE_AID_MAX + 1u)
                                    : 5u + rnd_next(s) % (SE_AID_MAX - 4u));
    rnd_fill(s, a->b, a->len);
}

/* A state using every field. full: every count and length at its cap. */
static void fill_state(struct se_state *st, uint32_t seed, bool full, unsigned napps,
                       unsigned nelfs)
{
    uint32_t s = seed;
    static uint8_t data[SE_MAX_APP_DATA];

    se_state_clear(st);
    assert_int_equal(se_state_reserve(st, napps, nelfs), OT_OK);
    st->type = SE_TYPE_MICROSD;
    st->card_lcs = GP_LCS_CARD_SECURED;
    st->mute = true;
    st->atr_len = full ? SE_MAX_ATR : 19;
    rnd_fill(&s, st->atr, st->atr_len);
    rnd_fill(&s, st->cplc, sizeof(st->cplc));
    rnd_fill(&s, st->kdd, sizeof(st->kdd));
    st->napps = (uint8_t)napps;
    for (unsigned i = 0; i < napps; i++) {
        struct se_app *a = &st->apps[i];
        rnd_aid(&s, &a->aid, false);
        if (full) {
            a->aid.len = SE_AID_MAX;
        }
        rnd_aid(&s, &a->elf, true);
        rnd_aid(&s, &a->module, true);
        rnd_aid(&s, &a->sd, true);
        a->is_sd = i == 0 || i % 3 == 1;
        a->privs = (rnd_next(&s) & 0x7FFFFFu) | (a->is_sd ? 0x800000u : 0u);
        a->lcs = (uint8_t)rnd_next(&s);
        if (a->is_sd) {
            struct se_sd *sd = &a->sd_data;
            sd->scp = 3;
            sd->scp_i = (uint8_t)rnd_next(&s);
            sd->nkeys = (uint8_t)(full ? SE_MAX_KEYS : rnd_next(&s) % 5u);
            for (unsigned k = 0; k < sd->nkeys; k++) {
                sd->keys[k].kvn = (uint8_t)rnd_next(&s);
                sd->keys[k].kid = (uint8_t)rnd_next(&s);
                sd->keys[k].type = (k & 1u) ? SE_KEY_DES : SE_KEY_AES;
                sd->keys[k].len = (uint8_t)(full ? 32u : 16u + 8u * (rnd_next(&s) % 3u));
                rnd_fill(&s, sd->keys[k].val, sd->keys[k].len);
            }
            sd->nseqs = (uint8_t)(full ? SE_MAX_SEQS : rnd_next(&s) % 3u);
            for (unsigned q = 0; q < sd->nseqs; q++) {
                sd->seqs[q].kvn = (uint8_t)rnd_next(&s);
                sd->seqs[q].value = rnd_next(&s);
            }
            sd->iin_len = (uint8_t)(full ? 16u : rnd_next(&s) % 17u);
            rnd_fill(&s, sd->iin, sd->iin_len);
            sd->cin_len = (uint8_t)(full ? 16u : rnd_next(&s) % 17u);
            rnd_fill(&s, sd->cin, sd->cin_len);
            sd->confirm_ctr = (uint16_t)rnd_next(&s);
        }
        a->params_len = (uint8_t)(full ? SE_MAX_PARAMS : rnd_next(&s) % 20u);
        rnd_fill(&s, a->params, a->params_len);
        size_t data_len = full ? SE_MAX_APP_DATA : rnd_next(&s) % 64u;
        rnd_fill(&s, data, data_len);
        assert_int_equal(se_app_set_data(a, data, data_len), OT_OK);
    }
    st->nelfs = (uint8_t)nelfs;
    for (unsigned e = 0; e < nelfs; e++) {
        struct se_elf *f = &st->elfs[e];
        rnd_aid(&s, &f->aid, false);
        rnd_aid(&s, &f->sd, true);
        rnd_fill(&s, f->version, 2);
        f->lcs = (uint8_t)rnd_next(&s);
        f->nmodules = (uint8_t)(full ? SE_MAX_MODULES : rnd_next(&s) % 4u);
        for (unsigned m = 0; m < f->nmodules; m++) {
            rnd_aid(&s, &f->modules[m], false);
        }
        f->size = rnd_next(&s);
        f->native = (rnd_next(&s) & 1u) != 0;
    }
}

/* The smallest card: an ISD with nothing; its image layout is fixed (see
 * store.c) so fields can be patched at known offsets. */
static void small_state(struct se_state *st)
{
    static const uint8_t isd[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
    static const uint8_t pkg[7] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50};
    static const uint8_t mod[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41};
    se_state_clear(st);
    assert_int_equal(se_state_reserve(st, 1, 0), OT_OK);
    st->type = SE_TYPE_ESE;
    st->card_lcs = GP_LCS_CARD_SECURED;
    st->napps = 1;
    memcpy(st->apps[0].aid.b, isd, 8);
    st->apps[0].aid.len = 8;
    memcpy(st->apps[0].sd.b, isd, 8);
    st->apps[0].sd.len = 8;
    memcpy(st->apps[0].elf.b, pkg, 7);
    st->apps[0].elf.len = 7;
    memcpy(st->apps[0].module.b, mod, 8);
    st->apps[0].module.len = 8;
    st->apps[0].privs = 0x9EFE80u;
    st->apps[0].is_sd = true;
    st->apps[0].lcs = GP_LCS_CARD_SECURED;
    st->apps[0].sd_data.scp = 3;
}

/* Offsets in the image of small_state (store.c layout). */
#define OFF_MAGIC    0
#define OFF_VERSION  6
#define OFF_TYPE     8
#define OFF_MUTE     10
#define OFF_ATR_LEN  11
#define OFF_NAPPS    64
#define OFF_AID_LEN  65
#define OFF_PRIVS    100
#define OFF_IS_SD    105
#define OFF_NKEYS    108
#define OFF_NSEQS    109
#define OFF_IIN_LEN  110
#define OFF_CONFIRM  112 /* confirmation counter u16, after cin_len at 111 */
#define OFF_PARAMS   114
#define OFF_DATA_LEN 115
#define OFF_NELFS    117
#define SMALL_LEN    150

static void rehash(uint8_t *img, size_t n)
{
    SHA256(img, n - 32, img + n - 32);
}

static struct se_state *new_state(void)
{
    struct se_state *st = calloc(1, sizeof(*st));
    assert_non_null(st);
    return st;
}

/* ---------------------------------------------------------------- round trip */

/* Two states hold the same content (the tables' capacities and addresses
 * aside). */
static void assert_state_equal(const struct se_state *a, const struct se_state *b)
{
    struct se_state ha = *a, hb = *b;
    ha.apps = hb.apps = NULL;
    ha.elfs = hb.elfs = NULL;
    ha.apps_cap = hb.apps_cap = 0;
    ha.elfs_cap = hb.elfs_cap = 0;
    assert_memory_equal(&ha, &hb, sizeof ha);
    for (unsigned i = 0; i < a->napps; i++) {
        struct se_app x = a->apps[i], y = b->apps[i];
        assert_int_equal(x.data_len, y.data_len);
        if (x.data_len > 0) {
            assert_memory_equal(x.data, y.data, x.data_len);
        }
        x.data = y.data = NULL;
        x.data_cap = y.data_cap = 0;
        assert_memory_equal(&x, &y, sizeof x);
    }
    if (a->nelfs > 0) {
        assert_memory_equal(a->elfs, b->elfs, a->nelfs * sizeof a->elfs[0]);
    }
}

static void check_round_trip(const struct se_state *st)
{
    struct ot_buf img, img2;
    struct se_state *back = new_state();

    ot_buf_init(&img, 0);
    ot_buf_init(&img2, 0);
    assert_int_equal(se_state_serialize(st, &img), OT_OK);
    assert_memory_equal(img.data, SE_IMAGE_MAGIC, 6);
    assert_int_equal(se_state_deserialize(img.data, img.len, back), OT_OK);
    assert_state_equal(back, st);
    assert_int_equal(se_state_serialize(back, &img2), OT_OK);
    assert_int_equal(img.len, img2.len);
    assert_memory_equal(img.data, img2.data, img.len);
    ot_buf_free(&img);
    ot_buf_free(&img2);
    se_state_clear(back);
    free(back);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct se_state *st = new_state();

    small_state(st);
    check_round_trip(st);
    for (uint32_t seed = 1; seed < 20; seed++) {
        fill_state(st, seed * 2654435761u, false, 1 + seed % SE_MAX_APPS, seed % SE_MAX_ELFS);
        check_round_trip(st);
    }
    /* every count and length at its cap: still within the image size cap */
    fill_state(st, 7, true, SE_MAX_APPS, SE_MAX_ELFS);
    check_round_trip(st);
    se_state_clear(st);
    free(st);
}

static void test_small_layout(void **state)
{
    (void)state;
    struct se_state *st = new_state();
    struct ot_buf img;

    ot_buf_init(&img, 0);
    small_state(st);
    assert_int_equal(se_state_serialize(st, &img), OT_OK);
    assert_int_equal(img.len, SMALL_LEN);
    assert_int_equal(img.data[OFF_VERSION + 1], SE_IMAGE_VERSION);
    assert_int_equal(img.data[OFF_NAPPS], 1);
    assert_int_equal(img.data[OFF_AID_LEN], 8);
    assert_int_equal(img.data[OFF_PRIVS + 1], 0x9E);
    assert_int_equal(img.data[OFF_IS_SD], 1);
    assert_int_equal(img.data[OFF_NELFS], 0);
    assert_int_equal(img.data[OFF_CONFIRM], 0);
    assert_int_equal(img.data[OFF_CONFIRM + 1], 0);
    ot_buf_free(&img);
    se_state_clear(st);
    free(st);
}

/* Counts or lengths above the caps in the state: refused, never written. */
static void test_serialize_caps(void **state)
{
    (void)state;
    struct se_state *st = new_state();
    struct ot_buf img;

    ot_buf_init(&img, 0);
    small_state(st);
    st->apps[0].sd_data.nkeys = SE_MAX_KEYS + 1;
    assert_int_equal(se_state_serialize(st, &img), OT_E_INTERNAL);
    assert_int_equal(img.len, 0);
    small_state(st);
    st->apps[0].data_len = SE_MAX_APP_DATA + 1;
    assert_int_equal(se_state_serialize(st, &img), OT_E_INTERNAL);
    small_state(st);
    st->napps = SE_MAX_APPS + 1;
    assert_int_equal(se_state_serialize(st, &img), OT_E_INTERNAL);
    /* states an image could not be reopened from are not written either */
    small_state(st);
    st->napps = 0;
    assert_int_equal(se_state_serialize(st, &img), OT_E_INTERNAL);
    small_state(st);
    st->apps[0].privs &= ~GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN);
    assert_int_equal(se_state_serialize(st, &img), OT_E_INTERNAL);
    small_state(st);
    st->apps[0].privs |= 0x1000000u;
    assert_int_equal(se_state_serialize(st, &img), OT_E_INTERNAL);
    small_state(st);
    st->apps[0].aid.len = 0;
    assert_int_equal(se_state_serialize(st, &img), OT_E_INTERNAL);
    small_state(st);
    st->type = (enum se_card_type)3;
    assert_int_equal(se_state_serialize(st, &img), OT_E_INTERNAL);
    assert_int_equal(img.len, 0);
    ot_buf_free(&img);
    se_state_clear(st);
    free(st);
}

/* ---------------------------------------------------------------- corruption */

/* p must be refused with OT_E_CORRUPT and leave the target as it was. */
static void expect_corrupt(const uint8_t *p, size_t n, const char *what, size_t at)
{
    static struct se_state target, copy; /* static: large */
    memset(&target, 0xA5, sizeof(target));
    memcpy(&copy, &target, sizeof(copy));
    ot_err err = se_state_deserialize(p, n, &target);
    if (err != OT_E_CORRUPT) {
        print_error("%s at %zu: got %d\n", what, at, (int)err);
    }
    assert_int_equal(err, OT_E_CORRUPT);
    assert_memory_equal(&target, &copy, sizeof(target));
}

static void corrupt_all(const struct ot_buf *img, bool every)
{
    uint8_t *p = malloc(img->len + 1);
    assert_non_null(p);
    size_t step = every ? 1 : img->len / 97 + 1;

    for (size_t n = 0; n < img->len; n += step) {
        /* a cut image, as written */
        memcpy(p, img->data, n);
        expect_corrupt(p, n, "truncated", n);
        /* a cut image with a valid checksum: the field checks catch it */
        if (n >= 32) {
            rehash(p, n);
            expect_corrupt(p, n, "truncated+rehashed", n);
        }
    }
    for (size_t i = 0; i < img->len; i += step) {
        memcpy(p, img->data, img->len);
        p[i] ^= (uint8_t)(1u << (i % 8u));
        expect_corrupt(p, img->len, "flipped", i);
    }
    /* one byte too many (rehashed) */
    memcpy(p, img->data, img->len - 32);
    p[img->len - 32] = 0;
    rehash(p, img->len + 1);
    expect_corrupt(p, img->len + 1, "trailing", img->len);
    free(p);
}

static void test_corrupt_every_byte(void **state)
{
    (void)state;
    struct se_state *st = new_state();
    struct ot_buf img;

    ot_buf_init(&img, 0);
    small_state(st);
    assert_int_equal(se_state_serialize(st, &img), OT_OK);
    corrupt_all(&img, true);
    fill_state(st, 99, false, 9, 5); /* a few KiB: every length and every byte */
    assert_int_equal(se_state_serialize(st, &img), OT_OK);
    corrupt_all(&img, true);
    fill_state(st, 5, true, SE_MAX_APPS, SE_MAX_ELFS); /* ~700 KiB: sampled */
    assert_int_equal(se_state_serialize(st, &img), OT_OK);
    corrupt_all(&img, false);
    ot_buf_free(&img);
    se_state_clear(st);
    free(st);
}

/* Field values a damaged or foreign image may hold, with a valid checksum. */
static const struct {
    const char *name;
    size_t off;
    uint8_t val;
} patch_rows[] = {
    {"magic", OFF_MAGIC, 'X'},
    {"magic version byte", OFF_MAGIC + 5, 0x02},
    {"image version", OFF_VERSION + 1, SE_IMAGE_VERSION + 1},
    {"image version high", OFF_VERSION, 0x01},
    {"card type", OFF_TYPE, 3},
    {"mute not bool", OFF_MUTE, 2},
    {"atr above cap", OFF_ATR_LEN, SE_MAX_ATR + 1},
    {"no ISD", OFF_NAPPS, 0},
    {"napps above cap", OFF_NAPPS, SE_MAX_APPS + 1},
    {"napps above content", OFF_NAPPS, 2},
    {"aid empty", OFF_AID_LEN, 0},
    {"aid above cap", OFF_AID_LEN, SE_AID_MAX + 1},
    {"privs above 24 bits", OFF_PRIVS, 0x01},
    {"is_sd not bool", OFF_IS_SD, 2},
    {"is_sd without SD privilege", OFF_IS_SD, 0},
    {"nkeys above cap", OFF_NKEYS, SE_MAX_KEYS + 1},
    {"nseqs above cap", OFF_NSEQS, SE_MAX_SEQS + 1},
    {"iin above cap", OFF_IIN_LEN, 17},
    {"params above cap", OFF_PARAMS, SE_MAX_PARAMS + 1},
    {"data above cap", OFF_DATA_LEN, 0x21},
    {"nelfs above cap", OFF_NELFS, SE_MAX_ELFS + 1},
    {"nelfs above content", OFF_NELFS, 1},
};

static void test_corrupt_fields(void **state)
{
    (void)state;
    struct se_state *st = new_state();
    struct ot_buf img;
    uint8_t p[SMALL_LEN];

    ot_buf_init(&img, 0);
    small_state(st);
    assert_int_equal(se_state_serialize(st, &img), OT_OK);
    assert_int_equal(img.len, SMALL_LEN);
    /* control: rehashing an unchanged image keeps it valid */
    memcpy(p, img.data, SMALL_LEN);
    rehash(p, SMALL_LEN);
    assert_int_equal(se_state_deserialize(p, SMALL_LEN, st), OT_OK);
    for (size_t i = 0; i < sizeof(patch_rows) / sizeof(patch_rows[0]); i++) {
        memcpy(p, img.data, SMALL_LEN);
        p[patch_rows[i].off] = patch_rows[i].val;
        rehash(p, SMALL_LEN);
        expect_corrupt(p, SMALL_LEN, patch_rows[i].name, patch_rows[i].off);
    }
    /* an ISD that is not an SD: both is_sd and the privilege cleared */
    memcpy(p, img.data, SMALL_LEN);
    p[OFF_PRIVS + 1] = 0x1E;
    p[OFF_IS_SD] = 0;
    /* without is_sd the SD fields are absent: drop them (8 bytes) */
    {
        uint8_t q[SMALL_LEN];
        size_t sd_fields = 8; /* scp, i, nkeys, nseqs, iin_len, cin_len, confirm_ctr */
        memcpy(q, p, OFF_IS_SD + 1);
        memcpy(q + OFF_IS_SD + 1, p + OFF_IS_SD + 1 + sd_fields,
               SMALL_LEN - (OFF_IS_SD + 1 + sd_fields));
        rehash(q, SMALL_LEN - sd_fields);
        expect_corrupt(q, SMALL_LEN - sd_fields, "ISD not an SD", 0);
    }
    /* oversized input */
    expect_corrupt(img.data, (size_t)2 * 1024 * 1024, "oversized", 0);
    assert_int_equal(se_state_deserialize(NULL, 10, st), OT_E_ARG);
    ot_buf_free(&img);
    se_state_clear(st);
    free(st);
}

/* ---------------------------------------------------------------- files */

static char g_dir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ot_store_test.XXXXXX");
    return mkdtemp(g_dir) == NULL ? -1 : 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    char p[512];
    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                snprintf(p, sizeof(p), "%s/%s", g_dir, e->d_name);
                unlink(p);
            }
        }
        closedir(d);
    }
    rmdir(g_dir);
    return 0;
}

static void path_in_dir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static bool file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void file_equals(const char *path, const uint8_t *p, size_t n)
{
    struct ot_buf b;
    ot_buf_init(&b, 0);
    assert_int_equal(se_store_read(path, &b), OT_OK);
    assert_int_equal(b.len, n);
    if (n > 0) {
        assert_memory_equal(b.data, p, n);
    }
    ot_buf_free(&b);
}

struct fail_at {
    unsigned count; /* steps seen */
    unsigned fail;  /* global step that fails; UINT32_MAX never */
};

static ot_err fail_at_step(void *ctx, unsigned step)
{
    struct fail_at *f = ctx;
    (void)step;
    if (f->count++ == f->fail) {
        return OT_E_DB;
    }
    return OT_OK;
}

static void test_write_read(void **state)
{
    (void)state;
    char path[256], tmp[300];
    static const uint8_t a[] = "first image";
    static const uint8_t b[] = "second, longer image";
    struct stat sb;
    struct ot_buf buf;

    path_in_dir(path, sizeof(path), "card.img");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    ot_buf_init(&buf, 0);
    assert_int_equal(se_store_read(path, &buf), OT_E_NOT_FOUND);
    assert_int_equal(se_store_write(path, a, sizeof(a), NULL), OT_OK);
    file_equals(path, a, sizeof(a));
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_false(file_exists(tmp));

    /* a failure at each step 0..3 leaves the old image intact, no temp */
    for (unsigned k = 0; k < 4; k++) {
        struct fail_at f = {.count = 0, .fail = k};
        struct se_store_ops ops = {.before_step = fail_at_step, .ctx = &f};
        assert_int_equal(se_store_write(path, b, sizeof(b), &ops), OT_E_DB);
        file_equals(path, a, sizeof(a));
        assert_false(file_exists(tmp));
        assert_int_equal(f.count, k + 1);
    }
    /* step 4 (directory fsync) comes after the rename: the new image is in
     * place, the write is reported failed */
    {
        struct fail_at f = {.count = 0, .fail = 4};
        struct se_store_ops ops = {.before_step = fail_at_step, .ctx = &f};
        assert_int_equal(se_store_write(path, b, sizeof(b), &ops), OT_E_DB);
        file_equals(path, b, sizeof(b));
    }
    /* no failure: five steps */
    {
        struct fail_at f = {.count = 0, .fail = UINT32_MAX};
        struct se_store_ops ops = {.before_step = fail_at_step, .ctx = &f};
        assert_int_equal(se_store_write(path, a, sizeof(a), &ops), OT_OK);
        assert_int_equal(f.count, 5);
        file_equals(path, a, sizeof(a));
    }
    /* a stale temp left by a power cut is replaced by the next write */
    {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "garbage garbage garbage garbage", 31), 31);
        close(fd);
        file_equals(path, a, sizeof(a)); /* readers ignore it */
        assert_int_equal(se_store_write(path, b, sizeof(b), NULL), OT_OK);
        file_equals(path, b, sizeof(b));
        assert_false(file_exists(tmp));
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
    }
    /* a write into a missing directory fails with OT_E_DB */
    {
        char bad[300];
        snprintf(bad, sizeof(bad), "%s/missing/card.img", g_dir);
        assert_int_equal(se_store_write(bad, a, sizeof(a), NULL), OT_E_DB);
    }
    /* a file larger than any image is refused without reading it whole */
    {
        char big[256];
        path_in_dir(big, sizeof(big), "big.img");
        int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)2 * 1024 * 1024), 0);
        close(fd);
        assert_int_equal(se_store_read(big, &buf), OT_E_CORRUPT);
        assert_int_equal(buf.len, 0);
        unlink(big);
    }
    /* a directory is not an image */
    assert_int_equal(se_store_read(g_dir, &buf), OT_E_FORMAT);
    ot_buf_free(&buf);
}

/* Issue 9 point 19: an empty image is corrupt (not a bad argument), and a
 * FIFO is refused at once instead of waiting for a writer. */
static void test_open_odd_files(void **state)
{
    char path[256];
    struct se_card *c = NULL;
    int fd;

    (void)state;
    path_in_dir(path, sizeof(path), "empty.img");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(se_card_open(path, &c), OT_E_CORRUPT);
    assert_null(c);
    unlink(path);
    path_in_dir(path, sizeof(path), "fifo.img");
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(se_card_open(path, &c), OT_E_FORMAT);
    assert_null(c);
    unlink(path);
}

/* Issue 9 point 8: one process at a time holds an image's lock; another
 * is told who holds it, and gets it once the holder is gone. */
static void test_image_lock(void **state)
{
    char path[256];
    char lockp[300];
    int fd = -1;
    long holder = -1;
    int ready[2];
    int done[2];
    pid_t pid;
    char b = 0;
    int status = 0;
    struct stat sb;

    (void)state;
    path_in_dir(path, sizeof(path), "locked.img");
    snprintf(lockp, sizeof(lockp), "%s.lock", path);
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(done), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int cfd = -1;

        if (se_image_lock(path, &cfd, NULL) != OT_OK || write(ready[1], "k", 1) != 1) {
            _exit(1);
        }
        (void)read(done[0], &b, 1); /* hold until the parent is done */
        _exit(0);
    }
    assert_int_equal(read(ready[0], &b, 1), 1);
    assert_int_equal(se_image_lock(path, &fd, &holder), OT_E_CONFLICT);
    assert_int_equal(fd, -1);
    assert_int_equal(holder, (long)pid);
    assert_int_equal(stat(lockp, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(write(done[1], "x", 1), 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(se_image_lock(path, &fd, &holder), OT_OK);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(se_image_lock(NULL, &fd, NULL), OT_E_ARG);
    close(ready[0]);
    close(ready[1]);
    close(done[0]);
    close(done[1]);
    unlink(lockp);
}

/* ---------------------------------------------------------------- commit / rollback */

static struct se_card *bare_card(void)
{
    struct se_card *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    ot_buf_init(&c->committed, 0);
    small_state(&c->st);
    return c;
}

static void bare_free(struct se_card *c)
{
    se_state_clear(&c->st);
    ot_buf_free(&c->committed);
    free(c->image_path);
    free(c);
}

static void test_commit_rollback(void **state)
{
    (void)state;
    struct se_card *c = bare_card();
    struct ot_buf img;
    char path[256];

    ot_buf_init(&img, 0);
    /* in memory: commit only updates committed */
    assert_int_equal(se_rollback(c), OT_E_STATE); /* nothing committed yet */
    c->dirty = true;
    assert_int_equal(se_commit(c), OT_OK);
    assert_false(c->dirty);
    assert_int_equal(se_state_serialize(&c->st, &img), OT_OK);
    assert_int_equal(c->committed.len, img.len);
    assert_memory_equal(c->committed.data, img.data, img.len);

    /* a change rolled back */
    c->st.card_lcs = GP_LCS_CARD_LOCKED;
    c->st.apps[0].sd_data.nkeys = 1;
    c->dirty = true;
    assert_int_equal(se_rollback(c), OT_OK);
    assert_false(c->dirty);
    assert_int_equal(c->st.card_lcs, GP_LCS_CARD_SECURED);
    assert_int_equal(c->st.apps[0].sd_data.nkeys, 0);

    /* bound to a file: commit writes it */
    path_in_dir(path, sizeof(path), "commit.img");
    c->image_path = strdup(path);
    assert_non_null(c->image_path);
    c->st.card_lcs = GP_LCS_CARD_LOCKED;
    c->dirty = true;
    assert_int_equal(se_commit(c), OT_OK);
    assert_int_equal(se_state_serialize(&c->st, &img), OT_OK);
    file_equals(path, img.data, img.len);

    /* not dirty: no write at all */
    {
        struct fail_at f = {.count = 0, .fail = 0};
        c->store_ops.before_step = fail_at_step;
        c->store_ops.ctx = &f;
        assert_int_equal(se_commit(c), OT_OK);
        assert_int_equal(f.count, 0);
        /* dirty but unchanged bytes: no write either */
        c->dirty = true;
        assert_int_equal(se_commit(c), OT_OK);
        assert_int_equal(f.count, 0);
        assert_false(c->dirty);
    }

    /* a failed write: file and committed keep the old image, the card stays
     * dirty and rolls back to it */
    for (unsigned k = 0; k < 4; k++) {
        struct fail_at f = {.count = 0, .fail = k};
        c->store_ops.before_step = fail_at_step;
        c->store_ops.ctx = &f;
        c->st.card_lcs = GP_LCS_CARD_TERMINATED;
        c->dirty = true;
        assert_int_equal(se_commit(c), OT_E_DB);
        assert_true(c->dirty);
        file_equals(path, img.data, img.len);
        assert_int_equal(c->committed.len, img.len);
        assert_memory_equal(c->committed.data, img.data, img.len);
        assert_int_equal(se_rollback(c), OT_OK);
        assert_int_equal(c->st.card_lcs, GP_LCS_CARD_LOCKED);
    }
    c->store_ops.before_step = NULL;
    assert_int_equal(se_commit(NULL), OT_E_ARG);
    assert_int_equal(se_rollback(NULL), OT_E_ARG);
    ot_buf_free(&img);
    bare_free(c);
}

/* ---------------------------------------------------------------- power cut */

/* Issue 3 point 7. A card made from profiles/dev.json and saved to an image
 * runs a sequence of state-changing commands through se_card_transmit. The
 * reference run counts the image write steps (N) and records the image after
 * every C-APDU. Then, for every k < N, the sequence runs again from the
 * initial image with the write failing at global step k, as a power cut
 * there would; the process "dies" at the first failed command (the card is
 * freed without anything else), the image is reopened with se_card_open and
 * must be byte for byte the image before or the image after the interrupted
 * command, and the card must work (power on, SELECT, listing). */

#define PC_MAX_TX 128u
#define PC_KEY40  "404142434445464748494A4B4C4D4E4F"
#define PC_KEY60  "606162636465666768696A6B6C6D6E6F"
#define PC_ISD    "A000000151000000"

struct pc_run {
    struct se_card *c;
    const char *path;
    bool reference;          /* record the image after each C-APDU */
    unsigned ntx;            /* C-APDUs sent */
    int fail_tx;             /* index of the C-APDU whose write failed; -1 none */
    struct ot_buf before;    /* fault run: the image before the current C-APDU */
    struct ot_buf *after;    /* reference run: PC_MAX_TX images */
    uint16_t sws[PC_MAX_TX]; /* reference run: the SW of each C-APDU */
    struct fail_at steps;    /* the write-step counter / injector */
};

static void pc_read(const char *path, struct ot_buf *out)
{
    ot_buf_reset(out);
    assert_int_equal(se_store_read(path, out), OT_OK);
}

static ot_err pc_tx(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len)
{
    struct pc_run *r = ctx;
    ot_err err;

    assert_true(r->ntx < PC_MAX_TX);
    if (!r->reference) {
        pc_read(r->path, &r->before);
    }
    err = se_card_transmit(r->c, cmd, n, resp, resp_len);
    if (err != OT_OK) {
        r->fail_tx = (int)r->ntx;
        return err;
    }
    assert_true(*resp_len >= 2);
    if (r->reference) {
        pc_read(r->path, &r->after[r->ntx]);
        r->sws[r->ntx] = (uint16_t)((resp[*resp_len - 2] << 8) | resp[*resp_len - 1]);
    }
    r->ntx++;
    return OT_OK;
}

/* One plain command in the session; the SW must be 9000. */
static ot_err pc_send(struct pc_run *r, struct gp_session *s, const uint8_t *cmd, size_t n)
{
    uint8_t resp[1024];
    size_t rl = sizeof(resp);
    uint16_t sw = 0;
    ot_err err = gp_session_transmit(s, pc_tx, r, cmd, n, resp, &rl, &sw);
    if (err != OT_OK) {
        return err;
    }
    if (sw != 0x9000) {
        print_error("power cut sequence: command %02X %02X: SW %04X\n", cmd[1], cmd[2], sw);
        return OT_E_SW;
    }
    return OT_OK;
}

static ot_err pc_send_plain(struct pc_run *r, const char *hex)
{
    uint8_t cmd[300], resp[SE_MAX_RESP];
    size_t n = testutil_unhex(hex, cmd, sizeof(cmd)), rl = sizeof(resp);
    ot_err err = pc_tx(r, cmd, n, resp, &rl);
    if (err != OT_OK) {
        return err;
    }
    if (resp[rl - 2] != 0x90 || resp[rl - 1] != 0x00) {
        print_error("power cut sequence: %s: SW %02X%02X\n", hex, resp[rl - 2], resp[rl - 1]);
        return OT_E_SW;
    }
    return OT_OK;
}

/* The sequence. Returns the first error (a failed write ends it). */
static ot_err pc_sequence(struct pc_run *r)
{
    static const uint8_t host_challenge[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ot_err err = OT_OK;
    struct gp_session *s = NULL;
    struct gp_session_cfg cfg;
    struct scp03_keyset ks;
    uint8_t cmd[300], k40[16], k60[16], aid[16], elf[16], mod[16], params[16];
    size_t n;

    memset(&ks, 0, sizeof(ks));
    ks.kvn = 0x30;
    ks.key_len = testutil_unhex(PC_KEY40, ks.enc, sizeof(ks.enc));
    testutil_unhex(PC_KEY40, ks.mac, sizeof(ks.mac));
    testutil_unhex(PC_KEY40, ks.dek, sizeof(ks.dek));
    testutil_unhex(PC_KEY40, k40, sizeof(k40));
    testutil_unhex(PC_KEY60, k60, sizeof(k60));
    memset(&cfg, 0, sizeof(cfg));
    cfg.scp = GP_SCP_03;
    cfg.scp03_keys = &ks;
    cfg.level = 0x03; /* C-MAC + C-DECRYPTION */
    cfg.host_challenge = host_challenge;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);

    /* SELECT, INITIALIZE UPDATE (sequence counter), EXTERNAL AUTHENTICATE */
    OT_TRY(gp_session_open(s, pc_tx, r));

    /* PUT KEY: a new AES key set, KVN 31 */
    {
        struct gp_put_key_key keys[3] = {
            {.type = GP_KEY_TYPE_AES, .value = k60, .len = 16},
            {.type = GP_KEY_TYPE_AES, .value = k60, .len = 16},
            {.type = GP_KEY_TYPE_AES, .value = k60, .len = 16},
        };
        struct gp_put_key_args a = {.old_kvn = 0,
                                    .new_kvn = 0x31,
                                    .kid = 1,
                                    .keys = keys,
                                    .nkeys = 3,
                                    .dek = k40,
                                    .dek_len = 16};
        n = sizeof(cmd);
        assert_int_equal(gp_cmd_put_key(0, &a, cmd, &n, NULL), OT_OK);
        OT_TRY(pc_send(r, s, cmd, n));
    }
    /* STORE DATA to the ISD: a new CIN (tag 45) */
    {
        uint8_t d[] = {0x45, 0x08, 0x4F, 0x54, 0x53, 0x4D, 0x50, 0x43, 0x00, 0x01};
        n = sizeof(cmd);
        assert_int_equal(
            gp_cmd_store_data(0, GP_STORE_P1_LAST | GP_STORE_P1_BER, 0, d, sizeof(d), cmd, &n),
            OT_OK);
        OT_TRY(pc_send(r, s, cmd, n));
    }
    /* INSTALL [for install and make selectable]: a transit purse holding
     * 10.00 (DF05) and an emv-payment instance */
    {
        static const uint8_t no_privs[3] = {0, 0, 0};
        struct gp_install_args a;
        size_t pl = testutil_unhex("C907DF0504000003E8", params, sizeof(params));
        memset(&a, 0, sizeof(a));
        a.elf_aid_len = testutil_unhex("F04F54534D03", elf, sizeof(elf));
        a.elf_aid = elf;
        a.module_aid_len = testutil_unhex("F04F54534D0301", mod, sizeof(mod));
        a.module_aid = mod;
        a.app_aid_len = testutil_unhex("F04F54534D0301AA", aid, sizeof(aid));
        a.app_aid = aid;
        a.params = params;
        a.params_len = pl;
        a.privs = no_privs;
        a.privs_len = sizeof(no_privs);
        n = sizeof(cmd);
        assert_int_equal(gp_cmd_install_for_install(0, &a, true, cmd, &n), OT_OK);
        OT_TRY(pc_send(r, s, cmd, n));

        memset(&a, 0, sizeof(a));
        a.elf_aid_len = testutil_unhex("F04F54534D02", elf, sizeof(elf));
        a.elf_aid = elf;
        a.module_aid_len = testutil_unhex("F04F54534D0201", mod, sizeof(mod));
        a.module_aid = mod;
        a.app_aid_len = testutil_unhex("A0000000041010", aid, sizeof(aid));
        a.app_aid = aid;
        a.privs = no_privs;
        a.privs_len = sizeof(no_privs);
        n = sizeof(cmd);
        assert_int_equal(gp_cmd_install_for_install(0, &a, true, cmd, &n), OT_OK);
        OT_TRY(pc_send(r, s, cmd, n));
    }
    /* SET STATUS: lock the payment application, then DELETE it */
    {
        n = sizeof(cmd);
        assert_int_equal(
            gp_cmd_set_status(0, GP_SET_STATUS_P1_APP, GP_SET_STATUS_P2_LOCK, aid, 7, cmd, &n),
            OT_OK);
        OT_TRY(pc_send(r, s, cmd, n));
        struct gp_delete_args d = {.aid = aid, .aid_len = 7};
        n = sizeof(cmd);
        assert_int_equal(gp_cmd_delete(0, &d, cmd, &n), OT_OK);
        OT_TRY(pc_send(r, s, cmd, n));
    }
    /* SET STATUS: card locked, then back to SECURED */
    {
        n = sizeof(cmd);
        assert_int_equal(
            gp_cmd_set_status(0, GP_SET_STATUS_P1_CARD, GP_LCS_CARD_LOCKED, NULL, 0, cmd, &n),
            OT_OK);
        OT_TRY(pc_send(r, s, cmd, n));
        n = sizeof(cmd);
        assert_int_equal(
            gp_cmd_set_status(0, GP_SET_STATUS_P1_CARD, GP_LCS_CARD_SECURED, NULL, 0, cmd, &n),
            OT_OK);
        OT_TRY(pc_send(r, s, cmd, n));
    }
    /* The purse: two debits change the applet's data. */
    OT_TRY(pc_send_plain(r, "00A4040008F04F54534D0301AA00"));
    OT_TRY(pc_send_plain(r, "805400000400000064"
                            "04"));
    OT_TRY(pc_send_plain(r, "80540000040000000A"
                            "04"));
out:
    gp_session_free(s);
    return err;
}

/* A reopened card works: ATR, SELECT of the ISD, a listing. */
static void pc_check_works(const char *path)
{
    struct se_card *c = NULL;
    uint8_t atr[SE_MAX_ATR], resp[SE_MAX_RESP], cmd[32];
    size_t atr_len = sizeof(atr), rl = sizeof(resp);
    size_t n = testutil_unhex("00A4040008" PC_ISD "00", cmd, sizeof(cmd));
    static char text[65536];
    size_t tl = sizeof(text);

    assert_int_equal(se_card_open(path, &c), OT_OK);
    assert_int_equal(se_card_power_on(c, atr, &atr_len), OT_OK);
    assert_true(atr_len > 0);
    assert_int_equal(se_card_transmit(c, cmd, n, resp, &rl), OT_OK);
    assert_true(rl >= 2);
    if (c->st.card_lcs == GP_LCS_CARD_LOCKED) {
        /* GPCS 11.9.3: the ISD answers 6283 while the card is locked */
        assert_int_equal(resp[rl - 2], 0x62);
        assert_int_equal(resp[rl - 1], 0x83);
    } else {
        assert_int_equal(resp[rl - 2], 0x90);
        assert_int_equal(resp[rl - 1], 0x00);
    }
    assert_int_equal(se_card_inspect(c, SE_INSPECT_TREE, text, &tl), OT_OK);
    se_card_free(c);
}

static void test_power_cut(void **state)
{
    (void)state;
    char path[256], profile[512];
    struct se_card *c = NULL;
    struct ot_buf initial;
    struct pc_run ref;
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len;
    unsigned nsteps;

    path_in_dir(path, sizeof(path), "powercut.img");
    snprintf(profile, sizeof(profile), "%s/profiles/dev.json", OT_SOURCE_DIR);
    assert_int_equal(se_card_from_profile_file(profile, &c), OT_OK);
    assert_int_equal(se_card_save_as(c, path), OT_OK);
    se_card_free(c);
    ot_buf_init(&initial, 0);
    pc_read(path, &initial);

    /* reference run: count the write steps, record every image */
    memset(&ref, 0, sizeof(ref));
    ref.path = path;
    ref.reference = true;
    ref.fail_tx = -1;
    ref.after = calloc(PC_MAX_TX, sizeof(*ref.after));
    assert_non_null(ref.after);
    for (unsigned i = 0; i < PC_MAX_TX; i++) {
        ot_buf_init(&ref.after[i], 0);
    }
    ref.steps.fail = UINT32_MAX;
    assert_int_equal(se_card_open(path, &ref.c), OT_OK);
    ref.c->store_ops.before_step = fail_at_step;
    ref.c->store_ops.ctx = &ref.steps;
    atr_len = sizeof(atr);
    assert_int_equal(se_card_power_on(ref.c, atr, &atr_len), OT_OK);
    assert_int_equal(pc_sequence(&ref), OT_OK);
    se_card_free(ref.c);
    nsteps = ref.steps.count;
    /* at least: counter, PUT KEY, STORE DATA, 2 INSTALL, lock, DELETE, card
     * lock and unlock, 2 debits -- 5 steps each */
    assert_true(nsteps >= 5u * 11u);
    assert_int_equal(nsteps % 5u, 0);
    assert_true(ref.ntx > 11);
    print_message("power cut: %u C-APDUs, %u write steps, each one failed in turn\n", ref.ntx,
                  nsteps);

    for (unsigned k = 0; k < nsteps; k++) {
        struct pc_run run;
        struct ot_buf now;
        const struct ot_buf *want_before, *want_after;

        /* a fresh copy of the initial image */
        assert_int_equal(se_store_write(path, initial.data, initial.len, NULL), OT_OK);
        memset(&run, 0, sizeof(run));
        run.path = path;
        run.fail_tx = -1;
        ot_buf_init(&run.before, 0);
        run.steps.fail = k;
        assert_int_equal(se_card_open(path, &run.c), OT_OK);
        run.c->store_ops.before_step = fail_at_step;
        run.c->store_ops.ctx = &run.steps;
        atr_len = sizeof(atr);
        assert_int_equal(se_card_power_on(run.c, atr, &atr_len), OT_OK);
        ot_err err = pc_sequence(&run);
        /* the power cut: nothing more happens in this process */
        se_card_free(run.c);
        if (err == OT_OK || run.fail_tx < 0) {
            print_error("step %u: the sequence did not fail (%d)\n", k, (int)err);
        }
        assert_true(run.fail_tx >= 0);
        assert_true((unsigned)run.fail_tx < ref.ntx);
        /* up to the failure the run is the reference run */
        want_before = run.fail_tx == 0 ? &initial : &ref.after[run.fail_tx - 1];
        want_after = &ref.after[run.fail_tx];
        assert_int_equal(run.before.len, want_before->len);
        assert_memory_equal(run.before.data, want_before->data, want_before->len);

        ot_buf_init(&now, 0);
        pc_read(path, &now);
        bool is_before =
            now.len == want_before->len && memcmp(now.data, want_before->data, now.len) == 0;
        bool is_after =
            now.len == want_after->len && memcmp(now.data, want_after->data, now.len) == 0;
        if (!is_before && !is_after) {
            print_error("step %u (C-APDU %d): image is neither before nor after\n", k, run.fail_tx);
        }
        assert_true(is_before || is_after);
        /* steps 0-3 of a write keep the old image, step 4 comes after the
         * rename (store.c) */
        assert_true(k % 5u == 4u ? is_after : is_before);
        pc_check_works(path);
        ot_buf_free(&now);
        ot_buf_free(&run.before);
    }

    /* the sequence did change the card */
    assert_false(ref.after[ref.ntx - 1].len == initial.len
                 && memcmp(ref.after[ref.ntx - 1].data, initial.data, initial.len) == 0);
    for (unsigned i = 0; i < PC_MAX_TX; i++) {
        ot_buf_free(&ref.after[i]);
    }
    free(ref.after);
    ot_buf_free(&initial);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_small_layout),
        cmocka_unit_test(test_serialize_caps),  cmocka_unit_test(test_corrupt_every_byte),
        cmocka_unit_test(test_corrupt_fields),  cmocka_unit_test(test_write_read),
        cmocka_unit_test(test_commit_rollback), cmocka_unit_test(test_power_cut),
        cmocka_unit_test(test_open_odd_files),  cmocka_unit_test(test_image_lock),
    };
    struct ot_log_cfg cfg = {.level = OT_LOG_LVL_ERROR, .format = OT_LOG_FMT_TEXT};
    ot_log_configure(&cfg); /* the corruption rows log a WARN each */
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
