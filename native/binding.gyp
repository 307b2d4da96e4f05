# Builds ambit_bpf.node, the agent's Node-API binding over Debian's libbpf (libbpf-dev).
{
  "targets": [
    {
      "target_name": "ambit_bpf",
      "sources": [
        "src/addon.c",
        "src/attach.c",
        "src/glue.c",
        "src/maps.c",
        "src/objects.c",
        "src/sockets.c",
        "src/splice.c",
        "src/splice_engine.c",
        "src/testrun.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lbpf"]
    }
  ]
}
