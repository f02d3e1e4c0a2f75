#include "tests/support/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/net/socket.h"
#include "gtest/gtest.h"

extern char** environ;

#ifndef TROUPE_BIN_DIR
#error "compile with -DTROUPE_BIN_DIR=\"<build>/bin\" (tests/CMakeLists.txt does)"
#endif

namespace troupe::testing {
namespace {

// Without a pidfd (kernels before 5.3) a child's exit cannot be polled, so
// waits re-check waitpid() this often instead.
constexpr absl::Duration kReapPollInterval = absl::Milliseconds(10);

int PollTimeoutMs(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1))), 1 << 30));
}

}  // namespace

std::string BinPath(std::string_view name) {
  std::string path = TROUPE_BIN_DIR;
  path += '/';
  path.append(name);
  return path;
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(const std::vector<std::string>& argv,
                                                              Stderr stderr_mode) {
  Options options;
  options.stderr_mode = stderr_mode;
  return Start(argv, options);
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(const std::vector<std::string>& argv,
                                                              const Options& options) {
  const Stderr stderr_mode = options.stderr_mode;
  if (argv.empty()) return absl::InvalidArgumentError("Subprocess: empty argv");
  // O_CLOEXEC: only the dup2()ed copies reach the child, and no other child
  // started meanwhile by another thread holds a write end open.
  int out[2];
  int err[2] = {-1, -1};
  if (::pipe2(out, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe2");
  Fd out_read(out[0]), out_write(out[1]);
  const bool merge = stderr_mode == Stderr::kMergeIntoStdout;
  if (!merge && ::pipe2(err, O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, "pipe2");
  }
  Fd err_read(err[0]), err_write(err[1]);

  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&actions, out_write.get(), STDOUT_FILENO);
  ::posix_spawn_file_actions_adddup2(&actions, merge ? out_write.get() : err_write.get(),
                                     STDERR_FILENO);
  // dup2 onto itself would leave CLOEXEC set (older glibc), so fd 3 always
  // comes from a copy above it; the copy itself is CLOEXEC and goes away.
  Fd fd3_copy;
  if (options.fd3 >= 0) {
    fd3_copy = Fd(::fcntl(options.fd3, F_DUPFD_CLOEXEC, 10));
    if (!fd3_copy.valid()) return absl::ErrnoToStatus(errno, "fcntl F_DUPFD_CLOEXEC");
    ::posix_spawn_file_actions_adddup2(&actions, fd3_copy.get(), 3);
  }
  // The environment: ours, with options.env replacing same-named entries.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const std::string& extra : options.env) {
      replaced |= std::string_view(extra).substr(0, extra.find('=')) == name;
    }
    if (!replaced) env_strings.emplace_back(entry);
  }
  env_strings.insert(env_strings.end(), options.env.begin(), options.env.end());
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  // The child starts with no blocked signals and default dispositions for
  // the ones tests send or a test runner may have ignored.
  posix_spawnattr_t attr;
  ::posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  ::posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) {
    sigaddset(&defaults, sig);
  }
  ::posix_spawnattr_setsigdefault(&attr, &defaults);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0].c_str(), &actions, &attr, args.data(), envp.data());
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  if (rc != 0) return absl::ErrnoToStatus(rc, absl::StrCat("posix_spawn ", argv[0]));

  std::unique_ptr<Subprocess> p(new Subprocess());
  p->pid_ = pid;
  // Closing the parent's write ends lets end of output be seen once the
  // child (and anything it started) is done with them.
  out_write.Reset();
  err_write.Reset();
  p->stdout_ = std::move(out_read);
  p->stderr_ = std::move(err_read);
  for (Fd* fd : {&p->stdout_, &p->stderr_}) {
    if (!fd->valid()) continue;
    if (absl::Status s = SetNonBlocking(fd->get()); !s.ok()) return s;
  }
  p->pidfd_ = Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  return p;
}

Subprocess::~Subprocess() {
  if (pid_ <= 0 || reaped_) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

void Subprocess::TryReap() {
  if (reaped_) return;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  } else if (r < 0 && errno == ECHILD) {
    // Someone else reaped it (SIGCHLD ignored?): the status is lost.
    reaped_ = true;
    exit_code_ = -1;
  }
}

bool Subprocess::ReadPipe(Fd& pipe, std::string& into) {
  char chunk[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(pipe.get(), chunk, sizeof(chunk));
    if (n > 0) {
      into.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;  // End of output, or an error that ends it just the same.
  }
}

bool Subprocess::PumpUntil(absl::Time deadline) {
  pollfd fds[3];
  Fd* owners[3];
  int n = 0;
  for (Fd* fd : {&stdout_, &stderr_}) {
    if (!fd->valid()) continue;
    fds[n] = {fd->get(), POLLIN, 0};
    owners[n++] = fd;
  }
  const bool poll_pidfd = !reaped_ && pidfd_.valid();
  if (poll_pidfd) {
    fds[n] = {pidfd_.get(), POLLIN, 0};
    owners[n++] = &pidfd_;
  }
  absl::Duration wait = deadline - absl::Now();
  if (!reaped_ && !poll_pidfd) wait = std::min(wait, kReapPollInterval);
  const int rc = ::poll(fds, static_cast<nfds_t>(n), PollTimeoutMs(wait));
  if (rc < 0 && errno != EINTR) return false;
  for (int i = 0; rc > 0 && i < n; ++i) {
    if (fds[i].revents == 0) continue;
    if (owners[i] == &pidfd_) continue;
    std::string& into = owners[i] == &stdout_ ? stdout_buffer_ : stderr_buffer_;
    if (!ReadPipe(*owners[i], into)) owners[i]->Reset();
  }
  TryReap();
  return rc > 0 || absl::Now() < deadline;
}

absl::StatusOr<std::string> Subprocess::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const size_t newline = stdout_buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = stdout_buffer_.substr(0, newline);
      stdout_buffer_.erase(0, newline + 1);
      return line;
    }
    if (!stdout_.valid()) {
      if (stdout_buffer_.empty()) {
        return absl::OutOfRangeError(absl::StrCat("pid ", pid_, ": end of stdout before a line"));
      }
      return std::exchange(stdout_buffer_, std::string());
    }
    if (!PumpUntil(deadline)) {
      return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, ": no line on stdout within ",
                                                      absl::FormatDuration(timeout), "; partial: '",
                                                      stdout_buffer_, "'"));
    }
  }
}

absl::StatusOr<std::string> Subprocess::ReadAllStdout(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (stdout_.valid()) {
    if (!PumpUntil(deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("pid ", pid_, ": stdout still open after ", absl::FormatDuration(timeout)));
    }
  }
  return std::exchange(stdout_buffer_, std::string());
}

absl::StatusOr<std::string> Subprocess::ReadAllStderr(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (stderr_.valid()) {
    if (!PumpUntil(deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("pid ", pid_, ": stderr still open after ", absl::FormatDuration(timeout)));
    }
  }
  return std::exchange(stderr_buffer_, std::string());
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    TryReap();
    if (reaped_) return exit_code_;
    if (!PumpUntil(deadline)) {
      return absl::DeadlineExceededError(
          absl::StrCat("pid ", pid_, ": still running after ", absl::FormatDuration(timeout)));
    }
  }
}

absl::Status Subprocess::Signal(int sig) {
  if (reaped_) {
    return absl::FailedPreconditionError(absl::StrCat("pid ", pid_, " has already been reaped"));
  }
  if (::kill(pid_, sig) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("kill ", pid_));
  }
  return absl::OkStatus();
}

ProgramResult RunProgram(const std::vector<std::string>& args, absl::Duration timeout) {
  ProgramResult result;
  absl::StatusOr<std::unique_ptr<Subprocess>> p =
      Subprocess::Start(args, Subprocess::Stderr::kMergeIntoStdout);
  if (!p.ok()) {
    ADD_FAILURE() << p.status();
    return result;
  }
  absl::StatusOr<std::string> output = (*p)->ReadAllStdout(timeout);
  EXPECT_TRUE(output.ok()) << output.status();
  absl::StatusOr<int> code = (*p)->Wait(timeout);
  EXPECT_TRUE(code.ok()) << code.status();
  if (output.ok()) result.output = *output;
  if (code.ok()) result.code = *code;
  return result;
}

}  // namespace troupe::testing
