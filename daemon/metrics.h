/*
 * metrics - the Prometheus text exposition of the shared counters, served by the master
 *
 * See metrics.c. Off unless metrics = { listen = "127.0.0.1:9724" } is set.
 */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include "stats.h"
#include "util/buf.h"

int metrics_listen(const char *addr, char **error_r);
void metrics_render(const struct stats *st, struct buf *out);
void metrics_serve(int lfd, const struct stats *st);

#endif
