# find_package(tickwire) -> target tickwire::client (needs grpc++ and protobuf via pkg-config).
include(CMakeFindDependencyMacro)
find_dependency(PkgConfig)
pkg_check_modules(GRPCPP REQUIRED IMPORTED_TARGET grpc++ protobuf)
include(${CMAKE_CURRENT_LIST_DIR}/tickwireTargets.cmake)
