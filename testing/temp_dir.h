// TempDir: a fresh directory under /tmp, removed with everything in it on destruction.
// Paths stay short so unix socket paths inside fit in sun_path.
#ifndef HOSTD_TESTING_TEMP_DIR_H_
#define HOSTD_TESTING_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace hostd::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/hostd-XXXXXX";
    path_ = ::mkdtemp(tmpl) != nullptr ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace hostd::testing

#endif  // HOSTD_TESTING_TEMP_DIR_H_
