/* Protocol converter back end: a reader of pcsc-lite.
 *
 * The reader is found by name at every connect (the configured name, or the
 * first listed reader that starts with it, as pcsc-lite adds " 00 00"
 * indexes), so a reader that was unplugged and comes back is found again; a
 * pcscd that restarted is met with a new context. pcsc-lite has no timeout
 * on SCardTransmit, so each transmit runs on a worker thread and the caller
 * waits at most the APDU timeout. A transmit that times out is abandoned to
 * the worker, which disconnects the card when the call finally returns;
 * until then the reader answers OT_E_TIMEOUT (busy).
 */
#define OT_LOG_COMPONENT "agent.pcsc"
#include "agent/conv.h"

#include "core/log.h"
#include "core/thread.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <PCSC/winscard.h>
#include <PCSC/wintypes.h>

#define PCSC_NAME_MAX 128u

enum pcsc_job { JOB_IDLE, JOB_REQ, JOB_DONE };

struct pcsc_be {
    char want[PCSC_NAME_MAX];
    SCARDCONTEXT ctx;
    bool has_ctx;
    SCARDHANDLE card;
    bool connected;
    DWORD proto;
    /* the worker */
    pthread_t th;
    bool th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum pcsc_job job;
    bool abandoned; /* the caller gave up on the running request */
    bool quit;
    const uint8_t *cmd;
    size_t cmd_len;
    uint8_t *resp;
    DWORD resp_len;
    LONG rv;
};

static void pcsc_drop_ctx(struct pcsc_be *b)
{
    if (b->connected) {
        (void)SCardDisconnect(b->card, SCARD_LEAVE_CARD);
        b->connected = false;
    }
    if (b->has_ctx) {
        (void)SCardReleaseContext(b->ctx);
        b->has_ctx = false;
    }
}

static void *pcsc_worker(void *arg)
{
    struct pcsc_be *b = arg;
    const SCARD_IO_REQUEST *pci;

    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->job != JOB_REQ && !b->quit) {
            pthread_cond_wait(&b->cv, &b->mu);
        }
        if (b->quit) {
            break;
        }
        pci = b->proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
        b->resp_len = AGENT_RESP_MAX;
        pthread_mutex_unlock(&b->mu);
        LONG rv =
            SCardTransmit(b->card, pci, b->cmd, (DWORD)b->cmd_len, NULL, b->resp, &b->resp_len);
        pthread_mutex_lock(&b->mu);
        b->rv = rv;
        if (b->abandoned) {
            /* The caller timed out: the card's state is unknown; drop it. */
            OT_LOG_DEBUG("reader=%s abandoned transmit returned", b->want);
            pcsc_drop_ctx(b);
            b->abandoned = false;
            b->job = JOB_IDLE;
        } else {
            b->job = JOB_DONE;
        }
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static bool pcsc_busy(struct pcsc_be *b)
{
    bool busy;

    pthread_mutex_lock(&b->mu);
    busy = b->job != JOB_IDLE;
    pthread_mutex_unlock(&b->mu);
    return busy;
}

static ot_err pcsc_map(LONG rv)
{
    switch (rv) {
    case SCARD_S_SUCCESS:
        return OT_OK;
    case SCARD_E_NO_SMARTCARD:
    case SCARD_W_REMOVED_CARD:
    case SCARD_E_UNKNOWN_READER:
    case SCARD_E_READER_UNAVAILABLE:
    case SCARD_W_UNPOWERED_CARD:
    case SCARD_W_UNRESPONSIVE_CARD:
    case SCARD_E_NO_READERS_AVAILABLE:
    case SCARD_W_RESET_CARD:
        return OT_E_NO_CARD;
    case SCARD_E_TIMEOUT:
        return OT_E_TIMEOUT;
    default:
        return OT_E_IO;
    }
}

/* The reader's current PC/SC name into name (cap PCSC_NAME_MAX). */
static ot_err pcsc_find(struct pcsc_be *b, char *name)
{
    char *list = NULL;
    DWORD len = 0;
    LONG rv;
    const char *r;
    size_t wl = strlen(b->want);
    ot_err err = OT_E_NO_CARD;

    if (!b->has_ctx) {
        rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &b->ctx);
        if (rv != SCARD_S_SUCCESS) {
            OT_LOG_DEBUG("SCardEstablishContext: %s", pcsc_stringify_error(rv));
            return OT_E_NO_CARD;
        }
        b->has_ctx = true;
    }
    rv = SCardListReaders(b->ctx, NULL, NULL, &len);
    if (rv == SCARD_E_NO_SERVICE || rv == SCARD_E_INVALID_HANDLE) {
        pcsc_drop_ctx(b); /* pcscd restarted: a new context next time */
    }
    if (rv != SCARD_S_SUCCESS || len == 0) {
        return OT_E_NO_CARD;
    }
    list = malloc(len);
    if (list == NULL) {
        return OT_E_NOMEM;
    }
    rv = SCardListReaders(b->ctx, NULL, list, &len);
    if (rv == SCARD_S_SUCCESS) {
        for (r = list; *r != '\0'; r += strlen(r) + 1) {
            if (strncmp(r, b->want, wl) == 0 && strlen(r) < PCSC_NAME_MAX) {
                memcpy(name, r, strlen(r) + 1);
                err = OT_OK;
                break;
            }
        }
    }
    free(list);
    return err;
}

static void pcsc_disconnect(void *impl)
{
    struct pcsc_be *b = impl;

    if (pcsc_busy(b)) {
        return; /* the worker drops it when the abandoned call returns */
    }
    if (b->connected) {
        (void)SCardDisconnect(b->card, SCARD_RESET_CARD);
        b->connected = false;
    }
}

static ot_err pcsc_connect(void *impl, int timeout_ms, uint8_t *atr, size_t *atr_len)
{
    struct pcsc_be *b = impl;
    char name[PCSC_NAME_MAX];
    char rname[PCSC_NAME_MAX];
    DWORD rlen = sizeof rname;
    DWORD state;
    DWORD proto;
    BYTE a[MAX_ATR_SIZE];
    DWORD alen = sizeof a;
    LONG rv;
    ot_err err;

    (void)timeout_ms;
    if (pcsc_busy(b)) {
        return OT_E_TIMEOUT;
    }
    pcsc_disconnect(b);
    err = pcsc_find(b, name);
    if (err != OT_OK) {
        return err;
    }
    rv = SCardConnect(b->ctx, name, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                      &b->card, &proto);
    if (rv != SCARD_S_SUCCESS) {
        OT_LOG_DEBUG("SCardConnect %s: %s", name, pcsc_stringify_error(rv));
        if (rv == SCARD_E_NO_SERVICE || rv == SCARD_E_INVALID_HANDLE) {
            pcsc_drop_ctx(b);
        }
        return pcsc_map(rv) == OT_OK ? OT_E_IO : pcsc_map(rv);
    }
    b->connected = true;
    b->proto = proto;
    rv = SCardStatus(b->card, rname, &rlen, &state, &proto, a, &alen);
    if (rv != SCARD_S_SUCCESS || alen == 0 || alen > *atr_len) {
        pcsc_disconnect(b);
        return rv != SCARD_S_SUCCESS ? pcsc_map(rv) : OT_E_PROTOCOL;
    }
    memcpy(atr, a, alen);
    *atr_len = alen;
    OT_LOG_DEBUG("reader '%s' connected T=%d", name, proto == SCARD_PROTOCOL_T0 ? 0 : 1);
    return OT_OK;
}

static ot_err pcsc_transmit(void *impl, const uint8_t *cmd, size_t n, uint8_t *resp,
                            size_t *resp_len, int timeout_ms)
{
    struct pcsc_be *b = impl;
    struct timespec dl;
    ot_err err = OT_OK;
    int rc = 0;

    if (!b->connected) {
        return OT_E_NO_CARD;
    }
    if (!b->th_started) {
        if (ot_thread_start(&b->th, pcsc_worker, b) != OT_OK) {
            return OT_E_NOMEM;
        }
        b->th_started = true;
    }
    ot_deadline_after_ms(timeout_ms, &dl);
    pthread_mutex_lock(&b->mu);
    if (b->job != JOB_IDLE) {
        pthread_mutex_unlock(&b->mu);
        return OT_E_TIMEOUT;
    }
    b->cmd = cmd;
    b->cmd_len = n;
    b->job = JOB_REQ;
    pthread_cond_broadcast(&b->cv);
    while (b->job != JOB_DONE && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&b->cv, &b->mu, &dl);
    }
    if (b->job != JOB_DONE) {
        /* The card did not answer in time: leave the call to the worker. */
        b->abandoned = true;
        b->cmd = NULL;
        pthread_mutex_unlock(&b->mu);
        OT_LOG_WARN("event=apdu_timeout reader=%s timeout_ms=%d", b->want, timeout_ms);
        return OT_E_TIMEOUT;
    }
    b->job = JOB_IDLE;
    if (b->rv != SCARD_S_SUCCESS) {
        OT_LOG_DEBUG("SCardTransmit: %s", pcsc_stringify_error(b->rv));
        err = pcsc_map(b->rv) == OT_OK ? OT_E_IO : pcsc_map(b->rv);
    } else if (b->resp_len > *resp_len) {
        *resp_len = b->resp_len;
        err = OT_E_BUF_SMALL;
    } else {
        memcpy(resp, b->resp, b->resp_len);
        *resp_len = b->resp_len;
    }
    pthread_mutex_unlock(&b->mu);
    return err;
}

static bool pcsc_present(void *impl)
{
    struct pcsc_be *b = impl;
    char name[PCSC_NAME_MAX];
    SCARD_READERSTATE rs;

    if (pcsc_busy(b)) {
        return false;
    }
    if (pcsc_find(b, name) != OT_OK) {
        return false;
    }
    memset(&rs, 0, sizeof rs);
    rs.szReader = name;
    rs.dwCurrentState = SCARD_STATE_UNAWARE;
    if (SCardGetStatusChange(b->ctx, 0, &rs, 1) != SCARD_S_SUCCESS) {
        return false;
    }
    return (rs.dwEventState & SCARD_STATE_PRESENT) != 0
           && (rs.dwEventState & SCARD_STATE_MUTE) == 0;
}

static void pcsc_free(void *impl)
{
    struct pcsc_be *b = impl;

    if (b == NULL) {
        return;
    }
    if (b->th_started) {
        pthread_mutex_lock(&b->mu);
        b->quit = true;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        (void)pthread_join(b->th, NULL); /* waits for an abandoned call to return */
    }
    pcsc_drop_ctx(b);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b->resp);
    free(b);
}

static const struct agent_be_ops pcsc_ops = {
    .name = "pcsc",
    .connect = pcsc_connect,
    .transmit = pcsc_transmit,
    .disconnect = pcsc_disconnect,
    .present = pcsc_present,
    .free = pcsc_free,
};

ot_err agent_be_pcsc_new(const char *reader, const struct agent_be_ops **ops, void **impl)
{
    struct pcsc_be *b;
    size_t n;

    if (reader == NULL || ops == NULL || impl == NULL) {
        return OT_E_ARG;
    }
    n = strlen(reader);
    if (n == 0 || n >= PCSC_NAME_MAX) {
        return OT_E_FORMAT;
    }
    b = calloc(1, sizeof *b);
    if (b == NULL) {
        return OT_E_NOMEM;
    }
    b->resp = malloc(AGENT_RESP_MAX);
    if (b->resp == NULL || pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b->resp);
        free(b);
        return OT_E_NOMEM;
    }
    if (pthread_cond_init(&b->cv, NULL) != 0) {
        pthread_mutex_destroy(&b->mu);
        free(b->resp);
        free(b);
        return OT_E_NOMEM;
    }
    memcpy(b->want, reader, n + 1);
    *ops = &pcsc_ops;
    *impl = b;
    return OT_OK;
}
