/* store/: migrations, lookups by hash, tenant isolation, state transitions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

static struct store *
open_memory(void)
{
	struct store *st = NULL;
	struct am_error e = {0};

	assert_int_equal(store_open("sqlite::memory:", "default", &st, &e), AM_OK);
	return st;
}

static struct store_reg
reg_fixture(const char *id, const char *claim_token)
{
	struct store_reg r;

	memset(&r, 0, sizeof(r));
	snprintf(r.id, sizeof(r.id), "%s", id);
	r.kind = REG_ANONYMOUS;
	r.status = REG_UNCLAIMED;
	am_sha256_str(claim_token, r.claim_hash);
	r.credential_type = CRED_API_KEY;
	r.created_at = 1000;
	r.expires_at = 2000;
	return r;
}

static struct store_cred
cred_fixture(const char *id, const char *reg_id, const char *secret)
{
	struct store_cred c;

	memset(&c, 0, sizeof(c));
	snprintf(c.id, sizeof(c.id), "%s", id);
	am_sha256_str(secret, c.hash);
	c.type = CRED_API_KEY;
	snprintf(c.scopes, sizeof(c.scopes), "api.read");
	snprintf(c.source, sizeof(c.source), "anonymous");
	snprintf(c.registration_id, sizeof(c.registration_id), "%s", reg_id);
	c.created_at = 1000;
	return c;
}

/* The lookup key of a presented token: id "" for the older form. */
static struct store_secret
key(const char *id, const char *token)
{
	struct store_secret k;

	snprintf(k.id, sizeof(k.id), "%s", id);
	am_sha256_str(token, k.hash);
	return k;
}

static void
migrations_bring_a_new_store_to_the_latest_version(void **state)
{
	struct store *st = open_memory();

	(void)state;
	assert_true(store_schema_version(st) >= 1);
	store_close(st);
}

static void
credentials_are_found_by_the_hash_of_the_secret_only(void **state)
{
	struct store *st = open_memory();
	struct store_reg r = reg_fixture("reg_1", "clm_a");
	struct store_cred c = cred_fixture("crd_1", "reg_1", "sk_secret");
	struct store_auth auth;
	struct am_error e = {0};
	struct store_secret k;

	(void)state;
	assert_int_equal(store_reg_insert(st, &r, &e), AM_OK);
	assert_int_equal(store_cred_insert(st, &c, &e), AM_OK);
	k = key("", "sk_secret");
	assert_int_equal(store_cred_auth(st, &k, 1500, &auth, &e), AM_OK);
	assert_string_equal(auth.cred.id, "crd_1");
	assert_false(auth.cred.by_id);
	assert_int_equal(auth.reg_status, REG_UNCLAIMED);
	assert_int_equal(auth.reg_expires_at, 2000);
	k = key("", "sk_other");
	assert_int_equal(store_cred_auth(st, &k, 1500, &auth, &e), AM_E_NOT_FOUND);
	store_close(st);
}

/* Migration 0018: a token that names its row is read by primary key and
 * must carry the row's hash; the hash alone (the older form's lookup)
 * does not reach such a row, whose hash is in no index. */
static void
a_token_that_names_its_row_is_found_by_id_and_hash_only(void **state)
{
	struct store *st = open_memory();
	struct store_reg r = reg_fixture("reg_1", "clm_1_a");
	struct store_reg bare = reg_fixture("reg_2", "unused");
	struct store_cred c = cred_fixture("crd_1", "reg_1", "sk_1_b");
	struct store_reg found;
	struct store_auth auth;
	struct am_error e = {0};
	struct store_secret k;

	(void)state;
	r.claim_by_id = true;
	c.by_id = true;
	memset(bare.claim_hash, 0, sizeof(bare.claim_hash)); /* no claim token at all */
	assert_int_equal(store_reg_insert(st, &r, &e), AM_OK);
	assert_int_equal(store_reg_insert(st, &bare, &e), AM_OK);
	assert_int_equal(store_cred_insert(st, &c, &e), AM_OK);

	k = key("crd_1", "sk_1_b");
	assert_int_equal(store_cred_auth(st, &k, 1500, &auth, &e), AM_OK);
	assert_string_equal(auth.cred.id, "crd_1");
	assert_true(auth.cred.by_id);
	k = key("crd_1", "sk_1_c"); /* the right row, the wrong secret */
	assert_int_equal(store_cred_auth(st, &k, 1500, &auth, &e), AM_E_NOT_FOUND);
	k = key("crd_9", "sk_1_b"); /* the right secret, another row */
	assert_int_equal(store_cred_auth(st, &k, 1500, &auth, &e), AM_E_NOT_FOUND);
	k = key("", "sk_1_b");
	assert_int_equal(store_cred_auth(st, &k, 1500, &auth, &e), AM_E_NOT_FOUND);

	k = key("reg_1", "clm_1_a");
	assert_int_equal(store_reg_by_claim(st, &k, &found, &e), AM_OK);
	assert_string_equal(found.id, "reg_1");
	k = key("reg_1", "clm_1_x");
	assert_int_equal(store_reg_by_claim(st, &k, &found, &e), AM_E_NOT_FOUND);
	assert_string_equal(found.id, ""); /* nothing of the row is handed back */
	k = key("", "clm_1_a");
	assert_int_equal(store_reg_by_claim(st, &k, &found, &e), AM_E_NOT_FOUND);
	/* A row without a claim token matches no key, not even all zeros. */
	k = key("reg_2", "x");
	memset(k.hash, 0, sizeof(k.hash));
	assert_int_equal(store_reg_by_claim(st, &k, &found, &e), AM_E_NOT_FOUND);
	store_close(st);
}

static void
revoked_and_expired_credentials_are_not_found(void **state)
{
	struct store *st = open_memory();
	struct store_reg r = reg_fixture("reg_1", "clm_a");
	struct store_cred c = cred_fixture("crd_1", "reg_1", "sk_a");
	struct store_cred t = cred_fixture("crd_2", "reg_1", "at_b");
	struct store_auth auth;
	struct am_error e = {0};
	struct store_secret k;
	int n = 0;

	(void)state;
	t.type = CRED_ACCESS_TOKEN;
	t.expires_at = 1200;
	t.by_id = true; /* both forms stop at revocation and expiry */
	assert_int_equal(store_reg_insert(st, &r, &e), AM_OK);
	assert_int_equal(store_cred_insert(st, &c, &e), AM_OK);
	assert_int_equal(store_cred_insert(st, &t, &e), AM_OK);
	k = key("crd_2", "at_b");
	assert_int_equal(store_cred_auth(st, &k, 1199, &auth, &e), AM_OK);
	assert_int_equal(store_cred_auth(st, &k, 1200, &auth, &e), AM_E_NOT_FOUND);
	k = key("", "sk_a");
	assert_int_equal(store_cred_auth(st, &k, 1299, &auth, &e), AM_OK);
	assert_int_equal(store_cred_revoke_reg(st, "reg_1", 1300, &n, &e), AM_OK);
	assert_int_equal(n, 2);
	assert_int_equal(store_cred_auth(st, &k, 1301, &auth, &e), AM_E_NOT_FOUND);
	k = key("crd_2", "at_b"); /* revoked before its expiry */
	assert_int_equal(store_cred_auth(st, &k, 1150, &auth, &e), AM_E_NOT_FOUND);
	store_close(st);
}

static void
another_tenant_never_sees_a_row_even_with_the_same_hash(void **state)
{
	char path[] = "/tmp/authmd-store-test-XXXXXX";
	char url[64];
	struct store *a = NULL, *b = NULL;
	struct store_reg r = reg_fixture("reg_1", "clm_shared");
	struct store_cred c = cred_fixture("crd_1", "reg_1", "sk_shared");
	struct store_reg found;
	struct store_auth auth;
	struct am_error e = {0};
	struct store_secret k;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	snprintf(url, sizeof(url), "sqlite:%s", path);
	assert_int_equal(store_open(url, "acme", &a, &e), AM_OK);
	assert_int_equal(store_open(url, "globex", &b, &e), AM_OK);
	assert_int_equal(store_reg_insert(a, &r, &e), AM_OK);
	assert_int_equal(store_cred_insert(a, &c, &e), AM_OK);
	k = key("", "clm_shared");
	assert_int_equal(store_reg_by_claim(a, &k, &found, &e), AM_OK);
	assert_int_equal(store_reg_by_claim(b, &k, &found, &e), AM_E_NOT_FOUND);
	k = key("reg_1", "clm_shared"); /* by id as well */
	assert_int_equal(store_reg_by_claim(a, &k, &found, &e), AM_OK);
	assert_int_equal(store_reg_by_claim(b, &k, &found, &e), AM_E_NOT_FOUND);
	k = key("", "sk_shared");
	assert_int_equal(store_cred_auth(b, &k, 1500, &auth, &e), AM_E_NOT_FOUND);
	k = key("crd_1", "sk_shared");
	assert_int_equal(store_cred_auth(b, &k, 1500, &auth, &e), AM_E_NOT_FOUND);
	/* The same ids and hashes can exist in the other tenant. */
	assert_int_equal(store_reg_insert(b, &r, &e), AM_OK);
	assert_int_equal(store_cred_insert(b, &c, &e), AM_OK);
	store_close(a);
	store_close(b);
	unlink(path);
}

/* store_cred_live with a subject, a registration or a user reads that
 * index: a logout's revocation once walked every credential of the tenant
 * on the store writer. Counted in SQLite VM steps, not timed. */
static void
revocation_lookups_take_an_index_not_a_walk(void **state)
{
	enum { ROWS = 3000, FEW = 400 };
	struct store *st = open_memory();
	struct store_cred_ref refs[8];
	struct am_error e = {0};
	char id[32], reg[32], sub[32], user[32];
	struct {
		struct store_cred_filter f;
		bool few;
	} cases[] = {
		{{.iss = "https://p.example", .sub = "u1234"}, true},
		{{.iss = "https://p.example", .sub = "u1234", .aud = "https://s.example"}, true},
		{{.registration_id = "reg_1234"}, true},
		{{.user_id = "usr_1234"}, true},
		{{.aud = "https://nobody.example"}, false}, /* no index: every row is read */
	};
	size_t n;

	(void)state;
	for (int i = 0; i < ROWS; i++) {
		struct store_cred c;

		snprintf(id, sizeof(id), "crd_%d", i);
		snprintf(reg, sizeof(reg), "reg_%d", i);
		snprintf(sub, sizeof(sub), "u%d", i);
		snprintf(user, sizeof(user), "usr_%d", i);
		c = cred_fixture(id, reg, id);
		snprintf(c.iss, sizeof(c.iss), "https://p.example");
		snprintf(c.sub, sizeof(c.sub), "%s", sub);
		snprintf(c.aud, sizeof(c.aud), "https://s.example");
		snprintf(c.user_id, sizeof(c.user_id), "%s", user);
		assert_int_equal(store_cred_insert(st, &c, &e), AM_OK);
	}
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		int64_t before = store_vm_steps(st), steps;

		assert_int_equal(store_cred_live(st, &cases[k].f, refs, 8, &n, &e), AM_OK);
		steps = store_vm_steps(st) - before;
		if (cases[k].few) {
			assert_int_equal(n, 1);
			assert_string_equal(refs[0].id, "crd_1234");
			assert_in_range(steps, 1, FEW);
		} else {
			assert_int_equal(n, 0);
			assert_true(steps > ROWS); /* the measure tells the two apart */
		}
	}
	store_close(st);
}

/* The sweeper runs its purge on the store writer every pass, with every
 * queued write behind it: with nothing due it must read next to nothing,
 * however many replay records are still live. Before migration 0019 the
 * purge walked the tenant's records by primary key (every record). */
static void
the_replay_purge_reads_only_what_is_due(void **state)
{
	enum { ROWS = 3000, DUE = 7, FEW = 400 };
	struct store *st = open_memory();
	struct am_error e = {0};
	char jti[32];
	bool fresh;
	int n = -1;
	int64_t before, steps;

	(void)state;
	for (int i = 0; i < ROWS; i++) {
		snprintf(jti, sizeof(jti), "jti-%d", i);
		/* DUE of them expired at 900, the rest live until 5000 */
		assert_int_equal(store_jti_record(st, "https://p.example", jti,
						  i < DUE ? 900 : 5000, &fresh, &e),
				 AM_OK);
		assert_true(fresh);
	}
	before = store_vm_steps(st);
	assert_int_equal(store_jti_purge(st, 1000, &n, &e), AM_OK);
	steps = store_vm_steps(st) - before;
	assert_int_equal(n, DUE);
	assert_in_range(steps, 1, FEW);
	before = store_vm_steps(st);
	assert_int_equal(store_jti_purge(st, 1000, &n, &e), AM_OK);
	assert_int_equal(n, 0);
	assert_in_range(store_vm_steps(st) - before, 1, FEW);
	/* the live ones are still replay-checked */
	assert_int_equal(store_jti_record(st, "https://p.example", "jti-100", 5000, &fresh, &e),
			 AM_OK);
	assert_false(fresh);
	assert_int_equal(store_jti_record(st, "https://p.example", "jti-1", 5000, &fresh, &e),
			 AM_OK);
	assert_true(fresh); /* purged: its window had passed */
	store_close(st);
}

/* Once per ID-JAG registration, on the store writer: the first delegation
 * of a subject comes off the index in created_at order, with no sort
 * (before migration 0020 every lookup built a temporary b-tree). */
static void
the_subjects_first_delegation_needs_no_sort(void **state)
{
	struct store *st = open_memory();
	struct am_error e = {0};
	char user[STORE_ID_LEN];
	int64_t sorts;

	(void)state;
	/* three audiences of one subject, the oldest inserted last */
	assert_int_equal(store_delegation_insert(st, "https://p.example", "s1", "https://b.example",
						 "usr_b", "reg_b", 300, &e),
			 AM_OK);
	assert_int_equal(store_delegation_insert(st, "https://p.example", "s1", "https://c.example",
						 "usr_c", "reg_c", 200, &e),
			 AM_OK);
	assert_int_equal(store_delegation_insert(st, "https://p.example", "s1", "https://a.example",
						 "usr_a", "reg_a", 100, &e),
			 AM_OK);
	sorts = store_sorts(st);
	assert_int_equal(store_delegation_user(st, "https://p.example", "s1", user, &e), AM_OK);
	assert_string_equal(user, "usr_a");
	assert_int_equal(store_sorts(st) - sorts, 0);
	assert_int_equal(store_delegation_user(st, "https://p.example", "s2", user, &e),
			 AM_E_NOT_FOUND);
	store_close(st);
}

/* Every ID-JAG registration asks whether a block covers it, on the store
 * writer: an operator's thousands of blocks must not be read each time. */
static void
a_block_lookup_reads_its_four_keys_not_every_block(void **state)
{
	enum { BLOCKS = 2000, FEW = 200 };
	struct store *st = open_memory();
	struct am_error e = {0};
	enum block_kind kind;
	char user[32];
	bool created;
	int64_t before;

	(void)state;
	for (int i = 0; i < BLOCKS; i++) {
		snprintf(user, sizeof(user), "usr_%d", i);
		assert_int_equal(
			store_block_put(st, BLOCK_USER, user, NULL, "test", 100, &created, &e),
			AM_OK);
	}
	assert_int_equal(store_block_put(st, BLOCK_SUBJECT, "https://p.example", "s9", "test", 100,
					 &created, &e),
			 AM_OK);
	before = store_vm_steps(st);
	assert_int_equal(
		store_block_find(st, "https://p.example", "s1", "usr_x", "reg_x", &kind, &e),
		AM_E_NOT_FOUND);
	assert_in_range(store_vm_steps(st) - before, 1, FEW);
	before = store_vm_steps(st);
	assert_int_equal(
		store_block_find(st, "https://p.example", "s1", "usr_1500", "reg_x", &kind, &e),
		AM_OK);
	assert_int_equal(kind, BLOCK_USER);
	assert_in_range(store_vm_steps(st) - before, 1, FEW);
	assert_int_equal(store_block_find(st, "https://p.example", "s9", NULL, NULL, &kind, &e),
			 AM_OK);
	assert_int_equal(kind, BLOCK_SUBJECT);
	store_close(st);
}

static void
transitions_only_move_from_the_expected_state(void **state)
{
	struct store *st = open_memory();
	struct store_reg r = reg_fixture("reg_1", "clm_a");
	struct store_reg got;
	struct am_error e = {0};

	(void)state;
	assert_int_equal(store_reg_insert(st, &r, &e), AM_OK);
	assert_int_equal(store_reg_transition(st, "reg_1", REG_UNCLAIMED, REG_PENDING_CLAIM, &e),
			 AM_OK);
	assert_int_equal(store_reg_transition(st, "reg_1", REG_UNCLAIMED, REG_EXPIRED, &e),
			 AM_E_NOT_FOUND);
	assert_int_equal(store_reg_claim(st, "reg_1", "usr_1", 1500, &e), AM_OK);
	assert_int_equal(store_reg_claim(st, "reg_1", "usr_2", 1600, &e), AM_E_NOT_FOUND);
	assert_int_equal(store_reg_by_id(st, "reg_1", &got, &e), AM_OK);
	assert_int_equal(got.status, REG_CLAIMED);
	assert_string_equal(got.user_id, "usr_1");
	assert_int_equal(got.claimed_at, 1500);
	store_close(st);
}

static void
due_registrations_are_only_open_ones_past_their_window(void **state)
{
	struct store *st = open_memory();
	struct store_reg a = reg_fixture("reg_a", "clm_a"), b = reg_fixture("reg_b", "clm_b");
	struct store_reg c = reg_fixture("reg_c", "clm_c");
	char ids[10][STORE_ID_LEN];
	struct am_error e = {0};
	size_t n = 0;

	(void)state;
	b.expires_at = 3000;
	c.status = REG_CLAIMED;
	assert_int_equal(store_reg_insert(st, &a, &e), AM_OK);
	assert_int_equal(store_reg_insert(st, &b, &e), AM_OK);
	assert_int_equal(store_reg_insert(st, &c, &e), AM_OK);
	assert_int_equal(store_reg_due(st, 2000, ids, 10, &n, &e), AM_OK);
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], "reg_a");
	store_close(st);
}

static void
failed_codes_burn_the_otp_at_the_limit(void **state)
{
	struct store *st = open_memory();
	struct store_reg r = reg_fixture("reg_1", "clm_a");
	struct store_attempt a, got;
	struct am_error e = {0};
	uint8_t h[AM_HASH_LEN];

	(void)state;
	memset(&a, 0, sizeof(a));
	snprintf(a.id, sizeof(a.id), "cla_1");
	snprintf(a.registration_id, sizeof(a.registration_id), "reg_1");
	snprintf(a.email, sizeof(a.email), "a@b.test");
	am_sha256_str("cv_x", a.token_hash);
	a.status = ATTEMPT_OPEN;
	a.expires_at = 5000;
	assert_int_equal(store_reg_insert(st, &r, &e), AM_OK);
	assert_int_equal(store_attempt_insert(st, &a, &e), AM_OK);
	am_sha256_str("cla_1:123456", h);
	assert_int_equal(store_attempt_set_otp(st, "cla_1", true, h, 4000, &e), AM_OK);
	assert_int_equal(store_attempt_fail(st, "cla_1", 2, &e), AM_OK);
	assert_int_equal(store_attempt_by_token_hash(st, a.token_hash, &got, &e), AM_OK);
	assert_true(got.has_otp);
	assert_int_equal(got.otp_failures, 1);
	assert_int_equal(store_attempt_fail(st, "cla_1", 2, &e), AM_OK);
	assert_int_equal(store_attempt_open_for(st, "reg_1", &got, &e), AM_OK);
	assert_false(got.has_otp);
	assert_int_equal(got.otp_failures, 2);
	store_close(st);
}

static void
add_attempt(struct store *st, const char *id, const char *reg_id, const char *email, int64_t at)
{
	struct store_attempt a;
	struct am_error e = {0};

	memset(&a, 0, sizeof(a));
	snprintf(a.id, sizeof(a.id), "%s", id);
	snprintf(a.registration_id, sizeof(a.registration_id), "%s", reg_id);
	snprintf(a.email, sizeof(a.email), "%s", email);
	am_sha256_str(id, a.token_hash);
	a.status = ATTEMPT_OPEN;
	a.created_at = at;
	a.expires_at = at + 1000;
	assert_int_equal(store_attempt_insert(st, &a, &e), AM_OK);
}

static void
mail_counts_follow_scope_window_and_cap(void **state)
{
	struct store *st = open_memory();
	struct store_reg r1 = reg_fixture("reg_1", "clm_a"), r2 = reg_fixture("reg_2", "clm_b");
	struct am_error e = {0};
	int64_t n = -1, oldest = -1;

	(void)state;
	assert_int_equal(store_reg_insert(st, &r1, &e), AM_OK);
	assert_int_equal(store_reg_insert(st, &r2, &e), AM_OK);
	add_attempt(st, "cla_1", "reg_1", "a@b.test", 100);
	add_attempt(st, "cla_2", "reg_1", "c@d.test", 200);
	add_attempt(st, "cla_3", "reg_2", "a@b.test", 300);
	add_attempt(st, "cla_4", "reg_2", "a@b.test", 400);
	/* Per registration: every attempt, whatever its age. */
	assert_int_equal(
		store_attempt_count(st, STORE_MAIL_REGISTRATION, "reg_1", 0, 10, &n, &oldest, &e),
		AM_OK);
	assert_int_equal(n, 2);
	/* Per address: only after `since`, with the oldest counted. */
	assert_int_equal(
		store_attempt_count(st, STORE_MAIL_ADDRESS, "a@b.test", 150, 10, &n, &oldest, &e),
		AM_OK);
	assert_int_equal(n, 2);
	assert_int_equal(oldest, 300);
	/* In all, stopping at the cap; the oldest is still the oldest. */
	assert_int_equal(store_attempt_count(st, STORE_MAIL_ALL, NULL, 0, 3, &n, &oldest, &e),
			 AM_OK);
	assert_int_equal(n, 3);
	assert_int_equal(oldest, 100);
	/* A deleted (never sent) attempt counts no more. */
	assert_int_equal(store_attempt_delete(st, "cla_4", &e), AM_OK);
	assert_int_equal(store_attempt_delete(st, "cla_4", &e), AM_E_NOT_FOUND);
	assert_int_equal(
		store_attempt_count(st, STORE_MAIL_REGISTRATION, "reg_2", 0, 10, &n, &oldest, &e),
		AM_OK);
	assert_int_equal(n, 1);
	store_close(st);
}

/* ---- scale-out (issue 11) ---- */

static void
shared_rate_counters_admit_up_to_the_limit_and_do_not_count_refusals(void **state)
{
	struct store *st = open_memory();
	struct am_error e = {0};
	int64_t retry = 0;
	bool ok = false;

	(void)state;
	/* window 60 s starting at 6000: three allowed, then refused */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(store_rate_hit(st, "ip|a", 60, 3, 6000 + i, &ok, &retry, &e),
				 AM_OK);
		assert_true(ok);
	}
	for (int i = 0; i < 5; i++) {
		assert_int_equal(store_rate_hit(st, "ip|a", 60, 3, 6010, &ok, &retry, &e), AM_OK);
		assert_false(ok);
		assert_int_equal(retry, 50); /* the current window alone is full */
	}
	/* another key has its own count */
	assert_int_equal(store_rate_hit(st, "ip|b", 60, 3, 6010, &ok, &retry, &e), AM_OK);
	assert_true(ok);
	/* next window, half over: the previous three weigh 1.5, so two more
	 * fit (1.5 + 1 < 3) and a third does not (1.5 + 2 >= 3); had the five
	 * refusals counted (8 weighing 4), nothing would fit */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_rate_hit(st, "ip|a", 60, 3, 6090, &ok, &retry, &e), AM_OK);
		assert_true(ok);
	}
	assert_int_equal(store_rate_hit(st, "ip|a", 60, 3, 6090, &ok, &retry, &e), AM_OK);
	assert_false(ok);
	assert_true(retry > 0 && retry <= 30);
	/* two windows later nothing is left of it */
	assert_int_equal(store_rate_hit(st, "ip|a", 60, 1, 6200, &ok, &retry, &e), AM_OK);
	assert_true(ok);
	store_close(st);
}

static void
old_rate_counters_are_purged(void **state)
{
	struct store *st = open_memory();
	struct am_error e = {0};
	int64_t retry = 0;
	bool ok = false;
	int n = -1;

	(void)state;
	assert_int_equal(store_rate_hit(st, "k1", 60, 5, 600, &ok, &retry, &e), AM_OK);
	assert_int_equal(store_rate_hit(st, "k2", 60, 5, 700, &ok, &retry, &e), AM_OK);
	assert_int_equal(store_rate_purge(st, 660, &n, &e), AM_OK);
	assert_int_equal(n, 1); /* the window of 600, not the one of 660 */
	assert_int_equal(store_rate_purge(st, 660, &n, &e), AM_OK);
	assert_int_equal(n, 0);
	store_close(st);
}

static void
sqlite_is_not_shared_and_its_lock_is_always_granted(void **state)
{
	struct store *st = open_memory();
	struct am_error e = {0};
	bool got = false;

	(void)state;
	assert_false(store_is_shared(st));
	assert_int_equal(store_try_lock(st, "sweep", &got, &e), AM_OK);
	assert_true(got);
	store_unlock(st, "sweep");
	store_close(st);
}

static void
store_urls_are_checked_and_shown_without_their_password(void **state)
{
	char why[256], out[512];

	(void)state;
	assert_true(store_url_check("sqlite:var/a.db", why, sizeof(why)));
	assert_true(store_url_check("postgresql://u@127.0.0.1:5432/db?sslmode=require", why,
				    sizeof(why)));
	assert_true(store_url_check("postgres://u@h/db", why, sizeof(why)));
	assert_false(store_url_check("mysql://u@h/db", why, sizeof(why)));
	assert_false(store_url_check("sqlite:", why, sizeof(why)));
	assert_false(store_url_check("postgresql://u@h/db?no_such_parameter=1", why, sizeof(why)));
	assert_non_null(strstr(why, "PostgreSQL"));

	store_url_redact("postgresql://ann:s3cret@db.example:5432/authmd?sslmode=verify-full", out,
			 sizeof(out));
	assert_string_equal(out, "postgresql://ann:***@db.example:5432/authmd?sslmode=verify-full");
	store_url_redact("postgres://ann@h/db?password=s3cret&sslmode=require", out, sizeof(out));
	assert_string_equal(out, "postgres://ann@h/db?password=***&sslmode=require");
	assert_null(strstr(out, "s3cret"));
	store_url_redact("sqlite:var/a.db", out, sizeof(out));
	assert_string_equal(out, "sqlite:var/a.db");
}

static void
a_refresh_token_is_spent_once_and_its_family_revoked_whole(void **state)
{
	struct store *st = open_memory();
	struct store_refresh rt;
	struct am_error e = {0};
	uint8_t h1[AM_HASH_LEN], h2[AM_HASH_LEN], other[AM_HASH_LEN];
	int n = -1;

	(void)state;
	am_sha256_str("rt_one", h1);
	am_sha256_str("rt_two", h2);
	am_sha256_str("rt_other", other);
	assert_int_equal(store_refresh_family_insert(st, "rtf_1", "reg_1", 3, 1000, &e), AM_OK);
	assert_int_equal(store_refresh_insert(st, h1, "rt_1", "rtf_1", 1000, 2000, &e), AM_OK);
	assert_int_equal(store_refresh_by_hash(st, h1, &rt, &e), AM_OK);
	assert_string_equal(rt.family_id, "rtf_1");
	assert_string_equal(rt.registration_id, "reg_1");
	assert_int_equal(rt.gen, 3);
	assert_int_equal(rt.expires_at, 2000);
	assert_int_equal(rt.spent_at, 0);
	assert_int_equal(rt.family_revoked_at, 0);
	assert_int_equal(store_refresh_by_hash(st, other, &rt, &e), AM_E_NOT_FOUND);
	/* the compare-and-set: one spender */
	assert_int_equal(store_refresh_spend(st, h1, 1500, &e), AM_OK);
	assert_int_equal(store_refresh_spend(st, h1, 1501, &e), AM_E_NOT_FOUND);
	assert_int_equal(store_refresh_by_hash(st, h1, &rt, &e), AM_OK);
	assert_int_equal(rt.spent_at, 1500);
	/* a revocation reaches every token of the family, the newest too */
	assert_int_equal(store_refresh_insert(st, h2, "rt_2", "rtf_1", 1500, 2500, &e), AM_OK);
	assert_int_equal(store_refresh_family_revoke(st, "rtf_1", 1600, "reuse", &e), AM_OK);
	assert_int_equal(store_refresh_by_hash(st, h2, &rt, &e), AM_OK);
	assert_int_equal(rt.family_revoked_at, 1600);
	assert_int_equal(rt.spent_at, 0);
	/* by registration: only live families count */
	assert_int_equal(store_refresh_family_insert(st, "rtf_2", "reg_1", 3, 1700, &e), AM_OK);
	assert_int_equal(store_refresh_revoke_reg(st, "reg_1", 1800, "registration", &n, &e),
			 AM_OK);
	assert_int_equal(n, 1);
	store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(migrations_bring_a_new_store_to_the_latest_version),
		cmocka_unit_test(credentials_are_found_by_the_hash_of_the_secret_only),
		cmocka_unit_test(a_token_that_names_its_row_is_found_by_id_and_hash_only),
		cmocka_unit_test(revoked_and_expired_credentials_are_not_found),
		cmocka_unit_test(another_tenant_never_sees_a_row_even_with_the_same_hash),
		cmocka_unit_test(revocation_lookups_take_an_index_not_a_walk),
		cmocka_unit_test(the_replay_purge_reads_only_what_is_due),
		cmocka_unit_test(the_subjects_first_delegation_needs_no_sort),
		cmocka_unit_test(a_block_lookup_reads_its_four_keys_not_every_block),
		cmocka_unit_test(transitions_only_move_from_the_expected_state),
		cmocka_unit_test(due_registrations_are_only_open_ones_past_their_window),
		cmocka_unit_test(failed_codes_burn_the_otp_at_the_limit),
		cmocka_unit_test(mail_counts_follow_scope_window_and_cap),
		cmocka_unit_test(
			shared_rate_counters_admit_up_to_the_limit_and_do_not_count_refusals),
		cmocka_unit_test(old_rate_counters_are_purged),
		cmocka_unit_test(sqlite_is_not_shared_and_its_lock_is_always_granted),
		cmocka_unit_test(store_urls_are_checked_and_shown_without_their_password),
		cmocka_unit_test(a_refresh_token_is_spent_once_and_its_family_revoked_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
