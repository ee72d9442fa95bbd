/*
 * clam - libclamav in-process; see clamav.h
 *
 * The spooled message is handed to libclamav as a map over a small virtual
 * file: a "Received:" line of our own, then the spool bytes, read on demand
 * with pread (cl_fmap_open_handle). The line makes libclamav's type
 * detection see a mail message whatever field the message starts with (it
 * recognises mail by the first bytes), so MIME parts are decoded and
 * archives unpacked, without copying the message anywhere.
 *
 * Heuristic alerts are on only for what turns a scan into "could not
 * finish": limits exceeded and encrypted archives or documents. Their
 * "Heuristics.Limits.Exceeded..." and "Heuristics.Encrypted..." names come
 * back as CLAM_ERROR with incomplete set, so no policy mistakes them for a
 * virus or for clean mail.
 */
#include <clamav.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clam.h"
#include "util/xalloc.h"

#define SCAN_PREFIX	"Received: by postern for scanning\r\n"
#define SCAN_PREFIX_LEN	(sizeof(SCAN_PREFIX) - 1)
#define FILES_MAX	100000	/* files listed per scan, whatever max_files says */

struct clam_engine {
	struct cl_engine *engine;	/* compiled, owned */
	struct cl_stat dbstat;		/* the database directory as loaded */
	bool	have_dbstat;		/* dbstat was filled */
	unsigned int signatures;	/* how many were loaded */
	long	load_ms;		/* how long loading and compiling took */
};

struct vfile {
	int	fd;		/* the spool file, borrowed */
	off_t	size;		/* its length */
};

/* now_ms - monotonic milliseconds */
static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char last_error[512];	/* libclamav's last error message (its words name the file) */

/*
 * on_message - libclamav's messages: keep the last error, print nothing
 *
 * Left alone, libclamav writes to stderr, which is /dev/null once posternd
 * is a daemon: its "Can't load FILE" would be lost, and ours would not say
 * which file broke the database. The last error goes into our own message.
 */
static void
on_message(enum cl_msg severity, const char *fullmsg, const char *msg, void *context)
{
	(void)fullmsg;
	(void)context;
	if (severity == CL_MSG_ERROR && msg != NULL) {
		snprintf(last_error, sizeof(last_error), "%s", msg);
		last_error[strcspn(last_error, "\r\n")] = '\0';
	}
}

/* with_detail - " (libclamav: ...)" when libclamav said something */
static const char *
with_detail(char *buf, size_t size)
{
	if (last_error[0] == '\0')
		return "";
	snprintf(buf, size, " (libclamav: %s)", last_error);
	return buf;
}

/* init_once - cl_init, once per process */
static int
init_once(char **error_r)
{
	static bool done;
	cl_error_t rc;

	if (done)
		return 0;
	cl_set_clcb_msg(on_message);
	if ((rc = cl_init(CL_INIT_DEFAULT)) != CL_SUCCESS) {
		*error_r = xasprintf("cannot initialise libclamav: %s", cl_strerror(rc));
		return -1;
	}
	done = true;
	return 0;
}

/* set_limits - the configured limits; -1 with *error_r */
static int
set_limits(struct cl_engine *engine, const struct clamav_cfg *cc, const char *tmpdir,
	   char **error_r)
{
	struct { enum cl_engine_field field; long long value; const char *name; } nums[] = {
		{ CL_ENGINE_MAX_SCANSIZE, cc->max_scan_size, "max_scan_size" },
		{ CL_ENGINE_MAX_FILESIZE, cc->max_file_size, "max_file_size" },
		{ CL_ENGINE_MAX_RECURSION, cc->max_recursion, "max_recursion" },
		{ CL_ENGINE_MAX_FILES, cc->max_files, "max_files" },
		{ CL_ENGINE_MAX_SCANTIME, cc->max_scan_time_ms, "max_scan_time" },
	};
	cl_error_t rc;

	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		if ((rc = cl_engine_set_num(engine, nums[i].field, nums[i].value)) != CL_SUCCESS) {
			*error_r = xasprintf("clamav.%s: %s", nums[i].name, cl_strerror(rc));
			return -1;
		}
	if (cc->disable_cache &&
	    (rc = cl_engine_set_num(engine, CL_ENGINE_DISABLE_CACHE, 1)) != CL_SUCCESS) {
		*error_r = xasprintf("clamav.disable_cache: %s", cl_strerror(rc));
		return -1;
	}
	if (cc->temp_dir != NULL)
		tmpdir = cc->temp_dir;
	/* archive members are unpacked here: our own directory, not a shared /tmp */
	if (tmpdir != NULL && (rc = cl_engine_set_str(engine, CL_ENGINE_TMPDIR, tmpdir)) != CL_SUCCESS) {
		*error_r = xasprintf("clamav: temporary directory %s: %s", tmpdir, cl_strerror(rc));
		return -1;
	}
	return 0;
}

/* is_temp_name - "clamav-<hex>.tmp", what libclamav calls what it extracted */
static bool
is_temp_name(const char *name)
{
	size_t len = strlen(name);

	return len > 11 && strncmp(name, "clamav-", 7) == 0 && strcmp(name + len - 4, ".tmp") == 0 &&
	       strspn(name + 7, "0123456789abcdef") == len - 11;
}

/* add_file - one more entry of the list (bounded by FILES_MAX) */
static struct clam_file *
add_file(struct clam_result *r)
{
	struct clam_file *f;

	if (r->nfiles >= FILES_MAX)
		return NULL;
	r->files = xreallocarray(r->files, r->nfiles + 1, sizeof(*r->files));
	f = &r->files[r->nfiles++];
	memset(f, 0, sizeof(*f));
	return f;
}

/*
 * on_meta - libclamav's archive metadata callback: names of archive members
 *
 * The file inspection callback never sees a member libclamav does not scan:
 * one of five bytes or less, or one inside an encrypted archive. Its name is
 * what a banned-file rule needs, so it is listed from here, once (the
 * callback may come twice for a member; the member's position tells).
 */
static cl_error_t
on_meta(const char *container_type, unsigned long fsize_container, const char *filename,
	unsigned long fsize_real, int is_encrypted, unsigned int filepos_container, void *context)
{
	struct clam_result *r = context;
	struct clam_file *f;

	(void)fsize_container;
	if (r == NULL || filename == NULL || *filename == '\0')
		return CL_CLEAN;
	for (size_t i = 0; i < r->nfiles; i++)
		if (r->files[i].from_meta && r->files[i].meta_pos == filepos_container &&
		    r->files[i].name != NULL && strcmp(r->files[i].name, filename) == 0)
			return CL_CLEAN;
	if ((f = add_file(r)) == NULL)
		return CL_CLEAN;
	f->name = xstrdup(filename);
	f->type = xstrdup("MEMBER");
	if (container_type != NULL && strncmp(container_type, "CL_TYPE_", 8) == 0) {
		free(f->type);
		f->type = xasprintf("MEMBER_OF_%s", container_type + 8);
	}
	f->size = fsize_real;
	f->depth = 1;		/* somewhere inside the message: the callback does not say */
	f->encrypted = is_encrypted != 0;
	f->from_meta = true;
	f->meta_pos = filepos_container;
	return CL_CLEAN;
}

/* on_file - libclamav's file inspection callback: list the file */
static cl_error_t
on_file(int fd, const char *type, const char **ancestors, size_t parent_file_size,
	const char *file_name, size_t file_size, const char *file_buffer, uint32_t recursion_level,
	uint32_t layer_attributes, void *context)
{
	struct clam_result *r = context;
	struct clam_file *f;

	(void)fd;
	(void)ancestors;
	(void)parent_file_size;
	(void)file_buffer;
	if (r == NULL || (f = add_file(r)) == NULL)
		return CL_CLEAN;
	/* libclamav's own temporary names, and ours for the message, are not names */
	if (file_name != NULL && !is_temp_name(file_name) && recursion_level > 0)
		f->name = xstrdup(file_name);
	if (type != NULL && strncmp(type, "CL_TYPE_", 8) == 0)
		type += 8;
	f->type = xstrdup(type ? type : "ANY");
	f->size = file_size;
	f->depth = recursion_level;
	f->encrypted = (layer_attributes & LAYER_ATTRIBUTES_DECRYPTED) != 0;
	return CL_CLEAN;
}

/*
 * clam_engine_load - load and compile the signatures of cc->database
 *
 * tmpdir is where libclamav unpacks archives (the spool directory).
 * Returns the engine, or NULL with *error_r (caller frees).
 */
struct clam_engine *
clam_engine_load(const struct clamav_cfg *cc, const char *tmpdir, char **error_r)
{
	struct clam_engine *e;
	long long start = now_ms();
	cl_error_t rc;

	if (init_once(error_r) < 0)
		return NULL;
	e = xcalloc(1, sizeof(*e));
	if ((e->engine = cl_engine_new()) == NULL) {
		*error_r = xstrdup("cannot create a libclamav engine");
		return clam_engine_free(e);
	}
	if (set_limits(e->engine, cc, tmpdir, error_r) < 0)
		return clam_engine_free(e);
	cl_engine_set_clcb_file_inspection(e->engine, on_file);
	cl_engine_set_clcb_meta(e->engine, on_meta);
	last_error[0] = '\0';
	if ((rc = cl_load(cc->database, e->engine, &e->signatures, CL_DB_STDOPT)) != CL_SUCCESS) {
		char detail[600];

		*error_r = xasprintf("clamav.database %s: %s%s", cc->database, cl_strerror(rc),
				     with_detail(detail, sizeof(detail)));
		return clam_engine_free(e);
	}
	if (e->signatures == 0) {
		*error_r = xasprintf("clamav.database %s: no signatures found", cc->database);
		return clam_engine_free(e);
	}
	if ((rc = cl_engine_compile(e->engine)) != CL_SUCCESS) {
		char detail[600];

		*error_r = xasprintf("clamav.database %s: cannot compile the engine: %s%s",
				     cc->database, cl_strerror(rc), with_detail(detail, sizeof(detail)));
		return clam_engine_free(e);
	}
	memset(&e->dbstat, 0, sizeof(e->dbstat));
	e->have_dbstat = cl_statinidir(cc->database, &e->dbstat) == CL_SUCCESS;
	e->load_ms = (long)(now_ms() - start);
	return e;
}

/* clam_engine_free - free the engine; returns NULL */
struct clam_engine *
clam_engine_free(struct clam_engine *e)
{
	if (e == NULL)
		return NULL;
	if (e->engine != NULL)
		cl_engine_free(e->engine);
	if (e->have_dbstat)
		cl_statfree(&e->dbstat);
	free(e);
	return NULL;
}

/* clam_engine_signatures - how many signatures the engine holds */
unsigned int
clam_engine_signatures(const struct clam_engine *e)
{
	return e->signatures;
}

/* clam_engine_load_ms - how long loading and compiling took */
long
clam_engine_load_ms(const struct clam_engine *e)
{
	return e->load_ms;
}

/* clam_engine_db_changed - files of the database directory changed since the load */
bool
clam_engine_db_changed(struct clam_engine *e)
{
	return e->have_dbstat && cl_statchkdir(&e->dbstat) == 1;
}

/* vfile_read - the virtual file: our Received: line, then the spool */
static off_t
vfile_read(void *handle, void *buf, size_t count, off_t offset)
{
	struct vfile *vf = handle;
	size_t done = 0;

	if (offset < (off_t)SCAN_PREFIX_LEN) {
		size_t n = SCAN_PREFIX_LEN - (size_t)offset;

		if (n > count)
			n = count;
		memcpy(buf, SCAN_PREFIX + offset, n);
		done = n;
		offset += (off_t)n;
	}
	while (done < count) {
		ssize_t n = pread(vf->fd, (char *)buf + done, count - done,
				  offset - (off_t)SCAN_PREFIX_LEN);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return done > 0 ? (off_t)done : -1;
		if (n == 0)
			break;
		done += (size_t)n;
		offset += n;
	}
	return (off_t)done;
}

/* is_incomplete - a heuristic name that means the scan could not finish */
static bool
is_incomplete(const char *virname)
{
	return strncmp(virname, "Heuristics.Limits.Exceeded", 26) == 0 ||
	       strncmp(virname, "Heuristics.Encrypted", 20) == 0;
}

/*
 * clam_scan - scan the spooled message (fd, size bytes)
 *
 * Fills *r (release it with clam_result_release); returns 0, or -1 when
 * the scan could not even start (r->status is CLAM_ERROR then too).
 */
int
clam_scan(const struct clam_engine *e, int fd, off_t size, struct clam_result *r)
{
	struct cl_scan_options opts;
	struct vfile vf = { fd, size };
	const char *virname = NULL;
	unsigned long scanned = 0;
	long long start = now_ms();
	cl_fmap_t *map;
	cl_error_t rc;

	memset(r, 0, sizeof(*r));
	memset(&opts, 0, sizeof(opts));
	opts.parse = ~0u;		/* every parser: mail, archives, documents, executables */
	/* all-match: a virus does not end the scan, so every file is listed for P.banned */
	opts.general = CL_SCAN_GENERAL_HEURISTICS | CL_SCAN_GENERAL_ALLMATCHES;
	opts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX | CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE |
			 CL_SCAN_HEURISTIC_ENCRYPTED_DOC;
	map = cl_fmap_open_handle(&vf, 0, SCAN_PREFIX_LEN + (size_t)size, vfile_read, 1);
	if (map == NULL) {
		r->status = CLAM_ERROR;
		r->error = xstrdup("cannot map the message for scanning");
		return -1;
	}
	rc = cl_scanmap_callback(map, "message", &virname, &scanned, e->engine, &opts, r);
	cl_fmap_close(map);
	r->elapsed_ms = (long)(now_ms() - start);
	if (rc == CL_CLEAN) {
		r->status = CLAM_CLEAN;
	} else if (rc == CL_VIRUS && virname != NULL && is_incomplete(virname)) {
		r->status = CLAM_ERROR;
		r->incomplete = true;
		r->error = xasprintf("scan incomplete: %s", virname);
	} else if (rc == CL_VIRUS) {
		r->status = CLAM_INFECTED;
		r->virus = xstrdup(virname ? virname : "unknown");
	} else {
		r->status = CLAM_ERROR;
		r->incomplete = rc == CL_ETIMEOUT || rc == CL_EMAXREC || rc == CL_EMAXSIZE ||
				rc == CL_EMAXFILES;
		r->error = xasprintf("scan failed: %s", cl_strerror(rc));
	}
	return 0;
}

/* clam_result_release - free what a result owns */
void
clam_result_release(struct clam_result *r)
{
	for (size_t i = 0; i < r->nfiles; i++) {
		free(r->files[i].name);
		free(r->files[i].type);
	}
	free(r->files);
	free(r->virus);
	free(r->error);
	memset(r, 0, sizeof(*r));
}
