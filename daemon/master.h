/*
 * master - bind listeners, keep a pool of workers per listener, handle signals
 *
 * master_run() takes over after start-up (config loaded, sockets bound,
 * privileges dropped) and returns only when the daemon stops. SIGHUP loads the
 * configuration again into a new generation of workers while the old ones
 * finish their sessions; a configuration that fails to load keeps the old
 * generation and says why. SIGTERM/SIGINT stop accepting and drain.
 */
#ifndef POSTERN_MASTER_H
#define POSTERN_MASTER_H

#include <stddef.h>

#include <stdbool.h>

#include "config.h"

struct bound {
	char   *listen;		/* address as written in the config, owned */
	int	fd;		/* the listening socket */
};

struct policy;
struct clam_engine;

/* the master's own sockets besides the listeners */
struct master_fds {
	int	control;	/* the control socket, or -1 */
	int	metrics;	/* the metrics listener, or -1 */
};

int master_run(struct config *cfg, struct policy **policies, struct clam_engine *clam,
	       struct bound *sockets, size_t nsockets, const struct master_fds *fds,
	       char *const *overrides, size_t noverrides);
int master_load_engine(const struct config *cfg, struct clam_engine **clam_r, char **error_r);
struct policy **master_load_policies(const struct config *cfg, char **error_r);
void master_free_policies(const struct config *cfg, struct policy **p);
int master_bind(const struct config *cfg, struct bound **sockets, size_t *nsockets,
		char **error_r);
void master_check_forwards(const struct config *cfg);
void master_hold_signals(bool hold);

#endif
