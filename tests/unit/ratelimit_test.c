/* flows/ratelimit: the sliding-window counter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hits_up_to_the_limit_pass_and_the_next_is_refused_with_a_wait),
		cmocka_unit_test(the_previous_window_still_counts_while_it_overlaps),
		cmocka_unit_test(a_zero_limit_means_no_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
