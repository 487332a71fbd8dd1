"""SavedModel export for TF Serving."""

from keras_fame.export.saved_model import export_saved_model, next_version, serving_functions
