/* flows/access.c: the bearer check's cache of credential lookups. Two
 * store handles on one database file stand for this server and another
 * process (the revoke command, another replica). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/limits.h"
#include "flows/flows.h"

struct fixture {
	struct am_config cfg;
	struct flow_env env;
	char dir[64], url[128];
	struct store *st;    /* this server's */
	struct store *other; /* another process's */
	int n;
};

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct am_error e = {0};

	am_config_defaults(&fx->cfg);
	fx->env.cfg = &fx->cfg;
	fx->env.clock.now = 1000000;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/authmd-access-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->url, sizeof(fx->url), "sqlite:%s/a.db", fx->dir);
	assert_int_equal(store_open(fx->url, "default", &fx->st, &e), AM_OK);
	assert_int_equal(store_open(fx->url, "default", &fx->other, &e), AM_OK);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;
	char path[128];

	store_close(fx->st);
	store_close(fx->other);
	for (size_t i = 0; i < 3; i++) {
		static const char *const suffix[] = {"", "-wal", "-shm"};

		snprintf(path, sizeof(path), "%s/a.db%s", fx->dir, suffix[i]);
		unlink(path);
	}
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* A claimed registration with one credential `bearer`, written through st. */
static void
put_credential(struct fixture *fx, struct store *st, const char *bearer, int64_t expires_at,
	       char cred_id[STORE_ID_LEN])
{
	struct store_reg r = {0};
	struct store_cred c = {0};
	struct am_error e = {0};

	fx->n++;
	snprintf(r.id, sizeof(r.id), "reg_%d", fx->n);
	r.kind = REG_ANONYMOUS;
	r.status = REG_CLAIMED;
	r.claim_hash[0] = (uint8_t)fx->n;
	r.created_at = fx->env.clock.now;
	r.expires_at = fx->env.clock.now + 3600;
	assert_int_equal(store_reg_insert(st, &r, &e), AM_OK);
	snprintf(c.id, sizeof(c.id), "cred_%d", fx->n);
	am_sha256_str(bearer, c.hash);
	c.type = CRED_API_KEY;
	snprintf(c.scopes, sizeof(c.scopes), "api.read");
	snprintf(c.source, sizeof(c.source), "anonymous");
	snprintf(c.registration_id, sizeof(c.registration_id), "%s", r.id);
	c.created_at = fx->env.clock.now;
	c.expires_at = expires_at;
	assert_int_equal(store_cred_insert(st, &c, &e), AM_OK);
	snprintf(cred_id, STORE_ID_LEN, "%s", c.id);
}

static bool
works(struct fixture *fx, const char *bearer)
{
	struct store_auth auth;
	struct am_error e = {0};
	enum am_err rc = flow_authenticate(&fx->env, fx->st, bearer, &auth, &e);

	assert_true(rc == AM_OK || rc == AM_E_INVALID_TOKEN);
	return rc == AM_OK;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
a_revocation_through_this_process_is_refused_at_once(void **state)
{
	struct fixture *fx = *state;
	char id[STORE_ID_LEN];
	struct am_error e = {0};

	put_credential(fx, fx->st, "sk_revoked_here", 0, id);
	assert_true(works(fx, "sk_revoked_here")); /* now cached */
	assert_int_equal(store_cred_revoke(fx->st, id, fx->env.clock.now, &e), AM_OK);
	assert_false(works(fx, "sk_revoked_here"));
}

static void
a_revocation_by_another_process_is_seen_within_the_bound(void **state)
{
	struct fixture *fx = *state;
	char id[STORE_ID_LEN];
	struct am_error e = {0};
	int64_t revoked_at;
	bool still = true;

	put_credential(fx, fx->st, "sk_revoked_elsewhere", 0, id);
	assert_true(works(fx, "sk_revoked_elsewhere"));
	assert_int_equal(store_cred_revoke(fx->other, id, fx->env.clock.now, &e), AM_OK);
	revoked_at = mono_ms();
	/* Poll: it must stop working once the entry's life is over, however
	 * slowly this test runs. */
	while (still && mono_ms() - revoked_at <= AM_AUTH_CACHE_TTL_MS + 2000) {
		still = works(fx, "sk_revoked_elsewhere");
		if (still)
			usleep(10000);
	}
	assert_false(still);
}

static void
a_hit_is_served_without_the_store(void **state)
{
	struct fixture *fx = *state;
	struct store *empty = NULL;
	struct store_auth auth;
	struct am_error e = {0};
	char id[STORE_ID_LEN];
	int64_t cached_at;
	enum am_err rc;

	put_credential(fx, fx->st, "sk_cached", 0, id);
	assert_true(works(fx, "sk_cached"));
	cached_at = mono_ms();
	/* A store without the row: only the cache can answer yes. */
	assert_int_equal(store_open("sqlite::memory:", "default", &empty, &e), AM_OK);
	rc = flow_authenticate(&fx->env, empty, "sk_cached", &auth, &e);
	/* Unless the entry's life ran out meanwhile on a very slow machine. */
	assert_true(rc == AM_OK || mono_ms() - cached_at >= AM_AUTH_CACHE_TTL_MS);
	store_close(empty);
}

static void
a_cached_credential_stops_at_its_expiry(void **state)
{
	struct fixture *fx = *state;
	char id[STORE_ID_LEN];

	put_credential(fx, fx->st, "at_expiring", fx->env.clock.now + 60, id);
	assert_true(works(fx, "at_expiring"));
	fx->env.clock.now += 60;
	assert_false(works(fx, "at_expiring"));
}

static void
an_unknown_credential_is_looked_up_every_time(void **state)
{
	struct fixture *fx = *state;
	char id[STORE_ID_LEN];

	assert_false(works(fx, "sk_not_yet"));
	/* Created by another process right after: no refusal was cached. */
	put_credential(fx, fx->other, "sk_not_yet", 0, id);
	assert_true(works(fx, "sk_not_yet"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(a_revocation_through_this_process_is_refused_at_once),
		T(a_revocation_by_another_process_is_seen_within_the_bound),
		T(a_hit_is_served_without_the_store),
		T(a_cached_credential_stops_at_its_expiry),
		T(an_unknown_credential_is_looked_up_every_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
