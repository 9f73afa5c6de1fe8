# cuDNN fused attention (src/kernels/cuda/cudnn/): include()d from src/CMakeLists.txt after longctx_lib exists
# (with the CUDA backend off it adds the stub and looks for nothing). Needs these; any can be given on the
# command line (a given path is checked, not searched):
#   LONGCTX_CUDNN_FRONTEND_INCLUDE  dir holding cudnn_frontend.h (header-only; PyPI nvidia-cudnn-frontend
#                                   puts it in site-packages/include; default search: .gpu-bundle/, .venv)
#   LONGCTX_CUDNN_INCLUDE           dir holding cudnn.h (default: the CUDA toolkit's include dirs)
#   LONGCTX_CUDNN_LIB               libcudnn (default: find_library(cudnn) in the toolkit; PyPI's nvidia-cudnn
#                                   has only a versioned nvidia/cudnn/lib/libcudnn.so.9: pass it)
#   LONGCTX_NVRTC_LIB               libnvrtc, only when the toolkit has no CUDA::nvrtc (the frontend links it)
# All found: attention_cudnn.cu joins longctx_lib and LONGCTX_HAVE_CUDNN is ON; otherwise stub.cpp joins and
# it is OFF. LONGCTX_CUDNN=ON makes a missing piece a configure error (for the GPU machine's build), OFF skips
# the search, AUTO (default) falls back to the stub. LONGCTX_HAVE_CUDNN is set in the including scope and as a
# GLOBAL property (read by sibling directories, e.g. bench/attention_gpu).
set(LONGCTX_CUDNN "AUTO" CACHE STRING "Build cuDNN attention: ON (required), OFF or AUTO (when found)")
get_filename_component(_lc_root ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)
set(_lc_src ${_lc_root}/src/kernels/cuda/cudnn)
if(NOT LONGCTX_HAVE_CUDA OR LONGCTX_CUDNN STREQUAL "OFF")
  if(LONGCTX_CUDNN STREQUAL "ON")
    message(FATAL_ERROR "LONGCTX_CUDNN=ON but the CUDA backend is not built")
  endif()
  set(LONGCTX_HAVE_CUDNN OFF)
  set_property(GLOBAL PROPERTY LONGCTX_HAVE_CUDNN OFF)
  target_sources(longctx_lib PRIVATE ${_lc_src}/stub.cpp)
  message(STATUS "longctx: cuDNN attention OFF (stub): CUDA backend ${LONGCTX_HAVE_CUDA}, LONGCTX_CUDNN "
                 "${LONGCTX_CUDNN}")
  return()
endif()

file(GLOB _lc_venv_site LIST_DIRECTORIES true ${_lc_root}/.venv/lib/python3*/site-packages)

set(_lc_fe_hints ${_lc_root}/.gpu-bundle/cudnn-frontend/include)
set(_lc_cudnn_inc_hints ${CUDAToolkit_INCLUDE_DIRS})
set(_lc_cudnn_lib_hints ${CUDAToolkit_LIBRARY_DIR})
foreach(_site ${_lc_venv_site})
  list(APPEND _lc_fe_hints ${_site}/include)
  list(APPEND _lc_cudnn_inc_hints ${_site}/nvidia/cudnn/include)
  list(APPEND _lc_cudnn_lib_hints ${_site}/nvidia/cudnn/lib)
endforeach()

find_path(LONGCTX_CUDNN_FRONTEND_INCLUDE cudnn_frontend.h HINTS ${_lc_fe_hints}
  DOC "Directory holding cudnn_frontend.h (PyPI nvidia-cudnn-frontend: site-packages/include)")
find_path(LONGCTX_CUDNN_INCLUDE cudnn.h HINTS ${_lc_cudnn_inc_hints} DOC "Directory holding cudnn.h")
# the versioned name too: PyPI's nvidia-cudnn wheels ship libcudnn.so.9 alone
find_library(LONGCTX_CUDNN_LIB NAMES cudnn libcudnn.so.9 HINTS ${_lc_cudnn_lib_hints} DOC "libcudnn")
# The frontend (1.32) calls NVRTC from an experimental engine its graph code instantiates, so the link needs
# libnvrtc (loaded at start-up; used only on SM100): the toolkit's CUDA::nvrtc, else LONGCTX_NVRTC_LIB.
if(TARGET CUDA::nvrtc)
  set(_lc_nvrtc CUDA::nvrtc)
else()
  set(_lc_nvrtc_hints ${CUDAToolkit_LIBRARY_DIR})
  foreach(_site ${_lc_venv_site})
    list(APPEND _lc_nvrtc_hints ${_site}/nvidia/cu13/lib ${_site}/nvidia/cuda_nvrtc/lib)
  endforeach()
  find_library(LONGCTX_NVRTC_LIB NAMES nvrtc libnvrtc.so.13 libnvrtc.so.12 HINTS ${_lc_nvrtc_hints}
    DOC "libnvrtc")
  set(_lc_nvrtc ${LONGCTX_NVRTC_LIB})
endif()

set(_lc_fe_version "")
set(_lc_why "")
# a path given on the command line is taken as is by find_*: check it holds what it should
if(NOT LONGCTX_CUDNN_FRONTEND_INCLUDE OR NOT EXISTS ${LONGCTX_CUDNN_FRONTEND_INCLUDE}/cudnn_frontend.h)
  set(_lc_why "no cudnn_frontend.h in '${LONGCTX_CUDNN_FRONTEND_INCLUDE}' (set LONGCTX_CUDNN_FRONTEND_INCLUDE\
; pip install nvidia-cudnn-frontend)")
elseif(NOT LONGCTX_CUDNN_INCLUDE OR NOT EXISTS ${LONGCTX_CUDNN_INCLUDE}/cudnn.h)
  set(_lc_why "no cudnn.h in '${LONGCTX_CUDNN_INCLUDE}' (set LONGCTX_CUDNN_INCLUDE)")
elseif(NOT LONGCTX_CUDNN_LIB OR NOT EXISTS ${LONGCTX_CUDNN_LIB})
  set(_lc_why "no libcudnn at '${LONGCTX_CUDNN_LIB}' (set LONGCTX_CUDNN_LIB)")
elseif(NOT _lc_nvrtc)
  set(_lc_why "no libnvrtc (the frontend needs it; set LONGCTX_NVRTC_LIB)")
else()
  # The code uses the graph API of frontend 1.13+ (check_support()/build_plans() without a handle).
  set(_lc_fe_vh ${LONGCTX_CUDNN_FRONTEND_INCLUDE}/cudnn_frontend_version.h)
  if(EXISTS ${_lc_fe_vh})
    file(STRINGS ${_lc_fe_vh} _lc_fe_lines REGEX "#define CUDNN_FRONTEND_(MAJOR|MINOR|PATCH)_VERSION +[0-9]+")
    foreach(_part MAJOR MINOR PATCH)
      string(REGEX MATCH "CUDNN_FRONTEND_${_part}_VERSION +([0-9]+)" _m "${_lc_fe_lines}")
      set(_lc_fe_${_part} ${CMAKE_MATCH_1})
    endforeach()
    set(_lc_fe_version "${_lc_fe_MAJOR}.${_lc_fe_MINOR}.${_lc_fe_PATCH}")
  endif()
  if(_lc_fe_version STREQUAL "" OR _lc_fe_version VERSION_LESS 1.13)
    set(_lc_why "cudnn-frontend '${_lc_fe_version}' in ${LONGCTX_CUDNN_FRONTEND_INCLUDE} is older than 1.13")
  endif()
endif()

if(_lc_why STREQUAL "")
  set(LONGCTX_HAVE_CUDNN ON)
  target_sources(longctx_lib PRIVATE ${_lc_src}/attention_cudnn.cu)
  # SYSTEM: the frontend headers warn under nvcc (unreachable loops, ignored [[nodiscard]])
  target_include_directories(longctx_lib SYSTEM PRIVATE ${LONGCTX_CUDNN_FRONTEND_INCLUDE}
    ${LONGCTX_CUDNN_INCLUDE})
  target_link_libraries(longctx_lib PUBLIC ${LONGCTX_CUDNN_LIB} ${_lc_nvrtc})
  message(STATUS "longctx: cuDNN attention ON (frontend ${_lc_fe_version} in "
                 "${LONGCTX_CUDNN_FRONTEND_INCLUDE}, cudnn.h in ${LONGCTX_CUDNN_INCLUDE}, "
                 "${LONGCTX_CUDNN_LIB}, ${_lc_nvrtc})")
elseif(LONGCTX_CUDNN STREQUAL "ON")
  message(FATAL_ERROR "LONGCTX_CUDNN=ON but cuDNN attention cannot be built: ${_lc_why}")
else()
  set(LONGCTX_HAVE_CUDNN OFF)
  target_sources(longctx_lib PRIVATE ${_lc_src}/stub.cpp)
  message(STATUS "longctx: cuDNN attention OFF (stub): ${_lc_why}")
endif()
set_property(GLOBAL PROPERTY LONGCTX_HAVE_CUDNN ${LONGCTX_HAVE_CUDNN})
