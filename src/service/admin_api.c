/* The operator surface of the service: the admin API (its own listener,
 * [admin] listen; docs/operations.md) and the SIGHUP reload of the trust
 * list and route policy. The operations themselves are flows/admin.c. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/crypto.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "flows/admin.h"
#include "service/service.h"
#include "trust/trust.h"

/* ---- reload ---- */

struct app_retired {
	struct am_config *cfg;
	struct app_retired *next;
};

/* True when a and b differ in anything but the trust list and the routes
 * (and what is derived from files at load: those are read again anyway). */
static bool
differs_beyond_reloadable(const struct am_config *a, const struct am_config *b)
{
	struct am_config *x = malloc(sizeof(*x));
	bool differs;

	if (x == NULL)
		return true;
	memcpy(x, b, sizeof(*x));
	memcpy(x->providers, a->providers, sizeof(x->providers));
	x->nproviders = a->nproviders;
	memcpy(x->routes, a->routes, sizeof(x->routes));
	x->nroutes = a->nroutes;
	x->routes_builtin = a->routes_builtin;
	/* Both were filled from zeroed memory by the same loader, so equal
	 * settings are equal bytes. */
	differs = memcmp(x, a, sizeof(*x)) != 0;
	OPENSSL_cleanse(x, sizeof(*x)); /* it holds the SMTP password */
	free(x);
	return differs;
}

/* The configuration already made that equals want (the first one, main's,
 * included), or NULL. */
static const struct am_config *
known_config(const struct app *a, const struct am_config *want)
{
	if (memcmp(a->cfg, want, sizeof(*want)) == 0)
		return a->cfg;
	for (const struct app_retired *r = a->retired; r != NULL; r = r->next) {
		if (memcmp(r->cfg, want, sizeof(*want)) == 0)
			return r->cfg;
	}
	return NULL;
}

enum am_err
app_reload(struct app *a, const char *path, struct am_error *e)
{
	const struct am_config *cur = a->env.cfg, *known;
	struct am_config *fresh = malloc(sizeof(*fresh)), *gen = malloc(sizeof(*gen));
	struct app_retired *r = NULL;
	size_t made = 0;
	char err[512];
	enum am_err rc;

	if (fresh == NULL || gen == NULL) {
		rc = am_fail(e, AM_E_INTERNAL, "out of memory");
		goto out;
	}
	if (am_config_load(path, fresh, err, sizeof(err)) != 0) {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "%.180s", err);
		goto out;
	}
	/* Discovery, auth.md and the route table were built for ID-JAG on or
	 * off: only a restart rebuilds them. */
	if (app_id_jag_enabled(cur) != app_id_jag_enabled(fresh)) {
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "this change turns ID-JAG %s (the first provider added or the last "
			     "removed); that needs a restart",
			     app_id_jag_enabled(fresh) ? "on" : "off");
		goto out;
	}
	if (differs_beyond_reloadable(cur, fresh))
		log_warn("reload: settings outside the [provider] and [route] sections changed; "
			 "they take effect at the next restart");
	/* Both filled from zeroed memory by the same code, so equal settings
	 * are equal bytes and a configuration seen before is found again. */
	memcpy(gen, cur, sizeof(*gen)); /* bytes, padding included */
	memcpy(gen->providers, fresh->providers, sizeof(gen->providers));
	gen->nproviders = fresh->nproviders;
	memcpy(gen->routes, fresh->routes, sizeof(gen->routes));
	gen->nroutes = fresh->nroutes;
	gen->routes_builtin = fresh->routes_builtin;
	if ((known = known_config(a, gen)) == cur) {
		log_info("reload: trust list and routes unchanged providers=%zu routes=%zu",
			 cur->nproviders, cur->nroutes);
		rc = AM_OK;
		goto out;
	}
	for (const struct app_retired *x = a->retired; x != NULL; x = x->next)
		made++;
	/* Every configuration made stays alive (a request may still read one),
	 * so their number is capped; a configuration seen before is reused. */
	if (known == NULL && made >= AM_RELOAD_MAX_CONFIGS) {
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "%d different trust lists and route policies were loaded since "
			     "start; restart the server to load another",
			     AM_RELOAD_MAX_CONFIGS);
		goto out;
	}
	if (known == NULL && (r = calloc(1, sizeof(*r))) == NULL) {
		rc = am_fail(e, AM_E_INTERNAL, "out of memory");
		goto out;
	}
	if ((rc = trust_reload(a->env.trust, known != NULL ? known : gen, e)) != AM_OK) {
		free(r);
		goto out;
	}
	if (known == NULL) {
		r->cfg = gen;
		r->next = a->retired;
		a->retired = r;
		known = gen;
		gen = NULL; /* the list's now */
	}
	/* Published: a request reading a->env.cfg from here on sees the new
	 * configuration; one that read cur still holds valid memory. */
	a->env.cfg = known;
	log_info("reload: trust list providers=%zu, routes=%zu", known->nproviders, known->nroutes);
	{
		struct am_error le = {0};

		if (app_log_trust_list(a, known, &le) != AM_OK)
			log_warn("reload: the trust list change was not recorded: %s", le.detail);
	}
out:
	if (fresh != NULL)
		OPENSSL_cleanse(fresh, sizeof(*fresh));
	free(fresh);
	if (gen != NULL)
		OPENSSL_cleanse(gen, sizeof(*gen));
	free(gen);
	return rc;
}

void
app_reload_free(struct app *a)
{
	/* The first configuration is the caller's (main's); every one made
	 * by app_reload is on the list. */
	while (a->retired != NULL) {
		struct app_retired *r = a->retired;

		a->retired = r->next;
		OPENSSL_cleanse(r->cfg, sizeof(*r->cfg));
		free(r->cfg);
		free(r);
	}
	a->env.cfg = a->cfg;
}

/* ---- the admin API ---- */

/* The name of the operator whose key the request carries, or NULL. Every
 * key is compared (constant time each), so the time taken does not say
 * which key, if any, came close. */
static const char *
operator_of(const struct am_config *cfg, struct http_req *rq)
{
	const char *h = http_header(rq, "Authorization");
	const char *who = NULL;
	uint8_t hash[AM_HASH_LEN];
	size_t len;

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	len = strlen(h);
	if (len == 0 || len > AM_MAX_TOKEN_BYTES)
		return NULL;
	am_sha256(h, len, hash);
	for (size_t i = 0; i < cfg->nadmin_keys; i++) {
		if (am_ct_equal(hash, cfg->admin_keys[i].hash, sizeof(hash)) && who == NULL)
			who = cfg->admin_keys[i].name;
	}
	return who;
}

static enum am_err
authenticate(struct app *a, struct http_req *rq, struct http_resp *rs, const char **who,
	     struct am_error *e)
{
	http_add_header(rs, "Cache-Control", "no-store");
	if ((*who = operator_of(a->cfg, rq)) == NULL) {
		http_add_header(rs, "WWW-Authenticate", "Bearer realm=\"authmd-admin\"");
		log_warn("admin request refused: no valid operator key ip=%s", rq->ip);
		return am_fail(e, AM_E_INVALID_TOKEN, "an operator key is required");
	}
	return AM_OK;
}

/* A query parameter, "" when absent; refused when longer than max. */
static enum am_err
query_arg(struct http_req *rq, const char *name, size_t max, const char **out, struct am_error *e)
{
	const char *v = http_query(rq, name);

	if (v == NULL)
		v = "";
	if (strlen(v) > max)
		return am_fail(e, AM_E_INVALID_REQUEST, "%s is longer than %zu", name, max);
	*out = v;
	return AM_OK;
}

static bool
status_known(const char *s)
{
	for (int i = REG_UNCLAIMED; i <= REG_REVOKED; i++) {
		if (strcmp(s, store_status_name((enum reg_status)i)) == 0)
			return true;
	}
	return false;
}

static enum am_err
h_admin_search(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct store_reg_filter f = {0};
	const char *who, *limit_text = "";
	long limit = 50;
	struct store *st;
	json_t *out;
	enum am_err rc;

	if ((rc = authenticate(a, rq, rs, &who, e)) != AM_OK)
		return rc;
	if ((rc = query_arg(rq, "user", STORE_ID_LEN - 1, &f.user_id, e)) != AM_OK ||
	    (rc = query_arg(rq, "email", AM_MAX_EMAIL_BYTES, &f.email, e)) != AM_OK ||
	    (rc = query_arg(rq, "issuer", STORE_TEXT_LEN - 1, &f.iss, e)) != AM_OK ||
	    (rc = query_arg(rq, "status", 32, &f.status, e)) != AM_OK ||
	    (rc = query_arg(rq, "after", STORE_ID_LEN - 1, &f.after, e)) != AM_OK ||
	    (rc = query_arg(rq, "limit", 8, &limit_text, e)) != AM_OK)
		return rc;
	if (f.status[0] != '\0' && !status_known(f.status))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "status is one of unclaimed, pending_claim, claimed, expired, "
			       "revoked");
	if (limit_text[0] != '\0') {
		char *end;

		limit = strtol(limit_text, &end, 10);
		if (*end != '\0' || limit < 1 || limit > AM_ADMIN_PAGE_MAX)
			return am_fail(e, AM_E_INVALID_REQUEST, "limit is 1 to %d",
				       AM_ADMIN_PAGE_MAX);
	}
	if ((rc = app_store(a, &st, e)) != AM_OK ||
	    (rc = flow_admin_search(&a->env, st, &f, (size_t)limit, &out, e)) != AM_OK)
		return rc;
	http_reply_json(rs, 200, out);
	return AM_OK;
}

static enum am_err
h_admin_show(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	const char *who, *id = rq->path + strlen("/admin/registrations/");
	struct store *st;
	json_t *out;
	enum am_err rc;

	if ((rc = authenticate(a, rq, rs, &who, e)) != AM_OK)
		return rc;
	if (id[0] == '\0' || strlen(id) >= STORE_ID_LEN || strchr(id, '/') != NULL)
		return am_fail(e, AM_E_NOT_FOUND, "no such registration");
	if ((rc = app_store(a, &st, e)) != AM_OK ||
	    (rc = flow_admin_show(&a->env, st, id, &out, e)) != AM_OK)
		return rc;
	http_reply_json(rs, 200, out);
	return AM_OK;
}

/* The body of revoke and unblock: exactly one of {"registration": ID},
 * {"user": ID}, {"issuer": ISS[, "subject": SUB]} or, for revoke,
 * {"all": true}. */
static enum am_err
parse_target(const json_t *body, bool allow_all, struct admin_target *t, struct am_error *e)
{
	const char *reg = NULL, *user = NULL, *iss = NULL, *sub = NULL, *key;
	json_t *all = json_object_get(body, "all"), *v;
	enum am_err rc;
	int named;

	json_object_foreach((json_t *)body, key, v)
	{
		if (strcmp(key, "registration") != 0 && strcmp(key, "user") != 0 &&
		    strcmp(key, "issuer") != 0 && strcmp(key, "subject") != 0 &&
		    strcmp(key, "all") != 0)
			return am_fail(e, AM_E_INVALID_REQUEST, "unknown member %.40s", key);
	}
	if ((rc = am_json_string(body, "registration", false, STORE_ID_LEN - 1, &reg, e)) !=
		    AM_OK ||
	    (rc = am_json_string(body, "user", false, STORE_ID_LEN - 1, &user, e)) != AM_OK ||
	    (rc = am_json_string(body, "issuer", false, STORE_TEXT_LEN - 1, &iss, e)) != AM_OK ||
	    (rc = am_json_string(body, "subject", false, STORE_TEXT_LEN - 1, &sub, e)) != AM_OK)
		return rc;
	memset(t, 0, sizeof(*t));
	if (all != NULL && !json_is_true(all))
		return am_fail(e, AM_E_INVALID_REQUEST, "all is true or absent");
	named = (reg != NULL) + (user != NULL) + (iss != NULL) + (all != NULL);
	if (named != 1 || (sub != NULL && iss == NULL))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "name exactly one of registration, user, issuer (with an optional "
			       "subject)%s",
			       allow_all ? " or all" : "");
	if (all != NULL) {
		if (!allow_all)
			return am_fail(e, AM_E_INVALID_REQUEST, "unblock names one block");
		t->all = true;
	} else if (reg != NULL) {
		t->kind = BLOCK_REGISTRATION;
		t->value = reg;
	} else if (user != NULL) {
		t->kind = BLOCK_USER;
		t->value = user;
	} else {
		t->kind = sub != NULL ? BLOCK_SUBJECT : BLOCK_ISSUER;
		t->value = iss;
		t->sub = sub;
	}
	if (!t->all && t->value[0] == '\0')
		return am_fail(e, AM_E_INVALID_REQUEST, "the target is empty");
	return AM_OK;
}

static enum am_err
admin_change(struct app *a, struct http_req *rq, struct http_resp *rs, bool revoke,
	     struct am_error *e)
{
	struct admin_target t;
	const char *who;
	struct store *st;
	json_t *body = NULL, *out = NULL;
	enum am_err rc;

	if ((rc = authenticate(a, rq, rs, &who, e)) != AM_OK)
		return rc;
	if (rq->body.len > AM_ADMIN_BODY_BYTES)
		return am_fail(e, AM_E_PAYLOAD_TOO_LARGE, "the body is at most %d bytes",
			       AM_ADMIN_BODY_BYTES);
	if ((rc = svc_json_body(rq, &body, e)) != AM_OK)
		return rc;
	if ((rc = parse_target(body, revoke, &t, e)) != AM_OK ||
	    (rc = app_store(a, &st, e)) != AM_OK)
		goto out;
	if (revoke) {
		rc = flow_admin_revoke(&a->env, st, who, &t, &out, e);
	} else if ((rc = flow_admin_unblock(&a->env, st, who, &t, e)) == AM_OK) {
		out = json_pack("{s:s}", "unblocked", store_block_kind_name(t.kind));
		log_info("operator unblock actor=%s target=%s", who, store_block_kind_name(t.kind));
	}
	if (rc == AM_OK)
		http_reply_json(rs, 200, out);
out:
	json_decref(body);
	return rc;
}

static enum am_err
h_admin_revoke(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	return admin_change(app, rq, rs, true, e);
}

static enum am_err
h_admin_unblock(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	return admin_change(app, rq, rs, false, e);
}

void
admin_routes_build(struct app *a)
{
	static const struct http_route routes[] = {
		{"GET", "/admin/registrations", HTTP_EXACT, h_admin_search},
		{"GET", "/admin/registrations/", HTTP_PREFIX, h_admin_show},
		{"POST", "/admin/revoke", HTTP_EXACT, h_admin_revoke},
		{"POST", "/admin/unblock", HTTP_EXACT, h_admin_unblock},
	};

	memcpy(a->admin_routes, routes, sizeof(routes));
	a->nadmin_routes = sizeof(routes) / sizeof(routes[0]);
}
