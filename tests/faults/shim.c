/* An LD_PRELOAD shim that makes the file system below the engine misbehave on purpose.
 *
 * Built by the tests with `cc -shared -fPIC` (tests/e2e/shim.rs) and loaded into a child
 * process. It intercepts write, pwrite64, fsync, fdatasync, rename and unlink; only calls on
 * paths under KEPLOR_SHIM_DIR are touched, and only once the file KEPLOR_SHIM_ARM exists (when
 * set), so the engine opens undisturbed and the child arms the faults itself.
 *
 * KEPLOR_SHIM_RULES: rules separated by ';', each `op:match:nth:count:action`:
 *   op      write | fsync (of a file) | dirsync (fsync of a directory) | rename | unlink
 *   match   a substring of the path (of the target, for rename); empty matches every path;
 *           ending in '$', a suffix
 *   nth     the first matching call the action applies to (1-based)
 *   count   how many matching calls from nth on (0: all of them)
 *   action  eio | enospc | short (write half, return the count) | kill (SIGKILL before the
 *           call) | killafter (SIGKILL after it) | skip (report success, do nothing) |
 *           eiodrop (fsync fails with EIO and the file goes back to its size at its last
 *           successful fsync: the kernel dropped the dirty pages)
 *
 * KEPLOR_SHIM_SHADOW: a directory where the shim keeps what a crash would leave: at every
 * successful fsync of a file its content (`ino-<inode>`), at every fsync of the directory its
 * listing (`listing`: lines `<inode> <name>`). Taken at start-up too, so whatever was there
 * before counts as durable. tests/e2e/shim.rs rebuilds the directory from it.
 *
 * KEPLOR_SHIM_LOG: a file that gets one line per fault injected (`<op> <action> <path>`).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_RULES 8
#define MAX_SIZES 4096

enum op { OP_WRITE, OP_FSYNC, OP_DIRSYNC, OP_RENAME, OP_UNLINK, OP_NONE };
enum action { A_EIO, A_ENOSPC, A_SHORT, A_KILL, A_KILLAFTER, A_SKIP, A_EIODROP, A_NONE };

struct rule {
    enum op op;
    char match[128];
    long nth, count, seen;
    enum action action;
};

static struct rule rules[MAX_RULES];
static int nrules;
static char dir[4096];
static size_t dirlen;
static const char *arm;
static const char *shadow;
static const char *logpath;
/* Size of each file at its last successful fsync, for eiodrop. */
static struct { ino_t ino; off_t size; } sizes[MAX_SIZES];
static int nsizes;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_unlink)(const char *);

static enum op parse_op(const char *s) {
    if (!strcmp(s, "write")) return OP_WRITE;
    if (!strcmp(s, "fsync")) return OP_FSYNC;
    if (!strcmp(s, "dirsync")) return OP_DIRSYNC;
    if (!strcmp(s, "rename")) return OP_RENAME;
    if (!strcmp(s, "unlink")) return OP_UNLINK;
    return OP_NONE;
}

static enum action parse_action(const char *s) {
    if (!strcmp(s, "eio")) return A_EIO;
    if (!strcmp(s, "enospc")) return A_ENOSPC;
    if (!strcmp(s, "short")) return A_SHORT;
    if (!strcmp(s, "kill")) return A_KILL;
    if (!strcmp(s, "killafter")) return A_KILLAFTER;
    if (!strcmp(s, "skip")) return A_SKIP;
    if (!strcmp(s, "eiodrop")) return A_EIODROP;
    return A_NONE;
}

static const char *op_name(enum op o) {
    static const char *names[] = {"write", "fsync", "dirsync", "rename", "unlink", "none"};
    return names[o];
}

static const char *action_name(enum action a) {
    static const char *names[] = {"eio", "enospc", "short", "kill", "killafter", "skip",
                                  "eiodrop", "none"};
    return names[a];
}

static void die(const char *what) {
    fprintf(stderr, "keplor shim: %s\n", what);
    _exit(99);
}

static void copy_file(const char *from, const char *to) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.part", to);
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return;
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) die("cannot write the shadow copy");
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if (real_write(out, buf, (size_t)n) != n) die("short write to the shadow copy");
    }
    close(in);
    close(out);
    if (real_rename(tmp, to) != 0) die("cannot rename the shadow copy");
}

/* Shadow copy of the file open as `fd` (at `path`). */
static void shadow_file(int fd, const char *path) {
    struct stat st;
    if (!shadow || fstat(fd, &st) != 0) return;
    char to[4200];
    snprintf(to, sizeof to, "%s/ino-%lu", shadow, (unsigned long)st.st_ino);
    copy_file(path, to);
}

/* Listing of the watched directory, and a shadow copy of every file in it when `files`. */
static void shadow_listing(int files) {
    if (!shadow) return;
    char tmp[4200], to[4200], path[8400];
    snprintf(tmp, sizeof tmp, "%s/listing.part", shadow);
    snprintf(to, sizeof to, "%s/listing", shadow);
    FILE *out = fopen(tmp, "we");
    if (!out) die("cannot write the shadow listing");
    DIR *d = opendir(dir);
    if (!d) die("cannot list the watched directory");
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        fprintf(out, "%lu %s\n", (unsigned long)st.st_ino, e->d_name);
        if (files) {
            char copy[4200];
            snprintf(copy, sizeof copy, "%s/ino-%lu", shadow, (unsigned long)st.st_ino);
            copy_file(path, copy);
        }
    }
    closedir(d);
    fclose(out);
    if (real_rename(tmp, to) != 0) die("cannot rename the shadow listing");
}

__attribute__((constructor)) static void init(void) {
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_rename = dlsym(RTLD_NEXT, "rename");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    const char *d = getenv("KEPLOR_SHIM_DIR");
    if (!d) return;
    if (!realpath(d, dir)) die("KEPLOR_SHIM_DIR does not exist");
    dirlen = strlen(dir);
    arm = getenv("KEPLOR_SHIM_ARM");
    shadow = getenv("KEPLOR_SHIM_SHADOW");
    logpath = getenv("KEPLOR_SHIM_LOG");
    const char *spec = getenv("KEPLOR_SHIM_RULES");
    if (spec && *spec) {
        char *copy = strdup(spec), *save = NULL;
        for (char *r = strtok_r(copy, ";", &save); r && nrules < MAX_RULES;
             r = strtok_r(NULL, ";", &save)) {
            char op[16] = "", action[16] = "";
            struct rule *x = &rules[nrules];
            /* The match may be empty: `write::1:1:eio`. */
            char *c1 = strchr(r, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c1 || !c2) die("a rule is op:match:nth:count:action");
            snprintf(op, sizeof op, "%.*s", (int)(c1 - r), r);
            snprintf(x->match, sizeof x->match, "%.*s", (int)(c2 - c1 - 1), c1 + 1);
            if (sscanf(c2 + 1, "%ld:%ld:%15s", &x->nth, &x->count, action) != 3)
                die("a rule is op:match:nth:count:action");
            x->op = parse_op(op);
            x->action = parse_action(action);
            if (x->op == OP_NONE || x->action == A_NONE || x->nth < 1) die("bad rule");
            nrules++;
        }
        free(copy);
    }
    shadow_listing(1);
}

/* The absolute path of `fd` if it lies under the watched directory. */
static int fd_path(int fd, char *out, size_t len) {
    if (!dirlen) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, len - 1);
    if (n <= 0) return 0;
    out[n] = 0;
    return !strncmp(out, dir, dirlen) && (out[dirlen] == '/' || out[dirlen] == 0);
}

/* Absolute form of a path argument, if it lies under the watched directory. */
static int arg_path(const char *p, char *out, size_t len) {
    if (!dirlen) return 0;
    if (p[0] == '/') {
        snprintf(out, len, "%s", p);
    } else {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) return 0;
        snprintf(out, len, "%s/%s", cwd, p);
    }
    return !strncmp(out, dir, dirlen) && out[dirlen] == '/';
}

static int armed(void) { return !arm || access(arm, F_OK) == 0; }

static void note(enum op op, enum action a, const char *path) {
    if (!logpath) return;
    int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char line[4300];
    int n = snprintf(line, sizeof line, "%s %s %s\n", op_name(op), action_name(a), path);
    real_write(fd, line, (size_t)n);
    close(fd);
}

static int matches(const char *path, const char *pattern) {
    size_t n = strlen(pattern);
    if (n == 0 || pattern[n - 1] != '$') return strstr(path, pattern) != NULL;
    size_t len = strlen(path);
    return len >= n - 1 && !strncmp(path + len - (n - 1), pattern, n - 1);
}

/* The action for this call, counting it against every rule it matches. */
static enum action decide(enum op op, const char *path) {
    if (!nrules || !armed()) return A_NONE;
    enum action chosen = A_NONE;
    for (int i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        if (r->op != op || !matches(path, r->match)) continue;
        long k = ++r->seen;
        if (k >= r->nth && (r->count == 0 || k < r->nth + r->count) && chosen == A_NONE)
            chosen = r->action;
    }
    if (chosen != A_NONE) note(op, chosen, path);
    if (chosen == A_KILL) kill(getpid(), SIGKILL);
    return chosen;
}

static ssize_t fail(int err) {
    errno = err;
    return -1;
}

ssize_t write(int fd, const void *buf, size_t count) {
    char path[4096];
    if (fd <= 2 || !fd_path(fd, path, sizeof path)) return real_write(fd, buf, count);
    enum action a = decide(OP_WRITE, path);
    if (a == A_EIO) return fail(EIO);
    if (a == A_ENOSPC) return fail(ENOSPC);
    if (a == A_SKIP) return (ssize_t)count;
    if (a == A_SHORT && count > 1) count /= 2;
    ssize_t n = real_write(fd, buf, count);
    if (a == A_KILLAFTER) kill(getpid(), SIGKILL);
    return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t off) {
    char path[4096];
    if (!fd_path(fd, path, sizeof path)) return real_pwrite64(fd, buf, count, off);
    enum action a = decide(OP_WRITE, path);
    if (a == A_EIO) return fail(EIO);
    if (a == A_ENOSPC) return fail(ENOSPC);
    if (a == A_SKIP) return (ssize_t)count;
    if (a == A_SHORT && count > 1) count /= 2;
    ssize_t n = real_pwrite64(fd, buf, count, off);
    if (a == A_KILLAFTER) kill(getpid(), SIGKILL);
    return n;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t off) {
    return pwrite64(fd, buf, count, off);
}

static off_t *synced_size(ino_t ino) {
    for (int i = 0; i < nsizes; i++)
        if (sizes[i].ino == ino) return &sizes[i].size;
    if (nsizes == MAX_SIZES) return NULL;
    sizes[nsizes].ino = ino;
    sizes[nsizes].size = 0;
    return &sizes[nsizes++].size;
}

static int any_sync(int fd, int (*real)(int)) {
    char path[4096];
    struct stat st;
    if (!fd_path(fd, path, sizeof path) || fstat(fd, &st) != 0) return real(fd);
    int is_dir = S_ISDIR(st.st_mode);
    enum action a = decide(is_dir ? OP_DIRSYNC : OP_FSYNC, path);
    if (a == A_SKIP) return 0;
    if (a == A_EIO || a == A_ENOSPC) return (int)fail(a == A_EIO ? EIO : ENOSPC);
    if (a == A_EIODROP) {
        /* The dirty pages are gone: the file is what the last fsync made durable. A later
         * fsync succeeds, as Linux's does, with nothing left to write. */
        off_t *size = synced_size(st.st_ino);
        if (size && ftruncate(fd, *size) != 0) die("cannot drop the unsynced tail");
        return (int)fail(EIO);
    }
    int rc = real(fd);
    if (rc == 0) {
        if (is_dir) {
            if (!strcmp(path, dir)) shadow_listing(0);
        } else {
            off_t *size = synced_size(st.st_ino);
            if (size) *size = st.st_size;
            shadow_file(fd, path);
        }
    }
    if (a == A_KILLAFTER) kill(getpid(), SIGKILL);
    return rc;
}

int fsync(int fd) { return any_sync(fd, real_fsync); }

int fdatasync(int fd) { return any_sync(fd, real_fdatasync); }

int rename(const char *from, const char *to) {
    char path[4096];
    if (!arg_path(to, path, sizeof path)) return real_rename(from, to);
    enum action a = decide(OP_RENAME, path);
    if (a == A_EIO) return (int)fail(EIO);
    if (a == A_ENOSPC) return (int)fail(ENOSPC);
    if (a == A_SKIP) return 0;
    int rc = real_rename(from, to);
    if (a == A_KILLAFTER) kill(getpid(), SIGKILL);
    return rc;
}

int unlink(const char *p) {
    char path[4096];
    if (!arg_path(p, path, sizeof path)) return real_unlink(p);
    enum action a = decide(OP_UNLINK, path);
    if (a == A_EIO) return (int)fail(EIO);
    if (a == A_SKIP) return 0;
    int rc = real_unlink(p);
    if (a == A_KILLAFTER) kill(getpid(), SIGKILL);
    return rc;
}
