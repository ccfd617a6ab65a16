#include "core/json.h"

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
