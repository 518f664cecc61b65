"""The same job as a plain single-process loop, without Beam: the benchmark's peer.

It does the same work with the same functions (the driver's plan, then each shard written in turn:
every image read, validated and measured once, converted where it must be, and stored; the
manifest, rejections and exact stats from the shards' facts), one image at a time.
``python -m beam_pipelines.single_process --input URI --output DIR``
"""

import argparse
import json
import sys
import tempfile

from beam_pipelines import config as job_config
from beam_pipelines import preflight, transforms
from foodpipe import config as config_flags, process, s3


def run(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="single_process")
    config_flags.add_flags(parser, job_config.PreprocessConfig)
    process.add_s3_flag(parser)
    args = parser.parse_args(argv)
    config = config_flags.from_args(job_config.PreprocessConfig, args)
    settings = s3.S3Settings.from_env(args.s3_endpoint)
    settings.apply_to_environment()
    with tempfile.TemporaryDirectory(prefix="foodpipe-parts-") as parts:  # the job's staging/manifest-parts
        return write_dataset(config, preflight.plan(config, settings), parts, settings)


def write_dataset(config: job_config.PreprocessConfig, planned: preflight.Plan, parts_directory: str,
                  settings: s3.S3Settings) -> dict:
    shared = transforms.ShardSettings(config.output, parts_directory, tuple(planned.classes), config.images_root,
                                      config.policy, settings)
    shards = [transforms.write_shard(task, shared) for task in planned.placed.tasks]
    summary = transforms.summarize(shards, planned.placed.rejections, config.output, settings)
    return {"images": summary["manifest"]["rows"], "rejected": summary["rejected"]["count"],
            "pixel_sums": summary["pixel_sums"]}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:])))
