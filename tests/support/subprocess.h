// Subprocess: starts a program for a test, captures its output through pipes,
// and guarantees it is gone when the object is: the destructor SIGKILLs and
// reaps a child that is still running, so no test leaves a process behind.
//
//   absl::StatusOr<std::unique_ptr<Subprocess>> server =
//       Subprocess::Start({BinPath("lossy-echo-server"), "--mode", "corrupt-after",
//       "10"});
//   ASSERT_TRUE(server.ok()) << server.status();
//   absl::StatusOr<std::string> line = (*server)->ReadLine(absl::Seconds(10));
//   ...
//   ASSERT_TRUE((*server)->Signal(SIGTERM).ok());
//   absl::StatusOr<int> code = (*server)->Wait(absl::Seconds(10));
//
// Every wait is bounded by a timeout and returns DeadlineExceeded when it
// passes. While waiting for anything, the object keeps reading both pipes
// into memory, so a child that writes a lot never blocks on a full pipe.
//
// Note: inside `namespace troupe`, GoogleTest's namespace must be spelled
// `::testing` (this one is `troupe::testing`).
//
// Thread safety: thread-compatible.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/base/fd.h"

namespace troupe::testing {

// Path of a program built into the build tree's bin directory. The directory
// comes from the compile definition TROUPE_BIN_DIR, set by CMake.
std::string BinPath(std::string_view name);

class Subprocess {
 public:
  enum class Stderr {
    kSeparate,         // Its own pipe: ReadAllStderr().
    kMergeIntoStdout,  // The same pipe as stdout, interleaved as written.
  };

  // Runs argv[0] (a path; no PATH search) with argv, the parent's
  // environment, and stdin from /dev/null.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::vector<std::string>& argv,
                                                           Stderr stderr_mode = Stderr::kSeparate);

  struct Options {
    Stderr stderr_mode = Stderr::kSeparate;
    // "NAME=VALUE" entries added to the parent's environment (replacing a
    // variable of the same name), e.g. NOTIFY_SOCKET for a systemd test.
    std::vector<std::string> env;
    // A descriptor of ours the child gets as its fd 3 (where systemd puts
    // the first socket it passes), or -1. Ours stays open.
    int fd3 = -1;
  };
  // Like Start above, with more control over what the child inherits.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::vector<std::string>& argv,
                                                           const Options& options);

  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  // SIGKILLs and reaps the child if it has not been reaped yet.
  ~Subprocess();

  pid_t pid() const { return pid_; }

  // The next line of stdout, without its '\n'. At end of output, returns the
  // unterminated rest if any, else OutOfRange.
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  // Everything on stdout not yet returned, up to end of output (the child
  // and everything it started closed the pipe).
  absl::StatusOr<std::string> ReadAllStdout(absl::Duration timeout);
  // The same for stderr; empty with Stderr::kMergeIntoStdout.
  absl::StatusOr<std::string> ReadAllStderr(absl::Duration timeout);

  // Reaps the child. Returns its exit code, or -N when signal N killed it.
  // Calling it again returns the same value.
  absl::StatusOr<int> Wait(absl::Duration timeout);

  // Sends `sig` to the child; FailedPrecondition once it has been reaped
  // (its PID may belong to another process by then).
  absl::Status Signal(int sig);

 private:
  Subprocess() = default;

  // Waits until something happens on a pipe or the child exits, or until
  // `deadline`; reads what is ready. False when the deadline passed first.
  bool PumpUntil(absl::Time deadline);
  bool ReadPipe(Fd& pipe, std::string& into);  // False at end of output.
  void TryReap();

  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = 0;
  Fd pidfd_;  // Readable when the child exits; invalid on old kernels.
  Fd stdout_;
  Fd stderr_;
  std::string stdout_buffer_;
  std::string stderr_buffer_;
};

// What a program that ran to its end left: exit status (-1000 if it could
// not be started or did not end in time; the failure is reported to
// GoogleTest) and its stdout and stderr, merged.
struct ProgramResult {
  int code = -1000;
  std::string output;
};
// Runs `args` (args[0] found on PATH or by path) to completion.
ProgramResult RunProgram(const std::vector<std::string>& args,
                         absl::Duration timeout = absl::Seconds(60));

}  // namespace troupe::testing
