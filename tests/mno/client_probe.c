/* mno_client driven from tests/mno/ota_test.sh against a real tsmd:
 *   client_probe URL TOKEN INSTANCE status BY VALUE      -> prints the state
 *   client_probe URL TOKEN INSTANCE submit JSON KEY      -> prints the job id
 *   client_probe URL TOKEN INSTANCE job ID               -> prints the job state
 *   client_probe URL TOKEN INSTANCE cancel ID            -> prints the job state
 *   client_probe URL TOKEN INSTANCE jobs                 -> prints the ids, one a line
 *   client_probe listen PORT DIR    accepts one HTTP request on 127.0.0.1:PORT,
 *                                   answers 200, writes DIR/headers and DIR/body
 *   client_probe verify PUBHEX SIGHEX TIMESTAMP BODYFILE
 *                                   ES256 over "TIMESTAMP.BODY": prints ok or bad
 * On an error: prints "fail=<n> status=<http> code=<code> field=<field>" and
 * exits 1. */
#define _POSIX_C_SOURCE 200809L
#include "client/mno_client.h"
#include "core/hex.h"
#include "crypto/ec.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One HTTP/1.1 request with a Content-Length body. */
static int listen_one(int port, const char *dir)
{
    struct sockaddr_in a;
    char buf[65536];
    size_t have = 0;
    char path[512];
    int one = 1;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int c;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 1) != 0) {
        perror("listen");
        return 1;
    }
    alarm(30); /* never outlives a failed test */
    printf("listening\n");
    fflush(stdout);
    c = accept(s, NULL, NULL);
    if (c < 0) {
        perror("accept");
        return 1;
    }
    for (;;) {
        ssize_t n = read(c, buf + have, sizeof(buf) - 1 - have);
        char *end;
        if (n <= 0) {
            break;
        }
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end != NULL) {
            const char *cl = strstr(buf, "Content-Length: ");
            size_t want = cl != NULL ? (size_t)strtoul(cl + 16, NULL, 10) : 0;
            size_t hl = (size_t)(end + 4 - buf);
            if (have >= hl + want) {
                FILE *f;
                snprintf(path, sizeof(path), "%s/headers", dir);
                f = fopen(path, "wb");
                if (f != NULL) {
                    fwrite(buf, 1, hl, f);
                    fclose(f);
                }
                snprintf(path, sizeof(path), "%s/body", dir);
                f = fopen(path, "wb");
                if (f != NULL) {
                    fwrite(buf + hl, 1, want, f);
                    fclose(f);
                }
                break;
            }
        }
    }
    {
        static const char ok[] =
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)!write(c, ok, sizeof(ok) - 1);
    }
    close(c);
    close(s);
    return 0;
}

static int verify(const char *pubhex, const char *sighex, const char *ts, const char *file)
{
    uint8_t pub[EC_P256_PUB_LEN];
    uint8_t sig[EC_P256_SIG_LEN];
    size_t pl = sizeof(pub);
    size_t sl = sizeof(sig);
    char msg[65536];
    size_t n;
    FILE *f = fopen(file, "rb");

    if (f == NULL || hex_decode(pubhex, strlen(pubhex), pub, &pl) != OT_OK
        || hex_decode(sighex, strlen(sighex), sig, &sl) != OT_OK || pl != sizeof(pub)
        || sl != sizeof(sig)) {
        printf("bad input\n");
        return 1;
    }
    n = (size_t)snprintf(msg, sizeof(msg), "%s.", ts);
    n += fread(msg + n, 1, sizeof(msg) - n, f);
    fclose(f);
    printf("%s\n", ec_p256_verify(pub, (const uint8_t *)msg, n, sig) == OT_OK ? "ok" : "bad");
    return 0;
}

static int fail(const struct tsm_client_err *e)
{
    printf("fail=%d status=%ld code=%s field=%s\n", (int)e->fail, e->status, e->code, e->field);
    return 1;
}

int main(int argc, char **argv)
{
    struct tsm_client_cfg cfg;
    struct tsm_client *c = NULL;
    struct mno_client *m = NULL;
    struct tsm_client_err e;
    json_t *out = NULL;
    ot_err err;
    int rc = 0;

    if (argc == 4 && strcmp(argv[1], "listen") == 0) {
        return listen_one(atoi(argv[2]), argv[3]);
    }
    if (argc == 6 && strcmp(argv[1], "verify") == 0) {
        return verify(argv[2], argv[3], argv[4], argv[5]);
    }
    if (argc < 5) {
        fprintf(stderr, "usage: client_probe URL TOKEN INSTANCE CMD [ARGS]\n");
        return 2;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.url = argv[1];
    cfg.token = argv[2];
    if (tsm_client_new(&cfg, &c, &e) != OT_OK) {
        return fail(&e);
    }
    if (mno_client_new(c, argv[3], &m) != OT_OK) {
        fprintf(stderr, "bad instance\n");
        tsm_client_free(c);
        return 2;
    }
    if (strcmp(argv[4], "status") == 0 && argc == 7) {
        err = mno_client_status(m, argv[5], argv[6], &out, &e);
        if (err == OT_OK) {
            printf("%s\n", json_string_value(json_object_get(out, "state")));
        }
    } else if (strcmp(argv[4], "submit") == 0 && argc == 7) {
        json_t *job = json_loads(argv[5], 0, NULL);
        err = mno_client_job_submit(m, job, argv[6], &out, &e);
        json_decref(job);
        if (err == OT_OK) {
            printf("%s\n", json_string_value(json_object_get(out, "id")));
        }
    } else if ((strcmp(argv[4], "job") == 0 || strcmp(argv[4], "cancel") == 0) && argc == 6) {
        err = strcmp(argv[4], "job") == 0 ? mno_client_job(m, argv[5], &out, &e)
                                          : mno_client_job_cancel(m, argv[5], &out, &e);
        if (err == OT_OK) {
            printf("%s\n", json_string_value(json_object_get(out, "state")));
        }
    } else if (strcmp(argv[4], "jobs") == 0 && argc == 5) {
        struct tsm_client_page pg;
        struct tsm_client_pg a = {NULL, 1000};
        err = mno_client_jobs(m, &a, &pg, &e);
        if (err == OT_OK) {
            for (size_t i = 0; i < json_array_size(pg.items); i++) {
                printf("%s\n",
                       json_string_value(json_object_get(json_array_get(pg.items, i), "id")));
            }
            tsm_client_page_clear(&pg);
        }
    } else {
        fprintf(stderr, "unknown command\n");
        err = OT_E_ARG;
        rc = 2;
    }
    if (err != OT_OK && rc == 0) {
        rc = fail(&e);
    }
    json_decref(out);
    mno_client_free(m);
    tsm_client_free(c);
    return rc;
}
