# Helpers shared by every folder's CMakeLists.txt.

# cellflux_torch_target(TARGET): compile TARGET against LibTorch with the shared precompiled
# header. All LibTorch targets reuse one PCH (built by cellflux_pch) so torch/torch.h is parsed
# once per build instead of once per target.
function(cellflux_torch_target target)
  target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
  target_compile_options(${target} PRIVATE ${TORCH_CXX_FLAGS_LIST})
  if(NOT target STREQUAL "cellflux_pch")
    target_precompile_headers(${target} REUSE_FROM cellflux_pch)
  endif()
  # GCC instantiates ~7 s of pending LibTorch templates at the end of every translation unit,
  # even an empty one, PCH or not. Unity batches pay that once per batch instead of once per file.
  if(CELLFLUX_UNITY_BUILD)
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON
                          UNITY_BUILD_BATCH_SIZE ${CELLFLUX_UNITY_BATCH_SIZE})
  endif()
endfunction()

# cellflux_add_test(NAME SOURCES... LIBS...): one GoogleTest executable registered with CTest.
# Tests run from the source root so ../shared/fixtures resolves as documented.
function(cellflux_add_test name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;LIBS" ${ARGN})
  if(ARG_TORCH AND NOT CELLFLUX_WITH_TORCH)
    return()  # LibTorch-free build (e.g. the client alone): skip tests that need it
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  if(ARG_TORCH)
    cellflux_torch_target(${name})
  endif()
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES ENVIRONMENT "CELLFLUX_SOURCE_DIR=${PROJECT_SOURCE_DIR};CELLFLUX_BUILD_DIR=${PROJECT_BINARY_DIR}"
    DISCOVERY_TIMEOUT 60)
endfunction()

# cellflux_add_tests_in_dir(LIBS... [TORCH]): the *_test.cc files of the current folder. LibTorch
# tests become one executable per folder, <folder>_tests (unity-built: each LibTorch file costs
# a fixed ~7 s of template instantiation and a ~10 s link); the others one executable per file,
# named after it, so a test file being edited never blocks the others' builds.
function(cellflux_add_tests_in_dir)
  cmake_parse_arguments(ARG "TORCH" "" "LIBS" ${ARGN})
  file(GLOB test_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  if(ARG_TORCH)
    get_filename_component(folder ${CMAKE_CURRENT_SOURCE_DIR} NAME)
    cellflux_add_test(${folder}_tests TORCH SOURCES ${test_sources} LIBS ${ARG_LIBS})
    return()
  endif()
  foreach(src ${test_sources})
    get_filename_component(name ${src} NAME_WE)
    if(ARG_TORCH)
      cellflux_add_test(${name} TORCH SOURCES ${src} LIBS ${ARG_LIBS})
    else()
      cellflux_add_test(${name} SOURCES ${src} LIBS ${ARG_LIBS})
    endif()
  endforeach()
endfunction()
