{
  # tether's native I/O addon: TUN devices (polled by libuv on Node's main loop), huge-page
  # memory and batched crypto: ESP (src/esp.cc) and WireGuard (src/wireguard.cc), both OpenSSL EVP from Node's own headers in
  # <nodedir>/include/node/openssl; no -lcrypto, the node binary exports those symbols).
  # Built by `node-gyp rebuild -C native` (the root package's install script), against the
  # local Node headers (npm's nodedir=/usr), into native/build/Release/tether_io.node.
  "targets": [
    {
      "target_name": "tether_io",
      "sources": ["src/tether_io.cc", "src/esp.cc", "src/wireguard.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
