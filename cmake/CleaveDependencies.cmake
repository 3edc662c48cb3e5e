# Every dependency comes from a Debian 12 package; scripts/setup.sh installs exactly these.

set(THREADS_PREFER_PTHREAD_FLAG ON)  # -pthread everywhere: gRPC needs it, and the PCH must match
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)                    # libtorch-dev
find_package(Protobuf REQUIRED)                 # libprotobuf-dev, protobuf-compiler
find_package(gRPC CONFIG REQUIRED)              # libgrpc++-dev
find_package(absl CONFIG REQUIRED)              # libabsl-dev
find_package(OpenSSL 3 REQUIRED)                # libssl-dev
find_package(ZLIB REQUIRED)                     # zlib1g-dev (gzip'd IDX files)
find_package(Boost 1.74 REQUIRED)               # libboost-dev (Asio, Beast: header-only)
find_package(CLI11 CONFIG REQUIRED)             # libcli11-dev
find_package(nlohmann_json 3 CONFIG REQUIRED)   # nlohmann-json3-dev
find_package(prometheus-cpp CONFIG REQUIRED)    # prometheus-cpp-dev (metrics: core only)
find_package(PkgConfig REQUIRED)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)  # libzstd-dev
find_program(CLEAVE_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)  # protobuf-compiler-grpc
