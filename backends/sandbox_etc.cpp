#include "backends/sandbox_etc.hpp"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

namespace warmpool {

namespace {

// Read by libc, the dynamic linker, TLS libraries, language runtimes and common tools.
const char* const kEtcEntries[] = {
  "alternatives",  "debian_version",
  "fonts",         "gai.conf",
  "host.conf",     "hosts",
  "ld.so.cache",   "ld.so.conf",
  "ld.so.conf.d",  "locale.alias",
  "localtime",     "magic",
  "magic.mime",    "mime.types",
  "networks",      "nsswitch.conf",
  "os-release",    "protocols",
  "resolv.conf",   "rpc",
  "services",      "shells",
  "ssl/certs",     "ssl/openssl.cnf",
  "pki/tls/certs", "pki/ca-trust/extracted",
  "terminfo",      "timezone",
};
// Configuration directories of language runtimes (python3.11, java-17-openjdk, ...).
const char* const kEtcPrefixes[] = {"python3", "java-"};

bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

std::string user_name(uid_t uid) {
  if (uid == 0)
    return "root";
  passwd pw{}, *found = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found && found->pw_name[0])
    return found->pw_name;
  return "sandbox";
}

std::string group_name(gid_t gid) {
  if (gid == 0)
    return "root";
  group gr{}, *found = nullptr;
  char buf[4096];
  if (getgrgid_r(gid, &gr, buf, sizeof buf, &found) == 0 && found && found->gr_name[0])
    return found->gr_name;
  return "sandbox";
}

} // namespace

std::vector<std::string> sandbox_etc_binds(const std::string& host_etc) {
  std::vector<std::string> out;
  for (const char* e : kEtcEntries)
    if (exists(host_etc + "/" + e))
      out.push_back(host_etc + "/" + e);
  if (DIR* d = opendir(host_etc.c_str())) {
    while (dirent* e = readdir(d))
      for (const char* prefix : kEtcPrefixes)
        if (std::string(e->d_name).rfind(prefix, 0) == 0)
          out.push_back(host_etc + "/" + e->d_name);
    closedir(d);
  }
  return out;
}

std::string sandbox_passwd(uid_t uid, gid_t gid) {
  std::string out = "root:x:0:0:root:/root:/bin/sh\n";
  if (uid != 0 && uid != 65534)
    out += user_name(uid) + ":x:" + std::to_string(uid) + ":" + std::to_string(gid) +
           ":warmpool sandbox:/workspace:/bin/sh\n";
  out += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
  return out;
}

std::string sandbox_group(gid_t gid) {
  std::string out = "root:x:0:\n";
  if (gid != 0 && gid != 65534)
    out += group_name(gid) + ":x:" + std::to_string(gid) + ":\n";
  out += "nogroup:x:65534:\n";
  return out;
}

} // namespace warmpool
