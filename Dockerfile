# syntax=docker/dockerfile:1
# cellflux images. Every RUN step is a script in scripts/docker/ (CI runs them too: tests/deploy).
#
#   docker build --target gpu       -t cellflux:gpu .        # default: CUDA LibTorch + NCCL, server
#   docker build --target gpu-train -t cellflux:gpu-train .  # gpu + torchrun for the training Job
#   docker build --target cpu       -t cellflux:cpu .        # Debian 12 + scripts/setup.sh (as CI)
#
# GPU path: the CUDA LibTorch (and the CUDA toolkit for configuring) come from an official
# pytorch/pytorch -devel image (TORCH_IMAGE, PyTorch >= 2.7: C++11 ABI, which Debian's gRPC and
# absl need); the binaries are built on Debian 12 with the same scripts/setup.sh + scripts/build.sh
# as the CPU image, CI and the README. Runtime images hold the four binaries, the Debian packages
# that own the libraries they load (computed by scripts/docker/stage.sh with ldd + dpkg -S), the
# LibTorch libraries (GPU) and python3-grpcio for the HEALTHCHECK; they run as uid 10001.
ARG TORCH_IMAGE=pytorch/pytorch:2.7.1-cuda12.6-cudnn9-devel
ARG DEBIAN_IMAGE=debian:12

# ---- CUDA LibTorch + CUDA toolkit, exported from the PyTorch image --------------------------
FROM ${TORCH_IMAGE} AS torch
COPY scripts/docker/ /tmp/docker/
RUN bash /tmp/docker/export-libtorch.sh /opt/cellflux/torch

# ---- build dependencies: the README's scripts/setup.sh on Debian 12 --------------------------
FROM ${DEBIAN_IMAGE} AS build-base
ENV CELLFLUX_IN_DOCKER=1
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
COPY scripts/docker/ scripts/docker/
RUN bash scripts/docker/install-build-deps.sh

FROM build-base AS build-cpu
COPY . /src
RUN bash scripts/docker/build.sh cpu /src /build /stage

FROM build-base AS build-gpu
# Same path as in the gpu image, so the build tree's RUNPATH also holds at run time.
COPY --from=torch /opt/cellflux/torch /opt/cellflux/torch
COPY . /src
RUN bash scripts/docker/build.sh cuda /src /build /stage /opt/cellflux/torch

# ---- runtime: CPU (Debian 12, Debian's LibTorch) ---------------------------------------------
FROM ${DEBIAN_IMAGE} AS cpu
COPY scripts/docker/install-runtime.sh scripts/docker/lib.sh /tmp/docker/
COPY --from=build-cpu /stage/runtime-packages.txt /tmp/docker/
RUN bash /tmp/docker/install-runtime.sh /tmp/docker/runtime-packages.txt
COPY --from=build-cpu /stage/root/ /
ENV CELLFLUX_DEVICE=cpu
USER 10001:10001
WORKDIR /models
EXPOSE 50051 9464
# SERVING only once the model is loaded and warm; start-period covers the load.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/usr/local/bin/cellflux-healthcheck", "--addr", "127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/cellflux-server"]
# /models: the promoted checkpoints (current → versions/<id>); /data/prepared: the control bank.
CMD ["--checkpoint", "/models/current", "--listen", "0.0.0.0:50051", \
     "--metrics-listen", "0.0.0.0:9464", "--device", "cpu", "--drain-grace-s", "30", \
     "--controls", "/data/prepared", "--watch-checkpoint-s", "30"]

# ---- runtime: GPU ------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS gpu
COPY scripts/docker/install-runtime.sh scripts/docker/lib.sh /tmp/docker/
COPY --from=build-gpu /stage/runtime-packages.txt /tmp/docker/
RUN bash /tmp/docker/install-runtime.sh /tmp/docker/runtime-packages.txt
# LibTorch's lib/ and the nvidia/* wheels' libs (cuDNN, cuBLAS, NCCL, ...), at their relative
# layout (torch's RUNPATH points at ../../nvidia/*/lib). The CUDA driver comes from the host
# through the NVIDIA container toolkit.
COPY --from=torch /opt/cellflux/torch/site/torch/lib /opt/cellflux/torch/site/torch/lib
COPY --from=torch /opt/cellflux/torch/site/nvidia /opt/cellflux/torch/site/nvidia
COPY --from=build-gpu /stage/root/ /
ENV LD_LIBRARY_PATH=/opt/cellflux/torch/site/torch/lib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CELLFLUX_DEVICE=cuda
USER 10001:10001
WORKDIR /models
EXPOSE 50051 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["/usr/local/bin/cellflux-healthcheck", "--addr", "127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/cellflux-server"]
CMD ["--checkpoint", "/models/current", "--listen", "0.0.0.0:50051", \
     "--metrics-listen", "0.0.0.0:9464", "--device", "cuda", "--drain-grace-s", "30", \
     "--controls", "/data/prepared", "--watch-checkpoint-s", "30"]

# ---- GPU training: gpu + the PyTorch image's Python for torchrun -------------------------------
# torchrun is Python; cellflux-train itself is not (torchrun --no-python only sets RANK,
# WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT and supervises the ranks).
FROM gpu AS gpu-train
COPY --from=torch /opt/conda /opt/conda
ENV PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["torchrun", "--no-python", "--nproc-per-node=gpu", "cellflux-train", "--help"]

# The plain `docker build .` target: the GPU server image.
FROM gpu
