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
 * getattr, setattr, ...). Before patching we check that the first six slots point
 * into libfuse.so.2 itself; otherwise nothing is touched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <sys/stat.h>

#define FUSE_SET_ATTR_ATIME (1 << 4)
#define FUSE_SET_ATTR_MTIME (1 << 5)
#define FUSE_LL_OPS_OFFSET (12 * sizeof(int))
#define SETATTR_SLOT 5

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
    if (libfuse != NULL) real_session_new = (void *(*)(void *, void *))dlsym(libfuse, "fuse_session_new");
    if (real_session_new == NULL) real_session_new = (void *(*)(void *, void *))dlsym(RTLD_NEXT, "fuse_session_new");
    if (real_session_new == NULL) return NULL;
  }
  if (data != NULL) {
    void **ops = (void **)((char *)data + FUSE_LL_OPS_OFFSET);
    int looks_right = in_libfuse2(ops[0]) && in_libfuse2(ops[2]) && in_libfuse2(ops[4]) && in_libfuse2(ops[SETATTR_SLOT]);
    if (looks_right) {
      if (libfuse_setattr == NULL) libfuse_setattr = (setattr_fn)ops[SETATTR_SLOT];
      if (ops[SETATTR_SLOT] == (void *)libfuse_setattr) ops[SETATTR_SLOT] = (void *)setattr_with_both_times;
    }
  }
  return real_session_new(session_ops, data);
}
