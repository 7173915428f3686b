/*-------------------------------------------------------------------------
 *
 * cmap_tree.c
 *	  The persistent (path-copying) B+tree holding one version of a map.
 *
 * Node format.  A node is a CMAP_NODE_SIZE slotted page: a header, an array
 * of 16-bit item offsets kept in key order, and items packed from the end
 * of the page.  Items are byte-packed and read with memcpy.
 *
 *	 leaf item:  uint16 keylen | uint16 vinfo | uint64 version | key | value
 *	 inner item: uint16 keylen | dsa_pointer child | key
 *
 * vinfo is the inline value length, or CMAP_VINFO_OOL when the value is a
 * blob whose dsa_pointer follows the key.  Inner item i covers the keys in
 * [key_i, key_i+1); the key of item 0 is always empty (the empty string
 * sorts first, so it acts as minus infinity).  Separators pushed up by leaf
 * splits are suffix-truncated: the shortest prefix of the right half's
 * first key that still sorts after the left half's last key.
 *
 * Persistence.  Nodes reachable from a published root are never modified.
 * A writer builds version V by copying each node on the path to a changed
 * key; the copy carries birth = V and the original is "retired" with death =
 * V (it stays reachable from versions birth..V-1).  A node whose birth is
 * already V was created by this same writer and is edited in place, so a
 * batch of k keys copies the shared upper levels only once.  Blobs are
 * retired the same way when their entry is overwritten or deleted.  The
 * retire list is intrusive (CmapRetired), so retiring never allocates.
 *
 * Sorted batches.  The writer remembers the path of its previous operation
 * (the finger).  When operations arrive in ascending key order, the next key
 * usually lies in the same leaf, found with one comparison against the
 * parent's next separator, and a split of a node at its right end keeps the
 * left node full.  A sorted load of n keys into an empty map is therefore
 * O(n) and leaves leaves full.
 *
 * Failure rules.  Reading functions never allocate and never fail.  The
 * writer takes fresh nodes from its reservation (see cmap_commit.c); when
 * it runs from the COMMIT step (may_fail = false) nothing in this file may
 * raise an ERROR or palloc: keep it that way.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_tree.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "port/pg_bswap.h"
#include "utils/memutils.h"

#include "cmap_shmem.h"
#include "cmap_tree.h"

#define NODE(dp)			((CmapNode *) cmap_addr(dp))

#define CMAP_VINFO_OOL		0xFFFF

#define LEAF_HDR			12	/* keylen + vinfo + version */
#define INNER_HDR			10	/* keylen + child */
#define LEAF_ITEM_MAX		(LEAF_HDR + CMAP_MAX_KEY_LEN + CMAP_INLINE_VALUE_MAX)
#define INNER_ITEM_MAX		(INNER_HDR + CMAP_MAX_KEY_LEN)
#define NODE_USABLE			(CMAP_NODE_SIZE - CMAP_NODE_HDRSZ)

/* A node using less than this many bytes is merged with a sibling if possible. */
#define MERGE_THRESHOLD		(CMAP_NODE_SIZE / 4)

StaticAssertDecl(LEAF_ITEM_MAX + 2 <= NODE_USABLE / 2,
				 "two maximal leaf items must fit in one node");
StaticAssertDecl(INNER_ITEM_MAX + 2 <= NODE_USABLE / 2,
				 "two maximal inner items must fit in one node");

/* Scratch page for compaction and splits; backend-local, never nested. */
static union
{
	char		data[CMAP_NODE_SIZE];
	uint64		align;
}			scratch;

/* ------------------------------------------------------------------------
 * Item accessors
 * ------------------------------------------------------------------------
 */

static inline uint16
rd16(const char *p)
{
	uint16		v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64
rd64(const char *p)
{
	uint64		v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void
wr16(char *p, uint16 v)
{
	memcpy(p, &v, sizeof(v));
}

static inline void
wr64(char *p, uint64 v)
{
	memcpy(p, &v, sizeof(v));
}

static inline char *
item_ptr(const CmapNode *n, int i)
{
	return (char *) n + n->offsets[i];
}

static inline int
item_keylen(const char *it)
{
	return rd16(it);
}

static inline const char *
item_key(const CmapNode *n, const char *it)
{
	return it + (n->level == 0 ? LEAF_HDR : INNER_HDR);
}

static inline int
item_size(const CmapNode *n, const char *it)
{
	int			klen = rd16(it);

	if (n->level == 0)
	{
		uint16		vinfo = rd16(it + 2);

		return LEAF_HDR + klen + (vinfo == CMAP_VINFO_OOL ? (int) sizeof(dsa_pointer) : vinfo);
	}
	return INNER_HDR + klen;
}

static inline dsa_pointer
inner_child(const CmapNode *n, int i)
{
	return (dsa_pointer) rd64(item_ptr(n, i) + 2);
}

static inline void
inner_set_child(CmapNode *n, int i, dsa_pointer child)
{
	wr64(item_ptr(n, i) + 2, (uint64) child);
}

/* Blob referenced by a leaf item, or InvalidDsaPointer if the value is inline. */
static inline dsa_pointer
leaf_item_blob(const char *it)
{
	if (rd16(it + 2) != CMAP_VINFO_OOL)
		return InvalidDsaPointer;
	return (dsa_pointer) rd64(it + LEAF_HDR + rd16(it));
}

/*
 * Byte-order comparison of two keys.  Inlined word-at-a-time compare: most
 * keys are short, and a libc memcmp call per binary-search step costs more
 * than the comparison itself.
 */
static inline int
keycmp(const char *a, int alen, const char *b, int blen)
{
	int			n = Min(alen, blen);

	while (n >= 8)
	{
		uint64		x,
					y;

		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		if (x != y)
		{
			x = pg_ntoh64(x);	/* first byte most significant, on any endianness */
			y = pg_ntoh64(y);
			return x < y ? -1 : 1;
		}
		a += 8;
		b += 8;
		n -= 8;
	}
	while (n > 0)
	{
		if (*a != *b)
			return (unsigned char) *a < (unsigned char) *b ? -1 : 1;
		a++;
		b++;
		n--;
	}
	return (alen > blen) - (alen < blen);
}

/* Bytes used by items and their offsets. */
static inline int
node_used(const CmapNode *n)
{
	return NODE_USABLE - (n->upper - (int) CMAP_NODE_HDRSZ - 2 * n->nitems) - n->frag;
}

static inline int
node_total_free(const CmapNode *n)
{
	return NODE_USABLE - node_used(n);
}

static void
fill_item(const CmapNode *n, int pos, CmapItem *item)
{
	const char *it = item_ptr(n, pos);
	int			klen = rd16(it);
	uint16		vinfo = rd16(it + 2);

	item->key = it + LEAF_HDR;
	item->keylen = klen;
	item->version = rd64(it + 4);
	if (vinfo == CMAP_VINFO_OOL)
	{
		CmapBlob   *b = cmap_addr((dsa_pointer) rd64(it + LEAF_HDR + klen));

		item->value = b->data;
		item->vallen = b->len;
	}
	else
	{
		item->value = it + LEAF_HDR + klen;
		item->vallen = vinfo;
	}
}

/* ------------------------------------------------------------------------
 * Searching
 * ------------------------------------------------------------------------
 */

/* Position of the first leaf item >= key; *found when equal. */
static int
leaf_search(const CmapNode *n, const char *key, int klen, bool *found)
{
	int			lo = 0,
				hi = n->nitems;

	*found = false;
	if (hi == 0)
		return 0;

	/* Ascending loads append: check the last item first. */
	{
		const char *it = item_ptr(n, hi - 1);
		int			c = keycmp(it + LEAF_HDR, rd16(it), key, klen);

		if (c < 0)
			return hi;
		if (c == 0)
		{
			*found = true;
			return hi - 1;
		}
	}
	hi--;
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;
		const char *it = item_ptr(n, mid);
		int			c = keycmp(it + LEAF_HDR, rd16(it), key, klen);

		if (c < 0)
			lo = mid + 1;
		else if (c > 0)
			hi = mid;
		else
		{
			*found = true;
			return mid;
		}
	}
	return lo;
}

/* Index of the child of an inner node that covers key (last key_i <= key). */
static int
inner_search(const CmapNode *n, const char *key, int klen)
{
	int			lo = 0,
				hi = n->nitems - 1;

	while (lo < hi)
	{
		int			mid = (lo + hi + 1) / 2;
		const char *it = item_ptr(n, mid);

		if (keycmp(it + INNER_HDR, rd16(it), key, klen) <= 0)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

bool
cmap_tree_lookup(const CmapTree *tree, const char *key, int keylen, CmapItem *item)
{
	dsa_pointer dp = tree->root;
	int			level;
	CmapNode   *n;
	bool		found;
	int			pos;

	if (!DsaPointerIsValid(dp))
		return false;
	for (level = tree->height - 1; level > 0; level--)
	{
		n = NODE(dp);
		dp = inner_child(n, inner_search(n, key, keylen));
	}
	n = NODE(dp);
	pos = leaf_search(n, key, keylen, &found);
	if (!found)
		return false;
	if (item)
		fill_item(n, pos, item);
	return true;
}

/* ------------------------------------------------------------------------
 * Cursor
 * ------------------------------------------------------------------------
 */

/* Move to the next item if the current position is past a node's end. */
static void
cursor_normalize(CmapCursor *cur)
{
	int			d = cur->height - 1;

	while (cur->stack[d].idx >= NODE(cur->stack[d].node)->nitems)
	{
		if (d == 0)
		{
			cur->valid = false;
			return;
		}
		d--;
		cur->stack[d].idx++;
	}
	for (d = d + 1; d < cur->height; d++)
	{
		cur->stack[d].node = inner_child(NODE(cur->stack[d - 1].node),
										 cur->stack[d - 1].idx);
		cur->stack[d].idx = 0;
	}
}

/* Position the cursor on the first item >= key (or the first item if key is NULL). */
void
cmap_cursor_seek(CmapCursor *cur, const CmapTree *tree, const char *key, int keylen)
{
	dsa_pointer dp = tree->root;
	int			d;
	bool		found;

	cur->height = tree->height;
	cur->valid = DsaPointerIsValid(dp);
	if (!cur->valid)
		return;
	for (d = 0; d < tree->height - 1; d++)
	{
		CmapNode   *n = NODE(dp);
		int			i = key ? inner_search(n, key, keylen) : 0;

		cur->stack[d].node = dp;
		cur->stack[d].idx = i;
		dp = inner_child(n, i);
	}
	cur->stack[d].node = dp;
	cur->stack[d].idx = key ? leaf_search(NODE(dp), key, keylen, &found) : 0;
	cursor_normalize(cur);
}

bool
cmap_cursor_get(const CmapCursor *cur, CmapItem *item)
{
	const CmapNode *n;

	if (!cur->valid)
		return false;
	n = NODE(cur->stack[cur->height - 1].node);
	fill_item(n, cur->stack[cur->height - 1].idx, item);
	return true;
}

void
cmap_cursor_next(CmapCursor *cur)
{
	if (!cur->valid)
		return;
	cur->stack[cur->height - 1].idx++;
	cursor_normalize(cur);
}

/* ------------------------------------------------------------------------
 * Node editing (writable nodes only)
 * ------------------------------------------------------------------------
 */

static void
node_init(CmapNode *n, uint64 birth, int level)
{
	n->r.birth = birth;
	n->r.death = 0;
	n->r.next = InvalidDsaPointer;
	n->r.kind = CMAP_KIND_NODE;
	n->r.rflags = 0;
	n->level = level;
	n->nitems = 0;
	n->upper = CMAP_NODE_SIZE;
	n->frag = 0;
}

/* Append an item at the end of a node that has room (contiguous or not). */
static void
node_append_raw(CmapNode *n, const char *it, int isz)
{
	n->upper -= isz;
	memcpy((char *) n + n->upper, it, isz);
	n->offsets[n->nitems++] = n->upper;
}

/* Rewrite a node's items contiguously, removing holes. */
static void
node_compact(CmapNode *n)
{
	CmapNode   *tmp = (CmapNode *) scratch.data;
	int			i;

	memcpy(tmp, n, CMAP_NODE_SIZE);
	n->nitems = 0;
	n->upper = CMAP_NODE_SIZE;
	n->frag = 0;
	for (i = 0; i < tmp->nitems; i++)
	{
		const char *it = item_ptr(tmp, i);

		node_append_raw(n, it, item_size(tmp, it));
	}
}

static void
node_insert(CmapNode *n, int pos, const char *it, int isz)
{
	Assert(node_total_free(n) >= isz + 2);
	if (n->upper - (int) CMAP_NODE_HDRSZ - 2 * n->nitems < isz + 2)
		node_compact(n);
	n->upper -= isz;
	memcpy((char *) n + n->upper, it, isz);
	memmove(&n->offsets[pos + 1], &n->offsets[pos],
			(n->nitems - pos) * sizeof(uint16));
	n->offsets[pos] = n->upper;
	n->nitems++;
}

static void
node_remove(CmapNode *n, int pos)
{
	const char *it = item_ptr(n, pos);
	int			isz = item_size(n, it);

	if (n->offsets[pos] == n->upper)
		n->upper += isz;
	else
		n->frag += isz;
	memmove(&n->offsets[pos], &n->offsets[pos + 1],
			(n->nitems - pos - 1) * sizeof(uint16));
	n->nitems--;
}

/* Build an inner item in buf; returns its size. */
static int
build_inner_item(char *buf, const char *key, int klen, dsa_pointer child)
{
	wr16(buf, (uint16) klen);
	wr64(buf + 2, (uint64) child);
	if (klen > 0)
		memcpy(buf + INNER_HDR, key, klen);
	return INNER_HDR + klen;
}

/* Build a leaf item in buf; returns its size. */
static int
build_leaf_item(char *buf, const char *key, int klen, const char *value,
				Size vallen, dsa_pointer blob, uint64 version)
{
	wr16(buf, (uint16) klen);
	wr64(buf + 4, version);
	memcpy(buf + LEAF_HDR, key, klen);
	if (DsaPointerIsValid(blob))
	{
		wr16(buf + 2, CMAP_VINFO_OOL);
		wr64(buf + LEAF_HDR + klen, (uint64) blob);
		return LEAF_HDR + klen + sizeof(dsa_pointer);
	}
	Assert(vallen <= CMAP_INLINE_VALUE_MAX);
	wr16(buf + 2, (uint16) vallen);
	if (vallen > 0)
		memcpy(buf + LEAF_HDR + klen, value, vallen);
	return LEAF_HDR + klen + (int) vallen;
}

/* ------------------------------------------------------------------------
 * Writer: fresh nodes, retiring, copy-on-write
 * ------------------------------------------------------------------------
 */

void
cmap_writer_init(CmapWriter *w, int map_index, uint64 version,
				 const CmapTree *base, uint64 base_nodes, uint64 base_blob_bytes)
{
	MemSet(w, 0, sizeof(CmapWriter));
	w->map_index = map_index;
	w->version = version;
	w->tree = *base;
	w->nodes = base_nodes;
	w->blob_bytes = base_blob_bytes;
	w->retire_head = InvalidDsaPointer;
	w->retire_tail = InvalidDsaPointer;
	w->local_free = InvalidDsaPointer;
	w->finger_valid = false;
	w->cxt = CurrentMemoryContext;
}

/*
 * Worst-case number of fresh nodes for nops operations on a tree of the
 * given height: per operation a copied path, a split at every level plus a
 * new root, and a copied sibling at every level for merges.
 */
uint64
cmap_writer_bound(uint64 nops, int height)
{
	return nops * (uint64) (3 * height + 2) + 2;
}

static dsa_pointer
writer_new_node(CmapWriter *w, int level)
{
	dsa_pointer dp;

	if (DsaPointerIsValid(w->local_free))
	{
		dp = w->local_free;
		w->local_free = ((CmapRetired *) cmap_addr(dp))->next;
		node_init(NODE(dp), w->version, level);
		w->nodes++;
		return dp;
	}

	/*
	 * Outside COMMIT an error may abort the build halfway, leaving nodes
	 * that are not linked anywhere yet; remember every node taken so that
	 * cmap_writer_discard can give them all back.  Make room first, so that
	 * a node is never taken without being remembered.
	 */
	if (w->may_fail && w->ntaken >= w->maxtaken)
	{
		w->maxtaken = Max(256, w->maxtaken * 2);
		w->taken = w->taken ?
			repalloc_huge(w->taken, sizeof(dsa_pointer) * w->maxtaken) :
			MemoryContextAllocHuge(w->cxt, sizeof(dsa_pointer) * w->maxtaken);
	}

	if (w->reserved > 0)
	{
		dp = cmap_pool_take_reserved();
		w->reserved--;
		w->used++;
	}
	else if (w->may_fail)
	{
		/*
		 * Outside COMMIT: grow the reservation, in chunks while memory is
		 * plentiful, one node at a time when it is tight; may raise 53200.
		 */
		if (cmap_pool_try_reserve(64))
			w->reserved += 64;
		else
		{
			cmap_pool_reserve(1);
			w->reserved += 1;
		}
		dp = cmap_pool_take_reserved();
		w->reserved--;
		w->used++;
	}
	else
	{
		dp = cmap_pool_take_emergency();
		w->emergency++;
		w->used++;
	}
	if (w->may_fail)
		w->taken[w->ntaken++] = dp;
	node_init(NODE(dp), w->version, level);
	w->nodes++;
	return dp;
}

/* Append an object to the writer's retire list with death = w->version. */
void
cmap_retire_append(CmapWriter *w, dsa_pointer obj, uint64 bytes, uint16 rflags)
{
	CmapRetired *r = cmap_addr(obj);

	r->death = w->version;
	r->rflags = rflags;
	r->next = InvalidDsaPointer;
	if (DsaPointerIsValid(w->retire_tail))
		((CmapRetired *) cmap_addr(w->retire_tail))->next = obj;
	else
		w->retire_head = obj;
	w->retire_tail = obj;
	w->retired_bytes += bytes;
	w->retired_items++;
}

/* A node leaves the tree: recycle it if this writer made it, else retire it. */
static void
writer_drop_node(CmapWriter *w, dsa_pointer dp)
{
	CmapNode   *n = NODE(dp);

	if (n->r.birth == w->version)
	{
		n->r.next = w->local_free;
		w->local_free = dp;
	}
	else
		cmap_retire_append(w, dp, CMAP_NODE_SIZE, 0);
	w->nodes--;
}

static void
writer_retire_blob(CmapWriter *w, dsa_pointer blob)
{
	CmapBlob   *b = cmap_addr(blob);
	uint64		bytes = CMAP_BLOB_HDRSZ + b->len;

	w->blob_bytes -= bytes;
	cmap_retire_append(w, blob, bytes, 0);
}

/*
 * Return a writable version of a node: itself if this writer created it,
 * otherwise a compacted copy (the original is retired).
 */
static dsa_pointer
make_writable(CmapWriter *w, dsa_pointer dp)
{
	CmapNode   *src = NODE(dp);
	dsa_pointer ndp;
	CmapNode   *dst;

	if (src->r.birth == w->version)
		return dp;
	ndp = writer_new_node(w, src->level);
	dst = NODE(ndp);

	/*
	 * Item offsets are relative to the node, so a byte copy is a valid node;
	 * copy only the used parts (header + offsets, and the item area), then
	 * restore the fresh node's own reclamation header.
	 */
	memcpy((char *) dst + sizeof(CmapRetired), (char *) src + sizeof(CmapRetired),
		   CMAP_NODE_HDRSZ - sizeof(CmapRetired) + src->nitems * sizeof(uint16));
	memcpy((char *) dst + src->upper, (char *) src + src->upper,
		   CMAP_NODE_SIZE - src->upper);
	writer_drop_node(w, dp);
	return ndp;
}

/*
 * Descend to the leaf for key, making every node on the path writable and
 * recording it in w->path.  With a valid finger (keys arrive in ascending
 * order) the descent restarts from the lowest node whose range still
 * contains the key, usually the leaf itself.
 */
static void
descend_writable(CmapWriter *w, const char *key, int klen)
{
	int			h = w->tree.height;
	int			d;

	if (w->finger_valid)
	{
		int			a;

		d = h - 1;
		for (a = h - 2; a >= 0; a--)
		{
			CmapNode   *n = NODE(w->path[a].node);
			int			i = w->path[a].idx;

			if (i + 1 < n->nitems)
			{
				const char *it = item_ptr(n, i + 1);

				if (keycmp(key, klen, it + INNER_HDR, rd16(it)) < 0)
					break;
				d = a;
			}
		}
	}
	else
	{
		w->tree.root = make_writable(w, w->tree.root);
		w->path[0].node = w->tree.root;
		d = 0;
	}

	for (; d < h - 1; d++)
	{
		CmapNode   *n = NODE(w->path[d].node);
		int			i = inner_search(n, key, klen);
		dsa_pointer child = inner_child(n, i);
		dsa_pointer wchild = make_writable(w, child);

		if (wchild != child)
			inner_set_child(n, i, wchild);
		w->path[d].idx = i;
		w->path[d + 1].node = wchild;
	}
	w->finger_valid = true;
}

/* ------------------------------------------------------------------------
 * Splitting
 * ------------------------------------------------------------------------
 */

/* Virtual item j of "node n with new item inserted at pos". */
static inline const char *
virt_item(const CmapNode *n, int pos, const char *newit, int j)
{
	if (j < pos)
		return item_ptr(n, j);
	if (j == pos)
		return newit;
	return item_ptr(n, j - 1);
}

static inline int
virt_size(const CmapNode *n, int pos, const char *newit, int newsz, int j)
{
	if (j == pos)
		return newsz;
	return item_size(n, virt_item(n, pos, newit, j));
}

/*
 * Insert an item that does not fit into the node at depth d of the writer's
 * path: split the node, then insert the separator into its parent, splitting
 * upward as needed, possibly growing a new root.
 */
static void
split_insert(CmapWriter *w, int d, int pos, const char *newit, int newsz)
{
	char		bufs[2][INNER_ITEM_MAX];
	int			which = 0;

	w->finger_valid = false;
	for (;;)
	{
		dsa_pointer ldp = w->path[d].node;
		CmapNode   *n = NODE(ldp);
		int			level = n->level;
		int			total_items = n->nitems + 1;
		int			sizes_total = 0;
		int			s;
		int			j;
		dsa_pointer rdp;
		CmapNode   *r;
		CmapNode   *tmp = (CmapNode *) scratch.data;
		const char *sepkey;
		int			seplen;
		char	   *pitem = bufs[which];
		int			psz;

		/* Choose how many items stay on the left. */
		if (pos == n->nitems)
			s = n->nitems;		/* appending: keep the left node full */
		else
		{
			int			cum = 0;

			for (j = 0; j < total_items; j++)
				sizes_total += virt_size(n, pos, newit, newsz, j) + 2;
			for (s = 0; s < total_items; s++)
			{
				cum += virt_size(n, pos, newit, newsz, s) + 2;
				if (cum * 2 >= sizes_total)
				{
					s++;
					break;
				}
			}
			/*
			 * The left half may overflow only when its last item is big.
			 * Moving that item right is then always enough: the right half
			 * was smaller than one item before and gains one, and an item is
			 * at most half a node (the StaticAsserts above).
			 */
			if (cum > NODE_USABLE)
				s--;
			s = Max(1, Min(s, total_items - 1));
		}

		/* Right node gets items [s, total_items). */
		rdp = writer_new_node(w, level);
		r = NODE(rdp);
		for (j = s; j < total_items; j++)
		{
			const char *it = virt_item(n, pos, newit, j);

			if (level > 0 && j == s)
			{
				char		first[INNER_HDR];

				/* the first inner item's key moves up as the separator */
				build_inner_item(first, NULL, 0, (dsa_pointer) rd64(it + 2));
				node_append_raw(r, first, INNER_HDR);
			}
			else
				node_append_raw(r, it, virt_size(n, pos, newit, newsz, j));
		}

		/* Separator between the halves. */
		{
			const char *rfirst = virt_item(n, pos, newit, s);

			if (level == 0)
			{
				const char *llast = virt_item(n, pos, newit, s - 1);
				int			llen = rd16(llast);
				int			rlen = rd16(rfirst);
				const char *lk = llast + LEAF_HDR;
				const char *rk = rfirst + LEAF_HDR;
				int			c = 0;

				while (c < llen && c < rlen && lk[c] == rk[c])
					c++;
				Assert(c < rlen);
				sepkey = rk;
				seplen = c + 1;
			}
			else
			{
				sepkey = rfirst + INNER_HDR;
				seplen = rd16(rfirst);
			}
			psz = build_inner_item(pitem, sepkey, seplen, rdp);
		}

		/* Left node keeps items [0, s): rebuild it through the scratch page. */
		node_init(tmp, n->r.birth, level);
		for (j = 0; j < s; j++)
			node_append_raw(tmp, virt_item(n, pos, newit, j),
							virt_size(n, pos, newit, newsz, j));
		n->nitems = 0;
		n->upper = CMAP_NODE_SIZE;
		n->frag = 0;
		for (j = 0; j < tmp->nitems; j++)
		{
			const char *it = item_ptr(tmp, j);

			node_append_raw(n, it, item_size(tmp, it));
		}

		if (d == 0)
		{
			/* The root split: grow the tree by one level. */
			dsa_pointer rootdp = writer_new_node(w, level + 1);
			CmapNode   *root = NODE(rootdp);
			char		first[INNER_HDR];

			build_inner_item(first, NULL, 0, ldp);
			node_append_raw(root, first, INNER_HDR);
			node_append_raw(root, pitem, psz);
			w->tree.root = rootdp;
			w->tree.height++;
			Assert(w->tree.height < CMAP_MAX_HEIGHT);
			return;
		}

		/* Insert the separator into the parent. */
		{
			CmapNode   *p = NODE(w->path[d - 1].node);
			int			ppos = w->path[d - 1].idx + 1;

			if (node_total_free(p) >= psz + 2)
			{
				node_insert(p, ppos, pitem, psz);
				return;
			}
			newit = pitem;
			newsz = psz;
			pos = ppos;
			d--;
			which = 1 - which;
		}
	}
}

/* ------------------------------------------------------------------------
 * Merging
 * ------------------------------------------------------------------------
 */

/* Sum of item bytes and offsets of a node. */
static inline int
node_payload(const CmapNode *n)
{
	return node_used(n);
}

/*
 * Append all items of src to dst (both at the same level).  For inner nodes
 * src's first item, whose key is empty, takes the parent's separator.
 */
static void
node_absorb(CmapNode *dst, const CmapNode *src, const char *sep, int seplen)
{
	int			j;

	for (j = 0; j < src->nitems; j++)
	{
		const char *it = item_ptr(src, j);

		if (src->level > 0 && j == 0)
		{
			char		buf[INNER_ITEM_MAX];
			int			sz = build_inner_item(buf, sep, seplen,
											  (dsa_pointer) rd64(it + 2));

			node_insert(dst, dst->nitems, buf, sz);
		}
		else
			node_insert(dst, dst->nitems, it, item_size(src, it));
	}
}

/* Make item 0 of an inner node keyless again after item 0 was removed. */
static void
inner_clear_first_key(CmapNode *n)
{
	const char *it = item_ptr(n, 0);

	if (rd16(it) != 0)
	{
		char		buf[INNER_HDR];
		dsa_pointer child = (dsa_pointer) rd64(it + 2);

		node_remove(n, 0);
		build_inner_item(buf, NULL, 0, child);
		node_insert(n, 0, buf, INNER_HDR);
	}
}

/*
 * After a removal at depth d, collapse the root, drop empty nodes and merge
 * underfull nodes with a sibling, walking up the path.
 */
static void
rebalance(CmapWriter *w, int d)
{
	for (;;)
	{
		dsa_pointer dp = w->path[d].node;
		CmapNode   *n = NODE(dp);
		CmapNode   *p;
		int			idx;

		if (d == 0)
		{
			if (n->nitems == 0)
			{
				writer_drop_node(w, dp);
				w->tree.root = InvalidDsaPointer;
				w->tree.height = 0;
				w->finger_valid = false;
				return;
			}
			/* an inner root with a single child is replaced by that child */
			while (n->level > 0 && n->nitems == 1)
			{
				dsa_pointer child = inner_child(n, 0);

				writer_drop_node(w, dp);
				dp = child;
				n = NODE(dp);
				w->tree.root = dp;
				w->tree.height--;
				w->finger_valid = false;
			}
			return;
		}

		if (n->nitems > 0 && node_payload(n) >= MERGE_THRESHOLD)
			return;

		p = NODE(w->path[d - 1].node);
		idx = w->path[d - 1].idx;
		w->finger_valid = false;

		if (n->nitems == 0)
		{
			node_remove(p, idx);
			if (idx == 0)
				inner_clear_first_key(p);
			writer_drop_node(w, dp);
			d--;
			continue;
		}

		/* merge into the left sibling */
		if (idx > 0)
		{
			dsa_pointer ldp = inner_child(p, idx - 1);
			CmapNode   *l = NODE(ldp);
			const char *sit = item_ptr(p, idx);
			int			seplen = n->level > 0 ? rd16(sit) : 0;

			if (node_payload(l) + node_payload(n) + seplen <= NODE_USABLE)
			{
				dsa_pointer wl = make_writable(w, ldp);

				if (wl != ldp)
					inner_set_child(p, idx - 1, wl);
				l = NODE(wl);
				node_absorb(l, n, sit + INNER_HDR, seplen);
				node_remove(p, idx);
				writer_drop_node(w, dp);
				d--;
				continue;
			}
		}
		/* absorb the right sibling */
		if (idx + 1 < p->nitems)
		{
			dsa_pointer rdp = inner_child(p, idx + 1);
			CmapNode   *r = NODE(rdp);
			const char *sit = item_ptr(p, idx + 1);
			int			seplen = n->level > 0 ? rd16(sit) : 0;

			if (node_payload(r) + node_payload(n) + seplen <= NODE_USABLE)
			{
				node_absorb(n, r, sit + INNER_HDR, seplen);
				node_remove(p, idx + 1);
				writer_drop_node(w, rdp);
				d--;
				continue;
			}
		}
		return;
	}
}

/* ------------------------------------------------------------------------
 * Writer operations
 * ------------------------------------------------------------------------
 */

/*
 * Store key -> value.  The value is either inline bytes (vallen <=
 * CMAP_INLINE_VALUE_MAX) or an already-filled blob.  Operations of one
 * writer must come in ascending key order.
 */
void
cmap_writer_put(CmapWriter *w, const char *key, int keylen,
				const char *value, Size vallen, dsa_pointer blob)
{
	cmap_writer_put_version(w, key, keylen, value, vallen, blob, w->version);
}

/*
 * Like cmap_writer_put, but the entry carries a given version instead of
 * the version being built (used when restoring a saved map).
 */
void
cmap_writer_put_version(CmapWriter *w, const char *key, int keylen,
						const char *value, Size vallen, dsa_pointer blob,
						uint64 entry_version)
{
	char		buf[LEAF_ITEM_MAX];
	int			isz;
	int			h;
	CmapNode   *leaf;
	bool		found;
	int			pos;

	if (DsaPointerIsValid(blob))
	{
		CmapBlob   *b = cmap_addr(blob);

		b->r.birth = w->version;
		w->blob_bytes += CMAP_BLOB_HDRSZ + b->len;
	}
	isz = build_leaf_item(buf, key, keylen, value, vallen, blob, entry_version);
	w->changed = true;

	if (!DsaPointerIsValid(w->tree.root))
	{
		dsa_pointer dp = writer_new_node(w, 0);

		node_append_raw(NODE(dp), buf, isz);
		w->tree.root = dp;
		w->tree.height = 1;
		w->tree.count = 1;
		w->finger_valid = false;
		return;
	}

	descend_writable(w, key, keylen);
	h = w->tree.height;
	leaf = NODE(w->path[h - 1].node);
	pos = leaf_search(leaf, key, keylen, &found);
	if (found)
	{
		char	   *it = item_ptr(leaf, pos);
		int			oldsz = item_size(leaf, it);
		dsa_pointer old = leaf_item_blob(it);

		if (DsaPointerIsValid(old))
			writer_retire_blob(w, old);

		/*
		 * Updates usually keep the value's size: overwrite the item where it
		 * is (the leaf is writable), leaving any shrinkage as a hole, instead
		 * of removing and re-inserting it, which on a full leaf would mean
		 * compacting the whole node.
		 */
		if (isz <= oldsz)
		{
			memcpy(it, buf, isz);
			leaf->frag += oldsz - isz;
			return;
		}
		node_remove(leaf, pos);
	}
	else
		w->tree.count++;

	if (node_total_free(leaf) >= isz + 2)
		node_insert(leaf, pos, buf, isz);
	else
		split_insert(w, h - 1, pos, buf, isz);
}

/* Delete key; returns false (changing nothing) if it is absent. */
bool
cmap_writer_delete(CmapWriter *w, const char *key, int keylen)
{
	int			h;
	CmapNode   *leaf;
	bool		found;
	int			pos;
	dsa_pointer old;

	/* probe first, so that deleting an absent key copies nothing */
	if (!cmap_tree_lookup(&w->tree, key, keylen, NULL))
		return false;

	descend_writable(w, key, keylen);
	h = w->tree.height;
	leaf = NODE(w->path[h - 1].node);
	pos = leaf_search(leaf, key, keylen, &found);
	Assert(found);
	old = leaf_item_blob(item_ptr(leaf, pos));
	if (DsaPointerIsValid(old))
		writer_retire_blob(w, old);
	node_remove(leaf, pos);
	w->tree.count--;
	w->changed = true;
	rebalance(w, h - 1);
	cmap_map_by_index(w->map_index)->deltab[cmap_deltab_slot(key, keylen)] = w->version;
	return true;
}

/*
 * Remove every entry.  The whole old tree is retired as one subtree item
 * that the reclaimer expands lazily; must be the writer's first operation.
 */
void
cmap_writer_clear(CmapWriter *w)
{
	if (!DsaPointerIsValid(w->tree.root))
		return;
	Assert(NODE(w->tree.root)->r.birth != w->version);
	cmap_map_by_index(w->map_index)->last_clear = w->version;
	cmap_retire_append(w, w->tree.root,
					   (uint64) w->nodes * CMAP_NODE_SIZE + w->blob_bytes,
					   CMAP_RETIRE_SUBTREE);
	w->tree.root = InvalidDsaPointer;
	w->tree.height = 0;
	w->tree.count = 0;
	w->nodes = 0;
	w->blob_bytes = 0;
	w->changed = true;
	w->finger_valid = false;
}

/*
 * Give back everything a writer built that was not published: every node
 * it took (linked into its tree, on its local free list, or orphaned by an
 * error in the middle of a split).  Old nodes it "retired" are untouched:
 * they are still part of the published version.  Only for writers built
 * with may_fail (outside the COMMIT step).
 */
void
cmap_writer_discard(CmapWriter *w)
{
	int			i;

	Assert(w->may_fail);
	for (i = 0; i < w->ntaken; i++)
		cmap_pool_put(w->taken[i]);
	w->ntaken = 0;
	w->local_free = InvalidDsaPointer;
	w->tree.root = InvalidDsaPointer;
	cmap_writer_finish(w);
}

/*
 * Return what the writer holds but did not use: its local free list and the
 * unused part of its reservation.  Cannot fail.
 */
void
cmap_writer_finish(CmapWriter *w)
{
	while (DsaPointerIsValid(w->local_free))
	{
		dsa_pointer dp = w->local_free;

		w->local_free = ((CmapRetired *) cmap_addr(dp))->next;
		cmap_pool_put(dp);
	}
	cmap_pool_unreserve(w->reserved);
	w->reserved = 0;
}

/* ------------------------------------------------------------------------
 * Subtree walking for the reclaimer
 * ------------------------------------------------------------------------
 */

/*
 * Call fn for every child node of an inner node, or every blob of a leaf.
 * Used to expand a retired subtree; the node must be unreachable by now or
 * still pinned (its contents are immutable either way).
 */
void
cmap_node_foreach_ref(dsa_pointer dp, void (*fn) (dsa_pointer ref, void *arg),
					  void *arg)
{
	CmapNode   *n = NODE(dp);
	int			i;

	for (i = 0; i < n->nitems; i++)
	{
		if (n->level > 0)
			fn(inner_child(n, i), arg);
		else
		{
			dsa_pointer blob = leaf_item_blob(item_ptr(n, i));

			if (DsaPointerIsValid(blob))
				fn(blob, arg);
		}
	}
}
