/* Tests for se/profile.c: the shipped profiles and a table of bad ones. */
#include "se/se_priv.h"

#include "se/card.h"

#include "core/log.h"
#include "gp/privs.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define KEY40  "\"404142434445464748494A4B4C4D4E4F\""
#define KEYSET "{\"kvn\":48,\"type\":\"aes\",\"enc\":" KEY40 ",\"mac\":" KEY40 ",\"dek\":" KEY40 "}"
#define ISD_OK "\"isd\":{\"keys\":[" KEYSET "]}"
#define HEAD   "{\"type\":\"eSE\"," ISD_OK
#define PPSE   "\"325041592E5359532E4444463031\""

/* ---------------------------------------------------------------- helpers */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

static struct se_state *load_shipped(const char *name)
{
    char path[512];
    size_t len = 0;
    char *json;
    struct se_state *st = calloc(1, sizeof(*st));

    assert_non_null(st);
    snprintf(path, sizeof(path), "%s/profiles/%s", OT_SOURCE_DIR, name);
    json = read_file(path, &len);
    assert_int_equal(se_profile_load(json, len, st), OT_OK);
    free(json);
    return st;
}

static int app_index(const struct se_state *st, const char *hex)
{
    for (int i = 0; i < (int)st->napps; i++) {
        char h[33] = {0};
        for (size_t k = 0; k < st->apps[i].aid.len; k++) {
            snprintf(h + 2 * k, 3, "%02X", st->apps[i].aid.b[k]);
        }
        if (strcmp(h, hex) == 0) {
            return i;
        }
    }
    return -1;
}

static bool aid_is(const struct se_aid *a, const char *hex)
{
    char h[33] = {0};
    for (size_t k = 0; k < a->len; k++) {
        snprintf(h + 2 * k, 3, "%02X", a->b[k]);
    }
    return strcmp(h, hex) == 0;
}

static bool has(const struct se_state *st, int i, unsigned p)
{
    return (st->apps[i].privs & GP_PRIV_BIT(p)) != 0;
}

/* Every association of a loaded profile names an SD that exists. */
static void check_links(const struct se_state *st)
{
    assert_true(st->napps >= 1);
    assert_true(st->apps[0].is_sd);
    assert_true(aid_is(&st->elfs[0].aid, "A0000001515350"));
    for (int i = 0; i < (int)st->napps; i++) {
        int sd = -1;
        for (int j = 0; j < (int)st->napps; j++) {
            if (st->apps[j].aid.len == st->apps[i].sd.len
                && memcmp(st->apps[j].aid.b, st->apps[i].sd.b, st->apps[i].sd.len) == 0) {
                sd = j;
            }
        }
        assert_true(sd >= 0);
        assert_true(st->apps[sd].is_sd);
        assert_int_equal(st->apps[i].is_sd,
                         (st->apps[i].privs & GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN)) != 0);
        assert_int_equal(st->apps[i].data_len, 0);
        assert_int_equal(gp_privs_validate(st->apps[i].privs, NULL), OT_OK);
    }
}

/* ---------------------------------------------------------------- shipped */

static void test_dev(void **state)
{
    (void)state;
    struct se_state *st = load_shipped("dev.json");
    static const uint8_t k40[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                    0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
    static const uint8_t zero10[10] = {0};

    check_links(st);
    assert_int_equal(st->type, SE_TYPE_ESE);
    assert_int_equal(st->card_lcs, GP_LCS_CARD_SECURED);
    assert_int_equal(st->napps, 2);
    assert_true(aid_is(&st->apps[0].aid, "A000000151000000"));
    assert_true(aid_is(&st->apps[0].sd, "A000000151000000"));
    assert_int_equal(st->apps[0].privs, 0x9EFE80u);
    assert_int_equal(st->apps[0].lcs, GP_LCS_CARD_SECURED);
    const struct se_sd *isd = &st->apps[0].sd_data;
    assert_int_equal(isd->scp, 3);
    assert_int_equal(isd->scp_i, 0x10);
    assert_int_equal(isd->nkeys, 3);
    for (unsigned k = 0; k < 3; k++) {
        assert_int_equal(isd->keys[k].kvn, 0x30);
        assert_int_equal(isd->keys[k].kid, k + 1);
        assert_int_equal(isd->keys[k].type, SE_KEY_AES);
        assert_int_equal(isd->keys[k].len, 16);
        assert_memory_equal(isd->keys[k].val, k40, 16);
    }
    assert_int_equal(isd->nseqs, 1);
    assert_int_equal(isd->seqs[0].kvn, 0x30);
    assert_int_equal(isd->seqs[0].value, 0);
    assert_int_equal(isd->cin_len, 8);
    assert_memory_equal(st->kdd, zero10, 10);
    /* CPLC derived: "OT" fabricator, then the CIN's hash. */
    assert_int_equal(st->cplc[0], 0x4F);
    assert_int_equal(st->cplc[1], 0x54);
    /* SSD package + the five native modules, all under the ISD. */
    assert_int_equal(st->nelfs, 6);
    assert_false(st->elfs[0].native);
    assert_true(aid_is(&st->elfs[0].modules[0], "A000000151535041"));
    static const char *const pkgs[] = {"F04F54534D01", "F04F54534D02", "F04F54534D03",
                                       "F04F54534D04", "F04F54534D05"};
    for (size_t i = 0; i < 5; i++) {
        const struct se_elf *f = &st->elfs[i + 1];
        assert_true(aid_is(&f->aid, pkgs[i]));
        assert_true(f->native);
        assert_int_equal(f->nmodules, 1);
        assert_int_equal(f->modules[0].len, 7);
        assert_memory_equal(f->modules[0].b, f->aid.b, 6);
        assert_true(aid_is(&f->sd, "A000000151000000"));
        assert_int_equal(f->lcs, GP_LCS_ELF_LOADED);
    }
    const struct se_app *pp = &st->apps[1];
    assert_true(aid_is(&pp->aid, "325041592E5359532E4444463031"));
    assert_true(aid_is(&pp->elf, "F04F54534D01"));
    assert_true(aid_is(&pp->module, "F04F54534D0101"));
    assert_true(aid_is(&pp->sd, "A000000151000000"));
    assert_int_equal(pp->lcs, GP_LCS_APP_SELECTABLE);
    assert_int_equal(pp->privs, 0);
    assert_false(pp->is_sd);
    se_state_clear(st);
    free(st);
}

static void test_ese_central(void **state)
{
    (void)state;
    struct se_state *st = load_shipped("ese-central.json");
    int cen = app_index(st, "F04F54534D534401");

    check_links(st);
    assert_int_equal(st->type, SE_TYPE_ESE);
    assert_true(cen > 0);
    /* Seed 002 table 1: central SD with card lock / terminate / CVM. */
    assert_true(has(st, cen, GP_PRIV_AUTHORIZED_MANAGEMENT));
    assert_true(has(st, cen, GP_PRIV_CARD_LOCK));
    assert_true(has(st, cen, GP_PRIV_CARD_TERMINATE));
    assert_true(has(st, cen, GP_PRIV_CVM_MANAGEMENT));
    /* all five generic packages under the central SD */
    assert_int_equal(st->nelfs, 6);
    for (size_t i = 1; i < st->nelfs; i++) {
        assert_true(st->elfs[i].native);
        assert_true(aid_is(&st->elfs[i].sd, "F04F54534D534401"));
    }
    int ppse = app_index(st, "325041592E5359532E4444463031");
    int wal = app_index(st, "F04F54534D0501AA");
    assert_true(ppse > 0 && wal > 0);
    assert_true(aid_is(&st->apps[ppse].sd, "F04F54534D534401"));
    assert_true(aid_is(&st->apps[wal].sd, "F04F54534D534401"));
    int sp = app_index(st, "F04F54534D534410");
    assert_true(has(st, sp, GP_PRIV_DAP_VERIFICATION));
    assert_false(has(st, sp, GP_PRIV_AUTHORIZED_MANAGEMENT));
    int pay = app_index(st, "A0000000041010");
    assert_true(aid_is(&st->apps[pay].sd, "F04F54534D534410"));
    se_state_clear(st);
    free(st);
}

static void test_thirdparty(void **state)
{
    (void)state;
    static const char *const files[] = {"ese-thirdparty.json", "uicc-thirdparty.json"};
    for (size_t f = 0; f < 2; f++) {
        struct se_state *st = load_shipped(files[f]);
        check_links(st);
        assert_int_equal(st->type, f == 0 ? SE_TYPE_ESE : SE_TYPE_UICC);
        int tp = app_index(st, "F04F54534D534403");
        int dm = app_index(st, "F04F54534D534412");
        int mdph = app_index(st, "F04F54534D534404");
        int ca = app_index(st, "F04F54534D534405");
        int tpsp = app_index(st, "F04F54534D534413");
        assert_true(tp > 0 && dm > 0 && mdph > 0 && ca > 0 && tpsp > 0);
        assert_true(has(st, tp, GP_PRIV_AUTHORIZED_MANAGEMENT));
        assert_true(has(st, dm, GP_PRIV_DELEGATED_MANAGEMENT));
        assert_false(has(st, dm, GP_PRIV_AUTHORIZED_MANAGEMENT));
        assert_true(has(st, mdph, GP_PRIV_MANDATED_DAP));
        assert_true(has(st, mdph, GP_PRIV_DAP_VERIFICATION));
        assert_int_equal(st->apps[ca].privs, GP_PRIV_BIT(GP_PRIV_SECURITY_DOMAIN));
        /* the DM SD needs a token verifier: the ISD (table 12.1) */
        assert_true(has(st, 0, GP_PRIV_TOKEN_VERIFICATION));
        assert_true(has(st, 0, GP_PRIV_RECEIPT_GENERATION));
        assert_true(aid_is(&st->apps[tpsp].sd, "F04F54534D534403"));
        int transit = app_index(st, "F04F54534D0301AA");
        assert_true(aid_is(&st->apps[transit].sd, "F04F54534D534413"));
        if (f == 1) {
            int mno = app_index(st, "F04F54534D534402");
            int tel = app_index(st, "A0000000871002");
            assert_true(has(st, mno, GP_PRIV_AUTHORIZED_MANAGEMENT));
            assert_true(aid_is(&st->apps[tel].sd, "F04F54534D534402"));
        }
        se_state_clear(st);
        free(st);
    }
}

static void test_uicc_central(void **state)
{
    (void)state;
    struct se_state *st = load_shipped("uicc-central.json");
    check_links(st);
    assert_int_equal(st->type, SE_TYPE_UICC);
    int mno = app_index(st, "F04F54534D534402");
    int cen = app_index(st, "F04F54534D534401");
    int tel = app_index(st, "A0000000871002");
    assert_true(mno > 0 && cen > 0 && tel > 0);
    /* Seed 002 table 4, plus Card Reset and Final Application that nobody
     * else holds (GPCS 6.6.2: the ISD's by default). */
    assert_int_equal(st->apps[0].privs, 0x9EDE00u);
    assert_true(has(st, mno, GP_PRIV_AUTHORIZED_MANAGEMENT));
    assert_true(has(st, cen, GP_PRIV_AUTHORIZED_MANAGEMENT));
    assert_true(aid_is(&st->apps[tel].sd, "F04F54534D534402"));
    for (size_t i = 1; i < st->nelfs; i++) {
        bool telecom = aid_is(&st->elfs[i].aid, "F04F54534D04");
        assert_true(aid_is(&st->elfs[i].sd, telecom ? "F04F54534D534402" : "F04F54534D534401"));
    }
    se_state_clear(st);
    free(st);
}

/* Every *.json in profiles/ loads and makes a card, whatever its name. */
static void test_every_shipped(void **state)
{
    (void)state;
    char dir[512];
    DIR *d;
    struct dirent *e;
    unsigned n = 0;

    snprintf(dir, sizeof(dir), "%s/profiles", OT_SOURCE_DIR);
    d = opendir(dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".json") != 0) {
            continue;
        }
        struct se_state *st = load_shipped(e->d_name);
        check_links(st);
        se_state_clear(st);
        free(st);
        char path[1024];
        struct se_card *c = NULL;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        assert_int_equal(se_card_from_profile_file(path, &c), OT_OK);
        se_card_free(c);
        n++;
    }
    closedir(d);
    assert_true(n >= 5); /* dev + the four layouts of seed 002 */
}

/* Different CINs give different CPLCs; the same profile gives the same. */
static void test_cplc_default(void **state)
{
    (void)state;
    static const char a[] = HEAD ",\"cin\":\"0102030405060708\"}";
    static const char b[] = HEAD ",\"cin\":\"0102030405060709\"}";
    static const char c[] = HEAD ",\"cplc\":\""
                                 "000102030405060708090A0B0C0D0E0F"
                                 "101112131415161718191A1B1C1D1E1F"
                                 "20212223242526272829"
                                 "\"}";
    struct se_state *s1 = calloc(1, sizeof(*s1)), *s2 = calloc(1, sizeof(*s2));
    assert_non_null(s1);
    assert_non_null(s2);
    assert_int_equal(se_profile_load(a, strlen(a), s1), OT_OK);
    assert_int_equal(se_profile_load(a, strlen(a), s2), OT_OK);
    assert_memory_equal(s1->cplc, s2->cplc, 42);
    assert_int_equal(se_profile_load(b, strlen(b), s2), OT_OK);
    assert_memory_not_equal(s1->cplc, s2->cplc, 42);
    assert_int_equal(se_profile_load(c, strlen(c), s2), OT_OK);
    assert_int_equal(s2->cplc[0], 0x00);
    assert_int_equal(s2->cplc[41], 0x29);
    se_state_clear(s1);
    free(s1);
    se_state_clear(s2);
    free(s2);
}

/* Forms the format allows beyond the shipped profiles. */
static void test_good_variants(void **state)
{
    (void)state;
    static const char scp02[] =
        "{\"type\":\"UICC\",\"card_lcs\":\"OP_READY\",\"kdd\":\"00010203040506070809\","
        "\"atr\":\"3B8080018080\",\"isd\":{\"scp\":2,\"i\":\"55\",\"seq\":65535,"
        "\"privileges\":[\"security-domain\",\"card-lock\"],\"keys\":[{\"kvn\":1,\"type\":"
        "\"des\",\"enc\":" KEY40 ",\"mac\":" KEY40 ",\"dek\":" KEY40 "},{\"kvn\":112,"
        "\"kid\":1,\"type\":\"aes\",\"value\":\"000102030405060708090A0B0C0D0E0F1011121314151617"
        "18191A1B1C1D1E1F\"}]},\"packages\":[{\"aid\":\"A00000000101\",\"modules\":"
        "[\"A0000000010101\"],\"version\":\"0203\",\"size\":100},{\"aid\":\"F04F54534D03\"}],"
        "\"domains\":[{\"aid\":\"A00000000201\",\"privileges\":\"authorized-management\","
        "\"lcs\":\"LOCKED\",\"iin\":\"42\",\"cin\":\"45\"}],\"applications\":[{\"aid\":"
        "\"A0000000030101\",\"package\":\"F04F54534D03\",\"module\":\"F04F54534D0301\","
        "\"sd\":\"A00000000201\",\"privileges\":\"card-reset\",\"lcs\":\"INSTALLED\","
        "\"params\":\"C900\"}]}";
    struct se_state *st = calloc(1, sizeof(*st));
    assert_non_null(st);
    assert_int_equal(se_profile_load(scp02, strlen(scp02), st), OT_OK);
    assert_int_equal(st->type, SE_TYPE_UICC);
    assert_int_equal(st->card_lcs, GP_LCS_CARD_OP_READY);
    assert_int_equal(st->atr_len, 6);
    assert_int_equal(st->kdd[9], 0x09);
    const struct se_sd *isd = &st->apps[0].sd_data;
    assert_int_equal(isd->scp, 2);
    assert_int_equal(isd->scp_i, 0x55);
    assert_int_equal(isd->nkeys, 4);
    assert_int_equal(isd->keys[0].type, SE_KEY_DES);
    assert_int_equal(isd->keys[3].kvn, 112);
    assert_int_equal(isd->keys[3].len, 32);
    assert_int_equal(isd->nseqs, 1); /* the single key has no counter */
    assert_int_equal(isd->seqs[0].value, 0xFFFF);
    assert_int_equal(st->apps[0].privs, 0x900200u); /* + Final Application: no other holder */
    /* opaque package: stored, not native; the native one found by AID */
    assert_false(st->elfs[1].native);
    assert_int_equal(st->elfs[1].version[1], 0x03);
    assert_int_equal(st->elfs[1].size, 100);
    assert_true(st->elfs[2].native);
    assert_int_equal(st->elfs[2].nmodules, 1);
    assert_int_equal(st->apps[1].lcs, GP_LCS_SD_PERSONALIZED | GP_LCS_LOCKED_BIT);
    assert_int_equal(st->apps[1].privs, 0x804000u);
    assert_int_equal(st->apps[1].sd_data.scp, 3);
    assert_int_equal(st->apps[1].sd_data.scp_i, 0x10);
    assert_int_equal(st->apps[1].sd_data.nkeys, 0);
    assert_int_equal(st->apps[1].sd_data.iin_len, 1);
    assert_int_equal(st->apps[2].lcs, GP_LCS_APP_INSTALLED);
    assert_int_equal(st->apps[2].params_len, 2);
    /* a Card Reset holder takes it from the ISD */
    assert_int_equal(st->apps[2].privs, GP_PRIV_BIT(GP_PRIV_CARD_RESET));
    assert_false(has(st, 0, GP_PRIV_CARD_RESET));
    se_state_clear(st);
    free(st);
}

/* ---------------------------------------------------------------- bad profiles */

struct bad_row {
    const char *name;
    const char *json;
    ot_err err;
    const char *log; /* expected in the WARN line */
};

#define APP(x) HEAD ",\"packages\":[{\"module\":\"ppse\"}],\"applications\":[" x "]}"

static const struct bad_row bad_rows[] = {
    {"not json", "{\"type\":", OT_E_FORMAT, "profile: line"},
    {"not an object", "[1]", OT_E_FORMAT, "(top): must be an object"},
    {"duplicate key", "{\"type\":\"eSE\",\"type\":\"UICC\"," ISD_OK "}", OT_E_FORMAT, "duplicate"},
    {"unknown top field", HEAD ",\"colour\":\"red\"}", OT_E_FORMAT, "colour: unknown field"},
    {"type missing", "{" ISD_OK "}", OT_E_FORMAT, "type: missing"},
    {"type not string", "{\"type\":3," ISD_OK "}", OT_E_FORMAT, "type: must be a string"},
    {"type unknown", "{\"type\":\"SIM\"," ISD_OK "}", OT_E_FORMAT, "type: must be"},
    {"card lcs", HEAD ",\"card_lcs\":\"LOCKED\"}", OT_E_FORMAT, "card_lcs: unknown life-cycle"},
    {"cplc short", HEAD ",\"cplc\":\"0011\"}", OT_E_FORMAT, "cplc: length 2 bytes"},
    {"kdd long", HEAD ",\"kdd\":\"0011223344556677889900\"}", OT_E_FORMAT, "kdd: length 11"},
    {"cin bad hex", HEAD ",\"cin\":\"01G2\"}", OT_E_FORMAT, "cin: bad hex"},
    {"cin odd hex", HEAD ",\"cin\":\"012\"}", OT_E_FORMAT, "cin: bad hex"},
    {"isd missing", "{\"type\":\"eSE\"}", OT_E_FORMAT, "isd: missing"},
    {"isd not object", "{\"type\":\"eSE\",\"isd\":[]}", OT_E_FORMAT, "isd: must be an object"},
    {"isd unknown field", "{\"type\":\"eSE\",\"isd\":{\"kvn\":1,\"keys\":[" KEYSET "]}}",
     OT_E_FORMAT, "isd.kvn: unknown field"},
    {"isd no keys", "{\"type\":\"eSE\",\"isd\":{}}", OT_E_FORMAT, "isd.keys: missing"},
    {"isd empty keys", "{\"type\":\"eSE\",\"isd\":{\"keys\":[]}}", OT_E_FORMAT,
     "isd.keys: needs at least one"},
    {"isd aid short", "{\"type\":\"eSE\",\"isd\":{\"aid\":\"A0000001\",\"keys\":[" KEYSET "]}}",
     OT_E_FORMAT, "isd.aid: length 4 bytes"},
    {"isd aid long",
     "{\"type\":\"eSE\",\"isd\":{\"aid\":\"A0000001510000000000000000000000FF\",\"keys\":[" KEYSET
     "]}}",
     OT_E_FORMAT, "isd.aid: length 17 bytes"},
    {"key bad hex",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":"
     "\"40414243444546474849ZZ4B4C4D4E4F\",\"mac\":" KEY40 ",\"dek\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].enc: bad hex"},
    {"aes key 15 bytes",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":" KEY40
     ",\"mac\":\"404142434445464748494A4B4C4D4E\",\"dek\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].mac: key length"},
    {"des key 32 bytes",
     "{\"type\":\"eSE\",\"isd\":{\"scp\":2,\"keys\":[{\"kvn\":1,\"type\":\"des\",\"enc\":" KEY40
     ",\"mac\":" KEY40
     ",\"dek\":\"404142434445464748494A4B4C4D4E4F404142434445464748494A4B4C4D4E4F\"}]}}",
     OT_E_FORMAT, "isd.keys[0].dek: key length"},
    {"scp03 des keys",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":1,\"type\":\"des\",\"enc\":" KEY40
     ",\"mac\":" KEY40 ",\"dek\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].type: an SCP03 key set must be aes"},
    {"key type rsa",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":1,\"type\":\"rsa\",\"enc\":" KEY40
     ",\"mac\":" KEY40 ",\"dek\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].type: must be"},
    {"kvn zero",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":0,\"type\":\"aes\",\"enc\":" KEY40
     ",\"mac\":" KEY40 ",\"dek\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].kvn: 0 out of range"},
    {"kvn string",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":\"30\",\"type\":\"aes\",\"enc\":" KEY40
     ",\"mac\":" KEY40 ",\"dek\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].kvn: must be an integer"},
    {"key missing dek",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":" KEY40
     ",\"mac\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].dek: missing"},
    {"key unknown field",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":48,\"kcv\":\"00\",\"type\":\"aes\","
     "\"enc\":" KEY40 ",\"mac\":" KEY40 ",\"dek\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].kcv: unknown field"},
    {"kid without value",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":48,\"kid\":1,\"type\":\"aes\",\"enc\":" KEY40
     ",\"mac\":" KEY40 ",\"dek\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].kid: only for a single key"},
    {"value with enc",
     "{\"type\":\"eSE\",\"isd\":{\"keys\":[{\"kvn\":48,\"kid\":1,\"type\":\"aes\",\"value\":" KEY40
     ",\"enc\":" KEY40 "}]}}",
     OT_E_FORMAT, "isd.keys[0].enc: not allowed with value"},
    {"duplicate key set", "{\"type\":\"eSE\",\"isd\":{\"keys\":[" KEYSET "," KEYSET "]}}",
     OT_E_FORMAT, "isd.keys[1]: duplicate key version"},
    {"seq too big", "{\"type\":\"eSE\",\"isd\":{\"seq\":16777216,\"keys\":[" KEYSET "]}}",
     OT_E_FORMAT, "isd.seq: 16777216 out of range"},
    {"i two bytes", "{\"type\":\"eSE\",\"isd\":{\"i\":\"1010\",\"keys\":[" KEYSET "]}}",
     OT_E_FORMAT, "isd.i: length 2 bytes"},
    {"scp 1", "{\"type\":\"eSE\",\"isd\":{\"scp\":1,\"keys\":[" KEYSET "]}}", OT_E_FORMAT,
     "isd.scp: 1 out of range"},
    {"privilege unknown",
     "{\"type\":\"eSE\",\"isd\":{\"privileges\":\"security-domain,bogus\",\"keys\":[" KEYSET "]}}",
     OT_E_FORMAT, "isd.privileges: unknown privilege"},
    {"privilege list entry",
     "{\"type\":\"eSE\",\"isd\":{\"privileges\":[\"security-domain\",\"x\"],\"keys\":[" KEYSET
     "]}}",
     OT_E_FORMAT, "isd.privileges[1]: unknown privilege"},
    {"privilege list not string",
     "{\"type\":\"eSE\",\"isd\":{\"privileges\":[128],\"keys\":[" KEYSET "]}}", OT_E_FORMAT,
     "isd.privileges[0]: must be a string"},
    {"privileges AM+DM",
     "{\"type\":\"eSE\",\"isd\":{\"privileges\":\"A04000\",\"keys\":[" KEYSET "]}}", OT_E_FORMAT,
     "isd.privileges:"},
    {"isd without SD",
     "{\"type\":\"eSE\",\"isd\":{\"privileges\":\"100000\",\"keys\":[" KEYSET "]}}", OT_E_FORMAT,
     "isd.privileges: the ISD needs security-domain"},
    {"packages not array", HEAD ",\"packages\":{}}", OT_E_FORMAT, "packages: must be an array"},
    {"package unknown module", HEAD ",\"packages\":[{\"module\":\"bogus\"}]}", OT_E_FORMAT,
     "packages[0].module: unknown native module"},
    {"package aid differs", HEAD ",\"packages\":[{\"module\":\"ppse\",\"aid\":\"F04F54534D02\"}]}",
     OT_E_FORMAT, "packages[0].aid: differs"},
    {"package no aid", HEAD ",\"packages\":[{\"version\":\"0100\"}]}", OT_E_FORMAT,
     "packages[0].aid: missing"},
    {"package duplicate", HEAD ",\"packages\":[{\"module\":\"ppse\"},{\"aid\":\"F04F54534D01\"}]}",
     OT_E_FORMAT, "packages[1].aid: duplicate AID"},
    {"package = ssd package", HEAD ",\"packages\":[{\"aid\":\"A0000001515350\"}]}", OT_E_FORMAT,
     "packages[0].aid: duplicate AID"},
    {"package = isd aid", HEAD ",\"packages\":[{\"aid\":\"A000000151000000\"}]}", OT_E_FORMAT,
     "packages[0].aid: duplicate AID"},
    {"package sd missing", HEAD ",\"packages\":[{\"module\":\"ppse\",\"sd\":\"A0000000990000\"}]}",
     OT_E_FORMAT, "packages[0].sd: no such security domain"},
    {"package version", HEAD ",\"packages\":[{\"module\":\"ppse\",\"version\":\"01\"}]}",
     OT_E_FORMAT, "packages[0].version: length 1"},
    {"package modules type", HEAD ",\"packages\":[{\"module\":\"ppse\",\"modules\":\"F0\"}]}",
     OT_E_FORMAT, "packages[0].modules: must be an array"},
    {"package module aid", HEAD ",\"packages\":[{\"module\":\"ppse\",\"modules\":[\"F0\"]}]}",
     OT_E_FORMAT, "packages[0].modules[0]: must be a hex AID"},
    {"package size", HEAD ",\"packages\":[{\"module\":\"ppse\",\"size\":-1}]}", OT_E_FORMAT,
     "packages[0].size: -1 out of range"},
    {"packages exceed memory",
     HEAD ",\"packages\":[{\"module\":\"ppse\",\"size\":200000},{\"module\":\"wallet\",\"size\":"
          "100000}]}",
     OT_E_FORMAT, "packages[1].size: the packages exceed"},
    {"domain no aid", HEAD ",\"domains\":[{\"privileges\":\"800000\"}]}", OT_E_FORMAT,
     "domains[0].aid: missing"},
    {"domain duplicate isd", HEAD ",\"domains\":[{\"aid\":\"A000000151000000\"}]}", OT_E_FORMAT,
     "domains[0].aid: duplicate AID"},
    {"domain self", HEAD ",\"domains\":[{\"aid\":\"A00000000201\",\"sd\":\"A00000000201\"}]}",
     OT_E_FORMAT, "domains[0].sd: a domain cannot be associated with itself"},
    {"domain loop",
     HEAD ",\"domains\":[{\"aid\":\"A00000000201\",\"sd\":\"A00000000202\"},"
          "{\"aid\":\"A00000000202\",\"sd\":\"A00000000201\"}]}",
     OT_E_FORMAT, "domains[0].sd: associations form a loop"},
    {"domain lcs", HEAD ",\"domains\":[{\"aid\":\"A00000000201\",\"lcs\":\"SECURED\"}]}",
     OT_E_FORMAT, "domains[0].lcs: unknown life-cycle"},
    {"domain DM+AM",
     HEAD ",\"domains\":[{\"aid\":\"A00000000201\",\"privileges\":[\"delegated-management\","
          "\"authorized-management\"]}]}",
     OT_E_FORMAT, "domains[0].privileges:"},
    {"domain aes key in scp02",
     HEAD ",\"domains\":[{\"aid\":\"A00000000201\",\"scp\":2,\"keys\":[" KEYSET "]}]}", OT_E_FORMAT,
     "domains[0].keys[0].type: an SCP02 key set must be des"},
    {"app missing package", APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D02\"}"), OT_E_FORMAT,
     "applications[0].package: no such package"},
    {"app no package", APP("{\"aid\":" PPSE "}"), OT_E_FORMAT, "applications[0].package: missing"},
    {"app of opaque package",
     HEAD ",\"packages\":[{\"aid\":\"A00000000101\",\"modules\":[\"A0000000010101\"]}],"
          "\"applications\":[{\"aid\":\"A0000000010102\",\"package\":\"A00000000101\"}]}",
     OT_E_FORMAT, "applications[0].package: the package has no native module"},
    {"app of ssd package", APP("{\"aid\":\"A00000000201\",\"package\":\"A0000001515350\"}"),
     OT_E_FORMAT, "applications[0].package: security domains go in"},
    {"app module not in package",
     APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D01\",\"module\":\"F04F54534D0102\"}"),
     OT_E_FORMAT, "applications[0].module: not a module of the package"},
    {"app sd missing",
     APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D01\",\"sd\":\"A00000000201\"}"), OT_E_FORMAT,
     "applications[0].sd: no such security domain"},
    {"app sd is an app",
     APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D01\"},{\"aid\":\"F04F54534D0101AA\","
         "\"package\":\"F04F54534D01\",\"sd\":" PPSE "}"),
     OT_E_FORMAT, "applications[1].sd: no such security domain"},
    {"app duplicate",
     APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D01\"},{\"aid\":" PPSE
         ",\"package\":\"F04F54534D01\"}"),
     OT_E_FORMAT, "applications[1].aid: duplicate AID"},
    {"app aid = package", APP("{\"aid\":\"F04F54534D01\",\"package\":\"F04F54534D01\"}"),
     OT_E_FORMAT, "applications[0].aid: duplicate AID"},
    {"app security-domain",
     APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D01\",\"privileges\":\"800000\"}"), OT_E_FORMAT,
     "applications[0].privileges: security-domain"},
    {"app lcs", APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D01\",\"lcs\":\"PERSONALIZED\"}"),
     OT_E_FORMAT, "applications[0].lcs: unknown life-cycle"},
    {"app params long",
     APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D01\",\"params\":\""
         "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "\"}"),
     OT_E_FORMAT, "applications[0].params: length 161"},
    {"app unknown field", APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D01\",\"data\":\"00\"}"),
     OT_E_FORMAT, "applications[0].data: unknown field"},
    {"two card-reset holders",
     APP("{\"aid\":" PPSE ",\"package\":\"F04F54534D01\",\"privileges\":\"card-reset\"},"
         "{\"aid\":\"F04F54534D0101AA\",\"package\":\"F04F54534D01\",\"privileges\":"
         "\"card-reset\"}"),
     OT_E_FORMAT, "privileges: card-reset held twice"},
};

static char *g_log_buf;
static size_t g_log_len;
static FILE *g_log;

static void log_capture(void)
{
    struct ot_log_cfg cfg = {.level = OT_LOG_LVL_WARN, .format = OT_LOG_FMT_TEXT};
    g_log = open_memstream(&g_log_buf, &g_log_len);
    assert_non_null(g_log);
    cfg.out = g_log;
    ot_log_configure(&cfg);
}

static void log_release(void)
{
    struct ot_log_cfg cfg = {.level = OT_LOG_LVL_WARN, .format = OT_LOG_FMT_TEXT};
    ot_log_configure(&cfg);
    fclose(g_log);
    free(g_log_buf);
    g_log_buf = NULL;
    g_log = NULL;
}

static void test_bad_rows(void **state)
{
    (void)state;
    struct se_state *st = calloc(1, sizeof(*st));
    struct se_state *copy = calloc(1, sizeof(*copy));
    assert_non_null(st);
    assert_non_null(copy);
    memset(st, 0x5A, sizeof(*st));
    memcpy(copy, st, sizeof(*st));
    for (size_t i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++) {
        const struct bad_row *r = &bad_rows[i];
        log_capture();
        ot_err err = se_profile_load(r->json, strlen(r->json), st);
        fflush(g_log);
        if (err != r->err || g_log_buf == NULL || strstr(g_log_buf, r->log) == NULL) {
            print_error("row '%s': err %d, log: %s\n", r->name, (int)err,
                        g_log_buf != NULL ? g_log_buf : "(none)");
        }
        assert_int_equal(err, r->err);
        assert_non_null(g_log_buf);
        assert_non_null(strstr(g_log_buf, r->log));
        log_release();
        /* a refused profile leaves the state as it was */
        assert_memory_equal(st, copy, sizeof(*st));
    }
    free(st);
    free(copy);
}

/* Caps: too many applications / packages give OT_E_LIMIT. */
static void test_limits(void **state)
{
    (void)state;
    struct ot_buf b;
    struct se_state *st = calloc(1, sizeof(*st));
    char item[160];

    assert_non_null(st);
    ot_buf_init(&b, 0);
    const char *head = HEAD ",\"packages\":[{\"module\":\"ppse\"}],\"applications\":[";
    assert_int_equal(ot_buf_append(&b, head, strlen(head)), OT_OK);
    for (unsigned i = 0; i < SE_MAX_APPS; i++) { /* + the ISD = one too many */
        snprintf(item, sizeof(item),
                 "%s{\"aid\":\"F04F54534D0101%04X\",\"package\":\"F04F54534D01\"}",
                 i == 0 ? "" : ",", i);
        assert_int_equal(ot_buf_append(&b, item, strlen(item)), OT_OK);
    }
    assert_int_equal(ot_buf_append(&b, "]}", 2), OT_OK);
    assert_int_equal(se_profile_load((const char *)b.data, b.len, st), OT_E_LIMIT);
    ot_buf_reset(&b);

    const char *head2 = HEAD ",\"packages\":[";
    assert_int_equal(ot_buf_append(&b, head2, strlen(head2)), OT_OK);
    for (unsigned i = 0; i < SE_MAX_ELFS; i++) { /* + the SSD package = one too many */
        snprintf(item, sizeof(item), "%s{\"aid\":\"A0000000%04X\",\"size\":0}", i == 0 ? "" : ",",
                 i);
        assert_int_equal(ot_buf_append(&b, item, strlen(item)), OT_OK);
    }
    assert_int_equal(ot_buf_append(&b, "]}", 2), OT_OK);
    assert_int_equal(se_profile_load((const char *)b.data, b.len, st), OT_E_LIMIT);
    ot_buf_free(&b);
    se_state_clear(st);
    free(st);
}

/* se_profile_install_apps: every application's module gets its install
 * parameters; a module refusing them refuses the profile. */
static void test_install_apps(void **state)
{
    (void)state;
    static const char good[] = HEAD ",\"packages\":[{\"module\":\"transit\"}],"
                                    "\"applications\":[{\"aid\":\"F04F54534D0301AA\","
                                    "\"package\":\"F04F54534D03\",\"params\":\"DF0504000003E8\"}]}";
    static const char bad[] = HEAD ",\"packages\":[{\"module\":\"emv-payment\"}],"
                                   "\"applications\":[{\"aid\":\"A0000000041010\","
                                   "\"package\":\"F04F54534D02\",\"params\":\"FFFF\"}]}";
    struct se_card *c = NULL;

    assert_int_equal(se_card_from_profile(good, strlen(good), &c), OT_OK);
    assert_int_equal(c->st.napps, 2);
    assert_true(c->st.apps[1].data_len > 0);
    assert_int_equal(c->st.apps[1].params_len, 7);
    se_card_free(c);
    c = NULL;
    log_capture();
    assert_int_equal(se_card_from_profile(bad, strlen(bad), &c), OT_E_FORMAT);
    fflush(g_log);
    assert_non_null(g_log_buf);
    assert_non_null(strstr(g_log_buf, "application A0000000041010: module emv-payment refused"));
    log_release();
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dev),          cmocka_unit_test(test_ese_central),
        cmocka_unit_test(test_thirdparty),   cmocka_unit_test(test_uicc_central),
        cmocka_unit_test(test_cplc_default), cmocka_unit_test(test_good_variants),
        cmocka_unit_test(test_bad_rows),     cmocka_unit_test(test_limits),
        cmocka_unit_test(test_install_apps), cmocka_unit_test(test_every_shipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
