/*
 * postfix_config - `postern postfix-config`: the main.cf and master.cf lines for postern
 *
 * postfix_config_print() writes, from the listeners of a loaded configuration
 * (never from fixed port numbers), the Postfix settings of FILTER_README's
 * "advanced content filter" for postern:
 *
 *   main.cf    content_filter = scan-IN:[addr]:port (the inbound listener),
 *              receive_override_options = no_address_mappings;
 *   master.cf  the -o content_filter=scan-SUB:... line for the submission
 *              service (the submission listener), one "scan-NAME" transport
 *              per listener (an smtp or lmtp client with XFORWARD on, no DNS,
 *              max_use, long data-done timeout; maxproc = workers), and one
 *              reinjection smtpd per distinct forward address (no content
 *              filter, no header/body checks or milters, XFORWARD trusted
 *              from the networks postern connects from).
 *
 * A listener that forwards to none of the reinjection addresses of the
 * inbound and submission listeners belongs to another Postfix instance (the
 * "secondary" of the bundled postern.conf): its lines come in sections of
 * their own, headed "# main.cf of the Postfix instance ..." and "# master.cf
 * of the Postfix instance ...". Every section starts with a comment line
 * beginning "# main.cf" or "# master.cf", so a postmaster can paste each part
 * where it belongs (and a spec can apply exactly what was printed).
 *
 * Errors (a named listener that does not exist): -1 and a "postern: ..." line
 * on stderr; -1 too when writing to out failed. 0 otherwise.
 */
#ifndef POSTERN_POSTFIX_CONFIG_H
#define POSTERN_POSTFIX_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"

#define POSTFIX_CONFIG_INBOUND		"external"	/* default inbound listener */
#define POSTFIX_CONFIG_SUBMISSION	"outgoing"	/* default submission listener */

struct postfix_config_opts {
	bool	main;			/* print the main.cf parts (neither main nor master: both) */
	bool	master;			/* print the master.cf parts */
	const char *inbound;		/* listener for main.cf's content_filter; NULL: "external" */
	const char *submission;		/* listener for the submission service; NULL: "outgoing"
					 * if there is one, else no submission override */
};

int postfix_config_print(const struct config *cfg, FILE *out, const struct postfix_config_opts *o);

#endif
