"""The Apache Beam preprocessing job: raw Food-101-layout images -> sharded TFRecords + stats."""
