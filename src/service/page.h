/* The HTML pages of the service (sign-in, the claim views): one layout that
 * reads on a phone, every inserted value escaped, a static stylesheet and a
 * strict Content-Security-Policy (no script at all, styles from
 * PAGE_CSS_PATH only, forms post to this origin only, no framing), and no
 * caching, sniffing or Referer. Usable without JavaScript. */
#ifndef AM_SERVICE_PAGE_H
#define AM_SERVICE_PAGE_H

#include "core/config.h"
#include "core/errors.h"
#include "core/str.h"
#include "http/http.h"

#define PAGE_CSS_PATH "/static/authmd.css"

/* Starts a page titled title (escaped) in b: the head, the stylesheet
 * link, the site name and the <h1>. */
void page_begin(struct am_buf *b, const struct am_config *cfg, const char *title);
/* Appends <p class="cls">text</p> with text escaped (cls NULL: none). */
void page_para(struct am_buf *b, const char *cls, const char *text);
/* Ends the page and makes it rs's answer with status and the page headers.
 * img_origin (NULL: none) is the one origin images may load from. Frees b
 * (wiped when it is a secret buffer). */
void page_send(struct http_resp *rs, int status, struct am_buf *b, const char *img_origin);
/* An error page for code with the error table's status: e's detail (the
 * table's message for AM_E_INTERNAL) and the code's name. title NULL:
 * "Something went wrong". Returns AM_OK (the page is the answer). */
enum am_err page_error(const struct am_config *cfg, struct http_resp *rs, enum am_err code,
		       const struct am_error *e, const char *title);
/* 303 See Other to location (a same-origin path the caller checked), with
 * the page headers. */
void page_redirect(struct http_resp *rs, const char *location);
/* Adds the headers every page answer carries (CSP, no-store, no Referer,
 * no framing) to rs; page_send and page_redirect call it. */
void page_headers(struct http_resp *rs, const char *img_origin);

/* GET PAGE_CSS_PATH: the stylesheet of every page. */
enum am_err h_page_css(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);

#endif
