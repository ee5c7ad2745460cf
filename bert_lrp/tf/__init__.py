"""Google's TensorFlow checkpoints without TensorFlow: the tensor-bundle reader and the converter."""
