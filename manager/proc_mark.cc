#include "manager/proc_mark.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace hostd::manager {
namespace {

constexpr char kMarkPrefix[] = "HOSTD_PROC_MARK=";

// Writes "/proc/<pid>/environ" into `out` (at least 32 bytes); no allocation.
__attribute__((no_sanitize("address", "undefined"))) void EnvironPath(const char* pid_digits, char* out) {
  char* p = out;
  for (const char* s = "/proc/"; *s != '\0'; ++s) *p++ = *s;
  for (const char* s = pid_digits; *s != '\0'; ++s) *p++ = *s;
  for (const char* s = "/environ"; *s != '\0'; ++s) *p++ = *s;
  *p = '\0';
}

// Byte `i` of the pattern: NUL, kMarkPrefix, the token, '.'.
__attribute__((no_sanitize("address", "undefined"))) char PatternAt(size_t i, const char* token) {
  constexpr size_t kPrefixLen = sizeof(kMarkPrefix) - 1;
  if (i == 0) return '\0';
  if (i <= kPrefixLen) return kMarkPrefix[i - 1];
  if (i <= kPrefixLen + kMarkTokenLength) return token[i - 1 - kPrefixLen];
  return '.';
}

// Whether the environ file at `path` holds "<kMarkPrefix><token>.<digits>" as a
// whole entry; sets `serial`. Streams the file through a small buffer: an entry
// starts after a NUL (or at offset 0), and since the pattern's only NUL is its
// first byte, a mismatch restarts the match at a NUL or at nothing.
__attribute__((no_sanitize("address", "undefined"))) bool ReadMark(const char* path, const char* token,
                                                                   uint64_t* serial) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const size_t pattern_len = 1 + (sizeof(kMarkPrefix) - 1) + kMarkTokenLength + 1;
  size_t matched = 1;  // the virtual NUL before the first entry
  bool in_digits = false;
  uint64_t value = 0;
  size_t digits = 0;
  bool found = false;
  char buf[4096];
  while (!found) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n && !found; ++i) {
      const char c = buf[i];
      if (in_digits) {
        if (c >= '0' && c <= '9' && digits < 19) {
          value = value * 10 + static_cast<uint64_t>(c - '0');
          ++digits;
          continue;
        }
        if (c == '\0' && digits > 0) {
          found = true;
          break;
        }
        in_digits = false;  // not a mark after all
        matched = c == '\0' ? 1 : 0;
        continue;
      }
      if (c == PatternAt(matched, token)) {
        if (++matched == pattern_len) {
          in_digits = true;
          value = 0;
          digits = 0;
        }
      } else {
        matched = c == '\0' ? 1 : 0;
      }
    }
  }
  // The last entry may end at EOF without its NUL.
  if (!found && in_digits && digits > 0) found = true;
  ::close(fd);
  if (found) *serial = value;
  return found;
}

}  // namespace

std::string NewMarkToken() {
  unsigned char bytes[kMarkTokenLength / 2];
  size_t have = 0;
  while (have < sizeof(bytes)) {
    ssize_t n = ::getrandom(bytes + have, sizeof(bytes) - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // no entropy source: fall back below
    have += static_cast<size_t>(n);
  }
  if (have < sizeof(bytes)) {
    // Unique, if not secret: the mark only has to tell this manager's processes apart.
    std::string seed = absl::StrCat(::getpid(), "-", reinterpret_cast<uintptr_t>(&have), "-", ::time(nullptr));
    std::memset(bytes, 0, sizeof(bytes));
    for (size_t i = 0; i < seed.size(); ++i) bytes[i % sizeof(bytes)] ^= static_cast<unsigned char>(seed[i]);
  }
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

std::string MarkValue(const std::string& token, uint64_t serial) { return absl::StrCat(token, ".", serial); }

__attribute__((no_sanitize("address", "undefined"))) int ScanMarked(const char* token, MarkVisitor visit,
                                                                    void* context) {
  int dfd = ::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return 0;
  const pid_t self = ::getpid();
  int visited = 0;
  char buf[4096];
  char path[64];
  long n;
  while ((n = ::syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + off);
      off += d->d_reclen;
      pid_t pid = 0;
      size_t len = 0;
      for (const char* s = d->d_name; *s >= '0' && *s <= '9' && len < 10; ++s, ++len) pid = pid * 10 + (*s - '0');
      if (len == 0 || d->d_name[len] != '\0' || pid == self) continue;
      EnvironPath(d->d_name, path);
      uint64_t serial = 0;
      if (!ReadMark(path, token, &serial)) continue;
      visit(pid, serial, context);
      ++visited;
    }
  }
  ::close(dfd);
  return visited;
}

}  // namespace hostd::manager
