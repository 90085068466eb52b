/*
 * named.c - --named: the private directory the named queues live in (made
 * with mkdtemp, given to mproc as $MPROC_DIR, removed at exit) and the
 * names in it ("/bench-<pid>-<serial>"). The names alive at a moment are
 * remembered, so that an interrupt (SIGINT, SIGTERM) removes them too.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define NAMED_LIVE MAX_CH

static char named_dirbuf[256];
static unsigned named_serial;
static pid_t named_owner; /* the coordinator: only it cleans up */
/* Full paths of the names alive now: the signal handler unlinks them. */
static char named_paths[NAMED_LIVE][sizeof(named_dirbuf) + 64];
static volatile sig_atomic_t named_used[NAMED_LIVE];

/*
 * named_init makes the private directory under parent (mode 0700, which
 * mproc requires) and points MPROC_DIR at it. Returns 0, or -1 with why.
 */
int named_init(const char *parent, char *why, size_t whylen)
{
	struct stat st;

	if (parent == NULL)
		parent = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)
		                 ? "/dev/shm"
		                 : "/tmp";
	if (strlen(parent) + sizeof("/mproc-bench-XXXXXX") >
	    sizeof(named_dirbuf)) {
		snprintf(why, whylen, "%s: too long", parent);
		return -1;
	}
	snprintf(named_dirbuf, sizeof(named_dirbuf), "%s/mproc-bench-XXXXXX",
	         parent);
	if (mkdtemp(named_dirbuf) == NULL) {
		snprintf(why, whylen, "mkdtemp %s: %s", named_dirbuf,
		         strerror(errno));
		named_dirbuf[0] = '\0';
		return -1;
	}
	named_owner = getpid();
	if (setenv("MPROC_DIR", named_dirbuf, 1) != 0) {
		snprintf(why, whylen, "setenv: %s", strerror(errno));
		rmdir(named_dirbuf);
		named_dirbuf[0] = '\0';
		return -1;
	}
	return 0;
}

const char *named_dir(void)
{
	return named_dirbuf;
}

/* named_new makes the next name and remembers it as alive. */
void named_new(char *name, size_t n)
{
	int i;

	snprintf(name, n, "/bench-%d-%u", (int)getpid(), named_serial++);
	for (i = 0; i < NAMED_LIVE && named_used[i]; i++)
		;
	if (i == NAMED_LIVE)
		return; /* cleaned up at exit anyway */
	snprintf(named_paths[i], sizeof(named_paths[i]), "%s%s",
	         named_dirbuf, name);
	named_used[i] = 1;
}

/* named_unlink removes a name made by named_new (if it is still there). */
void named_unlink(const char *name)
{
	char path[sizeof(named_paths[0])];
	int i;

	snprintf(path, sizeof(path), "%s%s", named_dirbuf, name);
	mproc_unlink(name);
	for (i = 0; i < NAMED_LIVE; i++)
		if (named_used[i] && strcmp(named_paths[i], path) == 0)
			named_used[i] = 0;
}

/* At exit: whatever is left in the directory (a run that failed between
 * create and unlink), then the directory. */
void named_cleanup(void)
{
	struct dirent *d;
	DIR *dir;
	int i;

	if (named_dirbuf[0] == '\0' || getpid() != named_owner)
		return;
	for (i = 0; i < NAMED_LIVE; i++)
		named_used[i] = 0;
	dir = opendir(named_dirbuf);
	if (dir != NULL) {
		while ((d = readdir(dir)) != NULL)
			if (strcmp(d->d_name, ".") != 0 &&
			    strcmp(d->d_name, "..") != 0)
				unlinkat(dirfd(dir), d->d_name, 0);
		closedir(dir);
	}
	rmdir(named_dirbuf);
	named_dirbuf[0] = '\0';
}

/* Async-signal-safe: the names alive, then the directory if empty. */
void named_cleanup_on_signal(void)
{
	int i;

	if (named_dirbuf[0] == '\0' || getpid() != named_owner)
		return;
	for (i = 0; i < NAMED_LIVE; i++)
		if (named_used[i])
			unlink(named_paths[i]);
	rmdir(named_dirbuf);
}
