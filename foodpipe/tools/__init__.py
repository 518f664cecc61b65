"""Plain tools behind commands, on the ground floor's code only: the embedded S3 server, the synth
data generator, the uploader and the dataset report."""
