/* Internals shared by the files of src/fleet (never included from elsewhere). */
#ifndef OT_FLEET_FLEET_PRIV_H
#define OT_FLEET_FLEET_PRIV_H

#include "agent/admin.h"
#include "agent/conv.h"
#include "agent/script.h"
#include "client/otascp.h"
#include "core/buf.h"
#include "core/err.h"
#include "fleet/fleet.h"
#include "net/sse.h"
#include "se/card.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- HTTP (fleet_http.c)
 *
 * One HTTP/1.1 connection driven by the loop's epoll: a request is written
 * (non-blocking), the answer read and parsed (status, headers, a
 * Content-Length body, or a text/event-stream fed to an SSE parser until the
 * server closes). Keep-alive: the next fh_send on the same connection reuses
 * it unless the server said Connection: close (then it reconnects). */

struct ssl_ctx_st;
struct ssl_st;

struct fh_loop {
    int ep;
    struct ssl_ctx_st *tls; /* NULL: plain HTTP; else every connection is TLS */
    char tls_ip[64];        /* the address the server's certificate must name */
    uint32_t dst_addr;      /* network order */
    uint16_t dst_port;      /* network order */
    char host[64];          /* Host header */
    unsigned open;          /* connections open now */
};

struct fh_conn;

/* A request ended: err OT_OK with c->status and the answer (fh_body,
 * fh_header) valid until the next fh_send / fh_close, or the transport's
 * error. For a stream: called once when the 200 arrives (OT_OK, c->streaming
 * set) and once when it ends (OT_E_CLOSED or the transport's error). */
typedef void (*fh_done_fn)(void *ctx, struct fh_conn *c, ot_err err);

struct fh_conn {
    struct fh_loop *loop;
    int fd;
    struct ssl_st *ssl; /* TLS (loop->tls) */
    uint32_t src;       /* source address, network order (0: any) */
    bool connecting;
    bool handshaking; /* TLS handshake in progress */
    bool busy;        /* a request is out and its answer not complete */
    bool must_close;  /* the server closes after this answer */
    bool streaming;   /* the answer is an SSE stream being fed to sse */
    bool reused;      /* the request went over a kept-alive connection */
    int status;
    struct ot_buf out;
    size_t out_off;
    struct ot_buf in;
    size_t hdr_end;         /* bytes of status line + headers (0: not all in) */
    size_t clen;            /* body length */
    struct net_sse_rx *sse; /* set by the caller before a stream request */
    fh_done_fn done;
    void *ctx;
};

/* ca_file non-NULL: TLS (HTTPS), the server's certificate verified
 * against it and required to name host (an IPv4 address). */
ot_err fh_loop_init(struct fh_loop *l, const char *host, uint16_t port, const char *ca_file);
void fh_loop_close(struct fh_loop *l);
/* Runs epoll once (up to timeout_ms) and dispatches. */
void fh_loop_poll(struct fh_loop *l, int timeout_ms);

/* A connection object (not connected yet); src_host_order 0: any source. */
void fh_conn_init(struct fh_conn *c, struct fh_loop *l, uint32_t src_host_order);
/* Sends method path with extra header lines (each "Name: value\r\n", may be
 * NULL), a bearer token (may be NULL) and body (ctype NULL: none). Connects
 * first when needed. done is called exactly once per fh_send for a plain
 * answer. */
ot_err fh_send(struct fh_conn *c, const char *method, const char *path, const char *token,
               const char *extra, const char *ctype, const void *body, size_t len, fh_done_fn done,
               void *ctx);
/* Closes the socket and frees the buffers (the object stays usable). */
void fh_close(struct fh_conn *c);
const uint8_t *fh_body(const struct fh_conn *c, size_t *len);
/* Copies header name's value (first one) into out; false when absent or too long. */
bool fh_header(const struct fh_conn *c, const char *name, char *out, size_t cap);

/* ---------------------------------------------------------------- devices (fleet.c)
 * The engine's state, shared by fleet.c (devices, streams, sessions, push)
 * and fleet_cms.c (cms: card import, destroy requests, polls). */

#define FLEET_INFLIGHT_DEF 64u
#define FLEET_CMDS_MAX     8u
#define FLEET_JSON_MAX     ((size_t)64 * 1024)
#define FLEET_EVENT_MAX    4096u
#define FLEET_RETRY_S      1.0
#define FLEET_ISD_AID      "\xA0\x00\x00\x01\x51\x00\x00\x00"
#define FLEET_KEY          "404142434445464748494A4B4C4D4E4F"
#define FLEET_KVN          0x30u
#define FLEET_CT_RESP      "application/vnd.globalplatform.card-content-mgt-response;version=1.0"

/* A device's progress. */
enum dev_state {
    DS_NEW = 0,
    DS_PRINCIPAL, /* POST /admin/v1/principals out */
    DS_TOKEN,     /* POST /admin/v1/tokens out */
    DS_ENROL,     /* POST P/devices out */
    DS_ENROLLED,
    DS_REGISTER, /* POST P/device/register out */
    DS_STREAM,   /* GET P/device/stream out */
    DS_ONLINE,   /* holding the stream */
    DS_BACKOFF,  /* stream lost: register again at retry_at */
    DS_FAILED,
};

/* What the device's request connection is doing (the stream has its own). */
enum req_kind { RQ_NONE = 0, RQ_ENROL, RQ_REGISTER, RQ_HEARTBEAT, RQ_SESSION };

/* One admin session in progress (docs/ota.md 5). */
struct fleet_sess {
    char job[AGENT_JOB_ID_MAX + 1];
    char uri[192];
    const char *status; /* of the next POST; NULL: the first one */
    bool resume;
    struct agent_service *svc;
    struct agent_session *cs;
    struct agent_channel *ch;
    struct ot_buf out; /* the last response script */
    double retry_at;   /* 202: repeat the POST then (0: not waiting) */
    bool recover;      /* a session a killed run left open (session_recover) */
};

/* The push phase's job of a device: the submitter's state. */
struct fleet_job {
    struct otascp_state st;
    bool submitted;
    bool ended;
};

struct fleet_dev {
    struct se_card *card;
    double t_req;   /* cms: the destroy request went out (monotonic s) */
    double t_done;  /* cms: the card seen destroyed in cms */
    double poll_at; /* cms: next GET of the card (0: none due) */
    char *token;
    struct fh_conn *stream;
    struct net_sse_rx *sse;
    struct fh_conn *req;
    struct fleet_sess *sess;
    struct fleet_job *job;
    int64_t principal;
    double next_hb;      /* heartbeat due (monotonic s) */
    double retry_at;     /* DS_BACKOFF: when to register again */
    uint32_t idx;        /* global index */
    uint8_t state;       /* enum dev_state */
    uint8_t rq;          /* enum req_kind */
    bool job_waiting;    /* a job event came while the request connection was busy */
    bool offline;        /* kept off until fleet_online_rest (cms runs) */
    bool rewake;         /* registration said jobs wait: the stream asks for retained events */
    uint8_t c_req;       /* enum fleet_creq: the cms destroy request */
    uint8_t c_done;      /* enum fleet_cdone: the card as cms sees it */
    uint16_t destroy_rx; /* DESTROY commands the card received (this run) */
    uint16_t destroy_ok; /* of those, executed (9000) */
    char waiting_job[AGENT_JOB_ID_MAX + 1];
    struct otascp_card known; /* what the card told at creation (kdd, i, counter) */
    char *lost_uri; /* a session a killed run left open (state_dir): reported interrupted */
};

struct fleet {
    struct fleet_cfg cfg;
    char prefix[64]; /* /mno/<instance>/v1 */
    char *op_token;
    char *sp_token;
    char run_tag[32];
    struct fh_loop loop;
    struct fleet_dev *devs;
    uint32_t cursor;   /* next device of a bulk phase */
    unsigned inflight; /* devices in flight in a bulk phase */
    struct fleet_stats stats;
    int heartbeat_s;
    double last_timers;
    struct scp03_keyset keys;
    uint8_t cmd_buf[FLEET_CMDS_MAX][8];
    struct otascp_apdu cmds[FLEET_CMDS_MAX];
    size_t ncmds;
    /* push phase */
    struct fh_conn *sub; /* submitter connections (cfg.inflight) */
    uint32_t *sub_dev;   /* the device each one submits for */
    uint32_t sub_cursor;
    unsigned sub_busy;
    /* cms runs (fleet_cms.c) */
    bool cms_live;       /* loop_once pumps destroy requests and polls */
    uint32_t c_cursor;   /* next device to request a destroy for */
    uint32_t c_limit;    /* requests up to this device index (exclusive) */
    unsigned c_max_open; /* devices requested and not yet seen destroyed, at most */
    unsigned c_open;
    uint32_t c_serial_left; /* serial run: requests still to make (online devices only) */
    bool c_serial;
    unsigned poll_ms;
    uint8_t *sub_kind; /* per slot: 0 idle, 1 destroy request, 2 card poll */
    uint32_t *pollq;   /* devices whose card ran DESTROY, FIFO (poll_at order) */
    uint32_t pq_head, pq_len;
    double *lat; /* destroy latencies (s) of the devices in serial runs */
    uint32_t nlat;
    int log_fd;  /* state_dir/destroys.<first>.log (-1: none) */
    int sess_fd; /* state_dir/sessions.<first>.log (-1: none) */
};

/* A cms destroy request (fleet_dev.c_req) and what cms says of the card. */
enum fleet_creq { FC_NONE = 0, FC_OUT, FC_ACCEPTED, FC_REFUSED };
enum fleet_cdone { FD_NONE = 0, FD_POLL, FD_DESTROYED };

/* The card's back end saw a DESTROY command (sw 0: before it ran). */
void fleet_destroy_seen(struct fleet_dev *d, uint16_t sw);
/* The fleet of the running loop (callbacks get the device). */
struct fleet *fleet_cb(void);
/* Runs the loop once (epoll up to timeout_ms, timers, the cms pump). */
void fleet_loop_once(struct fleet *f, int timeout_ms);
void fleet_dev_fail(struct fleet_dev *d, const char *what, const struct fh_conn *c, ot_err err);
/* Brings the enrolled devices kept off (kept_off) or the others online. */
ot_err fleet_online_group(struct fleet *f, bool kept_off, unsigned timeout_ms);
/* cms: fills free submitter slots with destroy requests and card polls. */
void fleet_cms_pump(struct fleet *f);
/* Identities of device i (fleet.c). */
void fleet_dev_imei(uint32_t i, char out[16]);
void fleet_dev_imsi(uint32_t i, char out[16]);
void fleet_dev_msisdn(uint32_t i, char out[16]);
void fleet_dev_cin(uint32_t i, char out[17]);

/* ---------------------------------------------------------------- card back end (fleet_card.c) */

/* A converter back end (agent/conv.h) over a device's in-memory card (impl:
 * the struct fleet_dev): connect powers it on, disconnect powers it off (its
 * command buffers given back), free leaves the card to its owner; every vse
 * DESTROY command (INS DE, proprietary class) is reported to
 * fleet_destroy_seen before and after the card runs it. */
const struct agent_be_ops *fleet_card_be(void);

#endif
