/* The trust list in the log and the audit trail: what it is at start and
 * after a reload, and what changed since the last one. Apart from app.c so
 * that the reload (admin_api.c) and the start share it without a cycle. */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/url.h"
#include "flows/audit.h"
#include "service/service.h"
#include "trust/trust.h"

/* True when url is plain http to a host that is not loopback (by its parsed
 * host, core/url.h: "127.evil.test" is not loopback). */
static json_t *
trust_snapshot(const struct am_config *cfg)
{
	json_t *all = json_object();

	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct am_provider *p = &cfg->providers[i];

		/* cimd and cimd_origins widen which client_ids pass: a change
		 * to them is a change of the trust list too. */
		json_object_set_new(all, p->name,
				    json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:s}", "issuer",
					      p->issuer, "jwks_uri", p->jwks_uri, "client_ids",
					      p->client_ids, "scopes", p->scopes, "link_by_email",
					      p->link_by_email, "link_by_phone", p->link_by_phone,
					      "cimd", p->cimd && !p->client_ids_pinned,
					      "cimd_origins", p->cimd_origins));
	}
	return all;
}

static bool
plain_http_off_loopback(const char *url)
{
	struct am_url u;

	return am_url_parse(url, &u) && strcmp(u.scheme, "http") == 0 && !am_url_is_loopback(&u);
}

/* Logs the trust list, and what changed since the last start (the list is
 * security-critical configuration: a change should never go unnoticed).
 * The change is also an audit event. */
enum am_err
app_log_trust_list(struct app *a, const struct am_config *cfg, struct am_error *e)
{
	json_t *now = trust_snapshot(cfg), *before = NULL, *changes = json_object();
	struct audit_batch batch = {0};
	struct store *st;
	char *text = NULL, *old = NULL;
	const char *name;
	json_t *v;
	enum am_err rc;

	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct am_provider *p = &cfg->providers[i];

		log_info("trust provider=%s issuer=%s jwks_uri=%s link_by_email=%s "
			 "link_by_phone=%s client_ids=%s cimd=%s cimd_origins=\"%s\"",
			 p->name, p->issuer, p->jwks_uri, p->link_by_email ? "on" : "off",
			 p->link_by_phone ? "on" : "off",
			 p->client_ids_pinned ? "pinned" : "issuer",
			 p->cimd && !p->client_ids_pinned ? "on" : "off", p->cimd_origins);
		/* Keys fetched without TLS can be swapped on the way: fine on
		 * loopback for development, a warning anywhere else. */
		if (plain_http_off_loopback(p->jwks_uri))
			log_warn("trust provider=%s fetches its keys over plain http from a "
				 "non-loopback host; use https",
				 p->name);
	}
	if ((rc = app_store(a, &st, e)) != AM_OK)
		goto out;
	rc = store_setting_get(st, "trust_list", &old, e);
	if (rc != AM_OK && rc != AM_E_NOT_FOUND)
		goto out;
	before = old != NULL ? json_loads(old, 0, NULL) : json_object();
	if (before == NULL)
		before = json_object();
	json_object_foreach(now, name, v)
	{
		json_t *was = json_object_get(before, name);

		if (was == NULL)
			json_object_set_new(changes, name, json_string("added"));
		else if (!json_equal(was, v))
			json_object_set_new(changes, name, json_string("changed"));
	}
	json_object_foreach(before, name, v)
	{
		if (json_object_get(now, name) == NULL)
			json_object_set_new(changes, name, json_string("removed"));
	}
	rc = AM_OK;
	if (json_object_size(changes) == 0)
		goto out;
	json_object_foreach(changes, name, v)
		log_warn("trust list changed provider=%s %s", name, json_string_value(v));
	text = json_dumps(now, JSON_COMPACT | JSON_SORT_KEYS);
	if ((rc = store_begin(st, e)) != AM_OK)
		goto out;
	if ((rc = store_setting_put(st, "trust_list", text, am_clock_now(NULL), e)) != AM_OK ||
	    (rc = audit_add(st, &batch, cfg->tenant, am_clock_now(NULL), "trust_list.changed", NULL,
			    json_pack("{s:O}", "providers", changes), e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		audit_discard(&batch);
		goto out;
	}
	audit_flush(a->env.audit, &batch);
out:
	free(text);
	free(old);
	json_decref(now);
	json_decref(before);
	json_decref(changes);
	return rc;
}
