"""The tf.data input pipeline over the preprocessed TFRecords (see the issue tracker)."""
