"""The tf.data input pipeline over the preprocessed TFRecords: ``pipeline.make_dataset``."""
