// Socket handoff (acceptor -> reactor) and mail delivery (any thread ->
// reactor -> connection): the two cross-thread paths of docs/architecture.md
// ("Threads").
//
//   *_SameThread    enqueue then dequeue on one thread: the queue's own cost
//   *_CrossThread   a producer thread feeds the benchmark thread, which
//                   drains in bulk; per item, contention and cache misses in
//   MailDelivery    Reactor::SendMail to a live connection through a running
//                   reactor, until the handler's OnMail has seen every mail
//
// Both queues carry troupe::Handoff (an fd and a sockaddr_storage, 136 bytes)
// and drain up to 64 at a time, like Reactor::AdoptHandoffsInLoop.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "benchmark/benchmark.h"
#include "concurrentqueue/concurrentqueue.h"
#include "core/loop/reactor.h"

namespace troupe {
namespace {

constexpr size_t kBulk = 64;          // as in core/loop/reactor.cc
constexpr size_t kMaxBacklog = 4096;  // a producer this far ahead waits

// The two queues behind one interface: Push from the producer, PopBulk from
// the consumer.
class MoodycamelQueue {
 public:
  struct Producer {
    explicit Producer(MoodycamelQueue& queue) : q(queue), token(queue.queue_) {}
    void Push(Handoff h) { q.queue_.enqueue(token, std::move(h)); }
    MoodycamelQueue& q;
    moodycamel::ProducerToken token;
  };
  size_t PopBulk(Handoff* out) { return queue_.try_dequeue_bulk(out, kBulk); }
  size_t SizeApprox() const { return queue_.size_approx(); }

 private:
  moodycamel::ConcurrentQueue<Handoff> queue_;
};

class MutexDequeQueue {
 public:
  struct Producer {
    explicit Producer(MutexDequeQueue& queue) : q(queue) {}
    void Push(Handoff h) {
      std::lock_guard<std::mutex> lock(q.mu_);
      q.items_.push_back(std::move(h));
      q.size_.store(q.items_.size(), std::memory_order_relaxed);
    }
    MutexDequeQueue& q;
  };
  size_t PopBulk(Handoff* out) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    while (n < kBulk && !items_.empty()) {
      out[n++] = std::move(items_.front());
      items_.pop_front();
    }
    size_.store(items_.size(), std::memory_order_relaxed);
    return n;
  }
  size_t SizeApprox() const { return size_.load(std::memory_order_relaxed); }

 private:
  std::mutex mu_;
  std::deque<Handoff> items_;
  std::atomic<size_t> size_{0};
};

template <typename Queue>
void BM_Handoff_SameThread(benchmark::State& state) {
  Queue queue;
  typename Queue::Producer producer(queue);
  Handoff batch[kBulk];
  for (auto _ : state) {
    for (size_t i = 0; i < kBulk; ++i) producer.Push(Handoff{static_cast<int>(i), {}});
    size_t got = 0;
    while (got < kBulk) got += queue.PopBulk(batch);
    benchmark::DoNotOptimize(batch[0].fd);
  }
  state.SetItemsProcessed(state.iterations() * kBulk);
  state.counters["ns_per_item"] = benchmark::Counter(
      kBulk, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

template <typename Queue>
void BM_Handoff_CrossThread(benchmark::State& state) {
  Queue queue;
  std::atomic<bool> stop{false};
  std::thread producer_thread([&] {
    typename Queue::Producer producer(queue);
    int fd = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      if (queue.SizeApprox() > kMaxBacklog) {
        std::this_thread::yield();
        continue;
      }
      for (size_t i = 0; i < kBulk; ++i) producer.Push(Handoff{fd++, {}});
    }
  });
  Handoff batch[kBulk];
  int64_t items = 0;
  for (auto _ : state) {
    // One iteration: take up to one batch (spinning until something arrives).
    size_t got;
    // Yield while empty: on a 2-core machine a pure spin can starve the
    // producer whenever anything else wants a core.
    while ((got = queue.PopBulk(batch)) == 0) std::this_thread::yield();
    items += static_cast<int64_t>(got);
    benchmark::DoNotOptimize(batch[0].fd);
  }
  stop = true;
  producer_thread.join();
  state.SetItemsProcessed(items);
  state.counters["ns_per_item"] = benchmark::Counter(
      static_cast<double>(items), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK_TEMPLATE(BM_Handoff_SameThread, MoodycamelQueue);
BENCHMARK_TEMPLATE(BM_Handoff_SameThread, MutexDequeQueue);
BENCHMARK_TEMPLATE(BM_Handoff_CrossThread, MoodycamelQueue)->UseRealTime();
BENCHMARK_TEMPLATE(BM_Handoff_CrossThread, MutexDequeQueue)->UseRealTime();

// ---- Mail delivery through a running reactor ------------------------------

class CountingHandler final : public ConnectionHandler {
 public:
  explicit CountingHandler(std::atomic<uint64_t>& delivered) : delivered_(delivered) {}
  size_t OnData(Connection&, std::string_view data) override { return data.size(); }
  void OnMail(Connection&, Mail mail) override {
    benchmark::DoNotOptimize(mail.Get<uint64_t>());
    delivered_.store(delivered_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

 private:
  std::atomic<uint64_t>& delivered_;
};

void BM_MailDelivery(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  std::atomic<uint64_t> delivered{0};
  std::atomic<bool> opened{false};
  ConnectionId id;
  auto reactor = Reactor::Create(ReactorOptions{}, [&](Connection& conn) {
                   id = conn.id();
                   opened.store(true, std::memory_order_release);
                   return std::make_unique<CountingHandler>(delivered);
                 }).value();
  std::thread loop([&] { reactor->Run(); });
  int pair[2];
  ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair);
  {
    HandoffToken token = reactor->MakeHandoffToken();
    reactor->Adopt(token, Handoff{pair[0], {}});
  }
  while (!opened.load(std::memory_order_acquire)) std::this_thread::yield();

  uint64_t sent = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) reactor->SendMail(id, Mail::Of<uint64_t>(sent++));
    while (delivered.load(std::memory_order_acquire) < sent) std::this_thread::yield();
  }
  reactor->StopNow();
  loop.join();
  ::close(pair[1]);
  state.SetItemsProcessed(static_cast<int64_t>(sent));
  state.counters["ns_per_mail"] = benchmark::Counter(
      static_cast<double>(sent), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
// 1: one mail at a time (latency, includes the eventfd wake when the reactor
// sleeps); 64: a burst, the reactor drains it in bulk.
BENCHMARK(BM_MailDelivery)->Arg(1)->Arg(64)->UseRealTime();

// The box itself: Mail::Of allocates once; As<> is a typeid compare.
void BM_MailBox(benchmark::State& state) {
  uint64_t v = 0;
  for (auto _ : state) {
    Mail m = Mail::Of<uint64_t>(v++);
    benchmark::DoNotOptimize(m.As<uint64_t>());
  }
}
BENCHMARK(BM_MailBox);

}  // namespace
}  // namespace troupe
