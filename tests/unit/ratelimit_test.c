/* flows/ratelimit: the sliding-window counter in a fixed-size table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "flows/ratelimit.h"

static void
hits_up_to_the_limit_pass_and_the_next_is_refused_with_a_wait(void **state)
{
	struct ratelimit *rl = ratelimit_new(100);
	int64_t wait;

	(void)state;
	for (int i = 0; i < 3; i++)
		assert_true(ratelimit_hit(rl, "k", 3, 1000, &wait));
	assert_false(ratelimit_hit(rl, "k", 3, 1010, &wait));
	assert_int_equal(wait, 90); /* the current window alone is full */
	/* Another key has its own budget. */
	assert_true(ratelimit_hit(rl, "other", 3, 1010, &wait));
	ratelimit_free(rl);
}

static void
the_previous_window_still_counts_while_it_overlaps(void **state)
{
	struct ratelimit *rl = ratelimit_new(100);
	int64_t wait;

	(void)state;
	for (int i = 0; i < 4; i++)
		assert_true(ratelimit_hit(rl, "k", 4, 1050, &wait));
	/* 10 s into the next window, 90% of the previous 4 still weigh 3.6:
	 * one more fits, a second does not. */
	assert_true(ratelimit_hit(rl, "k", 4, 1110, &wait));
	assert_false(ratelimit_hit(rl, "k", 4, 1110, &wait));
	assert_int_equal(wait, 16); /* 4 * (100 - 26) + 100 < 400 at 26 s in */
	assert_false(ratelimit_hit(rl, "k", 4, 1110 + wait - 1, &wait));
	assert_true(ratelimit_hit(rl, "k", 4, 1126, &wait));
	/* Two windows later nothing is left of it. */
	for (int i = 0; i < 4; i++)
		assert_true(ratelimit_hit(rl, "k", 4, 1300, &wait));
	ratelimit_free(rl);
}

static void
a_zero_limit_means_no_limit(void **state)
{
	struct ratelimit *rl = ratelimit_new(10);
	int64_t wait;

	(void)state;
	for (int i = 0; i < 1000; i++)
		assert_true(ratelimit_hit(rl, "k", 0, 5, &wait));
	ratelimit_free(rl);
}

#define FLOOD 200000

static void
flood_key(char *out, size_t cap, unsigned i)
{
	/* Distinct IPv6 sources, as flow_rate_check spells its per-IP keys. */
	snprintf(out, cap, "identity|ip|2001:db8:%x:%x::%x", i >> 16, i & 0xffff, i * 7919u);
}

static void
two_hundred_thousand_sources_keep_memory_fixed_and_each_hit_bounded(void **state)
{
	struct ratelimit *rl = ratelimit_new(3600);
	struct ratelimit_stats before, after, a, b;
	uint64_t worst = 0;
	int64_t wait;
	char key[96];

	(void)state;
	assert_non_null(rl);
	ratelimit_stats(rl, &before);
	assert_int_equal(before.used, 0);
	for (unsigned i = 0; i < FLOOD; i++) {
		bool sample = i % 1000 == 999; /* a full table is the worst case */

		flood_key(key, sizeof(key), i);
		if (sample)
			ratelimit_stats(rl, &a);
		assert_true(ratelimit_hit(rl, key, 5, 1000, &wait));
		if (sample) {
			ratelimit_stats(rl, &b);
			assert_int_equal(b.hits - a.hits, 1);
			if (b.probes - a.probes > worst)
				worst = b.probes - a.probes;
		}
	}
	ratelimit_stats(rl, &after);
	/* Memory: the table allocated at the start, nothing more. */
	assert_int_equal(after.bytes, before.bytes);
	assert_int_equal(after.slots, before.slots);
	assert_true(after.used <= after.slots);
	assert_true(after.bytes < 4 * 1024 * 1024);
	/* Work: no hit looked at more than one set's slots. */
	assert_int_equal(after.hits, FLOOD);
	assert_true(after.probes <= (uint64_t)FLOOD * RATELIMIT_WAYS);
	assert_true(worst >= 1);
	assert_true(worst <= RATELIMIT_WAYS);
	/* More keys than slots: the least active were dropped (fail open). */
	assert_true(after.evictions >= FLOOD - after.slots);
	ratelimit_free(rl);
}

static void
a_key_at_its_limit_stays_limited_through_a_flood_of_new_keys(void **state)
{
	struct ratelimit *rl = ratelimit_new(3600);
	int64_t wait;
	char key[96];

	(void)state;
	for (int i = 0; i < 3; i++) {
		assert_true(ratelimit_hit(rl, "identity|ip|192.0.2.1", 3, 1000, &wait));
		assert_true(ratelimit_hit(rl, "identity|global", 1000000, 1000, &wait));
	}
	assert_false(ratelimit_hit(rl, "identity|ip|192.0.2.1", 3, 1000, &wait));
	/* One hit per new source cannot push out a key that weighs more. */
	for (unsigned i = 0; i < FLOOD; i++) {
		flood_key(key, sizeof(key), i);
		assert_true(ratelimit_hit(rl, key, 3, 1001, &wait));
		assert_true(ratelimit_hit(rl, "identity|global", 1000000, 1001, &wait));
	}
	assert_false(ratelimit_hit(rl, "identity|ip|192.0.2.1", 3, 1002, &wait));
	assert_true(wait > 0);
	/* The global key kept its count too: 3 + FLOOD hits of 1000000. */
	assert_false(ratelimit_hit(rl, "identity|global", 3 + FLOOD, 1002, &wait));
	assert_true(ratelimit_hit(rl, "identity|global", 4 + FLOOD, 1002, &wait));
	ratelimit_free(rl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hits_up_to_the_limit_pass_and_the_next_is_refused_with_a_wait),
		cmocka_unit_test(the_previous_window_still_counts_while_it_overlaps),
		cmocka_unit_test(a_zero_limit_means_no_limit),
		cmocka_unit_test(
			two_hundred_thousand_sources_keep_memory_fixed_and_each_hit_bounded),
		cmocka_unit_test(a_key_at_its_limit_stays_limited_through_a_flood_of_new_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
