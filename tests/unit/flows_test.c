/* flows/: the protocol steps on an in-memory store with a clock we control
 * and mail written to a temporary outbox (read back for the link token). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flows/flows.h"

struct fixture {
	struct am_config cfg;
	struct flow_env env;
	struct store *st;
	char outbox[64];
	struct reg_result reg;
};

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct am_error e = {0};

	am_config_defaults(&fx->cfg);
	snprintf(fx->outbox, sizeof(fx->outbox), "/tmp/authmd-flows-XXXXXX");
	assert_non_null(mkdtemp(fx->outbox));
	snprintf(fx->cfg.mail_outbox, sizeof(fx->cfg.mail_outbox), "%s", fx->outbox);
	fx->env.cfg = &fx->cfg;
	fx->env.clock.now = 1000000;
	assert_int_equal(mailer_new(&fx->cfg, &fx->env.mail, &e), AM_OK);
	assert_int_equal(store_open("sqlite::memory:", "default", &fx->st, &e), AM_OK);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;
	DIR *d = opendir(fx->outbox);
	struct dirent *de;
	char path[400];

	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", fx->outbox, de->d_name);
		unlink(path);
	}
	if (d != NULL)
		closedir(d);
	rmdir(fx->outbox);
	store_close(fx->st);
	mailer_free(fx->env.mail);
	free(fx);
	return 0;
}

/* The attempt token from the newest mail in the outbox (names sort in
 * the order the messages were written). */
static void
last_link_token(struct fixture *fx, char *out, size_t cap)
{
	DIR *d = opendir(fx->outbox);
	struct dirent *de;
	char path[400], best[256] = "", buf[8192];
	FILE *f;
	size_t n;
	char *p;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' && strcmp(de->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", de->d_name);
	}
	closedir(d);
	snprintf(path, sizeof(path), "%s/%s", fx->outbox, best);
	assert_non_null(f = fopen(path, "r"));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	assert_non_null(p = strstr(buf, "token="));
	p += 6;
	n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
	assert_true(n < cap);
	memcpy(out, p, n);
	out[n] = '\0';
}

static void
fx_register_anonymous(struct fixture *fx)
{
	struct am_error e = {0};

	assert_int_equal(flow_register_anonymous(&fx->env, fx->st, "127.0.0.1", NULL, &fx->reg, &e),
			 AM_OK);
}

/* Starts the claim and shows a code, as the user pressing the button. */
static void
fx_code(struct fixture *fx, const char *email, char otp[AM_OTP_DIGITS + 1])
{
	struct claim_start_result started;
	struct challenge_result ch;
	struct am_error e = {0};
	char token[128];

	assert_int_equal(
		flow_claim_start(&fx->env, fx->st, NULL, fx->reg.claim_token, email, &started, &e),
		AM_OK);
	last_link_token(fx, token, sizeof(token));
	assert_int_equal(flow_claim_challenge(&fx->env, fx->st, token, &ch, &e), AM_OK);
	memcpy(otp, ch.otp, AM_OTP_DIGITS + 1);
}

static bool
fx_key_works(struct fixture *fx, struct store_auth *auth)
{
	struct am_error e = {0};

	return flow_authenticate(&fx->env, fx->st, fx->reg.credential, auth, &e) == AM_OK;
}

/* Completes the fixture's claim with otp; res and who only on AM_OK. */
static enum am_err
fx_complete(struct fixture *fx, const char *otp, struct reg_result *res, char *who)
{
	struct reg_result ignored_res;
	char ignored_who[STORE_ID_LEN];
	struct am_error e = {0};

	return flow_claim_complete(&fx->env, fx->st, NULL, fx->reg.claim_token, otp,
				   res != NULL ? res : &ignored_res,
				   who != NULL ? who : ignored_who, &e);
}

static void
claim_is_refused_after_the_window(void **state)
{
	struct fixture *fx = *state;
	struct reg_result res;
	char otp[AM_OTP_DIGITS + 1], who[STORE_ID_LEN];
	struct store_auth auth;

	fx_register_anonymous(fx);
	fx_code(fx, "user@example.test", otp);
	fx->env.clock.now += fx->cfg.ttl_registration + 1;
	assert_int_equal(fx_complete(fx, otp, &res, who), AM_E_CLAIM_EXPIRED);
	assert_false(fx_key_works(fx, &auth)); /* and the key stopped at the TTL */
}

static void
anonymous_claim_upgrades_the_same_key(void **state)
{
	struct fixture *fx = *state;
	struct reg_result res;
	char otp[AM_OTP_DIGITS + 1], who[STORE_ID_LEN];
	struct store_auth auth;

	fx_register_anonymous(fx);
	assert_true(fx_key_works(fx, &auth));
	assert_string_equal(auth.cred.scopes, "api.read");
	fx_code(fx, "User@Example.test", otp);
	assert_int_equal(fx_complete(fx, otp, &res, who), AM_OK);
	assert_false(res.has_credential);
	assert_true(fx_key_works(fx, &auth));
	assert_string_equal(auth.cred.scopes, "api.read api.write");
	assert_string_equal(auth.cred.user_id, who);
	assert_string_equal(auth.user_email, "user@example.test");
	assert_int_equal(auth.reg_status, REG_CLAIMED);
	/* Claimed: the registration TTL no longer applies. */
	fx->env.clock.now += fx->cfg.ttl_registration * 2;
	assert_true(fx_key_works(fx, &auth));
}

static void
email_registration_gets_a_fresh_access_token_with_expiry(void **state)
{
	struct fixture *fx = *state;
	struct reg_result res;
	struct challenge_result ch;
	char token[128], who[STORE_ID_LEN];
	struct store_auth auth;
	struct am_error e = {0};

	assert_int_equal(flow_register_email(&fx->env, fx->st, NULL, "e@example.test",
					     "access_token", &fx->reg, &e),
			 AM_OK);
	assert_false(fx->reg.has_credential);
	last_link_token(fx, token, sizeof(token));
	assert_int_equal(flow_claim_challenge(&fx->env, fx->st, token, &ch, &e), AM_OK);
	assert_int_equal(fx_complete(fx, ch.otp, &res, who), AM_OK);
	assert_true(res.has_credential);
	assert_int_equal(res.credential_type, CRED_ACCESS_TOKEN);
	assert_int_equal(res.credential_expires, fx->env.clock.now + fx->cfg.ttl_access_token);
	assert_int_equal(flow_authenticate(&fx->env, fx->st, res.credential, &auth, &e), AM_OK);
	fx->env.clock.now += fx->cfg.ttl_access_token;
	assert_int_equal(flow_authenticate(&fx->env, fx->st, res.credential, &auth, &e),
			 AM_E_INVALID_TOKEN);
}

static void
a_new_challenge_replaces_the_code(void **state)
{
	struct fixture *fx = *state;
	struct challenge_result a, b;
	struct claim_start_result started;
	struct reg_result res;
	char token[128], who[STORE_ID_LEN];
	struct am_error e = {0};

	fx_register_anonymous(fx);
	assert_int_equal(flow_claim_start(&fx->env, fx->st, NULL, fx->reg.claim_token,
					  "r@example.test", &started, &e),
			 AM_OK);
	last_link_token(fx, token, sizeof(token));
	/* Draw until the two codes differ (1 in a million they do not). */
	do {
		assert_int_equal(flow_claim_challenge(&fx->env, fx->st, token, &a, &e), AM_OK);
		assert_int_equal(flow_claim_challenge(&fx->env, fx->st, token, &b, &e), AM_OK);
	} while (strcmp(a.otp, b.otp) == 0);
	assert_int_equal(fx_complete(fx, a.otp, &res, who), AM_E_OTP_INVALID);
	assert_int_equal(fx_complete(fx, b.otp, &res, who), AM_OK);
}

static void
the_sweep_expires_and_revokes_only_what_is_due(void **state)
{
	struct fixture *fx = *state;
	struct reg_result first;
	char otp[AM_OTP_DIGITS + 1], who[STORE_ID_LEN];
	struct reg_result res;
	struct store_auth auth;
	struct store_reg reg;
	struct am_error e = {0};
	int n = -1;

	fx_register_anonymous(fx);
	first = fx->reg;
	fx_register_anonymous(fx);
	fx_code(fx, "s@example.test", otp);
	assert_int_equal(fx_complete(fx, otp, &res, who), AM_OK);
	assert_int_equal(flow_sweep(&fx->env, fx->st, &n, &e), AM_OK);
	assert_int_equal(n, 0);
	fx->env.clock.now += fx->cfg.ttl_registration;
	assert_int_equal(flow_sweep(&fx->env, fx->st, &n, &e), AM_OK);
	assert_int_equal(n, 1);
	assert_int_equal(store_reg_by_id(fx->st, first.registration_id, &reg, &e), AM_OK);
	assert_int_equal(reg.status, REG_EXPIRED);
	assert_int_equal(flow_authenticate(&fx->env, fx->st, first.credential, &auth, &e),
			 AM_E_INVALID_TOKEN);
	assert_true(fx_key_works(fx, &auth)); /* the claimed one */
	assert_int_equal(flow_sweep(&fx->env, fx->st, &n, &e), AM_OK);
	assert_int_equal(n, 0);
}

static void
without_jit_only_existing_users_can_claim(void **state)
{
	struct fixture *fx = *state;
	struct store_user u = {0};
	char otp[AM_OTP_DIGITS + 1], who[STORE_ID_LEN];
	struct reg_result res;
	struct am_error e = {0};

	fx->cfg.flow_jit = false;
	fx_register_anonymous(fx);
	fx_code(fx, "nobody@example.test", otp);
	assert_int_equal(fx_complete(fx, otp, &res, who), AM_E_INVALID_REQUEST);
	snprintf(u.id, sizeof(u.id), "usr_known");
	snprintf(u.email, sizeof(u.email), "known@example.test");
	assert_int_equal(store_user_insert(fx->st, &u, &e), AM_OK);
	fx_register_anonymous(fx);
	fx_code(fx, "known@example.test", otp);
	assert_int_equal(fx_complete(fx, otp, &res, who), AM_OK);
	assert_string_equal(who, "usr_known");
}

static void
disabled_flows_and_credential_types_are_refused(void **state)
{
	struct fixture *fx = *state;
	struct reg_result res;
	struct am_error e = {0};

	assert_int_equal(flow_register_anonymous(&fx->env, fx->st, NULL, "access_token", &res, &e),
			 AM_E_UNSUPPORTED_CREDENTIAL_TYPE);
	fx->cfg.flow_anonymous = false;
	assert_int_equal(flow_register_anonymous(&fx->env, fx->st, NULL, NULL, &res, &e),
			 AM_E_ANONYMOUS_NOT_ENABLED);
	fx->cfg.flow_verified_email = false;
	assert_int_equal(flow_register_email(&fx->env, fx->st, NULL, "a@b.test", NULL, &res, &e),
			 AM_E_VERIFIED_EMAIL_NOT_ENABLED);
}

static void
an_operator_block_is_durable_until_lifted_and_recorded(void **state)
{
	struct fixture *fx = *state;
	struct store_auth auth;
	struct am_error e = {0};
	enum block_kind kind;
	bool created = false;
	int count = 0;

	fx_register_anonymous(fx);
	assert_int_equal(flow_revoke_block(&fx->env, fx->st, BLOCK_REGISTRATION,
					   fx->reg.registration_id, NULL, "op", &count, &created,
					   &e),
			 AM_OK);
	assert_true(created);
	assert_int_equal(count, 1);
	assert_false(fx_key_works(fx, &auth));
	assert_int_equal(
		store_block_find(fx->st, NULL, NULL, NULL, fx->reg.registration_id, &kind, &e),
		AM_OK);
	assert_int_equal(kind, BLOCK_REGISTRATION);
	/* Again: one block, nothing left to revoke. */
	assert_int_equal(flow_revoke_block(&fx->env, fx->st, BLOCK_REGISTRATION,
					   fx->reg.registration_id, NULL, "op", &count, &created,
					   &e),
			 AM_OK);
	assert_false(created);
	assert_int_equal(count, 0);
	/* A subject block covers that subject of that issuer only. */
	assert_int_equal(flow_revoke_block(&fx->env, fx->st, BLOCK_SUBJECT, "https://p.test", "s1",
					   "op", &count, &created, &e),
			 AM_OK);
	assert_int_equal(store_block_find(fx->st, "https://p.test", "s1", NULL, NULL, &kind, &e),
			 AM_OK);
	assert_int_equal(kind, BLOCK_SUBJECT);
	assert_int_equal(
		store_block_find(fx->st, "https://p.test", "s2", "usr_x", "reg_x", &kind, &e),
		AM_E_NOT_FOUND);
	assert_int_equal(store_block_find(fx->st, "https://q.test", "s1", NULL, NULL, &kind, &e),
			 AM_E_NOT_FOUND);
	assert_int_equal(flow_revoke_block(&fx->env, fx->st, BLOCK_SUBJECT, "https://p.test", NULL,
					   "op", &count, &created, &e),
			 AM_E_INVALID_REQUEST);
	/* Lifting: once, and it revives nothing by itself. */
	assert_int_equal(flow_unblock(&fx->env, fx->st, BLOCK_REGISTRATION, fx->reg.registration_id,
				      NULL, "op", &e),
			 AM_OK);
	assert_int_equal(flow_unblock(&fx->env, fx->st, BLOCK_REGISTRATION, fx->reg.registration_id,
				      NULL, "op", &e),
			 AM_E_NOT_FOUND);
	assert_int_equal(
		store_block_find(fx->st, NULL, NULL, NULL, fx->reg.registration_id, &kind, &e),
		AM_E_NOT_FOUND);
	assert_false(fx_key_works(fx, &auth));
}

static void
time_sums_with_a_token_value_saturate_instead_of_overflowing(void **state)
{
	(void)state;
	assert_true(am_time_add(INT64_MAX, 60) == INT64_MAX);
	assert_true(am_time_add(INT64_MAX - 30, 60) == INT64_MAX);
	assert_true(am_time_add(INT64_MIN, -1) == INT64_MIN);
	assert_true(am_time_add(1000, 60) == 1060);
	assert_true(am_time_add(1000, -60) == 940);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(claim_is_refused_after_the_window),
		T(anonymous_claim_upgrades_the_same_key),
		T(email_registration_gets_a_fresh_access_token_with_expiry),
		T(a_new_challenge_replaces_the_code),
		T(the_sweep_expires_and_revokes_only_what_is_due),
		T(without_jit_only_existing_users_can_claim),
		T(disabled_flows_and_credential_types_are_refused),
		T(an_operator_block_is_durable_until_lifted_and_recorded),
		cmocka_unit_test(time_sums_with_a_token_value_saturate_instead_of_overflowing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
