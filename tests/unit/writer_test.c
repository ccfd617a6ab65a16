/* store/writer.c: group commit. Jobs of one batch commit together; a job
 * that fails is undone alone; a batch that cannot commit fails every job
 * and leaves nothing written; done comes only after the commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "store/store.h"

struct fx {
	struct store_pool *pool;
	struct store_writer *w;
	struct store *reader; /* a handle of its own, as a worker has */
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct am_error e = {0};

	assert_non_null(fx);
	assert_int_equal(store_pool_new("sqlite::memory:", "default", &fx->pool, &e), AM_OK);
	assert_int_equal(store_writer_new(fx->pool, 0, &fx->w, &e), AM_OK);
	assert_int_equal(store_pool_open(fx->pool, &fx->reader, &e), AM_OK);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	store_close(fx->reader);
	store_writer_free(fx->w);
	store_pool_free(fx->pool);
	free(fx);
	return 0;
}

/* A job inserting one registration; fail_after_write makes it fail once its
 * row is written, as a flow does when a later check refuses. */
struct reg_job {
	struct store_job job;
	char id[STORE_ID_LEN];
	bool fail_after_write;
	bool fail_before_write;	   /* a refusal that wrote nothing */
	bool use_flow_transaction; /* begin/commit as flow code does */
	int runs;		   /* how many times the writer ran it */
	/* set by done */
	bool done;
	bool row_visible_at_done; /* read on another connection */
	struct store *reader;
	/* a gate the job waits on before running (to fill the queue) */
	pthread_mutex_t *gate;
	bool started;
	pthread_mutex_t *mu;
	pthread_cond_t *cv;
};

static enum am_err
insert_reg(struct store *st, void *arg, struct am_error *e)
{
	struct reg_job *j = arg;
	struct store_reg r;
	enum am_err rc;

	if (j->gate != NULL) {
		pthread_mutex_lock(j->mu);
		j->started = true;
		pthread_cond_broadcast(j->cv);
		pthread_mutex_unlock(j->mu);
		pthread_mutex_lock(j->gate);
		pthread_mutex_unlock(j->gate);
	}
	j->runs++;
	memset(&r, 0, sizeof(r));
	snprintf(r.id, sizeof(r.id), "%s", j->id);
	r.kind = REG_ANONYMOUS;
	r.status = REG_UNCLAIMED;
	am_sha256_str(j->id, r.claim_hash);
	r.created_at = 1000;
	r.expires_at = 2000;
	if (j->use_flow_transaction && (rc = store_begin(st, e)) != AM_OK)
		return rc;
	if (j->fail_before_write) {
		rc = am_fail(e, AM_E_CLAIMED_OR_IN_FLIGHT, "refused before writing");
		goto fail;
	}
	if ((rc = store_reg_insert(st, &r, e)) != AM_OK)
		goto fail;
	if (j->fail_after_write) {
		rc = am_fail(e, AM_E_CLAIMED_OR_IN_FLIGHT, "refused after writing");
		goto fail;
	}
	if (j->use_flow_transaction && (rc = store_commit(st, e)) != AM_OK)
		return rc;
	return AM_OK;
fail:
	if (j->use_flow_transaction)
		store_rollback(st);
	return rc;
}

static bool
exists(struct store *st, const char *id)
{
	struct store_reg r;
	struct am_error e = {0};

	return store_reg_by_id(st, id, &r, &e) == AM_OK;
}

static void
note_done(struct store_job *job)
{
	struct reg_job *j = job->arg;

	j->row_visible_at_done = exists(j->reader, j->id);
	pthread_mutex_lock(j->mu);
	j->done = true;
	pthread_cond_broadcast(j->cv);
	pthread_mutex_unlock(j->mu);
}

#define NJOBS 5

/* A batch of NJOBS jobs behind a gate job, and what they wait on. */
struct rig {
	struct reg_job jobs[NJOBS + 1];
	pthread_mutex_t gate, mu;
	pthread_cond_t cv;
};
#define RIG_INIT                                                                                   \
	{                                                                                          \
		.gate = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER,                \
		.cv = PTHREAD_COND_INITIALIZER                                                     \
	}

/* Sets r's jobs up with ids prefix_i; rerun as given. */
static void
init_jobs(struct fx *fx, struct rig *r, const char *prefix, bool rerun)
{
	memset(r->jobs, 0, sizeof(r->jobs));
	for (int i = 0; i <= NJOBS; i++) {
		struct reg_job *j = &r->jobs[i];

		snprintf(j->id, sizeof(j->id), "%s_%d", prefix, i);
		j->job = (struct store_job){
			.run = insert_reg, .done = note_done, .arg = j, .rerun = rerun};
		j->mu = &r->mu;
		j->cv = &r->cv;
		j->gate = i == 0 ? &r->gate : NULL;
		/* done reads through a connection of its own: the commit must
		 * be visible to others when done runs. */
		j->reader = fx->reader;
	}
}

/* Submits r's jobs and waits for every done. jobs[0] holds the writer
 * inside its batch until the rest are queued, so they all wait for, and
 * form, the next batch. */
static void
run_gated(struct fx *fx, struct rig *r)
{
	struct am_error e = {0};

	pthread_mutex_lock(&r->gate);
	assert_int_equal(store_writer_submit(fx->w, &r->jobs[0].job, &e), AM_OK);
	pthread_mutex_lock(&r->mu);
	while (!r->jobs[0].started)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	for (int i = 1; i <= NJOBS; i++)
		assert_int_equal(store_writer_submit(fx->w, &r->jobs[i].job, &e), AM_OK);
	pthread_mutex_unlock(&r->gate);
	pthread_mutex_lock(&r->mu);
	for (int i = 0; i <= NJOBS; i++) {
		while (!r->jobs[i].done)
			pthread_cond_wait(&r->cv, &r->mu);
	}
	pthread_mutex_unlock(&r->mu);
}

/* Every job of jobs[0..NJOBS] but failing answered AM_OK with its row
 * durable at its done; failing answered its refusal with no row. */
static void
assert_kept_but(struct fx *fx, const struct reg_job *jobs, int failing)
{
	for (int i = 0; i <= NJOBS; i++) {
		if (i == failing) {
			assert_int_equal(jobs[i].job.rc, AM_E_CLAIMED_OR_IN_FLIGHT);
			assert_false(exists(fx->reader, jobs[i].id));
			continue;
		}
		assert_int_equal(jobs[i].job.rc, AM_OK);
		assert_true(jobs[i].row_visible_at_done); /* durable before done */
		assert_true(exists(fx->reader, jobs[i].id));
	}
}

static void
queued_jobs_commit_in_one_batch_and_a_failing_job_is_undone_alone(void **state)
{
	struct fx *fx = *state;
	struct rig r = RIG_INIT;
	struct reg_job *jobs = r.jobs;
	uint64_t batches0, jobs0, batches1, jobs1;
	double commits0 = am_metrics_value(AM_M_STORE_COMMIT, NULL, NULL);
	double written0 = am_metrics_value(AM_M_STORE_BATCH_JOBS, NULL, NULL);
	double redos0 = am_metrics_value(AM_M_STORE_BATCH_REDOS, NULL, NULL);

	store_writer_stats(fx->w, &batches0, &jobs0);
	/* jobs that may not run twice: the batch keeps a savepoint per job */
	init_jobs(fx, &r, "reg_batch", false);
	for (int i = 0; i <= NJOBS; i++) {
		jobs[i].fail_after_write = i == 2;
		jobs[i].use_flow_transaction = i % 2 == 1 || i == 2;
	}
	run_gated(fx, &r);
	assert_kept_but(fx, jobs, 2);
	for (int i = 0; i <= NJOBS; i++)
		assert_int_equal(jobs[i].runs, 1);
	store_writer_stats(fx->w, &batches1, &jobs1);
	assert_int_equal(jobs1 - jobs0, NJOBS + 1);
	assert_int_equal(batches1 - batches0, 2); /* the gate's, then the other five */
	/* /metrics sees both commits, and the five writes kept (not the undone). */
	assert_true(am_metrics_value(AM_M_STORE_COMMIT, NULL, NULL) == commits0 + 2);
	assert_true(am_metrics_value(AM_M_STORE_BATCH_JOBS, NULL, NULL) == written0 + NJOBS);
	assert_true(am_metrics_value(AM_M_STORE_BATCH_REDOS, NULL, NULL) == redos0);
}

/* Jobs that may run again share a transaction without savepoints: a job
 * that must undo its writes makes the writer roll the batch back and run
 * it again, each job in a savepoint; what the answers say is the same. */
static void
an_optimistic_batch_runs_again_with_savepoints_when_a_job_undoes_its_writes(void **state)
{
	struct fx *fx = *state;
	struct rig r = RIG_INIT;
	struct reg_job *jobs = r.jobs;
	double redos0 = am_metrics_value(AM_M_STORE_BATCH_REDOS, NULL, NULL);
	double written0 = am_metrics_value(AM_M_STORE_BATCH_JOBS, NULL, NULL);

	init_jobs(fx, &r, "reg_redo", true);
	for (int i = 0; i <= NJOBS; i++) {
		jobs[i].fail_after_write = i == 3;
		jobs[i].use_flow_transaction = i % 2 == 1; /* 3 undoes its own transaction */
	}
	run_gated(fx, &r);
	assert_kept_but(fx, jobs, 3);
	assert_true(am_metrics_value(AM_M_STORE_BATCH_REDOS, NULL, NULL) == redos0 + 1);
	assert_true(am_metrics_value(AM_M_STORE_BATCH_JOBS, NULL, NULL) == written0 + NJOBS);
	/* the gate's batch alone; then 1..3 twice (3 undid), 4 and 5 once */
	assert_int_equal(jobs[0].runs, 1);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(jobs[i].runs, 2);
	for (int i = 4; i <= NJOBS; i++)
		assert_int_equal(jobs[i].runs, 1);

	/* The batches after a redo keep their savepoints: the same failure,
	 * outside a flow's transaction this time, is undone alone. */
	init_jobs(fx, &r, "reg_careful", true);
	jobs[2].fail_after_write = true;
	run_gated(fx, &r);
	assert_kept_but(fx, jobs, 2);
	for (int i = 0; i <= NJOBS; i++)
		assert_int_equal(jobs[i].runs, 1);
	assert_true(am_metrics_value(AM_M_STORE_BATCH_REDOS, NULL, NULL) == redos0 + 1);
}

/* A refusal before any write (a replayed jti found, a block) has nothing
 * to undo: the optimistic batch goes on and every job runs once. */
static void
a_refusal_that_wrote_nothing_costs_an_optimistic_batch_no_redo(void **state)
{
	struct fx *fx = *state;
	struct rig r = RIG_INIT;
	struct reg_job *jobs = r.jobs;
	double redos0 = am_metrics_value(AM_M_STORE_BATCH_REDOS, NULL, NULL);

	init_jobs(fx, &r, "reg_refused", true);
	for (int i = 0; i <= NJOBS; i++) {
		jobs[i].fail_before_write = i == 1 || i == 4;
		jobs[i].use_flow_transaction = i != 4;
	}
	run_gated(fx, &r);
	for (int i = 0; i <= NJOBS; i++) {
		assert_int_equal(jobs[i].runs, 1);
		if (i == 1 || i == 4) {
			assert_int_equal(jobs[i].job.rc, AM_E_CLAIMED_OR_IN_FLIGHT);
			assert_false(exists(fx->reader, jobs[i].id));
		} else {
			assert_int_equal(jobs[i].job.rc, AM_OK);
			assert_true(jobs[i].row_visible_at_done);
		}
	}
	assert_true(am_metrics_value(AM_M_STORE_BATCH_REDOS, NULL, NULL) == redos0);
}

static void
a_batch_that_cannot_take_the_lock_fails_every_job_and_writes_nothing(void **state)
{
	struct fx *fx = *state;
	struct store *other = NULL;
	struct reg_job j;
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
	struct am_error e = {0};

	/* Another process's connection holds the write lock: a handle without
	 * the pool's queue meets SQLite's lock as that process would. */
	assert_int_equal(store_pool_open(fx->pool, &other, &e), AM_OK);
	store_set_writer_lock(other, NULL);
	assert_int_equal(store_begin(other, &e), AM_OK);
	memset(&j, 0, sizeof(j));
	snprintf(j.id, sizeof(j.id), "reg_locked");
	j.job = (struct store_job){.run = insert_reg, .done = note_done, .arg = &j};
	j.reader = fx->reader;
	j.mu = &mu;
	j.cv = &cv;
	memset(&e, 0, sizeof(e));
	assert_int_equal(store_writer_run(fx->w, &j.job, &e), AM_E_UNAVAILABLE);
	assert_int_equal(e.retry_after, 1);
	store_rollback(other);
	assert_false(exists(fx->reader, "reg_locked"));
	/* and the writer recovers once the lock is gone */
	memset(&e, 0, sizeof(e));
	assert_int_equal(store_writer_run(fx->w, &j.job, &e), AM_OK);
	assert_true(exists(fx->reader, "reg_locked"));
	store_close(other);
}

static void
a_stopping_writer_finishes_what_was_queued_first(void **state)
{
	struct fx *fx = *state;
	struct reg_job j;
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
	struct am_error e = {0};

	memset(&j, 0, sizeof(j));
	snprintf(j.id, sizeof(j.id), "reg_at_stop");
	j.job = (struct store_job){.run = insert_reg, .done = note_done, .arg = &j};
	j.reader = fx->reader;
	j.mu = &mu;
	j.cv = &cv;
	assert_int_equal(store_writer_submit(fx->w, &j.job, &e), AM_OK);
	store_writer_free(fx->w); /* drains: j's done has run when this returns */
	fx->w = NULL;
	assert_true(j.done);
	assert_int_equal(j.job.rc, AM_OK);
	assert_true(exists(fx->reader, "reg_at_stop"));
	/* and without a writer a durable write is refused, not lost */
	assert_int_equal(store_writer_submit(NULL, &j.job, &e), AM_E_UNAVAILABLE);
}

static void
the_jti_purge_is_bounded_per_call_so_the_sweeper_holds_the_lock_briefly(void **state)
{
	struct fx *fx = *state;
	struct store *st = NULL;
	struct am_error e = {0};
	char jti[32];
	bool fresh;
	int n = 0;

	assert_int_equal(store_pool_open(fx->pool, &st, &e), AM_OK);
	assert_int_equal(store_begin(st, &e), AM_OK);
	for (int i = 0; i < STORE_PURGE_MAX + 7; i++) {
		snprintf(jti, sizeof(jti), "jti-%d", i);
		assert_int_equal(store_jti_record(st, "https://p.example", jti, 100, &fresh, &e),
				 AM_OK);
		assert_true(fresh);
	}
	assert_int_equal(store_commit(st, &e), AM_OK);
	assert_int_equal(store_jti_purge(st, 1000, &n, &e), AM_OK);
	assert_int_equal(n, STORE_PURGE_MAX);
	assert_int_equal(store_jti_purge(st, 1000, &n, &e), AM_OK);
	assert_int_equal(n, 7);
	assert_int_equal(store_jti_purge(st, 1000, &n, &e), AM_OK);
	assert_int_equal(n, 0);
	store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			queued_jobs_commit_in_one_batch_and_a_failing_job_is_undone_alone, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_batch_that_cannot_take_the_lock_fails_every_job_and_writes_nothing, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			the_jti_purge_is_bounded_per_call_so_the_sweeper_holds_the_lock_briefly,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			an_optimistic_batch_runs_again_with_savepoints_when_a_job_undoes_its_writes,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_refusal_that_wrote_nothing_costs_an_optimistic_batch_no_redo, setup,
			teardown),
		cmocka_unit_test_setup_teardown(a_stopping_writer_finishes_what_was_queued_first,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
