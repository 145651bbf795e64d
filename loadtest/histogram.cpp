#include "loadtest/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace warmpool::loadtest {

namespace {
const double kLogGrowth = std::log(Histogram::kGrowth);
// Bucket 0 holds [0, kMinUs); bucket i >= 1 holds [kMinUs*g^(i-1), kMinUs*g^i).
const size_t kBuckets =
  2 + static_cast<size_t>(std::ceil(std::log(Histogram::kMaxUs / Histogram::kMinUs) / kLogGrowth));
} // namespace

size_t Histogram::index_of(double us) {
  if (!(us >= kMinUs)) // also NaN
    return 0;
  auto i = 1 + static_cast<size_t>(std::floor(std::log(us / kMinUs) / kLogGrowth));
  return std::min(i, kBuckets - 1);
}

double Histogram::lower_bound_of(size_t index) {
  return index == 0 ? 0.0 : kMinUs * std::pow(kGrowth, static_cast<double>(index - 1));
}

void Histogram::record(double us) {
  us = std::max(0.0, us);
  auto i = index_of(us);
  if (i >= counts_.size())
    counts_.resize(i + 1, 0);
  ++counts_[i];
  min_ = count_ ? std::min(min_, us) : us;
  max_ = count_ ? std::max(max_, us) : us;
  sum_ += us;
  ++count_;
}

void Histogram::merge(const Histogram& o) {
  if (o.count_ == 0)
    return;
  if (o.counts_.size() > counts_.size())
    counts_.resize(o.counts_.size(), 0);
  for (size_t i = 0; i < o.counts_.size(); ++i)
    counts_[i] += o.counts_[i];
  min_ = count_ ? std::min(min_, o.min_) : o.min_;
  max_ = count_ ? std::max(max_, o.max_) : o.max_;
  sum_ += o.sum_;
  count_ += o.count_;
}

double Histogram::percentile(double p) const {
  if (count_ == 0)
    return 0;
  p = std::clamp(p, 0.0, 100.0);
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  if (rank == count_)
    return max_; // known exactly
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      if (i == kBuckets - 1)
        return max_; // the overflow bucket (beyond kMaxUs) has no upper bound to centre on
      // The geometric middle of the bucket, but never outside what was really recorded
      // (keeps p100 == max and makes single-valued data exact).
      double mid = i == 0 ? kMinUs / 2 : lower_bound_of(i) * std::sqrt(kGrowth);
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

std::vector<Histogram::Bin> Histogram::bins() const {
  std::vector<Bin> out;
  for (size_t i = 0; i < counts_.size(); ++i)
    if (counts_[i] > 0)
      out.push_back({lower_bound_of(i), lower_bound_of(i + 1), counts_[i]});
  return out;
}

} // namespace warmpool::loadtest
