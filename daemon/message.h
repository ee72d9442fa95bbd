/*
 * message - one mail transaction: envelope, client facts, spool, outcome
 *
 * A struct message lives from MAIL to the end of the transaction (reply sent,
 * RSET, or session death) and owns everything of that transaction: the
 * recipients, their parameters and results, the spool file. message_free()
 * releases it all. struct client is the session's view of who sent the mail
 * (our peer, and what XFORWARD said about the MTA's own client).
 */
#ifndef POSTERN_MESSAGE_H
#define POSTERN_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "util/buf.h"

struct spool;
struct header_block;
struct mime_tree;
struct clam_result;

enum xforward_attr {
	XF_NAME, XF_ADDR, XF_PORT, XF_PROTO, XF_HELO, XF_IDENT, XF_SOURCE, XF_LOGIN,
	XF_COUNT
};

extern const char *const xforward_names[XF_COUNT];

struct client {
	char	ip[64];			/* our peer's address (the MTA) */
	int	port;			/* ... and port */
	char   *helo;			/* what it said in HELO/EHLO/LHLO, owned */
	char   *xforward[XF_COUNT];	/* XFORWARD attributes (decoded), owned; NULL = not sent */
};

enum verdict {
	VERDICT_PASS,
	VERDICT_DISCARD,
	VERDICT_QUARANTINE,
	VERDICT_REJECT,
	VERDICT_TEMPFAIL,
};

enum body_type {
	BODY_UNSPECIFIED,	/* no BODY= parameter */
	BODY_7BIT,
	BODY_8BITMIME,
};

enum edit_op {
	EDIT_ADD,		/* add a field at the top (after our Received:) */
	EDIT_REMOVE,		/* remove every field of that name */
	EDIT_REPLACE,		/* remove every field of that name, add one in the first's place */
	EDIT_SUBJECT_TAG,	/* prefix the Subject: value (added when there is none) */
};

struct header_edit {
	enum edit_op op;	/* what to do */
	char   *name;		/* field name, owned */
	char   *value;		/* new value or tag, owned; NULL for EDIT_REMOVE */
};

struct edit_list {
	struct header_edit *v;	/* owned array, applied in order */
	size_t	n;		/* its length */
};

struct rule_hit {
	char   *rule;		/* the rule's name, owned */
	double	score;		/* what it added to the message's score */
};

struct recipient {
	char   *addr;		/* address without <>, owned */
	char   *notify;		/* NOTIFY= value or NULL, owned */
	char   *orcpt;		/* ORCPT= value (xtext kept) or NULL, owned */
	enum verdict verdict;	/* what the policy decided */
	bool	decided;	/* a rule set verdict: later rules cannot change it */
	char   *policy_reply;	/* reject/tempfail: "550 5.7.1 text", owned, or NULL */
	char   *forward_to;	/* redirected: deliver here instead of addr, owned, or NULL */
	bool	added;		/* added by the policy (bcc): no reply of its own */
	struct edit_list edits;	/* header edits for this recipient's copy only */
	int	code;		/* final reply code for this recipient (0 = none yet) */
	char   *reply;		/* final reply text "250 2.0.0 ...", owned */
	bool	own_reply;	/* the reply is postern's own, not forward's */
	bool	notified;	/* a delivery status notification told the sender of it */
};

struct message {
	char	id[16];			/* mail id, in logs, Received: and quarantine */
	char   *sender;			/* reverse path without <>, owned ("" for null) */
	enum body_type body;		/* BODY= */
	bool	smtputf8;		/* SMTPUTF8 given */
	char   *ret;			/* RET= value or NULL, owned */
	char   *envid;			/* ENVID= value (xtext kept) or NULL, owned */
	struct recipient *rcpts;	/* owned array */
	size_t	nrcpts;			/* its length */
	struct spool *spool;		/* the message bytes, owned */
	long	size;			/* bytes received (after unstuffing) */
	bool	too_big;		/* crossed max_message_size */
	int	spool_errno;		/* non-zero: the spool could not be written */
	struct timespec started;	/* when MAIL was accepted (monotonic) */
	char   *queued_as;		/* downstream queue id, owned, or NULL */
	struct header_block *hdr;	/* parsed header, owned, NULL until asked for */
	struct mime_tree *mime;		/* MIME parts, owned, NULL until asked for */
	struct edit_list edits;		/* header edits for every recipient's copy */
	double	score;			/* sum of the rules' scores */
	struct rule_hit *hits;		/* rules that fired, owned array */
	size_t	nhits;			/* its length */
	bool	policy_ran;		/* a policy decided (for the log line) */
	char   *quarantined;		/* where the quarantine verdict stored it, owned, or NULL */
	struct clam_result *clam;	/* the ClamAV scan, owned, NULL until asked for */
	long long data_started_us;	/* first DATA/BDAT byte (stats' receive stage), 0 = none */
};

struct message *message_new(void);
struct message *message_free(struct message *m);
struct recipient *message_add_rcpt(struct message *m, const char *addr);
void message_set_reply(struct recipient *r, int code, const char *reply);
void message_set_own_reply(struct recipient *r, int code, const char *reply);
void edit_list_add(struct edit_list *l, enum edit_op op, const char *name, const char *value);
void edit_list_release(struct edit_list *l);
void message_add_hit(struct message *m, const char *rule, double score);
void message_copy_key(const struct message *m, const struct recipient *r, struct buf *key);
void message_render_copy(const struct message *m, const struct recipient *r,
			 const struct header_block *hb, struct buf *out, off_t *spool_off_r);
long message_elapsed_ms(const struct message *m);
void client_reset_xforward(struct client *c);
void client_release(struct client *c);
int xtext_decode(const char *in, char **out_r);
void message_received_header(const struct message *m, const struct client *c,
			     const char *hostname, int port, bool is_lmtp, struct buf *out);

#endif
