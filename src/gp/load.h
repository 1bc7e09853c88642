/* LOAD command sequence (GPCS 11.6): splits a Load File (cap_load_file()) into
 * blocks and produces one plain LOAD C-APDU per block:
 *
 *     CLA E8 P1 P2 Lc <block> 00
 *
 * CLA = 80 with the logical channel (apdu_cla_with_channel: 80-83, C0-CF);
 * P1 = 00 for every block but the last, 80 for the last; P2 = the block
 * number, 00, 01, ... in order. GPCS numbers blocks 00-FF only; a Load File of
 * more than 256 blocks continues with 00 after FF (modulo 256), as pySim does
 * -- cards that track the number strictly refuse such files, so choose a
 * block size that keeps the count <= 256 when possible (load_block_count).
 *
 * The commands are plain: a secure session wraps them (gp_session), and the
 * block size must leave room for its overhead (gp_session_max_data()).
 *
 * struct load_iter borrows the Load File; it is a plain value the caller
 * owns (stack is fine), one per sequence, not thread-safe.
 */
#ifndef OT_GP_LOAD_H
#define OT_GP_LOAD_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOAD_INS           0xE8u /* GPCS 11.6 */
#define LOAD_P1_MORE       0x00u /* GPCS Table 11-57: more blocks */
#define LOAD_P1_LAST       0x80u /* GPCS Table 11-57: last block */
#define LOAD_MAX_BLOCK     255u  /* short Lc */
#define LOAD_MAX_APDU      (5u + LOAD_MAX_BLOCK + 1u)
#define LOAD_MAX_FILE_SIZE ((size_t)16 * 1024 * 1024)

struct load_iter {
    const uint8_t *file; /* borrowed */
    size_t len;
    size_t off;        /* bytes already emitted */
    size_t block_size; /* 1..255 */
    size_t index;      /* blocks already emitted */
    uint8_t cla;       /* 80 with the channel applied */
};

/* Number of blocks for a file of len bytes (0 if block_size is 0). */
size_t load_block_count(size_t len, size_t block_size);

/* len 1..LOAD_MAX_FILE_SIZE (else OT_E_ARG / OT_E_LIMIT), block_size 1..255
 * (OT_E_ARG), channel 0..19 (OT_E_RANGE). */
ot_err load_iter_init(struct load_iter *it, const uint8_t *file, size_t len, size_t block_size,
                      uint8_t channel);

/* True once the last block has been produced. */
bool load_iter_done(const struct load_iter *it);

/* Writes the next LOAD command. apdu_len: in = capacity, out = bytes written
 * (needed on OT_E_BUF_SMALL; LOAD_MAX_APDU always suffices). *last (optional)
 * says whether it is the last block. Called after the last block: OT_E_STATE. */
ot_err load_iter_next(struct load_iter *it, uint8_t *apdu, size_t *apdu_len, bool *last);

#endif
