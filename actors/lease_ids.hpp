// Lease ids: 128 bits from the kernel's CSPRNG. A lease id is the only credential a lease
// operation needs over HTTP, so it must not be guessable from earlier ids.
#pragma once

#include <array>
#include <cstddef>
#include <random>
#include <string>

namespace warmpool {

class lease_id_source {
public:
  /// "l-" and 32 hex digits.
  std::string next();

private:
  static constexpr size_t random_bytes = 4096;
  // Fetched 4 KiB at a time: one getrandom per 256 leases, not per lease.
  std::array<unsigned char, random_bytes> random_{};
  size_t used_ = random_bytes; // all used: fetch before the first id
  std::mt19937_64 rng_{std::random_device{}()};
};

} // namespace warmpool
