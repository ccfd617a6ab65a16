/* Delivery: outbox files (atomic rename, mode 0600: the messages carry claim
 * links) or SMTP through libcurl. */
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/crypto.h"
#include "core/fs.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/str.h"
#include "mail/mail.h"
#include "mail/worker.h"

struct mailer {
	const struct am_config *cfg;
	bool smtp;
	/* the worker (mail/queue.c) */
	struct mail_worker *worker;
	volatile int stopping; /* read by libcurl's progress callback */
};

struct mail_worker **
mailer_worker_slot(struct mailer *m)
{
	return &m->worker;
}

const struct am_config *
mailer_config(const struct mailer *m)
{
	return m->cfg;
}

void
mailer_set_stopping(struct mailer *m, bool on)
{
	__atomic_store_n(&m->stopping, on ? 1 : 0, __ATOMIC_RELEASE);
}

bool
mailer_queued(const struct mailer *m)
{
	return m != NULL && m->worker != NULL;
}

/* smtp_url may carry credentials (smtp://user:password@host): the log gets
 * the URL with its userinfo and login options removed, and whether it had
 * any. A URL libcurl cannot parse is not echoed at all. */
static void
log_smtp_target(const struct am_config *cfg)
{
	static const CURLUPart userinfo[] = {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS};
	CURLU *u = curl_url();
	char *part = NULL, *clean = NULL;
	bool creds = false;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, cfg->mail_smtp_url,
				      CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
		log_warn("mail via smtp url=(not parsable) starttls=%s", cfg->mail_starttls);
		curl_url_cleanup(u);
		return;
	}
	for (size_t i = 0; i < sizeof(userinfo) / sizeof(userinfo[0]); i++) {
		if (curl_url_get(u, userinfo[i], &part, 0) == CURLUE_OK)
			creds = true;
		curl_free(part);
		part = NULL;
		curl_url_set(u, userinfo[i], NULL, 0);
	}
	if (curl_url_get(u, CURLUPART_URL, &clean, 0) == CURLUE_OK)
		log_info("mail via smtp url=%s credentials_in_url=%s starttls=%s", clean,
			 creds ? "yes" : "no", cfg->mail_starttls);
	else
		log_warn("mail via smtp url=(not parsable) starttls=%s", cfg->mail_starttls);
	curl_free(clean);
	curl_url_cleanup(u);
}

enum am_err
mailer_new(const struct am_config *cfg, struct mailer **out, struct am_error *e)
{
	struct mailer *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if (!mail_address_ok(cfg->mail_from)) {
		free(m);
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "[mail] from is not a plain address with a dotted domain");
	}
	m->cfg = cfg;
	m->smtp = cfg->mail_smtp_url[0] != '\0';
	if (!m->smtp && am_mkdir_p(cfg->mail_outbox) != 0) {
		log_error("mail outbox unusable path=%s: %s", cfg->mail_outbox, strerror(errno));
		free(m);
		return am_fail(e, AM_E_UNAVAILABLE, "cannot create the mail outbox folder");
	}
	if (m->smtp)
		log_smtp_target(cfg);
	else
		log_info("mail to outbox path=%s", cfg->mail_outbox);
	*out = m;
	return AM_OK;
}

void
mailer_free(struct mailer *m)
{
	if (m == NULL)
		return;
	mailer_stop(m);
	free(m);
}

static enum am_err
to_outbox(struct mailer *m, const char *text, struct am_error *e)
{
	char name[64], tmp[600], final[600];
	size_t len = strlen(text);
	struct timespec ts;
	enum am_err rc;

	if ((rc = am_rand_id("", name, sizeof(name), e)) != AM_OK)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", m->cfg->mail_outbox, name);
	/* Names sort in the order the messages were written. */
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(final, sizeof(final), "%s/%lld%09ld-%.8s.eml", m->cfg->mail_outbox,
		 (long long)ts.tv_sec, ts.tv_nsec, name);
	if (am_write_private(final, tmp, text, len) != 0)
		goto fail;
	log_info("mail queued to outbox id=%s", name);
	return AM_OK;
fail:
	log_error("mail outbox write failed: %s", strerror(errno));
	return am_fail(e, AM_E_UNAVAILABLE, "the mail could not be queued; retry later");
}

struct upload {
	const char *data;
	size_t left;
};

static size_t
read_cb(char *buf, size_t size, size_t nmemb, void *user)
{
	struct upload *u = user;
	size_t n = size * nmemb;

	if (n > u->left)
		n = u->left;
	memcpy(buf, u->data, n);
	u->data += n;
	u->left -= n;
	return n;
}

/* Abandons a transfer when the mailer stops, so shutdown does not wait out
 * a silent SMTP server. */
static int
progress_cb(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct mailer *m = user;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return __atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE) != 0;
}

static enum mail_outcome
smtp_deliver(struct mailer *m, const char *to, const char *text, char *why, size_t whycap)
{
	const struct am_config *cfg = m->cfg;
	struct upload up = {text, strlen(text)};
	struct curl_slist *rcpt = NULL;
	char from[300], rcpt_addr[300];
	CURL *c = curl_easy_init();
	CURLcode res;
	long use_ssl = CURLUSESSL_ALL;

	long code = 0;

	if (c == NULL) {
		snprintf(why, whycap, "out of memory");
		return MAIL_TEMPORARY;
	}
	if (strcmp(cfg->mail_starttls, "try") == 0)
		use_ssl = CURLUSESSL_TRY;
	else if (strcmp(cfg->mail_starttls, "off") == 0)
		use_ssl = CURLUSESSL_NONE;
	snprintf(from, sizeof(from), "<%s>", cfg->mail_from);
	snprintf(rcpt_addr, sizeof(rcpt_addr), "<%s>", to);
	rcpt = curl_slist_append(NULL, rcpt_addr);
	curl_easy_setopt(c, CURLOPT_URL, cfg->mail_smtp_url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(c, CURLOPT_READDATA, &up);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_USE_SSL, use_ssl);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)AM_FETCH_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)AM_MAIL_TIMEOUT_MS);
	if (cfg->mail_smtp_user[0] != '\0') {
		curl_easy_setopt(c, CURLOPT_USERNAME, cfg->mail_smtp_user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, cfg->mail_smtp_password);
	}
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress_cb);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, m);
	res = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(rcpt);
	curl_easy_cleanup(c);
	if (res == CURLE_OK) {
		log_info("mail sent via smtp");
		snprintf(why, whycap, "sent");
		return MAIL_SENT;
	}
	snprintf(why, whycap, "smtp %ld: %s", code, curl_easy_strerror(res));
	log_warn("smtp send failed code=%ld: %s", code, curl_easy_strerror(res));
	/* A 5xx to the envelope or the data refuses this mail for good; a
	 * refused login is the operator's to fix, and fails every mail alike,
	 * so it is retried like an outage rather than dropping them all. */
	if (code >= 500 && code <= 599 && res != CURLE_LOGIN_DENIED)
		return MAIL_PERMANENT;
	return MAIL_TEMPORARY;
}

static enum am_err
to_smtp(struct mailer *m, const char *to, const char *text, struct am_error *e)
{
	char why[160];

	if (smtp_deliver(m, to, text, why, sizeof(why)) != MAIL_SENT)
		return am_fail(e, AM_E_UNAVAILABLE, "the mail could not be sent; retry later");
	return AM_OK;
}

enum mail_outcome
mailer_deliver(struct mailer *m, const char *rcpt, const char *message, char *why, size_t whycap)
{
	struct am_error e = {0};

	if (m->smtp)
		return smtp_deliver(m, rcpt, message, why, whycap);
	if (to_outbox(m, message, &e) != AM_OK) {
		snprintf(why, whycap, "outbox: %s", e.detail);
		return MAIL_TEMPORARY;
	}
	snprintf(why, whycap, "sent");
	return MAIL_SENT;
}

enum am_err
mailer_send(struct mailer *m, const struct mail_msg *msg, struct am_error *e)
{
	char *text = NULL;
	enum am_err rc;

	if ((rc = mail_render(m->cfg->mail_from, msg, &text, e)) != AM_OK)
		return rc;
	rc = m->smtp ? to_smtp(m, msg->to, text, e) : to_outbox(m, text, e);
	OPENSSL_cleanse(text, strlen(text)); /* the message carries the claim link */
	free(text);
	return rc;
}
