#!/bin/sh
# Run once by the compose stack's `buckets` service, which alone (with MinIO) holds the root
# credentials: makes the buckets, then one user per job with a policy that allows only what the
# job needs (docker/minio/ROLE.json). Safe to run again: everything is made only if missing.
set -eu

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing local/raw local/datasets local/checkpoints local/mlflow

# user ROLE ACCESS_KEY SECRET_KEY: the user ACCESS_KEY gets the policy foodpipe-ROLE (ROLE.json).
user() {
    mc admin policy create local "foodpipe-$1" "/policies/$1.json" >/dev/null
    mc admin user add local "$2" "$3" >/dev/null
    if ! mc admin user info local "$2" | grep -q "foodpipe-$1"; then
        mc admin policy attach local "foodpipe-$1" --user "$2" >/dev/null
    fi
    echo "user for $1 ready"
}

user preprocess "$PREPROCESS_S3_ACCESS_KEY" "$PREPROCESS_S3_SECRET_KEY"
user trainer "$TRAINER_S3_ACCESS_KEY" "$TRAINER_S3_SECRET_KEY"
user mlflow "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY"
