/* GET /auth.md: the agent-readable guide, rendered once at start-up from a
 * template (built in, or [server] auth_md_template) filled from the config,
 * or an operator's own file served as it is ([server] auth_md_file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/str.h"
#include "service/service.h"

extern const char authmd_template[];

static bool
flag(const struct am_config *cfg, const char *name, size_t n)
{
#define IS(s) (n == strlen(s) && strncmp(name, s, n) == 0)
	if (IS("anonymous"))
		return cfg->flow_anonymous;
	if (IS("verified_email"))
		return cfg->flow_verified_email;
	if (IS("id_jag"))
		return app_id_jag_enabled(cfg);
	if (IS("claim"))
		return cfg->flow_anonymous || cfg->flow_verified_email;
	if (IS("service_auth"))
		return cfg->flow_service_auth;
#undef IS
	return false;
}

static void
value(const struct app *a, const char *name, size_t n, struct am_buf *out)
{
	const struct am_config *cfg = a->cfg;
	struct {
		const char *key;
		const char *str;
		long long num;
	} vals[] = {
		{"resource_name", cfg->resource_name, 0},
		{"resource", cfg->resource, 0},
		{"public_url", cfg->public_url, 0},
		{"prm_url", a->prm_url, 0},
		{"scopes_supported", cfg->scopes_supported, 0},
		{"pre_claim_scopes", cfg->scopes_pre_claim, 0},
		{"post_claim_scopes", cfg->scopes_post_claim, 0},
		{"otp_ttl_minutes", NULL, (long long)(cfg->ttl_otp + 59) / 60},
		{"registration_ttl_hours", NULL, (long long)(cfg->ttl_registration + 3599) / 3600},
		{"otp_attempts", NULL, (long long)cfg->otp_attempts},
	};
	struct {
		const char *key;
		const char *path;
	} urls[] = {
		{"as_url", "/.well-known/oauth-authorization-server"},
		{"register_uri", "/agent/auth"},
		{"claim_uri", "/agent/auth/claim"},
		{"claim_complete_uri", "/agent/auth/claim/complete"},
		{"revocation_uri", "/agent/auth/revoke"},
		{"skill_url", "/auth.md"},
		/* protocol v0.6 (issue 13) */
		{"identity_endpoint", "/agent/identity"},
		{"claim_endpoint", "/agent/identity/claim"},
		{"token_endpoint", "/oauth2/token"},
		{"events_endpoint", "/agent/event/notify"},
		{"jwks_uri", "/.well-known/jwks.json"},
	};

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		if (n == strlen(vals[i].key) && strncmp(name, vals[i].key, n) == 0) {
			if (vals[i].str != NULL)
				am_buf_puts(out, vals[i].str);
			else
				am_buf_printf(out, "%lld", vals[i].num);
			return;
		}
	}
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		if (n == strlen(urls[i].key) && strncmp(name, urls[i].key, n) == 0) {
			am_buf_printf(out, "%s%s", cfg->public_url, urls[i].path);
			return;
		}
	}
	log_warn("auth.md template names an unknown field=%.*s", (int)n, name);
}

char *
skill_render(const struct app *a, const char *tmpl)
{
	struct am_buf out = {0};
	const char *p = tmpl;

	while (*p != '\0') {
		const char *open = strstr(p, "{{"), *close;
		size_t n;

		if (open == NULL || (close = strstr(open + 2, "}}")) == NULL) {
			am_buf_puts(&out, p);
			break;
		}
		am_buf_add(&out, p, (size_t)(open - p));
		n = (size_t)(close - open - 2);
		if (open[2] == '#' && !flag(a->cfg, open + 3, n - 1)) {
			/* Skip to the matching end tag of this section. */
			char end[64];
			const char *stop;

			snprintf(end, sizeof(end), "{{/%.*s}}", (int)(n - 1), open + 3);
			stop = strstr(close + 2, end);
			p = stop != NULL ? stop + strlen(end) : close + 2 + strlen(close + 2);
			continue;
		}
		if (open[2] != '#' && open[2] != '/')
			value(a, open + 2, n, &out);
		p = close + 2;
	}
	return am_buf_take(&out);
}

static char *
slurp(const char *path, size_t cap)
{
	FILE *f = fopen(path, "re");
	struct am_buf b = {0};
	char chunk[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < cap)
		am_buf_add(&b, chunk, n);
	fclose(f);
	if (b.len >= cap) {
		am_buf_free(&b);
		return NULL;
	}
	return am_buf_take(&b);
}

enum am_err
skill_build(struct app *a, struct am_error *e)
{
	const struct am_config *cfg = a->cfg;
	char *tmpl;

	if (cfg->auth_md_file[0] != '\0') {
		if ((a->auth_md = slurp(cfg->auth_md_file, 1024 * 1024)) == NULL)
			return am_fail(e, AM_E_UNAVAILABLE, "cannot read [server] auth_md_file");
		log_info("auth.md served from file=%s", cfg->auth_md_file);
		return AM_OK;
	}
	if (cfg->auth_md_template[0] == '\0') {
		a->auth_md = skill_render(a, authmd_template);
		return AM_OK;
	}
	if ((tmpl = slurp(cfg->auth_md_template, 1024 * 1024)) == NULL)
		return am_fail(e, AM_E_UNAVAILABLE, "cannot read [server] auth_md_template");
	a->auth_md = skill_render(a, tmpl);
	free(tmpl);
	return AM_OK;
}

enum am_err
h_auth_md(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;

	(void)rq, (void)e;
	http_reply_text(rs, 200, "text/markdown; charset=utf-8", a->auth_md, strlen(a->auth_md));
	http_add_header(rs, "Cache-Control", "public, max-age=300");
	return AM_OK;
}
