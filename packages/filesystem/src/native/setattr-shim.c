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
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define FUSE_SET_ATTR_ATIME (1 << 4)
#define FUSE_SET_ATTR_MTIME (1 << 5)
#define FUSE_LL_OPS_OFFSET (12 * sizeof(int))
#define SETATTR_SLOT 5
#define MKNOD_SLOT 7
#define MKDIR_SLOT 8
#define SYMLINK_SLOT 11
#define CREATE_SLOT 30

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
  libfuse_setattr(req, ino, attr, to_set, fi);
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
  libfuse_mknod(req, parent, name, mode, rdev);
  caller_leave();
}

static void mkdir_tracked(void *req, unsigned long parent, const char *name, mode_t mode) {
  caller_enter(req);
  libfuse_mkdir(req, parent, name, mode);
  caller_leave();
}

static void symlink_tracked(void *req, const char *link, unsigned long parent, const char *name) {
  caller_enter(req);
  libfuse_symlink(req, link, parent, name);
  caller_leave();
}

static void create_tracked(void *req, unsigned long parent, const char *name, mode_t mode, void *fi) {
  caller_enter(req);
  libfuse_create(req, parent, name, mode, fi);
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
    }
  }
  return real_session_new(session_ops, data);
}
