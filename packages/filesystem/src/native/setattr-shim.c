/*
 * LD_PRELOAD shim for the FUSE server child (isolation "process").
 *
 * libfuse 2.9's high-level setattr only calls utimens when the kernel sets BOTH
 * FATTR_ATIME and FATTR_MTIME; an mtime-only update (utimensat with UTIME_OMIT for
 * the atime, as GNU tar does on extraction, or `touch -m`) is silently dropped.
 * fuse_lowlevel_new_common() copies libfuse's own low-level ops into its
 * `struct fuse_ll` and passes that struct to fuse_session_new() through the PLT, so
 * interposing fuse_session_new lets us wrap the setattr slot: a lone time gets its
 * partner set to UTIME_OMIT, and utimens then runs with the real intent.
 *
 * Layout facts for libfuse 2.9.x (fuse_i.h / fuse_lowlevel.c): struct fuse_ll starts
 * with 12 ints, then `struct fuse_lowlevel_ops op` (init, destroy, lookup, forget,
 * getattr, setattr, readlink, mknod, mkdir, unlink, rmdir, symlink, ... access, create).
 * Before patching we check that the slots we use point into libfuse.so.2 itself;
 * otherwise nothing is touched.
 *
 * Second job: the guest caller of creating operations. virtiofsd switches its fsuid/
 * fsgid to the guest caller before mknod/mkdir/symlink/create, so the FUSE request
 * carries the guest's uid/gid, but fuse-native does not pass them on, and the JS
 * handler runs on another thread than the FUSE worker (fuse_get_context() there is
 * not the request's). The low-level mknod, mkdir, symlink and create are wrapped: under
 * one lock they publish fuse_req_ctx(req) and run libfuse's handler, which waits for
 * the JS reply. JS handles one request at a time and only answers a creating request
 * from inside this lock, so while it does, iii_fuse_caller() returns that request's
 * caller. Other operations are not serialised.
 *
 * Third job: fallocate. fuse-native has no fallocate operation (the kernel got ENOSYS,
 * so `fallocate` said "Operation not supported"). Every non-virtual FUSE file handle is
 * the host fd itself (see GuestFs), so the low-level fallocate slot is answered here,
 * on libfuse's thread, with fallocate(2) on that fd; virtual handles (at and above
 * VIRTUAL_FH_BASE, read-only files) get EBADF. The kernel only sends FALLOCATE on a
 * file opened for writing, which GuestFs refuses on a read-only mount.
 *
 * Fourth job: hard-link counts. libfuse 2's high-level API gives each name of a file its
 * own kernel inode, and the kernel keeps the source name's cached attributes after a
 * LINK, so `ln a b; stat a` showed the old link count for up to attr_timeout. The
 * low-level link slot invalidates the source inode's cached attributes (the request
 * names it) before libfuse handles the link, so the next stat of the source asks again.
 * For the other names (`ln a b; rm a; stat b`), the JS side tags the attributes of a
 * regular file with several host links with a group key in st_rdev (unused by the kernel
 * for regular files; zeroed here before sending). Entry replies record nodeid → key in a
 * bounded table; after an unlink or link of such a file, JS calls iii_inval_link_group(key)
 * and every recorded name of the file has its cached attributes invalidated.
 *
 * Fifth job: 64-bit inode numbers. fuse-native carries st_ino in 32 bits. With
 * `stableInodes` the JS side puts the high half in st_dev (which the FUSE protocol does
 * not carry) after calling iii_ino64_enable(); libfuse's replies (fuse_reply_entry,
 * fuse_reply_attr, fuse_reply_create) and directory entries (fuse_add_direntry), all
 * called through its PLT, are interposed here and send st_ino = st_dev << 32 | st_ino. Not enabled: the replies pass through untouched.
 *
 * Sixth job (with link groups on): a name that stays readable when another name of its file goes. virtiofsd
 * answers LINK with the source's inode, so after `ln a b; rm a` in a guest, `b` is the node of `a`, which
 * libfuse's path-based high level can only reach by the removed name: ENOENT until the guest looks `b` up
 * again. The shim records which node every name the kernel looked up or created is (parent, name hash ->
 * nodeid, a bounded table), and the link group of each node (the LINK's source takes its new name's key).
 * An UNLINK of a name whose node is in a link group becomes libfuse's own RENAME of that name to
 * "/.iii-unlinked-<nodeid>", marked as a hide (iii_hiding()); the JS side then pins the host file (an O_PATH
 * fd), unlinks it on the host and serves the node's requests through the pin. libfuse's node table stays
 * consistent because libfuse did the rename itself. When the kernel forgets such a node (it sends FORGET
 * only when it drops the inode), its id is queued for the JS side (iii_take_released) to close the pin.
 *
 * Seventh job: the kernel asks `security.capability` before every write (file_remove_privs), 45k of 227k
 * requests of a `tar x`. Once the JS side answered ENODATA for a node, the shim answers that node's next
 * asks itself, on libfuse's thread (a lossy table of 65,536 nodes). Any setxattr or removexattr of a
 * security.* name through the mount forgets every such answer (a hard link's other names are other nodes).
 *
 * Eighth job: reads and writes on libfuse's thread. Every non-virtual FUSE file handle is the host fd itself
 * (GuestFs), opened by the JS side with its containment checks; a READ is libfuse's fuse_reply_data() from
 * that fd (a splice into /dev/fuse with the mount's splice_write,splice_move; measured +35% over a pread into a
 * buffer) and a WRITE a pwrite(2) from libfuse's request buffer, with no hand-off to the JS thread
 * and no path lookup in libfuse (a 512 MiB `dd` read: 4,096 round trips through JS before). Virtual files'
 * handles carry their read-only fd in the low 20 bits (GuestFs.open). Off until the JS side calls
 * iii_io_enable(); iii_io_stop() (before the JS side closes its fds) waits for reads and writes in flight and
 * sends later ones to the JS handlers, which answer EIO. Counts are kept here for the mount's stats. *
 * Tenth job: the writable layer's disk limit (MountOptions.upperLimitBytes). `quota_used` counts, for every
 * entry of the upper directory, its logical size (a sparse file in full: writes inside its size, which nothing
 * charges, can fill its holes) or its blocks if more, plus QUOTA_ENTRY_BYTES; and the same for the files this
 * process holds open whose last name is gone (their blocks stay allocated until the close). Growth is charged
 * before it happens: a WRITE past the end and a FALLOCATE here, the JS side's creations, copy-ups, truncates
 * and xattrs through iii_quota_charge(); past the limit it is refused with ENOSPC. Nothing is credited as it
 * goes: when a charge would pass the limit, the upper tree is counted again (if anything may have freed space
 * since the last count — paced, at least 50 ms and twice the last count's time apart — or a second after it)
 * and the charge is decided on that count. Entries (the host's inodes) have a limit of their own; sums saturate
 * (a write at offset 2^63 - 2 must not wrap the count and turn the limit off); renames in upper hold the count
 * off (a subtree moved behind the walk would be missed).
 *
 * Eleventh job: a bound on the directory listings libfuse keeps. libfuse 2.9's high level, given entries at offset
 * 0 (fuse-native and fast_readdir both do), copies a directory's whole listing into a buffer of its open handle
 * (struct fuse_dh: realloc-doubled from 1 KiB, never shrunk, freed at RELEASEDIR). virtiofsd opens a host
 * handle for every guest directory fd, so a guest holding K fds of a directory it filled with long names kept K
 * copies: 150 handles of a 20,000-name directory took the server from 55 to 720 MiB (review s15). Every
 * handle now gets an account (opendir/releasedir are the shim's: fuse-native has neither), its listing's buffer
 * is counted as libfuse sizes it, and a listing that would take the mount's handles past LISTING_BUDGET_BYTES
 * is refused with ENOMEM.
 *
 * Ninth job: getattr, open, chmod, chown, utimens, flush and release of a plain (non-layered) tree on libfuse's
 * thread. fuse-native hands libfuse 2's high level its path-based operations through fuse_new(), interposed
 * here. Each resolves the parent with openat2 beneath the root fd the JS side opened (RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, as HostRoot does) and acts on the last component without
 * following it: getattr (every LOOKUP and GETATTR, and the getattr libfuse runs after each create and setattr)
 * is fstatat(AT_SYMLINK_NOFOLLOW) with the override xattr merged as host-meta.ts merges it; open is openat with
 * O_NOFOLLOW and PassthroughTree's flags; chmod (bits within 0775, no override, one link) is
 * fchmodat(AT_SYMLINK_NOFOLLOW); chown to the owner an entry without override already has does nothing; utimens
 * is utimensat(AT_SYMLINK_NOFOLLOW); flush (a no-op on the JS side) answers ENOSYS, so the kernel sends no more
 * (for every tree, layered too); release closes the host fd. The
 * JS handlers keep everything else, and these for: names under a virtual root name, a protected path's first
 * component or a hidden node's name (/.iii-unlinked-*), paths with a protected name as any component, a regular file with several host links while link groups are on (its attributes carry the
 * group key; its chmod refreshes its other names), virtual handles, mutations on a read-only mount, and every
 * request before iii_fast_enable() or after iii_io_stop().
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <time.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/types.h>
#include <sys/sysmacros.h>

#define FUSE_SET_ATTR_ATIME (1 << 4)
#define FUSE_SET_ATTR_MTIME (1 << 5)
#define FUSE_LL_OPS_OFFSET (12 * sizeof(int))
#define SETATTR_SLOT 5
#define MKNOD_SLOT 7
#define MKDIR_SLOT 8
#define SYMLINK_SLOT 11
#define CREATE_SLOT 30
#define LINK_SLOT 13
#define FALLOCATE_SLOT 40
#define LOOKUP_SLOT 2
#define FORGET_SLOT 3
#define GETATTR_SLOT 4
#define UNLINK_SLOT 9
#define RENAME_SLOT 12
#define FORGET_MULTI_SLOT 38
#define HIDDEN_NAME_PREFIX ".iii-unlinked-"
#define SETXATTR_SLOT 25
#define GETXATTR_SLOT 26
#define REMOVEXATTR_SLOT 28
#define READ_SLOT 15
#define WRITE_SLOT 16
#define WRITE_BUF_SLOT 36
/* GuestFs: a virtual file handle's low bits are its fd. */
#define VIRTUAL_FD_MASK 0xFFFFFULL
/* GuestFs: FUSE file handles at and above this value are virtual files. */
#define VIRTUAL_FH_BASE 0x40000000ULL

/* The name a lookup/create/link on this thread is answering for (sixth job). */
static __thread int tl_entry_set;
static __thread unsigned long tl_entry_parent;
static __thread uint64_t tl_entry_hash;
/* LINK's source node, whose group the new name's reply tells; getattr's node, for its reply. */
static __thread unsigned long tl_link_src;
static __thread unsigned long tl_attr_ino;

static uint64_t name_hash(const char *name) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const unsigned char *c = (const unsigned char *)name; *c; c++) h = (h ^ *c) * 0x100000001b3ULL;
  return h != 0 ? h : 1;
}

/*
 * Held (read) by every request that answers with an entry (lookup, create, mknod, mkdir, symlink, link), from
 * before libfuse counts the lookup (its find_node) until the shim has counted it at the reply; a FORGET takes it
 * (write) around both counts' decrements. Before, a FORGET between libfuse's count and the shim's could take the
 * shim's count to 0 while libfuse's was 1: the node left its group, and with its file's last node the file's one
 * number went (the node came back at the reply with a number of its own).
 */
static pthread_rwlock_t counts_lock = PTHREAD_RWLOCK_INITIALIZER;

static void entry_begin(unsigned long parent, const char *name) {
  pthread_rwlock_rdlock(&counts_lock);
  tl_entry_parent = parent;
  tl_entry_hash = name_hash(name);
  tl_entry_set = 1;
}

static void entry_end(void) {
  tl_entry_set = 0;
  pthread_rwlock_unlock(&counts_lock);
}

typedef void (*setattr_fn)(void *req, unsigned long ino, struct stat *attr, int to_set, void *fi);

static setattr_fn libfuse_setattr;

static void setattr_with_both_times(void *req, unsigned long ino, struct stat *attr, int to_set, void *fi) {
  int times = to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME);
  if (times == FUSE_SET_ATTR_MTIME) {
    attr->st_atim.tv_sec = 0;
    attr->st_atim.tv_nsec = UTIME_OMIT;
    to_set |= FUSE_SET_ATTR_ATIME;
  } else if (times == FUSE_SET_ATTR_ATIME) {
    attr->st_mtim.tv_sec = 0;
    attr->st_mtim.tv_nsec = UTIME_OMIT;
    to_set |= FUSE_SET_ATTR_MTIME;
  }
  tl_attr_ino = ino;
  libfuse_setattr(req, ino, attr, to_set, fi);
  tl_attr_ino = 0;
}

/* struct fuse_ctx of libfuse 2.9 (fuse_lowlevel.h). */
struct iii_fuse_ctx {
  uid_t uid;
  gid_t gid;
  pid_t pid;
  mode_t umask;
};
typedef const struct iii_fuse_ctx *(*req_ctx_fn)(void *req);
typedef void (*mknod_fn)(void *req, unsigned long parent, const char *name, mode_t mode, dev_t rdev);
typedef void (*mkdir_fn)(void *req, unsigned long parent, const char *name, mode_t mode);
typedef void (*symlink_fn)(void *req, const char *link, unsigned long parent, const char *name);
typedef void (*create_fn)(void *req, unsigned long parent, const char *name, mode_t mode, void *fi);

static req_ctx_fn req_ctx;
static mknod_fn libfuse_mknod;
static mkdir_fn libfuse_mkdir;
static symlink_fn libfuse_symlink;
static create_fn libfuse_create;
static pthread_mutex_t caller_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int tracking;
static volatile int caller_valid;
static volatile uint32_t caller_uid, caller_gid, caller_pid;

static void caller_enter(void *req) {
  pthread_mutex_lock(&caller_lock);
  const struct iii_fuse_ctx *c = req_ctx(req);
  caller_uid = c->uid;
  caller_gid = c->gid;
  caller_pid = (uint32_t)c->pid;
  __atomic_store_n(&caller_valid, 1, __ATOMIC_RELEASE);
}

static void caller_leave(void) {
  __atomic_store_n(&caller_valid, 0, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&caller_lock);
}

static void mknod_tracked(void *req, unsigned long parent, const char *name, mode_t mode, dev_t rdev) {
  caller_enter(req);
  entry_begin(parent, name);
  libfuse_mknod(req, parent, name, mode, rdev);
  entry_end();
  caller_leave();
}

static void mkdir_tracked(void *req, unsigned long parent, const char *name, mode_t mode) {
  caller_enter(req);
  entry_begin(parent, name);
  libfuse_mkdir(req, parent, name, mode);
  entry_end();
  caller_leave();
}

static void symlink_tracked(void *req, const char *link, unsigned long parent, const char *name) {
  caller_enter(req);
  entry_begin(parent, name);
  libfuse_symlink(req, link, parent, name);
  entry_end();
  caller_leave();
}

static void create_tracked(void *req, unsigned long parent, const char *name, mode_t mode, void *fi) {
  caller_enter(req);
  entry_begin(parent, name);
  libfuse_create(req, parent, name, mode, fi);
  entry_end();
  caller_leave();
}

/*
 * For the JS thread (through koffi), while it handles a request: -1 when caller
 * tracking is not installed, 0 outside a creating request, 1 with out = {uid, gid, pid}.
 * Never takes the lock (its holder waits for the JS thread).
 */
int iii_fuse_caller(uint32_t *out) {
  if (!tracking) return -1;
  if (!__atomic_load_n(&caller_valid, __ATOMIC_ACQUIRE)) return 0;
  out[0] = caller_uid;
  out[1] = caller_gid;
  out[2] = caller_pid;
  return 1;
}

/* struct fuse_file_info of libfuse 2.9 (fuse_common.h) on 64-bit Linux. */
struct iii_fuse_file_info {
  int flags;
  unsigned long fh_old;
  int writepage;
  unsigned int bits;
  uint64_t fh;
  uint64_t lock_owner;
};
typedef int (*reply_err_fn)(void *req, int err);
typedef void *(*next_chan_fn)(void *se, void *ch);
typedef int (*notify_inval_inode_fn)(void *ch, unsigned long ino, off_t off, off_t len);
typedef void (*link_fn)(void *req, unsigned long ino, unsigned long newparent, const char *newname);

static reply_err_fn reply_err;
static next_chan_fn next_chan;
static notify_inval_inode_fn notify_inval_inode;
static link_fn libfuse_link;
static void *volatile session;

/* ---- tenth job: the writable layer's disk limit ---- */

#define QUOTA_ENTRY_BYTES 1024
/* Between two counts forced by frees: at least this, and twice the last count's time (a guest cannot keep the host walking). */
#define QUOTA_RECOUNT_GAP_NS 50000000LL
static pthread_mutex_t quota_lock = PTHREAD_MUTEX_INITIALIZER;
/* Held (shared) by the JS side around a rename in upper, (exclusive) by a count: a subtree moved from a part the
 * walk has not reached to one it has passed would be missed, and a miss lets the guest write that much more. */
static pthread_rwlock_t quota_tree_lock = PTHREAD_RWLOCK_INITIALIZER;
static int64_t quota_limit = -1;
static int64_t quota_entry_limit = -1;
static int64_t quota_used, quota_entries;
static char *quota_upper;
static dev_t quota_dev;
static int quota_freed;
static int64_t quota_counted_at_ns, quota_count_took_ns;
static int64_t quota_walk_bytes, quota_walk_entries;
static uint64_t quota_counts, quota_refusals;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* a + b, held at INT64_MAX (a guest's 8 EiB sparse file, or a write at offset 2^63 - 2, must not wrap). */
static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t quota_entry_cost(const struct stat *st) {
  int64_t blocks = st->st_blocks > INT64_MAX / 512 ? INT64_MAX : (int64_t)st->st_blocks * 512;
  int64_t size = S_ISREG(st->st_mode) ? (int64_t)st->st_size : 0;
  return sat_add(size > blocks ? size : blocks, QUOTA_ENTRY_BYTES);
}

static int quota_walk_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)path;
  (void)ftw;
  quota_walk_entries++;
  if (type != FTW_NS) quota_walk_bytes = sat_add(quota_walk_bytes, quota_entry_cost(st));
  return 0;
}

/* Files of the upper's device this process holds open (O_PATH pins included) with no name left. */
static void quota_unlinked_open(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return;
  ino_t seen[4096];
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    struct stat st;
    if (fstat(atoi(e->d_name), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0 || st.st_dev != quota_dev) continue;
    int dup = 0;
    for (size_t i = 0; i < n; i++) dup |= seen[i] == st.st_ino;
    if (dup) continue;
    if (n < sizeof seen / sizeof seen[0]) seen[n++] = st.st_ino;
    quota_walk_bytes = sat_add(quota_walk_bytes, quota_entry_cost(&st));
    quota_walk_entries++;
  }
  closedir(d);
}

/* Counts the upper tree and the unlinked open files; caller holds quota_lock. 0 or -errno (the old figures kept). */
static int quota_count(void) {
  int64_t t0 = now_ns();
  quota_walk_bytes = 0;
  quota_walk_entries = 0;
  pthread_rwlock_wrlock(&quota_tree_lock);
  int rc = nftw(quota_upper, quota_walk_entry, 16, FTW_PHYS | FTW_MOUNT) != 0 ? (errno != 0 ? -errno : -EIO) : 0;
  if (rc == 0) quota_unlinked_open();
  pthread_rwlock_unlock(&quota_tree_lock);
  quota_counted_at_ns = now_ns();
  quota_count_took_ns = quota_counted_at_ns - t0;
  if (rc != 0) return rc;
  quota_used = quota_walk_bytes;
  quota_entries = quota_walk_entries;
  quota_freed = 0;
  quota_counts++;
  return 0;
}

/*
 * For the JS side, once mounted: limit the upper directory `upper` to `limit` bytes and `entry_limit` entries
 * (the host's inodes). 1, or -errno of the count.
 */
int iii_quota_enable(const char *upper, int64_t limit, int64_t entry_limit) {
  struct stat st;
  if (upper == NULL || limit < 0 || entry_limit < 0) return -EINVAL;
  if (stat(upper, &st) != 0) return -errno;
  pthread_mutex_lock(&quota_lock);
  free(quota_upper);
  quota_upper = strdup(upper);
  quota_dev = st.st_dev;
  int rc = quota_upper == NULL ? -ENOMEM : quota_count();
  if (rc == 0) {
    quota_entry_limit = entry_limit;
    __atomic_store_n(&quota_limit, limit, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&quota_lock);
  return rc == 0 ? 1 : rc;
}

static int quota_active(void) {
  return __atomic_load_n(&quota_limit, __ATOMIC_ACQUIRE) >= 0;
}

static int quota_fits(int64_t bytes, int64_t entries) {
  return bytes <= quota_limit - quota_used && entries <= quota_entry_limit - quota_entries;
}

/*
 * Charges `bytes` of growth and `entries` new entries: 0, or -ENOSPC when the upper would pass a limit (counted
 * again first when that may help: after a free, paced; or a second after the last count).
 */
int iii_quota_charge2(int64_t bytes, int64_t entries) {
  if (!quota_active() || (bytes <= 0 && entries <= 0)) return 0;
  if (bytes < 0) bytes = 0;
  if (entries < 0) entries = 0;
  pthread_mutex_lock(&quota_lock);
  int rc = 0;
  if (!quota_fits(bytes, entries)) {
    int64_t since = now_ns() - quota_counted_at_ns;
    int64_t gap = 2 * quota_count_took_ns > QUOTA_RECOUNT_GAP_NS ? 2 * quota_count_took_ns : QUOTA_RECOUNT_GAP_NS;
    int freed = __atomic_load_n(&quota_freed, __ATOMIC_RELAXED);
    if (freed && since < gap) {
      /* Space may have come back: wait for the pace rather than refuse. */
      struct timespec wait = {(time_t)((gap - since) / 1000000000LL), (long)((gap - since) % 1000000000LL)};
      while (nanosleep(&wait, &wait) != 0 && errno == EINTR) {
      }
      since = gap;
    }
    /* A failed count keeps the old figures: it only ever refuses more. */
    if (freed || since >= 1000000000LL) (void)quota_count();
    if (!quota_fits(bytes, entries)) {
      rc = -ENOSPC;
      quota_refusals++;
    }
  }
  if (rc == 0) {
    quota_used += bytes;
    quota_entries += entries;
  }
  pthread_mutex_unlock(&quota_lock);
  return rc;
}

int iii_quota_charge(int64_t bytes) {
  return iii_quota_charge2(bytes, 0);
}

/* Something may have freed space (unlink, rmdir, rename over a name, truncate down, close): the next refusal counts again. */
void iii_quota_freed(void) {
  __atomic_store_n(&quota_freed, 1, __ATOMIC_RELAXED);
}

/* For the JS side, around a rename in upper: no count walks the tree meanwhile. */
void iii_quota_rename_begin(void) {
  pthread_rwlock_rdlock(&quota_tree_lock);
}

void iii_quota_rename_end(void) {
  pthread_rwlock_unlock(&quota_tree_lock);
}

/* For the JS side: bytes and entries charged so far, the limits (-1: none), counts of the tree, refused charges. */
void iii_quota_state(int64_t *out) {
  pthread_mutex_lock(&quota_lock);
  out[0] = quota_used;
  out[1] = quota_limit;
  out[2] = (int64_t)quota_counts;
  out[3] = (int64_t)quota_refusals;
  out[4] = quota_entries;
  out[5] = quota_entry_limit;
  pthread_mutex_unlock(&quota_lock);
}

/* The growth a write of `size` bytes at `off` makes to the file behind `fd`: charged (0), or -ENOSPC / -errno. */
static int quota_charge_fd_growth(int fd, int64_t off, int64_t size) {
  if (!quota_active()) return 0;
  struct stat st;
  /* Fail closed: a write whose growth cannot be known is not made. */
  if (fstat(fd, &st) != 0) return -errno;
  /* An O_APPEND fd writes at its end whatever the offset says. */
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_APPEND)) return iii_quota_charge(size);
  int64_t end = sat_add(off, size);
  return end > (int64_t)st.st_size ? iii_quota_charge(end - (int64_t)st.st_size) : 0;
}

static void fallocate_host_fd(void *req, unsigned long ino, int mode, off_t offset, off_t length, void *fi_) {
  (void)ino;
  const struct iii_fuse_file_info *fi = fi_;
  if (fi == NULL || fi->fh >= VIRTUAL_FH_BASE) {
    reply_err(req, EBADF);
    return;
  }
  if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE)) iii_quota_freed();
  else if (quota_active()) {
    struct stat st;
    if (fstat((int)fi->fh, &st) != 0) {
      reply_err(req, errno);
      return;
    }
    int64_t growth = (mode & FALLOC_FL_INSERT_RANGE) ? (int64_t)length : sat_add((int64_t)offset, (int64_t)length) - (int64_t)st.st_size;
    if (growth > 0 && iii_quota_charge(growth) != 0) {
      reply_err(req, ENOSPC);
      return;
    }
  }
  int rc = fallocate((int)fi->fh, mode, offset, length);
  reply_err(req, rc == 0 ? 0 : errno);
}

static void link_refreshing_source(void *req, unsigned long ino, unsigned long newparent, const char *newname) {
  void *se = session;
  void *ch = se != NULL ? next_chan(se, NULL) : NULL;
  /* Attributes only (negative offset): takes no lock the kernel holds during link. */
  if (ch != NULL) notify_inval_inode(ch, ino, -1, 0);
  entry_begin(newparent, newname);
  tl_link_src = ino;
  libfuse_link(req, ino, newparent, newname);
  tl_link_src = 0;
  entry_end();
}

/* struct fuse_entry_param of libfuse 2.9 (fuse_lowlevel.h). */
struct iii_entry_param {
  unsigned long ino;
  unsigned long generation;
  struct stat attr;
  double attr_timeout;
  double entry_timeout;
};
static volatile int ino64;
static volatile int link_groups;

/*
 * The node -> link group table (`groups`) and the file -> number table (`canon`, below) are open addressing with
 * linear probing and backward-shift deletion: an entry is never evicted to make room (before, a full window of 8
 * probe slots gave a live node's slot to a new node, and with it the file's one number went while its nodes
 * lived: tens of thousands of linked files cached at once). A table doubles (rehashed under groups_lock) once it
 * is 3/4 full, from TABLE_MIN_SLOTS up to TABLE_MAX_SLOTS; at that bound (or without memory) it fills up to 7/8,
 * then a new node or file is not recorded (its replies carry its own node id, as before these tables existed)
 * and nothing recorded is lost.
 */
#define TABLE_MIN_BITS 15
#define TABLE_MAX_BITS 22
/* The tables' one shape: a nonzero 64-bit key and two words of payload. */
struct u64_entry {
  uint64_t key;
  uint64_t a;
  uint64_t b;
};
struct u64_table {
  struct u64_entry *t;
  unsigned bits;
  size_t count;
};
/*
 * groups: node id (key) -> the node's file (a: file_id of its link-group key and identity) and the lookups libfuse
 * counted for it since it joined its group (b): +1 at each entry reply for it, -n at a FORGET of n. libfuse frees
 * a node only when its count reaches 0, and so does the table: a LOOKUP answered while the kernel evicts the
 * node's inode leaves libfuse's count, and this one, at 1 after the eviction's FORGET (before, any FORGET dropped
 * the node, and with its file's last node the file's number, which the node kept using). A node that joined at
 * an attribute reply or as a LINK's source (looked up before its file had several links) starts at 0: its first
 * FORGET drops it, as before.
 */
static struct u64_table groups;
static pthread_mutex_t groups_lock = PTHREAD_MUTEX_INITIALIZER;

/* For the JS side: from now on st_rdev of a regular file is a link-group key. Returns 1. */
int iii_link_groups_enable(void) {
  __atomic_store_n(&link_groups, 1, __ATOMIC_RELEASE);
  return 1;
}

/* Fibonacci hashing: the top `bits` bits of the product (at the first size, the home slot the tables had before). */
static size_t slot_home(uint64_t k, unsigned bits) {
  return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
}

/* Whether entry j, whose home slot is k, may move into the hole at i (k not cyclically within (i, j]). */
static int may_fill(size_t i, size_t j, size_t k) {
  return i <= j ? (k <= i || k > j) : (k <= i && k > j);
}

/* Whether a table of 2^bits slots with `count` entries needs to grow before one more. */
static int table_wants_growth(unsigned bits, size_t count) {
  return bits == 0 || (count + 1) * 4 > ((size_t)1 << bits) * 3;
}

static int table_full(unsigned bits, size_t count) {
  return bits == 0 || (count + 1) * 8 > ((size_t)1 << bits) * 7;
}

static size_t u64_find(const struct u64_table *tb, uint64_t key) {
  if (tb->bits == 0 || key == 0) return SIZE_MAX;
  size_t mask = ((size_t)1 << tb->bits) - 1;
  for (size_t at = slot_home(key, tb->bits);; at = (at + 1) & mask) {
    if (tb->t[at].key == key) return at;
    if (tb->t[at].key == 0) return SIZE_MAX;
  }
}

static size_t u64_insert(struct u64_table *tb, uint64_t key) {
  if (table_wants_growth(tb->bits, tb->count)) {
    unsigned bits = tb->bits == 0 ? TABLE_MIN_BITS : tb->bits + 1;
    struct u64_entry *t = bits <= TABLE_MAX_BITS ? calloc((size_t)1 << bits, sizeof *t) : NULL;
    if (t != NULL) {
      size_t old = tb->bits == 0 ? 0 : (size_t)1 << tb->bits, mask = ((size_t)1 << bits) - 1;
      for (size_t i = 0; i < old; i++) {
        if (tb->t[i].key == 0) continue;
        size_t at = slot_home(tb->t[i].key, bits);
        while (t[at].key != 0) at = (at + 1) & mask;
        t[at] = tb->t[i];
      }
      free(tb->t);
      tb->t = t;
      tb->bits = bits;
    } else if (table_full(tb->bits, tb->count)) {
      return SIZE_MAX;
    }
  }
  size_t mask = ((size_t)1 << tb->bits) - 1, at = slot_home(key, tb->bits);
  while (tb->t[at].key != 0) at = (at + 1) & mask;
  tb->t[at].key = key;
  tb->t[at].a = 0;
  tb->t[at].b = 0;
  tb->count++;
  return at;
}

static void u64_delete(struct u64_table *tb, size_t i) {
  size_t mask = ((size_t)1 << tb->bits) - 1;
  for (size_t j = (i + 1) & mask; tb->t[j].key != 0; j = (j + 1) & mask) {
    if (!may_fill(i, j, slot_home(tb->t[j].key, tb->bits))) continue;
    tb->t[i] = tb->t[j];
    i = j;
  }
  memset(&tb->t[i], 0, sizeof tb->t[i]);
  tb->count--;
}

static size_t group_find(unsigned long nodeid) {
  return u64_find(&groups, nodeid);
}

static uint32_t group_key_at(size_t at) {
  return (uint32_t)groups.t[at].a;
}

static uint32_t group_ident_at(size_t at) {
  return (uint32_t)(groups.t[at].a >> 32);
}

/*
 * One inode number per linked file. virtiofsd knows a file by its st_ino: it answers LINK with the source's
 * inode and finds the inode of a name it unlinks or renames by the number that name stats with (no match: EIO,
 * so `ln a b; rm b` failed in a guest). libfuse gives each name its own node id as st_ino; every name of a
 * linked file now shows the id of the first node seen for the file (the LINK's source, which virtiofsd already
 * knows), for as long as a node of the file lives. libfuse never hands out an id twice (until 2^32 wraps), so
 * the number is no other file's.
 *
 * Its count (b) is the file's nodes in `groups`: the entry goes with the file's last node (a number kept past the
 * file made a new file on the same host inode show the old file's number, which virtiofsd had forgotten: the
 * guest's `rm` of the new name failed with EIO, filesystem.vm "many times in a row"). Before, the last node's
 * forget found that out by scanning all 32,768 group slots under groups_lock.
 */
/* canon: file id (key) -> the node whose id is the file's number (a) and the file's nodes in `groups` (b). */
static struct u64_table canon;

static uint64_t file_id(uint32_t key, uint32_t ident) {
  return ((uint64_t)ident << 32) | key;
}

/* The file's entry, or with `make` a new one (refs 0); SIZE_MAX if none (or the table is at its bound). */
static size_t canon_slot(uint64_t id, int make) {
  size_t at = u64_find(&canon, id);
  if (at != SIZE_MAX || !make || id == 0) return at;
  return u64_insert(&canon, id);
}

/* A node of the file left `groups`: with the file's last one, its number goes. Call with groups_lock held. */
static void canon_unref(uint64_t id) {
  size_t i = canon_slot(id, 0);
  if (i == SIZE_MAX) return;
  if (canon.t[i].b > 1) canon.t[i].b--;
  else u64_delete(&canon, i);
}

/* The node leaves its group (and its file's count). Call with groups_lock held. */
static void group_clear(size_t at) {
  canon_unref(groups.t[at].a);
  u64_delete(&groups, at);
}

/* Whether `nodeid` is in `groups` (so a lookup counted for it by group_take was recorded). */
static int group_has(unsigned long nodeid) {
  pthread_mutex_lock(&groups_lock);
  int found = group_find(nodeid) != SIZE_MAX;
  pthread_mutex_unlock(&groups_lock);
  return found;
}

/* `lookups`: 1 for an entry reply naming the node (libfuse counted a lookup), 0 otherwise. */
static void group_record(unsigned long nodeid, uint32_t key, uint32_t ident, unsigned lookups) {
  uint64_t id = file_id(key, ident);
  pthread_mutex_lock(&groups_lock);
  size_t slot = group_find(nodeid);
  if (slot != SIZE_MAX && groups.t[slot].a != id) {
    /* The node's name is another host file now (replaced behind the mount): it leaves the old file's group. */
    canon_unref(groups.t[slot].a);
    size_t c = canon_slot(id, 1);
    if (c == SIZE_MAX) {
      u64_delete(&groups, slot);
      pthread_mutex_unlock(&groups_lock);
      return;
    }
    canon.t[c].b++;
    groups.t[slot].a = id;
  }
  if (slot == SIZE_MAX) {
    size_t c = canon_slot(id, 1);
    if (c != SIZE_MAX) {
      canon.t[c].b++;
      slot = nodeid != 0 ? u64_insert(&groups, nodeid) : SIZE_MAX;
      if (slot == SIZE_MAX) canon_unref(id);
    }
    if (slot == SIZE_MAX) {
      pthread_mutex_unlock(&groups_lock);
      return;
    }
    groups.t[slot].a = id;
  }
  groups.t[slot].b += lookups;
  pthread_mutex_unlock(&groups_lock);
}

static int group_of(unsigned long nodeid, uint32_t *key, uint32_t *ident, unsigned lookups) {
  pthread_mutex_lock(&groups_lock);
  size_t at = group_find(nodeid);
  if (at != SIZE_MAX) {
    *key = group_key_at(at);
    *ident = group_ident_at(at);
    groups.t[at].b += lookups;
  }
  pthread_mutex_unlock(&groups_lock);
  return at != SIZE_MAX;
}

static unsigned long canon_of(uint64_t id, unsigned long candidate) {
  pthread_mutex_lock(&groups_lock);
  size_t at = canon_slot(id, 0);
  unsigned long out = candidate;
  /* No entry: the tables are at their bound; this reply's own number, kept nowhere. */
  if (at != SIZE_MAX) {
    if (canon.t[at].a == 0) canon.t[at].a = candidate;
    out = (unsigned long)canon.t[at].a;
  }
  pthread_mutex_unlock(&groups_lock);
  return out;
}

/* A FORGET of `n` lookups of a node (or libfuse's own forget of a reply the kernel never got). */
static void group_forget(unsigned long nodeid, uint64_t n) {
  pthread_mutex_lock(&groups_lock);
  size_t at = group_find(nodeid);
  if (at != SIZE_MAX) {
    if (groups.t[at].b > n) groups.t[at].b -= n;
    else group_clear(at);
  }
  pthread_mutex_unlock(&groups_lock);
}

/*
 * Tags are only on regular files; other types keep their st_rdev (device nodes). A node once seen in a link
 * group keeps its group's number after its file drops to one link. `wide` (stable inode numbers): the numbers
 * are the JS side's (one per file), and st_dev is their high half. `lookups`: 1 for an entry reply.
 */
static int group_take(struct stat *st, unsigned long nodeid, int wide, unsigned lookups) {
  if (!S_ISREG(st->st_mode)) return 0;
  uint32_t key = 0, ident = 0;
  if (st->st_rdev != 0) {
    key = (uint32_t)st->st_rdev;
    ident = wide ? 0 : (uint32_t)st->st_dev;
    if (nodeid != 0) group_record(nodeid, key, ident, lookups);
    if (tl_link_src != 0) group_record(tl_link_src, key, ident, 0);
    st->st_rdev = 0;
  } else if (nodeid == 0 || !group_of(nodeid, &key, &ident, lookups)) {
    return 0;
  }
  if (!wide) {
    unsigned long first = tl_link_src != 0 ? tl_link_src : nodeid;
    if (first != 0) {
      st->st_ino = canon_of(file_id(key, ident), first);
      st->st_dev = 0;
    }
  }
  return nodeid != 0 && lookups > 0 && group_has(nodeid);
}

/*
 * After libfuse's entry reply: when it failed with -ENOENT, libfuse forgets the lookup it counted (the kernel never
 * got the reply), and so does the table, for a lookup it counted (`counted`, from group_take). Before, it forgot one
 * also for a reply it had not counted (the name no longer a regular file, or no group), taking a lookup another
 * reply had counted: the node could go while libfuse kept it.
 */
static void entry_reply_done(unsigned long nodeid, int counted, int rc) {
  if (rc == -ENOENT && counted) group_forget(nodeid, 1);
}

/*
 * For tests (through koffi, in a process that is no FUSE server): a reply for `nodeid` of a regular file in link
 * group `key` (`ident`: the host inode's low half), as fuse_reply_entry (`lookups` 1) or fuse_reply_attr (0)
 * takes it without stable numbers; returns the st_ino it would send.
 */
uint64_t iii_test_group_reply(uint64_t nodeid, uint32_t key, uint32_t ident, int lookups) {
  struct stat st;
  memset(&st, 0, sizeof st);
  st.st_mode = S_IFREG | 0644;
  st.st_rdev = key;
  st.st_dev = ident;
  st.st_ino = (uint32_t)nodeid;
  group_take(&st, (unsigned long)nodeid, 0, lookups > 0 ? 1 : 0);
  return st.st_ino;
}

/* For tests: a FORGET of `n` lookups of `nodeid`, as forget_releasing takes it (without libfuse's own). */
void iii_test_group_forget(uint64_t nodeid, uint64_t n) {
  pthread_rwlock_wrlock(&counts_lock);
  group_forget((unsigned long)nodeid, n);
  pthread_rwlock_unlock(&counts_lock);
}

/* For tests: a lookup libfuse has counted (its find_node) and not yet replied to; iii_test_lookup_reply ends it. */
void iii_test_lookup_begin(void) {
  entry_begin(1, "iii-test");
}

/* For tests: the reply of the lookup iii_test_lookup_begin began, as iii_test_group_reply's entry reply. */
uint64_t iii_test_lookup_reply(uint64_t nodeid, uint32_t key, uint32_t ident) {
  tl_entry_set = 0; /* no name to record */
  uint64_t ino = iii_test_group_reply(nodeid, key, ident, 1);
  entry_end();
  return ino;
}

/*
 * For tests: an entry reply for `nodeid` (a regular file in link group `key`, or with `regular` 0 a directory) that
 * libfuse then fails to send (-ENOENT when `fails`), as fuse_reply_entry takes it; returns the st_ino it would send.
 */
uint64_t iii_test_entry_reply(uint64_t nodeid, uint32_t key, uint32_t ident, int regular, int fails) {
  struct stat st;
  memset(&st, 0, sizeof st);
  st.st_mode = regular ? (S_IFREG | 0644) : (S_IFDIR | 0755);
  st.st_rdev = regular ? key : 0;
  st.st_dev = ident;
  st.st_ino = (uint32_t)nodeid;
  int counted = group_take(&st, (unsigned long)nodeid, 0, 1);
  entry_reply_done((unsigned long)nodeid, counted, fails ? -ENOENT : 0);
  return st.st_ino;
}

/* The recorded link group of a node, 0 when none. */
static uint32_t group_key_of(unsigned long nodeid) {
  pthread_mutex_lock(&groups_lock);
  size_t at = group_find(nodeid);
  uint32_t key = at != SIZE_MAX ? group_key_at(at) : 0;
  pthread_mutex_unlock(&groups_lock);
  return key;
}

/* ---- sixth job: names -> nodes, hides, released pins ---- */

#define NAME_SLOTS 65536
#define NAME_PROBES 8
static struct {
  unsigned long parent;
  uint64_t hash;
  unsigned long nodeid;
} names[NAME_SLOTS];
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t name_home(unsigned long parent, uint64_t hash) {
  return (size_t)(((parent * 0x9E3779B97F4A7C15ULL) ^ hash) >> 48) % NAME_SLOTS;
}

/* Lookups scan every probe slot (holes are allowed); a full neighbourhood loses its home slot. */
static void names_put(unsigned long parent, uint64_t hash, unsigned long nodeid) {
  size_t home = name_home(parent, hash), slot = home;
  int found = 0;
  pthread_mutex_lock(&names_lock);
  for (int i = 0; i < NAME_PROBES && !found; i++) {
    size_t at = (home + (size_t)i) % NAME_SLOTS;
    if (names[at].parent == parent && names[at].hash == hash) slot = at, found = 1;
  }
  for (int i = 0; i < NAME_PROBES && !found; i++) {
    size_t at = (home + (size_t)i) % NAME_SLOTS;
    if (names[at].nodeid == 0) slot = at, found = 1;
  }
  names[slot].parent = parent;
  names[slot].hash = hash;
  names[slot].nodeid = nodeid;
  pthread_mutex_unlock(&names_lock);
}

/* Removes (parent, hash) and returns its node, 0 when unknown. */
static unsigned long names_take(unsigned long parent, uint64_t hash) {
  size_t home = name_home(parent, hash);
  unsigned long nodeid = 0;
  pthread_mutex_lock(&names_lock);
  for (int i = 0; i < NAME_PROBES; i++) {
    size_t at = (home + (size_t)i) % NAME_SLOTS;
    if (names[at].nodeid != 0 && names[at].parent == parent && names[at].hash == hash) {
      nodeid = names[at].nodeid;
      names[at].parent = 0;
      names[at].hash = 0;
      names[at].nodeid = 0;
      break;
    }
  }
  pthread_mutex_unlock(&names_lock);
  return nodeid;
}

static void entry_record(unsigned long nodeid) {
  if (tl_entry_set && nodeid != 0) names_put(tl_entry_parent, tl_entry_hash, nodeid);
}

#define HIDDEN_SLOTS 8192
static unsigned long hidden[HIDDEN_SLOTS];
static unsigned long released[HIDDEN_SLOTS];
static size_t released_count;
static pthread_mutex_t hidden_lock = PTHREAD_MUTEX_INITIALIZER;

static void hidden_add(unsigned long nodeid) {
  size_t home = (size_t)((nodeid * 0x9E3779B97F4A7C15ULL) >> 51) % HIDDEN_SLOTS;
  pthread_mutex_lock(&hidden_lock);
  for (size_t i = 0; i < HIDDEN_SLOTS; i++) {
    size_t at = (home + i) % HIDDEN_SLOTS;
    if (hidden[at] == 0 || hidden[at] == nodeid) {
      hidden[at] = nodeid;
      break;
    }
  }
  pthread_mutex_unlock(&hidden_lock);
}

/* Whether `nodeid` is a hidden node (a name unlinked through the mount, its file pinned). */
static int hidden_has(unsigned long nodeid) {
  size_t home = (size_t)((nodeid * 0x9E3779B97F4A7C15ULL) >> 51) % HIDDEN_SLOTS;
  int found = 0;
  pthread_mutex_lock(&hidden_lock);
  for (size_t i = 0; i < HIDDEN_SLOTS; i++) {
    size_t at = (home + i) % HIDDEN_SLOTS;
    if (hidden[at] == 0) break;
    if (hidden[at] == nodeid) {
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&hidden_lock);
  return found;
}

/* A forgotten node: if it was hidden, queue it for the JS side (a full queue drops it: the JS side bounds its pins). */
static void hidden_forget(unsigned long nodeid) {
  size_t home = (size_t)((nodeid * 0x9E3779B97F4A7C15ULL) >> 51) % HIDDEN_SLOTS;
  pthread_mutex_lock(&hidden_lock);
  for (size_t i = 0; i < HIDDEN_SLOTS; i++) {
    size_t at = (home + i) % HIDDEN_SLOTS;
    if (hidden[at] == 0) break;
    if (hidden[at] == nodeid) {
      /* Re-place the rest of the run so no probe chain breaks. */
      hidden[at] = 0;
      for (size_t j = (at + 1) % HIDDEN_SLOTS; hidden[j] != 0; j = (j + 1) % HIDDEN_SLOTS) {
        unsigned long moved = hidden[j];
        hidden[j] = 0;
        size_t h = (size_t)((moved * 0x9E3779B97F4A7C15ULL) >> 51) % HIDDEN_SLOTS;
        while (hidden[h] != 0) h = (h + 1) % HIDDEN_SLOTS;
        hidden[h] = moved;
      }
      if (released_count < HIDDEN_SLOTS) released[released_count++] = nodeid;
      break;
    }
  }
  pthread_mutex_unlock(&hidden_lock);
}

/* For the JS side: moves up to `max` released node ids into `out`; returns how many. */
int iii_take_released(uint64_t *out, int max) {
  pthread_mutex_lock(&hidden_lock);
  int n = 0;
  while (n < max && released_count > 0) out[n++] = released[--released_count];
  pthread_mutex_unlock(&hidden_lock);
  return n;
}

static pthread_mutex_t hide_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long hiding_node;

/* For the JS thread: the node whose name is being hidden by the RENAME it is answering, else 0. */
uint64_t iii_hiding(void) {
  return __atomic_load_n(&hiding_node, __ATOMIC_ACQUIRE);
}

typedef void (*lookup_fn)(void *req, unsigned long parent, const char *name);
typedef void (*forget_fn)(void *req, unsigned long ino, unsigned long nlookup);
typedef void (*getattr_fn)(void *req, unsigned long ino, void *fi);
typedef void (*unlink_fn)(void *req, unsigned long parent, const char *name);
typedef void (*rename_fn)(void *req, unsigned long parent, const char *name, unsigned long newparent, const char *newname);
struct iii_forget_data {
  uint64_t ino;
  uint64_t nlookup;
};
typedef void (*forget_multi_fn)(void *req, size_t count, struct iii_forget_data *forgets);
static lookup_fn libfuse_lookup;
static forget_fn libfuse_forget;
static getattr_fn libfuse_getattr;
static unlink_fn libfuse_unlink;
static rename_fn libfuse_rename;
static forget_multi_fn libfuse_forget_multi;

static void lookup_recording(void *req, unsigned long parent, const char *name) {
  entry_begin(parent, name);
  libfuse_lookup(req, parent, name);
  entry_end();
}

static void getattr_recording(void *req, unsigned long ino, void *fi) {
  tl_attr_ino = ino;
  libfuse_getattr(req, ino, fi);
  tl_attr_ino = 0;
}

static void unlink_keeping_links(void *req, unsigned long parent, const char *name) {
  unsigned long node = names_take(parent, name_hash(name));
  if (node == 0 || node == 1 || group_key_of(node) == 0) {
    libfuse_unlink(req, parent, name);
    return;
  }
  char hidden_name[64];
  snprintf(hidden_name, sizeof hidden_name, HIDDEN_NAME_PREFIX "%lu", node);
  /* Before the rename: its reply may let the kernel forget the node at once. A failed hide releases an id
     the JS side never pinned, which it ignores. */
  hidden_add(node);
  pthread_mutex_lock(&hide_lock);
  __atomic_store_n(&hiding_node, node, __ATOMIC_RELEASE);
  libfuse_rename(req, parent, name, 1, hidden_name);
  __atomic_store_n(&hiding_node, 0, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&hide_lock);
}

/*
 * A RENAME onto a name of a linked file replaces that name as an UNLINK would: its node (which the guest may
 * reach through the file's other names: virtiofsd's inode of the file is that node) is hidden first, as
 * unlink_keeping_links hides it, then the rename runs. Before, libfuse's rename dropped the replaced node's name
 * and the node went with it: `ln y z; cat y; mv x y; cat z` gave ENOENT in a guest. The hide is libfuse's own
 * rename run with this request, its reply held back (fuse_reply_err below): libfuse's node table stays
 * consistent, and the request is answered once, by the real rename. A failed hide leaves the rename as it was.
 */
static __thread int tl_hold_reply;
static volatile int hiding_replaced;

/* For the JS thread: 1 while the hide it answers is for a RENAME over the name (pin only: the rename replaces
   the host name), 0 for an UNLINK's. */
int iii_hiding_replaced(void) {
  return __atomic_load_n(&hiding_replaced, __ATOMIC_ACQUIRE);
}

static void rename_recording(void *req, unsigned long parent, const char *name, unsigned long newparent, const char *newname) {
  uint64_t h = name_hash(name), nh = name_hash(newname);
  unsigned long node = names_take(parent, h);
  unsigned long target = names_take(newparent, nh);
  uint32_t target_key = target > 1 ? group_key_of(target) : 0;
  if (target_key != 0 && target != node && (node == 0 || group_key_of(node) != target_key)) {
    char hidden_name[64];
    snprintf(hidden_name, sizeof hidden_name, HIDDEN_NAME_PREFIX "%lu", target);
    hidden_add(target);
    pthread_mutex_lock(&hide_lock);
    __atomic_store_n(&hiding_replaced, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&hiding_node, target, __ATOMIC_RELEASE);
    tl_hold_reply = 1;
    libfuse_rename(req, newparent, newname, 1, hidden_name);
    tl_hold_reply = 0;
    __atomic_store_n(&hiding_node, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&hiding_replaced, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&hide_lock);
  }
  if (node != 0) names_put(newparent, nh, node);
  libfuse_rename(req, parent, name, newparent, newname);
}

static void holder_forget(unsigned long node, uint64_t n);

static void forget_releasing(void *req, unsigned long ino, unsigned long nlookup) {
  pthread_rwlock_wrlock(&counts_lock);
  hidden_forget(ino);
  group_forget(ino, nlookup);
  holder_forget(ino, nlookup);
  libfuse_forget(req, ino, nlookup);
  pthread_rwlock_unlock(&counts_lock);
}

static void forget_multi_releasing(void *req, size_t count, struct iii_forget_data *forgets) {
  pthread_rwlock_wrlock(&counts_lock);
  for (size_t i = 0; i < count; i++) {
    hidden_forget((unsigned long)forgets[i].ino);
    group_forget((unsigned long)forgets[i].ino, forgets[i].nlookup);
    holder_forget((unsigned long)forgets[i].ino, forgets[i].nlookup);
  }
  libfuse_forget_multi(req, count, forgets);
  pthread_rwlock_unlock(&counts_lock);
}

/*
 * For the JS thread: invalidates the cached attributes of every recorded name of the
 * group. Returns how many were sent (-1: no channel). Takes only the table's lock.
 */
int iii_inval_link_group(uint32_t key) {
  void *se = session;
  void *ch = se != NULL && next_chan != NULL ? next_chan(se, NULL) : NULL;
  if (ch == NULL || notify_inval_inode == NULL || key == 0) return -1;
  unsigned long found[64];
  int n = 0;
  pthread_mutex_lock(&groups_lock);
  size_t cap = groups.bits == 0 ? 0 : (size_t)1 << groups.bits;
  for (size_t i = 0; i < cap && n < 64; i++) {
    if (groups.t[i].key != 0 && group_key_at(i) == key) found[n++] = (unsigned long)groups.t[i].key;
  }
  pthread_mutex_unlock(&groups_lock);
  for (int i = 0; i < n; i++) notify_inval_inode(ch, found[i], -1, 0);
  return n;
}

/* For the JS side (through koffi): from now on replies combine st_dev:st_ino. Returns 1. */
int iii_ino64_enable(void) {
  __atomic_store_n(&ino64, 1, __ATOMIC_RELEASE);
  return 1;
}

static void combine_ino(struct stat *st) {
  st->st_ino = ((uint64_t)(uint32_t)st->st_dev << 32) | (uint32_t)st->st_ino;
  st->st_dev = 0;
}

static void *libfuse_sym(const char *name) {
  void *libfuse = dlopen("libfuse.so.2", RTLD_LAZY | RTLD_NOLOAD);
  return libfuse != NULL ? dlsym(libfuse, name) : NULL;
}

/*
 * Stable numbers on a tree the host changes behind the mount (dev mode's /workspace). A file or directory the host
 * renames keeps its number, and libfuse gives its new name a new node; virtiofsd (`lo_find` by st_ino/st_dev)
 * then reuses the inode it holds for that number, whose O_PATH fd is the old name's node, which libfuse reaches
 * only by the old, gone path: the guest got ENOENT under the new name. So the shim knows which live node first
 * answered each number (its holder, kept until the kernel forgets it, lookups counted as for link groups), and a
 * new node answering a number a live holder has gets a number of its own instead (FALLBACK_INO_HI in the high
 * half, its node id in the low half: no stable number has that high half, no virtual file's either), in every
 * reply for that node, when the holder can only be a stale name of the file: the file is a directory (one name),
 * or a non-directory with one link, and the holder is not a hidden node (a name unlinked through the mount, whose
 * file the guest still reaches through another name). A file with several host links keeps the shared number (a
 * guest `rm` of a link needs it); a host rename of one of its names is not covered. A fresh mount has no holders:
 * every number is the stable one again (a restarted worker's `git status` finds its index up to date).
 */
#define FALLBACK_INO_HI 0xA0000000ULL
/* number -> holder node (a); node -> its number (a; FALLBACK_INO_HI high half when it got its own) and lookups (b). */
static struct u64_table holders, node_numbers;
static pthread_mutex_t holders_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t fallback_numbers;

/* The node leaves the holders (its lookups reached 0, or its name is another file now). Call with holders_lock. */
static void holder_drop(size_t at) {
  uint64_t node = node_numbers.t[at].key, number = node_numbers.t[at].a;
  size_t h = u64_find(&holders, number);
  if (h != SIZE_MAX && holders.t[h].a == node) u64_delete(&holders, h);
  u64_delete(&node_numbers, at);
}

/*
 * The number to send for `node` whose stable number is `number` (st_ino as combined), for a reply that counts
 * `lookups`; `single`: a directory or a file with one link. Returns `number` or the node's own fallback.
 */
static uint64_t holder_number(unsigned long node, uint64_t number, int single, unsigned lookups) {
  if (node == 0 || number == 0) return number;
  pthread_mutex_lock(&holders_lock);
  size_t at = u64_find(&node_numbers, node);
  uint64_t out = number;
  if (at != SIZE_MAX && node_numbers.t[at].a >> 32 == FALLBACK_INO_HI) {
    /* Its own number for as long as it lives: virtiofsd keys its inode by the number it first saw. */
    node_numbers.t[at].b += lookups;
    out = node_numbers.t[at].a;
    pthread_mutex_unlock(&holders_lock);
    return out;
  }
  if (at != SIZE_MAX && node_numbers.t[at].a != number) {
    /*
     * The node's name is another host file now. It keeps holding the old number for as long as it lives:
     * virtiofsd still has an inode under that number whose fd reaches this node, so another node showing the old
     * number (the renamed file, after the host recreated this name) must not be given it.
     */
    uint64_t was = node_numbers.t[at].b;
    u64_delete(&node_numbers, at);
    at = SIZE_MAX;
    lookups += (unsigned)was;
  }
  if (at == SIZE_MAX) {
    size_t h = u64_find(&holders, number);
    /* A holder counts while libfuse keeps its node (a forgotten node's entries for older numbers linger). */
    int taken = h != SIZE_MAX && holders.t[h].a != node && u64_find(&node_numbers, holders.t[h].a) != SIZE_MAX;
    if (taken && single && !hidden_has((unsigned long)holders.t[h].a)) {
      out = (FALLBACK_INO_HI << 32) | (uint32_t)node;
      __atomic_add_fetch(&fallback_numbers, 1, __ATOMIC_RELAXED);
    }
    if (lookups == 0) {
      /* Not counted by libfuse here (an attribute reply): nothing to keep it by. */
      pthread_mutex_unlock(&holders_lock);
      return out;
    }
    at = u64_insert(&node_numbers, node);
    if (at == SIZE_MAX) {
      pthread_mutex_unlock(&holders_lock);
      return out;
    }
    node_numbers.t[at].a = out;
    if (!taken) {
      size_t nh = h != SIZE_MAX ? h : u64_insert(&holders, number);
      if (nh != SIZE_MAX) holders.t[nh].a = node;
    }
  }
  node_numbers.t[at].b += lookups;
  pthread_mutex_unlock(&holders_lock);
  return out;
}

/* A FORGET of `n` lookups of `node` (or a failed entry reply's one). */
static void holder_forget(unsigned long node, uint64_t n) {
  pthread_mutex_lock(&holders_lock);
  size_t at = u64_find(&node_numbers, node);
  if (at != SIZE_MAX) {
    if (node_numbers.t[at].b > n) node_numbers.t[at].b -= n;
    else holder_drop(at);
  }
  pthread_mutex_unlock(&holders_lock);
}

/* For tests: the number a reply for `node` showing stable `number` sends, as holder_take; and a FORGET. */
uint64_t iii_test_holder_number(uint64_t node, uint64_t number, int single, int lookups) {
  return holder_number((unsigned long)node, number, single, (unsigned)lookups);
}

void iii_test_holder_forget(uint64_t node, uint64_t n) {
  holder_forget((unsigned long)node, n);
}

/* For the JS side and tests: how many replies got a node's own number instead of a held stable one. */
uint64_t iii_fallback_numbers(void) {
  return __atomic_load_n(&fallback_numbers, __ATOMIC_RELAXED);
}

/* The stable number of a reply (st_ino already combined) as holder_number sends it. */
static void holder_take(struct stat *st, unsigned long node, unsigned lookups) {
  int single = S_ISDIR(st->st_mode) || st->st_nlink <= 1;
  st->st_ino = holder_number(node, (uint64_t)st->st_ino, single, lookups);
}

int fuse_reply_entry(void *req, const struct iii_entry_param *e) {
  static int (*real)(void *, const struct iii_entry_param *);
  if (real == NULL) real = (int (*)(void *, const struct iii_entry_param *))libfuse_sym("fuse_reply_entry");
  if (real == NULL) return -ENOSYS;
  int wide = __atomic_load_n(&ino64, __ATOMIC_ACQUIRE), tagged = __atomic_load_n(&link_groups, __ATOMIC_ACQUIRE);
  if ((!wide && !tagged) || e == NULL) return real(req, e);
  struct iii_entry_param copy = *e;
  int counted = 0;
  if (tagged) {
    entry_record(copy.ino);
    counted = group_take(&copy.attr, copy.ino, wide, 1);
  }
  if (wide) {
    combine_ino(&copy.attr);
    holder_take(&copy.attr, copy.ino, 1);
  }
  int rc = real(req, &copy);
  entry_reply_done(copy.ino, counted, rc);
  if (rc == -ENOENT && wide) holder_forget(copy.ino, 1);
  return rc;
}

static void nocap_mark_new(unsigned long nodeid);

int fuse_reply_create(void *req, const struct iii_entry_param *e, const void *fi) {
  static int (*real)(void *, const struct iii_entry_param *, const void *);
  if (real == NULL) real = (int (*)(void *, const struct iii_entry_param *, const void *))libfuse_sym("fuse_reply_create");
  if (real == NULL) return -ENOSYS;
  /* A file just created (the kernel sends CREATE after a negative lookup; the server opens O_EXCL) has no capability. */
  if (e != NULL && e->ino != 0) nocap_mark_new(e->ino);
  int wide = __atomic_load_n(&ino64, __ATOMIC_ACQUIRE), tagged = __atomic_load_n(&link_groups, __ATOMIC_ACQUIRE);
  if ((!wide && !tagged) || e == NULL) return real(req, e, fi);
  struct iii_entry_param copy = *e;
  int counted = 0;
  if (tagged) {
    entry_record(copy.ino);
    counted = group_take(&copy.attr, copy.ino, wide, 1);
  }
  if (wide) {
    combine_ino(&copy.attr);
    holder_take(&copy.attr, copy.ino, 1);
  }
  int rc = real(req, &copy, fi);
  entry_reply_done(copy.ino, counted, rc);
  if (rc == -ENOENT && wide) holder_forget(copy.ino, 1);
  return rc;
}

int fuse_reply_attr(void *req, const struct stat *attr, double attr_timeout) {
  static int (*real)(void *, const struct stat *, double);
  if (real == NULL) real = (int (*)(void *, const struct stat *, double))libfuse_sym("fuse_reply_attr");
  if (real == NULL) return -ENOSYS;
  int wide = __atomic_load_n(&ino64, __ATOMIC_ACQUIRE), tagged = __atomic_load_n(&link_groups, __ATOMIC_ACQUIRE);
  if ((!wide && !tagged) || attr == NULL) return real(req, attr, attr_timeout);
  struct stat copy = *attr;
  if (tagged) (void)group_take(&copy, tl_attr_ino, wide, 0);
  if (wide) {
    combine_ino(&copy);
    holder_take(&copy, tl_attr_ino, 0);
  }
  return real(req, &copy, attr_timeout);
}

size_t fuse_add_direntry(void *req, char *buf, size_t bufsize, const char *name, const struct stat *stbuf, off_t off) {
  static size_t (*real)(void *, char *, size_t, const char *, const struct stat *, off_t);
  if (real == NULL) real = (size_t (*)(void *, char *, size_t, const char *, const struct stat *, off_t))libfuse_sym("fuse_add_direntry");
  if (real == NULL) return 0;
  if (!__atomic_load_n(&ino64, __ATOMIC_ACQUIRE) || stbuf == NULL) return real(req, buf, bufsize, name, stbuf, off);
  struct stat copy = *stbuf;
  combine_ino(&copy);
  return real(req, buf, bufsize, name, &copy, off);
}

#define NOCAP_SLOTS 65536
static struct {
  unsigned long nodeid;
  unsigned long gen;
} nocap[NOCAP_SLOTS];
static volatile unsigned long nocap_gen = 1;
static __thread unsigned long tl_cap_ino, tl_cap_gen;
static const char CAP_NAME[] = "security.capability";

typedef void (*getxattr_fn)(void *req, unsigned long ino, const char *name, size_t size);
typedef void (*setxattr_fn)(void *req, unsigned long ino, const char *name, const char *value, size_t size, int flags);
typedef void (*removexattr_fn)(void *req, unsigned long ino, const char *name);
static getxattr_fn libfuse_getxattr;
static setxattr_fn libfuse_setxattr;
static removexattr_fn libfuse_removexattr;
static unsigned long cap_answers;

static size_t nocap_slot(unsigned long nodeid) {
  return (size_t)((nodeid * 0x9E3779B97F4A7C15ULL) >> 48) % NOCAP_SLOTS;
}

static void nocap_mark_new(unsigned long nodeid) {
  size_t at = nocap_slot(nodeid);
  unsigned long gen = __atomic_load_n(&nocap_gen, __ATOMIC_ACQUIRE);
  __atomic_store_n(&nocap[at].gen, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&nocap[at].nodeid, nodeid, __ATOMIC_RELEASE);
  __atomic_store_n(&nocap[at].gen, gen, __ATOMIC_RELEASE);
}

static void getxattr_answering_caps(void *req, unsigned long ino, const char *name, size_t size) {
  if (strcmp(name, CAP_NAME) != 0) {
    libfuse_getxattr(req, ino, name, size);
    return;
  }
  size_t at = nocap_slot(ino);
  unsigned long gen = __atomic_load_n(&nocap_gen, __ATOMIC_ACQUIRE);
  if (__atomic_load_n(&nocap[at].nodeid, __ATOMIC_ACQUIRE) == ino && __atomic_load_n(&nocap[at].gen, __ATOMIC_ACQUIRE) == gen) {
    __atomic_add_fetch(&cap_answers, 1, __ATOMIC_RELAXED);
    reply_err(req, ENODATA);
    return;
  }
  tl_cap_ino = ino;
  tl_cap_gen = gen;
  libfuse_getxattr(req, ino, name, size);
  tl_cap_ino = 0;
}

static void forget_caps_of(const char *name) {
  if (strncmp(name, "security.", 9) == 0) __atomic_add_fetch(&nocap_gen, 1, __ATOMIC_ACQ_REL);
}

static void setxattr_forgetting_caps(void *req, unsigned long ino, const char *name, const char *value, size_t size, int flags) {
  forget_caps_of(name);
  libfuse_setxattr(req, ino, name, value, size, flags);
}

static void removexattr_forgetting_caps(void *req, unsigned long ino, const char *name) {
  forget_caps_of(name);
  libfuse_removexattr(req, ino, name);
}

/* libfuse's replies go through here; an ENODATA to a security.capability ask is remembered for the node. */
int fuse_reply_err(void *req, int err) {
  static int (*real)(void *, int);
  if (real == NULL) real = (int (*)(void *, int))libfuse_sym("fuse_reply_err");
  if (real == NULL) return -ENOSYS;
  if (tl_hold_reply) {
    /* rename_recording's hide: the request stays open for the real rename. */
    (void)err;
    tl_hold_reply = 0;
    return 0;
  }
  if (tl_cap_ino != 0 && err == ENODATA) {
    /* The generation is read before the JS side answered: a set since then makes this one stale. */
    size_t at = nocap_slot(tl_cap_ino);
    __atomic_store_n(&nocap[at].gen, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&nocap[at].nodeid, tl_cap_ino, __ATOMIC_RELEASE);
    __atomic_store_n(&nocap[at].gen, tl_cap_gen, __ATOMIC_RELEASE);
  }
  return real(req, err);
}

/* For the JS side: how many security.capability asks the shim answered itself. */
uint64_t iii_cap_answers(void) {
  return __atomic_load_n(&cap_answers, __ATOMIC_RELAXED);
}

/* ---- eighth job: reads and writes on libfuse's thread ---- */

/* struct fuse_buf / fuse_bufvec of libfuse 2.9 (fuse_common.h). */
struct iii_fuse_buf {
  size_t size;
  int flags;
  void *mem;
  int fd;
  off_t pos;
};
struct iii_fuse_bufvec {
  size_t count;
  size_t idx;
  size_t off;
  struct iii_fuse_buf buf[1];
};
typedef void (*read_fn)(void *req, unsigned long ino, size_t size, off_t off, void *fi);
typedef void (*write_buf_fn)(void *req, unsigned long ino, struct iii_fuse_bufvec *bufv, off_t off, void *fi);
typedef int (*reply_data_fn)(void *req, struct iii_fuse_bufvec *bufv, int flags);
typedef int (*reply_buf_fn)(void *req, const char *buf, size_t size);
#define SPLICE_MIN_READ 32768
#define FUSE_BUF_IS_FD (1 << 1)
#define FUSE_BUF_FD_SEEK (1 << 2)
#define FUSE_BUF_SPLICE_MOVE (1 << 3)
typedef int (*reply_write_fn)(void *req, size_t count);
static read_fn libfuse_read;
static write_buf_fn libfuse_write_buf;
static reply_data_fn reply_data;
static reply_buf_fn reply_buf;
static reply_write_fn reply_write;
static pthread_rwlock_t io_lock = PTHREAD_RWLOCK_INITIALIZER;
static int io_on;
/* The ninth job's switches (below); iii_io_stop turns them off too. */
static int fast_on, fast_create_on;
/*
 * FUSE instances fuse_new() made in this process, and whether one mount has claimed the fast paths. The fast
 * paths' state (root fd, switches) is one per process and only the first instance's operations are wrapped: a
 * second mount in the same process must never re-point the first one's answers at its own root.
 */
static int fuse_instances, fast_claimed;
static uint64_t io_reads, io_read_bytes, io_writes, io_write_bytes;

/* For the JS side: answer reads and writes here from now on. 1 when installed, 0 when libfuse's slots were not found. */
int iii_io_enable(void) {
  if (libfuse_read == NULL || reply_data == NULL || reply_buf == NULL) return 0;
  pthread_rwlock_wrlock(&io_lock);
  io_on = 1;
  pthread_rwlock_unlock(&io_lock);
  return 1;
}

/* For the JS side, before it closes its fds: waits for reads/writes in flight; later ones go to the JS handlers. */
void iii_io_stop(void) {
  pthread_rwlock_wrlock(&io_lock);
  io_on = 0;
  fast_on = 0;
  fast_create_on = 0;
  pthread_rwlock_unlock(&io_lock);
}

/* For the JS side: reads, bytes read, writes, bytes written answered here. */
void iii_io_counts(uint64_t *out) {
  out[0] = __atomic_load_n(&io_reads, __ATOMIC_RELAXED);
  out[1] = __atomic_load_n(&io_read_bytes, __ATOMIC_RELAXED);
  out[2] = __atomic_load_n(&io_writes, __ATOMIC_RELAXED);
  out[3] = __atomic_load_n(&io_write_bytes, __ATOMIC_RELAXED);
}

static void read_host_fd(void *req, unsigned long ino, size_t size, off_t off, void *fi_) {
  const struct iii_fuse_file_info *fi = fi_;
  pthread_rwlock_rdlock(&io_lock);
  if (!io_on || fi == NULL) {
    pthread_rwlock_unlock(&io_lock);
    libfuse_read(req, ino, size, off, fi_);
    return;
  }
  int fd = fi->fh >= VIRTUAL_FH_BASE ? (int)(fi->fh & VIRTUAL_FD_MASK) : (int)fi->fh;
  if (size < SPLICE_MIN_READ) {
    /* Small reads (O_DIRECT 4 KiB): a pread into a buffer costs less than setting up a splice. */
    char small[SPLICE_MIN_READ];
    ssize_t n;
    do n = pread(fd, small, size, off);
    while (n < 0 && errno == EINTR);
    int err = errno;
    pthread_rwlock_unlock(&io_lock);
    if (n < 0) {
      reply_err(req, err);
      return;
    }
    __atomic_add_fetch(&io_reads, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&io_read_bytes, (uint64_t)n, __ATOMIC_RELAXED);
    reply_buf(req, small, (size_t)n);
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    pthread_rwlock_unlock(&io_lock);
    reply_err(req, err);
    return;
  }
  /* libfuse splices from the fd into /dev/fuse (mount options splice_write,splice_move), else preads. */
  struct iii_fuse_bufvec bufv = {1, 0, 0, {{size, FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK, NULL, fd, off}}};
  int rc = reply_data(req, &bufv, FUSE_BUF_SPLICE_MOVE);
  pthread_rwlock_unlock(&io_lock);
  if (rc != 0) return;
  size_t got = off >= st.st_size ? 0 : (size_t)(st.st_size - off) < size ? (size_t)(st.st_size - off) : size;
  __atomic_add_fetch(&io_reads, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&io_read_bytes, got, __ATOMIC_RELAXED);
}

static void write_host_fd(void *req, unsigned long ino, const char *buf, size_t size, off_t off, void *fi_) {
  const struct iii_fuse_file_info *fi = fi_;
  pthread_rwlock_rdlock(&io_lock);
  if (!io_on || fi == NULL) {
    pthread_rwlock_unlock(&io_lock);
    struct iii_fuse_bufvec bufv = {1, 0, 0, {{size, 0, (void *)buf, -1, 0}}};
    libfuse_write_buf(req, ino, &bufv, off, fi_);
    return;
  }
  if (fi->fh >= VIRTUAL_FH_BASE) {
    pthread_rwlock_unlock(&io_lock);
    reply_err(req, EBADF);
    return;
  }
  int quota_rc = quota_charge_fd_growth((int)fi->fh, (int64_t)off, (int64_t)size);
  if (quota_rc != 0) {
    pthread_rwlock_unlock(&io_lock);
    reply_err(req, -quota_rc);
    return;
  }
  size_t done = 0;
  int err = 0;
  while (done < size) {
    ssize_t n = pwrite((int)fi->fh, buf + done, size - done, off + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    done += (size_t)n;
  }
  pthread_rwlock_unlock(&io_lock);
  if (err != 0 && done == 0) {
    reply_err(req, err);
    return;
  }
  __atomic_add_fetch(&io_writes, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&io_write_bytes, done, __ATOMIC_RELAXED);
  reply_write(req, done);
}


static int in_libfuse2(void *p);

/* ---- ninth job: getattr, open, chmod, chown, utimens, flush and release of a plain tree on libfuse's thread ---- */

/* struct fuse_operations of libfuse 2.9 (FUSE_USE_VERSION 29): the slots used here. */
#define HL_GETATTR 0
#define HL_GETDIR 2
#define HL_UTIME 13
#define HL_MKDIR 4
#define HL_RMDIR 6
#define HL_CREATE 32
#define HL_RENAME 8
#define HL_CHMOD 10
#define HL_CHOWN 11
#define HL_OPEN 14
#define HL_FLUSH 18
#define HL_OPENDIR 25
#define HL_READDIR 26
#define HL_RELEASEDIR 27
#define HL_RELEASE 19
#define HL_UTIMENS 36
#define HL_MIN_SLOTS 37
#define FAST_SKIP_NAMES 16
#define OVERRIDE_NAME "user.iii.override"
#define SYMLINK_OVERRIDE_NAME "trusted.iii.override"

typedef int (*hl_getattr_fn)(const char *path, struct stat *st);
typedef int (*hl_utimens_fn)(const char *path, const struct timespec tv[2]);
typedef int (*hl_file_fn)(const char *path, void *fi);
typedef int (*hl_chmod_fn)(const char *path, mode_t mode);
typedef int (*hl_chown_fn)(const char *path, uid_t uid, gid_t gid);
typedef int (*fill_dir_fn)(void *buf, const char *name, const struct stat *st, off_t off);
typedef int (*hl_readdir_fn)(const char *path, void *buf, fill_dir_fn filler, off_t off, void *fi);
static hl_readdir_fn js_readdir;
typedef int (*hl_path_fn)(const char *path);
typedef int (*hl_rename_fn)(const char *from, const char *to);
static hl_path_fn js_rmdir;
typedef int (*hl_mkdir_fn)(const char *path, mode_t mode);
typedef int (*hl_create_fn)(const char *path, mode_t mode, void *fi);
static hl_mkdir_fn js_mkdir;
static hl_create_fn js_create;
static uint32_t fast_owner_uid, fast_owner_gid;
/* struct fuse_context of libfuse 2.9 (fuse.h). */
struct iii_fuse_context {
  void *fuse;
  uid_t uid;
  gid_t gid;
  pid_t pid;
  void *private_data;
  mode_t umask;
};
typedef struct iii_fuse_context *(*get_context_fn)(void);
static get_context_fn get_context;
static hl_rename_fn js_rename;
static hl_chmod_fn js_chmod;
static hl_chown_fn js_chown;
static hl_file_fn js_open;
static hl_getattr_fn js_getattr;
static hl_utimens_fn js_utimens;
static hl_file_fn js_flush, js_release;
static void *fast_ops[64];
static int fast_utimens_on, fast_linked_to_js, fast_root_fd = -1;
static char fast_skip[FAST_SKIP_NAMES][256];
static int fast_skip_count;
static uint64_t fast_getattrs, fast_utimens_count, fast_flushes, fast_releases, fast_chmods, fast_chowns, fast_opens, fast_readdirs, fast_creates,
    fast_mkdirs;

/*
 * For the JS side, once mounted: serve getattr/utimens/flush/release of the tree under `root_fd` here. `skip`:
 * first path components the JS side keeps (virtual files), NUL-separated, `skip_len` bytes. Returns 1 when
 * installed, 0 when fuse_new's operations were not fuse-native's as expected or iii_io_enable() was not called.
 */
int iii_fast_enable(int root_fd, const char *skip, int skip_len, int linked_to_js, int utimens_on) {
  if (js_getattr == NULL || root_fd < 0) return 0;
  pthread_rwlock_wrlock(&io_lock);
  int ok = io_on && fuse_instances == 1 && !fast_claimed;
  if (ok) {
    fast_skip_count = 0;
    for (int at = 0; at < skip_len && ok;) {
      size_t n = strnlen(skip + at, (size_t)(skip_len - at));
      if (n > 0 && fast_skip_count == FAST_SKIP_NAMES) {
        ok = 0; /* more than the table holds: no fast path, rather than one that misses a name */
      } else if (n > 0 && n < sizeof fast_skip[0]) {
        memcpy(fast_skip[fast_skip_count], skip + at, n);
        fast_skip[fast_skip_count++][n] = 0;
      } else if (n >= sizeof fast_skip[0]) {
        ok = 0;
      }
      at += (int)n + 1;
    }
  }
  if (ok) {
    fast_claimed = 1;
    fast_root_fd = root_fd;
    fast_linked_to_js = linked_to_js;
    fast_utimens_on = utimens_on && js_utimens != NULL;
    fast_on = 1;
  }
  pthread_rwlock_unlock(&io_lock);
  return ok;
}

/* For the JS side: getattrs, utimens, flushes and releases answered here. */
void iii_fast_counts(uint64_t *out) {
  out[0] = __atomic_load_n(&fast_getattrs, __ATOMIC_RELAXED);
  out[1] = __atomic_load_n(&fast_utimens_count, __ATOMIC_RELAXED);
  out[2] = __atomic_load_n(&fast_flushes, __ATOMIC_RELAXED);
  out[3] = __atomic_load_n(&fast_releases, __ATOMIC_RELAXED);
  out[4] = __atomic_load_n(&fast_chmods, __ATOMIC_RELAXED);
  out[5] = __atomic_load_n(&fast_chowns, __ATOMIC_RELAXED);
  out[6] = __atomic_load_n(&fast_opens, __ATOMIC_RELAXED);
  out[7] = __atomic_load_n(&fast_readdirs, __ATOMIC_RELAXED);
  out[8] = __atomic_load_n(&fast_creates, __ATOMIC_RELAXED);
  out[9] = __atomic_load_n(&fast_mkdirs, __ATOMIC_RELAXED);
}

/*
 * For the JS side, after iii_fast_enable: create and mkdir answered here too, new entries owned on the host by
 * `uid`:`gid` (the mount's hostOwner). Returns 1 when on.
 */
int iii_fast_create_enable(uint32_t uid, uint32_t gid) {
  if (get_context == NULL || js_create == NULL) return 0;
  pthread_rwlock_wrlock(&io_lock);
  int ok = fast_on && fast_utimens_on;
  if (ok) {
    fast_owner_uid = uid;
    fast_owner_gid = gid;
    fast_create_on = 1;
  }
  pthread_rwlock_unlock(&io_lock);
  return ok;
}

/*
 * Stable inode numbers (`stableInodes`, inode-numbers.ts) computed here, bit for bit as the JS side computes
 * them, so a stableInodes mount keeps the fast paths: st_ino = st_dev:st_ino of the reply (the fifth job joins
 * them). One number per host file, whatever its name or link count: FNV-1a over 32-bit words, murmur3's fmix32.
 */
static int fast_stable;

/* For the JS side, before iii_fast_enable: answers carry stable inode numbers. 1 when the fifth job is on. */
int iii_fast_stable_enable(void) {
  if (!__atomic_load_n(&ino64, __ATOMIC_ACQUIRE)) return 0;
  pthread_rwlock_wrlock(&io_lock);
  fast_stable = 1;
  pthread_rwlock_unlock(&io_lock);
  return 1;
}

#define INO_FNV_OFFSET 0x811c9dc5U
#define INO_FNV_PRIME 0x01000193U

static uint32_t ino_mix32(uint32_t h, uint32_t v) {
  for (int i = 0; i < 4; i++) {
    h ^= (v >> (i * 8)) & 0xff;
    h *= INO_FNV_PRIME;
  }
  return h;
}

static uint32_t ino_mix64(uint32_t h, uint64_t v) {
  return ino_mix32(ino_mix32(h, (uint32_t)v), (uint32_t)(v >> 32));
}

static uint32_t ino_finish(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85ebca6bU;
  x ^= x >> 13;
  x *= 0xc2b2ae35U;
  x ^= x >> 16;
  return x;
}

/*
 * The host birth time in whole ms, as Node's `Math.floor(stats.birthtimeMs)`: sec * 1e3 + nsec / 1e6 in doubles
 * (volatile: no fused multiply-add may change the rounding).
 */
static int64_t birth_ms(const struct statx *x) {
  volatile double ms = (double)x->stx_btime.tv_sec * 1000.0;
  ms = ms + (double)x->stx_btime.tv_nsec / 1e6;
  double f = (double)(int64_t)ms;
  if (f > ms) f -= 1.0;
  return (int64_t)f;
}

/* stableInodeNumber(): hi in st_dev, lo in st_ino (the fifth job joins them). */
static void stable_number(const struct statx *x, struct stat *st) {
  uint64_t dev = makedev(x->stx_dev_major, x->stx_dev_minor), ino = x->stx_ino;
  uint32_t h = ino_mix64(ino_mix64(ino_mix64(INO_FNV_OFFSET, dev), ino >> 32), (uint64_t)birth_ms(x));
  st->st_ino = (uint32_t)ino;
  st->st_dev = ino_finish(h) & 0x7fffffffU;
}

/* fstatat(AT_SYMLINK_NOFOLLOW) through statx, with the birth time for stable_number. */
static int statx_nofollow(int dirfd, const char *name, int flags, struct statx *x, struct stat *st) {
  if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | flags, STATX_BASIC_STATS | STATX_BTIME, x) != 0) return -errno;
  memset(st, 0, sizeof *st);
  st->st_dev = makedev(x->stx_dev_major, x->stx_dev_minor);
  st->st_ino = x->stx_ino;
  st->st_mode = x->stx_mode;
  st->st_nlink = x->stx_nlink;
  st->st_uid = x->stx_uid;
  st->st_gid = x->stx_gid;
  st->st_rdev = makedev(x->stx_rdev_major, x->stx_rdev_minor);
  st->st_size = (off_t)x->stx_size;
  st->st_blksize = x->stx_blksize;
  st->st_blocks = (blkcnt_t)x->stx_blocks;
  st->st_atim.tv_sec = x->stx_atime.tv_sec;
  st->st_atim.tv_nsec = x->stx_atime.tv_nsec;
  st->st_mtim.tv_sec = x->stx_mtime.tv_sec;
  st->st_mtim.tv_nsec = x->stx_mtime.tv_nsec;
  st->st_ctim.tv_sec = x->stx_ctime.tv_sec;
  st->st_ctim.tv_nsec = x->stx_ctime.tv_nsec;
  return 0;
}

/* A component of `path` (absolute) is `name`. */
static int has_component(const char *path, const char *name) {
  size_t len = strlen(name);
  for (const char *c = path; *c == '/';) {
    c++;
    size_t n = strcspn(c, "/");
    if (n == len && memcmp(c, name, n) == 0) return 1;
    c += n;
  }
  return 0;
}

/*
 * Paths the JS side answers: under a virtual root name or a protected path's first component, a hidden node's
 * name, or with a protected name (a skip entry "/<name>") as any component. Call with io_lock held.
 */
static int js_path(const char *path) {
  if (!fast_on || path == NULL || path[0] != '/') return 1;
  const char *first = path + 1;
  size_t n = strcspn(first, "/");
  if (strncmp(first, HIDDEN_NAME_PREFIX, strlen(HIDDEN_NAME_PREFIX)) == 0) return 1;
  for (int i = 0; i < fast_skip_count; i++) {
    if (fast_skip[i][0] == '/') {
      if (has_component(path, fast_skip[i] + 1)) return 1;
    } else if (strlen(fast_skip[i]) == n && memcmp(fast_skip[i], first, n) == 0) {
      return 1;
    }
  }
  return 0;
}

struct iii_open_how {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};
#define III_SYS_openat2 437
#define III_RESOLVE_NO_MAGICLINKS 0x02
#define III_RESOLVE_NO_SYMLINKS 0x04
#define III_RESOLVE_BENEATH 0x08

/*
 * The O_PATH fds of the parent directories resolved last, shared by the libfuse threads (a per-thread fd missed
 * almost always: the kernel spreads one directory's requests over several threads, so `git status` paid an
 * openat2 per file). A slot is in use while `refs` > 0 and replaced only when idle; any RENAME or RMDIR through
 * the mount (which may move or remove a directory) makes every kept fd stale (`gen`). A rename on the host (or
 * through another mount of the tree) is not seen here, so a kept fd also expires PARENT_TTL_MS after it was
 * opened, the kernel's attribute timeout (1 s): after that the name is resolved again, as the kernel's own
 * caches of this mount ask again. (An identity check per hit would cost the openat2 the table saves.)
 *
 * Measured (bench/ab-shim.js, create 10,000 files, 6 interleaved rounds, load 2-4, ours/bindfs per round): this
 * table under a mutex 1.33 median [0.52-1.54], a spinlock 1.22 [0.67-1.45], one fd per thread 1.17 [0.84-1.33];
 * the spread of one variant is wider than the gaps, and perf puts every pthread mutex of the server (libfuse's
 * own included) at 1.6% of its CPU against ~50% in the kernel's context switches. So the mutex stays.
 */
#define PARENT_TTL_MS 1000
static volatile uint64_t dirs_gen = 1;
#define PARENT_SLOTS 256
#define PARENT_PATH_MAX 4096
static struct {
  uint64_t gen;
  uint64_t hash;
  /* CLOCK_MONOTONIC_COARSE ms when the fd was opened. */
  uint64_t born;
  size_t len;
  int fd_plus1;
  int refs;
  char path[PARENT_PATH_MAX];
} parents[PARENT_SLOTS];
static pthread_mutex_t parents_lock = PTHREAD_MUTEX_INITIALIZER;

static void dirs_changed(void) {
  __atomic_add_fetch(&dirs_gen, 1, __ATOMIC_ACQ_REL);
}

static uint64_t coarse_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t bytes_hash(const char *b, size_t len) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)b[i]) * 0x100000001b3ULL;
  return h;
}

/*
 * The parent directory of `path` (an O_PATH fd beneath the root, or the root fd itself) and its last component
 * ("." for the root); hand the fd and `*ref` back to parent_done(). Negative errno on failure, as
 * HostRoot.dirFd would throw it. Call with io_lock held.
 */
static int open_parent(const char *path, const char **name, int *ref) {
  const char *slash = strrchr(path, '/');
  *ref = 0;
  if (path[1] == 0) {
    *name = ".";
    return fast_root_fd;
  }
  *name = slash + 1;
  if (slash == path) return fast_root_fd;
  size_t len = (size_t)(slash - path - 1);
  if (len >= PARENT_PATH_MAX) return -ENAMETOOLONG;
  const char *rel = path + 1;
  uint64_t hash = bytes_hash(rel, len), gen = __atomic_load_n(&dirs_gen, __ATOMIC_ACQUIRE), now = coarse_ms();
  size_t slot = (size_t)(hash % PARENT_SLOTS);
  pthread_mutex_lock(&parents_lock);
  if (parents[slot].fd_plus1 > 0 && parents[slot].gen == gen && now - parents[slot].born < PARENT_TTL_MS && parents[slot].hash == hash &&
      parents[slot].len == len && memcmp(parents[slot].path, rel, len) == 0) {
    parents[slot].refs++;
    int fd = parents[slot].fd_plus1 - 1;
    pthread_mutex_unlock(&parents_lock);
    *ref = (int)slot + 1;
    return fd;
  }
  pthread_mutex_unlock(&parents_lock);
  char dir[PARENT_PATH_MAX];
  memcpy(dir, rel, len);
  dir[len] = 0;
  struct iii_open_how how = {O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0,
                             III_RESOLVE_BENEATH | III_RESOLVE_NO_SYMLINKS | III_RESOLVE_NO_MAGICLINKS};
  int fd = (int)syscall(III_SYS_openat2, fast_root_fd, dir, &how, sizeof how);
  if (fd < 0) return -errno;
  int old = -1;
  pthread_mutex_lock(&parents_lock);
  if (parents[slot].refs == 0) {
    old = parents[slot].fd_plus1 - 1;
    parents[slot].fd_plus1 = fd + 1;
    parents[slot].gen = gen;
    parents[slot].born = now;
    parents[slot].hash = hash;
    parents[slot].len = len;
    memcpy(parents[slot].path, rel, len);
    parents[slot].refs = 1;
    *ref = (int)slot + 1;
  } else {
    *ref = -1; /* the slot is busy: this fd is the caller's own */
  }
  pthread_mutex_unlock(&parents_lock);
  if (old >= 0) close(old);
  return fd;
}

/* Hands back what open_parent gave (nothing for the root fd or an error). */
static void parent_done(int fd, int ref) {
  if (ref < 0 && fd >= 0) {
    close(fd);
  } else if (ref > 0) {
    pthread_mutex_lock(&parents_lock);
    parents[ref - 1].refs--;
    pthread_mutex_unlock(&parents_lock);
  }
}

static int guest_special(mode_t t) {
  return t == S_IFIFO || t == S_IFSOCK || t == S_IFCHR || t == S_IFBLK;
}

static int guest_type(mode_t t) {
  return t == S_IFREG || t == S_IFDIR || t == S_IFLNK || guest_special(t);
}

static uint32_t le32(const unsigned char *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* struct xattr_args of getxattrat(2) (Linux 6.13). */
struct iii_xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};
#define III_SYS_getxattrat 464
static int no_getxattrat;

/*
 * After a newer syscall failed with `err` and its fallback gave `fallback_rc` (errno `fallback_errno`): whether
 * the syscall is unusable here, so later calls go straight to the fallback. ENOSYS: the kernel lacks it. EPERM:
 * a seccomp filter refusing it (container runtimes answer unknown syscalls so), unless the fallback was refused
 * alike (then the EPERM was the operation's own).
 */
static int syscall_refused(int err, int fallback_rc, int fallback_errno) {
  return err == ENOSYS || (err == EPERM && (fallback_rc >= 0 || fallback_errno != EPERM));
}

/*
 * lgetxattr of `name` beneath `dirfd` without following it: getxattrat(AT_SYMLINK_NOFOLLOW) where the kernel
 * has it (no procfs walk), else lgetxattr through /proc/self/fd/<dirfd>/<name> as the JS side does.
 */
static ssize_t override_xattr(int dirfd, const char *name, const char *xname, unsigned char *b, size_t size) {
  int err = 0;
  if (!__atomic_load_n(&no_getxattrat, __ATOMIC_RELAXED)) {
    struct iii_xattr_args args = {(uint64_t)(uintptr_t)b, (uint32_t)size, 0};
    long n = syscall(III_SYS_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, xname, &args, sizeof args);
    if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
    err = errno;
  }
  char proc[4096 + 64];
  if (snprintf(proc, sizeof proc, "/proc/self/fd/%d/%s", dirfd, name) >= (int)sizeof proc) return -1;
  ssize_t n = lgetxattr(proc, xname, b, size);
  int fallback_errno = errno;
  if (err != 0 && syscall_refused(err, (int)(n >= 0 ? 0 : -1), fallback_errno)) __atomic_store_n(&no_getxattrat, 1, __ATOMIC_RELAXED);
  errno = fallback_errno;
  return n;
}

/* host-meta.ts readOverride + mergeAttr: the guest's mode, owner and rdev over the host stat. */
/* Returns 1 when a well-formed override was merged, 0 when the host stat stands as is. */
static int merge_override(int dirfd, const char *name, struct stat *st) {
  mode_t host_type = st->st_mode & S_IFMT;
  if (host_type != S_IFREG && host_type != S_IFDIR && host_type != S_IFLNK) return 0;
  unsigned char b[64];
  ssize_t n = override_xattr(dirfd, name, host_type == S_IFLNK ? SYMLINK_OVERRIDE_NAME : OVERRIDE_NAME, b, sizeof b);
  if (n != 24 || b[0] != 1 || b[1] != 0 || b[2] != 0 || b[3] != 0) return 0;
  uint32_t mode = le32(b + 4);
  if (!guest_type(mode & S_IFMT) || (mode & ~(uint32_t)(S_IFMT | 07777)) != 0) return 0;
  mode_t wanted = mode & S_IFMT;
  mode_t type = host_type == S_IFREG && (wanted == S_IFREG || guest_special(wanted)) ? wanted : host_type;
  mode_t perms = type == S_IFLNK ? (st->st_mode & 07777) : (mode & 07777);
  st->st_mode = type | perms;
  st->st_uid = le32(b + 8);
  st->st_gid = le32(b + 12);
  uint64_t rdev = (uint64_t)le32(b + 16) | (uint64_t)le32(b + 20) << 32;
  st->st_rdev = type == S_IFCHR || type == S_IFBLK ? (dev_t)(uint32_t)rdev : 0;
  return 1;
}

static int fast_getattr(const char *path, struct stat *st) {
  pthread_rwlock_rdlock(&io_lock);
  if (js_path(path)) {
    pthread_rwlock_unlock(&io_lock);
    return js_getattr(path, st);
  }
  const char *name;
  int owned;
  int dirfd = open_parent(path, &name, &owned);
  if (dirfd < 0) {
    pthread_rwlock_unlock(&io_lock);
    __atomic_add_fetch(&fast_getattrs, 1, __ATOMIC_RELAXED);
    return dirfd;
  }
  struct stat hs;
  struct statx hx;
  int stable = fast_stable, rc;
  if (stable) rc = statx_nofollow(dirfd, name, 0, &hx, &hs);
  else rc = fstatat(dirfd, name, &hs, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
  /* A regular file with several links: its link-group tag is the JS side's. */
  int to_js = rc == 0 && fast_linked_to_js && S_ISREG(hs.st_mode) && hs.st_nlink > 1;
  if (rc == 0 && !to_js) merge_override(dirfd, name, &hs);
  parent_done(dirfd, owned);
  pthread_rwlock_unlock(&io_lock);
  if (to_js) return js_getattr(path, st);
  __atomic_add_fetch(&fast_getattrs, 1, __ATOMIC_RELAXED);
  if (rc != 0) return rc;
  if (stable) {
    stable_number(&hx, &hs);
  } else {
    /* What fuse-native sends: 32-bit inode and device numbers (st_ino is libfuse's node id unless use_ino). */
    hs.st_ino = (uint32_t)hs.st_ino;
    hs.st_dev = (uint32_t)hs.st_dev;
  }
  *st = hs;
  return 0;
}

static int fast_utimens(const char *path, const struct timespec tv[2]) {
  pthread_rwlock_rdlock(&io_lock);
  if (!fast_utimens_on || js_path(path)) {
    pthread_rwlock_unlock(&io_lock);
    return js_utimens(path, tv);
  }
  const char *name;
  int owned;
  int dirfd = open_parent(path, &name, &owned);
  int rc = dirfd;
  if (dirfd >= 0) {
    rc = utimensat(dirfd, name, tv, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
    parent_done(dirfd, owned);
  }
  pthread_rwlock_unlock(&io_lock);
  __atomic_add_fetch(&fast_utimens_count, 1, __ATOMIC_RELAXED);
  return rc;
}

/*
 * An entry the shim may change itself: a host regular file with one link or a directory, without an override
 * (its guest view is its host stat). Checked and then acted on through one O_PATH fd of the entry (never by its
 * name again: a name swapped in between, e.g. for a linked file or one with an override, is not what was
 * checked). Returns that fd (the caller closes it), -1 after a failed lookup (errno in *rc), -2 when the JS side
 * must answer. Call with io_lock held.
 */
static int plain_entry(const char *path, struct stat *st, int *rc) {
  const char *name;
  int owned;
  int dirfd = open_parent(path, &name, &owned);
  if (dirfd < 0) {
    *rc = dirfd;
    return -1;
  }
  int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  *rc = fd < 0 ? -errno : 0;
  parent_done(dirfd, owned);
  if (fd < 0) return -1;
  if (fstat(fd, st) != 0) {
    *rc = -errno;
    close(fd);
    return -1;
  }
  int plain = (S_ISREG(st->st_mode) && st->st_nlink == 1) || S_ISDIR(st->st_mode);
  if (plain) {
    /* No override at all (ENODATA), read from the entry itself (an O_PATH fd has no xattr calls of its own;
       its /proc magic link reaches the inode). Anything else, an unreadable one too, is the JS side's. */
    char proc[64];
    unsigned char b[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    plain = getxattr(proc, OVERRIDE_NAME, b, sizeof b) < 0 && errno == ENODATA;
  }
  if (!plain) {
    close(fd);
    return -2;
  }
  return fd;
}

#define III_SYS_fchmodat2 452
static int no_fchmodat2;

/* chmod of the entry an O_PATH fd holds (a regular file or directory): fchmodat2(AT_EMPTY_PATH), Linux 6.6. */
static int chmod_entry(int fd, mode_t mode) {
  int err = 0;
  if (!__atomic_load_n(&no_fchmodat2, __ATOMIC_RELAXED)) {
    if (syscall(III_SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOSYS && errno != EPERM) return -errno;
    err = errno;
  }
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  int rc = chmod(proc, mode) == 0 ? 0 : -errno;
  if (err != 0 && syscall_refused(err, rc, -rc)) __atomic_store_n(&no_fchmodat2, 1, __ATOMIC_RELAXED);
  return rc;
}

/*
 * chmod (PassthroughTree.chmod) of a plain entry to bits a host file may carry (within 0775), on the entry
 * checked, and no override needed. Anything else (setuid/setgid/sticky, world-writable, an override, links)
 * goes to the JS side.
 */
static int fast_chmod(const char *path, mode_t mode) {
  pthread_rwlock_rdlock(&io_lock);
  if (!fast_utimens_on || js_path(path) || (mode & 07777) != (mode & 0775)) {
    pthread_rwlock_unlock(&io_lock);
    return js_chmod(path, mode);
  }
  int rc = 0;
  struct stat st;
  int fd = plain_entry(path, &st, &rc);
  if (fd == -2) {
    pthread_rwlock_unlock(&io_lock);
    return js_chmod(path, mode);
  }
  if (fd >= 0) {
    rc = chmod_entry(fd, mode & 07777);
    close(fd);
  }
  pthread_rwlock_unlock(&io_lock);
  __atomic_add_fetch(&fast_chmods, 1, __ATOMIC_RELAXED);
  return rc;
}

/* chown (PassthroughTree.chown) of a plain entry to the owner it already has: nothing to do (tar x as root). */
static int fast_chown(const char *path, uid_t uid, gid_t gid) {
  pthread_rwlock_rdlock(&io_lock);
  if (!fast_utimens_on || js_path(path)) {
    pthread_rwlock_unlock(&io_lock);
    return js_chown(path, uid, gid);
  }
  int rc = 0;
  struct stat st;
  int fd = plain_entry(path, &st, &rc);
  int to_js = fd == -2;
  if (fd >= 0) {
    close(fd);
    to_js = (uid != (uid_t)-1 && uid != st.st_uid) || (gid != (gid_t)-1 && gid != st.st_gid);
  }
  pthread_rwlock_unlock(&io_lock);
  if (to_js) return js_chown(path, uid, gid);
  __atomic_add_fetch(&fast_chowns, 1, __ATOMIC_RELAXED);
  return rc;
}

/*
 * open (PassthroughTree.open): openat of the name beneath its parent with the guest's access mode, O_APPEND,
 * O_TRUNC, O_SYNC and O_DSYNC, plus O_NOFOLLOW | O_CLOEXEC; the fd is the handle. Write opens on a read-only
 * mount, virtual files and hidden nodes go to the JS side.
 */
static int fast_open(const char *path, void *fi_) {
  struct iii_fuse_file_info *fi = fi_;
  int write_open = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC) != 0;
  pthread_rwlock_rdlock(&io_lock);
  if (js_path(path) || (write_open && !fast_utimens_on)) {
    pthread_rwlock_unlock(&io_lock);
    return js_open(path, fi_);
  }
  const char *name;
  int owned;
  int dirfd = open_parent(path, &name, &owned);
  int rc = dirfd;
  if (dirfd >= 0) {
    int flags = (fi->flags & (O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC)) | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(dirfd, name, flags);
    rc = fd < 0 ? -errno : 0;
    if (fd >= 0 && (uint64_t)fd >= VIRTUAL_FH_BASE) {
      close(fd);
      rc = -EIO;
    } else if (fd >= 0) {
      fi->fh = (uint64_t)fd;
    }
    parent_done(dirfd, owned);
  }
  pthread_rwlock_unlock(&io_lock);
  __atomic_add_fetch(&fast_opens, 1, __ATOMIC_RELAXED);
  return rc;
}

struct iii_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/*
 * readdir (the JS readdir in fuse-shell.ts): every entry of the host directory at once (libfuse keeps the
 * listing per handle and serves later offsets from it), "." and ".." first, d_ino from getdents (32 bits, as
 * fuse-native sends it) and d_type, a regular file's corrected from its override (a guest FIFO, socket or
 * device node is a regular file on the host; host-meta.ts fixDirentTypes). The root of a mount with virtual
 * files (which the JS side merges in) goes to the JS side.
 */
static int fast_readdir(const char *path, void *buf, fill_dir_fn filler, off_t off, void *fi) {
  pthread_rwlock_rdlock(&io_lock);
  if (js_path(path) || (path[1] == 0 && fast_skip_count > 0)) {
    pthread_rwlock_unlock(&io_lock);
    return js_readdir(path, buf, filler, off, fi);
  }
  int fd;
  if (path[1] == 0) {
    struct iii_open_how how = {O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, III_RESOLVE_BENEATH | III_RESOLVE_NO_SYMLINKS | III_RESOLVE_NO_MAGICLINKS};
    fd = (int)syscall(III_SYS_openat2, fast_root_fd, ".", &how, sizeof how);
  } else {
    struct iii_open_how how = {O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0,
                               III_RESOLVE_BENEATH | III_RESOLVE_NO_SYMLINKS | III_RESOLVE_NO_MAGICLINKS};
    fd = (int)syscall(III_SYS_openat2, fast_root_fd, path + 1, &how, sizeof how);
  }
  if (fd < 0) {
    int rc = -errno;
    pthread_rwlock_unlock(&io_lock);
    return rc;
  }
  struct stat self, parent;
  int rc = 0, stable = fast_stable;
  if (stable) {
    /* d_ino is the entry's st_ino, as the JS listing gives it with stable numbers (fuse-shell.ts). */
    struct statx x;
    rc = statx_nofollow(fd, "", AT_EMPTY_PATH, &x, &self);
    if (rc == 0) stable_number(&x, &self);
    if (rc == 0 && path[1] == 0) parent = self;
    else if (rc == 0 && (rc = statx_nofollow(fd, "..", 0, &x, &parent)) == 0) stable_number(&x, &parent);
  } else if (fstat(fd, &self) != 0 || (path[1] != 0 ? fstatat(fd, "..", &parent, AT_SYMLINK_NOFOLLOW) : fstat(fd, &parent)) != 0) {
    rc = -errno;
  }
  if (rc == 0) {
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_mode = S_IFDIR;
    st.st_ino = (uint32_t)self.st_ino;
    st.st_dev = stable ? self.st_dev : 0;
    filler(buf, ".", &st, 0);
    st.st_ino = (uint32_t)parent.st_ino;
    st.st_dev = stable ? parent.st_dev : 0;
    filler(buf, "..", &st, 0);
  }
  char dents[32768];
  while (rc == 0) {
    long n = syscall(SYS_getdents64, fd, dents, sizeof dents);
    if (n < 0) {
      rc = -errno;
      break;
    }
    if (n == 0) break;
    for (long at = 0; at < n;) {
      struct iii_dirent64 *d = (struct iii_dirent64 *)(dents + at);
      at += d->d_reclen;
      if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
      unsigned type = d->d_type;
      if (type == DT_REG) {
        struct stat t;
        memset(&t, 0, sizeof t);
        t.st_mode = S_IFREG;
        if (merge_override(fd, d->d_name, &t) && guest_special(t.st_mode & S_IFMT)) type = (t.st_mode & S_IFMT) >> 12;
      }
      struct stat st;
      memset(&st, 0, sizeof st);
      st.st_mode = (mode_t)type << 12;
      st.st_ino = (uint32_t)d->d_ino;
      struct statx x;
      struct stat hs;
      /* Gone since the listing: its host number, as the JS listing gives it; the lookup will tell. */
      if (stable && statx_nofollow(fd, d->d_name, 0, &x, &hs) == 0) stable_number(&x, &st);
      if (filler(buf, d->d_name, &st, 0) != 0) {
        rc = -ENOMEM;
        break;
      }
    }
  }
  close(fd);
  pthread_rwlock_unlock(&io_lock);
  __atomic_add_fetch(&fast_readdirs, 1, __ATOMIC_RELAXED);
  return rc;
}

static void put32(unsigned char *b, uint32_t v) {
  b[0] = (unsigned char)v;
  b[1] = (unsigned char)(v >> 8);
  b[2] = (unsigned char)(v >> 16);
  b[3] = (unsigned char)(v >> 24);
}

/*
 * PassthroughTree.newMeta + settle for a new regular file or directory, as the JS side does them: the guest's
 * mode, the caller's uid, the caller's gid or a guest-setgid parent's (a new directory inherits the bit); on the
 * host the hostOwner, permission bits `mode & 0775`, and the override xattr when that does not show it all.
 * `fd` is the new entry, `dirfd` its parent. Returns 0 or a negative errno.
 */
static int settle_new(int dirfd, int fd, mode_t type, mode_t mode) {
  struct stat parent;
  if (fstat(dirfd, &parent) != 0) return -errno;
  merge_override(dirfd, ".", &parent);
  const struct iii_fuse_context *ctx = get_context();
  uint32_t m = (uint32_t)(type | (mode & 07777));
  int inherit = (parent.st_mode & S_ISGID) != 0;
  if (inherit && type == S_IFDIR) m |= S_ISGID;
  uint32_t uid = ctx != NULL ? (uint32_t)ctx->uid : (uint32_t)geteuid();
  uint32_t gid = inherit ? (uint32_t)parent.st_gid : ctx != NULL ? (uint32_t)ctx->gid : (uint32_t)getegid();
  mode_t perms = m & 0775;
  if (fchown(fd, fast_owner_uid, fast_owner_gid) != 0 || fchmod(fd, perms) != 0) return -errno;
  if (uid != fast_owner_uid || gid != fast_owner_gid || (m & 07777) != perms) {
    unsigned char b[24] = {1, 0, 0, 0};
    put32(b + 4, m);
    put32(b + 8, uid);
    put32(b + 12, gid);
    memset(b + 16, 0, 8);
    if (fsetxattr(fd, OVERRIDE_NAME, b, sizeof b, 0) != 0) return -errno;
  }
  return 0;
}

/* create (GuestFs.create → PassthroughTree.create): O_CREAT | O_EXCL | O_RDWR, settled; the fd is the handle. */
static int fast_create(const char *path, mode_t mode, void *fi_) {
  struct iii_fuse_file_info *fi = fi_;
  pthread_rwlock_rdlock(&io_lock);
  if (!fast_create_on || js_path(path) || path[1] == 0) {
    pthread_rwlock_unlock(&io_lock);
    return js_create(path, mode, fi_);
  }
  const char *name;
  int owned;
  int dirfd = open_parent(path, &name, &owned);
  int rc = dirfd < 0 ? dirfd : 0;
  if (rc == 0) {
    int fd = openat(dirfd, name, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      rc = -errno;
    } else if ((uint64_t)fd >= VIRTUAL_FH_BASE || (rc = settle_new(dirfd, fd, S_IFREG, mode)) != 0) {
      if (rc == 0) rc = -EIO;
      close(fd);
      unlinkat(dirfd, name, 0);
    } else {
      fi->fh = (uint64_t)fd;
    }
  }
  parent_done(dirfd, owned);
  pthread_rwlock_unlock(&io_lock);
  __atomic_add_fetch(&fast_creates, 1, __ATOMIC_RELAXED);
  return rc;
}

/* mkdir (PassthroughTree.mkdir): 0700, then settled through an fd of the new directory. */
static int fast_mkdir(const char *path, mode_t mode) {
  pthread_rwlock_rdlock(&io_lock);
  if (!fast_create_on || js_path(path) || path[1] == 0) {
    pthread_rwlock_unlock(&io_lock);
    return js_mkdir(path, mode);
  }
  const char *name;
  int owned;
  int dirfd = open_parent(path, &name, &owned);
  int rc = dirfd < 0 ? dirfd : 0;
  if (rc == 0 && mkdirat(dirfd, name, 0700) != 0) rc = -errno;
  if (rc == 0) {
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    rc = fd < 0 ? -errno : settle_new(dirfd, fd, S_IFDIR, mode);
    if (fd >= 0) close(fd);
    if (rc != 0) unlinkat(dirfd, name, AT_REMOVEDIR);
  }
  parent_done(dirfd, owned);
  pthread_rwlock_unlock(&io_lock);
  __atomic_add_fetch(&fast_mkdirs, 1, __ATOMIC_RELAXED);
  return rc;
}

/* rmdir and rename stay on the JS side; around them every kept parent fd goes stale. */
static int dirs_rmdir(const char *path) {
  dirs_changed();
  int rc = js_rmdir(path);
  dirs_changed();
  return rc;
}

static int dirs_rename(const char *from, const char *to) {
  dirs_changed();
  int rc = js_rename(from, to);
  dirs_changed();
  return rc;
}

/*
 * flush: the JS side's is a no-op for every tree (fuse-shell.ts), so the answer is ENOSYS, which tells the kernel
 * never to send FLUSH on this connection again (fc->no_flush; it still writes dirty pages back on close). A shell's
 * `echo x > f` closed the file twice: two of a create's seven requests were FLUSHes (bindfs, which has no flush,
 * gets none). For every tree, the layered ones (no fast paths) too.
 */
static int fast_flush(const char *path, void *fi) {
  (void)path;
  (void)fi;
  __atomic_add_fetch(&fast_flushes, 1, __ATOMIC_RELAXED);
  return -ENOSYS;
}

static int fast_release(const char *path, void *fi_) {
  const struct iii_fuse_file_info *fi = fi_;
  pthread_rwlock_rdlock(&io_lock);
  if (!fast_on || fi == NULL || fi->fh >= VIRTUAL_FH_BASE || fi->fh == 0) {
    pthread_rwlock_unlock(&io_lock);
    return js_release(path, fi_);
  }
  int rc = close((int)fi->fh) == 0 ? 0 : -errno;
  pthread_rwlock_unlock(&io_lock);
  iii_quota_freed();
  __atomic_add_fetch(&fast_releases, 1, __ATOMIC_RELAXED);
  return rc;
}

/* ---- eleventh job: a bound on the directory listings libfuse keeps per open handle ---- */

/* What the listings of all open directory handles of the mount may hold (libfuse's buffers as it sizes them). */
#define LISTING_BUDGET_BYTES (256LL << 20)
/* struct fuse_dirent's name offset in libfuse 2.9 (ino, off, namelen, type), and its alignment. */
#define LISTING_DIRENT_HEAD 24
#define LISTING_DIRENT_ALIGN 8
/* extend_contents() in libfuse 2.9's fuse.c: a buffer starts at 1 KiB and doubles. */
#define LISTING_FIRST_BUFFER 1024

struct listing_account {
  /* Bytes libfuse's buffer of this handle has grown to (it never shrinks). */
  int64_t held;
};

/* One fill of a handle's listing: what fast_readdir / the JS side fill through, and where it goes. */
struct listing_fill {
  void *buf;
  fill_dir_fn filler;
  struct listing_account *account;
  int64_t len;
  int over;
};

static pthread_mutex_t listing_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t listing_held;
static hl_readdir_fn inner_readdir;

/* Takes `bytes` more of the budget for a handle's buffer: 1, or 0 when it would pass the budget. */
static int listing_take(int64_t bytes) {
  pthread_mutex_lock(&listing_lock);
  int ok = bytes <= LISTING_BUDGET_BYTES - listing_held;
  if (ok) listing_held += bytes;
  pthread_mutex_unlock(&listing_lock);
  return ok;
}

static int listing_opendir(const char *path, void *fi_) {
  (void)path;
  struct iii_fuse_file_info *fi = fi_;
  struct listing_account *a = calloc(1, sizeof *a);
  if (a == NULL) return -ENOMEM;
  fi->fh = (uint64_t)(uintptr_t)a;
  return 0;
}

static int listing_releasedir(const char *path, void *fi_) {
  (void)path;
  const struct iii_fuse_file_info *fi = fi_;
  struct listing_account *a = fi != NULL ? (struct listing_account *)(uintptr_t)fi->fh : NULL;
  if (a == NULL) return 0;
  pthread_mutex_lock(&listing_lock);
  listing_held -= a->held;
  pthread_mutex_unlock(&listing_lock);
  free(a);
  return 0;
}

/* The filler fast_readdir and fuse-native call (fuse-native on the JS thread, while this request's thread waits). */
static int listing_fill_entry(void *buf, const char *name, const struct stat *st, off_t off) {
  struct listing_fill *f = buf;
  if (f->over) return 1;
  int64_t entry = ((int64_t)LISTING_DIRENT_HEAD + (int64_t)strlen(name) + LISTING_DIRENT_ALIGN - 1) & ~(int64_t)(LISTING_DIRENT_ALIGN - 1);
  f->len += entry;
  int64_t size = LISTING_FIRST_BUFFER;
  while (size < f->len) size *= 2;
  if (size > f->account->held) {
    if (!listing_take(size - f->account->held)) {
      f->over = 1;
      return 1;
    }
    f->account->held = size;
  }
  return f->filler(f->buf, name, st, off);
}

static int listing_readdir(const char *path, void *buf, fill_dir_fn filler, off_t off, void *fi_) {
  const struct iii_fuse_file_info *fi = fi_;
  struct listing_account *a = fi != NULL ? (struct listing_account *)(uintptr_t)fi->fh : NULL;
  /* Every OPENDIR went through listing_opendir; a handle without an account is not filled unbounded. */
  if (a == NULL) return -EIO;
  struct listing_fill f = {buf, filler, a, 0, 0};
  int rc = inner_readdir(path, &f, listing_fill_entry, off, fi_);
  return f.over ? -ENOMEM : rc;
}

static int same_object(void *a, void *b) {
  Dl_info ia, ib;
  return a != NULL && b != NULL && dladdr(a, &ia) != 0 && dladdr(b, &ib) != 0 && ia.dli_fbase == ib.dli_fbase;
}

/*
 * fuse-native's fuse_new(): its operations table, with getattr/utimens/flush/release wrapped (off until
 * iii_fast_enable). Checked first: the slots libfuse 2.9's layout puts them in are set and point into one
 * object other than libfuse, and getdir/utime (which fuse-native never sets) are empty; otherwise untouched.
 */
void *fuse_new(void *ch, void *args, const void *op, size_t op_size, void *user_data) {
  static void *(*real)(void *, void *, const void *, size_t, void *);
  if (real == NULL) {
    /* libfuse.so.2 also exports compat versions of fuse_new; fuse-native binds FUSE_2.6. */
    void *libfuse = dlopen("libfuse.so.2", RTLD_LAZY | RTLD_NOLOAD);
    if (libfuse != NULL) real = (void *(*)(void *, void *, const void *, size_t, void *))dlvsym(libfuse, "fuse_new", "FUSE_2.6");
  }
  if (real == NULL) return NULL;
  pthread_rwlock_wrlock(&io_lock);
  fuse_instances++;
  pthread_rwlock_unlock(&io_lock);
  void *const *slots = op;
  if (op == NULL || op_size < HL_MIN_SLOTS * sizeof(void *) || op_size > sizeof fast_ops || js_getattr != NULL) return real(ch, args, op, op_size, user_data);
  int looks_right = slots[HL_GETDIR] == NULL && slots[HL_UTIME] == NULL && !in_libfuse2(slots[HL_GETATTR]) &&
                    same_object(slots[HL_GETATTR], slots[HL_UTIMENS]) && same_object(slots[HL_GETATTR], slots[HL_FLUSH]) &&
                    same_object(slots[HL_GETATTR], slots[HL_RELEASE]) && same_object(slots[HL_GETATTR], slots[HL_CHMOD]) &&
                    same_object(slots[HL_GETATTR], slots[HL_CHOWN]) && same_object(slots[HL_GETATTR], slots[HL_OPEN]) &&
                    same_object(slots[HL_GETATTR], slots[HL_READDIR]) && same_object(slots[HL_GETATTR], slots[HL_RMDIR]) &&
                    same_object(slots[HL_GETATTR], slots[HL_RENAME]) && same_object(slots[HL_GETATTR], slots[HL_MKDIR]) &&
                    same_object(slots[HL_GETATTR], slots[HL_CREATE]);
  if (!looks_right) return real(ch, args, op, op_size, user_data);
  memcpy(fast_ops, op, op_size);
  js_getattr = (hl_getattr_fn)slots[HL_GETATTR];
  js_utimens = (hl_utimens_fn)slots[HL_UTIMENS];
  js_flush = (hl_file_fn)slots[HL_FLUSH];
  js_release = (hl_file_fn)slots[HL_RELEASE];
  js_chmod = (hl_chmod_fn)slots[HL_CHMOD];
  js_chown = (hl_chown_fn)slots[HL_CHOWN];
  js_open = (hl_file_fn)slots[HL_OPEN];
  js_readdir = (hl_readdir_fn)slots[HL_READDIR];
  js_rmdir = (hl_path_fn)slots[HL_RMDIR];
  js_mkdir = (hl_mkdir_fn)slots[HL_MKDIR];
  js_create = (hl_create_fn)slots[HL_CREATE];
  js_rename = (hl_rename_fn)slots[HL_RENAME];
  fast_ops[HL_GETATTR] = (void *)fast_getattr;
  fast_ops[HL_UTIMENS] = (void *)fast_utimens;
  fast_ops[HL_FLUSH] = (void *)fast_flush;
  fast_ops[HL_RELEASE] = (void *)fast_release;
  fast_ops[HL_CHMOD] = (void *)fast_chmod;
  fast_ops[HL_CHOWN] = (void *)fast_chown;
  fast_ops[HL_OPEN] = (void *)fast_open;
  fast_ops[HL_READDIR] = (void *)fast_readdir;
  fast_ops[HL_RMDIR] = (void *)dirs_rmdir;
  fast_ops[HL_MKDIR] = (void *)fast_mkdir;
  fast_ops[HL_CREATE] = (void *)fast_create;
  fast_ops[HL_RENAME] = (void *)dirs_rename;
  /* Eleventh job: fuse-native has no opendir/releasedir, so the handles' accounts can live in their fh. */
  if (slots[HL_OPENDIR] == NULL && slots[HL_RELEASEDIR] == NULL) {
    inner_readdir = fast_readdir;
    fast_ops[HL_OPENDIR] = (void *)listing_opendir;
    fast_ops[HL_READDIR] = (void *)listing_readdir;
    fast_ops[HL_RELEASEDIR] = (void *)listing_releasedir;
  }
  return real(ch, args, fast_ops, op_size, user_data);
}

static int in_libfuse2(void *p) {
  Dl_info info;
  return p != NULL && dladdr(p, &info) != 0 && info.dli_fname != NULL && strstr(info.dli_fname, "libfuse.so.2") != NULL;
}

void *fuse_session_new(void *session_ops, void *data) {
  static void *(*real_session_new)(void *, void *);
  if (real_session_new == NULL) {
    // libfuse.so.2 arrives with the addon through a local dlopen: RTLD_NEXT cannot see
    // it, but the caller is libfuse itself, so it is loaded and can be asked directly.
    void *libfuse = dlopen("libfuse.so.2", RTLD_LAZY | RTLD_NOLOAD);
    if (libfuse != NULL) {
      real_session_new = (void *(*)(void *, void *))dlsym(libfuse, "fuse_session_new");
      req_ctx = (req_ctx_fn)dlsym(libfuse, "fuse_req_ctx");
      reply_err = (reply_err_fn)dlsym(libfuse, "fuse_reply_err");
      next_chan = (next_chan_fn)dlsym(libfuse, "fuse_session_next_chan");
      notify_inval_inode = (notify_inval_inode_fn)dlsym(libfuse, "fuse_lowlevel_notify_inval_inode");
      reply_data = (reply_data_fn)dlsym(libfuse, "fuse_reply_data");
      reply_buf = (reply_buf_fn)dlsym(libfuse, "fuse_reply_buf");
      get_context = (get_context_fn)dlsym(libfuse, "fuse_get_context");
      reply_write = (reply_write_fn)dlsym(libfuse, "fuse_reply_write");
    }
    if (real_session_new == NULL) real_session_new = (void *(*)(void *, void *))dlsym(RTLD_NEXT, "fuse_session_new");
    if (real_session_new == NULL) return NULL;
  }
  if (data != NULL) {
    void **ops = (void **)((char *)data + FUSE_LL_OPS_OFFSET);
    int looks_right = in_libfuse2(ops[0]) && in_libfuse2(ops[2]) && in_libfuse2(ops[4]) && in_libfuse2(ops[SETATTR_SLOT]);
    if (looks_right) {
      if (libfuse_setattr == NULL) libfuse_setattr = (setattr_fn)ops[SETATTR_SLOT];
      if (ops[SETATTR_SLOT] == (void *)libfuse_setattr) ops[SETATTR_SLOT] = (void *)setattr_with_both_times;
      int creators_right = req_ctx != NULL && in_libfuse2(ops[MKNOD_SLOT]) && in_libfuse2(ops[MKDIR_SLOT]) &&
                           in_libfuse2(ops[SYMLINK_SLOT]) && in_libfuse2(ops[CREATE_SLOT]);
      if (creators_right && libfuse_mknod == NULL) {
        libfuse_mknod = (mknod_fn)ops[MKNOD_SLOT];
        libfuse_mkdir = (mkdir_fn)ops[MKDIR_SLOT];
        libfuse_symlink = (symlink_fn)ops[SYMLINK_SLOT];
        libfuse_create = (create_fn)ops[CREATE_SLOT];
      }
      if (creators_right && ops[MKNOD_SLOT] == (void *)libfuse_mknod && ops[MKDIR_SLOT] == (void *)libfuse_mkdir &&
          ops[SYMLINK_SLOT] == (void *)libfuse_symlink && ops[CREATE_SLOT] == (void *)libfuse_create) {
        ops[MKNOD_SLOT] = (void *)mknod_tracked;
        ops[MKDIR_SLOT] = (void *)mkdir_tracked;
        ops[SYMLINK_SLOT] = (void *)symlink_tracked;
        ops[CREATE_SLOT] = (void *)create_tracked;
        tracking = 1;
      }
      if (reply_err != NULL && in_libfuse2(ops[FALLOCATE_SLOT])) ops[FALLOCATE_SLOT] = (void *)fallocate_host_fd;
      /* Eighth job: libfuse's high level has a read and a write_buf slot and no write slot. */
      if (reply_data != NULL && reply_write != NULL && libfuse_read == NULL && in_libfuse2(ops[READ_SLOT]) && ops[WRITE_SLOT] == NULL &&
          in_libfuse2(ops[WRITE_BUF_SLOT])) {
        libfuse_read = (read_fn)ops[READ_SLOT];
        libfuse_write_buf = (write_buf_fn)ops[WRITE_BUF_SLOT];
      }
      if (libfuse_read != NULL && ops[READ_SLOT] == (void *)libfuse_read && ops[WRITE_BUF_SLOT] == (void *)libfuse_write_buf) {
        ops[READ_SLOT] = (void *)read_host_fd;
        ops[WRITE_SLOT] = (void *)write_host_fd;
        ops[WRITE_BUF_SLOT] = NULL;
      }
      if (reply_err != NULL && libfuse_getxattr == NULL && in_libfuse2(ops[GETXATTR_SLOT]) && in_libfuse2(ops[SETXATTR_SLOT]) &&
          in_libfuse2(ops[REMOVEXATTR_SLOT])) {
        libfuse_getxattr = (getxattr_fn)ops[GETXATTR_SLOT];
        libfuse_setxattr = (setxattr_fn)ops[SETXATTR_SLOT];
        libfuse_removexattr = (removexattr_fn)ops[REMOVEXATTR_SLOT];
      }
      if (libfuse_getxattr != NULL && ops[GETXATTR_SLOT] == (void *)libfuse_getxattr) {
        ops[GETXATTR_SLOT] = (void *)getxattr_answering_caps;
        ops[SETXATTR_SLOT] = (void *)setxattr_forgetting_caps;
        ops[REMOVEXATTR_SLOT] = (void *)removexattr_forgetting_caps;
      }
      int names_right = in_libfuse2(ops[LOOKUP_SLOT]) && in_libfuse2(ops[FORGET_SLOT]) && in_libfuse2(ops[GETATTR_SLOT]) &&
                        in_libfuse2(ops[UNLINK_SLOT]) && in_libfuse2(ops[RENAME_SLOT]) && in_libfuse2(ops[FORGET_MULTI_SLOT]);
      if (names_right && libfuse_lookup == NULL) {
        libfuse_lookup = (lookup_fn)ops[LOOKUP_SLOT];
        libfuse_forget = (forget_fn)ops[FORGET_SLOT];
        libfuse_getattr = (getattr_fn)ops[GETATTR_SLOT];
        libfuse_unlink = (unlink_fn)ops[UNLINK_SLOT];
        libfuse_rename = (rename_fn)ops[RENAME_SLOT];
        libfuse_forget_multi = (forget_multi_fn)ops[FORGET_MULTI_SLOT];
      }
      if (names_right && ops[LOOKUP_SLOT] == (void *)libfuse_lookup && ops[UNLINK_SLOT] == (void *)libfuse_unlink) {
        ops[LOOKUP_SLOT] = (void *)lookup_recording;
        ops[FORGET_SLOT] = (void *)forget_releasing;
        ops[GETATTR_SLOT] = (void *)getattr_recording;
        ops[UNLINK_SLOT] = (void *)unlink_keeping_links;
        ops[RENAME_SLOT] = (void *)rename_recording;
        ops[FORGET_MULTI_SLOT] = (void *)forget_multi_releasing;
      }
      if (next_chan != NULL && notify_inval_inode != NULL && in_libfuse2(ops[LINK_SLOT])) {
        if (libfuse_link == NULL) libfuse_link = (link_fn)ops[LINK_SLOT];
        if (ops[LINK_SLOT] == (void *)libfuse_link) ops[LINK_SLOT] = (void *)link_refreshing_source;
      }
    }
  }
  void *se = real_session_new(session_ops, data);
  if (se != NULL && data != NULL) session = se;
  return se;
}
