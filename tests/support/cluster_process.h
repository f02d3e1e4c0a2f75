// ClusterProcess: build/bin/echo-cluster started as a child for process-level
// tests, with its port (and metrics port) read from its first lines. The
// Subprocess destructor SIGKILLs and reaps it if a test ends early.
//
//   ClusterProcess cluster({"--workers=2", "--metrics-port=0"});
//   ASSERT_GT(cluster.port(), 0);
//   cluster.process().Signal(SIGTERM);
//
// Thread safety: thread-compatible.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "core/net/address.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace troupe::testing {

// Reads a line "<before>HOST:PORT<after>..." from `process` and parses PORT;
// a test failure (and 0) if none comes or it does not parse. Returns the line.
inline std::string ReadPortLine(Subprocess& process, std::string_view before,
                                std::string_view after, int* port,
                                absl::Duration timeout = absl::Seconds(60)) {
  absl::StatusOr<std::string> line = process.ReadLine(timeout);
  if (!line.ok()) {
    ADD_FAILURE() << "no line from echo-cluster: " << line.status();
    return "";
  }
  const size_t end = line->find(after);
  const size_t colon = line->rfind(':', end);
  if (!line->starts_with(before) || end == std::string::npos || colon == std::string::npos ||
      !absl::SimpleAtoi(line->substr(colon + 1, end - colon - 1), port)) {
    ADD_FAILURE() << "cannot read a port from: " << *line;
  }
  return *line;
}

// echo-cluster's first line, "echo-cluster listening on HOST:PORT with N
// workers": its port.
inline int ReadListeningPort(Subprocess& process, absl::Duration timeout = absl::Seconds(60)) {
  int port = 0;
  ReadPortLine(process, "echo-cluster listening on ", " with", &port, timeout);
  return port;
}

class ClusterProcess {
 public:
  // `prefix` runs before the binary (e.g. {"prlimit", "--nofile=64:64", "--"}).
  explicit ClusterProcess(std::vector<std::string> flags, std::vector<std::string> prefix = {}) {
    std::vector<std::string> args = prefix;
    args.push_back(BinPath("echo-cluster"));
    args.push_back("--port=0");
    args.insert(args.end(), flags.begin(), flags.end());
    bool want_metrics = false;
    for (const std::string& f : flags) want_metrics |= absl::StartsWith(f, "--metrics-port");
    absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(args);
    if (!p.ok()) {
      ADD_FAILURE() << p.status();
      return;
    }
    process_ = std::move(*p);
    first_line_ = ReadPort("echo-cluster listening on ", " with", &port_);
    if (want_metrics) ReadPort("metrics on http://", "/metrics", &metrics_port_);
  }

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  Address address() const {
    return *Address::FromHostPort("127.0.0.1", static_cast<uint16_t>(port_));
  }
  const std::string& first_line() const { return first_line_; }
  Subprocess& process() { return *process_; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }

 private:
  std::string ReadPort(std::string_view before, std::string_view after, int* port) {
    return ReadPortLine(*process_, before, after, port);
  }

  std::unique_ptr<Subprocess> process_;
  std::string first_line_;
  int port_ = 0;
  int metrics_port_ = 0;
};

}  // namespace troupe::testing
