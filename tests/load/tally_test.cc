#include "load/tally.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "load/histogram.h"
#include "load/load_client.h"

namespace troupe::load {
namespace {

uint64_t Sum(const std::vector<uint64_t>& counts) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  return total;
}

TEST(LoadClientTallyTest, WarmupIsPublishedButNotMeasured) {
  WorkerTally tally;
  for (int i = 0; i < 3; ++i) tally.Completed(100, /*measured=*/false);
  tally.Completed(5000, /*measured=*/true);
  tally.Completed(7000, /*measured=*/true);
  tally.EndLoop(42);
  tally.Finish();
  const WorkerResult& r = tally.result();
  EXPECT_EQ(r.counts.messages, 2u);
  EXPECT_EQ(r.counts.latency_ns.count(), 2u);
  EXPECT_EQ(r.counts.latency_ns.min(), 5000u);
  EXPECT_EQ(Sum(r.counts.latency_buckets), 2u);  // The warmup's 3 left out.
  EXPECT_EQ(r.counts.latency_buckets[LatencyHistogram::BucketIndex(100)], 0u);
  EXPECT_EQ(r.loop_end_ns, 42);
  EXPECT_EQ(tally.live().completed.load(), 5u);  // Progress sees them all.
}

TEST(LoadClientTallyTest, AllWarmupMeasuresNothing) {
  WorkerTally tally;
  tally.Completed(100, /*measured=*/false);
  tally.EndLoop(1);
  tally.Finish();
  EXPECT_EQ(Sum(tally.result().counts.latency_buckets), 0u);
  EXPECT_EQ(tally.result().counts.messages, 0u);
}

TEST(LoadClientTallyTest, EachErrorKindCountsAndKeepsTheFirstMessages) {
  WorkerTally tally;
  tally.VerificationFailed("v");
  tally.Lost("l");
  tally.Stalled("s");
  tally.Incomplete("i");
  tally.TimedOut("t");
  tally.Stalled("s2");  // The sixth message: counted, not kept.
  tally.ConnectFailed("first");
  tally.ConnectFailed("second");
  const WorkerResult& r = tally.result();
  EXPECT_EQ(r.counts.verification_errors, 1u);
  EXPECT_EQ(r.counts.connections_lost, 1u);
  EXPECT_EQ(r.counts.connections_stalled, 2u);
  EXPECT_EQ(r.counts.connections_incomplete, 1u);
  EXPECT_EQ(r.counts.connections_timed_out, 1u);
  EXPECT_EQ(r.counts.connections_failed, 2);
  EXPECT_EQ(r.first_connect_error, "first");
  EXPECT_EQ(r.errors, (std::vector<std::string>{"v", "l", "s", "i", "t"}));
  EXPECT_EQ(tally.live().errors.load(), 8u);
}

TEST(LoadClientTallyTest, TalliesAddUp) {
  WorkerTally a;
  WorkerTally b;
  a.Established();
  b.Established();
  b.Established();
  a.Completed(1000, true);
  b.Completed(3000, true);
  a.MeasuredBytes(64);
  b.MeasuredBytes(128);
  b.Lost("gone");
  a.Finish();
  b.Finish();
  LoadReport report;  // Hand-made: no buckets yet.
  report.Add(a.result().counts);
  report.Add(b.result().counts);
  EXPECT_EQ(report.connections_established, 3);
  EXPECT_EQ(report.messages, 2u);
  EXPECT_EQ(report.bytes, 192u);
  EXPECT_EQ(report.connections_lost, 1u);
  EXPECT_EQ(report.latency_ns.count(), 2u);
  EXPECT_EQ(report.latency_ns.max(), 3000u);
  EXPECT_EQ(report.latency_buckets.size(), LatencyHistogram::BucketCount());
  EXPECT_EQ(Sum(report.latency_buckets), 2u);
  EXPECT_EQ(report.error_count(), 1u);
}

TEST(LoadClientTallyTest, ReconnectCountsAreNotErrorsButDownIs) {
  WorkerTally a;
  WorkerTally b;
  // a: a stream closed with 300 bytes and 3 messages unanswered, one failed
  // attempt, then open again.
  a.StreamEnded(300, 3);
  a.ReconnectPending();
  EXPECT_EQ(a.live().reconnecting.load(), 1u);
  a.ReconnectFailed();
  a.Reconnected();
  EXPECT_EQ(a.live().reconnecting.load(), 0u);
  EXPECT_EQ(a.live().reconnections.load(), 1u);
  EXPECT_EQ(a.live().errors.load(), 0u);
  // b: two streams closed; one connection gave up quietly (an aborted run),
  // the other is down at the end, an error.
  b.StreamEnded(10, 1);
  b.ReconnectPending();
  b.StreamEnded(20, 0);
  b.ReconnectPending();
  b.StopReconnecting(/*down=*/false, "");
  b.StopReconnecting(/*down=*/true, "connection 7 down");
  EXPECT_EQ(b.live().reconnecting.load(), 0u);
  EXPECT_EQ(b.live().errors.load(), 1u);
  EXPECT_EQ(b.result().errors, (std::vector<std::string>{"connection 7 down"}));
  LoadReport report;
  report.Add(a.result().counts);
  report.Add(b.result().counts);
  EXPECT_EQ(report.reconnections, 1u);
  EXPECT_EQ(report.reconnect_failures, 1u);
  EXPECT_EQ(report.unanswered_bytes, 330u);
  EXPECT_EQ(report.abandoned_messages, 4u);
  EXPECT_EQ(report.connections_down, 1u);
  EXPECT_EQ(report.error_count(), 1u);
}

}  // namespace
}  // namespace troupe::load
