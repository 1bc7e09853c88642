/* vse: a GlobalPlatform virtual secure element (public API).
 *
 * A struct se_card is one card: its persistent state (registry, keys,
 * applet data, life cycle) plus its volatile state (logical channels,
 * selections, secure channels). It is driven with raw bytes: power on gives
 * the ATR, each C-APDU gives one R-APDU. Every state-changing command is
 * written to the card's image before its answer is returned (see store.c),
 * so an acknowledged command is never lost and a power cut leaves either the
 * old or the new state.
 *
 * Not thread-safe: one thread drives one card; a process may run many.
 */
#ifndef OT_SE_CARD_H
#define OT_SE_CARD_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SE_MAX_ATR  33u
#define SE_MAX_RESP (65536u + 2u) /* largest R-APDU (extended Le 0000 + SW) */

struct se_card;

/* Creates a card from a JSON profile (see docs/vse.md and profiles/). The
 * card lives in memory until se_card_save_as() gives it an image file. */
ot_err se_card_from_profile(const char *profile_json, size_t len, struct se_card **out);
ot_err se_card_from_profile_file(const char *path, struct se_card **out);

/* Opens a card image written by se_card_save_as(); later state changes are
 * written back to the same path. A missing image: OT_E_NOT_FOUND; a corrupt
 * one (an empty file included): OT_E_CORRUPT; a path that is not a regular
 * file (a FIFO, a directory): OT_E_FORMAT, without waiting on it. */
ot_err se_card_open(const char *image_path, struct se_card **out);

/* One running card per image (issue 9 point 8): takes an exclusive fcntl
 * lock on "<image_path>.lock" (created 0600 if missing, left in place) and
 * returns its descriptor in *fd (keep it open while serving; closing it
 * releases the lock, as does the process ending). Held by another process:
 * OT_E_CONFLICT with *holder = its pid (0 if unknown). Lock file not
 * creatable: OT_E_IO (logged with the reason). */
ot_err se_image_lock(const char *image_path, int *fd, long *holder);

/* Writes the card's image to path atomically and binds the card to it. */
ot_err se_card_save_as(struct se_card *card, const char *image_path);

void se_card_free(struct se_card *card); /* NULL: no-op */

/* Cold reset: closes channels and secure channels, resets selections (the
 * default-selected application is selected on channel 0), writes the ATR.
 * A hardware-destroyed card is mute: OT_E_NO_CARD and no ATR. */
ot_err se_card_power_on(struct se_card *card, uint8_t *atr, size_t *atr_len);
/* Power off also gives back the memory only a running card needs (command
 * buffers, applet scratch): an idle card holds its state, a few KiB for the
 * shipped profiles (src/se/mem_test.c prints the figures). */
void se_card_power_off(struct se_card *card);

/* Processes one C-APDU. resp_len: capacity in (>= SE_MAX_RESP is always
 * enough), bytes written out. Malformed APDUs get a status word (6700, 6E00,
 * ...), not an ot_err: the return value is an ot_err only for failures of the
 * card itself (OT_E_NO_CARD when mute or unpowered, OT_E_DB when the image
 * cannot be written -- then the command's effect is rolled back and 6581 would
 * have been the card's answer). */
ot_err se_card_transmit(struct se_card *card, const uint8_t *cmd, size_t n, uint8_t *resp,
                        size_t *resp_len);

bool se_card_is_mute(const struct se_card *card);

/* The registry as text (tree) or JSON, for `vse inspect`. out is
 * NUL-terminated; out_len: capacity in, bytes written (without NUL) out. */
enum se_inspect_fmt { SE_INSPECT_TREE = 0, SE_INSPECT_JSON = 1 };
ot_err se_card_inspect(const struct se_card *card, enum se_inspect_fmt fmt, char *out,
                       size_t *out_len);

#endif
