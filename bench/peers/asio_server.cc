// asio: the echo server a C++ programmer would most likely write instead of
// using troupe. Boost.Asio, one io_context per thread, one acceptor (on the
// first context) dealing new sockets out round robin, and the session shape of
// Asio's own async_tcp_echo_server example: async_read_some into the
// session's buffer, async_write all of it, repeat. Asio recycles handler
// memory per thread, so the steady state allocates nothing.
//
//   asio-echo-server --port 0 --threads 2   # prints "listening on 127.0.0.1:PORT"
//
// SIGTERM/SIGINT: every io_context stops; exit 0.
#include <signal.h>
#include <sys/resource.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

// After the standard headers, <utility> among them: Boost 1.74's
// asio/awaitable.hpp uses std::exchange without including <utility>, and
// GCC 12 in C++20 mode no longer pulls it in transitively.
#include <boost/asio.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;

class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket socket) : socket_(std::move(socket)) {}
  void Start() {
    socket_.set_option(tcp::no_delay(true));
    Read();
  }

 private:
  void Read() {
    socket_.async_read_some(asio::buffer(data_),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              if (!ec) self->Write(n);
                            });
  }
  void Write(size_t n) {
    asio::async_write(socket_, asio::buffer(data_, n),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (!ec) self->Read();
                      });
  }

  tcp::socket socket_;
  std::array<char, 64 * 1024> data_;  // same read size as the other servers
};

class Server {
 public:
  Server(int port, int threads) : contexts_(threads), acceptor_(contexts_[0]) {
    for (auto& c : contexts_) work_.push_back(asio::make_work_guard(c));
    tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port));
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    Accept();
  }
  int port() const { return acceptor_.local_endpoint().port(); }

  void Run() {
    asio::signal_set signals(contexts_[0], SIGINT, SIGTERM);
    signals.async_wait([this](auto, int) {
      for (auto& c : contexts_) c.stop();
    });
    std::vector<std::thread> threads;
    for (size_t i = 1; i < contexts_.size(); ++i) {
      threads.emplace_back([&c = contexts_[i]] { c.run(); });
    }
    contexts_[0].run();
    for (auto& t : threads) t.join();
  }

 private:
  void Accept() {
    asio::io_context& target = contexts_[next_++ % contexts_.size()];
    acceptor_.async_accept(target, [this](boost::system::error_code ec, tcp::socket socket) {
      if (!ec) std::make_shared<Session>(std::move(socket))->Start();
      Accept();
    });
  }

  std::vector<asio::io_context> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  tcp::acceptor acceptor_;
  size_t next_ = 0;
};

int main(int argc, char** argv) {
  int port = 7007, threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port"))
      port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--threads"))
      threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--port N] [--threads N]\n", argv[0]);
      return 2;
    }
  }
  if (threads < 1) threads = static_cast<int>(std::thread::hardware_concurrency());
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  try {
    Server server(port, threads);
    std::printf("listening on 127.0.0.1:%d\n", server.port());
    std::fflush(stdout);
    server.Run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio-echo-server: %s\n", e.what());
    return 1;
  }
  return 0;
}
