# SPDX-License-Identifier: MIT
#
# FindBoringSSL - Debian's android-libboringssl-dev, and nothing else.
#
# Looks only in /usr/include/android and /usr/lib/<multiarch>/android (or
# under -DBORINGSSL_ROOT=DIR), with NO_DEFAULT_PATH, so that OpenSSL 3's
# headers or libraries can never be picked up by accident. Requires
# openssl/is_boringssl.h, reads BORINGSSL_API_VERSION, and proves the pair
# links by *calling* SSL_CTX_set_custom_verify (BoringSSL-only; gcc would
# fold away a mere address test).
#
# Defines BoringSSL_FOUND, BoringSSL_API_VERSION, BoringSSL_INCLUDE_DIR,
# BoringSSL_LIBRARY_DIR and the imported targets BoringSSL::SSL and
# BoringSSL::Crypto.

include(FindPackageHandleStandardArgs)
include(CheckCSourceCompiles)

if(NOT CMAKE_LIBRARY_ARCHITECTURE)
  set(_bssl_arch "x86_64-linux-gnu")
else()
  set(_bssl_arch "${CMAKE_LIBRARY_ARCHITECTURE}")
endif()

if(BORINGSSL_ROOT)
  set(_bssl_inc_hints "${BORINGSSL_ROOT}/include")
  set(_bssl_lib_hints "${BORINGSSL_ROOT}/lib")
else()
  set(_bssl_inc_hints "/usr/include/android")
  set(_bssl_lib_hints "/usr/lib/${_bssl_arch}/android")
endif()

find_path(BoringSSL_INCLUDE_DIR openssl/is_boringssl.h
  PATHS ${_bssl_inc_hints} NO_DEFAULT_PATH)
# Debian ships only the unversioned dev links and .so.0; no static library.
find_library(BoringSSL_SSL_LIBRARY NAMES ssl PATHS ${_bssl_lib_hints} NO_DEFAULT_PATH)
find_library(BoringSSL_CRYPTO_LIBRARY NAMES crypto PATHS ${_bssl_lib_hints} NO_DEFAULT_PATH)

if(BoringSSL_INCLUDE_DIR AND EXISTS "${BoringSSL_INCLUDE_DIR}/openssl/base.h")
  file(STRINGS "${BoringSSL_INCLUDE_DIR}/openssl/base.h" _bssl_api
       REGEX "^#define BORINGSSL_API_VERSION [0-9]+")
  string(REGEX REPLACE "^#define BORINGSSL_API_VERSION ([0-9]+).*" "\\1"
         BoringSSL_API_VERSION "${_bssl_api}")
endif()

if(BoringSSL_INCLUDE_DIR AND BoringSSL_SSL_LIBRARY AND BoringSSL_CRYPTO_LIBRARY)
  get_filename_component(BoringSSL_LIBRARY_DIR "${BoringSSL_SSL_LIBRARY}" DIRECTORY)
  set(CMAKE_REQUIRED_INCLUDES "${BoringSSL_INCLUDE_DIR}")
  set(CMAKE_REQUIRED_LIBRARIES "${BoringSSL_SSL_LIBRARY};${BoringSSL_CRYPTO_LIBRARY};-Wl,-rpath,${BoringSSL_LIBRARY_DIR}")
  set(CMAKE_REQUIRED_QUIET ON)
  check_c_source_compiles([=[
#include <openssl/is_boringssl.h>
#include <openssl/ssl.h>
#ifndef OPENSSL_IS_BORINGSSL
#error not BoringSSL
#endif
static enum ssl_verify_result_t cb(SSL *s, uint8_t *a) { (void)s; (void)a; return ssl_verify_ok; }
int main(void) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER, cb);
  SSL_CTX_free(ctx);
  return 0;
}
]=] BoringSSL_LINKS)
  unset(CMAKE_REQUIRED_INCLUDES)
  unset(CMAKE_REQUIRED_LIBRARIES)
  unset(CMAKE_REQUIRED_QUIET)
endif()

find_package_handle_standard_args(BoringSSL
  REQUIRED_VARS BoringSSL_INCLUDE_DIR BoringSSL_SSL_LIBRARY BoringSSL_CRYPTO_LIBRARY
                BoringSSL_API_VERSION BoringSSL_LINKS
  VERSION_VAR BoringSSL_API_VERSION
  REASON_FAILURE_MESSAGE "install android-libboringssl-dev (packaging/deps.sh)")

if(BoringSSL_FOUND AND NOT TARGET BoringSSL::Crypto)
  add_library(BoringSSL::Crypto SHARED IMPORTED)
  set_target_properties(BoringSSL::Crypto PROPERTIES
    IMPORTED_LOCATION "${BoringSSL_CRYPTO_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BoringSSL_INCLUDE_DIR}")
  add_library(BoringSSL::SSL SHARED IMPORTED)
  # libssl is C++ inside; its own DT_NEEDED brings libstdc++.
  set_target_properties(BoringSSL::SSL PROPERTIES
    IMPORTED_LOCATION "${BoringSSL_SSL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BoringSSL_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "BoringSSL::Crypto")
endif()
mark_as_advanced(BoringSSL_INCLUDE_DIR BoringSSL_SSL_LIBRARY BoringSSL_CRYPTO_LIBRARY)
