/* tsmctl: the command line for the tsmd APIs.
 *
 *   tsmctl [global options] se import FILE [--format csv|json] [--chunk N]
 *   tsmctl [global options] se get (--msisdn N | --imsi I | CIN) [--id-only]
 *   tsmctl [global options] se list [--mno M] [--type T] [--limit N]
 *   tsmctl [global options] se sd list CIN [--limit N]
 *   tsmctl [global options] se sd assign CIN --aid AID --sp NAME [--privileges HEX] [--lcs L]
 *   tsmctl [global options] principal create KIND NAME
 *   tsmctl [global options] principal bind-cert ID SUBJECT
 *   tsmctl [global options] token issue (--principal-id ID | --kind K --name N) [...]
 *   tsmctl [global options] token revoke ID | token list [--principal-id ID]
 *   tsmctl [global options] audit verify [--db URL] | audit list [...]
 *
 * Profiles live in ~/.config/opentsm/config ($XDG_CONFIG_HOME/opentsm/config),
 * INI sections "[profile NAME]" with url, token and ca; --profile or
 * OPENTSM_PROFILE picks one ("default" otherwise). --url, --token, --ca and
 * OPENTSM_URL / OPENTSM_TOKEN override the profile. A file holding a token
 * should be mode 0600: when group or others may read or write it, tsmctl
 * says so on stderr (naming the file and the chmod) and goes on. tsmctl
 * only reads profiles; it never writes one.
 *
 * Output: aligned tables, or with --json one JSON object per result per line.
 */
#define OT_LOG_COMPONENT "bin.tsmctl"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/db.h"
#include "net/client.h"
#include "net/json.h"
#include "tsm/csv.h"

#include <ini.h>
#include <openssl/evp.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef OT_VERSION
#    define OT_VERSION "0.0.0"
#endif

/* Exit codes (documented in --help). */
#define CTL_OK       0 /* success */
#define CTL_NEGATIVE 1 /* done, negative result: rows rejected, not found, chain broken */
#define CTL_USAGE    2 /* bad command line or profile */
#define CTL_API      3 /* the server refused the request (4xx other than 404, 5xx) */
#define CTL_CONN     4 /* cannot reach the server (connection, TLS, timeout) */
#define CTL_LOCAL    5 /* local failure (file unreadable, out of memory) */

#define CTL_CHUNK_ROWS  10000u
#define CTL_CHUNK_BYTES ((size_t)2 * 1024 * 1024)
#define CTL_FILE_MAX    ((size_t)1024 * 1024 * 1024)
#define CTL_MAX_ARGS    32
#define CTL_VALUE_MAX   1024
#define CTL_TABLE_COLS  8
#define CTL_TABLE_ROWS  100000u

static const char ctl_usage[] =
    "usage: tsmctl [global options] <command> [options]\n"
    "\n"
    "commands:\n"
    "  se import FILE       import secure elements from a CSV or JSON file\n"
    "  se get               look an SE up by --msisdn, --imsi or CIN\n"
    "  se list              list SEs (operator)\n"
    "  se sd list CIN       security domains on an SE (an SP sees its own)\n"
    "  se sd assign CIN     assign a security domain to a service provider (operator)\n"
    "  principal create     create a principal (operator)\n"
    "  principal bind-cert  bind a client certificate subject to an SP (operator)\n"
    "  token issue|revoke|list\n"
    "  audit verify|list    check the audit chain / list audit rows (operator)\n"
    "\n"
    "global options:\n"
    "  --profile NAME   profile from ~/.config/opentsm/config (env OPENTSM_PROFILE)\n"
    "  --url URL        server, e.g. https://127.0.0.1:8443 (env OPENTSM_URL)\n"
    "  --token TOKEN    bearer token (env OPENTSM_TOKEN)\n"
    "  --ca FILE        CA certificate that signed the server's certificate\n"
    "  --cert FILE --key FILE   client certificate for mutual TLS\n"
    "  --json           one JSON object per result instead of tables\n"
    "  --help, --version\n"
    "\n"
    "  tsmctl <command> --help   options of one command\n"
    "\n"
    "exit status: 0 success; 1 done with a negative result (rows rejected, not found,\n"
    "audit chain broken); 2 bad usage or profile; 3 the server refused the request;\n"
    "4 cannot reach the server; 5 local failure (file, memory)\n";

struct ctl_cmd_help {
    const char *name;
    const char *text;
};

static const struct ctl_cmd_help ctl_helps[] = {
    {"se import", "usage: tsmctl se import FILE [--format csv|json] [--chunk N]\n"
                  "\n"
                  "Uploads FILE in chunks of N rows (default 10000, at most 2 MiB each) to\n"
                  "POST /tsm/v1/secure-elements:import, with a progress bar on a terminal, then\n"
                  "prints the report: rows imported, unchanged (already registered, the same\n"
                  "data) and rejected (row number in the file, field, reason). Each chunk has an\n"
                  "Idempotency-Key derived from the file's SHA-256 and the chunk's rows, so a\n"
                  "re-run is safe (it replays the first answers). The format defaults to the file "
                  "extension (.csv / .json).\n"
                  "CSV: a header line naming the columns (docs/api/tsm.yaml, SeImportRow).\n"
                  "JSON: an array of row objects.\n"
                  "exit status: 0 all rows imported or unchanged, 1 some rejected, 2+ errors\n"},
    {"se get", "usage: tsmctl se get (--msisdn MSISDN | --imsi IMSI | CIN) [--id-only]\n"
               "\n"
               "Prints the SE's data (never keys), or with --id-only its CIN alone.\n"
               "exit status: 0 found, 1 not found, 2+ errors\n"},
    {"se list", "usage: tsmctl se list [--mno MNO] [--type UICC|eSE|microSD] [--limit N]\n"
                "\n"
                "Lists SEs (operator), following the pagination cursors; --limit caps the\n"
                "total (default: all).\n"},
    {"se sd list", "usage: tsmctl se sd list CIN [--limit N]\n"
                   "\n"
                   "Lists the security domains on the SE in AID order: all of them for an\n"
                   "operator, the ones it owns for a service provider. Follows the\n"
                   "pagination cursors; --limit caps the total (default: all).\n"},
    {"se sd assign",
     "usage: tsmctl se sd assign CIN --aid AID --sp NAME [--privileges HEX6] [--lcs LCS]\n"
     "\n"
     "Assigns a security domain (AID, 5 to 16 bytes hex) on the SE to service\n"
     "provider NAME (operator). LCS: INSTALLED, SELECTABLE (default), PERSONALIZED,\n"
     "LOCKED. Privileges: 3 bytes hex (default 800000). Idempotent.\n"},
    {"principal create", "usage: tsmctl principal create KIND NAME\n"
                         "\n"
                         "KIND: operator, service_provider, subscriber, device. Idempotent.\n"},
    {"principal bind-cert",
     "usage: tsmctl principal bind-cert ID SUBJECT\n"
     "\n"
     "Binds a client certificate subject DN (RFC 4514 text, as tsmd reports it) to\n"
     "service provider ID, for mutual TLS.\n"},
    {"token issue", "usage: tsmctl token issue (--principal-id ID | --kind KIND --name NAME)\n"
                    "                          [--ttl-days D] [--label TEXT] [--token-only]\n"
                    "\n"
                    "Issues a token (operator). With --kind and --name the principal is created\n"
                    "if missing. The token is shown once; --token-only prints it alone.\n"},
    {"token revoke", "usage: tsmctl token revoke ID\n"},
    {"token list", "usage: tsmctl token list [--principal-id ID]\n"
                   "\n"
                   "Lists tokens (never their text): an operator sees all or one\n"
                   "principal's, others their own.\n"},
    {"audit verify", "usage: tsmctl audit verify [--db URL]\n"
                     "\n"
                     "Recomputes the audit hash chain, through GET /tsm/v1/audit/verify or, with\n"
                     "--db (sqlite:PATH or postgresql://...), on the database directly.\n"
                     "exit status: 0 intact, 1 broken (the first bad row is named), 2+ errors\n"},
    {"audit list", "usage: tsmctl audit list [--limit N] [--action A] [--principal-id ID]\n"
                   "                         [--request-id R]\n"
                   "\n"
                   "Lists audit rows in order, following the cursors (default limit 100).\n"},
};

/* Global state of the program (STYLE 9). */
static bool g_json;

/* ---- arguments ---------------------------------------------------------- */

struct ctl_opt {
    const char *name;
    bool has_arg;
};

struct ctl_args {
    const char *pos[CTL_MAX_ARGS];
    size_t npos;
    const char *opt[CTL_MAX_ARGS];
    const char *val[CTL_MAX_ARGS];
    size_t nopt;
    bool help;
};

static const char *ctl_get(const struct ctl_args *a, const char *name)
{
    size_t i;

    for (i = 0; i < a->nopt; i++) {
        if (strcmp(a->opt[i], name) == 0) {
            return a->val[i] != NULL ? a->val[i] : "";
        }
    }
    return NULL;
}

/* Parses argv[first..argc) against opts. Prints why and returns false on an
 * unknown option or a missing value. */
static bool ctl_parse(const char *cmd, int argc, char **argv, int first, const struct ctl_opt *opts,
                      struct ctl_args *a)
{
    int i;
    size_t k;

    memset(a, 0, sizeof(*a));
    for (i = first; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            a->help = true;
            continue;
        }
        if (strncmp(s, "--", 2) != 0 || s[2] == '\0') {
            if (a->npos == CTL_MAX_ARGS) {
                fprintf(stderr, "tsmctl %s: too many arguments\n", cmd);
                return false;
            }
            a->pos[a->npos++] = s;
            continue;
        }
        for (k = 0; opts[k].name != NULL; k++) {
            if (strcmp(opts[k].name, s) == 0) {
                break;
            }
        }
        if (opts[k].name == NULL) {
            fprintf(stderr, "tsmctl %s: unknown option '%s'\n", cmd, s);
            return false;
        }
        if (a->nopt == CTL_MAX_ARGS) {
            fprintf(stderr, "tsmctl %s: too many options\n", cmd);
            return false;
        }
        a->opt[a->nopt] = s;
        a->val[a->nopt] = NULL;
        if (opts[k].has_arg) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tsmctl %s: %s needs a value\n", cmd, s);
                return false;
            }
            a->val[a->nopt] = argv[++i];
        }
        a->nopt++;
    }
    return true;
}

static int ctl_help(const char *cmd, bool to_err)
{
    size_t i;

    for (i = 0; i < sizeof(ctl_helps) / sizeof(ctl_helps[0]); i++) {
        if (strcmp(ctl_helps[i].name, cmd) == 0) {
            fputs(ctl_helps[i].text, to_err ? stderr : stdout);
            return to_err ? CTL_USAGE : CTL_OK;
        }
    }
    fputs(ctl_usage, to_err ? stderr : stdout);
    return to_err ? CTL_USAGE : CTL_OK;
}

/* ---- profile and client ------------------------------------------------- */

struct ctl_profile {
    const char *want;
    char url[CTL_VALUE_MAX];
    char token[CTL_VALUE_MAX];
    char ca[CTL_VALUE_MAX];
    char cert[CTL_VALUE_MAX];
    char key[CTL_VALUE_MAX];
    bool found;
    bool file_token; /* some profile of the file holds a token */
    char bad[CTL_VALUE_MAX];
};

static int ctl_ini(void *user, const char *section, const char *name, const char *value)
{
    struct ctl_profile *p = user;
    char *dst = NULL;

    if (strcmp(name, "token") == 0 && value[0] != '\0') {
        p->file_token = true; /* whichever profile: the file holds a secret */
    }
    if (strncmp(section, "profile ", 8) != 0 || strcmp(section + 8, p->want) != 0) {
        return 1;
    }
    p->found = true;
    if (strcmp(name, "url") == 0) {
        dst = p->url;
    } else if (strcmp(name, "token") == 0) {
        dst = p->token;
    } else if (strcmp(name, "ca") == 0) {
        dst = p->ca;
    } else if (strcmp(name, "cert") == 0) {
        dst = p->cert;
    } else if (strcmp(name, "key") == 0) {
        dst = p->key;
    } else {
        snprintf(p->bad, sizeof(p->bad), "unknown key \"%s\" in [%s]", name, section);
        return 0;
    }
    if (snprintf(dst, CTL_VALUE_MAX, "%s", value) >= CTL_VALUE_MAX) {
        snprintf(p->bad, sizeof(p->bad), "value of %s too long", name);
        return 0;
    }
    return 1;
}

/* A profile file holding a token is a secret, like an ssh key: warn (and
 * go on) when users other than its owner may read it, or change it (its
 * url, so that the token goes elsewhere). f: the file as opened, so the
 * mode checked is the mode of the file read. */
static void ctl_profile_mode_check(FILE *f, const char *path)
{
    struct stat st;
    bool rd;
    bool wr;

    if (fstat(fileno(f), &st) != 0) {
        return;
    }
    rd = (st.st_mode & (S_IRGRP | S_IROTH)) != 0;
    wr = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
    if (!rd && !wr) {
        return;
    }
    fprintf(stderr,
            "tsmctl: warning: %s holds an API token and is %s by other users (mode %04o);"
            " run: chmod 600 %s\n",
            path,
            rd && wr ? "readable and writable"
            : rd     ? "readable"
                     : "writable",
            (unsigned)(st.st_mode & 07777), path);
}

/* Reads the profile file (if any) and applies environment and options. */
static int ctl_profile_load(const struct ctl_args *g, struct ctl_profile *p)
{
    char path[CTL_VALUE_MAX];
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    const char *v;
    FILE *f = NULL;
    int rc = 0;
    bool named;

    memset(p, 0, sizeof(*p));
    p->want = ctl_get(g, "--profile");
    if (p->want == NULL) {
        p->want = getenv("OPENTSM_PROFILE");
    }
    named = p->want != NULL;
    if (p->want == NULL) {
        p->want = "default";
    }
    if (xdg != NULL && xdg[0] != '\0') {
        snprintf(path, sizeof(path), "%s/opentsm/config", xdg);
    } else {
        snprintf(path, sizeof(path), "%s/.config/opentsm/config", home != NULL ? home : ".");
    }
    /* No file (or none readable) is no profile, as before: the options and
     * the environment may say everything. */
    f = fopen(path, "r");
    if (f != NULL) {
        rc = ini_parse_file(f, ctl_ini, p);
        if (p->file_token) {
            ctl_profile_mode_check(f, path);
        }
        fclose(f);
    }
    if (rc > 0 || rc == -2) {
        fprintf(stderr, "tsmctl: %s:%d: %s\n", path, rc, p->bad[0] ? p->bad : "syntax error");
        return CTL_USAGE;
    }
    if (named && !p->found) {
        fprintf(stderr, "tsmctl: no [profile %s] in %s\n", p->want, path);
        return CTL_USAGE;
    }
    if ((v = getenv("OPENTSM_URL")) != NULL) {
        snprintf(p->url, sizeof(p->url), "%s", v);
    }
    if ((v = getenv("OPENTSM_TOKEN")) != NULL) {
        snprintf(p->token, sizeof(p->token), "%s", v);
    }
    if ((v = ctl_get(g, "--url")) != NULL) {
        snprintf(p->url, sizeof(p->url), "%s", v);
    }
    if ((v = ctl_get(g, "--token")) != NULL) {
        snprintf(p->token, sizeof(p->token), "%s", v);
    }
    if ((v = ctl_get(g, "--ca")) != NULL) {
        snprintf(p->ca, sizeof(p->ca), "%s", v);
    }
    if ((v = ctl_get(g, "--cert")) != NULL) {
        snprintf(p->cert, sizeof(p->cert), "%s", v);
    }
    if ((v = ctl_get(g, "--key")) != NULL) {
        snprintf(p->key, sizeof(p->key), "%s", v);
    }
    if (p->url[0] == '\0') {
        snprintf(p->url, sizeof(p->url), "%s", "https://127.0.0.1:8443");
    }
    return CTL_OK;
}

static int ctl_client(const struct ctl_profile *p, struct net_client **out)
{
    struct net_client_cfg cc;
    ot_err err;

    memset(&cc, 0, sizeof(cc));
    cc.base_url = p->url;
    cc.token = p->token[0] ? p->token : NULL;
    cc.ca_file = p->ca[0] ? p->ca : NULL;
    cc.client_cert = p->cert[0] ? p->cert : NULL;
    cc.client_key = p->key[0] ? p->key : NULL;
    cc.timeout_ms = 300000;
    cc.max_body = (size_t)64 * 1024 * 1024;
    err = net_client_new(&cc, out);
    if (err != OT_OK) {
        fprintf(stderr, "tsmctl: client: %s\n", ot_strerror(err));
        return CTL_LOCAL;
    }
    return CTL_OK;
}

/* Sends one request; prints the server's error and maps it to an exit code.
 * *rc = CTL_OK when status is 2xx. */
static int ctl_call(struct net_client *c, const char *method, const char *path, const json_t *body,
                    const char *const *headers, struct net_client_resp *r)
{
    ot_err err = net_client_request(c, method, path, body, headers, r);

    if (err != OT_OK) {
        fprintf(stderr, "tsmctl: %s %s: %s\n", method, path, ot_strerror(err));
        return err == OT_E_NOMEM ? CTL_LOCAL : CTL_CONN;
    }
    if (r->status >= 200 && r->status < 300) {
        return CTL_OK;
    }
    fprintf(stderr, "tsmctl: %s %s: HTTP %ld %s%s%s%s%s (request %s)\n", method, path, r->status,
            r->error_code, r->error_message[0] ? ": " : "", r->error_message,
            r->error_field[0] ? " field=" : "", r->error_field, r->request_id);
    return r->status == 404 ? CTL_NEGATIVE : CTL_API;
}

/* ---- output ------------------------------------------------------------- */

static void ctl_print_json(const json_t *j)
{
    char *s = NULL;
    size_t n = 0;

    if (json_serialize(j, &s, &n) == OT_OK) {
        fwrite(s, 1, n, stdout);
        fputc('\n', stdout);
    }
    free(s);
}

/* Text of member key of o for tables: strings as is, integers in decimal,
 * null as "-". */
static void ctl_field(const json_t *o, const char *key, char *out, size_t cap)
{
    const json_t *v = json_object_get(o, key);

    if (v == NULL || json_is_null(v)) {
        snprintf(out, cap, "-");
    } else if (json_is_string(v)) {
        snprintf(out, cap, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(out, cap, "%lld", (long long)json_integer_value(v));
    } else if (json_is_true(v)) {
        snprintf(out, cap, "true");
    } else if (json_is_false(v)) {
        snprintf(out, cap, "false");
    } else {
        snprintf(out, cap, "?");
    }
}

/* Aligned table of the objects in items (array) with the given columns. */
struct ctl_table {
    const char *const *cols;
    size_t ncols;
    size_t width[CTL_TABLE_COLS];
    json_t *rows; /* array of the row objects */
};

static void ctl_table_init(struct ctl_table *t, const char *const *cols, size_t ncols)
{
    size_t i;

    memset(t, 0, sizeof(*t));
    t->cols = cols;
    t->ncols = ncols;
    for (i = 0; i < ncols; i++) {
        t->width[i] = strlen(cols[i]);
    }
    t->rows = json_arr_new();
}

/* Adds o (borrowed) as a row, or prints it at once with --json. */
static void ctl_table_add(struct ctl_table *t, const json_t *o)
{
    char buf[CTL_VALUE_MAX];
    size_t i;

    if (g_json) {
        ctl_print_json(o);
        return;
    }
    if (t->rows == NULL || json_array_size(t->rows) >= CTL_TABLE_ROWS) {
        return;
    }
    for (i = 0; i < t->ncols; i++) {
        size_t w;
        ctl_field(o, t->cols[i], buf, sizeof(buf));
        w = strlen(buf);
        if (w > t->width[i]) {
            t->width[i] = w;
        }
    }
    (void)json_push(t->rows, json_incref((json_t *)o));
}

static void ctl_table_print(struct ctl_table *t)
{
    char buf[CTL_VALUE_MAX];
    size_t r;
    size_t i;

    if (!g_json && t->rows != NULL) {
        for (i = 0; i < t->ncols; i++) {
            printf("%-*s%s", i + 1 < t->ncols ? (int)t->width[i] : 0, t->cols[i],
                   i + 1 < t->ncols ? "  " : "\n");
        }
        for (r = 0; r < json_array_size(t->rows); r++) {
            for (i = 0; i < t->ncols; i++) {
                ctl_field(json_at(t->rows, r), t->cols[i], buf, sizeof(buf));
                printf("%-*s%s", i + 1 < t->ncols ? (int)t->width[i] : 0, buf,
                       i + 1 < t->ncols ? "  " : "\n");
            }
        }
    }
    json_free(t->rows);
    t->rows = NULL;
}

/* One object as "key: value" lines, or one JSON line. */
static void ctl_print_obj(const json_t *o)
{
    const char *key;
    json_t *v;
    char buf[CTL_VALUE_MAX];
    size_t w = 0;

    if (g_json) {
        ctl_print_json(o);
        return;
    }
    json_object_foreach((json_t *)o, key, v)
    {
        if (strlen(key) > w) {
            w = strlen(key);
        }
    }
    json_object_foreach((json_t *)o, key, v)
    {
        ctl_field(o, key, buf, sizeof(buf));
        printf("%-*s  %s\n", (int)w, key, buf);
    }
}

/* URL-encodes s into out (unreserved characters kept). */
static bool ctl_urlenc(const char *s, char *out, size_t cap)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
            || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            if (o + 1 >= cap) {
                return false;
            }
            out[o++] = (char)ch;
        } else {
            if (o + 3 >= cap) {
                return false;
            }
            out[o++] = '%';
            out[o++] = hexd[ch >> 4];
            out[o++] = hexd[ch & 15];
        }
    }
    out[o] = '\0';
    return true;
}

/* Appends "&name=value" (or "?name=value" first) to path. */
static bool ctl_qadd(char *path, size_t cap, const char *name, const char *value)
{
    char enc[CTL_VALUE_MAX];
    size_t len = strlen(path);

    if (value == NULL) {
        return true;
    }
    if (!ctl_urlenc(value, enc, sizeof(enc))) {
        return false;
    }
    return snprintf(path + len, cap - len, "%c%s=%s", strchr(path, '?') ? '&' : '?', name, enc)
           < (int)(cap - len);
}

/* ---- se import ---------------------------------------------------------- */

static int ctl_read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    size_t got;

    *data = NULL;
    *len = 0;
    if (f == NULL || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)
        || (size_t)st.st_size > CTL_FILE_MAX) {
        fprintf(stderr, "tsmctl: cannot read %s: %s\n", path,
                f == NULL ? strerror(errno) : "not a regular file of at most 1 GiB");
        if (f != NULL) {
            fclose(f);
        }
        return CTL_LOCAL;
    }
    *data = malloc((size_t)st.st_size + 1);
    if (*data == NULL) {
        fclose(f);
        return CTL_LOCAL;
    }
    got = fread(*data, 1, (size_t)st.st_size, f);
    fclose(f);
    if (got != (size_t)st.st_size) {
        fprintf(stderr, "tsmctl: short read on %s\n", path);
        free(*data);
        *data = NULL;
        return CTL_LOCAL;
    }
    (*data)[got] = '\0';
    *len = got;
    return CTL_OK;
}

struct ctl_import {
    struct net_client *c;
    char idem_base[40];
    size_t total_rows; /* rows in the file */
    size_t sent_rows;
    size_t chunk;
    size_t rows;
    size_t imported;
    size_t unchanged;
    size_t rejected;
    json_t *rejected_list;
    bool tty;
};

static void ctl_progress(const struct ctl_import *im)
{
    const int width = 40;
    int filled;
    double frac;

    if (!im->tty || g_json) {
        return;
    }
    frac = im->total_rows ? (double)im->sent_rows / (double)im->total_rows : 1.0;
    filled = (int)(frac * width);
    fprintf(stderr, "\rimport [%.*s%*s] %3d%% %zu/%zu rows, %zu rejected", filled,
            "########################################", width - filled, "", (int)(frac * 100.0),
            im->sent_rows, im->total_rows, im->rejected);
    fflush(stderr);
}

/* Sends one chunk (first_row: file row number of its first data row) and
 * adds its report to the totals. */
static int ctl_import_chunk(struct ctl_import *im, const char *ctype, const void *body, size_t len,
                            size_t nrows, size_t first_row)
{
    char key[80];
    char hdr[128];
    const char *headers[2] = {hdr, NULL};
    struct net_client_resp r;
    const json_t *rej;
    size_t i;
    int rc;
    ot_err err;

    memset(&r, 0, sizeof(r));
    snprintf(key, sizeof(key), "import-%s-%zu-%zu", im->idem_base, first_row, nrows);
    snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", key);
    err = net_client_request_raw(im->c, "POST", "/tsm/v1/secure-elements:import", ctype, body, len,
                                 headers, &r);
    if (err != OT_OK) {
        fprintf(stderr, "%stsmctl: import chunk %zu: %s\n", im->tty ? "\n" : "", im->chunk,
                ot_strerror(err));
        net_client_resp_clear(&r);
        return CTL_CONN;
    }
    if (r.status != 200 || r.json == NULL) {
        fprintf(stderr, "%stsmctl: import chunk %zu (rows %zu..%zu): HTTP %ld %s: %s%s%s\n",
                im->tty ? "\n" : "", im->chunk, first_row, first_row + nrows - 1, r.status,
                r.error_code, r.error_message, r.error_field[0] ? " field=" : "", r.error_field);
        net_client_resp_clear(&r);
        return CTL_API;
    }
    im->rows += (size_t)json_integer_value(json_object_get(r.json, "rows"));
    im->imported += (size_t)json_integer_value(json_object_get(r.json, "imported"));
    im->unchanged += (size_t)json_integer_value(json_object_get(r.json, "unchanged"));
    im->rejected += (size_t)json_integer_value(json_object_get(r.json, "rejected_count"));
    rej = json_object_get(r.json, "rejected");
    for (i = 0; rej != NULL && json_at(rej, i) != NULL; i++) {
        json_t *o = json_deep_copy(json_at(rej, i));
        if (o == NULL) {
            continue;
        }
        /* Row numbers in the report count from the file's first data row. */
        json_object_set_new(o, "row",
                            json_integer((json_int_t)first_row - 1
                                         + json_integer_value(json_object_get(o, "row"))));
        (void)json_push(im->rejected_list, o);
    }
    rc = CTL_OK;
    im->sent_rows += nrows;
    im->chunk++;
    ctl_progress(im);
    net_client_resp_clear(&r);
    return rc;
}

static int ctl_import_csv(struct ctl_import *im, const char *data, size_t len, size_t chunk_rows)
{
    struct tsm_csv csv;
    struct tsm_csv_rec *rec = malloc(sizeof(*rec));
    struct ot_buf body;
    size_t hdr_len;
    size_t start;
    size_t n = 0;
    size_t first_row = 1;
    size_t row = 0;
    bool end = false;
    int rc = CTL_OK;

    ot_buf_init(&body, CTL_CHUNK_BYTES * 2);
    if (rec == NULL) {
        return CTL_LOCAL;
    }
    /* Count the rows first for the progress bar (and check the syntax). */
    tsm_csv_init(&csv, data, len);
    for (;;) {
        if (tsm_csv_next(&csv, rec, &end) != OT_OK) {
            fprintf(stderr, "tsmctl: malformed CSV at line %zu\n", csv.line);
            rc = CTL_LOCAL;
            goto out;
        }
        if (end) {
            break;
        }
        row++;
    }
    if (row == 0) {
        fprintf(stderr, "tsmctl: the CSV file has no header line\n");
        rc = CTL_LOCAL;
        goto out;
    }
    im->total_rows = row - 1;
    tsm_csv_init(&csv, data, len);
    (void)tsm_csv_next(&csv, rec, &end);
    hdr_len = len - csv.rd.left;
    start = hdr_len;
    ctl_progress(im);
    for (;;) {
        size_t before = len - csv.rd.left;
        (void)tsm_csv_next(&csv, rec, &end);
        size_t after = len - csv.rd.left;
        bool full =
            !end && (n == chunk_rows || (n > 0 && after - start + hdr_len > CTL_CHUNK_BYTES));
        if ((end || full) && n > 0) {
            ot_buf_reset(&body);
            if (ot_buf_append(&body, data, hdr_len) != OT_OK
                || (data[hdr_len - 1] != '\n' && ot_buf_append(&body, "\n", 1) != OT_OK)
                || ot_buf_append(&body, data + start, before - start) != OT_OK) {
                rc = CTL_LOCAL;
                goto out;
            }
            rc = ctl_import_chunk(im, "text/csv", body.data, body.len, n, first_row);
            if (rc != CTL_OK) {
                goto out;
            }
            first_row += n;
            n = 0;
            start = before;
        }
        if (end) {
            break;
        }
        n++;
    }
out:
    ot_buf_free(&body);
    free(rec);
    return rc;
}

static int ctl_import_json(struct ctl_import *im, const char *data, size_t len, size_t chunk_rows)
{
    struct json_err jerr;
    json_t *doc = NULL;
    json_t *chunk = NULL;
    size_t i;
    size_t n;
    size_t total;
    int rc = CTL_OK;

    memset(&jerr, 0, sizeof(jerr));
    if (json_parse(data, len, len, &doc, &jerr) != OT_OK || json_is_obj(doc)) {
        fprintf(stderr, "tsmctl: the JSON file must be an array of rows: %s\n",
                jerr.message[0] ? jerr.message : "an object");
        json_free(doc);
        return CTL_LOCAL;
    }
    total = json_array_size(doc);
    im->total_rows = total;
    ctl_progress(im);
    for (i = 0; i < total; i += n) {
        char *s = NULL;
        size_t slen = 0;
        size_t k;
        chunk = json_arr_new();
        if (chunk == NULL) {
            rc = CTL_LOCAL;
            break;
        }
        for (n = 0; n < chunk_rows && i + n < total; n++) {
            (void)json_push(chunk, json_incref((json_t *)json_at(doc, i + n)));
        }
        /* Keep chunks under the byte cap by halving when needed. */
        for (;;) {
            if (json_serialize(chunk, &s, &slen) != OT_OK) {
                rc = CTL_LOCAL;
                break;
            }
            if (slen <= CTL_CHUNK_BYTES || n == 1) {
                break;
            }
            free(s);
            s = NULL;
            for (k = n / 2; k < n; k++) {
                json_array_remove(chunk, n / 2);
            }
            n = n / 2;
        }
        if (rc == CTL_OK) {
            rc = ctl_import_chunk(im, "application/json", s, slen, n, i + 1);
        }
        free(s);
        json_free(chunk);
        chunk = NULL;
        if (rc != CTL_OK) {
            break;
        }
    }
    json_free(doc);
    return rc;
}

static int ctl_se_import(struct net_client *c, const struct ctl_args *a)
{
    const char *file = a->pos[0];
    const char *fmt = ctl_get(a, "--format");
    const char *chunk_s = ctl_get(a, "--chunk");
    struct ctl_import im;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *data = NULL;
    size_t len = 0;
    size_t chunk_rows = CTL_CHUNK_ROWS;
    size_t i;
    bool csv;
    int rc;
    const char *dot = strrchr(file, '.');

    if (fmt == NULL) {
        fmt = dot != NULL && strcmp(dot, ".json") == 0 ? "json" : "csv";
    }
    if (strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0) {
        fprintf(stderr, "tsmctl se import: --format is csv or json\n");
        return CTL_USAGE;
    }
    csv = strcmp(fmt, "csv") == 0;
    if (chunk_s != NULL) {
        char *end = NULL;
        unsigned long v = strtoul(chunk_s, &end, 10);
        if (end == chunk_s || *end != '\0' || v < 1 || v > 100000) {
            fprintf(stderr, "tsmctl se import: --chunk is 1..100000\n");
            return CTL_USAGE;
        }
        chunk_rows = v;
    }
    rc = ctl_read_file(file, &data, &len);
    if (rc != CTL_OK) {
        return rc;
    }
    memset(&im, 0, sizeof(im));
    im.c = c;
    im.tty = isatty(STDERR_FILENO) != 0;
    im.rejected_list = json_arr_new();
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || im.rejected_list == NULL) {
        free(data);
        json_free(im.rejected_list);
        return CTL_LOCAL;
    }
    for (i = 0; i < 16; i++) {
        snprintf(im.idem_base + 2 * i, 3, "%02x", md[i]);
    }
    rc = csv ? ctl_import_csv(&im, data, len, chunk_rows)
             : ctl_import_json(&im, data, len, chunk_rows);
    if (im.tty && !g_json) {
        fputc('\n', stderr);
    }
    free(data);
    if (g_json) {
        json_t *o = json_obj_new();
        if (o != NULL && json_put_int(o, "rows", (int64_t)im.rows) == OT_OK
            && json_put_int(o, "imported", (int64_t)im.imported) == OT_OK
            && json_put_int(o, "unchanged", (int64_t)im.unchanged) == OT_OK
            && json_put_int(o, "rejected_count", (int64_t)im.rejected) == OT_OK
            && json_put(o, "rejected", json_incref(im.rejected_list)) == OT_OK) {
            ctl_print_json(o);
        }
        json_free(o);
    } else {
        static const char *const cols[] = {"row", "field", "message"};
        struct ctl_table t;
        printf("rows %zu, imported %zu, unchanged %zu, rejected %zu\n", im.rows, im.imported,
               im.unchanged, im.rejected);
        if (json_array_size(im.rejected_list) > 0) {
            ctl_table_init(&t, cols, 3);
            for (i = 0; i < json_array_size(im.rejected_list); i++) {
                ctl_table_add(&t, json_at(im.rejected_list, i));
            }
            ctl_table_print(&t);
        }
    }
    json_free(im.rejected_list);
    if (rc != CTL_OK) {
        return rc;
    }
    return im.rejected > 0 ? CTL_NEGATIVE : CTL_OK;
}

/* ---- other commands ----------------------------------------------------- */

static const char *const ctl_se_cols[] = {"cin",  "se_type",    "mno",        "msisdn",
                                          "imsi", "gp_version", "jc_version", "expiry"};

static int ctl_se_get(struct net_client *c, const struct ctl_args *a)
{
    const char *msisdn = ctl_get(a, "--msisdn");
    const char *imsi = ctl_get(a, "--imsi");
    bool id_only = ctl_get(a, "--id-only") != NULL;
    char path[CTL_VALUE_MAX + 64];
    char enc[CTL_VALUE_MAX];
    struct net_client_resp r;
    int rc;

    memset(&r, 0, sizeof(r));
    if ((msisdn != NULL) + (imsi != NULL) + (a->npos == 1) != 1 || a->npos > 1) {
        return ctl_help("se get", true);
    }
    if (a->npos == 1) {
        if (!ctl_urlenc(a->pos[0], enc, sizeof(enc))) {
            return CTL_USAGE;
        }
        snprintf(path, sizeof(path), "/tsm/v1/secure-elements/%s", enc);
    } else {
        snprintf(path, sizeof(path), "/tsm/v1/secure-elements");
        if (!ctl_qadd(path, sizeof(path), msisdn ? "msisdn" : "imsi", msisdn ? msisdn : imsi)
            || (id_only && !ctl_qadd(path, sizeof(path), "fields", "id"))) {
            return CTL_USAGE;
        }
    }
    rc = ctl_call(c, "GET", path, NULL, NULL, &r);
    if (rc == CTL_OK && r.json != NULL) {
        if (id_only && !g_json) {
            printf("%s\n", json_string_value(json_object_get(r.json, "cin")));
        } else if (id_only) {
            json_t *o = json_obj_new();
            if (o != NULL
                && json_put_str(o, "cin", json_string_value(json_object_get(r.json, "cin")))
                       == OT_OK) {
                ctl_print_json(o);
            }
            json_free(o);
        } else {
            ctl_print_obj(r.json);
        }
    }
    net_client_resp_clear(&r);
    return rc;
}

/* GETs path page by page (following next_cursor), adding each item to t;
 * stops after max items (0: all). */
static int ctl_pages(struct net_client *c, const char *base, struct ctl_table *t, size_t max)
{
    char path[2 * CTL_VALUE_MAX];
    char cursor[JSON_CURSOR_MAX + 1];
    struct net_client_resp r;
    size_t got = 0;
    int rc = CTL_OK;

    cursor[0] = '\0';
    for (;;) {
        const json_t *items;
        const json_t *next;
        size_t i;
        snprintf(path, sizeof(path), "%s", base);
        if (max != 0) {
            char lim[24];
            snprintf(lim, sizeof(lim), "%zu", max - got < 1000 ? max - got : 1000);
            if (!ctl_qadd(path, sizeof(path), "limit", lim)) {
                return CTL_USAGE;
            }
        }
        if (cursor[0] != '\0' && !ctl_qadd(path, sizeof(path), "cursor", cursor)) {
            return CTL_USAGE;
        }
        memset(&r, 0, sizeof(r));
        rc = ctl_call(c, "GET", path, NULL, NULL, &r);
        if (rc != CTL_OK || r.json == NULL) {
            net_client_resp_clear(&r);
            return rc != CTL_OK ? rc : CTL_API;
        }
        items = json_object_get(r.json, "items");
        for (i = 0; items != NULL && json_at(items, i) != NULL; i++) {
            ctl_table_add(t, json_at(items, i));
            got++;
        }
        next = json_object_get(r.json, "next_cursor");
        if (next == NULL || !json_is_string(next) || (max != 0 && got >= max)) {
            net_client_resp_clear(&r);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        net_client_resp_clear(&r);
    }
    return rc;
}

static int ctl_limit(const struct ctl_args *a, size_t *max)
{
    const char *s = ctl_get(a, "--limit");
    char *end = NULL;
    unsigned long v;

    *max = 0;
    if (s == NULL) {
        return CTL_OK;
    }
    v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || v < 1) {
        fprintf(stderr, "tsmctl: --limit must be a positive integer\n");
        return CTL_USAGE;
    }
    *max = v;
    return CTL_OK;
}

static int ctl_se_list(struct net_client *c, const struct ctl_args *a)
{
    char path[CTL_VALUE_MAX] = "/tsm/v1/secure-elements";
    struct ctl_table t;
    size_t max = 0;
    int rc;

    if (a->npos != 0) {
        return ctl_help("se list", true);
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    if (!ctl_qadd(path, sizeof(path), "mno", ctl_get(a, "--mno"))
        || !ctl_qadd(path, sizeof(path), "type", ctl_get(a, "--type"))) {
        return CTL_USAGE;
    }
    ctl_table_init(&t, ctl_se_cols, 8);
    rc = ctl_pages(c, path, &t, max);
    ctl_table_print(&t);
    return rc;
}

static int ctl_sd_list(struct net_client *c, const struct ctl_args *a)
{
    static const char *const cols[] = {"aid", "owner", "privileges", "lcs"};
    char path[CTL_VALUE_MAX + 64];
    char enc[CTL_VALUE_MAX];
    struct ctl_table t;
    size_t max = 0;
    int rc;

    if (a->npos != 1 || !ctl_urlenc(a->pos[0], enc, sizeof(enc))) {
        return ctl_help("se sd list", true);
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    snprintf(path, sizeof(path), "/tsm/v1/secure-elements/%s/security-domains", enc);
    ctl_table_init(&t, cols, 4);
    rc = ctl_pages(c, path, &t, max);
    ctl_table_print(&t);
    return rc;
}

/* A fresh random Idempotency-Key header for one-shot commands. */
static void ctl_idem_header(char *hdr, size_t cap)
{
    unsigned char rnd[16];
    char hex[33];
    size_t i;
    FILE *f = fopen("/dev/urandom", "rb");

    memset(rnd, 0, sizeof(rnd));
    if (f != NULL) {
        if (fread(rnd, 1, sizeof(rnd), f) != sizeof(rnd)) {
            memset(rnd, 0, sizeof(rnd));
        }
        fclose(f);
    }
    for (i = 0; i < sizeof(rnd); i++) {
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    }
    snprintf(hdr, cap, "Idempotency-Key: ctl-%s", hex);
}

static int ctl_post_obj(struct net_client *c, const char *path, json_t *body, bool idem,
                        struct net_client_resp *r)
{
    char hdr[96];
    const char *headers[2] = {hdr, NULL};
    int rc;

    ctl_idem_header(hdr, sizeof(hdr));
    rc = ctl_call(c, "POST", path, body, idem ? headers : NULL, r);
    return rc;
}

/* POSTs body (released here) with an Idempotency-Key; prints the answer. */
static int ctl_post_print(struct net_client *c, const char *path, json_t *body)
{
    struct net_client_resp r;
    int rc;

    memset(&r, 0, sizeof(r));
    rc = ctl_post_obj(c, path, body, true, &r);
    if (rc == CTL_OK && r.json != NULL) {
        ctl_print_obj(r.json);
    }
    json_free(body);
    net_client_resp_clear(&r);
    return rc;
}

static int ctl_sd_assign(struct net_client *c, const struct ctl_args *a)
{
    char path[CTL_VALUE_MAX + 64];
    char enc[CTL_VALUE_MAX];
    json_t *body = json_obj_new();

    if (a->npos != 1 || ctl_get(a, "--aid") == NULL || ctl_get(a, "--sp") == NULL
        || !ctl_urlenc(a->pos[0], enc, sizeof(enc)) || body == NULL) {
        json_free(body);
        return ctl_help("se sd assign", true);
    }
    snprintf(path, sizeof(path), "/tsm/v1/secure-elements/%s/security-domains", enc);
    if (json_put_str(body, "aid", ctl_get(a, "--aid")) != OT_OK
        || json_put_str(body, "sp", ctl_get(a, "--sp")) != OT_OK
        || (ctl_get(a, "--privileges") != NULL
            && json_put_str(body, "privileges", ctl_get(a, "--privileges")) != OT_OK)
        || (ctl_get(a, "--lcs") != NULL
            && json_put_str(body, "lcs", ctl_get(a, "--lcs")) != OT_OK)) {
        json_free(body);
        return CTL_LOCAL;
    }
    return ctl_post_print(c, path, body);
}

static int ctl_principal_create(struct net_client *c, const char *kind, const char *name,
                                int64_t *id, bool print)
{
    struct net_client_resp r;
    json_t *body = json_obj_new();
    int rc;

    memset(&r, 0, sizeof(r));
    if (body == NULL || json_put_str(body, "kind", kind) != OT_OK
        || json_put_str(body, "name", name) != OT_OK) {
        json_free(body);
        return CTL_LOCAL;
    }
    rc = ctl_post_obj(c, "/tsm/v1/principals", body, true, &r);
    if (rc == CTL_OK && r.json != NULL) {
        *id = json_integer_value(json_object_get(r.json, "id"));
        if (print) {
            ctl_print_obj(r.json);
        }
    }
    json_free(body);
    net_client_resp_clear(&r);
    return rc;
}

static int ctl_cert_bind(struct net_client *c, const struct ctl_args *a)
{
    char path[128];
    json_t *body = json_obj_new();
    char *end = NULL;
    long long id;

    if (a->npos != 2 || body == NULL) {
        json_free(body);
        return ctl_help("principal bind-cert", true);
    }
    id = strtoll(a->pos[0], &end, 10);
    if (end == a->pos[0] || *end != '\0' || id < 1) {
        json_free(body);
        return ctl_help("principal bind-cert", true);
    }
    snprintf(path, sizeof(path), "/tsm/v1/principals/%lld/certificates", id);
    if (json_put_str(body, "subject", a->pos[1]) != OT_OK) {
        json_free(body);
        return CTL_LOCAL;
    }
    return ctl_post_print(c, path, body);
}

static int ctl_token_issue(struct net_client *c, const struct ctl_args *a)
{
    const char *pid_s = ctl_get(a, "--principal-id");
    const char *kind = ctl_get(a, "--kind");
    const char *name = ctl_get(a, "--name");
    const char *ttl_s = ctl_get(a, "--ttl-days");
    const char *label = ctl_get(a, "--label");
    struct net_client_resp r;
    json_t *body = NULL;
    int64_t pid = 0;
    char *end = NULL;
    int rc;

    memset(&r, 0, sizeof(r));
    if (a->npos != 0 || (pid_s == NULL) == (kind == NULL || name == NULL)) {
        return ctl_help("token issue", true);
    }
    if (pid_s != NULL) {
        pid = strtoll(pid_s, &end, 10);
        if (end == pid_s || *end != '\0' || pid < 1) {
            return ctl_help("token issue", true);
        }
    } else {
        rc = ctl_principal_create(c, kind, name, &pid, false);
        if (rc != CTL_OK) {
            return rc;
        }
    }
    body = json_obj_new();
    if (body == NULL || json_put_int(body, "principal_id", pid) != OT_OK) {
        json_free(body);
        return CTL_LOCAL;
    }
    if (ttl_s != NULL) {
        long long d = strtoll(ttl_s, &end, 10);
        if (end == ttl_s || *end != '\0' || d < 1 || d > 3650) {
            json_free(body);
            fprintf(stderr, "tsmctl token issue: --ttl-days is 1..3650\n");
            return CTL_USAGE;
        }
        (void)json_put_int(body, "ttl_s", (int64_t)d * 86400);
    }
    if (label != NULL) {
        (void)json_put_str(body, "label", label);
    }
    rc = ctl_post_obj(c, "/tsm/v1/tokens", body, false, &r);
    if (rc == CTL_OK && r.json != NULL) {
        if (ctl_get(a, "--token-only") != NULL) {
            printf("%s\n", json_string_value(json_object_get(r.json, "token")));
        } else {
            ctl_print_obj(r.json);
        }
    }
    json_free(body);
    net_client_resp_clear(&r);
    return rc;
}

static int ctl_token_revoke(struct net_client *c, const struct ctl_args *a)
{
    char path[96];
    struct net_client_resp r;
    char *end = NULL;
    long long id;
    int rc;

    memset(&r, 0, sizeof(r));
    if (a->npos != 1) {
        return ctl_help("token revoke", true);
    }
    id = strtoll(a->pos[0], &end, 10);
    if (end == a->pos[0] || *end != '\0' || id < 1) {
        return ctl_help("token revoke", true);
    }
    snprintf(path, sizeof(path), "/tsm/v1/tokens/%lld", id);
    rc = ctl_call(c, "DELETE", path, NULL, NULL, &r);
    if (rc == CTL_OK && r.json != NULL) {
        ctl_print_obj(r.json);
    }
    net_client_resp_clear(&r);
    return rc;
}

static int ctl_token_list(struct net_client *c, const struct ctl_args *a)
{
    static const char *const cols[] = {"id",         "principal_id", "prefix",      "label",
                                       "expires_at", "revoked_at",   "last_used_at"};
    char path[CTL_VALUE_MAX] = "/tsm/v1/tokens";
    struct ctl_table t;
    int rc;

    if (a->npos != 0
        || !ctl_qadd(path, sizeof(path), "principal_id", ctl_get(a, "--principal-id"))) {
        return ctl_help("token list", true);
    }
    ctl_table_init(&t, cols, 7);
    rc = ctl_pages(c, path, &t, 0);
    ctl_table_print(&t);
    return rc;
}

static int ctl_audit_verify_db(const char *url)
{
    struct db *db = NULL;
    int64_t bad = 0;
    int64_t checked = 0;
    ot_err err;

    err = db_open(url, NULL, &db);
    if (err != OT_OK) {
        fprintf(stderr, "tsmctl: cannot open %s: %s\n",
                strncmp(url, "sqlite:", 7) == 0 ? url : "database", ot_strerror(err));
        return CTL_LOCAL;
    }
    err = audit_verify(db, &bad, &checked);
    db_close(db);
    if (err == OT_OK) {
        printf(g_json ? "{\"intact\":true,\"checked\":%lld,\"bad_seq\":null}\n"
                      : "audit chain intact: %lld rows checked\n",
               (long long)checked);
        return CTL_OK;
    }
    if (err == OT_E_CORRUPT) {
        if (g_json) {
            printf("{\"intact\":false,\"checked\":%lld,\"bad_seq\":%lld}\n", (long long)checked,
                   (long long)bad);
        } else {
            printf("audit chain BROKEN at row seq=%lld\n", (long long)bad);
        }
        return CTL_NEGATIVE;
    }
    fprintf(stderr, "tsmctl: audit verify: %s\n", ot_strerror(err));
    return CTL_LOCAL;
}

static int ctl_audit_verify(struct net_client *c, const struct ctl_args *a)
{
    struct net_client_resp r;
    int rc;

    if (ctl_get(a, "--db") != NULL) {
        return ctl_audit_verify_db(ctl_get(a, "--db"));
    }
    memset(&r, 0, sizeof(r));
    rc = ctl_call(c, "GET", "/tsm/v1/audit/verify", NULL, NULL, &r);
    if (rc == CTL_OK && r.json != NULL) {
        bool ok = json_is_true(json_object_get(r.json, "intact"));
        if (g_json) {
            ctl_print_json(r.json);
        } else if (ok) {
            printf("audit chain intact: %lld rows checked\n",
                   (long long)json_integer_value(json_object_get(r.json, "checked")));
        } else {
            printf("audit chain BROKEN at row seq=%lld\n",
                   (long long)json_integer_value(json_object_get(r.json, "bad_seq")));
        }
        rc = ok ? CTL_OK : CTL_NEGATIVE;
    }
    net_client_resp_clear(&r);
    return rc;
}

static int ctl_audit_list(struct net_client *c, const struct ctl_args *a)
{
    static const char *const cols[] = {"seq",      "ts_ms",   "principal_name", "action",
                                       "resource", "outcome", "request_id"};
    char path[CTL_VALUE_MAX] = "/tsm/v1/audit";
    struct ctl_table t;
    size_t max = 100;
    int rc;

    if (a->npos != 0) {
        return ctl_help("audit list", true);
    }
    if (ctl_get(a, "--limit") != NULL) {
        rc = ctl_limit(a, &max);
        if (rc != CTL_OK) {
            return rc;
        }
    }
    if (!ctl_qadd(path, sizeof(path), "action", ctl_get(a, "--action"))
        || !ctl_qadd(path, sizeof(path), "principal_id", ctl_get(a, "--principal-id"))
        || !ctl_qadd(path, sizeof(path), "request_id", ctl_get(a, "--request-id"))) {
        return CTL_USAGE;
    }
    ctl_table_init(&t, cols, 7);
    rc = ctl_pages(c, path, &t, max);
    ctl_table_print(&t);
    return rc;
}

/* ---- main --------------------------------------------------------------- */

static const struct ctl_opt ctl_global_opts[] = {
    {"--profile", true}, {"--url", true}, {"--token", true}, {"--ca", true},
    {"--cert", true},    {"--key", true}, {"--json", false}, {NULL, false}};

static const struct ctl_opt ctl_cmd_opts[] = {
    {"--format", true},       {"--chunk", true},       {"--msisdn", true},     {"--imsi", true},
    {"--id-only", false},     {"--mno", true},         {"--type", true},       {"--limit", true},
    {"--aid", true},          {"--sp", true},          {"--privileges", true}, {"--lcs", true},
    {"--principal-id", true}, {"--kind", true},        {"--name", true},       {"--ttl-days", true},
    {"--label", true},        {"--token-only", false}, {"--db", true},         {"--action", true},
    {"--request-id", true},   {"--json", false},       {NULL, false}};

/* Options each command accepts (beyond the global ones). */
static bool ctl_allowed(const char *cmd, const struct ctl_args *a)
{
    static const struct {
        const char *cmd;
        const char *opts;
    } allow[] = {
        {"se import", " --format --chunk --json "},
        {"se get", " --msisdn --imsi --id-only --json "},
        {"se list", " --mno --type --limit --json "},
        {"se sd list", " --limit --json "},
        {"se sd assign", " --aid --sp --privileges --lcs --json "},
        {"principal create", " --json "},
        {"principal bind-cert", " --json "},
        {"token issue", " --principal-id --kind --name --ttl-days --label --token-only --json "},
        {"token revoke", " --json "},
        {"token list", " --principal-id --json "},
        {"audit verify", " --db --json "},
        {"audit list", " --limit --action --principal-id --request-id --json "},
    };
    size_t i;
    size_t k;
    char needle[64];

    for (i = 0; i < sizeof(allow) / sizeof(allow[0]); i++) {
        if (strcmp(allow[i].cmd, cmd) != 0) {
            continue;
        }
        for (k = 0; k < a->nopt; k++) {
            snprintf(needle, sizeof(needle), " %s ", a->opt[k]);
            if (strstr(allow[i].opts, needle) == NULL) {
                fprintf(stderr, "tsmctl %s: option %s does not apply here\n", cmd, a->opt[k]);
                return false;
            }
        }
        return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    struct ctl_args g;
    struct ctl_args a;
    struct ctl_profile prof;
    struct net_client *c = NULL;
    char cmd[64];
    int first = 1;
    int i;
    int words = 0;
    int rc;

    /* Global options come before the command words. */
    memset(&g, 0, sizeof(g));
    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        size_t k;
        if (strcmp(argv[i], "--help") == 0) {
            fputs(ctl_usage, stdout);
            return CTL_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("tsmctl %s (OpenTSM)\n", OT_VERSION);
            return CTL_OK;
        }
        for (k = 0; ctl_global_opts[k].name != NULL; k++) {
            if (strcmp(ctl_global_opts[k].name, argv[i]) == 0) {
                break;
            }
        }
        if (ctl_global_opts[k].name == NULL) {
            fprintf(stderr, "tsmctl: unknown option '%s'\n\n%s", argv[i], ctl_usage);
            return CTL_USAGE;
        }
        g.opt[g.nopt] = argv[i];
        if (ctl_global_opts[k].has_arg) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tsmctl: %s needs a value\n", argv[i]);
                return CTL_USAGE;
            }
            g.val[g.nopt] = argv[++i];
        }
        if (++g.nopt == CTL_MAX_ARGS) {
            return CTL_USAGE;
        }
    }
    first = i;
    if (first >= argc) {
        fputs(ctl_usage, stderr);
        return CTL_USAGE;
    }
    /* Command: "se sd list" has three words, the others two. */
    cmd[0] = '\0';
    if (strcmp(argv[first], "se") == 0 && first + 1 < argc && strcmp(argv[first + 1], "sd") == 0) {
        words = 3;
    } else {
        words = 2;
    }
    if (first + words > argc) {
        if (first + words - 1 < argc && argc > first) {
            snprintf(cmd, sizeof(cmd), "%s%s%s", argv[first], words == 3 ? " " : "",
                     words == 3 ? argv[first + 1] : "");
        }
        fputs(ctl_usage, stderr);
        return CTL_USAGE;
    }
    for (i = 0; i < words; i++) {
        size_t len = strlen(cmd);
        snprintf(cmd + len, sizeof(cmd) - len, "%s%s", i ? " " : "", argv[first + i]);
    }
    if (!ctl_parse(cmd, argc, argv, first + words, ctl_cmd_opts, &a)) {
        return ctl_help(cmd, true);
    }
    if (a.help) {
        return ctl_help(cmd, false);
    }
    if (!ctl_allowed(cmd, &a)) {
        if (strstr(" se import se get se list se sd list se sd assign principal create "
                   "principal bind-cert token issue token revoke token list audit verify "
                   "audit list ",
                   cmd)
            == NULL) {
            fprintf(stderr, "tsmctl: unknown command '%s'\n\n%s", cmd, ctl_usage);
            return CTL_USAGE;
        }
        return ctl_help(cmd, true);
    }
    g_json = ctl_get(&g, "--json") != NULL || ctl_get(&a, "--json") != NULL;
    if (strcmp(cmd, "audit verify") == 0 && ctl_get(&a, "--db") != NULL) {
        return ctl_audit_verify_db(ctl_get(&a, "--db"));
    }
    rc = ctl_profile_load(&g, &prof);
    if (rc != CTL_OK) {
        return rc;
    }
    rc = ctl_client(&prof, &c);
    ot_mem_wipe(prof.token, sizeof(prof.token));
    if (rc != CTL_OK) {
        return rc;
    }
    if (strcmp(cmd, "se import") == 0) {
        rc = a.npos == 1 ? ctl_se_import(c, &a) : ctl_help(cmd, true);
    } else if (strcmp(cmd, "se get") == 0) {
        rc = ctl_se_get(c, &a);
    } else if (strcmp(cmd, "se list") == 0) {
        rc = ctl_se_list(c, &a);
    } else if (strcmp(cmd, "se sd list") == 0) {
        rc = ctl_sd_list(c, &a);
    } else if (strcmp(cmd, "se sd assign") == 0) {
        rc = ctl_sd_assign(c, &a);
    } else if (strcmp(cmd, "principal create") == 0) {
        int64_t id = 0;
        rc = a.npos == 2 ? ctl_principal_create(c, a.pos[0], a.pos[1], &id, true)
                         : ctl_help(cmd, true);
    } else if (strcmp(cmd, "principal bind-cert") == 0) {
        rc = ctl_cert_bind(c, &a);
    } else if (strcmp(cmd, "token issue") == 0) {
        rc = ctl_token_issue(c, &a);
    } else if (strcmp(cmd, "token revoke") == 0) {
        rc = ctl_token_revoke(c, &a);
    } else if (strcmp(cmd, "token list") == 0) {
        rc = ctl_token_list(c, &a);
    } else if (strcmp(cmd, "audit verify") == 0) {
        rc = ctl_audit_verify(c, &a);
    } else {
        rc = ctl_audit_list(c, &a);
    }
    net_client_free(c);
    return rc;
}
