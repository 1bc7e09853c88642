/* Native applet modules of the vse.
 *
 * A card can instantiate only packages it has a module for: each module is a
 * static const struct se_applet_ops naming its package AID and the module
 * AIDs it offers. A CAP of an unknown package is still loaded and listed; its
 * modules are instantiated as inert applications (se_applet_for_instance).
 *
 * An applet keeps its persistent state in the instance's data blob (at most
 * SE_APPLET_MAX_DATA bytes, layout of the applet's own choosing, encoded
 * field by field) and its volatile state (session flags, PIN verified, ...)
 * in a per-instance scratch area that is zeroed at power on and deselection.
 * Changes to the blob go through se_applet_set_data(), which marks the card
 * dirty so the runtime persists them before the answer leaves the card.
 */
#ifndef OT_SE_APPLET_H
#define OT_SE_APPLET_H

#include "core/apdu.h"
#include "core/buf.h"
#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SE_APPLET_MAX_DATA 8192u
#define SE_APPLET_VOL_SIZE 256u

struct se_card;

/* What an applet sees of its instance during a call. */
struct se_applet_ctx {
    struct se_card *card;
    int app; /* instance index (opaque to the applet) */
    uint8_t channel;
    const uint8_t *aid; /* instance AID */
    size_t aid_len;
    const uint8_t *data; /* persistent blob (read-only view) */
    size_t data_len;
    uint8_t *vol; /* SE_APPLET_VOL_SIZE bytes of volatile scratch */
};

/* Replaces the instance's persistent data (n <= SE_APPLET_MAX_DATA, else
 * OT_E_LIMIT) and marks the card dirty; updates x->data / x->data_len. */
ot_err se_applet_set_data(struct se_applet_ctx *x, const uint8_t *p, size_t n);
/* Blocks the whole card for good (telecom PUK exhaustion): card TERMINATED. */
void se_applet_block_card(struct se_applet_ctx *x);

struct se_applet_ops {
    const char *name;       /* "ppse", "emv-payment", "transit", "telecom", "wallet" */
    const uint8_t *pkg_aid; /* package (load file) AID */
    size_t pkg_aid_len;
    const uint8_t *module_aid; /* the one executable module AID */
    size_t module_aid_len;
    bool payment; /* wiped and deleted by a software destroy */

    /* New instance; params = install parameters C9 value. Sets the initial
     * data with se_applet_set_data. Non-OK refuses the install (6A80). */
    ot_err (*install)(struct se_applet_ctx *x, const uint8_t *params, size_t n);
    /* SELECT by this instance's AID: writes the FCI, returns the SW. */
    uint16_t (*select)(struct se_applet_ctx *x, struct buf_wr *out);
    /* Any other command while selected. */
    uint16_t (*process)(struct se_applet_ctx *x, const struct apdu *cmd, struct buf_wr *out);
    /* Personalization data forwarded by the owning SD (STORE DATA after
     * INSTALL [for personalization]); p1/p2 as in the STORE DATA command. */
    uint16_t (*personalize)(struct se_applet_ctx *x, uint8_t p1, uint8_t p2, const uint8_t *d,
                            size_t n);
    /* Software destroy: erase payment data from the blob (may be NULL). */
    void (*wipe)(struct se_applet_ctx *x);
    /* Optional: true when the PPSE should list this instance; writes its
     * directory entry (61 {4F AID, 50 label, 87 priority}) to out. */
    bool (*ppse_entry)(const struct se_applet_ctx *x, struct buf_wr *out);
};

/* PPSE support: writes the directory entries of every selectable instance
 * whose module has ppse_entry, in registry order. Returns out->err. */
ot_err se_applet_ppse_list(const struct se_applet_ctx *x, struct buf_wr *out);

/* The modules this build of the card has (applets/registry.c). */
const struct se_applet_ops *se_applet_find(const uint8_t *pkg_aid, size_t len);
/* The module an application instance of Load File elf_aid runs: the native
 * one, else the inert module (SELECT answers an FCI, anything else 6D00;
 * applets/inert.c). Never NULL. */
const struct se_applet_ops *se_applet_for_instance(const uint8_t *elf_aid, size_t len);
const struct se_applet_ops *se_applet_by_name(const char *name);
/* NULL-terminated list of all modules. */
const struct se_applet_ops *const *se_applet_all(void);

#endif
