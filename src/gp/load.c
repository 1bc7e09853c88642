#include "gp/load.h"

#define OT_LOG_COMPONENT "gp.load"
#include "core/apdu.h"
#include "core/buf.h"
#include "core/log.h"

#define LOAD_CLA_GP 0x80u /* GPCS 11.1.4: GP proprietary class, no SM */
#define LOAD_LE     0x00u /* GPCS 11.6.3: Le 00, response may hold a confirmation */

size_t load_block_count(size_t len, size_t block_size)
{
    if (block_size == 0) {
        return 0;
    }
    return len / block_size + (len % block_size != 0);
}

ot_err load_iter_init(struct load_iter *it, const uint8_t *file, size_t len, size_t block_size,
                      uint8_t channel)
{
    ot_err err = OT_OK;
    uint8_t cla = 0;

    if (!it || !file || len == 0 || block_size == 0 || block_size > LOAD_MAX_BLOCK) {
        return OT_E_ARG;
    }
    if (len > LOAD_MAX_FILE_SIZE) {
        return OT_E_LIMIT;
    }
    OT_TRY(apdu_cla_with_channel(LOAD_CLA_GP, channel, &cla));
    it->file = file;
    it->len = len;
    it->off = 0;
    it->block_size = block_size;
    it->index = 0;
    it->cla = cla;
out:
    return err;
}

bool load_iter_done(const struct load_iter *it)
{
    return !it || it->off >= it->len;
}

ot_err load_iter_next(struct load_iter *it, uint8_t *apdu, size_t *apdu_len, bool *last)
{
    struct buf_wr w;
    ot_err err = OT_OK;

    if (!it || !apdu_len) {
        return OT_E_ARG;
    }
    if (load_iter_done(it)) {
        return OT_E_STATE;
    }
    size_t n = it->len - it->off;
    if (n > it->block_size) {
        n = it->block_size;
    }
    bool is_last = it->off + n == it->len;
    buf_wr_init(&w, apdu, *apdu_len);
    buf_wr_u8(&w, it->cla);
    buf_wr_u8(&w, LOAD_INS);
    buf_wr_u8(&w, is_last ? LOAD_P1_LAST : LOAD_P1_MORE);
    /* Block numbers wrap after FF (see load.h). */
    buf_wr_u8(&w, (uint8_t)(it->index & 0xFFu));
    buf_wr_u8(&w, (uint8_t)n);
    buf_wr_bytes(&w, it->file + it->off, n);
    buf_wr_u8(&w, LOAD_LE);
    err = buf_wr_finish(&w, apdu_len);
    if (err != OT_OK) {
        return err;
    }
    it->off += n;
    it->index++;
    if (last) {
        *last = is_last;
    }
    return OT_OK;
}
