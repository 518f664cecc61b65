# The MLflow tracking server of docker-compose.yml: PostgreSQL for runs and the model registry,
# artifacts proxied to MinIO/S3. Credentials come from the environment at run time.
FROM python:3.11.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir mlflow==3.17.2 psycopg2-binary==2.9.13 boto3==1.44.8 \
    && useradd --create-home --uid 10001 mlflow
USER 10001
WORKDIR /home/mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow", "server"]
