/* BER-TLV (ISO/IEC 7816-4 annex D, as GlobalPlatform uses it).
 *
 * Parsing never allocates and never reads past its input: a struct tlv's val
 * points into the buffer being parsed. Rules (STYLE.md 6):
 *   - tags of 1 to 3 bytes (subsequent-byte b8 = more follow); a fourth byte: OT_E_TLV;
 *   - definite lengths only, 1 to 4 bytes in all: 00-7F, 81 xx, 82 xx xx, 83 xx xx xx;
 *     80 (indefinite), 84 and above: OT_E_TLV;
 *   - a length larger than what remains: OT_E_TLV;
 *   - empty input given to tlv_next: OT_E_TRUNCATED (callers loop while rd.left > 0).
 * Constructed objects (tag's first byte b6 = 1) are walked by opening a new
 * cursor over t.val.
 */
#ifndef OT_CORE_TLV_H
#define OT_CORE_TLV_H

#include "core/buf.h"
#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLV_MAX_TAG_BYTES 3
#define TLV_MAX_LEN_BYTES 4         /* including the 8x prefix byte */
#define TLV_MAX_LEN       0xFFFFFFu /* 83 FF FF FF */
#define TLV_MAX_HDR       (TLV_MAX_TAG_BYTES + TLV_MAX_LEN_BYTES)
#define TLV_MAX_DEPTH     16 /* nesting bound for recursive walks */

struct tlv {
    uint32_t tag;       /* tag bytes big-endian: 0x9F70, 0xBF0C21 ... */
    size_t len;         /* value length */
    const uint8_t *val; /* points into the parsed input */
    size_t hdr_len;     /* bytes of tag + length */
    bool constructed;   /* first tag byte b6 set */
};

/* Reads one TLV at the cursor and advances past it. On error the cursor is
 * unchanged. */
ot_err tlv_next(struct buf_rd *rd, struct tlv *out);

/* Parses exactly one TLV covering all n bytes (trailing bytes: OT_E_TRAILING). */
ot_err tlv_parse_one(const uint8_t *p, size_t n, struct tlv *out);

/* First TLV with the given tag among the siblings in p[0..n) (one level, no
 * descent). Absent: OT_E_NOT_FOUND. Malformed before the match: OT_E_TLV. */
ot_err tlv_find(const uint8_t *p, size_t n, uint32_t tag, struct tlv *out);

/* Follows a path of tags through nested constructed objects, e.g.
 * {0x6F, 0xA5, 0x9F65}: out is the object matching the last tag. Each level
 * takes the first match (as tlv_find). Absent, or an intermediate match that
 * is primitive: OT_E_NOT_FOUND. Malformed content met on the way: OT_E_TLV.
 * depth 0: OT_E_ARG. */
ot_err tlv_find_path(const uint8_t *p, size_t n, const uint32_t *path, size_t depth,
                     struct tlv *out);

/* Validates p[0..n) as a sequence of TLVs, descending into constructed ones
 * (up to TLV_MAX_DEPTH levels: deeper is OT_E_TLV). Used by fuzzing and by
 * callers that want to reject malformed data before acting on any of it. */
ot_err tlv_walk_all(const uint8_t *p, size_t n);

/* Number of bytes a tag / a length field / a whole header take when encoded
 * (minimal length form). 0 for a tag that is not a valid 1-3 byte tag or a
 * length above TLV_MAX_LEN. */
size_t tlv_tag_size(uint32_t tag);
size_t tlv_len_size(size_t len);
size_t tlv_hdr_size(uint32_t tag, size_t len);

/* Building. tag must be a valid 1-3 byte tag, len <= TLV_MAX_LEN (else the
 * writer's error becomes OT_E_ARG / OT_E_RANGE, replacing OT_E_BUF_SMALL).
 * Lengths are written in minimal form. tlv_put with val NULL and len > 0:
 * OT_E_ARG. */
void tlv_put_tag(struct buf_wr *w, uint32_t tag);
void tlv_put_len(struct buf_wr *w, size_t len);
void tlv_put(struct buf_wr *w, uint32_t tag, const uint8_t *val, size_t len);

/* Nested building without allocation: tlv_open writes the tag and reserves a
 * 4-byte length field, returning its position in *mark; tlv_close writes the
 * real length and moves the content down so the length field is minimal.
 * Opens and closes nest like brackets. Because the reserved field is written
 * first, the buffer must hold up to 3 spare bytes per open object while
 * building: after an overflow, w->need counts the length fields closed since
 * then at their reserved 4 bytes, so it may exceed the final size by a few
 * bytes but a retry with that capacity always succeeds. A mark that does not
 * come from tlv_open on this writer: OT_E_ARG. */
void tlv_open(struct buf_wr *w, uint32_t tag, size_t *mark);
void tlv_close(struct buf_wr *w, size_t mark);

#endif
