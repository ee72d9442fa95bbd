/*
 * clam - libclamav in-process; see clam.h
 *
 * By default (clamav.mail_parser = "postern") postern takes the message
 * apart itself, as amavisd-new does before clamd sees anything. libclamav
 * first matches the whole message as it is, its mail parser off (the raw
 * pass: signatures for mail and for raw bodies); then the MIME walk of
 * mime.c (the one msg:parts() shows) gives every leaf part, and each part
 * that is encoded, an attachment or not text is decoded into memory and
 * scanned over a memory map, archives, documents and any mail inside them
 * unpacked as usual (an inline text part in 7bit or 8bit has no bytes the
 * raw pass did not see). Files uuencoded inside a text part are decoded
 * (mime_uu.c) and scanned as files of their own, named by their "begin" line.
 * libclamav's own mail parser writes every part to a temporary file, which
 * is most of a small message's cost. What this gives up is two of that
 * parser's heuristics (BinHex bodies in text, text that merely looks like
 * base64). A message whose MIME structure is broken goes to libclamav
 * whole, so damage cannot hide a part from the scan. The limits hold for
 * the message as a whole: max_scan_size counts every decoded part,
 * max_scan_time runs across the parts, max_file_size bounds each part;
 * max_recursion bounds the archive nesting inside each part (the MIME
 * nesting has its own bound, mime_max_depth).
 *
 * With mail_parser = "libclamav" (and for broken MIME) the spooled message
 * is handed to libclamav as a map over a small virtual file: a "Received:"
 * line of our own, then the spool bytes, read on demand with pread
 * (cl_fmap_open_handle). The line makes libclamav's type detection see a
 * mail message whatever field the message starts with (it recognises mail
 * by the first bytes), so its parser decodes the MIME parts.
 *
 * libclamav (1.4) passes over some zips without a word: ZIP64 sizes, a
 * central directory that is missing or points outside the file. The file
 * inspection callback keeps a copy of such a zip (zip.h tells them) and,
 * once the scan that met it returns, postern unpacks its members itself
 * and scans each as a file of its own, under the same limits.
 *
 * Heuristic alerts are on only for what turns a scan into "could not
 * finish": limits exceeded and encrypted archives or documents. Their
 * "Heuristics.Limits.Exceeded..." and "Heuristics.Encrypted..." names come
 * back as CLAM_ERROR with incomplete set, so no policy mistakes them for a
 * virus or for clean mail.
 */
#include <clamav.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clam.h"
#include "mime.h"
#include "gzip_name.h"
#include "rar.h"
#include "zip.h"
#include "util/buf.h"
#include "util/sweep.h"
#include "util/xalloc.h"

#define SCAN_PREFIX	"Received: by postern for scanning\r\n"
#define SCAN_PREFIX_LEN	(sizeof(SCAN_PREFIX) - 1)
#define SCAN_IN_MEMORY_MAX	((off_t)1024 * 1024)	/* read whole, scan from memory, up to this */
#define FILES_MAX	100000	/* files listed per scan, whatever max_files says */

struct clam_engine {
	struct cl_engine *engine;	/* compiled, owned */
	struct cl_stat dbstat;		/* the database directory as loaded */
	bool	have_dbstat;		/* dbstat was filled */
	unsigned int signatures;	/* how many were loaded */
	long	load_ms;		/* how long loading and compiling took */
	bool	own_mime;		/* mail_parser = "postern": scan decoded parts */
	size_t	max_scan_size;		/* the limits, for the parts mode's own accounting */
	size_t	max_file_size;
	long	max_scan_time_ms;
	unsigned long max_recursion;
	unsigned long max_files;
};

/* a zip that libclamav does not unpack (see zip.h), kept until its scan returns */
struct pending_zip {
	unsigned char *bytes;		/* a copy of the archive, owned */
	size_t	len;
	unsigned depth;			/* the archive's own depth */
	struct pending_zip *next;
};

/* what libclamav's callbacks get: where the files go and how they are placed */
struct scan_ctx {
	struct clam_result *r;
	unsigned depth_base;		/* added to libclamav's recursion level */
	const char *top_name;		/* the name of what is scanned at level 0, or NULL */
	unsigned open_layers;		/* files whose scan began (on_file) and did not end */
	struct pending_zip *zips;	/* for unpack_zips, owned; in the order seen */
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

static void note_outcome(struct clam_result *r, cl_error_t rc, const char *virname);
static void limit_hit(struct clam_result *r, const char *name);
static void unpack_zips(const struct clam_engine *e, struct scan_ctx *ctx, struct clam_result *r);

/* a RAR member listed from its headers by daemon/rar.c, not by libclamav */
#define RAR_OWN_LISTING	UINT_MAX
/* the name a gzip header stores, read by daemon/gzip_name.c */
#define GZIP_OWN_LISTING (UINT_MAX - 1)
/* a zip member daemon/zip.c found and clam.c could not scan */
#define ZIP_OWN_LISTING	(UINT_MAX - 2)

struct rar_walk {
	struct clam_result *r;
	unsigned depth;		/* of the members */
	bool	encrypted;	/* a member is */
};

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
	struct scan_ctx *ctx = context;
	struct clam_result *r = ctx ? ctx->r : NULL;
	struct clam_file *f;

	(void)fsize_container;
	if (r == NULL || filename == NULL || *filename == '\0')
		return CL_CLEAN;
	for (size_t i = 0; i < r->nfiles; i++)
		if (r->files[i].from_meta && r->files[i].name != NULL &&
		    strcmp(r->files[i].name, filename) == 0 &&
		    (r->files[i].meta_pos == filepos_container ||
		     (r->files[i].meta_pos == RAR_OWN_LISTING && container_type != NULL &&
		      strcmp(container_type, "CL_TYPE_RAR") == 0)))
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
	/* one below the innermost file being scanned: the container (the callback does not say) */
	f->depth = ctx->depth_base + (ctx->open_layers > 0 ? ctx->open_layers : 1);
	f->encrypted = is_encrypted != 0;
	f->from_meta = true;
	f->meta_pos = filepos_container;
	return CL_CLEAN;
}

/* is_compressor - a single-file compressor's type: one file inside, no name of its own */
static bool
is_compressor(const char *type)
{
	return type != NULL &&
	       (strcmp(type, "GZ") == 0 || strcmp(type, "BZ") == 0 || strcmp(type, "XZ") == 0);
}

/*
 * gunzip_name - what gunzip would call the file inside the compressed file
 * `name`: "setup.exe" inside "setup.exe.gz", "x.tar" inside "x.tgz"; NULL
 * when the name says nothing
 */
static char *
gunzip_name(const char *name)
{
	static const struct { const char *suffix, *becomes; } suffixes[] = {
		{ ".tgz", ".tar" }, { ".taz", ".tar" }, { ".tbz2", ".tar" }, { ".tbz", ".tar" },
		{ ".txz", ".tar" }, { ".gz", "" }, { ".gzip", "" }, { ".z", "" }, { ".bz2", "" },
		{ ".bz", "" }, { ".xz", "" },
	};
	size_t len = name ? strlen(name) : 0;

	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		size_t sl = strlen(suffixes[i].suffix);

		if (len > sl && strcasecmp(name + len - sl, suffixes[i].suffix) == 0)
			return xasprintf("%.*s%s", (int)(len - sl), name, suffixes[i].becomes);
	}
	return NULL;
}

/*
 * decompressed_name - the name of a nameless file at depth whose parent is a
 * single-file compressor: the parent's name as gunzip would strip it; NULL
 * otherwise
 *
 * libclamav gives the file inside a .gz, .bz2 or .xz no name of its own, so
 * without this P.banned could not ban "invoice.js.gz" by what it holds.
 */
static char *
decompressed_name(const struct clam_result *r, unsigned depth)
{
	for (size_t i = r->nfiles; i-- > 0;)	/* the latest file one level up */
		if (r->files[i].depth + 1 == depth && !r->files[i].from_meta)
			return is_compressor(r->files[i].type) ? gunzip_name(r->files[i].name) : NULL;
	return NULL;
}

/*
 * list_gzip_name - the name a gzip header stores for the file inside, when
 * it says something gunzip's default naming does not
 *
 * Tools that honour the header (gzip -N, 7-Zip, WinRAR) unpack
 * "invoice.pdf.gz" under that name, so it is listed beside the file, one
 * level below the .gz, as a member would be.
 */
static void
list_gzip_name(struct clam_result *r, const struct clam_file *gz, const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	unsigned depth = gz->depth + 1;	/* gz points into r->files, which add_file may move */
	char stored[1024];
	char *derived;
	struct clam_file *f;

	if (p == NULL || !gzip_stored_name(p, len, stored, sizeof(stored)))
		return;
	derived = gunzip_name(gz->name);
	if ((derived == NULL || strcmp(derived, stored) != 0) && (f = add_file(r)) != NULL) {
		f->name = xstrdup(stored);
		f->type = xstrdup("MEMBER_OF_GZ");
		if (len >= 18)	/* the trailer's ISIZE: the size inside, mod 2^32 */
			f->size = (size_t)p[len - 4] | (size_t)p[len - 3] << 8 |
				  (size_t)p[len - 2] << 16 | (size_t)p[len - 1] << 24;
		f->depth = depth;
		f->from_meta = true;
		f->meta_pos = GZIP_OWN_LISTING;
	}
	free(derived);
}

/* rar_member - rar_list's callback: one member, listed as the metadata callback would */
static void
rar_member(const char *name, size_t name_len, uint64_t size, bool encrypted, void *arg)
{
	struct rar_walk *w = arg;
	struct clam_file *f = add_file(w->r);

	if (f == NULL)
		return;
	f->name = xstrndup(name, name_len);
	f->type = xstrdup("MEMBER_OF_RAR");
	f->size = (size_t)size;
	f->depth = w->depth;
	f->encrypted = encrypted;
	f->from_meta = true;
	f->meta_pos = RAR_OWN_LISTING;
	w->encrypted |= encrypted;
}

/*
 * list_rar_members - the names in a RAR archive's headers, one level below it
 *
 * libclamav names RAR members only with its unrar module, which Debian
 * ships apart; daemon/rar.c reads the names itself, so P.banned sees them
 * either way (the metadata callback then skips the names already listed).
 *
 * For the same reason libclamav cannot tell an encrypted RAR from a clean
 * one. An encrypted member, or headers encrypted so that not even the
 * names can be read (listed as one nameless encrypted member), make the
 * scan incomplete, with the name libclamav's unrar gives it: a RAR is
 * treated as an encrypted zip is, by clamav.on_incomplete.
 */
static void
list_rar_members(struct clam_result *r, const char *buf, size_t len, unsigned depth)
{
	struct rar_walk w = { r, depth + 1, false };
	struct clam_file *f;

	if (buf == NULL)
		return;
	if (rar_list((const unsigned char *)buf, len, rar_member, &w) == RAR_HEADERS_ENCRYPTED &&
	    (f = add_file(r)) != NULL) {
		f->type = xstrdup("MEMBER_OF_RAR");
		f->depth = depth + 1;
		f->encrypted = w.encrypted = true;
		f->from_meta = true;
		f->meta_pos = RAR_OWN_LISTING;
	}
	if (w.encrypted)
		note_outcome(r, CL_VIRUS, "Heuristics.Encrypted.RAR");
}

/*
 * keep_zip_if_skipped - a copy of a zip whose members libclamav passes over
 * (ZIP64, no usable central directory: zip.h), for unpack_zips once the
 * scan that found it returns; libclamav's buffer dies with this callback
 */
static void
keep_zip_if_skipped(struct scan_ctx *ctx, const char *buf, size_t len, unsigned depth)
{
	struct pending_zip *z, **tail;

	if (buf == NULL || zip_inspect((const unsigned char *)buf, len) == 0)
		return;
	z = xcalloc(1, sizeof(*z));
	z->bytes = xmalloc(len ? len : 1);
	memcpy(z->bytes, buf, len);
	z->len = len;
	z->depth = depth;
	for (tail = &ctx->zips; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = z;
}

/*
 * on_post - libclamav's post-scan callback: the innermost file's scan ended
 *
 * Kept only to tell the metadata callback how deep the container of a
 * member is (on_meta). Paths where libclamav skips this callback (a cache
 * hit) are mended by the next on_file, which sets the level outright.
 */
static cl_error_t
on_post(int fd, int result, const char *virname, void *context)
{
	struct scan_ctx *ctx = context;

	(void)fd;
	(void)result;
	(void)virname;
	if (ctx != NULL && ctx->open_layers > 0)
		ctx->open_layers--;
	return CL_CLEAN;
}

/* on_file - libclamav's file inspection callback: list the file */
static cl_error_t
on_file(int fd, const char *type, const char **ancestors, size_t parent_file_size,
	const char *file_name, size_t file_size, const char *file_buffer, uint32_t recursion_level,
	uint32_t layer_attributes, void *context)
{
	struct scan_ctx *ctx = context;
	struct clam_result *r = ctx ? ctx->r : NULL;
	struct clam_file *f;
	char *name = NULL;

	(void)fd;
	(void)ancestors;
	(void)parent_file_size;
	if (ctx != NULL)	/* this file's scan begins; any deeper one left over has ended */
		ctx->open_layers = recursion_level + 1;
	if (r == NULL || r->nfiles >= FILES_MAX)
		return CL_CLEAN;
	/* libclamav's own temporary names, and ours for the message, are not names */
	if (recursion_level == 0 && ctx->top_name != NULL)
		name = xstrdup(ctx->top_name);
	else if (file_name != NULL && !is_temp_name(file_name) && recursion_level > 0)
		name = xstrdup(file_name);
	else if (recursion_level > 0)
		name = decompressed_name(r, ctx->depth_base + recursion_level);
	f = add_file(r);
	f->name = name;
	if (type != NULL && strncmp(type, "CL_TYPE_", 8) == 0)
		type += 8;
	f->type = xstrdup(type ? type : "ANY");
	f->size = file_size;
	f->depth = ctx->depth_base + recursion_level;
	f->encrypted = (layer_attributes & LAYER_ATTRIBUTES_DECRYPTED) != 0;
	if (strcmp(f->type, "RAR") == 0)
		list_rar_members(r, file_buffer, file_size, f->depth);
	else if (strcmp(f->type, "GZ") == 0)
		list_gzip_name(r, f, file_buffer, file_size);
	else if (strcmp(f->type, "ZIP") == 0)
		keep_zip_if_skipped(ctx, file_buffer, file_size, f->depth);
	return CL_CLEAN;
}

/*
 * clam_engine_load - load and compile the signatures of cc->database
 *
 * tmpdir is where libclamav unpacks archives (clamav.temp_dir for the daemon;
 * NULL: libclamav's own default, $TMPDIR or /tmp, for postern test).
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
	e->own_mime = cc->mail_parser != NULL && strcmp(cc->mail_parser, "postern") == 0;
	e->max_scan_size = (size_t)cc->max_scan_size;
	e->max_file_size = (size_t)cc->max_file_size;
	e->max_scan_time_ms = cc->max_scan_time_ms;
	e->max_recursion = (unsigned long)cc->max_recursion;
	e->max_files = (unsigned long)cc->max_files;
	cl_engine_set_clcb_file_inspection(e->engine, on_file);
	cl_engine_set_clcb_meta(e->engine, on_meta);
	cl_engine_set_clcb_post_scan(e->engine, on_post);
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

/*
 * read_image - the whole virtual file (prefix, then the spool) in one heap
 * buffer, owned by the caller; NULL with errno on a read error
 *
 * For a message up to SCAN_IN_MEMORY_MAX this replaces libclamav's map over
 * a handle, which sets up an anonymous mapping per scan and reads it a page
 * range at a time: one pread instead.
 */
static char *
read_image(struct vfile *vf)
{
	size_t len = SCAN_PREFIX_LEN + (size_t)vf->size;
	char *image = xmalloc(len + 1);
	off_t got = vfile_read(vf, image, len, 0);

	if (got != (off_t)len) {
		free(image);
		errno = got < 0 ? errno : EIO;
		return NULL;
	}
	return image;
}

/* is_incomplete - a heuristic name that means the scan could not finish */
static bool
is_incomplete(const char *virname)
{
	return strncmp(virname, "Heuristics.Limits.Exceeded", 26) == 0 ||
	       strncmp(virname, "Heuristics.Encrypted", 20) == 0;
}

/* scan_options - every parser, the heuristics that mean "could not finish", all matches */
static void
scan_options(struct cl_scan_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->parse = ~0u;		/* every parser: mail, archives, documents, executables */
	/* all-match: a virus does not end the scan, so every file is listed for P.banned */
	opts->general = CL_SCAN_GENERAL_HEURISTICS | CL_SCAN_GENERAL_ALLMATCHES;
	opts->heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX | CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE |
			  CL_SCAN_HEURISTIC_ENCRYPTED_DOC;
}

/* note_incomplete - the scan could not finish, for why (unless something came first) */
static void
note_incomplete(struct clam_result *r, const char *why)
{
	if (r->status == CLAM_CLEAN) {
		r->status = CLAM_ERROR;
		r->incomplete = true;
		r->error = xasprintf("scan incomplete: %s", why);
	}
}

/*
 * note_outcome - fold one libclamav answer into r
 *
 * A detection wins over everything (an incomplete part must not hide a
 * virus in another), then an error, then clean; the first of each kind is
 * the one reported.
 */
static void
note_outcome(struct clam_result *r, cl_error_t rc, const char *virname)
{
	if (rc == CL_CLEAN || r->status == CLAM_INFECTED)
		return;
	/*
	 * A detection always has a name. libclamav answers CL_VIRUS without one
	 * when it stops at a limit before its scan context exists (a file over
	 * MaxFileSize with the limits heuristic on): that is a scan that did not
	 * happen, never a virus, or clean mail over the limit would be "infected".
	 */
	if (rc == CL_VIRUS && virname == NULL)
		virname = "Heuristics.Limits.Exceeded (libclamav named no signature)";
	if (rc == CL_VIRUS && is_incomplete(virname))
		note_incomplete(r, virname);
	else if (rc == CL_VIRUS) {
		free(r->error);
		r->error = NULL;
		r->incomplete = false;
		r->status = CLAM_INFECTED;
		r->virus = xstrdup(virname);
	} else if (r->status == CLAM_CLEAN) {
		r->status = CLAM_ERROR;
		r->incomplete = rc == CL_ETIMEOUT || rc == CL_EMAXREC || rc == CL_EMAXSIZE ||
				rc == CL_EMAXFILES;
		r->error = xasprintf("scan failed: %s", cl_strerror(rc));
	}
}

/*
 * scan_whole - the spooled message as one mail, parsed by libclamav or (parse_mail
 * false) only matched as it is: the raw pass of the "postern" mode
 */
static int
scan_whole(const struct clam_engine *e, int fd, off_t size, bool parse_mail,
	   struct clam_result *r)
{
	struct cl_scan_options opts;
	struct vfile vf = { fd, size };
	struct scan_ctx ctx = { r, 0, NULL, 0, NULL };
	const char *virname = NULL;
	unsigned long scanned = 0;
	char *image = NULL;
	cl_fmap_t *map;
	cl_error_t rc;

	/* libclamav would skip it unnamed (see note_outcome); say which limit */
	if (SCAN_PREFIX_LEN + (size_t)size > e->max_file_size) {
		limit_hit(r, "Heuristics.Limits.Exceeded.MaxFileSize");
		return 0;	/* the parts may still be scanned, one by one */
	}
	scan_options(&opts);
	if (!parse_mail)
		opts.parse &= ~CL_SCAN_PARSE_MAIL;
	if (size <= SCAN_IN_MEMORY_MAX) {
		image = read_image(&vf);
		if (image == NULL) {
			r->status = CLAM_ERROR;
			r->error = xasprintf("cannot read the message for scanning: %s", strerror(errno));
			return -1;
		}
		map = cl_fmap_open_memory(image, SCAN_PREFIX_LEN + (size_t)size);
	} else
		map = cl_fmap_open_handle(&vf, 0, SCAN_PREFIX_LEN + (size_t)size, vfile_read, 1);
	if (map == NULL) {
		free(image);
		r->status = CLAM_ERROR;
		r->error = xstrdup("cannot map the message for scanning");
		return -1;
	}
	rc = cl_scanmap_callback(map, "message", &virname, &scanned, e->engine, &opts, &ctx);
	cl_fmap_close(map);
	free(image);
	note_outcome(r, rc, virname);
	unpack_zips(e, &ctx, r);
	return 0;
}

/* limit_hit - the scan stops here: incomplete, with libclamav's name for the limit */
static void
limit_hit(struct clam_result *r, const char *name)
{
	note_outcome(r, CL_VIRUS, name);
}

/* scan_part - one decoded part from memory, its files placed under depth_base */
static void
scan_part(const struct clam_engine *e, const struct buf *content, const char *name,
	  unsigned depth_base, struct clam_result *r)
{
	struct cl_scan_options opts;
	struct scan_ctx ctx = { r, depth_base, name, 0, NULL };
	const char *virname = NULL;
	unsigned long scanned = 0;
	cl_fmap_t *map;
	cl_error_t rc;

	scan_options(&opts);
	if ((map = cl_fmap_open_memory(content->len ? content->ptr : "", content->len)) == NULL) {
		note_outcome(r, CL_EMEM, NULL);
		return;
	}
	rc = cl_scanmap_callback(map, name ? name : "part", &virname, &scanned, e->engine, &opts,
				 &ctx);
	cl_fmap_close(map);
	note_outcome(r, rc, virname);
	unpack_zips(e, &ctx, r);
}

/* the walk over one zip that clam.c unpacks itself */
struct zip_unpack {
	const struct clam_engine *e;
	struct clam_result *r;
	unsigned depth;			/* of the members */
	unsigned long members;		/* seen so far, for max_files */
	struct buf content;		/* the member being scanned */
};

/* list_unscanned - name a member that could not be scanned, unless libclamav named it */
static void
list_unscanned(struct zip_unpack *u, const char *name, const struct zip_member *m)
{
	struct clam_result *r = u->r;
	struct clam_file *f;

	for (size_t i = 0; i < r->nfiles; i++)
		if (r->files[i].from_meta && r->files[i].depth == u->depth &&
		    r->files[i].name != NULL && strcmp(r->files[i].name, name) == 0)
			return;
	if ((f = add_file(r)) == NULL)
		return;
	f->name = xstrdup(name);
	f->type = xstrdup("MEMBER_OF_ZIP");
	f->size = m->usize > SIZE_MAX ? SIZE_MAX : (size_t)m->usize;
	f->depth = u->depth;
	f->encrypted = m->encrypted;
	f->from_meta = true;
	f->meta_pos = ZIP_OWN_LISTING;
}

/*
 * unpack_member - zip_list's callback: unpack one member and scan it as a
 * file of its own (its archives and any skipped zip inside it too), under
 * the scan's limits; a member that cannot be unpacked makes the scan
 * incomplete, as it would inside libclamav
 */
static bool
unpack_member(const struct zip_member *m, void *arg)
{
	struct zip_unpack *u = arg;
	const struct clam_engine *e = u->e;
	struct clam_result *r = u->r;
	char *name, why[160];
	bool go_on = true;

	if (m->is_dir)
		return true;
	if (++u->members > e->max_files) {
		limit_hit(r, "Heuristics.Limits.Exceeded.MaxFiles");
		return false;
	}
	if (now_ms() - r->started_ms > e->max_scan_time_ms) {
		limit_hit(r, "Heuristics.Limits.Exceeded.MaxScanTime");
		return false;
	}
	name = xstrndup(m->name, m->name_len);
	buf_reset(&u->content);
	if (m->encrypted) {
		list_unscanned(u, name, m);
		note_outcome(r, CL_VIRUS, "Heuristics.Encrypted.Zip");
	} else if (m->usize > e->max_file_size) {
		list_unscanned(u, name, m);
		limit_hit(r, "Heuristics.Limits.Exceeded.MaxFileSize");
	} else switch (zip_inflate(m, e->max_file_size, &u->content)) {
	case ZIP_INFLATE_TOO_BIG:	/* its bytes were unpacked, if not scanned: they count */
		list_unscanned(u, name, m);
		limit_hit(r, "Heuristics.Limits.Exceeded.MaxFileSize");
		if ((r->own_unpacked += e->max_file_size) > e->max_scan_size) {
			limit_hit(r, "Heuristics.Limits.Exceeded.MaxScanSize");
			go_on = false;
		}
		break;
	case ZIP_INFLATE_UNSUPPORTED:
		list_unscanned(u, name, m);
		snprintf(why, sizeof(why), "zip member with compression method %u, which "
			 "postern does not unpack", m->method);
		note_incomplete(r, why);
		break;
	default:	/* whole, or what came before damage: scanned either way */
		if ((r->own_unpacked += u->content.len) > e->max_scan_size) {
			limit_hit(r, "Heuristics.Limits.Exceeded.MaxScanSize");
			go_on = false;
		} else
			scan_part(e, &u->content, name, u->depth, r);
	}
	free(name);
	return go_on;
}

/*
 * unpack_zips - the zips this scan met that libclamav passes over (see
 * zip.h), unpacked here and their members scanned; each level of nesting
 * counts against max_recursion, every byte against max_scan_size
 */
static void
unpack_zips(const struct clam_engine *e, struct scan_ctx *ctx, struct clam_result *r)
{
	struct pending_zip *z;

	while ((z = ctx->zips) != NULL) {
		struct zip_unpack u = { e, r, z->depth + 1, 0, { 0 } };

		ctx->zips = z->next;
		if (u.depth > e->max_recursion)
			limit_hit(r, "Heuristics.Limits.Exceeded.MaxRecursion");
		else {
			buf_init(&u.content, 0);
			zip_list(z->bytes, z->len, unpack_member, &u);
			buf_release(&u.content);
		}
		free(z->bytes);
		free(z);
	}
}

/* is_identity - an encoding whose decoded bytes are the bytes in the message */
static bool
is_identity(const char *encoding)
{
	return strcmp(encoding, "7bit") == 0 || strcmp(encoding, "8bit") == 0 ||
	       strcmp(encoding, "binary") == 0;
}

/*
 * needs_own_scan - must this leaf part be scanned on its own, beside the raw pass
 *
 * The raw pass sees a part's bytes as they are in the message; that is all
 * an inline text part with an identity encoding has. Everything else is
 * scanned decoded and as a file of its own, for the signatures that need
 * the decoded bytes, the whole file (hashes) or its type (archives,
 * documents, executables): encoded parts, attachments, anything not text.
 */
static bool
needs_own_scan(const struct mime_part *p)
{
	return !is_identity(p->encoding) || p->filename != NULL ||
	       strncmp(p->content_type, "text/", 5) != 0;
}

/*
 * scan_uuencoded - every uuencoded file inside a text part, scanned as a file of its own
 *
 * Named as its "begin" line names it (for P.banned), one level below the
 * part. Returns -1 when the message's scan size is used up (the scan stops).
 */
static int
scan_uuencoded(const struct clam_engine *e, const struct buf *text, unsigned depth,
	       struct clam_result *r, size_t *total)
{
	struct buf file;
	size_t pos = 0;
	char *name = NULL;
	int rc = 0;

	if (text->len < 6 || memmem(text->ptr, text->len, "begin ", 6) == NULL)
		return 0;	/* the common case, decided without walking the lines */
	/* a refused line leaves more than max_file_size: over the limit, never cut short */
	buf_init(&file, e->max_file_size + 64);
	while (mime_uu_next(text->ptr, text->len, &pos, &file, &name)) {
		if (file.len > e->max_file_size)
			limit_hit(r, "Heuristics.Limits.Exceeded.MaxFileSize");
		else if ((*total += file.len) > e->max_scan_size) {
			limit_hit(r, "Heuristics.Limits.Exceeded.MaxScanSize");
			rc = -1;
		} else
			scan_part(e, &file, name, depth, r);
		free(name);
		name = NULL;
		buf_reset(&file);
		if (rc < 0)
			break;
	}
	buf_release(&file);
	return rc;
}

/*
 * scan_parts - mail_parser = "postern": a raw pass, then the leaf parts decoded
 *
 * The raw pass matches the message as it is, with libclamav's mail parser
 * off, so signatures for the mail file type and raw-body patterns still
 * match; it lists the message itself (type MAIL, depth 0). Then each leaf
 * part that needs it is decoded into memory and scanned; its own file is
 * at its MIME depth (at least 1), archive members below it. The limits
 * apply to the message as a whole.
 */
static int
scan_parts(const struct clam_engine *e, int fd, off_t size, const struct mime_tree *tree,
	   struct clam_result *r, long long start)
{
	bool *has_child;
	struct buf content;
	size_t total;

	if (scan_whole(e, fd, size, false, r) < 0)
		return -1;
	if ((total = (size_t)size) > e->max_scan_size) {
		limit_hit(r, "Heuristics.Limits.Exceeded.MaxScanSize");
		return 0;
	}
	has_child = xcalloc(tree->nparts ? tree->nparts : 1, sizeof(*has_child));
	for (size_t i = 1; i < tree->nparts; i++)
		if (tree->parts[i].parent < tree->nparts)
			has_child[tree->parts[i].parent] = true;
	buf_init(&content, 0);
	for (size_t i = 0; i < tree->nparts; i++) {
		const struct mime_part *p = &tree->parts[i];
		bool truncated = false, own = needs_own_scan(p);
		unsigned depth = p->depth > 0 ? (unsigned)p->depth : 1;

		if (p->is_multipart || has_child[i] ||
		    (!own && strncmp(p->content_type, "text/", 5) != 0))
			continue;	/* a container: its children are scanned */
		if (now_ms() - start > e->max_scan_time_ms) {
			limit_hit(r, "Heuristics.Limits.Exceeded.MaxScanTime");
			break;
		}
		buf_reset(&content);
		if (mime_part_content(fd, p, e->max_file_size, &content, &truncated) < 0) {
			note_outcome(r, CL_EREAD, NULL);
			break;
		}
		if (own && truncated) {
			limit_hit(r, "Heuristics.Limits.Exceeded.MaxFileSize");
			continue;
		}
		if (own && (total += content.len) > e->max_scan_size) {
			limit_hit(r, "Heuristics.Limits.Exceeded.MaxScanSize");
			break;
		}
		if (own)
			scan_part(e, &content, p->filename, depth, r);
		if (strncmp(p->content_type, "text/", 5) == 0 &&
		    scan_uuencoded(e, &content, depth + 1, r, &total) < 0)
			break;
	}
	buf_release(&content);
	free(has_child);
	return 0;
}

/*
 * clam_scan - scan the spooled message (fd, size bytes)
 *
 * tree is the message's MIME structure, used when the engine takes
 * messages apart itself (clam_engine_own_mime); it may be NULL otherwise.
 * Fills *r (release it with clam_result_release); returns 0, or -1 when
 * the scan could not even start (r->status is CLAM_ERROR then too).
 */
int
clam_scan(const struct clam_engine *e, int fd, off_t size, const struct mime_tree *tree,
	  struct clam_result *r)
{
	long long start = now_ms();
	int rc;

	memset(r, 0, sizeof(*r));
	r->started_ms = start;
	if (e->own_mime && tree != NULL && tree->broken_reason == NULL)
		rc = scan_parts(e, fd, size, tree, r, start);
	else
		rc = scan_whole(e, fd, size, true, r);
	r->elapsed_ms = (long)(now_ms() - start);
	return rc;
}

/* clam_engine_own_mime - does clam_scan want the message's MIME tree */
bool
clam_engine_own_mime(const struct clam_engine *e)
{
	return e->own_mime;
}

/* is_scan_leftover - a per-scan directory or extracted file of libclamav's */
static bool
is_scan_leftover(const char *name, void *arg)
{
	(void)arg;
	return strstr(name, "-scantemp.") != NULL || is_temp_name(name);
}

/*
 * clam_clean_temp_dir - remove what libclamav left in dir when a worker died mid-scan
 *
 * libclamav removes its per-scan directory ("...-scantemp.XXXX") when a
 * scan ends; a worker killed during one leaves it behind, and on disk it
 * would stay for good. Only called at start, when no scan runs. Only
 * libclamav's own names are touched. Returns how many were removed.
 */
int
clam_clean_temp_dir(const char *dir)
{
	return sweep_dir(dir, is_scan_leftover, NULL, true);
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
