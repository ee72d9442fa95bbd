/*
 * dsn - delivery status notifications (RFC 3464) for recipients forward refused
 *
 * See dsn.h. The original header is read back from the spool, at most
 * DSN_HEADER_MAX bytes of it: enough to identify the message, never the body
 * (a bounce must not become a way to relay content).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "dsn.h"
#include "spool.h"

#define DSN_HEADER_MAX	(64 * 1024)	/* original header returned at most */

/* dsn_wanted - is a failure notification due for recipient r */
bool
dsn_wanted(const struct message *m, const struct recipient *r)
{
	if (m->sender == NULL || m->sender[0] == '\0')
		return false;	/* never bounce a bounce */
	if (r->notify == NULL)
		return true;	/* default: failures are reported */
	return strcasestr(r->notify, "FAILURE") != NULL;
}

/* append_original_header - the header block of the spooled message */
static void
append_original_header(const struct message *m, struct buf *out)
{
	char chunk[8192];
	size_t have = 0;
	int fd = m->spool ? spool_fd(m->spool) : -1;
	struct buf hdr;

	buf_init(&hdr, 0);
	while (fd >= 0 && have < DSN_HEADER_MAX) {
		ssize_t n = pread(fd, chunk, sizeof(chunk), (off_t)have);
		const char *end;

		if (n <= 0)
			break;
		buf_append(&hdr, chunk, (size_t)n);
		have += (size_t)n;
		buf_cstr(&hdr);
		if ((end = strstr(hdr.ptr, "\r\n\r\n")) != NULL) {
			hdr.len = (size_t)(end - hdr.ptr) + 2;
			break;
		}
	}
	if (hdr.len > DSN_HEADER_MAX)
		hdr.len = DSN_HEADER_MAX;
	buf_append(out, hdr.ptr, hdr.len);
	if (hdr.len < 2 || hdr.ptr[hdr.len - 1] != '\n')
		buf_appends(out, "\r\n");
	buf_release(&hdr);
}

/* status_of - the enhanced status code in a reply, or one made from its class */
static void
status_of(const char *reply, char *out, size_t out_size)
{
	int a, b, c;

	if (reply && strlen(reply) > 4 && sscanf(reply + 4, "%1d.%3d.%3d", &a, &b, &c) == 3)
		snprintf(out, out_size, "%d.%d.%d", a, b, c);
	else
		snprintf(out, out_size, "5.0.0");
}

/* dsn_build - the notification message, CRLF lines, into out */
void
dsn_build(const struct message *m, struct recipient *const *failed, size_t nfailed,
	  const char *hostname, const char *forward, struct buf *out)
{
	char date[64], boundary[64], status[32];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	snprintf(boundary, sizeof(boundary), "%s/%s", m->id, hostname);
	buf_appendf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
		    "To: <%s>\r\n"
		    "Subject: Undelivered Mail Returned to Sender\r\n"
		    "Date: %s\r\n"
		    "Message-ID: <%s.dsn@%s>\r\n"
		    "Auto-Submitted: auto-replied\r\n"
		    "MIME-Version: 1.0\r\n"
		    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
		    "\tboundary=\"%s\"\r\n"
		    "\r\n"
		    "This is a MIME-encapsulated message.\r\n"
		    "\r\n"
		    "--%s\r\n"
		    "Content-Type: text/plain; charset=utf-8\r\n"
		    "\r\n"
		    "This is the content filter postern at %s.\r\n"
		    "\r\n"
		    "Your message could not be delivered to the recipients below.\r\n"
		    "The other recipients were not affected.\r\n"
		    "\r\n",
		    hostname, m->sender, date, m->id, hostname, boundary, boundary, hostname);
	for (size_t i = 0; i < nfailed; i++)
		buf_appendf(out, "<%s>: %s\r\n", failed[i]->addr, failed[i]->reply);
	buf_appendf(out, "\r\n--%s\r\n"
		    "Content-Type: message/delivery-status\r\n"
		    "\r\n"
		    "Reporting-MTA: dns; %s\r\n"
		    "X-Postern-Mail-Id: %s\r\n",
		    boundary, hostname, m->id);
	if (m->envid != NULL)
		buf_appendf(out, "Original-Envelope-Id: %s\r\n", m->envid);
	for (size_t i = 0; i < nfailed; i++) {
		status_of(failed[i]->reply, status, sizeof(status));
		buf_appendf(out, "\r\nFinal-Recipient: rfc822; %s\r\n", failed[i]->addr);
		if (failed[i]->orcpt != NULL)
			buf_appendf(out, "Original-Recipient: %s\r\n", failed[i]->orcpt);
		buf_appendf(out, "Action: failed\r\n"
			    "Status: %s\r\n"
			    "Remote-MTA: dns; %s\r\n"
			    "Diagnostic-Code: smtp; %s\r\n",
			    status, forward, failed[i]->reply);
	}
	buf_appendf(out, "\r\n--%s\r\n"
		    "Content-Type: text/rfc822-headers\r\n"
		    "\r\n", boundary);
	append_original_header(m, out);
	buf_appendf(out, "\r\n--%s--\r\n", boundary);
}
