/* Fuzz target: what otascp (src/client/otascp.h) parses from untrusted
 * bytes: a stored state text (otascp_state_decode), and a job as mno shows
 * it with R-APDUs that came from the card through the phone
 * (otascp_job_rapdus, then otascp_verify with fixed keys and state).
 *
 * The first input byte picks the path: even = a state text; odd = a job's
 * JSON. Checked: a decoded state encodes and decodes to the same state; the
 * R-APDUs of a job are at least 2 bytes each; a verify that fails leaves
 * its result empty, one that works lists at most as many failed commands as
 * there are commands. */
#include "client/otascp.h"
#include "net/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_state(const uint8_t *p, size_t n)
{
    char *text = malloc(n + 1);
    struct otascp_state a;
    struct otascp_state b;
    char enc[OTASCP_STATE_MAX];

    if (text == NULL) {
        return;
    }
    memcpy(text, p, n);
    text[n] = '\0';
    if (otascp_state_decode(text, &a) == OT_OK) {
        if (otascp_state_encode(&a, enc, sizeof(enc)) != OT_OK
            || otascp_state_decode(enc, &b) != OT_OK || a.mode != b.mode || a.level != b.level
            || a.n_cmds != b.n_cmds || a.predicted_seq != b.predicted_seq
            || a.card.seq != b.card.seq || strcmp(a.job, b.job) != 0
            || memcmp(a.host_chal, b.host_chal, sizeof(a.host_chal)) != 0) {
            abort();
        }
    }
    free(text);
}

static void fuzz_job(const uint8_t *p, size_t n)
{
    static const uint8_t aid[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x53, 0x44, 0x01};
    static const uint8_t c1[] = {0x80, 0xCA, 0x00, 0xE0, 0x00};
    static const struct otascp_apdu cmds[] = {{c1, sizeof(c1)}, {c1, sizeof(c1)}};
    struct scp03_keyset k;
    struct otascp_card card;
    struct otascp_cfg cfg;
    struct otascp_state st;
    struct otascp_batch b;
    struct otascp_result res;
    struct otascp_apdu *r = NULL;
    uint8_t *buf = NULL;
    size_t nr = 0;
    json_t *job = NULL;
    struct json_err je;

    memset(&je, 0, sizeof(je));
    if (json_parse(p, n, 1u << 20, &job, &je) != OT_OK) {
        return;
    }
    if (otascp_job_rapdus(job, &r, &nr, &buf) == OT_OK) {
        for (size_t i = 0; i < nr; i++) {
            if (r[i].n < 2) {
                abort();
            }
        }
        memset(&k, 0, sizeof(k));
        k.kvn = 0x30;
        k.key_len = 16;
        memset(&card, 0, sizeof(card));
        card.known = (nr & 1) != 0; /* scripted (guarded) or interactive */
        card.i = 0x70;
        card.seq = 7;
        memset(&cfg, 0, sizeof(cfg));
        cfg.keys = &k;
        cfg.level = 0x33;
        cfg.sd_aid = aid;
        cfg.sd_aid_len = sizeof(aid);
        cfg.card = &card;
        cfg.host_challenge = (const uint8_t *)"\x01\x02\x03\x04\x05\x06\x07\x08";
        if (otascp_plan(&cfg, cmds, 2, &st, &b) == OT_OK) {
            otascp_batch_free(&b);
            if (otascp_verify(&k, cmds, 2, &st, r, nr, &res) != OT_OK) {
                if (res.resp != NULL || res.n != 0) {
                    abort();
                }
            } else if (res.n != 2 || res.n_failed > 2) {
                abort();
            }
            otascp_result_free(&res);
        }
        free(r);
        free(buf);
    }
    json_free(job);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    if ((data[0] & 1) == 0) {
        fuzz_state(data + 1, size - 1);
    } else {
        fuzz_job(data + 1, size - 1);
    }
    return 0;
}
