/* Principals, tokens and certificate bindings (authstore.h) on SQLite, or on
 * PostgreSQL with the argument "pg" (sec_testutil.h). */
#include "db/authstore.h"
#include "db/sec_testutil.h"

#include <openssl/evp.h>

#include <pthread.h>
#include <time.h>

#define RESET_SQL                                                                           \
    "DROP TABLE IF EXISTS host_principal_msisdns; DROP TABLE IF EXISTS host_certs;"         \
    " DROP TABLE IF EXISTS host_tokens; DROP TABLE IF EXISTS host_principals;"              \
    " DROP TABLE IF EXISTS auth_certs; DROP TABLE IF EXISTS auth_tokens;"                   \
    " DROP TABLE IF EXISTS auth_principals; DELETE FROM schema_migrations WHERE service = " \
    "'auth'"

struct fx {
    struct sec_t *t;
    struct authstore *as;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    f->t = sec_t_open(RESET_SQL);
    assert_int_equal(authstore_new(f->t->db, &f->as), OT_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    authstore_free(f->as);
    sec_t_close(f->t);
    free(f);
    return 0;
}

static int64_t mkprincipal(struct fx *f, enum authstore_kind kind, const char *name)
{
    int64_t id = 0;

    assert_int_equal(authstore_create_principal(f->as, kind, name, &id), OT_OK);
    assert_true(id > 0);
    return id;
}

static void test_kind_names(void **state)
{
    static const struct {
        const char *s;
        enum authstore_kind k;
        ot_err want;
    } cases[] = {
        {"operator", AUTHSTORE_OPERATOR, OT_OK},
        {"service_provider", AUTHSTORE_SP, OT_OK},
        {"subscriber", AUTHSTORE_SUBSCRIBER, OT_OK},
        {"device", AUTHSTORE_DEVICE, OT_OK},
        {"Operator", 0, OT_E_FORMAT},
        {"", 0, OT_E_FORMAT},
        {"sp", 0, OT_E_FORMAT},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum authstore_kind k = 0;

        assert_int_equal(authstore_kind_parse(cases[i].s, &k), cases[i].want);
        if (cases[i].want == OT_OK) {
            assert_int_equal(k, cases[i].k);
            assert_string_equal(authstore_kind_name(k), cases[i].s);
        }
    }
    assert_int_equal(authstore_kind_parse(NULL, NULL), OT_E_FORMAT);
    assert_string_equal(authstore_kind_name((enum authstore_kind)3), "?");
}

static void test_principals(void **state)
{
    struct fx *f = *state;
    char long_name[AUTHSTORE_NAME_MAX + 2];
    char max_name[AUTHSTORE_NAME_MAX + 1];
    static const struct {
        enum authstore_kind kind;
        const char *name;
        ot_err want;
    } cases[] = {
        {AUTHSTORE_SP, "acme-bank", OT_OK},
        {AUTHSTORE_SP, "acme-bank", OT_E_CONFLICT}, /* same kind, same name */
        {AUTHSTORE_DEVICE, "acme-bank", OT_OK},     /* unique per kind only */
        {AUTHSTORE_SP, "", OT_E_FORMAT},            /* empty */
        {AUTHSTORE_SP, "acme bank", OT_E_FORMAT},   /* space */
        {AUTHSTORE_SP, "acme\tbank", OT_E_FORMAT},  /* control */
        {AUTHSTORE_SP, "caf\xc3\xa9", OT_E_FORMAT}, /* non-ASCII */
        {(enum authstore_kind)0, "x", OT_E_ARG},    /* no kind */
        {(enum authstore_kind)3, "x", OT_E_ARG},    /* two kinds */
        {AUTHSTORE_SP, NULL, OT_E_ARG},
    };
    struct authstore_principal p;
    int64_t id = 0;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(authstore_create_principal(f->as, cases[i].kind, cases[i].name, NULL),
                         cases[i].want);
    }
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(authstore_create_principal(f->as, AUTHSTORE_SP, long_name, NULL),
                     OT_E_TOO_LONG);
    memset(max_name, 'b', sizeof max_name - 1);
    max_name[sizeof max_name - 1] = '\0';
    id = mkprincipal(f, AUTHSTORE_SUBSCRIBER, max_name);

    assert_int_equal(authstore_get_principal(f->as, id, &p), OT_OK);
    assert_int_equal(p.id, id);
    assert_int_equal(p.kind, AUTHSTORE_SUBSCRIBER);
    assert_string_equal(p.name, max_name);
    assert_false(p.disabled);
    assert_true(p.created_at > 0);
    assert_int_equal(authstore_find_principal(f->as, AUTHSTORE_SP, "acme-bank", &p), OT_OK);
    assert_int_equal(p.kind, AUTHSTORE_SP);
    assert_int_equal(authstore_find_principal(f->as, AUTHSTORE_OPERATOR, "acme-bank", &p),
                     OT_E_NOT_FOUND);
    assert_int_equal(authstore_get_principal(f->as, 999999, &p), OT_E_NOT_FOUND);
    assert_int_equal(authstore_set_disabled(f->as, id, true), OT_OK);
    assert_int_equal(authstore_get_principal(f->as, id, &p), OT_OK);
    assert_true(p.disabled);
    assert_int_equal(authstore_set_disabled(f->as, 999999, true), OT_E_NOT_FOUND);
}

/* Every failure is OT_E_AUTH, whatever the reason. */
static void test_verify_table(void **state)
{
    struct fx *f = *state;
    char ok[AUTHSTORE_TOKEN_LEN + 1];
    char expired[AUTHSTORE_TOKEN_LEN + 1];
    char revoked[AUTHSTORE_TOKEN_LEN + 1];
    char disabled[AUTHSTORE_TOKEN_LEN + 1];
    char unknown[AUTHSTORE_TOKEN_LEN + 1];
    char longer[AUTHSTORE_TOKEN_LEN + 2];
    char shorter[AUTHSTORE_TOKEN_LEN];
    char badchar[AUTHSTORE_TOKEN_LEN + 1];
    char badlast[AUTHSTORE_TOKEN_LEN + 1];
    char badprefix[AUTHSTORE_TOKEN_LEN + 1];
    int64_t sp = mkprincipal(f, AUTHSTORE_SP, "sp-a");
    int64_t gone = mkprincipal(f, AUTHSTORE_DEVICE, "dev-1");
    int64_t tid_exp = 0;
    int64_t tid_rev = 0;

    assert_int_equal(authstore_issue_token(f->as, sp, 3600, "ci", ok, sizeof ok, NULL), OT_OK);
    assert_int_equal(
        authstore_issue_token(f->as, sp, 3600, NULL, expired, sizeof expired, &tid_exp), OT_OK);
    assert_int_equal(
        authstore_issue_token(f->as, sp, 3600, NULL, revoked, sizeof revoked, &tid_rev), OT_OK);
    assert_int_equal(
        authstore_issue_token(f->as, gone, 3600, NULL, disabled, sizeof disabled, NULL), OT_OK);
    {
        int64_t v[1] = {tid_exp};

        assert_int_equal(
            sec_t_run(f->t->db, "UPDATE host_tokens SET expires_at = 1 WHERE id = $1", 1, v), 1);
    }
    assert_int_equal(authstore_revoke(f->as, tid_rev, sp), OT_OK);
    assert_int_equal(authstore_set_disabled(f->as, gone, true), OT_OK);

    /* Well-formed but never issued: the ok token with one character changed. */
    memcpy(unknown, ok, sizeof ok);
    unknown[10] = unknown[10] == 'A' ? 'B' : 'A';
    memcpy(longer, ok, AUTHSTORE_TOKEN_LEN);
    longer[AUTHSTORE_TOKEN_LEN] = 'A';
    longer[AUTHSTORE_TOKEN_LEN + 1] = '\0';
    memcpy(shorter, ok, AUTHSTORE_TOKEN_LEN - 1);
    shorter[AUTHSTORE_TOKEN_LEN - 1] = '\0';
    memcpy(badchar, ok, sizeof ok);
    badchar[20] = '+'; /* base64, not base64url */
    memcpy(badlast, ok, sizeof ok);
    badlast[AUTHSTORE_TOKEN_LEN - 1] = 'B'; /* low bits set: not a 32-byte encoding */
    memcpy(badprefix, ok, sizeof ok);
    badprefix[0] = 'O';

    const struct {
        const char *name;
        const char *token;
        ot_err want;
    } cases[] = {
        {"ok", ok, OT_OK},
        {"expired", expired, OT_E_AUTH},
        {"revoked", revoked, OT_E_AUTH},
        {"principal disabled", disabled, OT_E_AUTH},
        {"unknown", unknown, OT_E_AUTH},
        {"empty", "", OT_E_AUTH},
        {"null", NULL, OT_E_AUTH},
        {"prefix only", "ot_", OT_E_AUTH},
        {"one longer", longer, OT_E_AUTH},
        {"one shorter", shorter, OT_E_AUTH},
        {"bad character", badchar, OT_E_AUTH},
        {"bad last character", badlast, OT_E_AUTH},
        {"bad prefix", badprefix, OT_E_AUTH},
        {"bearer prefix kept", "Bearer ot_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", OT_E_AUTH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct authstore_principal p;

        print_message("case %s\n", cases[i].name);
        p.id = -1;
        assert_int_equal(authstore_verify(f->as, cases[i].token, &p), cases[i].want);
        if (cases[i].want == OT_OK) {
            assert_int_equal(p.id, sp);
            assert_int_equal(p.kind, AUTHSTORE_SP);
            assert_string_equal(p.name, "sp-a");
        } else {
            assert_int_equal(p.id, 0); /* nothing leaks out on failure */
        }
    }
    /* The disabled principal's token works again once re-enabled. */
    {
        struct authstore_principal p;

        assert_int_equal(authstore_set_disabled(f->as, gone, false), OT_OK);
        assert_int_equal(authstore_verify(f->as, disabled, &p), OT_OK);
        assert_int_equal(p.kind, AUTHSTORE_DEVICE);
    }
}

static void test_token_format_and_storage(void **state)
{
    struct fx *f = *state;
    char tok[AUTHSTORE_TOKEN_LEN + 1];
    char tok2[AUTHSTORE_TOKEN_LEN + 1];
    uint8_t want[32];
    unsigned wl = sizeof want;
    int64_t op = mkprincipal(f, AUTHSTORE_OPERATOR, "root");
    int64_t tid = 0;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    const uint8_t *h = NULL;
    size_t hn = 0;

    assert_int_equal(authstore_issue_token(f->as, op, 60, "x", tok, sizeof tok, &tid), OT_OK);
    assert_int_equal(strlen(tok), AUTHSTORE_TOKEN_LEN);
    assert_memory_equal(tok, "ot_", 3);
    for (size_t i = 3; i < AUTHSTORE_TOKEN_LEN; i++) {
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", tok[i]));
    }
    assert_int_equal(authstore_issue_token(f->as, op, 60, "x", tok2, sizeof tok2, NULL), OT_OK);
    assert_string_not_equal(tok, tok2); /* random each time */

    /* The table holds SHA-256(token), never the token. */
    assert_int_equal(EVP_Digest(tok, strlen(tok), want, &wl, EVP_sha256(), NULL), 1);
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(
        db_prepare(c, "SELECT token_hash, hint, label FROM host_tokens WHERE id = $1", &st), OT_OK);
    assert_int_equal(db_bind_int64(st, 1, tid), OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    assert_true(row);
    assert_int_equal(db_col_blob(st, 0, &h, &hn), OT_OK);
    assert_int_equal(hn, 32);
    assert_memory_equal(h, want, 32);
    {
        const char *hint = NULL;

        assert_int_equal(db_col_text(st, 1, &hint), OT_OK);
        assert_int_equal(strlen(hint), 8);
        assert_memory_equal(hint, tok, 8);
    }
    db_reset(st);
    db_release(c);
    if (!sec_t_is_pg()) {
        /* Nothing past the hint is anywhere in the database files. */
        assert_false(sec_t_file_contains(f->t, tok + 8, AUTHSTORE_TOKEN_LEN - 8));
        assert_true(sec_t_file_contains(f->t, want, sizeof want)); /* the search works */
    }

    /* Argument checks. */
    assert_int_equal(authstore_issue_token(f->as, op, 60, NULL, tok, AUTHSTORE_TOKEN_LEN, NULL),
                     OT_E_BUF_SMALL);
    {
        static const int64_t bad_ttl[] = {0, -1, AUTHSTORE_TTL_MAX + 1};

        for (size_t i = 0; i < sizeof bad_ttl / sizeof bad_ttl[0]; i++) {
            assert_int_equal(
                authstore_issue_token(f->as, op, bad_ttl[i], NULL, tok, sizeof tok, NULL),
                OT_E_RANGE);
        }
    }
    assert_int_equal(
        authstore_issue_token(f->as, op, AUTHSTORE_TTL_MAX, NULL, tok, sizeof tok, NULL), OT_OK);
    assert_int_equal(authstore_issue_token(f->as, 424242, 60, NULL, tok, sizeof tok, NULL),
                     OT_E_NOT_FOUND);
    assert_int_equal(authstore_set_disabled(f->as, op, true), OT_OK);
    assert_int_equal(authstore_issue_token(f->as, op, 60, NULL, tok, sizeof tok, NULL), OT_E_STATE);
}

static void test_list_and_revoke(void **state)
{
    struct fx *f = *state;
    char tok[3][AUTHSTORE_TOKEN_LEN + 1];
    int64_t tid[3];
    int64_t a = mkprincipal(f, AUTHSTORE_SP, "sp-a");
    int64_t b = mkprincipal(f, AUTHSTORE_SP, "sp-b");
    struct authstore_token_info *v = NULL;
    struct authstore_principal p;
    size_t n = 0;

    assert_int_equal(authstore_issue_token(f->as, a, 100, "one", tok[0], sizeof tok[0], &tid[0]),
                     OT_OK);
    assert_int_equal(authstore_issue_token(f->as, a, 200, "two", tok[1], sizeof tok[1], &tid[1]),
                     OT_OK);
    assert_int_equal(authstore_issue_token(f->as, b, 300, "", tok[2], sizeof tok[2], &tid[2]),
                     OT_OK);

    assert_int_equal(authstore_list_tokens(f->as, a, 0, &v, &n), OT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, tid[1]); /* newest first */
    assert_int_equal(v[1].id, tid[0]);
    assert_string_equal(v[0].label, "two");
    assert_memory_equal(v[0].prefix, tok[1], 8);
    assert_int_equal(strlen(v[0].prefix), 8);
    assert_int_equal(v[0].expires_at - v[0].created_at, 200);
    assert_int_equal(v[0].revoked_at, 0);
    free(v);
    v = NULL;
    assert_int_equal(authstore_list_tokens(f->as, 0, 0, &v, &n), OT_OK);
    assert_int_equal(n, 3);
    free(v);
    v = NULL;
    assert_int_equal(authstore_list_tokens(f->as, 0, 1, &v, &n), OT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, tid[2]);
    free(v);
    v = NULL;
    assert_int_equal(authstore_list_tokens(f->as, 987654, 0, &v, &n), OT_OK);
    assert_int_equal(n, 0);
    assert_null(v);

    /* last_used_at is recorded on first use. */
    assert_int_equal(authstore_verify(f->as, tok[0], &p), OT_OK);
    assert_int_equal(authstore_list_tokens(f->as, a, 0, &v, &n), OT_OK);
    assert_int_equal(v[1].id, tid[0]);
    assert_true(v[1].last_used_at > 0);
    assert_int_equal(v[0].last_used_at, 0);
    free(v);
    v = NULL;

    static const struct {
        int idx;    /* token */
        int64_t by; /* 0 any, else principal index */
        ot_err want;
    } rev[] = {
        {2, 1, OT_E_NOT_FOUND}, /* a revoking b's token: looks absent */
        {0, 1, OT_OK},
        {0, 1, OT_OK}, /* twice */
        {2, 0, OT_OK}, /* operator path: any principal */
    };
    for (size_t i = 0; i < sizeof rev / sizeof rev[0]; i++) {
        int64_t by = rev[i].by == 0 ? 0 : a;

        assert_int_equal(authstore_revoke(f->as, tid[rev[i].idx], by), rev[i].want);
    }
    assert_int_equal(authstore_revoke(f->as, 999999, 0), OT_E_NOT_FOUND);
    assert_int_equal(authstore_verify(f->as, tok[0], &p), OT_E_AUTH);
    assert_int_equal(authstore_verify(f->as, tok[1], &p), OT_OK);
    assert_int_equal(authstore_verify(f->as, tok[2], &p), OT_E_AUTH);
    assert_int_equal(authstore_list_tokens(f->as, a, 0, &v, &n), OT_OK);
    assert_true(v[1].revoked_at > 0);
    free(v);
    v = NULL;

    assert_int_equal(authstore_revoke_all(f->as, a, &n), OT_OK);
    assert_int_equal(n, 1); /* only the one still live */
    assert_int_equal(authstore_verify(f->as, tok[1], &p), OT_E_AUTH);
}

static void test_certs(void **state)
{
    struct fx *f = *state;
    int64_t a = mkprincipal(f, AUTHSTORE_SP, "sp-a");
    int64_t b = mkprincipal(f, AUTHSTORE_SP, "sp-b");
    const char *dn = "CN=sp-a,O=Acme Bank,C=FR";
    const char *fp = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    struct authstore_principal p;
    char big[AUTHSTORE_CERT_ID_MAX + 2];

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    static const struct {
        int who;  /* 0 a, 1 b, 2 nobody */
        int cert; /* 0 dn, 1 fp, 2 empty, 3 too long */
        ot_err want;
    } binds[] = {
        {0, 0, OT_OK},         {0, 0, OT_OK},          /* same pair again */
        {1, 0, OT_E_CONFLICT},                         /* already someone else's */
        {1, 1, OT_OK},         {2, 1, OT_E_NOT_FOUND}, /* no such principal */
        {0, 2, OT_E_ARG},      {0, 3, OT_E_ARG},
    };
    for (size_t i = 0; i < sizeof binds / sizeof binds[0]; i++) {
        const char *certs[] = {dn, fp, "", big};
        int64_t who = binds[i].who == 0 ? a : binds[i].who == 1 ? b : 777777;

        assert_int_equal(authstore_bind_cert(f->as, who, certs[binds[i].cert]), binds[i].want);
    }
    assert_int_equal(authstore_verify_cert(f->as, dn, &p), OT_OK);
    assert_int_equal(p.id, a);
    assert_int_equal(authstore_verify_cert(f->as, fp, &p), OT_OK);
    assert_int_equal(p.id, b);
    assert_int_equal(authstore_verify_cert(f->as, "CN=sp-a,O=Acme Bank", &p), OT_E_AUTH);
    assert_int_equal(p.id, 0);
    assert_int_equal(authstore_verify_cert(f->as, "", &p), OT_E_AUTH);
    assert_int_equal(authstore_verify_cert(f->as, NULL, &p), OT_E_AUTH);
    assert_int_equal(authstore_verify_cert(f->as, big, &p), OT_E_AUTH);
    assert_int_equal(authstore_set_disabled(f->as, b, true), OT_OK);
    assert_int_equal(authstore_verify_cert(f->as, fp, &p), OT_E_AUTH);
    assert_int_equal(authstore_unbind_cert(f->as, dn), OT_OK);
    assert_int_equal(authstore_unbind_cert(f->as, dn), OT_E_NOT_FOUND);
    assert_int_equal(authstore_verify_cert(f->as, dn, &p), OT_E_AUTH);
}

/* authstore_bootstrap_operator_tx in one transaction per call. */
static ot_err bootstrap(struct fx *f, const char *name, int64_t ttl, char *tok, size_t cap,
                        struct authstore_principal *p, bool *created, bool commit)
{
    struct db_conn *c = NULL;
    ot_err err;

    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    err = authstore_bootstrap_operator_tx(f->as, c, name, ttl, tok, cap, p, NULL, created);
    assert_int_equal(err == OT_OK && commit ? db_commit(c) : db_rollback(c), OT_OK);
    db_release(c);
    return err;
}

static void test_bootstrap(void **state)
{
    struct fx *f = *state;
    char tok[AUTHSTORE_TOKEN_LEN + 1];
    char tok2[AUTHSTORE_TOKEN_LEN + 1];
    struct authstore_principal p, op;
    struct authstore_token_info *v = NULL;
    size_t n = 0;
    bool created = false;

    /* Rolled back: neither the operator nor its token stays. */
    assert_int_equal(bootstrap(f, "admin", 0, tok, sizeof tok, &op, &created, false), OT_OK);
    assert_true(created);
    assert_int_equal(authstore_find_principal(f->as, AUTHSTORE_OPERATOR, "admin", &p),
                     OT_E_NOT_FOUND);
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_E_AUTH);

    assert_int_equal(bootstrap(f, "admin", 0, tok, sizeof tok, &op, &created, true), OT_OK);
    assert_true(created);
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_OK);
    assert_int_equal(p.id, op.id);
    assert_int_equal(p.kind, AUTHSTORE_OPERATOR);
    assert_string_equal(p.name, "admin");
    assert_int_equal(authstore_list_tokens(f->as, op.id, 0, &v, &n), OT_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].label, "bootstrap");
    assert_int_equal(v[0].expires_at - v[0].created_at, 365 * 24 * 3600);
    free(v);
    /* Again: same principal, a second token; both valid. */
    assert_int_equal(bootstrap(f, "admin", 60, tok2, sizeof tok2, &p, &created, true), OT_OK);
    assert_false(created);
    assert_int_equal(p.id, op.id);
    assert_string_not_equal(tok, tok2);
    assert_int_equal(authstore_verify(f->as, tok2, &p), OT_OK);
    assert_int_equal(bootstrap(f, "bad name", 0, tok, sizeof tok, &p, &created, true), OT_E_FORMAT);
    assert_int_equal(authstore_set_disabled(f->as, op.id, true), OT_OK);
    assert_int_equal(bootstrap(f, "admin", 0, tok, sizeof tok, &p, &created, true), OT_E_STATE);
    assert_int_equal(authstore_bootstrap_operator_tx(f->as, NULL, "admin", 0, tok, sizeof tok, NULL,
                                                     NULL, &created),
                     OT_E_ARG);
}

static void test_reopen_keeps_data(void **state)
{
    struct fx *f = *state;
    char tok[AUTHSTORE_TOKEN_LEN + 1];
    struct authstore *as2 = NULL;
    struct authstore_principal p;
    int64_t id = mkprincipal(f, AUTHSTORE_SUBSCRIBER, "alice");

    assert_int_equal(authstore_issue_token(f->as, id, 60, NULL, tok, sizeof tok, NULL), OT_OK);
    /* A second store on the same db: migrations are idempotent. */
    assert_int_equal(authstore_new(f->t->db, &as2), OT_OK);
    assert_int_equal(authstore_verify(as2, tok, &p), OT_OK);
    assert_int_equal(p.id, id);
    authstore_free(as2);
    authstore_free(NULL);
    assert_int_equal(authstore_new(NULL, &as2), OT_E_ARG);
    assert_null(as2);
}

/* Browser sessions: issued on a valid token only, for its principal, ending
 * no later than it, and revoked with it (a session's session too). */
static void test_sessions(void **state)
{
    struct fx *f = *state;
    char parent[AUTHSTORE_TOKEN_LEN + 1], s1[AUTHSTORE_TOKEN_LEN + 1];
    char s2[AUTHSTORE_TOKEN_LEN + 1], other[AUTHSTORE_TOKEN_LEN + 1];
    struct authstore_principal p;
    int64_t id = mkprincipal(f, AUTHSTORE_SP, "bank");
    int64_t oid = mkprincipal(f, AUTHSTORE_SP, "otherbank");
    int64_t tid = 0, sid = 0, sid2 = 0, exp = 0, look = 0;

    assert_int_equal(authstore_issue_token(f->as, id, 100, NULL, parent, sizeof parent, &tid),
                     OT_OK);
    assert_int_equal(authstore_issue_token(f->as, oid, 100, NULL, other, sizeof other, NULL),
                     OT_OK);
    assert_int_equal(
        authstore_issue_session(f->as, "ot_nope", 60, "console", s1, sizeof s1, &sid, &exp),
        OT_E_AUTH);
    assert_int_equal(authstore_issue_session(f->as, parent, 60, "console", s1, 8, &sid, &exp),
                     OT_E_BUF_SMALL);
    /* ttl above the parent's remaining life: the parent's end wins. */
    assert_int_equal(
        authstore_issue_session(f->as, parent, 1000, "console", s1, sizeof s1, &sid, &exp), OT_OK);
    assert_true(sid != tid);
    assert_true(exp <= (int64_t)time(NULL) + 100);
    assert_int_equal(authstore_verify(f->as, s1, &p), OT_OK);
    assert_int_equal(p.id, id);
    assert_int_equal(authstore_token_id(f->as, s1, &look), OT_OK);
    assert_int_equal(look, sid);
    assert_int_equal(authstore_token_id(f->as, "ot_nope", &look), OT_E_NOT_FOUND);
    assert_int_equal(authstore_issue_session(f->as, s1, 60, "console", s2, sizeof s2, &sid2, NULL),
                     OT_OK);
    assert_int_equal(authstore_verify(f->as, s2, &p), OT_OK);
    /* Revoking the first token ends both sessions at once, not another's. */
    assert_int_equal(authstore_revoke(f->as, tid, id), OT_OK);
    assert_int_equal(authstore_verify(f->as, parent, &p), OT_E_AUTH);
    assert_int_equal(authstore_verify(f->as, s1, &p), OT_E_AUTH);
    assert_int_equal(authstore_verify(f->as, s2, &p), OT_E_AUTH);
    assert_int_equal(authstore_verify(f->as, other, &p), OT_OK);
    assert_int_equal(
        authstore_issue_session(f->as, parent, 60, "console", s1, sizeof s1, &sid, NULL),
        OT_E_AUTH);
    assert_int_equal(authstore_issue_session(f->as, s2, 60, "console", s1, sizeof s1, &sid, NULL),
                     OT_E_AUTH);
}

static void revoke_raw(struct fx *f, int64_t tid)
{
    assert_int_equal(
        sec_t_run(f->t->db, "UPDATE host_tokens SET revoked_at = 1 WHERE id = $1", 1, &tid), 1);
}

/* Waits (5 s) until the store listens (PostgreSQL); true when it does. */
static bool wait_listening(const struct authstore *as)
{
    for (int i = 0; i < 500; i++) {
        if (authstore_listening(as)) {
            return true;
        }
        nanosleep(&(struct timespec){0, 10L * 1000 * 1000}, NULL);
    }
    return false;
}

/* A verified token is remembered; changes made behind the store's back show
 * after a flush (or at once with the cache off); expiry is checked on hits. */
static void test_cache(void **state)
{
    struct fx *f = *state;
    char tok[AUTHSTORE_TOKEN_LEN + 1];
    char shortlived[AUTHSTORE_TOKEN_LEN + 1];
    struct authstore_principal p;
    int64_t id = mkprincipal(f, AUTHSTORE_SP, "cached");
    int64_t tid = 0;
    time_t until = 0;

    /* PostgreSQL: the listener's first flush must not fall in between. */
    if (sec_t_is_pg()) {
        assert_true(wait_listening(f->as));
    } else {
        assert_false(authstore_listening(f->as));
    }
    assert_int_equal(authstore_issue_token(f->as, id, 600, NULL, tok, sizeof tok, &tid), OT_OK);
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_OK);
    /* A rename behind the store's back (no notice on PostgreSQL either). */
    assert_int_equal(
        sec_t_run(f->t->db, "UPDATE host_principals SET name = 'renamed' WHERE id = $1", 1, &id),
        1);
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_OK); /* remembered */
    assert_int_equal(p.id, id);
    assert_string_equal(p.name, "cached");
    authstore_cache_flush(f->as);
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_OK);
    assert_string_equal(p.name, "renamed");
    revoke_raw(f, tid);
    authstore_cache_flush(f->as);
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_E_AUTH);

    /* cache off: raw changes show at once */
    assert_int_equal(authstore_set_cache_ttl(f->as, 0), OT_OK);
    assert_int_equal(authstore_issue_token(f->as, id, 600, NULL, tok, sizeof tok, &tid), OT_OK);
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_OK);
    revoke_raw(f, tid);
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_E_AUTH);
    assert_int_equal(authstore_set_cache_ttl(f->as, AUTHSTORE_CACHE_TTL_MAX_MS + 1), OT_E_ARG);
    assert_int_equal(authstore_set_cache_ttl(f->as, AUTHSTORE_CACHE_TTL_MAX_MS), OT_OK);

    /* a remembered token still expires on time */
    assert_int_equal(authstore_issue_token(f->as, id, 1, NULL, shortlived, sizeof shortlived, NULL),
                     OT_OK);
    until = time(NULL) + 1;
    assert_int_equal(authstore_verify(f->as, shortlived, &p), OT_OK);
    while (time(NULL) <= until) {
        struct timespec ts = {0, 50L * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
    assert_int_equal(authstore_verify(f->as, shortlived, &p), OT_E_AUTH);
    authstore_cache_flush(NULL);
}

/* Two processes on one PostgreSQL database: a revocation, a disabled
 * principal or a raw revocation made through one is heard by the other at
 * commit, long before its cache TTL (60 s here) runs out. SQLite has no
 * notices: there the TTL bounds it (test_cache). */
static bool verify_fails_soon(struct authstore *as, const char *tok)
{
    struct authstore_principal p;

    for (int i = 0; i < 500; i++) {
        if (authstore_verify(as, tok, &p) == OT_E_AUTH) {
            return true;
        }
        nanosleep(&(struct timespec){0, 10L * 1000 * 1000}, NULL);
    }
    return false;
}

static void test_other_process_changes(void **state)
{
    struct fx *f = *state;
    struct db *db2 = NULL;
    struct authstore *other = NULL;
    char t1[AUTHSTORE_TOKEN_LEN + 1], t2[AUTHSTORE_TOKEN_LEN + 1], t3[AUTHSTORE_TOKEN_LEN + 1];
    struct authstore_principal p;
    int64_t a = mkprincipal(f, AUTHSTORE_SP, "node-a");
    int64_t b = mkprincipal(f, AUTHSTORE_SP, "node-b");
    int64_t tid1 = 0, tid3 = 0;

    if (!sec_t_is_pg()) {
        return;
    }
    assert_int_equal(db_open(sec_t_pg_url, NULL, &db2), OT_OK);
    assert_int_equal(authstore_new(db2, &other), OT_OK);
    assert_int_equal(authstore_set_cache_ttl(other, AUTHSTORE_CACHE_TTL_MAX_MS), OT_OK);
    assert_int_equal(authstore_issue_token(f->as, a, 600, NULL, t1, sizeof t1, &tid1), OT_OK);
    assert_int_equal(authstore_issue_token(f->as, b, 600, NULL, t2, sizeof t2, NULL), OT_OK);
    assert_int_equal(authstore_issue_token(f->as, a, 600, NULL, t3, sizeof t3, &tid3), OT_OK);
    /* Both stores listen before anything is revoked (a notice sent before
     * a listener listens is lost; the UP flush covers what was cached). */
    assert_true(wait_listening(f->as));
    assert_true(wait_listening(other));
    assert_int_equal(authstore_verify(other, t1, &p), OT_OK);
    assert_int_equal(authstore_verify(other, t2, &p), OT_OK);
    assert_int_equal(authstore_verify(other, t3, &p), OT_OK);
    assert_int_equal(authstore_revoke(f->as, tid1, 0), OT_OK);
    assert_true(verify_fails_soon(other, t1));
    assert_int_equal(authstore_set_disabled(f->as, b, true), OT_OK);
    assert_true(verify_fails_soon(other, t2));
    revoke_raw(f, tid3);
    assert_true(verify_fails_soon(other, t3));
    /* TRUNCATE fires no row trigger; a statement trigger tells. */
    assert_int_equal(authstore_issue_token(f->as, a, 600, NULL, t1, sizeof t1, NULL), OT_OK);
    assert_int_equal(authstore_verify(other, t1, &p), OT_OK);
    sec_t_run(f->t->db, "TRUNCATE host_tokens", 0, NULL);
    assert_true(verify_fails_soon(other, t1));
    authstore_free(other);
    db_close(db2);
}

/* A store on its own pool of one connection over the fixture's database,
 * so a call that borrowed a second connection inside a transaction would
 * time out instead of passing. */
static struct db *one_conn_db(struct fx *f)
{
    struct db_cfg cfg = {.pool_size = 1, .acquire_timeout_ms = 300};
    char url[600];
    struct db *db = NULL;

    if (sec_t_is_pg()) {
        snprintf(url, sizeof url, "%s", sec_t_pg_url);
    } else {
        snprintf(url, sizeof url, "sqlite:%s", f->t->path);
    }
    assert_int_equal(db_open(url, &cfg, &db), OT_OK);
    return db;
}

/* The _tx variants: everything done in one caller's transaction is undone
 * by its rollback (principal, token, binding, revocation) and kept by its
 * commit; a revocation reaches the cache once the caller flushes it after
 * the commit. */
static void test_tx_rollback_and_commit(void **state)
{
    struct fx *f = *state;
    static const bool commit[] = {false, true};
    struct db *db1 = one_conn_db(f);
    struct authstore *as = NULL;
    int64_t owner = mkprincipal(f, AUTHSTORE_SP, "owner");

    assert_int_equal(authstore_new(db1, &as), OT_OK);
    assert_int_equal(authstore_set_cache_ttl(as, AUTHSTORE_CACHE_TTL_MAX_MS), OT_OK);
    for (size_t i = 0; i < sizeof commit / sizeof commit[0]; i++) {
        char old[AUTHSTORE_TOKEN_LEN + 1];
        char tok[AUTHSTORE_TOKEN_LEN + 1];
        char name[16];
        char cert[16];
        struct db_conn *c = NULL;
        struct authstore_principal p;
        int64_t old_id = 0;
        int64_t id = 0;
        int64_t tid = 0;

        snprintf(name, sizeof name, "tx-%zu", i);
        snprintf(cert, sizeof cert, "CN=tx-%zu", i);
        assert_int_equal(authstore_issue_token(as, owner, 600, NULL, old, sizeof old, &old_id),
                         OT_OK);
        assert_int_equal(authstore_verify(as, old, &p), OT_OK); /* now in the cache */

        assert_int_equal(db_acquire(db1, &c), OT_OK);
        assert_int_equal(db_begin(c), OT_OK);
        assert_int_equal(authstore_create_principal_tx(as, c, AUTHSTORE_SP, name, &id), OT_OK);
        assert_int_equal(authstore_get_principal_tx(as, c, id, &p), OT_OK); /* own change */
        assert_string_equal(p.name, name);
        assert_int_equal(authstore_issue_token_tx(as, c, id, 600, "tx", tok, sizeof tok, &tid),
                         OT_OK);
        assert_int_equal(strlen(tok), AUTHSTORE_TOKEN_LEN);
        assert_int_equal(authstore_bind_cert_tx(as, c, id, cert), OT_OK);
        assert_int_equal(authstore_revoke_tx(as, c, old_id, owner), OT_OK);
        assert_int_equal(commit[i] ? db_commit(c) : db_rollback(c), OT_OK);
        db_release(c);
        /* Committed but not flushed: this store still answers from its
         * cache (the reason for the flush after the commit). On PostgreSQL
         * its own listener may already have heard the revocation. */
        if (!sec_t_is_pg()) {
            assert_int_equal(authstore_verify(as, old, &p), OT_OK);
        }
        authstore_cache_flush(as);

        assert_int_equal(authstore_find_principal(f->as, AUTHSTORE_SP, name, &p),
                         commit[i] ? OT_OK : OT_E_NOT_FOUND);
        assert_int_equal(authstore_verify(as, tok, &p), commit[i] ? OT_OK : OT_E_AUTH);
        assert_int_equal(authstore_verify_cert(as, cert, &p), commit[i] ? OT_OK : OT_E_AUTH);
        assert_int_equal(authstore_verify(as, old, &p), commit[i] ? OT_E_AUTH : OT_OK);
        ot_mem_wipe(tok, sizeof tok);
    }
    authstore_free(as);
    db_close(db1);
}

/* Refusals inside a transaction leave it usable (on PostgreSQL a failed
 * statement would abort it): the handler looks the existing principal up
 * and goes on. */
static void test_tx_refusals_keep_txn(void **state)
{
    struct fx *f = *state;
    int64_t a = mkprincipal(f, AUTHSTORE_SP, "sp-a");
    int64_t b = mkprincipal(f, AUTHSTORE_SP, "sp-b");
    struct db *db1 = one_conn_db(f);
    struct authstore *as = NULL;
    struct db_conn *c = NULL;
    struct authstore_principal p;
    char tok[AUTHSTORE_TOKEN_LEN + 1];
    int64_t id = 0;
    int64_t tid = 0;

    assert_int_equal(authstore_bind_cert(f->as, a, "CN=a"), OT_OK);
    assert_int_equal(authstore_issue_token(f->as, a, 600, NULL, tok, sizeof tok, &tid), OT_OK);
    assert_int_equal(authstore_set_disabled(f->as, b, true), OT_OK);
    assert_int_equal(authstore_new(db1, &as), OT_OK);
    assert_int_equal(db_acquire(db1, &c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    assert_int_equal(authstore_create_principal_tx(as, c, AUTHSTORE_SP, "sp-a", &id),
                     OT_E_CONFLICT);
    assert_int_equal(authstore_find_principal_tx(as, c, AUTHSTORE_SP, "sp-a", &p), OT_OK);
    assert_int_equal(p.id, a);
    assert_int_equal(authstore_bind_cert_tx(as, c, b, "CN=a"), OT_E_CONFLICT);
    assert_int_equal(authstore_bind_cert_tx(as, c, 777777, "CN=z"), OT_E_NOT_FOUND);
    assert_int_equal(authstore_issue_token_tx(as, c, 777777, 60, NULL, tok, sizeof tok, NULL),
                     OT_E_NOT_FOUND);
    assert_int_equal(authstore_issue_token_tx(as, c, b, 60, NULL, tok, sizeof tok, NULL),
                     OT_E_STATE);
    assert_int_equal(authstore_revoke_tx(as, c, tid, b), OT_E_NOT_FOUND); /* not b's */
    assert_int_equal(authstore_revoke_tx(as, c, 777777, 0), OT_E_NOT_FOUND);
    assert_int_equal(authstore_get_principal_tx(as, c, 777777, &p), OT_E_NOT_FOUND);
    assert_int_equal(authstore_create_principal_tx(as, c, AUTHSTORE_SP, "sp-c", &id), OT_OK);
    assert_int_equal(db_commit(c), OT_OK);
    db_release(c);
    assert_int_equal(authstore_get_principal(f->as, id, &p), OT_OK);
    assert_string_equal(p.name, "sp-c");
    authstore_free(as);
    db_close(db1);
}

/* The _tx variants that write need an open transaction on a connection of
 * the store's own database. */
static void test_tx_args(void **state)
{
    struct fx *f = *state;
    int64_t a = mkprincipal(f, AUTHSTORE_SP, "sp-a");
    struct db *other = NULL;
    struct db_conn *c = NULL;
    struct db_conn *oc = NULL;
    struct authstore_principal p;
    char tok[AUTHSTORE_TOKEN_LEN + 1];

    assert_int_equal(db_open("sqlite::memory:", NULL, &other), OT_OK);
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_acquire(other, &oc), OT_OK);
    assert_int_equal(db_begin(oc), OT_OK);
    /* no transaction on c; oc belongs to another database; no connection */
    for (int k = 0; k < 3; k++) {
        struct db_conn *x = k == 0 ? c : k == 1 ? oc : NULL;

        assert_int_equal(authstore_create_principal_tx(f->as, x, AUTHSTORE_SP, "n", NULL),
                         OT_E_ARG);
        assert_int_equal(authstore_issue_token_tx(f->as, x, a, 60, NULL, tok, sizeof tok, NULL),
                         OT_E_ARG);
        assert_int_equal(authstore_bind_cert_tx(f->as, x, a, "CN=n"), OT_E_ARG);
        assert_int_equal(authstore_revoke_tx(f->as, x, 1, 0), OT_E_ARG);
        if (k > 0) {
            assert_int_equal(authstore_get_principal_tx(f->as, x, a, &p), OT_E_ARG);
        }
    }
    /* reads need no transaction */
    assert_int_equal(authstore_get_principal_tx(f->as, c, a, &p), OT_OK);
    assert_int_equal(authstore_find_principal_tx(f->as, c, AUTHSTORE_SP, "sp-a", &p), OT_OK);
    assert_int_equal(authstore_get_principal_tx(NULL, c, a, &p), OT_E_ARG);
    assert_int_equal(db_begin(c), OT_OK);
    assert_int_equal(authstore_create_principal_tx(f->as, c, (enum authstore_kind)3, "n", NULL),
                     OT_E_ARG);
    assert_int_equal(authstore_create_principal_tx(f->as, c, AUTHSTORE_SP, "a b", NULL),
                     OT_E_FORMAT);
    assert_int_equal(authstore_issue_token_tx(f->as, c, a, 60, NULL, tok, 8, NULL), OT_E_BUF_SMALL);
    assert_int_equal(authstore_issue_token_tx(f->as, c, a, 0, NULL, tok, sizeof tok, NULL),
                     OT_E_RANGE);
    assert_int_equal(authstore_bind_cert_tx(f->as, c, a, ""), OT_E_ARG);
    assert_int_equal(db_rollback(c), OT_OK);
    db_release(oc);
    db_release(c);
    db_close(other);
}

#define VERIFY_THREADS 4
#define VERIFY_EACH    300

struct verify_job {
    struct authstore *as;
    const char (*tok)[AUTHSTORE_TOKEN_LEN + 1];
    size_t ntok;
    int failures;
};

static void *verify_worker(void *arg)
{
    struct verify_job *j = arg;

    for (int i = 0; i < VERIFY_EACH; i++) {
        struct authstore_principal p;

        if (authstore_verify(j->as, j->tok[(size_t)i % j->ntok], &p) != OT_OK) {
            j->failures++;
        }
    }
    return NULL;
}

/* Many threads verifying at once (cache and pool under contention). */
static void test_concurrent_verify(void **state)
{
    struct fx *f = *state;
    char tok[8][AUTHSTORE_TOKEN_LEN + 1];
    pthread_t th[VERIFY_THREADS];
    struct verify_job job[VERIFY_THREADS];
    int64_t id = mkprincipal(f, AUTHSTORE_DEVICE, "busy");

    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(authstore_issue_token(f->as, id, 600, NULL, tok[i], sizeof tok[i], NULL),
                         OT_OK);
    }
    for (int i = 0; i < VERIFY_THREADS; i++) {
        job[i] = (struct verify_job){
            .as = f->as, .tok = (const char(*)[AUTHSTORE_TOKEN_LEN + 1]) tok, .ntok = 8};
        assert_int_equal(pthread_create(&th[i], NULL, verify_worker, &job[i]), 0);
    }
    for (int i = 0; i < VERIFY_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(job[i].failures, 0);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test_setup_teardown(test_principals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_format_and_storage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bootstrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_process_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_rollback_and_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_refusals_keep_txn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_args, setup, teardown),
    };

    sec_t_select(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
