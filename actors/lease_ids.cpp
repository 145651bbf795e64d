#include "actors/lease_ids.hpp"

#include <algorithm>
#include <cerrno>

#include <sys/random.h>

namespace warmpool {

std::string lease_id_source::next() {
  constexpr size_t id_bytes = 16;
  if (used_ + id_bytes > random_.size()) {
    size_t got = 0;
    while (got < random_.size()) {
      auto n = getrandom(random_.data() + got, random_.size() - got, 0);
      if (n > 0)
        got += static_cast<size_t>(n);
      else if (errno != EINTR)
        break;
    }
    for (size_t i = got; i < random_.size(); ++i) // no getrandom (very old kernel): still unique
      random_[i] = static_cast<unsigned char>(rng_());
    used_ = 0;
  }
  static const char* digits = "0123456789abcdef";
  std::string id = "l-";
  id.reserve(2 + 2 * id_bytes);
  for (size_t i = 0; i < id_bytes; ++i) {
    auto b = random_[used_ + i];
    id += digits[b >> 4];
    id += digits[b & 0xf];
  }
  // Used bytes are wiped: a later memory disclosure cannot recover ids already handed out.
  std::fill_n(random_.begin() + static_cast<std::ptrdiff_t>(used_), id_bytes, 0);
  used_ += id_bytes;
  return id;
}

} // namespace warmpool
