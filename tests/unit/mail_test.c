/* mail/: address validation and message rendering (no header injection), and
 * no freed block of the mail path still holding the claim link's token. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/str.h"
#include "flows/internal.h"
#include "mail/mail.h"
#include "store/store.h"

/* Every block freed (or moved by realloc, which frees the old copy unwiped)
 * while `watched` is set is searched for it. Replacing the allocator's
 * entry points cannot coexist with ASan's, so there the test is skipped. */
static const char *watched;
static int unwiped;

#if defined(__SANITIZE_ADDRESS__)
#define WATCH_FREES 0
#else
#define WATCH_FREES 1
#include <malloc.h>

extern void __libc_free(void *p);
extern void *__libc_realloc(void *p, size_t n);

static void
inspect(void *p)
{
	if (watched != NULL && p != NULL &&
	    memmem(p, malloc_usable_size(p), watched, strlen(watched)) != NULL)
		unwiped++;
}

void
free(void *p)
{
	inspect(p);
	__libc_free(p);
}

void *
realloc(void *p, size_t n)
{
	inspect(p);
	return __libc_realloc(p, n);
}
#endif

static void
plain_addresses_are_accepted(void **state)
{
	(void)state;
	assert_true(mail_address_ok("user@example.com"));
	assert_true(mail_address_ok("first.last+tag@sub.example.co.uk"));
	assert_true(mail_address_ok("o'neil@example.test"));
}

static void
anything_that_could_reach_a_header_badly_is_refused(void **state)
{
	const char *bad[] = {
		"",
		"a",
		"a@b",
		"@b.test",
		"a@",
		"a@@b.test",
		"a b@c.test",
		"a@b.test\r\nBcc: x@y.z",
		"a@b.test\n",
		"\"q\"@b.test",
		"a..b@c.test",
		".a@b.test",
		"a.@b.test",
		"a@-b.test",
		"a@b-.test",
		"a@b..test",
		"<a@b.test>",
		"a@b.test,c@d.test",
		"a@b.test;",
		"a(comment)@b.test",
		"a@[127.0.0.1]",
		"a@b.test\t",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(mail_address_ok(bad[i]));
	{
		char local[80], domain[300];

		memset(local, 'a', 65);
		strcpy(local + 65, "@b.test");
		assert_false(mail_address_ok(local));
		strcpy(domain, "a@");
		memset(domain + 2, 'b', 250);
		strcpy(domain + 252, ".test");
		assert_false(mail_address_ok(domain));
	}
}

static void
normalising_lower_cases(void **state)
{
	char out[64];

	(void)state;
	assert_true(mail_address_normalize("Ann@Example.TEST", out, sizeof(out)));
	assert_string_equal(out, "ann@example.test");
	assert_false(mail_address_normalize("nope", out, sizeof(out)));
}

static void
rendered_message_has_crlf_lines_and_both_parts(void **state)
{
	struct mail_msg m = {"to@example.test", "Hello", "line one\nline two", "<p>hi</p>"};
	struct am_error e = {0};
	char *text = NULL;

	(void)state;
	assert_int_equal(mail_render("from@example.test", &m, &text, &e), AM_OK);
	assert_non_null(strstr(text, "From: <from@example.test>\r\n"));
	assert_non_null(strstr(text, "To: <to@example.test>\r\n"));
	assert_non_null(strstr(text, "Subject: Hello\r\n"));
	assert_non_null(strstr(text, "line one\r\nline two\r\n"));
	assert_non_null(strstr(text, "Content-Type: text/plain; charset=utf-8"));
	assert_non_null(strstr(text, "Content-Type: text/html; charset=utf-8"));
	assert_non_null(strstr(text, "Message-ID: <"));
	for (const char *p = strchr(text, '\n'); p != NULL; p = strchr(p + 1, '\n'))
		assert_int_equal(p[-1], '\r');
	free(text);
}

static void
a_subject_with_a_newline_or_a_bad_recipient_is_refused(void **state)
{
	struct mail_msg m = {"to@example.test", "Hi\r\nBcc: x@evil.test", "t", "h"};
	struct am_error e = {0};
	char *text = NULL;

	(void)state;
	assert_int_not_equal(mail_render("from@example.test", &m, &text, &e), AM_OK);
	assert_null(text);
	m.subject = "fine";
	m.to = "to@example.test\r\nBcc: x@evil.test";
	assert_int_equal(mail_render("from@example.test", &m, &text, &e), AM_E_INVALID_REQUEST);
	assert_null(text);
}

static void
non_ascii_subjects_are_encoded_words(void **state)
{
	struct mail_msg m = {"to@example.test", "Caf\xc3\xa9", "t", "h"};
	struct am_error e = {0};
	char *text = NULL;

	(void)state;
	assert_int_equal(mail_render("from@example.test", &m, &text, &e), AM_OK);
	assert_non_null(strstr(text, "Subject: =?UTF-8?B?Q2Fmw6k=?=\r\n"));
	free(text);
}

static void
no_freed_block_of_the_claim_mail_holds_the_token(void **state)
{
	/* Longer than any buffer's first size, so every buffer grows. */
	char token[FLOW_SECRET_LEN] =
		"cv_SECRETattempttoken0123456789abcdefghijklmnopqrstuvwxyzABCDE";
	char outbox[] = "/tmp/authmd-mail-XXXXXX";
	char long_name[120];
	struct am_config cfg;
	struct mailer *m = NULL;
	struct am_error e = {0};
	struct flow_env env = {0};

	(void)state;
	if (!WATCH_FREES)
		skip();
	assert_non_null(mkdtemp(outbox));
	am_config_defaults(&cfg);
	assert_true(am_copy(cfg.mail_outbox, sizeof(cfg.mail_outbox), outbox));
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_true(am_copy(cfg.resource_name, sizeof(cfg.resource_name), long_name));
	assert_int_equal(mailer_new(&cfg, &m, &e), AM_OK);
	env.cfg = &cfg;
	env.mail = m;
	watched = token;
	unwiped = 0;
	assert_int_equal(flow_send_claim_mail(&env, "ann@example.test", token, 1700000000, &e),
			 AM_OK);
	watched = NULL;
	assert_int_equal(unwiped, 0);
	mailer_free(m);
	{
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", outbox);
		assert_int_equal(system(cmd), 0);
	}
}

static void
backoff_doubles_to_its_cap_with_at_most_half_taken_off(void **state)
{
	(void)state;
	/* No jitter drawn (rnd 0): 5, 10, 20, ... capped at 60. */
	assert_int_equal(mail_backoff(1, 5, 60, 0), 5);
	assert_int_equal(mail_backoff(2, 5, 60, 0), 10);
	assert_int_equal(mail_backoff(3, 5, 60, 0), 20);
	assert_int_equal(mail_backoff(5, 5, 60, 0), 60);
	assert_int_equal(mail_backoff(1000000, 5, 60, 0), 60);
	for (uint32_t r = 0; r < 200; r++) {
		int64_t d = mail_backoff(4, 5, 600, r * 2654435761u);

		assert_true(d >= 20 && d <= 40);
	}
	assert_true(mail_backoff(1, 1, 1, 12345) >= 1);
}

/* A claim attempt for the queue rows to hang off. */
static void
put_attempt(struct store *st, const char *id, int64_t now)
{
	struct store_reg r = {0};
	struct store_attempt a = {0};
	struct am_error e = {0};

	snprintf(r.id, sizeof(r.id), "reg_%s", id);
	r.status = REG_PENDING_CLAIM;
	r.created_at = now;
	r.expires_at = now + 3600;
	assert_int_equal(store_reg_insert(st, &r, &e), AM_OK);
	snprintf(a.id, sizeof(a.id), "%s", id);
	snprintf(a.registration_id, sizeof(a.registration_id), "%s", r.id);
	snprintf(a.email, sizeof(a.email), "ann@example.test");
	a.token_hash[0] = (uint8_t)id[4]; /* unique per attempt */
	a.created_at = now;
	a.expires_at = now + 600;
	assert_int_equal(store_attempt_insert(st, &a, &e), AM_OK);
}

static void
the_queue_hands_out_due_mail_once_and_keeps_no_message_after(void **state)
{
	struct store *st = NULL;
	struct store_mail m = {0};
	struct store_mail_stats stats;
	struct am_error e = {0};
	const int64_t now = 1700000000;

	(void)state;
	assert_int_equal(store_open("sqlite::memory:", "default", &st, &e), AM_OK);
	put_attempt(st, "cla_a", now);
	put_attempt(st, "cla_b", now);
	assert_int_equal(
		store_mail_enqueue(st, "cla_a", "ann@example.test", "MSG-A", now, now + 600, &e),
		AM_OK);
	assert_int_equal(store_mail_enqueue(st, "cla_b", "ann@example.test", "MSG-B", now + 1,
					    now + 600, &e),
			 AM_OK);
	assert_int_equal(store_mail_stats(st, &stats, &e), AM_OK);
	assert_int_equal(stats.queued, 2);
	assert_int_equal(stats.oldest_created_at, now);

	/* Oldest due first, with its attempt's registration. */
	assert_int_equal(store_mail_next(st, now + 1, &m, &e), AM_OK);
	assert_string_equal(m.attempt_id, "cla_a");
	assert_string_equal(m.registration_id, "reg_cla_a");
	assert_string_equal(m.message, "MSG-A");
	assert_true(m.live);
	/* A temporary failure moves it behind its backoff. */
	assert_int_equal(store_mail_retry(st, m.id, now + 30, "smtp 421", &e), AM_OK);
	store_mail_wipe(&m);
	assert_null(m.message);
	assert_int_equal(store_mail_next(st, now + 1, &m, &e), AM_OK);
	assert_string_equal(m.attempt_id, "cla_b");
	/* Sent: gone for good. */
	assert_int_equal(store_mail_done(st, m.id, &e), AM_OK);
	store_mail_wipe(&m);
	assert_int_equal(store_mail_next(st, now + 29, &m, &e), AM_E_NOT_FOUND);
	assert_int_equal(store_mail_next(st, now + 30, &m, &e), AM_OK);
	assert_string_equal(m.attempt_id, "cla_a");
	assert_int_equal(m.tries, 1);
	/* Failed for good: kept as a record, without the message. */
	assert_int_equal(store_mail_failed(st, m.id, "smtp 550", &e), AM_OK);
	store_mail_wipe(&m);
	assert_int_equal(store_mail_next(st, now + 1000, &m, &e), AM_E_NOT_FOUND);
	assert_int_equal(store_mail_stats(st, &stats, &e), AM_OK);
	assert_int_equal(stats.queued, 0);
	/* An attempt deleted meanwhile makes its mail not live. */
	assert_int_equal(
		store_mail_enqueue(st, "cla_gone", "ann@example.test", "MSG-C", now, now + 600, &e),
		AM_OK);
	assert_int_equal(store_mail_next(st, now, &m, &e), AM_OK);
	assert_false(m.live);
	store_mail_wipe(&m);
	store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain_addresses_are_accepted),
		cmocka_unit_test(anything_that_could_reach_a_header_badly_is_refused),
		cmocka_unit_test(normalising_lower_cases),
		cmocka_unit_test(rendered_message_has_crlf_lines_and_both_parts),
		cmocka_unit_test(a_subject_with_a_newline_or_a_bad_recipient_is_refused),
		cmocka_unit_test(non_ascii_subjects_are_encoded_words),
		cmocka_unit_test(no_freed_block_of_the_claim_mail_holds_the_token),
		cmocka_unit_test(backoff_doubles_to_its_cap_with_at_most_half_taken_off),
		cmocka_unit_test(the_queue_hands_out_due_mail_once_and_keeps_no_message_after),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
