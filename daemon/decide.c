/*
 * decide - from a received message to an outcome for every recipient; see decide.h
 *
 * The order is what keeps the no-loss promise when something fails halfway:
 * nothing is delivered before everything that can still turn the message
 * into a 4xx has been done (policy, quarantine, the notification for the
 * refused recipients). A quarantine followed by a deferral stores the
 * message twice on the retry; it never loses it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "decide.h"
#include "header.h"
#include "log.h"
#include "policy.h"
#include "quarantine.h"
#include "reinject.h"
#include "spool.h"
#include "stats.h"
#include "util/esc.h"
#include "util/net.h"
#include "util/xalloc.h"

/* defer_all - every recipient gets this temporary failure */
static void
defer_all(struct message *m, int code, const char *reply)
{
	for (size_t i = 0; i < m->nrcpts; i++)
		message_set_own_reply(&m->rcpts[i], code, reply);
}

/* run_policy - the chain; false (all deferred, logged) when it failed */
static bool
run_policy(const struct decide_ctx *ctx, struct message *m)
{
	struct policy_input in = { m, ctx->client, ctx->lc->name, ctx->cfg, ctx->clam };
	char *error = NULL, *e;
	long long start = stats_now_us();
	int rc = policy_run(ctx->policy, &in, &error);

	stats_observe(ctx->lc->name, STAGE_POLICY, stats_now_us() - start);
	if (rc == 0)
		return true;
	stats_error(ctx->lc->name, ERR_POLICY);
	e = esc_logs(error);
	log_warnx("%s: policy %s failed, message deferred: %s", m->id, policy_path(ctx->policy), e);
	free(e);
	free(error);
	/* nothing the policy decided before it failed counts */
	for (size_t i = 0; i < m->nrcpts; i++)
		m->rcpts[i].verdict = VERDICT_TEMPFAIL;
	defer_all(m, 451, "451 4.3.0 policy error, try again later");
	return false;
}

/* first_with - the first original recipient whose verdict is v, or NULL */
static struct recipient *
first_with(struct message *m, enum verdict v)
{
	for (size_t i = 0; i < m->nrcpts; i++)
		if (!m->rcpts[i].added && m->rcpts[i].verdict == v)
			return &m->rcpts[i];
	return NULL;
}

/* own_replies - the replies of discarded, refused and deferred recipients */
static void
own_replies(struct message *m)
{
	for (size_t i = 0; i < m->nrcpts; i++) {
		struct recipient *r = &m->rcpts[i];

		if (r->verdict == VERDICT_DISCARD)
			message_set_own_reply(r, 250, "250 2.7.0 Ok, discarded by policy");
		else if (r->verdict == VERDICT_REJECT || r->verdict == VERDICT_TEMPFAIL)
			message_set_own_reply(r, atoi(r->policy_reply), r->policy_reply);
	}
}

/* ensure_header - the parsed header, for edits that rewrite it */
static void
ensure_header(const struct decide_ctx *ctx, struct message *m)
{
	if (m->hdr != NULL)
		return;
	m->hdr = xcalloc(1, sizeof(*m->hdr));
	if (header_read(m->hdr, spool_fd(m->spool), (size_t)ctx->cfg->max_header_size) < 0)
		log_warn("%s: cannot read the header back from the spool", m->id);
}

/*
 * quarantine - store the message once for every quarantined recipient
 *
 * Returns false when it could not be stored: those recipients are deferred
 * (all of them in SMTP mode, where one reply speaks for everyone).
 */
static bool
quarantine(const struct decide_ctx *ctx, struct message *m)
{
	const char **addrs = xreallocarray(NULL, m->nrcpts, sizeof(*addrs));
	const char *reason = NULL;
	struct buf prefix;
	size_t n = 0;
	char *path = NULL, *reply;
	bool ok = true;

	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].verdict == VERDICT_QUARANTINE) {
			addrs[n++] = m->rcpts[i].addr;
			if (reason == NULL)
				reason = m->rcpts[i].policy_reply;
		}
	if (n == 0) {
		free(addrs);
		return true;
	}
	buf_init(&prefix, 0);
	message_received_header(m, ctx->client, ctx->cfg->hostname, net_port(&ctx->lc->listen_ep.ss),
				ctx->lc->is_lmtp, &prefix);
	if (quarantine_store(ctx->cfg->quarantine_dir, m, ctx->lc->name, addrs, n,
			     reason ? reason : "quarantined by policy", prefix.ptr, prefix.len,
			     &path) < 0) {
		log_warn("%s: cannot store the message in quarantine %s", m->id, ctx->cfg->quarantine_dir);
		for (size_t i = 0; i < m->nrcpts; i++)
			if (!ctx->lc->is_lmtp || m->rcpts[i].verdict == VERDICT_QUARANTINE)
				message_set_own_reply(&m->rcpts[i], 451,
						      "451 4.3.0 cannot quarantine, try again later");
		ok = false;
	} else {
		log_info("%s: quarantined for %zu recipient(s) as %s", m->id, n, path);
		reply = xasprintf("250 2.7.0 Ok, quarantined as %s", m->id);
		for (size_t i = 0; i < m->nrcpts; i++)
			if (m->rcpts[i].verdict == VERDICT_QUARANTINE)
				message_set_own_reply(&m->rcpts[i], 250, reply);
		free(reply);
		free(m->quarantined);
		m->quarantined = path;
	}
	buf_release(&prefix);
	free(addrs);
	return ok;
}

/*
 * notify_refused - SMTP mode: a notification for the recipients the policy
 * refused, when others are accepted (our one reply will be 250)
 */
static bool
notify_refused(const struct decide_ctx *ctx, struct message *m)
{
	struct recipient **refused = xreallocarray(NULL, m->nrcpts, sizeof(*refused));
	size_t n = 0, accepted = 0;
	bool ok = true;

	for (size_t i = 0; i < m->nrcpts; i++) {
		if (m->rcpts[i].added)
			continue;
		if (m->rcpts[i].verdict == VERDICT_REJECT)
			refused[n++] = &m->rcpts[i];
		else
			accepted++;
	}
	if (n > 0 && accepted > 0 &&
	    reinject_notify(ctx->ds, ctx->cfg, ctx->lc, ctx->client, m, refused, n) < 0) {
		defer_all(m, 451, "451 4.3.0 some recipients were refused and the notification "
			  "to the sender failed, try again later");
		ok = false;
	}
	free(refused);
	return ok;
}

/*
 * notify_leftovers - SMTP mode, after reinjection: refusals nobody was told of
 *
 * A copy whose every recipient forward refused is not a "mixed" transaction
 * of its own, yet when other recipients were delivered (another copy) or
 * discarded or quarantined, our client hears 250: the sender must get a
 * notification for the refused ones, or they are lost without a trace. If
 * it cannot be sent, the whole message is deferred: the delivered copies
 * may then arrive twice, which beats a silent loss.
 */
static void
notify_leftovers(const struct decide_ctx *ctx, struct message *m)
{
	struct recipient **left = xreallocarray(NULL, m->nrcpts, sizeof(*left));
	size_t n = 0, accepted = 0;

	for (size_t i = 0; i < m->nrcpts; i++) {
		struct recipient *r = &m->rcpts[i];

		if (r->added)
			continue;
		if (r->code / 100 == 2)
			accepted++;
		else if (r->code / 100 == 5 && !r->notified)
			left[n++] = r;
	}
	if (n > 0 && accepted > 0 &&
	    reinject_notify(ctx->ds, ctx->cfg, ctx->lc, ctx->client, m, left, n) < 0) {
		log_warnx("%s: some recipients were refused by forward and the notification failed: "
			  "deferring the message (copies already delivered may arrive twice)", m->id);
		defer_all(m, 451, "451 4.3.0 some recipients were refused and the notification "
			  "to the sender failed, try again later");
	}
	free(left);
}

/*
 * defer_for_lost_copy - after reinjection: a copy the policy added (a bcc)
 * that forward did not take has no reply of its own to carry its deferral,
 * in LMTP mode above all, where every other recipient has its own. So the
 * recipients it came with carry it: those delivered, discarded or
 * quarantined are deferred, and the MTA's retry brings the copy again
 * (their own copies may then arrive twice, which beats an archive copy
 * lost with only a log line). When every one of them was refused for good,
 * they are deferred too, as SMTP mode's one reply does: a refusal the retry
 * repeats, rather than a copy nobody retries. The reply names no address:
 * who gets a bcc is the postmaster's business, not the sender's, whose
 * delay notice would quote it; the log names it.
 */
static void
defer_for_lost_copy(struct message *m)
{
	static const char deferred[] = "451 4.3.0 a copy of the message could not be delivered, "
				       "try again later";
	bool lost = false;

	for (size_t i = 0; i < m->nrcpts; i++) {
		struct recipient *r = &m->rcpts[i];
		char *addr, *why;

		if (!r->added || (r->code != 0 && r->code / 100 != 4))
			continue;
		addr = esc_logs(r->addr);
		why = esc_logs(r->reply != NULL ? r->reply : "no reply");
		log_warnx("%s: the copy the policy added for <%s> was not delivered (%s): "
			  "deferring the message", m->id, addr, why);
		free(addr);
		free(why);
		message_set_own_reply(r, 451, deferred);	/* what an SMTP reply may quote */
		lost = true;
	}
	if (!lost)
		return;
	for (size_t i = 0; i < m->nrcpts; i++)
		if (!m->rcpts[i].added && m->rcpts[i].code / 100 == 2)
			message_set_own_reply(&m->rcpts[i], 451, deferred);
	for (size_t i = 0; i < m->nrcpts; i++)
		if (!m->rcpts[i].added && (m->rcpts[i].code == 0 || m->rcpts[i].code / 100 == 4))
			return;		/* someone carries the deferral */
	for (size_t i = 0; i < m->nrcpts; i++)
		if (!m->rcpts[i].added)
			message_set_own_reply(&m->rcpts[i], 451, deferred);
}

/* decide_message - see decide.h */
void
decide_message(const struct decide_ctx *ctx, struct message *m)
{
	struct recipient *temp;
	long long start;

	if (ctx->policy != NULL && !run_policy(ctx, m))
		return;
	if (!ctx->lc->is_lmtp && (temp = first_with(m, VERDICT_TEMPFAIL)) != NULL) {
		/* one reply for all: a deferral of anyone defers everyone */
		char *reply = xstrdup(temp->policy_reply);

		defer_all(m, atoi(reply), reply);
		free(reply);
		return;
	}
	own_replies(m);
	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].edits.n > 0 || m->edits.n > 0) {
			ensure_header(ctx, m);
			break;
		}
	if (!quarantine(ctx, m) && !ctx->lc->is_lmtp)
		return;
	if (!ctx->lc->is_lmtp && !notify_refused(ctx, m))
		return;
	start = stats_now_us();
	reinject_message(ctx->ds, ctx->cfg, ctx->lc, ctx->client, m);
	stats_observe(ctx->lc->name, STAGE_REINJECT, stats_now_us() - start);
	defer_for_lost_copy(m);
	if (!ctx->lc->is_lmtp)
		notify_leftovers(ctx, m);
}
