# Lets Beam runners that stage a package (`--setup_file ./setup.py` on Dataflow, Flink or Spark)
# build foodpipe for their workers; the project itself is described in pyproject.toml.
from setuptools import setup

setup()
