#include "core/str.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/log.h"

int
am_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end = NULL;
	long long v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return -1;
	if (min >= 0 && (*s == '-' || *s == '+'))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int64_t)v;
	return 0;
}

bool
am_copy(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (cap == 0)
		return false;
	if (n >= cap) {
		dst[0] = '\0';
		return false;
	}
	memcpy(dst, src, n + 1);
	return true;
}

static void
oom(void)
{
	log_error("out of memory");
	abort();
}

void *
am_xmalloc(size_t n)
{
	void *p = malloc(n == 0 ? 1 : n);

	if (p == NULL)
		oom();
	return p;
}

char *
am_xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		oom();
	return p;
}

static void
reserve(struct am_buf *b, size_t more)
{
	size_t need = b->len + more + 1;
	char *p;

	if (need <= b->cap)
		return;
	if (b->cap == 0)
		b->cap = 256;
	size_t old = b->cap;

	while (b->cap < need)
		b->cap *= 2;
	if (b->secret) {
		/* realloc may free the old block with the secret still in it. */
		if ((p = malloc(b->cap)) == NULL)
			oom();
		if (b->data != NULL) {
			memcpy(p, b->data, b->len + 1);
			OPENSSL_cleanse(b->data, old);
			free(b->data);
		}
	} else if ((p = realloc(b->data, b->cap)) == NULL) {
		oom();
	}
	b->data = p;
}

void
am_buf_add(struct am_buf *b, const char *s, size_t n)
{
	reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
am_buf_puts(struct am_buf *b, const char *s)
{
	am_buf_add(b, s, strlen(s));
}

void
am_buf_printf(struct am_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
am_buf_html(struct am_buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			am_buf_puts(b, "&amp;");
			break;
		case '<':
			am_buf_puts(b, "&lt;");
			break;
		case '>':
			am_buf_puts(b, "&gt;");
			break;
		case '"':
			am_buf_puts(b, "&quot;");
			break;
		case '\'':
			am_buf_puts(b, "&#39;");
			break;
		default:
			am_buf_add(b, s, 1);
		}
	}
}

char *
am_buf_take(struct am_buf *b)
{
	char *p;

	if (b->data == NULL)
		return am_xstrdup("");
	p = b->data;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

void
am_buf_free(struct am_buf *b)
{
	if (b->secret && b->data != NULL)
		OPENSSL_cleanse(b->data, b->cap);
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
