/* authmd mcp: the agent's client as Model Context Protocol tools, JSON-RPC
 * 2.0 over stdio, on jansson (no C JSON-RPC library is better kept than the
 * few lines of framing this needs; docs/agent.md, "authmd mcp").
 *
 * Two kinds of failure are kept apart, as MCP says. A message that is not a
 * well-formed request for a method and tool we serve, with arguments of the
 * shapes the tool's inputSchema gives, gets a JSON-RPC error. A tool that
 * ran and failed (the service refused, a code was wrong, a person must act)
 * answers a result with isError true and the protocol's error code, so the
 * model can read it and act on it.
 *
 * Every message written passes through one redaction step that replaces
 * any stored credential, claim token or provider session with
 * "[redacted]", wherever it appears (an API that echoes the Authorization
 * header, a service error that quotes a token): the model never sees one. */
#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/mcp.h"
#include "agent/view.h"
#include "core/limits.h"
#include "core/str.h"

enum {
	RPC_PARSE_ERROR = -32700,
	RPC_INVALID_REQUEST = -32600,
	RPC_METHOD_NOT_FOUND = -32601,
	RPC_INVALID_PARAMS = -32602,
};

#define MAX_HEADERS 32
#define MIN_SECRET_LEN                                                                             \
	8 /* shorter values are not credentials; redacting them would mangle text                  \
	   */
#define REDACTED "[redacted]"

struct srv {
	struct authmd_client *c;
	const struct agent_mcp_options *opt;
	bool initialized; /* initialize was answered */
};

struct rpc_fault {
	int code;
	char message[256];
};

static json_t *fault(struct rpc_fault *f, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Fills *f; returns NULL, so a failure reads: return fault(f, ...); */
static json_t *
fault(struct rpc_fault *f, int code, const char *fmt, ...)
{
	va_list ap;

	f->code = code;
	va_start(ap, fmt);
	vsnprintf(f->message, sizeof(f->message), fmt, ap);
	va_end(ap);
	return NULL;
}

/* ---- secrets and redaction ---- */

struct secrets {
	char **v;
	size_t n, cap;
};

static void
secrets_add(struct secrets *s, const char *v)
{
	if (v == NULL || strlen(v) < MIN_SECRET_LEN)
		return;
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->v[i], v) == 0)
			return;
	}
	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 8 : s->cap * 2;
		if ((s->v = realloc(s->v, s->cap * sizeof(*s->v))) == NULL)
			abort();
	}
	s->v[s->n++] = am_xstrdup(v);
}

/* Every secret this agent holds: the stored credentials, claim tokens and
 * provider sessions, and the session this server was started with. */
static void
secrets_collect(struct srv *s, struct secrets *out)
{
	struct authmd_credential *all = NULL;
	struct authmd_error e = {0};
	size_t n = 0;

	secrets_add(out, s->opt->session);
	if (authmd_credentials(s->c, &all, &n, &e) != AUTHMD_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		secrets_add(out, all[i].credential);
		secrets_add(out, all[i].claim_token);
		secrets_add(out, all[i].session);
		secrets_add(out, all[i].identity_assertion);
	}
	OPENSSL_cleanse(all, n * sizeof(*all));
	free(all);
}

static void
secrets_free(struct secrets *s)
{
	for (size_t i = 0; i < s->n; i++) {
		OPENSSL_cleanse(s->v[i], strlen(s->v[i]));
		free(s->v[i]);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* text with every secret of a and b replaced, or NULL when it holds none. */
static char *
redact_text(const char *text, const struct secrets *a, const struct secrets *b)
{
	const struct secrets *sets[2] = {a, b};
	struct am_buf out = {.secret = true};
	const char *p = text;
	bool any = false;

	while (*p != '\0') {
		size_t skip = 0;

		for (size_t k = 0; k < 2 && skip == 0; k++) {
			for (size_t i = 0; i < sets[k]->n && skip == 0; i++) {
				size_t n = strlen(sets[k]->v[i]);

				if (strncmp(p, sets[k]->v[i], n) == 0)
					skip = n;
			}
		}
		if (skip > 0) {
			am_buf_puts(&out, REDACTED);
			p += skip;
			any = true;
		} else {
			am_buf_add(&out, p++, 1);
		}
	}
	if (!any) {
		am_buf_free(&out);
		return NULL;
	}
	out.secret = false; /* what is left holds no secret */
	return am_buf_take(&out);
}

/* A copy of v (new reference) in which no string or key holds a secret. */
static json_t *
redacted(json_t *v, const struct secrets *a, const struct secrets *b)
{
	json_t *copy, *item;
	const char *key;
	char *clean;
	size_t i;

	if (json_is_string(v)) {
		if ((clean = redact_text(json_string_value(v), a, b)) == NULL)
			return json_incref(v);
		copy = json_string(clean);
		free(clean);
		return copy;
	}
	if (json_is_array(v)) {
		copy = json_array();
		json_array_foreach(v, i, item)
		{
			json_array_append_new(copy, redacted(item, a, b));
		}
		return copy;
	}
	if (json_is_object(v)) {
		copy = json_object();
		json_object_foreach(v, key, item)
		{
			clean = redact_text(key, a, b);
			json_object_set_new(copy, clean != NULL ? clean : key,
					    redacted(item, a, b));
			free(clean);
		}
		return copy;
	}
	return json_incref(v);
}

/* ---- tool results ---- */

/* A tools/call result: a summary for a person, the same data as JSON text
 * (for hosts that read only text content) and as structuredContent. Steals
 * structured. */
static json_t *
tool_result(json_t *structured, bool is_error, const char *summary)
{
	char *dump = json_dumps(structured, JSON_COMPACT | JSON_SORT_KEYS);
	json_t *content = json_array();

	if (summary != NULL)
		json_array_append_new(content,
				      json_pack("{s:s, s:s}", "type", "text", "text", summary));
	json_array_append_new(content,
			      json_pack("{s:s, s:s}", "type", "text", "text", dump ? dump : "{}"));
	free(dump);
	return json_pack("{s:o, s:o, s:b}", "content", content, "structuredContent", structured,
			 "isError", is_error);
}

/* A name for a failure the service gave no protocol code for. */
static const char *
status_code(enum authmd_status st)
{
	switch (st) {
	case AUTHMD_ERR_USAGE:
		return "invalid_request";
	case AUTHMD_ERR_NETWORK:
		return "temporarily_unavailable";
	case AUTHMD_ERR_ACTION_NEEDED:
		return "action_needed";
	case AUTHMD_ERR_STORE:
		return "credential_store_unusable";
	case AUTHMD_ERR_PROTOCOL:
		return "protocol_violation";
	default:
		return "failed";
	}
}

static json_t *
error_json(const struct authmd_error *e)
{
	return json_pack("{s:s, s:s, s:s?, s:i, s:b}", "code",
			 e->code[0] != '\0' ? e->code : status_code(e->status), "message",
			 e->message, "advice", e->advice, "http_status", e->http_status,
			 "person_must_act", e->status == AUTHMD_ERR_ACTION_NEEDED);
}

static json_t *
tool_error(const struct authmd_error *e)
{
	char summary[1024];

	snprintf(summary, sizeof(summary), "error %s: %s%s%s",
		 e->code[0] != '\0' ? e->code : status_code(e->status), e->message,
		 e->advice != NULL ? " — " : "", e->advice != NULL ? e->advice : "");
	return tool_result(json_pack("{s:o}", "error", error_json(e)), true, summary);
}

/* A failure found before the library was called, as a tool error. */
static json_t *
tool_refusal(enum authmd_status st, const char *code, const char *advice, const char *message)
{
	struct authmd_error e = {.status = st, .advice = advice};

	am_copy(e.code, sizeof(e.code), code);
	am_copy(e.message, sizeof(e.message), message);
	return tool_error(&e);
}

/* ---- tool arguments: one table gives the schema and the checks ---- */

enum ptype { P_STRING, P_HEADERS };

struct param {
	const char *name;
	enum ptype type;
	bool required;
	size_t max_len;
	const char *const *choices; /* NULL-terminated, or NULL */
	const char *description;
};

struct tool;
typedef json_t *(*tool_fn)(struct srv *s, const json_t *args, struct rpc_fault *f);

struct tool {
	const char *name, *title, *description;
	bool read_only, destructive, idempotent;
	const struct param *params; /* ends at a NULL name */
	tool_fn fn;
};

static const char *
arg(const json_t *args, const char *name)
{
	return json_string_value(json_object_get(args, name));
}

static json_t *
input_schema(const struct tool *t)
{
	json_t *props = json_object(), *required = json_array();

	for (const struct param *p = t->params; p->name != NULL; p++) {
		json_t *prop;

		if (p->type == P_HEADERS) {
			prop = json_pack("{s:s, s:s, s:{s:s, s:i}, s:i}", "type", "object",
					 "description", p->description, "additionalProperties",
					 "type", "string", "maxLength", AM_MAX_FIELD_BYTES,
					 "maxProperties", MAX_HEADERS);
		} else {
			prop = json_pack("{s:s, s:s, s:I}", "type", "string", "description",
					 p->description, "maxLength", (json_int_t)p->max_len);
			if (p->choices != NULL) {
				json_t *e = json_array();

				for (const char *const *c = p->choices; *c != NULL; c++)
					json_array_append_new(e, json_string(*c));
				json_object_set_new(prop, "enum", e);
			}
		}
		json_object_set_new(props, p->name, prop);
		if (p->required)
			json_array_append_new(required, json_string(p->name));
	}
	return json_pack("{s:s, s:o, s:o, s:b}", "type", "object", "properties", props, "required",
			 required, "additionalProperties", 0);
}

static bool
one_of(const char *v, const char *const *choices)
{
	for (const char *const *c = choices; *c != NULL; c++) {
		if (strcmp(v, *c) == 0)
			return true;
	}
	return false;
}

/* Whether args has the shapes t's schema gives; a fault says what is wrong. */
static bool
check_args(const struct tool *t, const json_t *args, struct rpc_fault *f)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)args, key, v)
	{
		const struct param *p = t->params;

		while (p->name != NULL && strcmp(p->name, key) != 0)
			p++;
		if (p->name == NULL) {
			fault(f, RPC_INVALID_PARAMS, "%s takes no argument \"%.64s\"", t->name,
			      key);
			return false;
		}
		if (p->type == P_STRING) {
			if (!json_is_string(v) ||
			    json_string_length(v) != strlen(json_string_value(v)) ||
			    json_string_length(v) > p->max_len) {
				fault(f, RPC_INVALID_PARAMS,
				      "%s: \"%s\" must be a string of at most %zu bytes", t->name,
				      p->name, p->max_len);
				return false;
			}
			if (p->choices != NULL && !one_of(json_string_value(v), p->choices)) {
				fault(f, RPC_INVALID_PARAMS,
				      "%s: \"%s\" is not one of the allowed values", t->name,
				      p->name);
				return false;
			}
		} else if (!json_is_object(v) || json_object_size(v) > MAX_HEADERS) {
			fault(f, RPC_INVALID_PARAMS,
			      "%s: \"%s\" must be an object of at most %d strings", t->name,
			      p->name, MAX_HEADERS);
			return false;
		}
	}
	for (const struct param *p = t->params; p->name != NULL; p++) {
		if (p->required && json_object_get(args, p->name) == NULL) {
			fault(f, RPC_INVALID_PARAMS, "%s needs \"%s\"", t->name, p->name);
			return false;
		}
	}
	return true;
}

/* ---- the tools ---- */

static json_t *
t_discover(struct srv *s, const json_t *args, struct rpc_fault *f)
{
	struct authmd_discovery d;
	struct authmd_error e = {0};
	char summary[512];

	(void)f;
	if (authmd_discover(s->c, arg(args, "url"), &d, &e) != AUTHMD_OK)
		return tool_error(&e);
	snprintf(summary, sizeof(summary),
		 "%.200s is protected by %.200s; it offers:%s%s%s. Next: authmd_register.",
		 d.resource, d.issuer, d.anonymous ? " anonymous" : "",
		 d.verified_email ? " email" : "", d.id_jag ? " provider" : "");
	return tool_result(agent_discovery_json(&d), false, summary);
}

static json_t *
t_register(struct srv *s, const json_t *args, struct rpc_fault *f)
{
	const char *url = arg(args, "url"), *method = arg(args, "method");
	const char *email = arg(args, "email"), *provider = arg(args, "provider");
	const char *consent_s = arg(args, "consent"), *type = arg(args, "credential_type");
	enum authmd_consent consent = AUTHMD_CONSENT_NONE;
	struct authmd_discovery d;
	struct authmd_credential cred;
	struct authmd_grant grant = {0};
	struct authmd_error e = {0};
	enum authmd_status st;
	char summary[1024];
	json_t *o;

	if ((strcmp(method, "email") == 0) != (email != NULL))
		return fault(
			f, RPC_INVALID_PARAMS,
			"authmd_register: \"email\" is needed with method email, and only there");
	if ((strcmp(method, "provider") == 0) != (provider != NULL))
		return fault(f, RPC_INVALID_PARAMS,
			     "authmd_register: \"provider\" is needed with "
			     "method provider, and only there");
	if (consent_s != NULL && provider == NULL)
		return fault(f, RPC_INVALID_PARAMS,
			     "authmd_register: \"consent\" is only for method provider");
	if (type != NULL && strcmp(method, "anonymous") == 0)
		return fault(f, RPC_INVALID_PARAMS,
			     "authmd_register: anonymous registrations always get an api_key");
	if (consent_s != NULL)
		consent = strcmp(consent_s, "always") == 0 ? AUTHMD_CONSENT_ALWAYS
							   : AUTHMD_CONSENT_ONCE;
	if (provider != NULL && s->opt->session == NULL)
		return tool_refusal(
			AUTHMD_ERR_ACTION_NEEDED, "provider_session_missing",
			"The person who set up this MCP server must give it the agent's "
			"provider session in the AUTHMD_SESSION environment variable.",
			"authmd mcp was started without a provider session");
	if (authmd_discover(s->c, url, &d, &e) != AUTHMD_OK)
		return tool_error(&e);
	if (provider != NULL)
		st = authmd_register_provider(s->c, &d, provider, s->opt->session, type, consent,
					      &grant, &cred, &e);
	else if (email != NULL)
		st = authmd_register_email(s->c, &d, email, type, &cred, &e);
	else
		st = authmd_register_anonymous(s->c, &d, &cred, &e);
	if (st == AUTHMD_ERR_ACTION_NEEDED && strcmp(e.code, "interaction_required") == 0) {
		/* v0.5 first link with a code: the account's owner confirms it */
		struct authmd_claim_attempt t;
		struct authmd_error e2 = {0};

		if (authmd_claim_code_attempt(s->c, d.resource, &t, &e2) == AUTHMD_OK) {
			snprintf(summary, sizeof(summary),
				 "The service holds this registration until the account's owner "
				 "confirms the link: show the user the page %.300s and the code %s "
				 "to type there, then call authmd_claim with url and poll.",
				 t.verification_uri, t.user_code);
			return tool_result(json_pack("{s:s, s:o}", "status", "interaction_required",
						     "claim_attempt", agent_attempt_json(&t)),
					   false, summary);
		}
	}
	if (st != AUTHMD_OK)
		return tool_error(&e);
	o = agent_credential_json(&cred);
	if (provider != NULL)
		json_object_set_new(o, "consent", agent_grant_json(&grant));
	if (email != NULL)
		snprintf(summary, sizeof(summary),
			 "Registered with %.200s. An email went to %.100s: ask the user for the "
			 "6-digit code it leads to, then call authmd_claim with url and otp.",
			 cred.resource, email);
	else if (cred.post_claim_scopes[0] != '\0' && cred.claim_token[0] != '\0')
		snprintf(summary, sizeof(summary),
			 "Registered with %.200s (scopes %.100s). Call authmd_fetch to use it. To "
			 "unlock %.100s the user can claim it: authmd_claim with url and the "
			 "user's email.",
			 cred.resource, cred.scopes, cred.post_claim_scopes);
	else
		snprintf(summary, sizeof(summary),
			 "Registered with %.200s (scopes %.100s)%s%s%s. Call authmd_fetch to use "
			 "it.",
			 cred.resource, cred.scopes,
			 provider == NULL ? ""
			 : grant.created  ? "; created the consent grant the user asked for: "
			 : grant.kept_as_is
				 ? "; used the user's existing grant unchanged (not widened): "
				 : "; used the user's existing consent grant: ",
			 provider != NULL ? grant.mode : "", provider != NULL ? " grant" : "");
	OPENSSL_cleanse(&cred, sizeof(cred));
	return tool_result(o, false, summary);
}

static const char *
claim_status_name(enum authmd_claim_status st)
{
	switch (st) {
	case AUTHMD_CLAIM_PENDING:
		return "authorization_pending";
	case AUTHMD_CLAIM_SLOW_DOWN:
		return "slow_down";
	case AUTHMD_CLAIM_CLAIMED:
		return "claimed";
	case AUTHMD_CLAIM_DENIED:
		return "access_denied";
	case AUTHMD_CLAIM_EXPIRED:
		return "expired_token";
	case AUTHMD_CLAIM_INVALID:
		return "invalid_grant";
	default:
		return "waiting";
	}
}

/* The v0.6 user_code ceremony: email starts an attempt (the code and page
 * for the user), poll "once" asks once, poll "wait" waits to the end. */
static json_t *
claim_v06(struct srv *s, const struct authmd_credential *cred, const char *email, const char *poll)
{
	struct authmd_claim_attempt t;
	struct authmd_credential after;
	struct authmd_error e = {0};
	enum authmd_claim_status got = AUTHMD_CLAIM_PENDING;
	char summary[1024];
	long interval = 0;
	json_t *o;

	if (email != NULL) {
		if (authmd_claim_code_start(s->c, cred->resource, email, &t, &e) != AUTHMD_OK)
			return tool_error(&e);
		snprintf(summary, sizeof(summary),
			 "Show the user this page and code: they open %.600s, sign in as %.100s "
			 "and type the code %s. Then call authmd_claim with url and poll "
			 "\"once\" (every %ld s) or \"wait\".",
			 t.verification_uri, email, t.user_code, t.interval);
		return tool_result(json_pack("{s:o}", "claim_attempt", agent_attempt_json(&t)),
				   false, summary);
	}
	memset(&after, 0, sizeof(after));
	if (strcmp(poll, "wait") == 0) {
		if (authmd_claim_code_wait(s->c, cred->resource, NULL, NULL, &after, &e) !=
		    AUTHMD_OK)
			return tool_error(&e);
		got = AUTHMD_CLAIM_CLAIMED;
	} else if (authmd_claim_code_poll(s->c, cred->resource, &got, &interval, &after, &e) !=
		   AUTHMD_OK) {
		return tool_error(&e);
	}
	if (got == AUTHMD_CLAIM_DENIED || got == AUTHMD_CLAIM_EXPIRED ||
	    got == AUTHMD_CLAIM_INVALID)
		return tool_error(&e);
	if (got == AUTHMD_CLAIM_CLAIMED) {
		snprintf(summary, sizeof(summary), "Claimed: %.200s now has scopes %.200s.",
			 after.resource, after.scopes);
		o = agent_credential_json(&after);
		OPENSSL_cleanse(&after, sizeof(after));
	} else {
		snprintf(summary, sizeof(summary),
			 "The user has not entered the code yet (%s). Call authmd_claim with url "
			 "and poll \"once\" again in %ld s.",
			 claim_status_name(got), interval);
		o = json_pack("{s:s, s:s, s:I}", "resource", cred->resource, "status",
			      claim_status_name(got), "interval", (json_int_t)interval);
	}
	return tool_result(o, false, summary);
}

static json_t *
t_claim(struct srv *s, const json_t *args, struct rpc_fault *f)
{
	const char *url = arg(args, "url"), *email = arg(args, "email"), *otp = arg(args, "otp");
	const char *poll = arg(args, "poll");
	struct authmd_credential cred;
	struct authmd_error e = {0};
	char summary[512];

	if ((email != NULL) + (otp != NULL) + (poll != NULL) != 1)
		return fault(f, RPC_INVALID_PARAMS,
			     "authmd_claim takes one of \"email\" (to start), \"otp\" (to "
			     "complete a v0.1 claim) or \"poll\" (a v0.6 claim)");
	if (authmd_credential_for(s->c, url, &cred, &e) != AUTHMD_OK)
		return tool_error(&e);
	if (strcmp(cred.protocol, "v0.6") == 0 && otp == NULL) {
		json_t *r = claim_v06(s, &cred, email, poll);

		OPENSSL_cleanse(&cred, sizeof(cred));
		return r;
	}
	if (poll != NULL) {
		OPENSSL_cleanse(&cred, sizeof(cred));
		return tool_refusal(AUTHMD_ERR_USAGE, "invalid_request",
				    "Call authmd_claim with url and email, then with the otp the "
				    "user reads from the email.",
				    "this registration is v0.1: its claim is completed with the "
				    "mailed code, not polled");
	}
	if (email != NULL) {
		json_t *o;

		if (authmd_claim_start(s->c, cred.resource, email, &e) != AUTHMD_OK) {
			OPENSSL_cleanse(&cred, sizeof(cred));
			return tool_error(&e);
		}
		o = json_pack("{s:s, s:s, s:s}", "resource", cred.resource, "claim_state",
			      "pending", "email", email);
		snprintf(summary, sizeof(summary),
			 "An email went to %.100s. Ask the user to open it, press the button, "
			 "and tell you the 6-digit code; then call authmd_claim with url and otp.",
			 email);
		OPENSSL_cleanse(&cred, sizeof(cred));
		return tool_result(o, false, summary);
	}
	if (authmd_claim_complete(s->c, cred.resource, otp, &cred, &e) != AUTHMD_OK) {
		OPENSSL_cleanse(&cred, sizeof(cred));
		return tool_error(&e);
	}
	snprintf(summary, sizeof(summary), "Claimed: %.200s now has scopes %.200s.", cred.resource,
		 cred.scopes);
	{
		json_t *o = agent_credential_json(&cred);

		OPENSSL_cleanse(&cred, sizeof(cred));
		return tool_result(o, false, summary);
	}
}

static bool
header_name_ok(const char *name)
{
	if (*name == '\0')
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
	}
	return strcasecmp(name, "authorization") != 0 &&
	       strcasecmp(name, "proxy-authorization") != 0 && strcasecmp(name, "host") != 0;
}

static json_t *
t_fetch(struct srv *s, const json_t *args, struct rpc_fault *f)
{
	const char *url = arg(args, "url"), *body = arg(args, "body"),
		   *method = arg(args, "method");
	const json_t *hdrs = json_object_get(args, "headers");
	char *lines[MAX_HEADERS + 1] = {0};
	struct authmd_response r;
	struct authmd_error e = {0};
	json_t *o, *doc, *v, *result = NULL;
	const char *key;
	char summary[768];
	size_t n = 0;

	if (method == NULL)
		method = body != NULL ? "POST" : "GET";
	json_object_foreach((json_t *)hdrs, key, v)
	{
		const char *val = json_string_value(v);

		if (!header_name_ok(key) || val == NULL || strpbrk(val, "\r\n") != NULL ||
		    json_string_length(v) != strlen(val) || strlen(val) > AM_MAX_FIELD_BYTES) {
			fault(f, RPC_INVALID_PARAMS,
			      "authmd_fetch: header \"%.64s\" is not allowed (names are letters, "
			      "digits and dashes; no Authorization or Host; values one line)",
			      key);
			goto out;
		}
		{
			size_t cap = strlen(key) + strlen(val) + 3;

			lines[n] = am_xmalloc(cap);
			snprintf(lines[n++], cap, "%s: %s", key, val);
		}
	}
	if (authmd_request(s->c, method, url, (const char *const *)lines, body, &r, &e) !=
	    AUTHMD_OK) {
		result = tool_error(&e);
		goto out;
	}
	doc = r.len > 0 ? json_loadb(r.body, r.len, 0, NULL) : NULL;
	if (doc == NULL && r.len > 0 && (doc = json_stringn(r.body, r.len)) == NULL)
		doc = json_sprintf("(%zu bytes that are not UTF-8 text, not shown)", r.len);
	o = json_pack("{s:i, s:s, s:o}", "status", r.status, "content_type", r.content_type, "body",
		      doc != NULL ? doc : json_string(""));
	if (e.message[0] != '\0')
		json_object_set_new(o, "error", error_json(&e));
	snprintf(summary, sizeof(summary), "HTTP %d%s%s%s%s", r.status,
		 e.message[0] != '\0' ? ": " : "", e.message[0] != '\0' ? e.message : "",
		 e.advice != NULL ? " — " : "", e.advice != NULL ? e.advice : "");
	result = tool_result(o, r.status >= 400, summary);
	authmd_response_clear(&r);
out:
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	return result;
}

static json_t *
t_status(struct srv *s, const json_t *args, struct rpc_fault *f)
{
	struct authmd_credential *all = NULL;
	struct authmd_error e = {0};
	json_t *list;
	char summary[128];
	size_t n = 0;

	(void)args, (void)f;
	if (authmd_credentials(s->c, &all, &n, &e) != AUTHMD_OK)
		return tool_error(&e);
	list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, agent_credential_json(&all[i]));
	OPENSSL_cleanse(all, n * sizeof(*all));
	free(all);
	snprintf(summary, sizeof(summary), "%zu service%s registered.", n, n == 1 ? "" : "s");
	return tool_result(json_pack("{s:o}", "credentials", list), false, summary);
}

static const char *const methods[] = {"anonymous", "email", "provider", NULL};
static const char *const consents[] = {"once", "always", NULL};
static const char *const cred_types[] = {"api_key", "access_token", NULL};
static const char *const polls[] = {"once", "wait", NULL};
static const char *const http_methods[] = {"GET",   "HEAD",   "POST",	 "PUT",
					   "PATCH", "DELETE", "OPTIONS", NULL};

#define URL_PARAM(what)                                                                            \
	{                                                                                          \
		"url", P_STRING, true, AUTHMD_URL_MAX - 1, NULL, what                              \
	}

static const struct param p_discover[] = {
	URL_PARAM("Any absolute http(s) URL of the API, e.g. the endpoint you want to call."),
	{NULL, P_STRING, false, 0, NULL, NULL},
};

static const struct param p_register[] = {
	URL_PARAM("Any absolute http(s) URL of the API to register with."),
	{"method", P_STRING, true, 16, methods,
	 "How to register. \"anonymous\": no identity, a credential at once with the "
	 "service's anonymous scopes; needs no person. \"email\": asserts the user's email "
	 "address; the credential comes after the user gives you the code from the email "
	 "(authmd_claim). \"provider\": asserts the user's identity through their agent "
	 "provider (an ID-JAG); needs consent. Use email or provider only with the user's "
	 "agreement."},
	{"email", P_STRING, false, AM_MAX_EMAIL_BYTES, NULL,
	 "With method email only: the user's own email address, as they gave it to you."},
	{"provider", P_STRING, false, AUTHMD_URL_MAX - 1, NULL,
	 "With method provider only: the agent provider's base URL."},
	{"consent", P_STRING, false, 16, consents,
	 "With method provider only. Leave it out unless the user has told you, in this "
	 "conversation, to give consent for this service at their provider: \"once\" for this "
	 "registration only, \"always\" until they withdraw it. Without it an existing grant "
	 "of the user's is used and none is ever created; an existing grant is never widened."},
	{"credential_type", P_STRING, false, 16, cred_types,
	 "With method email or provider: \"api_key\" or \"access_token\" (the default is "
	 "api_key for email, access_token for provider)."},
	{NULL, P_STRING, false, 0, NULL, NULL},
};

static const struct param p_claim[] = {
	URL_PARAM("A URL of the API whose stored registration is to be claimed."),
	{"email", P_STRING, false, AM_MAX_EMAIL_BYTES, NULL,
	 "Step 1, for an anonymous registration: the user's email address. The service emails "
	 "them a link. Give either email or otp, not both."},
	{"otp", P_STRING, false, 32, NULL,
	 "Step 2 of a v0.1 claim (the result of step 1 says which kind): the 6-digit code the "
	 "user read after opening the email's link. Ask the user for it; never guess. A wrong "
	 "code gives error otp_invalid: ask again."},
	{"poll", P_STRING, false, 8, polls,
	 "Step 2 of a v0.6 claim, after step 1 gave a code and a page to show the user: "
	 "\"once\" asks whether the user has entered the code (call again after the interval "
	 "it returns), \"wait\" waits until the claim ends (up to the code's lifetime)."},
	{NULL, P_STRING, false, 0, NULL, NULL},
};

static const struct param p_fetch[] = {
	URL_PARAM("The absolute http(s) URL to call; the stored credential of the service it "
		  "belongs to is sent with it."),
	{"method", P_STRING, false, 8, http_methods,
	 "The HTTP method; GET by default, POST when a body is given."},
	{"body", P_STRING, false, AM_MAX_MCP_MESSAGE_BYTES, NULL,
	 "A JSON request body, as text (sent as application/json)."},
	{"headers", P_HEADERS, false, 0, NULL,
	 "Extra request headers, name to value. Authorization and Host are set by authmd and "
	 "may not be given."},
	{NULL, P_STRING, false, 0, NULL, NULL},
};

static const struct param p_status[] = {
	{NULL, P_STRING, false, 0, NULL, NULL},
};

static const struct tool tools[] = {
	{"authmd_discover", "Discover how to register with an API",
	 "Finds out how an agent can register with the API behind a URL (auth.md): the "
	 "protected resource, its authorization server, the registration methods offered "
	 "(anonymous, email, provider) and the scopes. Sends no credential. Call it first.",
	 true, false, true, p_discover, t_discover},
	{"authmd_register", "Register with an API and store the credential",
	 "Registers this agent with the API behind a URL and stores the credential it gets; "
	 "you never see the credential, authmd_fetch uses it. Check with authmd_discover which "
	 "methods the service offers. Errors carry the service's error code and advice.",
	 false, false, false, p_register, t_register},
	{"authmd_claim", "Claim a registration for the user",
	 "Ties a registration to the user, which unlocks more scopes (anonymous) or the "
	 "credential itself (email). Start with the user's email. A v0.1 registration: the "
	 "user opens the email, presses its button and reads a 6-digit code; complete with "
	 "that code as otp. A v0.6 registration: the result has a code and a page to show the "
	 "user, who signs in there and types the code; then poll.",
	 false, false, false, p_claim, t_claim},
	{"authmd_fetch", "Call the API with the stored credential",
	 "Sends an HTTP request with the stored credential for the URL's service and returns "
	 "the status and body. 5xx and 429 are retried as AUTH.md says (a POST or PATCH is "
	 "never sent twice); a revoked credential is dropped and, when the user's consent still "
	 "stands, replaced by itself. A 4xx comes back as an error with the protocol's code "
	 "(insufficient_scope: a claim may grant the scope).",
	 false, true, false, p_fetch, t_fetch},
	{"authmd_status", "List the stored registrations",
	 "Lists the services this agent has registered with: method, scopes, claim state and "
	 "whether a credential is held (never the credential itself).",
	 true, false, true, p_status, t_status},
};

/* ---- JSON-RPC ---- */

static const char *const instructions =
	"These tools get and use credentials for APIs that publish auth.md. Call "
	"authmd_discover with a URL of the API, then authmd_register (anonymous needs no person; "
	"email and provider assert the user's identity: only with the user's agreement), then "
	"authmd_fetch, which sends the stored credential; you never see it. When a result says a "
	"person must act (a code from an email, consent at the provider), ask the user.";

static json_t *
m_initialize(struct srv *s, const json_t *params, struct rpc_fault *f)
{
	const char *want = json_string_value(json_object_get(params, "protocolVersion"));
	const char *client =
		json_string_value(json_object_get(json_object_get(params, "clientInfo"), "name"));

	if (want == NULL)
		return fault(f, RPC_INVALID_PARAMS, "initialize needs params.protocolVersion");
	s->initialized = true;
	fprintf(stderr, "authmd mcp: initialize client=\"%.64s\" protocol=%.32s answered=%s\n",
		client != NULL ? client : "", want, AGENT_MCP_PROTOCOL);
	/* One revision is spoken; a client that asked for another decides
	 * whether it can use this one (MCP lifecycle, version negotiation). */
	return json_pack("{s:s, s:{s:{s:b}}, s:{s:s, s:s, s:s}, s:s}", "protocolVersion",
			 AGENT_MCP_PROTOCOL, "capabilities", "tools", "listChanged", 0,
			 "serverInfo", "name", "authmd", "title", "authmd (auth.md agent)",
			 "version", s->opt->version != NULL ? s->opt->version : "dev",
			 "instructions", instructions);
}

static json_t *
m_tools_list(void)
{
	json_t *list = json_array();

	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
		const struct tool *t = &tools[i];

		json_array_append_new(
			list,
			json_pack("{s:s, s:s, s:s, s:o, s:{s:s, s:b, s:b, s:b, s:b}}", "name",
				  t->name, "title", t->title, "description", t->description,
				  "inputSchema", input_schema(t), "annotations", "title", t->title,
				  "readOnlyHint", t->read_only, "destructiveHint", t->destructive,
				  "idempotentHint", t->idempotent, "openWorldHint", 1));
	}
	return json_pack("{s:o}", "tools", list);
}

static json_t *
m_tools_call(struct srv *s, const json_t *params, struct secrets *pre, struct rpc_fault *f)
{
	const char *name = json_string_value(json_object_get(params, "name"));
	json_t *args = json_object_get(params, "arguments"), *empty = NULL, *result;
	const struct tool *t = NULL;

	if (name == NULL)
		return fault(f, RPC_INVALID_PARAMS, "tools/call needs params.name");
	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]) && t == NULL; i++) {
		if (strcmp(tools[i].name, name) == 0)
			t = &tools[i];
	}
	if (t == NULL)
		return fault(f, RPC_INVALID_PARAMS, "unknown tool \"%.64s\"", name);
	if (args == NULL || json_is_null(args))
		args = empty = json_object();
	if (!json_is_object(args)) {
		json_decref(empty);
		return fault(f, RPC_INVALID_PARAMS, "params.arguments must be an object");
	}
	if (!check_args(t, args, f)) {
		json_decref(empty);
		return NULL;
	}
	fprintf(stderr, "authmd mcp: tools/call name=%s\n", t->name);
	/* A credential that this call drops (revoked) must still be kept out
	 * of its answer: the secrets of before are redacted too. */
	secrets_collect(s, pre);
	result = t->fn(s, args, f);
	json_decref(empty);
	return result;
}

static json_t *
rpc_error(const json_t *id, int code, const char *message)
{
	return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id",
			 id != NULL ? id : json_null(), "error", "code", code, "message", message);
}

/* The answer to one message (new reference), or NULL for none. */
static json_t *
handle(struct srv *s, const char *text, size_t len, struct secrets *pre)
{
	json_error_t je;
	json_t *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je), *id, *params;
	json_t *result = NULL, *reply;
	struct rpc_fault f = {RPC_INVALID_REQUEST, "invalid request"};
	const char *method, *version;

	if (msg == NULL) {
		snprintf(f.message, sizeof(f.message), "parse error: %.160s (column %d)", je.text,
			 je.column);
		return rpc_error(NULL, RPC_PARSE_ERROR, f.message);
	}
	if (json_is_array(msg)) {
		json_decref(msg);
		return rpc_error(
			NULL, RPC_INVALID_REQUEST,
			"batches are not supported (MCP 2025-06-18): one message per line");
	}
	id = json_object_get(msg, "id");
	if (!json_is_object(msg) || (id != NULL && !json_is_string(id) && !json_is_integer(id))) {
		json_decref(msg);
		return rpc_error(NULL, RPC_INVALID_REQUEST,
				 "a message is an object whose id is a string or an integer");
	}
	version = json_string_value(json_object_get(msg, "jsonrpc"));
	method = json_string_value(json_object_get(msg, "method"));
	params = json_object_get(msg, "params");
	if (version == NULL || strcmp(version, "2.0") != 0) {
		fault(&f, RPC_INVALID_REQUEST, "jsonrpc must be \"2.0\"");
	} else if (method == NULL) {
		/* A response to a request we never send: nothing to answer. */
		if (id != NULL && (json_object_get(msg, "result") != NULL ||
				   json_object_get(msg, "error") != NULL)) {
			json_decref(msg);
			return NULL;
		}
		fault(&f, RPC_INVALID_REQUEST, "method must be a string");
	} else if (id == NULL) {
		/* A notification is never answered, not even when unknown. */
		if (strcmp(method, "notifications/initialized") == 0)
			fprintf(stderr, "authmd mcp: the client is initialized\n");
		json_decref(msg);
		return NULL;
	} else if (params != NULL && !json_is_object(params)) {
		fault(&f, RPC_INVALID_PARAMS, "params must be an object");
	} else if (strcmp(method, "initialize") == 0) {
		result = m_initialize(s, params, &f);
	} else if (strcmp(method, "ping") == 0) {
		result = json_object();
	} else if (strcmp(method, "tools/list") == 0 || strcmp(method, "tools/call") == 0) {
		if (!s->initialized)
			fault(&f, RPC_INVALID_REQUEST, "send initialize first");
		else if (method[6] == 'l')
			result = m_tools_list();
		else
			result = m_tools_call(s, params, pre, &f);
	} else {
		fault(&f, RPC_METHOD_NOT_FOUND, "method not found: %.64s", method);
	}
	if (result != NULL)
		reply = json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result);
	else
		reply = rpc_error(id, f.code, f.message);
	json_decref(msg);
	return reply;
}

/* Writes msg as one line, with every secret held before (pre) or now
 * redacted. */
static bool
send_msg(struct srv *s, FILE *out, json_t *msg, const struct secrets *pre)
{
	struct secrets now = {0};
	json_t *clean;
	char *text;
	bool ok;

	secrets_collect(s, &now);
	clean = redacted(msg, pre, &now);
	secrets_free(&now);
	text = json_dumps(clean, JSON_COMPACT);
	json_decref(clean);
	if (text == NULL)
		return false;
	ok = fputs(text, out) >= 0 && fputc('\n', out) != EOF && fflush(out) == 0;
	free(text);
	return ok;
}

/* One line of in into b, without its end: 1 a line, 0 end of input, -1 a
 * line over the cap (read to its end and dropped). */
static int
read_line(FILE *in, struct am_buf *b)
{
	bool any = false, over = false;
	int ch;

	b->len = 0;
	while ((ch = getc(in)) != EOF) {
		char c = (char)ch;

		any = true;
		if (c == '\n')
			break;
		if (over)
			continue;
		if (b->len >= AM_MAX_MCP_MESSAGE_BYTES) {
			over = true;
			continue;
		}
		am_buf_add(b, &c, 1);
	}
	if (!any)
		return 0;
	if (over)
		return -1;
	if (b->len > 0 && b->data[b->len - 1] == '\r')
		b->len--;
	return 1;
}

int
agent_mcp_serve(struct authmd_client *c, const struct agent_mcp_options *opt, FILE *in, FILE *out)
{
	struct srv s = {c, opt, false};
	struct am_buf line = {.secret = true}; /* a line may hold a code */
	int got, rc = 0;

	signal(SIGPIPE, SIG_IGN); /* a host that went away ends us at the next write */
	while ((got = read_line(in, &line)) != 0) {
		struct secrets pre = {0};
		json_t *reply;
		size_t i = 0;

		if (got < 0) {
			char msg[96];

			snprintf(msg, sizeof(msg),
				 "message too large: the limit is %d bytes a line",
				 AM_MAX_MCP_MESSAGE_BYTES);
			reply = rpc_error(NULL, RPC_INVALID_REQUEST, msg);
		} else {
			while (i < line.len && (line.data[i] == ' ' || line.data[i] == '\t'))
				i++;
			if (i == line.len)
				continue; /* a blank line is no message */
			reply = handle(&s, line.data, line.len, &pre);
		}
		if (line.data != NULL)
			OPENSSL_cleanse(line.data, line.len);
		if (reply != NULL && !send_msg(&s, out, reply, &pre))
			rc = 1;
		json_decref(reply);
		secrets_free(&pre);
		if (rc != 0)
			break;
	}
	am_buf_free(&line);
	return rc;
}
