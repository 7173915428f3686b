/*-------------------------------------------------------------------------
 *
 * cmap_persist.c
 *	  Saving the maps at clean shutdown and restoring them at start.
 *
 * The maps are a cache that survives clean restarts, like pg_stat_statements'
 * statistics.  At a clean shutdown (smart or fast: the control file says
 * the cluster was shut down) the postmaster, the last process still
 * attached, walks the current version of every map straight out of the
 * in-place DSA area and writes it to pg_stat/cmapext.dump: first to a
 * temporary file, fsynced, then durably renamed.  At start, still in the
 * postmaster and before any backend exists, the file is verified from end
 * to end, loaded, and removed, so that a later crash or a base backup never
 * brings stale contents back.  After a crash (or an immediate shutdown) the
 * maps start empty, like UNLOGGED tables.
 *
 * A missing, truncated, corrupted or foreign file never stops the server:
 * it is reported with a WARNING and the maps start empty.  A map that does
 * not fit in cmapext.max_memory any more is dropped with a WARNING.
 *
 * File format (host byte order; the header names the PostgreSQL major
 * version, and a CRC-32C over everything guards the rest):
 *	  header:  magic, format version, PG major version, number of maps
 *	  per map: map marker, database OID, version, entry count,
 *			   then per entry: key length, value length, entry version, key, value
 *	  trailer: end marker, CRC-32C of all preceding bytes
 *
 * Locking: none needed; only the postmaster runs at these two moments.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_persist.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog_internal.h"
#include "catalog/pg_control.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/memutils.h"

#include "cmapext.h"
#include "cmap_commit.h"
#include "cmap_persist.h"
#include "cmap_shmem.h"
#include "cmap_tree.h"

#define CMAP_DUMP_FILE		"pg_stat/cmapext.dump"
#define CMAP_DUMP_TMP		CMAP_DUMP_FILE ".tmp"

#define CMAP_DUMP_MAGIC		0x434d4150	/* "CMAP" */
#define CMAP_DUMP_FORMAT	1
#define CMAP_DUMP_MAPMARK	0x4d415021	/* "MAP!" */
#define CMAP_DUMP_ENDMARK	0x454e4421	/* "END!" */
#define CMAP_PG_MAJOR		(PG_VERSION_NUM / 10000)

typedef struct DumpHeader
{
	uint32		magic;
	uint32		format;
	uint32		pg_major;
	uint32		nmaps;
} DumpHeader;

typedef struct DumpMap
{
	uint32		mark;
	uint32		dboid;
	uint64		version;
	uint64		count;
} DumpMap;

typedef struct DumpEntry
{
	uint32		keylen;
	uint32		pad;
	uint64		vallen;
	uint64		version;
} DumpEntry;

/* A file being read or written, with its running CRC. */
typedef struct DumpFile
{
	FILE	   *fp;
	pg_crc32c	crc;
	bool		failed;
} DumpFile;

static void cmap_persist_shutdown(int code, Datum arg);
static bool cluster_shut_down_cleanly(void);
static void dump_write(DumpFile *f, const void *data, Size len);
static bool dump_read(DumpFile *f, void *data, Size len);
static bool dump_verify(const char *path, int *nmaps);
static void dump_load(const char *path);

/* ------------------------------------------------------------------------
 * Startup
 * ------------------------------------------------------------------------
 */

/*
 * Postmaster, after shared memory was created (at start and after a crash
 * restart): arrange for the shutdown dump, then restore a saved dump.
 */
void
cmap_persist_startup(void)
{
	struct stat st;
	int			nmaps;

	on_shmem_exit(cmap_persist_shutdown, (Datum) 0);

	if (stat(CMAP_DUMP_FILE, &st) != 0)
		return;					/* nothing saved */

	if (!cmap_persist)
	{
		ereport(LOG,
				(errmsg("cmapext: removing saved maps because \"cmapext.persist\" is off")));
		(void) unlink(CMAP_DUMP_FILE);
		return;
	}

	if (dump_verify(CMAP_DUMP_FILE, &nmaps))
		dump_load(CMAP_DUMP_FILE);

	/* never load the same file twice (crash restarts, base backups) */
	if (unlink(CMAP_DUMP_FILE) != 0 && errno != ENOENT)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", CMAP_DUMP_FILE)));
}

static bool
dump_read(DumpFile *f, void *data, Size len)
{
	if (f->failed)
		return false;
	if (len > 0 && fread(data, 1, len, f->fp) != len)
	{
		f->failed = true;
		return false;
	}
	COMP_CRC32C(f->crc, data, len);
	return true;
}

/* Report a unusable dump file; the maps start empty. */
static void
dump_reject(const char *path, const char *why)
{
	ereport(WARNING,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("cmapext: ignoring saved maps in file \"%s\"", path),
			 errdetail("%s", why),
			 errhint("The maps start empty.")));
}

/*
 * First pass: check the whole file (structure, limits, key order, CRC)
 * before anything is loaded, so that a damaged file loads nothing.
 */
static bool
dump_verify(const char *path, int *nmaps)
{
	DumpFile	f;
	DumpHeader	hdr;
	char	   *keybuf = NULL;
	char	   *prevkey = NULL;
	uint32		i;
	bool		ok = false;
	const char *why = "The file is truncated or corrupted.";
	char		whybuf[128];

	f.fp = AllocateFile(path, PG_BINARY_R);
	if (f.fp == NULL)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("cmapext: could not open file \"%s\": %m", path),
				 errhint("The maps start empty.")));
		return false;
	}
	f.failed = false;
	INIT_CRC32C(f.crc);
	keybuf = palloc(CMAP_MAX_KEY_LEN + 1);
	prevkey = palloc(CMAP_MAX_KEY_LEN + 1);

	if (!dump_read(&f, &hdr, sizeof(hdr)))
		goto done;
	if (hdr.magic != CMAP_DUMP_MAGIC)
	{
		why = "The file is not a cmapext dump.";
		goto done;
	}
	if (hdr.format != CMAP_DUMP_FORMAT || hdr.pg_major != CMAP_PG_MAJOR)
	{
		snprintf(whybuf, sizeof(whybuf),
				 "The file has format %u from PostgreSQL %u; this server reads format %u from PostgreSQL %u.",
				 hdr.format, hdr.pg_major, CMAP_DUMP_FORMAT, CMAP_PG_MAJOR);
		why = whybuf;
		goto done;
	}
	if (hdr.nmaps > 1024)
	{
		why = "The file is corrupted (impossible number of maps).";
		goto done;
	}

	for (i = 0; i < hdr.nmaps; i++)
	{
		DumpMap		m;
		uint64		n;
		int			prevlen = -1;

		if (!dump_read(&f, &m, sizeof(m)))
			goto done;
		if (m.mark != CMAP_DUMP_MAPMARK || m.dboid == InvalidOid ||
			m.version > CMAP_MAX_VERSION)
		{
			why = "The file is corrupted (bad map header).";
			goto done;
		}
		for (n = 0; n < m.count; n++)
		{
			DumpEntry	e;
			char		chunk[8192];
			uint64		left;

			if (!dump_read(&f, &e, sizeof(e)))
				goto done;
			if (e.keylen > CMAP_MAX_KEY_LEN || e.vallen > CMAP_MAX_VALUE_LEN ||
				e.version > m.version)
			{
				why = "The file is corrupted (bad entry).";
				goto done;
			}
			if (!dump_read(&f, keybuf, e.keylen))
				goto done;
			/* keys must be strictly ascending */
			if (prevlen >= 0)
			{
				int			c = memcmp(prevkey, keybuf, Min(prevlen, (int) e.keylen));

				if (c > 0 || (c == 0 && prevlen >= (int) e.keylen))
				{
					why = "The file is corrupted (keys out of order).";
					goto done;
				}
			}
			memcpy(prevkey, keybuf, e.keylen);
			prevlen = e.keylen;
			for (left = e.vallen; left > 0;)
			{
				Size		part = Min(left, sizeof(chunk));

				if (!dump_read(&f, chunk, part))
					goto done;
				left -= part;
			}
		}
	}

	{
		uint32		mark;
		pg_crc32c	expected;
		pg_crc32c	stored;

		if (!dump_read(&f, &mark, sizeof(mark)) || mark != CMAP_DUMP_ENDMARK)
			goto done;
		expected = f.crc;
		FIN_CRC32C(expected);
		if (fread(&stored, 1, sizeof(stored), f.fp) != sizeof(stored))
			goto done;
		if (stored != expected)
		{
			why = "The file is corrupted (checksum mismatch).";
			goto done;
		}
		if (fgetc(f.fp) != EOF)
		{
			why = "The file is corrupted (trailing bytes).";
			goto done;
		}
	}
	*nmaps = hdr.nmaps;
	ok = true;

done:
	FreeFile(f.fp);
	pfree(keybuf);
	pfree(prevkey);
	if (!ok)
		dump_reject(path, why);
	return ok;
}

/*
 * Second pass: rebuild each map from its sorted entries (an O(n) bulk
 * load) and publish it with its saved version.  Runs in the postmaster; an
 * ERROR (out of cmapext memory, too many databases) drops that map with a
 * WARNING and goes on.
 */
static void
dump_load(const char *path)
{
	DumpFile	f;
	DumpHeader	hdr = {0};
	uint32		i;
	MemoryContext cxt;
	MemoryContext oldcxt;
	uint64		total = 0;
	uint32		loaded = 0;

	f.fp = AllocateFile(path, PG_BINARY_R);
	if (f.fp == NULL)
		return;
	f.failed = false;
	INIT_CRC32C(f.crc);

	cxt = AllocSetContextCreate(TopMemoryContext, "cmapext restore",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	cmap_area = dsa_attach_in_place(cmap_shared->dsa_place, NULL);

	if (!dump_read(&f, &hdr, sizeof(hdr)))
		hdr.nmaps = 0;
	for (i = 0; i < hdr.nmaps && !f.failed; i++)
	{
		DumpMap		m = {0};

		/* modified inside PG_TRY and read in PG_CATCH: must be volatile */
		CmapWriter *volatile w = NULL;
		volatile uint64 consumed = 0;	/* entries fully read from the file */
		dsa_pointer *volatile blobs = NULL; /* values copied so far */
		volatile int nblobs = 0;

		if (!dump_read(&f, &m, sizeof(m)))
			break;

		PG_TRY();
		{
			CmapMap    *map = cmap_claim_map(m.dboid);
			CmapTree	empty = {InvalidDsaPointer, 0, 0};
			char		key[CMAP_MAX_KEY_LEN];
			char	   *valbuf = NULL;
			Size		valcap = 0;
			int			hdr_slot;
			uint64		n;

			int			maxblobs = 0;

			w = palloc0(sizeof(CmapWriter));
			cmap_writer_init(w, map->index, Max(m.version, 1), &empty, 0, 0);
			w->may_fail = true;
			for (n = 0; n < m.count; n++)
			{
				DumpEntry	e = {0};
				dsa_pointer blob = InvalidDsaPointer;

				/* the file was verified; a failure now means it changed under us */
				if (!dump_read(&f, &e, sizeof(e)) || e.keylen > CMAP_MAX_KEY_LEN ||
					!dump_read(&f, key, e.keylen))
					elog(ERROR, "dump file changed while being read");
				if (e.vallen > valcap)
				{
					valbuf = valbuf ? repalloc_huge(valbuf, e.vallen) :
						MemoryContextAllocHuge(cxt, e.vallen);
					valcap = e.vallen;
				}
				if (!dump_read(&f, valbuf, e.vallen))
					elog(ERROR, "dump file changed while being read");
				consumed = n + 1;
				if (e.vallen > CMAP_INLINE_VALUE_MAX)
				{
					bool		oom;

					if (nblobs >= maxblobs)
					{
						maxblobs = Max(64, maxblobs * 2);
						blobs = blobs ? repalloc(blobs, sizeof(dsa_pointer) * maxblobs) :
							palloc(sizeof(dsa_pointer) * maxblobs);
					}
					blob = cmap_blob_alloc(valbuf, e.vallen, &oom);
					if (!DsaPointerIsValid(blob))
						cmap_report_oom("a restored value", e.vallen);
					blobs[nblobs++] = blob;
				}
				cmap_writer_put_version(w, key, e.keylen, valbuf, e.vallen,
										blob, e.version);
			}
			/* an empty map keeps its version too (so versions never go back) */
			if (m.version > 0)
				w->changed = true;
			hdr_slot = cmap_header_reserve();
			LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
			if (w->changed)
				(void) cmap_commit_publish(map, w, hdr_slot);
			LWLockRelease(map->writer_lock);
			if (!w->changed)
				cmap_header_release(hdr_slot);
			nblobs = 0;			/* the map owns them now */
			cmap_writer_finish(w);
			w = NULL;
			total += m.count;
			loaded++;
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			uint64		k;
			int			b;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			LWLockReleaseAll();
			if (w != NULL)
				cmap_writer_discard(w);
			for (b = 0; b < nblobs; b++)
				cmap_blob_free(blobs[b]);
			ereport(WARNING,
					(errmsg("cmapext: could not restore the map of database %u: %s",
							m.dboid, edata->message),
					 errhint("The map of that database starts empty.")));
			FreeErrorData(edata);

			/* skip the rest of this map's entries */
			for (k = consumed; k < m.count; k++)
			{
				DumpEntry	e = {0};
				char		chunk[8192];
				uint64		left;

				if (!dump_read(&f, &e, sizeof(e)))
					break;
				for (left = e.keylen + e.vallen; left > 0;)
				{
					Size		part = Min(left, sizeof(chunk));

					(void) dump_read(&f, chunk, part);
					left -= part;
				}
			}
		}
		PG_END_TRY();
	}
	FreeFile(f.fp);

	dsa_detach(cmap_area);
	cmap_area = NULL;			/* children attach for themselves */
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);

	ereport(LOG,
			(errmsg("cmapext: restored %llu entries in %u maps from \"%s\"",
					(unsigned long long) total, loaded, path)));
}

/* ------------------------------------------------------------------------
 * Shutdown
 * ------------------------------------------------------------------------
 */

/*
 * Did the checkpointer record a clean shutdown?  An immediate shutdown
 * leaves the control file "in production": that is a crash for our
 * purposes, and the maps are not saved.  Reads pg_control by hand so that
 * nothing here can raise an error during postmaster exit.
 */
static bool
cluster_shut_down_cleanly(void)
{
	ControlFileData cf;
	pg_crc32c	crc;
	int			fd;
	bool		ok;

	fd = open(XLOG_CONTROL_FILE, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		return false;
	ok = (read(fd, &cf, sizeof(cf)) == sizeof(cf));
	close(fd);
	if (!ok)
		return false;
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &cf, offsetof(ControlFileData, crc));
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, cf.crc))
		return false;
	return cf.state == DB_SHUTDOWNED || cf.state == DB_SHUTDOWNED_IN_RECOVERY;
}

static void
dump_write(DumpFile *f, const void *data, Size len)
{
	if (f->failed || len == 0)
		return;
	if (fwrite(data, 1, len, f->fp) != len)
		f->failed = true;
	COMP_CRC32C(f->crc, data, len);
}

/*
 * on_shmem_exit callback of the postmaster.  Every other process is gone,
 * so the published versions are final and can be read without pins.
 * Failures are logged, never raised.
 */
static void
cmap_persist_shutdown(int code, Datum arg)
{
	DumpFile	f;
	DumpHeader	hdr;
	int			i;
	uint32		nmaps = 0;
	uint64		total = 0;
	uint32		mark;
	pg_crc32c	crc;

	if (code != 0 || cmap_shared == NULL || !cmap_persist)
		return;					/* don't save during a crash, or when asked not to */
	if (!cluster_shut_down_cleanly())
		return;

	for (i = 0; i < cmap_shared->max_maps; i++)
		if (cmap_map_by_index(i)->state == CMAP_MAP_ACTIVE)
			nmaps++;
	if (nmaps == 0)
		return;

	f.fp = AllocateFile(CMAP_DUMP_TMP, PG_BINARY_W);
	if (f.fp == NULL)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for writing: %m", CMAP_DUMP_TMP)));
		return;
	}
	f.failed = false;
	INIT_CRC32C(f.crc);

	hdr.magic = CMAP_DUMP_MAGIC;
	hdr.format = CMAP_DUMP_FORMAT;
	hdr.pg_major = CMAP_PG_MAJOR;
	hdr.nmaps = nmaps;
	dump_write(&f, &hdr, sizeof(hdr));

	for (i = 0; i < cmap_shared->max_maps; i++)
	{
		CmapMap    *map = cmap_map_by_index(i);
		uint64		word;
		CmapHeader *h;
		CmapTree	tree;
		CmapCursor	cur;
		CmapItem	item;
		DumpMap		m;

		if (map->state != CMAP_MAP_ACTIVE)
			continue;
		word = pg_atomic_read_u64(&map->current);
		h = &cmap_shared->headers[CMAP_WORD_SLOT(word)];
		tree = cmap_header_tree(h);

		m.mark = CMAP_DUMP_MAPMARK;
		m.dboid = map->dboid;
		m.version = h->version;
		m.count = h->count;
		dump_write(&f, &m, sizeof(m));

		for (cmap_cursor_seek(&cur, &tree, NULL, 0);
			 cmap_cursor_get(&cur, &item);
			 cmap_cursor_next(&cur))
		{
			DumpEntry	e;

			e.keylen = item.keylen;
			e.pad = 0;
			e.vallen = item.vallen;
			e.version = item.version;
			dump_write(&f, &e, sizeof(e));
			dump_write(&f, item.key, item.keylen);
			dump_write(&f, item.value, item.vallen);
			total++;
		}
	}

	mark = CMAP_DUMP_ENDMARK;
	dump_write(&f, &mark, sizeof(mark));
	crc = f.crc;
	FIN_CRC32C(crc);
	if (!f.failed && fwrite(&crc, 1, sizeof(crc), f.fp) != sizeof(crc))
		f.failed = true;

	if (f.failed || fflush(f.fp) != 0 || pg_fsync(fileno(f.fp)) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", CMAP_DUMP_TMP)));
		FreeFile(f.fp);
		(void) unlink(CMAP_DUMP_TMP);
		return;
	}
	if (FreeFile(f.fp) != 0)
	{
		(void) unlink(CMAP_DUMP_TMP);
		return;
	}
	if (durable_rename(CMAP_DUMP_TMP, CMAP_DUMP_FILE, LOG) == 0)
		ereport(LOG,
				(errmsg("cmapext: saved %llu entries in %u maps to \"%s\"",
						(unsigned long long) total, nmaps, CMAP_DUMP_FILE)));
	else
		(void) unlink(CMAP_DUMP_TMP);
}
