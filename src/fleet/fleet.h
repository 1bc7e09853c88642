/* fleetsim's engine (issue 10 point 5): many simulated devices in one
 * process, for load and scale tests of mno.
 *
 * A device is an se-agent reduced to what the OTA path needs, with an
 * in-memory vse card (profile fleet_profile(): an eSE whose ISD runs SCP03
 * with a pseudo-random card challenge) and a unique identity derived from its
 * index: IMEI, IMSI, MSISDN, CIN. It enrols (the operator's part: a device
 * principal, its bearer token, the enrolment on the mno instance), registers,
 * holds its push stream (SSE), and runs the admin session of each job it is
 * woken for (docs/ota.md section 5) against its card with the agent's script
 * runner and protocol converter (src/agent) over a converter back end on the
 * card runtime. The submitting side is in-process too: one SCP03 job per
 * device, built by the shared submitter core (client/otascp.h) from what the
 * device's card told at creation (KDD, i, counter), so the job is the guarded
 * one-job handshake; the device's own answers are verified (R-MACs) when its
 * session ends.
 *
 * Everything runs on one epoll loop with a small HTTP/1.1 client (plain
 * HTTP or TLS; fleet_http.c): an idle device costs its card state, its stream's
 * socket and a few hundred bytes, not a thread and a libcurl handle. Each
 * device's connections leave from its own loopback address
 * (127.x.y.z, fleet_dev_src) so 100,000 streams and their short session
 * connections never run out of ephemeral ports towards a handful of nodes.
 *
 * Not thread-safe: one thread runs a struct fleet. fleetsim runs several
 * processes for more devices than one process has descriptors.
 */
#ifndef OT_FLEET_FLEET_H
#define OT_FLEET_FLEET_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fleet_cfg {
    const char *host;     /* the tsmd node: IPv4 address ("127.0.0.1") */
    uint16_t port;        /* its HTTP port */
    const char *ca_file;  /* NULL: plain HTTP; else HTTPS, the node's certificate checked
                             against this CA and required to name host */
    const char *instance; /* the mno instance ("orange") */
    const char *op_token; /* operator: principals, tokens, enrolment */
    const char *sp_token; /* the submitter of the jobs (a service provider) */
    uint32_t first;       /* index of the first device: identities derive from it */
    uint32_t n;           /* devices */
    unsigned inflight;    /* devices (or submissions) in flight in the bulk phases; 0 = 64 */
    unsigned cmds;        /* plain commands per job (GET DATA / GET STATUS); 0 = 2 */
    uint8_t level;        /* SCP03 level of the jobs (00 01 03 11 13 33); 0x33 default */
    bool level_set;       /* level given (00 is a level) */
    const char *run_tag;  /* makes Idempotency-Keys unique per run ("" none) */
    /* cms runs (docs/fleetsim.md "cms"): the cards as cms cards */
    const char *state_dir;  /* NULL: cards in memory only; else each card's image is
                               DIR/card-<i>.img (opened when there: the card keeps its
                               state across runs) and DIR/destroys.<first>.log records
                               every DESTROY command the cards receive */
    unsigned offline_pct;   /* devices with (i % 100) * 37 % 100 < pct (pct in a hundred,
                               spread) stay off until fleet_online_rest */
    int64_t cms_subscriber; /* the cards' subscriber (host principal id); 0: no cms */
    const char *sub_token;  /* the subscriber's token (destroy requests, card reads) */
    const char *issuer;     /* the cards' issuer (NULL: "bank1") */
    bool central;           /* cards with the central SD and the payment package
                               (fleet_profile_central: bench/provision) */
};

struct fleet_stats {
    uint32_t devices;
    uint32_t enrolled;   /* enrolment done (principal, token, device) */
    uint32_t online;     /* registered and holding their stream now */
    uint32_t submitted;  /* jobs accepted by mno (201) */
    uint32_t done;       /* sessions that ended with 204 after every script ran */
    uint32_t verified;   /* of those, results whose R-MACs verified and all commands ok */
    uint32_t failed;     /* enrolment, registration, submission or session errors */
    uint32_t reconnects; /* streams reopened after a drop */
    double push_start;   /* monotonic seconds: the first submission */
    double push_end;     /* the last verified session end */
    /* cms */
    uint32_t imported;      /* cards imported into cms (or already there, same key) */
    uint32_t requested;     /* destroy requests accepted (202) */
    uint32_t refused;       /* destroy requests refused */
    uint32_t destroyed;     /* cards seen destroyed in cms */
    uint32_t destroyed_off; /* of those, cards of devices that were off at the request */
    uint32_t executed;      /* cards whose DESTROY ran (9000) in this run */
    uint32_t duplicates;    /* cards that received more than one DESTROY in this run */
    double req_start;       /* the first destroy request (monotonic s) */
    double done_on;         /* the last card of an online device seen destroyed */
    double done_off;        /* the last card of an offline device seen destroyed */
    double rest_start;      /* fleet_online_rest began */
    double p50_s, p99_s;    /* one destroy at a time (fleet_destroy serial) */
    uint32_t samples;
};

struct fleet;

/* Checks cfg and creates the devices' cards (not yet enrolled). */
ot_err fleet_new(const struct fleet_cfg *cfg, struct fleet **out);
void fleet_free(struct fleet *f); /* NULL: no-op; closes every connection */

/* Enrols every device (cfg->inflight at a time). OT_E_TIMEOUT when not all
 * were enrolled within timeout_ms; OT_E_PROTOCOL when one was refused. */
ot_err fleet_enrol(struct fleet *f, unsigned timeout_ms);
/* Registers every device and opens its push stream; returns once all hold
 * it (OT_E_TIMEOUT otherwise). */
ot_err fleet_online(struct fleet *f, unsigned timeout_ms);
/* Submits one SCP03 job per online device and runs the loop until every
 * submitted job's session ended (OT_E_TIMEOUT otherwise). */
ot_err fleet_push(struct fleet *f, unsigned timeout_ms);
/* cms: imports every device's card into cms (POST /cms/v1/cards, 1,000 a
 * request, an Idempotency-Key per batch and run tag: a rerun with the same
 * tag replays). Card i: card_id "fc<i>", the device's CIN, MSISDN, IMSI,
 * IMEI, the ISD A000000151000000 and its keys (kvn 48). */
ot_err fleet_cms_import(struct fleet *f, unsigned timeout_ms);
/* cms: asks cms to destroy the cards (as the subscriber, reason lost): serial
 * true: the first max cards of online devices one at a time, each until cms
 * says destroyed (latencies in p50_s, p99_s); else every card not yet asked
 * for, cfg.inflight requests at a time, until every online device's card is
 * destroyed in cms (OT_E_TIMEOUT otherwise). A card counts as destroyed when
 * a read of it (GET /cms/v1/cards/{id}) says so after its DESTROY ran. */
ot_err fleet_destroy(struct fleet *f, bool serial, uint32_t max, unsigned timeout_ms);
/* cms: brings the devices that were kept off online and waits until every
 * card asked for is destroyed in cms. */
ot_err fleet_online_rest(struct fleet *f, unsigned timeout_ms);
/* Runs the loop for ms (streams, heartbeats, reconnections). */
void fleet_idle(struct fleet *f, unsigned ms);
void fleet_get_stats(const struct fleet *f, struct fleet_stats *s);

/* Monotonic seconds (for the figures). */
double fleet_now(void);

/* The card profile of device index i (NUL-terminated, for tests). */
ot_err fleet_profile(uint32_t i, char *out, size_t cap);
/* The same card with the central SD of profiles/ese-central.json
 * (F04F54534D534401, Authorized Management, SCP03 i = 70, keys 50..5F, KVN
 * 0x30) holding the emv-payment package: what the central TSM provisions
 * (bench/provision). */
ot_err fleet_profile_central(uint32_t i, char *out, size_t cap);
/* The loopback source address of device i's connections (host order). */
uint32_t fleet_dev_src(uint32_t i);

#endif
