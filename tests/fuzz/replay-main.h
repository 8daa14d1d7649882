/* The main() of the fuzz-corpus replay programs that make check runs: each
 * input file (or every file under a directory, recursively) goes through
 * the fuzz target's entry point without libFuzzer, so a regression on a
 * corpus input fails the suite.  Arguments: files or directories to replay
 * instead of the default corpus.
 *
 * Include it after the fuzz target, with
 *   REPLAY_CORPUS        the default corpus, relative to $VDISK_TOP
 *   REPLAY_ONE(buf, len) the entry point to call for one input
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	if (!f) {
		perror(path);
		return -1;
	}
	if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET)) {
		perror(path);
		fclose(f);
		return -1;
	}
	buf = malloc(len ? (size_t)len : 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "%s: read failed\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	REPLAY_ONE(buf, (size_t)len);
	free(buf);
	return 0;
}

static int replay_path(const char *path, unsigned *count)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	char sub[4096];
	int rc = 0;

	if (stat(path, &st) < 0) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		if (replay_file(path) < 0)
			return -1;
		++*count;
		return 0;
	}
	d = opendir(path);
	if (!d) {
		perror(path);
		return -1;
	}
	while ((de = readdir(d)) && rc == 0) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		rc = replay_path(sub, count);
	}
	closedir(d);
	return rc;
}

int main(int argc, char **argv)
{
	const char *top = getenv("VDISK_TOP");
	char corpus[4096];
	unsigned count = 0;
	int i;

	if (argc > 1) {
		for (i = 1; i < argc; i++)
			if (replay_path(argv[i], &count) < 0)
				return 1;
	} else {
		snprintf(corpus, sizeof(corpus), "%s/" REPLAY_CORPUS,
			 top ? top : ".");
		if (replay_path(corpus, &count) < 0)
			return 1;
	}
	if (count == 0) {
		fprintf(stderr, "no corpus files replayed\n");
		return 1;
	}
	printf("replayed %u inputs\n", count);
	return 0;
}
