/* The gate's pure parts: canonical request paths, the route policy, the
 * full decision on an in-memory store, introspection client checks, CIDR
 * lists and the metrics registry's text format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"
#include "core/metrics.h"
#include "flows/flows.h"

static const char *
canon(const char *target)
{
	static char out[AM_MAX_URL_BYTES + 1];
	struct am_error e = {0};

	if (flow_gate_path(target, out, sizeof(out), &e) != AM_OK)
		return NULL;
	return out;
}

static void
paths_are_canonical_before_matching(void **state)
{
	(void)state;
	assert_string_equal(canon("/"), "/");
	assert_string_equal(canon("/api/orders?x=/admin"), "/api/orders");
	assert_string_equal(canon("/api/orders#frag"), "/api/orders");
	assert_string_equal(canon("//api///orders/"), "/api/orders/");
	assert_string_equal(canon("/api/./x/../orders"), "/api/orders");
	assert_string_equal(canon("/a/b/.."), "/a/");
	assert_string_equal(canon("/a/b/."), "/a/b/");
	assert_string_equal(canon("/%61pi/%2e%2e/admin"), "/admin");  /* decoded, then resolved */
	assert_string_equal(canon("/a%20b/%c3%a9"), "/a%20b/%C3%A9"); /* other escapes kept */
}

static void
ambiguous_paths_are_refused(void **state)
{
	static const char *bad[] = {"",	      "api",	"http://h/api", "/..",	 "/a/../..",
				    "/a%2Fb", "/a%2fb", "/a%5Cb",	"/a\\b", "/a;jsessionid=1",
				    "/a%3bb", "/a%00",	"/a%zz",	"/a%2",	 "/a b",
				    "/a\tb"};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (canon(bad[i]) != NULL)
			fail_msg("accepted %s as %s", bad[i], canon(bad[i]));
	}
}

static void
add_route(struct am_config *cfg, const char *name, const char *path, const char *methods,
	  const char *scope)
{
	char err[256];
	char section[80];

	snprintf(section, sizeof(section), "route %s", name);
	assert_int_equal(am_config_set(cfg, section, "path", path, err, sizeof(err)), 0);
	assert_int_equal(am_config_set(cfg, section, "methods", methods, err, sizeof(err)), 0);
	assert_int_equal(am_config_set(cfg, section, "scope", scope, err, sizeof(err)), 0);
}

static const char *
found(const struct am_config *cfg, const char *method, const char *path)
{
	bool refused;
	const struct am_route *r = flow_route_find(cfg, method, path, &refused);

	return r != NULL ? r->name : refused ? "REFUSED" : "DEFAULT";
}

static void
the_longest_prefix_wins_and_methods_pick_within_it(void **state)
{
	struct am_config cfg;
	char err[256];

	(void)state;
	am_config_defaults(&cfg);
	assert_true(cfg.routes_builtin);
	assert_string_equal(found(&cfg, "GET", "/api/resource"), "demo-read");
	assert_string_equal(found(&cfg, "POST", "/api/resource"), "demo-write");
	add_route(&cfg, "api", "/api", "", "api.read");
	add_route(&cfg, "orders-read", "/api/orders", "GET HEAD", "api.read");
	add_route(&cfg, "orders-write", "/api/orders/", "POST", "api.write");
	assert_int_equal(am_config_validate(&cfg, err, sizeof(err)), 0);
	assert_false(cfg.routes_builtin);
	assert_int_equal(cfg.nroutes, 3);
	assert_string_equal(found(&cfg, "GET", "/api"), "api");
	assert_string_equal(found(&cfg, "DELETE", "/api/x"), "api");
	assert_string_equal(found(&cfg, "GET", "/apix"), "DEFAULT"); /* segment-wise */
	assert_string_equal(found(&cfg, "GET", "/api/orders"), "orders-read");
	assert_string_equal(found(&cfg, "POST", "/api/orders/7"), "orders-write");
	/* The longest covering path decides alone: its routes not naming the
	 * method refuse, and never fall through to the shorter paths. */
	assert_string_equal(found(&cfg, "GET", "/api/orders/7"), "REFUSED");
	assert_string_equal(found(&cfg, "DELETE", "/api/orders"), "REFUSED");
	assert_string_equal(found(&cfg, "GET", "/other"), "DEFAULT");
}

struct fixture {
	struct am_config cfg;
	struct flow_env env;
	struct store *st;
	struct reg_result reg;
};

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct am_error e = {0};

	am_config_defaults(&fx->cfg);
	fx->env.cfg = &fx->cfg;
	fx->env.clock.now = 1000000;
	assert_int_equal(store_open("sqlite::memory:", "default", &fx->st, &e), AM_OK);
	assert_int_equal(flow_register_anonymous(&fx->env, fx->st, "192.0.2.1", NULL, &fx->reg, &e),
			 AM_OK);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	store_close(fx->st);
	free(fx);
	return 0;
}

static enum am_err
check(struct fixture *fx, const char *method, const char *target, const char *bearer,
      struct gate_result *out)
{
	struct am_error e = {0};

	memset(out, 0, sizeof(*out));
	return flow_gate_check(&fx->env, fx->st, method, target, bearer, out, &e);
}

static void
the_decision_follows_policy_credential_and_scope(void **state)
{
	struct fixture *fx = *state;
	struct gate_result res;

	assert_int_equal(check(fx, "GET", "/api/resource", fx->reg.credential, &res), AM_OK);
	assert_string_equal(res.auth.cred.registration_id, fx->reg.registration_id);
	assert_int_equal(check(fx, "GET", "/api/resource", NULL, &res), AM_E_INVALID_TOKEN);
	assert_int_equal(check(fx, "GET", "/api/resource", "sk_wrong", &res), AM_E_INVALID_TOKEN);
	assert_true(res.auth.cred.id[0] == '\0'); /* nothing about anyone on a refusal */
	assert_int_equal(check(fx, "POST", "/api/resource", fx->reg.credential, &res),
			 AM_E_INSUFFICIENT_SCOPE);
	assert_string_equal(res.route->scope, "api.write");
	assert_true(res.auth.cred.id[0] == '\0');
	/* Default deny comes before any credential check. */
	assert_int_equal(check(fx, "GET", "/admin", fx->reg.credential, &res), AM_E_ACCESS_DENIED);
	assert_int_equal(check(fx, "GET", "/admin", NULL, &res), AM_E_ACCESS_DENIED);
	snprintf(fx->cfg.gate_default, sizeof(fx->cfg.gate_default), "authenticated");
	assert_int_equal(check(fx, "GET", "/admin", fx->reg.credential, &res), AM_OK);
	assert_null(res.route);
	assert_int_equal(check(fx, "GET", "/admin", NULL, &res), AM_E_INVALID_TOKEN);
	assert_int_equal(check(fx, "get", "/admin", fx->reg.credential, &res),
			 AM_E_INVALID_REQUEST);
	assert_int_equal(check(fx, "GET", "/a/../../admin", fx->reg.credential, &res),
			 AM_E_INVALID_REQUEST);
	/* Past the TTL the unclaimed key stops, sweep or not. */
	fx->env.clock.now += fx->cfg.ttl_registration + 1;
	assert_int_equal(check(fx, "GET", "/api/resource", fx->reg.credential, &res),
			 AM_E_INVALID_TOKEN);
}

static void
introspection_and_rfc7009_revocation(void **state)
{
	struct fixture *fx = *state;
	struct store_auth auth;
	struct am_error e = {0};
	bool active = true;
	int n = -1;

	assert_int_equal(flow_introspect(&fx->env, fx->st, fx->reg.credential, &active, &auth, &e),
			 AM_OK);
	assert_true(active);
	assert_int_equal(flow_introspect(&fx->env, fx->st, "sk_nope", &active, &auth, &e), AM_OK);
	assert_false(active);
	assert_int_equal(flow_revoke_token(&fx->env, fx->st, "sk_nope", &n, &e), AM_OK);
	assert_int_equal(n, 0);
	assert_int_equal(flow_revoke_token(&fx->env, fx->st, fx->reg.credential, &n, &e), AM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(flow_introspect(&fx->env, fx->st, fx->reg.credential, &active, &auth, &e),
			 AM_OK);
	assert_false(active);
}

static void
introspection_clients_need_their_exact_secret(void **state)
{
	struct am_config cfg;
	char err[256];

	(void)state;
	am_config_defaults(&cfg);
	/* sha256("test") */
	assert_int_equal(
		am_config_set(&cfg, "introspection client rs", "secret_sha256",
			      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			      err, sizeof(err)),
		0);
	assert_int_equal(am_config_validate(&cfg, err, sizeof(err)), 0);
	assert_non_null(flow_introspection_client(&cfg, "rs", "test"));
	assert_null(flow_introspection_client(&cfg, "rs", "test "));
	assert_null(flow_introspection_client(&cfg, "rs", ""));
	assert_null(flow_introspection_client(&cfg, "other", "test"));
	assert_null(flow_introspection_client(&cfg, NULL, "test"));
}

static void
cidr_lists_match_by_prefix_and_family(void **state)
{
	struct am_cidr_list l;
	char err[128];

	(void)state;
	assert_int_equal(am_cidr_parse("127.0.0.1 10.0.0.0/8, 2001:db8::/32", &l, err, sizeof(err)),
			 0);
	assert_int_equal(l.n, 3);
	assert_true(am_cidr_match(&l, "127.0.0.1"));
	assert_false(am_cidr_match(&l, "127.0.0.2"));
	assert_true(am_cidr_match(&l, "10.255.0.1"));
	assert_true(am_cidr_match(&l, "::ffff:10.1.2.3")); /* mapped IPv4 */
	assert_true(am_cidr_match(&l, "2001:db8:1::5"));
	assert_false(am_cidr_match(&l, "2001:db9::5"));
	assert_false(am_cidr_match(&l, "not-an-ip"));
	assert_false(am_cidr_match(&l, ""));
	assert_int_equal(am_cidr_parse("", &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(am_cidr_parse("10.0.0.1/8", &l, err, sizeof(err)), -1);
	assert_int_equal(am_cidr_parse("10.0.0.0/33", &l, err, sizeof(err)), -1);
	assert_int_equal(am_cidr_parse("::1/129", &l, err, sizeof(err)), -1);
	assert_int_equal(am_cidr_parse("localhost", &l, err, sizeof(err)), -1);
	assert_int_equal(am_cidr_parse("10.0.0.0/x", &l, err, sizeof(err)), -1);
}

static void
metrics_render_label_values_safely(void **state)
{
	double commits = am_metrics_value(AM_M_STORE_COMMIT, NULL, NULL);
	char *text;

	(void)state;
	am_metrics_inc(AM_M_GATE_DECISIONS, "we\"ird\nvalue\\", NULL);
	am_metrics_observe(AM_M_STORE_COMMIT, NULL, 0.003);
	assert_true(am_metrics_value(AM_M_GATE_DECISIONS, "we_ird_value_", NULL) == 1);
	assert_true(am_metrics_value(AM_M_STORE_COMMIT, NULL, NULL) == commits + 1);
	text = am_metrics_render();
	assert_non_null(
		strstr(text, "authmd_gate_decisions_total{decision=\"we_ird_value_\"} 1\n"));
	assert_non_null(strstr(text, "authmd_store_commit_duration_seconds_bucket{le=\"+Inf\"} "));
	assert_non_null(
		strstr(text, "# TYPE authmd_claims_total counter\nauthmd_claims_total 0\n"));
	assert_null(strstr(text, "we\"ird"));
	free(text);
}

/* Each series is its own, however many there are and however their labels
 * split (route "ab" status "c" is not route "a" status "bc"); past the cap
 * new series are dropped and counted, and the old ones keep counting. Runs
 * last: it fills the registry. */
static void
metrics_series_are_distinct_up_to_the_cap(void **state)
{
	char a[32], b[32];
	int made = 0;

	(void)state;
	am_metrics_inc(AM_M_HTTP_REQUESTS, "ab", "c");
	am_metrics_inc(AM_M_HTTP_REQUESTS, "a", "bc");
	am_metrics_inc(AM_M_HTTP_REQUESTS, "a", "bc");
	assert_true(am_metrics_value(AM_M_HTTP_REQUESTS, "ab", "c") == 1);
	assert_true(am_metrics_value(AM_M_HTTP_REQUESTS, "a", "bc") == 2);
	assert_true(am_metrics_value(AM_M_HTTP_REQUESTS, "abc", NULL) == 0);
	for (int i = 0; i < AM_METRICS_MAX_SERIES + 50; i++) {
		snprintf(a, sizeof(a), "/r%d", i % 37);
		snprintf(b, sizeof(b), "%d", i);
		am_metrics_inc(AM_M_HTTP_REQUESTS, a, b);
		am_metrics_inc(AM_M_HTTP_REQUESTS, a, b);
		made += am_metrics_value(AM_M_HTTP_REQUESTS, a, b) == 2;
	}
	/* Some were refused at the cap, every one kept counted twice. */
	assert_true(made > AM_METRICS_MAX_SERIES / 2 && made < AM_METRICS_MAX_SERIES);
	assert_true(am_metrics_value(AM_M_HTTP_REQUESTS, "/r0", "0") == 2);
	am_metrics_inc(AM_M_HTTP_REQUESTS, "a", "bc");
	assert_true(am_metrics_value(AM_M_HTTP_REQUESTS, "a", "bc") == 3);
	snprintf(a, sizeof(a), "/r%d", (AM_METRICS_MAX_SERIES + 49) % 37);
	snprintf(b, sizeof(b), "%d", AM_METRICS_MAX_SERIES + 49);
	assert_true(am_metrics_value(AM_M_HTTP_REQUESTS, a, b) == 0); /* dropped */
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(paths_are_canonical_before_matching),
		cmocka_unit_test(ambiguous_paths_are_refused),
		cmocka_unit_test(the_longest_prefix_wins_and_methods_pick_within_it),
		T(the_decision_follows_policy_credential_and_scope),
		T(introspection_and_rfc7009_revocation),
		cmocka_unit_test(introspection_clients_need_their_exact_secret),
		cmocka_unit_test(cidr_lists_match_by_prefix_and_family),
		cmocka_unit_test(metrics_render_label_values_safely),
		cmocka_unit_test(metrics_series_are_distinct_up_to_the_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
