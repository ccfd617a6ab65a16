/* Checked string and number helpers, used instead of atoi, strcpy, sprintf. */
#ifndef AM_STR_H
#define AM_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compiler.h"

/* Parses a whole decimal number in [min, max]; 0 on success, -1 otherwise
 * (empty, sign where min >= 0, trailing text, overflow, out of range). */
int am_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) AM_WUR;

/* Copies src into dst (cap bytes); returns false, leaving dst empty, when it
 * does not fit. */
bool am_copy(char *dst, size_t cap, const char *src);

/* A growable byte buffer; memory failures abort, as everywhere in the tree.
 * A buffer marked secret (a mail or page holding a token, OTP or link) never
 * leaves a copy behind: growth moves it by hand and wipes the old block, and
 * am_buf_free wipes before freeing. */
struct am_buf {
	char *data;
	size_t len;
	size_t cap;
	bool secret;
};

void am_buf_add(struct am_buf *b, const char *s, size_t n);
void am_buf_puts(struct am_buf *b, const char *s);
void am_buf_printf(struct am_buf *b, const char *fmt, ...) AM_PRINTF(2, 3);
/* Appends s with HTML's five special characters escaped. */
void am_buf_html(struct am_buf *b, const char *s);
/* Hands the NUL-terminated data to the caller (free(); for a secret buffer,
 * wipe it first) and empties b. */
char *am_buf_take(struct am_buf *b);
void am_buf_free(struct am_buf *b); /* wipes first when b->secret */

/* malloc/strdup that abort on exhaustion rather than return NULL. */
void *am_xmalloc(size_t n);
char *am_xstrdup(const char *s);

#endif
