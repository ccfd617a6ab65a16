#include "agent/credstore.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/str.h"
#include "core/url.h"

#define MAX_FILE (4 * 1024 * 1024)

enum authmd_status
cs_fail(struct authmd_error *err, enum authmd_status status, const char *advice, const char *fmt,
	...)
{
	va_list ap;

	if (err == NULL)
		return status;
	memset(err, 0, sizeof(*err));
	err->status = status;
	err->advice = advice;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return status;
}

bool
cs_default_path(char *out, size_t cap)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	int n;

	if (xdg != NULL && xdg[0] == '/')
		n = snprintf(out, cap, "%s/authmd/credentials.json", xdg);
	else if (home != NULL && home[0] == '/')
		n = snprintf(out, cap, "%s/.config/authmd/credentials.json", home);
	else
		return false;
	return n > 0 && (size_t)n < cap;
}

bool
cs_origin(const char *url, char *out, size_t cap)
{
	return am_url_origin_of(url, out, cap);
}

enum authmd_status
cs_load(const char *path, json_t **doc, struct authmd_error *err)
{
	struct stat sb;
	json_error_t jerr;
	json_t *d;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0 && errno == ENOENT) {
		*doc = json_pack("{s:i, s:{}}", "version", 1, "credentials");
		return AUTHMD_OK;
	}
	if (fd < 0)
		return cs_fail(err, AUTHMD_ERR_STORE, NULL, "cannot open %s: %s", path,
			       strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return cs_fail(err, AUTHMD_ERR_STORE, NULL, "%s is not a regular file", path);
	}
	if ((sb.st_mode & 077) != 0) {
		close(fd);
		return cs_fail(err, AUTHMD_ERR_STORE,
			       "Run chmod 600 on it if you are sure nobody else read it; otherwise "
			       "'authmd forget' each service and register again.",
			       "%s can be read by other users (mode %o): its credentials may have "
			       "leaked, so it is not used",
			       path, (unsigned)(sb.st_mode & 0777));
	}
	if (sb.st_size > MAX_FILE) {
		close(fd);
		return cs_fail(err, AUTHMD_ERR_STORE, NULL, "%s is too large", path);
	}
	d = json_loadfd(fd, JSON_REJECT_DUPLICATES, &jerr);
	close(fd);
	if (d == NULL || !json_is_object(json_object_get(d, "credentials"))) {
		json_decref(d);
		return cs_fail(err, AUTHMD_ERR_STORE,
			       "Move the file away (it is left untouched) and register again.",
			       "%s is not a valid credentials file", path);
	}
	*doc = d;
	return AUTHMD_OK;
}

enum authmd_status
cs_save(const char *path, const json_t *doc, struct authmd_error *err)
{
	char dir[AUTHMD_URL_MAX], tmp[AUTHMD_URL_MAX + 8];
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	char *slash;
	int rc;

	if (text == NULL || !am_copy(dir, sizeof(dir), path)) {
		free(text);
		return cs_fail(err, AUTHMD_ERR_STORE, NULL, "cannot write %s", path);
	}
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (am_mkdir_p(dir) != 0) {
			free(text);
			return cs_fail(err, AUTHMD_ERR_STORE, NULL, "cannot create %s: %s", dir,
				       strerror(errno));
		}
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	rc = am_write_private(path, tmp, text, strlen(text));
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	if (rc != 0)
		return cs_fail(err, AUTHMD_ERR_STORE, NULL, "cannot write %s: %s", path,
			       strerror(errno));
	return AUTHMD_OK;
}

#define F(name)                                                                                    \
	{                                                                                          \
#name, offsetof(struct authmd_credential, name),                                   \
			sizeof(((struct authmd_credential *)0)->name)                              \
	}

static const struct {
	const char *name;
	size_t offset, size;
} fields[] = {
	F(resource),
	F(issuer),
	F(register_uri),
	F(claim_uri),
	F(method),
	F(registration_id),
	F(credential_type),
	F(credential),
	F(credential_expires),
	F(scopes),
	F(post_claim_scopes),
	F(claim_state),
	F(claim_token),
	F(claim_token_expires),
	F(claim_email),
	F(provider),
	F(session),
	F(protocol),
	F(token_endpoint),
	F(identity_assertion),
	F(assertion_expires),
	F(token_type),
	F(refresh_token),
	F(refresh_expires),
	F(claim_attempt_id),
	F(user_code),
	F(verification_uri),
	F(verification_uri_complete),
	F(claim_attempt_expires),
};

bool
cs_get(const json_t *doc, const char *resource, struct authmd_credential *out)
{
	json_t *e = json_object_get(json_object_get(doc, "credentials"), resource);

	if (!json_is_object(e))
		return false;
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const char *v = json_string_value(json_object_get(e, fields[i].name));

		if (v != NULL)
			am_copy((char *)out + fields[i].offset, fields[i].size, v);
	}
	out->worked = json_is_true(json_object_get(e, "worked"));
	if (json_is_integer(json_object_get(e, "claim_interval")))
		out->claim_interval =
			(long)json_integer_value(json_object_get(e, "claim_interval"));
	return out->resource[0] != '\0';
}

void
cs_put(json_t *doc, const struct authmd_credential *c)
{
	json_t *e = json_object();

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const char *v = (const char *)c + fields[i].offset;

		if (v[0] != '\0')
			json_object_set_new(e, fields[i].name, json_string(v));
	}
	json_object_set_new(e, "worked", json_boolean(c->worked));
	if (c->claim_interval > 0)
		json_object_set_new(e, "claim_interval", json_integer(c->claim_interval));
	json_object_set_new(json_object_get(doc, "credentials"), c->resource, e);
}

bool
cs_del(json_t *doc, const char *resource)
{
	return json_object_del(json_object_get(doc, "credentials"), resource) == 0;
}

const char *
cs_match(const json_t *doc, const char *url)
{
	json_t *all = json_object_get(doc, "credentials"), *v;
	const char *key, *best = NULL, *same_origin = NULL;
	struct am_url want, have;
	size_t best_len = 0;

	/* Parsed, not compared as strings: a prefix counts only on a path
	 * boundary of the same origin ("https://api.test" never matches
	 * "https://api.test.evil/"), and nothing is read past either string. */
	if (!am_url_parse(url, &want))
		return NULL;
	json_object_foreach(all, key, v)
	{
		if (!am_url_parse(key, &have) || !am_url_same_origin(&have, &want))
			continue;
		if (am_url_under(&have, &want) && (best == NULL || strlen(have.path) > best_len)) {
			best = key;
			best_len = strlen(have.path);
		}
		if (same_origin == NULL)
			same_origin = key;
	}
	return best != NULL ? best : same_origin;
}

/* Seconds since the epoch of an RFC 3339 UTC time as the server writes it
 * ("2026-05-04T13:00:00.000Z"); 0 if it does not parse. */
time_t
cs_parse_utc(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	end = s != NULL ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	return end != NULL ? timegm(&tm) : 0;
}

static const char *const attempt_keys[] = {"claim_attempt_id",	    "user_code",
					   "verification_uri",	    "verification_uri_complete",
					   "claim_attempt_expires", "claim_interval"};

bool
cs_prune(json_t *doc, time_t now)
{
	json_t *e;
	const char *key;
	bool changed = false;

	json_object_foreach(json_object_get(doc, "credentials"), key, e)
	{
		time_t until =
			cs_parse_utc(json_string_value(json_object_get(e, "claim_token_expires")));

		if (json_object_get(e, "claim_token") != NULL && until != 0 && until < now) {
			json_object_del(e, "claim_token");
			json_object_del(e, "claim_token_expires");
			/* an open user_code attempt dies with its claim token */
			for (size_t i = 0; i < sizeof(attempt_keys) / sizeof(attempt_keys[0]); i++)
				json_object_del(e, attempt_keys[i]);
			json_object_set_new(e, "claim_state", json_string("expired"));
			changed = true;
		}
	}
	return changed;
}
