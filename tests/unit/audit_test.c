/* flows/audit: the sink after the commit. A failed write cannot fail the
 * request (the rows are committed), so it must be counted and logged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/str.h"
#include "flows/audit.h"

static void
batch_of(struct audit_batch *b, size_t n)
{
	b->lines = calloc(n, sizeof(*b->lines));
	assert_non_null(b->lines);
	b->cap = n;
	for (b->n = 0; b->n < n; b->n++)
		b->lines[b->n] = am_xstrdup("{\"event\":\"test\"}");
}

static void
a_full_sink_counts_every_lost_line(void **state)
{
	struct audit_sink *s = NULL;
	struct audit_batch b = {0};
	struct am_error e = {0};

	(void)state;
	/* /dev/full: every write fails with ENOSPC, as on a full disk. */
	assert_int_equal(audit_sink_open("file:/dev/full", &s, &e), AM_OK);
	batch_of(&b, 2);
	audit_flush(s, &b);
	assert_int_equal(b.n, 0);
	assert_int_equal(audit_sink_lost(s), 2);
	batch_of(&b, 3);
	audit_flush(s, &b);
	assert_int_equal(audit_sink_lost(s), 5);
	audit_sink_free(s);
}

static void
a_working_sink_loses_nothing_and_writes_each_line(void **state)
{
	char path[] = "/tmp/authmd-audit-XXXXXX";
	char spec[64], buf[256];
	struct audit_sink *s = NULL;
	struct audit_batch b = {0};
	struct am_error e = {0};
	FILE *f;
	int fd = mkstemp(path);
	size_t n;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	snprintf(spec, sizeof(spec), "file:%s", path);
	assert_int_equal(audit_sink_open(spec, &s, &e), AM_OK);
	batch_of(&b, 2);
	audit_flush(s, &b);
	assert_int_equal(audit_sink_lost(s), 0);
	audit_sink_free(s);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
	assert_string_equal(buf, "{\"event\":\"test\"}\n{\"event\":\"test\"}\n");
}

/* The event's line: the common keys, then the fields (which become the
 * event itself), keys sorted; a field of a common key's name is kept. */
static void
an_event_line_holds_the_common_keys_and_the_fields(void **state)
{
	struct audit_batch b = {0};
	struct am_error e = {0};

	(void)state;
	assert_int_equal(audit_prepare(&b, "t1", 0, "registration.created", "reg_1",
				       json_pack("{s:s, s:b}", "iss", "https://p.example",
						 "new_registration", 1),
				       &e),
			 AM_OK);
	assert_int_equal(audit_prepare(&b, "t1", 0, "token.revoked", NULL, NULL, &e), AM_OK);
	assert_int_equal(audit_prepare(&b, "t1", 0, "x", "reg_2",
				       json_pack("{s:s}", "tenant", "from-the-fields"), &e),
			 AM_OK);
	assert_int_equal(b.n, 3);
	assert_string_equal(b.lines[0],
			    "{\"at\":\"1970-01-01T00:00:00.000Z\",\"event\":\"registration.created\","
			    "\"iss\":\"https://p.example\",\"new_registration\":true,"
			    "\"registration_id\":\"reg_1\",\"tenant\":\"t1\"}");
	assert_string_equal(b.lines[1], "{\"at\":\"1970-01-01T00:00:00.000Z\",\"event\":"
					"\"token.revoked\",\"tenant\":\"t1\"}");
	assert_non_null(strstr(b.lines[2], "\"tenant\":\"from-the-fields\""));
	audit_discard(&b);
}

/* A line prepared with holes and filled on the writer is byte for byte the
 * line the same fields make at once, wherever the holes fall (first, last,
 * side by side), and a field's value that looks like a hole is left alone. */
static void
a_filled_line_is_the_line_the_whole_fields_make(void **state)
{
	const char *tricky = "\"user_id\":\"\x01\"";
	const struct audit_value v[] = {
		{.key = "user_id", .text = "usr_\"1"},
		{.key = "a", .flag = true},
		{.key = "new_registration", .flag = false},
		{.key = "registration_id", .text = "reg_9"},
	};
	struct audit_batch tpl = {0}, b = {0}, whole = {0};
	struct am_error e = {0};

	(void)state;
	assert_int_equal(audit_prepare(&tpl, "t1", 0, "registration.created", NULL,
				       json_pack("{s:o, s:s, s:o, s:o, s:o, s:s}", "a", audit_hole(),
						 "client_name", tricky, "new_registration",
						 audit_hole(), "registration_id", audit_hole(),
						 "user_id", audit_hole(), "zz", "x"),
				       &e),
			 AM_OK);
	assert_int_equal(audit_fill(&b, &tpl, 0, "reg_9", v, 4, &e), AM_OK);
	assert_int_equal(audit_fill(&b, &tpl, 0, "reg_9", v, 4, &e), AM_OK); /* run again */
	assert_int_equal(audit_prepare(&whole, "t1", 0, "registration.created", "reg_9",
				       json_pack("{s:b, s:s, s:b, s:s, s:s}", "a", 1, "client_name",
						 tricky, "new_registration", 0, "user_id",
						 "usr_\"1", "zz", "x"),
				       &e),
			 AM_OK);
	assert_int_equal(b.n, 2);
	assert_string_equal(b.lines[0], whole.lines[0]);
	assert_string_equal(b.lines[1], whole.lines[0]);
	assert_string_equal(b.meta[0].registration_id, "reg_9");
	assert_string_equal(b.meta[0].event, "registration.created");
	assert_int_equal(b.meta[0].count.metric, whole.meta[0].count.metric);
	/* A key with no hole, or a template that is not one, is refused. */
	assert_int_equal(audit_fill(&b, &tpl, 0, "reg_9",
				    &(struct audit_value){.key = "iss", .text = "x"}, 1, &e),
			 AM_E_INTERNAL);
	assert_int_equal(audit_fill(&b, &whole, 0, "reg_9", v, 1, &e), AM_E_INTERNAL);
	assert_int_equal(audit_fill(&b, &tpl, 1, "reg_9", v, 1, &e), AM_E_INTERNAL);
	assert_int_equal(b.n, 2);
	audit_discard(&b);
	audit_discard(&tpl);
	audit_discard(&whole);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_full_sink_counts_every_lost_line),
		cmocka_unit_test(an_event_line_holds_the_common_keys_and_the_fields),
		cmocka_unit_test(a_working_sink_loses_nothing_and_writes_each_line),
		cmocka_unit_test(a_filled_line_is_the_line_the_whole_fields_make),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
