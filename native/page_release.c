/*
 * releaseStartupPages(): after start-up, hand back to the kernel's page cache the pages of the node
 * executable this process only needed to start (the snapshot, built-in sources and code cache, the
 * code that ran once). The running agent keeps 17–19 MB of them resident otherwise (docs/BENCHMARKS.md
 * "Start-up pages"). MADV_DONTNEED on a clean, read-only, private file mapping only removes this
 * process's page-table entries: the next touch maps the same page from the page cache again (a minor
 * fault), so nothing can be lost. Only such mappings are touched: a mapping with any anonymous page
 * (RELRO after relocation, anything written) would revert to the file's bytes, so it is never
 * released. The rule lives here, not in JavaScript, so no caller can aim madvise at live memory.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <sys/mman.h>

#define MAX_MAPPINGS 64

typedef struct {
  unsigned long start, end;
  unsigned long rss_kb, anon_kb, dirty_kb;
  int eligible;
} mapping_t;

/* Reads /proc/self/smaps; fills out[] with the executable's mappings. Returns the count or -errno. */
static int exe_mappings(mapping_t *out, int max) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -errno;
  exe[n] = '\0';
  FILE *f = fopen("/proc/self/smaps", "re");
  if (!f) return -errno;
  char line[4352];
  int count = 0;
  mapping_t *cur = NULL;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perms[8];
    int path_at = 0;
    if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &path_at) == 3 && path_at > 0) {
      cur = NULL;
      char *path = line + path_at;
      path[strcspn(path, "\n")] = '\0';
      if (strcmp(path, exe) != 0 || count >= max) continue;
      cur = &out[count++];
      memset(cur, 0, sizeof *cur);
      cur->start = lo;
      cur->end = hi;
      /* read-only and private: "r-xp" or "r--p" */
      cur->eligible = perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p';
      continue;
    }
    if (!cur) continue;
    unsigned long kb;
    if (sscanf(line, "Rss: %lu kB", &kb) == 1) cur->rss_kb = kb;
    else if (sscanf(line, "Anonymous: %lu kB", &kb) == 1) cur->anon_kb = kb;
    else if (sscanf(line, "Private_Dirty: %lu kB", &kb) == 1) cur->dirty_kb = kb;
  }
  fclose(f);
  return count;
}

static napi_value set_number(napi_env env, napi_value obj, const char *key, double v) {
  napi_value x;
  napi_create_double(env, v, &x);
  napi_set_named_property(env, obj, key, x);
  return obj;
}

/* () => { mappings, released, releasedKb, residentAfterKb, keptKb, error }; error is an errno (0: none). */
static napi_value release_startup_pages(napi_env env, napi_callback_info info) {
  (void)info;
  mapping_t m[MAX_MAPPINGS];
  int count = exe_mappings(m, MAX_MAPPINGS);
  int released = 0, error = 0;
  double released_kb = 0, kept_kb = 0;
  for (int i = 0; i < count; i++) {
    if (!m[i].eligible || m[i].anon_kb != 0 || m[i].dirty_kb != 0) {
      kept_kb += (double)m[i].rss_kb;
      continue;
    }
    if (madvise((void *)m[i].start, m[i].end - m[i].start, MADV_DONTNEED) != 0) {
      error = errno;
      kept_kb += (double)m[i].rss_kb;
      continue;
    }
    released++;
    released_kb += (double)m[i].rss_kb;
  }
  /* Read back before any JavaScript runs again: what another thread touched meanwhile. */
  double resident_after_kb = 0;
  mapping_t again[MAX_MAPPINGS];
  int count_again = exe_mappings(again, MAX_MAPPINGS);
  for (int i = 0; i < count_again; i++)
    for (int j = 0; j < count; j++)
      if (again[i].start == m[j].start && m[j].eligible && m[j].anon_kb == 0 && m[j].dirty_kb == 0)
        resident_after_kb += (double)again[i].rss_kb;
  napi_value out;
  napi_create_object(env, &out);
  set_number(env, out, "residentAfterKb", resident_after_kb);
  set_number(env, out, "mappings", count < 0 ? 0 : count);
  set_number(env, out, "released", released);
  set_number(env, out, "releasedKb", released_kb);
  set_number(env, out, "keptKb", kept_kb);
  set_number(env, out, "error", count < 0 ? -count : error);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "releaseStartupPages", NAPI_AUTO_LENGTH, release_startup_pages, NULL, &fn);
  napi_set_named_property(env, exports, "releaseStartupPages", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
