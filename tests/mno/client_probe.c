/* mno_client driven from tests/mno/ota_test.sh against a real tsmd:
 *   client_probe URL TOKEN INSTANCE status BY VALUE      -> prints the state
 *   client_probe URL TOKEN INSTANCE submit JSON KEY      -> prints the job id
 *   client_probe URL TOKEN INSTANCE job ID               -> prints the job state
 *   client_probe URL TOKEN INSTANCE cancel ID            -> prints the job state
 *   client_probe URL TOKEN INSTANCE jobs                 -> prints the ids, one a line
 * On an error: prints "fail=<n> status=<http> code=<code> field=<field>" and
 * exits 1. */
#include "mno/mno_client.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

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
