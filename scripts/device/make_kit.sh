#!/usr/bin/env bash
# Builds .devkit/: this Debian 12 machine's C++ dependencies of cellflux (every one but LibTorch),
# packed so that the GPU machine, which has PyTorch's LibTorch, CUDA, CMake and g++ but none of
# gRPC, protobuf, absl, OpenCV, prometheus-cpp, HDF5, yaml-cpp, CLI11 or nlohmann-json, can
# configure, build and run cellflux with it (scripts/device/gpu_check.sh). Layout: .devkit/usr is
# a /usr prefix (put it on CMAKE_PREFIX_PATH):
#
#   usr/include                     headers (OpenCV: core, imgproc, imgcodecs only)
#   usr/lib/x86_64-linux-gnu        shared libraries: what the five binaries load (ldd closure, no
#                                   LibTorch/glibc/libstdc++/libgcc) and what the CMake configs name
#   usr/lib/x86_64-linux-gnu/cmake  Debian's CMake configs, made relative to the kit; a minimal
#   usr/share/cmake                 OpenCV config; re2, c-ares and OpenSSL configs for gRPC's
#   usr/bin                         protoc, grpc_cpp_plugin, grpc_python_plugin (wrappers that set
#                                   LD_LIBRARY_PATH; the ELF files are in usr/libexec/cellflux-kit)
#   MANIFEST.txt                    Debian package versions, the stubs and why
#
# The libraries and tools over 256 KiB are stored xz-compressed (FILE.xz); `kit_helper.py unpack
# .devkit DEST` makes a usable copy. Packed, the kit is ~25 MiB; unpacked ~55 MiB.
#
# Stubs: a few libraries are only reached through codecs and drivers that cellflux never calls
# (GDAL's 200 MB closure through OpenCV's GDAL decoder, DICOM, OpenEXR, JPEG 2000, WebP, LERC,
# OpenGL interop, OpenCV's LAPACK back end, HDF5's S3 driver). They are replaced by generated
# libraries with the same name and the symbols their users import; a call prints which stub was hit
# and stops the process (SIGILL). Without them the kit would be ~230 MB.
#
#   scripts/device/make_kit.sh [BUILD_DIR]     (default build/; its five binaries seed the closure)
# Needs: the packages of scripts/setup.sh, a built BUILD_DIR, python3, gcc, readelf.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
kit=${CELLFLUX_KIT_DIR:-$src/.devkit}
limit_mib=${CELLFLUX_KIT_LIMIT_MIB:-45}
A=x86_64-linux-gnu
helper="python3 $src/scripts/device/kit_helper.py"
say() { echo "[make-kit] $*"; }

bins=(server/cellflux-server common/tools/cellflux-tool trainer/cellflux-train client/cellflux-client
      bench/offline_sampler_bench)
for b in "${bins[@]}"; do [ -x "$build/$b" ] || { say "missing $build/$b (build it first)"; exit 1; }; done
tools=(protoc grpc_cpp_plugin grpc_python_plugin)
for t in "${tools[@]}"; do command -v "$t" > /dev/null || { say "missing $t (scripts/setup.sh)"; exit 1; }; done

rm -rf "$kit"
mkdir -p "$kit/usr/include" "$kit/usr/lib/$A/cmake" "$kit/usr/share/cmake" "$kit/usr/bin" "$kit/usr/libexec/cellflux-kit"
P=$kit/usr
L=$P/lib/$A

# --- stubs: soname, mode, what is left out ------------------------------------------------------
declare -A STUB_WHY=(
  [libgdal.so.32]="GDAL (OpenCV's IMREAD_LOAD_GDAL decoder)"
  [libgdcmMSFF.so.3.0]="GDCM (OpenCV's DICOM decoder)"
  [libgdcmDSED.so.3.0]="GDCM (OpenCV's DICOM decoder)"
  [libOpenEXR-3_1.so.30]="OpenEXR (OpenCV's EXR codec)"
  [libopenjp2.so.7]="OpenJPEG (OpenCV's JPEG 2000 codec)"
  [libwebp.so.7]="libwebp (WebP images and WebP-compressed TIFF)"
  [libLerc.so.4]="LERC (LERC-compressed TIFF)"
  [libGLX.so.0]="GLX (OpenCV's OpenGL interop)"
  [libblas.so.3]="BLAS (OpenCV's LAPACK back end: solve, SVD, gemm; cellflux calls none)"
  [liblapack.so.3]="LAPACK (OpenCV's LAPACK back end: solve, SVD, gemm; cellflux calls none)"
  [libcurl.so.4]="libcurl (HDF5's read-only S3 driver)"
)
# Default trap; "zero" (every function returns 0) for the image-codec libraries, which OpenCV
# calls in at start-up: its codec registry constructs every decoder at the first imread/imwrite,
# and the GDAL one calls GDALAllRegister() (a trap there killed `cellflux-tool synth` with SIGILL
# on the GPU machine). With zero, a GDAL/EXR/JPEG 2000/WebP/LERC file just fails to open.
declare -A STUB_MODE=(
  [libgdal.so.32]=zero [libgdcmMSFF.so.3.0]=zero [libgdcmDSED.so.3.0]=zero
  [libOpenEXR-3_1.so.30]=zero [libopenjp2.so.7]=zero [libwebp.so.7]=zero [libLerc.so.4]=zero
  [libGLX.so.0]=zero
)
export KIT_STUBS="${!STUB_WHY[*]}"

# --- the library closure --------------------------------------------------------------------------
roots=()
for b in "${bins[@]}"; do roots+=("$build/$b"); done
for t in "${tools[@]}"; do roots+=("$(readlink -f "$(command -v "$t")")"); done
# Libraries the CMake configs import (their files must exist) even where no binary loads them.
for f in /usr/lib/$A/libabsl_*.so.20220623 /usr/lib/$A/libre2.so.9 /usr/lib/$A/libcares.so.2 \
         /usr/lib/$A/libssl.so.3 /usr/lib/$A/libcrypto.so.3 /usr/lib/$A/libprotoc.so.32 \
         /usr/lib/$A/libgrpc++_reflection.so.1.51 /usr/lib/$A/libhdf5_serial.so.103; do
  roots+=("$f")
done
$helper closure "${roots[@]}" > "$kit/.closure"
# The roots that are libraries themselves.
for f in "${roots[@]:${#bins[@]}+${#tools[@]}}"; do
  printf '%s\t%s\n' "$(basename "$f")" "$(readlink -f "$f")" >> "$kit/.closure"
done
sort -u -o "$kit/.closure" "$kit/.closure"

real_libs=()
declare -A SONAME_OF=()
while IFS=$'\t' read -r soname path; do
  if [ -n "${STUB_WHY[$soname]:-}" ]; then continue; fi
  real=$(basename "$path")
  cp -L "$path" "$L/$real"
  [ "$real" = "$soname" ] || ln -sf "$real" "$L/$soname"
  SONAME_OF[$path]=$soname
  real_libs+=("$L/$real")
done < "$kit/.closure"
# The development links (libfoo.so) where Debian has one for a carried library.
cut -f2 "$kit/.closure" | $helper devlinks /usr/lib/$A | while IFS=$'\t' read -r link path; do
  [ -z "${SONAME_OF[$path]:-}" ] || ln -sf "${SONAME_OF[$path]}" "$L/$link"
done

# --- tools ----------------------------------------------------------------------------------------
for t in "${tools[@]}"; do
  cp -L "$(command -v "$t")" "$P/libexec/cellflux-kit/$t"
  cat > "$P/bin/$t" <<EOF
#!/bin/sh
# cellflux .devkit: Debian 12's $t with the kit's libraries.
kit=\$(CDPATH= cd -- "\$(dirname -- "\$0")/.." && pwd)
LD_LIBRARY_PATH="\$kit/lib/$A\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$kit/libexec/cellflux-kit/$t" "\$@"
EOF
  chmod +x "$P/bin/$t"
done

# --- stubs ----------------------------------------------------------------------------------------
consumers=("${real_libs[@]}" "$P"/libexec/cellflux-kit/* "${roots[@]:0:${#bins[@]}}")
for soname in "${!STUB_WHY[@]}"; do
  path=$(awk -F'\t' -v s="$soname" '$1 == s {print $2}' "$kit/.closure")
  [ -n "$path" ] || continue  # not reached from this build
  printf '%s\t%s\t%s\t%s\n' "$soname" "$path" "${STUB_MODE[$soname]:-trap}" \
    "cellflux .devkit: $soname is a stub (the kit leaves out ${STUB_WHY[$soname]}); this process called it"
done > "$kit/.stubs"
$helper stubs "$L" "$kit/.stubs" "${consumers[@]}"
rm -f "$kit/.stubs"

# --- headers --------------------------------------------------------------------------------------
I=/usr/include
cp -a $I/absl $I/grpc $I/grpc++ $I/grpcpp $I/prometheus $I/yaml-cpp $I/nlohmann $I/CLI \
  $I/zlib.h $I/zconf.h "$P/include/"
# protobuf: the runtime headers and the well-known .proto files.
cp -a $I/google "$P/include/"
# HDF5 (serial): the C API headers; Debian's lib/<arch>/hdf5/serial links, as FindHDF5 looks there.
mkdir -p "$P/include/hdf5/serial" "$L/hdf5/serial"
(cd $I/hdf5/serial && cp hdf5.h H5*public.h H5FD[a-oq-z]*.h H5Epubgen.h H5pubconf.h H5version.h H5api_adpt.h \
  "$P/include/hdf5/serial/")
ln -s ../../../../include/hdf5/serial "$L/hdf5/serial/include"
ln -s ../../libhdf5_serial.so "$L/hdf5/serial/libhdf5.so"
# OpenCV: core, imgproc, imgcodecs.
O=$I/opencv4/opencv2
mkdir -p "$P/include/opencv4/opencv2/core"
cp $O/core.hpp $O/imgproc.hpp $O/imgcodecs.hpp $O/opencv_modules.hpp "$P/include/opencv4/opencv2/"
(cd $O/core && tar cf - --exclude=./cuda --exclude=./opencl --exclude='./hal/intrin*' --exclude=./cuda*.hpp \
  --exclude=./directx.hpp --exclude=./va_intel.hpp --exclude=./opengl.hpp .) \
  | (cd "$P/include/opencv4/opencv2/core" && tar xf -)
cp -a $O/imgproc $O/imgcodecs "$P/include/opencv4/opencv2/"

# --- CMake configs --------------------------------------------------------------------------------
C=/usr/lib/$A/cmake
cp -a $C/absl $C/grpc $C/prometheus-cpp $C/yaml-cpp "$P/lib/$A/cmake/"
cp -a /usr/share/cmake/nlohmann_json /usr/share/cmake/CLI11 "$P/share/cmake/"
# prometheus-cpp: cellflux links prometheus-cpp::core only (the pull/push libraries would need
# civetweb and libcurl).
sed -i -e 's/^set(PROMETHEUS_CPP_ENABLE_PULL ON)/set(PROMETHEUS_CPP_ENABLE_PULL OFF)/' \
       -e 's/^set(PROMETHEUS_CPP_ENABLE_PUSH ON)/set(PROMETHEUS_CPP_ENABLE_PUSH OFF)/' \
       -e 's/^set(PROMETHEUS_CPP_USE_COMPRESSION ON)/set(PROMETHEUS_CPP_USE_COMPRESSION OFF)/' \
  "$P/lib/$A/cmake/prometheus-cpp/prometheus-cpp-config.cmake"
# gRPC's config looks for re2 (pkg-config), c-ares and OpenSSL: give it config files for the
# kit's libraries (gRPC's public headers include none of theirs).
mkdir -p "$P/lib/$A/cmake/re2" "$P/lib/$A/cmake/c-ares"
imported() {  # imported NAMESPACE::TARGET FILE
  cat <<EOF
if(NOT TARGET $1)
  add_library($1 SHARED IMPORTED)
  set_target_properties($1 PROPERTIES IMPORTED_LOCATION "\${_cfkit_lib}/$2")
endif()
EOF
}
kitlib='get_filename_component(_cfkit_lib "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)'
{ echo "# cellflux .devkit: Debian 12's libre2.so.9"; echo "$kitlib"; imported re2::re2 libre2.so.9
  echo 'set(re2_FOUND TRUE)'; } > "$P/lib/$A/cmake/re2/re2Config.cmake"
{ echo "# cellflux .devkit: Debian 12's libcares.so.2"; echo "$kitlib"; imported c-ares::cares libcares.so.2
  echo 'set(c-ares_FOUND TRUE)'; } > "$P/lib/$A/cmake/c-ares/c-ares-config.cmake"
{ echo "# cellflux .devkit: Debian 12's libssl.so.3/libcrypto.so.3 for gRPC (no OpenSSL headers)."
  echo 'get_filename_component(_cfkit_lib "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)'
  imported OpenSSL::Crypto libcrypto.so.3; imported OpenSSL::SSL libssl.so.3
  echo 'set_property(TARGET OpenSSL::SSL PROPERTY INTERFACE_LINK_LIBRARIES OpenSSL::Crypto)'
  echo 'set(OPENSSL_FOUND TRUE)'; echo 'set(OpenSSL_FOUND TRUE)'; echo 'set(OPENSSL_VERSION 3.0)'
} > "$P/lib/$A/cmake/grpc/modules/FindOpenSSL.cmake"
# OpenCV: Debian's OpenCVModules.cmake imports all 60 modules and checks each library file; this
# minimal config imports the three cellflux uses.
ocv=$(basename "$(readlink -f /usr/lib/$A/libopencv_core.so)")
ocv_version=${ocv#libopencv_core.so.}
mkdir -p "$P/lib/$A/cmake/opencv4"
cat > "$P/lib/$A/cmake/opencv4/OpenCVConfig.cmake" <<EOF
# cellflux .devkit: Debian 12's OpenCV $ocv_version, modules core, imgproc and imgcodecs only.
get_filename_component(_cfkit_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)
set(OpenCV_VERSION $ocv_version)
set(OpenCV_INCLUDE_DIRS "\${_cfkit_prefix}/include/opencv4")
set(_cfkit_modules core imgproc imgcodecs)
foreach(_m \${_cfkit_modules})
  if(NOT TARGET opencv_\${_m})
    add_library(opencv_\${_m} SHARED IMPORTED)
    set_target_properties(opencv_\${_m} PROPERTIES
      IMPORTED_LOCATION "\${_cfkit_prefix}/lib/$A/libopencv_\${_m}.so.$ocv_version"
      INTERFACE_INCLUDE_DIRECTORIES "\${OpenCV_INCLUDE_DIRS}")
  endif()
endforeach()
set_property(TARGET opencv_imgproc PROPERTY INTERFACE_LINK_LIBRARIES opencv_core)
set_property(TARGET opencv_imgcodecs PROPERTY INTERFACE_LINK_LIBRARIES opencv_imgproc opencv_core)
set(OpenCV_LIBS)
set(OpenCV_FOUND TRUE)
foreach(_c \${OpenCV_FIND_COMPONENTS})
  string(REGEX REPLACE "^opencv_" "" _c "\${_c}")
  if(_c IN_LIST _cfkit_modules)
    list(APPEND OpenCV_LIBS opencv_\${_c})
  else()
    set(OpenCV_FOUND FALSE)
    set(OpenCV_NOT_FOUND_MESSAGE "the cellflux .devkit carries OpenCV core, imgproc and imgcodecs, not \${_c}")
  endif()
endforeach()
if(NOT OpenCV_FIND_COMPONENTS)
  foreach(_m \${_cfkit_modules})
    list(APPEND OpenCV_LIBS opencv_\${_m})
  endforeach()
endif()
EOF
cat > "$P/lib/$A/cmake/opencv4/OpenCVConfig-version.cmake" <<EOF
set(PACKAGE_VERSION $ocv_version)
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
EOF
$helper fix-cmake "$P"

# --- manifest and size ----------------------------------------------------------------------------
{
  echo "cellflux .devkit, made $(date -u +%Y-%m-%dT%H:%MZ) by scripts/device/make_kit.sh from $build"
  echo "Debian $(cat /etc/debian_version), $(uname -m)"
  echo
  echo "Packages:"
  for f in "$L"/*.so.* "$P"/libexec/cellflux-kit/*; do
    [ -L "$f" ] && continue
    [ -n "${STUB_WHY[$(basename "$f")]:-}" ] && continue
    orig=$(awk -F'\t' -v r="$(basename "$f")" '{n=split($2,p,"/"); if (p[n] == r) print $2}' "$kit/.closure" | head -1)
    [ -n "$orig" ] || orig=$(command -v "$(basename "$f")" || true)
    [ -n "$orig" ] || continue
    # dpkg knows some of Debian 12's libraries by their /lib path (merged /usr).
    { dpkg -S "$orig" 2>/dev/null || dpkg -S "${orig#/usr}" 2>/dev/null || echo "?:"; } | cut -d: -f1 | head -1
  done | sort -u | while read -r pkg; do echo "  $pkg $(dpkg-query -W -f='${Version}' "$pkg")"; done
  echo
  echo "Stubs (a call prints the library's name and stops the process):"
  for soname in "${!STUB_WHY[@]}"; do
    [ ! -e "$L/$soname" ] || echo "  $soname: ${STUB_WHY[$soname]}"
  done | sort
  echo
  echo "Packed: the libraries and tools over 256 KiB are FILE.xz; scripts/device/kit_helper.py unpack"
  echo ".devkit DEST makes a usable copy (gpu_check.sh does)."
} > "$kit/MANIFEST.txt"
rm -f "$kit/.closure"
cat > "$kit/env.sh" <<'EOF'
# source .devkit/env.sh: the kit's tools on PATH and its prefix on CMAKE_PREFIX_PATH.
_cfkit=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/usr
export PATH="$_cfkit/bin:$PATH"
export CMAKE_PREFIX_PATH="$_cfkit${CMAKE_PREFIX_PATH:+;$CMAKE_PREFIX_PATH}"
EOF

unpacked_kib=$(du -sk "$kit" | cut -f1)
$helper pack "$kit" 256
size_kib=$(du -sk "$kit" | cut -f1)
say "$(find "$kit" -type f | wc -l) files, $((size_kib / 1024)) MiB in $kit (limit $limit_mib MiB;" \
  "$((unpacked_kib / 1024)) MiB unpacked)"
if [ "$size_kib" -gt $((limit_mib * 1024)) ]; then
  du -sk "$L" "$P/include" "$P/libexec" | sed 's/^/[make-kit]   /'
  say "FAIL: over $limit_mib MiB"
  exit 1
fi
