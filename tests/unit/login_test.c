/* flows/login.c: the return_to rule, and which sessions are live. The
 * whole sign-in (mail, code, link, cookies) is tested over HTTP in
 * tests/integration/test_login.py and in a browser in tests/browser/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flows/login.h"

static void
return_to_takes_only_same_origin_paths(void **state)
{
	static const char *const good[] = {
		"/",	  "/login", "/account?tab=keys", "/claim?user_code=ABCD-EFGH",
		"/a/b:c", "/x#frag"};
	static const char *const bad[] = {"",
					  "//evil.example",
					  "///evil.example",
					  "/\\evil.example",
					  "\\\\evil.example",
					  "https://evil.example/",
					  "javascript:alert(1)",
					  "evil.example",
					  "/a b",
					  "/a\tb",
					  "/a\r\nLocation: x",
					  "/caf\xc3\xa9",
					  "/x:y",
					  "/%0a"};
	char big[AM_MAX_FIELD_BYTES + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(flow_return_to_ok(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* "/%0a" is a harmless literal path: kept, the browser gets it escaped */
		if (strcmp(bad[i], "/%0a") == 0)
			assert_true(flow_return_to_ok(bad[i]));
		else
			assert_false(flow_return_to_ok(bad[i]));
	}
	assert_false(flow_return_to_ok(NULL));
	memset(big, 'a', sizeof(big) - 1);
	big[0] = '/';
	big[sizeof(big) - 1] = '\0';
	assert_false(flow_return_to_ok(big));
	big[AM_MAX_FIELD_BYTES] = '\0';
	assert_true(flow_return_to_ok(big));
}

struct fixture {
	struct am_config cfg;
	struct flow_env env;
	struct store *st;
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

/* A session row for the cookie value, made at fx's now. */
static void
insert_session(struct fixture *fx, const char *cookie)
{
	struct store_session w = {0};
	struct am_error e = {0};

	am_sha256_str(cookie, w.hash);
	snprintf(w.id, sizeof(w.id), "ws_test");
	snprintf(w.user_id, sizeof(w.user_id), "usr_test");
	snprintf(w.email, sizeof(w.email), "ann@example.test");
	w.auth_time = w.created_at = w.last_seen = fx->env.clock.now;
	w.expires_at = fx->env.clock.now + fx->cfg.login_session_ttl;
	assert_int_equal(store_session_insert(fx->st, &w, &e), AM_OK);
}

static void
a_session_lives_until_its_lifetime_or_idle_limit(void **state)
{
	struct fixture *fx = *state;
	const char *cookie = "ses_0123456789abcdefghijABCDEFGHIJ";
	struct store_session w;
	struct am_error e = {0};

	insert_session(fx, cookie);
	assert_int_equal(flow_session_get(&fx->env, fx->st, cookie, &w, &e), AM_OK);
	assert_string_equal(w.user_id, "usr_test");
	assert_true(w.auth_time == 1000000);
	/* Idle just under the limit: still live (no writer: no touch). */
	fx->env.clock.now += fx->cfg.login_session_idle - 1;
	assert_int_equal(flow_session_get(&fx->env, fx->st, cookie, &w, &e), AM_OK);
	fx->env.clock.now += 1;
	assert_int_equal(flow_session_get(&fx->env, fx->st, cookie, &w, &e), AM_E_NOT_FOUND);
	/* Used all along, it still ends at the fixed lifetime. */
	assert_int_equal(store_session_touch(fx->st, w.hash, fx->env.clock.now, &e), AM_OK);
	fx->env.clock.now = 1000000 + fx->cfg.login_session_ttl;
	assert_int_equal(store_session_touch(fx->st, w.hash, fx->env.clock.now - 10, &e), AM_OK);
	assert_int_equal(flow_session_get(&fx->env, fx->st, cookie, &w, &e), AM_E_NOT_FOUND);
}

static void
only_a_well_formed_known_cookie_is_a_session(void **state)
{
	struct fixture *fx = *state;
	struct store_session w;
	struct am_error e = {0};

	insert_session(fx, "ses_0123456789abcdefghijABCDEFGHIJ");
	assert_int_equal(
		flow_session_get(&fx->env, fx->st, "ses_0123456789abcdefghijABCDEFGHIK", &w, &e),
		AM_E_NOT_FOUND);
	assert_int_equal(
		flow_session_get(&fx->env, fx->st, "pre_0123456789abcdefghijABCDEFGHIJ", &w, &e),
		AM_E_NOT_FOUND);
	assert_int_equal(flow_session_get(&fx->env, fx->st, "ses_<script>", &w, &e),
			 AM_E_NOT_FOUND);
	assert_int_equal(flow_session_get(&fx->env, fx->st, "", &w, &e), AM_E_NOT_FOUND);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(return_to_takes_only_same_origin_paths),
		cmocka_unit_test_setup_teardown(a_session_lives_until_its_lifetime_or_idle_limit,
						setup, teardown),
		cmocka_unit_test_setup_teardown(only_a_well_formed_known_cookie_is_a_session, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
