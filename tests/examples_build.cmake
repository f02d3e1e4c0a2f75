# Installs troupe into the build tree and builds examples/ against the
# installed package, as an outside project would. Run by ctest (fixture
# "examples"); -DBUILD_DIR, -DSOURCE_DIR and -DCXX_COMPILER (the tree's own
# compiler, so a clang tree's examples are built by clang too) and -DSANITIZE
# (the tree's sanitizer: the examples are compiled with it too, so that
# ThreadSanitizer sees their own synchronisation, such as a shared_ptr's
# count, and does not report races that are not there) come from
# tests/CMakeLists.txt.
set(prefix ${BUILD_DIR}/package-install)
set(sanitize_flags "")
if(SANITIZE)
  set(sanitize_flags "-fsanitize=${SANITIZE}")
endif()
file(REMOVE_RECURSE ${prefix} ${BUILD_DIR}/examples-build)
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples
                        -B ${BUILD_DIR}/examples-build
                        -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release
                        -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
                        "-DCMAKE_CXX_FLAGS=${sanitize_flags}"
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring examples against the installed package failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR}/examples-build -j 2
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building examples failed (${rc})")
endif()
message(STATUS "examples built against ${prefix}")
