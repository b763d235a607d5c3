/*
 * iii:sys — the system calls init needs that QuickJS's os/std modules lack.
 * Compiled into the static init binary beside libquickjs (scripts/build-static.mjs).
 * Convention: functions return a non-negative result or -errno (no exceptions),
 * and errnoName(n)/strerror(n) turn an errno into text; the TypeScript wrapper
 * (src/static/sys.ts) throws.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include "quickjs.h"

#define countof(a) (sizeof(a) / sizeof((a)[0]))
#define RET_ERRNO(r) JS_NewInt32(ctx, (r) < 0 ? -errno : (r))

static int get_int(JSContext *ctx, JSValueConst v, int64_t *out) {
    return JS_ToInt64(ctx, out, v);
}

/* A NUL-terminated char* array from a JS array of strings; free with free_strv. */
static char **to_strv(JSContext *ctx, JSValueConst arr) {
    int64_t len;
    JSValue l = JS_GetPropertyStr(ctx, arr, "length");
    if (JS_ToInt64(ctx, &len, l)) { JS_FreeValue(ctx, l); return NULL; }
    JS_FreeValue(ctx, l);
    char **v = calloc(len + 1, sizeof(char *));
    for (int64_t i = 0; i < len; i++) {
        JSValue e = JS_GetPropertyUint32(ctx, arr, i);
        const char *s = JS_ToCString(ctx, e);
        JS_FreeValue(ctx, e);
        if (!s) { v[i] = NULL; break; }
        v[i] = strdup(s);
        JS_FreeCString(ctx, s);
    }
    return v;
}

static void free_strv(char **v) {
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

static JSValue js_mount(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    const char *src = JS_ToCString(ctx, argv[0]);
    const char *target = JS_ToCString(ctx, argv[1]);
    const char *fstype = JS_ToCString(ctx, argv[2]);
    int64_t flags;
    get_int(ctx, argv[3], &flags);
    const char *data = JS_IsNull(argv[4]) || JS_IsUndefined(argv[4]) ? NULL : JS_ToCString(ctx, argv[4]);
    int r = mount(src, target, fstype, (unsigned long)flags, data);
    int e = errno;
    JS_FreeCString(ctx, src); JS_FreeCString(ctx, target); JS_FreeCString(ctx, fstype);
    if (data) JS_FreeCString(ctx, data);
    return JS_NewInt32(ctx, r < 0 ? -e : 0);
}

/*
 * The kernel starts its usermode helpers (request-key, bridge-stp, modprobe, a core_pattern pipe, the uevent
 * helper) from a kernel thread, at a fixed path looked up from the root directory that kernel threads share with
 * PID 1 (rest_init starts both with CLONE_FS): the workload's root filesystem, which root in the workload can write.
 * A capability that reaches one (NET_ADMIN turns STP on for a bridge: the kernel runs /sbin/bridge-stp) then runs
 * the workload's program in init's mount namespace, outside its cgroup, where it lifts pids.max and cpu.max.
 * This roots that shared fs_struct in an empty, read-only file system mounted nowhere (fsmount), then gives PID 1 a
 * copy of its own (unshare CLONE_FS) back at the real root and working directory: every helper finds no program.
 * Returns 0 or -errno (nothing changed then: a failed step is undone).
 */
static JSValue js_root_kernel_threads(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int fs = -1, mnt = -1, root = -1, cwd = -1, e = 0;
    if ((fs = (int)syscall(SYS_fsopen, "tmpfs", 1 /* FSOPEN_CLOEXEC */)) < 0 ||
        syscall(SYS_fsconfig, fs, 6 /* FSCONFIG_CMD_CREATE */, NULL, NULL, 0) < 0 ||
        (mnt = (int)syscall(SYS_fsmount, fs, 1 /* FSMOUNT_CLOEXEC */,
                            0x1 | 0x2 | 0x4 | 0x8 /* MOUNT_ATTR_RDONLY | NOSUID | NODEV | NOEXEC */)) < 0 ||
        (root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || (cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        fchdir(mnt) < 0 || chroot(".") < 0) {
        e = errno;
    } else if (unshare(CLONE_FS) < 0) {
        e = errno;
        (void)!fchdir(root); (void)!chroot("."); /* still shared: back for PID 1 and the kernel threads alike */
    } else if (fchdir(root) < 0 || chroot(".") < 0) {
        e = errno; /* PID 1 cannot leave the empty root: no program could start, so init stops here */
    }
    if (cwd >= 0 && fchdir(cwd) < 0 && e == 0) e = errno;
    if (fs >= 0) close(fs);
    if (mnt >= 0) close(mnt);
    if (root >= 0) close(root);
    if (cwd >= 0) close(cwd);
    return JS_NewInt32(ctx, e ? -e : 0);
}

static JSValue js_umount2(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    const char *target = JS_ToCString(ctx, argv[0]);
    int64_t flags; get_int(ctx, argv[1], &flags);
    int r = umount2(target, (int)flags);
    int e = errno;
    JS_FreeCString(ctx, target);
    return JS_NewInt32(ctx, r < 0 ? -e : 0);
}

static JSValue js_reboot(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t cmd; get_int(ctx, argv[0], &cmd);
    int r = reboot((int)cmd);
    return RET_ERRNO(r);
}

static JSValue js_sync(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    sync();
    return JS_NewInt32(ctx, 0);
}

static JSValue js_sethostname(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    size_t len;
    const char *name = JS_ToCStringLen(ctx, &len, argv[0]);
    int r = sethostname(name, len);
    int e = errno;
    JS_FreeCString(ctx, name);
    return JS_NewInt32(ctx, r < 0 ? -e : 0);
}

static JSValue js_setrlimit(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t res, soft, hard;
    get_int(ctx, argv[0], &res); get_int(ctx, argv[1], &soft); get_int(ctx, argv[2], &hard);
    struct rlimit rl = { soft < 0 ? RLIM_INFINITY : (rlim_t)soft, hard < 0 ? RLIM_INFINITY : (rlim_t)hard };
    int r = setrlimit((int)res, &rl);
    return RET_ERRNO(r);
}

/* [soft, hard], -1 for unlimited; or -errno. */
static JSValue js_getrlimit(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t res; get_int(ctx, argv[0], &res);
    struct rlimit rl;
    if (getrlimit((int)res, &rl) < 0) return JS_NewInt32(ctx, -errno);
    JSValue a = JS_NewArray(ctx);
    JS_SetPropertyUint32(ctx, a, 0, JS_NewFloat64(ctx, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur));
    JS_SetPropertyUint32(ctx, a, 1, JS_NewFloat64(ctx, rl.rlim_max == RLIM_INFINITY ? -1 : (double)rl.rlim_max));
    return a;
}

static JSValue js_prctl(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t opt, arg; get_int(ctx, argv[0], &opt); get_int(ctx, argv[1], &arg);
    int r = prctl((int)opt, (unsigned long)arg, 0, 0, 0);
    return RET_ERRNO(r);
}

static JSValue js_chown(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    const char *path = JS_ToCString(ctx, argv[0]);
    int64_t uid, gid; get_int(ctx, argv[1], &uid); get_int(ctx, argv[2], &gid);
    int r = chown(path, (uid_t)uid, (gid_t)gid);
    int e = errno;
    JS_FreeCString(ctx, path);
    return JS_NewInt32(ctx, r < 0 ? -e : 0);
}

static JSValue js_getppid(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    return JS_NewInt32(ctx, getppid());
}

/* Connected, close-on-exec AF_UNIX stream socket, or -errno. */
static JSValue js_connect_unix(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    const char *path = JS_ToCString(ctx, argv[0]);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(addr.sun_path)) { JS_FreeCString(ctx, path); return JS_NewInt32(ctx, -ENAMETOOLONG); }
    strcpy(addr.sun_path, path);
    JS_FreeCString(ctx, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return JS_NewInt32(ctx, -errno);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) { int e = errno; close(fd); return JS_NewInt32(ctx, -e); }
    return JS_NewInt32(ctx, fd);
}

/* open(2) with O_CLOEXEC added; or -errno. */
static JSValue js_open(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    const char *path = JS_ToCString(ctx, argv[0]);
    int64_t flags, mode = 0644; get_int(ctx, argv[1], &flags);
    if (argc > 2) get_int(ctx, argv[2], &mode);
    int fd = open(path, (int)flags | O_CLOEXEC, (mode_t)mode);
    int e = errno;
    JS_FreeCString(ctx, path);
    return JS_NewInt32(ctx, fd < 0 ? -e : fd);
}

/* [readFd, writeFd], both close-on-exec; or -errno. */
static JSValue js_pipe(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) return JS_NewInt32(ctx, -errno);
    JSValue a = JS_NewArray(ctx);
    JS_SetPropertyUint32(ctx, a, 0, JS_NewInt32(ctx, fds[0]));
    JS_SetPropertyUint32(ctx, a, 1, JS_NewInt32(ctx, fds[1]));
    return a;
}

static JSValue js_set_nonblock(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t fd, on; get_int(ctx, argv[0], &fd); get_int(ctx, argv[1], &on);
    int fl = fcntl((int)fd, F_GETFL);
    if (fl < 0) return JS_NewInt32(ctx, -errno);
    int r = fcntl((int)fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
    return RET_ERRNO(r);
}

/* [master, slave] (master close-on-exec), or -errno. */
static JSValue js_openpty(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int m, s;
    int64_t rows = 24, cols = 80;
    if (argc > 0) get_int(ctx, argv[0], &rows);
    if (argc > 1) get_int(ctx, argv[1], &cols);
    struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
    if (openpty(&m, &s, NULL, NULL, &ws) < 0) return JS_NewInt32(ctx, -errno);
    fcntl(m, F_SETFD, FD_CLOEXEC);
    fcntl(s, F_SETFD, FD_CLOEXEC);
    JSValue a = JS_NewArray(ctx);
    JS_SetPropertyUint32(ctx, a, 0, JS_NewInt32(ctx, m));
    JS_SetPropertyUint32(ctx, a, 1, JS_NewInt32(ctx, s));
    return a;
}

static JSValue js_set_winsize(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t fd, rows, cols; get_int(ctx, argv[0], &fd); get_int(ctx, argv[1], &rows); get_int(ctx, argv[2], &cols);
    struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
    int r = ioctl((int)fd, TIOCSWINSZ, &ws);
    return RET_ERRNO(r);
}

/* socket(2), close-on-exec; or -errno. */
static JSValue js_socket(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t d, t, p; get_int(ctx, argv[0], &d); get_int(ctx, argv[1], &t); get_int(ctx, argv[2], &p);
    int fd = socket((int)d, (int)t | SOCK_CLOEXEC, (int)p);
    return RET_ERRNO(fd);
}

/* ioctl(fd, request, pointer into an ArrayBuffer: the whole buffer, in/out); 0 or -errno. */
static JSValue js_ioctl_buf(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t fd, req; get_int(ctx, argv[0], &fd); get_int(ctx, argv[1], &req);
    size_t size;
    uint8_t *buf = JS_GetArrayBuffer(ctx, &size, argv[2]);
    if (!buf) return JS_EXCEPTION;
    int r = ioctl((int)fd, (unsigned long)req, buf);
    return RET_ERRNO(r);
}

static JSValue js_errno_name(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t e; get_int(ctx, argv[0], &e);
    if (e < 0) e = -e;
    const char *n = strerrorname_np((int)e);
    return JS_NewString(ctx, n ? n : "EUNKNOWN");
}

static JSValue js_strerror(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    int64_t e; get_int(ctx, argv[0], &e);
    if (e < 0) e = -e;
    return JS_NewString(ctx, strerror((int)e));
}

/* Child side of spawn: failures are written to errpipe as {stage, errno}. */
struct spawn_req {
    char **argv, **envp;
    char *cwd;
    char **cgroup_procs; /* cgroup.procs files the child writes "0" to before exec */
    int64_t uid, gid;
    gid_t groups[64];
    int ngroups, set_groups;
    int fds[3];
    int setsid_, ctty;
    int oom_set;
    int64_t oom_adj;
    int confine;
    /* With confine: the capabilities kept in the bounding set (bit n = capability n), from init's contract
     * (contract/capabilities.ts: Docker's default set unless the worker names another). */
    uint64_t caps;
};

static const char *env_get(char **envp, const char *name) {
    size_t n = strlen(name);
    for (char **p = envp; p && *p; p++)
        if (strncmp(*p, name, n) == 0 && (*p)[n] == '=') return *p + n + 1;
    return NULL;
}

static void child_fail(int errfd, int stage) {
    int msg[2] = { stage, errno };
    (void)!write(errfd, msg, sizeof msg);
    _exit(127);
}

/* Decimal text of v into buf (no stdio in the child: it shares init's memory). */
static int format_int(char *buf, long long v) {
    char tmp[24];
    int n = 0, len = 0;
    unsigned long long u = v < 0 ? -(unsigned long long)v : (unsigned long long)v;
    do tmp[n++] = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (v < 0) buf[len++] = '-';
    while (n > 0) buf[len++] = tmp[--n];
    return len;
}

/* A bind mount of `path` onto itself, made read-only (MS_REC: with its submounts, which stay as they are). */
static int ro_bind(const char *path, unsigned long rec) {
    if (syscall(SYS_mount, path, path, NULL, MS_BIND | rec, NULL) < 0) return errno == ENOENT ? 0 : -1;
    return (int)syscall(SYS_mount, NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

/*
 * The workload and execs must not lift their own limits: root in the guest could write its group's cpu.max and
 * pids.max or move itself out of the group, or have the kernel run a program of its choosing with every privilege
 * (kernel.core_pattern, poweroff_cmd, /sys/kernel/uevent_helper). In a mount namespace of their own (slave: nothing
 * they mount reaches init) /sys, the cgroup tree, /proc/sys and /proc/sysrq-trigger are read-only; clone3 answers
 * ENOSYS (CLONE_INTO_CGROUP takes a directory fd and checks no mount flag; libc falls back to clone); and every
 * capability outside `caps` leaves the bounding set, so no exec'd program gets it. init turns user namespaces off
 * before the first spawn.
 */
static int confine_child(uint64_t caps) {
    if (syscall(SYS_unshare, CLONE_NEWNS) < 0) return -1;
    /* "/" is not a mount point when init runs chrooted (the namespace tests): then /sys and /proc one by one. */
    if (syscall(SYS_mount, NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 &&
        (syscall(SYS_mount, NULL, "/sys", NULL, MS_REC | MS_SLAVE, NULL) < 0 ||
         syscall(SYS_mount, NULL, "/proc", NULL, MS_REC | MS_SLAVE, NULL) < 0))
        return -1;
    if (ro_bind("/sys", MS_REC) < 0 || ro_bind("/sys/fs/cgroup", 0) < 0 || ro_bind("/proc/sys", 0) < 0 ||
        ro_bind("/proc/sysrq-trigger", 0) < 0)
        return -1;
    /*
     * request_key(2) answers ENOSYS too: for a key the kernel cannot find it runs /sbin/request-key, a file of the
     * workload's root filesystem that root in the workload can write, as a usermode helper: with every capability, in
     * init's mount namespace (seen: a helper the workload planted read /dev/mem and wrote kernel.dmesg_restrict back).
     * The i386 entry point (int 0x80) has its own numbers, so the filter looks at the architecture first.
     */
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x40000003 /* AUDIT_ARCH_I386 */, 4, 0),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 435 /* clone3, x86-64 and i386 */, 6, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 249 /* request_key, x86-64 */, 5, 0),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000 /* x32: its clone3 and request_key too */, 4, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 435 /* clone3 */, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 287 /* request_key, i386 */, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
    };
    struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
    /* Installed while the child still holds CAP_SYS_ADMIN, so no_new_privs (which would disarm setuid programs) is not needed. */
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) return -1;
    for (int cap = 0; cap < 64; cap++) {
        if (caps & (1ULL << cap)) continue;
        if (syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL) break; /* past the kernel's last capability */
            return -1;
        }
    }
    return 0;
}

/*
 * Runs in a CLONE_VM|CLONE_VFORK child: it shares init's memory until execve, so it only makes system calls and
 * writes its own stack. Signals arrive blocked (see js_spawn); handlers go back to default before they are unblocked,
 * so none of init's handlers can run here.
 */
static void spawn_child(struct spawn_req *r, int errfd) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (char **p = r->cgroup_procs; p && *p; p++) {
        int fd = open(*p, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1) child_fail(errfd, 1);
        close(fd);
    }
    if (r->oom_set) {
        /* Born with the children's score (init keeps -1000); best effort. */
        char buf[24];
        int n = format_int(buf, (long long)r->oom_adj);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) { (void)!write(fd, buf, n); close(fd); }
    }
    if (r->confine && confine_child(r->caps) < 0) child_fail(errfd, 8);
    if (r->setsid_) { if (setsid() < 0) child_fail(errfd, 2); }
    else if (setpgid(0, 0) < 0) child_fail(errfd, 2);
    /* dup2 to 0..2 via fds above 2 so that a source fd in 0..2 is not clobbered. */
    int tmp[3];
    for (int i = 0; i < 3; i++) {
        tmp[i] = r->fds[i] < 0 ? -1 : fcntl(r->fds[i], F_DUPFD_CLOEXEC, 3);
        if (r->fds[i] >= 0 && tmp[i] < 0) child_fail(errfd, 3);
    }
    for (int i = 0; i < 3; i++)
        if (tmp[i] >= 0 && dup2(tmp[i], i) < 0) child_fail(errfd, 3);
    if (r->ctty && ioctl(0, TIOCSCTTY, 0) < 0) child_fail(errfd, 4);
    /* Raw system calls: glibc's wrappers would broadcast the change to init's threads (the memory is shared). */
    if (r->set_groups && syscall(SYS_setgroups, r->ngroups, r->groups) < 0) child_fail(errfd, 5);
    if (r->gid >= 0 && syscall(SYS_setgid, (gid_t)r->gid) < 0) child_fail(errfd, 5);
    if (r->uid >= 0 && syscall(SYS_setuid, (uid_t)r->uid) < 0) child_fail(errfd, 5);
    if (r->cwd && chdir(r->cwd) < 0) child_fail(errfd, 6);
    /* Every other descriptor is close-on-exec or closed here. */
    syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
    const char *file = r->argv[0];
    if (strchr(file, '/')) {
        execve(file, r->argv, r->envp);
        child_fail(errfd, 7);
    }
    const char *path = env_get(r->envp, "PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    int saved = ENOENT;
    char buf[4096];
    for (const char *p = path;; ) {
        const char *end = strchrnul(p, ':');
        size_t dl = end - p;
        if (dl + strlen(file) + 2 < sizeof buf) {
            if (dl == 0) strcpy(buf, file);
            else { memcpy(buf, p, dl); buf[dl] = '/'; strcpy(buf + dl + 1, file); }
            execve(buf, r->argv, r->envp);
            if (errno != ENOENT && errno != ENOTDIR) saved = errno;
        }
        if (!*end) break;
        p = end + 1;
    }
    errno = saved;
    child_fail(errfd, 7);
}

struct spawn_args { struct spawn_req *r; int errfd, readfd; };
/* The child's own stack: init is suspended while the child runs, so one static stack serves every spawn. */
static char spawn_stack[64 * 1024] __attribute__((aligned(16)));

static int spawn_entry(void *arg) {
    struct spawn_args *a = arg;
    close(a->readfd);
    spawn_child(a->r, a->errfd);
    return 127;
}

/*
 * spawn(argv, env, {cwd, uid, gid, groups, setsid, ctty, stdin, stdout, stderr, cgroupProcs, oomScoreAdj, confine,
 * capabilities})
 * → pid, or [-errno, stage] when the child could not exec (stage: 1 cgroup, 2 setsid/setpgid,
 * 3 stdio, 4 ctty, 5 credentials, 6 cwd, 7 exec, 8 confine, 0 fork).
 */
static JSValue js_spawn(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv) {
    struct spawn_req r;
    memset(&r, 0, sizeof r);
    r.uid = r.gid = -1;
    r.fds[0] = r.fds[1] = r.fds[2] = -1;
    r.argv = to_strv(ctx, argv[0]);
    r.envp = to_strv(ctx, argv[1]);
    JSValueConst o = argv[2];
    JSValue v;
    const char *s;
    if (!JS_IsUndefined(v = JS_GetPropertyStr(ctx, o, "cwd")) && (s = JS_ToCString(ctx, v))) { r.cwd = strdup(s); JS_FreeCString(ctx, s); }
    JS_FreeValue(ctx, v);
    if (JS_IsArray(ctx, v = JS_GetPropertyStr(ctx, o, "cgroupProcs"))) r.cgroup_procs = to_strv(ctx, v);
    JS_FreeValue(ctx, v);
    if (!JS_IsUndefined(v = JS_GetPropertyStr(ctx, o, "uid"))) get_int(ctx, v, &r.uid);
    JS_FreeValue(ctx, v);
    if (!JS_IsUndefined(v = JS_GetPropertyStr(ctx, o, "gid"))) get_int(ctx, v, &r.gid);
    JS_FreeValue(ctx, v);
    if (!JS_IsUndefined(v = JS_GetPropertyStr(ctx, o, "oomScoreAdj"))) { r.oom_set = 1; get_int(ctx, v, &r.oom_adj); }
    JS_FreeValue(ctx, v);
    r.setsid_ = JS_ToBool(ctx, v = JS_GetPropertyStr(ctx, o, "setsid")); JS_FreeValue(ctx, v);
    r.ctty = JS_ToBool(ctx, v = JS_GetPropertyStr(ctx, o, "ctty")); JS_FreeValue(ctx, v);
    r.confine = JS_ToBool(ctx, v = JS_GetPropertyStr(ctx, o, "confine")); JS_FreeValue(ctx, v);
    /* A confined child needs its capability set named: no default here, so a caller that forgets fails loudly. */
    int64_t caps = -1;
    if (!JS_IsUndefined(v = JS_GetPropertyStr(ctx, o, "capabilities"))) get_int(ctx, v, &caps);
    JS_FreeValue(ctx, v);
    r.caps = caps < 0 ? 0 : (uint64_t)caps;
    static const char *names[3] = { "stdin", "stdout", "stderr" };
    for (int i = 0; i < 3; i++) {
        int64_t fd = -1;
        if (!JS_IsUndefined(v = JS_GetPropertyStr(ctx, o, names[i]))) get_int(ctx, v, &fd);
        JS_FreeValue(ctx, v);
        r.fds[i] = (int)fd;
    }
    v = JS_GetPropertyStr(ctx, o, "groups");
    if (JS_IsArray(ctx, v)) {
        int64_t len; JSValue l = JS_GetPropertyStr(ctx, v, "length"); JS_ToInt64(ctx, &len, l); JS_FreeValue(ctx, l);
        r.set_groups = 1;
        for (int64_t i = 0; i < len && r.ngroups < (int)countof(r.groups); i++) {
            int64_t g; JSValue e = JS_GetPropertyUint32(ctx, v, i); get_int(ctx, e, &g); JS_FreeValue(ctx, e);
            r.groups[r.ngroups++] = (gid_t)g;
        }
    }
    JS_FreeValue(ctx, v);

    JSValue result;
    int ep[2];
    if (r.confine && caps < 0) { result = JS_ThrowTypeError(ctx, "spawn: confine needs capabilities, a bit mask (bit n = capability n)"); goto out; }
    if (!r.argv || !r.argv[0] || !r.envp) { result = JS_NewInt32(ctx, -EINVAL); goto out; }
    if (pipe2(ep, O_CLOEXEC) < 0) { result = JS_NewInt32(ctx, -errno); goto out; }
    /*
     * vfork semantics (as posix_spawn): no copy of init's page tables and no copy-on-write faults, which under TCG
     * cost more than the exec itself. init is suspended until the child has exec'd or failed, as it waited for
     * the error pipe anyway. All signals stay blocked across the clone so no handler of init's runs in the child.
     */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    struct spawn_args a = { &r, ep[1], ep[0] };
    pid_t pid = clone(spawn_entry, spawn_stack + sizeof spawn_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    int fe = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(ep[1]);
    if (pid < 0) { close(ep[0]); result = JS_NewInt32(ctx, -fe); goto out; }
    int msg[2];
    ssize_t n;
    do n = read(ep[0], msg, sizeof msg); while (n < 0 && errno == EINTR);
    close(ep[0]);
    if (n == sizeof msg) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        result = JS_NewArray(ctx);
        JS_SetPropertyUint32(ctx, result, 0, JS_NewInt32(ctx, -msg[1]));
        JS_SetPropertyUint32(ctx, result, 1, JS_NewInt32(ctx, msg[0]));
    } else result = JS_NewInt32(ctx, pid);
out:
    free_strv(r.argv); free_strv(r.envp); free(r.cwd); free_strv(r.cgroup_procs);
    return result;
}

static const JSCFunctionListEntry iii_sys_funcs[] = {
    JS_CFUNC_DEF("mount", 5, js_mount),
    JS_CFUNC_DEF("umount2", 2, js_umount2),
    JS_CFUNC_DEF("rootKernelThreads", 0, js_root_kernel_threads),
    JS_CFUNC_DEF("reboot", 1, js_reboot),
    JS_CFUNC_DEF("sync", 0, js_sync),
    JS_CFUNC_DEF("sethostname", 1, js_sethostname),
    JS_CFUNC_DEF("setrlimit", 3, js_setrlimit),
    JS_CFUNC_DEF("getrlimit", 1, js_getrlimit),
    JS_CFUNC_DEF("prctl", 2, js_prctl),
    JS_CFUNC_DEF("chown", 3, js_chown),
    JS_CFUNC_DEF("getppid", 0, js_getppid),
    JS_CFUNC_DEF("connectUnix", 1, js_connect_unix),
    JS_CFUNC_DEF("open", 3, js_open),
    JS_CFUNC_DEF("pipe", 0, js_pipe),
    JS_CFUNC_DEF("setNonBlock", 2, js_set_nonblock),
    JS_CFUNC_DEF("openpty", 2, js_openpty),
    JS_CFUNC_DEF("setWinsize", 3, js_set_winsize),
    JS_CFUNC_DEF("socket", 3, js_socket),
    JS_CFUNC_DEF("ioctlBuf", 3, js_ioctl_buf),
    JS_CFUNC_DEF("errnoName", 1, js_errno_name),
    JS_CFUNC_DEF("strerror", 1, js_strerror),
    JS_CFUNC_DEF("spawn", 3, js_spawn),
};

static int iii_sys_init(JSContext *ctx, JSModuleDef *m) {
    return JS_SetModuleExportList(ctx, m, iii_sys_funcs, countof(iii_sys_funcs));
}

JSModuleDef *js_init_module_iii_sys(JSContext *ctx, const char *module_name) {
    JSModuleDef *m = JS_NewCModule(ctx, module_name, iii_sys_init);
    if (!m) return NULL;
    JS_AddModuleExportList(ctx, m, iii_sys_funcs, countof(iii_sys_funcs));
    return m;
}
