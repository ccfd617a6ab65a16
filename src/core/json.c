#include "core/json.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/str.h"

enum am_err
am_json_object(const char *body, size_t len, json_t **out, struct am_error *e)
{
	json_error_t jerr;
	json_t *doc;

	if (body == NULL || len == 0)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the request body is empty; send a JSON object");
	doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the body is not valid JSON (line %d, column %d)", jerr.line,
			       jerr.column);
	if (!json_is_object(doc)) {
		json_decref(doc);
		return am_fail(e, AM_E_INVALID_REQUEST, "the body must be a JSON object");
	}
	*out = doc;
	return AM_OK;
}

enum am_err
am_json_string(const json_t *obj, const char *key, bool required, size_t maxlen, const char **out,
	       struct am_error *e)
{
	json_t *v = json_object_get(obj, key);
	const char *s;

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (required)
			return am_fail(e, AM_E_INVALID_REQUEST, "the field \"%s\" is required",
				       key);
		return AM_OK;
	}
	if (!json_is_string(v))
		return am_fail(e, AM_E_INVALID_REQUEST, "the field \"%s\" must be a string", key);
	s = json_string_value(v);
	if (s[0] == '\0')
		return am_fail(e, AM_E_INVALID_REQUEST, "the field \"%s\" must not be empty", key);
	if (json_string_length(v) > maxlen)
		return am_fail(e, AM_E_INVALID_REQUEST, "the field \"%s\" is longer than %zu bytes",
			       key, maxlen);
	*out = s;
	return AM_OK;
}

json_t *
am_json_scopes(const char *list)
{
	json_t *arr = json_array();
	const char *p = list;

	while (*p != '\0') {
		const char *sp;
		size_t n;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		sp = strchr(p, ' ');
		n = sp != NULL ? (size_t)(sp - p) : strlen(p);
		json_array_append_new(arr, json_stringn(p, n));
		p += n;
	}
	return arr;
}

json_t *
am_json_time(long long t)
{
	char iso[40];

	if (t == 0)
		return json_null();
	am_time_iso((int64_t)t, iso, sizeof(iso));
	return json_string(iso);
}

/* ---- am_json_dump ---- */

#define DUMP_DEPTH_MAX 64

/* The bytes that must be escaped in a JSON string (RFC 8259, section 7):
 * the quote, the backslash and the control characters; jansson escapes
 * exactly these by default (not 0x7f, not '/'). */
static inline bool
must_escape(unsigned char c)
{
	return c < 0x20 || c == '"' || c == '\\';
}

static void
dump_string(struct am_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t run = 0;

	am_buf_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[6];
		size_t elen = 2;

		if (!must_escape(c))
			continue;
		if (i > run)
			am_buf_add(b, s + run, i - run);
		run = i + 1;
		esc[0] = '\\';
		switch (c) {
		case '"':
		case '\\':
			esc[1] = (char)c;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default: /* jansson's "\\u%04X" */
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			elen = 6;
		}
		am_buf_add(b, esc, elen);
	}
	if (n > run)
		am_buf_add(b, s + run, n - run);
	am_buf_add(b, "\"", 1);
}

static void
dump_integer(struct am_buf *b, long long v)
{
	char text[24];
	size_t i = sizeof(text);
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		text[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		text[--i] = '-';
	am_buf_add(b, text + i, sizeof(text) - i);
}

struct dump_member {
	const char *key;
	size_t klen;
	json_t *value;
};

static int
member_cmp(const void *x, const void *y)
{
	return strcmp(((const struct dump_member *)x)->key, ((const struct dump_member *)y)->key);
}

static bool dump_value(struct am_buf *b, const json_t *j, bool sort_keys, int depth);

static bool
dump_object(struct am_buf *b, const json_t *j, bool sort_keys, int depth)
{
	size_t n = json_object_size(j), i = 0;
	struct dump_member small[16], *m = small;
	bool ok = true;

	if (n > sizeof(small) / sizeof(small[0]))
		m = am_xmalloc(n * sizeof(*m));
	for (void *it = json_object_iter((json_t *)j); it != NULL && i < n;
	     it = json_object_iter_next((json_t *)j, it), i++) {
		m[i].key = json_object_iter_key(it);
		m[i].klen = json_object_iter_key_len(it);
		m[i].value = json_object_iter_value(it);
	}
	n = i;
	if (sort_keys && n > 1)
		qsort(m, n, sizeof(*m), member_cmp);
	am_buf_add(b, "{", 1);
	for (i = 0; i < n && ok; i++) {
		if (i > 0)
			am_buf_add(b, ",", 1);
		dump_string(b, m[i].key, m[i].klen);
		am_buf_add(b, ":", 1);
		ok = dump_value(b, m[i].value, sort_keys, depth + 1);
	}
	am_buf_add(b, "}", 1);
	if (m != small)
		free(m);
	return ok;
}

static bool
dump_value(struct am_buf *b, const json_t *j, bool sort_keys, int depth)
{
	if (depth > DUMP_DEPTH_MAX)
		return false;
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return dump_object(b, j, sort_keys, depth);
	case JSON_ARRAY: {
		size_t n = json_array_size(j);
		bool ok = true;

		am_buf_add(b, "[", 1);
		for (size_t i = 0; i < n && ok; i++) {
			if (i > 0)
				am_buf_add(b, ",", 1);
			ok = dump_value(b, json_array_get(j, i), sort_keys, depth + 1);
		}
		am_buf_add(b, "]", 1);
		return ok;
	}
	case JSON_STRING:
		dump_string(b, json_string_value(j), json_string_length(j));
		return true;
	case JSON_INTEGER:
		dump_integer(b, json_integer_value(j));
		return true;
	case JSON_REAL: { /* rare here: jansson's own shortest round-trip form */
		char text[64];
		size_t len = json_dumpb(j, text, sizeof(text), JSON_ENCODE_ANY | JSON_COMPACT);

		if (len == 0 || len > sizeof(text))
			return false;
		am_buf_add(b, text, len);
		return true;
	}
	case JSON_TRUE:
		am_buf_add(b, "true", 4);
		return true;
	case JSON_FALSE:
		am_buf_add(b, "false", 5);
		return true;
	case JSON_NULL:
		am_buf_add(b, "null", 4);
		return true;
	}
	return false;
}

bool
am_json_dump(struct am_buf *b, const json_t *j, bool sort_keys)
{
	size_t start = b->len;

	if (j == NULL || !(json_is_object(j) || json_is_array(j)))
		return false;
	if (dump_value(b, j, sort_keys, 0))
		return true;
	if (b->data != NULL) { /* undo a partial text, wiped: it may hold a secret */
		OPENSSL_cleanse(b->data + start, b->len - start);
		b->len = start;
		b->data[start] = '\0';
	}
	return false;
}

/* ---- the member-by-member writer ---- */

/* A comma unless this is the container's first member. */
static void
jw_sep(struct am_buf *b)
{
	char last = b->len > 0 ? b->data[b->len - 1] : '{';

	if (last != '{' && last != '[')
		am_buf_add(b, ",", 1);
}

static void
jw_key(struct am_buf *b, const char *key)
{
	jw_sep(b);
	dump_string(b, key, strlen(key));
	am_buf_add(b, ":", 1);
}

void
am_jw_begin(struct am_buf *b)
{
	if (b->len > 0 && b->data[b->len - 1] != ':')
		jw_sep(b); /* an object as an array's element */
	am_buf_add(b, "{", 1);
}

void
am_jw_end(struct am_buf *b)
{
	am_buf_add(b, "}", 1);
}

void
am_jw_str(struct am_buf *b, const char *key, const char *value)
{
	jw_key(b, key);
	if (value == NULL)
		am_buf_add(b, "null", 4);
	else
		dump_string(b, value, strlen(value));
}

void
am_jw_bool(struct am_buf *b, const char *key, bool value)
{
	jw_key(b, key);
	if (value)
		am_buf_add(b, "true", 4);
	else
		am_buf_add(b, "false", 5);
}

void
am_jw_int(struct am_buf *b, const char *key, long long value)
{
	jw_key(b, key);
	dump_integer(b, value);
}

void
am_jw_key_array(struct am_buf *b, const char *key)
{
	jw_key(b, key);
	am_buf_add(b, "[", 1);
}

void
am_jw_item(struct am_buf *b, const char *value, size_t len)
{
	jw_sep(b);
	dump_string(b, value, len);
}

void
am_jw_array_end(struct am_buf *b)
{
	am_buf_add(b, "]", 1);
}

void
am_jw_scopes(struct am_buf *b, const char *key, const char *list)
{
	const char *p = list;

	am_jw_key_array(b, key);
	while (*p != '\0') {
		const char *sp;
		size_t n;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		sp = strchr(p, ' ');
		n = sp != NULL ? (size_t)(sp - p) : strlen(p);
		am_jw_item(b, p, n);
		p += n;
	}
	am_jw_array_end(b);
}
