/* Key store (keystore.h): the same suite on the file back end and on the
 * pkcs11 back end over SoftHSM2 (a token initialised in a temp directory
 * through SOFTHSM2_CONF), on SQLite or on PostgreSQL with "pg". */
#include "db/keystore.h"
#include "db/sec_testutil.h"

#include "db/db.h"

#include "core/buf.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define RESET_SQL                                                                      \
    "DROP TABLE IF EXISTS host_keys; DROP TABLE IF EXISTS keystore_keys; DELETE FROM " \
    "schema_migrations WHERE service ="                                                \
    " 'keystore'"

#define KEK_A_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define KEK_B_HEX "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define P11_TOKEN "opentsm-test"
#define P11_PIN   "1234"

static char g_hsm_dir[256]; /* SoftHSM2 token directory for this run */

struct fx {
    struct sec_t *t;
    struct keystore *ks;
    enum keystore_backend backend;
    char kek_path[600];
};

/* ---- back end set-up ------------------------------------------------------ */

/* Runs argv (PATH lookup, no shell) with stdout to /dev/null; its exit
 * status, or -1 when it could not run. */
static int run_quiet(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    pid_t pid = -1;
    int st = 0;
    int rc;

    if (posix_spawn_file_actions_init(&fa) != 0) {
        return -1;
    }
    rc = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (rc == 0) {
        rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    }
    (void)posix_spawn_file_actions_destroy(&fa);
    if (rc != 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
        return -1;
    }
    return WEXITSTATUS(st);
}

/* rm -rf path (no symlinks followed); 0 on success. */
static int remove_tree(const char *path)
{
    struct stat sb;
    DIR *d;
    struct dirent *de;
    char sub[1024];
    int rc = 0;

    if (lstat(path, &sb) != 0) {
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        return unlink(path);
    }
    d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) >= sizeof sub) {
            rc = -1;
        } else {
            rc = remove_tree(sub);
        }
    }
    (void)closedir(d);
    return rc == 0 ? rmdir(path) : rc;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

static void cfg_for(struct fx *f, struct keystore_cfg *cfg, const char *which)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->backend = f->backend;
    if (f->backend == KEYSTORE_FILE) {
        const char *hex = strcmp(which, "b") == 0 ? KEK_B_HEX : KEK_A_HEX;

        snprintf(f->kek_path, sizeof f->kek_path, "%s/kek-%s", f->t->dir[0] ? f->t->dir : "/tmp",
                 which);
        write_file(f->kek_path, hex, strlen(hex));
        cfg->kek_path = f->kek_path;
    } else {
        cfg->pkcs11_token_label = P11_TOKEN;
        cfg->pkcs11_pin = P11_PIN;
        cfg->pkcs11_key_label = strcmp(which, "b") == 0 ? "kek-b" : "kek-a";
        cfg->pkcs11_create_key = true;
    }
}

static int hsm_group_setup(void **state)
{
    char conf[600];
    char text[700];
    char *const argv[] = {"softhsm2-util", "--init-token", "--free",   "--label", P11_TOKEN,
                          "--pin",         P11_PIN,        "--so-pin", "5678",    NULL};

    (void)state;
    snprintf(g_hsm_dir, sizeof g_hsm_dir, "/tmp/ot_hsm_XXXXXX");
    assert_non_null(mkdtemp(g_hsm_dir));
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", g_hsm_dir);
    snprintf(text, sizeof text,
             "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
             g_hsm_dir);
    write_file(conf, text, strlen(text));
    assert_int_equal(setenv("SOFTHSM2_CONF", conf, 1), 0);
    assert_int_equal(run_quiet(argv), 0);
    return 0;
}

static int hsm_group_teardown(void **state)
{
    (void)state;
    if (g_hsm_dir[0] != '\0' && strncmp(g_hsm_dir, "/tmp/ot_hsm_", 12) == 0) {
        assert_int_equal(remove_tree(g_hsm_dir), 0);
    }
    return 0;
}

static int setup_backend(void **state, enum keystore_backend b)
{
    struct fx *f = calloc(1, sizeof *f);
    struct keystore_cfg cfg;

    assert_non_null(f);
    f->t = sec_t_open(RESET_SQL);
    f->backend = b;
    cfg_for(f, &cfg, "a");
    assert_int_equal(keystore_open(f->t->db, &cfg, &f->ks), OT_OK);
    *state = f;
    return 0;
}

static int setup_file(void **state)
{
    return setup_backend(state, KEYSTORE_FILE);
}

static int setup_pkcs11(void **state)
{
    return setup_backend(state, KEYSTORE_PKCS11);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    keystore_free(f->ks);
    if (f->kek_path[0] != '\0') {
        char p[700];

        snprintf(p, sizeof p, "%s/kek-a", f->t->dir[0] ? f->t->dir : "/tmp");
        (void)unlink(p);
        snprintf(p, sizeof p, "%s/kek-b", f->t->dir[0] ? f->t->dir : "/tmp");
        (void)unlink(p);
    }
    sec_t_close(f->t);
    free(f);
    return 0;
}

/* ---- the suite, run on each back end ------------------------------------- */

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(seed + i * 7u + (i >> 8));
    }
}

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    static const size_t lens[] = {1, 16, 32, 48, 255, KEYSTORE_KEY_MAX};

    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t key[KEYSTORE_KEY_MAX];
        uint8_t got[KEYSTORE_KEY_MAX];
        size_t got_len = sizeof got;
        uint32_t ver = 0;

        fill(key, lens[i], (uint8_t)i);
        assert_int_equal(keystore_put(f->ks, "se:1", "isd.scp03", (uint32_t)(i + 1), key, lens[i]),
                         OT_OK);
        assert_int_equal(
            keystore_get(f->ks, "se:1", "isd.scp03", (uint32_t)(i + 1), got, &got_len, &ver),
            OT_OK);
        assert_int_equal(got_len, lens[i]);
        assert_memory_equal(got, key, lens[i]);
        assert_int_equal(ver, i + 1);
    }
    /* version 0 reads the newest */
    {
        uint8_t got[KEYSTORE_KEY_MAX];
        size_t got_len = sizeof got;
        uint32_t ver = 0;

        assert_int_equal(keystore_get(f->ks, "se:1", "isd.scp03", 0, got, &got_len, &ver), OT_OK);
        assert_int_equal(ver, 6);
        assert_int_equal(got_len, KEYSTORE_KEY_MAX);
    }
}

static void test_errors(void **state)
{
    struct fx *f = *state;
    uint8_t key[32];
    uint8_t got[64];
    size_t got_len = 0;
    char long_owner[KEYSTORE_OWNER_MAX + 2];

    fill(key, sizeof key, 9);
    memset(long_owner, 'o', sizeof long_owner - 1);
    long_owner[sizeof long_owner - 1] = '\0';
    const struct {
        const char *owner;
        const char *name;
        uint32_t version;
        size_t len;
        ot_err want;
    } puts_[] = {
        {"sp:1", "k", 1, 32, OT_OK},
        {"sp:1", "k", 1, 32, OT_E_CONFLICT}, /* versions are immutable */
        {"sp:1", "k", 2, 16, OT_OK},
        {"", "k", 1, 32, OT_E_ARG},
        {"sp:1", "", 1, 32, OT_E_ARG},
        {NULL, "k", 1, 32, OT_E_ARG},
        {long_owner, "k", 1, 32, OT_E_ARG},
        {"sp:1", "k", 0, 32, OT_E_ARG},           /* 0 means "latest" on read only */
        {"sp:1", "k", 0x80000000u, 32, OT_E_ARG}, /* beyond INT32_MAX */
        {"sp:1", "k", 3, 0, OT_E_ARG},
        {"sp:1", "k", 3, KEYSTORE_KEY_MAX + 1, OT_E_ARG},
    };
    for (size_t i = 0; i < sizeof puts_ / sizeof puts_[0]; i++) {
        static uint8_t big[KEYSTORE_KEY_MAX + 1];

        print_message("put case %zu\n", i);
        assert_int_equal(keystore_put(f->ks, puts_[i].owner, puts_[i].name, puts_[i].version,
                                      puts_[i].len > sizeof key ? big : key, puts_[i].len),
                         puts_[i].want);
    }
    /* Buffer too small: the size needed comes back. */
    got_len = 8;
    assert_int_equal(keystore_get(f->ks, "sp:1", "k", 1, got, &got_len, NULL), OT_E_BUF_SMALL);
    assert_int_equal(got_len, 32);
    got_len = sizeof got;
    assert_int_equal(keystore_get(f->ks, "sp:1", "k", 1, got, &got_len, NULL), OT_OK);
    assert_memory_equal(got, key, 32);
    got_len = sizeof got;
    assert_int_equal(keystore_get(f->ks, "sp:1", "nope", 0, got, &got_len, NULL), OT_E_NOT_FOUND);
    assert_int_equal(keystore_get(f->ks, "sp:1", "k", 7, got, &got_len, NULL), OT_E_NOT_FOUND);
    assert_int_equal(keystore_get(f->ks, "sp:2", "k", 1, got, &got_len, NULL), OT_E_NOT_FOUND);
    /* delete one version, then all */
    assert_int_equal(keystore_delete(f->ks, "sp:1", "k", 2), OT_OK);
    assert_int_equal(keystore_delete(f->ks, "sp:1", "k", 2), OT_E_NOT_FOUND);
    got_len = sizeof got;
    assert_int_equal(keystore_get(f->ks, "sp:1", "k", 0, got, &got_len, NULL), OT_OK);
    assert_int_equal(got_len, 32);
    assert_int_equal(keystore_delete(f->ks, "sp:1", "k", 0), OT_OK);
    assert_int_equal(keystore_get(f->ks, "sp:1", "k", 0, got, &got_len, NULL), OT_E_NOT_FOUND);
    assert_int_equal(keystore_delete(f->ks, "sp:1", "k", 0), OT_E_NOT_FOUND);
}

/* A blob opened under another KEK does not open. */
/* Issue 9 point 2: a store holding keys sealed under one KEK refuses to
 * open with another (naming both ids), so nothing is ever sealed under a
 * wrong KEK; a row sealed under another KEK does not open. */
static void test_wrong_kek(void **state)
{
    struct fx *f = *state;
    struct keystore_cfg cfg;
    struct keystore *other = NULL;
    uint8_t key[32];
    uint8_t got[32];
    size_t got_len = sizeof got;
    char why[512] = "";
    char id_a[80];

    fill(key, sizeof key, 3);
    assert_int_equal(keystore_put(f->ks, "se:9", "dek", 1, key, sizeof key), OT_OK);
    {
        struct db_conn *c = NULL;
        struct db_stmt *st = NULL;
        bool row = false;
        size_t len = sizeof id_a;

        assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
        assert_int_equal(db_prepare(c, "SELECT kek_id FROM host_keys", &st), OT_OK);
        assert_int_equal(db_step(st, &row), OT_OK);
        assert_true(row);
        assert_int_equal(db_col_text_copy(st, 0, id_a, &len), OT_OK);
        db_reset(st);
        db_release(c);
    }
    cfg_for(f, &cfg, "b");
    cfg.why = why;
    cfg.why_cap = sizeof why;
    assert_int_equal(keystore_open(f->t->db, &cfg, &other), OT_E_KEY);
    assert_null(other);
    print_message("why: %s\n", why);
    assert_non_null(strstr(why, "wrong KEK"));
    assert_non_null(strstr(why, id_a));
    assert_non_null(strstr(why, "the configured KEK is "));
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_keys", 0, NULL), 1);

    /* an empty store opens under B; a row sealed under B does not open
     * under A, and A is then refused in turn */
    sec_t_exec(f->t->db, "DELETE FROM host_keys");
    why[0] = '\0';
    assert_int_equal(keystore_open(f->t->db, &cfg, &other), OT_OK);
    assert_int_equal(keystore_put(other, "se:9", "dek", 2, key, sizeof key), OT_OK);
    assert_int_equal(keystore_get(f->ks, "se:9", "dek", 2, got, &got_len, NULL), OT_E_CORRUPT);
    got_len = sizeof got;
    assert_int_equal(keystore_get(other, "se:9", "dek", 2, got, &got_len, NULL), OT_OK);
    assert_memory_equal(got, key, sizeof key);
    keystore_free(other);
    other = NULL;
    cfg_for(f, &cfg, "a");
    cfg.why = why;
    cfg.why_cap = sizeof why;
    assert_int_equal(keystore_open(f->t->db, &cfg, &other), OT_E_KEY);
    assert_non_null(strstr(why, id_a));
}

static void read_blob(struct db *db, uint8_t *out, size_t *n)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    const uint8_t *p = NULL;
    bool row = false;

    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_prepare(c,
                                "SELECT sealed FROM host_keys WHERE owner = 'se:5' AND"
                                " name = 'mac' AND version = 1",
                                &st),
                     OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    assert_true(row);
    assert_int_equal(db_col_blob(st, 0, &p, n), OT_OK);
    memcpy(out, p, *n);
    db_reset(st);
    db_release(c);
}

static void write_blob(struct db *db, const uint8_t *b, size_t n)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;

    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_prepare(c,
                                "UPDATE host_keys SET sealed = $1 WHERE owner = 'se:5' AND"
                                " name = 'mac' AND version = 1",
                                &st),
                     OT_OK);
    assert_int_equal(db_bind_blob(st, 1, b, n), OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    assert_int_equal(db_changes(st), 1);
    db_reset(st);
    db_release(c);
}

/* Any change to the stored blob, or moving it to another identity, fails. */
static void test_tamper(void **state)
{
    struct fx *f = *state;
    uint8_t key[24];
    uint8_t orig[256];
    size_t orig_len = 0;
    static const struct {
        const char *what;
        int pos; /* byte to flip; -1 truncate by one; -2 empty */
        ot_err want;
    } cases[] = {
        {"format byte", 0, OT_E_CORRUPT}, {"nonce", 5, OT_E_CORRUPT},
        {"ciphertext", 14, OT_E_CORRUPT}, {"tag", 13 + 24 + 15, OT_E_CORRUPT},
        {"truncated", -1, OT_E_CORRUPT},  {"empty", -2, OT_E_CORRUPT},
    };

    fill(key, sizeof key, 0x40);
    assert_int_equal(keystore_put(f->ks, "se:5", "mac", 1, key, sizeof key), OT_OK);
    read_blob(f->t->db, orig, &orig_len);
    assert_int_equal(orig_len, 1 + 12 + sizeof key + 16);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[256];
        size_t n = orig_len;
        uint8_t got[64];
        size_t got_len = sizeof got;

        print_message("tamper %s\n", cases[i].what);
        memcpy(b, orig, orig_len);
        if (cases[i].pos >= 0) {
            b[cases[i].pos] ^= 0x01;
        } else if (cases[i].pos == -1) {
            n--;
        } else {
            n = 0;
        }
        write_blob(f->t->db, b, n);
        assert_int_equal(keystore_get(f->ks, "se:5", "mac", 1, got, &got_len, NULL), cases[i].want);
    }
    write_blob(f->t->db, orig, orig_len);
    {
        uint8_t got[64];
        size_t got_len = sizeof got;

        assert_int_equal(keystore_get(f->ks, "se:5", "mac", 1, got, &got_len, NULL), OT_OK);
        assert_memory_equal(got, key, sizeof key);
    }
    /* AAD: the blob moved to another owner, name or version. */
    static const struct {
        const char *sql;
        const char *owner;
        const char *name;
        uint32_t version;
    } moves[] = {
        {"UPDATE host_keys SET owner = 'se:6' WHERE owner = 'se:5'", "se:6", "mac", 1},
        {"UPDATE host_keys SET name = 'enc' WHERE owner = 'se:6'", "se:6", "enc", 1},
        {"UPDATE host_keys SET version = 2 WHERE owner = 'se:6'", "se:6", "enc", 2},
    };
    for (size_t i = 0; i < sizeof moves / sizeof moves[0]; i++) {
        uint8_t got[64];
        size_t got_len = sizeof got;

        sec_t_exec(f->t->db, moves[i].sql);
        assert_int_equal(keystore_get(f->ks, moves[i].owner, moves[i].name, moves[i].version, got,
                                      &got_len, NULL),
                         OT_E_CORRUPT);
    }
}

/* The key bytes are nowhere in the database files, and neither are the
 * KEK bytes. */
static void test_no_plaintext_in_db(void **state)
{
    struct fx *f = *state;
    uint8_t key[32];
    uint8_t kek[32];
    size_t kl = sizeof kek;

    if (sec_t_is_pg()) {
        skip(); /* the files are the server's; the SQLite run covers this */
    }
    for (size_t i = 0; i < sizeof key; i++) {
        key[i] = (uint8_t)(0xA5 ^ (i * 37u));
    }
    assert_int_equal(keystore_put(f->ks, "dev:77", "cred", 1, key, sizeof key), OT_OK);
    assert_false(sec_t_file_contains(f->t, key, sizeof key));
    assert_false(sec_t_file_contains(f->t, key, 8)); /* not even a prefix */
    assert_int_equal(hex_decode(KEK_A_HEX, 64, kek, &kl), OT_OK);
    assert_false(sec_t_file_contains(f->t, kek, sizeof kek));
    assert_false(sec_t_file_contains(f->t, KEK_A_HEX, 64));
    /* the search itself finds what is there */
    assert_true(sec_t_file_contains(f->t, "dev:77", 6));
}

/* keystore_put_tx: inside the caller's transaction, existing versions
 * left alone without aborting it, several statements for a large batch. */
static size_t count_keys(struct db *db)
{
    return (size_t)sec_t_int(db, "SELECT COUNT(*) FROM host_keys", 0, NULL);
}

static void test_put_tx(void **state)
{
    struct fx *f = *state;
    enum { NBIG = 300 }; /* more than one statement's worth (256) */
    static char owners[NBIG][16];
    static uint8_t keys[NBIG][48];
    struct keystore_item items[NBIG];
    struct db_conn *c = NULL;
    uint8_t got[64];
    size_t got_len = sizeof got;
    size_t stored = 99;

    for (size_t i = 0; i < NBIG; i++) {
        snprintf(owners[i], sizeof owners[i], "se:%zu", i);
        fill(keys[i], sizeof keys[i], (uint8_t)i);
        items[i] = (struct keystore_item){owners[i], "isd.keyset", 1, keys[i], 16 + i % 33};
    }
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);

    /* No transaction open on c. */
    assert_int_equal(keystore_put_tx(f->ks, c, items, 1, &stored), OT_E_STATE);
    assert_int_equal(stored, 0);
    assert_int_equal(keystore_put_tx(f->ks, c, items, 0, &stored), OT_OK);
    assert_int_equal(keystore_put_tx(NULL, c, items, 1, NULL), OT_E_ARG);
    assert_int_equal(keystore_put_tx(f->ks, NULL, items, 1, NULL), OT_E_ARG);
    assert_int_equal(keystore_put_tx(f->ks, c, NULL, 1, NULL), OT_E_ARG);
    {
        /* A connection of another database handle: refused, nothing written. */
        struct db *other = NULL;
        struct db_conn *oc = NULL;
        char url[600];

        if (sec_t_is_pg()) {
            snprintf(url, sizeof url, "%s", sec_t_pg_url);
        } else {
            snprintf(url, sizeof url, "sqlite:%s", f->t->path);
        }
        assert_int_equal(db_open(url, NULL, &other), OT_OK);
        assert_int_equal(db_acquire(other, &oc), OT_OK);
        assert_int_equal(db_begin(oc), OT_OK);
        assert_int_equal(keystore_put_tx(f->ks, oc, items, 1, &stored), OT_E_ARG);
        assert_int_equal(stored, 0);
        assert_int_equal(db_rollback(oc), OT_OK);
        db_release(oc);
        db_close(other);
    }

    /* A bad item anywhere: nothing written, the transaction still usable. */
    {
        static const struct {
            const char *owner;
            const char *name;
            uint32_t version;
            size_t len;
        } bad[] = {
            {"", "k", 1, 16},
            {"se:x", "", 1, 16},
            {NULL, "k", 1, 16},
            {"se:x", "k", 0, 16},
            {"se:x", "k", 0x80000000u, 16},
            {"se:x", "k", 1, 0},
            {"se:x", "k", 1, KEYSTORE_KEY_MAX + 1},
        };
        static uint8_t big[KEYSTORE_KEY_MAX + 1];

        assert_int_equal(db_begin(c), OT_OK);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            struct keystore_item two[2] = {
                items[0],
                {bad[i].owner, bad[i].name, bad[i].version, big, bad[i].len},
            };

            print_message("put_tx bad item %zu\n", i);
            assert_int_equal(keystore_put_tx(f->ks, c, two, 2, &stored), OT_E_ARG);
            assert_int_equal(stored, 0);
        }
        {
            struct keystore_item nokey = {"se:x", "k", 1, NULL, 16};

            assert_int_equal(keystore_put_tx(f->ks, c, &nokey, 1, NULL), OT_E_ARG);
        }
        assert_int_equal(db_commit(c), OT_OK);
        assert_int_equal(count_keys(f->t->db), 0);
    }

    /* Rolled back: nothing stored. The same identity twice stores one. */
    {
        struct keystore_item dup[3] = {items[0], items[1], items[0]};

        assert_int_equal(db_begin(c), OT_OK);
        assert_int_equal(keystore_put_tx(f->ks, c, dup, 3, &stored), OT_OK);
        assert_int_equal(stored, 2);
        assert_int_equal(db_rollback(c), OT_OK);
        assert_int_equal(count_keys(f->t->db), 0);
        assert_int_equal(keystore_get(f->ks, owners[0], "isd.keyset", 1, got, &got_len, NULL),
                         OT_E_NOT_FOUND);
    }

    /* A large batch, committed: every key opens. */
    assert_int_equal(db_begin(c), OT_OK);
    assert_int_equal(keystore_put_tx(f->ks, c, items, NBIG, &stored), OT_OK);
    assert_int_equal(stored, NBIG);
    assert_int_equal(db_commit(c), OT_OK);
    assert_int_equal(count_keys(f->t->db), NBIG);
    for (size_t i = 0; i < NBIG; i += 37) {
        got_len = sizeof got;
        assert_int_equal(keystore_get(f->ks, owners[i], "isd.keyset", 1, got, &got_len, NULL),
                         OT_OK);
        assert_int_equal(got_len, items[i].key_len);
        assert_memory_equal(got, keys[i], items[i].key_len);
    }

    /* Again, with other bytes for version 1 and a new version 2 of one key:
     * the existing versions stay, and the transaction goes on (PostgreSQL
     * would refuse every later statement after an error). */
    {
        uint8_t other[16];
        struct keystore_item again[3] = {items[5], items[6], items[7]};

        fill(other, sizeof other, 0xEE);
        again[0].key = other;
        again[0].key_len = sizeof other;
        again[2].version = 2;
        again[2].key = other;
        again[2].key_len = sizeof other;
        assert_int_equal(db_begin(c), OT_OK);
        assert_int_equal(keystore_put_tx(f->ks, c, again, 3, &stored), OT_OK);
        assert_int_equal(stored, 1);
        assert_int_equal(keystore_put_tx(f->ks, c, again, 3, &stored), OT_OK);
        assert_int_equal(stored, 0);
        assert_int_equal(db_commit(c), OT_OK);
        got_len = sizeof got;
        assert_int_equal(keystore_get(f->ks, owners[5], "isd.keyset", 1, got, &got_len, NULL),
                         OT_OK);
        assert_memory_equal(got, keys[5], items[5].key_len);
        got_len = sizeof got;
        assert_int_equal(keystore_get(f->ks, owners[7], "isd.keyset", 0, got, &got_len, NULL),
                         OT_OK);
        assert_int_equal(got_len, sizeof other);
        assert_memory_equal(got, other, sizeof other);
    }
    /* keystore_put still reports an existing version. */
    assert_int_equal(keystore_put(f->ks, owners[3], "isd.keyset", 1, keys[3], 16), OT_E_CONFLICT);
    assert_int_equal(count_keys(f->t->db), NBIG + 1);
    db_release(c);
}

/* ---- file back end: reading the KEK -------------------------------------- */

static void test_file_kek_sources(void **state)
{
    struct fx *f = *state;
    char path[700];
    uint8_t raw[32];
    uint8_t key[16];
    uint8_t got[16];
    size_t kl = sizeof raw;
    static const struct {
        const char *what;
        const char *content; /* NULL: raw KEK A bytes */
        size_t len;
        ot_err want;
    } files[] = {
        {"hex", KEK_A_HEX, 64, OT_OK},
        {"hex + LF", KEK_A_HEX "\n", 65, OT_OK},
        {"hex + CRLF", KEK_A_HEX "\r\n", 66, OT_OK},
        {"raw 32 bytes", NULL, 32, OT_OK},
        {"63 hex", KEK_A_HEX, 63, OT_E_KEY},
        {"66 hex", KEK_A_HEX "00", 66, OT_E_KEY},
        {"not hex", "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 64,
         OT_E_KEY},
        {"empty", "", 0, OT_E_KEY},
        {"31 raw bytes", NULL, 31, OT_E_KEY},
        {"all-zero hex", "0000000000000000000000000000000000000000000000000000000000000000", 64,
         OT_E_KEY},
        {"all-zero raw", "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32,
         OT_E_KEY},
    };

    assert_int_equal(hex_decode(KEK_A_HEX, 64, raw, &kl), OT_OK);
    fill(key, sizeof key, 0x77);
    assert_int_equal(keystore_put(f->ks, "sp:3", "kek-test", 1, key, sizeof key), OT_OK);
    snprintf(path, sizeof path, "%s/kek-file", f->t->dir[0] ? f->t->dir : "/tmp");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct keystore_cfg cfg = {.backend = KEYSTORE_FILE, .kek_path = path};
        struct keystore *ks = NULL;

        print_message("kek %s\n", files[i].what);
        write_file(path, files[i].content != NULL ? (const void *)files[i].content : raw,
                   files[i].len);
        assert_int_equal(keystore_open(f->t->db, &cfg, &ks), files[i].want);
        if (files[i].want == OT_OK) {
            size_t gl = sizeof got;

            /* every form is the same KEK A */
            assert_int_equal(keystore_get(ks, "sp:3", "kek-test", 1, got, &gl, NULL), OT_OK);
            assert_memory_equal(got, key, sizeof key);
        } else {
            assert_null(ks);
        }
        keystore_free(ks);
    }
    (void)unlink(path);
    {
        char why[512] = "";
        char want[800];
        struct keystore_cfg cfg = {
            .backend = KEYSTORE_FILE, .kek_path = path, .why = why, .why_cap = sizeof why};
        struct keystore *ks = NULL;

        /* issue 9 point 19: a missing file says so, with the path */
        assert_int_equal(keystore_open(f->t->db, &cfg, &ks), OT_E_KEY);
        snprintf(want, sizeof want, "cannot open KEK file %s: No such file or directory", path);
        assert_string_equal(why, want);
    }
    /* The environment: only the hex form. */
    static const struct {
        const char *val; /* NULL: unset */
        ot_err want;
    } envs[] = {
        {KEK_A_HEX, OT_OK},
        {NULL, OT_E_KEY},
        {"", OT_E_KEY},
        {"0123456789abcdef0123456789abcdef", OT_E_KEY}, /* 32 characters: not raw */
        {KEK_B_HEX "0", OT_E_KEY},
    };
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
        struct keystore_cfg cfg = {.backend = KEYSTORE_FILE, .kek_path = NULL};
        struct keystore *ks = NULL;

        if (envs[i].val == NULL) {
            assert_int_equal(unsetenv(KEYSTORE_KEK_ENV), 0);
        } else {
            assert_int_equal(setenv(KEYSTORE_KEK_ENV, envs[i].val, 1), 0);
        }
        assert_int_equal(keystore_open(f->t->db, &cfg, &ks), envs[i].want);
        /* Read once: the variable is gone afterwards, valid or not. */
        assert_null(getenv(KEYSTORE_KEK_ENV));
        if (ks != NULL) {
            size_t gl = sizeof got;

            assert_int_equal(keystore_get(ks, "sp:3", "kek-test", 1, got, &gl, NULL), OT_OK);
            assert_memory_equal(got, key, sizeof key);
        }
        keystore_free(ks);
    }
    assert_int_equal(unsetenv(KEYSTORE_KEK_ENV), 0);
}

/* Issue 9 point 2: no KEK configured is an error unless a development KEK
 * is asked for explicitly; that one is created once (0600) and reused. */
static void test_dev_kek(void **state)
{
    struct fx *f = *state;
    char dev[700];
    char why[512] = "";
    struct stat st;
    uint8_t key[16];
    uint8_t got[16];
    size_t gl = sizeof got;
    struct keystore *ks = NULL;
    struct keystore_cfg cfg = {.backend = KEYSTORE_FILE, .why = why, .why_cap = sizeof why};

    assert_int_equal(unsetenv(KEYSTORE_KEK_ENV), 0);
    sec_t_exec(f->t->db, "DELETE FROM host_keys");
    snprintf(dev, sizeof dev, "%s/devkek-%d/tsmd.kek", f->t->dir[0] ? f->t->dir : "/tmp",
             (int)getpid());
    cfg.dev_kek_path = dev;
    assert_int_equal(keystore_open(f->t->db, &cfg, &ks), OT_E_KEY);
    assert_null(ks);
    assert_non_null(strstr(why, "keystore.dev_kek=true"));
    assert_int_equal(stat(dev, &st), -1); /* nothing generated silently */
    cfg.dev_kek = true;
    assert_int_equal(keystore_open(f->t->db, &cfg, &ks), OT_OK);
    assert_int_equal(stat(dev, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);
    fill(key, sizeof key, 0x42);
    assert_int_equal(keystore_put(ks, "sp:4", "dev", 1, key, sizeof key), OT_OK);
    keystore_free(ks);
    ks = NULL;
    assert_int_equal(keystore_open(f->t->db, &cfg, &ks), OT_OK); /* the same KEK again */
    assert_int_equal(keystore_get(ks, "sp:4", "dev", 1, got, &gl, NULL), OT_OK);
    assert_memory_equal(got, key, sizeof key);
    keystore_free(ks);
    (void)unlink(dev);
    *strrchr(dev, '/') = '\0';
    (void)rmdir(dev);
}

/* Issue 8 point 4: keystore_keys (version 1) becomes host_keys with its
 * rows; a key stored before the rename opens after it. */
static void test_rename_keeps_keys(void **state)
{
    struct fx *f = *state;
    struct keystore_cfg cfg;
    struct keystore *ks = NULL;
    uint8_t key[24];
    uint8_t got[24];
    size_t gl = sizeof got;

    fill(key, sizeof key, 0x5a);
    assert_int_equal(keystore_put(f->ks, "se:77", "isd.scp03", 3, key, sizeof key), OT_OK);
    /* back to the version 1 schema, the row kept */
    sec_t_exec(f->t->db,
               "ALTER TABLE host_keys RENAME TO keystore_keys;"
               " DELETE FROM schema_migrations WHERE service = 'keystore' AND version = 2");
    cfg_for(f, &cfg, "a");
    assert_int_equal(keystore_open(f->t->db, &cfg, &ks), OT_OK); /* migrates */
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_keys", 0, NULL), 1);
    assert_int_equal(keystore_get(ks, "se:77", "isd.scp03", 3, got, &gl, NULL), OT_OK);
    assert_memory_equal(got, key, sizeof key);
    keystore_free(ks);
}

static void test_backend_names(void **state)
{
    enum keystore_backend b = KEYSTORE_PKCS11;
    struct keystore *ks = NULL;
    struct keystore_cfg cfg = {.backend = (enum keystore_backend)7};

    (void)state;
    assert_int_equal(keystore_backend_parse("file", &b), OT_OK);
    assert_int_equal(b, KEYSTORE_FILE);
    assert_int_equal(keystore_backend_parse("pkcs11", &b), OT_OK);
    assert_int_equal(b, KEYSTORE_PKCS11);
    assert_int_equal(keystore_backend_parse("hsm", &b), OT_E_FORMAT);
    assert_int_equal(keystore_backend_parse(NULL, &b), OT_E_FORMAT);
    assert_string_equal(keystore_backend_name(KEYSTORE_FILE), "file");
    assert_string_equal(keystore_backend_name(KEYSTORE_PKCS11), "pkcs11");
    assert_int_equal(keystore_open(NULL, &cfg, &ks), OT_E_ARG);
    assert_null(ks);
    keystore_free(NULL);
}

static void test_unknown_backend(void **state)
{
    struct fx *f = *state;
    struct keystore *ks = NULL;
    struct keystore_cfg cfg = {.backend = (enum keystore_backend)7};

    assert_int_equal(keystore_open(f->t->db, &cfg, &ks), OT_E_UNSUPPORTED);
    assert_null(ks);
}

/* ---- pkcs11 back end: opening ---------------------------------------------- */

static void test_pkcs11_open_errors(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *what;
        const char *module;
        const char *token;
        const char *pin;
        const char *label;
        bool create;
        ot_err want;
    } cases[] = {
        {"ok, existing key", NULL, P11_TOKEN, P11_PIN, "kek-a", false, OT_OK},
        {"wrong pin", NULL, P11_TOKEN, "9999", "kek-a", false, OT_E_CRYPTO},
        {"no such token", NULL, "no-such-token", P11_PIN, "kek-a", false, OT_E_CRYPTO},
        {"no such key", NULL, P11_TOKEN, P11_PIN, "kek-none", false, OT_E_CRYPTO},
        {"no such module", "/nonexistent/libpkcs11.so", P11_TOKEN, P11_PIN, "kek-a", false,
         OT_E_CRYPTO},
        {"not a pkcs11 module", "libc.so.6", P11_TOKEN, P11_PIN, "kek-a", false, OT_E_CRYPTO},
        {"no pin", NULL, P11_TOKEN, NULL, "kek-a", false, OT_E_ARG},
        {"no token", NULL, NULL, P11_PIN, "kek-a", false, OT_E_ARG},
        {"label too long", NULL, "0123456789012345678901234567890123", P11_PIN, "kek-a", false,
         OT_E_ARG},
    };

    /* Login state is per application (PKCS#11 v2.40 5.6): close the
     * fixture's store so each case logs in (or fails to) on its own. */
    keystore_free(f->ks);
    f->ks = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct keystore_cfg cfg = {
            .backend = KEYSTORE_PKCS11,
            .pkcs11_module = cases[i].module,
            .pkcs11_token_label = cases[i].token,
            .pkcs11_pin = cases[i].pin,
            .pkcs11_key_label = cases[i].label,
            .pkcs11_create_key = cases[i].create,
        };
        struct keystore *ks = NULL;

        print_message("pkcs11 %s\n", cases[i].what);
        assert_int_equal(keystore_open(f->t->db, &cfg, &ks), cases[i].want);
        keystore_free(ks);
    }
    /* Two stores at once share the module; closing the second leaves the
     * first logged in and working. */
    {
        struct keystore_cfg cfg;
        struct keystore *second = NULL;
        uint8_t key[16];
        uint8_t got[16];
        size_t gl = sizeof got;

        cfg_for(f, &cfg, "a");
        assert_int_equal(keystore_open(f->t->db, &cfg, &f->ks), OT_OK);
        assert_int_equal(keystore_open(f->t->db, &cfg, &second), OT_OK);
        keystore_free(second);
        fill(key, sizeof key, 1);
        assert_int_equal(keystore_put(f->ks, "x", "y", 1, key, sizeof key), OT_OK);
        assert_int_equal(keystore_get(f->ks, "x", "y", 1, got, &gl, NULL), OT_OK);
        assert_memory_equal(got, key, sizeof key);
    }
}

#define SUITE(setup)                                                      \
    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),    \
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),    \
        cmocka_unit_test_setup_teardown(test_wrong_kek, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_tamper, setup, teardown),    \
        cmocka_unit_test_setup_teardown(test_put_tx, setup, teardown),    \
        cmocka_unit_test_setup_teardown(test_no_plaintext_in_db, setup, teardown)

int main(int argc, char **argv)
{
    const struct CMUnitTest file_tests[] = {
        cmocka_unit_test(test_backend_names),
        cmocka_unit_test_setup_teardown(test_unknown_backend, setup_file, teardown),
        cmocka_unit_test_setup_teardown(test_file_kek_sources, setup_file, teardown),
        cmocka_unit_test_setup_teardown(test_dev_kek, setup_file, teardown),
        cmocka_unit_test_setup_teardown(test_rename_keeps_keys, setup_file, teardown),
        SUITE(setup_file),
    };
    const struct CMUnitTest p11_tests[] = {
        SUITE(setup_pkcs11),
        cmocka_unit_test_setup_teardown(test_pkcs11_open_errors, setup_pkcs11, teardown),
    };
    int rc = 0;

    sec_t_select(argc, argv);
    rc |= cmocka_run_group_tests_name("keystore_file", file_tests, NULL, NULL);
    rc |= cmocka_run_group_tests_name("keystore_pkcs11", p11_tests, hsm_group_setup,
                                      hsm_group_teardown);
    return rc;
}
