# Builds ambit_bpf.node, the agent's Node-API binding over Debian's libbpf (libbpf-dev), and
# ambit_hbone.node, the HBONE engine (TLS and HTTP/2 in data threads). ambit_hbone links no library:
# OpenSSL and nghttp2 are the node binary's own (compiled against node's OpenSSL headers, found through
# --nodedir, and Debian's libnghttp2-dev headers), bound at load (-z now) so that a node without them
# fails to load the addon with the missing symbol's name instead of failing at its first call. Both
# Debug builds (make native-asan) carry AddressSanitizer and UBSan.
{
  "targets": [
    {
      "target_name": "ambit_bpf",
      "sources": [
        "src/addon.c",
        "src/attach.c",
        "src/glue.c",
        "src/libbpf_log.c",
        "src/maps.c",
        "src/objects.c",
        "src/sockets.c",
        "src/splice.c",
        "src/splice_engine.c",
        "src/splice_relay.c",
        "src/testrun.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lbpf"],
      "configurations": {
        "Debug": {
          "cflags": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"],
          "ldflags": ["-fsanitize=address,undefined"]
        }
      }
    },
    {
      "target_name": "ambit_hbone",
      "sources": [
        "src/glue.c",
        "src/hbone/binding.c",
        "src/hbone/calls.c",
        "src/hbone/conn.c",
        "src/hbone/context.c",
        "src/hbone/engine.c",
        "src/hbone/events.c",
        "src/hbone/frames.c",
        "src/hbone/handshake.c",
        "src/hbone/limits.c",
        "src/hbone/session.c",
        "src/hbone/socket_bio.c",
        "src/hbone/stream_end.c",
        "src/hbone/stream_open.c",
        "src/hbone/stream_pump.c",
        "src/hbone/worker.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers", "-pthread"],
      "ldflags": ["-Wl,-z,now", "-pthread"],
      "defines": ["NAPI_VERSION=8", "OPENSSL_API_COMPAT=30000", "OPENSSL_NO_DEPRECATED"],
      "configurations": {
        "Debug": {
          "cflags": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"],
          "ldflags": ["-fsanitize=address,undefined"]
        }
      }
    }
  ]
}
