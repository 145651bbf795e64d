// libcurl helpers shared by the Docker API client (docker_client.cpp) and the event
// stream (docker_events.cpp). Internal.
#pragma once

#include <string>

#include <curl/curl.h>

namespace warmpool::docker {

/// curl_global_init, once per process.
void global_init();

/// Cleans up an easy handle that is not one of the per-thread reused ones.
struct EasyGuard {
  CURL* h;
  ~EasyGuard() {
    if (h)
      curl_easy_cleanup(h);
  }
};

std::string percent_encode(const std::string& s);

} // namespace warmpool::docker
