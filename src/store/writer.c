/* The store writer: one thread that turns every pending durable write into
 * one transaction and one fsync (group commit), then answers each. Writers
 * no longer queue one by one on the database lock, each paying its own
 * fsync; requests hand their job over and their worker serves others. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "store/store.h"

struct store_writer {
	struct store *st;
	int priority; /* nice steps above the process */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct store_job *head, *tail; /* under mu */
	size_t queued;		       /* under mu */
	bool stopping;		       /* under mu */
	uint64_t batches, jobs;	       /* under mu */
	unsigned careful;	       /* the writer's: batches left with savepoints */
};

/* After a redo the next batches keep their savepoints: a client whose
 * requests keep failing after their first write (a blocked subject
 * retrying) then costs a redo every REDO_CAREFUL_BATCHES batches at most,
 * not one in each. */
#define REDO_CAREFUL_BATCHES 16

static void
fail_job(struct store_job *j, const struct am_error *why)
{
	j->rc = why->code != AM_OK ? why->code : AM_E_UNAVAILABLE;
	j->err = *why;
}

/* Whether every job of jobs[0..n) may run again: the batch may then do
 * without a savepoint per job (store_batch_begin), which cost a copy of
 * every page each job touched, about a fifth of the writer's instructions
 * per registration. */
static bool
all_rerun(struct store_job *const *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!jobs[i]->rerun)
			return false;
	}
	return true;
}

/* Runs jobs[0..n) in one transaction and sets each one's rc; optimistic:
 * without a savepoint per job if every job may run again. Returns whether
 * the batch had to run again with savepoints. */
static bool
run_batch(struct store *st, struct store_job **jobs, size_t n, bool optimistic)
{
	struct am_error e = {0};
	size_t first = 0; /* the first job of the current transaction */
	size_t committed = 0, i = 0;
	bool redone = false;
	enum am_err rc;

	optimistic = optimistic && all_rerun(jobs, n);
	if ((rc = store_batch_begin(st, optimistic, &e)) != AM_OK) {
		for (size_t k = 0; k < n; k++)
			fail_job(jobs[k], &e);
		return false;
	}
	while (i < n) {
		struct store_job *j = jobs[i];

		memset(&j->err, 0, sizeof(j->err));
		if ((rc = store_batch_job_begin(st, &j->err)) == AM_OK)
			rc = j->run(st, j->arg, &j->err);
		j->rc = rc;
		store_batch_job_end(st, rc == AM_OK);
		if (store_batch_must_redo(st)) {
			/* A job's writes to undo, and no savepoint to undo them
			 * alone: the transaction goes, and its jobs run again from
			 * its first, each in a savepoint this time. */
			store_batch_rollback(st);
			am_metrics_inc(AM_M_STORE_BATCH_REDOS, NULL, NULL);
			optimistic = false;
			redone = true;
			if ((rc = store_batch_begin(st, false, &e)) != AM_OK) {
				for (size_t k = first; k < n; k++)
					fail_job(jobs[k], &e);
				return redone;
			}
			i = first;
			continue;
		}
		if (store_batch_alive(st)) {
			i++;
			continue;
		}
		/* SQLite gave up the whole transaction (disk full, I/O): the jobs
		 * kept so far in it are gone too. They fail cleanly, as this one
		 * does; the rest get a fresh transaction. */
		log_warn("store batch lost jobs=%zu", i + 1 - first);
		memset(&e, 0, sizeof(e));
		e.retry_after = 1;
		am_fail(&e, AM_E_UNAVAILABLE, "the store is busy; retry");
		for (size_t k = first; k <= i; k++)
			fail_job(jobs[k], &e);
		store_batch_rollback(st);
		first = ++i;
		if (first < n && (rc = store_batch_begin(st, optimistic, &e)) != AM_OK) {
			for (size_t k = first; k < n; k++)
				fail_job(jobs[k], &e);
			return redone;
		}
	}
	if (first >= n)
		return redone;
	memset(&e, 0, sizeof(e));
	if ((rc = store_batch_commit(st, &e)) != AM_OK) {
		for (size_t k = first; k < n; k++) {
			if (jobs[k]->rc == AM_OK)
				fail_job(jobs[k], &e);
		}
		return redone;
	}
	for (size_t k = first; k < n; k++)
		committed += jobs[k]->rc == AM_OK;
	am_metrics_add(AM_M_STORE_BATCH_JOBS, NULL, NULL, (double)committed);
	return redone;
}

/* The writer is the one serial stage of every durable request: when the
 * workers keep every core busy (signature checks, JSON), the scheduler
 * gives it a fifth of the CPU among five threads and the whole pipeline
 * waits on it. A few nice steps above them let it run when it has work
 * (3 to 8 % more registrations per second on 2 busy cores,
 * docs/performance.md); it only ever runs for work the workers queued.
 * Linux keeps a nice value per thread, so this one thread moves. */
static void
raise_priority(int steps)
{
	int base, want;

	if (steps <= 0)
		return;
	errno = 0;
	base = getpriority(PRIO_PROCESS, 0); /* this thread's, inherited */
	if (base == -1 && errno != 0)
		return;
	want = base - steps < -20 ? -20 : base - steps;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), want) != 0)
		log_info("store writer priority not raised (nice %d to %d: %s): it runs at the "
			 "workers' priority; allow it with CAP_SYS_NICE or RLIMIT_NICE (systemd "
			 "LimitNICE=%d), or set [store] writer_priority = 0",
			 base, want, strerror(errno), want);
	else
		log_debug("store writer at nice %d, %d above the workers", want, base - want);
}

static void *
writer_loop(void *arg)
{
	struct store_writer *w = arg;
	struct store_job *jobs[STORE_BATCH_MAX];

	raise_priority(w->priority);

	pthread_mutex_lock(&w->mu);
	for (;;) {
		size_t n = 0;
		double started;

		while (w->head == NULL && !w->stopping)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->head == NULL)
			break; /* stopping, and nothing left */
		while (w->head != NULL && n < STORE_BATCH_MAX) {
			jobs[n++] = w->head;
			w->head = w->head->next;
		}
		if (w->head == NULL)
			w->tail = NULL;
		w->queued -= n;
		pthread_mutex_unlock(&w->mu);
		started = am_metrics_now();
		if (run_batch(w->st, jobs, n, w->careful == 0))
			w->careful = REDO_CAREFUL_BATCHES;
		else if (w->careful > 0)
			w->careful--;
		/* Every write queued meanwhile waited this long: a job that
		 * holds the writer (a sweep that scans) shows here first. */
		am_metrics_observe(AM_M_STORE_BATCH, NULL, am_metrics_now() - started);
		pthread_mutex_lock(&w->mu);
		w->batches++;
		w->jobs += n;
		pthread_mutex_unlock(&w->mu);
		/* Each done may free its job's request: jobs[i] is not touched
		 * after its done. */
		for (size_t i = 0; i < n; i++)
			jobs[i]->done(jobs[i]);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

enum am_err
store_writer_new(struct store_pool *p, int priority, struct store_writer **out,
		 struct am_error *e)
{
	struct store_writer *w = calloc(1, sizeof(*w));
	enum am_err rc;

	if (w == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	w->priority = priority;
	if ((rc = store_pool_open(p, &w->st, e)) != AM_OK) {
		free(w);
		return rc;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (pthread_create(&w->thread, NULL, writer_loop, w) != 0) {
		store_close(w->st);
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		free(w);
		return am_fail(e, AM_E_INTERNAL, "cannot start the store writer");
	}
	(void)pthread_setname_np(w->thread, "store-writer"); /* for top -H, perf, profile.py */
	*out = w;
	return AM_OK;
}

enum am_err
store_writer_submit(struct store_writer *w, struct store_job *job, struct am_error *e)
{
	if (w == NULL) {
		e->retry_after = 1;
		return am_fail(e, AM_E_UNAVAILABLE, "the store writer is not running; retry");
	}
	pthread_mutex_lock(&w->mu);
	if (w->stopping || w->queued >= STORE_QUEUE_MAX) {
		bool stopping = w->stopping;

		pthread_mutex_unlock(&w->mu);
		if (!stopping)
			log_warn("store writer queue full queued=%d", STORE_QUEUE_MAX);
		e->retry_after = 1;
		return am_fail(e, AM_E_UNAVAILABLE,
			       stopping ? "the service is stopping; retry"
					: "the store is busy; retry");
	}
	job->next = NULL;
	job->rc = AM_OK;
	if (w->tail != NULL)
		w->tail->next = job;
	else
		w->head = job;
	w->tail = job;
	w->queued++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return AM_OK;
}

/* store_writer_run's waiter: the job's done wakes it. */
struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void
wake(struct store_job *job)
{
	struct waiter *wt = job->arg;

	pthread_mutex_lock(&wt->mu);
	wt->done = true;
	pthread_cond_signal(&wt->cv);
	pthread_mutex_unlock(&wt->mu);
}

struct run_ctx {
	struct waiter wt;
	struct store_job *outer;
};

static enum am_err
run_outer(struct store *st, void *arg, struct am_error *e)
{
	struct run_ctx *c = arg;

	return c->outer->run(st, c->outer->arg, e);
}

enum am_err
store_writer_run(struct store_writer *w, struct store_job *job, struct am_error *e)
{
	struct run_ctx c = {.outer = job};
	struct store_job inner = {
		.run = run_outer, .done = wake, .arg = &c.wt, .rerun = job->rerun};
	enum am_err rc;

	/* The waiter is the first member of run_ctx, so inner.arg serves both. */
	pthread_mutex_init(&c.wt.mu, NULL);
	pthread_cond_init(&c.wt.cv, NULL);
	if ((rc = store_writer_submit(w, &inner, e)) == AM_OK) {
		pthread_mutex_lock(&c.wt.mu);
		while (!c.wt.done)
			pthread_cond_wait(&c.wt.cv, &c.wt.mu);
		pthread_mutex_unlock(&c.wt.mu);
		job->rc = inner.rc;
		job->err = inner.err;
		if ((rc = inner.rc) != AM_OK)
			*e = inner.err;
	}
	pthread_mutex_destroy(&c.wt.mu);
	pthread_cond_destroy(&c.wt.cv);
	return rc;
}

void
store_writer_stats(struct store_writer *w, uint64_t *batches, uint64_t *jobs)
{
	pthread_mutex_lock(&w->mu);
	*batches = w->batches;
	*jobs = w->jobs;
	pthread_mutex_unlock(&w->mu);
}

void
store_writer_free(struct store_writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	log_info("store writer stopped batches=%llu jobs=%llu pages_written=%lld",
		 (unsigned long long)w->batches, (unsigned long long)w->jobs,
		 (long long)store_pages_written(w->st));
	store_close(w->st);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}
