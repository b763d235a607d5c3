# Executes a JSON list of filesystem operations below a directory and prints one
# JSON result per operation: ["ok", value] or ["err", "ENOENT"]. Used by fuzz.test.ts
# to run the same sequence on a plain directory and on a mount.
import errno, json, os, stat, sys

base = sys.argv[1]
ops = json.load(open(sys.argv[2]))
os.chdir(base)
# Non-blocking opens: a FIFO must not stall the sequence (same semantics on both sides).
NB = os.O_NONBLOCK

def describe(st):
    kind = stat.S_IFMT(st.st_mode)
    size = st.st_size if not stat.S_ISDIR(st.st_mode) else -1
    nlink = st.st_nlink if not stat.S_ISDIR(st.st_mode) else -1
    mtime = int(st.st_mtime) if st.st_mtime < 1577836800 else "recent"
    return [kind, stat.S_IMODE(st.st_mode), size, nlink, mtime]

def write_and_close(fd, text, offset=None):
    # Never leak an fd: a leaked FIFO end would change later opens' outcome.
    try:
        if offset is None: os.write(fd, text.encode())
        else: os.pwrite(fd, text.encode(), offset)
    finally:
        os.close(fd)

def run(op):
    k = op[0]
    if k == "create":
        return write_and_close(os.open(op[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | NB, 0o644), op[2])
    if k == "append":
        return write_and_close(os.open(op[1], os.O_WRONLY | os.O_APPEND | NB), op[2])
    if k == "overwrite":
        return write_and_close(os.open(op[1], os.O_WRONLY | os.O_TRUNC | os.O_CREAT | NB, 0o600), op[2])
    if k == "pwrite":
        return write_and_close(os.open(op[1], os.O_RDWR | NB), op[2], op[3])
    if k == "read":
        fd = os.open(op[1], os.O_RDONLY | NB)
        try: return os.read(fd, 4096).decode("latin1")
        finally: os.close(fd)
    if k == "truncate": os.truncate(op[1], op[2]); return None
    if k == "mkdir": os.mkdir(op[1], op[2]); return None
    if k == "rmdir": os.rmdir(op[1]); return None
    if k == "unlink": os.unlink(op[1]); return None
    if k == "rename": os.rename(op[1], op[2]); return None
    if k == "symlink": os.symlink(op[1], op[2]); return None
    if k == "link": os.link(op[1], op[2]); return None
    if k == "chmod": os.chmod(op[1], op[2]); return None
    if k == "chown": os.chown(op[1], op[2], op[3], follow_symlinks=False); return None
    if k == "stat": return describe(os.stat(op[1]))
    if k == "lstat": return describe(os.lstat(op[1]))
    if k == "listdir": return sorted(os.listdir(op[1]))
    if k == "readlink": return os.readlink(op[1])
    if k == "setxattr": os.setxattr(op[1], op[2], op[3].encode(), follow_symlinks=False); return None
    if k == "getxattr": return os.getxattr(op[1], op[2], follow_symlinks=False).decode()
    if k == "listxattr": return sorted(x for x in os.listxattr(op[1], follow_symlinks=False) if x.startswith("user."))
    if k == "removexattr": os.removexattr(op[1], op[2], follow_symlinks=False); return None
    if k == "utime": os.utime(op[1], (op[2], op[3]), follow_symlinks=False); return None
    if k == "mkfifo": os.mkfifo(op[1], 0o640); return None
    raise Exception("unknown op " + k)

out = []
for op in ops:
    try:
        out.append(["ok", run(op)])
    except OSError as e:
        out.append(["err", errno.errorcode.get(e.errno, str(e.errno))])
print(json.dumps(out))
