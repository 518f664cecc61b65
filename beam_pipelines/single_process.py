"""The same job as a plain single-process loop, without Beam: the benchmark's peer.

It does the same work with the same functions (read and validate every image, converting those
that need it once, split, exact stats, read again to write the same shards, manifest and
rejections), one image at a time.
``python -m beam_pipelines.single_process --input URI --output DIR``
"""

import argparse
import collections
import dataclasses
import json
import sys
import tempfile

from beam_pipelines import config as job_config
from beam_pipelines import preflight, transforms
from foodpipe import config as config_flags, images, process, s3, schema


def run(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="single_process")
    config_flags.add_flags(parser, job_config.PreprocessConfig)
    process.add_s3_flag(parser)
    args = parser.parse_args(argv)
    config = config_flags.from_args(job_config.PreprocessConfig, args)
    settings = s3.S3Settings.from_env(args.s3_endpoint)
    settings.apply_to_environment()
    with tempfile.TemporaryDirectory(prefix="foodpipe-converted-") as converted_dir:  # the job's staging/converted
        return write_dataset(config, preflight.plan(config, settings), converted_dir, settings)


def write_dataset(config: job_config.PreprocessConfig, planned: preflight.Plan, converted_dir: str,
                  settings: s3.S3Settings) -> dict:
    classes, counts = planned.classes, planned.shard_counts
    images_root = config.images_root
    inspect = transforms.InspectImageFn(images_root, classes, config.policy, settings, converted_dir,
                                        split_plan=planned.split_plan)
    paths = planned.paths
    records, by_stratum, rejected = [], collections.defaultdict(list), []
    for path in paths:
        found = inspect.inspect_file(path)
        if isinstance(found, transforms.Rejection):
            rejected.append(found)
        elif found is not None and found.split is not None:  # placed by a list
            records.append(found)
        elif found is not None:
            stratum, record = transforms.stratum_key(found, planned.split_plan)
            by_stratum[stratum].append(record)

    total = images.ZERO_SUMS
    for stratum_and_records in by_stratum.items():
        records += transforms.assign_stratum(stratum_and_records, planned.split_plan)
    for record in records:
        if record.split == schema.TRAIN:
            total = total + record.sums

    shards = collections.defaultdict(list)
    for record in records:
        key, _ = transforms.key_by_shard(record, counts, config.seed)
        shards[key].append(record)
    for name, count in counts.items():
        for index in range(count):
            key = (name, index, count)
            transforms.write_shard(f"{config.output}/{schema.shard_name(*key)}", shards[key], config.seed, settings)
    transforms.write_manifest([transforms.manifest_table([transforms.manifest_row(r) for r in records])],
                              f"{config.output}/{schema.MANIFEST_FILE}",
                              settings)
    transforms.write_rejected(rejected, f"{config.output}/{schema.REJECTED_FILE}", settings)
    return {"images": len(records), "rejected": len(rejected), "pixel_sums": dataclasses.asdict(total)}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:])))
