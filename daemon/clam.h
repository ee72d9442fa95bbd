/*
 * clam - libclamav in-process: one compiled engine, scans of the spool file
 *
 * clam_engine_load() initialises libclamav, loads every signature file of
 * the configured database directory, sets the scan limits and compiles the
 * engine. The master does it once and the workers inherit the engine (it is
 * read-only during scans, so its pages stay shared after fork()). A SIGHUP,
 * or clam_engine_db_changed() noticing new files (clamd's SelfCheck), makes
 * the master load a new engine for a new generation of workers; a database
 * that fails to load keeps the old engine.
 *
 * clam_scan() scans one spooled message with mail parsing and archive
 * unpacking (postern's MIME walk decoding the parts, or libclamav's mail
 * parser with clamav.mail_parser = "libclamav": see clam.c), and lists every part and archive member libclamav looked at
 * (name, type, size, depth) for the banned-file rules. A scan that could not
 * finish (a limit, an encrypted archive, an engine error) is CLAM_ERROR with
 * incomplete set and the reason, never "clean".
 *
 * clam.c is the only file that includes <clamav.h> (this header is not named
 * clamav.h so that it can never shadow it).
 * Errors: NULL/-1 with an error string the caller frees. Nothing here logs.
 */
#ifndef POSTERN_CLAM_H
#define POSTERN_CLAM_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct clam_engine;

enum clam_status {
	CLAM_CLEAN,		/* scanned, nothing found */
	CLAM_INFECTED,		/* a signature matched */
	CLAM_ERROR,		/* the scan did not finish: see error */
};

struct clam_file {
	char   *name;		/* name in the message or archive, or NULL, owned */
	char   *type;		/* libclamav's type without "CL_TYPE_" ("ZIP", "MSEXE"), owned */
	size_t	size;		/* bytes */
	unsigned depth;		/* 0 = the message itself */
	bool	encrypted;	/* extracted through decryption, or an encrypted container */
	bool	from_meta;	/* listed from an archive's directory, not scanned itself */
	unsigned meta_pos;	/* ... its position there */
};

struct clam_result {
	enum clam_status status;	/* the verdict */
	char   *virus;			/* CLAM_INFECTED: the signature's name, owned */
	char   *error;			/* CLAM_ERROR: why, owned */
	bool	incomplete;		/* CLAM_ERROR because of limits or encryption */
	struct clam_file *files;	/* every file looked at, owned */
	size_t	nfiles;			/* their count */
	long	elapsed_ms;		/* how long the scan took */
	/* bookkeeping while the scan runs (clam.c's own unpacking of zips) */
	long long started_ms;		/* monotonic start, for max_scan_time */
	size_t	own_unpacked;		/* bytes postern unpacked itself, for max_scan_size */
};

struct clam_engine *clam_engine_load(const struct clamav_cfg *cc, const char *tmpdir,
				     char **error_r);
struct clam_engine *clam_engine_free(struct clam_engine *e);
unsigned int clam_engine_signatures(const struct clam_engine *e);
long clam_engine_load_ms(const struct clam_engine *e);
bool clam_engine_db_changed(struct clam_engine *e);
struct mime_tree;
int clam_scan(const struct clam_engine *e, int fd, off_t size, const struct mime_tree *tree,
	      struct clam_result *r);
bool clam_engine_own_mime(const struct clam_engine *e);
void clam_result_release(struct clam_result *r);
int clam_clean_temp_dir(const char *dir);

#endif
