// A throwaway self-signed certificate for TLS tests, made by the openssl
// command-line tool in a fresh temporary folder that the destructor removes.
//
//   TestCert cert;                       // ECDSA P-256, CN=localhost, 1 day
//   ASSERT_TRUE(cert.ok()) << cert.error();
//   options.transport = NewTlsServerFactory({cert.cert(), cert.key()}).value();
//
// Thread safety: thread-compatible.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/subprocess.h"

namespace troupe::testing {

class TestCert {
 public:
  // `key_args`: openssl req's key choice, e.g. {"-newkey", "rsa:2048"}.
  explicit TestCert(std::string common_name = "localhost",
                    std::vector<std::string> key_args = {"-newkey", "ec", "-pkeyopt",
                                                         "ec_paramgen_curve:P-256"}) {
    char pattern[] = "/tmp/troupe-tls-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = pattern;
    cert_ = dir_ + "/cert.pem";
    key_ = dir_ + "/key.pem";
    std::vector<std::string> args = {"openssl", "req", "-x509"};
    args.insert(args.end(), key_args.begin(), key_args.end());
    for (const char* a : {"-nodes", "-days", "1", "-subj"}) args.push_back(a);
    args.push_back("/CN=" + common_name);
    for (const std::string& a : {std::string("-keyout"), key_, std::string("-out"), cert_}) {
      args.push_back(a);
    }
    const ProgramResult made = RunProgram(args, absl::Seconds(30));
    if (made.code != 0) error_ = "openssl req failed: " + made.output;
  }
  ~TestCert() {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  TestCert(const TestCert&) = delete;
  TestCert& operator=(const TestCert&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& cert() const { return cert_; }
  const std::string& key() const { return key_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::string cert_;
  std::string key_;
  std::string error_;
};

}  // namespace troupe::testing
