{
  "targets": [
    {
      "target_name": "page_release",
      "sources": ["page_release.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
