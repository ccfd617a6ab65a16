/* The page framework (page.h). */
#include "service/page.h"

#include <stdio.h>

#include "trust/cimd.h"

/* Served as a file of its own so that the CSP needs no 'unsafe-inline'. */
static const char css[] =
	"*{box-sizing:border-box}"
	"body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:34em;"
	"margin:0 auto;padding:1.5em 1em;line-height:1.5;color:#1b1b1b;background:#fff}"
	"header{color:#555;font-size:.95em;margin-bottom:1em}"
	"h1{font-size:1.5em;margin:.2em 0 .6em}"
	"label{display:block;margin:.8em 0 .3em;font-weight:600}"
	"input[type=email],input[type=text]{width:100%;font-size:1.1em;padding:.55em;"
	"border:1px solid #888;border-radius:4px}"
	"input.code{font-family:monospace;letter-spacing:.3em;font-size:1.4em;max-width:10em}"
	"button{font-size:1.05em;padding:.6em 1.3em;margin:.8em .4em .2em 0;border-radius:4px;"
	"border:1px solid #1d4ed8;background:#1d4ed8;color:#fff;cursor:pointer}"
	"button.secondary{background:#fff;color:#1d4ed8}"
	"button.danger{background:#fff;color:#b91c1c;border-color:#b91c1c}"
	".code{font-size:2.6em;letter-spacing:.2em;font-family:monospace;margin:.5em 0}"
	".muted{color:#555;font-size:.95em}"
	".error{color:#b91c1c;font-weight:600}"
	"form.inline{display:inline}"
	"@media (prefers-color-scheme:dark){body{background:#111;color:#eee}"
	".muted,header{color:#aaa}input{background:#222;color:#eee}}";

void
page_begin(struct am_buf *b, const struct am_config *cfg, const char *title)
{
	am_buf_puts(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
		       "<meta name=\"robots\" content=\"noindex\"><title>");
	am_buf_html(b, title);
	am_buf_puts(b, " - ");
	am_buf_html(b, cfg->resource_name);
	am_buf_puts(b, "</title><link rel=\"stylesheet\" href=\"" PAGE_CSS_PATH
		       "\"></head><body><header>");
	am_buf_html(b, cfg->resource_name);
	am_buf_puts(b, "</header><main><h1>");
	am_buf_html(b, title);
	am_buf_puts(b, "</h1>");
}

void
page_para(struct am_buf *b, const char *cls, const char *text)
{
	am_buf_puts(b, "<p");
	if (cls != NULL) {
		am_buf_puts(b, " class=\"");
		am_buf_html(b, cls);
		am_buf_puts(b, "\"");
	}
	am_buf_puts(b, ">");
	am_buf_html(b, text);
	am_buf_puts(b, "</p>");
}

void
page_headers(struct http_resp *rs, const char *img_origin)
{
	char csp[CIMD_URL_BYTES + 200];

	/* Pages and their URLs may carry one-time tokens: kept out of caches,
	 * Referer headers and frames. */
	http_add_header(rs, "Cache-Control", "no-store");
	http_add_header(rs, "Referrer-Policy", "no-referrer");
	snprintf(csp, sizeof(csp),
		 "default-src 'none'; style-src 'self'; %s%s%sform-action 'self'; "
		 "frame-ancestors 'none'; base-uri 'none'",
		 img_origin != NULL ? "img-src " : "", img_origin != NULL ? img_origin : "",
		 img_origin != NULL ? "; " : "");
	http_add_header(rs, "Content-Security-Policy", csp);
	http_add_header(rs, "X-Frame-Options", "DENY");
}

void
page_send(struct http_resp *rs, int status, struct am_buf *b, const char *img_origin)
{
	am_buf_puts(b, "</main></body></html>\n");
	http_reply_text(rs, status, "text/html; charset=utf-8", b->data, b->len);
	page_headers(rs, img_origin);
	am_buf_free(b);
}

enum am_err
page_error(const struct am_config *cfg, struct http_resp *rs, enum am_err code,
	   const struct am_error *e, const char *title)
{
	struct am_buf b = {0};
	const char *msg =
		e->detail[0] != '\0' && code != AM_E_INTERNAL ? e->detail : am_err_message(code);

	page_begin(&b, cfg, title != NULL ? title : "Something went wrong");
	page_para(&b, NULL, msg);
	am_buf_puts(&b, "<p class=\"muted\">Error code: ");
	am_buf_html(&b, am_err_name(code));
	am_buf_puts(&b, "</p>");
	page_send(rs, am_err_status(code), &b, NULL);
	if (e->retry_after > 0 && (code == AM_E_RATE_LIMITED || code == AM_E_UNAVAILABLE)) {
		char ra[24];

		snprintf(ra, sizeof(ra), "%ld", e->retry_after);
		http_add_header(rs, "Retry-After", ra);
	}
	return AM_OK;
}

void
page_redirect(struct http_resp *rs, const char *location)
{
	http_reply_text(rs, 303, "text/plain; charset=utf-8", "", 0);
	http_add_header(rs, "Location", location);
	page_headers(rs, NULL);
}

enum am_err
h_page_css(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	(void)app;
	(void)rq;
	(void)e;
	http_reply_text(rs, 200, "text/css; charset=utf-8", css, sizeof(css) - 1);
	http_add_header(rs, "Cache-Control", "public, max-age=3600");
	return AM_OK;
}
