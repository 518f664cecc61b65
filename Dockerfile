# The GPU trainer image: TensorFlow 2.16.2 with CUDA from the official base, foodpipe installed
# with the same pinned constraints as `make install`, run as a non-root user. No credentials inside:
# pass AWS_* and MLFLOW_TRACKING_URI at `docker run` time.
#   docker build -t foodpipe:0.1.0 .
#   docker run --gpus all -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_ENDPOINT_URL foodpipe:0.1.0 --help
FROM tensorflow/tensorflow:2.16.2-gpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/foodpipe
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY foodpipe ./foodpipe
COPY beam_pipelines ./beam_pipelines
COPY tfdata ./tfdata
COPY models ./models
COPY trainer ./trainer
# `.[gpu]` names `tensorflow`, which the base image already has: tensorflow-cpu never comes in.
RUN pip install -c constraints.txt ".[gpu]"

RUN useradd --create-home --uid 10001 foodpipe
USER foodpipe
WORKDIR /home/foodpipe
ENTRYPOINT ["foodpipe"]
CMD ["--help"]
