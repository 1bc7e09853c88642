/* vse internals shared by the files of src/se (never included from elsewhere).
 *
 * The card is split in two:
 *   struct se_state  the persistent card content: everything in the image.
 *                    Counted data with caps, serialised field by field by
 *                    store.c (never written as a raw struct). Its storage
 *                    grows with what the card holds (issue 10 point 5: many
 *                    cards per process): the application and load file
 *                    tables and each application's data blob are allocated
 *                    to size. Grow a table with se_state_reserve() before
 *                    appending to it (napps++ / nelfs++), set a blob with
 *                    se_app_set_data(), free with se_state_clear(); never
 *                    copy a state with memcpy or assignment (it owns memory:
 *                    se_state_move() hands it over).
 *   struct se_card   the state plus the volatile part: channels, selections,
 *                    secure channels, GET RESPONSE data, LOAD in progress.
 *
 * Rule for command handlers: validate first, then mutate, then call
 * se_mark_dirty(). The runtime persists a dirty state after the command and
 * before the answer leaves the card. As a safety net, a command that ends
 * with an error status word while the state is dirty is rolled back to the
 * last committed image, so a rejected command never changes the card.
 */
#ifndef OT_SE_SE_PRIV_H
#define OT_SE_SE_PRIV_H

#include "core/apdu.h"
#include "core/buf.h"
#include "core/err.h"
#include "crypto/scp02.h"
#include "crypto/scp03.h"
#include "se/applet.h"
#include "se/card.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- caps */

#define SE_AID_MAX      16u
#define SE_MAX_ELFS     32u
#define SE_MAX_MODULES  8u             /* executable modules per load file */
#define SE_MAX_APPS     64u            /* applications + security domains, ISD included */
#define SE_MAX_KEYS     32u            /* key entries per security domain */
#define SE_MAX_SEQS     8u             /* key sets with a sequence counter per SD */
#define SE_MAX_APP_DATA 8192u          /* an applet's persistent data blob */
#define SE_MAX_PARAMS   128u           /* stored install parameters (C9 value) */
#define SE_MAX_LOAD     65536u         /* a load file being received */
#define SE_MAX_CHANNELS 4u             /* logical channels 0..3 (GPCS allows up to 20) */
#define SE_VOL_SIZE     256u           /* per-instance volatile scratch for applets */
#define SE_MEM_TOTAL    (256u * 1024u) /* non-volatile memory of the card */

/* ---------------------------------------------------------------- types */

struct se_aid {
    uint8_t len; /* 0 = absent */
    uint8_t b[SE_AID_MAX];
};

enum se_card_type {
    SE_TYPE_UICC = 0,
    SE_TYPE_ESE = 1,
    SE_TYPE_MICROSD = 2,
};

/* Key types (GPCS 11.1.8). */
#define SE_KEY_DES 0x80u
#define SE_KEY_AES 0x88u

struct se_key {
    uint8_t kvn;
    uint8_t kid;
    uint8_t type; /* SE_KEY_DES or SE_KEY_AES */
    uint8_t len;  /* 16 (DES: 16 or 24; AES: 16, 24, 32) */
    uint8_t val[32];
};

struct se_seq {
    uint8_t kvn;
    uint32_t value; /* SCP03 3-byte or SCP02 2-byte sequence counter */
};

/* What only security domains have. */
struct se_sd {
    uint8_t scp;   /* 0x02 or 0x03 */
    uint8_t scp_i; /* i parameter of that protocol */
    uint8_t nkeys;
    struct se_key keys[SE_MAX_KEYS];
    uint8_t nseqs;
    struct se_seq seqs[SE_MAX_SEQS];
    uint8_t iin_len;
    uint8_t iin[16]; /* SD provider identification number (tag 42) */
    uint8_t cin_len;
    uint8_t cin[16];      /* SD image number (tag 45) */
    uint16_t confirm_ctr; /* Receipt Generation: confirmation counter (GPCS C.5, GET DATA C2) */
};

struct se_elf {
    struct se_aid aid;
    struct se_aid sd; /* associated security domain */
    uint8_t version[2];
    uint8_t lcs; /* GP LOADED (01) */
    uint8_t nmodules;
    struct se_aid modules[SE_MAX_MODULES];
    uint32_t size; /* bytes of non-volatile memory it takes */
    bool native;   /* the card has a native module for this package (se_applet_find) */
};

struct se_app {
    struct se_aid aid;    /* instance AID */
    struct se_aid elf;    /* executable load file */
    struct se_aid module; /* executable module */
    struct se_aid sd;     /* associated security domain (the ISD: itself) */
    uint32_t privs;       /* GP privileges, gp/privs.h bit numbering */
    uint8_t lcs;          /* GPCS 11.1.1 coding; b8 set = locked */
    bool is_sd;           /* privs has Security Domain; sd_data valid */
    struct se_sd sd_data;
    uint8_t params_len;
    uint8_t params[SE_MAX_PARAMS]; /* C9 install parameters as given */
    uint16_t data_len;
    uint16_t data_cap;
    uint8_t *data; /* the applet's persistent data (applet-defined layout), data_cap
                    * bytes allocated (se_app_set_data); NULL when data_cap is 0 */
};

struct se_state {
    enum se_card_type type;
    uint8_t card_lcs; /* OP_READY .. TERMINATED (GPCS 11.1.1) */
    bool mute;        /* hardware destroyed: no ATR, no answers, forever */
    uint8_t atr_len;
    uint8_t atr[SE_MAX_ATR];
    uint8_t cplc[42]; /* GET DATA 9F7F */
    uint8_t kdd[10];  /* key diversification data sent in INITIALIZE UPDATE */
    uint8_t napps;
    uint8_t apps_cap;    /* entries allocated in apps (se_state_reserve) */
    struct se_app *apps; /* apps[0] is the ISD */
    uint8_t nelfs;
    uint8_t elfs_cap; /* entries allocated in elfs */
    struct se_elf *elfs;
};

/* Secure channel of one logical channel, opened with one SD. */
struct se_sc {
    int sd;      /* index into apps of the SD the channel belongs to; -1 none */
    uint8_t scp; /* 0x02 / 0x03 */
    struct scp03_card *scp03;
    struct scp02_card *scp02;
    /* runtime.c bookkeeping */
    bool active; /* a session was started (INITIALIZE UPDATE) and not ended by
                  * reselection / close / reset: while not open, commands get 6982 */
    uint8_t kvn; /* key set of the session (SCP02 sequence counter update) */
};

/* GP command chaining (GPCS 11.1.5) in progress on a channel. */
struct se_chain {
    bool active;
    uint8_t ins, p2;
    struct ot_buf data;
    uint8_t cla, p1; /* runtime.c: header of the first segment (P1 without b8) */
};

struct se_chan {
    bool open;
    int selected; /* index into apps; -1 none */
    struct se_sc sc;
    struct se_chain chain;
    int perso_target;         /* INSTALL [for personalization] target app; -1 none */
    uint8_t store_next_block; /* STORE DATA block number expected next */
    size_t status_pos;        /* GET STATUS "get next" resume index; SIZE_MAX none */
    uint8_t status_p1;
    struct ot_buf pending; /* response data waiting for GET RESPONSE (61xx) */
    size_t pending_off;
    uint16_t pending_sw; /* runtime.c: final SW once the pending data is out */
};

/* LOAD in progress (volatile: lost at power off). */
struct se_load {
    bool active;
    int chan;
    struct se_aid elf;
    struct se_aid sd;
    uint8_t next_block;
    struct ot_buf data;
    /* gpcm_install.c bookkeeping */
    struct se_aid performer; /* SD that issued the INSTALL [for load] */
    bool combined;           /* started by INSTALL [for load, install and make selectable] */
    bool combined_ready;     /* combined: Load File in, waiting for the final INSTALL (P2 03) */
    uint8_t hash_len;        /* LFDB hash of the INSTALL [for load]; 0 = none */
    uint8_t hash[64];
    uint8_t token_id_len; /* token identifier of the load token (Load Receipt) */
    uint8_t token_id[32];
};

/* Storage hooks, so tests can inject a failure at every write point. */
struct se_store_ops {
    /* Called before each write step k (0, 1, 2...) of an image write; a
     * non-OK return makes the write fail there, as a power cut would. */
    ot_err (*before_step)(void *ctx, unsigned step);
    void *ctx;
};

struct se_card {
    struct se_state st;
    bool powered;
    bool dirty;
    bool block_pending;      /* se_applet_block_card's write failed: kept over rollbacks */
    char *image_path;        /* NULL: in-memory only */
    struct ot_buf committed; /* last committed serialised image (rollback source) */
    struct se_store_ops store_ops;
    struct se_chan chans[SE_MAX_CHANNELS];
    struct se_load load;
    /* Applet volatile scratch, by app index: vol_cap rows of SE_VOL_SIZE bytes,
     * grown with the application table (se_card_reserve_apps) or when an
     * applet first runs; vol_spare stands in for a row that could not be
     * allocated (the applet then sees fresh scratch on every command). */
    uint8_t (*vol)[SE_VOL_SIZE];
    unsigned vol_cap;
    uint8_t vol_spare[SE_VOL_SIZE];
    /* runtime.c scratch (SE_RT_BUF bytes each), allocated by the first
     * command after power on and released at power off, so an idle card
     * holds only its state */
    uint8_t *rt_cmd;  /* the unwrapped / reassembled command */
    uint8_t *rt_resp; /* the response being built */
    /* runtime.c: channel selections (app index) and personalization targets
     * before the command in progress, restored when it is rolled back */
    int rt_snap_sel[SE_MAX_CHANNELS];
    int rt_snap_perso[SE_MAX_CHANNELS];
    uint8_t rt_snap_napps;
};

#define SE_RT_BUF (APDU_MAX_CMD_SIZE + 64u)

/* ---------------------------------------------------------------- runtime (runtime.c) */

void se_mark_dirty(struct se_card *c);
/* The context of a native applet call for instance app on channel ch (its
 * AID, data blob and volatile scratch). */
void se_applet_ctx_init(struct se_card *c, int app, int ch, struct se_applet_ctx *x);
/* Index of the app/SD with exactly this AID, or -1. */
int se_find_app(const struct se_state *st, const uint8_t *aid, size_t len);
int se_find_elf(const struct se_state *st, const uint8_t *aid, size_t len);
/* Index of the security domain an app is associated with (ISD for itself). */
int se_app_sd(const struct se_state *st, int app);
/* True when app holds privilege bit p (gp/privs.h numbering). */
bool se_has_priv(const struct se_state *st, int app, unsigned p);
/* Index of the holder of a privilege that one app per card holds (Card Reset,
 * Final Application): falls back to the ISD (0). */
int se_priv_holder(const struct se_state *st, unsigned p);
/* Removes app i (and wipes its data); indexes above shift down, channels are
 * adjusted (a channel that had it selected gets none). */
void se_remove_app(struct se_card *c, int i);
void se_remove_elf(struct se_card *c, int i);
/* Free non-volatile memory in bytes (for 6A84). */
uint32_t se_mem_free(const struct se_state *st);

/* The SD commands (gpcm_*.c) run with this context: the channel, its
 * selected SD, the unwrapped plain command. They return the status word and
 * write response data to out. */
struct se_cmd {
    struct se_card *card;
    int chan;
    int sd;               /* the selected SD processing the command */
    const struct apdu *a; /* plain command (secure messaging removed) */
    uint8_t sec_level;    /* current secure channel level, 0 = none */
    bool authenticated;   /* a secure channel is open with this SD */
    struct buf_wr *out;
};

/* ---------------------------------------------------------------- GP content management */

/* gpcm_install.c: INSTALL (all variants), LOAD, DELETE. */
uint16_t se_gp_install(struct se_cmd *x);
uint16_t se_gp_load(struct se_cmd *x);
uint16_t se_gp_delete(struct se_cmd *x);
/* gpcm_admin.c: GET STATUS, SET STATUS, PUT KEY, STORE DATA, GET DATA. */
uint16_t se_gp_get_status(struct se_cmd *x);
uint16_t se_gp_set_status(struct se_cmd *x);
uint16_t se_gp_put_key(struct se_cmd *x);
uint16_t se_gp_store_data(struct se_cmd *x);
uint16_t se_gp_get_data(struct se_cmd *x);
/* Destroy (seed 000): software destroy wipes payment data, deletes payment
 * applications and terminates the card; hardware destroy makes it mute. */
void se_destroy_software(struct se_card *c);
void se_destroy_hardware(struct se_card *c);
/* PUK exhaustion (seed 000 [0087]): wrong PUKs to the first telecom
 * application until it blocks the card (TERMINATED). 1 done, 0 no telecom
 * application (nothing changed), -1 the applet did not block. */
int se_destroy_puk(struct se_card *c);
/* Proprietary DESTROY command (CLA 80/84 INS DE, P1 01 software / 02
 * hardware / 03 PUK exhaustion, P2 00, no data), routed by the runtime to the selected SD; needs
 * an authenticated secure channel and the Card Terminate privilege. */
#define SE_INS_DESTROY 0xDEu
uint16_t se_gp_destroy(struct se_cmd *x);

/* ---------------------------------------------------------------- store (store.c) */

#define SE_IMAGE_MAGIC   "OTVSE\x01"
#define SE_IMAGE_VERSION 2u /* 2: confirmation counter per SD */

/* Serialises st (field by field, big-endian, SHA-256 trailer). */
ot_err se_state_serialize(const struct se_state *st, struct ot_buf *out);
/* Parses an image; any inconsistency: OT_E_CORRUPT and *st untouched. */
ot_err se_state_deserialize(const uint8_t *p, size_t n, struct se_state *st);
/* Writes bytes to path atomically (temp file, fsync, rename, fsync dir),
 * calling ops->before_step before each step. */
ot_err se_store_write(const char *path, const uint8_t *p, size_t n, const struct se_store_ops *ops);
/* Reads a whole image file (capped). */
ot_err se_store_read(const char *path, struct ot_buf *out);
/* Storage of a state (see the rule at the top). se_state_reserve grows the
 * tables to hold at least napps applications and nelfs load files (new
 * entries zeroed; above SE_MAX_APPS / SE_MAX_ELFS: OT_E_LIMIT). */
ot_err se_state_reserve(struct se_state *st, unsigned napps, unsigned nelfs);
/* Sets an application's data blob to p[0..n) (n <= SE_MAX_APP_DATA, else
 * OT_E_LIMIT), reallocating to size; the old bytes are wiped. */
ot_err se_app_set_data(struct se_app *a, const uint8_t *p, size_t n);
/* Frees an application's data blob and wipes the entry (keys included): for
 * an entry taken out of the table (slots at napps and above hold no data). */
void se_app_wipe(struct se_app *a);
/* Gives back table entries beyond the counts (a couple of spare ones kept). */
ot_err se_state_trim(struct se_state *st);
/* Wipes the secrets (keys, data, parameters), frees the tables, zeroes *st. */
void se_state_clear(struct se_state *st);
/* Clears *dst and hands src's content over to it (src is left zeroed). */
void se_state_move(struct se_state *dst, struct se_state *src);
/* se_state_reserve for the card's state plus the applets' volatile rows. */
ot_err se_card_reserve_apps(struct se_card *c, unsigned napps);

/* Persists c->st if dirty: serialise, write, update c->committed. */
ot_err se_commit(struct se_card *c);
/* Restores c->st from c->committed (rollback). */
ot_err se_rollback(struct se_card *c);

/* ---------------------------------------------------------------- profiles (profile.c) */

ot_err se_profile_load(const char *json, size_t len, struct se_state *st);
/* Runs ops->install (with the stored install parameters) of every
 * application of a native module in c->st, creating its initial data via
 * se_applet_set_data. se_profile_load() leaves app data empty; the runtime
 * calls this once after loading a profile (se_card_from_profile). */
ot_err se_profile_install_apps(struct se_card *c);

#endif
