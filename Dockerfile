# foodpipe's images, one file, two targets. No credentials inside: pass AWS_* and
# MLFLOW_TRACKING_URI at run time. Both run as the non-root user `foodpipe` (uid 10001).
#
#   docker build -t foodpipe-trainer:0.1.0 .                       # the GPU trainer (default target)
#   docker build --target pipeline -t foodpipe-pipeline:0.1.0 .    # CPU: the Beam job and its launcher
#   docker run --gpus all -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_ENDPOINT_URL \
#       -e MLFLOW_TRACKING_URI foodpipe-trainer:0.1.0 train --data s3://datasets/food10 --model resnet

# The project's files, once, for both images.
FROM scratch AS source
COPY pyproject.toml setup.py constraints.txt README.md /opt/foodpipe/
COPY foodpipe /opt/foodpipe/foodpipe
COPY beam_pipelines /opt/foodpipe/beam_pipelines
COPY tfdata /opt/foodpipe/tfdata
COPY models /opt/foodpipe/models
COPY trainer /opt/foodpipe/trainer

# The Beam job (DirectRunner, or the launcher for Dask/Flink/Spark/Dataflow), the S3 tools, and
# evaluate/predict on CPU.
FROM python:3.11.11-slim AS pipeline

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=source /opt/foodpipe /opt/foodpipe
WORKDIR /opt/foodpipe
# hadolint ignore=DL3013
RUN pip install --no-cache-dir -c constraints.txt ".[cpu]" \
    && useradd --create-home --uid 10001 foodpipe
USER 10001
WORKDIR /home/foodpipe
ENTRYPOINT ["foodpipe"]
CMD ["--help"]

# The GPU trainer: TensorFlow 2.16.2 with CUDA from the official base image.
FROM tensorflow/tensorflow:2.16.2-gpu AS trainer

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=source /opt/foodpipe /opt/foodpipe
WORKDIR /opt/foodpipe
# Every version comes from constraints.txt (hadolint's DL3013 wants pins on the command line).
# `.[gpu]` names `tensorflow`, which the base image already has: tensorflow-cpu never comes in.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir -c constraints.txt ".[gpu]" \
    && useradd --create-home --uid 10001 foodpipe
USER 10001
WORKDIR /home/foodpipe
ENTRYPOINT ["foodpipe"]
CMD ["--help"]
