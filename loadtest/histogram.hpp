// Latency histogram with logarithmic buckets, in the spirit of HdrHistogram: constant
// relative precision (~1%) over 1 µs .. 1 h in a few kilobytes, O(1) record, mergeable.
// Not thread-safe: the caller serializes (the runner records under its own lock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace warmpool::loadtest {

class Histogram {
public:
  /// Adjacent bucket bounds differ by this factor. A bucket reports its geometric middle,
  /// so any reported value is within ±1% of every true value in that bucket.
  static constexpr double kGrowth = 1.02;
  static constexpr double kMinUs = 1.0;          // values below land in bucket 0
  static constexpr double kMaxUs = 3600.0 * 1e6; // values above land in the last bucket

  void record(double micros);
  void merge(const Histogram& other);

  uint64_t count() const { return count_; }
  double max() const { return count_ ? max_ : 0; } // exact, not bucketed
  double min() const { return count_ ? min_ : 0; } // exact, not bucketed
  double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0; }
  /// Nearest-rank percentile (p in 0..100) in microseconds: the value of the
  /// ceil(p/100*count)-th smallest sample, to bucket precision. 0 when empty.
  double percentile(double p) const;

  /// Non-empty buckets as [lower, upper) bounds in microseconds with their counts.
  struct Bin {
    double lower_us, upper_us;
    uint64_t count;
  };
  std::vector<Bin> bins() const;

  static size_t index_of(double micros);
  static double lower_bound_of(size_t index);

private:
  std::vector<uint64_t> counts_; // grown on demand up to the highest bucket used
  uint64_t count_ = 0;
  double sum_ = 0, min_ = 0, max_ = 0;
};

} // namespace warmpool::loadtest
