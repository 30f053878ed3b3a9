// TestPki: a certificate authority and certificates it signs, made for one test by
// the `openssl` command in a directory the test owns (P-256 keys, valid two days).
//
//   TempDir dir;
//   absl::StatusOr<TestPki> pki = TestPki::Create(dir.path(), "ca1");
//   absl::StatusOr<TestPki::Leaf> host = pki->Issue("host-a");   // SAN 127.0.0.1, localhost
//   ... TlsOptions{.cert_file = host->cert, .key_file = host->key, .ca_file = pki->ca_cert()} ...
//
// Certificates carry no extended key usage, so each serves as server and client.
// Nothing here is a fake: the files are what an operator would deploy.
#ifndef HOSTD_TESTING_TEST_PKI_H_
#define HOSTD_TESTING_TEST_PKI_H_

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace hostd::testing {

class TestPki {
 public:
  struct Leaf {
    std::string cert;
    std::string key;
  };

  static absl::StatusOr<TestPki> Create(const std::string& dir, const std::string& name) {
    TestPki pki(dir, name);
    std::string cmd = absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2",
                                   " -subj /CN=", name, " -keyout ", pki.ca_key(), " -out ", pki.ca_cert());
    if (absl::Status s = Run(cmd); !s.ok()) return s;
    return pki;
  }

  // A certificate for `cn` signed by this CA, with subjectAltName `san`.
  absl::StatusOr<Leaf> Issue(const std::string& cn, const std::string& san = "IP:127.0.0.1,DNS:localhost") const {
    Leaf leaf{absl::StrCat(dir_, "/", cn, ".crt"), absl::StrCat(dir_, "/", cn, ".key")};
    std::string csr = absl::StrCat(dir_, "/", cn, ".csr");
    std::string ext = absl::StrCat(dir_, "/", cn, ".ext");
    std::ofstream(ext) << "basicConstraints=CA:FALSE\nsubjectAltName=" << san << "\n";
    if (absl::Status s = Run(absl::StrCat("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=",
                                          cn, " -keyout ", leaf.key, " -out ", csr));
        !s.ok()) {
      return s;
    }
    if (absl::Status s = Run(absl::StrCat("openssl x509 -req -days 2 -in ", csr, " -CA ", ca_cert(), " -CAkey ",
                                          ca_key(), " -CAcreateserial -extfile ", ext, " -out ", leaf.cert));
        !s.ok()) {
      return s;
    }
    return leaf;
  }

  std::string ca_cert() const { return absl::StrCat(dir_, "/", name_, "-ca.crt"); }
  std::string ca_key() const { return absl::StrCat(dir_, "/", name_, "-ca.key"); }

 private:
  TestPki(std::string dir, std::string name) : dir_(std::move(dir)), name_(std::move(name)) {}

  static absl::Status Run(const std::string& cmd) {
    int rc = std::system(absl::StrCat(cmd, " >/dev/null 2>&1").c_str());
    if (rc != 0) return absl::InternalError(absl::StrCat("`", cmd, "` failed (status ", rc, ")"));
    return absl::OkStatus();
  }

  std::string dir_;
  std::string name_;
};

}  // namespace hostd::testing

#endif  // HOSTD_TESTING_TEST_PKI_H_
