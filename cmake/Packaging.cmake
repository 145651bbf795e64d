# The Debian package: `cpack -G DEB` in the build tree (or tools/package) writes
# warmpool_<version>_amd64.deb with the CLI, the agent, libwarmpool with its headers, a
# systemd unit and a default /etc/warmpool/warmpool.yaml.
#
# The unit, the default config and the docs are in the `service` component, left out of a
# plain `cmake --install` (EXCLUDE_FROM_ALL): installing into a prefix for embedding must
# not write to /etc or /lib/systemd of the machine.
install(FILES packaging/warmpool.service DESTINATION /lib/systemd/system
  COMPONENT service EXCLUDE_FROM_ALL)
install(FILES packaging/warmpool.yaml DESTINATION /etc/warmpool
  COMPONENT service EXCLUDE_FROM_ALL)
install(FILES config/warmpool.example.yaml README.md
  DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/warmpool COMPONENT service EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME warmpool)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR warmpool)
set(CPACK_PACKAGE_CONTACT "warmpool maintainers <warmpool@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "keeps sandboxes warm so commands run in milliseconds")
set(CPACK_PACKAGE_DESCRIPTION "warmpool pre-creates bubblewrap or docker sandboxes, leases \
them to callers over HTTP/JSON, a C++ library or the command line, resets or recycles them \
between tenants and removes every one of them on shutdown.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY "${CMAKE_BINARY_DIR}/packages")
# The default install plus the service component.
set(CPACK_INSTALL_CMAKE_PROJECTS "${CMAKE_BINARY_DIR};warmpool;ALL;/"
                                 "${CMAKE_BINARY_DIR};warmpool;service;/")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # warmpool_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
# Shared-library dependencies (libcaf, libspdlog, ...) come from dpkg-shlibdeps; bubblewrap
# runs the local backend's sandboxes.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS "${CMAKE_BINARY_DIR}/lib")
set(CPACK_DEBIAN_PACKAGE_DEPENDS "bubblewrap")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "docker.io | docker-ce")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${PROJECT_SOURCE_DIR}/packaging/conffiles;${PROJECT_SOURCE_DIR}/packaging/postinst;${PROJECT_SOURCE_DIR}/packaging/prerm;${PROJECT_SOURCE_DIR}/packaging/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
