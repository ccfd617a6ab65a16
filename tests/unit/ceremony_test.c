/* flows/ceremony.c: the user_code ceremony on an in-memory store with a
 * clock we control: the user's completion and rejection (the same-account
 * rule, the attempt limit, code normalisation) and what the agent's poll
 * answers after each. The HTTP surfaces are in tests/integration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flows/flows.h"
#include "jose/skey.h"

#define NOW 1000000

struct fixture {
	struct am_config cfg;
	struct flow_env env;
	struct store *st;
	struct skey *keys;
	char keydir[64];
	struct service_auth_result reg;
	struct store_user user;
};

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct am_error e = {0};

	am_config_defaults(&fx->cfg);
	fx->env.cfg = &fx->cfg;
	fx->env.clock.now = NOW;
	snprintf(fx->keydir, sizeof(fx->keydir), "/tmp/authmd-ceremony-XXXXXX");
	assert_non_null(mkdtemp(fx->keydir));
	assert_int_equal(skey_open(fx->keydir, 3600, NOW, &fx->keys, &e), AM_OK);
	assert_int_equal(store_open("sqlite::memory:", "default", &fx->st, &e), AM_OK);
	snprintf(fx->user.id, sizeof(fx->user.id), "usr_owner");
	snprintf(fx->user.email, sizeof(fx->user.email), "owner@example.test");
	fx->user.created_at = NOW;
	assert_int_equal(store_user_insert(fx->st, &fx->user, &e), AM_OK);
	assert_int_equal(flow_service_auth_register(&fx->env, fx->st, "127.0.0.1",
						    "Owner@Example.test", &fx->reg, &e),
			 AM_OK);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;
	char path[128];

	snprintf(path, sizeof(path), "%s/service-keys.json", fx->keydir);
	unlink(path);
	rmdir(fx->keydir);
	skey_free(fx->keys);
	store_close(fx->st);
	free(fx);
	return 0;
}

static enum am_err
poll(struct fixture *fx, struct ceremony_token_result *out)
{
	struct am_error e = {0};

	memset(out, 0, sizeof(*out));
	return flow_ceremony_poll(&fx->env, fx->st, fx->keys, fx->reg.reg.claim_token, out, &e);
}

static enum am_err
complete(struct fixture *fx, const char *code, const char *email)
{
	struct am_error e = {0};

	return flow_ceremony_complete(&fx->env, fx->st, NULL, fx->reg.claim.attempt_token, code,
				      fx->user.id, email, &e);
}

static void
registration_is(struct fixture *fx, enum reg_status want)
{
	struct store_reg reg;
	struct am_error e = {0};

	assert_int_equal(store_reg_by_id(fx->st, fx->reg.reg.registration_id, &reg, &e), AM_OK);
	assert_int_equal(reg.status, want);
}

static void
the_typed_code_is_normalised_and_the_poll_answers_tokens_once(void **state)
{
	struct fixture *fx = *state;
	struct ceremony_token_result t;
	char typed[32];
	size_t n = 0;

	/* lower case, without the dash, with spaces: the same code */
	for (const char *c = fx->reg.claim.user_code; *c != '\0'; c++) {
		if (*c != '-')
			typed[n++] = (char)tolower((unsigned char)*c);
		if (n == 2)
			typed[n++] = ' ';
	}
	typed[n] = '\0';
	assert_int_equal(poll(fx, &t), AM_E_AUTHORIZATION_PENDING);
	assert_int_equal(complete(fx, typed, "OWNER@example.test"), AM_OK);
	registration_is(fx, REG_CLAIMED);
	assert_int_equal(poll(fx, &t), AM_OK);
	assert_non_null(t.assertion);
	assert_true(strncmp(t.token.access_token, "at_", 3) == 0);
	assert_string_equal(t.token.scopes, fx->cfg.scopes_post_claim);
	flow_ceremony_token_wipe(&t);
	/* the claim grant is not a second refresh path */
	assert_int_equal(poll(fx, &t), AM_E_INVALID_GRANT);
	/* and the attempt is spent */
	assert_int_equal(complete(fx, fx->reg.claim.user_code, "owner@example.test"),
			 AM_E_CLAIM_COMPLETED);
}

static void
another_account_can_neither_complete_nor_reject(void **state)
{
	struct fixture *fx = *state;
	struct ceremony_token_result t;
	struct am_error e = {0};

	assert_int_equal(complete(fx, fx->reg.claim.user_code, "intruder@example.test"),
			 AM_E_WRONG_ACCOUNT);
	assert_int_equal(flow_ceremony_deny(&fx->env, fx->st, NULL, fx->reg.claim.attempt_token,
					    "usr_x", "intruder@example.test", &e),
			 AM_E_WRONG_ACCOUNT);
	assert_int_equal(complete(fx, fx->reg.claim.user_code, NULL), AM_E_WRONG_ACCOUNT);
	registration_is(fx, REG_PENDING_CLAIM);
	assert_int_equal(poll(fx, &t), AM_E_AUTHORIZATION_PENDING);
}

static void
wrong_codes_are_counted_and_the_last_one_ends_the_attempt(void **state)
{
	struct fixture *fx = *state;
	struct ceremony_token_result t;
	char wrong[16];

	snprintf(wrong, sizeof(wrong), "%s", fx->reg.claim.user_code);
	wrong[0] = wrong[0] == 'B' ? 'C' : 'B';
	for (int64_t i = 1; i < fx->cfg.ceremony_code_tries; i++)
		assert_int_equal(complete(fx, wrong, "owner@example.test"), AM_E_INVALID_USER_CODE);
	assert_int_equal(complete(fx, "not a code at all", "owner@example.test"),
			 AM_E_EXPIRED_TOKEN);
	/* now even the right code is refused, and the agent is told so */
	assert_int_equal(complete(fx, fx->reg.claim.user_code, "owner@example.test"),
			 AM_E_EXPIRED_TOKEN);
	registration_is(fx, REG_PENDING_CLAIM);
	assert_int_equal(poll(fx, &t), AM_E_EXPIRED_TOKEN);
}

static void
a_rejection_reaches_the_poll_as_access_denied(void **state)
{
	struct fixture *fx = *state;
	struct ceremony_token_result t;
	struct am_error e = {0};

	assert_int_equal(flow_ceremony_deny(&fx->env, fx->st, NULL, fx->reg.claim.attempt_token,
					    fx->user.id, "owner@example.test", &e),
			 AM_OK);
	assert_int_equal(poll(fx, &t), AM_E_ACCESS_DENIED);
	assert_int_equal(complete(fx, fx->reg.claim.user_code, "owner@example.test"),
			 AM_E_ACCESS_DENIED);
	registration_is(fx, REG_PENDING_CLAIM);
}

static void
a_code_past_its_window_is_refused_to_both_sides(void **state)
{
	struct fixture *fx = *state;
	struct ceremony_token_result t;

	fx->env.clock.now += fx->cfg.ceremony_code_ttl;
	assert_int_equal(complete(fx, fx->reg.claim.user_code, "owner@example.test"),
			 AM_E_EXPIRED_TOKEN);
	assert_int_equal(poll(fx, &t), AM_E_EXPIRED_TOKEN);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			the_typed_code_is_normalised_and_the_poll_answers_tokens_once, setup,
			teardown),
		cmocka_unit_test_setup_teardown(another_account_can_neither_complete_nor_reject,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			wrong_codes_are_counted_and_the_last_one_ends_the_attempt, setup, teardown),
		cmocka_unit_test_setup_teardown(a_rejection_reaches_the_poll_as_access_denied,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_code_past_its_window_is_refused_to_both_sides,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
