// One 64-byte echo round trip through a real in-process Server (EchoActor,
// raw codec, one reactor) over loopback TCP, client blocking on send/recv.
// Mostly syscalls and two thread wake-ups; the figure to compare with
// raw-epoll's is the server CPU per message from `make bench`.
#include <sys/socket.h>

#include <memory>

#include "actors/builtin.h"
#include "benchmark/benchmark.h"
#include "core/net/socket.h"
#include "core/server.h"

namespace troupe {
namespace {

void BM_EchoRoundTrip(benchmark::State& state) {
  ServerOptions options;
  options.address = Address::Parse("127.0.0.1:0").value();
  options.workers = 1;
  auto server =
      Server::Create(options, ActorFactory([] { return std::make_unique<EchoActor>(); })).value();
  server->Start();
  Fd client = ConnectTcpBlocking(server->address()).value();
  (void)SetNoDelay(client.get());
  char message[64] = {};
  char reply[64];
  for (auto _ : state) {
    if (::send(client.get(), message, sizeof message, 0) != sizeof message) {
      state.SkipWithError("send failed");
      break;
    }
    size_t got = 0;
    while (got < sizeof reply) {
      const ssize_t n = ::recv(client.get(), reply + got, sizeof reply - got, 0);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    if (got != sizeof reply) {
      state.SkipWithError("short echo");
      break;
    }
  }
  client.Reset();
  server->Stop();
}
BENCHMARK(BM_EchoRoundTrip)->UseRealTime();

}  // namespace
}  // namespace troupe
