// The histogram against exact percentiles of sorted random data: every estimate must be
// within the bucket precision (1%) of the true nearest-rank value.
#include <algorithm>
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "loadtest/histogram.hpp"

using warmpool::loadtest::Histogram;

namespace {

double exact(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

void expect_close(double got, double want, double p) {
  EXPECT_LE(std::abs(got - want), 0.01 * want + 1e-9)
    << "p" << p << ": got " << got << " want " << want;
}

std::vector<double> lognormal(size_t n, uint64_t seed, double mu, double sigma) {
  std::mt19937_64 rng{seed};
  std::lognormal_distribution<double> d{mu, sigma};
  std::vector<double> v(n);
  for (auto& x : v)
    x = std::clamp(d(rng), 1.0, 3.6e9);
  return v;
}

} // namespace

TEST(Histogram, PercentilesWithinOnePercentOfSortedReference) {
  // Wide spread: from microseconds to minutes, like latencies with stalls.
  for (uint64_t seed : {1, 2, 3}) {
    auto data = lognormal(50000, seed, std::log(2000.0), 2.5);
    Histogram h;
    for (double x : data)
      h.record(x);
    ASSERT_EQ(h.count(), data.size());
    for (double p : {1.0, 50.0, 90.0, 99.0, 99.9, 100.0})
      expect_close(h.percentile(p), exact(data, p), p);
    EXPECT_DOUBLE_EQ(h.max(), *std::max_element(data.begin(), data.end()));
    EXPECT_DOUBLE_EQ(h.min(), *std::min_element(data.begin(), data.end()));
  }
}

TEST(Histogram, UniformDataAcrossTheWholeRange) {
  std::mt19937_64 rng{7};
  std::uniform_real_distribution<double> exponent{0, std::log10(3.6e9)};
  std::vector<double> data(20000);
  for (auto& x : data)
    x = std::pow(10, exponent(rng));
  Histogram h;
  for (double x : data)
    h.record(x);
  for (double p : {10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9})
    expect_close(h.percentile(p), exact(data, p), p);
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  auto data = lognormal(20000, 11, std::log(500.0), 1.5);
  Histogram all, a, b;
  for (size_t i = 0; i < data.size(); ++i) {
    all.record(data[i]);
    (i % 3 ? a : b).record(data[i]);
  }
  Histogram merged;
  merged.merge(a);
  merged.merge(b);
  merged.merge(Histogram{}); // merging an empty one changes nothing
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_DOUBLE_EQ(merged.max(), all.max());
  EXPECT_DOUBLE_EQ(merged.min(), all.min());
  EXPECT_NEAR(merged.mean(), all.mean(), 1e-6 * all.mean());
  for (double p : {50.0, 90.0, 99.0, 99.9})
    EXPECT_DOUBLE_EQ(merged.percentile(p), all.percentile(p)) << p;
}

TEST(Histogram, EdgeCases) {
  Histogram empty;
  EXPECT_EQ(empty.count(), 0u);
  EXPECT_EQ(empty.percentile(99), 0);
  EXPECT_EQ(empty.max(), 0);
  EXPECT_TRUE(empty.bins().empty());

  Histogram one;
  one.record(1234.5);
  for (double p : {0.0, 50.0, 100.0})
    EXPECT_DOUBLE_EQ(one.percentile(p), 1234.5); // clamped to what was recorded

  Histogram extremes;
  extremes.record(0.2);    // below 1 µs: bucket 0
  extremes.record(7200e6); // 2 h: beyond the range, max stays exact
  EXPECT_DOUBLE_EQ(extremes.max(), 7200e6);
  EXPECT_DOUBLE_EQ(extremes.percentile(100), 7200e6);
  EXPECT_LT(extremes.percentile(50), 1.0);
  EXPECT_EQ(extremes.bins().size(), 2u);
}

TEST(Histogram, BucketsAreContiguousAndGrowByTwoPercent) {
  for (size_t i = 1; i < 1000; i += 37) {
    double lo = Histogram::lower_bound_of(i), hi = Histogram::lower_bound_of(i + 1);
    EXPECT_NEAR(hi / lo, Histogram::kGrowth, 1e-9);
    EXPECT_EQ(Histogram::index_of(lo * 1.0000001), i);
    EXPECT_EQ(Histogram::index_of(hi * 0.9999999), i);
  }
}
