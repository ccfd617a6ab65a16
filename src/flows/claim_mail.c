/* The claim mail: rendering an attempt's message and handing it to the
 * mailer (a wake-up of the mail worker once the queue row is committed, or
 * a send without one). Apart from claim.c so that the durable steps of
 * op.c, which send the mail after their commit, do not call back into the
 * claim flow. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"
#include "flows/internal.h"
#include "mail/mail.h"

enum am_err
flow_render_mail(const struct flow_env *env, const char *to, const char *subject,
		 const struct am_buf *text, const struct am_buf *html, char **out,
		 struct am_error *e)
{
	struct mail_msg msg = {
		.to = to, .subject = subject, .text = text->data, .html = html->data};

	return mail_render(env->cfg->mail_from, &msg, out, e);
}

/* The claim mail of an attempt token, rendered (RFC 5322) into *out: the
 * caller wipes and frees it (it carries the link). */
enum am_err
flow_render_claim_mail(const struct flow_env *env, const char *email, const char *token,
		       int64_t expires_at, char **out, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	/* Each holds the attempt token: secret buffers leave no copy behind. */
	struct am_buf text = {.secret = true}, html = {.secret = true}, link = {.secret = true};
	char subject[200], until[40];
	enum am_err rc;

	am_time_iso(expires_at, until, sizeof(until));
	am_buf_printf(&link, "%s/agent/auth/claim/view?token=%s", cfg->public_url, token);
	snprintf(subject, sizeof(subject), "Your code to confirm an AI agent for %s",
		 cfg->resource_name);
	am_buf_printf(&text,
		      "An AI agent asked to act for %s at %s.\n\n"
		      "If you asked your agent to do this, open the link below, press the\n"
		      "button to show a 6-digit code, and tell the code to your agent:\n\n"
		      "%s\n\n"
		      "The link works until %s.\n\n"
		      "If you did not ask for this, ignore this email. Nothing happens\n"
		      "unless someone gives the code to the agent.\n",
		      email, cfg->resource_name, link.data, until);
	am_buf_puts(&html, "<!doctype html><html><body><p>An AI agent asked to act for ");
	am_buf_html(&html, email);
	am_buf_puts(&html, " at ");
	am_buf_html(&html, cfg->resource_name);
	am_buf_puts(&html, ".</p><p>If you asked your agent to do this, open the link, press the "
			   "button to show a 6-digit code, and tell the code to your agent:</p>"
			   "<p><a href=\"");
	am_buf_html(&html, link.data);
	am_buf_puts(&html, "\">Show my code</a></p><p>The link works until ");
	am_buf_html(&html, until);
	am_buf_puts(&html, ".</p><p>If you did not ask for this, ignore this email. Nothing "
			   "happens unless someone gives the code to the agent.</p></body></html>");
	rc = flow_render_mail(env, email, subject, &text, &html, out, e);
	am_buf_free(&text);
	am_buf_free(&html);
	am_buf_free(&link);
	return rc;
}

enum am_err
flow_send_claim_mail(const struct flow_env *env, const char *email, const char *token,
		     int64_t expires_at, struct am_error *e)
{
	char *message = NULL, why[160];
	enum am_err rc;

	if (env->mail == NULL)
		return AM_OK;
	if (mailer_queued(env->mail)) {
		/* Already a queue row (flow_new_attempt), now committed: wake
		 * the worker, never wait for SMTP on the request path. */
		mailer_kick(env->mail);
		return AM_OK;
	}
	if ((rc = flow_render_claim_mail(env, email, token, expires_at, &message, e)) != AM_OK)
		return rc;
	rc = mailer_deliver(env->mail, email, message, why, sizeof(why)) == MAIL_SENT
		     ? AM_OK
		     : am_fail(e, AM_E_UNAVAILABLE, "the mail could not be sent; retry later");
	OPENSSL_cleanse(message, strlen(message));
	free(message);
	return rc;
}
