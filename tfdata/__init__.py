"""The tf.data input pipeline over the preprocessed TFRecords: ``pipeline.train_dataset`` and
``pipeline.eval_dataset``."""
