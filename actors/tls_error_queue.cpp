// Workaround for a bug in Debian's libcaf_openssl 0.17.6 (used by the cluster's TLS links).
#include <dlfcn.h>
#include <openssl/ssl.h>

// libcaf_openssl 0.17.6 never clears OpenSSL's per-thread error queue: a failed TLS
// handshake (a plain-TCP peer, a port scan: "wrong version number") leaves its error on
// the multiplexer thread, and OpenSSL 3's SSL_get_error then reports SSL_ERROR_SSL for the
// next SSL_read/SSL_write of ANY session there that merely would block, so CAF closes
// healthy node links (remote_link_unreachable) again and again. OpenSSL requires an empty
// queue before each TLS I/O call (SSL_get_error(3)); these wrappers, which interpose the
// libssl functions libcaf_openssl calls, clear it. Harmless to callers that already do.
namespace {
template <class Fn>
Fn next_symbol(const char* name) { // never RTLD_DEFAULT: that could be these very wrappers
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}
void clear_openssl_errors() {
  static auto clear = next_symbol<void (*)()>("ERR_clear_error");
  clear();
}
} // namespace

extern "C" int SSL_read(SSL* ssl, void* buf, int num) {
  static auto real = next_symbol<int (*)(SSL*, void*, int)>("SSL_read");
  clear_openssl_errors();
  return real(ssl, buf, num);
}

extern "C" int SSL_write(SSL* ssl, const void* buf, int num) {
  static auto real = next_symbol<int (*)(SSL*, const void*, int)>("SSL_write");
  clear_openssl_errors();
  return real(ssl, buf, num);
}
