/*
 * verdict - per-recipient outcomes into replies and the one log line per message
 *
 * See verdict.h. Every reply carries the mail id, so a postmaster can go from
 * the MTA's log ("... said: 250 2.0.0 id=...") to ours in one grep.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stats.h"
#include "verdict.h"
#include "util/esc.h"
#include "util/xalloc.h"

/* verdict_name - the word for a verdict in logs */
const char *
verdict_name(enum verdict v)
{
	switch (v) {
	case VERDICT_PASS: return "pass";
	case VERDICT_DISCARD: return "discard";
	case VERDICT_QUARANTINE: return "quarantine";
	case VERDICT_REJECT: return "reject";
	case VERDICT_TEMPFAIL: return "tempfail";
	}
	return "?";
}

/* split_reply - the enhanced code and the text of "250 2.0.0 text" */
static const char *
split_reply(const struct recipient *r, char *enh, size_t enh_size)
{
	const char *p = r->reply ? r->reply : "";
	int a, b, c, n = 0;

	if (strlen(p) >= 4)
		p += 4;
	else
		p = "";
	if (sscanf(p, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 && a == r->code / 100 &&
	    (p[n] == ' ' || p[n] == '\0')) {
		snprintf(enh, enh_size, "%d.%d.%d", a, b, c);
		p += n;
		while (*p == ' ')
			p++;
	} else
		snprintf(enh, enh_size, "%d.0.0", r->code / 100);
	return p;
}

/* verdict_reply_for - our reply line (with CRLF) for one recipient's outcome */
void
verdict_reply_for(const struct message *m, const struct recipient *r, struct buf *out)
{
	char enh[32];
	const char *text;

	if (r->code == 0) {	/* no outcome recorded: never a silent success */
		buf_appendf(out, "451 4.3.0 id=%s, internal error: no outcome\r\n", m->id);
		return;
	}
	text = split_reply(r, enh, sizeof(enh));
	if (r->code / 100 == 2 && !r->own_reply)
		buf_appendf(out, "%d %s id=%s, from MTA: %s\r\n", r->code, enh, m->id, r->reply);
	else
		buf_appendf(out, "%d %s id=%s, %s\r\n", r->code, enh, m->id, text);
}

/* verdict_smtp_reply - the one reply for all recipients (SMTP mode) */
void
verdict_smtp_reply(const struct message *m, struct buf *out)
{
	const struct recipient *temp = NULL, *ok = NULL, *perm = NULL;

	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct recipient *r = &m->rcpts[i];

		/* a copy the policy added (bcc) has no reply of its own, but its
		 * deferral defers the message: the copy must not be lost either */
		if ((r->code == 0 || r->code / 100 == 4) && temp == NULL)
			temp = r;
		else if (r->added)
			continue;
		else if (r->code / 100 == 2 && ok == NULL)
			ok = r;
		else if (r->code / 100 == 5 && perm == NULL)
			perm = r;
	}
	verdict_reply_for(m, temp ? temp : ok ? ok : perm, out);
}

/* result_of - "passed", "deferred", "rejected" or "partial" across recipients */
static const char *
result_of(const struct message *m)
{
	size_t ok = 0, temp = 0, perm = 0;

	size_t n = 0;

	for (size_t i = 0; i < m->nrcpts; i++) {
		if (m->rcpts[i].added)
			continue;
		n++;
		ok += m->rcpts[i].code / 100 == 2;
		temp += m->rcpts[i].code == 0 || m->rcpts[i].code / 100 == 4;
		perm += m->rcpts[i].code / 100 == 5;
	}
	if (ok == n)
		return "passed";
	if (temp == n)
		return "deferred";
	if (perm == n)
		return "rejected";
	return "partial";
}

/* append_list - ",<a>,<b>" of recipients, escaped; only refused ones if refused_only */
static void
append_rcpts(struct buf *line, const struct message *m, bool refused_only)
{
	bool first = true;

	for (size_t i = 0; i < m->nrcpts; i++) {
		char *e;

		if (m->rcpts[i].added || (refused_only && m->rcpts[i].code / 100 != 5))
			continue;
		e = esc_logs(m->rcpts[i].addr);
		buf_appendf(line, "%s<%s>", first ? "" : ",", e);
		free(e);
		first = false;
	}
}

/* verdict_summary - the policy's verdict: one name, or "mixed" */
static const char *
verdict_summary(const struct message *m)
{
	const char *first = NULL;

	for (size_t i = 0; i < m->nrcpts; i++) {
		const char *v = verdict_name(m->rcpts[i].verdict);

		if (m->rcpts[i].added)
			continue;
		if (first == NULL)
			first = v;
		else if (strcmp(first, v) != 0)
			return "mixed";
	}
	return first ? first : "pass";
}

/* append_hits - " score=S hits=a,b" when a policy ran */
static void
append_policy(struct buf *line, const struct message *m)
{
	if (!m->policy_ran)
		return;
	buf_appendf(line, " score=%.3f hits=", m->score);
	for (size_t i = 0; i < m->nhits; i++) {
		char *e = esc_logs(m->hits[i].rule);

		buf_appendf(line, "%s%s", i ? "," : "", e);
		free(e);
	}
	if (m->nhits == 0)
		buf_appends(line, "-");
	if (m->quarantined != NULL) {
		char *e = esc_logs(m->quarantined);

		buf_appendf(line, " quarantine=%s", e);
		free(e);
	}
}

/* json_str - "key":"value" (value escaped), with a leading comma unless first */
static void
json_str(struct buf *b, const char *key, const char *value)
{
	buf_appendf(b, "%s\"%s\":\"", b->len ? "," : "", key);
	esc_json(b, value ? value : "");
	buf_appends(b, "\"");
}

/* json_rcpts - ,"key":["a","b"] of recipients (added copies aside); only refused ones if refused_only */
static void
json_rcpts(struct buf *b, const char *key, const struct message *m, bool refused_only)
{
	bool first = true;

	buf_appendf(b, ",\"%s\":[", key);
	for (size_t i = 0; i < m->nrcpts; i++) {
		if (m->rcpts[i].added || (refused_only && m->rcpts[i].code / 100 != 5))
			continue;
		buf_appends(b, first ? "\"" : ",\"");
		esc_json(b, m->rcpts[i].addr);
		buf_appends(b, "\"");
		first = false;
	}
	buf_appends(b, "]");
}

/* verdict_log_json - the summary as a JSON object's fields (log_format = "json") */
static void
verdict_log_json(const struct listener_cfg *lc, const struct client *c, const struct message *m,
		 const char *reply, const char *result)
{
	struct buf b;

	buf_init(&b, 0);
	json_str(&b, "event", "msg");
	json_str(&b, "listener", lc->name);
	json_str(&b, "id", m->id);
	json_str(&b, "client", c->xforward[XF_ADDR] ? c->xforward[XF_ADDR] : c->ip);
	json_str(&b, "from", m->sender);
	json_rcpts(&b, "to", m, false);
	buf_appendf(&b, ",\"size\":%ld", m->size);
	json_str(&b, "verdict", verdict_summary(m));
	if (m->policy_ran) {
		buf_appendf(&b, ",\"score\":%.3f,\"hits\":[", m->score);
		for (size_t i = 0; i < m->nhits; i++) {
			buf_appends(&b, i ? ",\"" : "\"");
			esc_json(&b, m->hits[i].rule);
			buf_appends(&b, "\"");
		}
		buf_appends(&b, "]");
		if (m->quarantined != NULL)
			json_str(&b, "quarantine", m->quarantined);
	}
	json_str(&b, "result", result);
	if (strcmp(result, "partial") == 0)	/* as the text line's refused= */
		json_rcpts(&b, "refused", m, true);
	if (m->queued_as != NULL)
		json_str(&b, "queued_as", m->queued_as);
	json_str(&b, "reply", reply);
	buf_appendf(&b, ",\"elapsed_ms\":%ld", message_elapsed_ms(m));
	log_event(buf_cstr(&b));
	buf_release(&b);
}

/*
 * verdict_log - the summary line (format in posternd(8)):
 *
 * msg listener=NAME id=ID client=IP from=<S> to=<R>,... size=N verdict=V
 *     [score=S hits=RULE,... [quarantine=PATH]] result=R [refused=<R>,...]
 *     queued_as=Q reply="..." elapsed_ms=N
 */
void
verdict_log(const struct listener_cfg *lc, const struct client *c, const struct message *m,
	    const char *reply)
{
	const char *client = c->xforward[XF_ADDR] ? c->xforward[XF_ADDR] : c->ip;
	char *e_client = esc_logs(client), *e_from = esc_logs(m->sender);
	char *e_reply = esc_logs(reply), *e_q = esc_logs(m->queued_as ? m->queued_as : "-");
	const char *result = result_of(m);
	struct buf line;

	if (log_is_json()) {
		verdict_log_json(lc, c, m, reply, result);
		stats_message(lc->name, m);
		free(e_client);
		free(e_from);
		free(e_reply);
		free(e_q);
		return;
	}

	buf_init(&line, 0);
	buf_appendf(&line, "msg listener=%s id=%s client=%s from=<%s> to=", lc->name, m->id,
		    e_client, e_from);
	append_rcpts(&line, m, false);
	buf_appendf(&line, " size=%ld verdict=%s", m->size, verdict_summary(m));
	append_policy(&line, m);
	buf_appendf(&line, " result=%s", result);
	if (strcmp(result, "partial") == 0) {
		buf_appends(&line, " refused=");
		append_rcpts(&line, m, true);
	}
	buf_appendf(&line, " queued_as=%s reply=\"%s\" elapsed_ms=%ld", e_q, e_reply,
		    message_elapsed_ms(m));
	log_info("%s", buf_cstr(&line));
	stats_message(lc->name, m);
	buf_release(&line);
	free(e_client);
	free(e_from);
	free(e_reply);
	free(e_q);
}
